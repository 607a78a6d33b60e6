"""Soak: producers and a consumer group at full speed on a local broker for a few minutes.

Not part of the default run (marker ``soak``; ``setup.cfg`` deselects it)::

    .venv/bin/python -m pytest -m soak -s tests/soak

Several threads produce on one shared :class:`~memphis_sync.Memphis` connection, some with
``produce(nonblocking=True)``, some blocking; a consumer group on a second connection fetches
and acks. Every message carries its producer thread and sequence number, and the consumers tick
them off in one bitmap per producer (a bit per message: the bookkeeping itself stays a few
hundred KiB). Every ``MEMPHIS_SYNC_SOAK_INTERVAL`` seconds a sampler records the messages
produced (acknowledged by the broker) and consumed in that interval, and the RSS of this process
and of the broker's ``nats-server`` (``VmRSS`` in ``/proc/<pid>/status``).

Checked at the end:

* every acknowledged message was consumed (duplicates are counted and reported: a redelivery
  after ``max_ack_time_ms`` is allowed, a loss is not), and no produce failed;
* throughput is steady: no interval while the producers ran has zero messages produced or zero
  consumed;
* memory is flat: the client's RSS grows less than ``MEMPHIS_SYNC_SOAK_RSS_GROWTH_MIB`` over the
  second half of the run.

Environment (all optional):

``MEMPHIS_SYNC_SOAK_SECONDS``           how long the producers run (180)
``MEMPHIS_SYNC_SOAK_INTERVAL``          seconds per sample (5)
``MEMPHIS_SYNC_SOAK_CSV``               where to write the samples (default: the test's tmp dir)
``MEMPHIS_SYNC_SOAK_NONBLOCKING``       threads producing with ``nonblocking=True`` (2)
``MEMPHIS_SYNC_SOAK_BLOCKING``          threads producing and waiting for each ack (2)
``MEMPHIS_SYNC_SOAK_CONSUMERS``         members of the consumer group (2)
``MEMPHIS_SYNC_SOAK_SIZE``              message size in bytes (512)
``MEMPHIS_SYNC_SOAK_RSS_GROWTH_MIB``    allowed RSS growth over the second half (16)
"""

from __future__ import annotations

import collections
import csv
import faulthandler
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Deque, Iterator, List, Optional, Tuple

import attrs
import pytest

import memphis_sync
from memphis_sync.errors import MemphisError


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


SECONDS = _env_float("MEMPHIS_SYNC_SOAK_SECONDS", 180.0)
INTERVAL = _env_float("MEMPHIS_SYNC_SOAK_INTERVAL", 5.0)
NONBLOCKING = _env_int("MEMPHIS_SYNC_SOAK_NONBLOCKING", 2)
BLOCKING = _env_int("MEMPHIS_SYNC_SOAK_BLOCKING", 2)
CONSUMERS = _env_int("MEMPHIS_SYNC_SOAK_CONSUMERS", 2)
SIZE = _env_int("MEMPHIS_SYNC_SOAK_SIZE", 512)
RSS_GROWTH_MIB = _env_float("MEMPHIS_SYNC_SOAK_RSS_GROWTH_MIB", 16.0)
#: Seconds the consumers get, after the producers stopped, to catch up.
DRAIN_TIMEOUT = max(60.0, SECONDS / 2)
#: pytest-timeout for the whole soak: the run, the drain and a margin for setup and teardown.
TIMEOUT = int(SECONDS + DRAIN_TIMEOUT + 120)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(TIMEOUT)]

#: Consumer settings: big batches, a short wait so an idle fetch returns quickly.
BATCH_SIZE = 500
BATCH_WAIT_MS = 200
ACK_WAIT_SEC = 30


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    """Run only when selected with ``-m soak`` (a ``-m`` given for something else, such as
    ``-m "not slow"``, replaces the ``-m "not soak"`` of ``setup.cfg``)."""
    if "soak" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("soak test: run it with -m soak")


@pytest.fixture(autouse=True)
def _dump_stacks_before_timeout() -> Iterator[None]:
    faulthandler.dump_traceback_later(TIMEOUT - 15, exit=False, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def rss_kib(pid: Optional[int] = None) -> int:
    """``VmRSS`` of a process (this one by default) in KiB, from ``/proc/<pid>/status``."""
    path = Path("/proc/self/status" if pid is None else f"/proc/{pid}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in {path}")


class Tally:
    """Which messages of which producer thread were consumed: one bit per message."""

    def __init__(self, producers: int) -> None:
        self._bits = [bytearray() for _ in range(producers)]
        self._lock = threading.Lock()
        self.consumed = 0
        self.duplicates = 0
        self.foreign = 0

    def mark(self, payload: bytes) -> None:
        try:
            producer, seq = int(payload[0:2]), int(payload[3:13])
            bits = self._bits[producer]
        except (ValueError, IndexError):
            with self._lock:
                self.foreign += 1
            return
        byte, bit = divmod(seq, 8)
        with self._lock:
            if byte >= len(bits):
                bits.extend(bytes(byte - len(bits) + 4096))
            if bits[byte] >> bit & 1:
                self.duplicates += 1
                return
            bits[byte] |= 1 << bit
            self.consumed += 1

    def missing(self, producer: int, acked: "List[int] | range") -> List[int]:
        bits = self._bits[producer]
        with self._lock:
            return [seq for seq in acked if seq // 8 >= len(bits) or not bits[seq // 8] >> (seq % 8) & 1]


@attrs.define
class ProducerStats:
    """What one producer thread did. ``acked`` counts broker acks; ``failed`` lists the
    sequence numbers whose produce raised or whose future failed."""

    index: int
    nonblocking: bool
    sent: int = 0
    acked: int = 0
    failed: List[Tuple[int, str]] = attrs.Factory(list)


@attrs.frozen
class Sample:
    t: float
    produced: int
    consumed: int
    produced_per_s: float
    consumed_per_s: float
    rss_mib: float
    broker_rss_mib: float
    load: float  # 1-minute load average of the machine (other processes compete for the CPUs)
    producing: bool


def load_average() -> float:
    """The 1-minute load average, from ``/proc/loadavg``."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _payload(index: int, seq: int) -> bytes:
    head = b"%02d:%010d:" % (index, seq)
    return head + b"." * max(0, SIZE - len(head))


def _nonblocking_producer(stop: threading.Event, producer: Any, stats: ProducerStats) -> None:
    # futures are checked in order as they complete: the deque stays at about the ack window
    pending: Deque[Tuple[int, Any]] = collections.deque()
    seq = 0
    while not stop.is_set():
        try:
            future = producer.produce(_payload(stats.index, seq), nonblocking=True, ack_wait_sec=ACK_WAIT_SEC)
        except MemphisError as exc:
            stats.failed.append((seq, f"{type(exc).__name__}: {exc}"))
            seq += 1
            time.sleep(0.01)
            continue
        pending.append((seq, future))
        seq += 1
        stats.sent = seq
        while pending and pending[0][1].done():
            _settle(stats, *pending.popleft())
    for item in pending:
        item[1].exception(ACK_WAIT_SEC + 5)
        _settle(stats, *item)


def _settle(stats: ProducerStats, seq: int, future: Any) -> None:
    error = future.exception(0) if future.done() else TimeoutError("no ack")
    if error is None:
        stats.acked += 1
    else:
        stats.failed.append((seq, f"{type(error).__name__}: {error}"))


def _blocking_producer(stop: threading.Event, producer: Any, stats: ProducerStats) -> None:
    seq = 0
    while not stop.is_set():
        try:
            producer.produce(_payload(stats.index, seq), ack_wait_sec=ACK_WAIT_SEC)
        except MemphisError as exc:
            stats.failed.append((seq, f"{type(exc).__name__}: {exc}"))
        else:
            stats.acked += 1
        seq += 1
        stats.sent = seq


def _consumer(stop: threading.Event, consumer: Any, tally: Tally, errors: List[str]) -> None:
    while not stop.is_set():
        try:
            msgs = consumer.fetch()
        except MemphisError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.1)
            continue
        for msg in msgs:
            tally.mark(bytes(msg.get_data()))
            msg.ack()


def _write_csv(path: Path, samples: List[Sample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([field.name for field in attrs.fields(Sample)])
        for s in samples:
            writer.writerow([f"{s.t:.1f}", s.produced, s.consumed, f"{s.produced_per_s:.0f}", f"{s.consumed_per_s:.0f}",
                             f"{s.rss_mib:.1f}", f"{s.broker_rss_mib:.1f}", f"{s.load:.2f}", int(s.producing)])


def _table(samples: List[Sample]) -> str:
    lines = ["     t   produced/s   consumed/s   client RSS MiB   broker RSS MiB   load",
             "------  -----------  -----------  ---------------  ---------------  -----"]
    for s in samples:
        mark = "" if s.producing else "  (draining)"
        lines.append(f"{s.t:6.0f}  {s.produced_per_s:11.0f}  {s.consumed_per_s:11.0f}  {s.rss_mib:15.1f}  "
                     f"{s.broker_rss_mib:15.1f}  {s.load:5.2f}{mark}")
    return "\n".join(lines)


def test_soak_producers_and_consumer_group_at_full_speed(memphis_broker_factory: Callable[..., Any], tmp_path: Path) -> None:
    broker = memphis_broker_factory()
    broker_pid = broker.pids[0]
    station_name = f"soak-{uuid.uuid4().hex[:8]}"
    producers_conn = memphis_sync.connect(**broker.connect_kwargs())
    consumers_conn = memphis_sync.connect(**broker.connect_kwargs())
    stop_producers = threading.Event()
    stop_consumers = threading.Event()
    threads: List[threading.Thread] = []
    try:
        producers_conn.station(station_name, retention_type="ack_based", retention_value=0)
        stats = [ProducerStats(i, nonblocking=i < NONBLOCKING) for i in range(NONBLOCKING + BLOCKING)]
        tally = Tally(len(stats))
        consumer_errors: List[str] = []
        consumers = [
            consumers_conn.consumer(station_name, f"c{i}", consumer_group="soak", batch_size=BATCH_SIZE,
                                    batch_max_time_to_wait_ms=BATCH_WAIT_MS, max_ack_time_ms=ACK_WAIT_SEC * 1000)
            for i in range(CONSUMERS)
        ]
        for i, consumer in enumerate(consumers):
            threads.append(threading.Thread(target=_consumer, args=(stop_consumers, consumer, tally, consumer_errors), name=f"soak-consumer-{i}"))
        for s in stats:
            producer = producers_conn.producer(station_name, f"p{s.index}")
            target = _nonblocking_producer if s.nonblocking else _blocking_producer
            threads.append(threading.Thread(target=target, args=(stop_producers, producer, s), name=f"soak-producer-{s.index}"))

        samples: List[Sample] = []
        start = time.monotonic()
        for thread in threads:
            thread.start()
        last_produced = last_consumed = 0
        last_t = start
        drain_deadline: Optional[float] = None
        while True:
            time.sleep(max(0.0, start + (len(samples) + 1) * INTERVAL - time.monotonic()))
            now = time.monotonic()
            producing = not stop_producers.is_set()
            produced = sum(s.acked for s in stats)
            consumed = tally.consumed
            dt = now - last_t
            samples.append(Sample(
                t=now - start, produced=produced, consumed=consumed,
                produced_per_s=(produced - last_produced) / dt, consumed_per_s=(consumed - last_consumed) / dt,
                rss_mib=rss_kib() / 1024, broker_rss_mib=rss_kib(broker_pid) / 1024, load=load_average(),
                producing=producing,
            ))
            last_produced, last_consumed, last_t = produced, consumed, now
            if producing and now - start >= SECONDS:
                stop_producers.set()
                for thread in threads:
                    if thread.name.startswith("soak-producer"):
                        thread.join(ACK_WAIT_SEC + 10)
                drain_deadline = time.monotonic() + DRAIN_TIMEOUT
            elif not producing:
                total = sum(s.acked for s in stats)
                if tally.consumed >= total or (drain_deadline is not None and now > drain_deadline):
                    break
        stop_consumers.set()
        for thread in threads:
            thread.join(30)
        stuck = [t.name for t in threads if t.is_alive()]
    finally:
        stop_producers.set()
        stop_consumers.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(30)
        producers_conn.close()
        consumers_conn.close()

    csv_path = Path(os.environ.get("MEMPHIS_SYNC_SOAK_CSV") or tmp_path / "soak.csv")
    _write_csv(csv_path, samples)
    run = [s for s in samples if s.producing]
    half = run[len(run) // 2]
    end = run[-1]
    total_acked = sum(s.acked for s in stats)
    failures = [(s.index, seq, why) for s in stats for seq, why in s.failed]
    rates = [s.produced_per_s for s in run]
    consume_rates = [s.consumed_per_s for s in run]
    elapsed = end.t
    summary = "\n".join([
        "",
        f"soak: {elapsed:.0f} s of producing ({NONBLOCKING} nonblocking + {BLOCKING} blocking threads, "
        f"{CONSUMERS} consumers in one group, {SIZE}-byte messages), samples every {INTERVAL:.0f} s, CSV: {csv_path}",
        _table(samples),
        f"produced (acked): {total_acked}  ({total_acked / elapsed:.0f}/s; nonblocking "
        f"{sum(s.acked for s in stats if s.nonblocking)}, blocking {sum(s.acked for s in stats if not s.nonblocking)})",
        f"consumed: {tally.consumed}, duplicates (redeliveries): {tally.duplicates}, foreign: {tally.foreign}, "
        f"consumer errors: {len(consumer_errors)}, produce failures: {len(failures)}",
        f"produced/s per interval: min {min(rates):.0f}, median {statistics.median(rates):.0f}, max {max(rates):.0f}; "
        f"consumed/s: min {min(consume_rates):.0f}, median {statistics.median(consume_rates):.0f}",
        f"client RSS: start {samples[0].rss_mib:.1f} MiB, half-way {half.rss_mib:.1f}, end of producing {end.rss_mib:.1f}, "
        f"peak {max(s.rss_mib for s in samples):.1f}; second-half growth {end.rss_mib - half.rss_mib:+.1f} MiB "
        f"(bound {RSS_GROWTH_MIB} MiB); broker RSS half-way {half.broker_rss_mib:.1f}, end {end.broker_rss_mib:.1f}",
    ])
    print(summary)

    assert not stuck, f"threads still running after the soak: {stuck}{summary}"
    assert not failures, f"{len(failures)} produce(s) failed, first: {failures[:5]}{summary}"
    assert not consumer_errors, f"consumer errors: {consumer_errors[:5]}{summary}"
    missing = {s.index: tally.missing(s.index, range(s.sent)) for s in stats}
    missing = {i: m for i, m in missing.items() if m}
    assert not missing, (
        f"acknowledged but never consumed: {sum(map(len, missing.values()))} message(s), "
        f"first per producer: { {i: m[:5] for i, m in missing.items()} }{summary}"
    )
    assert tally.foreign == 0, summary
    dead = [s for s in run if s.produced_per_s == 0 or s.consumed_per_s == 0]
    assert not dead, f"throughput dropped to zero in {len(dead)} interval(s): {[round(s.t) for s in dead]}{summary}"
    growth = end.rss_mib - half.rss_mib
    assert growth < RSS_GROWTH_MIB, f"client RSS grew {growth:.1f} MiB over the second half{summary}"
