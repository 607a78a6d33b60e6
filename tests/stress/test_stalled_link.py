"""A link that stops taking bytes while data is queued: every call stays within its bound.

The report: one thread produced 256 KiB nonblocking messages, another ``produce(b"x",
ack_wait_sec=3)``; the link went silent (no FIN, no RST) and the blocking produce did not return
for minutes. A writer blocked in ``sendall`` on a full socket held the connection's send lock for
up to the 60 s socket deadline, ``request()``/``flush()`` waited for that lock without a deadline,
and the liveness PING went through the same path, so the stale link was found after ~125 s
instead of ~1.5 s (183 s with this module's workload on commit e2912cd, three 60 s write
deadlines in a row); ``close()`` hung as well.

The tests put a :class:`~proxy.StallProxy` between the client and a real server, publish large
messages from several threads, stall the proxy and check, at the NATS layer (core and JetStream)
and at the Memphis layer:

* every call that takes a deadline returns or raises within it, plus ``SLACK``;
* publishes without a deadline return by the time the stale link is detected;
* the stale link is detected within ``(max_pings_outstanding + 1) * ping_interval + SLACK``;
* ``close()`` returns within its bound while the link is stalled;
* after ``resume()`` the client reconnects through the proxy, and every message whose publish
  was acknowledged (plus every other one, re-published with the same msg-id after the
  reconnect) is stored exactly once.

Every measured call runs on a helper thread, so a hang shows as a failed assertion that names
the call, not as a test timeout; a fixture arms ``faulthandler`` to print every thread's stack
shortly before the pytest-timeout limit in case something else hangs. Teardown closes the proxy
first (which resets the client's sockets and unblocks any stuck writer), then the clients.
Run with ``-s`` to see the measured timeline.
"""

from __future__ import annotations

import faulthandler
import itertools
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import attrs
import pytest
from proxy import StallProxy

import memphis_sync
from memphis_sync import ReconnectPolicy, _defaults, nats_connect
from memphis_sync.errors import ConnectionClosedError, MemphisError
from memphis_sync.jetstream import JetStream
from memphis_sync.jetstream.types import AckPolicy, ConsumerConfig, StreamConfig

#: Seconds pytest-timeout gives one test; faulthandler prints every stack ``DUMP_MARGIN`` before.
TEST_TIMEOUT = 120
DUMP_MARGIN = 10

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT)]

#: Liveness settings of every client under test (seconds).
PING_INTERVAL = 0.5
MAX_PINGS_OUTSTANDING = 2
#: The stale link must be noticed within this many seconds of the stall (plus ``SLACK``).
STALE_BOUND = (MAX_PINGS_OUTSTANDING + 1) * PING_INTERVAL
#: Scheduling allowance on top of every bound (a 2-CPU box moving 256 KiB frames).
SLACK = 1.0
#: Deadlines of the probing calls.
REQUEST_TIMEOUT = 2.0
FLUSH_TIMEOUT = 2.0
JS_PUBLISH_TIMEOUT = 3.0
ACK_WAIT_SEC = 3
#: ``Connection.close()`` returns within its default ``timeout`` (``_defaults.CLOSE_TIMEOUT``).
CLOSE_BOUND = _defaults.CLOSE_TIMEOUT
#: ``Memphis.close()``: its default ``timeout``: up to ``MEMPHIS_CLOSE_ACK_WAIT`` for nonblocking
#: acks, then the connection's close.
MEMPHIS_CLOSE_BOUND = _defaults.MEMPHIS_CLOSE_ACK_WAIT + _defaults.CLOSE_TIMEOUT
#: After ``resume()``: a connect attempt in flight times out (``CONNECT_TIMEOUT``), the next one
#: succeeds.
CONNECT_TIMEOUT = 1.0
RECONNECT_WAIT = 0.1
RECONNECT_BOUND = 2 * CONNECT_TIMEOUT + RECONNECT_WAIT + 2 * SLACK
#: Seconds the link stays stalled after the stale link was detected (reconnect attempts fail).
STALL_AFTER_DETECTION = 1.5

BIG = 256 * 1024
#: Pause of a publisher between two large messages (keeps a 2-CPU box responsive).
PUBLISH_PAUSE = 0.02
PUBLISHERS = 2


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _dump_stacks_before_timeout() -> Iterator[None]:
    """If the test hangs, print every thread's stack before pytest-timeout kills it."""
    faulthandler.dump_traceback_later(TEST_TIMEOUT - DUMP_MARGIN, exit=False, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@attrs.define
class Call:
    """One measured call: what, when it started (seconds after the stall, negative before),
    how long it took (None: still blocked when we stopped waiting) and how it ended."""

    what: str
    started: float
    duration: Optional[float]
    outcome: str
    bound: Optional[float] = None  # seconds; None = not judged

    def over(self) -> bool:
        """Took longer than its bound plus ``SLACK`` (or never returned)."""
        return self.bound is not None and (self.duration is None or self.duration > self.bound + SLACK)

    def __str__(self) -> str:
        took = "still blocked" if self.duration is None else f"{self.duration:.3f} s"
        return f"{self.what} started at {self.started:+.3f} s, took {took}, bound {self.bound} s + {SLACK} s: {self.outcome}"


class Harness:
    """The threads, clients and proxy of one test, and the timeline of what happened.

    ``close()`` stops everything in a safe order: stop flag, proxy (unblocks stuck writers),
    clients (each close bounded), then joins every thread.
    """

    def __init__(self, proxy: StallProxy) -> None:
        self.proxy = proxy
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.stalled_at: Optional[float] = None
        self.resumed_at: Optional[float] = None
        self.calls: List[Call] = []
        self.events: List[Tuple[float, str]] = []
        self.inflight: Dict[str, Tuple[str, float, Optional[float]]] = {}  # thread -> (what, start, bound)
        self._threads: List[threading.Thread] = []
        self._closers: List[Tuple[str, Callable[[], Any]]] = []
        self._lock = threading.Lock()

    def rel(self, t: float) -> float:
        """``t`` in seconds after the stall (after the harness start before a stall)."""
        return t - (self.stalled_at if self.stalled_at is not None else self.t0)

    def note(self, text: str, at: Optional[float] = None) -> None:
        at = time.monotonic() if at is None else at
        with self._lock:
            self.events.append((at, text))

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def begin(self, what: str, bound: Optional[float]) -> float:
        """Mark a call of the current thread as started (shown by ``summary()`` while blocked)."""
        start = time.monotonic()
        self.inflight[threading.current_thread().name] = (what, start, bound)
        return start

    def end(self, start: float, outcome: str) -> None:
        what, _, bound = self.inflight.pop(threading.current_thread().name)
        self.record(Call(what, self.rel(start), time.monotonic() - start, outcome, bound))

    def blocked(self) -> List[Call]:
        """Calls begun and not ended, as calls still blocked (duration None)."""
        return [Call(what, self.rel(start), None, f"blocked for {time.monotonic() - start:.3f} s so far", bound)
                for what, start, bound in list(self.inflight.values())]

    def spawn(self, name: str, target: Callable[..., Any], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"stress-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def on_close(self, what: str, closer: Callable[[], Any]) -> None:
        self._closers.append((what, closer))

    def stall(self) -> None:
        self.stalled_at = time.monotonic()
        self.proxy.stall()
        self.note("proxy stalled")

    def resume(self) -> None:
        self.resumed_at = time.monotonic()
        self.proxy.resume()
        self.note("proxy resumed")

    def timed(self, what: str, fn: Callable[[], Any], bound: Optional[float], wait: Optional[float] = None) -> Tuple[Call, Any]:
        """Run ``fn`` on a helper thread; wait at most ``wait`` (default ``bound + SLACK``)."""
        box: Dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:  # recorded, judged by the caller
                box["error"] = exc
            box["end"] = time.monotonic()

        start = time.monotonic()
        thread = self.spawn(f"call-{what}", run)
        thread.join(wait if wait is not None else (bound or 0) + SLACK)
        if thread.is_alive():
            call = Call(what, self.rel(start), None, "did not return", bound)
        else:
            error = box.get("error")
            outcome = "ok" if error is None else f"{type(error).__name__}: {error}"
            call = Call(what, self.rel(start), box["end"] - start, outcome, bound)
        self.record(call)
        return call, box.get("result")

    def summary(self) -> str:
        lines = [f"timeline (seconds after the stall), proxy accepted {self.proxy.accepted} connection(s):"]
        for at, text in sorted(self.events):
            lines.append(f"  {self.rel(at):+8.3f}  {text}")
        by_kind: Dict[str, List[Call]] = {}
        for call in self.calls + self.blocked():
            by_kind.setdefault(call.what.split("#")[0], []).append(call)
        for what, calls in sorted(by_kind.items()):
            done = [c.duration for c in calls if c.duration is not None]
            blocked = sum(1 for c in calls if c.duration is None)
            errors = sorted({c.outcome.split(":")[0] for c in calls if c.outcome != "ok"})
            worst = f"{max(done):.3f} s" if done else "-"
            lines.append(f"  {what}: {len(calls)} call(s), longest {worst}, still blocked {blocked}, outcomes {errors or ['ok']}")
        return "\n".join(lines)

    def close(self) -> List[str]:
        problems: List[str] = []
        self.stop.set()
        self.proxy.close()
        for what, closer in reversed(self._closers):
            call, _ = self.timed(f"teardown {what}", closer, None, wait=10.0)
            if call.duration is None:
                problems.append(f"teardown: {what} did not return in 10 s even with the proxy closed")
        for thread in self._threads:
            thread.join(10.0)
            if thread.is_alive():
                problems.append(f"teardown: thread {thread.name} still running 10 s after the proxy closed")
        leftover = self.proxy.threads_alive()
        if leftover:
            problems.append(f"teardown: proxy threads still running: {leftover}")
        return problems


@pytest.fixture
def harness_factory() -> Iterator[Callable[[int], Harness]]:
    """``factory(server_port)`` → a :class:`Harness` with a proxy in front of that port."""
    made: List[Harness] = []

    def factory(port: int) -> Harness:
        harness = Harness(StallProxy(port))
        made.append(harness)
        return harness

    yield factory
    problems: List[str] = []
    for harness in made:
        problems += harness.close()
        print(harness.summary())
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def _wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _watch_status(h: Harness, is_connected: Callable[[], bool], name: str) -> Dict[str, float]:
    """Record (in the returned dict) when the client first stops being connected after the
    stall, and when it is connected again after that."""
    seen: Dict[str, float] = {}

    def watch() -> None:
        while not h.stop.is_set():
            now = time.monotonic()
            connected = is_connected()
            if h.stalled_at is not None and "lost" not in seen and not connected:
                seen["lost"] = now
                h.note(f"{name}: status left CONNECTED", now)
            elif "lost" in seen and "back" not in seen and connected:
                seen["back"] = now
                h.note(f"{name}: connected again", now)
            time.sleep(0.005)

    h.spawn(f"watch-{name}", watch)
    return seen


def _probe(h: Harness, kind: str, call: Callable[[int], Any], bound: float, tag: str = "") -> threading.Thread:
    """Start a thread calling ``call(i)`` for i = 0, 1, ... until the harness stops, each call
    timed against ``bound`` and recorded as ``<kind>#<tag><i>``; returns the thread."""

    def loop() -> None:
        for i in itertools.count():
            if h.stop.is_set():
                return
            h.timed(f"{kind}#{tag}{i}", lambda: call(i), bound)
            h.stop.wait(0.05)

    return h.spawn(f"prober-{kind}{tag}", loop)


def _assert_calls_bounded(h: Harness, kinds: Tuple[str, ...]) -> None:
    calls = [c for c in h.calls + h.blocked() if c.what.split("#")[0] in kinds]
    late = [str(c) for c in calls if c.over()]
    assert not late, f"{len(late)} call(s) overran their bound:\n  " + "\n  ".join(late[:15]) + "\n" + h.summary()


#: Seconds after the stall by which the client's socket buffer is surely full (the publishers
#: fill its few MiB within a few tens of milliseconds).
FULL_AFTER = 0.2


def _assert_probed_during_stall(h: Harness, kinds: Tuple[str, ...], detected: float) -> None:
    """At least one call of each kind started between ``FULL_AFTER`` after the stall and the
    detection: the window where writers are stuck on the full socket."""
    assert h.stalled_at is not None
    for kind in kinds:
        window = [c for c in h.calls if c.what.split("#")[0] == kind and FULL_AFTER <= c.started < h.rel(detected)]
        assert window, f"no {kind} call started between +{FULL_AFTER} s and the detection\n{h.summary()}"


def _start_probes_in_stall(h: Harness, probes: Dict[str, Tuple[Callable[[int], Any], float]]) -> None:
    """Stall the proxy and probe each kind from two threads: one from the stall on, one from
    ``FULL_AFTER`` seconds later (when the socket buffer is full and writers are stuck)."""
    h.stall()
    for kind, (call, bound) in probes.items():
        _probe(h, kind, call, bound, "s")
    time.sleep(FULL_AFTER + 0.05)
    for kind, (call, bound) in probes.items():
        _probe(h, kind, call, bound, "f")


# -- the proxy itself -------------------------------------------------------------------------


@pytest.fixture
def sink_server() -> Iterator[Tuple[int, List[bytes]]]:
    """A TCP server on a free port that echoes every byte back; yields (port, received chunks)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    received: List[bytes] = []
    stop = threading.Event()
    conns: List[socket.socket] = []
    threads: List[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        conn.settimeout(0.1)
        while not stop.is_set():
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                conn.close()
                return
            received.append(data)
            try:
                conn.sendall(data)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conns.append(conn)
            thread = threading.Thread(target=serve, args=(conn,), name="stress-echo", daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, name="stress-echo-accept", daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        stop.set()
        acceptor.join(5)
        for thread in threads:
            thread.join(5)
        for conn in conns:
            conn.close()
        listener.close()


def _read_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            break
        out += data
    return out


def test_proxy_forwards_both_ways_and_serves_several_connections(sink_server):
    port, _ = sink_server
    with StallProxy(port) as proxy:
        clients = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(3)]
        try:
            for i, client in enumerate(clients):
                payload = bytes([i]) * 200_000
                client.sendall(payload)
                assert _read_exactly(client, len(payload)) == payload
            assert proxy.accepted == 3
            assert _wait_for(lambda: proxy.open_connections == 3, 2)
        finally:
            for client in clients:
                client.close()
        assert _wait_for(lambda: proxy.open_connections == 0, 2)
    assert proxy.threads_alive() == []


def test_proxy_stall_blocks_the_writer_and_resume_delivers_everything_in_order(sink_server):
    port, received = sink_server
    with StallProxy(port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        try:
            client.sendall(b"hello")
            assert _read_exactly(client, 5) == b"hello"
            proxy.stall()
            before = sum(map(len, received))
            # write until the kernel buffers are full: a send times out instead of progressing
            client.settimeout(0.3)
            chunk = bytes(range(256)) * 256
            sent = 0
            started = time.monotonic()
            blocked = False
            while time.monotonic() - started < 10:
                try:
                    sent += client.send(chunk[sent % len(chunk):] or chunk)
                except socket.timeout:
                    blocked = True
                    break
            assert blocked, f"the writer never blocked after {sent} bytes"
            time.sleep(0.2)
            assert sum(map(len, received)) == before, "the stalled proxy forwarded bytes"
            print(f"stalled proxy: the writer blocked after {sent} bytes in {time.monotonic() - started:.3f} s")
            proxy.resume()
            # the echo comes back through the resumed proxy, in order
            expected = (chunk * (sent // len(chunk) + 2))[:sent]
            assert _read_exactly(client, sent, timeout=10) == expected
        finally:
            client.close()
    assert proxy.threads_alive() == []


def test_proxy_cut_closes_connections_and_accepts_new_ones(sink_server):
    port, _ = sink_server
    with StallProxy(port) as proxy:
        first = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        try:
            first.sendall(b"a")
            assert _read_exactly(first, 1) == b"a"
            proxy.stall()
            proxy.cut()
            first.settimeout(2)
            try:
                assert first.recv(10) == b""
            except ConnectionResetError:
                pass
            proxy.resume()
            second = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            try:
                second.sendall(b"b")
                assert _read_exactly(second, 1) == b"b"
            finally:
                second.close()
            assert proxy.accepted == 2
        finally:
            first.close()
        # close() is bounded even with a connection stalled mid-stream
        third = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        proxy.stall()
        third.sendall(b"x" * 100_000)
        started = time.monotonic()
        proxy.close()
        assert time.monotonic() - started < 2
        third.close()
    assert proxy.threads_alive() == []


# -- NATS layer: core publish, request and flush ----------------------------------------------


def _core_publisher(h: Harness, conn: memphis_sync.Connection, index: int, bound: Optional[float]) -> None:
    payload = b"%d" % index * BIG
    while not h.stop.is_set():
        start = h.begin(f"publish#{index}", bound)
        try:
            conn.publish(f"big.{index}", payload)
        except ConnectionClosedError as exc:
            h.end(start, f"ConnectionClosedError: {exc}")
            return
        except MemphisError as exc:  # e.g. OutboundBufferFullError while reconnecting
            h.end(start, f"{type(exc).__name__}: {exc}")
            h.stop.wait(0.01)
            continue
        h.end(start, "ok")
        h.stop.wait(PUBLISH_PAUSE)


def _responder(url: str) -> memphis_sync.Connection:
    """A direct (not proxied) connection that answers requests on ``svc``."""
    conn = nats_connect(url)
    conn.subscribe("svc", callback=lambda msg: conn.publish(msg.reply, b"pong:" + msg.payload))
    conn.flush(timeout=5)
    return conn


def _nats_client(h: Harness, name: str, **options: Any) -> Tuple[memphis_sync.Connection, Dict[str, float]]:
    callbacks: Dict[str, float] = {}

    def on_disconnected(conn: memphis_sync.Connection) -> None:
        now = time.monotonic()
        if h.stalled_at is not None:
            callbacks.setdefault("disconnected", now)
        h.note(f"{name}: on_disconnected", now)

    def on_reconnected(conn: memphis_sync.Connection) -> None:
        now = time.monotonic()
        callbacks.setdefault("reconnected", now)
        h.note(f"{name}: on_reconnected", now)

    conn = nats_connect(
        h.proxy.url,
        ping_interval=PING_INTERVAL,
        max_pings_outstanding=MAX_PINGS_OUTSTANDING,
        connect_timeout=CONNECT_TIMEOUT,
        reconnect=ReconnectPolicy(wait=RECONNECT_WAIT, jitter=0, max_attempts=-1),
        on_disconnected=on_disconnected,
        on_reconnected=on_reconnected,
        **options,
    )
    h.on_close(name, conn.close)
    return conn, callbacks


def _wait_until_flowing(h: Harness, kind: str, count: int, timeout: float = 10.0) -> None:
    ok = _wait_for(lambda: sum(1 for c in h.calls if c.what.startswith(kind) and c.outcome == "ok") >= count, timeout)
    assert ok, f"fewer than {count} successful {kind} calls before the stall\n{h.summary()}"


def _assert_detected(h: Harness, seen: Dict[str, float], callbacks: Optional[Dict[str, float]], what: str) -> float:
    """The stale link was noticed within the ping bound; returns when."""
    bound = STALE_BOUND + SLACK
    assert h.stalled_at is not None
    _wait_for(lambda: "lost" in seen, bound + 0.2)
    assert "lost" in seen, f"{what}: still CONNECTED {bound} s after the link stalled\n{h.summary()}"
    took = seen["lost"] - h.stalled_at
    assert took <= bound, f"{what}: stale link detected after {took:.3f} s (bound {bound} s)\n{h.summary()}"
    if callbacks is not None:
        _wait_for(lambda: "disconnected" in callbacks, SLACK)
        assert "disconnected" in callbacks, f"{what}: on_disconnected did not fire\n{h.summary()}"
        took_cb = callbacks["disconnected"] - h.stalled_at
        assert took_cb <= bound, f"{what}: on_disconnected after {took_cb:.3f} s (bound {bound} s)\n{h.summary()}"
    return seen["lost"]


def test_core_request_flush_and_publish_are_bounded_while_the_link_stalls(nats_server, harness_factory):
    h = harness_factory(nats_server.port)
    responder = _responder(nats_server.url)
    h.on_close("responder", responder.close)
    conn, callbacks = _nats_client(h, "client")
    seen = _watch_status(h, conn.is_connected, "client")
    assert conn.request("svc", b"warm-up", timeout=5).payload == b"pong:warm-up"
    publish_bound = STALE_BOUND + 2 * SLACK
    for i in range(PUBLISHERS):
        h.spawn(f"publisher-{i}", _core_publisher, h, conn, i, publish_bound)
    _wait_until_flowing(h, "publish", 10)

    _start_probes_in_stall(h, {
        "request": (lambda i: conn.request("svc", b"%d" % i, timeout=REQUEST_TIMEOUT), REQUEST_TIMEOUT),
        "flush": (lambda i: conn.flush(timeout=FLUSH_TIMEOUT), FLUSH_TIMEOUT),
    })
    detected = _assert_detected(h, seen, callbacks, "core client")
    time.sleep(STALL_AFTER_DETECTION)  # reconnect attempts through the stalled proxy time out
    h.resume()
    assert _wait_for(lambda: "back" in seen, RECONNECT_BOUND), f"no reconnect within {RECONNECT_BOUND} s\n{h.summary()}"
    time.sleep(0.5)  # let the publishers and the prober run on the new connection
    call, reply = h.timed("request-after", lambda: conn.request("svc", b"after", timeout=5), 5.0)
    assert call.outcome == "ok" and reply.payload == b"pong:after", f"{call}\n{h.summary()}"
    h.stop.set()
    _assert_probed_during_stall(h, ("request", "flush"), detected)
    _assert_calls_bounded(h, ("request", "flush", "publish"))
    call, _ = h.timed("close", conn.close, CLOSE_BOUND)
    assert not call.over(), f"{call}\n{h.summary()}"
    assert conn.is_closed()


def test_core_close_is_bounded_while_writers_are_stuck_on_the_stalled_link(nats_server, harness_factory):
    h = harness_factory(nats_server.port)
    responder = _responder(nats_server.url)
    h.on_close("responder", responder.close)
    conn, _ = _nats_client(h, "client")
    for i in range(PUBLISHERS):
        h.spawn(f"publisher-{i}", _core_publisher, h, conn, i, None)
    _wait_until_flowing(h, "publish", 10)
    h.stall()
    # a request and a flush are waiting too when close() comes, before the stale-link check
    h.spawn("request", lambda: h.timed("request", lambda: conn.request("svc", b"r", timeout=30), None, wait=40))
    h.spawn("flush", lambda: h.timed("flush", lambda: conn.flush(timeout=30), None, wait=40))
    time.sleep(0.3)
    call, _ = h.timed("close", conn.close, CLOSE_BOUND)
    h.note(str(call))
    assert not call.over(), f"close() while stalled: {call}\n{h.summary()}"
    assert conn.is_closed()
    # everything that was waiting on the connection is released by the close
    assert _wait_for(lambda: sum(1 for c in h.calls if c.what in ("request", "flush")) == 2, SLACK), (
        f"request()/flush() still blocked {SLACK} s after close() returned\n{h.summary()}"
    )
    h.stop.set()
    publishers = [t for t in threading.enumerate() if t.name.startswith("stress-publisher")]
    for thread in publishers:
        thread.join(SLACK)
    assert not [t.name for t in publishers if t.is_alive()], f"publish() still blocked after close()\n{h.summary()}"


# -- NATS layer: JetStream publish and publish_async, stored exactly once ---------------------


@attrs.define
class Ledger:
    """Every message id a test tried to publish, and the acks it got."""

    attempted: Dict[str, str] = attrs.Factory(dict)  # msg id -> subject
    acked: Dict[str, int] = attrs.Factory(dict)  # msg id -> PubAck.seq
    futures: Dict[str, Tuple[float, "Future[Any]"]] = attrs.Factory(dict)  # msg id -> (start, future)
    resolved: Dict[str, float] = attrs.Factory(dict)  # msg id -> when its future resolved
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def attempt(self, msg_id: str, subject: str) -> None:
        with self.lock:
            self.attempted[msg_id] = subject

    def ack(self, msg_id: str, seq: int) -> None:
        with self.lock:
            self.acked[msg_id] = seq


def _track_future(ledger: Ledger, msg_id: str, start: float, future: "Future[Any]") -> None:
    with ledger.lock:
        ledger.futures[msg_id] = (start, future)

    def done(f: "Future[Any]") -> None:
        with ledger.lock:
            ledger.resolved[msg_id] = time.monotonic()
        if f.exception() is None:
            ledger.ack(msg_id, f.result().seq)

    future.add_done_callback(done)


def _js_publisher(h: Harness, js: JetStream, ledger: Ledger, index: int, bound: Optional[float]) -> None:
    payload = b"%d" % index * BIG
    for i in itertools.count():
        if h.stop.is_set():
            return
        msg_id = f"big-{index}-{i}"
        subject = f"stall.big.{index}"
        ledger.attempt(msg_id, subject)
        start = h.begin(f"publish_async#{index}", bound)
        try:
            future = js.publish_async(subject, payload, msg_id=msg_id, timeout=JS_PUBLISH_TIMEOUT)
        except ConnectionClosedError as exc:
            h.end(start, f"ConnectionClosedError: {exc}")
            return
        except MemphisError as exc:  # e.g. the reconnect buffer is full: the next one, shortly
            h.end(start, f"{type(exc).__name__}: {exc}")
            h.stop.wait(0.02)
            continue
        h.end(start, "ok")
        _track_future(ledger, msg_id, start, future)
        h.stop.wait(PUBLISH_PAUSE)


def _stored_msg_ids(url: str, stream: str, **auth: Any) -> List[Tuple[str, int]]:
    """(Nats-Msg-Id, stream sequence) of every message in ``stream``, read on a direct connection
    (``auth``: its credentials) with a headers-only consumer."""
    conn = nats_connect(url, **auth)
    try:
        js = JetStream(conn, timeout=10)
        total = js.stream_info(stream).state.messages
        name = f"audit-{uuid.uuid4().hex[:8]}"
        js.add_consumer(stream, ConsumerConfig(durable_name=name, headers_only=True, ack_policy=AckPolicy.NONE, max_ack_pending=-1))
        out: List[Tuple[str, int]] = []
        with js.pull_subscribe(stream, name) as sub:
            deadline = time.monotonic() + 30
            while len(out) < total and time.monotonic() < deadline:
                for msg in sub.fetch(batch=500, timeout=1):
                    headers = msg.headers or {}
                    out.append((headers.get("Nats-Msg-Id", ""), msg.metadata.stream_seq))
        assert len(out) == total, f"read {len(out)} of {total} stored messages"
        return out
    finally:
        conn.close()


def _republish_unacked(js: JetStream, ledger: Ledger, payload_for: Callable[[str], bytes]) -> Tuple[int, int]:
    """Publish again, with the same msg id, every message that got no ack (a failed future, a
    timeout, or an error before the send): the documented way to make it exactly-once.
    Returns (re-published, of which already stored: the stalled connection's bytes reached the
    server after the link came back, but their acks went to a dead socket)."""
    with ledger.lock:
        missing = [(msg_id, subject) for msg_id, subject in ledger.attempted.items() if msg_id not in ledger.acked]
    duplicates = 0
    for msg_id, subject in missing:
        for _ in range(5):
            try:
                ack = js.publish(subject, payload_for(msg_id), msg_id=msg_id, timeout=5)
            except MemphisError:
                time.sleep(0.2)
                continue
            ledger.ack(msg_id, ack.seq)
            duplicates += ack.duplicate
            break
        else:
            raise AssertionError(f"could not re-publish {msg_id} after the reconnect")
    return len(missing), duplicates


def _assert_exactly_once(stored: List[Tuple[str, int]], ledger: Ledger, acked_before: Dict[str, int], summary: str) -> None:
    counts: Dict[str, int] = {}
    seq_of: Dict[str, int] = {}
    for msg_id, seq in stored:
        counts[msg_id] = counts.get(msg_id, 0) + 1
        seq_of[msg_id] = seq
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    lost_acked = sorted(i for i in acked_before if i not in counts)
    wrong_seq = sorted(i for i, seq in acked_before.items() if i in seq_of and seq_of[i] != seq)
    lost = sorted(i for i in ledger.attempted if i not in counts)
    strangers = sorted(i for i in counts if i not in ledger.attempted)
    assert not duplicated, f"stored more than once: {duplicated[:10]}\n{summary}"
    assert not lost_acked, f"acknowledged but not stored: {lost_acked[:10]}\n{summary}"
    assert not wrong_seq, f"stored at another sequence than its PubAck said: {wrong_seq[:10]}\n{summary}"
    assert not lost, f"not stored even after re-publishing: {lost[:10]}\n{summary}"
    assert not strangers, f"stored without being published: {strangers[:10]}\n{summary}"


def test_jetstream_publish_bounded_while_stalled_and_acked_messages_stored_exactly_once(nats_server, harness_factory):
    h = harness_factory(nats_server.port)
    conn, callbacks = _nats_client(h, "client")
    js = JetStream(conn, timeout=JS_PUBLISH_TIMEOUT)
    js.add_stream(StreamConfig(name="STALL", subjects=["stall.>"], storage="memory", duplicate_window=300))
    seen = _watch_status(h, conn.is_connected, "client")
    ledger = Ledger()
    publish_bound = STALE_BOUND + 2 * SLACK
    for i in range(PUBLISHERS):
        h.spawn(f"publisher-{i}", _js_publisher, h, js, ledger, i, publish_bound)

    def probe(tag: str) -> Callable[[int], Any]:
        def call(i: int) -> Any:
            msg_id = f"probe{tag}-{i}"
            ledger.attempt(msg_id, "stall.probe")
            ack = js.publish("stall.probe", b"x", msg_id=msg_id, timeout=JS_PUBLISH_TIMEOUT)
            ledger.ack(msg_id, ack.seq)
            return ack

        return call

    _probe(h, "publish", probe("a"), JS_PUBLISH_TIMEOUT, "a")
    assert _wait_for(lambda: len(ledger.acked) >= 10, 10), f"no acks before the stall\n{h.summary()}"
    _start_probes_in_stall(h, {"publish": (probe("b"), JS_PUBLISH_TIMEOUT)})
    detected = _assert_detected(h, seen, callbacks, "JetStream client")
    time.sleep(STALL_AFTER_DETECTION)
    h.resume()
    assert _wait_for(lambda: "back" in seen, RECONNECT_BOUND), f"no reconnect within {RECONNECT_BOUND} s\n{h.summary()}"
    acked_at_resume = len(ledger.acked)
    assert _wait_for(lambda: len(ledger.acked) >= acked_at_resume + 10, 10), f"no acks after the reconnect\n{h.summary()}"
    h.stop.set()
    for thread in [t for t in threading.enumerate() if t.name.startswith(("stress-publisher", "stress-prober"))]:
        thread.join(JS_PUBLISH_TIMEOUT + SLACK)
    # every future resolves within its deadline (counted from the publish_async call)
    with ledger.lock:
        futures = dict(ledger.futures)
    for msg_id, (start, future) in futures.items():
        try:
            future.exception(timeout=max(0.0, start + JS_PUBLISH_TIMEOUT + SLACK - time.monotonic()))
        except Exception:
            pass
    late = []
    with ledger.lock:
        for msg_id, (start, future) in futures.items():
            end = ledger.resolved.get(msg_id)
            if end is None or end - start > JS_PUBLISH_TIMEOUT + SLACK:
                late.append(f"{msg_id}: {'unresolved' if end is None else f'{end - start:.3f} s'}")
    h.note(f"{len(futures)} publish_async futures, {sum(1 for _, f in futures.values() if f.done() and f.exception() is None)} acked")
    assert not late, f"{len(late)} publish_async future(s) past their {JS_PUBLISH_TIMEOUT} s deadline: {late[:10]}\n{h.summary()}"
    _assert_probed_during_stall(h, ("publish",), detected)
    _assert_calls_bounded(h, ("publish", "publish_async"))
    with ledger.lock:
        acked_before = dict(ledger.acked)
    republished, already = _republish_unacked(js, ledger, lambda msg_id: b"x" if msg_id.startswith("probe") else msg_id.split("-")[1].encode() * BIG)
    h.note(f"{len(ledger.attempted)} messages attempted, {len(acked_before)} acked, {republished} re-published "
           f"after the reconnect ({already} of them were stored already)")
    call, _ = h.timed("close", conn.close, CLOSE_BOUND)
    assert not call.over(), f"{call}\n{h.summary()}"
    _assert_exactly_once(_stored_msg_ids(nats_server.url, "STALL"), ledger, acked_before, h.summary())


# -- Memphis layer: produce(nonblocking) and produce(ack_wait_sec) through the proxy ----------


def _memphis_client(h: Harness, broker: Any) -> memphis_sync.Memphis:
    kwargs = broker.connect_kwargs()
    memphis = memphis_sync.connect(
        host="127.0.0.1",
        port=h.proxy.port,
        username=kwargs["username"],
        connection_token=kwargs["connection_token"],
        reconnect_interval_ms=int(RECONNECT_WAIT * 1000),
        timeout_ms=int(CONNECT_TIMEOUT * 1000),
        ping_interval_ms=int(PING_INTERVAL * 1000),
        max_pings_outstanding=MAX_PINGS_OUTSTANDING,
    )
    h.on_close("memphis", memphis.close)
    return memphis


def _memphis_producer_loop(h: Harness, producer: Any, ledger: Ledger, index: int, bound: Optional[float]) -> None:
    payload = b"%d" % index * BIG
    for i in itertools.count():
        if h.stop.is_set():
            return
        msg_id = f"big-{index}-{i}"
        ledger.attempt(msg_id, "")
        start = h.begin(f"produce_nonblocking#{index}", bound)
        try:
            future = producer.produce(payload, nonblocking=True, msg_id=msg_id, ack_wait_sec=ACK_WAIT_SEC)
        except ConnectionClosedError as exc:
            h.end(start, f"ConnectionClosedError: {exc}")
            return
        except MemphisError as exc:
            h.end(start, f"{type(exc).__name__}: {exc}")
            h.stop.wait(0.02)
            continue
        h.end(start, "ok")
        _track_future(ledger, msg_id, start, future)
        h.stop.wait(PUBLISH_PAUSE)


def _station_stream(memphis: memphis_sync.Memphis, station: str) -> str:
    js = JetStream(memphis.connection)
    names = [n for n in js.stream_names() if n.split("$")[0] == station]
    assert len(names) == 1, f"streams of station {station}: {names}"
    return names[0]


def test_memphis_produce_bounded_while_stalled_and_acked_messages_stored_exactly_once(memphis_broker_function, harness_factory):
    broker = memphis_broker_function
    h = harness_factory(broker.port)
    memphis = _memphis_client(h, broker)
    name = f"stall-{uuid.uuid4().hex[:8]}"
    memphis.station(name, storage_type="memory", idempotency_window_ms=300_000)
    producers = [memphis.producer(name, f"big-{i}") for i in range(PUBLISHERS)]
    prober = memphis.producer(name, "probe")
    seen = _watch_status(h, memphis.is_connected, "memphis")
    ledger = Ledger()
    publish_bound = STALE_BOUND + 2 * SLACK
    for i, producer in enumerate(producers):
        h.spawn(f"publisher-{i}", _memphis_producer_loop, h, producer, ledger, i, publish_bound)

    def probe(tag: str) -> Callable[[int], Any]:
        def call(i: int) -> Any:
            msg_id = f"probe{tag}-{i}"
            ledger.attempt(msg_id, "")
            ack = prober.produce(b"x", ack_wait_sec=ACK_WAIT_SEC, msg_id=msg_id)
            ledger.ack(msg_id, ack.seq)
            return ack

        return call

    _probe(h, "produce", probe("a"), float(ACK_WAIT_SEC), "a")
    assert _wait_for(lambda: len(ledger.acked) >= 10, 10), f"no acks before the stall\n{h.summary()}"
    _start_probes_in_stall(h, {"produce": (probe("b"), float(ACK_WAIT_SEC))})
    detected = _assert_detected(h, seen, None, "Memphis client")
    time.sleep(STALL_AFTER_DETECTION)
    h.resume()
    assert _wait_for(lambda: "back" in seen, RECONNECT_BOUND), f"no reconnect within {RECONNECT_BOUND} s\n{h.summary()}"
    acked_at_resume = len(ledger.acked)
    assert _wait_for(lambda: len(ledger.acked) >= acked_at_resume + 10, 10), f"no acks after the reconnect\n{h.summary()}"
    h.stop.set()
    for thread in [t for t in threading.enumerate() if t.name.startswith(("stress-publisher", "stress-prober"))]:
        thread.join(ACK_WAIT_SEC + SLACK)
    with ledger.lock:
        futures = dict(ledger.futures)
    for msg_id, (start, future) in futures.items():
        try:
            future.exception(timeout=max(0.0, start + ACK_WAIT_SEC + SLACK - time.monotonic()))
        except Exception:
            pass
    with ledger.lock:
        late = [
            f"{msg_id}: {'unresolved' if ledger.resolved.get(msg_id) is None else f'{ledger.resolved[msg_id] - start:.3f} s'}"
            for msg_id, (start, _) in futures.items()
            if ledger.resolved.get(msg_id) is None or ledger.resolved[msg_id] - start > ACK_WAIT_SEC + SLACK
        ]
    assert not late, f"{len(late)} nonblocking produce(s) past ack_wait_sec={ACK_WAIT_SEC}: {late[:10]}\n{h.summary()}"
    _assert_probed_during_stall(h, ("produce",), detected)
    _assert_calls_bounded(h, ("produce", "produce_nonblocking"))
    with ledger.lock:
        acked_before = dict(ledger.acked)
    by_name = {f"big-{i}": p for i, p in enumerate(producers)}

    def payload_for(msg_id: str) -> bytes:
        return b"x" if msg_id.startswith("probe") else msg_id.split("-")[1].encode() * BIG

    republished = already = 0
    with ledger.lock:
        missing = [m for m in ledger.attempted if m not in ledger.acked]
    for msg_id in missing:
        producer = prober if msg_id.startswith("probe") else by_name["-".join(msg_id.split("-")[:2])]
        ack = producer.produce(payload_for(msg_id), ack_wait_sec=10, msg_id=msg_id)
        ledger.ack(msg_id, ack.seq)
        republished += 1
        already += ack.duplicate
    h.note(f"{len(ledger.attempted)} messages attempted, {len(acked_before)} acked, {republished} re-produced "
           f"after the reconnect ({already} of them were stored already)")
    stream = _station_stream(memphis, name)
    call, _ = h.timed("memphis close", memphis.close, MEMPHIS_CLOSE_BOUND)
    assert not call.over(), f"{call}\n{h.summary()}"
    stored = _stored_msg_ids(broker.url, stream, token=broker.connection_token, name="audit::root")
    _assert_exactly_once(stored, ledger, acked_before, h.summary())


def test_memphis_close_is_bounded_while_producers_are_stuck_on_the_stalled_link(memphis_broker_function, harness_factory):
    broker = memphis_broker_function
    h = harness_factory(broker.port)
    memphis = _memphis_client(h, broker)
    name = f"stall-{uuid.uuid4().hex[:8]}"
    memphis.station(name, storage_type="memory")
    producer = memphis.producer(name, "big")
    prober = memphis.producer(name, "probe")
    ledger = Ledger()
    h.spawn("publisher-0", _memphis_producer_loop, h, producer, ledger, 0, None)
    assert _wait_for(lambda: len(ledger.acked) >= 5, 10), f"no acks before the stall\n{h.summary()}"
    h.stall()
    h.spawn("produce", lambda: h.timed("produce", lambda: prober.produce(b"x", ack_wait_sec=30), None, wait=40))
    time.sleep(0.3)
    call, _ = h.timed("memphis close", memphis.close, MEMPHIS_CLOSE_BOUND)
    h.note(str(call))
    assert not call.over(), f"Memphis.close() while stalled: {call}\n{h.summary()}"
    assert _wait_for(lambda: any(c.what == "produce" for c in h.calls), SLACK), (
        f"produce() still blocked {SLACK} s after close() returned\n{h.summary()}"
    )
    h.stop.set()
    publishers = [t for t in threading.enumerate() if t.name.startswith("stress-publisher")]
    for thread in publishers:
        thread.join(SLACK)
    assert not [t.name for t in publishers if t.is_alive()], f"produce(nonblocking=True) still blocked after close()\n{h.summary()}"
