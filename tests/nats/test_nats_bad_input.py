"""The NATS layer's bad-input catalogue: every public call, fed what a careless or hostile caller
passes, raises the error its docstring documents, promptly, with nothing on the wire, and the
same connection works afterwards; the token of the run never shows in an error, repr or log.

One nats-server (token auth) and one connection through a :class:`~wiretap.WireTap` serve the
whole module; each case marks the tap, makes the bad call, flushes (a PING the server answers)
and asserts that nothing but that PING passed, then makes a real round trip. Misuse cases
(after close, twice) get a connection of their own.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

import hypothesis
import hypothesis.strategies as st
import pytest
from bad_input_tools import BAD_NUMBERS, WRONG_TYPES, assert_no_secret, case_id, check_case, documented_raises, placed
from wiretap import WireTap, without_pings

from memphis_sync.broker import NatsServer
from memphis_sync.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MessageAlreadyAckedError,
    PayloadTooLargeError,
    SubscriptionClosedError,
)
from memphis_sync.jetstream import JetStream
from memphis_sync.jetstream.msg import JsMsg
from memphis_sync.jetstream.pull import PullSubscription
from memphis_sync.nats.connection import Connection, connect
from memphis_sync.nats.reconnect import ReconnectPolicy
from memphis_sync.nats.subscription import Subscription

pytestmark = pytest.mark.timeout(20)  # the "promptly" bound of every case

TOKEN = "tok-Qz7-nats-SECRET-91"
ECHO = "bad-input.echo"
#: Characters no subject, reply or queue group may hold (anywhere).
SUBJECT_CHARS = ["\r", "\n", "\0", "\t", " ", "\x7f"]
#: Characters no header name may hold.
HEADER_NAME_CHARS = ["\r", "\n", "\0", "\t", " ", ":", "é", "\ud800"]
#: Characters no header value may hold.
HEADER_VALUE_CHARS = ["\r", "\n", "\0", "\ud800"]
BAD_SUBJECTS: List[Any] = [
    *WRONG_TYPES, "", *placed(SUBJECT_CHARS), "\ud800", "a" * 5000,
    "*", ">", "a.*", "*.a", "a.*.b", "a.>", "a..b", ".a", "a.",
]
_tokens = itertools.count()
BAD_TIMEOUTS: List[Any] = [float("nan"), -1, float("-inf"), "1", True, b"1"]


class Env:
    """The module's server, tap, connection, echo subscription and JetStream context."""

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.tap = WireTap(server.host, server.port)
        self.url = f"nats://127.0.0.1:{self.tap.port}"
        self.conn = connect(self.url, token=TOKEN, name="bad-input")
        self.echo = self.conn.subscribe(ECHO)
        self.js = JetStream(self.conn)
        self.js.add_stream(None, name="BADIN", subjects=["badin.>"], storage="memory")
        self.js.add_consumer("BADIN", None, durable_name="puller", filter_subject="badin.pull")
        self.pull = self.js.pull_subscribe("BADIN", "puller")
        self.conn.flush(timeout=5)  # the setup's own frames have passed the tap before any case marks it

    def fresh(self) -> Connection:
        return connect(self.url, token=TOKEN)

    def close(self) -> None:
        self.conn.close()
        self.tap.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = NatsServer(store_dir=Path(tmp_path_factory.mktemp("bad-input-nats")), token=TOKEN)
    server.start()
    try:
        environment = Env(server)
        try:
            yield environment
        finally:
            environment.close()
    finally:
        server.close()


def round_trip(env: Env) -> None:
    """A publish to the echo subscription arrives (a failed case may have left one before it)."""
    token = f"still works {next(_tokens)}".encode()
    env.conn.publish(ECHO, token)
    while env.echo.next_msg(timeout=5).payload != token:
        pass


def check(env: Env, caplog: pytest.LogCaptureFixture, call: Callable[[Env], Any], documented: Callable[..., Any], expected: type) -> None:
    check_case(
        caplog, env.tap, lambda: call(env), documented, expected, flush=lambda: env.conn.flush(timeout=5),
        round_trip=lambda: round_trip(env), secrets=[TOKEN], reprs=[env.conn, env.echo],
    )


def _cases() -> List[Tuple[str, Callable[[Env], Any], Callable[..., Any], type]]:
    cases: List[Tuple[str, Callable[[Env], Any], Callable[..., Any], type]] = []

    def add(name: str, values: List[Any], call: Callable[[Env, Any], Any], documented: Callable[..., Any], expected: type = LocalProtocolError) -> None:
        for value in values:
            cases.append((f"{name}={case_id(value)}", lambda e, v=value: call(e, v), documented, expected))

    add("publish.subject", BAD_SUBJECTS, lambda e, v: e.conn.publish(v, b"x"), Connection.publish)
    add("publish.reply", BAD_SUBJECTS[1:], lambda e, v: e.conn.publish(ECHO, b"x", reply=v), Connection.publish)
    add("publish.payload", [5, "text", 1.5, True, [b"x"], {"a": 1}], lambda e, v: e.conn.publish(ECHO, v), Connection.publish)
    add("publish.payload", [b"x" * (1024 * 1024 + 1)], lambda e, v: e.conn.publish(ECHO, v), Connection.publish, PayloadTooLargeError)
    add("publish.header_name", [5, 1.5, b"ab", "", *placed(HEADER_NAME_CHARS)], lambda e, v: e.conn.publish(ECHO, b"x", headers={v: "1"}), Connection.publish)
    add("publish.header_value", [None, 5, 1.5, b"ab", object(), *placed(HEADER_VALUE_CHARS)], lambda e, v: e.conn.publish(ECHO, b"x", headers={"K": v}), Connection.publish)
    add("publish.headers", [5, [("K",)], [("K", "v", "w")]], lambda e, v: e.conn.publish(ECHO, b"x", headers=v), Connection.publish)
    add("subscribe.subject", [s for s in BAD_SUBJECTS if not isinstance(s, str) or not any(t in ("*", ">") for t in s.split("."))] + ["a.>.b", ">.a"],
        lambda e, v: e.conn.subscribe(v), Connection.subscribe)
    add("subscribe.queue", [5, b"q", "", *placed(SUBJECT_CHARS), "\ud800", "q" * 5000], lambda e, v: e.conn.subscribe(ECHO, queue=v), Connection.subscribe)
    add("subscribe.max_msgs", [*BAD_NUMBERS[:-1], 1.0], lambda e, v: e.conn.subscribe(ECHO, max_msgs=v), Connection.subscribe)
    add("subscribe.pending_msgs_limit", [0, *BAD_NUMBERS], lambda e, v: e.conn.subscribe(ECHO, pending_msgs_limit=v), Connection.subscribe)
    add("subscribe.pending_bytes_limit", [0, *BAD_NUMBERS], lambda e, v: e.conn.subscribe(ECHO, pending_bytes_limit=v), Connection.subscribe)
    add("subscribe.callback", [5, "f"], lambda e, v: e.conn.subscribe(ECHO, callback=v), Connection.subscribe)
    add("request.subject", BAD_SUBJECTS, lambda e, v: e.conn.request(v, b"x", timeout=1), Connection.request)
    add("request.payload", [5, "text", None], lambda e, v: e.conn.request(ECHO, v, timeout=1), Connection.request)
    add("request.timeout", BAD_TIMEOUTS, lambda e, v: e.conn.request(ECHO, b"x", timeout=v), Connection.request)
    add("request.header_value", placed(HEADER_VALUE_CHARS), lambda e, v: e.conn.request(ECHO, b"x", timeout=1, headers={"K": v}), Connection.request)
    add("flush.timeout", BAD_TIMEOUTS, lambda e, v: e.conn.flush(timeout=v), Connection.flush)
    add("drain.timeout", BAD_TIMEOUTS, lambda e, v: e.conn.drain(timeout=v), Connection.drain)
    add("close.timeout", BAD_TIMEOUTS, lambda e, v: e.conn.close(timeout=v), Connection.close)
    add("next_msg.timeout", BAD_TIMEOUTS, lambda e, v: e.echo.next_msg(timeout=v), Subscription.next_msg)
    add("unsubscribe.max_msgs", [-1, 1.5, "1", True, 2**64], lambda e, v: e.echo.unsubscribe(max_msgs=v), Subscription.unsubscribe)
    add("js.publish.subject", BAD_SUBJECTS, lambda e, v: e.js.publish(v, b"x", timeout=1), JetStream.publish)
    add("js.publish.payload", [5, "text"], lambda e, v: e.js.publish("badin.a", v, timeout=1), JetStream.publish)
    add("js.publish.timeout", BAD_TIMEOUTS, lambda e, v: e.js.publish("badin.a", b"x", timeout=v), JetStream.publish)
    add("js.publish.msg_id", [5, *placed(HEADER_VALUE_CHARS)], lambda e, v: e.js.publish("badin.a", b"x", msg_id=v, timeout=1), JetStream.publish)
    add("js.publish_async.timeout", BAD_TIMEOUTS, lambda e, v: e.js.publish_async("badin.a", b"x", timeout=v), JetStream.publish_async)
    add("js.publish_async_complete.timeout", BAD_TIMEOUTS, lambda e, v: e.js.publish_async_complete(timeout=v), JetStream.publish_async_complete)
    bad_names = [*WRONG_TYPES, "", *placed(SUBJECT_CHARS + [".", "*", ">"])]
    add("js.stream_info.name", bad_names, lambda e, v: e.js.stream_info(v), JetStream.stream_info)
    add("js.delete_stream.name", bad_names, lambda e, v: e.js.delete_stream(v), JetStream.delete_stream)
    add("js.consumer_info.name", bad_names, lambda e, v: e.js.consumer_info("BADIN", v), JetStream.consumer_info)
    add("js.pull_subscribe.stream", bad_names, lambda e, v: e.js.pull_subscribe(v, "c"), JetStream.pull_subscribe)
    stream_options = {
        "max_age": [float("nan"), float("inf"), -1, "1"], "duplicate_window": [float("inf"), 2**64], "max_msgs": ["a", float("nan"), 2**64],
        "num_replicas": [2**64, 0], "subjects": [[5], 5, ["a b"], ["a.>.b"]], "storage": ["x", 5], "name": [5, "a b", "a.b"],
    }
    for option, values in stream_options.items():
        add(f"js.add_stream.{option}", values, lambda e, v, o=option: e.js.add_stream(None, **{"name": "BADIN2", "subjects": ["badin2"], o: v}), JetStream.add_stream)
    consumer_options = {"ack_wait": [float("nan"), -1], "max_deliver": ["x", 2**64], "durable_name": ["a b", 5], "max_ack_pending": [2**64], "deliver_policy": ["x"]}
    for option, values in consumer_options.items():
        add(f"js.add_consumer.{option}", values, lambda e, v, o=option: e.js.add_consumer("BADIN", None, **{"durable_name": "d", o: v}), JetStream.add_consumer)
    add("js.get_msg.seq", [0, -1, "1", 1.5, 2**64], lambda e, v: e.js.get_msg("BADIN", v), JetStream.get_msg)
    add("js.get_msg.last_by_subject", [5, "a b", ""], lambda e, v: e.js.get_msg("BADIN", last_by_subject=v), JetStream.get_msg)
    add("js.delete_msg.seq", [0, "1", None, 2**64], lambda e, v: e.js.delete_msg("BADIN", v), JetStream.delete_msg)
    add("js.stream_names.subject", [5, "a b", ""], lambda e, v: e.js.stream_names(subject=v), JetStream.stream_names)
    add("JetStream.timeout", [0, float("nan"), -1, "1"], lambda e, v: JetStream(e.conn, timeout=v), JetStream)
    add("JetStream.max_pending", [0, "1", 2**64], lambda e, v: JetStream(e.conn, max_pending=v), JetStream)
    add("JetStream.prefix", ["a b", 5, "$JS.*"], lambda e, v: JetStream(e.conn, prefix=v), JetStream)
    add("pull.fetch.batch", [0, "1", 1.5, 2**64], lambda e, v: e.pull.fetch(v, timeout=1), PullSubscription.fetch)
    add("pull.fetch.timeout", [0, *BAD_TIMEOUTS, float("inf")], lambda e, v: e.pull.fetch(1, timeout=v), PullSubscription.fetch)
    add("pull.fetch.max_bytes", [0, "1", 2**64], lambda e, v: e.pull.fetch(1, timeout=1, max_bytes=v), PullSubscription.fetch)
    add("pull.fetch.heartbeat", [0, 5, "1", float("nan")], lambda e, v: e.pull.fetch(1, timeout=1, heartbeat=v), PullSubscription.fetch)
    connect_options = {
        "name": [5, b"n"], "token": [5, b"t", ["t"]], "connect_timeout": [0, *BAD_NUMBERS[:3], *BAD_NUMBERS[4:]],  # 2**64: no limit (clamped)
        "ping_interval": [0, *BAD_NUMBERS[:3], *BAD_NUMBERS[4:]], "max_block": [float("nan"), -1, "1"],
        "reconnect_buffer_size": BAD_NUMBERS[:-1], "outbound_buffer_size": [0, *BAD_NUMBERS],
        "max_pings_outstanding": [0, *BAD_NUMBERS], "no_echo": [1, "yes", None], "randomize": [1, None],
        "ignore_discovered_servers": [0, "no"], "retry_on_failed_connect": [1, None],
        "inbox_prefix": [5, "", "a b", "_INBOX.*"], "tls": ["yes", True], "reconnect": ["yes", 3],
        "on_error": [5, "f"], "on_closed": [5],
    }
    for option, values in connect_options.items():
        add(f"connect.{option}", values, lambda e, v, o=option: connect(e.url, **{"token": TOKEN, o: v}), connect)
    add("connect.user", [5, b"u"], lambda e, v: connect(e.url, user=v, password=TOKEN), connect)
    add("connect.password", [5, b"p"], lambda e, v: connect(e.url, user="u", password=v), connect)
    add("connect.token+user", ["u"], lambda e, v: connect(e.url, token=TOKEN, user=v, password=TOKEN), connect)
    add("connect.servers", [None, 5, b"nats://h", [5], [], "", " , ", "nats://a b:1", "nats://a\nb:1", "nats://\ud800:1",
                            "http://h:1", "nats://h:notaport", "nats://:1"], lambda e, v: connect(v, token=TOKEN), connect)
    add("ReconnectPolicy.wait", [float("nan"), -1, "1", None], lambda e, v: ReconnectPolicy(wait=v), ReconnectPolicy)
    add("ReconnectPolicy.max_attempts", [-2, 1.5, "3", True, 2**64], lambda e, v: ReconnectPolicy(max_attempts=v), ReconnectPolicy)
    return cases


CASES = _cases()


@pytest.mark.parametrize("name, call, documented, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_the_documented_error_and_sends_nothing(env: Env, caplog: pytest.LogCaptureFixture, name: str, call: Any, documented: Any, expected: type) -> None:
    check(env, caplog, call, documented, expected)


def test_the_tap_sees_a_good_publish(env: Env) -> None:
    """Positive control: what the cases assert absent would be seen."""
    mark = env.tap.mark()
    env.conn.publish(ECHO, b"seen", headers={"K": "v"})
    env.conn.flush(timeout=5)
    assert b"HPUB bad-input.echo" in without_pings(env.tap.sent_since(mark))
    while env.echo.next_msg(timeout=5).payload != b"seen":
        pass


@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(st.text(min_size=1, max_size=12), st.sampled_from(SUBJECT_CHARS), st.integers(0, 12))
def test_any_subject_with_a_forbidden_character_is_refused(env: Env, caplog: pytest.LogCaptureFixture, text: str, bad: str, at: int) -> None:
    subject = text[:at] + bad + text[at:]
    check(env, caplog, lambda e: e.conn.publish(subject, b"x"), Connection.publish, LocalProtocolError)


def test_the_secret_check_sees_a_leak() -> None:
    """Positive control of :func:`assert_no_secret`: a token in an error, a repr or a log fails it."""
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "token %s", (TOKEN,), None)
    for exc, records in ((LocalProtocolError(f"bad {TOKEN}"), []), (LocalProtocolError("bad"), [record])):
        with pytest.raises(AssertionError, match="a secret leaked"):
            assert_no_secret([TOKEN], exc, records)


def test_misuse_after_close_and_twice(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    accepted = env.tap.accepted
    conn = env.fresh()
    assert env.tap.accepted == accepted + 1  # positive control of the cases' "did not dial"
    sub = conn.subscribe(ECHO)
    conn.close()
    conn.close()  # twice: no error
    with caplog.at_level(logging.DEBUG):
        for call, documented in [
            (lambda: conn.publish(ECHO, b"x"), Connection.publish),
            (lambda: conn.request(ECHO, b"x", timeout=1), Connection.request),
            (lambda: conn.subscribe(ECHO), Connection.subscribe),
            (lambda: conn.flush(timeout=1), Connection.flush),
            (lambda: conn.connect(), Connection.connect),
        ]:
            with pytest.raises(tuple(documented_raises(documented))) as info:
                call()
            assert isinstance(info.value, (ConnectionClosedError, documented_raises(documented)))
            assert_no_secret([TOKEN], info.value, caplog.records, conn)
        with pytest.raises(SubscriptionClosedError):
            sub.next_msg(timeout=1)
    sub.unsubscribe()  # after close: no error
    assert env.conn.is_connected()


def test_js_ack_twice(env: Env) -> None:
    env.js.publish("badin.ack", b"once", timeout=5)
    env.js.add_consumer("BADIN", None, durable_name="acker", filter_subject="badin.ack", ack_policy="explicit")
    pull: PullSubscription = env.js.pull_subscribe("BADIN", "acker")
    try:
        (msg,) = pull.fetch(1, timeout=5)
        for delay in (float("nan"), float("inf"), -1, "1", True):
            with pytest.raises(documented_raises(JsMsg.nak)):
                msg.nak(delay=delay)
        msg.ack()
        for again in (msg.ack, msg.nak, msg.term):
            with pytest.raises(MessageAlreadyAckedError):
                again()
    finally:
        pull.unsubscribe()
    assert not math.isnan(env.conn.stats["out_msgs"])  # the connection is still the same object
