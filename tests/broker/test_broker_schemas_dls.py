"""Schemaverse (§10) and dead-letter (§9) handling of the local broker's control plane."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from broker_tools import ask, wait_for

from memphis_sync.broker.local import LocalBroker
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import Connection, connect

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JSON_SCHEMA = json.dumps({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]})
ZERO_INIT = {
    "schema_name": "",
    "active_version": {"version_number": 0, "descriptor": "", "schema_content": "", "message_struct_name": ""},
    "type": "",
}


def create_schema(conn: Connection, name: str, schema_type: str, content: str) -> Dict[str, Any]:
    body = {"name": name, "type": schema_type, "created_by_username": "root", "schema_content": content, "message_struct_name": ""}
    return json.loads(ask(conn, "$memphis_schema_creations", body))


# -- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema_type, content, error",
    [
        ("json", JSON_SCHEMA, ""),
        ("json", "", "your schema content is invalid"),
        ("json", "{not json", "your json schema is invalid"),
        ("json", '{"type": 12}', "your json schema is invalid"),
        ("avro", '{"type": "record", "name": "R", "fields": [{"name": "id", "type": "int"}]}', ""),
        ("graphql", "type Query { hello: String }", ""),
        ("protobuf", 'syntax = "proto3";\nmessage Order { int32 id = 1; }\n', ""),
        ("protobuf", "syntax = nothing", "your Proto file is invalid: no message definition found"),
        ("xml", "<a/>", "unsupported schema type"),
    ],
)
def test_schema_creation(conn: Connection, memphis_broker: LocalBroker, schema_type: str, content: str, error: str) -> None:
    name = f"schema-{schema_type}-{abs(hash(content)) % 10**8}"
    reply = create_schema(conn, name, schema_type, content)
    if error.startswith("your Avro") or error.startswith("your json"):
        assert reply["error"].startswith(error)
    else:
        assert reply == {"error": error}
    record = memphis_broker.control_plane.get_schema(name)
    assert (record is not None) == (error == "")
    if schema_type == "protobuf" and not error:
        assert record["versions"][0]["message_struct_name"] == "Order"


def test_schema_versions_and_name_errors(conn: Connection, memphis_broker: LocalBroker) -> None:
    assert create_schema(conn, "Versioned", "json", JSON_SCHEMA) == {"error": ""}
    assert create_schema(conn, "Versioned", "json", JSON_SCHEMA) == {"error": "Versioned already exists in the db with the same schema content"}
    assert create_schema(conn, "Versioned", "avro", '{"type": "string"}') == {"error": "Versioned already exist with type - json"}
    assert create_schema(conn, "versioned", "json", '{"type": "object"}') == {"error": ""}
    versions = memphis_broker.control_plane.get_schema("versioned")["versions"]
    assert [(v["version_number"], v["active"]) for v in versions] == [(1, True), (2, False)]  # §15.16
    assert create_schema(conn, "", "json", JSON_SCHEMA) == {"error": "Schema name can not be empty"}
    assert create_schema(conn, "bad name", "json", JSON_SCHEMA) == {
        "error": "Only alphanumeric and the '_', '-', '.' characters are allowed in Schema"
    }
    assert json.loads(ask(conn, "$memphis_schema_creations", b"nope")).keys() == {"error"}


def test_attach_detach_publish_updates(conn: Connection, memphis_broker: LocalBroker) -> None:
    assert create_schema(conn, "orders-schema", "json", JSON_SCHEMA) == {"error": ""}
    assert ask(conn, "$memphis_station_creations", {"name": "with.schema", "partitions_number": 1, "username": "root"}) == ""
    updates = conn.subscribe("$memphis_schema_updates_with#schema")
    conn.flush()
    assert ask(conn, "$memphis_schema_attachments", {"name": "orders-schema", "station_name": "with.schema", "username": "root"}) == ""
    update = json.loads(updates.next_msg(5).payload)
    assert update["UpdateType"] == 1
    assert update["init"]["schema_name"] == "orders-schema" and update["init"]["type"] == "json"
    assert update["init"]["active_version"]["schema_content"] == JSON_SCHEMA
    producer = json.loads(ask(conn, "$memphis_producer_creations", {
        "name": "p", "station_name": "with.schema", "connection_id": "c", "producer_type": "application",
        "req_version": 4, "username": "root"}))
    assert producer["schema_update"] == update["init"]
    assert ask(conn, "$memphis_schema_detachments", {"station_name": "with.schema", "username": "root"}) == ""
    assert json.loads(updates.next_msg(5).payload) == {"UpdateType": 2, "init": ZERO_INIT}
    assert memphis_broker.control_plane.get_station("with.schema")["schema_name"] == ""
    updates.unsubscribe()
    assert ask(conn, "$memphis_schema_attachments", {"name": "orders-schema", "station_name": "nowhere", "username": "root"}) == (
        "memphis: Station nowhere does not exist"
    )
    assert ask(conn, "$memphis_schema_attachments", {"name": "ghost", "station_name": "with.schema", "username": "root"}) == (
        "Schema ghost does not exist"
    )
    assert ask(conn, "$memphis_schema_detachments", {"station_name": "nowhere", "username": "root"}) == "station nowhere does not exist"


def test_station_created_with_schema(conn: Connection, memphis_broker: LocalBroker) -> None:
    assert create_schema(conn, "at-creation", "json", JSON_SCHEMA) == {"error": ""}
    body = {"name": "schema.at.creation", "partitions_number": 1, "username": "root", "schema_name": "AT-creation"}
    assert ask(conn, "$memphis_station_creations", body) == ""
    consumer = json.loads(ask(conn, "$memphis_consumer_creations", {
        "name": "c", "station_name": "schema.at.creation", "connection_id": "c", "consumer_type": "application",
        "max_ack_time_ms": 30000, "max_msg_deliveries": 2, "start_consume_from_sequence": 1, "last_messages": -1,
        "req_version": 4, "username": "root"}))
    assert consumer["schema_update"]["schema_name"] == "at-creation"


# -- dead letters ----------------------------------------------------------------------------


def _produce(js: JetStream, subject: str, data: bytes, producer: str = "p") -> int:
    return js.publish(subject, data, headers={"$memphis_producedBy": producer, "$memphis_connectionId": "c"}).seq


def test_nacked_dls_and_pm_ack(conn: Connection, memphis_broker: LocalBroker) -> None:
    js = JetStream(conn)
    assert ask(conn, "$memphis_station_creations", {"name": "nack.me", "partitions_number": 2, "username": "root",
                                                     "dls_configuration": {"poison": True, "schemaverse": True},
                                                     "dls_station": "nack.dls"}) == ""
    seq = _produce(js, "nack#me$2.final", b"refused")
    conn.publish("$memphis_nacked_dls", json.dumps(
        {"station_name": "nack#me", "error": "cannot parse", "partition": 2, "cg_name": "workers", "seq": seq}).encode())
    conn.publish("$memphis_nacked_dls", json.dumps(
        {"station_name": "nack#me", "error": "ignored", "partition": 0, "cg_name": "workers", "seq": seq}).encode())
    records = wait_for(lambda: memphis_broker.control_plane.dls_messages("nack.me"))
    (record,) = records
    assert (record["message_type"], record["validation_error"], record["poisoned_cgs"]) == ("poison", "cannot parse", ["workers"])
    assert (record["partition_number"], record["message_seq"], record["producer_name"]) == (2, seq, "p")
    assert bytes.fromhex(record["message_details"]["data"]) == b"refused"
    forwarded = js.get_msg("nack#dls$1", 1)
    assert forwarded.data == b"refused"
    assert (forwarded.headers["station"], forwarded.headers["type"]) == ("nack.me", "unacked")
    conn.publish("$memphis_pm_acks", json.dumps({"id": record["id"], "cg_name": "workers"}).encode())
    assert wait_for(lambda: not memphis_broker.control_plane.dls_messages("nack.me"))


def test_poison_disabled_station_keeps_no_record(conn: Connection, memphis_broker: LocalBroker) -> None:
    js = JetStream(conn)
    assert ask(conn, "$memphis_station_creations", {"name": "no-poison", "partitions_number": 1, "username": "root",
                                                     "dls_configuration": {"poison": False, "schemaverse": True}}) == ""
    seq = _produce(js, "no-poison$1.final", b"x")
    conn.publish("$memphis_nacked_dls", json.dumps(
        {"station_name": "no-poison", "error": "e", "partition": 1, "cg_name": "g", "seq": seq}).encode())
    conn.flush()
    # positive control: the same nack on a station that keeps poison records, sent after it
    # and handled in order by the same handler, shows up; so the first one was handled too
    assert ask(conn, "$memphis_station_creations", {"name": "with-poison", "partitions_number": 1, "username": "root",
                                                     "dls_configuration": {"poison": True, "schemaverse": True}}) == ""
    control_seq = _produce(js, "with-poison$1.final", b"x")
    conn.publish("$memphis_nacked_dls", json.dumps(
        {"station_name": "with-poison", "error": "e", "partition": 1, "cg_name": "g", "seq": control_seq}).encode())
    conn.flush()
    assert wait_for(lambda: memphis_broker.control_plane.dls_messages("with-poison"))
    assert memphis_broker.control_plane.dls_messages("no-poison") == []


def test_schemaverse_dls_and_cli_listing(conn: Connection, memphis_broker: LocalBroker) -> None:
    assert ask(conn, "$memphis_station_creations", {"name": "schema.fail", "partitions_number": 1, "username": "root"}) == ""
    conn.publish("$memphis_schemaverse_dls", json.dumps({
        "station_name": "schema#fail",
        "producer": {"name": "prod", "connection_id": "c"},
        "creation_unix": int(time.time()),
        "message": {"data": b'{"id": "x"}'.hex(), "headers": {"$memphis_producedBy": "prod"}},
        "validation_error": "Schema validation has failed: 'x' is not of type 'integer'",
    }).encode())
    (record,) = wait_for(lambda: memphis_broker.control_plane.dls_messages("schema.fail"))
    assert (record["message_type"], record["producer_name"]) == ("schema", "prod")
    assert record["validation_error"].endswith("is not of type 'integer'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "memphis_sync", "broker", "--port", str(memphis_broker.port), "dls", "schema.fail"],
        capture_output=True, text=True, env=env, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["id"] == record["id"]
    assert "1 dead-letter message(s) in station schema.fail" in result.stderr


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_memphis_py_schema_validation_failure_reaches_the_dls(memphis_broker: LocalBroker, tmp_path: Path) -> None:
    import memphis
    from memphis import MemphisSchemaError

    schema_file = tmp_path / "order.json"
    schema_file.write_text(JSON_SCHEMA)

    async def main() -> None:
        client = memphis.Memphis()
        await client.connect(**memphis_broker.connect_kwargs())
        try:
            await client.create_schema("py-orders", "json", str(schema_file))
            await client.station(name="py.schema")
            await client.enforce_schema("py-orders", "py.schema")
            producer = await client.producer(station_name="py.schema", producer_name="prod")
            await producer.produce({"id": 1})
            with pytest.raises(MemphisSchemaError):
                await producer.produce({"id": "not a number"})
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        gc.collect()
    (record,) = wait_for(lambda: memphis_broker.control_plane.dls_messages("py.schema"))
    assert record["message_type"] == "schema" and record["producer_name"] == "prod"
    assert record["validation_error"]


def test_poison_advisories_wait_in_a_stream_while_no_control_plane_runs(memphis_broker_function: LocalBroker) -> None:
    from memphis_sync.broker.control_plane import ControlPlane

    broker = memphis_broker_function
    conn = connect(broker.url, token="memphis", name="t::root")
    try:
        js = JetStream(conn)
        reply = json.loads(ask(conn, "$memphis_consumer_creations", {
            "name": "c", "station_name": "offline", "connection_id": "x", "consumer_type": "application",
            "max_ack_time_ms": 100, "max_msg_deliveries": 1, "start_consume_from_sequence": 1,
            "last_messages": -1, "req_version": 4, "username": "root"}))
        assert reply["error"] == ""
        seq = _produce(js, "offline$1.final", b"poison")
        sub = js.pull_subscribe("offline$1", "c")
        assert [m.data for m in sub.fetch(1, timeout=2)] == [b"poison"]  # never acked
        broker.control_plane.stop()
        time.sleep(0.15)
        assert sub.fetch(1, timeout=0.3) == []  # meets the exhausted message: advisory
        sub.unsubscribe()
        assert wait_for(lambda: js.stream_info("$memphis_dls_unacked").state.messages == 1)
        with ControlPlane(broker.url, **broker.control_plane_kwargs()) as control_plane:
            (record,) = wait_for(lambda: control_plane.dls_messages("offline"))
            assert (record["message_seq"], record["poisoned_cgs"]) == (seq, ["c"])
            assert wait_for(lambda: js.stream_info("$memphis_dls_unacked").state.messages == 0)  # acked
    finally:
        conn.close()


def test_consumer_group_removal_clears_poison_records_and_dls_config_updates(conn: Connection, memphis_broker: LocalBroker) -> None:
    js = JetStream(conn)
    body = {"name": "c", "station_name": "cg.gone", "connection_id": "x", "consumer_type": "application",
            "max_ack_time_ms": 30000, "max_msg_deliveries": 2, "start_consume_from_sequence": 1,
            "last_messages": -1, "req_version": 4, "username": "root"}
    assert json.loads(ask(conn, "$memphis_consumer_creations", body))["error"] == ""
    seq = _produce(js, "cg#gone$1.final", b"x")
    conn.publish("$memphis_nacked_dls", json.dumps(
        {"station_name": "cg#gone", "error": "e", "partition": 1, "cg_name": "c", "seq": seq}).encode())
    assert wait_for(lambda: memphis_broker.control_plane.dls_messages("cg.gone"))
    assert ask(conn, "$memphis_consumer_destructions", {"name": "c", "station_name": "cg.gone", "username": "root",
                                                         "connection_id": "x", "req_version": 1}) == ""
    assert memphis_broker.control_plane.dls_messages("cg.gone") == []
    updates = conn.subscribe("$memphis_sdk_clients_updates")
    conn.flush()
    memphis_broker.control_plane.update_dls_config("cg.gone", schemaverse=False)
    assert json.loads(updates.next_msg(5).payload) == {"station_name": "cg#gone", "type": "schemaverse_to_dls", "update": False}
    updates.unsubscribe()
    assert memphis_broker.control_plane.get_station("cg.gone")["dls_configuration"] == {"poison": True, "schemaverse": False}


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_memphis_py_receives_resent_poison_messages_and_acks_them(conn: Connection, memphis_broker: LocalBroker) -> None:
    import memphis

    js = JetStream(conn)

    async def main() -> None:
        client = memphis.Memphis()
        await client.connect(**memphis_broker.connect_kwargs())
        try:
            consumer = await client.consumer(station_name="resend.me", consumer_name="c", consumer_group="grp")
            seq = _produce(js, "resend#me$1.final", b"again")
            (original,) = await consumer.fetch()  # dead-lettered by hand below (py 1.3.1's
            await original.ack()                  # dead_letter() never publishes, §15.6)
            conn.publish("$memphis_nacked_dls", json.dumps(
                {"station_name": "resend#me", "error": "e", "partition": 1, "cg_name": "grp", "seq": seq}).encode())
            (record,) = wait_for(lambda: memphis_broker.control_plane.dls_messages("resend.me"))
            await asyncio.sleep(0.1)  # the SDK's DLS subscription task
            assert memphis_broker.control_plane.resend_dls_messages("resend.me") == 1
            for _ in range(250):  # wait until the SDK's DLS subscription has buffered it
                if consumer.dls_messages:
                    break
                await asyncio.sleep(0.02)
            (message,) = await consumer.fetch()  # buffered DLS messages come first, no pull
            assert bytes(message.get_data()) == b"again"
            headers = message.get_headers()
            assert (headers["$memphis_pm_id"], headers["$memphis_pm_cg_name"]) == (str(record["id"]), "grp")
            assert headers["$memphis_producedBy"] == "$memphis_dls"
            await message.ack()  # no JetStream reply subject: goes to $memphis_pm_acks
            await asyncio.sleep(0.05)
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        gc.collect()
    assert wait_for(lambda: not memphis_broker.control_plane.dls_messages("resend.me"))
