"""Dead letters (``$memphis_nacked_dls``) and schema failures (``$memphis_schemaverse_dls``) go
through the relay streams of :mod:`memphis_sync.broker.handlers.dls_relay`: none is lost while the
control plane is stopped, restarted or killed, none is stored twice.

Every test here restarts or kills a control plane and waits for JetStream redeliveries, so each
has a hard bound: pytest-timeout, and faulthandler armed ``DUMP_MARGIN`` seconds before it prints
every thread's stack if a test hangs (as in ``tests/stress``).
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from broker_tools import ask

import memphis_sync
from memphis_sync.broker.handlers import dls_relay
from memphis_sync.broker.handlers.dls import DeadLetters, list_dls_remote
from memphis_sync.broker.handlers.dls_relay import NACKED_STREAM, SCHEMAVERSE_STREAM
from memphis_sync.broker.local import LocalBroker
from memphis_sync.broker.metadata import MetadataStore
from memphis_sync.broker.rules import internal_name
from memphis_sync.errors import BrokerError, MemphisSchemaError
from memphis_sync.jetstream import JetStream, MsgMetadata
from memphis_sync.nats.connection import Connection, connect
from memphis_sync.testing import wait_until

TEST_TIMEOUT = 90
DUMP_MARGIN = 10

pytestmark = [pytest.mark.integration, pytest.mark.timeout(TEST_TIMEOUT)]

JSON_SCHEMA = json.dumps({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]})
SDK_WARNINGS = [  # memphis-py 1.3.1 leaves sockets of closed connections to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _dump_stacks_before_timeout() -> Iterator[None]:
    faulthandler.dump_traceback_later(TEST_TIMEOUT - DUMP_MARGIN, exit=False)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def root(memphis_broker_function: LocalBroker) -> Iterator[Connection]:
    c = connect(memphis_broker_function.url, token=memphis_broker_function.connection_token, name="test::root")
    try:
        yield c
    finally:
        c.close()


def waiting(js: JetStream, stream: str) -> Tuple[int, int]:
    """(messages in the relay stream, of them delivered and not acked)."""
    stored = js.stream_info(stream).state.messages
    pending = js.consumer_info(stream, dls_relay.RELAYS[stream][1]).num_ack_pending
    return stored, pending


def records(broker: LocalBroker, station: str) -> List[Dict[str, Any]]:
    """The station's DLS records, read from the metadata stream on a connection of its own (which
    in token mode only a running control plane admits)."""
    return list_dls_remote(broker.url, station, token=broker.connection_token)


def stored(js: JetStream, station: str) -> int:
    """How many DLS records the station has (one cheap request on a connection that exists: for
    polling, and while no control plane runs)."""
    return len(MetadataStore(js).keys(f"dls.{internal_name(station)}"))


def wait_stored(js: JetStream, station: str, count: int, timeout: float = 20) -> None:
    wait_until(lambda: stored(js, station) >= count, timeout, f"{count} DLS records of {station}", interval=0.1)


def nacked_event(station: str, seq: int, reason: str, cg: str = "g") -> bytes:
    return json.dumps({"station_name": station, "error": reason, "partition": 1, "cg_name": cg, "seq": seq}).encode()


def schema_event(station: str, i: int) -> bytes:
    return json.dumps({
        "station_name": station, "producer": {"name": "prod", "connection_id": "c"}, "creation_unix": int(time.time()),
        "message": {"data": json.dumps({"id": f"bad-{i}"}).encode().hex(), "headers": {"$memphis_producedBy": "prod"}},
        "validation_error": f"failure {i}",
    }).encode()


def station(conn: Connection, name: str, **extra: Any) -> None:
    """Create a station that keeps poison records (a request without ``dls_configuration`` gets
    Go's zero value: none)."""
    body = {"name": name, "partitions_number": 1, "username": "root", "dls_configuration": {"poison": True, "schemaverse": True}}
    assert ask(conn, "$memphis_station_creations", {**body, **extra}) == ""


# -- the streams -----------------------------------------------------------------------------


def test_relay_streams_are_the_brokers_and_survive_a_control_plane_restart(memphis_broker_function: LocalBroker, root: Connection) -> None:
    js = JetStream(root)
    for stream, (subject, durable) in dls_relay.RELAYS.items():
        config = js.stream_info(stream).config
        assert (config.subjects, config.retention.value, config.storage.value, config.max_age) == (
            [subject], "workqueue", "file", 24 * 3600.0)
        consumer = js.consumer_info(stream, durable).config
        assert (consumer.durable_name, consumer.ack_policy.value, consumer.ack_wait, consumer.max_deliver) == (
            durable, "explicit", 80.0, 10)
        assert "deliver_subject" not in consumer.extra  # a pull consumer
    assert set(dls_relay.RELAYS) == {"$memphis_dls_nacked", "$memphis_dls_schemaverse"}
    station(root, "kept")
    root.publish("$memphis_schemaverse_dls", schema_event("kept", 0))
    root.publish("$memphis_nacked_dls", nacked_event("kept", 1, "no such message"))  # dropped: nothing at seq 1
    wait_until(lambda: waiting(js, SCHEMAVERSE_STREAM) == (0, 0) and js.stream_info(SCHEMAVERSE_STREAM).state.last_seq == 1
               and waiting(js, NACKED_STREAM) == (0, 0) and js.stream_info(NACKED_STREAM).state.last_seq == 1, 10, "both handled")
    memphis_broker_function.stop_control_plane()
    memphis_broker_function.start_control_plane()
    for stream in dls_relay.RELAYS:  # kept, not made anew (a new stream starts at sequence 0)
        assert js.stream_info(stream).state.last_seq == 1


def test_start_control_plane_needs_a_running_nats_server(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory()
    broker.stop_control_plane()
    assert not broker.is_running()
    with pytest.raises(BrokerError, match="the broker is not running"):
        broker.control_plane  # noqa: B018
    broker.stop_control_plane()  # twice: nothing
    broker.stop()
    with pytest.raises(BrokerError, match="nats-server is not running"):
        broker.start_control_plane()
    broker.start()
    assert broker.is_running() and broker.control_plane.is_running()


# -- nothing is lost while the control plane is stopped ----------------------------------------


def test_dead_letters_and_schema_failures_sent_while_the_control_plane_is_stopped_are_stored_after(
    memphis_broker_function: LocalBroker, root: Connection, tmp_path: Path
) -> None:
    """With the project's own client: ``dead_letter()`` and a producer's schema failures."""
    broker = memphis_broker_function
    js = JetStream(root)
    schema_file = tmp_path / "order.json"
    schema_file.write_text(JSON_SCHEMA)
    with memphis_sync.connect(**broker.connect_kwargs()) as memphis:
        memphis.station("offline.nacks")
        memphis.create_schema("offline-orders", "json", str(schema_file))
        memphis.station("offline.schema", schema_name="offline-orders", dls_station="offline.schema.dls")
        producer = memphis.producer("offline.nacks", "p")
        for i in range(10):
            producer.produce(f"m{i}".encode())
        consumer = memphis.consumer("offline.nacks", "c", consumer_group="g", batch_size=10)
        messages = wait_until(lambda: consumer.fetch(10), 10, "ten messages")
        strict = memphis.producer("offline.schema", "prod")

        broker.stop_control_plane()
        for i, message in enumerate(messages):
            message.dead_letter(f"reason {i}")
        for i in range(5):
            with pytest.raises(MemphisSchemaError):
                strict.produce({"id": f"not a number {i}"})
        wait_until(lambda: waiting(js, NACKED_STREAM) == (10, 0) and waiting(js, SCHEMAVERSE_STREAM) == (5, 0), 10,
                   "the dead letters waiting in their streams")
        assert stored(js, "offline.nacks") == 0 and stored(js, "offline.schema") == 0  # (no new connection:
        # in token mode the stopped control plane would have to admit it)

        broker.start_control_plane()
        wait_stored(js, "offline.nacks", 10)
        wait_stored(js, "offline.schema", 5)
        nacks = records(broker, "offline.nacks")
        assert len(nacks) == 10
        assert sorted(r["validation_error"] for r in nacks) == sorted(f"reason {i}" for i in range(10))
        assert {(r["message_type"], tuple(r["poisoned_cgs"]), r["producer_name"]) for r in nacks} == {("poison", ("g",), "p")}
        assert sorted(bytes.fromhex(r["message_details"]["data"]) for r in nacks) == sorted(f"m{i}".encode() for i in range(10))
        failures = records(broker, "offline.schema")
        assert len(failures) == 5
        assert {(r["message_type"], r["producer_name"]) for r in failures} == {("schema", "prod")}
        assert len({r["id"] for r in failures}) == 5
        wait_until(lambda: waiting(js, NACKED_STREAM) == (0, 0) and waiting(js, SCHEMAVERSE_STREAM) == (0, 0), 10, "all acked")
        assert js.stream_info("offline#schema#dls$1").state.messages == 5  # each forwarded once


@SDK_WARNINGS[0]
@SDK_WARNINGS[1]
def test_memphis_py_schema_failures_sent_while_the_control_plane_is_stopped_reach_the_dls(
    memphis_broker_function: LocalBroker, root: Connection, tmp_path: Path
) -> None:
    """The official SDK's dead letters: its schema failures (core publish, no reply) wait in the
    stream. (Its ``dead_letter()`` raises before publishing in 1.3.1; its poison messages go
    through the advisory stream, see test_broker_memphis_py.)"""
    import memphis

    broker = memphis_broker_function
    js = JetStream(root)
    schema_file = tmp_path / "order.json"
    schema_file.write_text(JSON_SCHEMA)

    async def main() -> None:
        client = memphis.Memphis()
        await client.connect(**broker.connect_kwargs())
        try:
            await client.create_schema("py-offline", "json", str(schema_file))
            await client.station(name="py.offline")
            await client.enforce_schema("py-offline", "py.offline")
            producer = await client.producer(station_name="py.offline", producer_name="py-prod")
            broker.stop_control_plane()
            for i in range(3):
                with pytest.raises(memphis.MemphisSchemaError):
                    await producer.produce({"id": f"nope {i}"})
            await client.broker_manager.flush()
            for _ in range(250):
                if waiting(js, SCHEMAVERSE_STREAM) == (3, 0):
                    break
                await asyncio.sleep(0.02)
            assert waiting(js, SCHEMAVERSE_STREAM) == (3, 0)
            assert stored(js, "py.offline") == 0
            broker.start_control_plane()
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        gc.collect()
    wait_stored(js, "py.offline", 3)
    failures = records(broker, "py.offline")
    assert len(failures) == 3
    assert {(r["message_type"], r["producer_name"]) for r in failures} == {("schema", "py-prod")}
    # the SDK sends the Python repr of a dict (§9.4)
    assert sorted(bytes.fromhex(r["message_details"]["data"]).decode() for r in failures) == [str({"id": f"nope {i}"}) for i in range(3)]
    wait_until(lambda: waiting(js, SCHEMAVERSE_STREAM) == (0, 0), 10, "all acked")


# -- a restart or a crash in the middle --------------------------------------------------------


def test_a_control_plane_restart_amid_a_stream_of_dead_letters_loses_none_and_stores_none_twice(
    memphis_broker_function: LocalBroker, root: Connection
) -> None:
    broker = memphis_broker_function
    js = JetStream(root)
    count = 300
    station(root, "stream.nacks")
    station(root, "stream.schema")
    seqs = [js.publish("stream#nacks$1.final", b"m%d" % i, headers={"$memphis_producedBy": "p"}).seq for i in range(count)]
    sent = [0]
    stop_sending = threading.Event()

    def send() -> None:
        for i in range(count):
            if stop_sending.is_set():
                return
            root.publish("$memphis_nacked_dls", nacked_event("stream#nacks", seqs[i], f"r{i}"))
            root.publish("$memphis_schemaverse_dls", schema_event("stream#schema", i))
            sent[0] = i + 1
            time.sleep(0.003)

    sender = threading.Thread(target=send, name="test-dls-sender")
    sender.start()
    try:
        wait_stored(js, "stream.nacks", 20)
        broker.stop_control_plane()
        stopped_at = sent[0]
        wait_until(lambda: sent[0] >= stopped_at + 20, 20, "dead letters sent while the control plane is stopped")
        broker.start_control_plane()
        restarted_at = sent[0]
        wait_until(lambda: sent[0] >= restarted_at + 20, 20, "dead letters sent after the restart")
        broker.stop_control_plane()  # and once more, at once
        broker.start_control_plane()
        sender.join(30)
    finally:
        stop_sending.set()
        sender.join(30)
    assert 20 <= stopped_at < restarted_at < count == sent[0]  # the restart was in the middle
    wait_stored(js, "stream.nacks", count, 30)
    wait_stored(js, "stream.schema", count, 30)
    wait_until(lambda: waiting(js, NACKED_STREAM) == (0, 0) and waiting(js, SCHEMAVERSE_STREAM) == (0, 0), 10, "all acked")
    nacks, failures = records(broker, "stream.nacks"), records(broker, "stream.schema")  # nothing came after
    assert len(nacks) == count and sorted(r["message_seq"] for r in nacks) == seqs
    assert sorted(r["validation_error"] for r in nacks) == sorted(f"r{i}" for i in range(count))
    assert len(failures) == count and len({r["id"] for r in failures}) == count
    assert sorted(r["validation_error"] for r in failures) == sorted(f"failure {i}" for i in range(count))


@pytest.mark.parametrize("crash", ["before storing", "after storing"])
def test_a_control_plane_killed_mid_batch_loses_none_and_stores_nothing_twice(
    memphis_broker_factory: Callable[..., LocalBroker], monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    """The control plane's connection dies as it handles the 5th schema failure of a batch, just
    before or just after storing it (never acked either way): the unacked events come back after
    the ack wait, to the next control plane, which stores what is missing and nothing twice (the
    DLS station got each failure once, too)."""
    monkeypatch.setattr(dls_relay, "RELAY_ACK_WAIT", 1.0)  # the durables are created with it
    broker = memphis_broker_factory()
    count = 20
    conn = connect(broker.url, token=broker.connection_token, name="test::root")
    try:
        js = JetStream(conn)
        assert js.consumer_info(SCHEMAVERSE_STREAM, dls_relay.SCHEMAVERSE_DURABLE).config.ack_wait == 1.0
        station(conn, "crash.nacks")
        station(conn, "crash.schema", dls_station="crash.schema.dls")
        seqs = [js.publish("crash#nacks$1.final", b"m%d" % i, headers={"$memphis_producedBy": "p"}).seq for i in range(count)]
        broker.stop_control_plane()
        for i in range(count):  # all wait: the next control plane fetches them in one batch
            conn.publish("$memphis_nacked_dls", nacked_event("crash#nacks", seqs[i], f"r{i}"))
            conn.publish("$memphis_schemaverse_dls", schema_event("crash#schema", i))
        wait_until(lambda: waiting(js, NACKED_STREAM)[0] == count and waiting(js, SCHEMAVERSE_STREAM)[0] == count, 10, "all waiting")

        original_failure, original_nack = DeadLetters.store_schema_failure, DeadLetters.store_nacked
        crashed = threading.Event()
        handled_before_crash: List[int] = []

        def crash_at_the_fifth(self: DeadLetters, event: Dict[str, Any], delivery: MsgMetadata) -> None:
            handled_before_crash.append(delivery.stream_seq)
            fifth = len(handled_before_crash) == 5
            if fifth and crash == "before storing":
                self._ctx.connection.close()  # as if the process died: no ack, no drain
                crashed.set()
            original_failure(self, event, delivery)
            if fifth:
                self._ctx.connection.close()
                crashed.set()

        monkeypatch.setattr(DeadLetters, "store_schema_failure", crash_at_the_fifth)
        broker.start_control_plane()
        wait_until(crashed.is_set, 10, "the crash")
        broker.stop_control_plane()  # cleans up the dead one
        assert waiting(js, SCHEMAVERSE_STREAM)[0] >= count - 4  # the 5th at least: not acked
        assert stored(js, "crash.schema") == (4 if crash == "before storing" else 5)

        handled: List[Tuple[str, int, int]] = []

        def recording(original: Callable[..., None], kind: str) -> Callable[..., None]:
            def handler(self: DeadLetters, event: Dict[str, Any], delivery: MsgMetadata) -> None:
                handled.append((kind, delivery.stream_seq, delivery.num_delivered))
                original(self, event, delivery)

            return handler

        monkeypatch.setattr(DeadLetters, "store_schema_failure", recording(original_failure, "schema"))
        monkeypatch.setattr(DeadLetters, "store_nacked", recording(original_nack, "nack"))
        broker.start_control_plane()
        wait_until(lambda: waiting(js, NACKED_STREAM) == (0, 0) and waiting(js, SCHEMAVERSE_STREAM) == (0, 0), 20, "all acked")
        # positive control: the 5th failure was delivered again and handled again
        fifth = handled_before_crash[4]
        assert [d for kind, seq, d in handled if kind == "schema" and seq == fifth] == [2]
        failures, nacks = records(broker, "crash.schema"), records(broker, "crash.nacks")
        assert len(failures) == count and sorted(r["validation_error"] for r in failures) == sorted(f"failure {i}" for i in range(count))
        assert len(nacks) == count and sorted(r["message_seq"] for r in nacks) == seqs
        assert js.stream_info("crash#schema#dls$1").state.messages == count  # forwarded once each
    finally:
        conn.close()


def test_an_event_that_is_not_json_is_dropped_and_the_next_one_stored(memphis_broker_function: LocalBroker, root: Connection) -> None:
    js = JetStream(root)
    station(root, "bad.events")
    root.publish("$memphis_schemaverse_dls", b"{not json")
    root.publish("$memphis_schemaverse_dls", b"[1, 2]")
    root.publish("$memphis_schemaverse_dls", schema_event("bad#events", 1))  # positive control, after them
    wait_stored(js, "bad.events", 1, 10)
    (record,) = records(memphis_broker_function, "bad.events")
    assert record["validation_error"] == "failure 1"
    wait_until(lambda: waiting(js, SCHEMAVERSE_STREAM) == (0, 0), 10, "the bad events acked, not retried")
