"""The JetStream layer against a real nats-server with JetStream."""

from __future__ import annotations

import threading
import time

import pytest

from memphis_sync.errors import (
    ConsumerNameInUseError,
    ConsumerNotFoundError,
    JetStreamError,
    LocalProtocolError,
    MessageAlreadyAckedError,
    MessageNotFoundError,
    NoStreamResponseError,
    StreamNameInUseError,
    StreamNotFoundError,
    WrongLastSequenceError,
)
from memphis_sync.jetstream import JetStream
from memphis_sync.jetstream.types import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from memphis_sync.nats.connection import ReconnectPolicy, connect

pytestmark = pytest.mark.integration


@pytest.fixture
def js(nats_server):
    conn = connect(nats_server.url)
    yield JetStream(conn)
    conn.close()


def _stream(js, name="ORDERS", subjects=("orders.>",), **kw):
    return js.add_stream(StreamConfig(name=name, subjects=list(subjects), **kw))


def _pull(js, stream="ORDERS", durable="workers", **kw):
    js.add_consumer(stream, ConsumerConfig(durable_name=durable, **kw))
    return js.pull_subscribe(stream, durable)


def test_stream_lifecycle_and_config_roundtrip(js):
    info = _stream(
        js, retention=RetentionPolicy.INTEREST, storage="memory", max_msgs=100, max_bytes=10_000,
        max_age=3600, duplicate_window=30, max_msgs_per_subject=5, discard="old",
    )
    cfg = info.config
    assert (cfg.name, cfg.subjects, cfg.retention, cfg.storage) == ("ORDERS", ["orders.>"], RetentionPolicy.INTEREST, StorageType.MEMORY)
    assert (cfg.max_msgs, cfg.max_bytes, cfg.max_age, cfg.duplicate_window, cfg.max_msgs_per_subject) == (100, 10_000, 3600.0, 30.0, 5)
    assert _stream(js, retention="interest", storage="memory", max_msgs=100, max_bytes=10_000, max_age=3600,
                   duplicate_window=30, max_msgs_per_subject=5).config.name == "ORDERS"  # identical: idempotent
    with pytest.raises(StreamNameInUseError) as info_err:
        _stream(js, subjects=("other.>",), storage="memory", retention="interest")
    assert info_err.value.err_code == 10058 and info_err.value.code == 400
    updated = js.update_stream(StreamConfig(name="ORDERS", subjects=["orders.>"], retention="interest",
                                            storage="memory", max_msgs=200, max_bytes=10_000))
    assert updated.config.max_msgs == 200
    _stream(js, name="AUDIT", subjects=("audit.*",))
    assert sorted(js.stream_names()) == ["AUDIT", "ORDERS"]
    assert js.stream_names(subject="audit.x") == ["AUDIT"]
    js.delete_stream("ORDERS")
    with pytest.raises(StreamNotFoundError) as missing:
        js.stream_info("ORDERS")
    assert missing.value.code == 404 and missing.value.err_code == 10059
    with pytest.raises(StreamNotFoundError):
        js.delete_stream("ORDERS")


def test_consumer_names(js):
    _stream(js)
    assert js.consumer_names("ORDERS") == []
    for name in ("b-workers", "a-workers"):
        js.add_consumer("ORDERS", ConsumerConfig(durable_name=name))
    assert sorted(js.consumer_names("ORDERS")) == ["a-workers", "b-workers"]
    with pytest.raises(StreamNotFoundError):
        js.consumer_names("NOPE")
    with pytest.raises(LocalProtocolError):
        js.consumer_names("a b")


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "a*", "a>", "a/b", "a\r\nPUB x 0"])
def test_bad_names_are_refused_locally(js, bad):
    with pytest.raises(LocalProtocolError):
        js.stream_info(bad)
    with pytest.raises(LocalProtocolError):
        StreamConfig(name=bad)
    with pytest.raises(LocalProtocolError):
        ConsumerConfig(durable_name=bad)
    assert js.conn.is_connected()


def test_bad_enum_and_numbers_are_refused_locally():
    with pytest.raises(LocalProtocolError, match="RetentionPolicy"):
        StreamConfig(name="S", retention="forever")
    with pytest.raises(LocalProtocolError, match="max_msgs"):
        StreamConfig(name="S", max_msgs=-2)
    with pytest.raises(LocalProtocolError, match="opt_start_seq"):
        ConsumerConfig(durable_name="c", deliver_policy="by_start_sequence")


def test_consumer_lifecycle(js):
    _stream(js)
    info = js.add_consumer("ORDERS", ConsumerConfig(
        durable_name="billing", filter_subject="orders.new", ack_policy=AckPolicy.EXPLICIT, ack_wait=12.5,
        max_deliver=4, max_ack_pending=50, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=3,
    ))
    cfg = info.config
    assert (info.stream_name, info.name) == ("ORDERS", "billing")
    assert (cfg.filter_subject, cfg.ack_wait, cfg.max_deliver, cfg.max_ack_pending, cfg.opt_start_seq) == ("orders.new", 12.5, 4, 50, 3)
    assert cfg.deliver_policy is DeliverPolicy.BY_START_SEQUENCE
    assert js.consumer_info("ORDERS", "billing").config.ack_wait == 12.5
    with pytest.raises(ConsumerNameInUseError):
        js.add_consumer("ORDERS", ConsumerConfig(durable_name="billing", filter_subject="orders.old"), action="create")
    legacy = js.add_consumer("ORDERS", ConsumerConfig(durable_name="legacy", ack_wait=30), legacy_durable_api=True)
    assert legacy.name == "legacy"
    js.delete_consumer("ORDERS", "billing")
    with pytest.raises(ConsumerNotFoundError) as err:
        js.consumer_info("ORDERS", "billing")
    assert err.value.err_code == 10014
    with pytest.raises(StreamNotFoundError):
        js.add_consumer("NOPE", ConsumerConfig(durable_name="x"))


def test_publish_ack_dedup_and_expectations(js):
    _stream(js, duplicate_window=60)
    a1 = js.publish("orders.new", b"one", msg_id="m-1")
    assert (a1.stream, a1.seq, a1.duplicate) == ("ORDERS", 1, False)
    again = js.publish("orders.new", b"one", msg_id="m-1")
    assert (again.seq, again.duplicate) == (1, True)
    a2 = js.publish("orders.new", b"two", headers={"k": "v"}, expected_stream="ORDERS", expected_last_seq=1)
    assert a2.seq == 2
    with pytest.raises(WrongLastSequenceError):
        js.publish("orders.new", b"three", expected_last_seq=1)
    with pytest.raises(JetStreamError):
        js.publish("orders.new", b"x", expected_stream="OTHER")
    assert js.stream_info("ORDERS").state.messages == 2
    stored = js.get_msg("ORDERS", 2)
    assert (stored.subject, stored.seq, stored.data, stored.headers["k"]) == ("orders.new", 2, b"two", "v")
    assert stored.time is not None
    with pytest.raises(MessageNotFoundError):
        js.get_msg("ORDERS", 99)


def test_publish_without_stream_retries_then_fails_clearly(js):
    t0 = time.monotonic()
    with pytest.raises(NoStreamResponseError):
        js.publish("nowhere.to.go", b"x")
    assert 0.4 < time.monotonic() - t0 < 3  # two ADR-22 retries, 250 ms apart
    fut = js.publish_async("nowhere.to.go", b"x")
    with pytest.raises(NoStreamResponseError):
        fut.result(timeout=5)


def test_pipelined_publish_100k_every_future_resolves_and_stored_once(js):
    _stream(js, storage="memory")
    js.max_pending = 1024
    futures = [js.publish_async("orders.bulk", b"%d" % i) for i in range(100_000)]
    js.publish_async_complete(timeout=60)
    assert js.publish_async_pending == 0
    seqs = [f.result(timeout=0) for f in futures]
    assert sorted(a.seq for a in seqs) == list(range(1, 100_001))
    assert js.stream_info("ORDERS").state.messages == 100_000


def test_publish_async_window_blocks_instead_of_dropping(js):
    _stream(js, storage="memory")
    small = JetStream(js.conn, max_pending=8)
    seen_max = 0
    futures = []
    for i in range(500):
        futures.append(small.publish_async("orders.w", b"x"))
        seen_max = max(seen_max, small.publish_async_pending)
    small.publish_async_complete(timeout=30)
    assert seen_max <= 8
    assert all(f.result().seq > 0 for f in futures)


def test_fetch_full_partial_empty_and_no_wait(js):
    _stream(js)
    sub = _pull(js)
    for i in range(5):
        js.publish("orders.new", b"%d" % i)
    msgs = sub.fetch(3, timeout=2)
    assert [m.data for m in msgs] == [b"0", b"1", b"2"]
    t0 = time.monotonic()
    msgs += sub.fetch(10, timeout=0.5)  # only 2 left: a partial batch when the wait runs out
    assert [m.data for m in msgs] == [b"%d" % i for i in range(5)]
    assert time.monotonic() - t0 < 3  # returned when the 0.5 s wait ran out, not later
    for m in msgs:
        m.ack()
    t0 = time.monotonic()
    assert sub.fetch(5, timeout=0.3) == []
    assert 0.25 < time.monotonic() - t0 < 3
    t0 = time.monotonic()
    assert sub.fetch(5, timeout=5, no_wait=True) == []
    assert time.monotonic() - t0 < 2.5  # no_wait: far less than the 5 s timeout
    js.publish("orders.new", b"late")
    # no_wait returns what the consumer has already seen; the server updates a consumer's view
    # of the stream asynchronously, so wait until it counts the new message
    deadline = time.monotonic() + 5
    while js.consumer_info("ORDERS", "workers").num_pending < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    got = sub.fetch(5, timeout=5, no_wait=True)
    assert [m.data for m in got] == [b"late"]
    got[0].ack()


def test_fetch_max_bytes_and_heartbeat(js):
    _stream(js)
    sub = _pull(js)
    for i in range(10):
        js.publish("orders.new", b"x" * 100)
    msgs = sub.fetch(10, timeout=2, max_bytes=350)
    assert 1 <= len(msgs) < 10
    for m in msgs:
        m.ack()
    # heartbeats keep an idle request alive without ending it early
    t0 = time.monotonic()
    rest = sub.fetch(20, timeout=1.0, heartbeat=0.2)
    assert len(rest) == 10 - len(msgs)
    assert time.monotonic() - t0 >= 0.8


def test_metadata_ack_kinds_and_double_ack(js):
    _stream(js)
    sub = _pull(js, ack_wait=30, max_deliver=5)
    js.publish("orders.new", b"a")
    msg = sub.fetch(1, timeout=2)[0]
    md = msg.metadata
    assert (md.stream, md.consumer, md.stream_seq, md.consumer_seq, md.num_delivered) == ("ORDERS", "workers", 1, 1, 1)
    assert abs(md.timestamp.timestamp() - time.time()) < 60
    msg.in_progress()
    msg.ack()
    assert msg.is_acked
    with pytest.raises(MessageAlreadyAckedError):
        msg.ack()
    with pytest.raises(MessageAlreadyAckedError):
        msg.nak()
    js.publish("orders.new", b"b")
    m2 = sub.fetch(1, timeout=2)[0]
    m2.ack_sync(timeout=2)
    info = js.consumer_info("ORDERS", "workers")
    assert info.ack_floor.stream_seq == 2 and info.num_ack_pending == 0


def test_redelivery_after_ack_wait_nak_delay_term_and_max_deliver(js):
    _stream(js)
    sub = _pull(js, ack_wait=1.0, max_deliver=2)
    js.publish("orders.new", b"slow")
    first = sub.fetch(1, timeout=2)[0]
    assert first.metadata.num_delivered == 1
    again = sub.fetch(1, timeout=3)  # not acked: redelivered after ack_wait
    assert again and again[0].data == b"slow" and again[0].metadata.num_delivered == 2
    assert sub.fetch(1, timeout=1.6) == []  # longer than ack_wait: max_deliver 2 stops a 3rd

    js.publish("orders.new", b"nak-me")
    m = sub.fetch(1, timeout=2)[0]
    t0 = time.monotonic()
    m.nak(delay=0.4)
    back = sub.fetch(1, timeout=3)[0]
    assert back.data == b"nak-me" and back.metadata.num_delivered == 2
    assert time.monotonic() - t0 >= 0.35  # not before the delay (ack_wait is far longer)
    back.term("bad message")
    assert sub.fetch(1, timeout=1.5) == []  # terminated: no redelivery even after ack_wait
    with pytest.raises(LocalProtocolError):
        back.nak(delay=-1)  # validated before the already-acked check


def test_leftover_messages_are_handed_to_the_next_fetch(js):
    _stream(js)
    sub = _pull(js)
    for i in range(20):
        js.publish("orders.new", b"%d" % i)
    first = sub.fetch(20, timeout=2)
    assert len(first) == 20
    for m in first:
        m.ack()
    assert sub.fetch(1, timeout=0.2) == []


def test_fetch_from_deleted_consumer_raises(js):
    _stream(js)
    sub = _pull(js)
    errors = []

    def fetcher():
        try:
            sub.fetch(1, timeout=5)
        except ConsumerNotFoundError as exc:
            errors.append(exc)

    t = threading.Thread(target=fetcher)
    t.start()
    time.sleep(0.3)
    js.delete_consumer("ORDERS", "workers")
    t.join(10)
    assert errors and isinstance(errors[0], ConsumerNotFoundError)


def test_server_restart_while_publishing_loses_no_acknowledged_message(nats_server):
    conn = connect(nats_server.url, reconnect=ReconnectPolicy(wait=0.05, jitter=0))
    js = JetStream(conn, timeout=2)
    try:
        _stream(js, name="DURABLE", subjects=("durable.>",))
        acked = []
        stop = threading.Event()

        def producer():
            i = 0
            while not stop.is_set():
                try:
                    ack = js.publish("durable.x", b"%d" % i, msg_id=f"id-{i}")
                    acked.append((i, ack.seq))
                    i += 1
                except Exception:
                    time.sleep(0.02)  # retried with the same msg_id: dedup keeps it exactly once

        t = threading.Thread(target=producer)
        t.start()
        time.sleep(0.3)
        nats_server.restart()
        time.sleep(0.5)
        stop.set()
        t.join(10)
        assert len(acked) > 10
        state = js.stream_info("DURABLE").state
        stored = {js.get_msg("DURABLE", seq).data for seq in range(state.first_seq, state.last_seq + 1)}
        missing = [i for i, _ in acked if b"%d" % i not in stored]
        assert not missing
    finally:
        conn.close()


@pytest.mark.slow
def test_r3_stream_survives_loss_of_one_node(nats_cluster):
    conn = connect(nats_cluster.urls, reconnect=ReconnectPolicy(wait=0.05, jitter=0))
    js = JetStream(conn, timeout=5)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _stream(js, name="R3", subjects=("r3.>",), num_replicas=3)
                break
            except JetStreamError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for i in range(50):
            js.publish("r3.x", b"%d" % i)
        nats_cluster.nodes[0].stop()
        deadline = time.monotonic() + 20
        acked = 0
        while acked < 50:
            try:
                js.publish("r3.x", b"after-%d" % acked, msg_id=f"after-{acked}")
                acked += 1
            except (JetStreamError, TimeoutError):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert js.stream_info("R3").state.messages == 100
    finally:
        conn.close()


def test_future_callbacks_run_off_the_reader_thread_and_may_block(js):
    _stream(js, storage="memory")
    seen = []
    done = threading.Event()

    def callback(fut):
        # a callback that itself waits on the connection must not deadlock it
        seen.append((threading.current_thread().name, js.publish("orders.cb", b"nested").seq))
        done.set()

    fut = js.publish_async("nostream.cb", b"first")  # resolves ~0.5 s later (ADR-22 retries)
    assert not fut.done()
    fut.add_done_callback(callback)
    assert done.wait(10)
    name, seq = seen[0]
    assert name.startswith("memphis-sync-events") and seq >= 1
    with pytest.raises(NoStreamResponseError):
        fut.result(timeout=0)
