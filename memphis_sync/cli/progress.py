"""Progress on a terminal for the commands: tqdm bars when the output is a terminal, a plain
line now and then otherwise."""

from __future__ import annotations

import os
import time
from typing import Any, List, Optional, TextIO

__all__ = ["Progress", "PLAIN_INTERVAL", "load_tqdm", "is_terminal"]

#: Seconds between two progress lines when there is no progress bar.
PLAIN_INTERVAL = 2.0


class Progress:
    """Shows the demo's steps and counts: tqdm bars on a terminal, else a line now and then.

    The bars (produced and consumed, on ``err``) need tqdm (``pip install "memphis-sync[broker]"``)
    and ``err`` to be a terminal (``bars`` overrides that check); otherwise a plain line goes to
    ``out`` every ``interval`` seconds. Steps are lines on ``out``. Called on one thread only (the
    demo calls its hooks on the calling thread).
    """

    def __init__(self, out: TextIO, err: TextIO, *, bars: Optional[bool] = None, interval: float = PLAIN_INTERVAL) -> None:
        self._out = out
        self._err = err
        self._tqdm: Any = load_tqdm() if (bars if bars is not None else is_terminal(err)) else None
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


def is_terminal(stream: TextIO) -> bool:
    """A terminal with a size (tqdm draws nothing on a pseudo-terminal whose size is unset)."""
    try:
        return stream.isatty() and min(os.get_terminal_size(stream.fileno())) > 0
    except (AttributeError, ValueError, OSError):
        return False


def load_tqdm() -> Any:
    """The tqdm class without its monitor thread (we refresh often enough), or None if missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    class Bar(tqdm):  # type: ignore[misc]  # tqdm ships no types: its class is Any to mypy
        monitor_interval = 0

    return Bar
