"""The ``memphis-sync`` command line (also ``python -m memphis_sync``).

Subcommands:

* ``demo``: start a local broker on a free port, produce and consume a few thousand messages with
  several producer threads sharing one connection and a queue group of consumers, print what
  happened (counts, throughput, latency percentiles), stop the broker.
* ``broker``: run a local Memphis broker (nats-server plus the Memphis control plane) until
  Ctrl-C; ``broker dls STATION`` lists a station's dead-letter messages.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from typing import List, Optional, Sequence

__all__ = ["main"]


def _percentile(sorted_values: List[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def run_demo(messages: int, producers: int, consumers: int, size: int, out=sys.stdout) -> int:
    """Run the demo; returns a process exit code (0 when every message arrived exactly once)."""
    from .broker import NatsServer
    from .connection import connect

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    with NatsServer(port=0) as server:
        say(f"local broker: nats-server pid {server.pid} on {server.url} (store {server.store_dir})")
        conn = connect(server.url, name="memphis-sync-demo")
        try:
            received: List[float] = []
            seen = set()
            duplicates = 0
            lock = threading.Lock()
            done = threading.Event()

            def on_message(msg) -> None:
                nonlocal duplicates
                now = time.perf_counter()
                sent_at = float(msg.headers["sent-at"])
                key = msg.payload[:16]
                with lock:
                    if key in seen:
                        duplicates += 1
                    seen.add(key)
                    received.append(now - sent_at)
                    if len(received) >= messages:
                        done.set()

            subs = [conn.subscribe("demo.orders", queue="workers", callback=on_message) for _ in range(consumers)]
            conn.flush()
            per_producer = messages // producers
            total = per_producer * producers
            padding = b"x" * max(0, size - 16)

            def produce(n: int) -> None:
                for i in range(per_producer):
                    key = f"{n:06d}-{i:09d}".encode()[:16].ljust(16, b"-")
                    conn.publish("demo.orders", key + padding, headers={"sent-at": repr(time.perf_counter())})

            t0 = time.perf_counter()
            threads = [threading.Thread(target=produce, args=(n,), name=f"demo-producer-{n}") for n in range(producers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            conn.flush()
            produced_secs = time.perf_counter() - t0
            ok = done.wait(30) or len(received) >= total
            consumed_secs = time.perf_counter() - t0
            for sub in subs:
                sub.unsubscribe()
            lat = sorted(received)
            per_consumer = [s.delivered for s in subs]
            say(f"produced {total} messages of {size} B with {producers} threads on one connection "
                f"in {produced_secs:.3f} s ({total / produced_secs:,.0f} msg/s)")
            say(f"consumed {len(received)} messages with a queue group of {consumers} "
                f"(per consumer: {per_consumer}) in {consumed_secs:.3f} s ({len(received) / consumed_secs:,.0f} msg/s)")
            if lat:
                say("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f" % (
                    _percentile(lat, 50) * 1e3, _percentile(lat, 90) * 1e3, _percentile(lat, 99) * 1e3,
                    lat[-1] * 1e3, statistics.fmean(lat) * 1e3))
            say(f"duplicates: {duplicates}, missing: {total - len(seen)}")
            success = ok and duplicates == 0 and len(seen) == total
        finally:
            conn.close()
    say("broker stopped; " + ("OK" if success else "FAILED"))
    return 0 if success else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``memphis-sync`` command."""
    parser = argparse.ArgumentParser(prog="memphis-sync", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start a local broker and produce/consume messages")
    demo.add_argument("--messages", type=int, default=5000)
    demo.add_argument("--producers", type=int, default=4)
    demo.add_argument("--consumers", type=int, default=3)
    demo.add_argument("--size", type=int, default=128)
    broker = sub.add_parser("broker", help="run a local Memphis broker until Ctrl-C")
    from .broker import cli as broker_cli

    broker_cli.add_arguments(broker)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        for name in ("messages", "producers", "consumers"):
            if getattr(args, name) < 1:
                parser.error(f"--{name} must be >= 1")
        if args.size < 16:
            parser.error("--size must be >= 16")
        return run_demo(args.messages, args.producers, args.consumers, args.size)
    if args.command == "broker":
        return broker_cli.run(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
