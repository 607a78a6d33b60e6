# Theory of operation
# ===================
#
# This module is the NATS text protocol and nothing else: no sockets, threads or clocks. Bytes go
# in, events come out, as in h11. The connection's reader thread is the only caller of a Parser.
# It passes each chunk it reads to Parser.feed() and routes the events it gets back (Msg, Ping,
# Info...). An empty chunk means EOF. Writers call the encode_*() functions. These return whole
# frames as bytes and validate everything first, so a bad subject or header raises
# LocalProtocolError and nothing reaches the wire. Parser(role=SERVER) reads what a client sends
# (CONNECT, PUB, HPUB, SUB, UNSUB), for the in-process fake server in memphis_sync.testing.
#
# Framing: every operation is a control line ended by CRLF. MSG, HMSG, PUB and HPUB then carry a
# body of exactly the announced size, followed by CRLF. Bodies may contain CRLF, so they are cut
# by length, never by searching.
#
# Speed: a chunk is split on CRLF once, in C. Each piece that starts a frame is a control line.
# For a MSG whose next piece has exactly the announced length, that piece *is* the payload (the
# common case): no offset arithmetic and no extra copy. Any other body takes a slower path: an
# HMSG, a payload containing CRLF, or a frame cut off by the end of the chunk. That path finds
# the absolute offset from the nearer known position, slices the body by length and skips the
# pieces the body spanned. A split boundary never falls inside the CRLF that ends a frame, so the
# piece index is back in step after every well-formed body. An incomplete frame waits in a
# bytearray. New data is only appended to it, and only new bytes are searched, until the frame
# can be completed.
#
# Invariants
# ----------
# 1. Between calls the parser holds at most one incomplete frame. Without its CRLF, that is at
#    most max_control_line + 1 bytes (MAX_JSON_LINE + 1 for INFO/CONNECT). Otherwise it is at
#    most one control line + max_payload + 2 bytes. Memory is bounded.
# 2. A size over max_payload, or a header block over MAX_HEADER_BLOCK, is rejected on the
#    control line, before any body byte is buffered.
# 3. While waiting for the end of a control line, no byte is searched for CRLF twice.
# 4. Events never depend on how the stream was cut into chunks. Whole, byte by byte or random
#    splits give the same events and the same errors.
# 5. After a RemoteProtocolError the parser is dead: every later call raises again. The
#    connection must be dropped and re-established.
# 6. encode_*() returns a complete, well-formed frame or raises LocalProtocolError. No
#    caller-supplied string can put CR or LF into a control line.
"""Sans-IO NATS text protocol: events, a push :class:`Parser` and pure ``encode_*`` functions."""

from __future__ import annotations

import enum
import json
import re
from collections import deque
from typing import Any, Deque, Dict, Final, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import attrs

from ...errors import LocalProtocolError, PayloadTooLargeError, RemoteProtocolError
from .headers import Headers, HeadersInit, validate_header_name, validate_header_value

__all__ = [
    "MAX_CONTROL_LINE", "DEFAULT_MAX_PAYLOAD", "MAX_HEADER_BLOCK", "MAX_JSON_LINE", "CRLF", "PING", "PONG",
    "Role", "CLIENT", "SERVER", "NEED_DATA", "EOF", "Info", "Msg", "Ping", "Pong", "Ok", "Err", "Connect",
    "Pub", "Sub", "Unsub", "Event", "Parser", "validate_subject", "validate_publish_subject",
    "validate_queue", "check_payload_size", "encode_connect", "encode_pub", "encode_hpub",
    "encode_headers", "encode_sub", "encode_unsub", "encode_ping", "encode_pong", "encode_info",
    "encode_msg", "encode_hmsg", "encode_err",
]

# -- limits ----------------------------------------------------------------------------------

#: nats-server's default ``max_control_line``; the nats.go and nats-py parsers use it too.
MAX_CONTROL_LINE: Final[int] = 4096
#: nats-server's default ``max_payload`` (1 MiB), in force until INFO says otherwise.
DEFAULT_MAX_PAYLOAD: Final[int] = 1048576
#: Largest header block accepted; real ones are a few hundred bytes, this bounds abuse.
MAX_HEADER_BLOCK: Final[int] = 65536
#: INFO (``connect_urls`` of a big cluster) and CONNECT (JWTs) carry JSON that can exceed 4 KiB.
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
        return self.value

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

_PING_EVENT: Final = Ping()
_PONG_EVENT: Final = Pong()
_OK_EVENT: Final = Ok()

# -- parser ----------------------------------------------------------------------------------

# Operation kinds. Every case variant of every op name is a key of the role's table, so a single
# dict lookup both ignores case and dispatches.
_MSG, _HMSG, _PUB, _HPUB, _PING, _PONG, _OK, _ERR, _INFO, _CONNECT, _SUB, _UNSUB = range(12)


def _op_table(ops: Mapping[str, int]) -> Dict[bytes, int]:
    table: Dict[bytes, int] = {}
    for op, kind in ops.items():
        variants = [""]
        for ch in op:
            variants = [v + c for v in variants for c in {ch.lower(), ch.upper()}]
        table.update((v.encode("ascii"), kind) for v in variants)
    return table


_OPS: Final[Mapping[Role, Dict[bytes, int]]] = {
    Role.CLIENT: _op_table({"MSG": _MSG, "HMSG": _HMSG, "PING": _PING, "PONG": _PONG, "+OK": _OK, "-ERR": _ERR,
                            "INFO": _INFO}),
    Role.SERVER: _op_table({"PUB": _PUB, "HPUB": _HPUB, "PING": _PING, "PONG": _PONG, "CONNECT": _CONNECT,
                            "SUB": _SUB, "UNSUB": _UNSUB}),
}
# (min, max) number of fields after the op name, for the ops decoded by Parser._control.
_NFIELDS: Final[Mapping[int, Tuple[int, int]]] = {_PUB: (2, 3), _HPUB: (3, 4), _SUB: (2, 3), _UNSUB: (1, 2)}


def _snippet(data: Union[bytes, bytearray]) -> str:
    return repr(bytes(data[:64]))


def _parse_header_block(block: bytes) -> Tuple[Headers, Optional[int], str]:
    """Decode ``NATS/1.0[ status[ description]]\\r\\n(Name: Value\\r\\n)*\\r\\n``."""
    if not block.startswith(b"NATS/1.0") or not block.endswith(b"\r\n\r\n"):
        raise RemoteProtocolError(f"header block must be NATS/1.0 ... CRLFCRLF: {_snippet(block)}")
    # CR and LF never occur inside a UTF-8 sequence: decoding first, then splitting, is exact.
    lines = block[:-4].decode("utf-8", "replace").split("\r\n")
    first, status, description = lines[0], None, ""
    if len(first) > 8:
        rest = first[8:].lstrip(" \t")
        code = rest[:3]
        if first[8] not in " \t" or (
            rest and not (len(code) == 3 and code.isascii() and code.isdigit() and rest[3:4] in ("", " ", "\t"))
        ):
            raise RemoteProtocolError(f"malformed status line in header block: {_snippet(block)}")
        status = int(code) if rest else None
        description = rest[3:].strip(" \t")
    pairs: List[Tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip(" \t")
        if not colon or not name:
            raise RemoteProtocolError(f"malformed header line {line[:64]!r} in block {_snippet(block)}")
        pairs.append((name, value.strip(" \t")))
    return Headers._from_wire(pairs), status, description


class Parser:
    """Push parser for one direction of a NATS connection (single owner: not thread-safe).

    Args:
        role: ``CLIENT`` parses what a server sends, ``SERVER`` what a client sends.
        max_payload: Largest body (headers + payload) accepted. The attribute is writable; the
            connection updates it from each INFO.
        max_control_line: Longest control line accepted, CRLF excluded.

    Example:
        >>> Parser().feed(b"PING\\r\\nMSG a 1 2\\r\\nhi\\r\\n")  # doctest: +NORMALIZE_WHITESPACE
        [Ping(), Msg(subject='a', sid=1, reply=None, payload=b'hi', headers=None, status=None,
        description='')]
    """

    def __init__(
        self, role: Role = CLIENT, max_payload: int = DEFAULT_MAX_PAYLOAD, max_control_line: int = MAX_CONTROL_LINE
    ) -> None:
        self.role: Final = Role(role)
        self.max_payload = max_payload
        self.max_control_line: Final = max_control_line
        self._ops = _OPS[self.role]
        self._json_op = b"INFO" if self.role is Role.CLIENT else b"CONNECT"
        self._buf = bytearray()  # the incomplete frame, if any
        self._need = 0  # > 0: len(_buf) that completes the frame; 0: waiting for a CRLF
        self._scan = 0  # where the CRLF search resumes in _buf while waiting for a line
        self._queue: Deque[Any] = deque()  # parsed, not yet returned by next_event()
        self._eof = False
        self._error: Optional[str] = None
        self._ints: Dict[bytes, int] = {}  # decimal fields already seen (sids, sizes)
        self._subjects: Dict[bytes, str] = {}  # subjects already decoded

    def __repr__(self) -> str:
        state = "dead" if self._error else "eof" if self._eof else "open"
        return f"<Parser {self.role.value} {state} buffered={len(self._buf)}>"

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (bounded, see the module invariants)."""
        return len(self._buf)

    def receive_data(self, data: _BytesLike) -> None:
        """Add bytes read from the peer; ``b""`` means the peer closed the connection.

        Raises:
            RemoteProtocolError: The parser already failed.
            RuntimeError: Data after EOF.
        """
        self._check_alive()
        if not data:
            self._eof = True
        elif self._eof:
            raise RuntimeError("receive_data() called with data after EOF")
        else:
            self._buf += data

    def next_event(self) -> Any:
        """Return the next event, ``NEED_DATA`` or ``EOF``.

        Events parsed before a protocol error are returned first, then the error is raised.

        Raises:
            RemoteProtocolError: The bytes break the protocol, or EOF arrived mid-frame.
        """
        queue = self._queue
        if not queue and self._error is None:
            try:
                self._pump(queue)
            except RemoteProtocolError as exc:
                self._error = exc.args[0]
        if queue:
            return queue.popleft()
        self._check_alive()
        if self._eof:
            self._check_eof()
            return EOF
        return NEED_DATA

    def events(self) -> Iterator[Any]:
        """Yield events until ``NEED_DATA`` (not yielded) or ``EOF`` (yielded, last).

        Raises:
            RemoteProtocolError: As :meth:`next_event`.
        """
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event
            if event is EOF:
                return

    def feed(self, data: _BytesLike) -> List[Any]:
        """Receive ``data``; return every event it completes. The reader thread's hot path.

        ``b""`` means EOF: the list then ends with ``EOF``. A protocol error is raised at once;
        events before it in the same ``data`` are then lost (the connection is going down).

        Raises:
            RemoteProtocolError: The bytes break the protocol, or EOF arrived mid-frame.
            RuntimeError: Data after EOF.
        """
        self._check_alive()
        out: List[Any] = []
        if self._queue:  # left by next_event()
            out.extend(self._queue)
            self._queue.clear()
        try:
            if not data:
                self._eof = True
                self._pump(out)
                self._check_eof()
                out.append(EOF)
            elif self._eof:
                raise RuntimeError("feed() called with data after EOF")
            elif self._buf:
                self._pump(out, data if type(data) is bytes else bytes(data))
            else:
                self._parse(data if type(data) is bytes else bytes(data), out)
        except RemoteProtocolError as exc:
            self._error = exc.args[0]
            raise
        return out

    # -- internals -------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._error is not None:
            raise RemoteProtocolError(f"parser unusable after an earlier error: {self._error}")

    def _check_eof(self) -> None:
        if self._buf:
            self._error = "connection closed mid-frame"
            raise RemoteProtocolError(self._error)

    def _check_line(self, line: Union[bytes, bytearray], complete: bool) -> None:
        """Called when a line is over max_control_line: raise unless a JSON line within limits."""
        limit = self.max_control_line
        if bytes(line[:16]).lstrip().upper().startswith(self._json_op):
            limit = max(limit, MAX_JSON_LINE)
        if len(line) > limit + (not complete):  # an unfinished line may end with the CR
            state = "" if complete else " and no CRLF yet"
            raise RemoteProtocolError(f"control line longer than {limit} bytes{state}: {_snippet(line)}")

    def _pump(self, out: Any, data: bytes = b"") -> None:
        """Parse ``_buf + data`` if that can complete a frame, else just keep the bytes."""
        buf = self._buf
        if self._need:
            ready = len(buf) + len(data) >= self._need
        else:  # search only bytes never searched before (a CR may end buf, its LF start data)
            ready = buf.find(b"\r\n", self._scan) >= 0 or (
                data.find(b"\r\n") >= 0 or (data[:1] == b"\n" and buf.endswith(b"\r"))
            )
        if not ready:
            buf += data
            if not self._need:
                if len(buf) > self.max_control_line:
                    self._check_line(buf, complete=False)
                self._scan = max(len(buf) - 1, 0)
            return
        w = b"".join((buf, data))
        buf.clear()
        self._parse(w, out)

    def _parse(self, w: bytes, out: Any) -> None:
        """Parse ``w`` (``_buf`` is empty on entry), append events, keep any incomplete frame."""
        parts = w.split(b"\r\n")
        last = len(parts) - 1  # parts[last] is not followed by CRLF: not a complete line
        ops, maxcl, maxp, ints, subjects = self._ops, self.max_control_line, self.max_payload, self._ints, self._subjects
        append = out.append
        i = base_i = base_pos = 0  # checkpoint: parts[base_i] starts at w[base_pos]
        line = b""
        try:
            while i < last:
                line = parts[i]
                if len(line) > maxcl:
                    self._check_line(line, complete=True)
                args = line.split()
                kind = ops.get(args[0])  # IndexError on an empty line, handled below
                if kind == _MSG:
                    nargs = len(args)
                    if nargs == 4:
                        _, subject_b, sid_b, size_b = args
                        reply: Optional[str] = None
                    elif nargs == 5:
                        _, subject_b, sid_b, reply_b, size_b = args
                        reply = reply_b.decode("utf-8", "surrogateescape")
                    else:
                        raise RemoteProtocolError(f"wrong number of fields: {_snippet(line)}")
                    size = ints.get(size_b)
                    if size is None:
                        size = self._int(size_b, line)
                    sid = ints.get(sid_b) or self._int(sid_b, line)
                    if size > maxp:
                        self._check_sizes(-1, size, line)
                    subject = subjects.get(subject_b) or self._subject(subject_b)
                    payload = parts[i + 1]  # exists: i < last
                    if len(payload) == size and i + 1 < last:
                        # Fast path: the payload is exactly the next piece, and CRLF follows it.
                        append(Msg(subject, sid, reply, payload, None, None, ""))
                        i += 2
                        continue
                    head: Tuple[Any, ...] = (_MSG, subject, sid, reply, -1, size)
                elif kind == _HMSG:
                    nargs = len(args)
                    if nargs == 5:
                        _, subject_b, sid_b, hsize_b, size_b = args
                        reply = None
                    elif nargs == 6:
                        _, subject_b, sid_b, reply_b, hsize_b, size_b = args
                        reply = reply_b.decode("utf-8", "surrogateescape")
                    else:
                        raise RemoteProtocolError(f"wrong number of fields: {_snippet(line)}")
                    size = ints.get(size_b) or self._int(size_b, line)
                    hsize = ints.get(hsize_b) or self._int(hsize_b, line)
                    self._check_sizes(hsize, size, line)
                    sid = ints.get(sid_b) or self._int(sid_b, line)
                    subject = subjects.get(subject_b) or self._subject(subject_b)
                    head = (_HMSG, subject, sid, reply, hsize, size)
                elif kind == _PING and len(args) == 1:
                    append(_PING_EVENT)
                    i += 1
                    continue
                elif kind is None:
                    raise RemoteProtocolError(f"unknown protocol operation: {_snippet(line)}")
                else:
                    event = self._control(kind, args, line)
                    if type(event) is not tuple:
                        append(event)
                        i += 1
                        continue
                    head = event
                # A body cut by length (HMSG, PUB, payload with CRLF, end of data). Offset of
                # this control line, counted from the nearer known position:
                if i - base_i <= last - i:
                    pos = base_pos + sum(map(len, parts[base_i:i])) + 2 * (i - base_i)
                else:
                    pos = len(w) - sum(map(len, parts[i:])) - 2 * (last - i)
                start = pos + len(line) + 2
                stop = start + head[5]
                if stop + 2 > len(w):
                    self._buf += memoryview(w)[pos:]
                    self._need = stop + 2 - pos
                    return
                if w[stop : stop + 2] != b"\r\n":
                    raise RemoteProtocolError(f"missing CRLF after payload: {_snippet(line)}")
                body = w[start:stop]
                i += 2 + body.count(b"\r\n")  # the pieces this frame spanned
                base_i, base_pos = i, stop + 2
                append(_body_event(head, body))
        except (ValueError, IndexError) as exc:  # an empty line; int() limits; nothing else expected
            problem = "empty control line" if not line.strip() else f"cannot parse control line ({exc})"
            raise RemoteProtocolError(f"{problem}: {_snippet(line)}") from None
        leftover = parts[last]
        if len(leftover) > maxcl:
            self._check_line(leftover, complete=False)
        self._buf += leftover
        self._scan = max(len(leftover) - 1, 0)
        self._need = 0

    def _int(self, digits: bytes, line: bytes) -> int:
        """Decode a decimal field (digits only: no sign, no space), caching it."""
        if not digits.isdigit():
            raise RemoteProtocolError(f"invalid number {digits[:20]!r} in control line: {_snippet(line)}")
        if len(self._ints) >= _CACHE_LIMIT:
            self._ints.clear()
        value = self._ints[digits] = int(digits)
        return value

    def _subject(self, raw: bytes) -> str:
        """Decode a subject, caching it; surrogateescape keeps any byte round-trippable."""
        if len(self._subjects) >= _CACHE_LIMIT:
            self._subjects.clear()
        subject = self._subjects[raw] = raw.decode("utf-8", "surrogateescape")
        return subject

    def _check_sizes(self, hsize: int, total: int, line: bytes) -> None:
        """Reject a frame on its control line, before any of its body is buffered."""
        if hsize > total:
            raise RemoteProtocolError(f"header size larger than total size: {_snippet(line)}")
        if hsize > MAX_HEADER_BLOCK:
            raise RemoteProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes: {_snippet(line)}")
        if total > self.max_payload:
            raise RemoteProtocolError(f"payload of {total} bytes over max_payload {self.max_payload}: {_snippet(line)}")

    def _control(self, kind: int, args: List[bytes], line: bytes) -> Any:
        """Decode any control line but MSG, HMSG and PING: an event, or for PUB/HPUB the tuple
        ``(kind, subject, None, reply, header_size or -1, total_size)``."""
        if kind == _INFO or kind == _CONNECT or kind == _ERR:
            rest = line.split(None, 1)
            text = rest[1].strip() if len(rest) == 2 else b""
            if kind == _INFO:
                return Info.from_json(text)
            if kind == _ERR:
                message = text.decode("utf-8", "replace")
                if len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":
                    message = message[1:-1]
                return Err(message=message)
            try:
                options = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise RemoteProtocolError(f"invalid CONNECT JSON ({exc}): {_snippet(line)}") from None
            if not isinstance(options, dict):
                raise RemoteProtocolError(f"CONNECT is not a JSON object: {_snippet(line)}")
            return Connect(options=options)
        fields = args[1:]
        low, high = _NFIELDS.get(kind, (0, 0))
        if not low <= len(fields) <= high:
            raise RemoteProtocolError(f"wrong number of fields: {_snippet(line)}")
        if kind == _PING or kind == _PONG or kind == _OK:
            return _PING_EVENT if kind == _PING else _PONG_EVENT if kind == _PONG else _OK_EVENT
        if kind == _UNSUB:
            max_msgs = self._int(fields[1], line) if len(fields) == 2 else None
            return Unsub(sid=self._int(fields[0], line), max_msgs=max_msgs)
        subject = fields[0].decode("utf-8", "surrogateescape")
        optional = fields[1].decode("utf-8", "surrogateescape") if len(fields) == high else None
        if kind == _SUB:
            return Sub(subject=subject, queue=optional, sid=self._int(fields[-1], line))
        total = self._int(fields[-1], line)
        hsize = self._int(fields[-2], line) if kind == _HPUB else -1
        self._check_sizes(hsize, total, line)
        return (kind, subject, None, optional, hsize, total)


def _body_event(head: Tuple[Any, ...], body: bytes) -> Any:
    kind, subject, sid, reply, hsize, _ = head
    headers, status, description = None, None, ""
    if hsize >= 0:
        headers, status, description = _parse_header_block(body[:hsize])
        body = body[hsize:]
    if kind == _PUB or kind == _HPUB:
        return Pub(subject=subject, reply=reply, payload=body, headers=headers)
    return Msg(subject, sid, reply, body, headers, status, description)


# -- validation ------------------------------------------------------------------------------

_BAD_SUBJECT_CHAR: Final = re.compile(r"[\x00-\x20\x7f]")
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
            return subject.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            problem = "not encodable as UTF-8"
    raise LocalProtocolError(f"invalid {what} {subject!r}: {problem}")


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
            return queue.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            pass
    raise LocalProtocolError(f"invalid queue group {queue!r}: must be a non-empty str without whitespace")


def _check_int(value: Any, what: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise LocalProtocolError(f"{what} must be a {kind} int, got {value!r}")
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
    return b"SUB %b%b %d\r\n" % (subject_b, queue_b, _check_int(sid, "sid", 1))


def encode_unsub(sid: int, max_msgs: Optional[int] = None) -> bytes:
    """``UNSUB <sid> [max_msgs]\\r\\n``: unsubscribe now, or after ``max_msgs`` more messages.

    Raises:
        LocalProtocolError: ``sid`` is not a positive int or ``max_msgs`` a non-negative int.
    """
    _check_int(sid, "sid", 1)
    if max_msgs is None:
        return b"UNSUB %d\r\n" % sid
    return b"UNSUB %d %d\r\n" % (sid, _check_int(max_msgs, "max_msgs", 0))


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
    return b"MSG %b %d%b %d\r\n%b\r\n" % (subject_b, _check_int(sid, "sid", 1), reply_b, len(payload), payload)


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
    sid = _check_int(sid, "sid", 1)
    return b"HMSG %b %d%b %d %d\r\n%b%b\r\n" % (subject_b, sid, reply_b, hsize, hsize + len(payload), block, payload)


def encode_err(text: str) -> bytes:
    """``-ERR '<text>'\\r\\n`` (fake server).

    Raises:
        LocalProtocolError: ``text`` is not a ``str`` or contains CR, LF or NUL.
    """
    if not isinstance(text, str) or "\r" in text or "\n" in text or "\0" in text:
        raise LocalProtocolError(f"invalid -ERR text {text!r}: must be a str without CR, LF or NUL")
    return b"-ERR '" + text.encode("utf-8") + b"'\r\n"
