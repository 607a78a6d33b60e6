"""Messages delivered by JetStream pull consumers: metadata from the ack subject, and acks.

Acks are plain publishes to the message's reply subject (``$JS.ACK...``), so they go through
the connection's coalescing write path: acking a fetched batch of 100 costs a few socket writes,
not 100. ``ack``, ``nak`` and ``term`` are terminal and may be sent once; ``in_progress`` may be
repeated before them.
"""

from __future__ import annotations

import datetime
import json
import threading
from typing import TYPE_CHECKING, Optional

import attrs

from .._timeouts import is_number
from ..errors import LocalProtocolError, MessageAlreadyAckedError, RemoteProtocolError
from ..nats.protocol.events import Msg
from ..nats.protocol.headers import Headers

if TYPE_CHECKING:  # pragma: no cover
    from ..nats.connection import Connection

__all__ = ["JsMsg", "MsgMetadata"]

_ACK = b"+ACK"
_NAK = b"-NAK"
_WPI = b"+WPI"
_TERM = b"+TERM"


@attrs.frozen(kw_only=True)
class MsgMetadata:
    """What the ack subject says about a delivered message.

    Attributes:
        stream / consumer: names; domain: JetStream domain or None.
        num_delivered: delivery count (> 1 means a redelivery).
        stream_seq / consumer_seq: sequences.
        timestamp_ns: when the stream stored the message (Unix ns).
        num_pending: messages left for the consumer after this one.
    """

    stream: str
    consumer: str
    num_delivered: int
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int
    num_pending: int
    domain: Optional[str] = None

    @property
    def timestamp(self) -> datetime.datetime:
        """The store time as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.timestamp_ns / 1e9, tz=datetime.timezone.utc)

    @classmethod
    def from_reply(cls, reply: str) -> "MsgMetadata":
        """Parse ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (v1) or the
        v2 form with domain and account hash (12 tokens).

        Raises:
            RemoteProtocolError: ``reply`` is not a JetStream ack subject.
        """
        tokens = reply.split(".")
        try:
            if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
                domain = None
                stream, consumer, rest = tokens[2], tokens[3], tokens[4:]
            elif len(tokens) >= 11 and tokens[0] == "$JS" and tokens[1] == "ACK":
                domain = None if tokens[2] == "_" else tokens[2]
                stream, consumer, rest = tokens[4], tokens[5], tokens[6:11]
            else:
                raise ValueError
            delivered, sseq, cseq, ts, pending = (int(t) for t in rest)
        except ValueError:
            raise RemoteProtocolError(f"not a JetStream ack subject: {reply!r}") from None
        return cls(
            stream=stream, consumer=consumer, num_delivered=delivered, stream_seq=sseq,
            consumer_seq=cseq, timestamp_ns=ts, num_pending=pending, domain=domain,
        )


class JsMsg:
    """A message fetched from a JetStream consumer.

    Attributes:
        subject: the stream subject it was published to.
        data: the payload (``bytes``).
        headers: :class:`Headers` or None.
        reply: the ack subject.
    """

    __slots__ = ("_conn", "subject", "data", "headers", "reply", "_metadata", "_acked", "_lock")

    def __init__(self, conn: "Connection", msg: Msg) -> None:
        self._conn = conn
        self.subject = msg.subject
        self.data = msg.payload
        self.headers: Optional[Headers] = msg.headers
        self.reply = msg.reply or ""
        self._metadata: Optional[MsgMetadata] = None
        self._acked = False
        self._lock = threading.Lock()

    @property
    def metadata(self) -> MsgMetadata:
        """:class:`MsgMetadata` parsed (once) from the ack subject."""
        md = self._metadata
        if md is None:
            md = self._metadata = MsgMetadata.from_reply(self.reply)
        return md

    @property
    def is_acked(self) -> bool:
        """True after ``ack``, ``nak`` or ``term``."""
        return self._acked

    def _terminal(self, payload: bytes) -> None:
        if not self.reply:
            raise LocalProtocolError("this message has no ack subject (was it fetched from JetStream?)")
        with self._lock:
            if self._acked:
                raise MessageAlreadyAckedError(f"message {self.reply!r} was already acknowledged")
            self._acked = True
        try:
            self._conn.publish_trusted(self.reply, payload)
        except BaseException:
            self._acked = False  # nothing was sent: the caller may try again
            raise

    def ack(self) -> None:
        """Acknowledge: the consumer will not deliver this message again.

        Raises:
            MessageAlreadyAckedError: ack, nak or term was already sent.
        """
        self._terminal(_ACK)

    def ack_sync(self, timeout: float = 5.0) -> None:
        """Acknowledge and wait until the server confirms it (a "double ack").

        Raises:
            MessageAlreadyAckedError: ack, nak or term was already sent.
            RequestTimeout: no confirmation in time.
        """
        with self._lock:
            if self._acked:
                raise MessageAlreadyAckedError(f"message {self.reply!r} was already acknowledged")
            self._acked = True
        try:
            self._conn.request(self.reply, _ACK, timeout=timeout)
        except BaseException:
            self._acked = False
            raise

    def nak(self, delay: Optional[float] = None) -> None:
        """Negative-acknowledge: redeliver, at once or after ``delay`` seconds.

        Raises:
            MessageAlreadyAckedError: ack, nak or term was already sent.
            LocalProtocolError: ``delay`` is negative, not finite or not a number.
        """
        if delay is None:
            self._terminal(_NAK)
            return
        if not is_number(delay) or not 0 <= delay < 9e9:  # inf too
            raise LocalProtocolError(f"nak delay must be a finite number of seconds >= 0, got {delay!r}")
        self._terminal(_NAK + b" " + json.dumps({"delay": int(delay * 1e9)}).encode())

    def in_progress(self) -> None:
        """Tell the server we are still working on it (resets its ack wait); may be repeated.

        Raises:
            MessageAlreadyAckedError: ack, nak or term was already sent.
        """
        if self._acked:
            raise MessageAlreadyAckedError(f"message {self.reply!r} was already acknowledged")
        self._conn.publish_trusted(self.reply, _WPI)

    def term(self, reason: Optional[str] = None) -> None:
        """Stop redelivering this message (to this consumer), optionally saying why.

        Raises:
            MessageAlreadyAckedError: ack, nak or term was already sent.
        """
        payload = _TERM if not reason else _TERM + b" " + reason.replace("\r", " ").replace("\n", " ").encode()
        self._terminal(payload)

    def __repr__(self) -> str:
        return f"<JsMsg subject={self.subject!r} size={len(self.data)} reply={self.reply!r}>"
