"""The Memphis client: ``connect()``, the ``Memphis`` connection object and its control-plane requests.

``Memphis`` mirrors the official async SDK (memphis-py 1.3.1) minus ``await``: same method
names, parameter names, units (``*_ms``, ``*_sec``) and defaults. Underneath is one thread-safe
:class:`~memphis_sync.nats.connection.Connection` and one :class:`~memphis_sync.jetstream.JetStream`
context; management calls are NATS requests to ``$memphis_*`` subjects with JSON bodies
(wire contract §3), retried ``timeout_retries`` times when they time out.

Share one ``Memphis`` between threads. Producers are thread-safe too; give each consuming
thread its own consumer (or share one through ``consume()``).

``Memphis`` is a facade: at connect it builds one control-plane
:class:`~memphis_sync.memphis.requester.Requester` (connection, user, connection id, retries),
one :class:`~memphis_sync.memphis.state.StationCache` (per-station partitions, schema,
functions, fed live by the broker's update subjects) and one
:class:`~memphis_sync.memphis.registry.Registry` of producers and consumers, and hands them to
the stations, producers, consumers and messages it creates.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

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
    MemphisTimeoutError,
    MemphisValueError,
    NetworkError,
)
from ..jetstream.context import JetStream
from .message import HeadersArg, Message
from .producer import Producer, open_producer
from .registry import Registry, registry_key
from .requester import APP_ID, Requester
from .state import StationCache
from .station import Retention, Station, Storage
from .validate import (
    check_batch_size,
    check_bool,
    check_int,
    check_number,
    enum_value,
    internal_name,
    validate_name,
    validate_optional_name,
)

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

    from .consumer import Consumer
    from ..jetstream.types import PubAck

__all__ = ["Memphis", "connect", "APP_ID"]

logger = logging.getLogger("memphis_sync.client")  # the name users configure (kept from the flat layout)

_ONE_METHOD = "You have to connect with one of the following methods: connection token / password"


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
        self._requester: Optional[Requester] = None
        self._stations: Optional[StationCache] = None
        self._registry = Registry()
        self._lock = threading.Lock()
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
        check_number(max_block_ms, "max_block_ms", "milliseconds", or_none=True)
        check_number(ping_interval_ms, "ping_interval_ms", "milliseconds", above_zero=True, finite=True)
        check_number(reconnect_interval_ms, "reconnect_interval_ms", "milliseconds")
        check_number(timeout_ms, "timeout_ms", "milliseconds", above_zero=True)
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
        self._requester = Requester(conn, username, self.connection_id)
        self._stations = StationCache(self._requester, self._registry)
        self._stations.subscribe_clients_updates()
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
            self._closed = True
        consumers = self._registry.consumers()
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
        self._registry.clear()
        if self._stations is not None:
            self._stations.clear()

    def __enter__(self) -> "Memphis":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def connection(self) -> Connection:
        """The underlying NATS :class:`~memphis_sync.nats.connection.Connection`."""
        return self._plane()[0].checked_conn()

    def _plane(self) -> "tuple[Requester, StationCache]":
        """The requester and the station cache of a connection that is not closed."""
        requester, stations = self._requester, self._stations
        if requester is None or stations is None:
            raise ConnectionClosedError("Connection is dead" if self._closed else "not connected: call connect() first")
        requester.checked_conn()
        return requester, stations

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
        validate_optional_name(schema_name, "schema_name", "Schema")
        validate_optional_name(dls_station, "dls_station", "Station")
        check_bool(send_poison_msg_to_dls, "send_poison_msg_to_dls")
        check_bool(send_schema_failed_msg_to_dls, "send_schema_failed_msg_to_dls")
        check_bool(tiered_storage_enabled, "tiered_storage_enabled")
        requester, stations = self._plane()
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
        reply = requester.request("$memphis_station_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        requester.raise_for_text(reply, ignore="already exist", what=f"creating station {name!r}")
        return Station(lowered, requester, stations)

    def unset_cached_producer_station(self, station_name: str) -> None:
        """Forget this connection's cached producers of a station (they are not destroyed)."""
        self._registry.unset_producers_of(internal_name(station_name))

    def unset_cached_consumer_station(self, station_name: str) -> None:
        """Forget this connection's cached consumers of a station (they are not destroyed)."""
        self._registry.unset_consumers_of(internal_name(station_name))

    def schema_name_validation(self, schema_name: str) -> None:
        """Check a schema name with the SDK's client-side rules.

        Raises:
            MemphisValueError: empty, over 128 characters, bad characters or ends.
        """
        from .schemaverse import validate_schema_name

        validate_schema_name(schema_name)

    def send_notification(self, title: str, msg: str, failed_msg: str, not_type: str) -> None:
        """Publish an alert to ``$memphis_notifications`` (§11.3)."""
        self._plane()[0].notify(title, msg, failed_msg, not_type)

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
            requester, stations = self._plane()
            return Producer(
                producer_name.lower(), list(station_name), real_name, requester,
                stations=stations, registry=self._registry, js=self._js,
            )
        validate_name(station_name, "Station")
        if generate_random_suffix:
            producer_name = _with_random_suffix(producer_name)
        cached = self._registry.producer(registry_key(station_name, real_name))
        if cached is not None:
            return cached
        requester, stations = self._plane()
        return open_producer(requester, stations, self._registry, self._js, station_name, producer_name, real_name, timeout_retries)

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
        validate_optional_name(consumer_group, "consumer_group", "Consumer")
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
            consumer_name = _with_random_suffix(consumer_name)
        requester, stations = self._plane()
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
        reply = requester.request("$memphis_consumer_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        data = requester.parse_creation_reply(reply, f"creating consumer {consumer_name!r} of station {station_name!r}")
        state = stations.ref(internal_name(station_name), data)
        try:
            consumer = Consumer(
                requester, stations, self._registry, self._js, state, station_name=station_name, consumer_name=consumer_name.lower(), real_name=real_name,
                consumer_group=(consumer_group or consumer_name).lower(), pull_interval_ms=pull_interval_ms,
                batch_size=batch_size, batch_max_time_to_wait_ms=batch_max_time_to_wait_ms,
                max_ack_time_ms=max_ack_time_ms, max_msg_deliveries=max_msg_deliveries,
                start_consume_from_sequence=start_consume_from_sequence, last_messages=last_messages,
            )
        except BaseException:
            stations.unref(state)
            raise
        self._registry.add_consumer(registry_key(station_name, real_name), consumer)
        return consumer

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
        key = registry_key(station_name, str(consumer_name).lower()) if isinstance(station_name, str) else ""
        consumer = self._registry.consumer(key)
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
        reply = self._plane()[0].request("$memphis_schema_creations", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
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
        reply = self._plane()[0].request("$memphis_schema_attachments", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
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
        reply = self._plane()[0].request("$memphis_schema_detachments", body, _defaults.MEMPHIS_CREATE_TIMEOUT, timeout_retries)
        if reply:
            raise MemphisRequestError(f"detaching the schema of station {station_name!r}: {reply}")


def _with_random_suffix(name: str) -> str:
    warnings.warn(
        "Deprecation warning: generate_random_suffix will be stopped to be supported after November 1'st, 2023.",
        DeprecationWarning, stacklevel=3,
    )
    return f"{name}_{secrets.token_hex(4)}"


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
