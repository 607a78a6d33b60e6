"""The Memphis control plane, on stock nats-server, written with memphis-sync's own client.

Theory of operation: :class:`ControlPlane` connects to the nats-server as a privileged internal
client and queue-subscribes to the Memphis service subjects (``$memphis_station_creations``...),
each in the broker's own queue group, so that several instances share the work. Each request is
answered on its subscription's callback thread (never the connection's reader thread) exactly as
the Memphis 1.x broker answers it (``memphis-wire.md`` §3-§7): plain text where ``""`` means
success, or JSON, with byte-exact error texts. Stations become one JetStream stream per partition
(:func:`~memphis_sync.broker.stations.stream_config`), consumer groups one durable per partition
(:func:`~memphis_sync.broker.stations.durable_config`), created through the legacy
``CONSUMER.DURABLE.CREATE`` API as the broker does. Records live in a JetStream stream
(:mod:`memphis_sync.broker.metadata`), so they survive restarts and are shared between instances.

Mutating requests of one instance are serialised by one lock (they are rare and fast); between
instances, station records are created with an atomic create-if-absent.

Differences from the Memphis broker that stock nats-server imposes (no CONNECT hook):

* producers and consumers are never marked inactive on disconnect; a consumer group counts as
  active until its consumers are destroyed (or its station is);
* user checks use the ``username`` of each request against the configured user names.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from memphis_sync import _defaults
from memphis_sync.nats.reconnect import ReconnectPolicy
from memphis_sync.broker import stations as st
from memphis_sync.broker.consumers import ConsumerGroups
from memphis_sync.broker.dls import DeadLetters
from memphis_sync.broker.metadata import MetadataStore
from memphis_sync.broker.schemaverse import SCHEMA_SERVICES, Schemaverse
from memphis_sync.nats.connection import Connection, TlsOptions
from memphis_sync.errors import (
    JetStreamError,
    MemphisError,
    StreamNotFoundError,
)
from memphis_sync.jetstream.context import JetStream
from memphis_sync.jetstream.types import StreamConfig
from memphis_sync.nats.protocol.wire import Msg

__all__ = ["ControlPlane", "SERVICES"]

logger = logging.getLogger(__name__)

#: Service subject → (queue group, handler method, reply format) — ``memphis-wire.md`` §3.1.
SERVICES: Dict[str, Tuple[str, str, str]] = {
    "$memphis_station_creations": ("memphis_station_creations_listeners_group", "_create_station", "text"),
    "$memphis_station_destructions": ("memphis_station_destructions_listeners_group", "_destroy_station", "text"),
    "$memphis_producer_creations": ("memphis_producer_creations_listeners_group", "_create_producer", "producer"),
    "$memphis_producer_destructions": ("memphis_producer_destructions_listeners_group", "_destroy_producer", "text"),
    "$memphis_consumer_creations": ("memphis_consumer_creations_listeners_group", "_create_consumer", "consumer"),
    "$memphis_consumer_destructions": ("memphis_consumer_destructions_listeners_group", "_destroy_consumer", "text"),
}

#: Subject of the broker → SDK notices (``remove_station``...), §11.1.
SDK_CLIENTS_UPDATES = "$memphis_sdk_clients_updates"

_REPLICAS_NOT_SUPPORTED = 10074  # JSStreamReplicasNotSupportedErr


_Reply = st.Refusal


def _error_text(exc: BaseException) -> str:
    """The text a Go broker would put in its reply for an unexpected error."""
    if isinstance(exc, _Reply):
        return exc.text
    if isinstance(exc, JetStreamError):
        return exc.description
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _producer_reply(
    error: str, station: Optional[Mapping[str, Any]] = None, schema: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """The ``$memphis_producer_creations`` JSON reply (§5.2); zero values on error."""
    return {
        "error": error,
        "schema_update": schema or st.empty_schema_update(),
        "partitions_update": {"partitions_list": station["partitions_list"] if station else None},
        "schemaverse_to_dls": bool(station and station["dls_configuration"]["schemaverse"]),
        "send_notification": False,
        "station_version": station["version"] if station else 0,
        "station_partitions_first_functions": {},
    }


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
    ) -> None:
        self._servers = servers
        self._credentials = {"token": token, "user": user, "password": password}
        self._tls = tls
        self._users: Optional[Set[str]] = None if users is None else {u.lower() for u in users}
        self._account_id = account_id
        self._metadata_replicas = metadata_replicas
        self._default_replicas = default_replicas
        self._name = name
        self._lock = threading.RLock()  # serialises mutating requests of this instance
        self._conn: Optional[Connection] = None
        self._js: Optional[JetStream] = None
        self._meta: Optional[MetadataStore] = None
        self._subs: List[Any] = []
        self._dls = DeadLetters(self)
        self._schemas = Schemaverse(self)
        self._consumers = ConsumerGroups(self)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, make sure the metadata stream exists and start answering requests.

        Raises:
            MemphisError: the server could not be reached or refused the credentials.
        """
        if self._conn is not None:
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
        self._conn = conn  # before subscribing: handlers reply through it
        try:
            self._js = JetStream(conn)
            self._meta = MetadataStore(self._js, replicas=self._metadata_replicas)
            self._meta.ensure()
            for subject, (queue, method, fmt) in SERVICES.items():
                handler = getattr(self, method)
                self._subs.append(conn.subscribe(subject, queue=queue, callback=self._serve(handler, fmt)))
            for subject, (queue, method, fmt) in SCHEMA_SERVICES.items():
                handler = getattr(self._schemas, method)
                self._subs.append(conn.subscribe(subject, queue=queue, callback=self._serve(handler, fmt)))
            self._subs.extend(self._dls.subscribe(conn, replicas=self._metadata_replicas))
            conn.flush()
        except BaseException:
            self._conn = None
            conn.close()
            self._subs.clear()
            raise
        logger.info("memphis control plane serving on %s", conn.connected_url)

    def stop(self) -> None:
        """Stop answering (requests being handled finish first) and disconnect."""
        conn, self._conn = self._conn, None
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
                sub._join(1.0)
            self._subs.clear()

    close = stop

    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._conn is not None

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"serving {self._conn.connected_url}" if self._conn is not None else "stopped"
        return f"<ControlPlane {state}>"

    @property
    def connection(self) -> Connection:
        """The control plane's own connection (raises if not started)."""
        if self._conn is None:
            raise MemphisError("the control plane is not running")
        return self._conn

    @property
    def jetstream(self) -> JetStream:
        """The JetStream context of :attr:`connection`."""
        if self._js is None or self._conn is None:
            raise MemphisError("the control plane is not running")
        return self._js

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store."""
        if self._meta is None or self._conn is None:
            raise MemphisError("the control plane is not running")
        return self._meta

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
                    with self._lock:
                        answer = handler(request)
            except Exception as exc:  # any failure is an error text, never a silent drop
                if not isinstance(exc, _Reply):
                    logger.exception("control plane: %s failed", msg.subject)
                answer = self._error_reply(fmt, _error_text(exc))
            payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            if msg.reply and self._conn is not None:
                try:
                    self._conn.publish(msg.reply, payload)
                except MemphisError as exc:
                    logger.warning("control plane: reply to %s failed: %s", msg.subject, exc)
            logger.debug("%s answered in %.1f ms: %r", msg.subject, (time.perf_counter() - started) * 1e3, payload[:200])

        return on_request

    @staticmethod
    def _error_reply(fmt: str, text: str, *, decoding: bool = False) -> Any:
        """An error in the reply format of the service (``decoding``: the request was not JSON)."""
        if fmt == "producer":
            return _producer_reply(text)
        if fmt == "consumer" and decoding:
            return {"error": text}  # createConsumerDirect: JSON on decode failure only (§7.2)
        if fmt == "schema":
            return {"error": text}
        return text

    def _check_user(self, username: str, text: str) -> None:
        if self._users is None:
            return
        name, _ = st.split_username(username)
        if name.lower() not in self._users:
            raise _Reply(text)

    # -- stations ----------------------------------------------------------------------------

    def resend_dls_messages(self, station: str) -> int:
        """Re-send a station's poison messages to ``$memphis_dls_<station>.<group>`` (and the
        legacy ``..._<group>``) of every poisoned group, as the UI "resend" does (§9.5).

        Returns:
            How many messages were published.
        """
        record = self.get_station(station)
        if record is None:
            raise MemphisError(f"station {station} does not exist")
        return self._dls.resend(record)

    def update_dls_config(self, station: str, *, poison: Optional[bool] = None, schemaverse: Optional[bool] = None) -> None:
        """Change a station's DLS configuration, as the UI does; a ``schemaverse`` change is
        announced on ``$memphis_sdk_clients_updates`` (with the new value, §15.9)."""
        with self._lock:
            record = self.get_station(station)
            if record is None:
                raise MemphisError(f"station {station} does not exist")
            dls = dict(record["dls_configuration"])
            if poison is not None:
                dls["poison"] = poison
            if schemaverse is not None:
                dls["schemaverse"] = schemaverse
            self._put_station({**record, "dls_configuration": dls})
        if schemaverse is not None:
            update = {"station_name": st.internal_name(record["name"]), "type": "schemaverse_to_dls", "update": schemaverse}
            self.connection.publish(SDK_CLIENTS_UPDATES, json.dumps(update).encode())

    def dls_messages(self, station: str) -> List[Dict[str, Any]]:
        """The dead-letter records of a station (poison, dead-lettered and schema-failed
        messages with their reason), oldest first. ``message_details.data`` is hex."""
        return self._dls.records(station)

    def get_station(self, name: str) -> Optional[Dict[str, Any]]:
        """The record of station ``name`` (external name, any case), or None."""
        return self.metadata.get(f"station.{st.internal_name(name)}")

    def stations(self) -> List[Dict[str, Any]]:
        """Every station record, sorted by name."""
        return sorted(self.metadata.list("station").values(), key=lambda r: r["name"])

    def _create_station(self, request: Dict[str, Any]) -> str:
        name, error = st.station_name_from_str(request.get("name"))
        if error:
            return error
        username, tenant = st.split_username(request.get("username"))
        if tenant not in (-1, self._account_id):
            return f"createStationDirect: Station {request.get('name')}: Tenant with id {tenant} does not exist"
        if self.get_station(name) is not None:
            return ""  # §4.2: "already exists" is success
        settings = st.station_settings(request)
        if isinstance(settings, str):
            return settings
        if settings.schema_name and self._schemas.get(settings.schema_name) is None:
            return f"Schema {request.get('schema_name')} does not exist"  # §15.4: the broker replies ""
        self._check_user(username, f"User {username} does not exist")  # §15.4: the broker replies ""
        self.create_station(settings, created_by=username)
        return ""

    def create_station(self, settings: st.StationSettings, *, created_by: str = "root") -> Dict[str, Any]:
        """Create a station's streams and record (the DLS station too, when missing).

        Returns:
            The station record (the existing one if the station already exists).

        Raises:
            _Reply: with the broker's error text.
        """
        existing = self.get_station(settings.name)
        if existing is not None:
            return existing
        if settings.dls_station and settings.dls_station != settings.name and self.get_station(settings.dls_station) is None:
            dls_name, error = st.station_name_from_str(settings.dls_station)
            if error:
                raise _Reply(error)
            self.create_station(st.default_station_settings(dls_name, self._default_replicas), created_by=created_by)
        created: List[str] = []
        for partition in settings.partitions_list:
            config = st.stream_config(settings, partition)
            try:
                self.jetstream.add_stream(_stream_config(config))
            except JetStreamError as exc:
                for stream in created:
                    self._delete_stream(stream)
                if exc.err_code == _REPLICAS_NOT_SUPPORTED:
                    raise _Reply("station can not be created, probably since replicas count is larger than the cluster size") from exc
                raise _Reply(exc.description) from exc
            created.append(config["name"])
        record = {**settings.to_record(), "created_by_username": created_by, "created_at": time.time()}
        if not self.metadata.put(f"station.{settings.internal_name}", record, create_only=True):
            return self.get_station(settings.name) or record  # created concurrently elsewhere
        logger.info("station %s created (%d partitions)", settings.name, settings.partitions_number)
        return record

    def consumers(self, station: str) -> List[Dict[str, Any]]:
        """The consumer records of a station, oldest first."""
        return self._consumers.consumers(station)

    def _create_consumer(self, request: Dict[str, Any]) -> Any:
        return self._consumers.create_consumer(request)

    def _destroy_consumer(self, request: Dict[str, Any]) -> str:
        return self._consumers.destroy_consumer(request)

    def _put_station(self, record: Mapping[str, Any]) -> None:
        self.metadata.put(f"station.{st.internal_name(record['name'])}", record)

    def get_schema(self, name: str) -> Optional[Dict[str, Any]]:
        """The schema record ``name`` (type and every version), or None."""
        return self._schemas.get(name)

    def _delete_stream(self, stream: str) -> None:
        try:
            self.jetstream.delete_stream(stream)
        except StreamNotFoundError:
            pass

    def _destroy_station(self, request: Dict[str, Any]) -> str:
        name, error = st.station_name_from_str(request.get("station_name"))
        if error:
            return error
        if not self.remove_station(name, notify=False):
            return f"Station {name} does not exist"  # the broker formats an empty name here
        return ""

    def remove_station(self, name: str, *, notify: bool = True) -> bool:
        """Delete a station: its streams, producers, consumers, DLS records and record.

        Args:
            name: External station name.
            notify: Publish ``remove_station`` on ``$memphis_sdk_clients_updates`` (the UI/REST
                removal does; the SDK destroy request does not, §4.4).

        Returns:
            False if there was no such station.
        """
        with self._lock:
            record = self.get_station(name)
            if record is None:
                return False
            internal = st.internal_name(record["name"])
            for partition in record.get("partitions_list") or []:
                self._delete_stream(f"{internal}${partition}")
            for kind in ("producer", "consumer", "dls"):
                self.metadata.delete_prefix(f"{kind}.{internal}")
            for other in self.stations():
                if other.get("dls_station") == record["name"] and other["name"] != record["name"]:
                    self.metadata.put(f"station.{st.internal_name(other['name'])}", {**other, "dls_station": ""})
            self.metadata.delete(f"station.{internal}")
        if notify:
            update = {"station_name": internal, "type": "remove_station", "update": None}
            self.connection.publish(SDK_CLIENTS_UPDATES, json.dumps(update).encode())
        logger.info("station %s removed", record["name"])
        return True

    def _station_for_client(self, raw_name: Any, req_version: int, kind: str, username: str) -> Dict[str, Any]:
        """Look up (or auto-create, §4.6) the station of a producer/consumer request."""
        name, error = st.station_name_from_str(raw_name)
        if error:
            raise _Reply(error)
        station = self.get_station(name)
        if station is None:
            if req_version < 2:
                if kind == "producer":
                    raise _Reply("this station does not exist, a default station can not be created automatically, please upgrade your SDK version")
                raise _Reply("This station does not exist, a default station can not be created automatically, please upgrade your SDK version")
            station = self.create_station(st.default_station_settings(name, self._default_replicas), created_by=username)
        elif req_version < 2 and station.get("partitions_list"):
            verb = "produce to" if kind == "producer" else "consume from"
            raise _Reply(f"to {verb} this station please upgrade your SDK version")
        return station

    # -- producers ---------------------------------------------------------------------------

    def producers(self, station: str) -> List[Dict[str, Any]]:
        """The producer records of a station."""
        return sorted(self.metadata.list(f"producer.{st.internal_name(station)}").values(), key=lambda r: r["created_at"])

    def _create_producer(self, request: Dict[str, Any]) -> Dict[str, Any]:
        name = str(request.get("name") or "").lower()
        error = st.validate_name(name, "Producer")
        if error:
            return _producer_reply(error)
        producer_type = str(request.get("producer_type") or "").lower()
        if producer_type not in ("application", "connector"):
            return _producer_reply("producer type has to be one of the following application/connector")
        username = str(request.get("username") or "")
        self._check_user(username, f"User {username} does not exist")
        req_version = int(request.get("req_version") or 0)
        station = self._station_for_client(request.get("station_name"), req_version, "producer", username)
        record = {
            "id": uuid.uuid4().hex,
            "name": name,
            "station_name": station["name"],
            "connection_id": str(request.get("connection_id") or ""),
            "producer_type": "connector" if username.startswith("$") else producer_type,
            "username": username,
            "req_version": req_version,
            "app_id": str(request.get("app_id") or "") if req_version >= 4 else str(request.get("connection_id") or ""),
            "sdk_lang": str(request.get("sdk_lang") or "") if req_version >= 4 else "",
            "partitions_list": station["partitions_list"],
            "is_active": True,
            "created_at": time.time(),
        }
        self.metadata.put(f"producer.{st.internal_name(station['name'])}.{record['id']}", record)
        return _producer_reply("", station, self._schemas.station_schema(station))

    def _destroy_producer(self, request: Dict[str, Any]) -> str:
        name = str(request.get("name") or "").lower()
        raw_station = request.get("station_name")
        station_name, error = st.station_name_from_str(raw_station)
        if error:
            return error
        by_connection = int(request.get("req_version") or 0) >= 1
        connection_id = str(request.get("connection_id") or "")
        internal = st.internal_name(station_name)
        matches = [
            key
            for key, rec in self.metadata.list(f"producer.{internal}").items()
            if rec["name"] == name and (not by_connection or rec["connection_id"] == connection_id)
        ]
        if not matches:
            return f"Producer {request.get('name')} at station {raw_station} does not exist"
        for key in matches:
            self.metadata.delete(key)
        return ""

def _stream_config(config: Mapping[str, Any]) -> StreamConfig:
    """A :class:`StreamConfig` carrying ``config`` (its durations converted from ns to seconds)."""
    fields = dict(config)
    fields["max_age"] = fields["max_age"] / 1e9
    fields["duplicate_window"] = fields["duplicate_window"] / 1e9
    return StreamConfig(**fields)
