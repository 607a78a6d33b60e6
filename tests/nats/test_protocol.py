"""Parser tests: table-driven cases fed whole, byte by byte and in random splits, plus properties.

Frames in the tables are written out by hand (with sizes computed by ``_hmsg``/``_msg`` below, which
do not use the encoders under test), so that the parser is not only checked against itself.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memphis_sync.errors import RemoteProtocolError
from memphis_sync.nats.protocol import (
    CLIENT,
    DEFAULT_MAX_PAYLOAD,
    EOF,
    MAX_CONTROL_LINE,
    MAX_HEADER_BLOCK,
    MAX_JSON_LINE,
    NEED_DATA,
    SERVER,
    Connect,
    Err,
    Info,
    Msg,
    Ok,
    Parser,
    Ping,
    Pong,
    Pub,
    Role,
    Sub,
    Unsub,
    encode_hmsg,
    encode_hpub,
    encode_msg,
    encode_pub,
)
from memphis_sync.nats.protocol.headers import Headers

# -- helpers ---------------------------------------------------------------------------------


def _msg(op: bytes, fields: bytes, payload: bytes) -> bytes:
    return b"%s %s %d\r\n%s\r\n" % (op, fields, len(payload), payload)


def _hmsg(op: bytes, fields: bytes, block: bytes, payload: bytes = b"") -> bytes:
    return b"%s %s %d %d\r\n%s%s\r\n" % (op, fields, len(block), len(block) + len(payload), block, payload)


def M(subject: str, sid: int, payload: bytes = b"", reply: Optional[str] = None, headers: Any = None,
      status: Optional[int] = None, description: str = "") -> Msg:  # fmt: skip
    if headers is not None and not isinstance(headers, Headers):
        headers = Headers(headers)
    return Msg(subject, sid, reply, payload, headers, status, description)


def splits(data: bytes, seed: int) -> List[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 2, 3, 5, 7, 16, 64, 1000])
        out.append(data[i : i + n])
        i += n
    return out


SPLITTERS: List[Tuple[str, Callable[[bytes], Iterable[bytes]]]] = [
    ("whole", lambda d: [d] if d else []),
    ("bytewise", lambda d: [d[i : i + 1] for i in range(len(d))]),
    *[(f"random{seed}", (lambda seed: lambda d: splits(d, seed))(seed)) for seed in range(4)],
]


def parse_with_feed(data: bytes, chunker: Callable[[bytes], Iterable[bytes]], parser: Parser) -> List[Any]:
    events: List[Any] = []
    for chunk in chunker(data):
        events.extend(parser.feed(chunk))
    events.extend(parser.feed(b""))
    return events


def parse_with_next_event(data: bytes, chunker: Callable[[bytes], Iterable[bytes]], parser: Parser) -> List[Any]:
    events: List[Any] = []
    for chunk in chunker(data):
        parser.receive_data(chunk)
        events.extend(parser.events())
    parser.receive_data(b"")
    events.extend(parser.events())
    assert parser.next_event() is EOF  # and it stays there
    return events


def all_ways(data: bytes, role: Role = CLIENT, **kwargs: Any) -> List[Any]:
    """Parse ``data`` every way; assert identical results; return the events (EOF stripped)."""
    results = []
    for name, chunker in SPLITTERS:
        for driver in (parse_with_feed, parse_with_next_event):
            events = driver(data, chunker, Parser(role, **kwargs))
            assert events[-1] is EOF, name
            results.append((name, driver.__name__, events[:-1]))
    for how, driver_name, events in results[1:]:
        assert events == results[0][2], (how, driver_name)
    return results[0][2]


def raises_all_ways(data: bytes, role: Role = CLIENT, **kwargs: Any) -> None:
    """Every way of feeding ``data`` raises RemoteProtocolError before EOF is signalled."""
    for name, chunker in SPLITTERS:
        parser = Parser(role, **kwargs)
        with pytest.raises(RemoteProtocolError):
            for chunk in chunker(data):
                parser.feed(chunk)
        with pytest.raises(RemoteProtocolError):  # dead for good
            parser.feed(b"PING\r\n")
        with pytest.raises(RemoteProtocolError):
            parser.next_event()
        parser = Parser(role, **kwargs)
        with pytest.raises(RemoteProtocolError):
            for chunk in chunker(data):
                parser.receive_data(chunk)
                list(parser.events())
        with pytest.raises(RemoteProtocolError):
            parser.receive_data(b"PING\r\n")


# -- client-role cases -----------------------------------------------------------------------

INFO_JSON = b'{"server_id":"NDX","version":"2.10.7","max_payload":1048576,"headers":true,"proto":1}'
HDR = b"NATS/1.0\r\nBar: Baz\r\n\r\n"
UNICODE = "Ünïcödé ✓ 日本"

CLIENT_CASES: List[Tuple[str, bytes, List[Any]]] = [
    ("info", b"INFO " + INFO_JSON + b"\r\n", [Info.from_json(INFO_JSON)]),
    ("info-lower-tabs", b"info\t \t" + INFO_JSON + b" \r\n", [Info.from_json(INFO_JSON)]),
    ("msg", b"MSG FOO.BAR 9 11\r\nHello World\r\n", [M("FOO.BAR", 9, b"Hello World")]),
    ("msg-reply", b"MSG FOO.BAR 9 GREETING.34 11\r\nHello World\r\n",
     [M("FOO.BAR", 9, b"Hello World", reply="GREETING.34")]),
    ("msg-empty", b"MSG foo 1 0\r\n\r\n", [M("foo", 1)]),
    ("msg-empty-reply", b"MSG foo 1 bar 0\r\n\r\n", [M("foo", 1, reply="bar")]),
    ("msg-crlf-only-payload", b"MSG foo 1 2\r\n\r\n\r\n", [M("foo", 1, b"\r\n")]),
    ("msg-crlf-payload", b"MSG foo 1 8\r\n\r\na\r\n\r\nb\r\n", [M("foo", 1, b"\r\na\r\n\r\nb")]),
    ("msg-payload-ends-cr", b"MSG foo 1 2\r\na\r\r\n", [M("foo", 1, b"a\r")]),
    ("msg-payload-starts-lf", b"MSG foo 1 2\r\n\na\r\n", [M("foo", 1, b"\na")]),
    ("msg-payload-looks-like-frame", _msg(b"MSG", b"a 1", b"PING\r\nMSG b 2 0\r\n\r\n"),
     [M("a", 1, b"PING\r\nMSG b 2 0\r\n\r\n")]),
    ("msg-binary", _msg(b"MSG", b"a 1", bytes(range(256))), [M("a", 1, bytes(range(256)))]),
    ("msg-tabs-spaces", b"MSG \t foo\t\t1   2 \r\nhi\r\n", [M("foo", 1, b"hi")]),
    ("msg-lower", b"msg foo 1 2\r\nhi\r\n", [M("foo", 1, b"hi")]),
    ("msg-mixed-case", b"mSg foo 1 2\r\nhi\r\n", [M("foo", 1, b"hi")]),
    ("msg-unicode-subject", "MSG ünï.çødé 3 1\r\nx\r\n".encode(), [M("ünï.çødé", 3, b"x")]),
    ("msg-leading-zeros", b"MSG a 007 002\r\nhi\r\n", [M("a", 7, b"hi")]),
    ("hmsg-headers-only", _hmsg(b"HMSG", b"FOO 1", HDR), [M("FOO", 1, headers={"Bar": "Baz"})]),
    ("hmsg-headers-payload", _hmsg(b"HMSG", b"FOO.BAR 9 BAZ.69", b"NATS/1.0\r\nFoodGroup: vegetable\r\n\r\n",
                                   b"Hello World"),
     [M("FOO.BAR", 9, b"Hello World", reply="BAZ.69", headers={"FoodGroup": "vegetable"})]),
    ("hmsg-lower", _hmsg(b"hmsg", b"a 1", HDR, b"x"), [M("a", 1, b"x", headers={"Bar": "Baz"})]),
    ("hmsg-no-headers", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\n\r\n", b"p"), [M("a", 1, b"p", headers={})]),
    ("hmsg-repeated", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n"),
     [M("a", 1, headers=[("A", "1"), ("B", "2"), ("A", "3")])]),
    ("hmsg-case-kept", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nfoo: 1\r\nFOO: 2\r\n\r\n"),
     [M("a", 1, headers=[("foo", "1"), ("FOO", "2")])]),
    ("hmsg-503", b"HMSG _INBOX.x 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
     [M("_INBOX.x", 1, headers={}, status=503)]),
    ("hmsg-404", _hmsg(b"HMSG", b"i 1", b"NATS/1.0 404 No Messages\r\n\r\n"),
     [M("i", 1, headers={}, status=404, description="No Messages")]),
    ("hmsg-408", _hmsg(b"HMSG", b"i 1", b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n"
                       b"Nats-Pending-Bytes: 0\r\n\r\n"),
     [M("i", 1, headers={"Nats-Pending-Messages": "1", "Nats-Pending-Bytes": "0"}, status=408,
        description="Request Timeout")]),
    ("hmsg-409", _hmsg(b"HMSG", b"i 1", b"NATS/1.0 409 Consumer Deleted\r\n\r\n"),
     [M("i", 1, headers={}, status=409, description="Consumer Deleted")]),
    ("hmsg-409-no-desc", _hmsg(b"HMSG", b"i 1", b"NATS/1.0 409\r\n\r\n"), [M("i", 1, headers={}, status=409)]),
    ("hmsg-100-heartbeat", _hmsg(b"HMSG", b"i 1", b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\n"
                                 b"Nats-Last-Stream: 7\r\n\r\n"),
     [M("i", 1, headers={"Nats-Last-Consumer": "5", "Nats-Last-Stream": "7"}, status=100,
        description="Idle Heartbeat")]),
    ("hmsg-100-flow-control-reply", _hmsg(b"HMSG", b"i 1 $JS.FC.x", b"NATS/1.0 100 FlowControl Request\r\n\r\n"),
     [M("i", 1, reply="$JS.FC.x", headers={}, status=100, description="FlowControl Request")]),
    ("hmsg-status-extra-spaces", _hmsg(b"HMSG", b"i 1", b"NATS/1.0   503  \r\n\r\n"),
     [M("i", 1, headers={}, status=503)]),
    ("hmsg-non-ascii", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nU: " + UNICODE.encode() + b"\r\n\r\n"),
     [M("a", 1, headers={"U": UNICODE})]),
    ("hmsg-invalid-utf8-kept", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nU: a\xffb\r\n\r\n"),
     [M("a", 1, headers={"U": "a\ufffdb"})]),
    ("hmsg-colon-in-value", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nUrl: http://h:1/p?q=a:b\r\n\r\n"),
     [M("a", 1, headers={"Url": "http://h:1/p?q=a:b"})]),
    ("hmsg-whitespace", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nA:1\r\nB:  \t two words \t\r\nC:\r\n\r\n"),
     [M("a", 1, headers=[("A", "1"), ("B", "two words"), ("C", "")])]),
    ("hmsg-crlf-payload", _hmsg(b"HMSG", b"a 1", HDR, b"\r\n\r\nx\r\n"),
     [M("a", 1, b"\r\n\r\nx\r\n", headers={"Bar": "Baz"})]),
    ("ping", b"PING\r\n", [Ping()]),
    ("pong", b"PONG\r\n", [Pong()]),
    ("ok", b"+OK\r\n", [Ok()]),
    ("lower-control", b"ping\r\npong\r\n+ok\r\n", [Ping(), Pong(), Ok()]),
    ("err", b"-ERR 'Authorization Violation'\r\n", [Err(message="Authorization Violation")]),
    ("err-permissions", b"-ERR 'Permissions Violation for Publish to \"x.y\"'\r\n",
     [Err(message='Permissions Violation for Publish to "x.y"')]),
    ("err-unquoted", b"-err Unknown Protocol Operation \r\n", [Err(message="Unknown Protocol Operation")]),
    ("err-empty", b"-ERR\r\n", [Err(message="")]),
    ("many", b"INFO {}\r\nPING\r\n" + b"MSG a 1 1\r\nx\r\n" * 3 + _hmsg(b"HMSG", b"b 2 r", HDR, b"yz")
     + b"MSG c 3 2\r\n\r\n\r\n+OK\r\nPONG\r\n",
     [Info(data={}), Ping(), M("a", 1, b"x"), M("a", 1, b"x"), M("a", 1, b"x"),
      M("b", 2, b"yz", reply="r", headers={"Bar": "Baz"}), M("c", 3, b"\r\n"), Ok(), Pong()]),
    ("nothing", b"", []),
]  # fmt: skip


@pytest.mark.parametrize("name, data, expected", CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES])
def test_client_cases(name: str, data: bytes, expected: List[Any]) -> None:
    assert all_ways(data) == expected
    assert all_ways(data * 3) == expected * 3  # and back to back


def test_msg_fields() -> None:
    (msg,) = Parser().feed(_hmsg(b"HMSG", b"s.t 7 r.1", b"NATS/1.0 503\r\nA: b\r\n\r\n", b"p"))
    assert (msg.subject, msg.sid, msg.reply, msg.payload, msg.status, msg.description) == ("s.t", 7, "r.1", b"p", 503, "")
    assert msg.headers == Headers({"A": "b"}) and msg.is_status
    assert isinstance(msg.payload, bytes)
    (plain,) = Parser().feed(b"MSG a 1 0\r\n\r\n")
    assert plain.headers is None and not plain.is_status
    assert repr(plain) == "Msg(subject='a', sid=1, reply=None, payload=b'', headers=None, status=None, description='')"
    assert plain == M("a", 1) and plain != M("a", 2) and plain != "a"


def test_info_properties() -> None:
    info = Info.from_json(
        b'{"server_id":"S","version":"2.10.0","max_payload":2048,"headers":true,"tls_required":true,'
        b'"tls_available":true,"tls_verify":true,"auth_required":true,"connect_urls":["a:1","b:2"],'
        b'"ldm":true,"jetstream":true,"nonce":"abc","client_id":42,"proto":1}'
    )
    assert (info.server_id, info.version, info.max_payload) == ("S", "2.10.0", 2048)
    assert info.headers and info.tls_required and info.tls_available and info.tls_verify
    assert info.auth_required and info.ldm and info.jetstream
    assert (info.connect_urls, info.nonce, info.client_id, info.proto) == (["a:1", "b:2"], "abc", 42, 1)
    empty = Info.from_json("{}")
    assert (empty.server_id, empty.version, empty.max_payload) == ("", "", DEFAULT_MAX_PAYLOAD)
    assert not (empty.headers or empty.tls_required or empty.ldm or empty.jetstream or empty.auth_required)
    assert (empty.connect_urls, empty.nonce, empty.client_id, empty.proto) == ([], None, None, 0)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"x"', b"\xff", b"[" * 100_000])
def test_info_from_json_errors(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Info.from_json(raw)


def test_long_info_line_accepted() -> None:
    urls = [f"10.0.{i // 256}.{i % 256}:4222" for i in range(1000)]
    line = b'INFO {"connect_urls":["' + '","'.join(urls).encode() + b'"]}\r\n'
    assert MAX_CONTROL_LINE < len(line) < MAX_JSON_LINE
    (info,) = all_ways(line)
    assert info.connect_urls == urls


def test_sentinels() -> None:
    assert repr(NEED_DATA) == "NEED_DATA" and repr(EOF) == "EOF" and NEED_DATA is not EOF


# -- malformed input -------------------------------------------------------------------------

MALFORMED: List[Tuple[str, bytes]] = [
    ("unknown-op", b"FOO bar\r\n"),
    ("server-op-in-client", b"PUB foo 0\r\n\r\n"),
    ("empty-line", b"\r\n"),
    ("blank-line", b"  \t \r\n"),
    ("msg-too-few", b"MSG foo 1\r\n"),
    ("msg-too-many", b"MSG a b c d e\r\n"),
    ("msg-size-alpha", b"MSG foo 1 abc\r\n"),
    ("msg-size-negative", b"MSG foo 1 -1\r\n"),
    ("msg-size-plus", b"MSG foo 1 +5\r\nhello\r\n"),
    ("msg-size-underscore", b"MSG foo 1 1_0\r\n"),
    ("msg-sid-alpha", b"MSG foo x 1\r\na\r\n"),
    ("msg-size-unicode-digit", "MSG foo 1 ٣\r\nabc\r\n".encode()),
    ("msg-missing-crlf", b"MSG foo 1 2\r\nhiXX"),
    ("msg-short-payload", b"MSG foo 1 5\r\nhi\r\nMSG"),
    ("hmsg-too-few", b"HMSG a 1 12\r\n"),
    ("hmsg-too-many", b"HMSG a 1 r x 12 12\r\n"),
    ("hmsg-hdr-gt-total", b"HMSG foo 1 30 20\r\n"),
    ("hmsg-hdr-gt-cap", b"HMSG foo 1 %d %d\r\n" % (MAX_HEADER_BLOCK + 1, MAX_HEADER_BLOCK + 1)),
    ("hmsg-not-nats", _hmsg(b"HMSG", b"a 1", b"NATS/2.0\r\n\r\n")),
    ("hmsg-http", _hmsg(b"HMSG", b"a 1", b"HTTP/1.1\r\n\r\n")),
    ("hmsg-no-blank-line", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nA: b\r\n", b"xx")),
    ("hmsg-line-no-colon", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\nNoColon\r\n\r\n")),
    ("hmsg-empty-name", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\n: v\r\n\r\n")),
    ("hmsg-blank-inside", _hmsg(b"HMSG", b"a 1", b"NATS/1.0\r\n\r\nA: b\r\n\r\n")),
    ("hmsg-bad-status", _hmsg(b"HMSG", b"a 1", b"NATS/1.0 50\r\n\r\n")),
    ("hmsg-alpha-status", _hmsg(b"HMSG", b"a 1", b"NATS/1.0 abc\r\n\r\n")),
    ("hmsg-long-status", _hmsg(b"HMSG", b"a 1", b"NATS/1.0 5030\r\n\r\n")),
    ("hmsg-glued-version", _hmsg(b"HMSG", b"a 1", b"NATS/1.0503\r\n\r\n")),
    ("hmsg-missing-crlf", b"HMSG a 1 12 12\r\nNATS/1.0\r\n\r\nXX"),
    ("info-bad-json", b"INFO {nope}\r\n"),
    ("info-not-object", b"INFO [1,2]\r\n"),
    ("info-empty", b"INFO\r\n"),
    ("ping-args", b"PING x\r\n"),
    ("pong-args", b"PONG x\r\n"),
    ("ok-args", b"+OK x\r\n"),
    ("long-line", b"MSG " + b"a" * MAX_CONTROL_LINE + b" 1 0\r\n\r\n"),
    ("long-garbage-no-crlf", b"x" * (MAX_CONTROL_LINE + 2)),
    ("long-info-no-crlf", b"INFO {" + b" " * (MAX_JSON_LINE + 2)),
    ("good-then-bad", b"PING\r\nMSG a 1 1\r\nx\r\nBAD\r\n"),
]  # fmt: skip


@pytest.mark.parametrize("name, data", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed(name: str, data: bytes) -> None:
    raises_all_ways(data)


def test_error_message_quotes_the_line() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Parser().feed(b"BOGUS " + b"x" * 200 + b"\r\n")
    text = str(info.value)
    assert text.startswith("memphis: unknown protocol operation: b'BOGUS xxx") and "x" * 100 not in text


def test_max_control_line_exactly_is_fine() -> None:
    line = b"MSG " + b"a" * (MAX_CONTROL_LINE - len(b"MSG  1 0")) + b" 1 0"
    assert len(line) == MAX_CONTROL_LINE
    assert len(all_ways(line + b"\r\n\r\n")) == 1
    raises_all_ways(line[:4] + b"a" + line[4:] + b"\r\n\r\n")


@pytest.mark.parametrize("chunk", [1, 100, 1000, 65536])
def test_control_line_memory_is_bounded(chunk: int) -> None:
    parser = Parser(max_control_line=1024)
    blob = b"MSG " + b"x" * (1 << 20)  # 1 MiB without CRLF
    fed = 0
    with pytest.raises(RemoteProtocolError, match="longer than 1024"):
        for i in range(0, len(blob), chunk):
            parser.feed(blob[i : i + chunk])
            fed += chunk
            assert parser.buffered <= 1024 + 1
    assert fed <= 1024 + 1  # raised as soon as the limit was crossed


def test_control_line_memory_is_bounded_with_next_event() -> None:
    parser = Parser(max_control_line=1024)
    with pytest.raises(RemoteProtocolError):
        for _ in range(1 << 12):
            parser.receive_data(b"x" * 256)
            assert parser.next_event() is NEED_DATA
            assert parser.buffered <= 1024 + 1


class _CountingBuffer(bytearray):
    """A bytearray that counts how many bytes its find() calls examine."""

    searched = 0

    def find(self, sub: Any, start: Any = 0, *rest: Any) -> int:
        type(self).searched += len(self) - (start or 0)
        return super().find(sub, start, *rest)


@pytest.mark.parametrize("api", ["feed", "next_event"])
def test_waiting_for_a_line_never_rescans(api: str) -> None:
    line = b'INFO {"k":"' + b"x" * 20000 + b'"}'
    parser = Parser()
    parser._buf = buf = _CountingBuffer()
    _CountingBuffer.searched = 0
    events: List[Any] = []
    for i in range(len(line)):
        if api == "feed":
            events.extend(parser.feed(line[i : i + 1]))
        else:
            parser.receive_data(line[i : i + 1])
            events.extend(parser.events())
    assert events == [] and parser.buffered == len(line) and parser._buf is buf
    # Linear, not quadratic: each byte once, plus the possible CR at the end of each call.
    assert _CountingBuffer.searched <= 2 * len(line) + 16
    parser.receive_data(b"\r\n") if api == "next_event" else events.extend(parser.feed(b"\r\n"))
    events.extend(parser.events())
    assert events == [Info.from_json(line[5:])]


def test_payload_over_max_rejected_before_body_arrives() -> None:
    for line in (b"MSG foo 1 101\r\n", b"HMSG foo 1 12 101\r\n"):
        parser = Parser(max_payload=100)
        with pytest.raises(RemoteProtocolError, match="max_payload"):
            parser.feed(line)  # the body is not even sent
        parser = Parser(max_payload=100)
        parser.receive_data(line)
        with pytest.raises(RemoteProtocolError, match="max_payload"):
            parser.next_event()


def test_max_payload_is_writable() -> None:
    parser = Parser(max_payload=4)
    assert parser.feed(b"MSG a 1 4\r\nabcd\r\n") == [M("a", 1, b"abcd")]
    parser.max_payload = 5
    assert parser.feed(b"MSG a 1 5\r\nabcde\r\n") == [M("a", 1, b"abcde")]
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"MSG a 1 6\r\n")


def test_large_payload_in_small_chunks() -> None:
    payload = bytes(random.Random(1).getrandbits(8) for _ in range(300_000))
    frame = _msg(b"MSG", b"big 1", payload)
    parser = Parser()
    events = []
    for i in range(0, len(frame), 4096):
        events.extend(parser.feed(frame[i : i + 4096]))
        assert parser.buffered <= len(frame)
    assert events == [M("big", 1, payload)] and parser.buffered == 0


# -- EOF and lifecycle -----------------------------------------------------------------------


def test_eof_clean() -> None:
    assert Parser().feed(b"") == [EOF]
    parser = Parser()
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"PING\r\n")
    parser.receive_data(b"")
    assert [parser.next_event(), parser.next_event(), parser.next_event()] == [Ping(), EOF, EOF]
    assert list(parser.events()) == [EOF]
    assert parser.feed(b"") == [EOF]


@pytest.mark.parametrize("partial", [b"P", b"PING", b"PING\r", b"MSG a 1 5\r\nab", b"MSG a 1 2\r\nab",
                                     b"MSG a 1 2\r\nab\r", b"HMSG a 1 12 12\r\nNATS/1.0\r\n"])  # fmt: skip
def test_eof_mid_frame(partial: bytes) -> None:
    parser = Parser()
    parser.feed(partial)
    with pytest.raises(RemoteProtocolError, match="connection closed mid-frame"):
        parser.feed(b"")
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"")
    parser = Parser()
    parser.receive_data(partial)
    parser.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="connection closed mid-frame"):
        parser.next_event()
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_data_after_eof() -> None:
    parser = Parser()
    parser.feed(b"")
    with pytest.raises(RuntimeError):
        parser.feed(b"PING\r\n")
    with pytest.raises(RuntimeError):
        parser.receive_data(b"PING\r\n")


def test_next_event_returns_good_events_before_the_error() -> None:
    parser = Parser()
    parser.receive_data(b"PING\r\nMSG a 1 1\r\nx\r\nBAD\r\nPONG\r\n")
    assert parser.next_event() == Ping()
    assert parser.next_event() == M("a", 1, b"x")
    with pytest.raises(RemoteProtocolError, match="unknown protocol operation"):
        parser.next_event()
    with pytest.raises(RemoteProtocolError, match="earlier error"):
        parser.next_event()


def test_feed_after_next_event_keeps_order() -> None:
    parser = Parser()
    parser.receive_data(b"PING\r\nPONG\r\n")
    assert parser.next_event() == Ping()
    assert parser.feed(b"+OK\r\n") == [Pong(), Ok()]


def test_repr_and_buffered() -> None:
    parser = Parser()
    parser.feed(b"MSG a 1 10\r\nabc")
    assert parser.buffered == len(b"MSG a 1 10\r\nabc")
    assert repr(parser) == f"<Parser client open buffered={parser.buffered}>"
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"0123456789XX")
    assert repr(parser).startswith("<Parser client dead")


def test_feed_accepts_bytearray_and_memoryview() -> None:
    parser = Parser()
    assert parser.feed(bytearray(b"MSG a 1 2\r\nhi\r\nMSG a 1 2\r\n")) == [M("a", 1, b"hi")]
    assert parser.feed(memoryview(b"yo\r\n")) == [M("a", 1, b"yo")]


# -- server role -----------------------------------------------------------------------------

SERVER_CASES: List[Tuple[str, bytes, List[Any]]] = [
    ("connect", b'CONNECT {"verbose":false,"pedantic":false,"lang":"python3","headers":true}\r\n',
     [Connect(options={"verbose": False, "pedantic": False, "lang": "python3", "headers": True})]),
    ("pub", b"PUB FOO 11\r\nHello NATS!\r\n", [Pub(subject="FOO", payload=b"Hello NATS!")]),
    ("pub-reply", b"PUB FRONT.DOOR JOKE.22 11\r\nKnock Knock\r\n",
     [Pub(subject="FRONT.DOOR", reply="JOKE.22", payload=b"Knock Knock")]),
    ("pub-empty", b"PUB NOTIFY 0\r\n\r\n", [Pub(subject="NOTIFY")]),
    ("pub-crlf", b"pub a 4\r\n\r\n\r\n\r\n", [Pub(subject="a", payload=b"\r\n\r\n")]),
    ("hpub", b"HPUB FOO 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\nHello NATS!\r\n",
     [Pub(subject="FOO", payload=b"Hello NATS!", headers=Headers({"Bar": "Baz"}))]),
    ("hpub-reply", b"HPUB FRONT.DOOR JOKE.22 45 56\r\nNATS/1.0\r\nBREAKFAST: donut\r\nLUNCH: burger\r\n\r\n"
                   b"Knock Knock\r\n",
     [Pub(subject="FRONT.DOOR", reply="JOKE.22", payload=b"Knock Knock",
          headers=Headers({"BREAKFAST": "donut", "LUNCH": "burger"}))]),
    ("sub", b"SUB FOO 1\r\n", [Sub(subject="FOO", sid=1)]),
    ("sub-queue", b"sub BAR G1 44\r\n", [Sub(subject="BAR", queue="G1", sid=44)]),
    ("sub-wildcard", b"SUB a.*.> 2\r\n", [Sub(subject="a.*.>", sid=2)]),
    ("unsub", b"UNSUB 1\r\n", [Unsub(sid=1)]),
    ("unsub-max", b"UNSUB 1 5\r\n", [Unsub(sid=1, max_msgs=5)]),
    ("ping-pong", b"PING\r\nPONG\r\n", [Ping(), Pong()]),
]  # fmt: skip


@pytest.mark.parametrize("name, data, expected", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_server_cases(name: str, data: bytes, expected: List[Any]) -> None:
    assert all_ways(data, SERVER) == expected
    assert all_ways(data * 2, SERVER) == expected * 2


SERVER_MALFORMED: List[Tuple[str, bytes]] = [
    ("client-op", b"MSG a 1 0\r\n\r\n"),
    ("info", b"INFO {}\r\n"),
    ("connect-bad-json", b"CONNECT {\r\n"),
    ("connect-not-object", b"CONNECT 1\r\n"),
    ("pub-too-few", b"PUB a\r\n"),
    ("pub-too-many", b"PUB a b c 1\r\n"),
    ("pub-bad-size", b"PUB a x\r\n"),
    ("hpub-hdr-gt-total", b"HPUB a 12 2\r\n"),
    ("sub-bad-sid", b"SUB a q x\r\n"),
    ("sub-too-few", b"SUB a\r\n"),
    ("unsub-too-many", b"UNSUB 1 2 3\r\n"),
    ("unsub-negative", b"UNSUB 1 -2\r\n"),
    ("pub-too-big", b"PUB a %d\r\n" % (DEFAULT_MAX_PAYLOAD + 1)),
    ("long-connect-no-crlf", b"CONNECT {" + b" " * (MAX_JSON_LINE + 2)),
]


@pytest.mark.parametrize("name, data", SERVER_MALFORMED, ids=[c[0] for c in SERVER_MALFORMED])
def test_server_malformed(name: str, data: bytes) -> None:
    raises_all_ways(data, SERVER)


# -- properties ------------------------------------------------------------------------------

_TOKEN_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters=".", min_codepoint=0x21).filter(
    lambda c: c != "\x7f"
)
_token = st.text(_TOKEN_CHARS, min_size=1, max_size=6).filter(lambda t: t not in ("*", ">"))
subjects = st.lists(_token, min_size=1, max_size=4).map(".".join)
_NAME_CHARS = st.sampled_from([chr(c) for c in range(0x21, 0x7F) if chr(c) != ":"])
header_names = st.text(_NAME_CHARS, min_size=1, max_size=10)
# Values travel verbatim except surrounding spaces/tabs, which the parser strips.
header_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=20).map(
    lambda v: v.strip(" \t")
)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=5)
payloads = st.binary(max_size=300) | st.sampled_from([b"", b"\r\n", b"\r", b"\n", b"x\r\n\r\ny"])


@st.composite
def messages(draw: st.DrawFn) -> Tuple[bytes, Msg]:
    subject, sid, payload = draw(subjects), draw(st.integers(1, 2**40)), draw(payloads)
    reply = draw(st.none() | subjects)
    if not draw(st.booleans()):
        return encode_msg(subject, sid, payload, reply), M(subject, sid, payload, reply)
    pairs = draw(header_lists)
    status = draw(st.sampled_from([None, None, 100, 404, 408, 409, 503]))
    description = draw(st.sampled_from(["", "No Messages", "Idle Heartbeat", " x\ty "])).strip(" \t")
    frame = encode_hmsg(subject, sid, payload, Headers(pairs), reply, status, description)
    return frame, M(subject, sid, payload, reply, Headers(pairs), status, description if status else "")


def _cut(data: bytes, cuts: Sequence[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if a < b]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), max_size=8), st.lists(st.integers(0, 10**6), max_size=12))
def test_property_encoded_messages_round_trip(frames: List[Tuple[bytes, Msg]], cuts: List[int]) -> None:
    data = b"".join(frame for frame, _ in frames)
    parser = Parser()
    events = [event for piece in _cut(data, cuts) for event in parser.feed(piece)]
    assert events == [msg for _, msg in frames]
    assert parser.feed(b"") == [EOF]


@st.composite
def publishes(draw: st.DrawFn) -> Tuple[bytes, Pub]:
    subject, payload, reply = draw(subjects), draw(payloads), draw(st.none() | subjects)
    if draw(st.booleans()):
        return encode_pub(subject, payload, reply), Pub(subject=subject, reply=reply, payload=payload)
    headers = Headers(draw(header_lists))
    return encode_hpub(subject, payload, headers, reply), Pub(subject=subject, reply=reply, payload=payload,
                                                             headers=headers)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(publishes(), max_size=8), st.lists(st.integers(0, 10**6), max_size=12))
def test_property_client_encoders_round_trip_through_server_parser(
    frames: List[Tuple[bytes, Pub]], cuts: List[int]
) -> None:
    data = b"".join(frame for frame, _ in frames)
    parser = Parser(SERVER)
    events = [event for piece in _cut(data, cuts) for event in parser.feed(piece)]
    assert events == [pub for _, pub in frames]


_FRAGMENTS = [b"MSG ", b"HMSG ", b"PUB ", b"HPUB ", b"SUB ", b"a.b ", b"1 ", b"12 ", b"0", b"5", b"-1", b"\r\n",
              b"\r", b"\n", b" ", b"\t", b"NATS/1.0", b" 503", b"A: b", b"INFO {", b"}", b"PING", b"+OK",
              b"-ERR 'x'", b"CONNECT {}", b"\xff", b"99999999999999999999"]  # fmt: skip
garbage = st.lists(st.binary(max_size=20) | st.sampled_from(_FRAGMENTS), max_size=40).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(garbage, st.lists(st.integers(0, 10**6), max_size=10), st.sampled_from([CLIENT, SERVER]))
def test_property_arbitrary_bytes_only_raise_remote_protocol_error(data: bytes, cuts: List[int], role: Role) -> None:
    parser = Parser(role, max_payload=1000, max_control_line=200)
    try:
        for piece in [*_cut(data, cuts), b""]:
            parser.feed(piece)
            json_line = bytes(parser._buf[:16]).lstrip().upper().startswith((b"INFO", b"CONNECT"))
            assert parser.buffered <= (MAX_JSON_LINE + 1 if json_line else 200 + 2 + 1000 + 2)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            parser.feed(b"PING\r\n")


def test_next_event_raises_the_error_itself_first_then_says_unusable() -> None:
    parser = Parser()
    parser.receive_data(b"PING\r\nHTTP/1.1 400 Bad Request\r\n")
    assert isinstance(parser.next_event(), Ping)
    with pytest.raises(RemoteProtocolError) as first:
        parser.next_event()
    assert str(first.value) == "memphis: unknown protocol operation: b'HTTP/1.1 400 Bad Request'"
    with pytest.raises(RemoteProtocolError, match="parser unusable after an earlier error: unknown protocol operation"):
        parser.next_event()
