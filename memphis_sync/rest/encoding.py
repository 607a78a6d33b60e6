"""What the REST client sends and reads: message bodies, content types, headers, messages.

The message types and header rules are the NATS producer's
(:func:`~memphis_sync.memphis.producer.encode_message`,
:func:`~memphis_sync.memphis.message.to_wire_headers`): ``bytes``, ``str``, ``dict`` or a
protobuf message; no ``$memphis`` header keys, no CR/LF. HTTP adds its own: a header name must be
an HTTP token, and the names HTTP itself uses (``Authorization``, ``Content-Type``, hop-by-hop
ones...) cannot carry message headers.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import attrs

from ..errors import MemphisHeaderError
from ..memphis.message import HeadersArg, to_wire_headers
from ..memphis.producer import encode_message

__all__ = ["RestMessage", "encode_body", "http_headers", "decode_messages"]

#: Header names a message cannot use over HTTP (lower case): HTTP's own, which the gateway
#: consumes or drops, and ``msg-id`` (pass ``msg_id=``).
RESERVED_HTTP_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "content-type", "content-length", "expect", "host",
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "msg-id", "nats-msg-id",
})

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def encode_body(message: Any, content_type: Optional[str] = None) -> Tuple[bytes, str]:
    """The body and content type of one message: ``dict`` → JSON, ``str`` → UTF-8 text,
    a protobuf message → ``application/x-protobuf``, bytes → ``application/octet-stream``
    (``content_type`` overrides the type).

    Raises:
        MemphisMessageTypeError: a type the producer cannot encode either.
    """
    body = encode_message(message)
    if content_type:
        return body, content_type
    if isinstance(message, dict):
        return body, "application/json"
    if isinstance(message, str):
        return body, "text/plain; charset=utf-8"
    if callable(getattr(message, "SerializeToString", None)):
        return body, "application/x-protobuf"
    if isinstance(message, (bytes, bytearray, memoryview)):
        return body, "application/octet-stream"
    return body, "text/plain; charset=utf-8"  # a GraphQL document: its source text


def http_headers(headers: HeadersArg) -> List[Tuple[str, str]]:
    """The (name, value) pairs of message headers, checked as the producer checks them and as
    HTTP requires; values travel as UTF-8.

    Raises:
        MemphisHeaderError: a ``$memphis`` key, CR/LF, a name that is not an HTTP token or that
            HTTP reserves.
    """
    wire = to_wire_headers(headers, {})
    pairs: List[Tuple[str, str]] = []
    for name, value in wire.items_all():
        if not _TOKEN.match(name):
            raise MemphisHeaderError(f"header name {name!r} cannot travel over HTTP (not an HTTP token)")
        if name.lower() in RESERVED_HTTP_HEADERS:
            raise MemphisHeaderError(f"header {name!r} is reserved by HTTP or the gateway (use msg_id= for msg-id)")
        # HTTP header bytes are Latin-1 to the stdlib: send the value's UTF-8 bytes (the
        # gateways read them back as UTF-8)
        pairs.append((name, value.encode("utf-8").decode("latin-1")))
    return pairs


@attrs.frozen
class RestMessage:
    """A message consumed over HTTP (already acknowledged by the gateway).

    Attributes:
        data: The payload (exact when the gateway sent ``message_base64``, as the local
            broker's ingress does for non-UTF-8 payloads; else the UTF-8 of ``message``).
        headers: The message headers (without the ``$memphis_*`` ones).
    """

    data: bytes
    headers: Mapping[str, str]

    def get_data(self) -> bytes:
        """The payload (SDK name)."""
        return self.data

    def get_headers(self) -> Dict[str, str]:
        """The headers as a plain dict (SDK name)."""
        return dict(self.headers)


def decode_messages(reply: Any) -> List[RestMessage]:
    """The messages of a ``consume/batch`` reply.

    Raises:
        ValueError: the reply is not a list of message objects.
    """
    if not isinstance(reply, list):
        raise ValueError(f"expected a JSON array of messages, got {type(reply).__name__}")
    out = []
    for item in reply:
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            raise ValueError(f"not a message object: {item!r:.200}")
        raw = item.get("message_base64")
        data = base64.b64decode(raw) if isinstance(raw, str) else item["message"].encode("utf-8")
        headers = item.get("headers") or {}
        out.append(RestMessage(data, {str(k): str(v) for k, v in headers.items()}))
    return out
