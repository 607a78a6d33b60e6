"""Memphis messages as consumers see them, and the headers producers attach.

A :class:`Message` wraps one message fetched from a station partition (a JetStream message) or
re-sent by the broker's dead-letter station (a core NATS message with ``$memphis_pm_*``
headers, see the wire contract §9.5). Its methods keep the official SDK's names:
``get_data()``, ``get_headers()``, ``ack()``, ``nack()``, ``delay(seconds)``,
``dead_letter(reason)``...

:class:`Headers` is the NATS :class:`memphis_sync.nats.protocol.headers.Headers` (ordered, multi-valued,
case-sensitive) that refuses the reserved ``$memphis`` prefix, as the SDK's ``Headers.add`` does.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

from .._html import rows_table
from ..errors import LocalProtocolError, MemphisError, MemphisHeaderError, MemphisSchemaError, MemphisValueError
from ..jetstream.msg import JsMsg
from ..nats.protocol import Msg
from ..nats.protocol import headers as _nats_headers
from .validate import check_number

if TYPE_CHECKING:  # pragma: no cover
    from .requester import Requester
    from .state import StationCache

__all__ = ["Headers", "Message", "MessageBatch", "RESERVED_HEADER_PREFIX", "to_wire_headers"]

#: Header names starting with this are written by the SDK and the broker only.
RESERVED_HEADER_PREFIX = "$memphis"
_RESERVED_TEXT = "Keys in headers should not start with $memphis"

_PM_ID = "$memphis_pm_id"
_PM_CG = "$memphis_pm_cg_name"


def _check_key(key: object) -> None:
    if isinstance(key, str) and key.startswith(RESERVED_HEADER_PREFIX):
        raise MemphisHeaderError(_RESERVED_TEXT)


class Headers(_nats_headers.Headers):
    """Message headers for :meth:`Producer.produce`: keys starting with ``$memphis`` are refused.

    Use :meth:`add` as with the official SDK (``h = Headers(); h.add("key", "value")``), or build
    it from a dict. A plain ``dict`` is accepted by ``produce`` as well.

    Raises:
        MemphisHeaderError: a reserved key, or a name/value that cannot be sent (CR/LF, not a str).
    """

    __slots__ = ()

    def __init__(self, data: _nats_headers.HeadersInit = None) -> None:
        super().__init__(None)
        if data is None:
            return
        try:
            pairs = _nats_headers.header_pairs(data)
        except LocalProtocolError as exc:
            raise MemphisHeaderError(str(exc).replace("memphis: ", "", 1)) from None
        for name, value in pairs:
            self.add(name, value)

    def add(self, key: str, value: str) -> None:
        """Append a header (SDK name). Raises :class:`MemphisHeaderError` for a reserved or invalid key."""
        _check_key(key)
        try:
            super().add(key, value)
        except LocalProtocolError as exc:
            raise MemphisHeaderError(str(exc).replace("memphis: ", "", 1)) from exc

    def __setitem__(self, key: str, value: str) -> None:
        _check_key(key)
        try:
            super().__setitem__(key, value)
        except LocalProtocolError as exc:
            raise MemphisHeaderError(str(exc).replace("memphis: ", "", 1)) from exc

    @property
    def headers(self) -> Dict[str, str]:
        """A plain ``dict`` of the headers (first value per name), like the SDK's attribute."""
        return {name: self[name] for name in self}


HeadersArg = Union[_nats_headers.Headers, Mapping[str, Any], None]


def to_wire_headers(user: HeadersArg, memphis: Mapping[str, str]) -> _nats_headers.Headers:
    """Merge the caller's headers (checked: no ``$memphis`` keys) with the SDK's own headers.

    Raises:
        MemphisHeaderError: a reserved key, a bad name/value, or ``user`` is not a mapping.
    """
    out = _nats_headers.Headers()
    if user:
        if not isinstance(user, (_nats_headers.Headers, Mapping)):
            raise MemphisHeaderError(f"headers must be a Headers object or a dict, got {type(user).__name__}")
        pairs = _nats_headers.header_pairs(user)
        try:
            for name, value in pairs:
                _check_key(name)
                out.add(name, value)
        except LocalProtocolError as exc:
            raise MemphisHeaderError(str(exc).replace("memphis: ", "", 1)) from exc
    try:
        for name, value in memphis.items():
            out[name] = value
    except LocalProtocolError as exc:  # a msg-id with CR/LF/NUL or a lone surrogate
        raise MemphisHeaderError(str(exc).replace("memphis: ", "", 1)) from exc
    return out


class Message:
    """A message received by a consumer. Not shared between threads while being acked.

    Attributes:
        station_name / partition: where it came from; consumer_group: who received it.
    """

    __slots__ = ("_msg", "_requester", "_stations", "internal_station_name", "consumer_group", "partition", "_is_dls")

    def __init__(
        self,
        msg: Union[JsMsg, Msg],
        requester: "Requester",
        stations: "StationCache",
        internal_station_name: str,
        consumer_group: str,
        partition: int,
    ) -> None:
        self._msg = msg
        self._requester = requester
        self._stations = stations
        self.internal_station_name = internal_station_name
        self.consumer_group = consumer_group
        self.partition = partition
        self._is_dls = not isinstance(msg, JsMsg)

    def __repr__(self) -> str:
        kind = "dls " if self._is_dls else ""
        return f"<Message {kind}{self.internal_station_name}${self.partition} seq={self.get_sequence_number()} size={len(self._payload)}>"

    @property
    def _payload(self) -> bytes:
        msg = self._msg
        return msg.data if isinstance(msg, JsMsg) else msg.payload

    # -- accessors -----------------------------------------------------------------------

    def get_data(self) -> bytearray:
        """The payload as a ``bytearray`` (as the SDK returns it)."""
        return bytearray(self._payload)

    def get_data_deserialized(self) -> Any:
        """The payload, validated against the station's schema and decoded per its type.

        As in the SDK, the payload is first validated as a produced message would be (a JSON
        payload that misses a required field fails, not only one that is not JSON); then json/avro
        schemas give the ``json.loads`` result, graphql the text, protobuf the parsed message
        object. Without a schema: the bytes (``bytearray``).

        Raises:
            MemphisSchemaError: the payload does not match the attached schema (the text starts
                with the SDK's ``"Deserialization has been failed since the message format does
                not align with the currently attached schema: "``). The SDK returns ``None``
                instead.
        """
        schema = self._stations.schema_of(self.internal_station_name)
        if schema is None:
            return self.get_data()
        try:
            schema.serialize(self._payload)
            return schema.deserialize(self._payload)
        except Exception as exc:
            reason = str(exc)
            raise MemphisSchemaError(
                "Deserialization has been failed since the message format does not align with the "
                f"currently attached schema: {reason[len('memphis: '):] if reason.startswith('memphis: ') else reason}"
            ) from exc

    def get_headers(self) -> Dict[str, str]:
        """The headers as a plain ``dict``, as the official SDK returns them, including the
        ``$memphis_*`` ones (``{}`` if none). A header sent several times maps to its last
        value, as in the SDK; :meth:`get_all_headers` keeps every value."""
        headers = self._msg.headers
        return {} if headers is None else {name: value for name, value in headers.items_all()}

    def get_all_headers(self) -> _nats_headers.Headers:
        """The headers as a multi-valued, order-keeping :class:`~memphis_sync.nats.protocol.headers.Headers`."""
        headers = self._msg.headers
        return headers.copy() if headers is not None else _nats_headers.Headers()

    def get_sequence_number(self) -> Optional[int]:
        """The stream sequence of the message in its partition (None for a re-sent DLS message)."""
        msg = self._msg
        return msg.metadata.stream_seq if isinstance(msg, JsMsg) else None

    def get_timesent(self) -> Optional[datetime.datetime]:
        """When the broker stored the message, as an aware UTC ``datetime`` (None for DLS re-sends)."""
        msg = self._msg
        return msg.metadata.timestamp if isinstance(msg, JsMsg) else None

    def get_delivery_count(self) -> Optional[int]:
        """How many times this message was delivered to the group (1 = first time)."""
        msg = self._msg
        return msg.metadata.num_delivered if isinstance(msg, JsMsg) else None

    # -- acknowledgements ----------------------------------------------------------------

    def ack(self) -> None:
        """Acknowledge: the group will not receive this message again.

        Raises:
            MessageAlreadyAckedError: ack, nack, delay or dead_letter was already called.
        """
        msg = self._msg
        if isinstance(msg, JsMsg):
            msg.ack()
            return
        headers = msg.headers
        pm_id = headers.get(_PM_ID) if headers is not None else None
        cg = headers.get(_PM_CG) if headers is not None else None
        if pm_id is None or cg is None:
            raise MemphisError("this message has neither a JetStream ack subject nor $memphis_pm_* headers")
        self._requester.publish_json("$memphis_pm_acks", {"id": int(pm_id), "cg_name": cg})

    def nack(self) -> None:
        """Ask for immediate redelivery to the group (no-op for a re-sent DLS message).

        Raises:
            MessageAlreadyAckedError: ack, nack, delay or dead_letter was already called.
        """
        msg = self._msg
        if isinstance(msg, JsMsg):
            msg.nak()

    def delay(self, delay: float) -> None:
        """Redeliver to the group after ``delay`` seconds (counts as a delivery attempt).

        Raises:
            MemphisValueError: ``delay`` is not a number >= 0.
            MemphisError: the message is a re-sent DLS message (``"cannot delay DLS message"``).
            MessageAlreadyAckedError: ack, nack, delay or dead_letter was already called.
        """
        msg = self._msg
        if not isinstance(msg, JsMsg):
            raise MemphisError("cannot delay DLS message")
        check_number(delay, "delay", "seconds")
        msg.nak(delay=delay)

    def in_progress(self) -> None:
        """Tell the broker the message is still being worked on (resets ``max_ack_time_ms``).

        Raises:
            MessageAlreadyAckedError: ack, nack, delay or dead_letter was already called.
        """
        msg = self._msg
        if isinstance(msg, JsMsg):
            msg.in_progress()

    def dead_letter(self, reason: str) -> None:
        """Stop redelivering this message to the group and record it in the dead-letter station.

        Sends ``+TERM``, then publishes ``{station_name, error, partition, cg_name, seq}`` to
        ``$memphis_nacked_dls`` (wire contract §9.3).

        Raises:
            MemphisValueError: the message is a re-sent DLS message.
            MessageAlreadyAckedError: ack, nack, delay or dead_letter was already called.
        """
        msg = self._msg
        if not isinstance(msg, JsMsg):
            raise MemphisValueError("a re-sent DLS message can not be dead-lettered again")
        msg.term()
        self._requester.publish_json(
            "$memphis_nacked_dls",
            {
                "station_name": self.internal_station_name,
                "error": str(reason),
                "partition": self.partition,
                "cg_name": self.consumer_group,
                "seq": msg.metadata.stream_seq,
            },
        )


class MessageBatch(List[Message]):
    """What a fetch returns: a plain ``list`` of :class:`Message`, with a table as its notebook
    (HTML) repr: partition, sequence, delivery count, size, headers and the start of the data."""

    def _repr_html_(self) -> str:
        rows = []
        for msg in self[:_HTML_ROWS]:
            data = bytes(msg.get_data())
            shown = data[:60].decode("utf-8", errors="replace") + ("..." if len(data) > 60 else "")
            headers = {k: v for k, v in msg.get_headers().items() if not k.startswith("$memphis")}
            rows.append((msg.partition, msg.get_sequence_number(), msg.get_delivery_count(), len(data), headers, shown))
        more = f", first {_HTML_ROWS} shown" if len(self) > _HTML_ROWS else ""
        return rows_table(f"{len(self)} message(s){more}", ("partition", "seq", "deliveries", "bytes", "headers", "data"), rows)


#: Messages shown in a batch's HTML repr.
_HTML_ROWS = 50
