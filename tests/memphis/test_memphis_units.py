"""Memphis layer without a server: partitions (murmur3), names, enums, headers, encoding, arguments."""

from __future__ import annotations

import itertools
import os

import pytest

import memphis_sync
from memphis_sync import Headers, MemphisConnectError, MemphisHeaderError, MemphisSchemaError, MemphisValueError
from memphis_sync.memphis.partition import murmur3_32, partition_for_key, pick_partition
from memphis_sync.memphis.producer import Producer, encode_message
from memphis_sync.memphis.schemaverse import validate_schema_name
from memphis_sync.memphis.state import StationState
from memphis_sync.memphis.station import Retention, Storage
from memphis_sync.memphis.validate import check_batch_size, check_int, enum_value, internal_name, validate_name

# Published MurmurHash3 x86_32 vectors (reference implementation / SMHasher verification set).
VECTORS = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"\x21\x43\x65\x87", 0, 0xF55B516B),
    (b"\x21\x43\x65\x87", 0x5082EDEE, 0x2362F9DE),
    (b"\x21\x43\x65", 0, 0x7E4A8634),
    (b"\x21\x43", 0, 0xA0F7B07A),
    (b"\x21", 0, 0x72661CF4),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\x00\x00\x00", 0, 0x85F0B427),
    (b"\x00\x00", 0, 0x30F4C306),
    (b"\x00", 0, 0x514E28B7),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"abc", 0x9747B28C, 0xC84A62DD),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


@pytest.mark.parametrize("data,seed,expected", VECTORS)
def test_murmur3_known_vectors(data, seed, expected):
    assert murmur3_32(data, seed) == expected


def test_murmur3_matches_mmh3_package():
    mmh3 = pytest.importorskip("mmh3")
    keys = [b"", b"a", b"key-1", "héllo wörld".encode(), "日本語".encode()] + [os.urandom(n) for n in range(1, 40)]
    for key in keys:
        for seed in (0, 31, 0xDEADBEEF):
            assert murmur3_32(key, seed) == mmh3.hash(key, seed, signed=False)
    # the SDK's exact call: mmh3.hash(key, 31, signed=False) % len(partitions) indexes the list
    for i in range(200):
        key = f"customer-{i}"
        parts = [1, 2, 3, 4, 5]
        assert partition_for_key(key, parts) == parts[mmh3.hash(key, 31, signed=False) % 5]


def test_partition_for_key_indexes_the_list():
    parts = [3, 7]
    key = "abc"
    assert partition_for_key(key, parts) == parts[murmur3_32(b"abc", 31) % 2]


def test_pick_partition_rules():
    rr = itertools.count()
    parts = [1, 2, 3]
    assert [pick_partition(parts, "s", None, -1, rr) for _ in range(6)] == [1, 2, 3, 1, 2, 3]
    assert pick_partition(parts, "s", None, 2, rr) == 2
    with pytest.raises(MemphisValueError, match="Can not use both partition number and partition key"):
        pick_partition(parts, "s", "k", 2, rr)
    with pytest.raises(MemphisValueError, match="Partition number is out of range"):
        pick_partition(parts, "s", None, 4, rr)
    with pytest.raises(MemphisValueError, match="Partition 2 does not exist in station s"):
        pick_partition([1, 3, 4], "s", None, 2, rr)
    assert pick_partition(parts, "s", "k", -1, rr) == partition_for_key("k", parts)


@pytest.mark.parametrize(
    "name,text",
    [
        ("", "Station name can not be empty"),
        ("a" * 129, "Station should be under 128 characters"),
        ("has space", "Only alphanumeric and the '_', '-', '.' characters are allowed in Station"),
        ("hash#", "Only alphanumeric"),
        ("_lead", "can not start or end with non alphanumeric character"),
        ("trail.", "can not start or end with non alphanumeric character"),
        (5, "must be a str"),
        ("abc\n", "Only alphanumeric"),  # the whole string is checked, a final newline too
        ("abc\r\n", "Only alphanumeric"),
        ("a\tb", "Only alphanumeric"),
    ],
)
def test_validate_name_refuses(name, text):
    with pytest.raises(MemphisValueError, match=text):
        validate_name(name, "Station")


def test_validate_name_accepts_and_lowers():
    assert validate_name("A" * 128, "Station") == "a" * 128
    assert validate_name("Orders.EU-1_x", "Station") == "orders.eu-1_x"
    assert internal_name("Orders.EU") == "orders#eu"


def test_enums_have_the_sdk_values():
    assert [(m.name, m.value) for m in Retention] == [
        ("MAX_MESSAGE_AGE_SECONDS", "message_age_sec"), ("MESSAGES", "messages"), ("BYTES", "bytes"), ("ACK_BASED", "ack_based"),
    ]
    assert [(m.name, m.value) for m in Storage] == [("DISK", "file"), ("MEMORY", "memory")]
    assert enum_value(Retention, "MESSAGES", "retention_type") is Retention.MESSAGES
    with pytest.raises(MemphisValueError, match="unknown storage_type 'ssd'; use one of Storage.DISK"):
        enum_value(Storage, "ssd", "storage_type")
    with pytest.raises(MemphisValueError):
        enum_value(Retention, 3, "retention_type")


def test_check_int():
    assert check_int(5, "x", 1) == 5
    for bad in (0, -1, True, 1.5, "3", None):
        with pytest.raises(MemphisValueError, match="x must be an int >= 1"):
            check_int(bad, "x", 1)
    with pytest.raises(MemphisValueError, match="between 1 and 5"):
        check_int(6, "replicas", 1, 5)


def test_batch_size_text():
    assert check_batch_size(5000) == 5000
    for bad in (0, 5001, -3, "10"):
        with pytest.raises(MemphisValueError, match="Batch size can not be greater than 5000 or less than 1"):
            check_batch_size(bad)


def test_headers_refuse_reserved_keys():
    h = Headers()
    h.add("trace", "1")
    h.add("trace", "2")
    assert h.get_all("trace") == ["1", "2"]
    assert h.headers == {"trace": "1"}
    with pytest.raises(MemphisHeaderError, match=r"Keys in headers should not start with \$memphis"):
        h.add("$memphis_producedBy", "me")
    with pytest.raises(MemphisHeaderError, match=r"\$memphis"):
        h["$memphisX"] = "x"
    with pytest.raises(MemphisHeaderError):
        Headers({"$memphis_connectionId": "x"})
    with pytest.raises(MemphisHeaderError, match="CR, LF or NUL"):
        h.add("bad", "a\r\nb")
    with pytest.raises(MemphisHeaderError, match="must be a str"):
        h.add("n", 5)  # type: ignore[arg-type]
    assert isinstance(MemphisHeaderError("x"), ValueError)


def test_encode_message_types():
    assert encode_message(b"ab") == b"ab"
    assert encode_message(bytearray(b"ab")) == b"ab"
    assert encode_message(memoryview(b"ab")) == b"ab"
    assert encode_message("é") == "é".encode()
    assert encode_message({"a": 1}) == b'{"a": 1}'

    class Proto:
        def SerializeToString(self):
            return b"\x08\x01"

    assert encode_message(Proto()) == b"\x08\x01"
    for bad in (5, 1.5, None, [1], object()):
        with pytest.raises(TypeError, match="Unsupported message type"):
            encode_message(bad)
        with pytest.raises(MemphisSchemaError):
            encode_message(bad)


class _FakeRequester:
    connection_id = "cid"
    username = "root"


def _producer(partitions, functions=None):
    state = StationState("st#a", partitions=partitions, functions=functions or {})
    return Producer("p", "st.a", "p", _FakeRequester(), state)  # type: ignore[arg-type]


def test_producer_subjects_legacy_single_partitions_functions():
    legacy = _producer(None)
    assert legacy._subject(legacy._state, None, -1) == "st#a.final"
    single = _producer([1])
    # one partition: key and number are ignored (as the SDK does)
    assert single._subject(single._state, "k", -1) == "st#a$1.final"
    assert single._subject(single._state, None, 7) == "st#a$1.final"
    multi = _producer([1, 2])
    assert [multi._subject(multi._state, None, -1) for _ in range(3)] == ["st#a$1.final", "st#a$2.final", "st#a$1.final"]
    fn = _producer([1, 2], {2: 77})
    assert fn._subject(fn._state, None, 2) == "st#a$2.functions.77"
    assert fn._subject(fn._state, None, 1) == "st#a$1.final"


def test_schema_name_rules():
    assert validate_schema_name("my.schema-1") == "my.schema-1"
    for bad, text in [("", "cannot be empty"), ("a" * 129, "under 128"), ("Caps", "Only alphanumeric"), ("-x", "cannot start or end")]:
        with pytest.raises(MemphisValueError, match=text):
            validate_schema_name(bad)


@pytest.mark.parametrize(
    "kwargs,text",
    [
        ({}, "You have to connect with one of the following methods: connection token / password"),
        ({"connection_token": "t", "password": "p"}, "You have to connect with one of the following methods: connection token / password"),
        ({"connection_token": "t", "key_file": "k", "ca_file": "c"}, "Must provide a TLS cert file"),
        ({"connection_token": "t", "cert_file": "c", "ca_file": "c"}, "Must provide a TLS key file"),
        ({"connection_token": "t", "cert_file": "c", "key_file": "k"}, "Must provide a TLS ca file"),
    ],
)
def test_connect_argument_errors(kwargs, text):
    with pytest.raises(MemphisConnectError) as info:
        memphis_sync.connect("localhost", "root", **kwargs)
    assert str(info.value) == "memphis: " + text


@pytest.mark.parametrize(
    "kwargs",
    [{"port": 0}, {"port": 70000}, {"max_reconnect": -2}, {"timeout_ms": 0}, {"reconnect_interval_ms": -1}, {"account_id": "1"}],
)
def test_connect_bad_numbers(kwargs):
    with pytest.raises(MemphisValueError):
        memphis_sync.connect("localhost", "root", connection_token="t", **kwargs)


def test_public_api_names():
    for name in ("connect", "Memphis", "Station", "Producer", "Consumer", "Message", "Headers", "Retention", "Storage",
                 "MemphisError", "MemphisConnectError", "MemphisSchemaError", "MemphisHeaderError", "MemphisValueError"):
        assert name in memphis_sync.__all__
        assert hasattr(memphis_sync, name)
    m = memphis_sync.Memphis()
    assert m.MAX_BATCH_SIZE == 5000 and m.SEED == 31 and not m.is_connected()


def test_connect_host_with_port_is_refused():
    with pytest.raises(MemphisConnectError, match="pass port= instead"):
        memphis_sync.connect("localhost:6666", "root", connection_token="t")
    with pytest.raises(MemphisConnectError, match="pass port= instead"):
        memphis_sync.connect("http://localhost:6666", "root", connection_token="t")


@pytest.mark.parametrize("host", ["nats://localhost:6666", "tls://localhost", "memphis://localhost:6666", "nats://localhost"])
def test_connect_host_as_a_url_says_what_to_do(host):
    with pytest.raises(MemphisConnectError, match="not a URL .*from_url") as bad:
        memphis_sync.connect(host, "root", connection_token="t")
    assert host in str(bad.value)


def test_connect_host_as_a_websocket_url():
    from memphis_sync.memphis.requester import display_address

    assert display_address("wss://broker.example.com", 6666) == ("wss://broker.example.com", 443)
    assert display_address("ws://127.0.0.1:7770/nats", 6666) == ("ws://127.0.0.1", 7770)
    assert display_address("broker", 6666) == ("broker", 6666)  # the plain host form is unchanged
    with pytest.raises(MemphisConnectError, match="port=7770 is the NATS client port; with a WebSocket URL put its port in the URL"):
        memphis_sync.connect("ws://localhost", "root", connection_token="t", port=7770)
    with pytest.raises(MemphisConnectError, match="bad WebSocket URL"):
        memphis_sync.connect("ws://localhost:notaport", "root", connection_token="t")


def test_one_memphis_prefix_also_when_an_error_quotes_another():
    from memphis_sync.errors import MemphisConnectError, NetworkError

    inner = NetworkError("connect to localhost:1: [Errno 111] Connection refused")
    outer = MemphisConnectError(f"could not connect to Memphis at nats://localhost:1 as 'root': {inner}")
    assert str(outer) == ("memphis: could not connect to Memphis at nats://localhost:1 as 'root': "
                          "connect to localhost:1: [Errno 111] Connection refused")
    assert str(MemphisConnectError("memphis: already prefixed")) == "memphis: already prefixed"
