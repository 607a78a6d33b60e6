"""Producers: ``Producer.produce()`` (wire contract §6) and ``destroy()`` (§5.4).

A producer publishes to ``<internal station>$<partition>.final`` with the headers
``$memphis_producedBy`` and ``$memphis_connectionId`` (plus ``msg-id`` for idempotency) and waits
for the JetStream ack (blocking), or returns a ``concurrent.futures.Future`` (``nonblocking``).
Thread-safe: any number of threads may share one producer; the partition round robin is an
``itertools.count`` (atomic under the GIL).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
import warnings
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Deque, Dict, List, Literal, Optional, Union, overload

import attrs

from .. import _defaults
from .._html import fields_table
from .._timeouts import check_timeout, deadline_after, describe, left
from ..errors import (
    MemphisError,
    MemphisMessageTypeError,
    MemphisSchemaError,
    MemphisValueError,
    NoStreamResponseError,
    RequestTimeout,
)
from ..jetstream import JetStream
from ..jetstream.types import PubAck
from ..nats.protocol.headers import Headers as _WireHeaders
from .message import HeadersArg, to_wire_headers
from .partition import check_partition_args, check_partition_number, partition_for_key, pick_partition
from .registry import Registry, registry_key
from .requester import Requester
from .state import StationCache, StationState
from .validate import check_bool, check_int, internal_name

__all__ = ["Producer", "encode_message", "open_producer"]

logger = logging.getLogger("memphis_sync.producer")  # the name users configure (kept from the flat layout)

_PRODUCE_FAILED = "Produce operation has failed, please check whether Station/Producer still exist"


def encode_message(message: Any) -> bytes:
    """The bytes sent for ``message`` on a station without a schema (§6.4).

    ``bytes``/``bytearray``/``memoryview`` as is, ``str`` as UTF-8, ``dict`` as JSON, a protobuf
    object by ``SerializeToString()``, a GraphQL ``DocumentNode`` by its source text.

    Raises:
        MemphisMessageTypeError: any other type (also a ``TypeError`` and a ``MemphisSchemaError``),
            a ``dict`` that is not JSON (circular, NaN, a value of another type) or a ``str``
            that is not UTF-8 (a lone surrogate).
    """
    if isinstance(message, bytes):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    try:
        if isinstance(message, str):
            return message.encode("utf-8")
        if isinstance(message, dict):
            return json.dumps(message, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # not JSON (circular, NaN, objects), lone surrogates
        raise MemphisMessageTypeError(f"cannot encode the {type(message).__name__} message: {exc}") from None
    serialize = getattr(message, "SerializeToString", None)
    if callable(serialize):
        return bytes(serialize())
    if type(message).__name__ == "DocumentNode" and getattr(message, "loc", None) is not None:
        return str(message.loc.source.body).encode("utf-8")
    raise MemphisMessageTypeError(
        f"Unsupported message type: {type(message).__name__} (send bytes, bytearray, memoryview, str, dict, "
        "a protobuf message or a GraphQL document)"
    )


@attrs.define(eq=False, repr=False)
class Producer:
    """A producer of one station, or of several (``station_name`` a list). Thread-safe.

    Create with :meth:`Memphis.producer`.

    Attributes:
        producer_name: the name as sent in headers (lower-cased, with any random suffix).
        station_name: the station name (or the list of names) as given.
        real_name: the lower-cased name without suffix (the cache key).
        internal_station_name: the station's internal name ("" for a multi-station producer).
        is_multi_station_producer: True when ``station_name`` is a list.
    """

    producer_name: str
    station_name: Union[str, List[str]]
    real_name: str
    _requester: Requester = attrs.field(repr=False)
    _state: Optional[StationState] = attrs.field(default=None, repr=False)
    _stations: Optional[StationCache] = attrs.field(default=None, repr=False, kw_only=True)
    _registry: Optional[Registry["Producer", Any]] = attrs.field(default=None, repr=False, kw_only=True)
    _js: Optional[JetStream] = attrs.field(default=None, repr=False, kw_only=True)
    internal_station_name: str = attrs.field(init=False)
    is_multi_station_producer: bool = attrs.field(init=False)
    _rr: "itertools.count[int]" = attrs.field(init=False, factory=itertools.count, repr=False)
    _plain_headers: _WireHeaders = attrs.field(init=False, repr=False)
    _pending: Deque["Future[PubAck]"] = attrs.field(init=False, factory=collections.deque, repr=False)
    _pending_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)
    _destroyed: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.is_multi_station_producer = isinstance(self.station_name, list)
        self.internal_station_name = "" if self.is_multi_station_producer else internal_name(self.station_name)  # type: ignore[arg-type]
        self._plain_headers = to_wire_headers(None, self._memphis_headers(None))

    def _memphis_headers(self, msg_id: Optional[str]) -> Dict[str, str]:
        headers = {
            "$memphis_producedBy": self.producer_name,
            "$memphis_connectionId": self._requester.connection_id,
        }
        if msg_id is not None and msg_id != "":
            # Memphis brokers de-duplicate on "msg-id" (their JetStream's renamed header);
            # stock nats-server, as in the local broker, on "Nats-Msg-Id": send both, so
            # idempotency holds on either (a Memphis broker ignores the second one)
            headers["msg-id"] = msg_id
            headers["Nats-Msg-Id"] = msg_id
        return headers

    # -- produce -------------------------------------------------------------------------

    @overload
    def produce(
        self, message: Any, ack_wait_sec: float = ..., headers: HeadersArg = ..., async_produce: Optional[bool] = ..., *,
        nonblocking: Literal[True], msg_id: Optional[str] = ..., concurrent_task_limit: Optional[int] = ...,
        producer_partition_key: Optional[str] = ..., producer_partition_number: int = ...,
    ) -> "Future[PubAck]": ...

    @overload
    def produce(
        self, message: Any, ack_wait_sec: float = ..., headers: HeadersArg = ...,
        async_produce: Optional[Literal[False]] = ..., nonblocking: Literal[False] = ..., msg_id: Optional[str] = ...,
        concurrent_task_limit: Optional[int] = ..., producer_partition_key: Optional[str] = ...,
        producer_partition_number: int = ...,
    ) -> PubAck: ...

    @overload
    def produce(
        self, message: Any, ack_wait_sec: float = ..., headers: HeadersArg = ..., async_produce: Optional[bool] = ...,
        nonblocking: bool = ..., msg_id: Optional[str] = ..., concurrent_task_limit: Optional[int] = ...,
        producer_partition_key: Optional[str] = ..., producer_partition_number: int = ...,
    ) -> Union[PubAck, "Future[PubAck]"]: ...

    def produce(
        self,
        message: Any,
        ack_wait_sec: float = 15,
        headers: HeadersArg = None,
        async_produce: Optional[bool] = None,
        nonblocking: bool = False,
        msg_id: Optional[str] = None,
        concurrent_task_limit: Optional[int] = None,
        producer_partition_key: Optional[str] = None,
        producer_partition_number: int = -1,
    ) -> Union[PubAck, "Future[PubAck]"]:
        """Produce one message.

        Args:
            message: ``bytes``/``bytearray``/``memoryview``, ``str`` (UTF-8), ``dict`` (JSON), or
                what the station's schema accepts.
            ack_wait_sec: seconds to wait for the broker's ack (also the future's deadline;
                ``float("inf")``: no limit).
            headers: :class:`~memphis_sync.Headers` or a plain dict; ``$memphis`` keys are refused.
            async_produce: deprecated alias of ``nonblocking``.
            nonblocking: do not wait; return a ``Future`` resolving to the PubAck. At most
                ``max_pending_acks`` acks are in flight per connection; beyond that this call
                waits until the window drains, at most ``max_block_ms``, then raises
                :class:`~memphis_sync.errors.MaxBlockTimeout` (nothing is sent or dropped
                silently). :meth:`flush` waits for all.
            msg_id: idempotency id, sent as the ``msg-id`` header: the broker drops repeats
                within the station's idempotency window. Each partition is a stream of its own
                and de-duplicates on its own: on a station with several partitions, send a
                retry to the same partition (e.g. ``producer_partition_key=msg_id``), or the
                round robin may store it twice.
            concurrent_task_limit: with ``nonblocking``, most unacknowledged messages of this
                producer; beyond it the call waits until half of them are acked (SDK semantics).
            producer_partition_key: choose the partition by murmur3 hash of this key.
            producer_partition_number: choose this partition (1-based).

        Returns:
            The PubAck (blocking) or a Future of it (nonblocking). A multi-station producer
            produces to each station in turn and returns the last station's; with
            ``nonblocking`` the others are tracked too (:meth:`flush` waits for all).

        Raises:
            MemphisMessageTypeError: the message type cannot be encoded.
            MemphisSchemaError: the message does not match the station's schema.
            MemphisHeaderError: a reserved or invalid header.
            MemphisValueError: a bad argument or partition choice.
            MemphisError: the producer was destroyed.
            NoStreamResponseError: the station (stream) does not exist.
            RequestTimeout: no ack within ``ack_wait_sec`` (the message may be stored: produce
                it again with the same ``msg_id`` to be sure).
            MaxBlockTimeout: no room for ``max_block_ms`` (nothing sent; safe to retry).
            ConnectionClosedError: the connection is closed.
        """
        if async_produce is not None:
            check_bool(async_produce, "async_produce")
            warnings.warn(
                "The argument async_produce is deprecated. Please use the argument nonblocking instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            nonblocking = nonblocking or async_produce
        check_bool(nonblocking, "nonblocking")
        if self._destroyed:
            raise MemphisError(f"producer {self.producer_name!r} was destroyed")
        if self.is_multi_station_producer:
            if not self.station_name:
                raise MemphisValueError("a multi-station producer needs at least one station")
            for station in self.station_name:
                result = self._station_producer(station).produce(
                    message, ack_wait_sec=ack_wait_sec, headers=headers, nonblocking=nonblocking, msg_id=msg_id,
                    concurrent_task_limit=concurrent_task_limit, producer_partition_key=producer_partition_key,
                    producer_partition_number=producer_partition_number,
                )
                if nonblocking:
                    self._track(result)  # type: ignore[arg-type]  # a Future: nonblocking
            return result
        if check_timeout(ack_wait_sec, "ack_wait_sec", error=MemphisValueError) == 0 or ack_wait_sec is None:
            raise MemphisValueError(f"ack_wait_sec must be a number of seconds > 0 (inf: no limit), got {ack_wait_sec!r}")
        check_partition_args(producer_partition_key, producer_partition_number)
        if msg_id is not None and not isinstance(msg_id, str):
            raise MemphisValueError(f"msg_id must be a str, got {type(msg_id).__name__}: {msg_id!r}")
        state = self._state
        assert state is not None
        payload = self._encode(message, headers)
        wire_headers = (
            self._plain_headers if not headers and not msg_id else to_wire_headers(headers, self._memphis_headers(msg_id))
        )
        subject = self._subject(state, producer_partition_key, producer_partition_number)
        js = self._js
        assert js is not None
        if nonblocking:
            if concurrent_task_limit is not None:
                check_int(concurrent_task_limit, "concurrent_task_limit", 1)
                self._limit_pending(concurrent_task_limit)
            future = js.publish_async(subject, payload, headers=wire_headers, timeout=ack_wait_sec)
            self._track(future)
            return future
        try:
            return js.publish(subject, payload, headers=wire_headers, timeout=ack_wait_sec)
        except NoStreamResponseError as exc:
            raise NoStreamResponseError(f"{_PRODUCE_FAILED} (no stream answered on {subject!r})") from exc
        except RequestTimeout as exc:
            raise RequestTimeout(f"produce to {subject!r}: no ack within ack_wait_sec={ack_wait_sec} (timeout){js.conn.link_state()}") from exc

    def _encode(self, message: Any, headers: HeadersArg) -> bytes:
        state = self._state
        schema = state.schema if state is not None else None
        if schema is None:
            return encode_message(message)
        try:
            return schema.serialize(message)
        except MemphisSchemaError as exc:
            self._report_schema_failure(message, headers, exc)
            raise

    def _report_schema_failure(self, message: Any, headers: HeadersArg, error: MemphisSchemaError) -> None:
        """Report a schema-validation failure as the SDK does (§6.6, §9.4): to the schemaverse DLS
        when the station sends schema failures there, and to ``$memphis_notifications`` whenever
        the broker asks for notifications, whatever the station's DLS setting."""
        state, stations, requester = self._state, self._stations, self._requester
        if state is None or state.schema is None or stations is None:
            return
        try:
            text = _message_text(message)
            if state.schemaverse_to_dls:
                wire = to_wire_headers(headers, self._memphis_headers(None))
                requester.publish_json(
                    "$memphis_schemaverse_dls",
                    {
                        "station_name": self.internal_station_name,
                        "producer": {"name": self.producer_name, "connection_id": requester.connection_id},
                        "creation_unix": int(time.time()),
                        "message": {"data": text.encode("utf-8").hex(), "headers": {k: wire[k] for k in wire}},
                        "validation_error": str(error),
                    },
                )
            if stations.send_notification:
                requester.notify(
                    "Schema validation has failed",
                    f"Station: {self.station_name}\nProducer: {self.producer_name}\nError:{error}",
                    text,
                    "schema_validation_fail_alert",
                )
        except MemphisError:
            logger.warning("could not report a schema failure to the DLS", exc_info=True)

    def _subject(self, state: StationState, key: Optional[str], number: int) -> str:
        partitions = state.partitions
        internal = self.internal_station_name
        if not partitions:
            return internal + ".final"
        if len(partitions) == 1:  # key and number are ignored, as the SDK does
            partition = partitions[0]
        else:
            partition = pick_partition(partitions, internal, key, number, self._rr)
        function_id = state.functions.get(partition) if state.functions else None
        if function_id is not None:
            return f"{internal}${partition}.functions.{function_id}"
        return f"{internal}${partition}.final"

    def get_partition_from_key(self, key: str) -> int:
        """The partition ``key`` maps to (murmur3, seed 31, as every official SDK).

        Raises:
            MemphisValueError: a key that is not a UTF-8 ``str`` (or bytes), or a multi-station or
                unpartitioned producer.
        """
        return partition_for_key(key, self._partition_list())

    def validate_partition_number(self, partition_number: int, station_name: Optional[str] = None) -> None:
        """Check that ``partition_number`` exists in the station (the SDK's texts).

        Raises:
            MemphisValueError: out of range, or not in the station's partition list.
        """
        check_partition_number(self._partition_list(), self.internal_station_name, partition_number)

    def _partition_list(self) -> List[int]:
        partitions = self._state.partitions if self._state is not None else None
        if not partitions:
            raise MemphisValueError(f"producer {self.producer_name!r} has no partition list (multi-station or legacy station)")
        return partitions

    # -- nonblocking bookkeeping ---------------------------------------------------------

    def _track(self, future: "Future[PubAck]") -> None:
        pending = self._pending
        pending.append(future)  # atomic; only the left end is ever trimmed, under _pending_lock
        if len(pending) > 2 * _defaults.JS_PUB_MAX_PENDING:
            self._trim_done()

    def _trim_done(self) -> None:
        """Drop finished futures from the left (under the lock: several threads share one
        producer, and a check-then-pop without it could drop a future still in flight)."""
        pending = self._pending
        with self._pending_lock:
            while pending and pending[0].done():
                pending.popleft()

    def _pop_head(self, head: "Future[PubAck]") -> None:
        with self._pending_lock:
            if self._pending and self._pending[0] is head:
                self._pending.popleft()

    def _limit_pending(self, limit: int) -> None:
        self._trim_done()
        pending = self._pending
        if len(pending) < limit:
            return
        low = limit // 2
        while True:
            try:
                head = pending[0]
            except IndexError:
                return
            head.exception()  # wait for it (its error stays on the future; it has a deadline)
            self._pop_head(head)
            if sum(1 for f in list(pending) if not f.done()) <= low:
                return

    @property
    def pending(self) -> int:
        """Nonblocking messages of this producer not acknowledged yet."""
        return sum(1 for future in list(self._pending) if not future.done())

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until every nonblocking message this producer sent so far is acked or failed.

        Failures stay on their futures; this only waits. Without ``timeout`` the wait is
        still bounded: every future fails by itself once its ``ack_wait_sec`` has passed.

        Raises:
            RequestTimeout: some are still unacknowledged after ``timeout`` seconds.
            MemphisValueError: a bad ``timeout``.
        """
        deadline = deadline_after(timeout, error=MemphisValueError)
        # the messages produced so far (other threads may go on producing: not waited for)
        for future in list(self._pending):
            try:
                future.exception(left(deadline))
            except FutureTimeout:  # only the wait ran out (a signal handler's error propagates)
                raise RequestTimeout(
                    f"flush: {self.pending} message(s) of producer {self.producer_name!r} still unacknowledged "
                    f"after {describe(timeout)}{self._requester.conn.link_state()}"
                ) from None
        self._trim_done()

    # -- looking at it ---------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else f"pending={self.pending}"
        return f"<Producer {self.producer_name!r} station={self.station_name!r} {state}>"

    def _repr_html_(self) -> str:
        return fields_table(f"Producer {self.producer_name}", [
            ("station", self.station_name), ("partitions", self._partition_list() if self._state else "-"),
            ("unacknowledged", self.pending), ("destroyed", self._destroyed),
        ])

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leaving a ``with`` block waits for the nonblocking messages and destroys the producer."""
        self.destroy()

    # -- destroy -------------------------------------------------------------------------

    def destroy(self, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Wait for this producer's nonblocking messages, then unregister it from the broker (§5.4).

        Raises:
            MemphisValueError: a bad ``timeout_retries``.
            MemphisRequestError: the broker refused.
        """
        if self._destroyed:
            return
        if self.is_multi_station_producer:
            for station in self.station_name:
                producer = self._registry.producer(registry_key(station, self.real_name)) if self._registry else None
                if producer is not None:
                    producer.destroy(timeout_retries)
            self._destroyed = True
            return
        try:
            self.flush(timeout=None)
        except MemphisError:
            logger.debug("flush before destroy failed", exc_info=True)
        self._requester.destroy("producer", self.producer_name, self.station_name, timeout_retries)  # type: ignore[arg-type]
        self._destroyed = True
        if self._registry is not None:
            self._registry.forget_producer(self)
        if self._stations is not None:
            self._stations.unref(self._state)

    def _station_producer(self, station_name: str) -> "Producer":
        """This multi-station producer's producer of one station (created on first use)."""
        assert self._stations is not None and self._registry is not None and self._js is not None
        return open_producer(
            self._requester, self._stations, self._registry, self._js, station_name, self.real_name, self.real_name,
            _defaults.MEMPHIS_TIMEOUT_RETRIES,
        )


def open_producer(
    requester: Requester, stations: StationCache, registry: Registry["Producer", Any], js: JetStream,
    station_name: str, producer_name: str, real_name: str, timeout_retries: int,
) -> Producer:
    """The cached producer of (station, real name), or a new one registered with the broker (§5).

    One creation per (station, name) at a time: threads asking together get one producer.

    Raises:
        MemphisRequestError: the broker refused.
    """
    key = registry_key(station_name, real_name)
    cached = registry.producer(key)
    if cached is not None:
        return cached
    with registry.creation_lock(key):
        cached = registry.producer(key)
        if cached is not None:
            return cached
        data = requester.create("producer", producer_name, station_name, {}, timeout_retries)
        state = stations.ref(internal_name(station_name), data)
        producer = Producer(
            producer_name.lower(), station_name, real_name, requester, state, stations=stations, registry=registry, js=js
        )
        return registry.add_producer(key, producer)


def _message_text(message: Any) -> str:
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message).decode("utf-8", "replace")
    serialize = getattr(message, "SerializeToString", None)
    if callable(serialize):
        return bytes(serialize()).decode("utf-8", "replace")
    return str(message)
