"""``memphis-sync consume STATION``: print (or write) a station's messages as a consumer group
member, acknowledging each one once it is written.

Without ``--follow`` the command ends when ``--count`` messages arrived or nothing arrived for
``--idle`` seconds; with it, it waits for new messages until Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import time
from typing import Any, Dict, Iterator, List, Optional, TextIO

from ..errors import MemphisError
from ..memphis.message import Message
from . import options
from .cmd_produce import _text
from .signals import exit_code, interruptible

__all__ = ["add_arguments", "run", "message_record"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``consume`` options."""
    parser.add_argument("station", help="station to consume from")
    parser.add_argument("-g", "--group", default="", help="consumer group (default: the consumer name)")
    parser.add_argument("--consumer-name", default="memphis-sync-cli", help="consumer name (default: %(default)s)")
    parser.add_argument("-n", "--count", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--follow", action="store_true", help="keep waiting for new messages until Ctrl-C")
    parser.add_argument("--idle", type=float, default=2.0, metavar="SECONDS",
                        help="without --follow, stop when nothing arrived for this long (default: %(default)s)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: data (text, or data_base64), headers, sequence, partition, time")
    parser.add_argument("-o", "--output", help="write the messages to this file instead of standard output")
    parser.add_argument("--no-ack", action="store_true", help="do not acknowledge: the group gets the messages again later")
    parser.add_argument("--batch-size", type=int, default=100, help="messages per fetch, 1..5000 (default: %(default)s)")
    parser.add_argument("--from-sequence", type=int, default=1, metavar="N",
                        help="a new group starts at this stream sequence (default: %(default)s, the first message)")
    options.add_connection_arguments(parser)


def message_record(message: Message) -> Dict[str, Any]:
    """A message as a JSON-ready dict (``data`` as text when it is UTF-8, else ``data_base64``)."""
    payload = bytes(message.get_data())
    record: Dict[str, Any] = {}
    try:
        record["data"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        record["data_base64"] = base64.b64encode(payload).decode("ascii")
    record["headers"] = {k: v for k, v in message.get_headers().items() if not k.startswith("$memphis")}
    record["sequence"] = message.get_sequence_number()
    record["partition"] = message.partition
    sent = message.get_timesent()
    record["time"] = sent.isoformat() if sent is not None else None
    return record


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO, err: TextIO) -> int:
    """Run ``consume``; returns the exit code (0: done, 1: an error)."""
    if args.count is not None and args.count < 1:
        parser.error("--count must be >= 1")
    if not 1 <= args.batch_size <= 5000:
        parser.error("--batch-size must be between 1 and 5000")
    if args.from_sequence < 1:
        parser.error("--from-sequence must be >= 1")
    if not args.idle > 0:
        parser.error("--idle must be > 0")
    got = 0
    caught: List[int] = []
    try:
        with interruptible("consume", caught, "closing the connection"), _output(args.output, out) as sink, \
                options.connect(args) as memphis:
            consumer = memphis.consumer(
                args.station, args.consumer_name, consumer_group=args.group, batch_size=args.batch_size,
                batch_max_time_to_wait_ms=1000, start_consume_from_sequence=args.from_sequence,
            )
            for message in _stream(consumer, args):
                if args.json:
                    sink.write(json.dumps(message_record(message), ensure_ascii=False) + "\n")
                else:
                    sink.write(bytes(message.get_data()).decode("utf-8", errors="replace") + "\n")
                sink.flush()
                got += 1  # written (an interrupted ack gets the message delivered again later)
                if not args.no_ack:
                    message.ack()
                if args.count is not None and got >= args.count:
                    break
    except KeyboardInterrupt:
        print(f"memphis-sync consume: interrupted after {got} message(s)", file=err, flush=True)
        return exit_code(caught)
    except (MemphisError, OSError) as exc:
        print(f"memphis-sync consume: {_text(exc)} (after {got} message(s))", file=err, flush=True)
        return 1
    print(f"consumed {got} message(s) from station {args.station}", file=err, flush=True)
    return 0


def _stream(consumer: Any, args: argparse.Namespace) -> Iterator[Message]:
    """The messages, batch after batch, until ``--count``, ``--idle`` or Ctrl-C."""
    last = time.monotonic()
    while True:
        wanted = args.batch_size if args.count is None else min(args.batch_size, args.count)
        batch = consumer.fetch(batch_size=wanted)
        if batch:
            last = time.monotonic()
            yield from batch
        elif not args.follow and time.monotonic() - last >= args.idle:
            return


@contextlib.contextmanager
def _output(path: Optional[str], out: TextIO) -> Iterator[TextIO]:
    if not path or path == "-":
        yield out
        return
    with open(path, "w", encoding="utf-8") as handle:
        yield handle
