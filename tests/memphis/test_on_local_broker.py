"""The Memphis API end to end on the local broker (memphis_sync.broker.LocalBroker)."""

from __future__ import annotations

import uuid

import pytest

import memphis_sync

pytestmark = pytest.mark.integration


def test_produce_consume_partitions_headers_on_local_broker(memphis_broker):
    name = f"lb-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
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


def test_msg_id_idempotency_on_local_broker(memphis_broker):
    name = f"idem-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
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


def test_get_headers_is_a_plain_dict_like_the_sdk(memphis_broker):
    import json

    name = f"hdr-{uuid.uuid4().hex[:8]}"
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
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
