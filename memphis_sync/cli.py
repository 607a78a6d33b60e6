"""The ``memphis-sync`` command line (also ``python -m memphis_sync``).

Subcommands:

* ``demo``: start a local Memphis broker on a free port, create a station, produce a few thousand
  messages from several producer threads sharing one connection, consume them with a consumer
  group, print what happened (counts, throughput, latency percentiles), stop the broker
  (see :mod:`memphis_sync.demo`). Progress bars on a terminal (tqdm), progress lines otherwise;
  a time limit (``--timeout``, exit 1 when it runs out); SIGINT and SIGTERM stop the broker and
  remove the temporary files, exit 130 / 143.
* ``broker``: run a local Memphis broker (nats-server plus the Memphis control plane) until
  Ctrl-C; ``broker dls STATION`` lists a station's dead-letter messages.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

__all__ = ["main"]

#: Seconds between two progress lines when there is no progress bar.
PLAIN_INTERVAL = 2.0


class _Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C, so every ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Progress:
    """Shows the demo's steps and counts: tqdm bars on a terminal, else a line now and then.

    The bars (produced and consumed, on ``err``) need tqdm (``pip install "memphis-sync[broker]"``)
    and ``err`` to be a terminal (``bars`` overrides that check); otherwise a plain line goes to
    ``out`` every ``interval`` seconds. Steps are lines on ``out``. Called on one thread only (the
    demo calls its hooks on the calling thread).
    """

    def __init__(self, out: TextIO, err: TextIO, *, bars: Optional[bool] = None, interval: float = PLAIN_INTERVAL) -> None:
        self._out = out
        self._err = err
        self._tqdm: Any = _load_tqdm() if (bars if bars is not None else _is_terminal(err)) else None
        self._bars: List[Any] = []
        self._interval = interval
        self._started = time.monotonic()
        self._next_line = self._started + interval
        self.counts = (0, 0, 0)

    def step(self, text: str) -> None:
        """Print a step of the demo (above the bars, if any)."""
        if self._bars:
            self._tqdm.write(text, file=self._out)
            self._out.flush()
        else:
            print(text, file=self._out, flush=True)

    def update(self, produced: int, consumed: int, total: int) -> None:
        """The demo's ``on_counts`` hook."""
        self.counts = (produced, consumed, total)
        if self._tqdm is not None:
            if not self._bars:
                self._bars = [
                    self._tqdm(total=total, desc=f"{name:>8}", unit="msg", position=i, file=self._err, dynamic_ncols=True)
                    for i, name in enumerate(("produced", "consumed"))
                ]
            for bar, count in zip(self._bars, (produced, consumed)):
                bar.update(count - bar.n)
            return
        now = time.monotonic()
        if now >= self._next_line:
            self._next_line = now + self._interval
            print(f"progress: {produced} produced, {consumed} consumed of {total} "
                  f"({now - self._started:.0f} s)", file=self._out, flush=True)

    def close(self) -> None:
        """Leave the bars as they are, and move the cursor below them."""
        bars, self._bars = self._bars, []
        for bar in bars:
            bar.close()


def _is_terminal(stream: TextIO) -> bool:
    """A terminal with a size (tqdm draws nothing on a pseudo-terminal whose size is unset)."""
    try:
        return stream.isatty() and min(os.get_terminal_size(stream.fileno())) > 0
    except (AttributeError, ValueError, OSError):
        return False


def _load_tqdm() -> Any:
    """The tqdm class without its monitor thread (we refresh often enough), or None if missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    class Bar(tqdm):  # type: ignore[misc]  # tqdm ships no types: its class is Any to mypy
        monitor_interval = 0

    return Bar


def _demo(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Run ``memphis-sync demo``; SIGINT and SIGTERM end it cleanly with 128 + the signal number.

    The first signal unwinds the demo like Ctrl-C (threads stopped, broker stopped, temporary
    directories removed); a second one during that teardown is ignored, a third cuts it short.
    """
    from .demo import format_report, run_demo
    from .errors import MemphisError

    out = out or sys.stdout
    err = err or sys.stderr
    caught: List[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        caught.append(signum)
        if len(caught) == 2:  # no print(): the main thread may be inside one
            with contextlib.suppress(OSError):
                os.write(2, b"memphis-sync demo: stopping the broker; signal once more to abandon the teardown\n")
            return
        raise _Interrupted(signum)

    previous: Dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # a shell's background job ignores SIGINT: stay deaf
                previous[sig] = signal.signal(sig, on_signal)
    shown = _Progress(out, err)
    try:
        try:
            result = run_demo(args.messages, args.producers, args.consumers, args.size, progress=shown.step,
                              timeout=args.timeout, on_counts=shown.update)
        finally:  # the teardown is over: a signal now has its usual effect
            for sig, handler in previous.items():
                signal.signal(sig, handler)
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``memphis-sync`` command."""
    parser = argparse.ArgumentParser(prog="memphis-sync", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start a local broker and produce/consume messages")
    demo.add_argument("--messages", type=int, default=5000, help="messages to produce in total, split over the producers (default: %(default)s)")
    demo.add_argument("--producers", type=int, default=4, help="producer threads, each with its own producer on one shared connection (default: %(default)s)")
    demo.add_argument("--consumers", type=int, default=3, help="members of the consumer group, each fetching on its own thread (default: %(default)s)")
    demo.add_argument("--size", type=int, default=128, help="payload bytes per message, at least 32 (default: %(default)s)")
    demo.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help="time limit of the whole run; when it runs out the demo stops, reports what it got and exits with 1 "
                           "(default: 60 s plus 1 s per 2,000 messages)")
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
        if args.messages < args.producers:
            parser.error("--messages must be >= --producers")
        if args.timeout is not None and not args.timeout > 0:
            parser.error("--timeout must be > 0")
        return _demo(args)
    if args.command == "broker":
        return broker_cli.run(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
