"""The control-plane requester: management requests to the broker's ``$memphis_*`` subjects.

One per :class:`~memphis_sync.memphis.client.Memphis` connection. It holds what every request
needs (the connection, the Memphis user and this connection's id), sends a JSON body and
re-sends it ``timeout_retries`` times when no reply comes in time (wire contract §3), and reads
the replies: an error text, or a creation reply's JSON. Station, Producer, Consumer and
Message get it through their constructors.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Dict, Mapping, Optional, Tuple

import attrs

from .. import _defaults
from .._timeouts import left
from ..errors import (
    AuthorizationError,
    ConnectionClosedError,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    MemphisRequestError,
    MemphisTimeoutError,
    NetworkError,
    NoRespondersError,
    RequestTimeout,
)
from ..jetstream import JetStream
from ..nats.connection import Connection, TlsOptions
from ..nats.reconnect import ReconnectPolicy
from ..nats.servers import ServerAddress, redact_url
from .validate import check_bool, check_int, check_number, check_str

__all__ = ["Requester", "APP_ID", "normalize_host", "websocket_address", "display_address"]

logger = logging.getLogger("memphis_sync.client")  # the name users configure (kept from the flat layout)

#: One id per process, sent as ``app_id`` in creation requests (memphis-py does the same).
APP_ID = str(uuid.uuid4())

_ONE_METHOD = "You have to connect with one of the following methods: connection token / password"


def normalize_host(host: str) -> str:
    """``host`` without a leading ``https://`` or ``http://``."""
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            return host[len(prefix):]
    return host


def websocket_address(host: str, port: int) -> Optional[ServerAddress]:
    """The server of a ``ws://``/``wss://`` ``host`` (NATS over WebSocket; the port, 80/443
    by default, and the path come from the URL), or None for a plain host name.

    Raises:
        MemphisConnectError: a bad URL, or a ``port`` other than the default given with it
            (``port`` is the NATS client port: the WebSocket port belongs in the URL).
    """
    if not host.lower().startswith(("ws://", "wss://")):
        return None
    if port != _defaults.MEMPHIS_PORT:
        raise MemphisConnectError(
            f"port={port} is the NATS client port; with a WebSocket URL put its port in the URL ({host!r})"
        )
    try:
        return ServerAddress.parse(host)
    except LocalProtocolError as exc:
        raise MemphisConnectError(f"bad WebSocket URL {host!r}: {exc}") from exc


def display_address(host: str, port: int) -> Tuple[str, int]:
    """``(host, port)`` as :class:`~memphis_sync.memphis.client.Memphis` shows them: the host
    without ``http(s)://``, or ``ws(s)://host`` and the URL's port for a WebSocket URL."""
    host = normalize_host(host)
    websocket = websocket_address(host, port)
    if websocket is None:
        return host, port
    return f"{'wss' if websocket.tls else 'ws'}://{websocket.host}", websocket.port


class Requester:
    """Sends the control-plane requests of one connection; thread-safe (the connection is).

    Attributes:
        conn: the NATS connection.
        username: the Memphis user, sent in the request bodies.
        connection_id: this connection's id, sent in the request bodies and message headers.
    """

    def __init__(self, conn: Connection, username: str, connection_id: str) -> None:
        self.conn = conn
        self.username = username
        self.connection_id = connection_id

    @classmethod
    def open(
        cls, host: str, username: str, account_id: int, connection_token: str, password: str, port: int,
        reconnect: bool, max_reconnect: int, reconnect_interval_ms: float, timeout_ms: float,
        cert_file: str, key_file: str, ca_file: str, *,
        max_block_ms: Optional[float], ping_interval_ms: float, max_pings_outstanding: int,
    ) -> "Requester":
        """Check the arguments of :meth:`Memphis.connect` (same names, units and texts), connect
        with a token, or as ``username$account_id`` with a password (brokers from before
        accounts know the bare ``username``: retried with it, §1.4).

        Raises:
            MemphisConnectError: bad credentials choice, TLS files, or the broker could not be
                reached / refused us (the cause is chained).
            MemphisValueError: a bad numeric argument.
        """
        if not isinstance(host, str) or not host:
            raise MemphisConnectError(f"host must be a non-empty str, got {host!r}")
        host = normalize_host(host)
        if "@" in host:  # nats://TOKEN@host would send it as a token; never shown
            raise MemphisConnectError(
                f"host must be a host name or address, without credentials ({redact_url(host)!r}); "
                "pass connection_token= or password= instead"
            )
        websocket = websocket_address(host, port)
        if websocket is None and "://" in host:  # nats://, tls://, memphis://: a URL where a host name goes
            raise MemphisConnectError(
                f"host must be a host name or address, not a URL ({host!r}): pass host= and port=, or use "
                "memphis_sync.from_url('memphis://USER:TOKEN@HOST:PORT') (ws:// and wss:// URLs are accepted)"
            )
        if websocket is None and host.count(":") == 1:
            raise MemphisConnectError(f"host must not include a port ({host!r}); pass port= instead")
        if not isinstance(username, str) or not username:
            raise MemphisConnectError(f"username must be a non-empty str, got {username!r}")
        check_str(connection_token, "connection_token", secret=True)
        check_str(password, "password", secret=True)
        check_bool(reconnect, "reconnect")
        if (connection_token != "" and password != "") or (connection_token == "" and password == ""):
            raise MemphisConnectError(_ONE_METHOD)
        check_int(account_id, "account_id", 0)
        check_int(port, "port", 1, 65535)
        check_int(max_reconnect, "max_reconnect", -1)
        check_int(max_pings_outstanding, "max_pings_outstanding", 1)
        check_number(max_block_ms, "max_block_ms", "milliseconds", or_none=True)
        check_number(ping_interval_ms, "ping_interval_ms", "milliseconds", above_zero=True, finite=True)
        check_number(reconnect_interval_ms, "reconnect_interval_ms", "milliseconds")
        check_number(timeout_ms, "timeout_ms", "milliseconds", above_zero=True)
        tls = None
        if cert_file or key_file or ca_file:
            for given, what in ((cert_file, "cert"), (key_file, "key"), (ca_file, "ca")):
                if not given:
                    raise MemphisConnectError(f"Must provide a TLS {what} file")
            tls = TlsOptions(ca_file=ca_file, cert_file=cert_file, key_file=key_file, hostname=websocket.host if websocket else host)
            # checked here, before dialing: a bad file is a MemphisConnectError naming it
            tls = attrs.evolve(tls, context=tls.build_context())
        connection_id = str(uuid.uuid4())
        options: Dict[str, Any] = {
            "name": f"{connection_id}::{username}",
            "tls": tls,
            "connect_timeout": timeout_ms / 1000,
            "reconnect": ReconnectPolicy(enabled=bool(reconnect), max_attempts=max_reconnect, wait=reconnect_interval_ms / 1000),
            "max_block": None if max_block_ms is None else max_block_ms / 1000,
            "ping_interval": ping_interval_ms / 1000,
            "max_pings_outstanding": max_pings_outstanding,
        }
        if websocket is not None:
            server = websocket.url
        elif host.count(":") >= 2 and not host.startswith("["):  # a bare IPv6 address
            server = f"nats://[{host}]:{port}"
        else:
            server = f"nats://{host}:{port}"

        def dial(**auth: Any) -> Connection:
            try:
                return Connection(server, **auth, **options).connect()
            except (NetworkError, AuthorizationError, MemphisTimeoutError) as exc:
                raise MemphisConnectError(f"could not connect to Memphis at {server} as {username!r}: {exc}") from exc

        if connection_token:
            conn = dial(token=connection_token)
        else:
            try:
                conn = dial(user=f"{username}${account_id}", password=password)
            except MemphisConnectError as exc:
                if not isinstance(exc.__cause__, AuthorizationError):
                    raise
                logger.info("user %s$%s refused; retrying with the legacy user %s", username, account_id, username)
                conn = dial(user=username, password=password)
        return cls(conn, username, connection_id)

    def __repr__(self) -> str:
        return f"<Requester user={self.username!r} connection_id={self.connection_id!r}>"

    def close(self, js: JetStream, deadline: Optional[float]) -> None:
        """Give nonblocking produces of ``js`` up to ``_defaults.MEMPHIS_CLOSE_ACK_WAIT`` to be
        acknowledged (at most half the time left before ``deadline``), then close the connection."""
        if self.conn.is_connected() and js.publish_async_pending:
            wait = _defaults.MEMPHIS_CLOSE_ACK_WAIT if deadline is None else min(_defaults.MEMPHIS_CLOSE_ACK_WAIT, (left(deadline) or 0.0) / 2)
            try:
                js.publish_async_complete(timeout=wait)
            except MemphisError:
                logger.warning("closing with %d nonblocking produce(s) unacknowledged", js.publish_async_pending)
        self.conn.close(timeout=None if deadline is None else max(0.5, left(deadline) or 0.0))

    def checked_conn(self) -> Connection:
        """The connection, if it is not closed.

        Raises:
            ConnectionClosedError: the connection is closed.
        """
        conn = self.conn
        if conn.is_closed():
            raise ConnectionClosedError("Connection is dead")
        return conn

    def request(self, subject: str, body: Mapping[str, Any], timeout: float, timeout_retries: int) -> str:
        """Send a control-plane request; re-send it up to ``timeout_retries`` times on timeout.

        Returns:
            The reply as text.

        Raises:
            MemphisValueError: a bad ``timeout_retries``.
            MemphisRequestError: nothing serves ``subject`` (not a Memphis broker).
            RequestTimeout: no reply after every try.
            ConnectionClosedError: the connection is closed.
        """
        check_int(timeout_retries, "timeout_retries", 0)
        conn = self.checked_conn()
        payload = json.dumps(body).encode("utf-8")
        last: Optional[BaseException] = None
        for _ in range(timeout_retries + 1):
            try:
                msg = conn.request(subject, payload, timeout=timeout)
            except RequestTimeout as exc:
                last = exc
                logger.warning("request on %s timed out after %s s; retrying", subject, timeout)
                continue
            except NoRespondersError as exc:
                raise MemphisRequestError(
                    f"no responders on {subject!r}: is this a Memphis broker (not a plain NATS server)?"
                ) from exc
            return msg.payload.decode("utf-8", "replace")
        raise RequestTimeout(
            f"no reply on {subject!r} after {timeout_retries + 1} tries of {timeout} s (timeout)"
        ) from last

    def create(self, kind: str, name: str, station_name: str, fields: Mapping[str, Any], timeout_retries: int) -> Dict[str, Any]:
        """Register a ``"producer"`` or ``"consumer"`` with the broker (§5, §7); return the reply.

        The body is the name, the station, this connection, ``<kind>_type``, ``fields``, then
        the request version, user, app id and SDK language (the official SDK's order).

        Raises:
            MemphisRequestError: the broker refused.
        """
        body = {
            "name": name,
            "station_name": station_name,
            "connection_id": self.connection_id,
            f"{kind}_type": "application",
            **fields,
            "req_version": _defaults.MEMPHIS_REQ_VERSION,
            "username": self.username,
            "app_id": APP_ID,
            "sdk_lang": _defaults.MEMPHIS_SDK_LANG,
        }
        reply = self.request(f"$memphis_{kind}_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        return self.parse_creation_reply(reply, f"creating {kind} {name!r} of station {station_name!r}")

    def destroy(self, kind: str, name: str, station_name: str, timeout_retries: int) -> None:
        """Unregister a ``"producer"`` or ``"consumer"`` (§5.4, §7.4); one already gone is no error.

        Raises:
            MemphisRequestError: the broker refused.
        """
        body = {
            "name": name,
            "station_name": station_name,
            "username": self.username,
            "connection_id": self.connection_id,
            "req_version": _defaults.MEMPHIS_DESTROY_REQ_VERSION,
        }
        self.ask(
            f"$memphis_{kind}_destructions", body, timeout_retries, what=f"destroying {kind} {name!r}",
            ignore="not exist", destroy=True,
        )

    def ask(
        self, subject: str, body: Mapping[str, Any], timeout_retries: int, *, what: str,
        ignore: Optional[str] = None, destroy: bool = False,
    ) -> None:
        """A request whose reply is empty on success, or an error text (see :meth:`raise_for_text`);
        waits ``_defaults.MEMPHIS_CREATE_TIMEOUT`` a try (``MEMPHIS_DESTROY_TIMEOUT`` with ``destroy``).

        Raises:
            MemphisRequestError: the broker refused (naming ``what``).
        """
        timeout = _defaults.MEMPHIS_DESTROY_TIMEOUT if destroy else _defaults.MEMPHIS_CREATE_TIMEOUT
        self.raise_for_text(self.request(subject, body, timeout, timeout_retries), ignore=ignore, what=what)

    @staticmethod
    def raise_for_text(reply: str, *, ignore: Optional[str] = None, what: str) -> None:
        """Raise MemphisRequestError for a non-empty error reply, unless it contains ``ignore``."""
        if reply and (ignore is None or ignore not in reply):
            raise MemphisRequestError(f"{what}: {reply}")

    @staticmethod
    def parse_creation_reply(reply: str, what: str) -> Dict[str, Any]:
        """A creation reply: JSON (1.x brokers), ``""`` (old brokers: success) or an error text.

        Raises:
            MemphisRequestError: an error text, or a JSON reply with an ``error``.
        """
        if reply == "":
            return {}
        try:
            data = json.loads(reply)
        except ValueError:
            raise MemphisRequestError(f"{what}: {reply}") from None
        if not isinstance(data, dict):
            raise MemphisRequestError(f"{what}: unexpected reply {reply[:200]!r}")
        error = data.get("error")
        if error:
            raise MemphisRequestError(f"{what}: {error}")
        return data

    def publish_json(self, subject: str, body: Mapping[str, Any]) -> None:
        """Publish ``body`` as JSON to ``subject`` (no reply expected)."""
        self.checked_conn().publish(subject, json.dumps(body).encode("utf-8"))

    def notify(self, title: str, msg: str, failed_msg: str, not_type: str) -> None:
        """Publish an alert to ``$memphis_notifications`` (§11.3).

        Raises:
            MemphisValueError: an argument is not a str (nothing was sent).
        """
        for value, what in ((title, "title"), (msg, "msg"), (failed_msg, "failed_msg"), (not_type, "not_type")):
            check_str(value, what)
        self.publish_json("$memphis_notifications", {"title": title, "msg": msg, "type": not_type, "code": failed_msg})
