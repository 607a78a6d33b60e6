"""Sans-IO NATS protocol, part 1: the limits, the roles, and the events a :class:`~.parser.Parser`
returns (one class per wire operation: ``INFO``, ``MSG``/``HMSG``, ``PING``, ``PONG``, ``+OK``,
``-ERR``, and for the server role ``CONNECT``, ``PUB``/``HPUB``, ``SUB``, ``UNSUB``)."""

from __future__ import annotations

import enum
import json
from typing import Any, Dict, Final, List, Mapping, Optional, Union

import attrs

from ...errors import RemoteProtocolError
from .headers import Headers

__all__ = [
    "MAX_CONTROL_LINE", "DEFAULT_MAX_PAYLOAD", "MAX_HEADER_BLOCK", "MAX_JSON_LINE", "CRLF", "PING", "PONG",
    "Role", "CLIENT", "SERVER", "NEED_DATA", "EOF", "Info", "Msg", "Ping", "Pong", "Ok", "Err", "Connect",
    "Pub", "Sub", "Unsub", "Event",
]

# -- limits ----------------------------------------------------------------------------------

#: nats-server's default ``max_control_line``; the nats.go and nats-py parsers use it too.
MAX_CONTROL_LINE: Final[int] = 4096
#: nats-server's default ``max_payload`` (1 MiB), in force until INFO says otherwise.
DEFAULT_MAX_PAYLOAD: Final[int] = 1048576
#: Largest header block accepted; real ones are a few hundred bytes, this bounds abuse.
MAX_HEADER_BLOCK: Final[int] = 65536
#: INFO (``connect_urls`` of a big cluster) and CONNECT (JWTs) carry JSON that can exceed 4 KiB.
#: nats-server holds a client's lines to ``max_control_line`` (4096 by default) but not the
#: lines of routes, leaf nodes and gateways, which carry server INFO (recent releases cap those
#: at 16 times it: 64 KiB, the bound used here; an INFO is ~500 bytes plus ~25 per cluster URL).
MAX_JSON_LINE: Final[int] = 65536
#: Ends every control line and every body.
CRLF: Final[bytes] = b"\r\n"
#: Liveness probe, sent by both sides; ``flush()`` is a PING answered by a PONG.
PING: Final[bytes] = b"PING\r\n"
#: Answer to PING; a client that leaves PINGs unanswered is dropped as stale.
PONG: Final[bytes] = b"PONG\r\n"
_BytesLike = Union[bytes, bytearray, memoryview]
#: Entries in each decode/validation cache before it is cleared: plenty for hot subjects.
_CACHE_LIMIT: Final[int] = 8192


class Role(enum.Enum):
    """Which side's operations a :class:`Parser` reads."""

    CLIENT = "client"  #: we are the client, so parse INFO, MSG, HMSG, PING, PONG, +OK, -ERR
    SERVER = "server"  #: we are the (fake) server, so parse CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG


CLIENT: Final = Role.CLIENT
SERVER: Final = Role.SERVER


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    EOF = "EOF"

    def __repr__(self) -> str:
        return str(self.value)

    __str__ = __repr__


#: :meth:`Parser.next_event` result: more bytes are needed to finish the next event.
NEED_DATA: Final = _Sentinel.NEED_DATA
#: :meth:`Parser.next_event` result: the peer closed the connection and every byte was parsed.
EOF: Final = _Sentinel.EOF

# -- events ----------------------------------------------------------------------------------


def _flag(data: Mapping[str, Any], key: str) -> bool:
    return bool(data.get(key, False))


@attrs.frozen(kw_only=True, slots=True)
class Info:
    """The server's ``INFO {json}``, sent on connect and again when the cluster changes.

    Attributes:
        data: The decoded JSON object as sent (unknown keys kept).
    """

    data: Dict[str, Any]

    @classmethod
    def from_json(cls, raw: Union[bytes, str]) -> Info:
        """Decode the JSON text of an INFO line.

        Raises:
            RemoteProtocolError: ``raw`` is not valid JSON or not a JSON object.
        """
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise RemoteProtocolError(f"invalid INFO JSON ({exc}): {raw[:64]!r}") from None
        if not isinstance(data, dict):
            raise RemoteProtocolError(f"INFO is not a JSON object: {raw[:64]!r}")
        return cls(data=data)

    server_id = property(lambda self: str(self.data.get("server_id", "")), doc="Server id.")
    version = property(lambda self: str(self.data.get("version", "")), doc="Server version.")
    headers = property(lambda self: _flag(self.data, "headers"), doc="Server supports headers.")
    tls_required = property(lambda self: _flag(self.data, "tls_required"), doc="TLS is required.")
    tls_available = property(lambda self: _flag(self.data, "tls_available"), doc="TLS is offered.")
    tls_verify = property(lambda self: _flag(self.data, "tls_verify"), doc="Client certificate needed.")
    auth_required = property(lambda self: _flag(self.data, "auth_required"), doc="Credentials needed.")
    ldm = property(lambda self: _flag(self.data, "ldm"), doc="Server is in lame-duck mode.")
    jetstream = property(lambda self: _flag(self.data, "jetstream"), doc="JetStream is enabled.")
    nonce = property(lambda self: self.data.get("nonce"), doc="Nonce to sign (nkey/JWT auth), or None.")
    client_id = property(lambda self: self.data.get("client_id"), doc="Our client id, or None.")
    proto = property(lambda self: int(self.data.get("proto") or 0), doc="Server protocol version.")

    @property
    def max_payload(self) -> int:
        """Largest message (headers + payload) the server accepts; ``DEFAULT_MAX_PAYLOAD`` if unset."""
        value = self.data.get("max_payload")
        return value if type(value) is int and value > 0 else DEFAULT_MAX_PAYLOAD

    @property
    def connect_urls(self) -> List[str]:
        """Client URLs (``host:port``) of the other servers of the cluster."""
        urls = self.data.get("connect_urls")
        return [str(url) for url in urls] if isinstance(urls, list) else []


class Msg:
    """A message from the server: ``MSG`` (``headers`` is ``None``) or ``HMSG``.

    A plain ``__slots__`` class, not a frozen attrs class: the parser builds one per message, and
    frozen construction measured 4-5 times slower. Treat instances as immutable.

    Args:
        subject: Subject the message was published to.
        sid: Id of the subscription it is delivered for.
        reply: Reply subject, or ``None``.
        payload: Body, headers excluded.
        headers: Decoded headers of an HMSG (possibly empty); ``None`` for MSG.
        status: Inline status of an HMSG (``503``, ``404``, ``100``...), else ``None``.
        description: Text after the status (``"No Messages"``), else ``""``.
    """

    __slots__ = ("subject", "sid", "reply", "payload", "headers", "status", "description")

    def __init__(
        self, subject: str, sid: int, reply: Optional[str] = None, payload: bytes = b"",
        headers: Optional[Headers] = None, status: Optional[int] = None, description: str = "",
    ) -> None:
        self.subject = subject
        self.sid = sid
        self.reply = reply
        self.payload = payload
        self.headers = headers
        self.status = status
        self.description = description

    @property
    def is_status(self) -> bool:
        """True for a status message (no responders, idle heartbeat, 404...)."""
        return self.status is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Msg):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Msg(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__) + ")"


@attrs.frozen(kw_only=True, slots=True)
class Ping:
    """``PING``: the peer wants a ``PONG``."""


@attrs.frozen(kw_only=True, slots=True)
class Pong:
    """``PONG``: the answer to our oldest unanswered ``PING``."""


@attrs.frozen(kw_only=True, slots=True)
class Ok:
    """``+OK``: an acknowledgement, sent in verbose mode only."""


@attrs.frozen(kw_only=True, slots=True)
class Err:
    """``-ERR 'text'``: a server error; ``message`` is the text without its quotes."""

    message: str


@attrs.frozen(kw_only=True, slots=True)
class Connect:
    """``CONNECT {json}`` (server role): the client's options."""

    options: Dict[str, Any]


@attrs.frozen(kw_only=True, slots=True)
class Pub:
    """``PUB`` or ``HPUB`` (server role); ``headers`` is ``None`` for PUB."""

    subject: str
    reply: Optional[str] = None
    payload: bytes = b""
    headers: Optional[Headers] = None


@attrs.frozen(kw_only=True, slots=True)
class Sub:
    """``SUB subject [queue] sid`` (server role)."""

    subject: str
    queue: Optional[str] = None
    sid: int


@attrs.frozen(kw_only=True, slots=True)
class Unsub:
    """``UNSUB sid [max_msgs]`` (server role)."""

    sid: int
    max_msgs: Optional[int] = None


Event = Union[Info, Msg, Ping, Pong, Ok, Err, Connect, Pub, Sub, Unsub]
