"""Ending a connection: drain and close, stop its threads, fail what waits, and the
interpreter-exit hook.

``drain()`` and ``close()`` (public on the connection) run ``_drain`` and ``_close`` here.
``_shutdown`` is the one way a connection becomes CLOSED (``close()``, ``drain()``, the reader
giving up on reconnecting, interpreter exit; only a forked child's inherited copy is marked
closed by ``fork`` instead): under ``_state_lock`` it marks it closed, fails the ``flush()``
waiters and takes the subscriptions and reply slots; then, with no lock held, it closes the
socket, fails those, joins the threads (within the deadline), emits ``closed`` and stops the
events thread.

At interpreter exit, live connections of this process that were never closed finish what they
owe the server, within ``memphis_sync.nats.connection.exit_flush_timeout`` seconds over all of
them (the setting users set; read from that module at exit time).

:class:`_Shutdown` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns
``_closing`` (set once, when closing starts; every thread loop checks it) and ``_exit_hooks``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from typing import List, Optional

from .. import _defaults
from .._timeouts import describe, left
from ..errors import ConnectionClosedError, DrainTimeout, ForkedConnectionError, MemphisError, UnconfirmedPublishWarning
from ._core import _ConnectionCore
from .fork import _fork_generation, _live_connections
from .states import CLOSED, CONNECTED, DRAINING

__all__: List[str] = []

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)


def _flush_at_exit(timeout: float) -> None:
    """At interpreter exit: finish what live connections of this process still owe the server.

    Daemon threads still run while ``atexit`` hooks do, so queued frames can be written and
    acks can arrive. Each connection runs its exit hooks (JetStream waits for its in-flight
    publishes), then flushes and closes, all within ``timeout`` seconds together (the
    connection module registers it with its ``exit_flush_timeout``, read at exit); whatever
    could not be confirmed is reported as an :class:`UnconfirmedPublishWarning` with its count.
    """
    deadline = time.monotonic() + timeout
    for conn in list(_live_connections):
        if not isinstance(conn, _Shutdown):  # every live connection is one (the set is typed by the fork mixin)
            continue
        if conn._status is CLOSED or conn._fork_gen != _fork_generation[0] or conn._pid != os.getpid():
            continue
        try:
            conn._finish_at_exit(deadline)
        except Exception:  # never let one connection stop the others (or the exit)
            logger.debug("exit flush of connection %s failed", conn._id, exc_info=True)



class _Shutdown(_ConnectionCore):
    """Close for good: once, from any thread (the reader's own included)."""

    def _init_shutdown_state(self) -> None:
        self._closing = threading.Event()
        self._exit_hooks = []

    def _drain(self, deadline: Optional[float], timeout: Optional[float]) -> None:
        """``drain()``: unsubscribe all, flush, let subscribers finish, then close."""
        self._check_fork()
        if self._status is CLOSED:
            return
        subs = [s for s in list(self._subs.values()) if s is not self._resp_sub]
        for sub in subs:
            try:
                sub.unsubscribe()
            except MemphisError:
                pass
        try:
            self.flush(left(deadline))
        except MemphisError:
            logger.debug("flush during drain failed", exc_info=True)
        with self._state_lock:
            if self._status is CONNECTED:
                self._set_status(DRAINING)
        ok = True
        for sub in subs:
            ok = sub._wait_processed(left(deadline)) and ok
        self.close(timeout=_defaults.CLOSE_TIMEOUT if deadline is None else max(0.5, left(deadline) or 0.0))
        if not ok:
            raise DrainTimeout(f"drain: subscriptions still had messages after {describe(timeout)}")

    def _close(self, deadline: Optional[float]) -> None:
        """``close()``: a final flush within half of what is left, then ``_shutdown``."""
        if _fork_generation[0] != self._fork_gen or os.getpid() != self._pid:
            try:
                self._handle_fork()
            except ForkedConnectionError:
                return
        with self._state_lock:
            if self._status is CLOSED:
                return
            was = self._status
        if was in (CONNECTED, DRAINING):
            wait = min(self.connect_timeout, _defaults.CLOSE_TIMEOUT / 2)
            if deadline is not None:
                wait = min(wait, (left(deadline) or 0.0) / 2)
            try:
                self.flush(timeout=wait)
            except MemphisError as exc:
                logger.warning("closing %s: final flush did not complete (%s)", self._server_name(), exc)
        self._shutdown(ConnectionClosedError("connection closed"), deadline)

    def _finish_at_exit(self, deadline: float) -> None:
        """The interpreter is exiting and this connection was not closed: confirm what we can
        before ``deadline``, close, and warn about the rest (see ``_flush_at_exit``)."""
        lost: List[str] = []
        for hook in list(self._exit_hooks):
            count, what = hook(deadline)
            if count:
                lost.append(f"{count} {what}")
        queued = len(self._out)
        if self._status is CONNECTED or self._status is DRAINING:
            try:
                self.flush(timeout=left(deadline))
                queued = 0
            except MemphisError:
                pass
        if queued:
            lost.append(f"{queued} queued frame(s) (publishes, acks) never written")
        self._shutdown(ConnectionClosedError("connection closed at interpreter exit"), time.monotonic() + 0.5)
        if lost:
            warnings.warn(
                f"memphis-sync: the interpreter exited before {self._server_name()} confirmed "
                f"{'; '.join(lost)}; close the connection (or flush the producer) before exiting, "
                f"and handle the futures of nonblocking produces",
                UnconfirmedPublishWarning,
                stacklevel=1,
            )

    def _close_from_reader(self, error: Optional[BaseException]) -> None:
        self._shutdown(ConnectionClosedError(f"connection closed: {error}" if error else "connection closed"))

    def _shutdown(self, error: BaseException, deadline: Optional[float] = None) -> None:
        with self._state_lock:
            if self._status is CLOSED:
                return
            self._status = CLOSED
            self._fast = False
            self._closing.set()
            self._kick.set()
            stream = self._stream
            subs = list(self._subs.values())
            self._subs.clear()
            self._fail_pongs(error)
            waiters = list(self._resp_map.values())
            self._resp_map.clear()
        if stream is not None:
            stream.close()
        for waiter in waiters:
            waiter.set(None, error)
        for sub in subs:
            sub._finish(error)
        if deadline is None:
            deadline = time.monotonic() + _defaults.CLOSE_TIMEOUT
        me = threading.current_thread()
        busy = []
        for thread in (self._reader, self._flusher):
            if thread is not None and thread is not me:
                thread.join(left(deadline))
                if thread.is_alive():
                    busy.append(thread.name)
        for sub in subs:
            sub._join(left(deadline))
            if sub._worker is not None and sub._worker.is_alive():
                busy.append(sub._worker.name)
        self._emit("closed")
        events, thread = self._events, self._events_thread
        if events is not None:
            events.put(None)
            if thread is not None and thread is not me:
                thread.join(max(left(deadline) or 0.0, 0.05))
                if thread.is_alive():
                    busy.append(thread.name)
        if busy:
            logger.warning("connection %s closed; still busy (in user callbacks?): %s", self._id, ", ".join(busy))
        else:
            logger.info("connection %s closed", self._id)
