"""The blocking Connection against a real nats-server."""

from __future__ import annotations

import socket
import threading
import time
from typing import List

import pytest

from memphis_sync.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MemphisConnectError,
    MemphisError,
    MessageTimeout,
    NoRespondersError,
    OutboundBufferFullError,
    PayloadTooLargeError,
    RequestTimeout,
    SubscriptionClosedError,
)
from memphis_sync.nats.connection import Connection, ConnectionStatus, ReconnectPolicy, connect
from memphis_sync.nats.protocol.headers import Headers
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

FAST = ReconnectPolicy(wait=0.05, jitter=0.0, max_attempts=-1)


@pytest.fixture
def unused_port():
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def conn(nats_server):
    c = connect(nats_server.url, name="test")
    yield c
    c.close()


def test_pub_sub_roundtrip(conn):
    sub = conn.subscribe("greet.*")
    conn.publish("greet.joe", b"hello")
    conn.publish("greet.ann", b"")
    m1 = sub.next_msg(timeout=2)
    m2 = sub.next_msg(timeout=2)
    assert (m1.subject, m1.payload) == ("greet.joe", b"hello")
    assert (m2.subject, m2.payload) == ("greet.ann", b"")
    with pytest.raises(MessageTimeout):
        sub.next_msg(timeout=0.05)
    assert "CONNECTED" in repr(conn) and "subs=" in repr(conn)


def test_payload_with_crlf_and_binary(conn):
    sub = conn.subscribe("bin")
    payload = bytes(range(256)) * 4 + b"\r\nPUB evil 1\r\nx\r\n"
    conn.publish("bin", payload)
    assert sub.next_msg(timeout=2).payload == payload


def test_headers_roundtrip(conn):
    sub = conn.subscribe("hdr")
    h = Headers()
    h.add("X-Multi", "one")
    h.add("X-Multi", "two")
    h["Unicode"] = "żółw ✓"
    h["Colon"] = "a:b:c"
    conn.publish("hdr", b"body", headers=h)
    conn.publish("hdr", b"plain", headers={"k": "v"})
    msg = sub.next_msg(timeout=2)
    assert msg.payload == b"body"
    assert msg.headers.get_all("X-Multi") == ["one", "two"]
    assert msg.headers["Unicode"] == "żółw ✓"
    assert msg.headers["Colon"] == "a:b:c"
    assert sub.next_msg(timeout=2).headers["k"] == "v"


def test_queue_group_shares_work(conn):
    a = conn.subscribe("work", queue="q")
    b = conn.subscribe("work", queue="q")
    other = connect(conn.connected_url)
    try:
        for i in range(200):
            other.publish("work", str(i).encode())
        other.flush()
        conn.flush()
        wait_until(lambda: not (a.pending_msgs + b.pending_msgs < 200), 5, "not (a.pending_msgs + b.pending_msgs < 200)")
        assert a.pending_msgs + b.pending_msgs == 200
        assert a.pending_msgs > 0 and b.pending_msgs > 0
    finally:
        other.close()


def test_callback_subscription_runs_off_reader_thread(conn):
    seen: List[str] = []
    done = threading.Event()

    def cb(msg):
        seen.append(threading.current_thread().name)
        if len(seen) == 3:
            done.set()

    sub = conn.subscribe("cb", callback=cb)
    for _ in range(3):
        conn.publish("cb", b"x")
    assert done.wait(2)
    assert all(name.startswith("memphis-sync-sub-") for name in seen)
    with pytest.raises(SubscriptionClosedError):
        sub.next_msg(timeout=0.1)
    sub.unsubscribe()


def test_auto_unsubscribe_after_n(conn):
    sub = conn.subscribe("auto", max_msgs=3)
    for i in range(10):
        conn.publish("auto", str(i).encode())
    got = [m.payload for m in sub]  # iteration ends when the limit is reached
    assert got == [b"0", b"1", b"2"]
    sub2 = conn.subscribe("auto2")
    sub2.unsubscribe(max_msgs=2)
    for i in range(5):
        conn.publish("auto2", b"x")
    assert len(list(sub2)) == 2


def test_unsubscribe_stops_delivery(conn):
    sub = conn.subscribe("u")
    sub.unsubscribe()
    conn.publish("u", b"x")
    conn.flush()
    with pytest.raises(SubscriptionClosedError):
        sub.next_msg(timeout=0.2)


def test_request_reply_and_concurrency(conn):
    def responder(msg):
        conn.publish(msg.reply, b"re:" + msg.payload)

    conn.subscribe("svc", callback=responder)
    conn.flush()
    assert conn.request("svc", b"ping", timeout=2).payload == b"re:ping"

    results = {}

    def worker(n):
        for i in range(50):
            key = f"{n}-{i}".encode()
            results[key] = conn.request("svc", key, timeout=5).payload

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 400
    assert all(v == b"re:" + k for k, v in results.items())


def test_no_responders(conn):
    t0 = time.monotonic()
    with pytest.raises(NoRespondersError) as info:
        conn.request("nobody.home", b"?", timeout=5)
    assert time.monotonic() - t0 < 2  # answered by the server, not by our timeout
    assert "nobody.home" in str(info.value)


def test_request_timeout(conn):
    conn.subscribe("silent")  # a responder that never answers
    conn.flush()
    with pytest.raises(RequestTimeout):
        conn.request("silent", b"", timeout=0.2)
    # a timeout is also a builtin TimeoutError
    with pytest.raises(TimeoutError):
        conn.request("silent", b"", timeout=0.05)


@pytest.mark.parametrize(
    "subject",
    ["", "a b", "a\tb", "a\r\nPUB evil 1", "bad\n", "a..b", ".a", "a.", "wild.*", "wild.>", "nul\x00"],
)
def test_subject_injection_is_refused_and_connection_survives(conn, subject):
    spy = conn.subscribe(">")
    with pytest.raises(LocalProtocolError):
        conn.publish(subject, b"x")
    with pytest.raises(LocalProtocolError):
        conn.request(subject, b"x", timeout=0.5)
    with pytest.raises(LocalProtocolError):
        conn.publish("ok", b"x", reply=subject or " ")
    with pytest.raises(LocalProtocolError):
        conn.publish("ok", b"x", headers={"X": "a\r\nInjected: 1"})
    with pytest.raises(LocalProtocolError):
        conn.subscribe("ok", queue="q 1")
    conn.publish("still.ok", b"fine")
    conn.flush()
    msg = spy.next_msg(timeout=2)
    assert (msg.subject, msg.payload) == ("still.ok", b"fine")
    with pytest.raises(MessageTimeout):
        spy.next_msg(timeout=0.1)
    assert conn.is_connected()


def test_max_payload_enforced_before_sending(nats_server_factory):
    server = nats_server_factory(max_payload=4096)
    with connect(server.url) as c:
        assert c.max_payload == 4096
        sub = c.subscribe("big")
        c.publish("big", b"x" * 4096)
        with pytest.raises(PayloadTooLargeError) as info:
            c.publish("big", b"x" * 4097)
        assert info.value.size == 4097 and info.value.max_payload == 4096
        with pytest.raises(PayloadTooLargeError):
            c.publish("big", b"x" * 4090, headers={"H": "v" * 100})
        c.flush()
        assert len(sub.next_msg(timeout=2).payload) == 4096
        assert c.is_connected()


def test_threads_publish_concurrently_without_interleaving(conn):
    n_threads, per_thread = 32, 500
    sub = conn.subscribe("conc.>")
    barrier = threading.Barrier(n_threads)

    def worker(n):
        barrier.wait()
        for i in range(per_thread):
            if i % 3 == 0:
                conn.publish(f"conc.{n}", f"{n}:{i}".encode() * 7, headers={"seq": str(i)})
            else:
                conn.publish(f"conc.{n}", f"{n}:{i}".encode() * 7)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.flush()
    seen = {n: [] for n in range(n_threads)}
    for _ in range(n_threads * per_thread):
        msg = sub.next_msg(timeout=5)
        n = int(msg.subject.split(".")[1])
        text = msg.payload.decode()
        first = text[: len(text) // 7]
        assert text == first * 7
        tn, ti = first.split(":")
        assert int(tn) == n
        if int(ti) % 3 == 0:
            assert msg.headers["seq"] == ti
        seen[n].append(int(ti))
    assert all(seen[n] == list(range(per_thread)) for n in range(n_threads))


def test_server_restart_resubscribes_and_delivers_buffered(nats_server):
    events = []
    c = connect(
        nats_server.url,
        reconnect=FAST,
        on_disconnected=lambda conn: events.append("disconnected"),
        on_reconnected=lambda conn: events.append("reconnected"),
    )
    try:
        sub = c.subscribe("resume")
        c.publish("resume", b"before")
        assert sub.next_msg(timeout=2).payload == b"before"
        nats_server.stop()
        wait_until(lambda: not (c.is_connected()), 5, "not (c.is_connected())")
        assert c.status is ConnectionStatus.RECONNECTING
        for i in range(5):
            c.publish("resume", f"buffered-{i}".encode())
        nats_server.start()
        got = [sub.next_msg(timeout=10).payload for _ in range(5)]
        assert got == [f"buffered-{i}".encode() for i in range(5)]
        c.publish("resume", b"after")
        assert sub.next_msg(timeout=2).payload == b"after"
        wait_until(lambda: not (events.count("reconnected") < 1), 2, "not (events.count('reconnected') < 1)")
        assert events[:2] == ["disconnected", "reconnected"]
        assert c.stats["reconnects"] == 1
    finally:
        c.close()


def test_reconnect_buffer_limit_is_a_clear_error(nats_server):
    c = connect(nats_server.url, reconnect=FAST, reconnect_buffer_size=1000)
    try:
        nats_server.stop()
        wait_until(lambda: not (c.is_connected()), 5, "not (c.is_connected())")
        c.publish("x", b"a" * 500)
        with pytest.raises(OutboundBufferFullError) as info:
            c.publish("x", b"a" * 600)
        assert info.value.limit == 1000
    finally:
        c.close()


def test_gives_up_after_max_reconnect_and_closes(nats_server):
    closed = threading.Event()
    c = connect(
        nats_server.url,
        reconnect=ReconnectPolicy(wait=0.01, jitter=0, max_attempts=3),
        on_closed=lambda conn: closed.set(),
    )
    nats_server.stop()
    assert closed.wait(10)
    assert c.is_closed()
    with pytest.raises(ConnectionClosedError):
        c.publish("x", b"")
    c.close()


def test_reconnect_logs_name_the_attempt_the_server_and_the_wait(nats_server_factory, caplog):
    server = nats_server_factory(token="S3CRET")
    closed = threading.Event()
    caplog.set_level("WARNING", logger="memphis_sync.connection")
    c = connect(f"nats://S3CRET@127.0.0.1:{server.port}", reconnect=ReconnectPolicy(wait=0.05, jitter=0, max_attempts=3),
                on_closed=lambda conn: closed.set())
    server.stop()
    assert closed.wait(10)
    lines = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(lines) == 2, lines  # attempts 1 and 2 are followed by a wait; the 3rd ends it
    assert lines[0].startswith("reconnect attempt 1 failed: ")
    assert f"; next attempt to nats://***@127.0.0.1:{server.port} in 0.05 s" in lines[0]
    assert lines[1].startswith("reconnect attempt 2 failed: ")
    assert not any("Retrying" in r.getMessage() or "S3CRET" in r.getMessage() for r in caplog.records)
    c.close()


def test_reconnect_disabled_closes_on_disconnect(nats_server):
    c = connect(nats_server.url, reconnect=ReconnectPolicy(enabled=False))
    sub = c.subscribe("x")
    nats_server.stop()
    with pytest.raises(SubscriptionClosedError):
        sub.next_msg(timeout=5)
    assert c.is_closed()


def test_connect_failure_is_quick_and_clear(unused_port):
    t0 = time.monotonic()
    with pytest.raises(MemphisConnectError):
        connect(f"nats://127.0.0.1:{unused_port}")
    assert time.monotonic() - t0 < 2


def test_close_wakes_blocked_next_msg_and_is_idempotent(nats_server):
    c = connect(nats_server.url)
    sub = c.subscribe("never")
    errors = []

    def waiter():
        try:
            sub.next_msg(timeout=None)
        except MemphisError as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    c.close()
    c.close()
    t.join(2)
    assert not t.is_alive()
    assert isinstance(errors[0], SubscriptionClosedError)
    with pytest.raises(ConnectionClosedError):
        c.request("x", b"", timeout=1)


def test_drain_processes_pending_callbacks(nats_server):
    c = connect(nats_server.url)
    processed = []

    def slow(msg):
        time.sleep(0.002)
        processed.append(msg.payload)

    c.subscribe("d", callback=slow)
    for i in range(100):
        c.publish("d", str(i).encode())
    c.flush()
    c.drain(timeout=10)
    assert len(processed) == 100
    assert c.is_closed()


def test_flush_and_context_manager(nats_server):
    with Connection(nats_server.url) as c:
        c.flush(timeout=2)
        assert c.is_connected()
    assert c.is_closed()


def test_silent_server_times_out_and_next_server_is_tried(nats_server):
    # a listener that accepts TCP but never says INFO (a hung server) comes first in the pool
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        with connect([f"nats://127.0.0.1:{port}", nats_server.url], connect_timeout=0.3) as c:
            assert c.connected_url.endswith(f":{nats_server.port}")
        assert time.monotonic() - t0 < 3
        with pytest.raises(MemphisError):
            connect(f"nats://127.0.0.1:{port}", connect_timeout=0.2)
