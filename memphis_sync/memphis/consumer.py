"""Consumers: pull from each partition of a station as a member of a consumer group (§7, §8).

The broker creates one durable JetStream consumer per partition stream, named after the group
(``internal(consumer_group)``); this consumer binds to them and pulls. Members of a group share
the messages (JetStream pull semantics). Re-sent dead-letter messages arrive on
``$memphis_dls_<station>.<group>`` (a queue group, so one member gets each) and are handed out
first.

``fetch()`` waits at most ``batch_max_time_to_wait_ms``; ``consume(callback)`` runs
``callback(messages, error, context)`` on a worker thread until :meth:`Consumer.stop_consuming`.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional

from .. import _defaults
from .._html import fields_table
from .._timeouts import check_timeout
from ..errors import (
    ConnectionClosedError,
    ConsumerNotFoundError,
    JetStreamError,
    MemphisError,
    MemphisValueError,
    SubscriptionClosedError,
)
from ..jetstream import JetStream
from ..jetstream.pull import PullSubscription
from ..jetstream.types import ConsumerConfig
from ..nats.protocol import Msg
from .durable import check_start, deliver_policy
from .message import Message, MessageBatch
from .partition import check_partition_args, check_partition_number, partition_for_key, pick_partition
from .registry import Registry, registry_key
from .requester import Requester
from .state import StationCache, StationState
from .validate import check_batch_size, check_bool, check_int, internal_name, validate_name, validate_optional_name

#: A pass of fetch() with less than this left is not started (a pull needs a positive expiry).
_MIN_PULL_WAIT = 0.005

__all__ = ["Consumer", "ConsumeCallback", "creation_fields", "open_consumer"]

logger = logging.getLogger("memphis_sync.consumer")  # the name users configure (kept from the flat layout)

#: ``callback(messages, error, context)``
ConsumeCallback = Callable[[List[Message], Optional[BaseException], Dict[str, Any]], Any]


class Consumer:
    """A member of a consumer group on one station. Create with :meth:`Memphis.consumer`.

    ``fetch()`` may be called from several threads (calls are serialized); ``consume()`` runs
    one worker thread.

    Attributes:
        station_name / consumer_name / consumer_group / batch_size / ...: as created.
        partitions: the partition numbers pulled from (``[1]`` for an unpartitioned station).
    """

    MAX_BATCH_SIZE = _defaults.MEMPHIS_MAX_BATCH_SIZE

    def __init__(
        self,
        requester: Requester,
        stations: StationCache,
        registry: Registry[Any, "Consumer"],
        js: JetStream,
        state: StationState,
        *,
        station_name: str,
        consumer_name: str,
        real_name: str,
        consumer_group: str,
        pull_interval_ms: int,
        batch_size: int,
        batch_max_time_to_wait_ms: int,
        max_ack_time_ms: int,
        max_msg_deliveries: int,
        start_consume_from_sequence: int,
        last_messages: int,
    ) -> None:
        self._requester = requester
        self._stations = stations
        self._registry = registry
        self._js = js
        self._state = state
        self.station_name = station_name
        self.internal_station_name = internal_name(station_name)
        self.consumer_name = consumer_name
        self.real_name = real_name
        self.consumer_group = consumer_group
        self.pull_interval_ms = pull_interval_ms
        self.batch_size = batch_size
        self.batch_max_time_to_wait_ms = max(batch_max_time_to_wait_ms, _defaults.MEMPHIS_MIN_BATCH_WAIT_MS)
        self.max_ack_time_ms = max_ack_time_ms
        self.max_msg_deliveries = max_msg_deliveries
        self.start_consume_from_sequence = start_consume_from_sequence
        self.last_messages = last_messages
        self.ping_consumer_interval_ms = 30000
        self.context: Dict[str, Any] = {}
        self._durable = internal_name(consumer_group)
        self._rr = itertools.count()
        self._fetch_lock = threading.Lock()
        self._cache: Deque[Message] = collections.deque()
        self._dls: Deque[Message] = collections.deque(maxlen=_defaults.MEMPHIS_DLS_BUFFER)
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._destroyed = False
        self._subs: Dict[int, PullSubscription] = {}
        partitions = state.partitions
        try:
            if partitions:
                self.partitions = list(partitions)
                for p in partitions:
                    stream = f"{self.internal_station_name}${p}"
                    self._ensure_durable(stream)
                    self._subs[p] = js.pull_subscribe(stream, self._durable)
            else:
                self.partitions = [1]
                self._ensure_durable(self.internal_station_name)
                self._subs[1] = js.pull_subscribe(self.internal_station_name, self._durable)
            dls_subject = f"$memphis_dls_{self.internal_station_name}.{self._durable}"
            conn = requester.checked_conn()
            self._dls_sub = conn.subscribe_internal(dls_subject, self._on_dls, queue=dls_subject)
        except BaseException:
            self._shutdown_local()
            raise

    def __repr__(self) -> str:
        return (
            f"<Consumer {self.consumer_name!r} group={self.consumer_group!r} station={self.station_name!r} "
            f"partitions={self.partitions} {'consuming' if self.is_consuming else 'idle'}>"
        )

    def _repr_html_(self) -> str:
        return fields_table(f"Consumer {self.consumer_name}", [
            ("station", self.station_name), ("consumer group", self.consumer_group), ("partitions", self.partitions),
            ("batch size", self.batch_size), ("max ack time ms", self.max_ack_time_ms),
            ("consuming", self.is_consuming), ("destroyed", self._destroyed),
        ])

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leaving a ``with`` block stops ``consume()`` and destroys the consumer (the last member
        of a group takes the group's position with it, as :meth:`destroy` says)."""
        self.stop_consuming()
        self.destroy()

    def _ensure_durable(self, stream: str) -> None:
        """Check the broker's durable exists; create it per §7.3 if the broker did not.

        (Memphis brokers create no durable for a one-partition station with ``last_messages``
        > 0, §15.3; memphis-py then has nats-py create one.)
        """
        js = self._js
        try:
            js.consumer_info(stream, self._durable)
            return
        except ConsumerNotFoundError:
            pass
        policy, start = deliver_policy(
            self.start_consume_from_sequence, self.last_messages, lambda: js.stream_info(stream).state.last_seq
        )
        config = ConsumerConfig(
            durable_name=self._durable, deliver_policy=policy, opt_start_seq=start,
            ack_wait=self.max_ack_time_ms / 1000, max_deliver=self.max_msg_deliveries,
            filter_subject=f"{stream}.final", max_ack_pending=-1,
        )
        logger.info("durable %s missing on stream %s; creating it", self._durable, stream)
        js.add_consumer(stream, config, legacy_durable_api=True)

    def get_partition_from_key(self, key: str) -> int:
        """The partition ``key`` maps to (murmur3, seed 31, as every official SDK).

        Raises:
            MemphisValueError: a key that is not a UTF-8 ``str`` (or bytes).
        """
        return partition_for_key(key, self.partitions)

    def validate_partition_number(self, partition_number: int, station_name: Optional[str] = None) -> None:
        """Check that ``partition_number`` exists in the station (the SDK's texts).

        Raises:
            MemphisValueError: out of range, or not in the station's partition list.
        """
        check_partition_number(self.partitions, self.internal_station_name, partition_number)

    # DLS re-sends: reader thread, never blocks
    def _on_dls(self, msg: Msg) -> None:
        self._dls.append(Message(msg, self._requester, self._stations, self.internal_station_name, self.consumer_group, 1))

    # -- fetching ------------------------------------------------------------------------

    def fetch(
        self,
        batch_size: Optional[int] = None,
        consumer_partition_key: Optional[str] = None,
        consumer_partition_number: int = -1,
        prefetch: bool = False,
    ) -> MessageBatch:
        """Fetch up to ``batch_size`` messages, waiting at most ``batch_max_time_to_wait_ms``.

        Re-sent dead-letter messages come first. Without a partition key or number, the
        partitions are asked in turn for what they have now; only when all are empty does the
        call wait (on one of them) for the rest of ``batch_max_time_to_wait_ms``: the whole
        call, every partition and a wait for another thread's fetch of this consumer included,
        stays within it (plus the server's answer time), even when the broker is paused.

        Args:
            batch_size: most messages (1..5000; default: the consumer's ``batch_size``).
            consumer_partition_key: read the partition this key hashes to (as producers do).
            consumer_partition_number: read this partition.
            prefetch: also pull the next two batches in the same request and keep them for
                the following calls (mind ``max_ack_time_ms``).

        Returns:
            A :class:`MessageBatch`, a list of :class:`Message` (empty if nothing arrived in
            time).

        Raises:
            MemphisValueError: a bad batch size or partition choice.
            ConnectionClosedError: the connection is closed.
            MemphisError: the consumer was destroyed, or its durable was deleted.
        """
        batch = self.batch_size if batch_size is None else check_batch_size(batch_size)
        check_partition_args(consumer_partition_key, consumer_partition_number)
        check_bool(prefetch, "prefetch")
        if self._destroyed:
            raise MemphisError(f"consumer {self.consumer_name!r} was destroyed")
        out = _take(self._dls, batch)
        if out:
            return out
        wait = self.batch_max_time_to_wait_ms / 1000
        deadline = time.monotonic() + wait  # one bound for the whole call, every pass included
        # another thread's fetch of this consumer holds the lock at most its own wait
        if not self._fetch_lock.acquire(timeout=wait):
            return out
        try:
            out = _take(self._cache, batch)
            if out:
                return out
            fixed = consumer_partition_key is not None or consumer_partition_number > 0
            if len(self._subs) == 1:
                order = [self.partitions[0]]
            elif fixed:
                order = [pick_partition(self.partitions, self.internal_station_name, consumer_partition_key, consumer_partition_number, self._rr)]
            else:
                first = next(self._rr) % len(self.partitions)
                order = self.partitions[first:] + self.partitions[:first]
            want = batch * 3 if prefetch else batch
            # Several partitions: take what any of them has now (in turn), and only when all are
            # empty wait on the first one; one partition: wait on it at once.
            passes = [(p, True) for p in order] if len(order) > 1 else []
            passes.append((order[0], False))
            for partition, no_wait in passes:
                left = deadline - time.monotonic()
                if left < _MIN_PULL_WAIT:
                    break
                msgs = self._pull(partition, want, left, no_wait)
                if msgs:
                    wrap = [Message(m, self._requester, self._stations, self.internal_station_name, self.consumer_group, partition) for m in msgs]
                    out, rest = MessageBatch(wrap[:batch]), wrap[batch:]
                    self._cache.extend(rest)
                    return out
        finally:
            self._fetch_lock.release()
        return out

    def _pull(self, partition: int, want: int, wait: float, no_wait: bool) -> List[Any]:
        try:
            return self._subs[partition].fetch(want, timeout=wait, no_wait=no_wait)
        except SubscriptionClosedError as exc:
            if self._destroyed:  # destroyed by another thread while this fetch waited
                raise MemphisError(f"consumer {self.consumer_name!r} was destroyed") from exc
            raise ConnectionClosedError(f"consumer {self.consumer_name!r}: the connection is closed") from exc
        except JetStreamError as exc:
            raise MemphisError(
                f"consumer {self.consumer_name!r} cannot pull from station {self.station_name!r} "
                f"partition {partition}: {exc}"
            ) from exc

    def __iter__(self) -> Iterator[Message]:
        """Yield messages as they arrive, until the consumer is destroyed or the connection closes."""
        while not self._destroyed:
            try:
                batch = self.fetch()
            except ConnectionClosedError:
                return
            except MemphisError:
                if self._destroyed:
                    return
                raise
            yield from batch

    # -- consume loop --------------------------------------------------------------------

    def set_context(self, context: Dict[str, Any]) -> None:
        """Set the ``context`` passed to the ``consume()`` callback."""
        self.context = context

    @property
    def is_consuming(self) -> bool:
        """True while a ``consume()`` worker runs."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    def consume(
        self,
        callback: ConsumeCallback,
        consumer_partition_key: Optional[str] = None,
        consumer_partition_number: int = -1,
    ) -> None:
        """Call ``callback(messages, error, context)`` with each batch, on a worker thread.

        The loop fetches a batch (waiting up to ``batch_max_time_to_wait_ms``), calls the
        callback when messages arrived, and pauses ``pull_interval_ms`` after a batch that did
        not fill up. A fetch error is passed as ``callback([], error, context)`` and the loop goes
        on; an exception raised by the callback is logged and the loop goes on. It ends with
        :meth:`stop_consuming`, :meth:`destroy` or when the connection closes.

        Raises:
            MemphisValueError: a callback that is not callable, or a bad partition choice.
            MemphisError: already consuming, or destroyed.
        """
        if not callable(callback):
            raise MemphisValueError(f"callback must be callable, got {callback!r}")
        check_partition_args(consumer_partition_key, consumer_partition_number)
        if self._destroyed:
            raise MemphisError(f"consumer {self.consumer_name!r} was destroyed")
        if self.is_consuming:
            raise MemphisError(f"consumer {self.consumer_name!r} is already consuming")
        self._stop.clear()
        self._worker = threading.Thread(
            target=self._consume_loop, args=(callback, consumer_partition_key, consumer_partition_number),
            name=f"memphis-sync-consumer-{self.consumer_name}", daemon=True,
        )
        self._worker.start()

    def _consume_loop(self, callback: ConsumeCallback, key: Optional[str], number: int) -> None:
        stop = self._stop
        interval = self.pull_interval_ms / 1000
        while not stop.is_set():
            try:
                msgs = self.fetch(consumer_partition_key=key, consumer_partition_number=number)
            except ConnectionClosedError:
                return
            except MemphisError as exc:
                if self._destroyed or stop.is_set():
                    return
                self._call(callback, [], exc)
                stop.wait(interval or 0.1)
                continue
            if not msgs:
                continue
            self._call(callback, msgs, None)
            if len(msgs) < self.batch_size and interval:
                stop.wait(interval)

    def _call(self, callback: ConsumeCallback, msgs: List[Message], error: Optional[BaseException]) -> None:
        try:
            callback(msgs, error, self.context)
        except Exception:
            logger.exception("consume callback of consumer %r raised", self.consumer_name)

    def stop_consuming(self, timeout: Optional[float] = 10.0) -> None:
        """Stop the ``consume()`` loop (after the current callback returns); the consumer stays.

        Waits at most ``timeout`` seconds (None = no limit) for the loop's thread; a callback
        still running then finishes on its own and the loop ends after it.

        Raises:
            MemphisValueError: a bad ``timeout`` (nothing was stopped).
        """
        wait = check_timeout(timeout, error=MemphisValueError)
        self._stop.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(wait)
            if not worker.is_alive():
                self._worker = None

    # -- destroy -------------------------------------------------------------------------

    def _shutdown_local(self) -> None:
        self._destroyed = True
        self._stop.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(10.0)
        for sub in list(getattr(self, "_subs", {}).values()):
            try:
                sub.unsubscribe()
            except MemphisError:
                pass
        dls_sub = getattr(self, "_dls_sub", None)
        if dls_sub is not None:
            try:
                dls_sub.unsubscribe()
            except MemphisError:
                pass

    def destroy(self, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Stop consuming and leave the group (§7.4). When the last member leaves, the broker
        deletes the group's durables: its position is lost.

        Raises:
            MemphisValueError: a bad ``timeout_retries``.
            MemphisRequestError: the broker refused.
        """
        if self._destroyed:
            return
        check_int(timeout_retries, "timeout_retries", 0)  # before anything stops
        self._shutdown_local()
        try:
            self._requester.destroy("consumer", self.consumer_name, self.station_name.lower(), timeout_retries)
        finally:
            self._registry.forget_consumer(self)
            self._stations.unref(self._state)


def _take(queue: Deque[Message], most: int) -> MessageBatch:
    """Up to ``most`` messages from the left of ``queue`` (safe against other threads popping)."""
    out = MessageBatch()
    try:
        while len(out) < most:
            out.append(queue.popleft())
    except IndexError:
        pass
    return out


def creation_fields(
    station_name: str, consumer_name: str, consumer_group: str, pull_interval_ms: int, batch_size: int,
    batch_max_time_to_wait_ms: int, max_ack_time_ms: int, max_msg_deliveries: int,
    start_consume_from_sequence: int, last_messages: int,
) -> Dict[str, Any]:
    """Check the arguments of :meth:`Memphis.consumer`; return the consumer fields of the
    ``$memphis_consumer_creations`` body (§7.1).

    Raises:
        MemphisValueError: a bad argument (the SDK's texts where it has them).
    """
    validate_name(station_name, "Station")
    validate_name(consumer_name, "Consumer")
    validate_optional_name(consumer_group, "consumer_group", "Consumer")
    check_batch_size(batch_size)
    check_int(pull_interval_ms, "pull_interval_ms", 0)
    check_int(batch_max_time_to_wait_ms, "batch_max_time_to_wait_ms", 0)
    check_int(max_ack_time_ms, "max_ack_time_ms", 1)
    check_int(max_msg_deliveries, "max_msg_deliveries", 1, _defaults.MEMPHIS_MAX_MSG_DELIVERIES)
    check_start(start_consume_from_sequence, last_messages)
    return {
        "consumers_group": consumer_group,
        "max_ack_time_ms": max_ack_time_ms,
        "max_msg_deliveries": max_msg_deliveries,
        "start_consume_from_sequence": start_consume_from_sequence,
        "last_messages": last_messages,
    }


def open_consumer(
    requester: Requester, stations: StationCache, registry: Registry[Any, "Consumer"], js: JetStream, station_name: str,
    consumer_name: str, real_name: str, fields: Dict[str, Any], timeout_retries: int, *,
    pull_interval_ms: int, batch_size: int, batch_max_time_to_wait_ms: int,
) -> Consumer:
    """Register a consumer with the broker (§7), bind it to its durables and cache it.

    Args:
        fields: from :func:`creation_fields`.

    Raises:
        MemphisRequestError: the broker refused.
    """
    data = requester.create("consumer", consumer_name, station_name, fields, timeout_retries)
    state = stations.ref(internal_name(station_name), data)
    try:
        consumer = Consumer(
            requester, stations, registry, js, state, station_name=station_name, consumer_name=consumer_name.lower(),
            real_name=real_name, consumer_group=(fields["consumers_group"] or consumer_name).lower(),
            pull_interval_ms=pull_interval_ms, batch_size=batch_size, batch_max_time_to_wait_ms=batch_max_time_to_wait_ms,
            max_ack_time_ms=fields["max_ack_time_ms"], max_msg_deliveries=fields["max_msg_deliveries"],
            start_consume_from_sequence=fields["start_consume_from_sequence"], last_messages=fields["last_messages"],
        )
    except BaseException:
        stations.unref(state)
        raise
    registry.add_consumer(registry_key(station_name, real_name), consumer)
    return consumer
