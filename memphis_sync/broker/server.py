"""Run a real ``nats-server`` process: start/stop/restart, readiness, fault injection.

Theory of operation: :class:`NatsServer` writes a JSON configuration file
(:func:`~memphis_sync.broker.config.build_config`) into a private temporary directory and spawns
the binary in its own process session, its output appended to a log file. The real ports are read
from the ``--ports_file_dir`` file (:func:`~memphis_sync.broker.config.read_ports_file`) and, for
MQTT, which that file omits, from ``/varz``. They are remembered, so a restart comes back on the
same addresses with the same store directory. A server is ready when its ports file exists and
``GET /healthz`` answers 200: with ``?js-enabled-only=true`` for a lone JetStream server, and the
full check for a cluster node (it needs a JetStream meta leader, that is routes to a quorum of
nodes; :class:`~memphis_sync.broker.cluster.NatsCluster` starts them together).

Invariants: every listener binds to ``host`` only (loopback by default); a process started here is
killed when its :class:`NatsServer` is closed, garbage-collected or the interpreter exits (through
``weakref.finalize``), and on Linux, when started from the main thread, it gets SIGTERM when the
Python process dies without running finalizers (``kill -9``: ``PR_SET_PDEATHSIG``, see
:func:`~memphis_sync.broker.config.parent_death_preexec`); a user-supplied store directory is
never deleted.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from typing import Any, Dict, Final, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from memphis_sync.broker.config import (  # BINARY_ENV, TLS_TIMEOUT: this module named them first
    BINARY_ENV as BINARY_ENV,
)
from memphis_sync.broker.config import (
    TLS_TIMEOUT as TLS_TIMEOUT,
)
from memphis_sync.broker.config import (
    PathLike,
    TlsFiles,
    build_config,
    find_nats_server,
    hostport,
    parent_death_preexec,
    read_ports_file,
)
from memphis_sync.errors import BrokerError

__all__ = ["NatsServer", "NatsCluster", "TlsFiles", "find_nats_server"]  # noqa: F822 (NatsCluster: module __getattr__)

logger = logging.getLogger(__name__)

#: Seconds for start() and stop(); a JetStream server is ready in well under a second.
DEFAULT_TIMEOUT: Final = 10.0
#: Sleep between readiness polls: short, so that tests start fast, yet no busy loop.
POLL_INTERVAL: Final = 0.02
#: Server log quoted in a BrokerError: the fatal line and some context.
LOG_TAIL_LINES: Final = 8
LOG_TAIL_BYTES: Final = 4096


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

    def build_config(self) -> Dict[str, Any]:
        """Return the configuration that :meth:`start` writes (a JSON-compatible dict).

        Returns:
            The nats-server configuration, with ``extra_config`` merged in.
        """
        return build_config(
            host=self._host, ports=self._ports, server_name=self._server_name, jetstream=self._jetstream,
            store_dir=self._store_dir, auth=self._auth, accounts=self._accounts, tls=self._tls,
            cluster_name=self._cluster_name, routes=self._routes, max_payload=self._max_payload,
            debug=self._debug, extra_config=self._extra_config,
        )

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
            preexec = parent_death_preexec()
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
        ports = read_ports_file(self._ports_dir, pid)
        if ports is None:
            return False
        self._ports.update(ports)
        return True

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
        return f"{scheme}://{hostport(host, port)}" if port else ""

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


def __getattr__(name: str) -> Any:
    """``NatsCluster`` lives in :mod:`memphis_sync.broker.cluster` (which imports this module);
    this path still names it."""
    if name == "NatsCluster":
        from memphis_sync.broker.cluster import NatsCluster

        return NatsCluster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
