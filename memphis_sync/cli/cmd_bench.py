"""``memphis-sync bench``: produce and consume at the same time on a broker, and measure.

Creates a station (``--station``, refused if it exists: the bench destroys it at the end),
produces ``--messages`` messages from ``--producers`` threads sharing one connection while a
consumer group of ``--consumers`` members consumes them, then prints a summary table: produce
and consume throughput, produce->ack and end-to-end latency percentiles, duplicates and
missing messages. ``--plot out.png`` draws throughput and latency over time (needs matplotlib:
``pip install "memphis-sync[plot]"``).
"""

from __future__ import annotations

import argparse
import math
from typing import List, Sequence, TextIO, Tuple

from ..demo import run_load
from ..demo_report import DemoResult, percentile
from ..errors import MemphisError, MemphisValueError
from ..jetstream import JetStream
from . import cmd_demo, options
from .cmd_produce import _text
from .cmd_stations import format_table, station_streams
from .progress import Progress
from .signals import exit_code, interruptible

__all__ = ["add_arguments", "run", "summary_table", "plot"]

#: Width of a throughput bin of the plot, in seconds.
BIN_SECS = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` options."""
    parser.add_argument("--station", default="memphis-sync-bench", help="station to create for the run (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of the station (default: %(default)s)")
    parser.add_argument("--messages", type=int, default=20000, help="messages in total (default: %(default)s)")
    parser.add_argument("--producers", type=int, default=4, help="producer threads on one connection (default: %(default)s)")
    parser.add_argument("--consumers", type=int, default=2, help="members of the consumer group (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="payload bytes, at least 32 (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="time limit of the run (default: 60 s plus 1 s per 2,000 messages)")
    parser.add_argument("--plot", metavar="PNG", help="draw throughput and latency over time into this PNG file (needs matplotlib)")
    options.add_connection_arguments(parser)


def summary_table(result: DemoResult) -> str:
    """The run's figures as a table."""
    r = result

    def rate(count: int, secs: float) -> str:
        return f"{count / secs:,.0f} msg/s" if secs > 0 and count > 1 else "n/a"

    def spread(values: Sequence[float]) -> Tuple[str, ...]:
        return tuple(f"{percentile(list(values), p):.2f}" if values else "-" for p in (50, 90, 99)) + (
            (f"{values[-1]:.2f}",) if values else ("-",))

    rows = [
        ("produce", f"{r.produced}/{r.messages}", f"{r.produce_secs:.2f} s", rate(r.produced, r.produce_secs),
         *spread(r.ack_latencies_ms)),
        ("consume", f"{r.received}/{r.messages}", f"{r.consume_secs:.2f} s", rate(r.received, r.consume_secs),
         *spread(r.latencies_ms)),
    ]
    table = format_table(("", "MESSAGES", "TIME", "THROUGHPUT", "P50 MS", "P90 MS", "P99 MS", "MAX MS"), rows)
    notes = (f"{r.size} B messages, {r.producers} producers, a group of {r.consumers} consumers; latency: produce->ack "
             f"(sampled) and end to end (includes waiting in the backlog); duplicates {r.duplicates}, missing {r.missing}"
             f" -> {r.status}")
    return table + "\n" + notes


def _bins(timeline: List[Tuple[float, float]]) -> Tuple[List[float], List[float]]:
    if not timeline:
        return [], []
    count = int(math.floor(max(t for t, _ in timeline) / BIN_SECS)) + 1
    per_bin = [0] * count
    for t, _ in timeline:
        per_bin[int(t / BIN_SECS)] += 1
    return [(i + 0.5) * BIN_SECS for i in range(count)], [n / BIN_SECS for n in per_bin]


def plot(result: DemoResult, path: str) -> None:
    """Draw consume throughput and end-to-end latency over time into a PNG file.

    Raises:
        MemphisValueError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise MemphisValueError('--plot needs matplotlib: pip install "memphis-sync[plot]"') from None
    xs, rates = _bins(result.timeline)
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 5))
    try:
        top.plot(xs, rates, drawstyle="steps-mid")
        top.set_ylabel("consumed msg/s")
        top.set_title(f"memphis-sync bench: {result.messages} x {result.size} B, {result.producers} producers, "
                      f"{result.consumers} consumers")
        bottom.plot([t for t, _ in result.timeline], [lat for _, lat in result.timeline], ",", alpha=0.6)
        bottom.set_ylabel("end-to-end latency ms")
        bottom.set_xlabel("seconds from the start")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO, err: TextIO) -> int:
    """Run ``bench``; returns the exit code (0: every message produced and consumed once)."""
    cmd_demo.check(args, parser)  # the same load options as the demo
    if args.partitions < 1:
        parser.error("--partitions must be >= 1")
    shown = Progress(out, err)
    caught: List[int] = []
    try:
        with interruptible("bench", caught, "stopping the threads"), options.connect(args) as memphis:
            if args.station.lower() in station_streams(JetStream(memphis.connection)):
                print(f"memphis-sync bench: station {args.station!r} exists; the bench needs a new one "
                      "(it destroys it at the end): give --station", file=err, flush=True)
                return 1
            try:
                result = run_load(memphis, args.station, partitions=args.partitions, messages=args.messages,
                                  producers=args.producers, consumers=args.consumers, size=args.size,
                                  timeout=args.timeout, progress=shown.step, on_counts=shown.update)
            finally:
                shown.close()
    except KeyboardInterrupt:
        print("memphis-sync bench: interrupted", file=err, flush=True)
        return exit_code(caught)
    except MemphisError as exc:
        print(f"memphis-sync bench: {_text(exc)}", file=err, flush=True)
        return 1
    print(summary_table(result), file=out, flush=True)
    if args.plot:
        try:
            plot(result, args.plot)
        except (MemphisError, OSError) as exc:
            print(f"memphis-sync bench: {_text(exc)}", file=err, flush=True)
            return 1
        print(f"plot written to {args.plot}", file=err, flush=True)
    return 0 if result.ok else 1
