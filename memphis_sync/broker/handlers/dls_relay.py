"""The dead letters the SDKs send, kept in JetStream until a control plane has stored them.

Clients send explicit dead letters (``dead_letter()``) to ``$memphis_nacked_dls`` (§9.3) and
schema-validation failures to ``$memphis_schemaverse_dls`` (§9.4), with a core publish and no
reply. A plain subscription would lose every one sent while no control plane runs (a restart, a
crash). The Memphis broker relays both subjects, inside nats-server, to work-queue streams that a
durable consumer drains (``memphis-wire.md`` §9.1). The local broker's control plane is a client
of nats-server, not part of it, so here the streams capture the SDK subjects themselves: what
clients send is unchanged, byte for byte, and nats-server keeps it while no control plane runs.

=================================  ==============================  =====================================
Stream (work queue, file, 24 h)    Subject it captures             Durable pull consumer
=================================  ==============================  =====================================
``$memphis_dls_nacked``            ``$memphis_nacked_dls``         ``$memphis_nacked_dls_consumer``
``$memphis_dls_schemaverse``       ``$memphis_schemaverse_dls``    ``$memphis_schemaverse_dls_consumer``
=================================  ==============================  =====================================

The names, retention, age and durables are the broker's; the durables ack explicitly, wait
:data:`RELAY_ACK_WAIT` (80 s) for an ack and deliver a message at most :data:`RELAY_MAX_DELIVER`
(10) times. :meth:`DlsRelay.ensure` creates what is missing and keeps what exists (a restarted
control plane finds its streams, with whatever waited in them), so it is safe on every start.

:class:`DlsRelay` runs one thread per stream. Each fetches what is there (a batch, at most, with
``no_wait``; every :data:`RELAY_POLL` seconds while the stream is empty), hands every event to its
handler (under the context's lock, as the other handlers run) and acks it only once the handler
returned, i.e. once the dead letter is stored. So:

* a graceful stop (:meth:`DlsRelay.stop`) finishes the event at hand and ``-NAK``\\ s the rest of
  the batch: the next control plane gets them at once;
* a control plane killed between storing and acking leaves the event unacked: JetStream delivers
  it again after the ack wait. The handlers make a second delivery harmless (see
  :mod:`memphis_sync.broker.handlers.dls`): a dead letter's record id is derived from the event
  itself (the poison id of its station partition and sequence; for a schema failure the time and
  sequence at which the relay stream stored it), so a redelivered event finds its record and
  stores nothing new;
* an event a handler fails on (the metadata store unreachable...) is ``-NAK``\\ ed with a delay of
  :data:`RELAY_RETRY_DELAY`, and tried again up to :data:`RELAY_MAX_DELIVER` times in all;
* an event that is not a JSON object is logged and acked: no retry can make it valid.

Several control planes share the durables, so each event is handled by one of them.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from memphis_sync import _defaults
from memphis_sync.broker.context import BrokerContext
from memphis_sync.errors import (
    ConnectionClosedError,
    ConsumerNameInUseError,
    MemphisError,
    StreamNameInUseError,
    SubscriptionClosedError,
)
from memphis_sync.jetstream import ConsumerConfig, JetStream, JsMsg, MsgMetadata, PullSubscription, StreamConfig

__all__ = [
    "DlsRelay",
    "RELAYS",
    "RelayHandler",
    "NACKED_STREAM",
    "SCHEMAVERSE_STREAM",
]

logger = logging.getLogger(__name__)

#: The stream of ``$memphis_nacked_dls`` and its durable (the broker's names, §9.1).
NACKED_STREAM = "$memphis_dls_nacked"
NACKED_DURABLE = "$memphis_nacked_dls_consumer"
#: The stream of ``$memphis_schemaverse_dls`` and its durable.
SCHEMAVERSE_STREAM = "$memphis_dls_schemaverse"
SCHEMAVERSE_DURABLE = "$memphis_schemaverse_dls_consumer"

#: Stream → (the subject it captures, its durable).
RELAYS: Dict[str, Tuple[str, str]] = {
    NACKED_STREAM: ("$memphis_nacked_dls", NACKED_DURABLE),
    SCHEMAVERSE_STREAM: ("$memphis_schemaverse_dls", SCHEMAVERSE_DURABLE),
}

#: Seconds an event stays in the stream unhandled (the broker's 24 h).
RELAY_MAX_AGE = 24 * 3600.0
#: Seconds JetStream waits for an ack before it delivers an event again (the broker's 80 s).
RELAY_ACK_WAIT = 80.0
#: Deliveries of one event at most (the broker's 10).
RELAY_MAX_DELIVER = 10
#: Events fetched at once.
RELAY_BATCH = 100
#: Seconds between two fetches while the stream is empty. Each fetch asks only for what is there
#: (``no_wait``), so no pull request is open between fetches and a stop never leaves an event
#: delivered to a subscription that is gone (it would wait out the ack wait).
RELAY_POLL = 0.25
#: Seconds a fetch waits for the server's answer.
RELAY_FETCH_TIMEOUT = 5.0
#: Seconds before an event a handler failed on is delivered again.
RELAY_RETRY_DELAY = 1.0

#: A handler: the event (a JSON object) and the JetStream metadata of its delivery.
RelayHandler = Callable[[Dict[str, Any], MsgMetadata], None]


class DlsRelay:
    """Drains the relay streams into the DLS handlers, one thread per stream.

    Args:
        ctx: The control plane's context (connection, JetStream, lock, replicas).
        handlers: Stream name (a key of :data:`RELAYS`) → its handler. A handler that returns
            stored the event (or decided to drop it); one that raises gets it again later.
    """

    def __init__(self, ctx: BrokerContext, handlers: Mapping[str, RelayHandler]) -> None:
        unknown = set(handlers) - set(RELAYS)
        if unknown:
            raise ValueError(f"no relay stream named {sorted(unknown)}")
        self._ctx = ctx
        self._handlers = dict(handlers)
        self._stopping = threading.Event()
        self._workers: List[Tuple[threading.Thread, PullSubscription]] = []

    def ensure(self) -> None:
        """Create the relay streams and their durables unless they exist (kept as they are).

        Raises:
            MemphisError: JetStream refused or did not answer.
        """
        js, replicas = self._ctx.jetstream, self._ctx.metadata_replicas
        for stream in self._handlers:
            subject, durable = RELAYS[stream]
            _ensure_relay(js, stream, subject, durable, replicas)

    def start(self) -> None:
        """:meth:`ensure`, then start fetching (does nothing if already started).

        Raises:
            MemphisError: JetStream refused or did not answer.
        """
        if self._workers:
            return
        self.ensure()
        conn, js = self._ctx.connection, self._ctx.jetstream
        self._stopping.clear()
        for stream, handler in self._handlers.items():
            sub = js.pull_subscribe(stream, RELAYS[stream][1])
            name = f"memphis-sync-dls-relay-{stream.rsplit('_', 1)[-1]}-{conn.number}"
            thread = threading.Thread(target=self._run, args=(sub, handler), name=name, daemon=True)
            self._workers.append((thread, sub))
            thread.start()

    def stop(self, timeout: float = _defaults.CONTROL_PLANE_DRAIN_TIMEOUT) -> None:
        """Finish the event at hand, give the rest of each batch back (``-NAK``) and stop.

        Args:
            timeout: Seconds to wait for each thread (busy with one event at most).
        """
        self._stopping.set()
        workers, self._workers = self._workers, []
        for thread, sub in workers:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("DLS relay: %s did not stop within %.1f s", thread.name, timeout)
            try:
                sub.unsubscribe()
            except MemphisError:
                pass  # the connection is gone: so is the subscription

    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return bool(self._workers)

    def _run(self, sub: PullSubscription, handler: RelayHandler) -> None:
        while not self._stopping.is_set():
            try:
                batch = sub.fetch(RELAY_BATCH, timeout=RELAY_FETCH_TIMEOUT, no_wait=True)
            except (SubscriptionClosedError, ConnectionClosedError):
                return  # the connection was closed under us (a crash): JetStream redelivers
            except MemphisError as exc:  # e.g. reconnecting: try again shortly
                logger.warning("DLS relay: fetch from %s failed: %s", sub.stream, exc)
                self._stopping.wait(RELAY_POLL)
                continue
            for msg in batch:
                if self._stopping.is_set():
                    _settle(msg, msg.nak)  # the next control plane gets it at once
                else:
                    self._handle(sub.stream, msg, handler)
            if not batch:
                self._stopping.wait(RELAY_POLL)
        try:  # late deliveries of a fetch that timed out: give them back too
            late = sub.fetch(sub.pending_msgs, timeout=RELAY_POLL) if sub.pending_msgs else []
        except MemphisError:
            late = []
        for msg in late:
            _settle(msg, msg.nak)

    def _handle(self, stream: str, msg: JsMsg, handler: RelayHandler) -> None:
        event: Optional[Any]
        try:
            event = json.loads(msg.data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            logger.warning("DLS relay: %s: not a JSON object, dropped: %r", stream, msg.data[:200])
            _settle(msg, msg.ack)
            return
        try:
            with self._ctx.lock:
                handler(event, msg.metadata)
        except Exception:  # never stop the relay; JetStream delivers the event again
            logger.exception("DLS relay: %s: handling %r failed; retried in %.1f s", stream, event, RELAY_RETRY_DELAY)
            _settle(msg, lambda: msg.nak(RELAY_RETRY_DELAY))
            return
        _settle(msg, msg.ack)


def _settle(msg: JsMsg, action: Callable[[], None]) -> None:
    """Ack or nak ``msg``; if that cannot be sent, JetStream delivers it again after the ack wait."""
    try:
        action()
    except MemphisError as exc:
        logger.warning("DLS relay: cannot settle %s: %s (delivered again after the ack wait)", msg.reply, exc)


def _ensure_relay(js: JetStream, stream: str, subject: str, durable: str, replicas: int) -> None:
    try:
        js.add_stream(StreamConfig(
            name=stream, subjects=[subject], retention="workqueue", max_age=RELAY_MAX_AGE, max_consumers=-1,
            discard="old", storage="file", num_replicas=replicas,
        ))
    except StreamNameInUseError:
        logger.debug("%s exists with another configuration; keeping it", stream)
    try:
        js.add_consumer(stream, ConsumerConfig(
            durable_name=durable, deliver_policy="all", ack_policy="explicit", ack_wait=RELAY_ACK_WAIT,
            max_deliver=RELAY_MAX_DELIVER, max_ack_pending=-1,
        ), legacy_durable_api=True)
    except ConsumerNameInUseError:
        logger.debug("%s exists with another configuration; keeping it", durable)
