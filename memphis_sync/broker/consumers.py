"""Consumer groups of the control plane (``memphis-wire.md`` §7): create, destroy, durables.

All consumers with the same group on a station share one durable per partition stream,
``internal(group)``, created through the legacy ``$JS.API.CONSUMER.DURABLE.CREATE`` API as the
broker does (:func:`~memphis_sync.broker.stations.durable_config`). A group counts as active
while it has consumer records: stock nats-server gives no CONNECT/disconnect hook, so records are
removed only by a destroy request (or with their station), and the durable goes with the last one.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from memphis_sync.broker import stations as st
from memphis_sync.errors import ConsumerNotFoundError, JetStreamError, StreamNotFoundError
from memphis_sync.jetstream.types import ConsumerConfig

if TYPE_CHECKING:  # pragma: no cover
    from memphis_sync.broker.control_plane import ControlPlane

__all__ = ["ConsumerGroups"]


class ConsumerGroups:
    """The consumer handlers of a :class:`~memphis_sync.broker.control_plane.ControlPlane`."""

    def __init__(self, control_plane: "ControlPlane") -> None:
        self._cp = control_plane

    def consumers(self, station: str) -> List[Dict[str, Any]]:
        """The consumer records of a station, oldest first."""
        return sorted(self._cp.metadata.list(f"consumer.{st.internal_name(station)}").values(), key=lambda r: r["created_at"])

    def create_consumer(self, request: Dict[str, Any]) -> Any:
        settings = st.consumer_settings(request)
        if isinstance(settings, str):
            return settings
        _, error = st.station_name_from_str(settings.station)  # checked before the user, as on the broker
        if error:
            return error
        self._cp._check_user(settings.username, "user does not exist")
        station = self._cp._station_for_client(settings.station, settings.req_version, "consumer", settings.username)
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
        self._cp.metadata.put(f"consumer.{st.internal_name(station['name'])}.{record['id']}", record)
        return {
            "schema_update": self._cp._schemas.station_schema(station),
            "partitions_update": {"partitions_list": station["partitions_list"]},
            "error": "",
        }

    def _ensure_durables(self, station: Mapping[str, Any], settings: st.ConsumerSettings, *, update: bool) -> None:
        """Create (or update ack wait / max deliveries of) the group's durable on every partition.

        An update keeps each durable's deliver policy: JetStream cannot change it, and the group's
        position must not move (§15.13: the broker would surface JetStream's refusal instead).
        """
        internal = st.internal_name(station["name"])
        durable = st.internal_name(settings.consumers_group)
        for partition in station.get("partitions_list") or []:
            stream = f"{internal}${partition}"
            policy: Tuple[str, Optional[int]]
            existing = None
            if update:
                try:
                    existing = self._cp.jetstream.consumer_info(stream, durable).config
                except ConsumerNotFoundError:
                    existing = None
            if existing is not None:
                policy = (existing.deliver_policy.value, existing.opt_start_seq)
            else:
                last_seq = 0
                if settings.last_messages > 0:
                    last_seq = self._cp.jetstream.stream_info(stream).state.last_seq
                policy = st.deliver_policy(settings.start_consume_from_sequence, settings.last_messages, last_seq)
            config = st.durable_config(
                stream,
                settings.consumers_group,
                max_ack_time_ms=settings.max_ack_time_ms,
                max_msg_deliveries=settings.max_msg_deliveries,
                policy=policy[0],
                opt_start_seq=policy[1],
            )
            try:
                self._cp.jetstream.add_consumer(stream, _consumer_config(config), legacy_durable_api=True)
            except JetStreamError as exc:
                raise st.Refusal(exc.description) from exc

    def destroy_consumer(self, request: Dict[str, Any]) -> str:
        name = str(request.get("name") or "").lower()
        raw_station = request.get("station_name")
        station_name, error = st.station_name_from_str(raw_station)
        if error:
            return error
        station = self._cp.get_station(station_name)
        not_found = f"Consumer {request.get('name')} at station {raw_station} does not exist"
        if station is None:
            return not_found
        by_connection = int(request.get("req_version") or 0) >= 1
        connection_id = str(request.get("connection_id") or "")
        internal = st.internal_name(station["name"])
        records = self._cp.metadata.list(f"consumer.{internal}")
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
        self._cp.metadata.delete(key)
        group = record["consumers_group"]
        if not any(rec["consumers_group"] == group for k, rec in records.items() if k != key):
            durable = st.internal_name(group)
            for partition in station.get("partitions_list") or []:
                try:
                    self._cp.jetstream.delete_consumer(f"{internal}${partition}", durable)
                except (ConsumerNotFoundError, StreamNotFoundError):
                    pass
            self._cp._dls.forget_group(station["name"], group)
        return ""


def _consumer_config(config: Mapping[str, Any]) -> ConsumerConfig:
    """A :class:`ConsumerConfig` whose ``to_request()`` is exactly ``config`` (ns → s here)."""
    fields = dict(config)
    fields["ack_wait"] = fields["ack_wait"] / 1e9
    return ConsumerConfig(**fields)
