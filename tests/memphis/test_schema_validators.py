"""Client-side schema validation for the four Schemaverse formats (no server)."""

from __future__ import annotations

import base64
import json

import pytest

from memphis_sync import MemphisMessageTypeError, MemphisSchemaError
from memphis_sync.memphis.schemaverse import Schema


def _init(kind, content, descriptor="", struct=""):
    return {"schema_name": "s", "type": kind, "active_version": {
        "version_number": 1, "descriptor": descriptor, "schema_content": content, "message_struct_name": struct}}


def test_json_schema():
    pytest.importorskip("jsonschema")
    schema = Schema.from_update(_init("json", json.dumps({"type": "object", "required": ["id"]})))
    assert schema.serialize({"id": 1}) == b'{"id": 1}'
    assert schema.serialize(b'{"id": 2}') == b'{"id": 2}'
    with pytest.raises(MemphisSchemaError, match="'id' is a required property"):
        schema.serialize({})
    with pytest.raises(MemphisSchemaError, match="Expecting Json format"):
        schema.serialize(b"{")
    with pytest.raises(MemphisMessageTypeError):
        schema.serialize(3.5)
    assert schema.deserialize(b'{"id": 1}') == {"id": 1}
    with pytest.raises(MemphisSchemaError, match="invalid json schema"):
        Schema.from_update(_init("json", "{not json"))


def test_avro_schema():
    pytest.importorskip("fastavro")
    content = json.dumps({"type": "record", "name": "Order", "fields": [{"name": "id", "type": "int"}]})
    schema = Schema.from_update(_init("avro", content))
    assert schema.serialize({"id": 1}) == b'{"id": 1}'  # JSON text, as the SDK sends
    with pytest.raises(MemphisSchemaError, match="Schema validation has failed"):
        schema.serialize({"id": "x"})
    with pytest.raises(MemphisSchemaError, match="Expecting Avro format"):
        schema.serialize(b"nope")
    assert schema.deserialize(b'{"id": 3}') == {"id": 3}


def test_graphql_schema():
    graphql = pytest.importorskip("graphql")
    schema = Schema.from_update(_init("graphql", "type Query { greeting: String }"))
    assert schema.serialize("query { greeting }") == b"query { greeting }"
    assert schema.serialize(graphql.parse("{ greeting }")) == b"{ greeting }"
    with pytest.raises(MemphisSchemaError, match="Invalid message format, expected GraphQL"):
        schema.serialize(b"query {")
    with pytest.raises(MemphisSchemaError, match="Cannot query field"):
        schema.serialize("{ nothing }")
    assert schema.deserialize(b"{ greeting }") == "{ greeting }"


def test_protobuf_schema():
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto(name="order.proto", package="shop", syntax="proto3")
    message = proto.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    descriptor = base64.b64encode(descriptor_pb2.FileDescriptorSet(file=[proto]).SerializeToString()).decode()
    schema = Schema.from_update(_init("protobuf", "syntax = ...", descriptor, "Order"))
    data = schema.serialize({"id": 5})
    assert data == b"\x08\x05"
    assert schema.deserialize(data).id == 5
    assert schema.serialize(bytearray(data)) == data
    with pytest.raises(MemphisSchemaError, match="expecting protobuf"):
        schema.serialize(b"\xff\xff\xff")
    with pytest.raises(MemphisSchemaError):
        schema.serialize({"nope": 1})


def test_unknown_schema_type():
    with pytest.raises(MemphisSchemaError, match="unknown schema type 'xml'"):
        Schema.from_update(_init("xml", "<x/>"))


def _file_set(*files):
    from google.protobuf import descriptor_pb2

    return base64.b64encode(descriptor_pb2.FileDescriptorSet(file=list(files)).SerializeToString()).decode()


def _order_file(name="order.proto", package="shop", dependency=(), field_type_name=""):
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3", dependency=list(dependency))
    message = proto.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=fdp.TYPE_INT32, label=fdp.LABEL_OPTIONAL)
    if field_type_name:
        message.field.add(name="extra", number=2, type=fdp.TYPE_MESSAGE, type_name=field_type_name, label=fdp.LABEL_OPTIONAL)
    return proto


@pytest.mark.parametrize(
    "descriptor, struct, error",
    [
        ("", "Order", r"protobuf schema 's' \(version 1\) came without a descriptor: the broker did not compile"),
        ("not base64!", "Order", r"the descriptor of protobuf schema 's' \(version 1\) is not base64"),
        (base64.b64encode(b"\xff\xff\xff").decode(), "Order", "is not a protobuf FileDescriptorSet"),
        (None, "", r"names no message \(empty message_struct_name\)"),
        (None, "Missing", "has no message 'shop.Missing'"),
    ],
)
def test_protobuf_descriptor_errors_name_what_is_wrong(descriptor, struct, error):
    pytest.importorskip("google.protobuf")
    descriptor = _file_set(_order_file()) if descriptor is None else descriptor
    with pytest.raises(MemphisSchemaError, match=error) as caught:
        Schema.from_update(_init("protobuf", "syntax = ...", descriptor, struct))
    assert "list index" not in str(caught.value)


def test_protobuf_descriptor_imports():
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2

    # a well-known type the descriptor does not include (protoc without --include_imports)
    stamped = _order_file(dependency=["google/protobuf/timestamp.proto"], field_type_name=".google.protobuf.Timestamp")
    schema = Schema.from_update(_init("protobuf", "...", _file_set(stamped), "Order"))
    decoded = schema.deserialize(schema.serialize({"id": 1, "extra": "2024-01-01T00:00:00Z"}))
    assert (decoded.id, decoded.extra.seconds) == (1, 1704067200)
    # an import of the user's own: found in the set (--include_imports), or a clear error
    other = descriptor_pb2.FileDescriptorProto(name="other.proto", package="lib", syntax="proto3")
    other.message_type.add(name="Thing")
    uses_other = _order_file(dependency=["other.proto"], field_type_name=".lib.Thing")
    assert Schema.from_update(_init("protobuf", "...", _file_set(uses_other, other), "Order")).serialize({"id": 2}) == b"\x08\x02"
    with pytest.raises(MemphisSchemaError, match="'order.proto' imports 'other.proto', which the descriptor does not include"):
        Schema.from_update(_init("protobuf", "...", _file_set(uses_other), "Order"))
