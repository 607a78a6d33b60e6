"""Subscriptions: a blocking message queue, or a callback run on the subscription's own thread.

The connection's reader thread hands each message to :meth:`Subscription._deliver`, which only
appends to a queue (or, for the connection's own internal handlers, calls a function that never
blocks). User code runs on the thread that calls :meth:`Subscription.next_msg` or iterates, or on
the subscription's worker thread (``memphis-sync-sub-<conn>-<sid>``) for callback subscriptions,
never on the reader thread.

A subscription knows its connection only as a :class:`SubscriptionOwner`: the few things it
asks of it (report an error, forget a sid, unsubscribe, write soon, is anything queued).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Iterator, List, Optional, Protocol

from .. import _defaults
from .._timeouts import check_timeout, deadline_after, describe, left
from ..errors import MessageTimeout, SlowConsumerError, SubscriptionClosedError
from .protocol import Msg

__all__ = ["Subscription", "MessageHandler", "SubscriptionOwner"]

logger = logging.getLogger("memphis_sync.subscription")  # the name users configure (kept from the flat layout)

#: A callback that receives one message.
MessageHandler = Callable[[Msg], None]


class SubscriptionOwner(Protocol):
    """What a :class:`Subscription` needs from its connection (the
    :class:`~memphis_sync.nats.connection.Connection` is the one implementation)."""

    #: Outbound frames not yet taken by a writer; a callback worker checks it is non-empty
    #: (one attribute read per message) before writing what its callbacks published.
    _out: List[bytes]

    @property
    def number(self) -> int:
        """The connection's number, for the worker thread's name."""

    def _report_error(self, error: BaseException) -> None:
        """Report an asynchronous error (a slow consumer, a callback that raised)."""

    def _remove_subscription(self, sid: int) -> None:
        """Forget ``sid`` (the subscription reached its ``max_msgs``)."""

    def _unsubscribe(self, sub: "Subscription", max_msgs: int = 0) -> None:
        """Send UNSUB for ``sub`` (now, or after ``max_msgs`` messages in total)."""

    def _write_pending(self, deadline: Optional[float] = None) -> bool:
        """Write what is queued until ``deadline``; False when something is left for later."""


class _Stop:
    """Queue sentinel: the subscription ended (unsubscribed, limit reached or connection closed)."""

    __slots__ = ("error",)

    def __init__(self, error: Optional[BaseException] = None) -> None:
        self.error = error


class Subscription:
    """Interest in a subject. Create with :meth:`Connection.subscribe`.

    A subscription without a callback is a blocking queue: :meth:`next_msg` and iteration. One
    with a callback runs it for every message on a worker thread of its own. Messages beyond the
    pending limits are dropped and reported once per episode as :class:`SlowConsumerError`
    through the connection's error callback.
    """

    def __init__(
        self,
        conn: SubscriptionOwner,
        sid: int,
        subject: str,
        queue_group: Optional[str],
        callback: Optional[MessageHandler] = None,
        *,
        internal: Optional[MessageHandler] = None,
        pending_msgs_limit: int = _defaults.SUB_PENDING_MSGS,
        pending_bytes_limit: int = _defaults.SUB_PENDING_BYTES,
    ) -> None:
        self._conn = conn
        self.sid = sid
        self.subject = subject
        self.queue = queue_group
        self._callback = callback
        self._internal = internal
        self._queue: "queue.SimpleQueue[object]" = queue.SimpleQueue()
        self.pending_msgs_limit = pending_msgs_limit
        self.pending_bytes_limit = pending_bytes_limit
        self._in_bytes = 0  # written by the reader thread only
        self._out_bytes = 0  # written by consuming threads only, under _out_lock
        self._out_lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0
        self._slow = False
        self.max_msgs = 0  # 0 = no auto-unsubscribe
        self._closed = False
        self._worker: Optional[threading.Thread] = None
        if callback is not None:
            self._worker = threading.Thread(
                target=self._run_callbacks, name=f"memphis-sync-sub-{conn.number}-{sid}", daemon=True
            )
            self._worker.start()

    # -- delivery (reader thread) ----------------------------------------------------------

    def _deliver(self, msg: Msg) -> None:
        internal = self._internal
        if internal is not None:
            internal(msg)
            return
        q = self._queue
        size = len(msg.payload)
        if q.qsize() >= self.pending_msgs_limit or self._in_bytes - self._out_bytes + size > self.pending_bytes_limit:
            self.dropped += 1
            if not self._slow:
                self._slow = True
                self._conn._report_error(SlowConsumerError(self.subject, self.sid, self.dropped))
            return
        self._slow = False
        self._in_bytes += size
        q.put(msg)
        self.delivered += 1
        if self.max_msgs and self.delivered >= self.max_msgs:
            self._conn._remove_subscription(self.sid)
            self._finish(None)

    def _finish(self, error: Optional[BaseException]) -> None:
        """Mark the subscription ended and wake every waiter (any thread)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_Stop(error))

    # -- consuming -------------------------------------------------------------------------

    @property
    def pending_msgs(self) -> int:
        """Messages received and not yet taken by :meth:`next_msg` or the callback."""
        return self._queue.qsize() - (1 if self._closed else 0)

    @property
    def pending_bytes(self) -> int:
        """Payload bytes received and not yet taken."""
        return max(0, self._in_bytes - self._out_bytes)

    @property
    def is_active(self) -> bool:
        """True until unsubscribed, auto-unsubscribed or closed with the connection."""
        return not self._closed

    def next_msg(self, timeout: Optional[float] = _defaults.NEXT_MSG_TIMEOUT) -> Msg:
        """Return the next message, waiting at most ``timeout`` seconds (None or ``inf``: no limit).

        Raises:
            LocalProtocolError: a negative or non-numeric ``timeout``.
            MessageTimeout: nothing arrived in time.
            SubscriptionClosedError: the subscription ended and every message was taken.
        """
        if self._callback is not None:
            raise SubscriptionClosedError(f"subscription {self.sid} on {self.subject!r} has a callback; next_msg() is not available")
        wait = check_timeout(timeout) if timeout is not None else None
        try:
            item = self._queue.get(timeout=wait) if wait is None or wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            raise MessageTimeout(f"no message on {self.subject!r} within {describe(wait)}") from None
        if type(item) is _Stop:
            self._queue.put(item)  # keep every later caller informed
            raise SubscriptionClosedError(f"subscription {self.sid} on {self.subject!r} is closed") from item.error
        with self._out_lock:  # several threads may consume one subscription
            self._out_bytes += len(item.payload)  # type: ignore[attr-defined]
        return item  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Msg]:
        """Yield messages as they arrive until the subscription ends."""
        while True:
            try:
                yield self.next_msg(timeout=None)
            except SubscriptionClosedError:
                return

    def _run_callbacks(self) -> None:
        callback = self._callback
        assert callback is not None
        q = self._queue
        get = q.get
        conn = self._conn
        while True:
            if conn._out and q.empty():
                # idle: write what the callbacks published (e.g. replies) now rather than
                # waiting for the flusher thread to wake up; saves a thread hand-off per reply
                try:
                    # try-lock: if another thread is writing, the flusher (kicked by the
                    # publish) sends these frames; never wait behind it on a callback thread
                    conn._write_pending(time.monotonic())
                except Exception:  # the flusher will retry; a closed/forked connection is fine
                    logger.debug("inline write after callback failed", exc_info=True)
            item = get()
            if type(item) is _Stop:
                return
            self._out_bytes += len(item.payload)  # type: ignore[attr-defined]
            try:
                callback(item)  # type: ignore[arg-type]
            except Exception as exc:  # a user callback must not kill the worker
                logger.exception("callback of subscription %s on %r raised", self.sid, self.subject)
                self._conn._report_error(exc)

    # -- ending ----------------------------------------------------------------------------

    def unsubscribe(self, max_msgs: int = 0) -> None:
        """Stop receiving; with ``max_msgs`` > 0, stop after that many messages in total.

        Raises:
            LocalProtocolError: ``max_msgs`` is negative.
            ConnectionClosedError: the connection is closed (for a deferred unsubscribe).
        """
        self._conn._unsubscribe(self, max_msgs)

    def drain(self, timeout: Optional[float] = _defaults.DRAIN_TIMEOUT) -> None:
        """Unsubscribe, then wait until every message already received has been processed."""
        self.unsubscribe()
        self._wait_processed(timeout)

    def _wait_processed(self, timeout: Optional[float]) -> bool:
        deadline = deadline_after(timeout)
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(left(deadline))
            return not self._worker.is_alive()
        while self.pending_msgs > 0:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait at most ``timeout`` seconds for the callback worker to finish (after the
        subscription ended); returns at once for a subscription without a callback."""
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)

    _join = join

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._closed:
            try:
                self.unsubscribe()
            except Exception:  # closing a closed connection's subscription is fine
                logger.debug("unsubscribe on exit failed", exc_info=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "active"
        queue_part = f" queue={self.queue!r}" if self.queue else ""
        return f"<Subscription sid={self.sid} subject={self.subject!r}{queue_part} {state} pending={self.pending_msgs}>"
