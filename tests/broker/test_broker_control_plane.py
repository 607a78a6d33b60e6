"""The Memphis control plane against a real nats-server: configs field by field, every error text.

Requests are sent with our own connection exactly as the py SDK 1.3.1 shapes them
(``memphis-wire.md`` §4.1, §5.1, §7.1); replies are compared byte for byte.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Dict

import pytest
from broker_tools import ask

from memphis_sync.broker.local import LocalBroker
from memphis_sync.errors import ConsumerNotFoundError, StreamNotFoundError
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import Connection

pytestmark = pytest.mark.integration

_names = itertools.count(1)
NS = 1_000_000_000


def unique(prefix: str = "st") -> str:
    return f"{prefix}{next(_names)}"


def station_request(name: str, /, **overrides: Any) -> Dict[str, Any]:
    body = {
        "name": name,
        "retention_type": "message_age_sec",
        "retention_value": 3600,
        "storage_type": "file",
        "replicas": 1,
        "idempotency_window_in_ms": 120000,
        "schema_name": "",
        "dls_configuration": {"poison": True, "Schemaverse": True},
        "username": "root",
        "tiered_storage_enabled": False,
        "partitions_number": 1,
        "dls_station": "",
    }
    body.update(overrides)
    return body


def producer_request(name: str, station: str, /, **overrides: Any) -> Dict[str, Any]:
    body = {
        "name": name,
        "station_name": station,
        "connection_id": "conn-1",
        "producer_type": "application",
        "req_version": 4,
        "username": "root",
        "app_id": "app-1",
        "sdk_lang": "python",
    }
    body.update(overrides)
    return body


def consumer_request(name: str, station: str, /, **overrides: Any) -> Dict[str, Any]:
    body = {
        "name": name,
        "station_name": station,
        "connection_id": "conn-1",
        "consumer_type": "application",
        "consumers_group": "",
        "max_ack_time_ms": 30000,
        "max_msg_deliveries": 2,
        "start_consume_from_sequence": 1,
        "last_messages": -1,
        "req_version": 4,
        "username": "root",
        "app_id": "app-1",
        "sdk_lang": "python",
    }
    body.update(overrides)
    return body


def create_station(conn: Connection, name: str, /, **overrides: Any) -> None:
    assert ask(conn, "$memphis_station_creations", station_request(name, **overrides)) == ""


EXPECTED_STREAM_KEYS = {
    "name", "subjects", "retention", "max_consumers", "max_msgs", "max_bytes", "max_age",
    "max_msgs_per_subject", "discard", "storage", "num_replicas", "duplicate_window",
}


# -- §4.3 stream configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, dict(retention="limits", max_msgs=-1, max_bytes=-1, max_age=3600 * NS, storage="file", duplicate_window=120 * NS)),
        ({"retention_type": "messages", "retention_value": 500}, dict(retention="limits", max_msgs=500, max_bytes=-1, max_age=0)),
        ({"retention_type": "BYTES", "retention_value": 4096}, dict(max_msgs=-1, max_bytes=4096, max_age=0)),
        ({"retention_type": "ack_based", "retention_value": 0}, dict(retention="interest", max_msgs=-1, max_bytes=-1, max_age=0)),
        ({"retention_type": "messages", "retention_value": 0}, dict(max_msgs=-1, max_age=3600 * NS)),  # <= 0 → 1 h age
        ({"retention_type": "", "retention_value": 99}, dict(max_age=3600 * NS)),
        ({"storage_type": "Memory"}, dict(storage="memory")),
        ({"storage_type": ""}, dict(storage="file")),
        ({"idempotency_window_in_ms": 0}, dict(duplicate_window=120 * NS)),
        ({"idempotency_window_in_ms": 50}, dict(duplicate_window=100 * 1_000_000)),
        ({"idempotency_window_in_ms": 3_000}, dict(duplicate_window=3 * NS)),
        ({"replicas": 0}, dict(num_replicas=1)),
        ({"replicas": -4}, dict(num_replicas=1)),
    ],
)
def test_station_stream_config_field_by_field(conn: Connection, js: JetStream, overrides: Dict[str, Any], expected: Dict[str, Any]) -> None:
    name = unique()
    create_station(conn, name, **overrides)
    config = js.stream_info(f"{name}$1").raw["config"]
    wanted = dict(
        name=f"{name}$1", subjects=[f"{name}$1.>"], retention="limits", max_consumers=-1, max_msgs=-1,
        max_bytes=-1, max_age=3600 * NS, max_msgs_per_subject=-1, discard="old", storage="file",
        num_replicas=1, duplicate_window=120 * NS,
    )
    wanted.update(expected)
    assert {k: config.get(k) for k in EXPECTED_STREAM_KEYS} == wanted
    assert not config.get("no_ack", False)
    assert "tiered_storage_enabled" not in config  # refused by stock nats-server: kept in the record only


def test_station_partitions_dots_and_case(conn: Connection, js: JetStream, memphis_broker: LocalBroker) -> None:
    base = unique()
    create_station(conn, f"Orders.EU.{base}", partitions_number=3, tiered_storage_enabled=True)
    internal = f"orders#eu#{base}"
    assert sorted(n for n in js.stream_names() if n.startswith(internal)) == [f"{internal}${p}" for p in (1, 2, 3)]
    for p in (1, 2, 3):
        assert js.stream_info(f"{internal}${p}").config.subjects == [f"{internal}${p}.>"]
    record = memphis_broker.control_plane.get_station(f"orders.eu.{base}")
    assert record is not None
    assert record["name"] == f"orders.eu.{base}"
    assert record["partitions_list"] == [1, 2, 3]
    assert record["tiered_storage_enabled"] is True
    assert record["dls_configuration"] == {"poison": True, "schemaverse": True}  # "Schemaverse" accepted
    assert record["version"] == 2


def test_station_create_existing_is_success_and_keeps_config(conn: Connection, js: JetStream) -> None:
    name = unique()
    create_station(conn, name, retention_type="messages", retention_value=10)
    assert ask(conn, "$memphis_station_creations", station_request(name.upper(), retention_type="bytes", retention_value=5)) == ""
    assert js.stream_info(f"{name}$1").config.max_msgs == 10


def test_dls_station_is_auto_created(conn: Connection, memphis_broker: LocalBroker) -> None:
    name, dls = unique(), unique("dls")
    create_station(conn, name, dls_station=dls.upper())
    assert memphis_broker.control_plane.get_station(name)["dls_station"] == dls
    default = memphis_broker.control_plane.get_station(dls)
    assert default is not None
    assert (default["retention_type"], default["retention_value"], default["storage_type"]) == ("message_age_sec", 3600, "file")
    assert (default["idempotency_window_in_ms"], default["partitions_list"], default["replicas"]) == (120000, [1], 1)


# -- §4.2 / §2.2 error texts -----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, text",
    [
        ({"name": ""}, "Station name can not be empty"),
        ({"name": "a" * 129}, "Station should be under 128 characters"),
        ({"name": "bad name"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ({"name": "internal#name"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ({"name": ".dot"}, "Station name can not start or end with non alphanumeric character"),
        ({"name": "dash-"}, "Station name can not start or end with non alphanumeric character"),
        ({"name": "_under"}, "Station name can not start or end with non alphanumeric character"),
        ({"name": "trailing\n"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ({"retention_type": "forever"}, "retention type can be one of the following message_age_sec/messages/bytes/ack_based"),
        ({"storage_type": "disk"}, "storage type can be one of the following file/memory"),
        ({"idempotency_window_in_ms": 86400001, "retention_value": 999999}, "idempotency window can not exceed 24 hours"),
        ({"idempotency_window_in_ms": 10000, "retention_value": 5}, "idempotency window cannot be greater than the station retention"),
        ({"partitions_number": 0}, "you are using an old SDK, make sure to update your SDK"),
        ({"name": "negparts", "partitions_number": -2}, "cannot create station with -2 partitions (max:10000 min:1): Station -  negparts, "),
        ({"name": "toomany", "partitions_number": 10001}, "cannot create station with 10001 partitions (max:10000 min:1): Station -  toomany, "),
        ({"replicas": 3}, "station can not be created, probably since replicas count is larger than the cluster size"),
        ({"replicas": 2}, "station can not be created, probably since replicas count is larger than the cluster size"),
        ({"username": "root$2"}, "createStationDirect: Station {name}: Tenant with id 2 does not exist"),
        ({"username": "nobody"}, "User nobody does not exist"),
        ({"schema_name": "Missing"}, "Schema Missing does not exist"),
    ],
)
def test_station_create_errors(conn: Connection, js: JetStream, overrides: Dict[str, Any], text: str) -> None:
    name = unique()
    body = station_request(name, **overrides)
    assert ask(conn, "$memphis_station_creations", body) == text.format(name=name)
    assert not [n for n in js.stream_names() if n.startswith(f"{name}$")]


def test_station_accepts_user_with_account_suffix(conn: Connection) -> None:
    assert ask(conn, "$memphis_station_creations", station_request(unique(), username="root$1")) == ""


def test_station_destroy(conn: Connection, js: JetStream, memphis_broker: LocalBroker) -> None:
    name, other = unique(), unique()
    create_station(conn, name, partitions_number=2)
    create_station(conn, other, dls_station=name)
    assert ask(conn, "$memphis_producer_creations", producer_request("p", name)).startswith('{"error": ""')
    assert ask(conn, "$memphis_station_destructions", {"station_name": name, "username": "root"}) == ""
    assert not [n for n in js.stream_names() if n.startswith(f"{name}$")]
    assert memphis_broker.control_plane.get_station(name) is None
    assert memphis_broker.control_plane.producers(name) == []
    assert memphis_broker.control_plane.get_station(other)["dls_station"] == ""
    assert ask(conn, "$memphis_station_destructions", {"station_name": name, "username": "root"}) == f"Station {name} does not exist"
    assert ask(conn, "$memphis_station_destructions", {"station_name": "bad name", "username": "root"}) == (
        "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"
    )


def test_remove_station_notifies_sdk_clients(conn: Connection, memphis_broker: LocalBroker) -> None:
    name = unique("a.b")
    create_station(conn, name)
    sub = conn.subscribe("$memphis_sdk_clients_updates")
    conn.flush()
    assert memphis_broker.control_plane.remove_station(name)
    notice = json.loads(sub.next_msg(5).payload)
    assert notice == {"station_name": name.replace(".", "#"), "type": "remove_station", "update": None}
    sub.unsubscribe()


# -- §5 producers ------------------------------------------------------------------------------


def test_producer_create_reply_and_record(conn: Connection, memphis_broker: LocalBroker) -> None:
    name = unique()
    create_station(conn, name, partitions_number=2, dls_configuration={"poison": True, "schemaverse": False})
    reply = json.loads(ask(conn, "$memphis_producer_creations", producer_request("My-Producer", name.upper())))
    assert reply == {
        "error": "",
        "schema_update": {
            "schema_name": "",
            "active_version": {"version_number": 0, "descriptor": "", "schema_content": "", "message_struct_name": ""},
            "type": "",
        },
        "partitions_update": {"partitions_list": [1, 2]},
        "schemaverse_to_dls": False,
        "send_notification": False,
        "station_version": 2,
        "station_partitions_first_functions": {},
    }
    (record,) = memphis_broker.control_plane.producers(name)
    assert (record["name"], record["connection_id"], record["producer_type"]) == ("my-producer", "conn-1", "application")
    assert (record["app_id"], record["sdk_lang"], record["req_version"]) == ("app-1", "python", 4)


def test_producer_auto_creates_default_station(conn: Connection, js: JetStream) -> None:
    name = unique()
    reply = json.loads(ask(conn, "$memphis_producer_creations", producer_request("p", name)))
    assert reply["error"] == ""
    assert reply["partitions_update"] == {"partitions_list": [1]}
    config = js.stream_info(f"{name}$1").raw["config"]
    assert (config["max_age"], config["duplicate_window"], config["storage"], config["num_replicas"]) == (3600 * NS, 120 * NS, "file", 1)


@pytest.mark.parametrize(
    "overrides, text",
    [
        ({"name": ""}, "Producer name can not be empty"),
        ({"name": "p!"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Producer"),
        ({"name": "-p"}, "Producer name can not start or end with non alphanumeric character"),
        ({"name": "p\n"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Producer"),
        ({"producer_type": "robot"}, "producer type has to be one of the following application/connector"),
        ({"username": "ghost"}, "User ghost does not exist"),
        ({"station_name": "bad station"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ({"station_name": "never-created", "req_version": 1},
         "this station does not exist, a default station can not be created automatically, please upgrade your SDK version"),
        ({"req_version": 1}, "to produce to this station please upgrade your SDK version"),
    ],
)
def test_producer_create_errors(conn: Connection, overrides: Dict[str, Any], text: str) -> None:
    name = unique()
    create_station(conn, name)
    reply = json.loads(ask(conn, "$memphis_producer_creations", producer_request("p", name, **overrides)))
    assert reply["error"] == text
    assert reply["partitions_update"] == {"partitions_list": None}
    assert reply["station_version"] == 0


def test_producer_create_bad_json_is_json_error(conn: Connection) -> None:
    reply = json.loads(ask(conn, "$memphis_producer_creations", b"{not json"))
    assert reply["error"] and reply["partitions_update"] == {"partitions_list": None}


def test_producer_destroy(conn: Connection, memphis_broker: LocalBroker) -> None:
    name = unique()
    create_station(conn, name)
    for connection in ("c1", "c2"):
        ask(conn, "$memphis_producer_creations", producer_request("p", name, connection_id=connection))
    destroy = {"name": "p", "station_name": name, "username": "root", "connection_id": "c1", "req_version": 1}
    assert ask(conn, "$memphis_producer_destructions", destroy) == ""
    assert [r["connection_id"] for r in memphis_broker.control_plane.producers(name)] == ["c2"]
    assert ask(conn, "$memphis_producer_destructions", destroy) == f"Producer p at station {name} does not exist"
    legacy = {"name": "p", "station_name": name, "username": "root"}  # no req_version: by (name, station)
    assert ask(conn, "$memphis_producer_destructions", legacy) == ""
    assert memphis_broker.control_plane.producers(name) == []


# -- §7 consumers ------------------------------------------------------------------------------

EXPECTED_DURABLE_KEYS = {"durable_name", "deliver_policy", "opt_start_seq", "ack_policy", "ack_wait", "max_deliver",
                         "filter_subject", "replay_policy", "max_ack_pending"}


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, dict(deliver_policy="all", ack_wait=30 * NS, max_deliver=2)),
        ({"max_ack_time_ms": 0, "max_msg_deliveries": 0}, dict(deliver_policy="all", ack_wait=30 * NS, max_deliver=10)),
        ({"max_ack_time_ms": 1500, "max_msg_deliveries": 11}, dict(ack_wait=1500 * 1_000_000, max_deliver=10)),
        ({"max_msg_deliveries": 10}, dict(max_deliver=10)),
        ({"last_messages": 0}, dict(deliver_policy="new")),
        ({"last_messages": 2}, dict(deliver_policy="by_start_sequence", opt_start_seq=4)),  # 5 stored: 4, 5
        ({"last_messages": 9}, dict(deliver_policy="by_start_sequence", opt_start_seq=1)),
        ({"start_consume_from_sequence": 3}, dict(deliver_policy="by_start_sequence", opt_start_seq=3)),
    ],
)
def test_durable_config_field_by_field(conn: Connection, js: JetStream, overrides: Dict[str, Any], expected: Dict[str, Any]) -> None:
    name = unique("st.x")
    internal = name.replace(".", "#")
    create_station(conn, name, partitions_number=2)
    for p in (1, 2):
        for i in range(5):
            js.publish(f"{internal}${p}.final", b"m%d" % i)
    reply = json.loads(ask(conn, "$memphis_consumer_creations", consumer_request("c", name, consumers_group="Group.One", **overrides)))
    assert reply == {
        "schema_update": {
            "schema_name": "",
            "active_version": {"version_number": 0, "descriptor": "", "schema_content": "", "message_struct_name": ""},
            "type": "",
        },
        "partitions_update": {"partitions_list": [1, 2]},
        "error": "",
    }
    for p in (1, 2):
        config = js.consumer_info(f"{internal}${p}", "group#one").raw["config"]
        wanted = dict(durable_name="group#one", deliver_policy="all", opt_start_seq=None, ack_policy="explicit",
                      ack_wait=30 * NS, max_deliver=2, filter_subject=f"{internal}${p}.final", replay_policy="instant",
                      max_ack_pending=-1)
        wanted.update(expected)
        assert {k: config.get(k) for k in EXPECTED_DURABLE_KEYS} == wanted
        assert not config.get("headers_only", False)


def test_consumer_group_shares_durable_and_updates_ack_settings(conn: Connection, js: JetStream, memphis_broker: LocalBroker) -> None:
    name = unique()
    create_station(conn, name)
    ask(conn, "$memphis_consumer_creations", consumer_request("a", name, consumers_group="g", connection_id="c1"))
    ask(conn, "$memphis_consumer_creations", consumer_request("b", name, consumers_group="g", connection_id="c2",
                                                              max_ack_time_ms=5000, max_msg_deliveries=4))
    config = js.consumer_info(f"{name}$1", "g").config
    assert (config.ack_wait, config.max_deliver) == (5.0, 4)
    assert [r["name"] for r in memphis_broker.control_plane.consumers(name)] == ["a", "b"]
    destroy = {"name": "a", "station_name": name, "username": "root", "connection_id": "c1", "req_version": 1}
    assert ask(conn, "$memphis_consumer_destructions", destroy) == ""
    js.consumer_info(f"{name}$1", "g")  # another member remains: the durable stays
    destroy.update(name="b", connection_id="c2")
    assert ask(conn, "$memphis_consumer_destructions", destroy) == ""
    with pytest.raises(ConsumerNotFoundError):
        js.consumer_info(f"{name}$1", "g")
    assert ask(conn, "$memphis_consumer_destructions", destroy) == f"Consumer b at station {name} does not exist"


def test_consumer_auto_creates_station(conn: Connection, js: JetStream) -> None:
    name = unique()
    reply = json.loads(ask(conn, "$memphis_consumer_creations", consumer_request("c", name)))
    assert reply["error"] == "" and reply["partitions_update"] == {"partitions_list": [1]}
    assert js.consumer_info(f"{name}$1", "c").config.filter_subject == f"{name}$1.final"


@pytest.mark.parametrize(
    "overrides, text",
    [
        ({"start_consume_from_sequence": 0}, "startConsumeFromSequence has to be a positive number"),
        ({"last_messages": -2}, "min value for LastMessages is -1"),
        ({"start_consume_from_sequence": 2, "last_messages": 0},
         "consumer creation options can't contain both startConsumeFromSequence and lastMessages"),
        ({"name": ""}, "Consumer name can not be empty"),
        ({"name": "c" * 129}, "Consumer should be under 128 characters"),
        ({"consumers_group": "g g"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Consumer"),
        ({"consumers_group": "g."}, "Consumer name can not start or end with non alphanumeric character"),
        ({"consumers_group": "g\n"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Consumer"),
        ({"name": "c\n"}, "Only alphanumeric and the '_', '-', '.' characters are allowed in Consumer"),
        ({"consumer_type": "robot"}, "consumer type has to be one of the following application/connector and not robot"),
        ({"username": "ghost"}, "user does not exist"),
        ({"station_name": ""}, "Station name can not be empty"),
        ({"station_name": "never-created", "req_version": 1},
         "This station does not exist, a default station can not be created automatically, please upgrade your SDK version"),
        ({"req_version": 1}, "to consume from this station please upgrade your SDK version"),
    ],
)
def test_consumer_create_errors_are_plain_text(conn: Connection, js: JetStream, overrides: Dict[str, Any], text: str) -> None:
    name = unique()
    create_station(conn, name)
    assert ask(conn, "$memphis_consumer_creations", consumer_request("c", name, **overrides)) == text
    with pytest.raises(ConsumerNotFoundError):
        js.consumer_info(f"{name}$1", "c")


def test_consumer_create_bad_json_is_json_error(conn: Connection) -> None:
    assert json.loads(ask(conn, "$memphis_consumer_creations", b"[1, 2")).keys() == {"error"}


def test_consumer_destroy_missing_station(conn: Connection) -> None:
    body = {"name": "c", "station_name": "nowhere", "username": "root", "connection_id": "x", "req_version": 1}
    assert ask(conn, "$memphis_consumer_destructions", body) == "Consumer c at station nowhere does not exist"


def test_station_destroy_removes_durables(conn: Connection, js: JetStream) -> None:
    name = unique()
    create_station(conn, name)
    ask(conn, "$memphis_consumer_creations", consumer_request("c", name))
    assert ask(conn, "$memphis_station_destructions", {"station_name": name, "username": "root"}) == ""
    with pytest.raises(StreamNotFoundError):
        js.stream_info(f"{name}$1")


# -- several instances -------------------------------------------------------------------------


def test_second_instance_shares_the_queue_groups(conn: Connection, memphis_broker: LocalBroker) -> None:
    from memphis_sync.broker.control_plane import ControlPlane

    with ControlPlane(memphis_broker.url, **memphis_broker.control_plane_kwargs()) as second:
        names = [unique() for _ in range(20)]
        for name in names:
            create_station(conn, name)
        for name in names:
            assert second.get_station(name) is not None  # one shared metadata store
            assert ask(conn, "$memphis_station_creations", station_request(name)) == ""


def test_a_reply_quoting_a_lone_surrogate_is_sent(conn: Connection) -> None:
    """A name with a lone surrogate (JSON "\\udc80") is quoted back as U+FFFD, as Go's broker
    does, instead of failing to encode and leaving the client waiting for a reply."""
    body = {"name": "c\udc80", "station_name": "no-such-station", "username": "root", "connection_id": "x", "req_version": 1}
    reply = ask(conn, "$memphis_consumer_destructions", body)
    assert reply == "Consumer c\ufffd at station no-such-station does not exist"
    body["name"] = "c"  # positive control: the same text, a plain name
    assert ask(conn, "$memphis_consumer_destructions", body) == "Consumer c at station no-such-station does not exist"
