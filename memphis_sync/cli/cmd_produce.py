"""``memphis-sync produce STATION [MESSAGE ...]``: produce messages from the arguments, a file or
standard input (one message per line), each acknowledged by the broker before the command ends.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
from typing import IO, Any, Dict, Iterator, List, Optional, TextIO

from ..errors import MemphisError
from . import options
from .signals import exit_code, interruptible

__all__ = ["add_arguments", "run"]

#: Seconds each message's ack may take.
ACK_WAIT = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``produce`` options."""
    parser.add_argument("station", help="station to produce to (created by the broker if missing)")
    parser.add_argument("messages", nargs="*", metavar="MESSAGE",
                        help="messages to produce; without any, lines are read from --file or standard input")
    parser.add_argument("-f", "--file", help="read one message per line from this file ('-': standard input)")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="NAME=VALUE",
                        help="a header of every message (repeat for more)")
    parser.add_argument("--msg-id", help="idempotency id (one message only): the broker drops a repeat within the station's window")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--partition-key", help="produce to the partition this key hashes to")
    where.add_argument("--partition-number", type=int, help="produce to this partition (1..N)")
    parser.add_argument("--producer-name", default=None, help="producer name (default: memphis-sync-cli-<process id>)")
    parser.add_argument("--keep-newlines", action="store_true", help="keep the line ends of lines read from a file or stdin")
    options.add_connection_arguments(parser)


def _headers(pairs: List[str], parser_error: Any) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            parser_error(f"--header needs NAME=VALUE, got {pair!r}")
        headers[name] = value
    return headers


def _lines(stream: IO[str], keep_newlines: bool) -> Iterator[str]:
    for line in stream:
        yield line if keep_newlines else line.rstrip("\r\n")


def _messages(args: argparse.Namespace, stdin: TextIO) -> Iterator[str]:
    if args.messages:
        yield from args.messages
        return
    if args.file and args.file != "-":
        with open(args.file, encoding="utf-8") as handle:
            yield from _lines(handle, args.keep_newlines)
        return
    yield from _lines(stdin, args.keep_newlines)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO, err: TextIO,
        stdin: Optional[TextIO] = None) -> int:
    """Run ``produce``; returns the exit code (0: every message acknowledged)."""
    if args.messages and args.file:
        parser.error("give messages as arguments or --file, not both")
    if args.msg_id is not None and len(args.messages) != 1:
        parser.error("--msg-id goes with exactly one MESSAGE argument")
    headers = _headers(args.header, parser.error)
    where = {}
    if args.partition_key is not None:
        where["producer_partition_key"] = args.partition_key
    if args.partition_number is not None:
        where["producer_partition_number"] = args.partition_number
    sent = acked = 0
    futures: List["concurrent.futures.Future[Any]"] = []
    caught: List[int] = []
    try:
        with interruptible("produce", caught, "closing the connection"), options.connect(args) as memphis:
            producer = memphis.producer(args.station, args.producer_name or f"memphis-sync-cli-{os.getpid()}")
            for message in _messages(args, stdin or sys.stdin):
                future = producer.produce(message, ack_wait_sec=ACK_WAIT, headers=headers or None,
                                          nonblocking=True, msg_id=args.msg_id, **where)
                assert future is not None
                futures.append(future)
                sent += 1
                if len(futures) >= 1000:
                    acked += _settle(futures)
            acked += _settle(futures)
            producer.destroy()
    except KeyboardInterrupt:
        print(f"memphis-sync produce: interrupted; {acked} of {sent} message(s) acknowledged", file=err, flush=True)
        return exit_code(caught)
    except (MemphisError, OSError, UnicodeDecodeError, concurrent.futures.TimeoutError) as exc:
        print(f"memphis-sync produce: {_text(exc)} ({acked} of {sent} message(s) acknowledged)", file=err, flush=True)
        return 1
    print(f"produced {acked} message(s) to station {args.station}", file=err, flush=True)
    return 0


def _settle(futures: List["concurrent.futures.Future[Any]"]) -> int:
    """Wait for each ack in turn (the first failure raises); empties ``futures``."""
    done = 0
    try:
        for future in futures:
            future.result(timeout=ACK_WAIT)
            done += 1
    finally:
        del futures[:done]
    return done


def _text(exc: BaseException) -> str:
    """An error's text without the library's ``memphis:`` prefix (the command names itself)."""
    text = str(exc)
    return text[len("memphis: "):] if text.startswith("memphis: ") else text
