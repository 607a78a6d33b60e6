"""JetStream API data: stream and consumer configurations, infos and PubAcks.

Durations are seconds (floats) in Python and nanoseconds (ints) on the wire; the conversion
happens here, in ``to_request()`` and ``from_response()``, and nowhere else. Every config keeps
an ``extra`` dict that is merged into the request as is, for server fields this module does not
model; every info keeps the ``raw`` response.
"""

from __future__ import annotations

import enum
import json
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional

import attrs

from .._timeouts import is_number
from ..errors import LocalProtocolError, RemoteProtocolError
from ..nats.protocol import INT_MAX, check_int, validate_subject

if TYPE_CHECKING:  # pragma: no cover
    from ..nats.protocol.events import Msg

__all__ = [
    "RetentionPolicy",
    "StorageType",
    "DiscardPolicy",
    "AckPolicy",
    "DeliverPolicy",
    "ReplayPolicy",
    "StreamConfig",
    "StreamState",
    "StreamInfo",
    "ConsumerConfig",
    "ConsumerInfo",
    "SequenceInfo",
    "PubAck",
    "validate_name",
]

_NS = 1_000_000_000
# nats-server refuses these in stream and consumer names (and they would break API subjects)
_BAD_NAME_CHARS = frozenset(" \t\r\n\x00.*>/\\")


def validate_name(name: object, what: str = "name") -> str:
    """Check a stream/consumer name: a non-empty str without whitespace, ``.``, ``*``, ``>``, ``/``, ``\\``.

    Raises:
        LocalProtocolError: the name is not usable in a JetStream API subject.
    """
    if not isinstance(name, str) or not name:
        raise LocalProtocolError(f"{what} must be a non-empty str, got {name!r}")
    bad = sorted({c for c in name if c in _BAD_NAME_CHARS or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise LocalProtocolError(f"invalid {what} {name!r}: contains {''.join(bad)!r}")
    return name


def _decode(msg: Msg, what: str) -> Dict[str, Any]:
    """The JSON object of a ``$JS.API`` (or PubAck) reply; ``what`` names the request in errors."""
    try:
        data = json.loads(msg.payload)
    except ValueError as exc:
        raise RemoteProtocolError(f"{what}: the server's reply is not JSON: {msg.payload[:80]!r}") from exc
    if not isinstance(data, dict):
        raise RemoteProtocolError(f"{what}: the server's reply is not a JSON object: {msg.payload[:80]!r}")
    return data


def _to_ns(seconds: Optional[float]) -> int:
    return 0 if not seconds else int(round(seconds * _NS))


def _from_ns(value: Any) -> float:
    return (value or 0) / _NS


class RetentionPolicy(str, enum.Enum):
    """When a stream removes messages."""

    LIMITS = "limits"
    INTEREST = "interest"
    WORK_QUEUE = "workqueue"


class StorageType(str, enum.Enum):
    """Where a stream keeps messages."""

    FILE = "file"
    MEMORY = "memory"


class DiscardPolicy(str, enum.Enum):
    """What a full stream discards."""

    OLD = "old"
    NEW = "new"


class AckPolicy(str, enum.Enum):
    """How a consumer expects acknowledgements."""

    EXPLICIT = "explicit"
    ALL = "all"
    NONE = "none"


class DeliverPolicy(str, enum.Enum):
    """Where a new consumer starts."""

    ALL = "all"
    LAST = "last"
    NEW = "new"
    BY_START_SEQUENCE = "by_start_sequence"
    BY_START_TIME = "by_start_time"
    LAST_PER_SUBJECT = "last_per_subject"


class ReplayPolicy(str, enum.Enum):
    """How fast a consumer replays stored messages."""

    INSTANT = "instant"
    ORIGINAL = "original"


def _enum(cls: Any) -> Any:
    def convert(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise LocalProtocolError(f"unknown {cls.__name__} {value!r}; use one of {choices}") from None

    return convert


#: Longest duration a config may give: its nanoseconds must fit the server's int64.
_MAX_SECONDS = INT_MAX / 1e9


def _int_min(minimum: int) -> Any:
    def check(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        check_int(value, attribute.name, minimum)  # bounded to the server's int64 too

    return check


def _non_negative(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not is_number(value) or not 0 <= value < _MAX_SECONDS:
        raise LocalProtocolError(f"{attribute.name} must be a finite number of seconds >= 0, got {value!r}")


def _subjects(value: Any) -> List[str]:
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, (list, tuple)) and value is not None:
        raise LocalProtocolError(f"subjects must be a str or a list of str, got {type(value).__name__}")
    subjects = list(value or [])
    for subject in subjects:
        validate_subject(subject)
    return subjects


@attrs.frozen(kw_only=True)
class StreamConfig:
    """A stream's configuration (JetStream ``StreamConfig``; seconds instead of nanoseconds).

    ``-1`` means "unlimited" for the ``max_*`` counts, ``0`` for ``max_age`` and
    ``duplicate_window`` means "server default" (no limit / 2 minutes).
    """

    name: str = attrs.field(validator=lambda i, a, v: validate_name(v, "stream name"))
    subjects: List[str] = attrs.field(factory=list, converter=_subjects)
    retention: RetentionPolicy = attrs.field(default=RetentionPolicy.LIMITS, converter=_enum(RetentionPolicy))
    max_consumers: int = attrs.field(default=-1, validator=_int_min(-1))
    max_msgs: int = attrs.field(default=-1, validator=_int_min(-1))
    max_bytes: int = attrs.field(default=-1, validator=_int_min(-1))
    max_age: float = attrs.field(default=0.0, validator=_non_negative)
    max_msgs_per_subject: int = attrs.field(default=-1, validator=_int_min(-1))
    max_msg_size: int = attrs.field(default=-1, validator=_int_min(-1))
    discard: DiscardPolicy = attrs.field(default=DiscardPolicy.OLD, converter=_enum(DiscardPolicy))
    storage: StorageType = attrs.field(default=StorageType.FILE, converter=_enum(StorageType))
    num_replicas: int = attrs.field(default=1, validator=_int_min(1))
    no_ack: bool = False
    duplicate_window: float = attrs.field(default=0.0, validator=_non_negative)
    description: Optional[str] = None
    allow_rollup_hdrs: bool = False
    deny_delete: bool = False
    deny_purge: bool = False
    allow_direct: bool = False
    extra: Dict[str, Any] = attrs.field(factory=dict)

    def to_request(self) -> Dict[str, Any]:
        """The JSON object for ``STREAM.CREATE``/``STREAM.UPDATE``."""
        body: Dict[str, Any] = {
            "name": self.name,
            "subjects": list(self.subjects),
            "retention": self.retention.value,
            "max_consumers": self.max_consumers,
            "max_msgs": self.max_msgs,
            "max_bytes": self.max_bytes,
            "max_age": _to_ns(self.max_age),
            "max_msgs_per_subject": self.max_msgs_per_subject,
            "max_msg_size": self.max_msg_size,
            "discard": self.discard.value,
            "storage": self.storage.value,
            "num_replicas": self.num_replicas,
            "no_ack": self.no_ack,
            "duplicate_window": _to_ns(self.duplicate_window),
            "allow_rollup_hdrs": self.allow_rollup_hdrs,
            "deny_delete": self.deny_delete,
            "deny_purge": self.deny_purge,
            "allow_direct": self.allow_direct,
        }
        if self.description is not None:
            body["description"] = self.description
        body.update(self.extra)
        return body

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "StreamConfig":
        """Build from a server ``config`` object (unknown keys go to ``extra``)."""
        known = {f.name for f in attrs.fields(cls)} - {"extra"}
        kwargs: Dict[str, Any] = {k: v for k, v in data.items() if k in known and v is not None}
        kwargs["max_age"] = _from_ns(data.get("max_age"))
        kwargs["duplicate_window"] = _from_ns(data.get("duplicate_window"))
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(extra=extra, **kwargs)


@attrs.frozen(kw_only=True)
class StreamState:
    """Counts and sequences of a stream."""

    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    consumer_count: int = 0

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "StreamState":
        """Build from a server ``state`` object."""
        return cls(
            messages=int(data.get("messages", 0)),
            bytes=int(data.get("bytes", 0)),
            first_seq=int(data.get("first_seq", 0)),
            last_seq=int(data.get("last_seq", 0)),
            consumer_count=int(data.get("consumer_count", 0)),
        )


@attrs.frozen(kw_only=True)
class StreamInfo:
    """A stream's configuration and state, as the server reports them."""

    config: StreamConfig
    state: StreamState
    raw: Dict[str, Any] = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "StreamInfo":
        """Build from a ``stream_info_response`` / ``stream_create_response``."""
        return cls(
            config=StreamConfig.from_response(data.get("config") or {}),
            state=StreamState.from_response(data.get("state") or {}),
            raw=dict(data),
        )


@attrs.frozen(kw_only=True)
class ConsumerConfig:
    """A consumer's configuration (JetStream ``ConsumerConfig``; seconds instead of nanoseconds).

    Pull consumers have no ``deliver_subject``. ``durable_name`` makes the consumer survive
    disconnects; ``name`` (server >= 2.9) names it for the ``CONSUMER.CREATE.<stream>.<name>``
    API. ``max_ack_pending`` -1 means unlimited.
    """

    durable_name: Optional[str] = None
    name: Optional[str] = None
    description: Optional[str] = None
    deliver_policy: DeliverPolicy = attrs.field(default=DeliverPolicy.ALL, converter=_enum(DeliverPolicy))
    opt_start_seq: Optional[int] = None
    ack_policy: AckPolicy = attrs.field(default=AckPolicy.EXPLICIT, converter=_enum(AckPolicy))
    ack_wait: float = attrs.field(default=30.0, validator=_non_negative)
    max_deliver: int = attrs.field(default=-1, validator=_int_min(-1))
    filter_subject: Optional[str] = None
    replay_policy: ReplayPolicy = attrs.field(default=ReplayPolicy.INSTANT, converter=_enum(ReplayPolicy))
    max_ack_pending: int = attrs.field(default=1000, validator=_int_min(-1))
    max_waiting: Optional[int] = None
    headers_only: bool = False
    inactive_threshold: float = attrs.field(default=0.0, validator=_non_negative)
    num_replicas: int = attrs.field(default=0, validator=_int_min(0))
    mem_storage: bool = False
    extra: Dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for what in ("durable_name", "name"):
            value = getattr(self, what)
            if value is not None:
                validate_name(value, what)
        if self.deliver_policy is DeliverPolicy.BY_START_SEQUENCE:
            if type(self.opt_start_seq) is not int or self.opt_start_seq < 1:
                raise LocalProtocolError(
                    f"deliver_policy by_start_sequence needs opt_start_seq >= 1, got {self.opt_start_seq!r}"
                )
        elif self.opt_start_seq is not None:
            raise LocalProtocolError("opt_start_seq is only valid with deliver_policy by_start_sequence")

    @property
    def consumer_name(self) -> Optional[str]:
        """The name the API subject uses: ``name`` or ``durable_name``."""
        return self.name or self.durable_name

    def to_request(self) -> Dict[str, Any]:
        """The ``config`` object for ``CONSUMER.CREATE`` / ``CONSUMER.DURABLE.CREATE``."""
        body: Dict[str, Any] = {
            "deliver_policy": self.deliver_policy.value,
            "ack_policy": self.ack_policy.value,
            "ack_wait": _to_ns(self.ack_wait),
            "max_deliver": self.max_deliver,
            "replay_policy": self.replay_policy.value,
            "max_ack_pending": self.max_ack_pending,
            "headers_only": self.headers_only,
        }
        for key in ("durable_name", "name", "description", "opt_start_seq", "filter_subject", "max_waiting"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.inactive_threshold:
            body["inactive_threshold"] = _to_ns(self.inactive_threshold)
        if self.num_replicas:
            body["num_replicas"] = self.num_replicas
        if self.mem_storage:
            body["mem_storage"] = True
        body.update(self.extra)
        return body

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "ConsumerConfig":
        """Build from a server consumer ``config`` object (unknown keys go to ``extra``)."""
        known = {f.name for f in attrs.fields(cls)} - {"extra"}
        kwargs: Dict[str, Any] = {k: v for k, v in data.items() if k in known and v is not None}
        kwargs["ack_wait"] = _from_ns(data.get("ack_wait"))
        kwargs["inactive_threshold"] = _from_ns(data.get("inactive_threshold"))
        if kwargs.get("deliver_policy") != DeliverPolicy.BY_START_SEQUENCE.value:
            kwargs.pop("opt_start_seq", None)
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(extra=extra, **kwargs)


@attrs.frozen(kw_only=True)
class SequenceInfo:
    """A consumer's position: consumer and stream sequence."""

    consumer_seq: int = 0
    stream_seq: int = 0

    @classmethod
    def from_response(cls, data: Optional[Mapping[str, Any]]) -> "SequenceInfo":
        """Build from ``delivered`` / ``ack_floor``."""
        data = data or {}
        return cls(consumer_seq=int(data.get("consumer_seq", 0)), stream_seq=int(data.get("stream_seq", 0)))


@attrs.frozen(kw_only=True)
class ConsumerInfo:
    """A consumer's configuration and state, as the server reports them."""

    stream_name: str
    name: str
    config: ConsumerConfig
    delivered: SequenceInfo
    ack_floor: SequenceInfo
    num_ack_pending: int = 0
    num_redelivered: int = 0
    num_waiting: int = 0
    num_pending: int = 0
    raw: Dict[str, Any] = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "ConsumerInfo":
        """Build from a ``consumer_info_response`` / ``consumer_create_response``."""
        return cls(
            stream_name=str(data.get("stream_name", "")),
            name=str(data.get("name", "")),
            config=ConsumerConfig.from_response(data.get("config") or {}),
            delivered=SequenceInfo.from_response(data.get("delivered")),
            ack_floor=SequenceInfo.from_response(data.get("ack_floor")),
            num_ack_pending=int(data.get("num_ack_pending", 0)),
            num_redelivered=int(data.get("num_redelivered", 0)),
            num_waiting=int(data.get("num_waiting", 0)),
            num_pending=int(data.get("num_pending", 0)),
            raw=dict(data),
        )


class PubAck(NamedTuple):
    """The server's acknowledgement of a stored message (a named tuple: cheap to build, since
    one is made for every published message)."""

    stream: str
    seq: int
    duplicate: bool = False
    domain: Optional[str] = None

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "PubAck":
        """Build from a ``pub_ack_response`` (without ``error``)."""
        return cls(
            stream=str(data["stream"]),
            seq=int(data["seq"]),
            duplicate=bool(data.get("duplicate", False)),
            domain=data.get("domain") or None,
        )
