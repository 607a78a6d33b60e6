"""The one-shot reply slot that a blocking request (or ``flush()``) waits on.

The reader thread fills it (:meth:`_Waiter.set`); the waiting thread blocks on a plain lock
acquire, which is fast and interruptible by signals (Ctrl-C).
"""

from __future__ import annotations

import threading
from typing import List, Optional

from .._timeouts import left
from .protocol import Msg

__all__: List[str] = []


class _Waiter:
    """A one-shot slot the reader thread fills; waiting is a plain lock acquire (fast, interruptible)."""

    __slots__ = ("_lock", "value", "error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Optional[Msg] = None
        self.error: Optional[BaseException] = None

    def set(self, value: Optional[Msg], error: Optional[BaseException] = None) -> None:
        self.value = value
        self.error = error
        try:
            self._lock.release()
        except RuntimeError:  # already set
            pass

    def wait(self, deadline: Optional[float]) -> bool:
        """Wait until set or until ``deadline`` (``time.monotonic()``; None = no limit)."""
        if deadline is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=left(deadline))
