"""The Memphis API against a real nats-server answered by the fake control plane (conftest.py)."""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from concurrent.futures import Future

import pytest

import memphis_sync
from memphis_sync import (
    ConnectionClosedError,
    Headers,
    MemphisConnectError,
    MemphisError,
    MemphisHeaderError,
    MemphisRequestError,
    MemphisValueError,
    NoStreamResponseError,
    Retention,
    Storage,
    _defaults,
)
from memphis_sync.errors import AuthorizationError, RequestTimeout
from memphis_sync.memphis.client import APP_ID
from memphis_sync.memphis.partition import partition_for_key
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


def drain(consumer, expected, rounds=50, ack=True):
    """Fetch until ``expected`` messages arrived (or give up); ack them."""
    got = []
    for _ in range(rounds):
        for msg in consumer.fetch():
            got.append(msg)
            if ack:
                msg.ack()
        if len(got) >= expected:
            break
    return got


# -- connect ----------------------------------------------------------------------------------


def test_connect_token_mode_connect_fields(nats_server, fake_plane):
    with memphis_sync.connect(host=f"http://{nats_server.host}", port=nats_server.port, username="Root", connection_token="memphis") as m:
        assert m.is_connected()
        uuid.UUID(m.connection_id)
        assert m.connection.name == f"{m.connection_id}::Root"
        conns = nats_server.monitor("/connz")["connections"]
        assert any(c.get("name") == f"{m.connection_id}::Root" for c in conns)
        # subscribed to the SDK-clients updates subject at connect time
        assert "$memphis_sdk_clients_updates" in {s.subject for s in m.connection._subs.values()}
        assert repr(m).endswith("connected>")
    assert not m.is_connected()
    with pytest.raises(ConnectionClosedError, match="Connection is dead"):
        m.station("after-close")


def test_connect_password_mode_user_and_legacy_fallback(nats_server_factory):
    server = nats_server_factory(users=[{"user": "app$1", "password": "pw"}])
    with memphis_sync.connect(host=server.host, port=server.port, username="app", password="pw") as m:
        assert m.is_connected()
        connz = server.monitor("/connz?auth=1")["connections"]
        assert any(c.get("authorized_user") == "app$1" for c in connz)
    legacy = nats_server_factory(users=[{"user": "old", "password": "pw"}])
    with memphis_sync.connect(host=legacy.host, port=legacy.port, username="old", password="pw") as m:
        assert m.is_connected()
    with pytest.raises(MemphisConnectError) as info:
        memphis_sync.connect(host=server.host, port=server.port, username="app", password="wrong")
    assert isinstance(info.value.__cause__, AuthorizationError)


def test_connect_options_are_honoured(nats_server):
    m = memphis_sync.Memphis().connect(
        nats_server.host, "root", connection_token="x", port=nats_server.port, max_reconnect=25,
        reconnect_interval_ms=250, timeout_ms=1500, reconnect=False,
    )
    try:
        policy = m.connection.reconnect_policy
        assert policy.max_attempts == 25  # not capped to 9
        assert policy.wait == 0.25 and policy.enabled is False
        assert m.connection.connect_timeout == 1.5
        with pytest.raises(MemphisConnectError, match="already connected"):
            m.connect(nats_server.host, "root", connection_token="x", port=nats_server.port)
    finally:
        m.close()
        m.close()  # idempotent


def test_connect_positional_order_is_the_sdks(nats_server, fake_plane):
    import inspect

    from memphis.memphis import Memphis as SdkMemphis  # the official SDK, installed by the test extra

    ours = list(inspect.signature(memphis_sync.connect).parameters)
    method = list(inspect.signature(memphis_sync.Memphis.connect).parameters)[1:]
    sdk = list(inspect.signature(SdkMemphis.connect).parameters)[1:]
    assert ours[: len(sdk)] == sdk and method[: len(sdk)] == sdk
    # code moved from the SDK by deleting "await": host, username, account_id, connection_token, ...
    with memphis_sync.connect(nats_server.host, "root", 1, "memphis", "", nats_server.port) as m:
        assert m.is_connected() and m.account_id == 1


def test_connect_from_a_url(nats_server, fake_plane):
    where = f"{nats_server.host}:{nats_server.port}"
    with memphis_sync.from_url(f"memphis://root:memphis@{where}?timeout_ms=1500") as m:
        assert m.is_connected() and (m.username, m.port) == ("root", nats_server.port)
        assert m.connection.connect_timeout == 1.5
    with memphis_sync.connect(url=f"memphis://root@{where}", connection_token="memphis") as m:  # the token kept out of the URL
        assert m.is_connected()
    with memphis_sync.connect(url=f"memphis://root:memphis@{where}", port=nats_server.port) as m:  # the same value: fine
        assert m.is_connected()


@pytest.mark.parametrize("kwargs, text", [
    ({"url": "memphis://root:S3CRET@h:1", "port": 2}, "port is given twice: 2 and in the URL 'memphis://root:\\*\\*\\*@h:1'"),
    ({"url": "memphis://root:S3CRET@h:1", "connection_token": "other"}, "connection_token is given twice: \\*\\*\\*"),
    ({"url": "memphis://root:S3CRET@h:1", "password": "pw"}, "together"),
    ({"url": "memphis://root:S3CRET@h:notaport"}, "bad port"),
    ({}, "connect\\(\\) needs host and username"),
    ({"host": "h"}, "connect\\(\\) needs username"),
])
def test_connect_url_errors(kwargs, text):
    with pytest.raises(MemphisValueError, match=text) as bad:
        memphis_sync.connect(**kwargs)
    assert "S3CRET" not in str(bad.value)


def test_connect_unreachable(unused_port):
    with pytest.raises(MemphisConnectError, match="could not connect to Memphis"):
        memphis_sync.connect("127.0.0.1", "root", connection_token="t", port=unused_port, timeout_ms=500)


def test_connect_tls(tls_nats_server, tls_certs):
    with memphis_sync.connect(
        host="127.0.0.1", port=tls_nats_server.port, username="root", connection_token="t",
        cert_file=str(tls_certs.client_cert), key_file=str(tls_certs.client_key), ca_file=str(tls_certs.ca_pem),
    ) as m:
        assert m.is_connected()


def test_plain_nats_server_has_no_control_plane(nats_server):
    with memphis_sync.connect(nats_server.host, "root", connection_token="t", port=nats_server.port) as m:
        with pytest.raises(MemphisRequestError, match="no responders on '\\$memphis_station_creations'"):
            m.station("s")


# -- stations ---------------------------------------------------------------------------------


def test_station_request_body_defaults(memphis, fake_plane):
    station = memphis.station("Orders.EU")
    assert station.name == "orders.eu" and station.internal_station_name == "orders#eu"
    assert fake_plane.requests["$memphis_station_creations"][-1] == {
        "name": "Orders.EU",
        "retention_type": "message_age_sec",
        "retention_value": 3600,
        "storage_type": "file",
        "replicas": 1,
        "idempotency_window_in_ms": 120000,
        "schema_name": "",
        "dls_configuration": {"poison": True, "Schemaverse": True},
        "username": "root",
        "tiered_storage_enabled": False,
        "partitions_number": 1,
        "dls_station": "",
    }
    assert memphis.connection.request  # the stream exists
    assert fake_plane.js.stream_info("orders#eu$1").config.subjects == ["orders#eu$1.>"]


def test_station_every_parameter(memphis, fake_plane):
    memphis.station(
        "all", retention_type=Retention.MESSAGES, retention_value=50, storage_type=Storage.MEMORY, replicas=1,
        idempotency_window_ms=5000, schema_name="", send_poison_msg_to_dls=False, send_schema_failed_msg_to_dls=False,
        tiered_storage_enabled=True, partitions_number=2, dls_station="dead.letters", timeout_retries=0,
    )
    body = fake_plane.requests["$memphis_station_creations"][-1]
    assert body["retention_type"] == "messages" and body["retention_value"] == 50
    assert body["storage_type"] == "memory" and body["idempotency_window_in_ms"] == 5000
    assert body["dls_configuration"] == {"poison": False, "Schemaverse": False}
    assert body["tiered_storage_enabled"] is True and body["partitions_number"] == 2 and body["dls_station"] == "dead.letters"
    info = fake_plane.js.stream_info("all$2")
    assert info.config.max_msgs == 50 and info.config.storage.value == "memory"
    # enum values given as strings; partitions_number 0 is sent as 1 (SDK behaviour)
    memphis.station("strs", retention_type="bytes", storage_type="file", partitions_number=0)
    body = fake_plane.requests["$memphis_station_creations"][-1]
    assert body["retention_type"] == "bytes" and body["partitions_number"] == 1


@pytest.mark.parametrize(
    "kwargs,text",
    [
        ({"name": ""}, "Station name can not be empty"),
        ({"name": "x" * 129}, "Station should be under 128 characters"),
        ({"name": "bad name"}, "Only alphanumeric"),
        ({"name": "-bad"}, "can not start or end"),
        ({"retention_type": "forever"}, "unknown retention_type 'forever'"),
        ({"storage_type": "ssd"}, "unknown storage_type 'ssd'"),
        ({"retention_value": -1}, "retention_value must be an int >= 0"),
        ({"replicas": 0}, "replicas must be an int between 1 and 5"),
        ({"replicas": 6}, "replicas must be an int between 1 and 5"),
        ({"idempotency_window_ms": -5}, "idempotency_window_ms must be an int between 0 and 86400000"),
        ({"idempotency_window_ms": 86400001}, "idempotency_window_ms must be an int between 0 and 86400000"),
        ({"partitions_number": -1}, "partitions_number must be an int >= 0"),
        ({"schema_name": "Bad Schema"}, "Only alphanumeric"),
        ({"dls_station": "bad#dls"}, "Only alphanumeric"),
        ({"send_poison_msg_to_dls": "yes"}, "send_poison_msg_to_dls must be a bool"),
        ({"timeout_retries": -1}, "timeout_retries must be an int >= 0"),
    ],
)
def test_station_bad_arguments(memphis, fake_plane, kwargs, text):
    args = {"name": "good", **kwargs}
    with pytest.raises(MemphisValueError, match=text):
        memphis.station(**args)
    if "timeout_retries" not in kwargs:
        assert not fake_plane.requests["$memphis_station_creations"]  # nothing was sent
    assert memphis.station("still-usable").name == "still-usable"


def test_station_exists_and_broker_errors_and_destroy(memphis, fake_plane):
    first = memphis.station("twice")
    again = memphis.station("twice")  # "" for an existing station
    assert again.name == first.name
    fake_plane.fail_next["$memphis_station_creations"] = "Station twice already exists"
    memphis.station("twice")  # "already exist" is success
    fake_plane.fail_next["$memphis_station_creations"] = "max replicas in a cluster is 5"
    with pytest.raises(MemphisRequestError, match="creating station 'other': max replicas in a cluster is 5"):
        memphis.station("other")
    first.destroy()
    assert fake_plane.requests["$memphis_station_destructions"][-1] == {"station_name": "twice", "username": "root"}
    first.destroy()  # "Station  does not exist" is ignored
    fake_plane.fail_next["$memphis_station_destructions"] = "user root is not allowed"
    with pytest.raises(MemphisRequestError, match="not allowed"):
        first.destroy()


def test_control_plane_timeout_retries(memphis, fake_plane, monkeypatch):
    monkeypatch.setattr(_defaults, "MEMPHIS_CREATE_TIMEOUT", 0.2)
    fake_plane.silent["$memphis_station_creations"] = 2
    memphis.station("slow", timeout_retries=2)
    assert len(fake_plane.requests["$memphis_station_creations"]) == 3
    assert all(b == fake_plane.requests["$memphis_station_creations"][0] for b in fake_plane.requests["$memphis_station_creations"])
    fake_plane.silent["$memphis_station_creations"] = 2
    with pytest.raises(RequestTimeout, match="after 2 tries"):
        memphis.station("slower", timeout_retries=1)


# -- producers --------------------------------------------------------------------------------


def test_producer_request_body_reply_and_cache(memphis, fake_plane):
    memphis.station("prod", partitions_number=3)
    producer = memphis.producer("prod", "Writer")
    assert fake_plane.requests["$memphis_producer_creations"][-1] == {
        "name": "Writer",
        "station_name": "prod",
        "connection_id": memphis.connection_id,
        "producer_type": "application",
        "req_version": 4,
        "username": "root",
        "app_id": APP_ID,
        "sdk_lang": "python",
    }
    assert producer.producer_name == "writer" and producer.internal_station_name == "prod"
    assert producer._state.partitions == [1, 2, 3] and producer._state.station_version == 2
    assert memphis.producer("prod", "writer") is producer  # cached per (station, name)
    producer.destroy()
    assert fake_plane.requests["$memphis_producer_destructions"][-1] == {
        "name": "writer", "station_name": "prod", "username": "root", "connection_id": memphis.connection_id, "req_version": 1,
    }
    assert memphis.producer("prod", "writer") is not producer
    with pytest.raises(MemphisError, match="destroyed"):
        producer.produce(b"x")


@pytest.mark.parametrize(
    "station,name,text",
    [("", "p", "Station name can not be empty"), ("s", "", "Producer name can not be empty"),
     ("s", "p" * 129, "Producer should be under 128"), ("s", "p!", "Only alphanumeric"), ("s", "p_", "can not start or end"),
     ("s", "p\n", "Only alphanumeric"), ("s\n", "p", "Only alphanumeric")],
)
def test_producer_bad_names(memphis, fake_plane, station, name, text):
    with pytest.raises(MemphisValueError, match=text):
        memphis.producer(station, name)
    assert not fake_plane.requests["$memphis_producer_creations"]
    memphis.producer("ok-station", "ok")


def test_producer_broker_error_reply(memphis, fake_plane):
    fake_plane.fail_next["$memphis_producer_creations"] = json.dumps({"error": "User root does not exist"})
    with pytest.raises(MemphisRequestError, match="User root does not exist"):
        memphis.producer("s", "p")
    fake_plane.fail_next["$memphis_producer_creations"] = "plain text error"  # a pre-JSON broker
    with pytest.raises(MemphisRequestError, match="plain text error"):
        memphis.producer("s", "p")
    fake_plane.fail_next["$memphis_producer_creations"] = ""  # a pre-JSON broker's success: legacy station
    memphis.station("legacy")  # creates legacy$1 only; the producer then publishes to legacy.final
    producer = memphis.producer("legacy", "p")
    assert producer._state.partitions is None


def test_produce_headers_body_types_and_consume(memphis, fake_plane):
    memphis.station("hdrs")
    producer = memphis.producer("hdrs", "p")
    user = Headers()
    user.add("trace-id", "t1")
    ack = producer.produce(b"raw", headers=user, msg_id="id-1")
    assert ack.stream == "hdrs$1" and ack.seq == 1
    producer.produce(bytearray(b"ba"), headers={"a": "1"})
    producer.produce(memoryview(b"mv"))
    producer.produce("text é")
    producer.produce({"k": [1, 2]})
    consumer = memphis.consumer("hdrs", "c", batch_size=10)
    msgs = drain(consumer, 5)
    assert [m.get_data() for m in msgs] == [bytearray(b"raw"), bytearray(b"ba"), bytearray(b"mv"), bytearray("text é".encode()), bytearray(b'{"k": [1, 2]}')]
    first = msgs[0].get_headers()
    assert first["$memphis_producedBy"] == "p"
    assert first["$memphis_connectionId"] == memphis.connection_id
    assert first["trace-id"] == "t1" and first["msg-id"] == "id-1"
    assert "msg-id" not in msgs[1].get_headers() and msgs[1].get_headers()["a"] == "1"
    assert [m.get_sequence_number() for m in msgs] == [1, 2, 3, 4, 5]
    sent = msgs[0].get_timesent()
    assert isinstance(sent, datetime.datetime) and abs((datetime.datetime.now(datetime.timezone.utc) - sent).total_seconds()) < 30
    assert msgs[4].get_data_deserialized() == bytearray(b'{"k": [1, 2]}')  # no schema: the bytes
    assert "Message" in repr(msgs[0])


def test_produce_bad_arguments_keep_connection_usable(memphis, fake_plane):
    memphis.station("bad-args", partitions_number=2)
    producer = memphis.producer("bad-args", "p")
    cases = [
        (dict(message=12345), TypeError, "Unsupported message type"),
        (dict(message=b"x", headers={"$memphis_producedBy": "spoof"}), MemphisHeaderError, r"should not start with \$memphis"),
        (dict(message=b"x", headers={"bad": "a\nb"}), MemphisHeaderError, "CR, LF or NUL"),
        (dict(message=b"x", headers=["not", "a", "mapping"]), MemphisHeaderError, "Headers object or a dict"),
        (dict(message=b"x", ack_wait_sec=0), MemphisValueError, "ack_wait_sec must be a number"),
        (dict(message=b"x", producer_partition_key="k", producer_partition_number=1), MemphisValueError, "Can not use both partition number and partition key"),
        (dict(message=b"x", producer_partition_number=3), MemphisValueError, "Partition number is out of range"),
        (dict(message=b"x", producer_partition_number=0), MemphisValueError, "partition number must be an int >= 1"),
        (dict(message=b"x", producer_partition_key=5), MemphisValueError, "partition key must be a str"),
        (dict(message=b"x", msg_id=5), MemphisValueError, "msg_id must be a str"),
        (dict(message=b"x", nonblocking=True, concurrent_task_limit=0), MemphisValueError, "concurrent_task_limit"),
    ]
    for kwargs, exc_type, text in cases:
        with pytest.raises(exc_type, match=text):
            producer.produce(**kwargs)
    assert producer.produce(b"fine").seq == 1
    with pytest.warns(DeprecationWarning, match="async_produce is deprecated"):
        fut = producer.produce(b"old", async_produce=True)
    assert fut.result(5).seq == 1  # second partition (round robin)


def test_partitions_round_robin_key_and_number(memphis, fake_plane):
    memphis.station("parts", partitions_number=3)
    producer = memphis.producer("parts", "p")
    streams = [producer.produce(b"rr").stream for _ in range(6)]
    assert streams == ["parts$1", "parts$2", "parts$3"] * 2
    for key in ("alpha", "beta", "gamma", "delta"):
        expected = partition_for_key(key, [1, 2, 3])
        assert producer.produce(key, producer_partition_key=key).stream == f"parts${expected}"
    assert producer.produce(b"n", producer_partition_number=2).stream == "parts$2"
    # consumers can read one partition by number or key
    consumer = memphis.consumer("parts", "c", batch_size=50)
    only2 = consumer.fetch(consumer_partition_number=2)
    assert only2 and all(m.partition == 2 for m in only2)
    for m in only2:
        m.ack()


def test_nonblocking_produce_and_flush(memphis, fake_plane):
    memphis.station("nb", partitions_number=2)
    producer = memphis.producer("nb", "p")
    futures = [producer.produce(f"m{i}", nonblocking=True) for i in range(500)]
    assert all(isinstance(f, Future) for f in futures)
    producer.flush(timeout=10)
    assert producer.pending == 0
    assert sorted(f.result().seq for f in futures if f.result().stream == "nb$1") == list(range(1, 251))
    limited = [producer.produce(b"x", nonblocking=True, concurrent_task_limit=10) for _ in range(100)]
    producer.flush()
    assert all(f.done() and f.exception() is None for f in limited)


def test_produce_to_deleted_station(memphis, fake_plane):
    memphis.station("gone")
    producer = memphis.producer("gone", "p")
    fake_plane.js.delete_stream("gone$1")
    with pytest.raises(NoStreamResponseError, match="Produce operation has failed, please check whether Station/Producer still exist"):
        producer.produce(b"x", ack_wait_sec=2)
    assert memphis.is_connected()


def test_multi_station_producer_and_connection_produce(memphis, fake_plane):
    memphis.station("ms-a")
    memphis.station("ms-b")
    multi = memphis.producer(["ms-a", "ms-b"], "fan")
    assert multi.is_multi_station_producer and not fake_plane.requests["$memphis_producer_creations"]
    last = multi.produce(b"both")  # each station gets it; the last station's ack is returned
    assert (last.stream, last.seq) == ("ms-b$1", 1)
    future = multi.produce(b"both again", nonblocking=True)
    assert future.result(5).stream == "ms-b$1"
    multi.flush(timeout=5)  # waits for the first station's too
    assert fake_plane.js.stream_info("ms-a$1").state.messages == 2
    assert len(fake_plane.requests["$memphis_producer_creations"]) == 2
    assert fake_plane.js.stream_info("ms-b$1").state.messages == 2
    ack = memphis.produce("ms-a", "helper", b"via connection", headers={"h": "v"}, msg_id="m1")
    assert ack.seq == 3
    assert memphis.produce("ms-a", "helper", b"again") .seq == 4
    assert len([b for b in fake_plane.requests["$memphis_producer_creations"] if b["name"] == "helper"]) == 1
    fut = memphis.produce("ms-a", "helper", b"nb", nonblocking=True)
    assert fut.result(5).seq == 5
    msgs = memphis.fetch_messages("ms-a", "reader", batch_size=10)
    assert len(msgs) >= 1
    assert memphis.fetch_messages("ms-a", "reader", batch_size=10) is not None  # reuses the consumer
    assert len([b for b in fake_plane.requests["$memphis_consumer_creations"] if b["name"] == "reader"]) == 1
    multi.destroy()


def test_clients_updates_remove_station(memphis, fake_plane):
    memphis.station("rm")
    producer = memphis.producer("rm", "p")
    fake_plane.conn.publish("$memphis_sdk_clients_updates", json.dumps({"station_name": "rm", "type": "schemaverse_to_dls", "update": True}).encode())
    fake_plane.conn.publish("$memphis_sdk_clients_updates", json.dumps({"station_name": "", "type": "send_notification", "update": True}).encode())
    fake_plane.conn.flush()
    wait_until(lambda: (producer._state.schemaverse_to_dls and memphis._stations.send_notification), 5, "(producer._state.schemaverse_to_dls and memphis._stations.send_notification)")
    assert producer._state.schemaverse_to_dls and memphis._stations.send_notification
    fake_plane.conn.publish("$memphis_sdk_clients_updates", json.dumps({"station_name": "rm", "type": "remove_station", "update": None}).encode())
    fake_plane.conn.flush()
    wait_until(lambda: not (memphis._registry.has_producers()), 5, "not (memphis._registry.has_producers())")
    assert memphis.producer("rm", "p") is not producer


# -- consumers --------------------------------------------------------------------------------


def test_consumer_request_body_and_destroy(memphis, fake_plane):
    memphis.station("cons", partitions_number=2)
    consumer = memphis.consumer("cons", "Reader", consumer_group="Group.A", pull_interval_ms=10, batch_size=7,
                                batch_max_time_to_wait_ms=50, max_ack_time_ms=5000, max_msg_deliveries=3,
                                start_consume_from_sequence=1, last_messages=-1, timeout_retries=1)
    assert fake_plane.requests["$memphis_consumer_creations"][-1] == {
        "name": "Reader",
        "station_name": "cons",
        "connection_id": memphis.connection_id,
        "consumer_type": "application",
        "consumers_group": "Group.A",
        "max_ack_time_ms": 5000,
        "max_msg_deliveries": 3,
        "start_consume_from_sequence": 1,
        "last_messages": -1,
        "req_version": 4,
        "username": "root",
        "app_id": APP_ID,
        "sdk_lang": "python",
    }
    assert consumer.consumer_group == "group.a" and consumer.partitions == [1, 2]
    assert consumer.batch_max_time_to_wait_ms == 100  # floor of 100 ms, as the SDK
    info = fake_plane.js.consumer_info("cons$1", "group#a")
    assert info.config.ack_wait == 5.0 and info.config.max_deliver == 3 and info.config.filter_subject == "cons$1.final"
    dls_subject = "$memphis_dls_cons.group#a"
    assert any(s.subject == dls_subject and s.queue == dls_subject for s in memphis.connection._subs.values())
    consumer.destroy()
    assert fake_plane.requests["$memphis_consumer_destructions"][-1] == {
        "name": "reader", "station_name": "cons", "username": "root", "connection_id": memphis.connection_id, "req_version": 1,
    }
    with pytest.raises(memphis_sync.ConsumerNotFoundError):
        fake_plane.js.consumer_info("cons$1", "group#a")  # last member left: durable deleted
    with pytest.raises(MemphisError, match="destroyed"):
        consumer.fetch()


@pytest.mark.parametrize(
    "kwargs,text",
    [
        ({"consumer_name": ""}, "Consumer name can not be empty"),
        ({"consumer_name": "c" * 129}, "Consumer should be under 128"),
        ({"consumer_group": "bad group"}, "Only alphanumeric"),
        ({"consumer_group": "g\n"}, "Only alphanumeric"),
        ({"consumer_name": "c\n"}, "Only alphanumeric"),
        ({"station_name": "cs\n"}, "Only alphanumeric"),
        ({"station_name": "bad$station"}, "Only alphanumeric"),
        ({"batch_size": 0}, "Batch size can not be greater than 5000 or less than 1"),
        ({"batch_size": 5001}, "Batch size can not be greater than 5000 or less than 1"),
        ({"pull_interval_ms": -1}, "pull_interval_ms must be an int >= 0"),
        ({"batch_max_time_to_wait_ms": -1}, "batch_max_time_to_wait_ms must be an int >= 0"),
        ({"max_ack_time_ms": 0}, "max_ack_time_ms must be an int >= 1"),
        ({"max_msg_deliveries": 0}, "max_msg_deliveries must be an int between 1 and 10"),
        ({"max_msg_deliveries": 11}, "max_msg_deliveries must be an int between 1 and 10"),
        ({"start_consume_from_sequence": 0}, "start_consume_from_sequence has to be a positive number"),
        ({"last_messages": -2}, "min value for last_messages is -1"),
        ({"start_consume_from_sequence": 5, "last_messages": 3}, "can't contain both start_consume_from_sequence and last_messages"),
    ],
)
def test_consumer_bad_arguments(memphis, fake_plane, kwargs, text):
    args = {"station_name": "cs", "consumer_name": "c", **kwargs}
    with pytest.raises(MemphisValueError, match=text):
        memphis.consumer(**args)
    assert not fake_plane.requests["$memphis_consumer_creations"]
    assert memphis.consumer("cs", "fine").consumer_name == "fine"


def test_consumer_broker_errors(memphis, fake_plane):
    fake_plane.fail_next["$memphis_consumer_creations"] = "user root is not allowed to access station s"
    with pytest.raises(MemphisRequestError, match="not allowed to access station"):
        memphis.consumer("s", "c")
    fake_plane.fail_next["$memphis_consumer_creations"] = json.dumps({"error": "consumer type has to be one of the following application/connector and not x"})
    with pytest.raises(MemphisRequestError, match="consumer type"):
        memphis.consumer("s", "c")
    memphis.consumer("s", "c")


def test_fetch_waits_at_most_batch_max_time(memphis, fake_plane):
    memphis.station("idle", partitions_number=3)
    consumer = memphis.consumer("idle", "c", batch_max_time_to_wait_ms=300)
    start = time.monotonic()
    assert consumer.fetch() == []
    assert 0.25 < time.monotonic() - start < 1.5
    with pytest.raises(MemphisValueError, match="Batch size"):
        consumer.fetch(batch_size=0)


def test_start_sequence_and_last_messages(memphis, fake_plane):
    memphis.station("seq")
    producer = memphis.producer("seq", "p")
    for i in range(10):
        producer.produce(f"{i}")
    from_seq = memphis.consumer("seq", "a", start_consume_from_sequence=8, batch_size=10)
    assert [m.get_sequence_number() for m in drain(from_seq, 3)] == [8, 9, 10]
    last = memphis.consumer("seq", "b", last_messages=2, batch_size=10)
    assert [m.get_sequence_number() for m in drain(last, 2)] == [9, 10]
    new_only = memphis.consumer("seq", "n", last_messages=0, batch_size=10)
    assert new_only.fetch() == []
    producer.produce("new")
    assert [m.get_data() for m in drain(new_only, 1)] == [bytearray(b"new")]


def test_consumer_recreates_missing_durable(memphis, fake_plane):
    memphis.station("nodur")
    consumer = memphis.consumer("nodur", "c")
    fake_plane.js.delete_consumer("nodur$1", "c")
    again = memphis.consumer("nodur", "c2", consumer_group="c")  # the fake creates it again
    fake_plane.js.delete_consumer("nodur$1", "c")
    from memphis_sync.memphis.consumer import Consumer

    Consumer._ensure_durable(again, "nodur$1")  # §15.3: the client creates it per §7.3
    assert fake_plane.js.consumer_info("nodur$1", "c").config.max_deliver == 2
    consumer.destroy()


def test_groups_share_and_each_group_gets_all(memphis, fake_plane):
    memphis.station("grp", partitions_number=2)
    producer = memphis.producer("grp", "p")
    for i in range(40):
        producer.produce(f"{i}")
    a1 = memphis.consumer("grp", "a1", consumer_group="ga", batch_size=5)
    a2 = memphis.consumer("grp", "a2", consumer_group="ga", batch_size=5)
    b = memphis.consumer("grp", "b1", consumer_group="gb", batch_size=50)
    got_a = []
    for _ in range(40):
        for c in (a1, a2):
            for m in c.fetch():
                got_a.append(m.get_data().decode())
                m.ack()
        if len(got_a) == 40:
            break
    assert sorted(got_a, key=int) == [str(i) for i in range(40)]
    got_b = [m.get_data().decode() for m in drain(b, 40)]
    assert sorted(got_b, key=int) == [str(i) for i in range(40)]


def test_message_ack_verbs(memphis, fake_plane):
    memphis.station("verbs")
    producer = memphis.producer("verbs", "p")
    for word in ("nack", "delay", "dead", "done"):
        producer.produce(word)
    consumer = memphis.consumer("verbs", "c", batch_size=4, max_ack_time_ms=20000, max_msg_deliveries=5)
    msgs = {m.get_data().decode(): m for m in drain(consumer, 4, ack=False)}
    msgs["nack"].nack()
    msgs["delay"].delay(0.5)
    msgs["dead"].dead_letter("cannot parse")
    msgs["done"].ack()
    with pytest.raises(memphis_sync.MessageAlreadyAckedError):
        msgs["done"].ack()
    with pytest.raises(MemphisValueError, match="delay must be a number"):
        msgs["nack"].delay(-1)
    start = time.monotonic()
    redelivered = {}
    while len(redelivered) < 2 and time.monotonic() - start < 5:
        for m in consumer.fetch():
            redelivered[m.get_data().decode()] = (time.monotonic() - start, m)
            m.ack()
    assert set(redelivered) == {"nack", "delay"}
    assert redelivered["delay"][0] >= 0.4
    assert redelivered["nack"][1].get_delivery_count() == 2
    wait_until(lambda: fake_plane.published["$memphis_nacked_dls"], 5, "fake_plane.published['$memphis_nacked_dls']")
    assert fake_plane.published["$memphis_nacked_dls"] == [
        {"station_name": "verbs", "error": "cannot parse", "partition": 1, "cg_name": "c", "seq": msgs["dead"].get_sequence_number()}
    ]
    assert consumer.fetch() == []  # the dead-lettered message is not redelivered


def test_resent_dls_messages(memphis, fake_plane):
    memphis.station("dls.st")
    consumer = memphis.consumer("dls.st", "c", consumer_group="Grp")
    headers = {"$memphis_pm_id": "42", "$memphis_pm_cg_name": "grp", "$memphis_producedBy": "$memphis_dls", "x": "1"}
    from memphis_sync.nats.protocol.headers import Headers as WireHeaders

    memphis.connection.flush()  # our SUB has reached the server
    fake_plane.conn.publish("$memphis_dls_dls#st.grp", b"poison", headers=WireHeaders(headers))
    fake_plane.conn.flush()
    deadline = time.monotonic() + 5
    got = []
    while not got and time.monotonic() < deadline:
        got = consumer.fetch()
    assert [m.get_data() for m in got] == [bytearray(b"poison")]
    msg = got[0]
    assert msg.get_sequence_number() is None and msg.get_timesent() is None
    with pytest.raises(MemphisError, match="cannot delay DLS message"):
        msg.delay(1)
    msg.nack()  # no-op
    msg.ack()
    wait_until(lambda: fake_plane.published["$memphis_pm_acks"], 5, "fake_plane.published['$memphis_pm_acks']")
    assert fake_plane.published["$memphis_pm_acks"] == [{"id": 42, "cg_name": "grp"}]


def test_consume_callback_context_and_stop(memphis, fake_plane):
    memphis.station("cb", partitions_number=2)
    producer = memphis.producer("cb", "p")
    consumer = memphis.consumer("cb", "c", batch_size=10, pull_interval_ms=20)
    seen, contexts, errors = [], [], []
    done = threading.Event()

    def handler(msgs, error, context):
        if error is not None:
            errors.append(error)
        for m in msgs:
            seen.append(m.get_data().decode())
            m.ack()
        contexts.append(context)
        if len(seen) >= 30:
            done.set()

    consumer.set_context({"who": "test"})
    consumer.consume(handler)
    with pytest.raises(MemphisError, match="already consuming"):
        consumer.consume(handler)
    for i in range(30):
        producer.produce(str(i))
    assert done.wait(10)
    consumer.stop_consuming()
    assert not consumer.is_consuming
    assert sorted(seen, key=int) == [str(i) for i in range(30)]
    assert contexts[0] == {"who": "test"} and not errors
    producer.produce("after stop")
    time.sleep(0.3)
    assert len(seen) == 30  # stopped, but the consumer still works
    assert [m.get_data() for m in drain(consumer, 1)] == [bytearray(b"after stop")]
    consumer.consume(lambda msgs, error, context: None)
    consumer.destroy()  # stops the loop too
    assert not consumer.is_consuming


def test_consume_callback_errors_do_not_stop_the_loop(memphis, fake_plane):
    memphis.station("cberr")
    producer = memphis.producer("cberr", "p")
    consumer = memphis.consumer("cberr", "c", pull_interval_ms=0)
    calls = []

    def handler(msgs, error, context):
        calls.append(len(msgs))
        for m in msgs:
            m.ack()
        raise RuntimeError("user bug")

    consumer.consume(handler)
    producer.produce("1")
    wait_until(lambda: calls, 5, "calls")
    producer.produce("2")
    wait_until(lambda: not (sum(calls) < 2), 5, "not (sum(calls) < 2)")
    assert sum(calls) == 2
    memphis.close()  # close stops consume loops
    assert not consumer.is_consuming


def test_iteration_yields_messages(memphis, fake_plane):
    memphis.station("iter")
    producer = memphis.producer("iter", "p")
    for i in range(5):
        producer.produce(str(i))
    consumer = memphis.consumer("iter", "c", batch_size=2)
    out = []
    for msg in consumer:
        out.append(msg.get_data().decode())
        msg.ack()
        if len(out) == 5:
            break
    assert out == ["0", "1", "2", "3", "4"]


def test_prefetch(memphis, fake_plane):
    memphis.station("pre")
    producer = memphis.producer("pre", "p")
    for i in range(9):
        producer.produce(str(i))
    consumer = memphis.consumer("pre", "c", batch_size=3)
    first = consumer.fetch(prefetch=True)
    assert len(first) == 3 and len(consumer._cache) == 6
    rest = consumer.fetch() + consumer.fetch()
    assert [m.get_data().decode() for m in first + rest] == [str(i) for i in range(9)]
    for m in first + rest:
        m.ack()


# -- the concurrency acceptance test ----------------------------------------------------------


def test_32_threads_share_one_connection_consumer_group_of_4(memphis, fake_plane):
    threads_n, per_thread = 32, 1000
    memphis.station("load", partitions_number=4)
    errors = []

    def produce(t):
        try:
            producer = memphis.producer("load", f"producer-{t}")
            for i in range(per_thread):
                producer.produce(b"%d:%d" % (t, i), headers={"t": str(t)})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(threads_n)]
    start = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    produce_time = time.monotonic() - start
    assert not errors, errors[:3]
    total = threads_n * per_thread
    assert sum(fake_plane.js.stream_info(f"load${p}").state.messages for p in range(1, 5)) == total

    consumers = [memphis.consumer("load", f"c{i}", consumer_group="workers", batch_size=500) for i in range(4)]
    seen = [[] for _ in consumers]

    def consume(i):
        c = consumers[i]
        idle = 0
        while idle < 5:
            msgs = c.fetch()
            idle = idle + 1 if not msgs else 0
            for m in msgs:
                seen[i].append(bytes(m.get_data()))
                m.ack()

    workers = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    everything = [x for part in seen for x in part]
    assert len(everything) == total
    assert len(set(everything)) == total  # exactly once
    assert all(len(part) > 0 for part in seen)  # the group shared the work
    print(f"\n32 producers x 1000 blocking produce: {total / produce_time:.0f} msg/s")


def test_producers_and_consumers_keep_working_after_a_reconnect(nats_server, fake_plane):
    with memphis_sync.connect(nats_server.host, "root", connection_token="t", port=nats_server.port,
                              reconnect_interval_ms=50) as m:
        m.station("recon", partitions_number=2)
        producer = m.producer("recon", "p")
        consumer = m.consumer("recon", "c", batch_size=20)
        for i in range(4):
            producer.produce(f"before-{i}")
        assert len(drain(consumer, 4)) == 4
        nats_server.restart()
        wait_until(lambda: (m.is_connected() and fake_plane.conn.is_connected()), 10, "(m.is_connected() and fake_plane.conn.is_connected())")
        assert m.is_connected()
        for i in range(4):
            producer.produce(f"after-{i}", ack_wait_sec=5)
        got = sorted(msg.get_data().decode() for msg in drain(consumer, 4))
        assert got == [f"after-{i}" for i in range(4)]
        assert m.connection.stats["reconnects"] >= 1


def test_concurrent_producer_creation_gives_one_producer(memphis, fake_plane):
    memphis.station("race")
    results = []
    barrier = threading.Barrier(8)

    def create():
        barrier.wait()
        results.append(memphis.producer("race", "same"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in results}) == 1
    assert len(fake_plane.requests["$memphis_producer_creations"]) == 1


def test_close_waits_for_nonblocking_acks(nats_server, fake_plane):
    m = memphis_sync.connect(nats_server.host, "root", connection_token="t", port=nats_server.port)
    m.station("close-drain")
    producer = m.producer("close-drain", "p")
    futures = [producer.produce(b"x" * 100, nonblocking=True) for _ in range(2000)]
    m.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert fake_plane.js.stream_info("close-drain$1").state.messages == 2000


def test_sdk_helper_methods(memphis, fake_plane):
    memphis.station("helpers", partitions_number=3)
    producer = memphis.producer("helpers", "p")
    consumer = memphis.consumer("helpers", "c")
    for key in ("a", "b", "c"):
        assert producer.get_partition_from_key(key) == consumer.get_partition_from_key(key) == partition_for_key(key, [1, 2, 3])
    producer.validate_partition_number(3, "helpers")
    consumer.validate_partition_number(1, "helpers")
    with pytest.raises(MemphisValueError, match="Partition number is out of range"):
        producer.validate_partition_number(4, "helpers")
    with pytest.raises(MemphisValueError, match="Partition number is out of range"):
        consumer.validate_partition_number(0, "helpers")
    memphis.schema_name_validation("ok-name")
    with pytest.raises(MemphisValueError):
        memphis.schema_name_validation("Bad")
    memphis.unset_cached_producer_station("helpers")
    assert memphis.producer("helpers", "p") is not producer
    memphis.unset_cached_consumer_station("helpers")
    assert not memphis._registry.has_consumers()


def test_account_id_in_password_mode(nats_server_factory):
    server = nats_server_factory(users=[{"user": "app$7", "password": "pw"}])
    with memphis_sync.connect(host=server.host, port=server.port, username="app", password="pw", account_id=7) as m:
        assert m.is_connected() and m.account_id == 7


def test_generate_random_suffix(memphis, fake_plane):
    import re

    memphis.station("suffix")
    with pytest.warns(DeprecationWarning):
        producer = memphis.producer("suffix", "p", generate_random_suffix=True)
    sent = fake_plane.requests["$memphis_producer_creations"][-1]["name"]
    assert re.fullmatch(r"p_[0-9a-f]{8}", sent) and producer.producer_name == sent and producer.real_name == "p"
    ack = producer.produce(b"x")
    with pytest.warns(DeprecationWarning):
        consumer = memphis.consumer("suffix", "c", generate_random_suffix=True)
    sent = fake_plane.requests["$memphis_consumer_creations"][-1]["name"]
    assert re.fullmatch(r"c_[0-9a-f]{8}", sent) and consumer.consumer_group == sent  # the group defaults to the name
    msg = drain(consumer, 1, ack=False)[0]
    assert msg.get_headers()["$memphis_producedBy"] == producer.producer_name and msg.get_sequence_number() == ack.seq
    msg.in_progress()
    msg.ack()


def test_many_threads_share_one_producer(memphis, fake_plane):
    memphis.station("shared", partitions_number=2)
    producer = memphis.producer("shared", "p")
    acks, errors = [], []

    def work(t):
        try:
            for i in range(250):
                if i % 2:
                    acks.append(producer.produce(b"%d-%d" % (t, i)))
                else:
                    acks.append(producer.produce(b"%d-%d" % (t, i), nonblocking=True).result(10))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({(a.stream, a.seq) for a in acks}) == 2000  # every message stored once
    assert {a.stream for a in acks} == {"shared$1", "shared$2"}
