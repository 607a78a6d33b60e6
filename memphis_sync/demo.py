"""The demo behind ``memphis-sync demo``: a local broker, producers and a consumer group.

:func:`run_demo` starts a :class:`~memphis_sync.broker.local.LocalBroker` on a free port with a
throw-away store (a temporary directory named ``memphis-sync-demo-*``), creates a station,
produces messages from several threads sharing one connection (each thread with its own
producer), consumes them at the same time with a consumer group, and returns a
:class:`DemoResult`; :func:`format_report` turns that into text.

Theory of operation: the calling thread only sets up, watches and tears down. Producer and
consumer threads are daemons that check a stop event between messages (and between fetches,
which wait at most 100 ms), so none of them can keep the interpreter from exiting. The whole
run has a time limit (``timeout``); when it runs out the threads are told to stop and the
result says how far the run got (:attr:`DemoResult.timed_out`). Whatever ends the run (every
message consumed, the time limit, a failing thread, ``KeyboardInterrupt`` or another exception
raised by a signal handler), the threads are stopped, the connection closed, the broker stopped
and the temporary directories removed before :func:`run_demo` returns or raises; each of those
waits is bounded (``JOIN_TIMEOUT``, ``STOP_TIMEOUT``, the connection's own timeouts).

Nothing here prints: steps go to the ``progress`` hook and counts to the ``on_counts`` hook,
both called on the calling thread.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Final, List, Optional, Tuple

from .demo_report import DEFAULT_TIMEOUT, DemoResult, format_report
from .errors import MemphisError

if TYPE_CHECKING:
    from .memphis.client import Memphis

__all__ = ["DEFAULT_TIMEOUT", "DemoResult", "default_timeout", "run_demo", "run_load", "format_report"]

logger = logging.getLogger(__name__)

_STATION = "demo-orders"
_GROUP = "billing"

#: Messages per second the default time limit allows for: the demo measured 10,000-18,000 msg/s
#: on a shared 2-CPU VM, so a slow CI machine still fits, and a hang ends soon after a minute.
TIMEOUT_RATE: Final = 2000.0
#: Seconds between two ``on_counts`` calls (and between two looks at the time limit).
PROGRESS_INTERVAL: Final = 0.2
#: Seconds the threads get to finish once told to stop; once more after the connection is
#: closed, because a producer blocked in the library returns only then.
JOIN_TIMEOUT: Final = 2.0
#: Seconds nats-server gets to exit after SIGTERM before it is killed: its store is thrown away.
STOP_TIMEOUT: Final = 3.0
#: About this many messages per run have their produce-to-ack latency measured.
ACK_SAMPLES: Final = 1000
#: Producers count their acked messages every this many messages (a power of two).
_SETTLE_EVERY: Final = 256


def default_timeout(messages: int) -> float:
    """The default time limit of a run of ``messages`` messages, in seconds.

    ``DEFAULT_TIMEOUT`` plus one second per ``TIMEOUT_RATE`` messages (85 s for 50,000).
    """
    return DEFAULT_TIMEOUT + messages / TIMEOUT_RATE


class _Run:
    """The state the threads share, and the threads' bodies."""

    def __init__(self, memphis: "Memphis", station: str, group: str, total: int, producers: int, consumers: int,
                 size: int) -> None:
        self.memphis = memphis
        self.station = station
        self.total = total
        self.per_producer = total // producers
        self.padding = b"x" * (size - 32)
        self.sample_every = max(1, total // ACK_SAMPLES)
        self.group = [
            memphis.consumer(station, f"consumer-{i}", consumer_group=group, batch_size=100, batch_max_time_to_wait_ms=100)
            for i in range(consumers)
        ]
        self.stop = threading.Event()  # set by the calling thread: every thread returns soon
        self.wake = threading.Event()  # set by a thread with news: all consumed, done, failed
        self.lock = threading.Lock()
        self.seen: Dict[bytes, int] = {}
        self.counts = [0] * consumers
        self.latencies: List[float] = []
        self.consumed_at: List[float] = []  # time.perf_counter() of each message consumed, beside its latency
        self.ack_latencies: List[float] = []
        self.acked = [0] * producers
        self.failed = [0] * producers
        self.produce_ended: List[Optional[float]] = [None] * producers
        self.first_consumed: Optional[float] = None
        self.last_consumed: Optional[float] = None
        self.error: Optional[str] = None
        self.threads = [
            threading.Thread(target=self._guard, args=(self._consume, i), name=f"demo-consumer-{i}", daemon=True)
            for i in range(consumers)
        ] + [
            threading.Thread(target=self._guard, args=(self._produce, i), name=f"demo-producer-{i}", daemon=True)
            for i in range(producers)
        ]

    # -- what the calling thread reads ---------------------------------------------------

    def produced(self) -> int:
        return sum(self.acked)

    def consumed(self) -> int:
        return len(self.seen)

    def all_consumed(self) -> bool:
        return len(self.seen) >= self.total

    def producing_done(self) -> bool:
        return all(end is not None for end in self.produce_ended)

    def join(self, timeout: float) -> List[threading.Thread]:
        """Join every started thread within ``timeout`` seconds in all; return those still alive."""
        deadline = time.monotonic() + timeout
        started = [thread for thread in self.threads if thread.ident is not None]  # a signal may come mid-start
        for thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread in started if thread.is_alive()]

    # -- the threads ---------------------------------------------------------------------

    def _guard(self, body: Callable[[int], None], index: int) -> None:
        try:
            body(index)
        except Exception as exc:
            if not self.stop.is_set():  # after a stop, errors of the closing connection are expected
                logger.debug("%s failed", threading.current_thread().name, exc_info=True)
                with self.lock:
                    if self.error is None:
                        self.error = f"{threading.current_thread().name}: {type(exc).__name__}: {exc}"
                self.wake.set()

    def _consume(self, index: int) -> None:
        consumer = self.group[index]
        stop, lock, seen = self.stop, self.lock, self.seen
        while not stop.is_set() and len(seen) < self.total:
            for msg in consumer.fetch():
                now = time.time()
                data = bytes(msg.get_data())
                key = data[:32]
                sent_at = float(msg.get_headers().get("sent-at", now))
                msg.ack()
                at = time.perf_counter()
                with lock:
                    seen[key] = seen.get(key, 0) + 1
                    self.latencies.append((now - sent_at) * 1000.0)
                    self.consumed_at.append(at)
                    self.counts[index] += 1
                    if self.first_consumed is None:
                        self.first_consumed = at
                    self.last_consumed = at
                    if len(seen) >= self.total:
                        self.wake.set()

    def _produce(self, index: int) -> None:
        producer = self.memphis.producer(self.station, f"producer-{index}")
        stop, padding, every = self.stop, self.padding, self.sample_every
        futures: Deque["concurrent.futures.Future[Any]"] = collections.deque()
        for i in range(self.per_producer):
            if stop.is_set():
                return
            key = b"%08d-%023d" % (index, i)
            future = producer.produce(key + padding, headers={"sent-at": repr(time.time())}, nonblocking=True)
            assert future is not None
            futures.append(future)
            if i % every == 0:
                future.add_done_callback(self._ack_timer(time.perf_counter()))
            if i % _SETTLE_EVERY == _SETTLE_EVERY - 1:
                self._settle(index, futures)
        while futures and not stop.is_set():  # the last acks, in steps, so that a stop is seen
            try:
                futures[0].exception(PROGRESS_INTERVAL)
            except concurrent.futures.TimeoutError:
                continue
            self._settle(index, futures)
        if not futures:
            self.produce_ended[index] = time.perf_counter()
            self.wake.set()

    def _settle(self, index: int, futures: Deque["concurrent.futures.Future[Any]"]) -> None:
        """Count the resolved futures at the head of ``futures`` (acks arrive about in order)."""
        acked = failed = 0
        while futures and futures[0].done():
            if futures.popleft().exception() is None:
                acked += 1
            else:
                failed += 1
        self.acked[index] += acked
        self.failed[index] += failed

    def _ack_timer(self, sent: float) -> Callable[["concurrent.futures.Future[Any]"], None]:
        def done(future: "concurrent.futures.Future[Any]") -> None:
            if future.exception() is None:
                self.ack_latencies.append((time.perf_counter() - sent) * 1000.0)  # list.append is atomic

        return done


def _watch(run: _Run, deadline: float, limit: float, t0: float, say: Callable[[str], None],
           report: Callable[[int, int, int], None]) -> bool:
    """Report counts until every message is produced and consumed, a thread fails or the time
    limit runs out; return True in the last case."""
    announced = False
    while True:
        run.wake.wait(PROGRESS_INTERVAL)
        run.wake.clear()  # before looking: news after this point wakes the next wait
        report(run.produced(), run.consumed(), run.total)
        if run.producing_done() and not announced:
            announced = True
            failed = sum(run.failed)
            say(f"produced {run.produced()} messages (acknowledged{f', {failed} failed' if failed else ''}) "
                f"in {time.perf_counter() - t0:.2f} s")
        if run.error is not None or (run.all_consumed() and run.producing_done()):
            return False
        if time.monotonic() >= deadline:
            say(f"time limit of {limit:g} s reached: stopping")
            return True


def _drop(memphis: "Memphis") -> None:
    """Close the connection now, failing what is in flight (``Memphis.close()`` would wait for acks)."""
    try:
        memphis.connection.close()
    except MemphisError:  # already closed
        pass


def run_demo(
    messages: int = 5000,
    producers: int = 4,
    consumers: int = 3,
    size: int = 128,
    progress: Optional[Callable[[str], None]] = None,
    timeout: Optional[float] = None,
    on_counts: Optional[Callable[[int, int, int], None]] = None,
) -> DemoResult:
    """Run the demo and return its :class:`DemoResult` (also when the time limit ran out).

    Args:
        messages: how many messages to produce in total (split over the producers, rounded
            down to a multiple of ``producers``).
        producers: producer threads, each with its own producer on the shared connection.
        consumers: members of the consumer group, each fetching on its own thread.
        size: payload bytes per message (>= 32).
        progress: called with a line of text at each step (e.g. ``print``); by default the
            steps are logged at INFO level.
        timeout: time limit of the whole run in seconds, from the call to the end of consuming
            (the teardown comes on top, a few seconds at most); by default
            :func:`default_timeout`.
        on_counts: called about every ``PROGRESS_INTERVAL`` seconds while the threads run,
            and once at the end, with (messages acknowledged, messages consumed, messages
            to produce), e.g. to draw a progress bar.

    Returns:
        The :class:`DemoResult`; see :attr:`DemoResult.ok` and :attr:`DemoResult.timed_out`.

    Raises:
        ValueError: an argument is out of range.
        BrokerError: the local broker could not start (nats-server missing, for example).
        MemphisError: the connection or the station could not be set up.
        KeyboardInterrupt: re-raised after the teardown (likewise any exception raised in the
            calling thread, e.g. by a signal handler).
    """
    from .broker.local import LocalBroker
    from .memphis import client

    total, limit = _checked(messages, producers, consumers, size, 1, timeout)
    deadline = time.monotonic() + limit
    say = progress or (lambda text: logger.info("%s", text))
    report = on_counts or (lambda produced, consumed, total: None)
    with tempfile.TemporaryDirectory(prefix="memphis-sync-demo-") as store:
        broker = LocalBroker(port=0, store_dir=store)
        try:
            broker.start()
            say(f"local broker: nats-server pid {broker.pids[0]} on {broker.url}, Memphis control plane ready")
            memphis = client.connect(**broker.connect_kwargs())
            try:
                return _exercise(memphis, broker.url, _STATION, 2, total, producers, consumers, size, limit, deadline, say,
                                 report)
            finally:
                memphis.close()
        finally:
            broker.close(STOP_TIMEOUT)


def run_load(
    memphis: "Memphis",
    station: str,
    *,
    partitions: int = 1,
    messages: int = 5000,
    producers: int = 4,
    consumers: int = 3,
    size: int = 128,
    timeout: Optional[float] = None,
    progress: Optional[Callable[[str], None]] = None,
    on_counts: Optional[Callable[[int, int, int], None]] = None,
) -> DemoResult:
    """What :func:`run_demo` does, on a connection you give (``memphis-sync bench``): create
    ``station`` (it must not exist yet: it is destroyed at the end of a finished run), produce
    and consume at the same time, and measure.

    Raises:
        ValueError: an argument is out of range.
        MemphisError: the station could not be set up.
    """
    total, limit = _checked(messages, producers, consumers, size, partitions, timeout)
    return _exercise(memphis, f"{memphis.host}:{memphis.port}", station, partitions, total, producers, consumers, size,
                     limit, time.monotonic() + limit, progress or (lambda text: logger.info("%s", text)),
                     on_counts or (lambda produced, consumed, total: None))


def _checked(messages: int, producers: int, consumers: int, size: int, partitions: int,
             timeout: Optional[float]) -> Tuple[int, float]:
    """``(messages rounded down to a multiple of producers, time limit)``, or ValueError."""
    if messages < 1 or producers < 1 or consumers < 1 or size < 32 or partitions < 1:
        raise ValueError("messages, producers, consumers and partitions must be >= 1 and size >= 32")
    if messages < producers:
        raise ValueError("messages must be >= producers")
    total = (messages // producers) * producers
    limit = default_timeout(total) if timeout is None else float(timeout)
    if not limit > 0:
        raise ValueError("timeout must be > 0 seconds")
    return total, limit


def _exercise(memphis: "Memphis", broker_url: str, station_name: str, partitions: int, total: int, producers: int,
              consumers: int, size: int, limit: float, deadline: float, say: Callable[[str], None],
              report: Callable[[int, int, int], None]) -> DemoResult:
    """The station, the threads and the result, on a connected client."""
    finished = False
    try:
        station = memphis.station(station_name, partitions_number=partitions)
        say(f"station {station_name!r} with {partitions} partition{'s' if partitions > 1 else ''} created")
        run = _Run(memphis, station_name, _GROUP, total, producers, consumers, size)
        say(f"producing {total} messages from {producers} threads, consuming them with a group of {consumers} "
            f"(time limit {limit:g} s)")
        t0 = time.perf_counter()
        timed_out = False
        try:
            for thread in run.threads:
                thread.start()
            timed_out = _watch(run, deadline, limit, t0, say, report)
            finished = run.error is None and not timed_out
        finally:
            elapsed = time.perf_counter() - t0
            run.stop.set()
            if run.join(JOIN_TIMEOUT) and not finished:
                _drop(memphis)  # fails what is in flight: producers blocked in produce() return
                run.join(JOIN_TIMEOUT)
        report(run.produced(), run.consumed(), total)
        if finished:
            for consumer in run.group:
                consumer.destroy()
            station.destroy()
    finally:
        if not finished:  # Memphis.close() would wait for acks that nobody will look at
            _drop(memphis)
    stuck = [thread.name for thread in run.threads if thread.is_alive()]
    if stuck:  # daemon threads: they cannot hold up the interpreter's exit
        logger.warning("demo threads still running after the stop: %s", ", ".join(stuck))
    with run.lock:
        seen = dict(run.seen)
        timeline = [(at - t0, latency) for at, latency in zip(run.consumed_at, run.latencies)]
        latencies = sorted(run.latencies)
    ended = [end for end in run.produce_ended if end is not None]
    first, last = run.first_consumed, run.last_consumed
    received = sum(seen.values())
    return DemoResult(
        broker=broker_url, messages=total, producers=producers, consumers=consumers, size=size,
        produced=run.produced(), produce_failed=sum(run.failed),
        produce_secs=(max(ended) - t0) if len(ended) == producers else elapsed,
        received=received, consume_secs=(last - first) if first is not None and last is not None else 0.0,
        duplicates=received - len(seen), missing=total - len(seen), per_consumer=list(run.counts),
        latencies_ms=latencies, ack_latencies_ms=sorted(run.ack_latencies), timeline=timeline, elapsed_secs=elapsed,
        timeout=limit, timed_out=timed_out, error=run.error,
    )
