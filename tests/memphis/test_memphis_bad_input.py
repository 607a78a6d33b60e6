"""The Memphis layer's bad-input catalogue: every public call of ``memphis_sync`` (connect,
Memphis, Station, Producer, Consumer, Message), fed what a careless or hostile caller passes,
raises the error its docstring documents, promptly, with nothing on the wire, and the same
connection still produces afterwards; the password of the run never shows in an error, repr or
log record.

One local broker (password mode) and one Memphis connection through a
:class:`~wiretap.WireTap` serve the whole module, as in tests/nats/test_nats_bad_input.py.
Misuse cases (after destroy, after close, twice) get objects of their own.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import hypothesis
import hypothesis.strategies as st
import pytest
from bad_input_tools import BAD_NUMBERS, WRONG_TYPES, assert_no_secret, case_id, check_case, documented_raises, placed
from wiretap import WireTap, without_pings

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.errors import (
    ConnectionClosedError,
    MemphisConnectError,
    MemphisError,
    MemphisHeaderError,
    MemphisMessageTypeError,
    MemphisValueError,
    MessageAlreadyAckedError,
)
from memphis_sync.memphis.client import Memphis
from memphis_sync.memphis.consumer import Consumer
from memphis_sync.memphis.message import Message
from memphis_sync.memphis.producer import Producer
from memphis_sync.memphis.station import Station

pytestmark = pytest.mark.timeout(30)  # the "promptly" bound of every case

PASSWORD = "pw-Kx4-memphis-SECRET-27"
#: Characters no Memphis name may hold (anywhere).
NAME_CHARS = ["\r", "\n", "\0", "\t", " ", "*", ">", "é", "\ud800", "$", "/"]
HEADER_VALUE_CHARS = ["\r", "\n", "\0", "\ud800"]
BAD_NAMES: List[Any] = [*WRONG_TYPES, "", *placed(NAME_CHARS), "a" * 129, ".ab", "ab-", "_ab"]
BAD_BOOLS: List[Any] = [1, 0, "yes", None, 1.0]
BAD_TIMEOUTS: List[Any] = [float("nan"), -1, float("-inf"), "1", True]
#: What ``memphis_sync.connect`` documents: its own Raises: and those of ``Memphis.connect``.
CONNECT = (memphis_sync.connect, Memphis.connect)


class Env:
    """The module's broker, tap, connection, station, producer, consumer and a message."""

    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker
        self.tap = WireTap(broker.host, broker.port)
        self.kwargs: Dict[str, Any] = {**broker.connect_kwargs(), "port": self.tap.port}
        self.memphis = memphis_sync.connect(**self.kwargs)
        self.station = self.memphis.station("badin")
        self.producer = self.memphis.producer("badin", "bp")
        self.consumer = self.memphis.consumer("badin", "bc", batch_max_time_to_wait_ms=200)
        self.producer.produce(b"first")
        (self.message,) = self.consumer.fetch(1)
        self.memphis.connection.flush(timeout=5)  # the setup's own frames have passed the tap

    def close(self) -> None:
        self.memphis.close()
        self.tap.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    broker = LocalBroker(store_dir=Path(tmp_path_factory.mktemp("bad-input-memphis")), port=0, password=PASSWORD)
    broker.start()
    try:
        environment = Env(broker)
        try:
            yield environment
        finally:
            environment.close()
    finally:
        broker.close()


_tokens = itertools.count()


def check(env: Env, caplog: pytest.LogCaptureFixture, call: Callable[[Env], Any], documented: Any, expected: type) -> None:
    check_case(
        caplog, env.tap, lambda: call(env), documented, expected, flush=lambda: env.memphis.connection.flush(timeout=5),
        round_trip=lambda: env.producer.produce(f"still works {next(_tokens)}"), secrets=[PASSWORD],
        reprs=[env.memphis, env.producer, env.consumer, env.station, env.message],
    )


def _cases() -> List[Tuple[str, Callable[[Env], Any], Any, type]]:
    cases: List[Tuple[str, Callable[[Env], Any], Any, type]] = []

    def add(name: str, values: List[Any], call: Callable[[Env, Any], Any], documented: Any, expected: Any = MemphisValueError) -> None:
        for value in values:
            cases.append((f"{name}={case_id(value)}", lambda e, v=value: call(e, v), documented, expected))

    def connect(e: Env, **options: Any) -> Any:
        return memphis_sync.connect(**{**e.kwargs, **options})

    add("connect.host", [None, 5, b"h", "", "h:1", "tok@h"], lambda e, v: connect(e, host=v), CONNECT, (MemphisConnectError, MemphisValueError))
    add("connect.username", [None, 5, b"u", ""], lambda e, v: connect(e, username=v), CONNECT, (MemphisConnectError, MemphisValueError))
    add("connect.password", [12345, b"pw", ["pw"], None], lambda e, v: connect(e, password=v), CONNECT)
    add("connect.connection_token", [12345, b"t", None], lambda e, v: connect(e, password="", connection_token=v), CONNECT)
    add("connect.token+password", ["tok"], lambda e, v: connect(e, connection_token=v), CONNECT, MemphisConnectError)
    add("connect.account_id", [-1, *BAD_NUMBERS], lambda e, v: connect(e, account_id=v), CONNECT)
    add("connect.port", [0, 65536, "6666", True, 1.5, None], lambda e, v: connect(e, port=v), CONNECT)
    add("connect.reconnect", BAD_BOOLS, lambda e, v: connect(e, reconnect=v), CONNECT)
    add("connect.max_reconnect", [-2, 1.5, "3", None, 2**64], lambda e, v: connect(e, max_reconnect=v), CONNECT)
    add("connect.reconnect_interval_ms", [float("nan"), -1, "1", None, True], lambda e, v: connect(e, reconnect_interval_ms=v), CONNECT)
    add("connect.timeout_ms", [0, float("nan"), -1, "1", None], lambda e, v: connect(e, timeout_ms=v), CONNECT)
    add("connect.max_pending_acks", [0, "1", 1.5, None], lambda e, v: connect(e, max_pending_acks=v), CONNECT)
    add("connect.max_block_ms", [float("nan"), -1, "1"], lambda e, v: connect(e, max_block_ms=v), CONNECT)
    add("connect.ping_interval_ms", [0, float("nan"), float("inf"), "1", None], lambda e, v: connect(e, ping_interval_ms=v), CONNECT)
    add("connect.max_pings_outstanding", [0, "1", None], lambda e, v: connect(e, max_pings_outstanding=v), CONNECT)
    add("station.name", BAD_NAMES, lambda e, v: e.memphis.station(v), Memphis.station)
    add("station.retention_type", ["x", 5, None], lambda e, v: e.memphis.station("badin", retention_type=v), Memphis.station)
    add("station.storage_type", ["x", 5, None], lambda e, v: e.memphis.station("badin", storage_type=v), Memphis.station)
    for option in ("retention_value", "replicas", "idempotency_window_ms", "partitions_number", "timeout_retries"):
        add(f"station.{option}", [*BAD_NUMBERS, 1.5], lambda e, v, o=option: e.memphis.station("badin", **{o: v}), Memphis.station)
    add("station.replicas", [0, 6], lambda e, v: e.memphis.station("badin", replicas=v), Memphis.station)
    for option in ("schema_name", "dls_station"):
        add(f"station.{option}", [5, None, *placed(NAME_CHARS)], lambda e, v, o=option: e.memphis.station("badin", **{o: v}), Memphis.station)
    for option in ("send_poison_msg_to_dls", "send_schema_failed_msg_to_dls", "tiered_storage_enabled"):
        add(f"station.{option}", BAD_BOOLS, lambda e, v, o=option: e.memphis.station("badin", **{o: v}), Memphis.station)
    add("producer.station_name", [s for s in BAD_NAMES if not isinstance(s, list)] + [[], ["a b"]], lambda e, v: e.memphis.producer(v, "bp"), Memphis.producer)
    add("producer.producer_name", BAD_NAMES, lambda e, v: e.memphis.producer("badin", v), Memphis.producer)
    add("producer.generate_random_suffix", BAD_BOOLS, lambda e, v: e.memphis.producer("badin", "bp2", generate_random_suffix=v), Memphis.producer)
    add("producer.timeout_retries", [-1, "1", 1.5, 2**64], lambda e, v: e.memphis.producer("badin", "bp3", timeout_retries=v), Memphis.producer)
    circular: Dict[str, Any] = {}
    circular["self"] = circular
    add("produce.message", [object(), 5, None, 1.5, [1], {"a": object()}, circular, {"a": float("nan")}, {"a": float("inf")}, "\ud800", {1j: 1}],
        lambda e, v: e.producer.produce(v), Producer.produce, MemphisMessageTypeError)
    add("produce.ack_wait_sec", [0, *BAD_TIMEOUTS, None], lambda e, v: e.producer.produce(b"x", ack_wait_sec=v), Producer.produce)
    add("produce.headers", [5, "k", [("k",)], {"$memphis_x": "v"}, {5: "v"}, *({k: "v"} for k in placed(["\r", "\n", "\0", " ", ":", "é"]))],
        lambda e, v: e.producer.produce(b"x", headers=v), Producer.produce, MemphisHeaderError)
    add("produce.header_value", [5, None, b"v", *placed(HEADER_VALUE_CHARS)], lambda e, v: e.producer.produce(b"x", headers={"k": v}), Producer.produce, MemphisHeaderError)
    add("produce.msg_id", placed(HEADER_VALUE_CHARS), lambda e, v: e.producer.produce(b"x", msg_id=v), Producer.produce, MemphisHeaderError)
    add("produce.msg_id", [5, b"id", ["id"]], lambda e, v: e.producer.produce(b"x", msg_id=v), Producer.produce)
    add("produce.producer_partition_key", [5, b"k", "\ud800", "a\ud800b"], lambda e, v: e.producer.produce(b"x", producer_partition_key=v), Producer.produce)
    add("produce.producer_partition_number", [0, -2, 1.5, "1", True, 2**64], lambda e, v: e.producer.produce(b"x", producer_partition_number=v), Producer.produce)
    add("produce.nonblocking", BAD_BOOLS[:3], lambda e, v: e.producer.produce(b"x", nonblocking=v), Producer.produce)
    add("produce.async_produce", ["yes", 1], lambda e, v: e.producer.produce(b"x", async_produce=v), Producer.produce)
    add("produce.concurrent_task_limit", [0, -1, "1", 1.5], lambda e, v: e.producer.produce(b"x", nonblocking=True, concurrent_task_limit=v), Producer.produce)
    add("Memphis.produce.message", [object(), {"a": object()}], lambda e, v: e.memphis.produce("badin", "bp", v), (Memphis.producer, Producer.produce), MemphisMessageTypeError)
    add("Memphis.produce.msg_id", ["a\r\nb"], lambda e, v: e.memphis.produce("badin", "bp", b"x", msg_id=v), (Memphis.producer, Producer.produce), MemphisHeaderError)
    add("Producer.flush.timeout", BAD_TIMEOUTS, lambda e, v: e.producer.flush(timeout=v), Producer.flush)
    add("Producer.get_partition_from_key", [5, None, 1.5, "\ud800"], lambda e, v: e.producer.get_partition_from_key(v), Producer.get_partition_from_key)
    add("Producer.validate_partition_number", [0, 2, "1", None, 1.5], lambda e, v: e.producer.validate_partition_number(v), Producer.validate_partition_number)
    add("consumer.station_name", BAD_NAMES, lambda e, v: e.memphis.consumer(v, "bc"), Memphis.consumer)
    add("consumer.consumer_name", BAD_NAMES, lambda e, v: e.memphis.consumer("badin", v), Memphis.consumer)
    add("consumer.consumer_group", [5, None, *placed(NAME_CHARS)], lambda e, v: e.memphis.consumer("badin", "bc", consumer_group=v), Memphis.consumer)
    for option in ("pull_interval_ms", "batch_size", "batch_max_time_to_wait_ms", "max_ack_time_ms", "max_msg_deliveries",
                   "start_consume_from_sequence", "last_messages", "timeout_retries"):
        add(f"consumer.{option}", [*BAD_NUMBERS[:1], *BAD_NUMBERS[3:], -2, 1.5], lambda e, v, o=option: e.memphis.consumer("badin", "bc", **{o: v}), Memphis.consumer)
    add("consumer.batch_size", [0, 5001], lambda e, v: e.memphis.consumer("badin", "bc", batch_size=v), Memphis.consumer)
    add("consumer.max_msg_deliveries", [0, 11], lambda e, v: e.memphis.consumer("badin", "bc", max_msg_deliveries=v), Memphis.consumer)
    add("consumer.generate_random_suffix", BAD_BOOLS, lambda e, v: e.memphis.consumer("badin", "bc2", generate_random_suffix=v), Memphis.consumer)
    add("consumer.both_starts", [5], lambda e, v: e.memphis.consumer("badin", "bc", start_consume_from_sequence=v, last_messages=v), Memphis.consumer)
    add("fetch.batch_size", [0, 5001, "1", 1.5, True], lambda e, v: e.consumer.fetch(batch_size=v), Consumer.fetch)
    add("fetch.consumer_partition_key", [5, b"k", "\ud800"], lambda e, v: e.consumer.fetch(consumer_partition_key=v), Consumer.fetch)
    add("fetch.consumer_partition_number", [0, -2, "1", 1.5, 2**64], lambda e, v: e.consumer.fetch(consumer_partition_number=v), Consumer.fetch)
    add("fetch.prefetch", BAD_BOOLS, lambda e, v: e.consumer.fetch(prefetch=v), Consumer.fetch)
    add("fetch_messages.batch_size", [0, 5001, "1"], lambda e, v: e.memphis.fetch_messages("badin", "bc", batch_size=v), Memphis.fetch_messages)
    add("fetch_messages.station_name", [5, "a b"], lambda e, v: e.memphis.fetch_messages(v, "bc9"), Memphis.fetch_messages)
    add("consume.callback", [5, None, "f"], lambda e, v: e.consumer.consume(v), Consumer.consume)
    add("consume.consumer_partition_key", [5], lambda e, v: e.consumer.consume(lambda *a: None, consumer_partition_key=v), Consumer.consume)
    add("stop_consuming.timeout", BAD_TIMEOUTS, lambda e, v: e.consumer.stop_consuming(timeout=v), Consumer.stop_consuming)
    add("Consumer.get_partition_from_key", [5, None, "\ud800"], lambda e, v: e.consumer.get_partition_from_key(v), Consumer.get_partition_from_key)
    add("Consumer.destroy.timeout_retries", [-1, "1", 1.5], lambda e, v: e.consumer.destroy(timeout_retries=v), Consumer.destroy)
    add("Message.delay", [*BAD_TIMEOUTS, None], lambda e, v: e.message.delay(v), Message.delay)
    add("create_schema.schema_name", [5, None, "", "Bad", "a b", "a" * 129], lambda e, v: e.memphis.create_schema(v, "json", __file__), Memphis.create_schema)
    add("create_schema.schema_type", ["xml", 5, None, "JSON "], lambda e, v: e.memphis.create_schema("sc", v, __file__), Memphis.create_schema)
    add("create_schema.schema_path", [None, 5, "/nonexistent/x.json", "\ud800", "a\0b", str(Path(__file__).parent)], lambda e, v: e.memphis.create_schema("sc", "json", v), Memphis.create_schema)
    add("enforce_schema.name", [5, "", "a b", "\ud800"], lambda e, v: e.memphis.enforce_schema(v, "badin"), Memphis.enforce_schema)
    add("enforce_schema.station_name", [5, "", "a b", "\ud800"], lambda e, v: e.memphis.enforce_schema("sc", v), Memphis.enforce_schema)
    add("detach_schema.station_name", [5, "", "a b", "\ud800"], lambda e, v: e.memphis.detach_schema(v), Memphis.detach_schema)
    add("schema_name_validation", [5, "", "A", "a b"], lambda e, v: e.memphis.schema_name_validation(v), Memphis.schema_name_validation)
    add("unset_cached_producer_station", [5, None, b"s"], lambda e, v: e.memphis.unset_cached_producer_station(v), Memphis.unset_cached_producer_station)
    add("unset_cached_consumer_station", [5, None, b"s"], lambda e, v: e.memphis.unset_cached_consumer_station(v), Memphis.unset_cached_consumer_station)
    add("send_notification", [5, None, b"t"], lambda e, v: e.memphis.send_notification(v, "m", "f", "t"), Memphis.send_notification)
    add("Memphis.close.timeout", BAD_TIMEOUTS, lambda e, v: e.memphis.close(timeout=v), Memphis.close)
    add("Station.destroy.timeout_retries", [-1, "1", 1.5, None], lambda e, v: e.station.destroy(timeout_retries=v), Station.destroy)
    add("Producer.destroy.timeout_retries", [-1, "1", 1.5, None], lambda e, v: e.producer.destroy(timeout_retries=v), Producer.destroy)
    return cases


CASES = _cases()


@pytest.mark.parametrize("name, call, documented, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_the_documented_error_and_sends_nothing(env: Env, caplog: pytest.LogCaptureFixture, name: str, call: Any, documented: Any, expected: type) -> None:
    check(env, caplog, call, documented, expected)


def test_the_tap_sees_a_good_produce(env: Env) -> None:
    """Positive control: what the cases assert absent would be seen."""
    mark = env.tap.mark()
    env.producer.produce(b"seen", msg_id="id-1")
    env.memphis.connection.flush(timeout=5)
    assert b"msg-id: id-1" in without_pings(env.tap.sent_since(mark))


@hypothesis.settings(max_examples=40, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(st.text(alphabet="abc1", min_size=1, max_size=8), st.sampled_from(NAME_CHARS), st.integers(0, 8))
def test_any_name_with_a_forbidden_character_is_refused(env: Env, caplog: pytest.LogCaptureFixture, text: str, bad: str, at: int) -> None:
    name = text[:at] + bad + text[at:]
    check(env, caplog, lambda e: e.memphis.producer("badin", name), Memphis.producer, MemphisValueError)


def test_misuse_destroy_close_and_ack_twice(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        producer = env.memphis.producer("badin", "twice")
        producer.destroy()
        producer.destroy()  # twice: no error
        with pytest.raises(MemphisError, match="destroyed") as info:
            producer.produce(b"x")
        assert isinstance(info.value, documented_raises(Producer.produce))
        consumer = env.memphis.consumer("badin", "twice")
        consumer.destroy()
        consumer.destroy()
        with pytest.raises(documented_raises(Consumer.fetch)):
            consumer.fetch()
        env.producer.produce(b"ack me")
        reader = env.memphis.consumer("badin", "acker", batch_max_time_to_wait_ms=1000)
        try:
            (msg,) = reader.fetch(1)
            msg.ack()
            for again, documented in ((msg.ack, Message.ack), (msg.nack, Message.nack), (msg.in_progress, Message.in_progress),
                                      (lambda: msg.delay(1), Message.delay), (lambda: msg.dead_letter("r"), Message.dead_letter)):
                with pytest.raises(MessageAlreadyAckedError) as acked:
                    again()
                assert isinstance(acked.value, documented_raises(documented))
        finally:
            reader.destroy()
        other = memphis_sync.connect(**env.kwargs)
        other.close()
        other.close()  # twice: no error
        for call, documented in [
            (lambda: other.station("badin"), Memphis.station),
            (lambda: other.producer("badin", "p"), Memphis.producer),
            (lambda: other.consumer("badin", "c"), Memphis.consumer),
            (lambda: other.fetch_messages("badin", "c"), Memphis.fetch_messages),
            (lambda: other.send_notification("t", "m", "f", "t"), Memphis.send_notification),
            (lambda: other.connect(**env.kwargs), CONNECT),
        ]:
            with pytest.raises(MemphisError) as info:
                call()
            assert isinstance(info.value, documented_raises(documented)), info.value
            assert isinstance(info.value, (ConnectionClosedError, MemphisConnectError))
            assert_no_secret([PASSWORD], info.value, caplog.records, other)
    assert env.producer.produce(b"after misuse").seq > 0
