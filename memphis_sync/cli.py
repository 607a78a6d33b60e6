"""The ``memphis-sync`` command line (also ``python -m memphis_sync``).

Subcommands:

* ``demo``: start a local Memphis broker on a free port, create a station, produce a few thousand
  messages from several producer threads sharing one connection, consume them with a consumer
  group, print what happened (counts, throughput, latency percentiles), stop the broker
  (see :mod:`memphis_sync.demo`).
* ``broker``: run a local Memphis broker (nats-server plus the Memphis control plane) until
  Ctrl-C; ``broker dls STATION`` lists a station's dead-letter messages.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import format_report, run_demo

    result = run_demo(args.messages, args.producers, args.consumers, args.size, progress=print)
    print(format_report(result))
    print("broker stopped")
    return 0 if result.ok else 1


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
        if args.size < 32:
            parser.error("--size must be >= 32")
        return _demo(args)
    if args.command == "broker":
        return broker_cli.run(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
