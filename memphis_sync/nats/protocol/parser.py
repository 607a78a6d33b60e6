# Theory of operation
# ===================
#
# The Parser turns bytes into events, as in h11; it touches no socket, thread or clock. The
# connection's reader thread is the only caller of a Parser. It passes each chunk it reads to
# Parser.feed() and routes the events it gets back (Msg, Ping, Info...). An empty chunk means
# EOF. Parser(role=SERVER) reads what a client sends (CONNECT, PUB, HPUB, SUB, UNSUB), for the
# in-process fake server in memphis_sync.testing. Writers use encoder.py.
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
"""Sans-IO NATS protocol, part 2: the push :class:`Parser` (bytes in, events out)."""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Deque, Dict, Final, Iterator, List, Mapping, Optional, Tuple, Union

from ...errors import RemoteProtocolError
from .events import (
    _CACHE_LIMIT,
    CLIENT,
    DEFAULT_MAX_PAYLOAD,
    EOF,
    MAX_CONTROL_LINE,
    MAX_HEADER_BLOCK,
    MAX_JSON_LINE,
    NEED_DATA,
    Connect,
    Err,
    Info,
    Msg,
    Ok,
    Ping,
    Pong,
    Pub,
    Role,
    Sub,
    Unsub,
    _BytesLike,
)
from .headers import Headers

__all__ = ["Parser"]

_PING_EVENT: Final = Ping()
_PONG_EVENT: Final = Pong()
_OK_EVENT: Final = Ok()

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
        self._error_raised = False  # the first raise gives the error itself, later ones say "unusable"
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
        if self._error is not None and not self._error_raised:
            self._error_raised = True
            raise RemoteProtocolError(self._error)
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
            self._error, self._error_raised = exc.args[0], True
            raise
        return out

    # -- internals -------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._error is not None:
            raise RemoteProtocolError(f"parser unusable after an earlier error: {self._error}")

    def _check_eof(self) -> None:
        if self._buf:
            self._error, self._error_raised = "connection closed mid-frame", True
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
