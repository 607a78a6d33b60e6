"""Producers and a consumer group keep working through real broker faults: a frozen nats-server
(SIGSTOP for a few seconds, then SIGCONT) and a killed one (SIGKILL, then started again).

Bug report behind it: 8 threads producing nonblocking, the broker SIGSTOPped for 4 s, and 7 of
the 8 threads never produced again.

The workload, on one ``Memphis`` connection to a 2-partition disk station:

* 4 threads produce blocking, each message with a ``msg_id`` and ``ack_wait_sec`` = ACK_WAIT;
* 4 threads produce nonblocking, also with a ``msg_id``, and watch their futures;
* 3 threads are one consumer group: each its own consumer, fetching and acking.

A produce that failed (timed out, window full past ``max_block_ms``, future failed) is retried by
the test with the same ``msg_id`` and the same partition key, until it is acknowledged: the
broker's de-duplication window must then keep each message once. (The key matters: msg-id
de-duplication is per stream, that is per partition; a retry sent round-robin could land in the
other partition and be stored twice, which no client can prevent.)

What must hold:

* every producer thread produces again after the fault, by itself (no test intervention);
* no call blocks past its bound (plus ``stress_tools.SLACK``): a blocking produce
  ``ack_wait_sec``, a nonblocking produce ``max_block_ms`` (the most it may wait for room in the
  window), a fetch ``batch_max_time_to_wait_ms``, an ack ``max_block_ms``; a nonblocking future
  is resolved at most ``ack_wait_sec`` after its produce;
* only documented errors are raised (listed per scenario below), and every one is retried;
* every message the broker acknowledged is stored exactly once, and nothing is stored twice;
* every acknowledged message is processed by the group at least once.

On SIGKILL and durability: a lone nats-server's file store writes each message to its block file
(``write(2)``, "flush in place": ``AsyncFlush`` is false outside clustered streams) before it sends
the PubAck; only the ``fsync`` is periodic (``sync_interval``, default 2 min). A SIGKILL does not
lose data the process already wrote (it is in the kernel's page cache); only an OS crash or power
loss would, which this test does not simulate. So the check is strict: every message acked
before the kill must be stored once after the restart. (``sync_interval: always`` would be needed
against power loss; ``LocalBroker`` has no way to pass extra nats-server configuration, and it is
not needed here.) On restart the server rebuilds its de-duplication table from the stored
messages of the last window, so a retry after the restart is still recognised as a repeat.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Type

import pytest
from stress_tools import (
    SLACK,
    Bounds,
    Worker,
    all_library_stacks,
    join_or_fail,
    release,
    spawn,
    stacks_of,
    station_streams,
    stored_messages,
    wait_for,
)

import memphis_sync
from memphis_sync.errors import (
    MaxBlockTimeout,
    MemphisTimeoutError,
    NoStreamResponseError,
)
from memphis_sync.memphis.station import Storage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 2
BLOCKING_PRODUCERS = 4
NONBLOCKING_PRODUCERS = 4
CONSUMERS = 3
#: ack_wait_sec of every produce.
ACK_WAIT = 2.0
#: max_block_ms of the connection: the longest a nonblocking produce waits for window room.
MAX_BLOCK_MS = 1000
MAX_BLOCK = MAX_BLOCK_MS / 1000
MAX_PENDING_ACKS = 64
#: batch_max_time_to_wait_ms of the consumers.
FETCH_WAIT_MS = 1000
FETCH_WAIT = FETCH_WAIT_MS / 1000
#: max_ack_time_ms: a message delivered but not acked is redelivered after this.
MAX_ACK_TIME_MS = 4000
#: Pause of each producer thread between produces (keeps the volume readable, ~500/s/thread).
PACE = 0.002
#: Seconds the nats-server stays frozen (SIGSTOP) / dead (SIGKILL) before SIGCONT / restart.
PAUSE = 3.5
DOWN = 1.0
#: Seconds of production before the fault (at least; every thread must have 5 acks, within
#: WARM_UP_BOUND) and after every thread resumed.
WARM_UP = 1.0
WARM_UP_BOUND = 10.0
AFTER = 1.0
#: After the fault, seconds within which every producer thread must have produced again.
RESUME_BOUND = ACK_WAIT + MAX_BLOCK + 5.0
#: Seconds a producer keeps re-sending its failed messages after being told to stop.
WIND_DOWN = 10.0
#: Seconds the group gets to process every acknowledged message (covers one redelivery).
CONSUME_BOUND = 20.0
#: memphis.close(timeout=...)
CLOSE_TIMEOUT = 5.0

Errors = Tuple[Type[BaseException], ...]


def _caused_by(exc: BaseException, kinds: Errors) -> bool:
    seen: Optional[BaseException] = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__
    return False


class Workload:
    """The producers and the consumer group of one scenario, and what they observed."""

    def __init__(self, producer: Any, *, produce_errors: Errors, fetch_errors: Errors, ack_errors: Errors) -> None:
        self.producer = producer
        self.produce_errors = produce_errors
        self.fetch_errors = fetch_errors
        self.ack_errors = ack_errors
        self.stop_producing = threading.Event()
        self.stop_consuming = threading.Event()
        self.wind_down_until = float("inf")
        self.bounds = Bounds()
        self._lock = threading.Lock()
        self.acked: Dict[str, float] = {}  # msg id -> when its first ack arrived
        self.attempts: "collections.Counter[str]" = collections.Counter()  # msg id -> sends
        self.ack_times: Dict[str, List[float]] = collections.defaultdict(list)  # thread -> ack times
        self.errors: "collections.Counter[str]" = collections.Counter()  # "<call>: <type>" -> count
        self.samples: Dict[str, str] = {}  # "<call>: <type>" -> the first one's text
        self.unexpected: List[str] = []
        self.consumed: "collections.Counter[str]" = collections.Counter()  # msg id -> deliveries
        self.bad_headers: List[str] = []
        self.gave_up: Set[str] = set()

    # -- bookkeeping ---------------------------------------------------------------------

    def _sent(self, mid: str) -> None:
        with self._lock:
            self.attempts[mid] += 1

    def _acked(self, mid: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.acked.setdefault(mid, now)
            self.ack_times[threading.current_thread().name].append(now)

    def _failed(self, call: str, exc: BaseException, allowed: Errors) -> None:
        with self._lock:
            key = f"{call}: {type(exc).__name__}"
            self.errors[key] += 1
            self.samples.setdefault(key, str(exc)[:160])
            if not _caused_by(exc, allowed):
                self.unexpected.append(f"{threading.current_thread().name} {call}: {exc!r}")

    def acks_of(self, thread: str) -> int:
        with self._lock:
            return len(self.ack_times.get(thread, ()))

    def last_ack(self, thread: str) -> float:
        with self._lock:
            times = self.ack_times.get(thread)
            return times[-1] if times else 0.0

    def acks_between(self, thread: str, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in self.ack_times.get(thread, ()) if start <= t < end)

    # -- producers -----------------------------------------------------------------------

    def _produce_blocking(self, mid: str) -> bool:
        self._sent(mid)
        started = time.monotonic()
        try:
            self.producer.produce(mid.encode(), ack_wait_sec=ACK_WAIT, msg_id=mid, producer_partition_key=mid)
        except Exception as exc:
            self.bounds.record("blocking produce", started, ACK_WAIT, mid)
            self._failed("blocking produce", exc, self.produce_errors)
            return False
        self.bounds.record("blocking produce", started, ACK_WAIT, mid)
        self._acked(mid)
        return True

    def blocking_producer(self, n: int) -> None:
        i = 0
        retry: Optional[str] = None
        while True:
            if retry is None:
                if self.stop_producing.is_set():
                    return
                mid, i = f"b{n}-{i}", i + 1
            else:
                mid = retry
                if time.monotonic() > self.wind_down_until:
                    self.gave_up.add(mid)
                    return
            retry = None if self._produce_blocking(mid) else mid
            time.sleep(PACE if retry is None else 0.02)

    def _produce_nonblocking(self, mid: str, outstanding: Deque[Tuple[str, "Future[Any]", float, List[bool]]]) -> bool:
        self._sent(mid)
        started = time.monotonic()
        try:
            future = self.producer.produce(
                mid.encode(), nonblocking=True, ack_wait_sec=ACK_WAIT, msg_id=mid, producer_partition_key=mid
            )
        except Exception as exc:  # MaxBlockTimeout: nothing was sent
            self.bounds.record("nonblocking produce", started, MAX_BLOCK, mid)
            self._failed("nonblocking produce", exc, self.produce_errors)
            return False
        self.bounds.record("nonblocking produce", started, MAX_BLOCK, mid)
        outstanding.append((mid, future, started, [False]))
        return True

    def _harvest(self, outstanding: Deque[Tuple[str, "Future[Any]", float, List[bool]]], retry: Deque[str]) -> None:
        now = time.monotonic()
        pending = []
        for item in outstanding:
            mid, future, sent_at, reported = item
            if future.done():
                error = future.exception()
                if error is None:
                    self._acked(mid)
                else:
                    self._failed("nonblocking future", error, self.produce_errors)
                    retry.append(mid)
                continue
            if not reported[0] and now > sent_at + ACK_WAIT + SLACK:
                reported[0] = True
                self.bounds.note(f"future of {mid} still pending {now - sent_at:.2f} s after its produce (ack_wait_sec {ACK_WAIT:g})")
            pending.append(item)
        outstanding.clear()
        outstanding.extend(pending)

    def nonblocking_producer(self, n: int) -> None:
        outstanding: Deque[Tuple[str, "Future[Any]", float, List[bool]]] = collections.deque()
        retry: Deque[str] = collections.deque()
        i = 0
        while not self.stop_producing.is_set():
            self._harvest(outstanding, retry)
            if retry:
                mid = retry.popleft()
            else:
                mid, i = f"n{n}-{i}", i + 1
            if not self._produce_nonblocking(mid, outstanding):
                retry.appendleft(mid)
                time.sleep(0.02)
            else:
                time.sleep(PACE)
        # wind down: resolve every future and re-send what failed until it is acknowledged
        while outstanding or retry:
            self._harvest(outstanding, retry)
            if time.monotonic() > self.wind_down_until:
                self.gave_up.update(item[0] for item in outstanding)
                self.gave_up.update(retry)
                return
            if retry:
                mid = retry.popleft()
                if not self._produce_nonblocking(mid, outstanding):
                    retry.appendleft(mid)
            time.sleep(0.01)

    # -- consumers -----------------------------------------------------------------------

    def consume(self, n: int, consumer: Any) -> None:
        while not self.stop_consuming.is_set():
            started = time.monotonic()
            try:
                messages = consumer.fetch()
            except Exception as exc:
                self.bounds.record("fetch", started, FETCH_WAIT)
                self._failed("fetch", exc, self.fetch_errors)
                time.sleep(0.05)
                continue
            self.bounds.record("fetch", started, FETCH_WAIT)
            for message in messages:
                mid = bytes(message.get_data()).decode()
                with self._lock:
                    self.consumed[mid] += 1
                if message.get_headers().get("msg-id") != mid:
                    self.bad_headers.append(f"{mid}: {message.get_headers()!r}")
                started = time.monotonic()
                try:
                    message.ack()
                except Exception as exc:
                    self._failed("ack", exc, self.ack_errors)
                self.bounds.record("ack", started, MAX_BLOCK)


def _thread_counts(workload: Workload, workers: List[Worker], start: float, end: float) -> str:
    rows = []
    for worker in workers:
        name = worker.name
        before = workload.acks_between(name, 0.0, start)
        during = workload.acks_between(name, start, end)
        after = workload.acks_between(name, end, float("inf"))
        rows.append(f"{name.replace('stress-', '')}={before}/{during}/{after}")
    return " ".join(rows)


def _run(
    broker: Any,
    scenario: str,
    fault: Callable[[Workload], Tuple[float, float]],
    *,
    options: Dict[str, Any],
    produce_errors: Errors,
    fetch_errors: Errors,
    ack_errors: Errors,
) -> Tuple[Workload, Set[str], Dict[str, int]]:
    """Run the workload, inject ``fault`` (it returns when the fault started and ended), check
    everything the module docstring lists, print the counts; return the workload, the stored
    msg ids and the per-stream counts."""
    name = f"faults-{uuid.uuid4().hex[:8]}"
    memphis = memphis_sync.connect(
        **broker.connect_kwargs(), reconnect_interval_ms=100, timeout_ms=1000,
        max_pending_acks=MAX_PENDING_ACKS, max_block_ms=MAX_BLOCK_MS, **options,
    )
    producers: List[Worker] = []
    consumers: List[Worker] = []
    workload: Optional[Workload] = None
    try:
        memphis.station(name, partitions_number=PARTITIONS, storage_type=Storage.DISK, idempotency_window_ms=120_000)
        producer = memphis.producer(name, "p")
        group = [
            memphis.consumer(
                name, f"c{i}", consumer_group="g", batch_size=100, batch_max_time_to_wait_ms=FETCH_WAIT_MS,
                max_ack_time_ms=MAX_ACK_TIME_MS, max_msg_deliveries=10,
            )
            for i in range(CONSUMERS)
        ]
        workload = Workload(producer, produce_errors=produce_errors, fetch_errors=fetch_errors, ack_errors=ack_errors)
        consumers = [Worker("consumer", i, workload.consume, i, c) for i, c in enumerate(group)]
        for worker in consumers:
            worker.thread.start()
        producers = spawn("blocking", BLOCKING_PRODUCERS, workload.blocking_producer)
        producers += spawn("nonblocking", NONBLOCKING_PRODUCERS, workload.nonblocking_producer)
        names = [w.name for w in producers]
        time.sleep(WARM_UP)
        if not wait_for(lambda: all(workload.acks_of(n) >= 5 for n in names), WARM_UP_BOUND):  # type: ignore[union-attr]
            pytest.fail(f"producers did not get going before the fault:\n{stacks_of(w.thread for w in producers)}", pytrace=False)

        fault_start, fault_end = fault(workload)

        resumed = wait_for(lambda: all(workload.last_ack(n) > fault_end for n in names), RESUME_BOUND)  # type: ignore[union-attr]
        stuck = [w for w in producers if workload.last_ack(w.name) <= fault_end]
        if not resumed:
            pytest.fail(
                f"[{scenario}] {len(stuck)} of {len(producers)} producer threads never produced again within "
                f"{RESUME_BOUND:g} s after the fault ended:\n{stacks_of(w.thread for w in stuck)}\n"
                f"acks before/during/after the fault: {_thread_counts(workload, producers, fault_start, fault_end)}\n"
                f"errors so far: {dict(workload.errors)}\nlibrary threads:\n{all_library_stacks()}",
                pytrace=False,
            )
        time.sleep(AFTER)
        workload.wind_down_until = time.monotonic() + WIND_DOWN
        workload.stop_producing.set()
        join_or_fail(producers, WIND_DOWN + ACK_WAIT + SLACK + 2, f"[{scenario}] stopping the producers")

        acked = set(workload.acked)
        wait_for(lambda: acked <= set(workload.consumed), CONSUME_BOUND, interval=0.1)  # type: ignore[union-attr]
        workload.stop_consuming.set()
        join_or_fail(consumers, 3 * FETCH_WAIT + SLACK + 5, f"[{scenario}] stopping the consumers")

        stored, counts = stored_messages(broker, station_streams(name, PARTITIONS))
        closing = time.monotonic()
        memphis.close(timeout=CLOSE_TIMEOUT)
        workload.bounds.record("close", closing, CLOSE_TIMEOUT)

        copies = collections.Counter(m.msg_id for m in stored)
        data_matches = all(m.data.decode() == m.msg_id for m in stored)
        duplicated = sorted(mid for mid, c in copies.items() if c > 1)
        missing = sorted(acked - set(copies))
        never_sent = sorted(set(copies) - set(workload.attempts))
        not_consumed = sorted(acked - set(workload.consumed))
        deliveries = sum(workload.consumed.values())
        resends = sum(workload.attempts.values()) - len(workload.attempts)
        print(
            f"\n[{scenario}] fault {fault_end - fault_start:.2f} s; acks per thread before/during/after: "
            f"{_thread_counts(workload, producers, fault_start, fault_end)}\n"
            f"[{scenario}] ids produced {len(workload.attempts)}, re-sends {resends}, acked {len(acked)}, gave up {len(workload.gave_up)}; "
            f"errors {dict(workload.errors)}; unexpected {len(workload.unexpected)}\n"
            f"[{scenario}] stored {len(stored)} (streams say {sum(counts.values())}: {counts}), duplicated {len(duplicated)}, "
            f"acked but missing {len(missing)}, stored but never sent {len(never_sent)}; group processed {len(workload.consumed)} "
            f"distinct in {deliveries} deliveries ({deliveries - len(workload.consumed)} redelivered), acked but not processed {len(not_consumed)}\n"
            f"[{scenario}] calls: {workload.bounds.summary()}; over their bound: {len(workload.bounds.violations)}\n"
            f"[{scenario}] first error of each kind: {workload.samples}"
        )
        problems = []
        if workload.unexpected:
            problems.append(f"undocumented errors ({len(workload.unexpected)}): {workload.unexpected[:10]}")
        if workload.bounds.violations:
            problems.append(f"calls past their bound ({len(workload.bounds.violations)}): {workload.bounds.violations[:10]}")
        if workload.gave_up:
            problems.append(f"{len(workload.gave_up)} messages still unacknowledged {WIND_DOWN:g} s after the producers stopped: {sorted(workload.gave_up)[:10]}")
        if duplicated:
            problems.append(f"{len(duplicated)} messages stored more than once: {duplicated[:10]}")
        if missing:
            problems.append(f"{len(missing)} acknowledged messages are not stored: {missing[:10]}")
        if never_sent or not data_matches or sum(counts.values()) != len(stored):
            problems.append(f"the streams hold what was never produced: {never_sent[:10]}, payloads match ids: {data_matches}")
        if not_consumed:
            problems.append(f"{len(not_consumed)} acknowledged messages never reached the group: {not_consumed[:10]}")
        if workload.bad_headers:
            problems.append(f"messages with a wrong msg-id header: {workload.bad_headers[:5]}")
        assert not problems, f"[{scenario}]\n" + "\n".join(problems)
        return workload, set(copies), counts
    finally:
        if workload is not None:
            workload.wind_down_until = 0.0
            workload.stop_producing.set()
            workload.stop_consuming.set()
        memphis.close()
        release(producers + consumers)


def _pause(broker: Any, seconds: float) -> Tuple[float, float]:
    """SIGSTOP the nats-server (never this process: the control plane lives here), then SIGCONT."""
    (pid,) = broker.pids
    assert pid != os.getpid()
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    return start, time.monotonic()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("liveness", ["stall", "stale"])
def test_producers_and_group_resume_after_the_broker_is_frozen(memphis_broker_function: Any, liveness: str) -> None:
    """``stall``: default client PINGs (2 min), so the connection simply waits out the freeze;
    ``stale``: PINGs every 0.5 s, so the client declares the connection stale during the
    freeze and reconnects (to a server that accepts TCP but answers nothing until SIGCONT)."""
    broker = memphis_broker_function
    options: Dict[str, Any] = {} if liveness == "stall" else {"ping_interval_ms": 500, "max_pings_outstanding": 2}
    _run(
        broker, f"freeze {PAUSE:g} s, {liveness}", lambda workload: _pause(broker, PAUSE), options=options,
        # documented: RequestTimeout (no ack within ack_wait_sec), MaxBlockTimeout (no room in the
        # window for max_block_ms; a nonblocking produce or an ack's publish)
        produce_errors=(MemphisTimeoutError,), fetch_errors=(), ack_errors=(MaxBlockTimeout,),
    )


@pytest.mark.timeout(90)
def test_producers_and_group_resume_after_the_broker_is_killed_and_restarted(memphis_broker_function: Any) -> None:
    """SIGKILL the nats-server, start it again after DOWN seconds on the same port and store
    (``NatsServer.start``; the local broker's control plane is a separate client in this
    process and reconnects by itself, as the SDK clients do). Acknowledged messages survive:
    see the module docstring."""
    broker = memphis_broker_function
    acked_before_kill: Set[str] = set()

    def kill_and_restart(workload: Workload) -> Tuple[float, float]:
        (pid,) = broker.pids
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        assert wait_for(lambda: not broker.nats_server.is_running(), 5)
        time.sleep(DOWN)
        with workload._lock:  # every ack the dead process sent has been read by now
            acked_before_kill.update(workload.acked)
        broker.nats_server.start()
        assert broker.pids and broker.pids != [pid]
        return start, time.monotonic()

    _, stored, _ = _run(
        broker, f"kill -9, down {DOWN:g} s", kill_and_restart, options={},
        # documented: RequestTimeout / MaxBlockTimeout while reconnecting, and NoStreamResponseError
        # right after the restart (the server answers before it has loaded the stream)
        produce_errors=(MemphisTimeoutError, NoStreamResponseError), fetch_errors=(), ack_errors=(MaxBlockTimeout,),
    )
    lost = sorted(acked_before_kill - stored)
    print(f"[kill -9] acked before the kill: {len(acked_before_kill)}, lost by the kill: {len(lost)}")
    assert acked_before_kill and not lost
