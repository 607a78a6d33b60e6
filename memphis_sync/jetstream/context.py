"""JetStream on a :class:`~memphis_sync.nats.connection.Connection`: API requests, publish with acks,
pipelined publish with futures, and pull consumers.

API requests are core requests to ``$JS.API.<...>`` (or ``$JS.<domain>.API``); a reply with an
``error`` object becomes the exception that :func:`~memphis_sync.errors.jetstream_error` picks
from its table. Publishing is a request to a subject bound to a stream; the reply is a PubAck.

Pipelined publish (:meth:`JetStream.publish_async`) registers one reply slot per message on the
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
import json
import logging
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures._base import PENDING
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .. import _defaults
from .._timeouts import check_timeout, deadline_after, describe, left
from ..nats.connection import Connection, HeadersLike
from ..errors import (
    ConnectionClosedError,
    JetStreamNotEnabledError,
    LocalProtocolError,
    MaxBlockTimeout,
    MemphisError,
    NoRespondersError,
    NoStreamResponseError,
    RemoteProtocolError,
    RequestTimeout,
    jetstream_error,
)
from ._future import LazyFuture
from ..nats.protocol.headers import Headers
from .types import ConsumerConfig, ConsumerInfo, PubAck, StreamConfig, StreamInfo, validate_name
from .pull import PullSubscription, RawStreamMsg
from ..nats.protocol.wire import Msg, validate_publish_subject

__all__ = ["JetStream"]

logger = logging.getLogger("memphis_sync.jetstream")  # the name users configure (kept from the flat layout)

#: how often (seconds) the timer thread looks for expired pipelined publishes
_TIMER_TICK = 0.25

_HDR_MSG_ID = "Nats-Msg-Id"
_HDR_EXPECTED_STREAM = "Nats-Expected-Stream"
_HDR_EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
_HDR_EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
_HDR_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"


def _decode(msg: Msg, what: str) -> Dict[str, Any]:
    try:
        data = json.loads(msg.payload)
    except ValueError as exc:
        raise RemoteProtocolError(f"{what}: the server's reply is not JSON: {msg.payload[:80]!r}") from exc
    if not isinstance(data, dict):
        raise RemoteProtocolError(f"{what}: the server's reply is not a JSON object: {msg.payload[:80]!r}")
    return data


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

    def __init__(self, js: "JetStream", key: int, subject: str, payload: bytes, headers: HeadersLike, deadline: float) -> None:
        # every attribute set here, in one order: instances then share one key table (fast)
        self._waiters: list = []  # LazyFuture's per-instance state, inlined (hot path)
        self._done_callbacks: list = []
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


class JetStream:
    """JetStream API, publish and pull consumers over one shared connection. Thread-safe.

    Args:
        conn: a connected :class:`~memphis_sync.nats.connection.Connection`.
        domain: JetStream domain (API prefix ``$JS.<domain>.API``).
        prefix: explicit API prefix (overrides ``domain``).
        timeout: default seconds for API requests and publish acks (``_defaults.JS_API_TIMEOUT``).
        max_pending: pipelined publishes in flight before ``publish_async`` blocks
            (``_defaults.JS_PUB_MAX_PENDING``).
        max_block: longest ``publish_async`` waits for room in a full window, in seconds
            (default: the connection's ``max_block``; None = no limit).
    """

    def __init__(
        self,
        conn: Connection,
        *,
        domain: Optional[str] = None,
        prefix: Optional[str] = None,
        timeout: float = _defaults.JS_API_TIMEOUT,
        max_pending: int = _defaults.JS_PUB_MAX_PENDING,
        max_block: Union[float, None, str] = "connection",
    ) -> None:
        if prefix is None:
            prefix = f"$JS.{domain}.API" if domain else _defaults.JS_API_PREFIX
        validate_publish_subject(prefix)
        if check_timeout(timeout) == 0:
            raise LocalProtocolError(f"timeout must be > 0, got {timeout!r}")
        if type(max_pending) is not int or max_pending < 1:
            raise LocalProtocolError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self.max_block: Optional[float] = conn.max_block if max_block == "connection" else check_timeout(max_block, "max_block")
        self.conn = conn
        self.prefix = prefix
        self.timeout = timeout
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

    def __repr__(self) -> str:
        return f"<JetStream {self.prefix} on {self.conn!r} inflight={len(self._inflight)}>"

    # -- API requests --------------------------------------------------------------------

    def api_request(self, suffix: str, body: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Send ``<prefix>.<suffix>`` with a JSON body and return the decoded reply.

        Raises:
            JetStreamError: (or a subclass) the server answered with an error.
            JetStreamNotEnabledError: nothing answers JetStream API requests.
            RequestTimeout: no answer in time.
        """
        subject = f"{self.prefix}.{suffix}"
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            msg = self.conn.request(subject, payload, timeout=timeout or self.timeout)
        except NoRespondersError as exc:
            raise JetStreamNotEnabledError(f"JetStream is not available ({subject!r} has no responders)", code=503) from exc
        data = _decode(msg, suffix)
        error = data.get("error")
        if error is not None:
            raise jetstream_error(error)
        return data

    def account_info(self) -> Dict[str, Any]:
        """The account's JetStream usage and limits (``$JS.API.INFO``)."""
        return self.api_request("INFO")

    def add_stream(self, config: Union[StreamConfig, Mapping[str, Any]], **kwargs: Any) -> StreamInfo:
        """Create a stream (idempotent for an identical config).

        Raises:
            StreamNameInUseError: a stream with that name and another config exists.
        """
        config = self._stream_config(config, kwargs)
        return StreamInfo.from_response(self.api_request(f"STREAM.CREATE.{config.name}", config.to_request()))

    def update_stream(self, config: Union[StreamConfig, Mapping[str, Any]], **kwargs: Any) -> StreamInfo:
        """Change a stream's configuration.

        Raises:
            StreamNotFoundError: no such stream.
        """
        config = self._stream_config(config, kwargs)
        return StreamInfo.from_response(self.api_request(f"STREAM.UPDATE.{config.name}", config.to_request()))

    @staticmethod
    def _stream_config(config: Union[StreamConfig, Mapping[str, Any], None], kwargs: Dict[str, Any]) -> StreamConfig:
        if isinstance(config, StreamConfig):
            return config if not kwargs else StreamConfig(**{**_fields(config), **kwargs})
        return StreamConfig(**{**dict(config or {}), **kwargs})

    def stream_info(self, name: str) -> StreamInfo:
        """A stream's configuration and state.

        Raises:
            StreamNotFoundError: no such stream.
        """
        validate_name(name, "stream name")
        return StreamInfo.from_response(self.api_request(f"STREAM.INFO.{name}"))

    def delete_stream(self, name: str) -> None:
        """Delete a stream and its messages.

        Raises:
            StreamNotFoundError: no such stream.
        """
        validate_name(name, "stream name")
        self.api_request(f"STREAM.DELETE.{name}")

    def purge_stream(self, name: str) -> int:
        """Remove every message of a stream; returns how many were purged."""
        validate_name(name, "stream name")
        return int(self.api_request(f"STREAM.PURGE.{name}").get("purged", 0))

    def stream_names(self, subject: Optional[str] = None) -> List[str]:
        """Names of all streams, or of the ones that capture ``subject``."""
        names: List[str] = []
        offset = 0
        while True:
            body: Dict[str, Any] = {"offset": offset}
            if subject is not None:
                body["subject"] = subject
            data = self.api_request("STREAM.NAMES", body)
            page = data.get("streams") or []
            names.extend(page)
            offset += len(page)
            if not page or offset >= int(data.get("total", 0)):
                return names

    def get_msg(self, stream: str, seq: Optional[int] = None, *, last_by_subject: Optional[str] = None) -> RawStreamMsg:
        """Read one stored message by sequence, or the last one on a subject.

        Raises:
            MessageNotFoundError: nothing stored there.
        """
        validate_name(stream, "stream name")
        if (seq is None) == (last_by_subject is None):
            raise LocalProtocolError("give exactly one of seq or last_by_subject")
        body: Dict[str, Any] = {"seq": seq} if seq is not None else {"last_by_subj": last_by_subject}
        return RawStreamMsg.from_response(self.api_request(f"STREAM.MSG.GET.{stream}", body)["message"])

    def delete_msg(self, stream: str, seq: int) -> None:
        """Delete one stored message."""
        validate_name(stream, "stream name")
        self.api_request(f"STREAM.MSG.DELETE.{stream}", {"seq": seq})

    def add_consumer(
        self,
        stream: str,
        config: Union[ConsumerConfig, Mapping[str, Any], None] = None,
        *,
        action: str = "",
        legacy_durable_api: bool = False,
        **kwargs: Any,
    ) -> ConsumerInfo:
        """Create (or, with ``action="update"``/``""``, update) a consumer on ``stream``.

        Uses ``CONSUMER.CREATE.<stream>.<name>[.<filter>]`` (server >= 2.9); with
        ``legacy_durable_api`` the older ``CONSUMER.DURABLE.CREATE.<stream>.<durable>``.

        Raises:
            StreamNotFoundError: no such stream.
            ConsumerNameInUseError: exists with another configuration (``action="create"``).
        """
        validate_name(stream, "stream name")
        if isinstance(config, ConsumerConfig):
            cfg = config if not kwargs else ConsumerConfig(**{**_fields(config), **kwargs})
        else:
            cfg = ConsumerConfig(**{**dict(config or {}), **kwargs})
        if action not in ("", "create", "update"):
            raise LocalProtocolError(f"action must be '', 'create' or 'update', got {action!r}")
        body: Dict[str, Any] = {"stream_name": stream, "config": cfg.to_request()}
        if action:
            body["action"] = action
        name = cfg.consumer_name
        if legacy_durable_api:
            if not cfg.durable_name:
                raise LocalProtocolError("the durable API needs durable_name")
            suffix = f"CONSUMER.DURABLE.CREATE.{stream}.{cfg.durable_name}"
        elif name is None:
            suffix = f"CONSUMER.CREATE.{stream}"
        elif cfg.filter_subject and ">" not in cfg.filter_subject and "*" not in cfg.filter_subject:
            suffix = f"CONSUMER.CREATE.{stream}.{name}.{cfg.filter_subject}"
        else:
            suffix = f"CONSUMER.CREATE.{stream}.{name}"
        return ConsumerInfo.from_response(self.api_request(suffix, body))

    def consumer_info(self, stream: str, name: str) -> ConsumerInfo:
        """A consumer's configuration and state.

        Raises:
            ConsumerNotFoundError: no such consumer.
        """
        validate_name(stream, "stream name")
        validate_name(name, "consumer name")
        return ConsumerInfo.from_response(self.api_request(f"CONSUMER.INFO.{stream}.{name}"))

    def delete_consumer(self, stream: str, name: str) -> None:
        """Delete a consumer (its position is lost).

        Raises:
            ConsumerNotFoundError: no such consumer.
        """
        validate_name(stream, "stream name")
        validate_name(name, "consumer name")
        self.api_request(f"CONSUMER.DELETE.{stream}.{name}")

    def pull_subscribe(self, stream: str, consumer: str) -> PullSubscription:
        """Bind to an existing pull consumer; fetch from the returned subscription."""
        validate_name(stream, "stream name")
        validate_name(consumer, "consumer name")
        return PullSubscription(self, stream, consumer)

    # -- publish -------------------------------------------------------------------------

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
                out[name] = str(value)
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
        ``_defaults.JS_PUB_RETRY_ATTEMPTS`` times, ``JS_PUB_RETRY_WAIT`` apart (ADR-22).

        Args:
            msg_id: de-duplication id (``Nats-Msg-Id``): a repeat within the stream's
                duplicate window is not stored again and its PubAck has ``duplicate=True``.
            expected_*: optimistic-concurrency checks (``Nats-Expected-*`` headers).
            timeout: seconds to wait for the ack (default: the context's ``timeout``;
                ``inf``: no limit).

        Raises:
            NoStreamResponseError: no stream answered after the retries.
            WrongLastSequenceError / JetStreamError: the stream refused the message.
            RequestTimeout: no ack in time (the message may or may not be stored; publish
                again with the same ``msg_id`` to be safe).
        """
        wait = self.timeout if timeout is None else check_timeout(timeout)  # inf: no limit
        hdrs = self._headers(headers, msg_id, expected_stream, expected_last_seq, expected_last_msg_id, expected_last_subject_seq)
        attempts = _defaults.JS_PUB_RETRY_ATTEMPTS
        while True:
            try:
                msg = self.conn.request(subject, payload, timeout=wait, headers=hdrs)
            except NoRespondersError:
                if attempts <= 0:
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


def _confirm_at_exit(ref: "weakref.ref[JetStream]", deadline: float) -> Tuple[int, str]:
    """Exit hook: wait for this context's in-flight publishes until ``deadline``."""
    js = ref()
    if js is None or not js._inflight:
        return 0, ""
    try:
        js.publish_async_complete(timeout=left(deadline))
    except MemphisError:
        pass
    return len(js._inflight), "pipelined publish(es) / nonblocking produce(s) without an ack"


def _fields(obj: Any) -> Dict[str, Any]:
    import attrs

    return attrs.asdict(obj, recurse=False)
