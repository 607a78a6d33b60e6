"""Sans-IO NATS protocol, part 3: subject and queue validation and the pure ``encode_*`` functions.

Each encoder returns a complete, well-formed frame as ``bytes`` or raises
:class:`~memphis_sync.errors.LocalProtocolError`: everything is validated first, so a bad
subject or header raises and nothing reaches the wire, and no caller-supplied string can put CR
or LF into a control line. Validated publish subjects are cached (bounded), and so is the
``b"PUB <subject> "`` prefix of each (``_PUB_PREFIXES``, read by the connection's publish path).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Final, Iterable, List, Mapping, Optional, Tuple

from ...errors import LocalProtocolError, PayloadTooLargeError
from .events import _CACHE_LIMIT, CRLF, MAX_CONTROL_LINE, PING, PONG, _BytesLike
from .headers import Headers, HeadersInit, validate_header_name, validate_header_value

__all__ = [
    "validate_subject", "validate_publish_subject", "validate_queue", "INT_MAX", "check_int", "check_payload_size", "encode_connect",
    "encode_pub", "encode_hpub", "encode_headers", "encode_sub", "encode_unsub", "encode_ping", "encode_pong",
    "encode_info", "encode_msg", "encode_hmsg", "encode_err",
]

# -- validation ------------------------------------------------------------------------------

_BAD_SUBJECT_CHAR: Final = re.compile(r"[\x00-\x20\x7f]")
#: Longest subject (and reply, and queue group) in bytes: a PUB/HPUB/SUB line holds a subject,
#: a reply or queue and the sizes, and the server drops a client whose line exceeds its
#: ``max_control_line`` (MAX_CONTROL_LINE by default).
MAX_SUBJECT: Final = (MAX_CONTROL_LINE - 64) // 2
# Validated publish subjects → UTF-8 bytes, and → b"PUB <subject> " (the encode_pub hot path).
_SUBJECTS: Dict[str, bytes] = {}
_PUB_PREFIXES: Dict[str, bytes] = {}


def _check_subject(subject: object, what: str, wildcards: bool) -> bytes:
    if not isinstance(subject, str):
        raise LocalProtocolError(f"{what} must be a str, got {type(subject).__name__}: {subject!r}")
    problem = ""
    if not subject:
        problem = "empty"
    elif _BAD_SUBJECT_CHAR.search(subject):
        problem = "whitespace or control character"
    else:
        tokens = subject.split(".")
        for index, token in enumerate(tokens):
            if not token:
                problem = "empty token"
            elif token == "*" or token == ">":
                if not wildcards:
                    problem = "wildcards are not allowed here"
                elif token == ">" and index != len(tokens) - 1:
                    problem = "'>' must be the last token"
    if not problem:
        try:  # surrogateescape: a subject the parser decoded from non-UTF-8 bytes goes back as is
            encoded = subject.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            problem = "not encodable as UTF-8"
        else:
            if len(encoded) <= MAX_SUBJECT:
                return encoded
            problem = f"{len(encoded)} bytes, over {MAX_SUBJECT} (the server's control line is {MAX_CONTROL_LINE})"
    shown = f"{subject[:40]!r}..." if len(subject) > 80 else repr(subject)
    raise LocalProtocolError(f"invalid {what} {shown}: {problem}")


def validate_subject(subject: str) -> None:
    """Check a subscription subject. ``*`` (a whole token) and ``>`` (the last token) are allowed.

    Raises:
        LocalProtocolError: Not a ``str``; empty; an empty token; whitespace or a control
            character; ``>`` not last; not encodable as UTF-8.
    """
    _check_subject(subject, "subject", wildcards=True)


def validate_publish_subject(subject: str) -> None:
    """Check a subject to publish to (and a reply subject): no ``*`` or ``>`` token.

    Raises:
        LocalProtocolError: As :func:`validate_subject`, or a wildcard token.
    """
    _publish_subject(subject)


def _publish_subject(subject: str) -> bytes:
    """UTF-8 bytes of a valid publish subject, through the bounded cache."""
    if type(subject) is not str:  # also keeps unhashable objects away from the dict
        return _check_subject(subject, "subject", wildcards=False)
    encoded = _SUBJECTS.get(subject)
    if encoded is None:
        encoded = _check_subject(subject, "subject", wildcards=False)
        if len(_SUBJECTS) >= _CACHE_LIMIT:
            _SUBJECTS.clear()
        _SUBJECTS[subject] = encoded
    return encoded


def _reply_part(reply: Optional[str]) -> bytes:
    """``b" <reply>"`` or ``b""``. Replies are mostly unique inboxes: checked, not cached."""
    if reply is None:
        return b""
    encoded = _SUBJECTS.get(reply) if type(reply) is str else None
    return b" " + (encoded or _check_subject(reply, "reply subject", wildcards=False))


def validate_queue(queue: str) -> None:
    """Check a queue group name: a non-empty ``str`` without whitespace or control characters.

    Raises:
        LocalProtocolError: The name is invalid.
    """
    _queue_bytes(queue)


def _queue_bytes(queue: object) -> bytes:
    if isinstance(queue, str) and queue and not _BAD_SUBJECT_CHAR.search(queue):
        try:
            encoded = queue.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            pass
        else:
            if len(encoded) <= MAX_SUBJECT:
                return encoded
    shown = f"{queue[:40]!r}..." if isinstance(queue, str) and len(queue) > 80 else repr(queue)
    raise LocalProtocolError(f"invalid queue group {shown}: must be a non-empty str without whitespace, at most {MAX_SUBJECT} bytes")


#: Largest int a count or id may be: the server parses them as signed 64-bit.
INT_MAX: Final = 2**63 - 1


def check_int(value: Any, what: str, minimum: int, maximum: int = INT_MAX, *, error: type = LocalProtocolError) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) in ``[minimum, maximum]``.

    The one int check of the package: sids, message counts, buffer sizes and limits here, and
    (with ``error=MemphisValueError``) every int argument of the Memphis layer.

    Raises:
        LocalProtocolError: (or ``error``) naming ``what``, the bounds and the value.
    """
    if type(value) is not int or not minimum <= value <= maximum:
        bound = f">= {minimum}" if maximum == INT_MAX else f"between {minimum} and {maximum}"
        raise error(f"{what} must be an int {bound}, got {value!r}")
    return value


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise LocalProtocolError(f"payload must be bytes, bytearray or memoryview, not {type(payload).__name__}")


def check_payload_size(size: int, max_payload: int) -> None:
    """Check that a message of ``size`` bytes (headers + payload, as the server counts) fits.

    Raises:
        PayloadTooLargeError: ``size > max_payload``.
    """
    if size > max_payload:
        raise PayloadTooLargeError(size, max_payload)


# -- encoders --------------------------------------------------------------------------------


def _json_line(op: bytes, data: Mapping[str, Any]) -> bytes:
    return op + json.dumps(dict(data), separators=(",", ":")).encode("ascii") + CRLF


def encode_connect(options: Mapping[str, Any]) -> bytes:
    """``CONNECT {json}\\r\\n``: compact, ASCII-escaped JSON, keys in the given order."""
    return _json_line(b"CONNECT ", options)


def encode_info(info: Mapping[str, Any]) -> bytes:
    """``INFO {json}\\r\\n`` (fake server): compact, ASCII-escaped JSON."""
    return _json_line(b"INFO ", info)


def encode_pub(subject: str, payload: _BytesLike, reply: Optional[str] = None) -> bytes:
    """``PUB <subject> [reply] <#bytes>\\r\\n<payload>\\r\\n``.

    Args:
        subject: Subject to publish to (no wildcards). Validated once, then cached.
        payload: bytes, bytearray or memoryview.
        reply: Optional reply subject.

    Raises:
        LocalProtocolError: Invalid subject, reply or payload type.
    """
    try:
        prefix = _PUB_PREFIXES.get(subject)
    except TypeError:  # unhashable, so not a str: _publish_subject raises
        prefix = None
    if prefix is None:
        prefix = b"PUB " + _publish_subject(subject) + b" "
        if len(_PUB_PREFIXES) >= _CACHE_LIMIT:
            _PUB_PREFIXES.clear()
        _PUB_PREFIXES[subject] = prefix
    if type(payload) is not bytes:
        payload = _payload_bytes(payload)
    if reply is None:
        return b"%b%d\r\n%b\r\n" % (prefix, len(payload), payload)
    return b"%b%b %d\r\n%b\r\n" % (prefix, _reply_part(reply)[1:], len(payload), payload)


_GOOD_NAMES: Dict[str, bool] = {}  # header names already validated (bounded)


def _header_lines(pairs: Iterable[Tuple[Any, Any]], out: List[str]) -> None:
    """Append ``"Name: Value\\r\\n"`` per pair to ``out``, validating each (fast when cached)."""
    for name, value in pairs:
        if type(name) is not str or name not in _GOOD_NAMES:
            validate_header_name(name)
            if len(_GOOD_NAMES) >= _CACHE_LIMIT:
                _GOOD_NAMES.clear()
            _GOOD_NAMES[name] = True
        if type(value) is not str or "\r" in value or "\n" in value or "\0" in value:
            if isinstance(value, (list, tuple)):  # a mapping's multi-value entry
                _header_lines([(name, item) for item in value], out)
                continue
            validate_header_value(name, value)  # raises
        out.append(f"{name}: {value}\r\n")


def _header_block(headers: HeadersInit, status: Optional[int] = None, description: str = "") -> bytes:
    first = "NATS/1.0\r\n"
    if status is not None:
        if type(status) is not int or not 100 <= status <= 999:
            raise LocalProtocolError(f"status must be a 3-digit int, got {status!r}")
        first = f"NATS/1.0 {status} {validate_header_value('description', description)}".rstrip(" ") + "\r\n"
    out = [first]
    kind = type(headers)  # exact type checks first: ABC isinstance() costs more than the rest
    if kind is dict:
        _header_lines(headers.items(), out)  # type: ignore[union-attr]
    elif kind is Headers or isinstance(headers, Headers):  # re-checked: wire headers are not
        _header_lines(headers._pairs, out)  # type: ignore[union-attr]
    elif isinstance(headers, Mapping):
        _header_lines(headers.items(), out)
    elif headers is not None:
        _header_lines(Headers(headers)._pairs, out)
    out.append("\r\n")
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate somewhere: name it
        for line in out:
            validate_header_value("header line", line[:-2])
        raise  # pragma: no cover


def encode_headers(headers: HeadersInit) -> bytes:
    """Encode a header block: ``NATS/1.0\\r\\n``, then ``Name: Value\\r\\n`` per value, then ``\\r\\n``.

    Args:
        headers: A :class:`Headers`, anything its constructor accepts, or ``None``.

    Raises:
        LocalProtocolError: A header name or value is invalid.
    """
    return _header_block(headers)


def encode_hpub(subject: str, payload: _BytesLike, headers: HeadersInit, reply: Optional[str] = None) -> bytes:
    """``HPUB <subject> [reply] <#header bytes> <#total bytes>\\r\\n<headers><payload>\\r\\n``.

    ``#header bytes`` counts the header block including its final blank line; ``#total bytes``
    adds the payload.

    Raises:
        LocalProtocolError: Invalid subject, reply, header or payload type.
    """
    subject_b, reply_b, payload = _publish_subject(subject), _reply_part(reply), _payload_bytes(payload)
    block = _header_block(headers)
    hsize = len(block)
    return b"HPUB %b%b %d %d\r\n%b%b\r\n" % (subject_b, reply_b, hsize, hsize + len(payload), block, payload)


def encode_sub(subject: str, sid: int, queue: Optional[str] = None) -> bytes:
    """``SUB <subject> [queue] <sid>\\r\\n``; wildcards allowed, ``sid`` a positive int.

    Raises:
        LocalProtocolError: Invalid subject, queue group or sid.
    """
    subject_b = _check_subject(subject, "subject", wildcards=True)
    queue_b = b" " + _queue_bytes(queue) if queue is not None else b""
    return b"SUB %b%b %d\r\n" % (subject_b, queue_b, check_int(sid, "sid", 1))


def encode_unsub(sid: int, max_msgs: Optional[int] = None) -> bytes:
    """``UNSUB <sid> [max_msgs]\\r\\n``: unsubscribe now, or after ``max_msgs`` more messages.

    Raises:
        LocalProtocolError: ``sid`` is not a positive int or ``max_msgs`` a non-negative int.
    """
    check_int(sid, "sid", 1)
    if max_msgs is None:
        return b"UNSUB %d\r\n" % sid
    return b"UNSUB %d %d\r\n" % (sid, check_int(max_msgs, "max_msgs", 0))


def encode_ping() -> bytes:
    """Return ``PING\\r\\n``."""
    return PING


def encode_pong() -> bytes:
    """Return ``PONG\\r\\n``."""
    return PONG


def encode_msg(subject: str, sid: int, payload: _BytesLike, reply: Optional[str] = None) -> bytes:
    """``MSG <subject> <sid> [reply] <#bytes>\\r\\n<payload>\\r\\n`` (fake server).

    Raises:
        LocalProtocolError: Invalid subject, sid, reply or payload type.
    """
    subject_b, reply_b, payload = _publish_subject(subject), _reply_part(reply), _payload_bytes(payload)
    return b"MSG %b %d%b %d\r\n%b\r\n" % (subject_b, check_int(sid, "sid", 1), reply_b, len(payload), payload)


def encode_hmsg(
    subject: str, sid: int, payload: _BytesLike, headers: HeadersInit, reply: Optional[str] = None,
    status: Optional[int] = None, description: str = "",
) -> bytes:
    """``HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>\\r\\n<headers><payload>\\r\\n``
    (fake server).

    Args:
        subject: Subject of the message.
        sid: Subscription id, a positive int.
        payload: Body: bytes, bytearray or memoryview.
        headers: A :class:`Headers`, anything its constructor accepts, or ``None``.
        reply: Optional reply subject.
        status: Optional 3-digit status for the ``NATS/1.0`` line (``503``, ``404``...).
        description: Text after the status (``"No Messages"``); ignored without a status.

    Raises:
        LocalProtocolError: Invalid subject, sid, reply, header, status or payload type.
    """
    subject_b, reply_b, payload = _publish_subject(subject), _reply_part(reply), _payload_bytes(payload)
    block = _header_block(headers, status, description)
    hsize = len(block)
    sid = check_int(sid, "sid", 1)
    return b"HMSG %b %d%b %d %d\r\n%b%b\r\n" % (subject_b, sid, reply_b, hsize, hsize + len(payload), block, payload)


def encode_err(text: str) -> bytes:
    """``-ERR '<text>'\\r\\n`` (fake server).

    Raises:
        LocalProtocolError: ``text`` is not a ``str`` or contains CR, LF or NUL.
    """
    if not isinstance(text, str) or "\r" in text or "\n" in text or "\0" in text:
        raise LocalProtocolError(f"invalid -ERR text {text!r}: must be a str without CR, LF or NUL")
    return b"-ERR '" + text.encode("utf-8") + b"'\r\n"
