"""Protobuf schemas on the local broker: compiled by a real compiler into the descriptor the Memphis
broker stores (``protoc --descriptor_set_out``, §10.1), refused when no compiler is installed, and
used by both clients (memphis-sync and memphis-py 1.3.1) to produce and consume."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
from broker_tools import ask

import memphis_sync
from memphis_sync import MemphisRequestError, MemphisSchemaError
from memphis_sync.broker import rules
from memphis_sync.broker.handlers import protoc
from memphis_sync.broker.local import LocalBroker
from memphis_sync.nats.connection import Connection

pytestmark = [
    pytest.mark.integration,
    # memphis-py 1.3.1 leaves sockets of closed connections to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

# The comment names a message first: the struct name must come from the compiled file.
PROTO = """syntax = "proto3";
package shop;
// message Fake {}
message Order {
  int32 id = 1;
  message Line { string sku = 1; }
  repeated Line lines = 2;
}
message Other { bool flag = 1; }
"""


def create_schema(conn: Connection, name: str, content: str) -> Dict[str, Any]:
    body = {"name": name, "type": "protobuf", "created_by_username": "root", "schema_content": content, "message_struct_name": ""}
    return json.loads(ask(conn, "$memphis_schema_creations", body))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def no_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The broker's process without grpcio-tools and without protoc on PATH."""
    monkeypatch.setitem(sys.modules, "grpc_tools", None)  # import grpc_tools → ImportError
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert protoc.protobuf_compiler() is None


def test_descriptor_is_compiled_as_the_broker_does(conn: Connection, memphis_broker: LocalBroker) -> None:
    from google.protobuf import descriptor_pb2

    name = unique("proto")
    assert create_schema(conn, name, PROTO) == {"error": ""}
    (version,) = memphis_broker.control_plane.get_schema(name)["versions"]
    assert version["message_struct_name"] == "Order"
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(version["descriptor"])).file
    assert [f.name for f in files] == [f"{name}_1.proto"]  # the broker's file name, no imports included
    assert files[0].package == "shop"
    assert [m.name for m in files[0].message_type] == ["Order", "Other"]
    assert [m.name for m in files[0].message_type[0].nested_type] == ["Line"]


@pytest.mark.parametrize(
    "content, said",
    [
        ('syntax = "proto3";\nmessage Order { int32 = 1; }\n', "_1.proto:2:23: Expected field name."),
        ('syntax = "proto3";\nimport "missing.proto";\nmessage Order { int32 id = 1; }\n', "missing.proto: File not found."),
        ('syntax = "proto3";\nmessage Order { Unknown id = 1; }\n', '"Unknown" is not defined.'),
    ],
)
def test_compiler_errors_are_the_reply(conn: Connection, memphis_broker: LocalBroker, content: str, said: str) -> None:
    name = unique("bad-proto")
    error = create_schema(conn, name, content)["error"]
    assert error.startswith("your Proto file is invalid: ") and said in error
    assert memphis_broker.control_plane.get_schema(name) is None


def test_schema_refused_without_a_compiler_in_both_clients(
    conn: Connection, memphis_broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_compiler: None
) -> None:
    import memphis as memphis_py

    name = unique("uncompiled")
    path = tmp_path / "order.proto"
    path.write_text(PROTO, encoding="utf-8")
    assert create_schema(conn, name, PROTO) == {"error": protoc.NO_COMPILER_TEXT}
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
        with pytest.raises(MemphisRequestError, match=r"no protobuf compiler \(install memphis-sync\[broker-protobuf\]"):
            memphis.create_schema(name, "protobuf", str(path))
        memphis.station(name)  # the connection still works

    async def sdk() -> None:
        client = memphis_py.Memphis()
        await client.connect(**memphis_broker.connect_kwargs())
        try:
            with pytest.raises(memphis_py.MemphisError, match="no protobuf compiler"):
                await client.create_schema(name, "protobuf", str(path))
        finally:
            await client.close()

    _run_sdk(sdk())
    assert memphis_broker.control_plane.get_schema(name) is None
    monkeypatch.undo()  # positive control: the same schema with the compiler back
    assert create_schema(conn, name, PROTO) == {"error": ""}
    assert memphis_broker.control_plane.get_schema(name)["versions"][0]["descriptor"]


def test_an_empty_descriptor_is_a_clear_error_in_our_client(memphis_broker: LocalBroker) -> None:
    """What the local broker stored before it compiled schemas (and a broker without protoc
    could send): an empty descriptor. Both clients failed with "list index out of range"."""
    name, station = unique("empty-desc"), unique("st-empty-desc")
    memphis_broker.control_plane.metadata.put(f"schema.{rules.internal_name(name)}", {
        "name": name, "type": "protobuf", "created_by_username": "root", "versions": [{
            "version_number": 1, "schema_content": PROTO, "descriptor": "", "message_struct_name": "Order",
            "active": True, "created_by_username": "root", "created_at": 0.0,
        }],
    })
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
        memphis.station(station)
        memphis.enforce_schema(name, station)
        for make in (lambda: memphis.producer(station, "p"), lambda: memphis.consumer(station, "c")):
            with pytest.raises(MemphisSchemaError, match=f"protobuf schema '{name}' \\(version 1\\) came without a descriptor") as caught:
                make()
            assert "list index" not in str(caught.value) and not isinstance(caught.value.__cause__, IndexError)
        memphis.detach_schema(station)
        assert memphis.producer(station, "p").produce(b"no schema now").seq == 1  # positive control


def test_both_clients_produce_and_consume_a_compiled_schema(memphis_broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import memphis as memphis_py
    from google.protobuf import message_factory

    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        # memphis-py 1.3.1 calls MessageFactory.GetPrototype, removed in protobuf 6.30 (grpcio-tools
        # needs a newer protobuf): give it back as the 4.x releases defined it
        monkeypatch.setattr(message_factory.MessageFactory, "GetPrototype",
                            lambda self, descriptor: message_factory.GetMessageClass(descriptor), raising=False)
    name, station = unique("orders-proto"), unique("st-proto")
    path = tmp_path / "order.proto"
    path.write_text(PROTO, encoding="utf-8")
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
        memphis.create_schema(name, "protobuf", str(path))
        memphis.station(station)
        memphis.enforce_schema(name, station)
        producer = memphis.producer(station, "ours")
        producer.produce({"id": 1, "lines": [{"sku": "a"}]})
        with pytest.raises(MemphisSchemaError, match="Schema validation has failed"):
            producer.produce({"nope": 1})
        with pytest.raises(MemphisSchemaError, match="Invalid message format, expecting protobuf"):
            producer.produce(b"\xff\xff\xff")

        async def sdk() -> List[Any]:
            client = memphis_py.Memphis()
            await client.connect(**memphis_broker.connect_kwargs())
            try:
                sdk_producer = await client.producer(station_name=station, producer_name="theirs")
                await sdk_producer.produce({"id": 2})
                consumer = await client.consumer(station_name=station, consumer_name="sdk-reader", batch_size=10)
                got: List[Any] = []
                for _ in range(10):
                    got.extend(await consumer.fetch(batch_size=10))
                    if len(got) >= 2:
                        break
                decoded = []
                for message in got:
                    proto = await message.get_data_deserialized()  # the SDK reuses one object
                    decoded.append((proto.id, [line.sku for line in proto.lines]))
                    await message.ack()
                return decoded
            finally:
                await client.close()

        assert _run_sdk(sdk()) == [(1, ["a"]), (2, [])]
        msgs = memphis.consumer(station, "reader", batch_size=10).fetch()
        decoded = [m.get_data_deserialized() for m in msgs]
        assert [(d.id, [line.sku for line in d.lines]) for d in decoded] == [(1, ["a"]), (2, [])]
        assert [m.get_headers()["$memphis_producedBy"] for m in msgs] == ["ours", "theirs"]


def _run_sdk(coro: Any) -> Any:
    """``asyncio.run`` for memphis-py, which leaves closed sockets to the garbage collector."""
    try:
        return asyncio.run(coro)
    finally:
        gc.collect()


def test_a_compiler_that_cannot_run_or_hangs_is_not_blamed_on_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(protoc, "protobuf_compiler", lambda: ([str(tmp_path / "no-such-protoc")], []))
    with pytest.raises(protoc.NoProtobufCompiler, match="cannot compile the Proto file: cannot run .*no-such-protoc"):
        protoc.compile_proto("s", PROTO)
    monkeypatch.undo()
    monkeypatch.setattr(protoc, "COMPILE_TIMEOUT", 0.001)  # a real compiler, no time to run
    with pytest.raises(protoc.NoProtobufCompiler, match="did not finish within 0.001 s"):
        protoc.compile_proto("s", PROTO)
    monkeypatch.undo()
    assert protoc.compile_proto("s", PROTO)[0] == "Order"  # positive control
