"""Byte-exact output and input validation of the protocol encoders."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from memphis_sync.errors import LocalProtocolError, PayloadTooLargeError
from memphis_sync.nats.protocol import encoder
from memphis_sync.nats.protocol.encoder import (
    check_payload_size,
    encode_connect,
    encode_err,
    encode_headers,
    encode_hmsg,
    encode_hpub,
    encode_info,
    encode_msg,
    encode_ping,
    encode_pong,
    encode_pub,
    encode_sub,
    encode_unsub,
    validate_publish_subject,
    validate_queue,
    validate_subject,
)
from memphis_sync.nats.protocol.headers import Headers

# -- byte-exact output -----------------------------------------------------------------------

EXACT = [
    (lambda: encode_connect({"verbose": False, "pedantic": False, "lang": "python3", "name": "é"}),
     b'CONNECT {"verbose":false,"pedantic":false,"lang":"python3","name":"\\u00e9"}\r\n'),
    (lambda: encode_connect({"z": 1, "a": None}), b'CONNECT {"z":1,"a":null}\r\n'),
    (lambda: encode_info({"server_id": "X", "max_payload": 1048576}),
     b'INFO {"server_id":"X","max_payload":1048576}\r\n'),
    (lambda: encode_pub("FOO", b"Hello NATS!"), b"PUB FOO 11\r\nHello NATS!\r\n"),
    (lambda: encode_pub("FRONT.DOOR", b"Knock Knock", "JOKE.22"), b"PUB FRONT.DOOR JOKE.22 11\r\nKnock Knock\r\n"),
    (lambda: encode_pub("NOTIFY", b""), b"PUB NOTIFY 0\r\n\r\n"),
    (lambda: encode_pub("a", b"x\r\ny"), b"PUB a 4\r\nx\r\ny\r\n"),
    (lambda: encode_pub("a", bytearray(b"ab")), b"PUB a 2\r\nab\r\n"),
    (lambda: encode_pub("a", memoryview(b"xabc")[1:]), b"PUB a 3\r\nabc\r\n"),
    (lambda: encode_pub("ünï.çødé", b"1"), "PUB ünï.çødé 1\r\n1\r\n".encode()),
    (lambda: encode_pub("a*b.c>", b""), b"PUB a*b.c> 0\r\n\r\n"),  # not whole tokens: literal
    (lambda: encode_hpub("FOO", b"Hello NATS!", {"Bar": "Baz"}),
     b"HPUB FOO 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\nHello NATS!\r\n"),
    (lambda: encode_hpub("FRONT.DOOR", b"Knock Knock", {"BREAKFAST": "donut", "LUNCH": "burger"}, "JOKE.22"),
     b"HPUB FRONT.DOOR JOKE.22 45 56\r\nNATS/1.0\r\nBREAKFAST: donut\r\nLUNCH: burger\r\n\r\nKnock Knock\r\n"),
    (lambda: encode_hpub("MORNING.MENU", b"Yum!", Headers([("BREAKFAST", "donut"), ("BREAKFAST", "eggs")])),
     b"HPUB MORNING.MENU 47 51\r\nNATS/1.0\r\nBREAKFAST: donut\r\nBREAKFAST: eggs\r\n\r\nYum!\r\n"),
    (lambda: encode_hpub("NOTIFY", b"", {}), b"HPUB NOTIFY 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
    (lambda: encode_hpub("a", b"", {"K": ""}), b"HPUB a 17 17\r\nNATS/1.0\r\nK: \r\n\r\n\r\n"),
    (lambda: encode_hpub("a", b"", {"K": "ünï"}), "HPUB a 22 22\r\nNATS/1.0\r\nK: ünï\r\n\r\n\r\n".encode()),
    (lambda: encode_headers(None), b"NATS/1.0\r\n\r\n"),
    (lambda: encode_headers({"A": ["1", "2"], "B": ["3"]}), b"NATS/1.0\r\nA: 1\r\nA: 2\r\nB: 3\r\n\r\n"),
    (lambda: encode_headers([("A", "1"), ("B", "2"), ("A", "3")]), b"NATS/1.0\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n"),
    (lambda: encode_sub("FOO", 1), b"SUB FOO 1\r\n"),
    (lambda: encode_sub("BAR", 44, "G1"), b"SUB BAR G1 44\r\n"),
    (lambda: encode_sub("a.*.>", 7), b"SUB a.*.> 7\r\n"),
    (lambda: encode_sub(">", 2), b"SUB > 2\r\n"),
    (lambda: encode_unsub(1), b"UNSUB 1\r\n"),
    (lambda: encode_unsub(1, 5), b"UNSUB 1 5\r\n"),
    (lambda: encode_unsub(3, 0), b"UNSUB 3 0\r\n"),
    (encode_ping, b"PING\r\n"),
    (encode_pong, b"PONG\r\n"),
    (lambda: encode_msg("FOO.BAR", 9, b"Hello World"), b"MSG FOO.BAR 9 11\r\nHello World\r\n"),
    (lambda: encode_msg("FOO.BAR", 9, b"Hello World", "GREETING.34"),
     b"MSG FOO.BAR 9 GREETING.34 11\r\nHello World\r\n"),
    (lambda: encode_hmsg("FOO.BAR", 9, b"Hello World", {"FoodGroup": "vegetable"}),
     b"HMSG FOO.BAR 9 34 45\r\nNATS/1.0\r\nFoodGroup: vegetable\r\n\r\nHello World\r\n"),
    (lambda: encode_hmsg("FOO.BAR", 9, b"Hello World", {"FoodGroup": "vegetable"}, "BAZ.69"),
     b"HMSG FOO.BAR 9 BAZ.69 34 45\r\nNATS/1.0\r\nFoodGroup: vegetable\r\n\r\nHello World\r\n"),
    (lambda: encode_hmsg("_INBOX.x", 1, b"", None, status=503), b"HMSG _INBOX.x 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"),
    (lambda: encode_hmsg("i", 1, b"", None, status=404, description="No Messages"),
     b"HMSG i 1 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n"),
    (lambda: encode_hmsg("i", 1, b"", {"Nats-Last-Consumer": "0"}, status=100, description="Idle Heartbeat"),
     b"HMSG i 1 54 54\r\nNATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\n\r\n\r\n"),
    (lambda: encode_hmsg("i", 1, b"", None, description="ignored"), b"HMSG i 1 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
    (lambda: encode_err("Authorization Violation"), b"-ERR 'Authorization Violation'\r\n"),
]  # fmt: skip


@pytest.mark.parametrize("build, expected", EXACT)
def test_exact(build: Callable[[], bytes], expected: bytes) -> None:
    assert build() == expected


def test_hpub_sizes() -> None:
    frame = encode_hpub("s", b"payload", {"A": "1", "B": "é"})
    line, rest = frame.split(b"\r\n", 1)
    _, _, hsize, total = line.split()
    assert rest.index(b"\r\n\r\n") + 4 == int(hsize)
    assert int(total) == int(hsize) + len(b"payload")
    assert rest == rest[: int(total)] + b"\r\n"


def test_encode_pub_cache_is_bounded_and_correct() -> None:
    for n in range(9000):
        assert encode_pub(f"cache.{n}", b"") == b"PUB cache.%d 0\r\n\r\n" % n
    assert len(encoder._PUB_PREFIXES) <= 8192
    assert len(encoder._SUBJECTS) <= 8192
    assert encode_pub("cache.1", b"x") == b"PUB cache.1 1\r\nx\r\n"


def test_cached_subject_still_validates_reply() -> None:
    encode_pub("ok", b"")
    with pytest.raises(LocalProtocolError):
        encode_pub("ok", b"", reply="bad reply")


def test_check_payload_size() -> None:
    check_payload_size(10, 10)
    with pytest.raises(PayloadTooLargeError) as info:
        check_payload_size(11, 10)
    assert (info.value.size, info.value.max_payload) == (11, 10)
    assert isinstance(info.value, LocalProtocolError)


# -- validation ------------------------------------------------------------------------------

BAD_SUBJECTS: list[Any] = [
    "a b", "a\tb", "a\rb", "a\nb", "a\x00b", "a\x7fb", "a\x1fb", " a", "a ", "", ".a", "a.", "a..b", ".",
    "a\r\nPUB evil 0", "\ud800", b"foo", None, 1, ["a"], {"a": 1},
]  # fmt: skip
WILDCARD_SUBJECTS = ["*", ">", "a.*", "a.>", "*.a", "a.*.b"]
BAD_SUB_SUBJECTS = ["a.>.b", ">.a", "> ", "a.>.>"]


def _check(call: Callable[[], object], bad: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        call()
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("subject", BAD_SUBJECTS + WILDCARD_SUBJECTS + BAD_SUB_SUBJECTS)
def test_bad_publish_subject(subject: Any) -> None:
    _check(lambda: validate_publish_subject(subject), subject)
    _check(lambda: encode_pub(subject, b""), subject)
    _check(lambda: encode_hpub(subject, b"", {}), subject)
    _check(lambda: encode_msg(subject, 1, b""), subject)
    _check(lambda: encode_hmsg(subject, 1, b"", None), subject)
    if subject is not None:  # reply=None means "no reply"
        _check(lambda: encode_pub("ok", b"", reply=subject), subject)
        _check(lambda: encode_hpub("ok", b"", {}, reply=subject), subject)
        _check(lambda: encode_msg("ok", 1, b"", reply=subject), subject)
        _check(lambda: encode_hmsg("ok", 1, b"", None, reply=subject), subject)


@pytest.mark.parametrize("subject", BAD_SUBJECTS + BAD_SUB_SUBJECTS)
def test_bad_sub_subject(subject: Any) -> None:
    _check(lambda: validate_subject(subject), subject)
    _check(lambda: encode_sub(subject, 1), subject)


@pytest.mark.parametrize("subject", WILDCARD_SUBJECTS + ["a*", "*a.b>", "ü.*"])
def test_wildcards_allowed_in_sub(subject: str) -> None:
    validate_subject(subject)
    assert encode_sub(subject, 1) == f"SUB {subject} 1\r\n".encode()


@pytest.mark.parametrize("queue", ["", "q 1", "q\t1", "q\r\n", "q\x00", "\ud800", 1, b"q"])
def test_bad_queue(queue: Any) -> None:
    _check(lambda: validate_queue(queue), queue)
    _check(lambda: encode_sub("ok", 1, queue), queue)


def test_good_queue() -> None:
    validate_queue("workers.v1-ü")


@pytest.mark.parametrize("name", ["A:B", "A B", "Ä", "", "A\x7f", "A\r\nB"])
def test_bad_header_name(name: str) -> None:
    _check(lambda: encode_hpub("s", b"", {name: "v"}), name)
    _check(lambda: encode_headers({name: "v"}), name)
    _check(lambda: encode_hmsg("s", 1, b"", {name: "v"}), name)


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00b", "x\r\nEvil: 1"])
def test_bad_header_value(value: str) -> None:
    _check(lambda: encode_hpub("s", b"", {"Name": value}), value)
    _check(lambda: encode_headers({"Name": value}), value)


@pytest.mark.parametrize("sid", [0, -1, "1", 1.0, True, None])
def test_bad_sid(sid: Any) -> None:
    _check(lambda: encode_sub("s", sid), sid)
    _check(lambda: encode_unsub(sid), sid)
    _check(lambda: encode_msg("s", sid, b""), sid)
    _check(lambda: encode_hmsg("s", sid, b"", None), sid)


@pytest.mark.parametrize("max_msgs", [-1, "5", 1.5])
def test_bad_max_msgs(max_msgs: Any) -> None:
    _check(lambda: encode_unsub(1, max_msgs), max_msgs)


@pytest.mark.parametrize("status", [99, 1000, "503", 50.3])
def test_bad_status(status: Any) -> None:
    _check(lambda: encode_hmsg("s", 1, b"", None, status=status), status)


def test_bad_description() -> None:
    _check(lambda: encode_hmsg("s", 1, b"", None, status=404, description="a\r\nb"), "a\r\nb")


@pytest.mark.parametrize("payload", ["text", None, 5, [1]])
def test_bad_payload(payload: Any) -> None:
    for call in (
        lambda: encode_pub("s", payload),
        lambda: encode_hpub("s", payload, {}),
        lambda: encode_msg("s", 1, payload),
        lambda: encode_hmsg("s", 1, payload, None),
    ):
        with pytest.raises(LocalProtocolError, match="payload"):
            call()


@pytest.mark.parametrize("text", ["a\r\nPING", "a\nb", "a\x00", 5])
def test_bad_err_text(text: Any) -> None:
    _check(lambda: encode_err(text), text)


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_pub("a\r\nPUB evil 0", b""),
        lambda: encode_pub("a", b"", reply="r\r\nPUB evil 0"),
        lambda: encode_hpub("a", b"", {"K": "v\r\n\r\nPUB evil 0"}),
        lambda: encode_hpub("a", b"", {"K\r\nPUB evil 0\r\n": "v"}),
        lambda: encode_sub("a", 1, queue="q 2\r\nUNSUB 2"),
        lambda: encode_sub("a\r\nUNSUB 1", 1),
    ],
)
def test_injection_attempts_raise(call: Callable[[], bytes]) -> None:
    with pytest.raises(LocalProtocolError):
        call()


def test_non_utf8_subject_from_the_wire_round_trips() -> None:
    from memphis_sync.nats.protocol.parser import Parser

    (msg,) = Parser().feed(b"MSG a\xff.b 1 r\xfe.x 0\r\n\r\n")
    assert msg.subject == "a\udcff.b" and msg.reply == "r\udcfe.x"
    assert encode_pub(msg.reply, b"") == b"PUB r\xfe.x 0\r\n\r\n"
    assert encode_sub(msg.subject, 1) == b"SUB a\xff.b 1\r\n"


def test_unhashable_subject_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_pub(["a"], b"")  # type: ignore[arg-type]
