"""The Memphis API end to end on the local broker (memphis_sync.broker.LocalBroker)."""

from __future__ import annotations

import uuid
from typing import Any, Dict

import pytest

import memphis_sync
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["tcp", "websocket"])
def connect_kwargs(request: pytest.FixtureRequest, memphis_broker: Any) -> Dict[str, Any]:
    """``connect()`` arguments for the session broker, over TCP and over NATS over WebSocket:
    every flow below runs on both transports."""
    return memphis_broker.connect_kwargs(websocket=request.param == "websocket")


def test_the_flows_run_on_the_transport_they_name(connect_kwargs: Dict[str, Any], memphis_broker: Any) -> None:
    with memphis_sync.connect(**connect_kwargs) as memphis:
        used = memphis.connection.describe_server()
        assert memphis.station(f"tr-{uuid.uuid4().hex[:8]}").name
    websocket = connect_kwargs["host"].startswith("ws://")
    assert used == (memphis_broker.websocket_url if websocket else memphis_broker.url)
    assert used.startswith("ws://" if websocket else "nats://")


def test_produce_consume_partitions_headers_on_local_broker(connect_kwargs):
    name = f"lb-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**connect_kwargs) as memphis:
        station = memphis.station(name, partitions_number=3)
        producer = memphis.producer(name, "p")
        for i in range(30):
            producer.produce(f"m{i}", headers={"i": str(i)}, producer_partition_key=f"key-{i % 5}")
        futures = [producer.produce(f"nb{i}", nonblocking=True) for i in range(30)]
        producer.flush(timeout=10)
        assert all(f.result().seq >= 1 for f in futures)
        consumers = [memphis.consumer(name, f"c{i}", consumer_group="group", batch_size=50) for i in range(2)]
        seen = []
        for _ in range(30):
            for consumer in consumers:
                for msg in consumer.fetch():
                    seen.append(msg.get_data().decode())
                    assert msg.get_headers()["$memphis_producedBy"] == "p"
                    msg.ack()
            if len(seen) >= 60:
                break
        assert sorted(seen) == sorted([f"m{i}" for i in range(30)] + [f"nb{i}" for i in range(30)])
        for consumer in consumers:
            consumer.destroy()
        producer.destroy()
        station.destroy()


def test_msg_id_idempotency_on_local_broker(connect_kwargs):
    name = f"idem-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**connect_kwargs) as memphis:
        station = memphis.station(name, idempotency_window_ms=60_000)
        producer = memphis.producer(name, "p")
        first = producer.produce("once", msg_id="order-1")
        again = producer.produce("once", msg_id="order-1")
        other = producer.produce("twice", msg_id="order-2")
        assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
        assert again.seq == first.seq
        consumer = memphis.consumer(name, "c", batch_size=10)
        got = []
        for _ in range(20):
            for msg in consumer.fetch():
                got.append(msg.get_data())
                assert msg.get_headers()["msg-id"] in ("order-1", "order-2")
                msg.ack()
            if len(got) >= 2:
                break
        assert got == [b"once", b"twice"]
        consumer.destroy()
        producer.destroy()
        station.destroy()


def test_get_headers_is_a_plain_dict_like_the_sdk(connect_kwargs):
    import json

    name = f"hdr-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**connect_kwargs) as memphis:
        producer = memphis.producer(name, "p")
        headers = memphis_sync.Headers()
        headers.add("tag", "one")
        headers.add("tag", "two")
        headers.add("trace", "t-1")
        producer.produce(b"x", headers=headers)
        consumer = memphis.consumer(name, "c")
        msgs = []
        for _ in range(20):
            msgs += consumer.fetch()
            if msgs:
                break
        msg = msgs[0]
        plain = msg.get_headers()
        assert type(plain) is dict and json.loads(json.dumps(plain)) == plain
        assert plain["tag"] == "two" and plain["trace"] == "t-1" and plain["$memphis_producedBy"] == "p"
        assert msg.get_all_headers().get_all("tag") == ["one", "two"]
        msg.ack()
        consumer.destroy()
        producer.destroy()
        memphis.station(name).destroy()


def test_nack_redelivery_and_dead_letters_on_local_broker(connect_kwargs, memphis_broker):
    """A nacked message comes again until max_msg_deliveries, then is a poison message in the
    dead-letter station; dead_letter() records one at once with its reason."""
    name = f"dls-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**connect_kwargs) as memphis:
        station = memphis.station(name)
        producer = memphis.producer(name, "p")
        producer.produce(b"poison", headers={"k": "v"})
        producer.produce(b"refused")
        consumer = memphis.consumer(name, "c", consumer_group="g", max_msg_deliveries=2, max_ack_time_ms=1000, batch_size=10)
        deliveries = {b"poison": 0, b"refused": 0}

        def handle() -> bool:
            for msg in consumer.fetch():
                data = bytes(msg.get_data())
                deliveries[data] += 1
                if data == b"poison":
                    assert msg.get_headers()["k"] == "v"
                    msg.nack()
                else:
                    msg.dead_letter("bad order")
            # JetStream gives up on the nacked one at the next pull after its last delivery
            return len(memphis_broker.control_plane.dls_messages(name)) == 2

        wait_until(handle, 30, "both dead letters")
        assert deliveries == {b"poison": 2, b"refused": 1}
        records = memphis_broker.control_plane.dls_messages(name)
        by_data = {bytes.fromhex(r["message_details"]["data"]): r for r in records}
        assert set(by_data) == {b"poison", b"refused"}
        assert all(r["message_type"] == "poison" and r["poisoned_cgs"] == ["g"] for r in records)
        assert by_data[b"refused"]["validation_error"] == "bad order"
        assert by_data[b"poison"]["producer_name"] == "p"
        assert consumer.fetch() == []  # neither comes again
        consumer.destroy()
        producer.destroy()
        station.destroy()
