"""Produce N messages to a Memphis station, then exit.

Each message is a JSON object ``{"n": i, "text": ...}`` with the message id ``<prefix>-<i>``,
so running the script again with the same prefix stores nothing twice (within the station's
idempotency window).

Connection settings: the ``MEMPHIS_*`` environment variables (see ``memphis_env.py``:
MEMPHIS_HOST, MEMPHIS_PORT, MEMPHIS_USERNAME, MEMPHIS_CONNECTION_TOKEN or MEMPHIS_PASSWORD,
MEMPHIS_ACCOUNT_ID); the defaults fit ``memphis-sync broker``::

    python producer.py --station orders --count 100
    python producer.py --station orders --count 100000 --nonblocking   # pipelined: much faster

Exit status: 0 when every message was acknowledged, 2 when the broker cannot be reached or
refuses (or a ``MEMPHIS_*`` variable is bad), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from memphis_env import connect_kwargs

import memphis_sync


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Produce N JSON messages to a Memphis station.")
    parser.add_argument("--station", default="orders", help="station name (created if missing; default: orders)")
    parser.add_argument("--name", default="example-producer", help="producer name (default: example-producer)")
    parser.add_argument("--count", type=int, default=10, help="messages to produce (default: 10)")
    parser.add_argument("--text", default="hello", help="the text field of every message (default: hello)")
    parser.add_argument("--id-prefix", default="msg", help="message ids are <prefix>-<n> (default: msg)")
    parser.add_argument("--nonblocking", action="store_true",
                        help="do not wait for each ack: pipeline them, then wait for all at the end")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be >= 0")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        with memphis_sync.connect(**connect_kwargs()) as memphis:
            producer = memphis.producer(args.station, args.name)
            for n in range(args.count):
                message = {"n": n, "text": args.text}
                producer.produce(message, msg_id=f"{args.id_prefix}-{n}", nonblocking=args.nonblocking)
            producer.flush(timeout=60)  # the nonblocking acks (nothing to wait for otherwise)
    except memphis_sync.MemphisError as exc:  # also a bad MEMPHIS_* variable (MemphisValueError)
        print(f"producer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("producer: interrupted", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    print(f"produced {args.count} messages to {args.station!r} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
