"""Consumer groups of the control plane (``memphis-wire.md`` §7): create, destroy, durables.

All consumers with the same group on a station share one durable per partition stream,
``internal(group)``, created through the legacy ``$JS.API.CONSUMER.DURABLE.CREATE`` API as the
broker does (:func:`~memphis_sync.broker.rules.durable_config`). A group counts as active
while it has consumer records: stock nats-server gives no CONNECT/disconnect hook, so records are
removed only by a destroy request (or with their station), and the durable goes with the last one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, List, Mapping, Optional, Tuple

from memphis_sync.broker import rules
from memphis_sync.broker.context import BrokerContext
from memphis_sync.broker.handlers.dls import DeadLetters
from memphis_sync.broker.handlers.schemas import Schemaverse
from memphis_sync.broker.handlers.stations import Stations
from memphis_sync.errors import ConsumerNotFoundError, JetStreamError, StreamNotFoundError
from memphis_sync.jetstream.types import ConsumerConfig

__all__ = ["ConsumerGroups"]


class ConsumerGroups:
    """The consumer handlers, on a :class:`~memphis_sync.broker.context.BrokerContext`.

    Args:
        ctx: The shared context.
        stations: The station handlers (a consumer's station may be created on the fly).
        schemas: The schema handlers (the reply carries the station's schema).
        dls: The DLS handlers (a removed group leaves the station's poison records).
    """

    def __init__(self, ctx: BrokerContext, stations: Stations, schemas: Schemaverse, dls: DeadLetters) -> None:
        self._ctx = ctx
        self._stations = stations
        self._schemas = schemas
        self._dls = dls

    def consumers(self, station: str) -> List[Dict[str, Any]]:
        """The consumer records of a station, oldest first."""
        return sorted(self._ctx.metadata.list(f"consumer.{rules.internal_name(station)}").values(), key=lambda r: r["created_at"])

    def create_consumer(self, request: Dict[str, Any]) -> Any:
        """``$memphis_consumer_creations`` (§7.1); the durables of a new group (§7.3)."""
        settings = rules.consumer_settings(request)
        if isinstance(settings, str):
            return settings
        _, error = rules.station_name_from_str(settings.station)  # checked before the user, as on the broker
        if error:
            return error
        self._ctx.check_user(settings.username, "user does not exist")
        station = self._stations.station_for_client(settings.station, settings.req_version, "consumer", settings.username)
        members = [c for c in self.consumers(station["name"]) if c["consumers_group"] == settings.consumers_group]
        if members:
            current = members[-1]
            if settings.req_version == 1 and (
                current["start_consume_from_sequence"] != settings.start_consume_from_sequence
                or current["last_messages"] != settings.last_messages
            ):
                return "consumer already exists with different uneditable configuration parameters (StartConsumeFromSequence/LastMessages)"
            if (current["max_ack_time_ms"], current["max_msg_deliveries"]) != (settings.max_ack_time_ms, settings.max_msg_deliveries):
                self._ensure_durables(station, settings, update=True)
        else:
            self._ensure_durables(station, settings, update=False)
        record = {
            "id": uuid.uuid4().hex,
            "name": settings.name,
            "station_name": station["name"],
            "connection_id": settings.connection_id,
            "consumers_group": settings.consumers_group,
            "consumer_type": "connector" if settings.username.startswith("$") else settings.consumer_type,
            "username": settings.username,
            "max_ack_time_ms": settings.max_ack_time_ms,
            "max_msg_deliveries": settings.max_msg_deliveries,
            "start_consume_from_sequence": settings.start_consume_from_sequence,
            "last_messages": settings.last_messages,
            "partitions_list": station["partitions_list"],
            "req_version": settings.req_version,
            "is_active": True,
            "created_at": time.time(),
        }
        self._ctx.metadata.put(f"consumer.{rules.internal_name(station['name'])}.{record['id']}", record)
        return {
            "schema_update": self._schemas.station_schema(station),
            "partitions_update": {"partitions_list": station["partitions_list"]},
            "error": "",
        }

    def _ensure_durables(self, station: Mapping[str, Any], settings: rules.ConsumerSettings, *, update: bool) -> None:
        """Create (or update ack wait / max deliveries of) the group's durable on every partition.

        An update keeps each durable's deliver policy: JetStream cannot change it, and the group's
        position must not move (§15.13: the broker would surface JetStream's refusal instead).
        """
        durable = rules.internal_name(settings.consumers_group)
        for partition in station.get("partitions_list") or []:
            stream = rules.stream_name(station["name"], partition)
            policy: Tuple[str, Optional[int]]
            existing = None
            if update:
                try:
                    existing = self._ctx.jetstream.consumer_info(stream, durable).config
                except ConsumerNotFoundError:
                    existing = None
            if existing is not None:
                policy = (existing.deliver_policy.value, existing.opt_start_seq)
            else:
                last_seq = 0
                if settings.last_messages > 0:
                    last_seq = self._ctx.jetstream.stream_info(stream).state.last_seq
                policy = rules.deliver_policy(settings.start_consume_from_sequence, settings.last_messages, last_seq)
            config = rules.durable_config(
                stream,
                settings.consumers_group,
                max_ack_time_ms=settings.max_ack_time_ms,
                max_msg_deliveries=settings.max_msg_deliveries,
                policy=policy[0],
                opt_start_seq=policy[1],
            )
            try:
                self._ctx.jetstream.add_consumer(stream, _consumer_config(config), legacy_durable_api=True)
            except JetStreamError as exc:
                raise rules.Refusal(exc.description) from exc

    def destroy_consumer(self, request: Dict[str, Any]) -> str:
        """``$memphis_consumer_destructions`` (§7.4); the last one of a group takes its durables."""
        name = str(request.get("name") or "").lower()
        raw_station = request.get("station_name")
        station_name, error = rules.station_name_from_str(raw_station)
        if error:
            return error
        station = self._ctx.get_station(station_name)
        not_found = f"Consumer {request.get('name')} at station {raw_station} does not exist"
        if station is None:
            return not_found
        by_connection = int(request.get("req_version") or 0) >= 1
        connection_id = str(request.get("connection_id") or "")
        internal = rules.internal_name(station["name"])
        records = self._ctx.metadata.list(f"consumer.{internal}")
        match = next(
            (
                (key, rec)
                for key, rec in sorted(records.items(), key=lambda kv: kv[1]["created_at"])
                if rec["name"] == name and (not by_connection or rec["connection_id"] == connection_id)
            ),
            None,
        )
        if match is None:
            return not_found
        key, record = match
        self._ctx.metadata.delete(key)
        group = record["consumers_group"]
        if not any(rec["consumers_group"] == group for k, rec in records.items() if k != key):
            durable = rules.internal_name(group)
            for partition in station.get("partitions_list") or []:
                try:
                    self._ctx.jetstream.delete_consumer(rules.stream_name(station["name"], partition), durable)
                except (ConsumerNotFoundError, StreamNotFoundError):
                    pass
            self._dls.forget_group(station["name"], group)
        return ""


def _consumer_config(config: Mapping[str, Any]) -> ConsumerConfig:
    """A :class:`ConsumerConfig` whose ``to_request()`` is exactly ``config`` (ns → s here)."""
    fields = dict(config)
    fields["ack_wait"] = fields["ack_wait"] / 1e9
    return ConsumerConfig(**fields)
