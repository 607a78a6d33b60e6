"""Sans-IO NATS text protocol: events, a push parser and pure encoders.

Theory of operation
-------------------
This module never touches a socket, a thread or a clock. Bytes go in, events come out (h11's
shape). The connection's reader thread is the only caller of a :class:`Parser`. It passes every
chunk it reads to :meth:`Parser.feed`, gets back a list of events (:class:`Msg`, :class:`Ping`,
:class:`Info`, ...), and routes them. An empty chunk means EOF. Writers call the ``encode_*``
functions, which return complete frames as ``bytes`` and validate everything first, so an illegal
subject or header raises :class:`LocalProtocolError` and nothing goes on the wire. The same parser
with ``role=SERVER`` reads what a client sends (CONNECT, PUB, HPUB, SUB, UNSUB), which the
in-process fake server of ``memphis_sync.testing`` needs.

Framing (NATS client protocol): every operation is a control line ended by CRLF. MSG/HMSG/PUB/HPUB
are followed by a body of exactly the announced size, then CRLF. The body may itself contain CRLF,
so it is always cut by length, never by searching.

How the parser goes fast: a chunk is split on CRLF once, in C. Each piece that starts a frame is a
control line. For a MSG, the next piece *is* the payload when its length equals the announced size,
which is the common case: no offset arithmetic and no extra copy. Any other body (an HMSG, a
payload containing CRLF, a frame cut by the end of the chunk) takes a slower path. That path
recomputes the absolute offset from a checkpoint, slices the body by length and skips the pieces the
body spanned. Split boundaries never fall inside a CRLF that ends a frame, so after a well-formed
body the piece index is back in step. Bytes that do not complete a frame stay in a bytearray. Until
enough bytes arrive, new data is only appended, and only the new bytes are searched for CRLF.

Invariants
----------
1. Between calls the parser holds at most one incomplete frame. If its control line is unfinished
   the buffer is at most ``max_control_line + 1`` bytes (``MAX_JSON_LINE`` for INFO/CONNECT).
   Otherwise it is at most one control line plus ``max_payload`` plus CRLF: memory is bounded.
2. A size over ``max_payload`` (or a header block over ``MAX_HEADER_BLOCK``) is rejected from the
   control line, before any of the body is buffered.
3. While the parser waits for the end of a control line, no byte is searched for CRLF twice.
4. Events do not depend on how the stream was cut into chunks: whole, byte by byte or random splits
   give the same events and the same errors.
5. After a :class:`RemoteProtocolError` the parser is dead: every later call raises again. The
   connection must be dropped (and re-established).
6. ``encode_*`` either returns a complete, well-formed frame or raises ``LocalProtocolError``. No
   caller-provided string can inject CR/LF into a control line.
"""

from __future__ import annotations

import enum
import json
import re
from collections import deque
from typing import Any, Deque, Dict, Final, Iterator, List, Mapping, Optional, Tuple, Union

import attrs

from .errors import LocalProtocolError, PayloadTooLargeError, RemoteProtocolError
from .headers import Headers, validate_header_name, validate_header_value

__all__ = [
    "MAX_CONTROL_LINE", "DEFAULT_MAX_PAYLOAD", "MAX_HEADER_BLOCK", "MAX_JSON_LINE", "CRLF", "PING",
    "PONG", "Role", "CLIENT", "SERVER", "NEED_DATA", "EOF", "Info", "Msg", "Ping", "Pong", "Ok",
    "Err", "Connect", "Pub", "Sub", "Unsub", "Event", "Parser", "validate_subject",
    "validate_publish_subject", "validate_queue", "check_payload_size", "encode_connect",
    "encode_pub", "encode_hpub", "encode_headers", "encode_sub", "encode_unsub", "encode_ping",
    "encode_pong", "encode_info", "encode_msg", "encode_hmsg", "encode_err",
]

# -- limits ----------------------------------------------------------------------------------

#: nats-server's default ``max_control_line``, also used by nats.go and nats-py parsers.
MAX_CONTROL_LINE: Final[int] = 4096
#: nats-server's default ``max_payload`` (1 MiB), used until INFO says otherwise.
DEFAULT_MAX_PAYLOAD: Final[int] = 1048576
#: Largest header block accepted; real ones are a few hundred bytes, this bounds abuse.
MAX_HEADER_BLOCK: Final[int] = 65536
#: INFO (``connect_urls`` of a big cluster) and CONNECT (JWTs) carry JSON that can outgrow 4 KiB.
MAX_JSON_LINE: Final[int] = 65536
#: Every control line and every body ends with this.
CRLF: Final[bytes] = b"\r\n"
#: Keep-alive probe, sent by both sides; flush() is PING then wait for PONG.
PING: Final[bytes] = b"PING\r\n"
#: Answer to PING; must be sent for every server PING or the server drops us as stale.
PONG: Final[bytes] = b"PONG\r\n"
#: Cache sizes: enough for the hot subjects of any sane application, small enough to not matter.
_CACHE_LIMIT: Final[int] = 8192


class Role(enum.Enum):
    """Which side of the connection a :class:`Parser` reads for."""

    CLIENT = "client"  #: parse what a server sends (INFO, MSG, HMSG, PING, PONG, +OK, -ERR)
    SERVER = "server"  #: parse what a client sends (CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG)


CLIENT: Final = Role.CLIENT
SERVER: Final = Role.SERVER


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


#: Returned by :meth:`Parser.next_event` when more bytes are needed to finish the next event.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: Returned once the peer closed the connection (``receive_data(b"")``) and all bytes are parsed.
EOF: Final = _Sentinel("EOF")

# -- events ----------------------------------------------------------------------------------


def _flag(data: Mapping[str, Any], key: str) -> bool:
    return bool(data.get(key, False))


@attrs.frozen(kw_only=True, slots=True)
class Info:
    """The server's ``INFO {json}``, sent on connect and again when the cluster changes.

    Attributes:
        data: The decoded JSON object, as sent (unknown keys kept).
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
    tls_required = property(lambda self: _flag(self.data, "tls_required"), doc="TLS required.")
    tls_available = property(lambda self: _flag(self.data, "tls_available"), doc="TLS offered.")
    tls_verify = property(lambda self: _flag(self.data, "tls_verify"), doc="Client cert needed.")
    auth_required = property(lambda self: _flag(self.data, "auth_required"), doc="Auth needed.")
    ldm = property(lambda self: _flag(self.data, "ldm"), doc="Server is in lame-duck mode.")
    jetstream = property(lambda self: _flag(self.data, "jetstream"), doc="JetStream enabled.")
    nonce = property(lambda self: self.data.get("nonce"), doc="Nonce to sign (nkey/JWT), or None.")
    client_id = property(lambda self: self.data.get("client_id"), doc="Our client id, or None.")
    proto = property(lambda self: int(self.data.get("proto", 0) or 0), doc="Protocol version.")

    @property
    def max_payload(self) -> int:
        """Largest message (headers + payload) the server accepts; default ``DEFAULT_MAX_PAYLOAD``."""
        value = self.data.get("max_payload")
        return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_PAYLOAD

    @property
    def connect_urls(self) -> List[str]:
        """Other servers' client URLs (``host:port``) advertised by the cluster."""
        urls = self.data.get("connect_urls") or []
        return [str(url) for url in urls] if isinstance(urls, list) else []


class Msg:
    """A message delivered by the server: ``MSG`` (no headers) or ``HMSG`` (headers, status).

    A plain ``__slots__`` class rather than a frozen attrs class: the parser builds one per
    message and frozen construction costs several times more. Treat instances as immutable.

    Args:
        subject: Subject the message was published to.
        sid: Subscription id it was delivered for.
        reply: Reply subject, or ``None``.
        payload: Body bytes (without headers).
        headers: Decoded headers for HMSG (possibly empty), ``None`` for MSG.
        status: Inline status of an HMSG (``503``, ``404``, ``100``...), else ``None``.
        description: Text after the status (``"No Messages"``), else ``""``.
    """

    __slots__ = ("subject", "sid", "reply", "payload", "headers", "status", "description")

    def __init__(
        self,
        subject: str,
        sid: int,
        reply: Optional[str] = None,
        payload: bytes = b"",
        headers: Optional[Headers] = None,
        status: Optional[int] = None,
        description: str = "",
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
        """True for a status message (no responders, heartbeat, 404 ...)."""
        return self.status is not None

    def _fields(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return self._fields() == other._fields() if isinstance(other, Msg) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Msg(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


@attrs.frozen(kw_only=True, slots=True)
class Ping:
    """``PING``: the peer wants a ``PONG``."""


@attrs.frozen(kw_only=True, slots=True)
class Pong:
    """``PONG``: answer to our oldest outstanding ``PING``."""


@attrs.frozen(kw_only=True, slots=True)
class Ok:
    """``+OK``: acknowledgement, only sent in verbose mode."""


@attrs.frozen(kw_only=True, slots=True)
class Err:
    """``-ERR 'text'``: a server error; ``message`` has the surrounding quotes stripped."""

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

# Operation kinds. Bodies: MSG, HMSG, PUB, HPUB. Every case variant of an op name is a dict key,
# so one lookup is both the case-insensitive match and the dispatch.
_MSG, _HMSG, _PUB, _HPUB, _PING, _PONG, _OK, _ERR, _INFO, _CONNECT, _SUB, _UNSUB = range(12)


def _case_variants(op: str) -> List[bytes]:
    variants = [""]
    for ch in op:
        variants = [v + c for v in variants for c in {ch.lower(), ch.upper()}]
    return [v.encode("ascii") for v in variants]


def _op_table(ops: Mapping[str, int]) -> Dict[bytes, int]:
    return {variant: kind for op, kind in ops.items() for variant in _case_variants(op)}


_OPS: Final[Mapping[Role, Dict[bytes, int]]] = {
    Role.CLIENT: _op_table(
        {"MSG": _MSG, "HMSG": _HMSG, "PING": _PING, "PONG": _PONG, "+OK": _OK, "-ERR": _ERR, "INFO": _INFO}
    ),
    Role.SERVER: _op_table(
        {"PUB": _PUB, "HPUB": _HPUB, "PING": _PING, "PONG": _PONG, "CONNECT": _CONNECT, "SUB": _SUB, "UNSUB": _UNSUB}
    ),
}
# Fields after the op name, (min, max), for the ops handled by Parser._control.
_NFIELDS: Final[Mapping[int, Tuple[int, int]]] = {_PUB: (2, 3), _HPUB: (3, 4), _SUB: (2, 3), _UNSUB: (1, 2)}


def _snippet(data: Union[bytes, bytearray]) -> str:
    return repr(bytes(data[:64]))


def _parse_header_block(block: bytes) -> Tuple[Headers, Optional[int], str]:
    """Decode ``NATS/1.0[ status[ description]]\\r\\n(Name: Value\\r\\n)*\\r\\n``."""
    if not block.startswith(b"NATS/1.0") or not block.endswith(b"\r\n\r\n"):
        raise RemoteProtocolError(f"header block must be NATS/1.0 ... CRLFCRLF: {_snippet(block)}")
    # CR and LF never occur inside a UTF-8 sequence: decoding first, then splitting, is exact.
    lines = block[:-4].decode("utf-8", "replace").split("\r\n")
    status: Optional[int] = None
    description = ""
    first = lines[0]
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
    """Push parser for one direction of a NATS connection (single owner, not thread-safe).

    Args:
        role: ``CLIENT`` to parse server → client operations, ``SERVER`` for client → server.
        max_payload: Largest body (headers + payload) accepted. The attribute is writable: the
            connection updates it from each INFO.
        max_control_line: Longest control line accepted, CRLF excluded.

    Example:
        >>> p = Parser()
        >>> p.feed(b"PING\\r\\nMSG a 1 2\\r\\nhi\\r\\n")  # doctest: +NORMALIZE_WHITESPACE
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
        self._json_prefix = b"INFO" if self.role is Role.CLIENT else b"CONNECT"
        self._buf = bytearray()  # the incomplete frame, if any
        self._need = 0  # > 0: len(_buf) that completes the frame; 0: waiting for a CRLF
        self._scan = 0  # where the CRLF search resumes in _buf while waiting for a line
        self._queue: Deque[Any] = deque()  # parsed, not yet returned by next_event()
        self._eof = False
        self._error: Optional[str] = None
        self._ints: Dict[bytes, int] = {}  # digit strings already seen (sids, sizes)
        self._subjects: Dict[bytes, str] = {}  # subjects already decoded

    def __repr__(self) -> str:
        state = "dead" if self._error else "eof" if self._eof else "open"
        return f"<Parser {self.role.value} {state} buffered={len(self._buf)}>"

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (bounded, see the module invariants)."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
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
                self._error = str(exc)
        if queue:
            return queue.popleft()
        self._check_alive()
        if self._eof:
            self._check_eof()
            return EOF
        return NEED_DATA

    def events(self) -> Iterator[Any]:
        """Yield events until ``NEED_DATA`` (not yielded) or ``EOF`` (yielded last).

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

    def feed(self, data: bytes) -> List[Any]:
        """Receive ``data`` and return every event it completes (the reader thread's hot path).

        ``b""`` means EOF: the list then ends with ``EOF``. A protocol error is raised at once;
        events before it in the same ``data`` are then lost (the connection is going down).

        Raises:
            RemoteProtocolError: The bytes break the protocol, or EOF arrived mid-frame.
            RuntimeError: Data after EOF.
        """
        self._check_alive()
        out: List[Any] = []
        if self._queue:  # left over by next_event()
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
            self._error = str(exc)
            raise
        return out

    # -- internals -------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._error is not None:
            raise RemoteProtocolError(f"parser unusable after an earlier error: {self._error}")

    def _check_eof(self) -> None:
        if self._buf:
            raise RemoteProtocolError("connection closed mid-frame")

    def _line_limit(self, line: Union[bytes, bytearray]) -> int:
        if bytes(line[:16]).lstrip().upper().startswith(self._json_prefix):
            return max(self.max_control_line, MAX_JSON_LINE)
        return self.max_control_line

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
                if len(buf) > self.max_control_line + 1 and len(buf) > self._line_limit(buf) + 1:
                    raise RemoteProtocolError(f"control line too long, no CRLF: {_snippet(buf)}")
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
                if len(line) > maxcl and len(line) > self._line_limit(line):
                    raise RemoteProtocolError(f"control line too long: {_snippet(line)}")
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
                    sid = ints.get(sid_b)
                    if sid is None:
                        sid = self._int(sid_b, line)
                    if size > maxp:
                        self._check_sizes(-1, size, line)
                    subject = subjects.get(subject_b)
                    if subject is None:
                        subject = self._subject(subject_b)
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
                    size = ints.get(size_b)
                    if size is None:
                        size = self._int(size_b, line)
                    hsize = ints.get(hsize_b)
                    if hsize is None:
                        hsize = self._int(hsize_b, line)
                    sid = ints.get(sid_b)
                    if sid is None:
                        sid = self._int(sid_b, line)
                    self._check_sizes(hsize, size, line)
                    subject = subjects.get(subject_b)
                    if subject is None:
                        subject = self._subject(subject_b)
                    head = (_HMSG, subject, sid, reply, hsize, size)
                elif kind == _PING:
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
                # A body cut by length (HMSG, PUB, payload with CRLF, end of data): locate it.
                if i - base_i <= last - i:  # count from the nearer known offset
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
        if len(leftover) > maxcl + 1 and len(leftover) > self._line_limit(leftover) + 1:
            raise RemoteProtocolError(f"control line too long, no CRLF: {_snippet(leftover)}")
        self._buf += leftover
        self._scan = max(len(leftover) - 1, 0)
        self._need = 0

    def _int(self, digits: bytes, line: bytes) -> int:
        """Decode a non-negative decimal field, caching it (sids and sizes repeat)."""
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
        """Reject a frame from its control line, before buffering its body."""
        if hsize > total:
            raise RemoteProtocolError(f"header size larger than total size: {_snippet(line)}")
        if hsize > MAX_HEADER_BLOCK:
            raise RemoteProtocolError(f"header block over {MAX_HEADER_BLOCK} bytes: {_snippet(line)}")
        if total > self.max_payload:
            raise RemoteProtocolError(f"payload of {total} bytes over max_payload {self.max_payload}: {_snippet(line)}")

    def _control(self, kind: int, args: List[bytes], line: bytes) -> Any:
        """Decode a control line other than MSG, HMSG and PING.

        Returns an event or, for PUB/HPUB, ``(kind, subject, None, reply, header_size, total)``.
        """
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
        if kind == _PONG:
            return _PONG_EVENT
        if kind == _OK:
            return _OK_EVENT
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
    headers: Optional[Headers] = None
    status: Optional[int] = None
    description = ""
    if hsize >= 0:
        headers, status, description = _parse_header_block(body[:hsize])
        body = body[hsize:]
    if kind == _PUB or kind == _HPUB:
        return Pub(subject=subject, reply=reply, payload=body, headers=headers)
    return Msg(subject, sid, reply, body, headers, status, description)


# -- validation ------------------------------------------------------------------------------

_BAD_SUBJECT_CHAR: Final = re.compile(r"[\x00-\x20\x7f]")
# Validated publish subjects → UTF-8 bytes, and → b"PUB <subject> " (encode_pub's hot path).
_SUBJECTS: Dict[str, bytes] = {}
_PUB_PREFIXES: Dict[str, bytes] = {}


def _check_subject(subject: object, what: str, wildcards: bool) -> bytes:
    if not isinstance(subject, str):
        raise LocalProtocolError(f"{what} must be a str, got {type(subject).__name__}: {subject!r}")
    if not subject:
        raise LocalProtocolError(f"{what} must not be empty")
    if _BAD_SUBJECT_CHAR.search(subject):
        raise LocalProtocolError(f"invalid {what} {subject!r}: whitespace or control character")
    tokens = subject.split(".")
    for index, token in enumerate(tokens):
        if not token:
            raise LocalProtocolError(f"invalid {what} {subject!r}: empty token")
        if token == "*" or token == ">":
            if not wildcards:
                raise LocalProtocolError(f"invalid {what} {subject!r}: wildcards are not allowed here")
            if token == ">" and index != len(tokens) - 1:
                raise LocalProtocolError(f"invalid {what} {subject!r}: '>' must be the last token")
    try:
        return subject.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"invalid {what} {subject!r}: not encodable as UTF-8") from None


def validate_subject(subject: str) -> None:
    """Check a subscription subject: wildcards ``*`` (a whole token) and ``>`` (last) allowed.

    Raises:
        LocalProtocolError: Not a non-empty ``str``; empty token; whitespace or control
            character; ``>`` not last; not UTF-8 encodable.
    """
    _check_subject(subject, "subject", wildcards=True)


def validate_publish_subject(subject: str) -> None:
    """Check a subject that is published to (also reply subjects): no wildcard tokens.

    Raises:
        LocalProtocolError: As :func:`validate_subject`, or a ``*``/``>`` token.
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


def _reply_subject(reply: str) -> bytes:
    # Replies are mostly unique inboxes: validate them without evicting hot subjects.
    encoded = _SUBJECTS.get(reply) if type(reply) is str else None
    return encoded if encoded is not None else _check_subject(reply, "reply subject", wildcards=False)


def validate_queue(queue: str) -> None:
    """Check a queue group name: a non-empty ``str`` without whitespace or control characters.

    Raises:
        LocalProtocolError: The name is invalid.
    """
    _queue_bytes(queue)


def _queue_bytes(queue: object) -> bytes:
    if not isinstance(queue, str) or not queue or _BAD_SUBJECT_CHAR.search(queue):
        raise LocalProtocolError(f"invalid queue group {queue!r}: must be a non-empty str without whitespace")
    try:
        return queue.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"invalid queue group {queue!r}: not encodable as UTF-8") from None


def _check_int(value: object, what: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise LocalProtocolError(f"{what} must be a {kind} int, got {value!r}")
    return value


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, bytes):
        return payload
    raise LocalProtocolError(f"payload must be bytes, bytearray or memoryview, got {type(payload).__name__}")


def check_payload_size(size: int, max_payload: int) -> None:
    """Raise unless a message of ``size`` bytes (headers + payload, as the server counts) fits.

    Raises:
        PayloadTooLargeError: ``size > max_payload``.
    """
    if size > max_payload:
        raise PayloadTooLargeError(size, max_payload)


# -- encoders --------------------------------------------------------------------------------


def encode_connect(options: Mapping[str, Any]) -> bytes:
    """``CONNECT {json}\\r\\n`` with compact JSON, keys in the given order (ASCII-escaped)."""
    return b"CONNECT " + json.dumps(dict(options), separators=(",", ":")).encode("ascii") + CRLF


def encode_pub(subject: str, payload: bytes, reply: Optional[str] = None) -> bytes:
    """``PUB <subject> [reply] <#bytes>\\r\\n<payload>\\r\\n``.

    Args:
        subject: Publish subject (no wildcards); validated once, then cached.
        payload: bytes, bytearray or memoryview.
        reply: Optional reply subject.

    Raises:
        LocalProtocolError: Invalid subject, reply or payload type.
    """
    try:
        prefix = _PUB_PREFIXES.get(subject)
    except TypeError:  # unhashable: certainly not a str
        prefix = None
    if prefix is None:
        prefix = b"PUB " + _publish_subject(subject) + b" "
        if type(subject) is str:
            if len(_PUB_PREFIXES) >= _CACHE_LIMIT:
                _PUB_PREFIXES.clear()
            _PUB_PREFIXES[subject] = prefix
    if type(payload) is not bytes:
        payload = _payload_bytes(payload)
    if reply is None:
        return b"%b%d\r\n%b\r\n" % (prefix, len(payload), payload)
    return b"%b%b %d\r\n%b\r\n" % (prefix, _reply_subject(reply), len(payload), payload)


def _header_block(headers: Any, status: Optional[int] = None, description: str = "") -> bytes:
    if headers is None:
        pairs: Any = ()
    elif isinstance(headers, Headers):
        pairs = headers._pairs
        for name, value in pairs:  # re-checked: headers decoded off the wire are not validated
            validate_header_name(name)
            validate_header_value(name, value)
    else:
        pairs = Headers(headers)._pairs
    first = "NATS/1.0"
    if status is not None:
        if type(status) is not int or not 100 <= status <= 999:
            raise LocalProtocolError(f"status must be a 3-digit int, got {status!r}")
        first += f" {status}"
        if description:
            validate_header_value("description", description)
            first += " " + description
    return "".join([first, "\r\n", *[f"{n}: {v}\r\n" for n, v in pairs], "\r\n"]).encode("utf-8")


def encode_headers(headers: Union[Headers, Mapping[str, Any], None]) -> bytes:
    """The header block: ``NATS/1.0\\r\\n`` + ``Name: Value\\r\\n``... + ``\\r\\n``.

    Args:
        headers: A :class:`Headers`, a mapping accepted by its constructor, or ``None``.

    Raises:
        LocalProtocolError: A header name or value is invalid.
    """
    return _header_block(headers)


def encode_hpub(subject: str, payload: bytes, headers: Any, reply: Optional[str] = None) -> bytes:
    """``HPUB <subject> [reply] <#header bytes> <#total bytes>\\r\\n<headers><payload>\\r\\n``.

    ``#header bytes`` includes the blank line ending the header block; ``#total`` adds the payload.

    Raises:
        LocalProtocolError: Invalid subject, reply, header or payload type.
    """
    subject_b = _publish_subject(subject)
    reply_part = b" " + _reply_subject(reply) if reply is not None else b""
    payload = _payload_bytes(payload)
    block = _header_block(headers)
    hsize = len(block)
    return b"HPUB %b%b %d %d\r\n%b%b\r\n" % (subject_b, reply_part, hsize, hsize + len(payload), block, payload)


def encode_sub(subject: str, sid: int, queue: Optional[str] = None) -> bytes:
    """``SUB <subject> [queue] <sid>\\r\\n``; wildcards allowed, ``sid`` a positive int.

    Raises:
        LocalProtocolError: Invalid subject, queue group or sid.
    """
    subject_b = _check_subject(subject, "subject", wildcards=True)
    queue_part = b" " + _queue_bytes(queue) if queue is not None else b""
    return b"SUB %b%b %d\r\n" % (subject_b, queue_part, _check_int(sid, "sid", 1))


def encode_unsub(sid: int, max_msgs: Optional[int] = None) -> bytes:
    """``UNSUB <sid> [max_msgs]\\r\\n`` (auto-unsubscribe after ``max_msgs`` more messages).

    Raises:
        LocalProtocolError: ``sid`` not a positive int or ``max_msgs`` not a non-negative int.
    """
    _check_int(sid, "sid", 1)
    if max_msgs is None:
        return b"UNSUB %d\r\n" % sid
    return b"UNSUB %d %d\r\n" % (sid, _check_int(max_msgs, "max_msgs", 0))


def encode_ping() -> bytes:
    """``PING\\r\\n``."""
    return PING


def encode_pong() -> bytes:
    """``PONG\\r\\n``."""
    return PONG


def encode_info(info: Mapping[str, Any]) -> bytes:
    """``INFO {json}\\r\\n`` (fake server), compact ASCII JSON."""
    return b"INFO " + json.dumps(dict(info), separators=(",", ":")).encode("ascii") + CRLF


def encode_msg(subject: str, sid: int, payload: bytes, reply: Optional[str] = None) -> bytes:
    """``MSG <subject> <sid> [reply] <#bytes>\\r\\n<payload>\\r\\n`` (fake server).

    Raises:
        LocalProtocolError: Invalid subject, sid, reply or payload type.
    """
    subject_b = _publish_subject(subject)
    _check_int(sid, "sid", 1)
    reply_part = b" " + _reply_subject(reply) if reply is not None else b""
    payload = _payload_bytes(payload)
    return b"MSG %b %d%b %d\r\n%b\r\n" % (subject_b, sid, reply_part, len(payload), payload)


def encode_hmsg(
    subject: str,
    sid: int,
    payload: bytes,
    headers: Any,
    reply: Optional[str] = None,
    status: Optional[int] = None,
    description: str = "",
) -> bytes:
    """``HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>\\r\\n...`` (fake server).

    Args:
        subject: Subject of the message.
        sid: Subscription id, a positive int.
        payload: Body bytes.
        headers: A :class:`Headers`, a mapping, or ``None`` (status line only).
        reply: Optional reply subject.
        status: Optional 3-digit status put on the ``NATS/1.0`` line (``503``, ``404``...).
        description: Optional text after the status (ignored without a status).

    Raises:
        LocalProtocolError: Invalid subject, sid, reply, header, status or payload type.
    """
    subject_b = _publish_subject(subject)
    _check_int(sid, "sid", 1)
    reply_part = b" " + _reply_subject(reply) if reply is not None else b""
    payload = _payload_bytes(payload)
    block = _header_block(headers, status, description)
    hsize = len(block)
    return b"HMSG %b %d%b %d %d\r\n%b%b\r\n" % (
        subject_b, sid, reply_part, hsize, hsize + len(payload), block, payload,
    )


def encode_err(text: str) -> bytes:
    """``-ERR '<text>'\\r\\n`` (fake server).

    Raises:
        LocalProtocolError: ``text`` contains CR, LF or NUL.
    """
    if not isinstance(text, str) or "\r" in text or "\n" in text or "\0" in text:
        raise LocalProtocolError(f"invalid -ERR text {text!r}: must be a str without CR, LF or NUL")
    return b"-ERR '" + text.encode("utf-8") + b"'\r\n"
