"""The ``memphis-sync`` command line (also ``python -m memphis_sync``).

Commands: ``produce``, ``consume``, ``stations``, ``bench`` (a client of any Memphis broker; the
connection options are shared, see :mod:`memphis_sync.cli.options`), ``demo`` (a local broker,
producers and a consumer group, a report) and ``broker`` (run a local Memphis broker).

Exit codes: 0 done, 1 the command failed (it says why on standard error), 2 a usage error,
128 + the signal number when SIGINT or SIGTERM stopped it (130, 143).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Dict, Optional, Sequence, TextIO

from .._version import __version__
from . import cmd_bench, cmd_consume, cmd_demo, cmd_produce, cmd_stations

__all__ = ["main", "build_parser"]

DESCRIPTION = "memphis-sync: produce, consume, inspect and benchmark Memphis stations, or run a local Memphis broker."
EPILOG = ("Connection options of produce, consume, stations and bench also come from MEMPHIS_URL, MEMPHIS_HOST, "
          "MEMPHIS_PORT, MEMPHIS_USERNAME, MEMPHIS_CONNECTION_TOKEN, MEMPHIS_PASSWORD, MEMPHIS_ACCOUNT_ID and "
          "MEMPHIS_CERT_FILE / MEMPHIS_KEY_FILE / MEMPHIS_CA_FILE. Exit codes: 0 done, 1 failed, 2 usage error, "
          "130/143 interrupted by SIGINT/SIGTERM.")

_VERBS = {
    "produce": (cmd_produce, "produce messages from arguments, a file or standard input"),
    "consume": (cmd_consume, "print or write a station's messages as a consumer group member"),
    "stations": (cmd_stations, "list stations, or inspect some (partitions, retention, messages, groups)"),
    "bench": (cmd_bench, "measure produce/consume throughput and latency on a broker"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``memphis-sync`` argument parser, with every command."""
    parser = argparse.ArgumentParser(prog="memphis-sync", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"memphis-sync {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level on standard error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in _VERBS.items():
        verb = sub.add_parser(name, help=summary, description=(module.__doc__ or summary).split("\n\n")[0].replace("``", ""))
        module.add_arguments(verb)
        verb.set_defaults(verb_parser=verb)
    demo = sub.add_parser("demo", help="start a local broker and produce/consume messages with a report",
                          description="Start a local Memphis broker on a free port, produce messages from several "
                                      "threads sharing one connection, consume them with a consumer group, report, "
                                      "stop the broker.")
    cmd_demo.add_arguments(demo)
    demo.set_defaults(verb_parser=demo)
    broker = sub.add_parser("broker", help="run a local Memphis broker until Ctrl-C",
                            description="Run a local Memphis broker (nats-server plus the Memphis control plane) "
                                        "in the foreground until Ctrl-C or SIGTERM.")
    from ..broker import cli as broker_cli

    broker_cli.add_arguments(broker)
    return parser


def main(argv: Optional[Sequence[str]] = None, *, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Entry point of the ``memphis-sync`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        cmd_demo.check(args, args.verb_parser)
        return cmd_demo.run(args, out, err)
    if args.command == "broker":
        from ..broker import cli as broker_cli

        return broker_cli.run(args, out, err)
    runners: Dict[str, Callable[..., int]] = {name: module.run for name, (module, _) in _VERBS.items()}
    return runners[args.command](args, args.verb_parser, out, err)
