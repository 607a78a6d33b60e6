"""The connection's callbacks and the events thread that runs them.

``memphis-sync-events-<n>`` (started on first use) runs the user's connection callbacks
(``on_disconnected``, ``on_reconnected``, ``on_closed``, ``on_error``, ``on_discovered_server``,
``on_lame_duck``) and any work the reader thread hands off because it may call user code
(:meth:`_Callbacks._run_off_reader`). So user callbacks never run on the reader thread, and
never with a connection lock held: the reader only puts an item on a queue.

:class:`_Callbacks` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns
``_callbacks`` (set once by the constructor), ``_events`` and ``_events_thread``; it holds the
connection's ``_state_lock`` briefly on each emit (the thread is started under it on first use).
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
from typing import Any, Callable, List, Optional

from ._core import _ConnectionCore

__all__: List[str] = []

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)

class _Callbacks(_ConnectionCore):
    """Queue connection callbacks for the events thread, which runs them one at a time."""

    def _init_events_state(self) -> None:
        self._events = None
        self._events_thread = None

    def _emit(self, name: str, error: Optional[BaseException] = None) -> None:
        callback = self._callbacks.get(name)
        if callback is None:
            return
        self._events_queue().put((callback, error))

    def _run_off_reader(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the events thread (for work that may call user code)."""
        self._events_queue().put((lambda conn: fn(), None))

    def _report_error(self, error: BaseException) -> None:
        if self._callbacks.get("error") is None:
            logger.error("asynchronous error: %s", error)
            return
        self._emit("error", error)

    def _events_queue(self) -> "queue_mod.SimpleQueue[Any]":
        with self._state_lock:
            if self._events is None:
                self._events = queue_mod.SimpleQueue()
                self._events_thread = threading.Thread(
                    target=self._events_main, args=(self._events,), name=f"memphis-sync-events-{self._id}", daemon=True
                )
                self._events_thread.start()
            return self._events

    def _events_main(self, q: "queue_mod.SimpleQueue[Any]") -> None:
        while True:
            item = q.get()
            if item is None:
                return
            callback, error = item
            try:
                if error is None:
                    callback(self)
                else:
                    callback(self, error)
            except Exception:
                logger.exception("connection callback %r raised", callback)
