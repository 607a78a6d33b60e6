"""Producers of the control plane (``memphis-wire.md`` §5): create and destroy.

A producer is a record in the metadata store (key ``producer.<internal station>.<id>``); its
creation may create the station (§4.6) and answers with the station's schema and partitions
(:func:`producer_reply`). Destroying by ``connection_id`` starts at ``req_version`` 1 (§5.4).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, List, Mapping, Optional

from memphis_sync.broker import rules
from memphis_sync.broker.context import BrokerContext
from memphis_sync.broker.handlers.schemas import Schemaverse
from memphis_sync.broker.handlers.stations import Stations

__all__ = ["Producers", "producer_reply"]


def producer_reply(
    error: str, station: Optional[Mapping[str, Any]] = None, schema: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """The ``$memphis_producer_creations`` JSON reply (§5.2); zero values on error."""
    return {
        "error": error,
        "schema_update": schema or rules.empty_schema_update(),
        "partitions_update": {"partitions_list": station["partitions_list"] if station else None},
        "schemaverse_to_dls": bool(station and station["dls_configuration"]["schemaverse"]),
        "send_notification": False,
        "station_version": station["version"] if station else 0,
        "station_partitions_first_functions": {},
    }


class Producers:
    """The producer handlers, on a :class:`~memphis_sync.broker.context.BrokerContext`.

    Args:
        ctx: The shared context.
        stations: The station handlers (a producer's station may be created on the fly).
        schemas: The schema handlers (the reply carries the station's schema).
    """

    def __init__(self, ctx: BrokerContext, stations: Stations, schemas: Schemaverse) -> None:
        self._ctx = ctx
        self._stations = stations
        self._schemas = schemas

    def producers(self, station: str) -> List[Dict[str, Any]]:
        """The producer records of a station, oldest first."""
        records = self._ctx.metadata.list(f"producer.{rules.internal_name(station)}").values()
        return sorted(records, key=lambda r: r["created_at"])

    def create_producer(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """``$memphis_producer_creations`` (§5.1, checks in the order of §5.3)."""
        name = str(request.get("name") or "").lower()
        error = rules.validate_name(name, "Producer")
        if error:
            return producer_reply(error)
        producer_type = str(request.get("producer_type") or "").lower()
        if producer_type not in ("application", "connector"):
            return producer_reply("producer type has to be one of the following application/connector")
        username = str(request.get("username") or "")
        self._ctx.check_user(username, f"User {username} does not exist")
        req_version = int(request.get("req_version") or 0)
        station = self._stations.station_for_client(request.get("station_name"), req_version, "producer", username)
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
        self._ctx.metadata.put(f"producer.{rules.internal_name(station['name'])}.{record['id']}", record)
        return producer_reply("", station, self._schemas.station_schema(station))

    def destroy_producer(self, request: Dict[str, Any]) -> str:
        """``$memphis_producer_destructions`` (§5.4)."""
        name = str(request.get("name") or "").lower()
        raw_station = request.get("station_name")
        station_name, error = rules.station_name_from_str(raw_station)
        if error:
            return error
        by_connection = int(request.get("req_version") or 0) >= 1
        connection_id = str(request.get("connection_id") or "")
        internal = rules.internal_name(station_name)
        matches = [
            key
            for key, rec in self._ctx.metadata.list(f"producer.{internal}").items()
            if rec["name"] == name and (not by_connection or rec["connection_id"] == connection_id)
        ]
        if not matches:
            return f"Producer {request.get('name')} at station {raw_station} does not exist"
        for key in matches:
            self._ctx.metadata.delete(key)
        return ""
