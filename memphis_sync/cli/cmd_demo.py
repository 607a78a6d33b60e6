"""``memphis-sync demo``: a local broker on a free port, producers and a consumer group, a report
(:mod:`memphis_sync.demo`). SIGINT and SIGTERM end it cleanly with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional, TextIO

from ..demo import format_report, run_demo
from ..errors import MemphisError
from .progress import Progress
from .signals import interruptible

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` options."""
    parser.add_argument("--messages", type=int, default=5000, help="messages to produce in total, split over the producers (default: %(default)s)")
    parser.add_argument("--producers", type=int, default=4, help="producer threads, each with its own producer on one shared connection (default: %(default)s)")
    parser.add_argument("--consumers", type=int, default=3, help="members of the consumer group, each fetching on its own thread (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="payload bytes per message, at least 32 (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="time limit of the whole run; when it runs out the demo stops, reports what it got and exits with 1 "
                             "(default: 60 s plus 1 s per 2,000 messages)")


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse bad option values with a usage error (exit 2)."""
    for name in ("messages", "producers", "consumers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.size < 32:
        parser.error("--size must be >= 32")
    if args.messages < args.producers:
        parser.error("--messages must be >= --producers")
    if args.timeout is not None and not args.timeout > 0:
        parser.error("--timeout must be > 0")


def run(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Run ``memphis-sync demo``; SIGINT and SIGTERM end it cleanly with 128 + the signal number.

    The first signal unwinds the demo like Ctrl-C (threads stopped, broker stopped, temporary
    directories removed); a second one during that teardown is ignored, a third cuts it short.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    shown = Progress(out, err)
    caught: List[int] = []
    try:
        with interruptible("demo", caught, "stopping the broker"):
            try:
                result = run_demo(args.messages, args.producers, args.consumers, args.size, progress=shown.step,
                                  timeout=args.timeout, on_counts=shown.update)
            finally:
                shown.close()
    except KeyboardInterrupt:
        signum = caught[0] if caught else signal.SIGINT
        produced, consumed, total = shown.counts
        counts = f" after {produced} produced and {consumed} consumed of {total} messages" if total else ""
        done = ("teardown cut short: the broker may still be running" if len(caught) > 2
                else "broker stopped, temporary files removed")
        print(f"memphis-sync demo: interrupted by {signal.Signals(signum).name}{counts}; {done}", file=err, flush=True)
        return 128 + signum
    except MemphisError as exc:  # BrokerError included: no nats-server, say
        print(f"memphis-sync demo: {exc}", file=err, flush=True)
        return 1
    print(format_report(result), file=out)
    print("broker stopped", file=out, flush=True)
    return 0 if result.ok else 1
