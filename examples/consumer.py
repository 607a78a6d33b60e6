"""Consume N messages from a Memphis station, print each as a JSON line, ack it, then exit.

The consumer joins the consumer group ``--group``: a new group starts at the station's first
message, an existing one where it stopped; several copies of this script in one group share
the messages.

Connection settings: the ``MEMPHIS_*`` environment variables (see ``memphis_env.py``:
MEMPHIS_HOST, MEMPHIS_PORT, MEMPHIS_USERNAME, MEMPHIS_CONNECTION_TOKEN or MEMPHIS_PASSWORD,
MEMPHIS_ACCOUNT_ID); the defaults fit ``memphis-sync broker``::

    python consumer.py --station orders --group billing --count 100

Exit status: 0 after N messages, 1 when fewer came within ``--timeout`` seconds, 2 when the
broker cannot be reached or refuses (or a ``MEMPHIS_*`` variable is bad), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, List, Optional

from memphis_env import connect_kwargs

import memphis_sync


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Consume N messages from a Memphis station.")
    parser.add_argument("--station", default="orders", help="station name (default: orders)")
    parser.add_argument("--group", default="example-consumer", help="consumer group, also the consumer's name")
    parser.add_argument("--count", type=int, default=10, help="messages to consume before exiting (default: 10)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="give up after this many seconds without all of them (default: 30)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be >= 1")
    if not args.timeout > 0:
        parser.error("--timeout must be > 0")
    return args


def decode(msg: memphis_sync.Message) -> Any:
    """The payload as JSON if it is JSON, else as text."""
    text = bytes(msg.get_data()).decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    received = 0
    deadline = time.monotonic() + args.timeout
    try:
        with memphis_sync.connect(**connect_kwargs()) as memphis:
            consumer = memphis.consumer(args.station, args.group, batch_size=min(args.count, 1000),
                                        batch_max_time_to_wait_ms=500)
            print(f"consumer: waiting for {args.count} messages on {args.station!r} (group {args.group!r})",
                  file=sys.stderr, flush=True)
            while received < args.count and time.monotonic() < deadline:
                for msg in consumer.fetch(min(args.count - received, 1000)):
                    print(json.dumps({"seq": msg.get_sequence_number(), "data": decode(msg)}), flush=True)
                    msg.ack()
                    received += 1
    except memphis_sync.MemphisError as exc:  # also a bad MEMPHIS_* variable (MemphisValueError)
        print(f"consumer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"consumer: interrupted after {received} messages", file=sys.stderr)
        return 130
    if received < args.count:
        print(f"consumer: only {received} of {args.count} messages within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
