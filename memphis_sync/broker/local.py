"""A local Memphis broker: a real ``nats-server`` with JetStream plus the Memphis control plane.

:class:`LocalBroker` starts a :class:`~memphis_sync.broker.server.NatsServer` (or a 3-node
:class:`~memphis_sync.broker.cluster.NatsCluster`) configured like a Memphis broker (client port
6666, ``max_payload`` 8 MiB, Memphis authentication) with a persistent store directory, then a
:class:`~memphis_sync.broker.control_plane.ControlPlane` on it. :meth:`LocalBroker.stop` and
:meth:`LocalBroker.start` keep every station, message, consumer position and record;
:meth:`LocalBroker.stop_control_plane` and :meth:`LocalBroker.start_control_plane` restart the
control plane alone, with nats-server (and its clients) running on.

Authentication (``memphis-wire.md`` §1.3):

* token mode (the default): clients are checked when they connect, as a Memphis broker checks
  them, by an auth callout the control plane answers (:mod:`memphis_sync.broker.auth_callout`):
  the connection token (as is from a Memphis SDK, whose CONNECT ``name`` is
  ``"<connection_id>::<username>"``; as ``"<username>::<token>"`` from a plain NATS client), then
  the user, which must be ``username`` or one of ``users``. A refused client gets
  ``-ERR 'Authorization Violation'``. The control plane connects as its own NATS user, which the
  callout never sees; the control plane also refuses requests whose ``username`` is unknown.
* password mode (``password=...``): NATS users ``<username>$<account_id>`` and the bare
  ``<username>`` (the broker's lookup fallback) with that password; wrong passwords and unknown
  users are refused by nats-server itself (no callout).
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

from memphis_sync import _defaults
from memphis_sync.broker.auth_callout import AuthCallout, ConnectCheck
from memphis_sync.broker.cluster import NatsCluster
from memphis_sync.broker.config import PathLike, TlsFiles, find_nats_server, hostport
from memphis_sync.broker.control_plane import ControlPlane
from memphis_sync.broker.server import DEFAULT_TIMEOUT, NatsServer
from memphis_sync.errors import BrokerError
from memphis_sync.nats.connection import TlsOptions

if TYPE_CHECKING:  # pragma: no cover
    from memphis_sync.broker.rest import RestGateway, RestSettings

__all__ = ["LocalBroker", "default_store_dir"]

#: NATS user of the control plane (its password is random per broker object); in token mode the
#: one user the auth callout never sees.
CONTROL_PLANE_USER = "memphis_sync_control_plane"


#: Seconds nats-server waits for the auth callout's answer (and for a client's CONNECT) in token
#: mode without TLS: less than the clients' default connect timeout (2 s), so that a connect
#: nobody answers (no control plane) ends in ``Authorization Violation``, not in a timeout. With
#: TLS the server's default is kept (the TLS timeout + 1 s), as the handshake counts too.
AUTH_CALLOUT_TIMEOUT = 1.5


def default_store_dir() -> Path:
    """``$XDG_DATA_HOME/memphis-sync/broker`` (``~/.local/share/memphis-sync/broker`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "memphis-sync" / "broker"


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nats-server (Go) does
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(f"port {port} on {host} is already in use (is another broker running?)") from exc
            raise BrokerError(f"cannot listen on {host}:{port}: {exc}") from exc


class LocalBroker:
    """A Memphis broker on this machine. Use it as a context manager, or :meth:`start`/:meth:`close`.

    Args:
        host: Address the broker listens on (loopback by default).
        port: Client port (``_defaults.MEMPHIS_PORT``, 6666); 0 picks a free one (kept across
            restarts). With ``cluster_size`` > 1 every node gets a free port.
        store_dir: Persistent data directory (:func:`default_store_dir` by default); never deleted.
        username: The Memphis user (``_defaults.MEMPHIS_USERNAME``, ``root``).
        connection_token: Token of token mode (``_defaults.MEMPHIS_CONNECTION_TOKEN``).
        password: Switches to password mode: the password of ``username``.
        account_id: Account (tenant) id of password mode users (``_defaults.MEMPHIS_ACCOUNT_ID``).
        users: More Memphis application users: name → password (the password is ignored in
            token mode, where only the names matter). ``username`` is the root user.
        tls: Serve clients over TLS with these files.
        cluster_size: 1 for one server, or 3 for a cluster on loopback (stations with replicas 3
            become R3 streams).
        websocket_port: Port of the NATS over WebSocket listener (on by default: 0 = a free
            port, as in tests; the ``memphis-sync broker`` command uses 7770,
            ``_defaults.MEMPHIS_WS_PORT``, as a Memphis broker); None turns it off. Same TLS as
            the client port. With ``cluster_size`` > 1 every node gets a free port.
        mqtt_port: Also listen for MQTT (0 = free port; in a cluster every node gets a free
            port, see :attr:`mqtt_urls`).
        rest_port: Also serve HTTP like the Memphis REST gateway (0 = free port; off by
            default): see :mod:`memphis_sync.broker.rest` (needs the ``broker`` extra).
        rest_settings: Limits and token lifetimes of the REST ingress
            (:class:`~memphis_sync.broker.rest.RestSettings`).
        max_payload: Largest message (``_defaults.MEMPHIS_MAX_PAYLOAD``, 8 MiB as in Memphis).
        binary: The nats-server executable (see :func:`find_nats_server`).
        debug: nats-server debug logging.

    Raises:
        ValueError: contradictory arguments.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = _defaults.MEMPHIS_PORT,
        store_dir: Optional[PathLike] = None,
        username: str = _defaults.MEMPHIS_USERNAME,
        connection_token: str = _defaults.MEMPHIS_CONNECTION_TOKEN,
        password: Optional[str] = None,
        account_id: int = _defaults.MEMPHIS_ACCOUNT_ID,
        users: Optional[Mapping[str, str]] = None,
        tls: Optional[TlsFiles] = None,
        cluster_size: int = 1,
        websocket_port: Optional[int] = 0,
        mqtt_port: Optional[int] = None,
        rest_port: Optional[int] = None,
        rest_settings: Optional["RestSettings"] = None,
        max_payload: int = _defaults.MEMPHIS_MAX_PAYLOAD,
        binary: Optional[PathLike] = None,
        debug: bool = False,
    ) -> None:
        if cluster_size not in (1, 3):
            raise ValueError("cluster_size must be 1 or 3")
        if password is not None and not password:
            raise ValueError("password must not be empty")
        if password is None and not connection_token:
            raise ValueError("connection_token must not be empty in token mode")
        self._host = host
        self._requested_port = port
        self._store_dir = Path(store_dir) if store_dir is not None else default_store_dir()
        self._username = username
        self._token = connection_token if password is None else ""
        self._password = password or ""
        self._account_id = account_id
        self._users: Dict[str, str] = {username: self._password, **dict(users or {})}
        self._tls = tls
        self._cluster_size = cluster_size
        self._cp_password = secrets.token_hex(16)
        self._binary = binary
        kwargs: Dict[str, Any] = dict(host=host, max_payload=max_payload, tls=tls, debug=debug, binary=binary)
        self._requested_ws_port = websocket_port if cluster_size == 1 else None
        if websocket_port is not None:
            kwargs["websocket_port"] = websocket_port if cluster_size == 1 else 0
        if mqtt_port is not None:  # nodes of one host cannot share a port: each gets a free one (mqtt_urls)
            kwargs["mqtt_port"] = mqtt_port if cluster_size == 1 else 0
        self._auth_callout: Optional[AuthCallout] = None
        if password is None:
            types = {**{name: "application" for name in self._users}, username: "root"}
            check = ConnectCheck(connection_token=connection_token, users=types, account_id=account_id)
            self._auth_callout = AuthCallout(check)
            kwargs["users"] = [{"user": CONTROL_PLANE_USER, "password": self._cp_password}]
            authorization: Dict[str, Any] = {"auth_callout": self._auth_callout.server_config((CONTROL_PLANE_USER,))}
            if tls is None:  # an unanswered connect is refused before a client's 2 s connect timeout
                authorization["timeout"] = AUTH_CALLOUT_TIMEOUT
            kwargs["extra_config"] = {"authorization": authorization}
        else:
            kwargs["users"] = self._nats_users()
        self._server: Union[NatsServer, NatsCluster]
        if cluster_size == 1:
            self._server = NatsServer(port=port, store_dir=self._store_dir, **kwargs)
        else:
            self._server = NatsCluster(cluster_size, store_root=self._store_dir, **kwargs)
        self._control_plane: Optional[ControlPlane] = None
        self._rest_port = rest_port
        self._rest_settings = rest_settings
        self._rest: Optional["RestGateway"] = None

    def _nats_users(self) -> List[Dict[str, Any]]:
        users: List[Dict[str, Any]] = []
        for name, password in self._users.items():
            users.append({"user": f"{name}${self._account_id}", "password": password})
            users.append({"user": name, "password": password})  # the broker's "user" → "user$1" fallback
        users.append({"user": CONTROL_PLANE_USER, "password": self._cp_password})
        return users

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start nats-server and the control plane; return once both serve requests.

        Does nothing if the broker is running.

        Raises:
            BrokerError: the nats-server binary is missing, the port is taken, or the server
                did not become ready (the message quotes its log).
        """
        if self.is_running():
            return
        stale, self._control_plane = self._control_plane, None
        if stale is not None:  # nats-server died under it (kill -9): never run two control planes
            stale.stop()
        find_nats_server(self._binary)
        self._store_dir.mkdir(parents=True, exist_ok=True)
        servers = self._nodes()
        if len(servers) == 1 and self._requested_port and not servers[0].is_running():
            _check_port_free(self._host, self._requested_port)
            if self._requested_ws_port:
                _check_port_free(self._host, self._requested_ws_port)
        self._server.start()
        try:
            self.start_control_plane()
        except BaseException:
            self._server.stop()
            raise

    def start_control_plane(self) -> None:
        """Start the control plane again after :meth:`stop_control_plane` (nats-server runs on).

        It finds every record, and handles the dead letters and schema failures that clients sent
        while it was stopped (they waited in JetStream). Does nothing if it runs.

        Raises:
            BrokerError: nats-server is not running (use :meth:`start`).
            MemphisError: the control plane could not connect or set up its streams.
        """
        if self._control_plane is not None:
            return
        if not self._server.is_running():
            raise BrokerError("nats-server is not running: start the broker with start()")
        control_plane = ControlPlane(self.urls, **self.control_plane_kwargs())
        control_plane.start()
        self._control_plane = control_plane
        if self._rest_port is not None:
            try:
                self._start_rest()
            except BaseException:
                self.stop()
                raise

    def _start_rest(self) -> None:
        from memphis_sync.broker.rest import RestGateway, UserDirectory

        tls = None
        if self._tls is not None:  # the server certificate doubles as the client certificate
            tls = TlsOptions(ca_file=self._tls.ca_file, cert_file=self._tls.cert_file, key_file=self._tls.key_file)
        if self._rest is None:  # one object for the broker's life: its tokens survive restarts
            users = UserDirectory(token=self._token, users=self._users, account_id=self._account_id)
            self._rest = RestGateway(
                self.host, self.port, users, host=self._host, port=self._rest_port or 0, settings=self._rest_settings, tls=tls
            )
        self._rest.start()

    def stop_control_plane(self) -> None:
        """Stop only the control plane, as a control-plane restart or crash would; nats-server runs on.

        Clients stay connected and their messages flow; requests (creating a station, a
        producer...) get no answer until :meth:`start_control_plane`, and the dead letters and
        schema failures they send wait in JetStream until then. In token mode new connections
        wait for it too (it answers the auth callout): nats-server refuses them when its
        callout times out. :meth:`is_running` is False meanwhile. Does nothing if it is stopped.
        """
        control_plane, self._control_plane = self._control_plane, None
        if control_plane is not None:
            control_plane.stop()

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop the REST ingress, the control plane, then nats-server (gracefully). Data and
        ports are kept.

        Args:
            timeout: Seconds nats-server gets to exit after SIGTERM before it is killed
                (``broker.server.DEFAULT_TIMEOUT``).
        """
        control_plane, self._control_plane = self._control_plane, None
        try:
            if self._rest is not None:
                self._rest.stop()
            if control_plane is not None:
                control_plane.stop()
        finally:
            self._server.stop(timeout)

    def restart(self) -> None:
        """:meth:`stop` then :meth:`start`, on the same ports and store (to restart only the
        control plane: :meth:`stop_control_plane`, :meth:`start_control_plane`)."""
        self.stop()
        self.start()

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop, and release the temporary files of the server objects (the store stays).

        Args:
            timeout: Seconds nats-server gets to exit after SIGTERM before it is killed.
        """
        try:
            self.stop(timeout)
        finally:
            self._server.close(timeout)

    def is_running(self) -> bool:
        """True when the servers and the control plane are running (False after
        :meth:`stop_control_plane`)."""
        return self._control_plane is not None and self._server.is_running()

    def __enter__(self) -> "LocalBroker":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "password" if self._password else "token"
        state = f"running on {self.url}" if self.is_running() else "stopped"
        return f"<LocalBroker {state} {mode} mode store={str(self._store_dir)!r}>"

    # -- what clients need -------------------------------------------------------------------

    def _nodes(self) -> List[NatsServer]:
        return list(self._server.nodes) if isinstance(self._server, NatsCluster) else [self._server]

    @property
    def host(self) -> str:
        """The host clients connect to."""
        return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self._host, self._host)

    @property
    def port(self) -> int:
        """The client port (of the first node), the real one when 0 was asked for."""
        return self._nodes()[0].port

    @property
    def url(self) -> str:
        """``nats://host:port`` (``tls://`` with TLS) of the first node."""
        return self._nodes()[0].url

    @property
    def urls(self) -> List[str]:
        """The client URLs of every node."""
        return [node.url for node in self._nodes()]

    @property
    def websocket_url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS) of the first node's WebSocket listener.

        Raises:
            BrokerError: the WebSocket listener is off (``websocket_port=None``), or the broker
                never started.
        """
        urls = self.websocket_urls
        if not urls:
            raise BrokerError("the WebSocket listener is off (websocket_port=None) or the broker never started")
        return urls[0]

    @property
    def websocket_urls(self) -> List[str]:
        """The WebSocket URLs of every node (empty when the listener is off)."""
        scheme = "wss" if self._tls is not None else "ws"
        return [f"{scheme}://{hostport(self.host, node.websocket_port)}" for node in self._nodes() if node.websocket_port]

    @property
    def mqtt_urls(self) -> List[str]:
        """``mqtt://host:port`` of every node's MQTT listener (empty when it is off)."""
        return [f"mqtt://{hostport(self.host, node.mqtt_port)}" for node in self._nodes() if node.mqtt_port]

    @property
    def username(self) -> str:
        """The Memphis user name to connect with."""
        return self._username

    @property
    def connection_token(self) -> str:
        """The connection token (``""`` in password mode)."""
        return self._token

    @property
    def password(self) -> str:
        """The password (``""`` in token mode)."""
        return self._password

    @property
    def account_id(self) -> int:
        """The account id of password mode (``username$account_id``)."""
        return self._account_id

    @property
    def rest_gateway(self) -> "RestGateway":
        """The REST ingress (:class:`~memphis_sync.broker.rest.RestGateway`) of a broker
        started with ``rest_port``."""
        if self._rest is None:
            raise BrokerError("the broker has no REST ingress (start it with rest_port=...)")
        return self._rest

    @property
    def rest_url(self) -> str:
        """``http://host:port`` of the REST ingress (see :attr:`rest_gateway`)."""
        return self.rest_gateway.url

    @property
    def pids(self) -> List[int]:
        """Process ids of the running nats-server(s)."""
        return [node.pid for node in self._nodes() if node.pid is not None]

    @property
    def nats_server(self) -> Union[NatsServer, NatsCluster]:
        """The :class:`NatsServer` (or :class:`NatsCluster`), for fault injection."""
        return self._server

    @property
    def control_plane(self) -> ControlPlane:
        """The running :class:`ControlPlane`."""
        if self._control_plane is None:
            raise BrokerError("the broker is not running")
        return self._control_plane

    @property
    def store_dir(self) -> Path:
        """The persistent data directory."""
        return self._store_dir

    def control_plane_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for one more :class:`ControlPlane` on this broker (after the server
        URLs): its NATS user, TLS, the users, account id and replicas, and in token mode the
        auth callout, so that it answers connects too."""
        tls = None
        if self._tls is not None:  # with mutual TLS the server certificate doubles as client certificate
            verify = self._tls.verify
            tls = TlsOptions(
                ca_file=self._tls.ca_file,
                cert_file=self._tls.cert_file if verify else None,
                key_file=self._tls.key_file if verify else None,
            )
        return {
            "user": CONTROL_PLANE_USER,
            "password": self._cp_password,
            "tls": tls,
            "users": list(self._users),
            "account_id": self._account_id,
            "metadata_replicas": min(3, self._cluster_size),
            "auth_callout": self._auth_callout,
        }

    def connect_kwargs(self, *, websocket: bool = False) -> Dict[str, Any]:
        """Keyword arguments for the Memphis SDK ``connect()``: host, port, username, account_id
        and ``connection_token`` or ``password``.

        Args:
            websocket: connect over NATS over WebSocket: ``host`` is then :attr:`websocket_url`
                and there is no ``port`` (memphis-sync's ``connect()`` only; the official SDKs
                have no WebSocket).
        """
        kwargs: Dict[str, Any] = {"host": self.host, "port": self.port, "username": self._username}
        if websocket:
            kwargs = {"host": self.websocket_url, "username": self._username}
        if self._password:
            kwargs.update(password=self._password, account_id=self._account_id)
        else:
            kwargs["connection_token"] = self._token
        return kwargs
