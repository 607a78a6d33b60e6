"""The Memphis client: ``connect()``, the ``Memphis`` connection object and its control-plane requests.

``Memphis`` mirrors the official async SDK (memphis-py 1.3.1) minus ``await``: same method
names, parameter names, units (``*_ms``, ``*_sec``) and defaults. Underneath is one thread-safe
:class:`~memphis_sync.nats.connection.Connection` and one :class:`~memphis_sync.jetstream.JetStream`
context; management calls are NATS requests to ``$memphis_*`` subjects with JSON bodies
(wire contract §3), retried ``timeout_retries`` times when they time out.

Share one ``Memphis`` between threads. Producers are thread-safe too; give each consuming
thread its own consumer (or share one through ``consume()``).

Per station the client keeps a small state (partition list, schema, functions map, the
"schema failures to DLS" flag) fed by creation replies and by the broker's update subjects;
producers and consumers read it on every call, so updates apply live.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

import attrs

from .. import _defaults
from ..nats.reconnect import ReconnectPolicy
from .._timeouts import deadline_after, left
from ..nats.connection import Connection, TlsOptions
from ..errors import (
    AuthorizationError,
    ConnectionClosedError,
    MemphisConnectError,
    MemphisError,
    MemphisRequestError,
    MemphisSchemaError,
    MemphisTimeoutError,
    MemphisValueError,
    NetworkError,
    NoRespondersError,
    RequestTimeout,
)
from ..jetstream.context import JetStream
from .message import HeadersArg, Message, to_wire_headers
from .producer import Producer
from ..nats.protocol.wire import Msg
from .station import Retention, Station, Storage, check_int, enum_value, internal_name, validate_name

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

    from .consumer import Consumer
    from ..jetstream.types import PubAck

__all__ = ["Memphis", "connect", "APP_ID"]

logger = logging.getLogger("memphis_sync.client")  # the name users configure (kept from the flat layout)

#: One id per process, sent as ``app_id`` in creation requests (memphis-py does the same).
APP_ID = str(uuid.uuid4())

_ONE_METHOD = "You have to connect with one of the following methods: connection token / password"
_SDK_CLIENTS_UPDATES = "$memphis_sdk_clients_updates"


@attrs.define(eq=False)
class _StationState:
    """What this connection knows about one station (shared by its producers and consumers)."""

    internal_name: str
    partitions: Optional[List[int]] = None
    schema: Any = None
    schemaverse_to_dls: bool = False
    functions: Dict[int, int] = attrs.field(factory=dict)
    station_version: int = 0
    refs: int = 0
    subs: List[Any] = attrs.field(factory=list)


def _normalize_host(host: str) -> str:
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            return host[len(prefix):]
    return host


class Memphis:
    """A connection to a Memphis broker. Thread-safe; use one per process.

    Create it with :func:`connect` (or ``Memphis().connect(...)``). Use it as a context manager
    to close it on exit.
    """

    MAX_BATCH_SIZE = _defaults.MEMPHIS_MAX_BATCH_SIZE
    MEMPHIS_GLOBAL_ACCOUNT_NAME = "$memphis"
    SEED = _defaults.MEMPHIS_PARTITION_SEED

    def __init__(self) -> None:
        self.host = ""
        self.port = _defaults.MEMPHIS_PORT
        self.username = ""
        self.account_id = 1
        self.connection_id = ""
        self._conn: Optional[Connection] = None
        self._js: JetStream = None  # type: ignore[assignment]
        self._lock = threading.RLock()
        self._stations: Dict[str, _StationState] = {}
        self._producers: Dict[str, Producer] = {}
        self._consumers: Dict[str, "Consumer"] = {}
        self._creating: Dict[str, threading.Lock] = {}
        self._send_notification = False
        self._closed = False

    def __repr__(self) -> str:
        state = "connected" if self.is_connected() else ("closed" if self._closed else "not connected")
        return f"<Memphis {self.host}:{self.port} user={self.username!r} {state}>"

    # -- connecting ----------------------------------------------------------------------

    def connect(
        self,
        host: str,
        username: str,
        account_id: int = 1,
        connection_token: str = "",
        password: str = "",
        port: int = _defaults.MEMPHIS_PORT,
        reconnect: bool = True,
        max_reconnect: int = _defaults.MAX_RECONNECT,
        reconnect_interval_ms: int = 1500,
        timeout_ms: int = 2000,
        cert_file: str = "",
        key_file: str = "",
        ca_file: str = "",
        *,
        max_pending_acks: int = _defaults.JS_PUB_MAX_PENDING,
        max_block_ms: Optional[float] = _defaults.MAX_BLOCK * 1000,
        ping_interval_ms: float = _defaults.PING_INTERVAL * 1000,
        max_pings_outstanding: int = _defaults.MAX_PINGS_OUTSTANDING,
    ) -> "Memphis":
        """Connect to a Memphis broker (wire contract §1).

        Args:
            host: broker host; a leading ``http://``/``https://`` is ignored.
            username: the Memphis user (an application or root user).
            account_id: tenant id; in password mode the NATS user is ``username$account_id``
                (brokers that only know the bare username are retried with it).
            connection_token: token authentication (exclusive with ``password``).
            password: password authentication (exclusive with ``connection_token``).
            port: broker client port (6666).
            reconnect: reconnect after losing the connection.
            max_reconnect: reconnect attempts before giving up; -1 = forever. Honoured as given:
                unlike the official SDKs, values above 9 are not silently reduced to 9.
            reconnect_interval_ms: wait between reconnect attempts.
            timeout_ms: TCP connect plus handshake timeout.
            cert_file / key_file / ca_file: mutual TLS; all three or none.
            max_pending_acks: nonblocking produces in flight (unacknowledged) on this
                connection before ``produce(nonblocking=True)`` waits for room (4000, as the
                SDKs' JetStream). Keyword only, as the options below (not in the SDK).
            max_block_ms: longest a produce waits for room (a full ack window, or a stalled
                link that takes no bytes), then :class:`~memphis_sync.errors.MaxBlockTimeout`
                is raised with nothing sent (60000, kafka-python's ``max_block_ms``; None = no
                limit).
            ping_interval_ms / max_pings_outstanding: liveness check: a PING every so often;
                this many unanswered and the connection is stale and reconnects (2 minutes,
                2: the NATS defaults). Lower them to find a dead link sooner.

        Returns:
            ``self``, connected.

        Raises:
            MemphisConnectError: bad credentials choice, TLS files, or the broker could not be
                reached / refused us (the cause is chained).
            MemphisValueError: a bad numeric argument.
        """
        if self._conn is not None:
            raise MemphisConnectError("this Memphis object is already connected; create a new one")
        if not isinstance(host, str) or not host:
            raise MemphisConnectError(f"host must be a non-empty str, got {host!r}")
        if _normalize_host(host).count(":") == 1:
            raise MemphisConnectError(f"host must not include a port ({host!r}); pass port= instead")
        if not isinstance(username, str) or not username:
            raise MemphisConnectError(f"username must be a non-empty str, got {username!r}")
        if (connection_token != "" and password != "") or (connection_token == "" and password == ""):
            raise MemphisConnectError(_ONE_METHOD)
        check_int(account_id, "account_id", 0)
        check_int(port, "port", 1, 65535)
        check_int(max_reconnect, "max_reconnect", -1)
        check_int(max_pending_acks, "max_pending_acks", 1)
        check_int(max_pings_outstanding, "max_pings_outstanding", 1)
        if max_block_ms is not None and (isinstance(max_block_ms, bool) or not isinstance(max_block_ms, (int, float)) or not max_block_ms >= 0):
            raise MemphisValueError(f"max_block_ms must be a number of milliseconds >= 0 or None, got {max_block_ms!r}")
        if isinstance(ping_interval_ms, bool) or not isinstance(ping_interval_ms, (int, float)) or not 0 < ping_interval_ms < float("inf"):
            raise MemphisValueError(f"ping_interval_ms must be a number of milliseconds > 0, got {ping_interval_ms!r}")
        for what, value in (("reconnect_interval_ms", reconnect_interval_ms), ("timeout_ms", timeout_ms)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (what == "timeout_ms" and value == 0):
                raise MemphisValueError(f"{what} must be a number of milliseconds {'> 0' if what == 'timeout_ms' else '>= 0'}, got {value!r}")
        tls = None
        if cert_file or key_file or ca_file:
            if not cert_file:
                raise MemphisConnectError("Must provide a TLS cert file")
            if not key_file:
                raise MemphisConnectError("Must provide a TLS key file")
            if not ca_file:
                raise MemphisConnectError("Must provide a TLS ca file")
            tls = TlsOptions(ca_file=ca_file, cert_file=cert_file, key_file=key_file, hostname=_normalize_host(host))
        self.host = _normalize_host(host)
        self.port = port
        self.username = username
        self.account_id = account_id
        self.connection_id = str(uuid.uuid4())
        policy = ReconnectPolicy(enabled=bool(reconnect), max_attempts=max_reconnect, wait=reconnect_interval_ms / 1000)
        options: Dict[str, Any] = {
            "name": f"{self.connection_id}::{username}",
            "tls": tls,
            "connect_timeout": timeout_ms / 1000,
            "reconnect": policy,
            "max_block": None if max_block_ms is None else max_block_ms / 1000,
            "ping_interval": ping_interval_ms / 1000,
            "max_pings_outstanding": max_pings_outstanding,
        }
        if self.host.count(":") >= 2 and not self.host.startswith("["):  # a bare IPv6 address
            server = f"nats://[{self.host}]:{port}"
        else:
            server = f"nats://{self.host}:{port}"
        if connection_token:
            conn = self._open(server, token=connection_token, **options)
        else:
            try:
                conn = self._open(server, user=f"{username}${account_id}", password=password, **options)
            except MemphisConnectError as exc:
                if not isinstance(exc.__cause__, AuthorizationError):
                    raise
                # brokers from before accounts know the bare username (§1.4)
                logger.info("user %s$%s refused; retrying with the legacy user %s", username, account_id, username)
                conn = self._open(server, user=username, password=password, **options)
        self._conn = conn
        self._js = JetStream(conn, max_pending=max_pending_acks)
        conn.subscribe_internal(_SDK_CLIENTS_UPDATES, self._on_clients_update)
        return self

    def _open(self, server: str, **options: Any) -> Connection:
        try:
            return Connection(server, **options).connect()
        except (NetworkError, AuthorizationError, MemphisTimeoutError) as exc:
            raise MemphisConnectError(f"could not connect to Memphis at {server} as {self.username!r}: {exc}") from exc

    def is_connected(self) -> bool:
        """True while the connection to the broker is up (False while reconnecting or closed)."""
        return self._conn is not None and self._conn.is_connected()

    def close(self, timeout: Optional[float] = _defaults.MEMPHIS_CLOSE_ACK_WAIT + _defaults.CLOSE_TIMEOUT) -> None:
        """Stop every consumer loop, wait for nonblocking produces to be acknowledged, and
        close the connection, all within ``timeout`` seconds (10 s; None = no limit).
        Idempotent.

        Nonblocking produces get up to ``_defaults.MEMPHIS_CLOSE_ACK_WAIT`` (5 s) of it; those
        still unacknowledged then are logged with their count (their futures fail with
        ``ConnectionClosedError``). Producers and consumers are not destroyed on the broker
        (as with the SDK): consumer groups keep their position.

        Raises:
            MemphisValueError: a bad ``timeout`` (nothing was closed).
        """
        deadline = deadline_after(timeout, error=MemphisValueError)
        with self._lock:
            consumers = list(self._consumers.values())
            self._closed = True
        for consumer in consumers:
            consumer.stop_consuming(timeout=min(left(deadline) or 10.0, 10.0))
        if self._conn is not None:
            if self._conn.is_connected() and self._js.publish_async_pending:
                # give nonblocking produces a moment to be acknowledged (graceful shutdown)
                wait = _defaults.MEMPHIS_CLOSE_ACK_WAIT if deadline is None else min(_defaults.MEMPHIS_CLOSE_ACK_WAIT, (left(deadline) or 0.0) / 2)
                try:
                    self._js.publish_async_complete(timeout=wait)
                except MemphisError:
                    logger.warning("closing with %d nonblocking produce(s) unacknowledged", self._js.publish_async_pending)
            self._conn.close(timeout=None if deadline is None else max(0.5, left(deadline) or 0.0))
        with self._lock:
            self._producers.clear()
            self._consumers.clear()
            self._stations.clear()

    def __enter__(self) -> "Memphis":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def connection(self) -> Connection:
        """The underlying NATS :class:`~memphis_sync.nats.connection.Connection`."""
        return self._checked_conn()

    def _checked_conn(self) -> Connection:
        conn = self._conn
        if conn is None:
            raise ConnectionClosedError("Connection is dead" if self._closed else "not connected: call connect() first")
        if conn.is_closed():
            raise ConnectionClosedError("Connection is dead")
        return conn

    # -- control-plane requests ----------------------------------------------------------

    def _request(self, subject: str, body: Mapping[str, Any], timeout: float, timeout_retries: int) -> str:
        """Send a control-plane request; re-send it up to ``timeout_retries`` times on timeout.

        Returns the reply as text. Raises MemphisRequestError when nothing serves ``subject``.
        """
        check_int(timeout_retries, "timeout_retries", 0)
        conn = self._checked_conn()
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

    @staticmethod
    def _raise_for_text(reply: str, *, ignore: str, what: str) -> None:
        if reply and ignore not in reply:
            raise MemphisRequestError(f"{what}: {reply}")

    @staticmethod
    def _parse_creation_reply(reply: str, what: str) -> Dict[str, Any]:
        """A creation reply: JSON (1.x brokers), ``""`` (old brokers: success) or an error text."""
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

    def _publish_json(self, subject: str, body: Mapping[str, Any]) -> None:
        self._checked_conn().publish(subject, json.dumps(body).encode("utf-8"))

    # -- stations ------------------------------------------------------------------------

    def station(
        self,
        name: str,
        retention_type: Union[Retention, str] = Retention.MAX_MESSAGE_AGE_SECONDS,
        retention_value: int = 3600,
        storage_type: Union[Storage, str] = Storage.DISK,
        replicas: int = 1,
        idempotency_window_ms: int = 120000,
        schema_name: str = "",
        send_poison_msg_to_dls: bool = True,
        send_schema_failed_msg_to_dls: bool = True,
        tiered_storage_enabled: bool = False,
        partitions_number: int = 1,
        dls_station: str = "",
        timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES,
    ) -> Station:
        """Create a station, or get an existing one (§4; an existing station is not changed).

        Args:
            name: station name (lower-cased by the broker; letters, digits, ``_ - .``).
            retention_type: :class:`Retention` (or its value): age in seconds, message count,
                bytes, or ack-based.
            retention_value: the limit in the retention type's unit (>= 0; 0 = broker default).
            storage_type: :class:`Storage`: ``DISK`` (``"file"``) or ``MEMORY``.
            replicas: 1..5 (cluster mode).
            idempotency_window_ms: ``msg-id`` de-duplication window, at most 24 h.
            schema_name: a schema to attach ("" = none).
            send_poison_msg_to_dls / send_schema_failed_msg_to_dls: dead-letter settings.
            tiered_storage_enabled: cloud tiered storage flag.
            partitions_number: number of partitions (>= 1; 0 is taken as 1 like the SDK).
            dls_station: station receiving this one's dead letters ("" = none).
            timeout_retries: re-sends when the broker does not answer in 20 s.

        Raises:
            MemphisValueError: a bad argument (nothing was sent).
            MemphisRequestError: the broker refused.
        """
        lowered = validate_name(name, "Station")
        retention = enum_value(Retention, retention_type, "retention_type")
        storage = enum_value(Storage, storage_type, "storage_type")
        check_int(retention_value, "retention_value", 0)
        check_int(replicas, "replicas", 1, _defaults.MEMPHIS_MAX_REPLICAS)
        check_int(idempotency_window_ms, "idempotency_window_ms", 0, _defaults.MEMPHIS_MAX_IDEMPOTENCY_WINDOW_MS)
        check_int(partitions_number, "partitions_number", 0)
        if not isinstance(schema_name, str):
            raise MemphisValueError(f"schema_name must be a str, got {schema_name!r}")
        if schema_name:
            validate_name(schema_name, "Schema")
        if not isinstance(dls_station, str):
            raise MemphisValueError(f"dls_station must be a str, got {dls_station!r}")
        if dls_station:
            validate_name(dls_station, "Station")
        for what, flag in (
            ("send_poison_msg_to_dls", send_poison_msg_to_dls),
            ("send_schema_failed_msg_to_dls", send_schema_failed_msg_to_dls),
            ("tiered_storage_enabled", tiered_storage_enabled),
        ):
            if not isinstance(flag, bool):
                raise MemphisValueError(f"{what} must be a bool, got {flag!r}")
        self._checked_conn()
        body = {
            "name": name,
            "retention_type": retention.value,
            "retention_value": retention_value,
            "storage_type": storage.value,
            "replicas": replicas,
            "idempotency_window_in_ms": idempotency_window_ms,
            "schema_name": schema_name,
            "dls_configuration": {"poison": send_poison_msg_to_dls, "Schemaverse": send_schema_failed_msg_to_dls},
            "username": self.username,
            "tiered_storage_enabled": tiered_storage_enabled,
            "partitions_number": partitions_number or 1,
            "dls_station": dls_station,
        }
        reply = self._request("$memphis_station_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        self._raise_for_text(reply, ignore="already exist", what=f"creating station {name!r}")
        return Station(lowered, self)

    def _forget_station(self, internal: str) -> None:
        """Drop local producers/consumers/state of a station (after destroy or ``remove_station``)."""
        with self._lock:
            producers = [k for k in self._producers if k.startswith(internal + "_")]
            consumers = [(k, c) for k, c in self._consumers.items() if k.startswith(internal + "_")]
            for key in producers:
                del self._producers[key]
            for key, _ in consumers:
                del self._consumers[key]
            state = self._stations.pop(internal, None)
        for _, consumer in consumers:
            consumer._shutdown_local()
        if state is not None:
            self._unsubscribe_station(state)

    # -- station state -------------------------------------------------------------------

    def _station_ref(self, internal: str, reply: Mapping[str, Any]) -> _StationState:
        """Update the station's state from a creation reply and take a reference on it."""
        partitions = (reply.get("partitions_update") or {}).get("partitions_list")
        schema_update = reply.get("schema_update") or {}
        with self._lock:
            state = self._stations.get(internal)
            if state is None:
                state = self._stations[internal] = _StationState(internal)
            state.refs += 1
            state.partitions = [int(p) for p in partitions] if partitions else None
            if "schemaverse_to_dls" in reply:
                state.schemaverse_to_dls = bool(reply.get("schemaverse_to_dls"))
            if "send_notification" in reply:
                self._send_notification = bool(reply.get("send_notification"))
            state.station_version = int(reply.get("station_version") or 0)
            functions = reply.get("station_partitions_first_functions") or {}
            state.functions = {int(k): int(v) for k, v in functions.items()}
            need_subs = not state.subs
        if schema_update:
            try:
                self._apply_schema(state, schema_update)
            except BaseException:
                self._station_unref(state)
                raise
        if need_subs:
            conn = self._checked_conn()
            subs = [conn.subscribe_internal(f"$memphis_schema_updates_{internal}", lambda msg: self._on_schema_update(state, msg))]
            if state.station_version >= 2:
                subs.append(conn.subscribe_internal(f"$memphis_functions_updates_{internal}", lambda msg: self._on_functions_update(state, msg)))
            with self._lock:
                if state.subs:
                    extra = subs
                else:
                    state.subs, extra = subs, []
            for sub in extra:
                sub.unsubscribe()
        return state

    def _station_unref(self, state: _StationState) -> None:
        with self._lock:
            state.refs -= 1
            if state.refs > 0 or self._stations.get(state.internal_name) is not state:
                return
            del self._stations[state.internal_name]
        self._unsubscribe_station(state)

    @staticmethod
    def _unsubscribe_station(state: _StationState) -> None:
        subs, state.subs = state.subs, []
        for sub in subs:
            try:
                sub.unsubscribe()
            except MemphisError:
                logger.debug("unsubscribe of station updates failed", exc_info=True)

    def _apply_schema(self, state: _StationState, init: Mapping[str, Any]) -> None:
        if not init or not init.get("schema_name"):
            state.schema = None
            return
        from .schemaverse import Schema  # the optional validators are imported lazily

        try:
            state.schema = Schema.from_update(init)
        except MemphisSchemaError:
            logger.exception("cannot use schema %r of station %s", init.get("schema_name"), state.internal_name)
            raise

    def _schema_of(self, internal: str) -> Any:
        state = self._stations.get(internal)
        return state.schema if state is not None else None

    # handlers below run on the reader thread: parse, store, never block

    def _on_clients_update(self, msg: Msg) -> None:
        try:
            update = json.loads(msg.payload)
            kind = update.get("type")
            station = update.get("station_name") or ""
        except (ValueError, AttributeError):
            logger.warning("ignoring a malformed %s message: %r", _SDK_CLIENTS_UPDATES, msg.payload[:200])
            return
        if kind == "send_notification":
            self._send_notification = bool(update.get("update"))
        elif kind == "schemaverse_to_dls":
            state = self._stations.get(station)
            if state is not None:
                state.schemaverse_to_dls = bool(update.get("update"))
        elif kind == "remove_station":
            threading.Thread(target=self._forget_station, args=(station,), name="memphis-sync-remove-station", daemon=True).start()

    def _on_schema_update(self, state: _StationState, msg: Msg) -> None:
        try:
            update = json.loads(msg.payload)
            self._apply_schema(state, update.get("init") or {})
        except Exception:
            logger.exception("bad schema update for station %s", state.internal_name)

    def _on_functions_update(self, state: _StationState, msg: Msg) -> None:
        try:
            update = json.loads(msg.payload)
            state.functions = {int(k): int(v) for k, v in (update.get("functions") or {}).items()}
        except Exception:
            logger.exception("bad functions update for station %s", state.internal_name)

    def _schema_failure(self, producer: Producer, message: Any, headers: HeadersArg, error: MemphisSchemaError) -> None:
        """Report a schema-validation failure to the schemaverse DLS and notifications (§6.6)."""
        state = producer._state
        if state is None or state.schema is None:
            return
        try:
            text = _message_text(message)
            if state.schemaverse_to_dls:
                wire = to_wire_headers(headers, producer._memphis_headers(None))
                self._publish_json(
                    "$memphis_schemaverse_dls",
                    {
                        "station_name": producer.internal_station_name,
                        "producer": {"name": producer.producer_name, "connection_id": self.connection_id},
                        "creation_unix": int(time.time()),
                        "message": {"data": text.encode("utf-8").hex(), "headers": {k: wire[k] for k in wire}},
                        "validation_error": str(error),
                    },
                )
                if self._send_notification:
                    self.send_notification(
                        "Schema validation has failed",
                        f"Station: {producer.station_name}\nProducer: {producer.producer_name}\nError:{error}",
                        text,
                        "schema_validation_fail_alert",
                    )
        except MemphisError:
            logger.warning("could not report a schema failure to the DLS", exc_info=True)

    def unset_cached_producer_station(self, station_name: str) -> None:
        """Forget this connection's cached producers of a station (they are not destroyed)."""
        internal = internal_name(station_name)
        with self._lock:
            for key in [k for k, p in self._producers.items() if p.internal_station_name == internal]:
                del self._producers[key]

    def unset_cached_consumer_station(self, station_name: str) -> None:
        """Forget this connection's cached consumers of a station (they are not destroyed)."""
        internal = internal_name(station_name)
        with self._lock:
            for key in [k for k, c in self._consumers.items() if c.internal_station_name == internal]:
                del self._consumers[key]

    def schema_name_validation(self, schema_name: str) -> None:
        """Check a schema name with the SDK's client-side rules.

        Raises:
            MemphisValueError: empty, over 128 characters, bad characters or ends.
        """
        from .schemaverse import validate_schema_name

        validate_schema_name(schema_name)

    def send_notification(self, title: str, msg: str, failed_msg: str, not_type: str) -> None:
        """Publish an alert to ``$memphis_notifications`` (§11.3)."""
        self._publish_json("$memphis_notifications", {"title": title, "msg": msg, "type": not_type, "code": failed_msg})

    # -- producers -----------------------------------------------------------------------

    def producer(
        self,
        station_name: Union[str, List[str]],
        producer_name: str,
        generate_random_suffix: bool = False,
        timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES,
    ) -> Producer:
        """Create a producer (or return this connection's cached one of that name and station).

        Args:
            station_name: a station name, or a list of them (a multi-station producer).
            producer_name: the producer's name (letters, digits, ``_ - .``).
            generate_random_suffix: deprecated: append ``_<8 hex>`` to the name.
            timeout_retries: re-sends when the broker does not answer in 20 s.

        Raises:
            MemphisValueError: a bad name (nothing was sent).
            MemphisRequestError: the broker refused.
        """
        real_name = validate_name(producer_name, "Producer")
        if isinstance(station_name, (list, tuple)):
            if not station_name:
                raise MemphisValueError("station_name list can not be empty")
            for station in station_name:
                validate_name(station, "Station")
            self._checked_conn()
            return Producer(producer_name.lower(), list(station_name), real_name, self)
        validate_name(station_name, "Station")
        if generate_random_suffix:
            warnings.warn("Deprecation warning: generate_random_suffix will be stopped to be supported after November 1'st, 2023.", DeprecationWarning, stacklevel=2)
            producer_name = f"{producer_name}_{secrets.token_hex(4)}"
        key = internal_name(station_name) + "_" + real_name
        with self._lock:
            cached = self._producers.get(key)
        if cached is not None:
            return cached
        return self._create_producer(station_name, producer_name, real_name, key, timeout_retries)

    def _creation_lock(self, key: str) -> threading.Lock:
        with self._lock:
            lock = self._creating.get(key)
            if lock is None:
                lock = self._creating[key] = threading.Lock()
            return lock

    def _create_producer(self, station_name: str, producer_name: str, real_name: str, key: str, timeout_retries: int) -> Producer:
        # one creation per (station, name) at a time: threads asking together get one producer
        with self._creation_lock(key):
            with self._lock:
                cached = self._producers.get(key)
            if cached is not None:
                return cached
            return self._register_producer(station_name, producer_name, real_name, key, timeout_retries)

    def _register_producer(self, station_name: str, producer_name: str, real_name: str, key: str, timeout_retries: int) -> Producer:
        self._checked_conn()
        body = {
            "name": producer_name,
            "station_name": station_name,
            "connection_id": self.connection_id,
            "producer_type": "application",
            "req_version": _defaults.MEMPHIS_REQ_VERSION,
            "username": self.username,
            "app_id": APP_ID,
            "sdk_lang": _defaults.MEMPHIS_SDK_LANG,
        }
        reply = self._request("$memphis_producer_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        data = self._parse_creation_reply(reply, f"creating producer {producer_name!r} of station {station_name!r}")
        state = self._station_ref(internal_name(station_name), data)
        producer = Producer(producer_name.lower(), station_name, real_name, self, state)
        with self._lock:
            existing = self._producers.setdefault(key, producer)
        return existing

    def _cached_producer(self, station_name: str, real_name: str) -> Producer:
        key = internal_name(station_name) + "_" + real_name
        with self._lock:
            cached = self._producers.get(key)
        if cached is not None:
            return cached
        return self._create_producer(station_name, real_name, real_name, key, _defaults.MEMPHIS_TIMEOUT_RETRIES)

    def _forget_producer(self, producer: Producer) -> None:
        key = producer.internal_station_name + "_" + producer.real_name
        with self._lock:
            if self._producers.get(key) is producer:
                del self._producers[key]
        if producer._state is not None:
            self._station_unref(producer._state)

    def produce(
        self,
        station_name: Union[str, List[str]],
        producer_name: str,
        message: Any,
        generate_random_suffix: bool = False,
        ack_wait_sec: float = 15,
        headers: HeadersArg = None,
        async_produce: bool = False,
        msg_id: Optional[str] = None,
        producer_partition_key: Optional[str] = None,
        producer_partition_number: int = -1,
        nonblocking: bool = False,
    ) -> Union["PubAck", "Future[PubAck]", None]:
        """Produce one message through this connection's producer of that name (created on first use).

        Same arguments as :meth:`Producer.produce`; ``nonblocking`` is an addition (the SDK's
        README shows it, its code lacks it).
        """
        producer = self.producer(station_name, producer_name, generate_random_suffix)
        return producer.produce(
            message, ack_wait_sec=ack_wait_sec, headers=headers, nonblocking=nonblocking or async_produce,
            msg_id=msg_id, producer_partition_key=producer_partition_key,
            producer_partition_number=producer_partition_number,
        )

    # -- consumers -----------------------------------------------------------------------

    def consumer(
        self,
        station_name: str,
        consumer_name: str,
        consumer_group: str = "",
        pull_interval_ms: int = 1000,
        batch_size: int = 10,
        batch_max_time_to_wait_ms: int = 100,
        max_ack_time_ms: int = 30000,
        max_msg_deliveries: int = 2,
        generate_random_suffix: bool = False,
        start_consume_from_sequence: int = 1,
        last_messages: int = -1,
        timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES,
    ) -> "Consumer":
        """Create a consumer (§7): join ``consumer_group`` (default: the consumer's name).

        Args:
            station_name: the station (created by the broker if missing).
            consumer_name: the consumer's name.
            consumer_group: the group; members share the messages, each group gets all of them.
            pull_interval_ms: pause of ``consume()`` after a batch that did not fill up.
            batch_size: messages per fetch, 1..5000.
            batch_max_time_to_wait_ms: longest wait of one fetch (at least 100 ms).
            max_ack_time_ms: a message not acked within this is redelivered.
            max_msg_deliveries: deliveries before a message is dead-lettered, 1..10.
            generate_random_suffix: deprecated: append ``_<8 hex>`` to the name.
            start_consume_from_sequence: first stream sequence for a new group (>= 1).
            last_messages: start a new group with the last N messages (-1 = off).
            timeout_retries: re-sends when the broker does not answer in 20 s.

        Raises:
            MemphisValueError: a bad argument (nothing was sent).
            MemphisRequestError: the broker refused.
        """
        from .consumer import Consumer

        validate_name(station_name, "Station")
        validate_name(consumer_name, "Consumer")
        if not isinstance(consumer_group, str):
            raise MemphisValueError(f"consumer_group must be a str, got {consumer_group!r}")
        if consumer_group:
            validate_name(consumer_group, "Consumer")
        check_batch_size(batch_size)
        check_int(pull_interval_ms, "pull_interval_ms", 0)
        check_int(batch_max_time_to_wait_ms, "batch_max_time_to_wait_ms", 0)
        check_int(max_ack_time_ms, "max_ack_time_ms", 1)
        check_int(max_msg_deliveries, "max_msg_deliveries", 1, _defaults.MEMPHIS_MAX_MSG_DELIVERIES)
        if type(start_consume_from_sequence) is not int or start_consume_from_sequence < 1:
            raise MemphisValueError(f"start_consume_from_sequence has to be a positive number, got {start_consume_from_sequence!r}")
        if type(last_messages) is not int or last_messages < -1:
            raise MemphisValueError(f"min value for last_messages is -1, got {last_messages!r}")
        if start_consume_from_sequence > 1 and last_messages > -1:
            raise MemphisValueError("Consumer creation options can't contain both start_consume_from_sequence and last_messages")
        real_name = consumer_name.lower()
        if generate_random_suffix:
            warnings.warn("Deprecation warning: generate_random_suffix will be stopped to be supported after November 1'st, 2023.", DeprecationWarning, stacklevel=2)
            consumer_name = f"{consumer_name}_{secrets.token_hex(4)}"
        self._checked_conn()
        body = {
            "name": consumer_name,
            "station_name": station_name,
            "connection_id": self.connection_id,
            "consumer_type": "application",
            "consumers_group": consumer_group,
            "max_ack_time_ms": max_ack_time_ms,
            "max_msg_deliveries": max_msg_deliveries,
            "start_consume_from_sequence": start_consume_from_sequence,
            "last_messages": last_messages,
            "req_version": _defaults.MEMPHIS_REQ_VERSION,
            "username": self.username,
            "app_id": APP_ID,
            "sdk_lang": _defaults.MEMPHIS_SDK_LANG,
        }
        reply = self._request("$memphis_consumer_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        data = self._parse_creation_reply(reply, f"creating consumer {consumer_name!r} of station {station_name!r}")
        state = self._station_ref(internal_name(station_name), data)
        try:
            consumer = Consumer(
                self, state, station_name=station_name, consumer_name=consumer_name.lower(), real_name=real_name,
                consumer_group=(consumer_group or consumer_name).lower(), pull_interval_ms=pull_interval_ms,
                batch_size=batch_size, batch_max_time_to_wait_ms=batch_max_time_to_wait_ms,
                max_ack_time_ms=max_ack_time_ms, max_msg_deliveries=max_msg_deliveries,
                start_consume_from_sequence=start_consume_from_sequence, last_messages=last_messages,
            )
        except BaseException:
            self._station_unref(state)
            raise
        with self._lock:
            self._consumers[internal_name(station_name) + "_" + real_name] = consumer
        return consumer

    def _forget_consumer(self, consumer: "Consumer") -> None:
        key = consumer.internal_station_name + "_" + consumer.real_name
        with self._lock:
            if self._consumers.get(key) is consumer:
                del self._consumers[key]
        self._station_unref(consumer._state)

    def fetch_messages(
        self,
        station_name: str,
        consumer_name: str,
        consumer_group: str = "",
        batch_size: int = 10,
        batch_max_time_to_wait_ms: int = 100,
        max_ack_time_ms: int = 30000,
        max_msg_deliveries: int = 2,
        generate_random_suffix: bool = False,
        start_consume_from_sequence: int = 1,
        last_messages: int = -1,
        consumer_partition_key: Optional[str] = None,
        consumer_partition_number: int = -1,
        prefetch: bool = False,
    ) -> List[Message]:
        """Fetch one batch through this connection's consumer of that name (created on first use).

        Raises:
            MemphisValueError / MemphisRequestError: as :meth:`consumer` and :meth:`Consumer.fetch`.
        """
        if self._conn is None or self._conn.is_closed():
            raise ConnectionClosedError("Cant fetch messages without being connected!")
        check_batch_size(batch_size)
        key = internal_name(station_name) + "_" + str(consumer_name).lower() if isinstance(station_name, str) else ""
        with self._lock:
            consumer = self._consumers.get(key)
        if consumer is None:
            consumer = self.consumer(
                station_name, consumer_name, consumer_group=consumer_group, batch_size=batch_size,
                batch_max_time_to_wait_ms=batch_max_time_to_wait_ms, max_ack_time_ms=max_ack_time_ms,
                max_msg_deliveries=max_msg_deliveries, generate_random_suffix=generate_random_suffix,
                start_consume_from_sequence=start_consume_from_sequence, last_messages=last_messages,
            )
        return consumer.fetch(
            batch_size, consumer_partition_key=consumer_partition_key,
            consumer_partition_number=consumer_partition_number, prefetch=prefetch,
        )

    # -- schemas -------------------------------------------------------------------------

    def create_schema(self, schema_name: str, schema_type: str, schema_path: str, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Create a schema (or a new version of it) from a file (§10.5).

        Raises:
            MemphisValueError: a bad name or type, or the file cannot be read.
            MemphisRequestError: the broker refused the schema.
        """
        from .schemaverse import SCHEMA_TYPES, validate_schema_name

        validate_schema_name(schema_name)
        if schema_type not in SCHEMA_TYPES:
            raise MemphisValueError(f"schema type not supported: {schema_type!r}; use one of {', '.join(SCHEMA_TYPES)}")
        try:
            with open(schema_path, encoding="utf-8") as handle:
                content = handle.read()
        except OSError as exc:
            raise MemphisValueError(f"cannot read schema file {schema_path!r}: {exc}") from exc
        body = {
            "name": schema_name,
            "type": schema_type,
            "created_by_username": self.username,
            "schema_content": content,
            "message_struct_name": "",
        }
        reply = self._request("$memphis_schema_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        try:
            error = (json.loads(reply) or {}).get("error", "") if reply else ""
        except (ValueError, AttributeError):
            error = reply
        if error and "already exists" not in error:
            raise MemphisRequestError(f"creating schema {schema_name!r}: {error}")

    def enforce_schema(self, name: str, station_name: str, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Attach schema ``name`` to a station (§10.4); its producers validate from then on.

        Raises:
            MemphisValueError: an empty name.
            MemphisRequestError: the broker refused (missing station or schema).
        """
        if not name or not station_name:
            raise MemphisValueError("name and station name can not be empty")
        body = {"name": name, "station_name": station_name, "username": self.username}
        reply = self._request("$memphis_schema_attachments", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        if reply:
            raise MemphisRequestError(f"attaching schema {name!r} to station {station_name!r}: {reply}")

    def attach_schema(self, name: str, station_name: str) -> None:
        """Deprecated alias of :meth:`enforce_schema`."""
        warnings.warn("Deprecation warning: attach_schema is deprecated, use enforce_schema instead.", DeprecationWarning, stacklevel=2)
        self.enforce_schema(name, station_name)

    def detach_schema(self, station_name: str, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Detach the schema of a station (§10.4).

        Raises:
            MemphisValueError: an empty station name.
            MemphisRequestError: the broker refused.
        """
        if not station_name:
            raise MemphisValueError("station name is missing")
        body = {"station_name": station_name, "username": self.username}
        reply = self._request("$memphis_schema_detachments", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        if reply:
            raise MemphisRequestError(f"detaching the schema of station {station_name!r}: {reply}")


def check_batch_size(batch_size: Any) -> int:
    """Refuse a batch size outside 1..5000 with the SDK's text."""
    if type(batch_size) is not int or not 1 <= batch_size <= _defaults.MEMPHIS_MAX_BATCH_SIZE:
        raise MemphisValueError(f"Batch size can not be greater than 5000 or less than 1 (got {batch_size!r})")
    return batch_size


def _message_text(message: Any) -> str:
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message).decode("utf-8", "replace")
    serialize = getattr(message, "SerializeToString", None)
    if callable(serialize):
        return bytes(serialize()).decode("utf-8", "replace")
    return str(message)


def connect(
    host: str,
    username: str,
    connection_token: str = "",
    password: str = "",
    account_id: int = 1,
    port: int = _defaults.MEMPHIS_PORT,
    reconnect: bool = True,
    max_reconnect: int = _defaults.MAX_RECONNECT,
    reconnect_interval_ms: int = 1500,
    timeout_ms: int = 2000,
    cert_file: str = "",
    key_file: str = "",
    ca_file: str = "",
    **options: Any,
) -> Memphis:
    """Connect to a Memphis broker and return the :class:`Memphis` connection.

    Same arguments as :meth:`Memphis.connect` (its keyword-only options included).
    """
    return Memphis().connect(
        host, username, account_id=account_id, connection_token=connection_token, password=password, port=port,
        reconnect=reconnect, max_reconnect=max_reconnect, reconnect_interval_ms=reconnect_interval_ms,
        timeout_ms=timeout_ms, cert_file=cert_file, key_file=key_file, ca_file=ca_file, **options,
    )
