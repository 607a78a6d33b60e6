"""Schemaverse: create/enforce/detach requests and client-side JSON Schema validation."""

from __future__ import annotations

import json

import pytest

from memphis_sync import MemphisRequestError, MemphisSchemaError, MemphisValueError
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "order.json"
    path.write_text(json.dumps(SCHEMA), encoding="utf-8")
    return str(path)


def test_create_schema_request_and_errors(memphis, fake_plane, schema_file, tmp_path):
    memphis.create_schema("orders-schema", "json", schema_file)
    assert fake_plane.requests["$memphis_schema_creations"][-1] == {
        "name": "orders-schema", "type": "json", "created_by_username": "root",
        "schema_content": json.dumps(SCHEMA), "message_struct_name": "",
    }
    with pytest.raises(MemphisValueError, match="schema type not supported"):
        memphis.create_schema("s", "xml", schema_file)
    with pytest.raises(MemphisValueError, match="Schema name cannot be empty"):
        memphis.create_schema("", "json", schema_file)
    with pytest.raises(MemphisValueError, match="cannot read schema file"):
        memphis.create_schema("s", "json", str(tmp_path / "missing.json"))
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(MemphisRequestError, match="your schema content is invalid"):
        memphis.create_schema("s", "json", str(empty))
    with pytest.raises(MemphisValueError, match="name and station name can not be empty"):
        memphis.enforce_schema("", "st")
    with pytest.raises(MemphisValueError, match="station name is missing"):
        memphis.detach_schema("")
    with pytest.raises(MemphisRequestError, match="does not exist"):
        memphis.enforce_schema("orders-schema", "no-such-station")


def test_json_schema_validation_live_updates_and_dls(memphis, fake_plane, schema_file):
    pytest.importorskip("jsonschema")
    memphis.create_schema("orders-schema", "json", schema_file)
    memphis.station("validated")
    producer = memphis.producer("validated", "p")
    producer.produce(b"not json at all")  # no schema yet
    memphis.enforce_schema("orders-schema", "validated")
    assert fake_plane.requests["$memphis_schema_attachments"][-1] == {"name": "orders-schema", "station_name": "validated", "username": "root"}
    assert producer._state.schema is not None and producer._state.schema.type == "json"
    producer.produce({"id": 7})
    producer.produce(bytearray(b'{"id": 8}'))
    with pytest.raises(MemphisSchemaError, match="Schema validation has failed: 'id' is a required property"):
        producer.produce({"name": "no id"}, headers={"h": "v"})
    with pytest.raises(MemphisSchemaError, match="Expecting Json format"):
        producer.produce(b"not json")
    with pytest.raises(MemphisSchemaError, match="Unsupported message type"):
        producer.produce(12)
    wait_until(lambda: not (len(fake_plane.published["$memphis_schemaverse_dls"]) < 2), 5, "not (len(fake_plane.published['$memphis_schemaverse_dls']) < 2)")
    report = fake_plane.published["$memphis_schemaverse_dls"][0]
    assert report["station_name"] == "validated"
    assert report["producer"] == {"name": "p", "connection_id": memphis.connection_id}
    assert report["validation_error"].endswith("'id' is a required property")
    assert bytes.fromhex(report["message"]["data"]).decode() == str({"name": "no id"})
    assert report["message"]["headers"] == {"h": "v", "$memphis_producedBy": "p", "$memphis_connectionId": memphis.connection_id}
    consumer = memphis.consumer("validated", "c", batch_size=10)
    msgs = consumer.fetch()
    assert [m.get_data_deserialized() for m in msgs[1:]] == [{"id": 7}, {"id": 8}]
    with pytest.raises(MemphisSchemaError, match="Deserialization has been failed"):
        msgs[0].get_data_deserialized()
    memphis.detach_schema("validated")
    assert fake_plane.requests["$memphis_schema_detachments"][-1] == {"station_name": "validated", "username": "root"}
    assert producer._state.schema is None
    producer.produce(b"anything again")


def test_station_created_with_schema_validates_from_the_start(memphis, fake_plane, schema_file):
    pytest.importorskip("jsonschema")
    memphis.create_schema("orders-schema", "json", schema_file)
    memphis.station("with-schema", schema_name="orders-schema")
    producer = memphis.producer("with-schema", "p")
    with pytest.raises(MemphisSchemaError):
        producer.produce({"id": "not an int"})
    assert producer.produce({"id": 1}).seq == 1
