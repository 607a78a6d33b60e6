"""Publishing to streams, on the :class:`~memphis_sync.jetstream.JetStream` context: publish with
acks, pipelined publish with futures, its window, its timer thread and its exit hook.

Publishing is a request to a subject bound to a stream; the reply is a PubAck.

Pipelined publish (:meth:`Publisher.publish_async`) registers one reply slot per message on the
connection's shared inbox; the reader thread resolves its ``concurrent.futures.Future``. A
bounded window keeps at most ``max_pending`` acks in flight: a caller that finds it full waits
(any number of threads may wait; each has its own deadline) until it has drained to 3/4, at
most ``max_block`` seconds, then gets :class:`~memphis_sync.errors.MaxBlockTimeout` with
nothing sent; nothing is ever dropped. A small timer thread fails the futures whose ack did not
come in time and re-sends those answered by "no responders" (a stream leader election, ADR-22).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures._base import PENDING
from typing import Any, Dict, List, Optional, Tuple, Union

from .. import _defaults
from .._timeouts import check_timeout, deadline_after, describe, left
from ..errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MaxBlockTimeout,
    MemphisError,
    NoRespondersError,
    NoStreamResponseError,
    RemoteProtocolError,
    RequestTimeout,
    jetstream_error,
)
from ..nats.connection import Connection, HeadersLike
from ..nats.protocol import check_int
from ..nats.protocol.events import Msg
from ..nats.protocol.headers import Headers
from ._future import LazyFuture
from .types import PubAck, _decode

__all__ = ["Publisher"]

logger = logging.getLogger("memphis_sync.jetstream")  # the name users configure (kept from the flat layout)

#: how often (seconds) the timer thread looks for expired pipelined publishes
_TIMER_TICK = 0.25

_HDR_MSG_ID = "Nats-Msg-Id"
_HDR_EXPECTED_STREAM = "Nats-Expected-Stream"
_HDR_EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
_HDR_EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
_HDR_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_INT_HEADERS = (_HDR_EXPECTED_LAST_SEQ, _HDR_EXPECTED_LAST_SUBJECT_SEQ)


def _pub_ack(msg: Msg, subject: str) -> PubAck:
    if msg.status == 503:
        raise NoStreamResponseError(f"no stream answered for subject {subject!r} (no stream bound, or JetStream unavailable)")
    data = _decode(msg, "publish")
    error = data.get("error")
    if error is not None:
        raise jetstream_error(error)
    try:
        return PubAck.from_response(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"publish: invalid PubAck {msg.payload[:80]!r}") from exc


def _fast_pub_ack(payload: bytes) -> Optional[PubAck]:
    """Parse the common PubAck shape ``{"stream":"S","seq":N}`` without json; None otherwise."""
    if payload[:11] == b'{"stream":"' and payload[-1:] == b"}":
        end = payload.find(b'","seq":', 11)
        if end > 0:
            tail = payload[end + 8:-1]
            if tail.isdigit():
                stream = payload[11:end]
                if b"\\" not in stream and b'"' not in stream:
                    return PubAck(stream=stream.decode(), seq=int(tail))
    return None


def _resolve(slot: "_AckSlot", result: Optional[PubAck], error: Optional[BaseException]) -> None:
    if error is not None:
        slot.set_exception(error)
    else:
        slot.set_result(result)


class _AckSlot(LazyFuture):
    """One in-flight pipelined publish, and the future handed to the caller.

    ``set()`` runs on the reader thread (it never blocks); ``finished`` is our own flag, set
    once, before the future is resolved.
    """

    def __init__(self, js: "Publisher", key: int, subject: str, payload: bytes, headers: HeadersLike, deadline: float) -> None:
        # every attribute set here, in one order: instances then share one key table (fast)
        self._waiters: List[Any] = []  # LazyFuture's per-instance state, inlined (hot path)
        self._done_callbacks: List[Any] = []
        self._lazy_condition = None
        self._state = PENDING
        self._result: Optional[PubAck] = None
        self._exception: Optional[BaseException] = None
        self.js = js
        self.key = key
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.deadline = deadline
        self.retries = _defaults.JS_PUB_RETRY_ATTEMPTS
        self.reply = ""
        self.finished = False

    def set(self, msg: Optional[Msg], error: Optional[BaseException] = None) -> None:
        if error is None and msg is not None and msg.status == 503 and self.retries > 0:
            self.retries -= 1
            self.js._schedule_retry(self)
            return
        result = None
        if error is None:
            try:
                result = _fast_pub_ack(msg.payload) or _pub_ack(msg, self.subject)  # type: ignore[union-attr,arg-type]
            except MemphisError as exc:
                error = exc
        self.js._finish_slot(self, result, error)


class Publisher:
    """The publishing half of :class:`~memphis_sync.jetstream.JetStream` (a base class of it; not
    used alone): publish with acks, pipelined publish, the window and the timer thread.

    It uses the context's ``conn`` and ``timeout``; :meth:`_init_publisher` sets up the rest.
    """

    conn: Connection
    timeout: float

    def _init_publisher(self, conn: Connection, max_pending: int, max_block: Union[float, None, str]) -> None:
        """Check the window options and set up the window, the timer state and the exit hook."""
        check_int(max_pending, "max_pending", 1)
        self.max_block: Optional[float] = conn.max_block if max_block == "connection" else check_timeout(max_block, "max_block")
        self.max_pending = max_pending
        self._inflight: Dict[int, _AckSlot] = {}
        self._ids = itertools.count(1)
        self._room = threading.Condition(threading.Lock())
        # publishers waiting in _wait_for_room (changed under _room only); the reader notifies
        # when it is > 0 and the window has drained to _room_low
        self._room_waiters = 0
        low = (max_pending * 3) // 4
        self._room_low = low if low > 0 else max_pending - 1
        self._timer_lock = threading.Lock()
        self._retries: List[Any] = []
        self._timer_wake = threading.Event()
        self._timer: Optional[threading.Thread] = None
        ref = weakref.ref(self)
        conn.add_exit_hook(lambda deadline: _confirm_at_exit(ref, deadline))

    @staticmethod
    def _headers(
        headers: HeadersLike,
        msg_id: Optional[str],
        expected_stream: Optional[str],
        expected_last_seq: Optional[int],
        expected_last_msg_id: Optional[str],
        expected_last_subject_seq: Optional[int],
    ) -> HeadersLike:
        if (
            msg_id is None and expected_stream is None and expected_last_seq is None
            and expected_last_msg_id is None and expected_last_subject_seq is None
        ):
            return headers
        extra = (
            (_HDR_MSG_ID, msg_id),
            (_HDR_EXPECTED_STREAM, expected_stream),
            (_HDR_EXPECTED_LAST_SEQ, expected_last_seq),
            (_HDR_EXPECTED_LAST_MSG_ID, expected_last_msg_id),
            (_HDR_EXPECTED_LAST_SUBJECT_SEQ, expected_last_subject_seq),
        )
        out = Headers(headers) if headers else Headers()
        for name, value in extra:
            if value is not None:
                if name in _INT_HEADERS:  # a sequence: an int, sent as its digits
                    value = str(check_int(value, name, 0))
                elif not isinstance(value, str):
                    raise LocalProtocolError(f"{name} must be a str, got {type(value).__name__}: {value!r}")
                out[name] = value
        return out

    def publish(
        self,
        subject: str,
        payload: bytes = b"",
        *,
        headers: HeadersLike = None,
        msg_id: Optional[str] = None,
        expected_stream: Optional[str] = None,
        expected_last_seq: Optional[int] = None,
        expected_last_msg_id: Optional[str] = None,
        expected_last_subject_seq: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> PubAck:
        """Publish to a stream and wait for its acknowledgement.

        A "no responders" answer (no stream yet, or a leader election) is retried
        ``_defaults.JS_PUB_RETRY_ATTEMPTS`` times, ``JS_PUB_RETRY_WAIT`` apart (ADR-22), all
        within ``timeout``.

        Args:
            msg_id: de-duplication id (``Nats-Msg-Id``): a repeat within the stream's
                duplicate window is not stored again and its PubAck has ``duplicate=True``.
            expected_*: optimistic-concurrency checks (``Nats-Expected-*`` headers).
            timeout: seconds to wait for the ack (default: the context's ``timeout``;
                ``inf``: no limit).

        Raises:
            LocalProtocolError: a bad subject, payload, header, ``msg_id`` or ``timeout`` (nothing was sent).
            NoStreamResponseError: no stream answered after the retries.
            WrongLastSequenceError / JetStreamError: the stream refused the message.
            RequestTimeout: no ack in time (the message may or may not be stored; publish
                again with the same ``msg_id`` to be safe).
        """
        wait = self.timeout if timeout is None else check_timeout(timeout)  # inf: no limit
        deadline = None if wait is None else time.monotonic() + wait  # one bound, retries included
        hdrs = self._headers(headers, msg_id, expected_stream, expected_last_seq, expected_last_msg_id, expected_last_subject_seq)
        attempts = _defaults.JS_PUB_RETRY_ATTEMPTS
        while True:
            try:
                msg = self.conn.request(subject, payload, timeout=left(deadline), headers=hdrs)
            except NoRespondersError:
                rest = left(deadline)
                if attempts <= 0 or (rest is not None and rest <= _defaults.JS_PUB_RETRY_WAIT):
                    raise NoStreamResponseError(f"no stream answered for subject {subject!r} (no stream bound, or JetStream unavailable)") from None
                attempts -= 1
                time.sleep(_defaults.JS_PUB_RETRY_WAIT)
                continue
            return _fast_pub_ack(msg.payload) or _pub_ack(msg, subject)

    def publish_async(
        self,
        subject: str,
        payload: bytes = b"",
        *,
        headers: HeadersLike = None,
        msg_id: Optional[str] = None,
        expected_stream: Optional[str] = None,
        expected_last_seq: Optional[int] = None,
        expected_last_msg_id: Optional[str] = None,
        expected_last_subject_seq: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> "Future[PubAck]":
        """Publish without waiting; the returned future resolves to the :class:`PubAck`.

        At most ``max_pending`` publishes are in flight; while the window is full this call
        waits until acks have freed a quarter of it, at most ``max_block`` seconds. Every future
        resolves: with the PubAck, with the stream's error, with ``NoStreamResponseError``
        (after the ADR-22 retries), with :class:`RequestTimeout` after ``timeout`` seconds
        (``inf``: no limit), or with ``ConnectionClosedError``.

        Raises:
            LocalProtocolError / PayloadTooLargeError: bad input (nothing sent, no future).
            ~memphis_sync.errors.MaxBlockTimeout: the window (or the outbound buffer) stayed full for ``max_block``
                seconds (nothing sent, no future).
            ConnectionClosedError: the connection is closed.
        """
        if msg_id is None and expected_stream is None and expected_last_seq is None and expected_last_msg_id is None and expected_last_subject_seq is None:
            hdrs = headers
        else:
            hdrs = self._headers(headers, msg_id, expected_stream, expected_last_seq, expected_last_msg_id, expected_last_subject_seq)
        ack_wait = self.timeout if timeout is None else check_timeout(timeout)
        key = next(self._ids)
        slot = _AckSlot(self, key, subject, payload, hdrs, time.monotonic() + ack_wait if ack_wait is not None else float("inf"))
        inflight = self._inflight
        inflight[key] = slot  # take a place first, then look: the window is never exceeded
        block = None
        if len(inflight) > self.max_pending:
            del inflight[key]
            block = self._wait_for_room(key, slot)
            if ack_wait is not None:
                slot.deadline = time.monotonic() + ack_wait  # the ack wait starts at the send
        try:
            self._send(slot, block)
        except BaseException:
            self._inflight.pop(key, None)
            raise
        if self._timer is None:
            self._ensure_timer()
        return slot

    def _send(self, slot: _AckSlot, block: Optional[float] = None) -> None:
        slot.reply = self.conn.request_async(slot.subject, slot.payload, slot.headers, slot, block)

    def _wait_for_room(self, key: int, slot: _AckSlot) -> Optional[float]:
        """Wait until the window has drained to 3/4 (not just one free place: waking a
        publisher per ack would cost a thread hand-off per message), at most ``max_block``,
        then take a place for ``slot``.

        Any number of threads may wait here; each keeps its own deadline and the only shared
        state is the waiter count, changed under the condition's lock. The reader notifies
        after removing a slot (``_finish_slot``), so a waiter that saw a full window is either
        woken or sees the drained window when it re-checks. A place is taken by inserting,
        then checking the size (publishers that do not wait insert without the lock), so the
        window holds at most ``max_pending``. Returns the deadline, for the rest of the
        publish to share."""
        deadline = deadline_after(self.max_block)
        conn = self.conn
        conn.write_now(deadline)
        low = self._room_low
        room = self._room
        inflight = self._inflight
        with room:
            self._room_waiters += 1
            try:
                while True:
                    if len(inflight) <= low:
                        inflight[key] = slot
                        if len(inflight) <= self.max_pending:
                            return deadline
                        del inflight[key]
                    conn.check_usable()
                    wait = left(deadline)
                    if wait is not None and wait <= 0:
                        raise MaxBlockTimeout(
                            f"publish window full: {len(self._inflight)} acks in flight (max_pending="
                            f"{self.max_pending}) on {conn.describe_server()} for max_block={describe(self.max_block)}"
                            f"{conn.link_state()}; nothing of this message was sent"
                        )
                    room.wait(0.5 if wait is None else min(wait, 0.5))
            finally:
                self._room_waiters -= 1

    def _finish_slot(self, slot: _AckSlot, result: Optional[PubAck], error: Optional[BaseException]) -> None:
        if slot.finished:
            return
        slot.finished = True
        slot.payload = b""  # keep nothing of a finished message alive
        slot.headers = None
        self._inflight.pop(slot.key, None)
        if slot._done_callbacks:
            # user callbacks never run on the reader thread: resolve on the events thread
            self.conn.call_off_reader(lambda: _resolve(slot, result, error))
        else:
            _resolve(slot, result, error)
        if self._room_waiters and len(self._inflight) <= self._room_low:
            with self._room:
                self._room.notify_all()

    @property
    def publish_async_pending(self) -> int:
        """Pipelined publishes whose ack has not arrived yet."""
        return len(self._inflight)

    def publish_async_complete(self, timeout: Optional[float] = None) -> None:
        """Wait until every pipelined publish made so far has resolved (acked or failed).

        Raises:
            LocalProtocolError: a bad ``timeout``.
            RequestTimeout: some are still in flight after ``timeout`` seconds.
        """
        deadline = deadline_after(timeout)
        futures = list(self._inflight.values())
        for future in futures:
            try:
                future.exception(left(deadline))
            except FutureTimeout:  # only the wait ran out (a signal handler's error propagates)
                raise RequestTimeout(
                    f"{self.publish_async_pending} publish(es) still unacknowledged after {describe(timeout)}"
                    f"{self.conn.link_state()}"
                ) from None

    # -- timers: ack deadlines and 503 retries ---------------------------------------------
    #
    # In-flight slots are bounded by the window, so the timer thread simply scans them a few
    # times a second for expired deadlines (no per-message timer bookkeeping on the publish
    # path). Retries after a 503 (rare) sit in a small heap. The thread exits when nothing is
    # in flight and is started again by the next publish.

    def _ensure_timer(self) -> None:
        with self._timer_lock:
            if self._timer is None:
                self._timer = threading.Thread(target=self._timer_main, name=f"memphis-sync-js-timer-{self.conn.number}", daemon=True)
                self._timer.start()

    def _schedule_retry(self, slot: _AckSlot) -> None:
        # runs on the reader thread: never sleep here; the timer thread re-sends
        with self._timer_lock:
            heapq.heappush(self._retries, (time.monotonic() + _defaults.JS_PUB_RETRY_WAIT, slot.key, slot))
        self._timer_wake.set()
        if self._timer is None:
            self._ensure_timer()

    def _timer_main(self) -> None:
        while True:
            if self.conn.is_closed():
                self._fail_all()
            now = time.monotonic()
            wake = now + _TIMER_TICK
            expired = []
            for slot in list(self._inflight.values()):
                if slot.deadline <= now:
                    expired.append(slot)
                elif slot.deadline < wake:
                    wake = slot.deadline
            due = []
            with self._timer_lock:
                while self._retries and self._retries[0][0] <= now:
                    due.append(heapq.heappop(self._retries)[2])
                if self._retries:
                    wake = min(wake, self._retries[0][0])
                if not expired and not due and not self._inflight and not self._retries:
                    self._timer = None
                    exiting = True
                else:
                    exiting = False
            if exiting:
                # a publish that read _timer before it became None has its slot in _inflight
                # already (it inserts first, then looks): hand such slots to a new timer
                if self._inflight or self._retries:
                    self._ensure_timer()
                return
            for slot in expired:
                self.conn.drop_reply(slot.reply)
                self._finish_slot(slot, None, RequestTimeout(f"no ack for the publish to {slot.subject!r} in time"))
            for slot in due:
                if not slot.finished:
                    try:
                        # never block the timer for long: no room now fails this one future
                        self._send(slot, time.monotonic() + _TIMER_TICK)
                    except MemphisError as exc:
                        self._finish_slot(slot, None, exc)
            left = wake - time.monotonic()
            if left > 0:
                self._timer_wake.wait(left)
                self._timer_wake.clear()

    def _fail_all(self) -> None:
        for slot in list(self._inflight.values()):
            self._finish_slot(slot, None, ConnectionClosedError("connection closed before the ack arrived"))


def _confirm_at_exit(ref: "weakref.ref[Publisher]", deadline: float) -> Tuple[int, str]:
    """Exit hook: wait for this context's in-flight publishes until ``deadline``."""
    js = ref()
    if js is None or not js._inflight:
        return 0, ""
    try:
        js.publish_async_complete(timeout=left(deadline))
    except MemphisError:
        pass
    return len(js._inflight), "pipelined publish(es) / nonblocking produce(s) without an ack"

