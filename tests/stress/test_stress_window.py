"""Many threads pipelining nonblocking produces through a small ack window (64) on one connection.

Bug report behind it: 4 threads x 12,500 nonblocking produces at the 4000 window, and 2 of the 4
threads never returned. Here 8 and 32 threads share a window of 64, so the window is full almost
all the time and every publisher keeps waiting for room (plus the report's own case, 4 x 12,500
at 4000): every produce call must return, every future must resolve with a PubAck, no more acks
than the window may be outstanding at any moment, and the stream must hold every message
exactly once. Both layers are run: the Memphis one (``connect(max_pending_acks=...)``) and the
NATS one (``JetStream(conn, max_pending=...)``).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Callable, List, Tuple

import pytest
from stress_tools import join_or_fail, release, spawn, station_streams, stored_messages

import memphis_sync
from memphis_sync import nats_connect
from memphis_sync.jetstream import JetStream
from memphis_sync.jetstream.types import PubAck

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Seconds all producer threads get to hand over their messages (about 1 s is typical here).
PRODUCE_BOUND = 30.0
#: Seconds every future gets, after the last produce returned, to resolve.
RESOLVE_BOUND = 15.0
#: ack_wait_sec of each produce: generous, a healthy broker acks in milliseconds.
ACK_WAIT = 15.0


class PeakSampler:
    """Samples ``pending()`` every millisecond on its own thread and keeps the highest value."""

    def __init__(self, pending: Callable[[], int]) -> None:
        self.peak = 0
        self._pending = pending
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stress-window-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._pending())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


@pytest.mark.timeout(60)
@pytest.mark.parametrize("layer", ["memphis", "jetstream"])
@pytest.mark.parametrize("threads, per_thread, window", [(8, 2500, 64), (32, 625, 64), (4, 12500, 4000)])
def test_nonblocking_produce_through_a_small_window(
    memphis_broker: Any, layer: str, threads: int, per_thread: int, window: int
) -> None:
    name = f"window-{uuid.uuid4().hex[:8]}"
    stream = station_streams(name, 1)[0]
    options = {"max_pending_acks": window} if layer == "memphis" else {}
    memphis = memphis_sync.connect(**memphis_broker.connect_kwargs(), **options)
    conn = None
    workers = []
    try:
        station = memphis.station(name)
        if layer == "memphis":
            js = memphis._js
            producer = memphis.producer(name, "p")

            def send(data: bytes) -> "Future[PubAck]":
                return producer.produce(data, nonblocking=True, ack_wait_sec=ACK_WAIT)  # type: ignore[return-value]

        else:
            conn = nats_connect(memphis_broker.url, token=memphis_broker.connection_token, name="stress-window::root")
            js = JetStream(conn, max_pending=window)

            def send(data: bytes) -> "Future[PubAck]":
                return js.publish_async(f"{stream}.final", data, timeout=ACK_WAIT)

        assert js.max_pending == window
        futures: List[List[Tuple[bytes, "Future[PubAck]"]]] = [[] for _ in range(threads)]
        peaks = [0] * threads  # each thread also looks at the window right after its own publish
        go = threading.Barrier(threads + 1, timeout=10)

        def produce(n: int) -> None:
            mine = futures[n]
            go.wait()
            for i in range(per_thread):
                data = b"%d-%d" % (n, i)
                mine.append((data, send(data)))
                pending = js.publish_async_pending
                if pending > peaks[n]:
                    peaks[n] = pending

        sampler = PeakSampler(lambda: js.publish_async_pending)
        workers = spawn("window-producer", threads, produce)
        go.wait()
        started = time.monotonic()
        try:
            produced_in = join_or_fail(workers, PRODUCE_BOUND, f"{threads} threads x {per_thread} nonblocking produces, window {window}")
        finally:
            peak = max(sampler.stop(), *peaks)

        # every future resolves, with a PubAck
        deadline = time.monotonic() + RESOLVE_BOUND
        errors: "collections.Counter[str]" = collections.Counter()
        unresolved = 0
        seqs = []
        for data, future in (pair for mine in futures for pair in mine):
            try:
                ack = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # concurrent.futures.TimeoutError or the publish's error
                if future.done():
                    errors[type(exc).__name__] += 1
                else:
                    unresolved += 1
                continue
            assert isinstance(ack, PubAck), ack
            assert ack.stream == stream and not ack.duplicate, ack
            seqs.append(ack.seq)
        resolved_in = time.monotonic() - started
        total = threads * per_thread
        stored, counts = stored_messages(memphis_broker, [stream])
        copies = collections.Counter(m.data for m in stored)
        expected = {b"%d-%d" % (n, i) for n in range(threads) for i in range(per_thread)}
        duplicates = sum(1 for c in copies.values() if c > 1)
        missing = len(expected - set(copies))
        print(
            f"\n[window {layer} {threads}x{per_thread} at {window}] {total} produces returned in {produced_in:.2f} s, "
            f"all resolved in {resolved_in:.2f} s ({total / resolved_in:.0f}/s); peak in flight {peak} (window {window}); "
            f"acked {len(seqs)}, failed {dict(errors)}, unresolved {unresolved}; stream holds {counts[stream]}, "
            f"read back {len(stored)}, duplicated {duplicates}, missing {missing}"
        )
        assert unresolved == 0, f"{unresolved} futures still unresolved {RESOLVE_BOUND} s after the last produce"
        assert not errors, f"futures failed on a healthy broker: {dict(errors)}"
        assert len(set(seqs)) == total == len(seqs), "two futures resolved with the same stream sequence"
        assert (duplicates, missing, counts[stream]) == (0, 0, total)
        assert set(copies) == expected
        assert peak <= window, f"{peak} acks were outstanding at once with a window of {window}"
        station.destroy()
    finally:
        memphis.close()
        if conn is not None:
            conn.close()
        release(workers)
