"""Stations of the control plane (``memphis-wire.md`` §4): create, destroy, auto-create.

A station is one JetStream stream per partition (:func:`~memphis_sync.broker.rules.stream_config`)
plus a record in the metadata store. ``$memphis_station_creations`` treats "already exists" as
success (§4.2); a station's missing DLS station is created with it; removing a station takes its
streams, producers, consumers and DLS records with it.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Mapping

from memphis_sync.broker import rules
from memphis_sync.broker.context import BrokerContext
from memphis_sync.broker.handlers.schemas import Schemaverse
from memphis_sync.errors import JetStreamError
from memphis_sync.jetstream.types import StreamConfig

__all__ = ["Stations"]

logger = logging.getLogger(__name__)

_REPLICAS_NOT_SUPPORTED = 10074  # JSStreamReplicasNotSupportedErr


class Stations:
    """The station handlers, on a :class:`~memphis_sync.broker.context.BrokerContext`.

    Args:
        ctx: The shared context.
        schemas: The schema handlers (a station creation names an existing schema).
    """

    def __init__(self, ctx: BrokerContext, schemas: Schemaverse) -> None:
        self._ctx = ctx
        self._schemas = schemas

    def create_station_request(self, request: Dict[str, Any]) -> str:
        """``$memphis_station_creations`` (§4.1)."""
        name, error = rules.station_name_from_str(request.get("name"))
        if error:
            return error
        username, tenant = rules.split_username(request.get("username"))
        if tenant not in (-1, self._ctx.account_id):
            return f"createStationDirect: Station {request.get('name')}: Tenant with id {tenant} does not exist"
        if self._ctx.get_station(name) is not None:
            return ""  # §4.2: "already exists" is success
        settings = rules.station_settings(request)
        if isinstance(settings, str):
            return settings
        if settings.schema_name and self._schemas.get(settings.schema_name) is None:
            return f"Schema {request.get('schema_name')} does not exist"  # §15.4: the broker replies ""
        self._ctx.check_user(username, f"User {username} does not exist")  # §15.4: the broker replies ""
        self.create_station(settings, created_by=username)
        return ""

    def create_station(self, settings: rules.StationSettings, *, created_by: str = "root") -> Dict[str, Any]:
        """Create a station's streams and record (the DLS station too, when missing).

        Returns:
            The station record (the existing one if the station already exists).

        Raises:
            Refusal: with the broker's error text.
        """
        ctx = self._ctx
        existing = ctx.get_station(settings.name)
        if existing is not None:
            return existing
        if settings.dls_station and settings.dls_station != settings.name and ctx.get_station(settings.dls_station) is None:
            dls_name, error = rules.station_name_from_str(settings.dls_station)
            if error:
                raise rules.Refusal(error)
            self.create_station(rules.default_station_settings(dls_name, ctx.default_replicas), created_by=created_by)
        created: List[str] = []
        for partition in settings.partitions_list:
            config = rules.stream_config(settings, partition)
            try:
                ctx.jetstream.add_stream(_stream_config(config))
            except JetStreamError as exc:
                for stream in created:
                    ctx.delete_stream(stream)
                if exc.err_code == _REPLICAS_NOT_SUPPORTED:
                    raise rules.Refusal("station can not be created, probably since replicas count is larger than the cluster size") from exc
                raise rules.Refusal(exc.description) from exc
            created.append(config["name"])
        record = {**settings.to_record(), "created_by_username": created_by, "created_at": time.time()}
        if not ctx.metadata.put(f"station.{settings.internal_name}", record, create_only=True):
            return ctx.get_station(settings.name) or record  # created concurrently elsewhere
        logger.info("station %s created (%d partitions)", settings.name, settings.partitions_number)
        return record

    def destroy_station_request(self, request: Dict[str, Any]) -> str:
        """``$memphis_station_destructions`` (§4.4)."""
        name, error = rules.station_name_from_str(request.get("station_name"))
        if error:
            return error
        if not self.remove_station(name, notify=False):
            return f"Station {name} does not exist"  # the broker formats an empty name here
        return ""

    def remove_station(self, name: str, *, notify: bool = True) -> bool:
        """Delete station ``name`` with its streams, producers, consumers and DLS records; False
        if there is none. ``notify``: announce ``remove_station`` to the SDKs (§4.4)."""
        ctx = self._ctx
        with ctx.lock:
            record = ctx.get_station(name)
            if record is None:
                return False
            internal = rules.internal_name(record["name"])
            for partition in record.get("partitions_list") or []:
                ctx.delete_stream(rules.stream_name(record["name"], partition))
            for kind in ("producer", "consumer", "dls"):
                ctx.metadata.delete_prefix(f"{kind}.{internal}")
            for other in ctx.stations():
                if other.get("dls_station") == record["name"] and other["name"] != record["name"]:
                    ctx.put_station({**other, "dls_station": ""})
            ctx.metadata.delete(f"station.{internal}")
        if notify:
            ctx.notify_clients(record["name"], "remove_station", None)
        logger.info("station %s removed", record["name"])
        return True

    def station_for_client(self, raw_name: Any, req_version: int, kind: str, username: str) -> Dict[str, Any]:
        """Look up (or auto-create, §4.6) the station of a producer/consumer request.

        Args:
            raw_name: The request's station name.
            req_version: The request's ``req_version`` (below 2: no auto-creation, no partitions).
            kind: ``"producer"`` or ``"consumer"`` (the error texts differ).
            username: The requesting user (recorded as the creator of an auto-created station).

        Raises:
            Refusal: with the broker's error text.
        """
        name, error = rules.station_name_from_str(raw_name)
        if error:
            raise rules.Refusal(error)
        station = self._ctx.get_station(name)
        if station is None:
            if req_version < 2:
                if kind == "producer":
                    raise rules.Refusal("this station does not exist, a default station can not be created automatically, please upgrade your SDK version")
                raise rules.Refusal("This station does not exist, a default station can not be created automatically, please upgrade your SDK version")
            station = self.create_station(rules.default_station_settings(name, self._ctx.default_replicas), created_by=username)
        elif req_version < 2 and station.get("partitions_list"):
            verb = "produce to" if kind == "producer" else "consume from"
            raise rules.Refusal(f"to {verb} this station please upgrade your SDK version")
        return station


def _stream_config(config: Mapping[str, Any]) -> StreamConfig:
    """A :class:`StreamConfig` carrying ``config`` (its durations converted from ns to seconds)."""
    fields = dict(config)
    fields["max_age"] = fields["max_age"] / 1e9
    fields["duplicate_window"] = fields["duplicate_window"] / 1e9
    return StreamConfig(**fields)
