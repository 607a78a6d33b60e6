"""Pull consumers: ``fetch()`` sends ``CONSUMER.MSG.NEXT`` requests and collects what arrives.

Each :class:`PullSubscription` owns one wildcard inbox subscription ``<inbox>.*`` and sends
every pull request with the reply subject ``<inbox>.<request id>``. JetStream delivers messages
with their *stream* subject (the reply subject is rewritten), so messages are routed by the
subscription's SID, and they are valid whichever request they answer: a message that arrives
after its fetch returned is kept and handed out by the next fetch. Status messages (404, 408,
409, 100) arrive on ``<inbox>.<request id>`` and only end the request they belong to; stale
ones are ignored.

The server is asked to expire a request slightly before the client stops waiting, so a request
never outlives its ``fetch`` (an orphaned request would otherwise take messages meant for the
next fetch, nats.py #933).
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

import attrs

from .. import _defaults
from .._timeouts import is_number
from ..errors import (
    ConsumerNotFoundError,
    HeartbeatTimeout,
    JetStreamError,
    JetStreamNotEnabledError,
    LocalProtocolError,
    MessageTimeout,
    SubscriptionClosedError,
)
from ..nats.protocol import check_int
from ..nats.protocol.events import Msg
from ..nats.protocol.headers import Headers
from ..nats.protocol.parser import Parser
from .msg import JsMsg

if TYPE_CHECKING:  # pragma: no cover
    from ..nats.connection import Connection

__all__ = ["PullSubscription", "RawStreamMsg"]

logger = logging.getLogger("memphis_sync.js_pull")  # the name users configure (kept from the flat layout)

_NS = 1_000_000_000
#: how much earlier than the client's deadline the server expires a pull request
_EXPIRES_MARGIN = 0.05
#: extra client wait after ``expires`` for the server's 408 to arrive
_EXPIRES_GRACE = 0.05

# 409 descriptions (lower-cased) after which the request is over but the consumer is fine
_409_END = ("exceeded maxwaiting", "batch completed", "message size exceeds maxbytes", "leadership change", "server shutdown", "exceeded maxackpending")
# 409 descriptions that mean the request itself can never succeed
_409_BAD_REQUEST = ("exceeded maxrequestbatch", "exceeded maxrequestexpires", "exceeded maxrequestmaxbytes")


@attrs.frozen(kw_only=True)
class RawStreamMsg:
    """A message read directly from a stream (``STREAM.MSG.GET``)."""

    subject: str
    seq: int
    data: bytes
    headers: Optional[Headers]
    time: Optional[datetime.datetime]

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "RawStreamMsg":
        """Build from the ``message`` object of a ``stream_msg_get_response``."""
        headers = None
        if data.get("hdrs"):
            raw = base64.b64decode(data["hdrs"])
            parser = Parser()
            # reuse the wire parser: wrap the header block as an HMSG frame
            parser.receive_data(b"HMSG _ 1 %d %d\r\n%b\r\n" % (len(raw), len(raw), raw))
            event = parser.next_event()
            headers = getattr(event, "headers", None)
        stamp = None
        if data.get("time"):
            text = str(data["time"])
            try:
                main, _, frac = text.rstrip("Z").partition(".")
                stamp = datetime.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(
                    microsecond=int((frac + "000000")[:6]) if frac else 0, tzinfo=datetime.timezone.utc
                )
            except ValueError:
                stamp = None
        return cls(
            subject=str(data.get("subject", "")),
            seq=int(data.get("seq", 0)),
            data=base64.b64decode(data.get("data") or b""),
            headers=headers,
            time=stamp,
        )


class PullSubscription:
    """A bound pull consumer. Create with :meth:`JetStream.pull_subscribe`, which passes its
    connection and API ``prefix`` (``$JS.API``...).

    ``fetch`` may be called from any thread, but concurrent fetches on one subscription share
    its message queue; use one subscription per fetching thread for strict batches.
    """

    def __init__(self, conn: "Connection", prefix: str, stream: str, consumer: str) -> None:
        self.stream = stream
        self.consumer = consumer
        self._conn = conn
        self._inbox = conn.new_inbox()
        self._sub = conn.subscribe(self._inbox + ".*")
        self._next_subject = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._req_ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<PullSubscription {self.stream}/{self.consumer} pending={self._sub.pending_msgs}>"

    @property
    def pending_msgs(self) -> int:
        """Messages received and not yet handed out by ``fetch``."""
        return self._sub.pending_msgs

    def fetch(
        self,
        batch: int = 1,
        timeout: Optional[float] = _defaults.JS_FETCH_TIMEOUT,
        *,
        no_wait: bool = False,
        max_bytes: Optional[int] = None,
        heartbeat: Optional[float] = None,
    ) -> List[JsMsg]:
        """Fetch up to ``batch`` messages, waiting at most ``timeout`` seconds.

        Returns what arrived before the wait ran out (possibly fewer than ``batch``, possibly
        none); never raises for a partial or empty batch.

        Args:
            batch: most messages to return (>= 1).
            timeout: the longest wait, in seconds (> 0).
            no_wait: ask for only what is available now; returns at once.
            max_bytes: most payload bytes the server should send for this request.
            heartbeat: ask the server for idle heartbeats every so many seconds; if they
                stop while nothing arrived, :class:`HeartbeatTimeout` is raised.

        Raises:
            ConsumerNotFoundError: the consumer was deleted.
            JetStreamNotEnabledError: no stream/consumer answers (503).
            JetStreamError: the server refused the request (e.g. batch over its limit).
            LocalProtocolError: bad arguments.
        """
        check_int(batch, "batch", 1)
        if not is_number(timeout) or not 0 < timeout < float("inf"):
            raise LocalProtocolError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        if max_bytes is not None:
            check_int(max_bytes, "max_bytes", 1)
        if heartbeat is not None and (not is_number(heartbeat) or not 0 < heartbeat <= timeout / 2):
            raise LocalProtocolError(f"heartbeat must be > 0 and at most half the timeout, got {heartbeat!r}")
        conn = self._conn
        sub = self._sub
        out: List[JsMsg] = []
        # 1. messages that arrived after an earlier fetch returned
        while len(out) < batch and sub.pending_msgs > 0:
            try:
                msg = sub.next_msg(timeout=0)
            except MessageTimeout:
                break
            if msg.status is None:
                out.append(JsMsg(conn, msg))
        if len(out) >= batch:
            return out
        # 2. one pull request for the rest
        deadline = time.monotonic() + timeout
        want = batch - len(out)
        body: Dict[str, Any] = {"batch": want}
        if no_wait or out:
            body["no_wait"] = True
        else:
            expires = max(0.001, timeout - min(_EXPIRES_MARGIN, timeout * 0.2))
            body["expires"] = int(expires * _NS)
            deadline += _EXPIRES_GRACE
        if max_bytes is not None:
            body["max_bytes"] = max_bytes
        if heartbeat is not None:
            body["idle_heartbeat"] = int(heartbeat * _NS)
        reply = f"{self._inbox}.{next(self._req_ids)}"
        conn.queue_publish(self._next_subject, json.dumps(body, separators=(",", ":")).encode(), reply, kick=False, deadline=deadline)
        conn.write_now(deadline)
        # 3. collect until the batch is full, the request ends, or time runs out
        last_beat = time.monotonic()
        while len(out) < batch:
            now = time.monotonic()
            left = deadline - now
            if heartbeat is not None:
                left = min(left, last_beat + 2 * heartbeat - now)
            if left <= 0:
                if heartbeat is not None and time.monotonic() < deadline and not out:
                    raise HeartbeatTimeout(f"no heartbeat from {self.stream}/{self.consumer} for {2 * heartbeat} s")
                break
            try:
                msg = sub.next_msg(timeout=left)
            except MessageTimeout:
                continue
            except SubscriptionClosedError:
                raise
            if msg.status is None:
                out.append(JsMsg(conn, msg))
                last_beat = time.monotonic()
                continue
            if msg.subject != reply:
                continue  # a status for an earlier request
            last_beat = time.monotonic()
            if self._request_over(msg, bool(out)):
                break
        # deliveries already queued (e.g. for an earlier request that outlived its fetch under
        # load) are valid: hand them out now rather than leaving them for the next fetch
        while len(out) < batch and sub.pending_msgs > 0:
            try:
                msg = sub.next_msg(timeout=0)
            except MessageTimeout:
                break
            if msg.status is None:
                out.append(JsMsg(conn, msg))
        return out

    def _request_over(self, msg: Msg, have_messages: bool) -> bool:
        """Handle a status message of the current request; True when the request is over."""
        status = msg.status
        description = (msg.description or "").lower()
        if status == 100:
            return False  # idle heartbeat (or flow control, not used by pull)
        if status in (404, 408):
            return True
        if status == 409:
            if "consumer deleted" in description:
                raise ConsumerNotFoundError(f"consumer {self.stream}/{self.consumer} was deleted", code=409)
            if any(text in description for text in _409_BAD_REQUEST):
                if have_messages:
                    return True
                raise JetStreamError(msg.description or "pull request refused", code=409)
            if not any(text in description for text in _409_END):
                logger.debug("pull request ended by 409 %r", msg.description)
            return True
        if status == 503:
            raise JetStreamNotEnabledError(
                f"no responders for {self._next_subject!r}: stream or consumer missing, or JetStream unavailable", code=503
            )
        raise JetStreamError(msg.description or f"pull request failed with status {status}", code=status or 0)

    def unsubscribe(self) -> None:
        """Stop receiving (the consumer itself stays on the server)."""
        self._sub.unsubscribe()

    def __enter__(self) -> "PullSubscription":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._sub.is_active:
            try:
                self.unsubscribe()
            except Exception:
                logger.debug("unsubscribe on exit failed", exc_info=True)
