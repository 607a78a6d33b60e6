"""Interop with the official async SDK (memphis-py 1.3.1, a test-only dependency) on one broker.

Both clients talk to the same nats-server and fake control plane: their control-plane request
bodies must be equal field by field (except per-connection/process ids), and messages produced by
one must be consumed by the other with data, headers and partitions intact.
"""

from __future__ import annotations

import asyncio

import pytest

import memphis_sync
from memphis_sync.memphis.partition import partition_for_key

memphis_py = pytest.importorskip("memphis", reason="the official SDK (pip install memphis-py==1.3.1) is needed for interop tests")

pytestmark = [
    pytest.mark.integration,
    # memphis-py / nats-py emit asyncio deprecation warnings of their own
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

IDS = ("connection_id", "app_id")


def _without_ids(body):
    return {k: v for k, v in body.items() if k not in IDS}


def _run(coro):
    return asyncio.run(coro)


async def _sdk_connect(server):
    sdk = memphis_py.Memphis()
    await sdk.connect(host="127.0.0.1", port=server.port, username="root", connection_token="memphis")
    return sdk


def test_request_bodies_equal_the_official_sdk(nats_server, fake_plane, memphis):
    calls = dict(
        station=dict(name="bodies", retention_type=memphis_sync.Retention.MESSAGES, retention_value=99,
                     storage_type=memphis_sync.Storage.MEMORY, replicas=1, idempotency_window_ms=3000,
                     send_poison_msg_to_dls=False, partitions_number=2, dls_station=""),
        producer=dict(station_name="bodies", producer_name="writer"),
        consumer=dict(station_name="bodies", consumer_name="reader", consumer_group="grp", max_ack_time_ms=7000,
                      max_msg_deliveries=4, start_consume_from_sequence=1, last_messages=-1),
    )

    async def sdk_calls():
        sdk = await _sdk_connect(nats_server)
        try:
            from memphis.types import Retention, Storage

            args = dict(calls["station"], retention_type=Retention.MESSAGES, storage_type=Storage.MEMORY)
            station = await sdk.station(**args)
            producer = await sdk.producer(**calls["producer"])
            consumer = await sdk.consumer(**calls["consumer"])
            await consumer.destroy()
            await producer.destroy()
            await station.destroy()
        finally:
            await sdk.close()

    _run(sdk_calls())
    theirs = {subject: [_without_ids(b) for b in bodies] for subject, bodies in fake_plane.requests.items()}
    fake_plane.requests.clear()

    station = memphis.station(**calls["station"])
    producer = memphis.producer(**calls["producer"])
    consumer = memphis.consumer(**calls["consumer"])
    consumer.destroy()
    producer.destroy()
    station.destroy()
    ours = {subject: [_without_ids(b) for b in bodies] for subject, bodies in fake_plane.requests.items()}
    assert set(ours) == set(theirs)
    for subject in theirs:
        assert ours[subject] == theirs[subject], subject
        # same keys in every body, ids included
    for subject, bodies in fake_plane.requests.items():
        assert all(set(b) >= set(IDS) & set(b) for b in bodies)


def test_sdk_produces_we_consume(nats_server, fake_plane, memphis):
    memphis.station("sdk-to-us", partitions_number=3)
    keys = [f"key-{i}" for i in range(12)]

    async def produce():
        from memphis import Headers as SdkHeaders

        sdk = await _sdk_connect(nats_server)
        try:
            producer = await sdk.producer(station_name="sdk-to-us", producer_name="sdk-producer")
            for key in keys:
                headers = SdkHeaders()
                headers.add("k", key)
                await producer.produce(bytearray(key.encode()), headers=headers, producer_partition_key=key)
        finally:
            await sdk.close()

    _run(produce())
    consumer = memphis.consumer("sdk-to-us", "we", batch_size=50)
    got = {}
    for _ in range(20):
        for msg in consumer.fetch():
            got[msg.get_data().decode()] = msg
            msg.ack()
        if len(got) == len(keys):
            break
    assert sorted(got) == sorted(keys)
    for key, msg in got.items():
        headers = msg.get_headers()
        assert headers["k"] == key
        assert headers["$memphis_producedBy"] == "sdk-producer"
        assert msg.partition == partition_for_key(key, [1, 2, 3])  # same key → same partition


def test_we_produce_sdk_consumes(nats_server, fake_plane, memphis):
    memphis.station("us-to-sdk", partitions_number=2)
    producer = memphis.producer("us-to-sdk", "our-producer")
    keys = [f"k{i}" for i in range(10)]
    for key in keys:
        producer.produce(key, headers={"k": key}, producer_partition_key=key)

    async def consume():
        sdk = await _sdk_connect(nats_server)
        out = []
        try:
            consumer = await sdk.consumer(station_name="us-to-sdk", consumer_name="sdk-consumer", batch_size=20)
            for partition in (1, 2):
                for msg in await consumer.fetch(batch_size=20, consumer_partition_number=partition):
                    out.append((partition, bytes(msg.get_data()).decode(), dict(msg.get_headers())))
                    await msg.ack()
        finally:
            await sdk.close()
        return out

    out = _run(consume())
    assert sorted(data for _, data, _ in out) == sorted(keys)
    for partition, data, headers in out:
        assert partition == partition_for_key(data, [1, 2])
        assert headers["k"] == data
        assert headers["$memphis_producedBy"] == "our-producer"
        assert headers["$memphis_connectionId"] == memphis.connection_id
