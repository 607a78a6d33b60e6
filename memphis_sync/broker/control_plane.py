"""The Memphis control plane, on stock nats-server, written with memphis-sync's own client.

Theory of operation: :class:`ControlPlane` connects to the nats-server as a privileged internal
client and queue-subscribes to the Memphis service subjects (``$memphis_station_creations``...),
each in the broker's own queue group, so that several instances share the work. Each request is
answered on its subscription's callback thread (never the connection's reader thread) exactly as
the Memphis 1.x broker answers it (``memphis-wire.md`` §3-§7): plain text where ``""`` means
success, or JSON, with byte-exact error texts. Stations become one JetStream stream per partition
(:func:`~memphis_sync.broker.rules.stream_config`), consumer groups one durable per partition
(:func:`~memphis_sync.broker.rules.durable_config`), created through the legacy
``CONSUMER.DURABLE.CREATE`` API as the broker does. Records live in a JetStream stream
(:mod:`memphis_sync.broker.metadata`), so they survive restarts and are shared between instances.
What clients send without waiting for an answer and must not be lost (poison advisories, dead
letters, schema failures) is captured by work-queue streams that wait for the next control plane
(:mod:`memphis_sync.broker.handlers.dls_relay`).

This module only wires: the answers come from the handler classes of
:mod:`memphis_sync.broker.handlers` (stations, producers, consumers, DLS, schemas), each given the
one :class:`~memphis_sync.broker.context.BrokerContext` (connection, JetStream, metadata store,
lock, users) and the other handlers it needs. Mutating requests of one instance are serialised by
the context's lock (they are rare and fast); between instances, station records are created with
an atomic create-if-absent.

Given an :class:`~memphis_sync.broker.auth_callout.AuthCallout` (the local broker's token mode),
the control plane also answers nats-server's authorization requests on its connection, subscribed
before anything else so that clients are let in as soon as possible after a (re)start.

Differences from the Memphis broker that stock nats-server imposes (no CONNECT hook):

* producers and consumers are never marked inactive on disconnect; a consumer group counts as
  active until its consumers are destroyed (or its station is);
* user checks use the ``username`` of each request against the configured user names (and, with
  an auth callout, the user of each connection at connect time).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from memphis_sync import _defaults
from memphis_sync.broker import rules
from memphis_sync.broker.auth_callout import AuthCallout
from memphis_sync.broker.context import BrokerContext
from memphis_sync.broker.handlers.consumers import ConsumerGroups
from memphis_sync.broker.handlers.dls import DeadLetters
from memphis_sync.broker.handlers.dls_relay import NACKED_STREAM, SCHEMAVERSE_STREAM, DlsRelay
from memphis_sync.broker.handlers.producers import Producers, producer_reply
from memphis_sync.broker.handlers.schemas import SCHEMA_SERVICES, Schemaverse
from memphis_sync.broker.handlers.stations import Stations
from memphis_sync.broker.metadata import MetadataStore
from memphis_sync.errors import JetStreamError, MemphisError
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import Connection, TlsOptions
from memphis_sync.nats.protocol import Msg
from memphis_sync.nats.reconnect import ReconnectPolicy

__all__ = ["ControlPlane", "SERVICES"]

_SURROGATE = re.compile("[\ud800-\udfff]")

logger = logging.getLogger(__name__)

#: Service subject → (queue group, ``handler.method``, reply format) — ``memphis-wire.md`` §3.1.
#: The schema services are :data:`~memphis_sync.broker.handlers.schemas.SCHEMA_SERVICES`.
SERVICES: Dict[str, Tuple[str, str, str]] = {
    "$memphis_station_creations": ("memphis_station_creations_listeners_group", "stations.create_station_request", "text"),
    "$memphis_station_destructions": ("memphis_station_destructions_listeners_group", "stations.destroy_station_request", "text"),
    "$memphis_producer_creations": ("memphis_producer_creations_listeners_group", "producers.create_producer", "producer"),
    "$memphis_producer_destructions": ("memphis_producer_destructions_listeners_group", "producers.destroy_producer", "text"),
    "$memphis_consumer_creations": ("memphis_consumer_creations_listeners_group", "consumers.create_consumer", "consumer"),
    "$memphis_consumer_destructions": ("memphis_consumer_destructions_listeners_group", "consumers.destroy_consumer", "text"),
}


def _error_text(exc: BaseException) -> str:
    """The text a Go broker would put in its reply for an unexpected error."""
    if isinstance(exc, rules.Refusal):
        return exc.text
    if isinstance(exc, JetStreamError):
        return exc.description
    return str(exc.args[0]) if exc.args else type(exc).__name__


class ControlPlane:
    """Answers the Memphis ``$memphis_*`` requests for one nats-server (or cluster).

    Args:
        servers: URL(s) of the nats-server the control plane connects to.
        token: Token of the server (token mode).
        user: Internal user name (password mode).
        password: Password of ``user``.
        tls: TLS options for the connection.
        users: The Memphis user names requests may carry (``username`` field, with or without a
            ``$<account_id>`` suffix); None accepts any name.
        account_id: The account (tenant) id requests may name (``username$<account_id>``).
        metadata_replicas: Replicas of the metadata stream (the cluster size, up to 3).
        default_replicas: Replicas of automatically created stations (§4.6).
        name: Connection name.
        auth_callout: Also answer nats-server's authorization requests with it (the server must
            be configured with its ``server_config()`` and this connection's user in
            ``auth_users``).

    The control plane is started by :meth:`start` (or ``with``) and stopped by :meth:`stop`.
    """

    def __init__(
        self,
        servers: Union[str, Sequence[str]],
        *,
        token: Optional[str] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        tls: Optional[TlsOptions] = None,
        users: Optional[Iterable[str]] = None,
        account_id: int = _defaults.MEMPHIS_ACCOUNT_ID,
        metadata_replicas: int = 1,
        default_replicas: int = 1,
        name: str = "memphis-sync-control-plane",
        auth_callout: Optional[AuthCallout] = None,
    ) -> None:
        self._servers = servers
        self._auth_callout = auth_callout
        self._credentials = {"token": token, "user": user, "password": password}
        self._tls = tls
        self._name = name
        self._ctx = BrokerContext(
            users=users, account_id=account_id, metadata_replicas=metadata_replicas, default_replicas=default_replicas
        )
        self._subs: List[Any] = []
        self._schemas = Schemaverse(self._ctx)
        self._dls = DeadLetters(self._ctx)
        self._relay = DlsRelay(
            self._ctx, {NACKED_STREAM: self._dls.store_nacked, SCHEMAVERSE_STREAM: self._dls.store_schema_failure}
        )
        self._stations = Stations(self._ctx, self._schemas)
        self._producers = Producers(self._ctx, self._stations, self._schemas)
        self._consumers = ConsumerGroups(self._ctx, self._stations, self._schemas, self._dls)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, make sure the metadata stream exists and start answering requests.

        Raises:
            MemphisError: the server could not be reached or refused the credentials.
        """
        if self._ctx.connection_or_none() is not None:
            return
        policy = ReconnectPolicy(
            wait=_defaults.CONTROL_PLANE_RECONNECT_WAIT, jitter=_defaults.CONTROL_PLANE_RECONNECT_WAIT / 2
        )
        conn = Connection(
            self._servers,
            name=self._name,
            tls=self._tls,
            reconnect=policy,
            token=self._credentials["token"],
            user=self._credentials["user"],
            password=self._credentials["password"],
        )
        conn.connect()
        try:
            if self._auth_callout is not None:  # first: connecting clients wait for it
                self._subs.append(self._auth_callout.subscribe(conn))
                conn.flush()
            js = JetStream(conn)
            meta = MetadataStore(js, replicas=self._ctx.metadata_replicas)
            self._ctx.attach(conn, js, meta)  # before subscribing: handlers reply through it
            meta.ensure()
            owners = {"stations": self._stations, "producers": self._producers, "consumers": self._consumers}
            for subject, (queue, target, fmt) in SERVICES.items():
                owner, _, method = target.partition(".")
                handler = getattr(owners[owner], method)
                self._subs.append(conn.subscribe(subject, queue=queue, callback=self._serve(handler, fmt)))
            for subject, (queue, method, fmt) in SCHEMA_SERVICES.items():
                handler = getattr(self._schemas, method)
                self._subs.append(conn.subscribe(subject, queue=queue, callback=self._serve(handler, fmt)))
            self._subs.extend(self._dls.subscribe())
            self._relay.start()
            conn.flush()
        except BaseException:
            self._relay.stop()
            self._ctx.detach()
            conn.close()
            self._subs.clear()
            raise
        logger.info("memphis control plane serving on %s", conn.connected_url)

    def stop(self) -> None:
        """Stop answering (requests being handled finish first) and disconnect.

        The dead-letter relay stops first: the event at hand is stored and acked, the rest of its
        batch is given back to JetStream for the next control plane.
        """
        if self._ctx.connection_or_none() is None:
            return
        self._relay.stop()
        conn = self._ctx.detach()
        if conn is None:
            return
        try:
            if conn.is_connected():  # a dead server (kill -9) has nothing to drain to
                conn.drain(timeout=_defaults.CONTROL_PLANE_DRAIN_TIMEOUT)
        except MemphisError as exc:
            logger.warning("control plane drain: %s", exc)
        finally:
            conn.close()
            for sub in self._subs:
                sub.join(1.0)
            self._subs.clear()

    close = stop

    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._ctx.connection_or_none() is not None

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        conn = self._ctx.connection_or_none()
        state = f"serving {conn.connected_url}" if conn is not None else "stopped"
        return f"<ControlPlane {state}>"

    @property
    def connection(self) -> Connection:
        """The control plane's own connection (raises if not started)."""
        return self._ctx.connection

    @property
    def jetstream(self) -> JetStream:
        """The JetStream context of :attr:`connection`."""
        return self._ctx.jetstream

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store."""
        return self._ctx.metadata

    # -- request plumbing --------------------------------------------------------------------

    def _serve(self, handler: Callable[[Dict[str, Any]], Any], fmt: str) -> Callable[[Msg], None]:
        def on_request(msg: Msg) -> None:
            started = time.perf_counter()
            try:
                try:
                    request = json.loads(msg.payload or b"null")
                    if not isinstance(request, dict):
                        raise ValueError(f"json: cannot unmarshal {type(request).__name__} into a request object")
                except ValueError as exc:
                    answer: Any = self._error_reply(fmt, "json: " + str(exc), decoding=True)
                else:
                    with self._ctx.lock:
                        answer = handler(request)
            except Exception as exc:  # any failure is an error text, never a silent drop
                if not isinstance(exc, rules.Refusal):
                    logger.exception("control plane: %s failed", msg.subject)
                answer = self._error_reply(fmt, _error_text(exc))
            # a text may quote a name with a lone surrogate (JSON "\udc80" decodes to one): like the
            # broker's Go, send U+FFFD for it rather than fail to encode and never answer
            payload = _SURROGATE.sub("\ufffd", answer).encode() if isinstance(answer, str) else json.dumps(answer).encode()
            conn = self._ctx.connection_or_none()
            if msg.reply and conn is not None:
                try:
                    conn.publish(msg.reply, payload)
                except MemphisError as exc:
                    logger.warning("control plane: reply to %s failed: %s", msg.subject, exc)
            logger.debug("%s answered in %.1f ms: %r", msg.subject, (time.perf_counter() - started) * 1e3, payload[:200])

        return on_request

    @staticmethod
    def _error_reply(fmt: str, text: str, *, decoding: bool = False) -> Any:
        """An error in the reply format of the service (``decoding``: the request was not JSON)."""
        if fmt == "producer":
            return producer_reply(text)
        if fmt == "consumer" and decoding:
            return {"error": text}  # createConsumerDirect: JSON on decode failure only (§7.2)
        if fmt == "schema":
            return {"error": text}
        return text

    # -- what the UI and the tests ask -------------------------------------------------------

    def get_station(self, name: str) -> Optional[Dict[str, Any]]:
        """The record of station ``name`` (external name, any case), or None."""
        return self._ctx.get_station(name)

    def stations(self) -> List[Dict[str, Any]]:
        """Every station record, sorted by name."""
        return self._ctx.stations()

    def create_station(self, settings: rules.StationSettings, *, created_by: str = "root") -> Dict[str, Any]:
        """Create a station's streams and record (the DLS station too, when missing).

        Returns:
            The station record (the existing one if the station already exists).

        Raises:
            Refusal: with the broker's error text.
        """
        return self._stations.create_station(settings, created_by=created_by)

    def remove_station(self, name: str, *, notify: bool = True) -> bool:
        """Delete a station: its streams, producers, consumers, DLS records and record.

        Args:
            name: External station name.
            notify: Publish ``remove_station`` on ``$memphis_sdk_clients_updates`` (the UI/REST
                removal does; the SDK destroy request does not, §4.4).

        Returns:
            False if there was no such station.
        """
        return self._stations.remove_station(name, notify=notify)

    def producers(self, station: str) -> List[Dict[str, Any]]:
        """The producer records of a station, oldest first."""
        return self._producers.producers(station)

    def consumers(self, station: str) -> List[Dict[str, Any]]:
        """The consumer records of a station, oldest first."""
        return self._consumers.consumers(station)

    def get_schema(self, name: str) -> Optional[Dict[str, Any]]:
        """The schema record ``name`` (type and every version), or None."""
        return self._schemas.get(name)

    def dls_messages(self, station: str) -> List[Dict[str, Any]]:
        """The dead-letter records of a station (poison, dead-lettered and schema-failed
        messages with their reason), oldest first. ``message_details.data`` is hex."""
        return self._dls.records(station)

    def resend_dls_messages(self, station: str) -> int:
        """Re-send a station's poison messages to ``$memphis_dls_<station>.<group>`` (and the
        legacy ``..._<group>``) of every poisoned group, as the UI "resend" does (§9.5).

        Returns:
            How many messages were published.

        Raises:
            MemphisError: There is no such station.
        """
        return self._dls.resend(station)

    def update_dls_config(self, station: str, *, poison: Optional[bool] = None, schemaverse: Optional[bool] = None) -> None:
        """Change a station's DLS configuration, as the UI does; a ``schemaverse`` change is
        announced on ``$memphis_sdk_clients_updates`` (with the new value, §15.9).

        Raises:
            MemphisError: There is no such station.
        """
        self._dls.update_config(station, poison=poison, schemaverse=schemaverse)
