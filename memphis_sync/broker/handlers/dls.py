"""Dead-letter station (DLS) handling of the control plane (``memphis-wire.md`` §9).

Three sources feed a station's dead letters, each stored as one record in the metadata store
(key ``dls.<internal station>.<id>``) with the message, its headers and the reason:

* poison messages: JetStream's ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<durable>``
  advisory, sent when a pull request meets a message of a station durable that used up its
  ``max_deliver`` deliveries. As on the broker (§9.1), the advisories are captured by the stream
  ``$memphis_dls_unacked`` (work queue, 24 h), so none is lost while no control plane runs; its
  durable push consumer delivers them to the control planes' queue group, which ack each one once
  handled. Stock nats-server's advisory carries no message, so it is read back by sequence
  (``STREAM.MSG.GET``), as the broker does for such advisories;
* explicit dead-lettering by a consumer: ``$memphis_nacked_dls`` (§9.3), :meth:`DeadLetters.store_nacked`;
* schema validation failures reported by producers: ``$memphis_schemaverse_dls`` (§9.4),
  :meth:`DeadLetters.store_schema_failure`.

The last two reach the control plane through the work-queue streams of
:mod:`memphis_sync.broker.handlers.dls_relay`, so none is lost while no control plane runs; an event
is acked once its record is stored, and one delivered again (its control plane died before the
ack) stores nothing twice: a dead letter's record id is the poison id of its station partition and
sequence (the same message dead-lettered again only adds its consumer group), a schema failure's is
made of the time and sequence at which the relay stream stored it (:func:`schema_failure_id`).

A new record is forwarded to the station's ``dls_station`` (§9.7) with the extra headers
``station`` and ``type``, before it is stored: a control plane that dies in between forwards it
again on the next delivery (a duplicate in the DLS station), rather than storing a record that
was never forwarded. ``$memphis_pm_acks`` (§9.6), a plain subscription as on the broker, removes
a consumer group from a record.

Differences from the Memphis broker: the advisory durable is a push consumer with a queue group
(the broker pulls batches of 1000); the forwarding partition is drawn uniformly from all
partitions (§15.10: the broker never picks the last one); a schema failure delivered twice is
stored once (the broker inserts a second row).
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from memphis_sync.broker import rules
from memphis_sync.broker.context import BrokerContext
from memphis_sync.broker.metadata import MetadataStore
from memphis_sync.errors import (
    ConsumerNameInUseError,
    MemphisError,
    MessageNotFoundError,
    StreamNameInUseError,
    StreamNotFoundError,
)
from memphis_sync.jetstream import JetStream, MsgMetadata
from memphis_sync.jetstream.types import ConsumerConfig, StreamConfig
from memphis_sync.nats.connection import Connection
from memphis_sync.nats.protocol import Msg

__all__ = ["DeadLetters", "DLS_SUBJECTS", "list_dls_remote", "schema_failure_id"]

logger = logging.getLogger(__name__)

#: Subject → (queue group, handler method) of the plain subscriptions; the queue group is the
#: broker's (§3.1). ``$memphis_nacked_dls`` and ``$memphis_schemaverse_dls`` are captured by the
#: relay streams instead (:mod:`memphis_sync.broker.handlers.dls_relay`).
DLS_SUBJECTS: Dict[str, Tuple[str, str]] = {
    "$memphis_pm_acks": ("$memphis_pm_acks_group", "_on_pm_ack"),
}
#: The advisory stream, its durable and where the durable pushes to (§9.1).
UNACKED_STREAM = "$memphis_dls_unacked"
UNACKED_SUBJECTS = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
UNACKED_DURABLE = "$memphis_dls_unacked_consumer"
UNACKED_DELIVER = "$memphis_sync_dls_unacked"
UNACKED_GROUP = "$memphis_dls_unacked_group"
_DAY = 24 * 3600.0
_PRODUCED_BY = "$memphis_producedBy"
_RESENT_PRODUCER = "$memphis_dls"


def _headers_dict(headers: Any) -> Dict[str, str]:
    if not headers:
        return {}
    return {name: headers.get(name) for name in headers}


class DeadLetters:
    """The DLS handlers, on a :class:`~memphis_sync.broker.context.BrokerContext`."""

    def __init__(self, ctx: BrokerContext) -> None:
        self._ctx = ctx

    def subscribe(self) -> List[Any]:
        """Set up the advisory stream and subscribe to :data:`DLS_SUBJECTS`; return the subscriptions.

        The advisory stream gets the context's ``metadata_replicas``.
        """
        conn, js, replicas = self._ctx.connection, self._ctx.jetstream, self._ctx.metadata_replicas
        try:
            js.add_stream(StreamConfig(
                name=UNACKED_STREAM, subjects=[UNACKED_SUBJECTS], retention="workqueue", max_age=_DAY,
                storage="file", num_replicas=replicas,
            ))
        except StreamNameInUseError:
            logger.debug("%s exists with another configuration; keeping it", UNACKED_STREAM)
        try:
            js.add_consumer(UNACKED_STREAM, ConsumerConfig(
                durable_name=UNACKED_DURABLE, ack_wait=80.0, max_deliver=10, max_ack_pending=-1,
                extra={"deliver_subject": UNACKED_DELIVER, "deliver_group": UNACKED_GROUP},
            ), legacy_durable_api=True)
        except ConsumerNameInUseError:
            logger.debug("%s exists with another configuration; keeping it", UNACKED_DURABLE)
        subs = [conn.subscribe(UNACKED_DELIVER, queue=UNACKED_GROUP, callback=self._guard(self._on_max_deliveries, ack=True))]
        for subject, (queue, method) in DLS_SUBJECTS.items():
            subs.append(conn.subscribe(subject, queue=queue, callback=self._guard(getattr(self, method))))
        return subs

    def _guard(self, handler: Callable[[Dict[str, Any]], None], *, ack: bool = False) -> Callable[[Msg], None]:
        def on_event(msg: Msg) -> None:
            try:
                data = json.loads(msg.payload)
                if isinstance(data, dict):
                    with self._ctx.lock:
                        handler(data)
            except Exception:  # a bad event must not stop the subscription
                logger.exception("control plane: DLS event on %s failed", msg.subject)
                return  # not acked: JetStream redelivers it
            if ack and msg.reply:
                self._ctx.connection.publish(msg.reply, b"+ACK")

        return on_event

    # -- records -----------------------------------------------------------------------------

    def records(self, station: str) -> List[Dict[str, Any]]:
        """The dead-letter records of a station, oldest first."""
        return _records(self._ctx.metadata, station)

    def _store(
        self,
        station: Mapping[str, Any],
        record_id: int,
        *,
        message_type: str,
        seq: int,
        partition: int,
        cg: Optional[str],
        producer: str,
        data: bytes,
        headers: Dict[str, str],
        time_sent: Optional[float],
        validation_error: str,
    ) -> bool:
        """Create or update a record; True if it is new (then it is forwarded to the DLS station
        first). A schema record that exists is the same failure delivered again: left alone."""
        key = f"dls.{rules.internal_name(station['name'])}.{record_id}"
        meta = self._ctx.metadata
        record = meta.get(key)
        new = record is None
        if record is not None and message_type == "schema":
            logger.debug("DLS: schema failure %s of %s is stored already", record_id, station["name"])
            return False
        if record is not None and (not cg or cg in record["poisoned_cgs"]) and validation_error in ("", record["validation_error"]):
            return False  # the same dead letter again: nothing to change
        if record is None:
            record = {
                "id": record_id,
                "station_name": station["name"],
                "message_seq": seq,
                "partition_number": partition,
                "producer_name": producer,
                "poisoned_cgs": [],
                "message_type": message_type,
                "validation_error": validation_error,
                "message_details": {
                    "time_sent": time_sent,
                    "size": len(data) + sum(len(k) + len(v) for k, v in headers.items()),
                    "data": data.hex(),
                    "headers": headers,
                },
                "created_at": time.time(),
            }
        if cg and cg not in record["poisoned_cgs"]:
            record["poisoned_cgs"].append(cg)
        if validation_error:
            record["validation_error"] = validation_error
        record["updated_at"] = time.time()
        if new:
            self._forward(station, data, headers, "unacked" if message_type == "poison" else "failed_schema")
        meta.put(key, record)
        return new

    def _forward(self, station: Mapping[str, Any], data: bytes, headers: Dict[str, str], kind: str) -> None:
        target_name = station.get("dls_station") or ""
        if not target_name:
            return
        target = self._ctx.get_station(target_name)
        if target is None:
            return
        partitions = target.get("partitions_list") or [1]
        stream = rules.stream_name(target["name"], random.choice(partitions))
        try:
            self._ctx.jetstream.publish(f"{stream}.final", data, headers={**headers, "station": station["name"], "type": kind})
        except MemphisError as exc:
            logger.warning("DLS forward of a %s message from %s to %s failed: %s", kind, station["name"], target_name, exc)

    def _read(self, stream: str, seq: int) -> Optional[Any]:
        """The message at ``seq``, or None if it (or its stream) is gone; other errors raise, so
        that the event is delivered again."""
        try:
            return self._ctx.jetstream.get_msg(stream, seq)
        except (MessageNotFoundError, StreamNotFoundError) as exc:
            logger.warning("DLS: cannot read %s seq %d: %s", stream, seq, exc)
            return None

    # -- handlers ----------------------------------------------------------------------------

    def _station_of_stream(self, stream: str) -> Tuple[Optional[Dict[str, Any]], int]:
        internal, _, part = stream.partition("$")
        partition = int(part) if part.isdigit() else -1
        station = self._ctx.metadata.get(f"station.{internal}")
        return station, partition

    def _on_max_deliveries(self, event: Dict[str, Any]) -> None:
        stream = str(event.get("stream") or "")
        if stream.startswith("$memphis"):
            return
        station, partition = self._station_of_stream(stream)
        if station is None or not station["dls_configuration"].get("poison", True):
            return
        seq = int(event.get("stream_seq") or 0)
        msg = self._read(stream, seq)
        if msg is None:
            return
        headers = _headers_dict(msg.headers)
        producer = headers.get(_PRODUCED_BY) or "unknown"
        if producer == _RESENT_PRODUCER:
            return
        cg = str(event.get("consumer") or "").replace("#", ".")
        self._store(
            station, _poison_id(partition, seq), message_type="poison", seq=seq, partition=partition, cg=cg,
            producer=producer, data=msg.data, headers=headers,
            time_sent=msg.time.timestamp() if msg.time else None, validation_error="",
        )

    def store_nacked(self, event: Dict[str, Any], delivery: Optional[MsgMetadata] = None) -> None:
        """Store a ``$memphis_nacked_dls`` event (§9.3) as the poison record of its message.

        Args:
            event: The event the consumer sent.
            delivery: The relay stream's metadata of the event (unused: the record id is the
                message's poison id, the same on every delivery).

        Raises:
            MemphisError: The metadata store or the station stream could not be read or written.
        """
        partition = int(event.get("partition") or 0)
        if partition == 0:  # §15.20: required
            logger.warning("DLS: $memphis_nacked_dls without a partition: %r", event)
            return
        internal = str(event.get("station_name") or "")
        station = self._ctx.metadata.get(f"station.{internal}")
        if station is None or not station["dls_configuration"].get("poison", True):
            return
        seq = int(event.get("seq") or 0)
        stream = rules.stream_name(station["name"], partition)
        msg = self._read(stream, seq)
        if msg is None:
            return
        headers = _headers_dict(msg.headers)
        self._store(
            station, _poison_id(partition, seq), message_type="poison", seq=seq, partition=partition,
            cg=str(event.get("cg_name") or ""), producer=headers.get(_PRODUCED_BY) or "unknown",
            data=msg.data, headers=headers, time_sent=msg.time.timestamp() if msg.time else None,
            validation_error=str(event.get("error") or ""),
        )

    def store_schema_failure(self, event: Dict[str, Any], delivery: Optional[MsgMetadata] = None) -> None:
        """Store a ``$memphis_schemaverse_dls`` event (§9.4) as a schema record.

        Args:
            event: The event the producer sent.
            delivery: The relay stream's metadata of the event: the record id is
                :func:`schema_failure_id` of it and ``time_sent`` its store time, the same on every
                delivery. Without it (a direct call) the id and time are now's.

        Raises:
            MemphisError: The metadata store could not be read or written.
        """
        internal = str(event.get("station_name") or "")
        station = self._ctx.metadata.get(f"station.{internal}")
        if station is None:
            return
        message = event.get("message") or {}
        try:
            data = bytes.fromhex(str(message.get("data") or ""))
        except ValueError:
            data = str(message.get("data") or "").encode()
        headers = {str(k): str(v) for k, v in (message.get("headers") or {}).items()}
        producer = (event.get("producer") or {}).get("name") or "unknown"
        stored_ns = delivery.timestamp_ns if delivery is not None else time.time_ns()
        record_id = schema_failure_id(stored_ns, delivery.stream_seq if delivery is not None else 0)
        self._store(
            station, record_id, message_type="schema", seq=0,
            partition=int(event.get("partition_number") or 0), cg=None, producer=producer, data=data,
            headers=headers, time_sent=stored_ns / 1e9, validation_error=str(event.get("validation_error") or ""),
        )

    def _on_pm_ack(self, event: Dict[str, Any]) -> None:
        record_id = str(event.get("id") or "")
        cg = str(event.get("cg_name") or "")
        for station in self._ctx.stations():
            key = f"dls.{rules.internal_name(station['name'])}.{record_id}"
            record = self._ctx.metadata.get(key)
            if record is not None:
                self._drop_cg(key, record, cg)
                return

    def _drop_cg(self, key: str, record: Dict[str, Any], cg: str) -> None:
        """Remove ``cg`` from a poison record; a record no group is poisoned by any more goes."""
        record["poisoned_cgs"] = [c for c in record["poisoned_cgs"] if c != cg]
        if record["poisoned_cgs"] or record["message_type"] != "poison":
            self._ctx.metadata.put(key, record)
        else:
            self._ctx.metadata.delete(key)

    def forget_group(self, station: str, cg: str) -> None:
        """A consumer group was removed: take it off the station's poison records (§7.4)."""
        prefix = f"dls.{rules.internal_name(station)}"
        for key, record in self._ctx.metadata.list(prefix).items():
            if cg in record.get("poisoned_cgs", ()):
                self._drop_cg(key, record, cg)

    def update_config(self, station: str, *, poison: Optional[bool] = None, schemaverse: Optional[bool] = None) -> None:
        """Change a station's DLS configuration, as the UI does; a ``schemaverse`` change is
        announced on ``$memphis_sdk_clients_updates`` (with the new value, §15.9).

        Raises:
            MemphisError: There is no such station.
        """
        with self._ctx.lock:
            record = self._ctx.get_station(station)
            if record is None:
                raise MemphisError(f"station {station} does not exist")
            dls = dict(record["dls_configuration"])
            if poison is not None:
                dls["poison"] = poison
            if schemaverse is not None:
                dls["schemaverse"] = schemaverse
            self._ctx.put_station({**record, "dls_configuration": dls})
        if schemaverse is not None:
            self._ctx.notify_clients(record["name"], "schemaverse_to_dls", schemaverse)

    def resend(self, name: str) -> int:
        """Re-send a station's poison messages to their consumer groups (the UI "resend", §9.5).

        Returns:
            How many messages were published (one per record and poisoned group).

        Raises:
            MemphisError: There is no such station.
        """
        station = self._ctx.get_station(name)
        if station is None:
            raise MemphisError(f"station {name} does not exist")
        internal = rules.internal_name(station["name"])
        sent = 0
        for record in self.records(station["name"]):
            if record["message_type"] != "poison":
                continue
            details = record["message_details"]
            data = bytes.fromhex(details["data"])
            for cg in record["poisoned_cgs"]:
                headers = {k: v for k, v in details["headers"].items() if k != "producedBy"}
                headers.update({"$memphis_pm_id": str(record["id"]), "$memphis_pm_cg_name": cg, _PRODUCED_BY: _RESENT_PRODUCER})
                for subject in (f"$memphis_dls_{internal}.{rules.internal_name(cg)}", f"$memphis_dls_{internal}_{rules.internal_name(cg)}"):
                    self._ctx.connection.publish(subject, data, headers=headers)
                sent += 1
        return sent


def _poison_id(partition: int, seq: int) -> int:
    """The id of a station's poison record: one per (partition, sequence), an int as the SDKs
    expect in ``$memphis_pm_id``."""
    return partition * 1_000_000_000_000 + seq


def schema_failure_id(stored_ns: int, relay_seq: int) -> int:
    """The id of a schema record: the microsecond at which the relay stream stored the failure,
    times 1000, plus its relay sequence modulo 1000. The same on every delivery of the failure,
    distinct for two failures (the same microsecond and sequences 1000 apart cannot both happen),
    and far above the poison ids (:func:`_poison_id`) of the most partitions a station can have."""
    return (stored_ns // 1000) * 1000 + relay_seq % 1000


def _records(meta: MetadataStore, station: str) -> List[Dict[str, Any]]:
    records = meta.list(f"dls.{rules.internal_name(station)}").values()
    return sorted(records, key=lambda r: r["created_at"])


def dls_records(js: JetStream, station: str) -> List[Dict[str, Any]]:
    """The dead-letter records of ``station`` kept by a local broker, read over any connection
    of a user allowed to read its metadata stream.

    Raises:
        StreamNotFoundError: the broker keeps no such metadata (not a memphis-sync local broker).
    """
    return _records(MetadataStore(js), station)


def list_dls_remote(
    servers: Union[str, Sequence[str]],
    station: str,
    *,
    token: Optional[str] = None,
    user: Optional[str] = None,
    password: Optional[str] = None,
    username: str = "root",
) -> List[Dict[str, Any]]:
    """Read the dead-letter records of ``station`` from a running broker's metadata.

    Args:
        username: The Memphis user the connection is named after (``memphis-sync-dls-cli::<username>``),
            which a token-mode broker checks at connect.

    Raises:
        MemphisError: the broker could not be reached or read.
    """
    conn = Connection(servers, name=f"memphis-sync-dls-cli::{username}", token=token, user=user, password=password)
    conn.connect()
    try:
        return dls_records(JetStream(conn), station)
    finally:
        conn.close()
