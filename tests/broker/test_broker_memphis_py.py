"""Acceptance: the official async SDK, memphis-py 1.3.1, unmodified, against the local broker.

Each test runs its coroutine with ``asyncio.run``. The SDK sleeps 1 s when the host contains
"localhost", so the tests connect to 127.0.0.1. Empty fetches cost the SDK's 5 s nats-py default,
so every fetch here is made when messages are known to be there.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Callable, Dict, List

import pytest
from memphis import Headers, Memphis  # memphis-py==1.3.1, in the test extra
from memphis.types import Retention, Storage

from memphis_sync.broker.local import LocalBroker
from memphis_sync.errors import StreamNotFoundError
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import connect

pytestmark = [
    pytest.mark.integration,
    # memphis-py 1.3.1 leaves sockets of closed connections to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def run(coro: Any) -> None:
    """``asyncio.run``, then collect the sockets the SDK leaves behind while its warnings are
    ignored here (otherwise they surface in whatever test runs next)."""
    try:
        asyncio.run(coro)
    finally:
        gc.collect()


async def _fetch_all(consumer: Any, count: int, deadline: float = 10.0) -> List[Any]:
    got: List[Any] = []
    end = time.monotonic() + deadline
    while len(got) < count and time.monotonic() < end:
        got.extend(await consumer.fetch(batch_size=count - len(got)))
    return got


async def _full_flow(kwargs: Dict[str, Any], station: str, broker: LocalBroker) -> None:
    client = Memphis()
    await client.connect(**kwargs)
    try:
        st = await client.station(
            name=station, retention_type=Retention.MESSAGES, retention_value=1000, storage_type=Storage.DISK,
            partitions_number=3, idempotency_window_ms=60000,
        )
        producer = await client.producer(station_name=station, producer_name="Prod-1")
        for i in range(9):
            headers = Headers()
            headers.add("order-id", str(i))
            await producer.produce(f"order {i}", headers=headers, msg_id=f"msg-{i}", producer_partition_number=i % 3 + 1)
        await producer.produce({"kind": "dict"}, producer_partition_key="customer-7")
        consumer = await client.consumer(station_name=station, consumer_name="Cons-1", consumer_group="Group.A", batch_size=10)
        messages = await _fetch_all(consumer, 10)
        bodies = sorted(bytes(m.get_data()) for m in messages)
        assert bodies == sorted([b'{"kind": "dict"}'] + [b"order %d" % i for i in range(9)])
        for message in messages:
            headers = message.get_headers()
            assert headers["$memphis_producedBy"] == "prod-1"
            assert "$memphis_connectionId" in headers
            if bytes(message.get_data()).startswith(b"order"):
                assert headers["order-id"] == bytes(message.get_data()).decode().split()[1]
                assert headers["msg-id"] == "msg-" + headers["order-id"]
            assert message.get_sequence_number() >= 1
            await message.ack()

        control = broker.control_plane
        record = control.get_station(station)
        assert (record["retention_type"], record["retention_value"], record["partitions_list"]) == ("messages", 1000, [1, 2, 3])
        assert [p["name"] for p in control.producers(station)] == ["prod-1"]
        (cons,) = control.consumers(station)
        assert (cons["name"], cons["consumers_group"], cons["max_msg_deliveries"]) == ("cons-1", "group.a", 2)

        conn = connect(broker.url, name="t::root", **({"token": broker.connection_token} if broker.connection_token else
                                      {"user": f"{broker.username}$1", "password": broker.password}))
        try:
            js = JetStream(conn)
            internal = station.replace(".", "#")
            for p in (1, 2, 3):
                deadline = time.monotonic() + 5  # the SDK's acks are asynchronous publishes
                while True:
                    info = js.consumer_info(f"{internal}${p}", "group#a")
                    if info.num_ack_pending == 0 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.02)
                assert info.num_ack_pending == 0 and info.num_pending == 0
            await consumer.destroy()
            await producer.destroy()
            assert control.consumers(station) == [] and control.producers(station) == []
            await st.destroy()
            assert control.get_station(station) is None
            with pytest.raises(StreamNotFoundError):
                js.stream_info(f"{internal}$1")
        finally:
            conn.close()
    finally:
        await client.close()


def test_memphis_py_token_mode(memphis_broker: LocalBroker) -> None:
    run(_full_flow(memphis_broker.connect_kwargs(), "sdk.token", memphis_broker))


def test_memphis_py_password_mode(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(password="pw-1", users={"app": "app-pw"})
    run(_full_flow(broker.connect_kwargs(), "sdk.password", broker))
    kwargs = {**broker.connect_kwargs(), "username": "app", "password": "app-pw"}
    run(_full_flow(kwargs, "sdk.app", broker))


def test_memphis_py_wrong_password_is_refused(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(password="pw-1")

    async def main() -> None:
        client = Memphis()
        with pytest.raises(Exception, match="(?i)authorization"):
            await client.connect(**{**broker.connect_kwargs(), "password": "nope"}, reconnect=False, timeout_ms=2000)

    run(main())


def test_memphis_py_auto_created_station_and_last_messages(memphis_broker: LocalBroker) -> None:
    async def main() -> None:
        client = Memphis()
        await client.connect(**memphis_broker.connect_kwargs())
        try:
            for i in range(5):  # station created by the producer request (§4.6)
                await client.produce(station_name="sdk-auto", producer_name="p", message=f"m{i}")
            consumer = await client.consumer(station_name="sdk-auto", consumer_name="tail", last_messages=2)
            messages = await _fetch_all(consumer, 2)
            assert [bytes(m.get_data()) for m in messages] == [b"m3", b"m4"]
            for message in messages:
                await message.ack()
        finally:
            await client.close()

    run(main())


def test_memphis_py_poison_message_reaches_the_dls(memphis_broker: LocalBroker) -> None:
    async def main() -> None:
        client = Memphis()
        await client.connect(**memphis_broker.connect_kwargs())
        try:
            await client.station(name="sdk-poison", dls_station="sdk-poison-dls")
            await client.produce(station_name="sdk-poison", producer_name="p", message="bad")
            consumer = await client.consumer(
                station_name="sdk-poison", consumer_name="c", max_ack_time_ms=200, max_msg_deliveries=2
            )
            for _ in range(2):  # delivered twice, never acked
                assert [bytes(m.get_data()) for m in await _fetch_all(consumer, 1)] == [b"bad"]
            # nats-server emits the MAX_DELIVERIES advisory when a pull request meets the exhausted
            # message (as the SDK's consume() loop does); pull once, briefly, with our own client
            # instead of waiting out the SDK's 5 s fetch.
            conn = connect(memphis_broker.url, token=memphis_broker.connection_token, name="t::root")
            try:
                await asyncio.sleep(0.25)
                sub = JetStream(conn).pull_subscribe("sdk-poison$1", "c")
                assert sub.fetch(1, timeout=0.5) == []
                sub.unsubscribe()
            finally:
                conn.close()
            deadline = time.monotonic() + 5
            while not memphis_broker.control_plane.dls_messages("sdk-poison") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            (record,) = memphis_broker.control_plane.dls_messages("sdk-poison")
            assert (record["message_type"], record["poisoned_cgs"], record["producer_name"]) == ("poison", ["c"], "p")
            assert bytes.fromhex(record["message_details"]["data"]) == b"bad"
            dls_consumer = await client.consumer(station_name="sdk-poison-dls", consumer_name="d")
            (forwarded,) = await _fetch_all(dls_consumer, 1)
            assert bytes(forwarded.get_data()) == b"bad"
            headers = forwarded.get_headers()
            assert (headers["station"], headers["type"], headers["$memphis_producedBy"]) == ("sdk-poison", "unacked", "p")
            await forwarded.ack()
        finally:
            await client.close()

    run(main())
