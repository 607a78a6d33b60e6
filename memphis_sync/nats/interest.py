"""The subscription table: sid -> :class:`~memphis_sync.nats.subscription.Subscription`, and
the SUB/UNSUB frames that change it.

The reader thread looks a message's sid up in ``_subs`` (one dict lookup, no lock: the table
changes only under ``_state_lock``, and a lookup of a dict is atomic). A SUB is queued in order
with the publishes around it; after a reconnect every SUB in the table is sent again (see
``reader``), so a subscription made while disconnected is only put in the table.

:class:`_Interest` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns ``_subs``
and ``_sids``; it queues frames through the outbox (``_append``, ``_kick_flusher``).
"""

from __future__ import annotations

import itertools
from typing import List, Optional

from ..errors import ConnectionClosedError, LocalProtocolError
from ._core import _ConnectionCore
from .protocol import check_int, encode_sub, encode_unsub
from .states import CLOSED, CONNECTED, DRAINING
from .subscription import MessageHandler, Subscription

__all__: List[str] = []


class _Interest(_ConnectionCore):
    """Add subscriptions to the table and the wire; take them off again."""

    def _init_interest_state(self) -> None:
        self._subs = {}
        self._sids = itertools.count(1)

    def _subscribe(
        self,
        subject: str,
        queue: Optional[str],
        callback: Optional[MessageHandler],
        internal: Optional[MessageHandler],
        max_msgs: int,
        pending_msgs_limit: int,
        pending_bytes_limit: int,
    ) -> Subscription:
        check_int(max_msgs, "max_msgs", 0)
        check_int(pending_msgs_limit, "pending_msgs_limit", 1)
        check_int(pending_bytes_limit, "pending_bytes_limit", 1)
        if callback is not None and not callable(callback):
            raise LocalProtocolError(f"callback must be callable or None, got {callback!r}")
        sid = next(self._sids)
        frame = encode_sub(subject, sid, queue)  # validates before anything changes
        unsub = encode_unsub(sid, max_msgs) if max_msgs else b""
        self._check_usable()
        with self._state_lock:
            if self._status is CLOSED:
                raise ConnectionClosedError("connection is closed")
            if self._status is DRAINING:
                raise ConnectionClosedError("connection is draining")
            sub = Subscription(
                self, sid, subject, queue, callback, internal=internal,
                pending_msgs_limit=pending_msgs_limit, pending_bytes_limit=pending_bytes_limit,
            )
            sub.max_msgs = max_msgs
            self._subs[sid] = sub
            if self._status is CONNECTED:
                # queued in order with publishes; on reconnect every SUB is re-sent anyway
                self._append(frame + unsub)
        self._kick_flusher()
        return sub

    def _unsubscribe(self, sub: Subscription, max_msgs: int = 0) -> None:
        check_int(max_msgs, "max_msgs", 0)
        self._check_fork()
        with self._state_lock:
            if self._status is CLOSED:
                sub._finish(ConnectionClosedError("connection is closed"))
                return
            if max_msgs and sub.delivered < max_msgs:
                sub.max_msgs = max_msgs
                frame = encode_unsub(sub.sid, max_msgs)
            else:
                self._subs.pop(sub.sid, None)
                frame = encode_unsub(sub.sid)
                sub._finish(None)
            if self._status is CONNECTED or self._status is DRAINING:
                self._append(frame)
        self._kick_flusher()

    def _remove_subscription(self, sid: int) -> None:
        with self._state_lock:
            self._subs.pop(sid, None)
