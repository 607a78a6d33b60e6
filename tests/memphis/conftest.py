"""A tiny fake Memphis control plane for the Memphis-API tests, on a real nats-server.

It answers the ``$memphis_*`` service subjects the way ``memphis-wire.md`` §3-§7 says the broker
does (plain text ``""`` = OK, JSON creation replies, streams ``<internal>$<p>`` with subjects
``<internal>$<p>.>``, one durable per partition named after the group), and records every
request body and fire-and-forget publication so tests can compare them field by field.
It is deliberately small: the real local broker lives in ``memphis_sync.broker``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import memphis_sync
from memphis_sync.errors import ConsumerNotFoundError, JetStreamError, StreamNotFoundError
from memphis_sync.jetstream import JetStream
from memphis_sync.jetstream.types import ConsumerConfig, StreamConfig
from memphis_sync.nats.connection import connect as nats_connect

SERVICES = {
    "$memphis_station_creations": "memphis_station_creations_listeners_group",
    "$memphis_station_destructions": "memphis_station_destructions_listeners_group",
    "$memphis_producer_creations": "memphis_producer_creations_listeners_group",
    "$memphis_producer_destructions": "memphis_producer_destructions_listeners_group",
    "$memphis_consumer_creations": "memphis_consumer_creations_listeners_group",
    "$memphis_consumer_destructions": "memphis_consumer_destructions_listeners_group",
    "$memphis_schema_attachments": "memphis_schema_attachments_listeners_group",
    "$memphis_schema_detachments": "memphis_schema_detachments_listeners_group",
    "$memphis_schema_creations": "memphis_schema_creations_listeners_group",
}
FIRE_AND_FORGET = ["$memphis_notifications", "$memphis_schemaverse_dls", "$memphis_nacked_dls", "$memphis_pm_acks"]
_NAME = re.compile(r"^[a-z0-9_.-]*$")


def internal(name: str) -> str:
    return name.lower().replace(".", "#")


def name_error(name: str, kind: str) -> Optional[str]:
    name = name.lower()
    if not name:
        return f"{kind} name can not be empty"
    if len(name) > 128:
        return f"{kind} should be under 128 characters"
    if not _NAME.match(name):
        return f"Only alphanumeric and the '_', '-', '.' characters are allowed in {kind}"
    if name[0] in "._-" or name[-1] in "._-":
        return f"{kind} name can not start or end with non alphanumeric character"
    return None


class FakeControlPlane:
    """Answers the Memphis control-plane subjects; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.conn = nats_connect(url)
        self.js = JetStream(self.conn)
        self.requests: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
        self.published: Dict[str, List[Any]] = defaultdict(list)
        self.stations: Dict[str, Dict[str, Any]] = {}
        self.schemas: Dict[str, Dict[str, Any]] = {}
        self.groups: Dict[tuple, set] = defaultdict(set)  # (station, group) -> {(conn id, consumer)}
        self.fail_next: Dict[str, str] = {}  # subject -> text to answer once
        self.silent: Dict[str, int] = {}  # subject -> requests to ignore (timeouts)
        self._lock = threading.Lock()
        for subject, group in SERVICES.items():
            handler = getattr(self, "_" + subject[len("$memphis_"):])
            self.conn.subscribe(subject, queue=group, callback=self._serve(subject, handler))
        for subject in FIRE_AND_FORGET:
            self.conn.subscribe(subject, callback=self._record(subject))
        self.conn.flush()

    def close(self) -> None:
        self.conn.close()

    def _record(self, subject: str) -> Callable[[Any], None]:
        def on_msg(msg: Any) -> None:
            self.published[subject].append(json.loads(msg.payload))

        return on_msg

    def _serve(self, subject: str, handler: Callable[[Dict[str, Any]], Any]) -> Callable[[Any], None]:
        def on_request(msg: Any) -> None:
            body = json.loads(msg.payload)
            self.requests[subject].append(body)
            with self._lock:
                if self.silent.get(subject):
                    self.silent[subject] -= 1
                    return
                text = self.fail_next.pop(subject, None)
                if text is None:
                    try:
                        result = handler(body)
                    except JetStreamError as exc:
                        result = exc.description
                else:
                    result = text
            payload = result if isinstance(result, str) else json.dumps(result)
            self.conn.publish(msg.reply, payload.encode())

        return on_request

    # -- stations --------------------------------------------------------------------------

    def _station_creations(self, req: Dict[str, Any]) -> str:
        name = str(req["name"]).lower()
        error = name_error(name, "Station")
        if error:
            return error
        if name in self.stations:
            return ""
        if req.get("retention_type", "") not in ("", "message_age_sec", "messages", "bytes", "ack_based"):
            return "retention type can be one of the following message_age_sec/messages/bytes/ack_based"
        if req.get("storage_type", "") not in ("", "file", "memory"):
            return "storage type can be one of the following file/memory"
        if req.get("partitions_number", 0) == 0:
            return "you are using an old SDK, make sure to update your SDK"
        self.create_station(name, req)
        return ""

    def create_station(self, name: str, req: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        req = dict(req or {})
        kind = req.get("retention_type") or "message_age_sec"
        value = int(req.get("retention_value", 3600))
        if value <= 0 and kind != "ack_based":
            kind, value = "message_age_sec", 3600
        window = int(req.get("idempotency_window_in_ms", 120000)) or 120000
        partitions = list(range(1, int(req.get("partitions_number", 1)) + 1))
        for p in partitions:
            stream = f"{internal(name)}${p}"
            self.js.add_stream(StreamConfig(
                name=stream, subjects=[stream + ".>"],
                retention="interest" if kind == "ack_based" else "limits",
                max_msgs=value if kind == "messages" else -1,
                max_bytes=value if kind == "bytes" else -1,
                max_age=float(value) if kind == "message_age_sec" else 0.0,
                storage="memory" if req.get("storage_type") == "memory" else "file",
                duplicate_window=max(window, 100) / 1000,
            ))
        station = {"name": name, "partitions": partitions, "request": req, "schema": req.get("schema_name", "")}
        self.stations[name] = station
        return station

    def _station_destructions(self, req: Dict[str, Any]) -> str:
        name = str(req["station_name"]).lower()
        station = self.stations.pop(name, None)
        if station is None:
            return "Station  does not exist"
        for p in station["partitions"]:
            try:
                self.js.delete_stream(f"{internal(name)}${p}")
            except StreamNotFoundError:
                pass
        return ""

    def _station_for(self, raw: str) -> Dict[str, Any]:
        name = raw.lower()
        return self.stations.get(name) or self.create_station(name)

    def _schema_update(self, station: Dict[str, Any]) -> Dict[str, Any]:
        schema = self.schemas.get(station.get("schema") or "")
        if not schema:
            return {"schema_name": "", "active_version": {"version_number": 0, "descriptor": "", "schema_content": "", "message_struct_name": ""}, "type": ""}
        return {"schema_name": schema["name"], "active_version": {"version_number": 1, "descriptor": "", "schema_content": schema["schema_content"], "message_struct_name": ""}, "type": schema["type"]}

    # -- producers -------------------------------------------------------------------------

    def _producer_creations(self, req: Dict[str, Any]) -> Dict[str, Any]:
        reply: Dict[str, Any] = {"error": "", "schema_update": self._schema_update({}), "partitions_update": {"partitions_list": None},
                                 "schemaverse_to_dls": False, "send_notification": False, "station_version": 0,
                                 "station_partitions_first_functions": {}}
        error = name_error(str(req["name"]), "Producer") or name_error(str(req["station_name"]), "Station")
        if error:
            reply["error"] = error
            return reply
        station = self._station_for(req["station_name"])
        dls = station["request"].get("dls_configuration", {})
        reply.update(
            schema_update=self._schema_update(station),
            partitions_update={"partitions_list": station["partitions"]},
            schemaverse_to_dls=bool(dls.get("Schemaverse", dls.get("schemaverse", True))),
            station_version=2,
        )
        return reply

    def _producer_destructions(self, req: Dict[str, Any]) -> str:
        return ""

    # -- consumers -------------------------------------------------------------------------

    def _consumer_creations(self, req: Dict[str, Any]) -> Any:
        group = str(req.get("consumers_group") or req["name"]).lower()
        error = name_error(str(req["name"]), "Consumer") or name_error(group, "Consumer") or name_error(str(req["station_name"]), "Station")
        if error:
            return error
        station = self._station_for(req["station_name"])
        start, last = int(req["start_consume_from_sequence"]), int(req["last_messages"])
        deliveries = int(req["max_msg_deliveries"])
        deliveries = 10 if deliveries <= 0 or deliveries > 10 else deliveries
        for p in station["partitions"]:
            stream = f"{internal(station['name'])}${p}"
            if last == 0 and start == 1:
                policy, opt = "new", None
            elif last > 0:
                last_seq = self.js.stream_info(stream).state.last_seq
                policy, opt = "by_start_sequence", max(1, last_seq - last + 1)
            elif start > 1:
                policy, opt = "by_start_sequence", start
            else:
                policy, opt = "all", None
            config = ConsumerConfig(
                durable_name=internal(group), deliver_policy=policy, opt_start_seq=opt,
                ack_wait=int(req["max_ack_time_ms"]) / 1000, max_deliver=deliveries,
                filter_subject=stream + ".final", max_ack_pending=-1,
            )
            try:
                self.js.consumer_info(stream, internal(group))
            except ConsumerNotFoundError:
                self.js.add_consumer(stream, config, legacy_durable_api=True)
        self.groups[(station["name"], group)].add((req["connection_id"], str(req["name"]).lower()))
        return {"error": "", "schema_update": self._schema_update(station), "partitions_update": {"partitions_list": station["partitions"]}}

    def _consumer_destructions(self, req: Dict[str, Any]) -> str:
        station = self.stations.get(str(req["station_name"]).lower())
        if station is None:
            return f"Consumer {req['name']} at station {req['station_name']} does not exist"
        for (st, group), members in list(self.groups.items()):
            if st != station["name"]:
                continue
            members.discard((req["connection_id"], req["name"]))
            if not members:
                del self.groups[(st, group)]
                for p in station["partitions"]:
                    try:
                        self.js.delete_consumer(f"{internal(st)}${p}", internal(group))
                    except (ConsumerNotFoundError, StreamNotFoundError):
                        pass
        return ""

    # -- schemas ---------------------------------------------------------------------------

    def _schema_creations(self, req: Dict[str, Any]) -> Dict[str, Any]:
        if not req.get("schema_content"):
            return {"error": "your schema content is invalid"}
        self.schemas[req["name"]] = req
        return {"error": ""}

    def _schema_attachments(self, req: Dict[str, Any]) -> str:
        station = self.stations.get(str(req["station_name"]).lower())
        if station is None:
            return f"memphis: Station {req['station_name']} does not exist"
        if req["name"] not in self.schemas:
            return f"Schema {req['name']} does not exist"
        station["schema"] = req["name"]
        update = {"UpdateType": 1, "init": self._schema_update(station)}
        self.conn.publish(f"$memphis_schema_updates_{internal(station['name'])}", json.dumps(update).encode())
        return ""

    def _schema_detachments(self, req: Dict[str, Any]) -> str:
        station = self.stations.get(str(req["station_name"]).lower())
        if station is None:
            return f"station {req['station_name']} does not exist"
        station["schema"] = ""
        update = {"UpdateType": 2, "init": self._schema_update({})}
        self.conn.publish(f"$memphis_schema_updates_{internal(station['name'])}", json.dumps(update).encode())
        return ""


@pytest.fixture
def fake_plane(nats_server: Any) -> Iterator[FakeControlPlane]:
    plane = FakeControlPlane(nats_server.url)
    try:
        yield plane
    finally:
        plane.close()


@pytest.fixture
def memphis(nats_server: Any, fake_plane: FakeControlPlane) -> Iterator[memphis_sync.Memphis]:
    """A Memphis connection (token mode) to the nats-server answered by the fake control plane."""
    client = memphis_sync.connect(host=nats_server.host, port=nats_server.port, username="root", connection_token="memphis")
    try:
        yield client
    finally:
        client.close()
