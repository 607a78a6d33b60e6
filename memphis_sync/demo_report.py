"""What a demo or bench run measured (:class:`DemoResult`) and its text (:func:`format_report`).

Used by :mod:`memphis_sync.demo` (which re-exports both) and the ``bench`` command.
"""

from __future__ import annotations

import statistics
from typing import Final, List, Optional, Tuple

import attrs

__all__ = ["DemoResult", "format_report", "percentile"]

#: The time limit of a run is this many seconds plus one second per ``TIMEOUT_RATE`` messages.
DEFAULT_TIMEOUT: Final = 60.0


@attrs.frozen(kw_only=True)
class DemoResult:
    """What one demo run measured.

    Attributes:
        broker: the broker's URL.
        messages: messages the run was to produce (``messages`` rounded down to a multiple of
            ``producers``).
        producers: producer threads.
        consumers: members of the consumer group.
        size: payload bytes per message.
        produced: messages the broker acknowledged.
        produce_failed: messages whose produce failed (no ack in time, refused, connection lost).
        produce_secs: from the producer threads starting to the last ack (or to the stop).
        received: messages consumed, repeats included.
        consume_secs: from the first message consumed to the last one. Consumers run while the
            producers are still producing, so this is not a drain time of a full backlog.
        duplicates: messages consumed more than once (counted once per repeat).
        missing: messages never consumed.
        per_consumer: messages consumed by each member of the group.
        latencies_ms: end to end, sorted: from just before ``produce()`` to the consumer
            holding the message. This includes the time the message waited in the station
            while the producers were still ahead of the consumers (the backlog).
        ack_latencies_ms: produce to ack, sorted, for about ``ACK_SAMPLES`` messages: from
            ``produce()`` returning (the message handed to the connection) to its ack future
            resolving, with many other produces in flight on the same connection.
        timeline: ``(seconds from the start, end-to-end latency ms)`` of each message consumed,
            in the order consumed (for plots of throughput and latency over time).
        elapsed_secs: from the threads starting to the end of the run (before the teardown).
        timeout: the time limit of the run, in seconds.
        timed_out: the time limit ran out before every message was produced and consumed.
        error: the first unexpected error of a thread (``"thread: Class: text"``), if any.
    """

    broker: str
    messages: int
    producers: int
    consumers: int
    size: int
    produced: int
    produce_failed: int = 0
    produce_secs: float
    received: int
    consume_secs: float
    duplicates: int
    missing: int
    per_consumer: List[int]
    latencies_ms: List[float] = attrs.field(repr=False)
    ack_latencies_ms: List[float] = attrs.field(repr=False, factory=list)
    timeline: List[Tuple[float, float]] = attrs.field(repr=False, factory=list)
    elapsed_secs: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    timed_out: bool = False
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Every message was produced, acknowledged and consumed exactly once, in time."""
        return (
            not self.timed_out and self.error is None and self.produced == self.messages
            and self.received == self.messages and self.duplicates == 0 and self.missing == 0
        )

    @property
    def status(self) -> str:
        """``"OK"``, ``"TIMED OUT"`` or ``"FAILED"``."""
        return "OK" if self.ok else "TIMED OUT" if self.timed_out else "FAILED"


def percentile(sorted_values: List[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of sorted values; NaN if there are none."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def _rate(count: int, secs: float) -> str:
    return f"{count / secs:,.0f} msg/s" if secs > 0 and count > 1 else "rate n/a"


def _spread(values: List[float]) -> str:
    return "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f" % (
        percentile(values, 50), percentile(values, 90), percentile(values, 99), values[-1]
    )


def format_report(result: DemoResult) -> str:
    """The demo's result as a few lines of text.

    The figures: produce time runs from the producer threads starting to the last ack; consume
    time from the first message consumed to the last (consumers run alongside the producers);
    produce-to-ack latency is sampled on the producer side; end-to-end latency includes the
    time messages waited in the station while the producers were ahead (the backlog).
    """
    r = result
    failed = f", {r.produce_failed} failed" if r.produce_failed else ""
    lines = []
    if r.timed_out:
        lines.append(
            f"TIMED OUT after {r.elapsed_secs:.1f} s (time limit {r.timeout:g} s): "
            f"{r.produced} of {r.messages} messages produced, {r.messages - r.missing} consumed"
        )
    lines += [
        f"produced {r.produced} of {r.messages} messages of {r.size} B (acknowledged{failed}) with {r.producers} "
        f"producer threads on one connection in {r.produce_secs:.3f} s ({_rate(r.produced, r.produce_secs)})",
        f"consumed {r.received} with a consumer group of {r.consumers} (per consumer: {r.per_consumer}) "
        f"in {r.consume_secs:.3f} s from the first message to the last ({_rate(r.received, r.consume_secs)}; "
        f"consuming started with producing)",
    ]
    if r.ack_latencies_ms:
        lines.append(f"produce->ack latency ms ({len(r.ack_latencies_ms)} sampled): {_spread(r.ack_latencies_ms)}")
    if r.latencies_ms:
        lines.append(f"end-to-end latency ms (includes waiting in the backlog): {_spread(r.latencies_ms)}  "
                     f"mean {statistics.fmean(r.latencies_ms):.2f}")
    if r.error is not None:
        lines.append(f"error: {r.error}")
    lines.append(f"duplicates: {r.duplicates}, missing: {r.missing} -> {r.status}")
    return "\n".join(lines)
