"""Tools shared by the stress tests: bounded worker threads, stack dumps, call bounds, and
counting what a station's streams really stored.

Theory of operation: a stress test starts its workers with :func:`spawn`, which names them
``stress-<role>-<n>`` (never ``memphis-sync-*``: the suite's leak check is about the library's
threads) and records whatever they raise instead of letting it escape (an exception escaping a
thread becomes a pytest warning, an error under ``filterwarnings = error``, in whatever test
runs next). A test never ``join()``s without a bound: :func:`join_or_fail` waits until a
deadline and, if a worker is still running, fails the test with that worker's current stack,
which is what a hang report needs. Each blocking call a worker makes is timed by a
:class:`Bounds` object against the bound the API documents, plus :data:`SLACK`.

Stored messages are read back on a separate plain NATS connection, with an ephemeral pull
consumer (``ack_policy none``) per stream, so the count is the stream's, not the client's.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
from typing import Any, Callable, Counter, Dict, Iterable, List, Optional, Sequence, Tuple

import attrs
import pytest

from memphis_sync import nats_connect
from memphis_sync.jetstream import JetStream
from memphis_sync.jetstream.types import AckPolicy, ConsumerConfig
from memphis_sync.memphis.station import internal_name

__all__ = [
    "SLACK",
    "Bounds",
    "Worker",
    "spawn",
    "join_or_fail",
    "release",
    "stacks_of",
    "all_library_stacks",
    "wait_for",
    "station_streams",
    "StoredMessage",
    "stored_messages",
]

#: Seconds a call may overrun its documented bound before it counts as blocking past it: a
#: loaded 2-core machine running a dozen client threads, the broker and its control plane
#: delays a thread's wake-up by a few hundred milliseconds at worst.
SLACK: float = 1.0
#: Prefix of every thread the stress tests start.
THREAD_PREFIX: str = "stress-"


class Worker:
    """A named daemon thread running ``target(*args)``; whatever it raises is kept in ``error``."""

    def __init__(self, role: str, number: int, target: Callable[..., Any], *args: Any) -> None:
        self.name = f"{THREAD_PREFIX}{role}-{number}"
        self.error: Optional[BaseException] = None
        self.error_text = ""
        self._target = target
        self._args = args
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _run(self) -> None:
        try:
            self._target(*self._args)
        except BaseException as exc:  # recorded, reported by the test
            self.error = exc
            self.error_text = traceback.format_exc()

    def __repr__(self) -> str:
        state = "running" if self.thread.is_alive() else ("failed" if self.error else "done")
        return f"<Worker {self.name} {state}>"


def spawn(role: str, count: int, target: Callable[..., Any], *args: Any) -> List[Worker]:
    """Start ``count`` workers ``target(n, *args)`` (n = 0..count-1) and return them."""
    workers = [Worker(role, n, target, n, *args) for n in range(count)]
    for worker in workers:
        worker.thread.start()
    return workers


def stacks_of(threads: Iterable[threading.Thread]) -> str:
    """The current Python stack of each thread, as text."""
    frames = sys._current_frames()
    parts = []
    for thread in threads:
        frame = frames.get(thread.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (no frame: finished)\n"
        parts.append(f"--- thread {thread.name} ---\n{stack}")
    return "".join(parts)


def all_library_stacks() -> str:
    """Stacks of the library's threads (reader, flusher, timer...), to read next to a hang."""
    return stacks_of(t for t in threading.enumerate() if t.name.startswith("memphis-sync"))


def join_or_fail(workers: Sequence[Worker], timeout: float, what: str) -> float:
    """Join every worker within ``timeout`` seconds (in all); fail with the stacks of those still
    running, and with the errors of those that raised. Returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    for worker in workers:
        worker.thread.join(max(0.0, deadline - time.monotonic()))
    alive = [w.thread for w in workers if w.thread.is_alive()]
    if alive:
        pytest.fail(
            f"{what}: {len(alive)} of {len(workers)} thread(s) still running {timeout:g} s later "
            f"(hung):\n{stacks_of(alive)}\nlibrary threads:\n{all_library_stacks()}",
            pytrace=False,
        )
    failed = [w for w in workers if w.error is not None]
    if failed:
        pytest.fail(
            f"{what}: {len(failed)} thread(s) raised:\n" + "\n".join(f"{w.name}:\n{w.error_text}" for w in failed),
            pytrace=False,
        )
    return time.monotonic() - start


def release(workers: Sequence[Worker], timeout: float = 10.0) -> None:
    """Best-effort join for a ``finally`` block (the test already failed or passed)."""
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.thread.join(max(0.0, deadline - time.monotonic()))


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@attrs.define
class Bounds:
    """Durations of blocking calls, each checked against the bound its API documents.

    ``record(kind, started, bound)`` after a call; a call that took longer than
    ``bound + SLACK`` is a violation. Thread-safe.
    """

    slack: float = SLACK
    calls: Counter[str] = attrs.field(factory=collections.Counter)
    longest: Dict[str, float] = attrs.field(factory=dict)
    violations: List[str] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def record(self, kind: str, started: float, bound: float, detail: str = "") -> float:
        took = time.monotonic() - started
        with self._lock:
            self.calls[kind] += 1
            if took > self.longest.get(kind, 0.0):
                self.longest[kind] = took
            if took > bound + self.slack:
                self.violations.append(
                    f"{threading.current_thread().name}: {kind} took {took:.2f} s, bound {bound:g} s + {self.slack:g} s slack {detail}"
                )
        return took

    def note(self, text: str) -> None:
        """Record a violation found otherwise (e.g. a future still pending past its deadline)."""
        with self._lock:
            self.violations.append(f"{threading.current_thread().name}: {text}")

    def summary(self) -> str:
        return ", ".join(f"{k}: {n} calls, longest {self.longest[k]:.2f} s" for k, n in sorted(self.calls.items()))


def station_streams(station: str, partitions: int) -> List[str]:
    """The JetStream streams of a station: ``<internal name>$<p>`` for p = 1..partitions."""
    internal = internal_name(station)
    return [f"{internal}${p}" for p in range(1, partitions + 1)]


@attrs.frozen(kw_only=True)
class StoredMessage:
    """One message as its stream stored it."""

    stream: str
    seq: int
    data: bytes
    msg_id: Optional[str]


def stored_messages(broker: Any, streams: Sequence[str], timeout: float = 20.0) -> Tuple[List[StoredMessage], Dict[str, int]]:
    """Read back every message stored in ``streams`` of ``broker`` (a token-mode LocalBroker).

    Returns the messages and, per stream, the count the stream reports (``state.messages``),
    so a caller can check both agree. Uses its own connection and ephemeral consumers.
    """
    conn = nats_connect(broker.url, token=broker.connection_token or None, name="stress-reader::root")
    out: List[StoredMessage] = []
    counts: Dict[str, int] = {}
    try:
        js = JetStream(conn, timeout=5)
        deadline = time.monotonic() + timeout
        for stream in streams:
            total = js.stream_info(stream).state.messages
            counts[stream] = total
            info = js.add_consumer(
                stream,
                ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True, max_ack_pending=-1),
            )
            sub = js.pull_subscribe(stream, info.name)
            got = 0
            try:
                while got < total and time.monotonic() < deadline:
                    for msg in sub.fetch(min(2000, total - got), timeout=2.0):
                        headers = msg.headers
                        msg_id = headers.get("Nats-Msg-Id") if headers is not None else None
                        out.append(StoredMessage(stream=stream, seq=msg.metadata.stream_seq, data=bytes(msg.data), msg_id=msg_id))
                        got += 1
            finally:
                sub.unsubscribe()
            if got < total:
                pytest.fail(f"read back only {got} of the {total} messages of stream {stream} in {timeout:g} s", pytrace=False)
    finally:
        conn.close()
    return out, counts
