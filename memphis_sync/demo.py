"""The demo behind ``memphis-sync demo``: a local broker, producers and a consumer group.

:func:`run_demo` starts a :class:`~memphis_sync.broker.local.LocalBroker` on a free port with a
throw-away store, creates a station, produces messages from several threads sharing one
connection (each thread with its own producer), consumes them with a consumer group, and
returns what happened; :func:`format_report` turns that into text. The broker is stopped and
its data removed before :func:`run_demo` returns. Nothing here prints.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import attrs

__all__ = ["DemoResult", "run_demo", "format_report"]

logger = logging.getLogger(__name__)

_STATION = "demo-orders"
_GROUP = "billing"


@attrs.frozen(kw_only=True)
class DemoResult:
    """What one demo run measured."""

    broker: str
    messages: int
    producers: int
    consumers: int
    size: int
    produce_secs: float
    consume_secs: float
    received: int
    duplicates: int
    missing: int
    per_consumer: List[int]
    latencies_ms: List[float] = attrs.field(repr=False)

    @property
    def ok(self) -> bool:
        """Every message was consumed exactly once."""
        return self.received == self.messages and self.duplicates == 0 and self.missing == 0


def _percentile(sorted_values: List[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def run_demo(
    messages: int = 5000,
    producers: int = 4,
    consumers: int = 3,
    size: int = 128,
    progress: Optional[Callable[[str], None]] = None,
    timeout: float = 60.0,
) -> DemoResult:
    """Run the demo and return its :class:`DemoResult`.

    Args:
        messages: how many messages to produce in total (split over the producers).
        producers: producer threads, each with its own producer on the shared connection.
        consumers: members of the consumer group, each fetching on its own thread.
        size: payload bytes per message (>= 32).
        progress: called with a line of text at each step (e.g. ``print``).
        timeout: seconds to wait for every message to be consumed.
    """
    from . import client
    from .broker.local import LocalBroker

    if messages < 1 or producers < 1 or consumers < 1 or size < 32:
        raise ValueError("messages, producers and consumers must be >= 1 and size >= 32")
    say = progress or (lambda text: logger.info("%s", text))
    per_producer = messages // producers
    total = per_producer * producers
    padding = b"x" * (size - 32)
    with tempfile.TemporaryDirectory(prefix="memphis-sync-demo-") as store:
        with LocalBroker(port=0, store_dir=store) as broker:
            say(f"local broker: nats-server pid {broker.pids[0]} on {broker.url}, Memphis control plane ready")
            with client.connect(**broker.connect_kwargs()) as memphis:
                station = memphis.station(_STATION, partitions_number=2)
                say(f"station {_STATION!r} with 2 partitions created")
                group = [memphis.consumer(_STATION, f"consumer-{i}", consumer_group=_GROUP, batch_size=100,
                                          batch_max_time_to_wait_ms=100) for i in range(consumers)]
                seen: Dict[bytes, int] = {}
                latencies: List[float] = []
                counts = [0] * consumers
                lock = threading.Lock()
                all_in = threading.Event()

                def consume(index: int) -> None:
                    consumer = group[index]
                    deadline = time.monotonic() + timeout
                    while not all_in.is_set() and time.monotonic() < deadline:
                        for msg in consumer.fetch():
                            now = time.time()
                            data = bytes(msg.get_data())
                            key = data[:32]
                            sent_at = float(msg.get_headers().get("sent-at", now))
                            msg.ack()
                            with lock:
                                seen[key] = seen.get(key, 0) + 1
                                latencies.append((now - sent_at) * 1000.0)
                                counts[index] += 1
                                if len(seen) >= total:
                                    all_in.set()

                def produce(index: int) -> None:
                    producer = memphis.producer(_STATION, f"producer-{index}")
                    for i in range(per_producer):
                        key = b"%08d-%023d" % (index, i)
                        producer.produce(key + padding, headers={"sent-at": repr(time.time())}, nonblocking=True)
                    producer.flush()

                readers = [threading.Thread(target=consume, args=(i,), name=f"demo-consumer-{i}") for i in range(consumers)]
                writers = [threading.Thread(target=produce, args=(i,), name=f"demo-producer-{i}") for i in range(producers)]
                t0 = time.perf_counter()
                for thread in readers + writers:
                    thread.start()
                for thread in writers:
                    thread.join()
                produce_secs = time.perf_counter() - t0
                say(f"produced {total} messages from {producers} threads")
                all_in.wait(timeout)
                consume_secs = time.perf_counter() - t0
                all_in.set()
                for thread in readers:
                    thread.join()
                for consumer in group:
                    consumer.destroy()
                station.destroy()
            broker_url = broker.url
    received = sum(seen.values())
    return DemoResult(
        broker=broker_url, messages=total, producers=producers, consumers=consumers, size=size,
        produce_secs=produce_secs, consume_secs=consume_secs, received=received,
        duplicates=received - len(seen), missing=total - len(seen), per_consumer=counts,
        latencies_ms=sorted(latencies),
    )


def format_report(result: DemoResult) -> str:
    """The demo's result as a few lines of text."""
    lat = result.latencies_ms
    lines = [
        f"produced {result.messages} messages of {result.size} B with {result.producers} producer threads "
        f"on one connection in {result.produce_secs:.3f} s ({result.messages / result.produce_secs:,.0f} msg/s, acked)",
        f"consumed {result.received} with a consumer group of {result.consumers} "
        f"(per consumer: {result.per_consumer}) within {result.consume_secs:.3f} s "
        f"({result.received / result.consume_secs:,.0f} msg/s)",
    ]
    if lat:
        lines.append(
            "end-to-end latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  mean %.2f"
            % (_percentile(lat, 50), _percentile(lat, 90), _percentile(lat, 99), lat[-1], statistics.fmean(lat))
        )
    lines.append(f"duplicates: {result.duplicates}, missing: {result.missing} -> {'OK' if result.ok else 'FAILED'}")
    return "\n".join(lines)
