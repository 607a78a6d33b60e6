"""Everything at once on one ``Memphis`` connection, from several threads, for a few seconds:
produce (blocking, nonblocking, flush), fetch and ack (two threads sharing one consumer), station
create/destroy, producer and consumer create/destroy, and a station destroyed while another
thread is still producing to it and fetching from it.

What must hold: no call hangs (every worker stops when told, within a bound) or blocks past its
documented bound; the only errors are documented ones, and only where the test provokes them
(producing to or fetching from the station being destroyed: ``NoStreamResponseError``, or a
``MemphisError`` saying the consumer was destroyed or its durable/stream is gone); every
acknowledged message of the shared station reaches its consumer group; and the connection still
works afterwards (create, produce, consume, destroy, close within its bound).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Set, Tuple

import pytest
from stress_tools import Bounds, Worker, join_or_fail, release, spawn, wait_for

import memphis_sync
from memphis_sync import _defaults
from memphis_sync.errors import JetStreamError, MemphisError, NoStreamResponseError, RequestTimeout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Seconds every role runs.
RUN = 4.0
ACK_WAIT = 5.0
FETCH_WAIT_MS = 200
FETCH_WAIT = FETCH_WAIT_MS / 1000
FLUSH_TIMEOUT = 5.0
#: Per-try timeout of control-plane requests (station/producer/consumer create and destroy).
CONTROL_TIMEOUT = _defaults.MEMPHIS_CREATE_TIMEOUT
CLOSE_TIMEOUT = 5.0


class Mixed:
    """Shared state of the roles: what they counted, the errors they saw, the calls they timed."""

    def __init__(self, memphis: Any, name: str) -> None:
        self.memphis = memphis
        self.name = name
        self.stop = threading.Event()
        self.stop_consuming = threading.Event()
        self.bounds = Bounds()
        self.lock = threading.Lock()
        self.counts: "collections.Counter[str]" = collections.Counter()
        self.errors: "collections.Counter[str]" = collections.Counter()
        self.samples: Dict[str, str] = {}  # "<call>: <type>" -> the first one's text
        self.unexpected: List[str] = []
        self.acked: Set[str] = set()  # steady messages the broker acknowledged
        self.consumed: "collections.Counter[str]" = collections.Counter()

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def error(self, call: str, exc: BaseException, documented: Callable[[BaseException], bool] = lambda exc: False) -> None:
        with self.lock:
            key = f"{call}: {type(exc).__name__}"
            self.errors[key] += 1
            self.samples.setdefault(key, str(exc)[:160])
            if not documented(exc):
                self.unexpected.append(f"{threading.current_thread().name} {call}: {exc!r}")

    def timed(self, kind: str, bound: float, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return call()
        finally:
            self.bounds.record(kind, started, bound)


def _gone(exc: BaseException) -> bool:
    """The documented errors of using a station another thread just destroyed. A produce sent
    while its stream was being deleted may get no answer at all (neither an ack nor "no
    responders"; seen once in a few hundred runs): it ends in RequestTimeout after ack_wait
    (docs/reliability.rst)."""
    if isinstance(exc, (NoStreamResponseError, RequestTimeout)):
        return True
    if isinstance(exc, MemphisError) and "destroyed" in str(exc):
        return True
    return isinstance(exc, MemphisError) and isinstance(exc.__cause__, JetStreamError)


def steady_producer(n: int, mx: Mixed, producer: Any) -> None:
    """Blocking and nonblocking produces in turn through one shared producer; flush now and then."""
    futures: List[Tuple[str, "Future[Any]"]] = []
    i = 0
    while not mx.stop.is_set():
        mid = f"s{n}-{i}"
        i += 1
        try:
            if i % 2:
                mx.timed("blocking produce", ACK_WAIT, lambda: producer.produce(mid.encode(), ack_wait_sec=ACK_WAIT))
                with mx.lock:
                    mx.acked.add(mid)
            else:
                future = mx.timed("nonblocking produce", ACK_WAIT, lambda: producer.produce(mid.encode(), nonblocking=True, ack_wait_sec=ACK_WAIT))
                futures.append((mid, future))
            if i % 500 == 0:
                mx.timed("flush", FLUSH_TIMEOUT, lambda: producer.flush(timeout=FLUSH_TIMEOUT))
        except Exception as exc:
            mx.error("steady produce", exc)
    for mid, future in futures:
        try:
            future.result(timeout=ACK_WAIT)
        except Exception as exc:
            mx.error("steady future", exc)
        else:
            with mx.lock:
                mx.acked.add(mid)
    mx.count("steady produced", i)


def steady_consumer(n: int, mx: Mixed, consumer: Any) -> None:
    """Fetch and ack; two threads share this one consumer (fetch calls are serialized)."""
    while not mx.stop_consuming.is_set():
        try:
            messages = mx.timed("fetch", FETCH_WAIT, consumer.fetch)
        except Exception as exc:
            mx.error("steady fetch", exc)
            time.sleep(0.05)
            continue
        for message in messages:
            with mx.lock:
                mx.consumed[bytes(message.get_data()).decode()] += 1
            try:
                message.ack()
            except Exception as exc:
                mx.error("steady ack", exc)


def station_churn(n: int, mx: Mixed) -> None:
    """A whole life per round: station, producer, 6 messages, consumer, read them, destroy all."""
    memphis = mx.memphis
    j = 0
    while not mx.stop.is_set():
        name = f"{mx.name}-st{n}-{j}"
        j += 1
        try:
            station = mx.timed("station create", CONTROL_TIMEOUT, lambda: memphis.station(name, partitions_number=1 + j % 2))
            producer = mx.timed("producer create", CONTROL_TIMEOUT, lambda: memphis.producer(name, "p"))
            for k in range(3):
                mx.timed("blocking produce", ACK_WAIT, lambda: producer.produce(b"b%d" % k, ack_wait_sec=ACK_WAIT))
            for k in range(3):
                producer.produce(b"n%d" % k, nonblocking=True, ack_wait_sec=ACK_WAIT)
            mx.timed("flush", FLUSH_TIMEOUT, lambda: producer.flush(timeout=FLUSH_TIMEOUT))
            consumer = mx.timed("consumer create", CONTROL_TIMEOUT, lambda: memphis.consumer(name, "c", batch_size=10, batch_max_time_to_wait_ms=FETCH_WAIT_MS))
            got: Set[bytes] = set()
            deadline = time.monotonic() + 5
            while len(got) < 6 and time.monotonic() < deadline:
                for message in mx.timed("fetch", FETCH_WAIT, consumer.fetch):
                    got.add(bytes(message.get_data()))
                    message.ack()
            if got != {b"b0", b"b1", b"b2", b"n0", b"n1", b"n2"}:
                with mx.lock:
                    mx.unexpected.append(f"station {name}: read back {sorted(got)}")
            mx.timed("consumer destroy", CONTROL_TIMEOUT, consumer.destroy)
            mx.timed("producer destroy", CONTROL_TIMEOUT, producer.destroy)
            mx.timed("station destroy", CONTROL_TIMEOUT, station.destroy)
            mx.count("station lives")
        except Exception as exc:
            mx.error("station churn", exc)


def client_churn(n: int, mx: Mixed) -> None:
    """Producers and consumers (each its own group) created and destroyed on the shared station."""
    memphis = mx.memphis
    j = 0
    while not mx.stop.is_set():
        j += 1
        try:
            producer = mx.timed("producer create", CONTROL_TIMEOUT, lambda: memphis.producer(mx.name, f"tmp{n}-{j}"))
            mx.timed("blocking produce", ACK_WAIT, lambda: producer.produce(b"tmp", ack_wait_sec=ACK_WAIT))
            mx.timed("producer destroy", CONTROL_TIMEOUT, producer.destroy)
            consumer = mx.timed(
                "consumer create", CONTROL_TIMEOUT,
                lambda: memphis.consumer(mx.name, f"tmpc{n}-{j}", consumer_group=f"tmpg{n}-{j}", batch_max_time_to_wait_ms=FETCH_WAIT_MS),
            )
            for message in mx.timed("fetch", FETCH_WAIT, consumer.fetch):
                message.ack()
            mx.timed("consumer destroy", CONTROL_TIMEOUT, consumer.destroy)
            mx.count("client lives")
        except Exception as exc:
            mx.error("client churn", exc)


def racer(n: int, mx: Mixed) -> None:
    """Destroy a station while a second thread produces to it and fetches from it."""
    memphis = mx.memphis
    j = 0
    while not mx.stop.is_set():
        name = f"{mx.name}-race{n}-{j}"
        j += 1
        try:
            station = memphis.station(name)
            producer = memphis.producer(name, "p")
            consumer = memphis.consumer(name, "c", batch_max_time_to_wait_ms=FETCH_WAIT_MS)
        except Exception as exc:
            mx.error("race setup", exc)
            continue
        done = threading.Event()

        def hammer(_: int) -> None:
            while not done.is_set():
                try:
                    mx.timed("blocking produce", ACK_WAIT, lambda: producer.produce(b"x", ack_wait_sec=ACK_WAIT))
                except Exception as exc:
                    mx.error("race produce", exc, _gone)
                try:
                    future = mx.timed("nonblocking produce", ACK_WAIT, lambda: producer.produce(b"y", nonblocking=True, ack_wait_sec=ACK_WAIT))
                    error = future.exception(timeout=ACK_WAIT + 1)
                    if error is not None:
                        mx.error("race future", error, _gone)
                except Exception as exc:
                    mx.error("race nonblocking", exc, _gone)
                try:
                    for message in mx.timed("fetch", FETCH_WAIT, consumer.fetch):
                        message.ack()
                except Exception as exc:
                    mx.error("race fetch", exc, _gone)

        (worker,) = spawn(f"racer-{n}-hammer", 1, hammer)
        time.sleep(0.2)
        try:
            mx.timed("station destroy", CONTROL_TIMEOUT, station.destroy)
        except Exception as exc:
            mx.error("race destroy", exc)
        time.sleep(0.2)
        done.set()
        worker.thread.join(2 * ACK_WAIT + 5)
        if worker.thread.is_alive() or worker.error is not None:
            with mx.lock:
                mx.unexpected.append(f"{worker.name}: {'hung' if worker.thread.is_alive() else worker.error_text}")
            return
        for what, obj in (("race consumer destroy", consumer), ("race producer destroy", producer)):
            try:
                obj.destroy()
            except Exception as exc:
                mx.error(what, exc)
        mx.count("races")


@pytest.mark.timeout(60)
def test_everything_at_once_on_one_connection(memphis_broker: Any) -> None:
    name = f"mixed-{uuid.uuid4().hex[:8]}"
    memphis = memphis_sync.connect(**memphis_broker.connect_kwargs())
    mx = Mixed(memphis, name)
    workers: List[Worker] = []
    consumers: List[Worker] = []
    try:
        station = memphis.station(name, partitions_number=2)
        steady = memphis.producer(name, "steady")
        shared = memphis.consumer(name, "main", consumer_group="main", batch_size=50, batch_max_time_to_wait_ms=FETCH_WAIT_MS)
        consumers = spawn("steady-consumer", 2, steady_consumer, mx, shared)
        workers = spawn("steady-producer", 2, steady_producer, mx, steady)
        workers += spawn("station-churn", 1, station_churn, mx)
        workers += spawn("client-churn", 1, client_churn, mx)
        workers += spawn("racer", 1, racer, mx)
        time.sleep(RUN)
        mx.stop.set()
        stopped_in = join_or_fail(workers, 2 * ACK_WAIT + CONTROL_TIMEOUT, "stopping the roles")
        acked = set(mx.acked)
        wait_for(lambda: acked <= set(mx.consumed), 10, interval=0.05)
        mx.stop_consuming.set()
        join_or_fail(consumers, FETCH_WAIT + 5, "stopping the shared consumer's threads")
        not_consumed = sorted(acked - set(mx.consumed))

        # the connection still works
        connected = memphis.is_connected()
        final = f"{name}-final"
        roundtrip = False
        final_station = memphis.station(final)
        producer = memphis.producer(final, "p")
        producer.produce(b"still alive", ack_wait_sec=ACK_WAIT)
        consumer = memphis.consumer(final, "c", batch_max_time_to_wait_ms=FETCH_WAIT_MS)
        deadline = time.monotonic() + 5
        while not roundtrip and time.monotonic() < deadline:
            for message in consumer.fetch():
                roundtrip = bytes(message.get_data()) == b"still alive"
                message.ack()
        consumer.destroy()
        producer.destroy()
        final_station.destroy()
        shared.destroy()
        steady.destroy()
        station.destroy()
        closing = time.monotonic()
        memphis.close(timeout=CLOSE_TIMEOUT)
        mx.bounds.record("close", closing, CLOSE_TIMEOUT)

        print(
            f"\n[mixed {RUN:g} s] {dict(mx.counts)}; steady acked {len(acked)}, processed {len(mx.consumed)} distinct "
            f"in {sum(mx.consumed.values())} deliveries, acked but not processed {len(not_consumed)}; roles stopped in "
            f"{stopped_in:.2f} s\n[mixed] errors {dict(mx.errors)}; undocumented {len(mx.unexpected)}\n"
            f"[mixed] calls: {mx.bounds.summary()}; over their bound: {len(mx.bounds.violations)}\n"
            f"[mixed] first error of each kind: {mx.samples}"
        )
        assert not mx.unexpected, f"undocumented errors: {mx.unexpected[:10]}"
        assert not mx.bounds.violations, f"calls past their bound: {mx.bounds.violations[:10]}"
        assert not not_consumed, f"{len(not_consumed)} acknowledged messages never reached the group: {not_consumed[:10]}"
        assert connected and roundtrip, "the connection no longer works after the stress"
        assert mx.counts["station lives"] and mx.counts["client lives"] and mx.counts["races"], dict(mx.counts)
    finally:
        mx.stop.set()
        mx.stop_consuming.set()
        memphis.close()
        release(workers + consumers)
