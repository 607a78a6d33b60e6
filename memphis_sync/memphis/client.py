"""The Memphis client: ``connect()`` and the ``Memphis`` connection object, a facade.

``Memphis`` mirrors the official async SDK (memphis-py 1.3.1) minus ``await``: same method
names, parameter names, units (``*_ms``, ``*_sec``) and defaults. At connect it builds one
control-plane :class:`~.requester.Requester` (the connection, user, connection id and the
retried ``$memphis_*`` requests, wire contract §3), one :class:`~.state.StationCache` (per
station: partitions, schema, functions, fed live by the broker) and one
:class:`~.registry.Registry` of producers and consumers, plus one JetStream context, and hands
them to the stations, producers, consumers and messages it creates.

Share one ``Memphis`` between threads. Producers are thread-safe too; give each consuming
thread its own consumer (or share one through ``consume()``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, List, Optional, Union

from .. import _defaults
from .._html import fields_table
from .._timeouts import deadline_after, left
from ..errors import ConnectionClosedError, MemphisConnectError, MemphisValueError
from ..jetstream import JetStream
from ..nats.connection import Connection
from .consumer import Consumer, creation_fields, open_consumer
from .message import MessageBatch
from .producer import Producer, open_producer
from .registry import Registry, registry_key, with_random_suffix
from .requester import APP_ID, Requester, display_address
from .schema_calls import _SchemaCalls
from .schemaverse import validate_schema_name
from .shortcuts import _Shortcuts
from .state import StationCache
from .station import Retention, Station, Storage
from .station import creation_body as station_creation_body
from .url import merge_url
from .validate import check_batch_size, check_int, check_str, internal_name, validate_name

if TYPE_CHECKING:  # pragma: no cover

    pass

__all__ = ["Memphis", "connect", "from_url", "APP_ID"]

logger = logging.getLogger("memphis_sync.client")  # the name users configure (kept from the flat layout)


class Memphis(_Shortcuts, _SchemaCalls):
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
        self._registry: Registry["Producer", "Consumer"] = Registry()
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        state = "connected" if self.is_connected() else ("closed" if self._closed else "not connected")
        return f"<Memphis {self.host}:{self.port} user={self.username!r} {state}>"

    def _repr_html_(self) -> str:
        state = "connected" if self.is_connected() else ("closed" if self._closed else "not connected")
        return fields_table("Memphis", [
            ("broker", f"{self.host}:{self.port}"), ("user", self.username), ("account id", self.account_id),
            ("state", state), ("connection id", self.connection_id),
            ("producers, consumers", ", ".join(map(str, self._registry.counts()))),
        ])

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
            host: broker host (a leading ``http(s)://`` is ignored), or a ``ws(s)://`` URL (:doc:`protocols`).
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
            cert_file / key_file / ca_file: mutual TLS; all three or none. ``ca_file`` is the only
                trust store for the broker's certificate (the system CAs are not used; the SDK
                adds the file to them).
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
            MemphisValueError: a bad argument (type or value; nothing is dialled).
        """
        if self._conn is not None:
            raise MemphisConnectError("this Memphis object is already connected; create a new one")
        check_int(max_pending_acks, "max_pending_acks", 1)
        self._requester = Requester.open(
            host, username, account_id, connection_token, password, port, reconnect, max_reconnect,
            reconnect_interval_ms, timeout_ms, cert_file, key_file, ca_file, max_block_ms=max_block_ms,
            ping_interval_ms=ping_interval_ms, max_pings_outstanding=max_pings_outstanding,
        )
        (self.host, self.port), self.username = display_address(host, port), username
        self.account_id, self.connection_id = account_id, self._requester.connection_id
        self._conn = conn = self._requester.conn
        self._js = JetStream(conn, max_pending=max_pending_acks)
        self._stations = StationCache(self._requester, self._registry)
        self._stations.subscribe_clients_updates()
        return self

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
        for consumer in self._registry.consumers():
            consumer.stop_consuming(timeout=min(left(deadline) or 10.0, 10.0))
        if self._requester is not None:
            self._requester.close(self._js, deadline)
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
            MemphisRequestError / ConnectionClosedError: the broker refused, or the connection is closed.
        """
        body = station_creation_body(
            name, retention_type, retention_value, storage_type, replicas, idempotency_window_ms, schema_name,
            send_poison_msg_to_dls, send_schema_failed_msg_to_dls, tiered_storage_enabled, partitions_number,
            dls_station, self.username,
        )
        requester, stations = self._plane()
        requester.ask("$memphis_station_creations", body, timeout_retries, what=f"creating station {name!r}", ignore="already exist")
        return Station(name.lower(), requester, stations)

    def unset_cached_producer_station(self, station_name: str) -> None:
        """Forget this connection's cached producers of a station (they are not destroyed).

        Raises:
            MemphisValueError: ``station_name`` is not a str.
        """
        self._registry.unset_producers_of(internal_name(check_str(station_name, "station_name")))

    def unset_cached_consumer_station(self, station_name: str) -> None:
        """Forget this connection's cached consumers of a station (they are not destroyed).

        Raises:
            MemphisValueError: ``station_name`` is not a str.
        """
        self._registry.unset_consumers_of(internal_name(check_str(station_name, "station_name")))

    def schema_name_validation(self, schema_name: str) -> None:
        """Check a schema name with the SDK's client-side rules.

        Raises:
            MemphisValueError: empty, over 128 characters, bad characters or ends.
        """
        validate_schema_name(schema_name)

    def send_notification(self, title: str, msg: str, failed_msg: str, not_type: str) -> None:
        """Publish an alert to ``$memphis_notifications`` (§11.3).

        Raises:
            MemphisValueError: an argument is not a str (nothing was sent).
            ConnectionClosedError: the connection is closed.
        """
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
            MemphisValueError: a bad name or ``generate_random_suffix`` (nothing was sent).
            MemphisRequestError / ConnectionClosedError: the broker refused, or the connection is closed.
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
        producer_name = with_random_suffix(producer_name, generate_random_suffix)
        requester, stations = self._plane()
        return open_producer(requester, stations, self._registry, self._js, station_name, producer_name, real_name, timeout_retries)

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
    ) -> Consumer:
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
            MemphisRequestError / ConnectionClosedError: the broker refused, or the connection is closed.
        """
        fields = creation_fields(
            station_name, consumer_name, consumer_group, pull_interval_ms, batch_size, batch_max_time_to_wait_ms,
            max_ack_time_ms, max_msg_deliveries, start_consume_from_sequence, last_messages,
        )
        real_name = consumer_name.lower()
        consumer_name = with_random_suffix(consumer_name, generate_random_suffix)
        requester, stations = self._plane()
        return open_consumer(
            requester, stations, self._registry, self._js, station_name, consumer_name, real_name, fields,
            timeout_retries, pull_interval_ms=pull_interval_ms, batch_size=batch_size,
            batch_max_time_to_wait_ms=batch_max_time_to_wait_ms,
        )

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
    ) -> MessageBatch:
        """Fetch one batch through this connection's consumer of that name (created on first use).

        Raises:
            MemphisValueError / MemphisRequestError / ConnectionClosedError: as :meth:`consumer` and :meth:`Consumer.fetch`.
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

#: The defaults of :func:`connect`'s arguments (an argument at its default does not override a URL).
_CONNECT_DEFAULTS = {
    "account_id": 1, "connection_token": "", "password": "", "port": _defaults.MEMPHIS_PORT, "reconnect": True,
    "max_reconnect": _defaults.MAX_RECONNECT, "reconnect_interval_ms": 1500, "timeout_ms": 2000,
    "cert_file": "", "key_file": "", "ca_file": "",
}


def connect(
    host: Optional[str] = None,
    username: Optional[str] = None,
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
    url: Optional[str] = None,
    **options: Any,
) -> Memphis:
    """Connect to a Memphis broker and return the :class:`Memphis` connection.

    The arguments and their positional order are those of :meth:`Memphis.connect` (and of the
    SDK's ``Memphis.connect``), its keyword-only options included; or give ``url``
    (``memphis://USER:TOKEN@HOST:PORT?account_id=1``, see :mod:`memphis_sync.memphis.url`)
    instead of ``host``, ``username`` and the rest. Arguments given beside a URL are added to
    it (e.g. the token, to keep it out of the URL); one the URL gives too must agree.

    Raises:
        MemphisValueError: no host or username (and no url), a bad URL, or an argument given
            twice with two values.
        MemphisConnectError: see :meth:`Memphis.connect`.
    """
    given = {
        "host": host, "username": username, "account_id": account_id, "connection_token": connection_token,
        "password": password, "port": port, "reconnect": reconnect, "max_reconnect": max_reconnect,
        "reconnect_interval_ms": reconnect_interval_ms, "timeout_ms": timeout_ms, "cert_file": cert_file,
        "key_file": key_file, "ca_file": ca_file,
    }
    return Memphis().connect(**merge_url(url, given, _CONNECT_DEFAULTS), **options)


def from_url(url: str, **kwargs: Any) -> Memphis:
    """``connect(url=url, **kwargs)``: connect with the settings of a Memphis URL.

    Raises:
        MemphisValueError: a bad URL (shown with its secret hidden).
        MemphisConnectError: see :meth:`Memphis.connect`.
    """
    return connect(url=url, **kwargs)
