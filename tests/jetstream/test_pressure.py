"""Many threads on one connection under pressure: a full publish window, a paused server, a
connection that must close, values that mean "no limit". Every wait here is bounded, and a
hang prints every thread's stack (``faulthandler``) instead of stalling the run."""

from __future__ import annotations

import faulthandler
import math
import os
import signal
import threading
import time
from concurrent.futures import Future
from typing import Iterator, List

import pytest

from memphis_sync.errors import LocalProtocolError, MaxBlockTimeout, RequestTimeout
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import Connection, connect
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _stacks_on_hang() -> Iterator[None]:
    faulthandler.dump_traceback_later(50, exit=False)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def conn(nats_server) -> Iterator[Connection]:
    c = connect(nats_server.url)
    try:
        yield c
    finally:
        c.close()


def _stream(js: JetStream, name: str) -> None:
    js.add_stream(None, name=name, subjects=[f"{name.lower()}.>"], storage="memory")


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def paused(nats_server):
    """Pause (SIGSTOP) the server; always resumed at teardown."""
    stopped = []

    def pause() -> None:
        os.kill(nats_server.pid, signal.SIGSTOP)
        stopped.append(True)
        # the signal is asynchronous: wait until the kernel shows the process stopped, so that
        # no publish made after pause() can still be answered
        wait_until(lambda: _proc_state(nats_server.pid) == "T", 5, "nats-server to be stopped")

    def resume() -> None:
        if stopped:
            os.kill(nats_server.pid, signal.SIGCONT)
            stopped.clear()

    yield pause, resume
    resume()


@pytest.mark.parametrize("threads", [4, 16])
def test_many_threads_fill_a_small_window_and_all_finish(conn, threads):
    """Regression: waiters of a full window shared one attribute; the first to leave set it to
    -1 and every other waiter then waited for ever (2 of 4 threads, 3 runs of 3)."""
    js = JetStream(conn, max_pending=8, max_block=20)
    _stream(js, "WINDOW")
    per_thread = 600
    futures: List[List["Future[object]"]] = [[] for _ in range(threads)]
    errors: List[BaseException] = []

    def produce(index: int) -> None:
        try:
            for i in range(per_thread):
                futures[index].append(js.publish_async(f"window.{index}", b"%d" % i, msg_id=f"{index}-{i}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=produce, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(40)
    stuck = [w.name for w in workers if w.is_alive()]
    assert not stuck, f"producer threads stuck: {stuck}"
    assert not errors
    acks = [f.result(timeout=10) for fs in futures for f in fs]
    assert len(acks) == threads * per_thread
    assert len({ack.seq for ack in acks}) == threads * per_thread  # each stored once
    assert js.stream_info("WINDOW").state.messages == threads * per_thread
    assert js.publish_async_pending == 0


def test_full_window_waits_max_block_then_raises_with_nothing_sent(conn, paused):
    pause, resume = paused
    js = JetStream(conn, max_pending=4, max_block=0.5)
    _stream(js, "BLOCKED")
    pause()
    futures = [js.publish_async("blocked.a", b"%d" % i, timeout=30) for i in range(4)]
    start = time.monotonic()
    with pytest.raises(MaxBlockTimeout, match="publish window full.*nothing of this message was sent"):
        js.publish_async("blocked.a", b"late", timeout=30)
    took = time.monotonic() - start
    assert 0.45 <= took < 4.0, took  # max_block 0.5 s, plus scheduling on a loaded machine
    resume()
    assert [f.result(timeout=10).seq for f in futures] == [1, 2, 3, 4]
    assert js.stream_info("BLOCKED").state.messages == 4  # the refused one never went out


def test_several_waiters_of_a_full_window_each_keep_their_own_deadline(conn, paused):
    pause, resume = paused
    js = JetStream(conn, max_pending=4, max_block=0.6)
    _stream(js, "WAITERS")
    pause()
    for i in range(4):
        js.publish_async("waiters.a", b"%d" % i, timeout=30)
    outcomes: List[float] = []

    def waiter() -> None:
        start = time.monotonic()
        try:
            js.publish_async("waiters.a", b"w", timeout=30)
        except MaxBlockTimeout:
            outcomes.append(time.monotonic() - start)

    threads = [threading.Thread(target=waiter) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(outcomes) == 6 and all(0.5 <= took < 4.0 for took in outcomes), outcomes
    resume()
    js.publish_async_complete(timeout=10)
    # after the pause the window works again for every thread
    done = [js.publish_async("waiters.b", b"again") for _ in range(20)]
    assert all(f.result(timeout=10).stream == "WAITERS" for f in done)


def test_waiters_resume_by_themselves_after_a_pause(conn, paused):
    """A broker pause longer than nothing but shorter than max_block: every thread goes on."""
    pause, resume = paused
    js = JetStream(conn, max_pending=16, max_block=20)
    _stream(js, "PAUSE")
    counts = [0] * 8
    stop = threading.Event()

    def produce(index: int) -> None:
        while not stop.is_set():
            js.publish_async(f"pause.{index}", b"x", timeout=30)
            counts[index] += 1

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    pause()
    time.sleep(1.5)
    during = list(counts)
    resume()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(25)
    assert not [t for t in threads if t.is_alive()]
    assert all(after > before for after, before in zip(counts, during)), (during, counts)
    js.publish_async_complete(timeout=20)
    assert js.stream_info("PAUSE").state.messages == sum(counts)


def test_close_is_bounded_when_the_server_is_paused(nats_server, paused):
    pause, _ = paused
    conn = connect(nats_server.url)
    conn.publish("x", b"y")
    conn.flush(timeout=2)
    pause()
    for _ in range(100):
        conn.publish("x", b"y" * 1000)
    start = time.monotonic()
    conn.close(timeout=1.5)
    assert time.monotonic() - start < 2.5
    assert conn.is_closed()


def test_flush_and_request_give_up_at_their_deadline_when_the_server_is_paused(conn, paused):
    pause, _ = paused
    conn.subscribe("svc")
    conn.flush(timeout=2)
    pause()
    start = time.monotonic()
    with pytest.raises(RequestTimeout):
        conn.request("svc", b"?", timeout=0.4)
    assert 0.35 <= time.monotonic() - start < 1.5


@pytest.mark.parametrize("forever", [None, math.inf, 1e12])
def test_no_limit_timeouts_wait_and_succeed(conn, forever):
    """``None``, ``inf`` and huge values mean "no limit": the call waits and succeeds (before,
    ``inf`` published, then raised OverflowError)."""
    js = JetStream(conn)
    _stream(js, "FOREVER")

    def respond(msg):
        conn.publish(msg.reply, b"pong")

    conn.subscribe("ask", callback=respond)
    conn.flush(timeout=forever)
    assert conn.request("ask", b"ping", timeout=forever).payload == b"pong"
    sub = conn.subscribe("later")
    conn.publish("later", b"1")
    assert sub.next_msg(timeout=forever).payload == b"1"
    assert js.publish("forever.a", b"x", timeout=forever if forever is not None else math.inf).seq == 1
    assert js.publish_async("forever.a", b"y", timeout=math.inf).result(timeout=5).seq == 2
    js.publish_async_complete(timeout=forever)


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, "5", True])
def test_bad_timeouts_are_refused_before_anything_is_sent(conn, bad):
    js = JetStream(conn)
    _stream(js, "BADTIME")
    seen = conn.subscribe("badtime.>")
    conn.flush(timeout=2)
    for call in (
        lambda: conn.request("badtime.r", b"x", timeout=bad),
        lambda: js.publish("badtime.p", b"x", timeout=bad),
        lambda: js.publish_async("badtime.a", b"x", timeout=bad),
        lambda: conn.flush(timeout=bad),
    ):
        with pytest.raises(LocalProtocolError, match="timeout"):
            call()
    conn.publish("badtime.control", b"sent after the refused calls")
    conn.flush(timeout=2)
    # the control arrives first: nothing of the refused calls went out before it
    assert seen.next_msg(timeout=2).subject == "badtime.control"
    with pytest.raises(Exception, match="no message"):
        seen.next_msg(timeout=0.2)
    assert js.stream_info("BADTIME").state.messages == 1  # only the control
    assert conn.is_connected()


def test_publish_racing_the_timer_exit_still_times_out(conn):
    """The timer thread exits when nothing is in flight. A publish that inserts its slot after
    the timer's emptiness check, but reads the timer before it is cleared, must still get a
    timer (else its future never resolves). The interleaving is forced: the check itself runs
    the racing publish."""
    js = JetStream(conn)
    conn.subscribe("void")  # takes the request, never answers
    conn.flush(timeout=2)
    raced: List["Future[object]"] = []

    class RacyInflight(dict):
        armed = True

        def __len__(self) -> int:
            real = dict.__len__(self)
            if (self.armed and real == 0
                    and threading.current_thread().name.startswith("memphis-sync-js-timer")):
                self.armed = False  # once: the racing publish below calls len() too
                raced.append(js.publish_async("void", b"late", timeout=0.2))
                return 0  # the timer saw "empty" before the insert
            return real

    js._inflight = RacyInflight()
    first = js.publish_async("void", b"first", timeout=0.1)
    with pytest.raises(RequestTimeout):
        first.result(timeout=5)
    wait_until(lambda: raced, 5, "raced")
    assert raced, "the timer never checked for an empty window"
    with pytest.raises(RequestTimeout):
        raced[0].result(timeout=5)  # resolved by a new timer, not orphaned


def test_threads_sharing_one_producer_flush_waits_for_all(memphis_broker):
    """Several threads share a producer with ``concurrent_task_limit``: its bookkeeping deque
    is trimmed under a lock, so ``flush()`` never forgets a message still in flight."""
    import memphis_sync

    memphis = memphis_sync.connect(**memphis_broker.connect_kwargs(), max_pending_acks=64)
    try:
        memphis.station("shared-producer")
        producer = memphis.producer("shared-producer", "shared")
        futures: List[List[Future]] = [[] for _ in range(8)]

        def run(index: int) -> None:
            for i in range(400):
                futures[index].append(producer.produce(b"%d-%d" % (index, i), nonblocking=True, concurrent_task_limit=20))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        assert not [t for t in threads if t.is_alive()]
        producer.flush(timeout=30)
        flat = [f for fs in futures for f in fs]
        assert all(f.done() for f in flat)
        assert len({f.result().seq for f in flat}) == 3200
        assert producer.pending == 0
    finally:
        memphis.close()


def test_publish_retries_on_no_responders_stay_within_the_timeout(conn):
    """No stream on the subject: every try answers 503; the ADR-22 retries share the call's one
    timeout instead of each getting it in full."""
    from memphis_sync.errors import NoStreamResponseError

    js = JetStream(conn)
    start = time.monotonic()
    with pytest.raises(NoStreamResponseError):
        js.publish("nostream.here", b"x", timeout=0.3)
    assert time.monotonic() - start < 1.0
    # with time to spare, all retries run (two waits of JS_PUB_RETRY_WAIT)
    start = time.monotonic()
    with pytest.raises(NoStreamResponseError):
        js.publish("nostream.here", b"x", timeout=5)
    assert 0.45 <= time.monotonic() - start < 3.0
    assert conn.is_connected()
