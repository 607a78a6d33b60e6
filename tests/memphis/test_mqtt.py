"""MQTT devices and memphis-sync on one local broker: a real MQTT client (paho-mqtt, MQTT 3.1.1)
on nats-server's MQTT listener, the topics of :func:`memphis_sync.mqtt_topic`, the connect rules
of token and password mode, and the helper's refusals."""

from __future__ import annotations

import queue
import socket
import struct
import threading
import uuid
from typing import Callable, Iterator, List, Optional

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

import memphis_sync
from memphis_sync.broker import LocalBroker
from memphis_sync.errors import MemphisValueError, StreamNotFoundError
from memphis_sync.jetstream import JetStream
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
#: paho names its network thread ``paho-mqtt-client-<client id>``.
PAHO_THREAD = "paho-mqtt-client-"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- a paho-mqtt device ----------------------------------------------------------------------


class Device:
    """One MQTT 3.1.1 client (paho-mqtt 2.x callback API) with its network loop on paho's thread."""

    def __init__(self, port: int, client_id: str, username: str, password: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username, password)
        self.connack = threading.Event()
        self.reason: Optional[ReasonCode] = None
        self.suback: "queue.Queue[List[ReasonCode]]" = queue.Queue()
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda client, userdata, mid, codes, props: self.suback.put(list(codes))
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object) -> None:
        if self.reason is None:
            self.reason = reason
        if reason.is_failure:  # refused: no reconnect attempts, the loop thread ends
            client.disconnect()
        self.connack.set()

    def wait_connack(self) -> ReasonCode:
        assert self.connack.wait(TIMEOUT), "no CONNACK from the broker"
        assert self.reason is not None
        return self.reason

    def publish_all(self, topic: str, payloads: List[bytes]) -> None:
        """Publish QoS 1 and wait for every PUBACK."""
        infos = [self.client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
            assert info.is_published(), f"no PUBACK for a publish to {topic!r}"

    def subscribe(self, topic: str) -> List[ReasonCode]:
        result, _ = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return self.suback.get(timeout=TIMEOUT)

    def receive(self, count: int) -> List[mqtt.MQTTMessage]:
        return [self.messages.get(timeout=TIMEOUT) for _ in range(count)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(memphis_broker_factory: Callable[..., LocalBroker]) -> LocalBroker:
    """A token-mode local broker with MQTT on a free port."""
    return memphis_broker_factory(mqtt_port=0)


def _mqtt_port(broker: LocalBroker) -> int:
    [url] = broker.mqtt_urls
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def device_factory(broker: LocalBroker) -> Iterator[Callable[..., Device]]:
    """``factory(client_id, username=..., password=...)`` → a connecting :class:`Device`; the
    password defaults to the token in the form a client without a ``::`` name presents it."""
    made: List[Device] = []

    def factory(client_id: str, *, username: str = "device", password: Optional[str] = None, on: Optional[LocalBroker] = None) -> Device:
        target = on or broker
        secret = password if password is not None else f"{username}::{target.connection_token}"
        device = Device(_mqtt_port(target), client_id, username, secret)
        made.append(device)
        return device

    try:
        yield factory
    finally:
        for device in made:
            device.close()
        left = [t.name for t in threading.enumerate() if t.name.startswith(PAHO_THREAD)]
        assert not left, f"paho threads still running: {left}"


@pytest.fixture
def memphis(broker: LocalBroker) -> Iterator[memphis_sync.Memphis]:
    with memphis_sync.connect(**broker.connect_kwargs()) as client:
        yield client


def _connected(device: Device) -> Device:
    reason = device.wait_connack()
    assert not reason.is_failure, f"the broker refused the MQTT client: {reason}"
    return device


def _fetch_all(consumers: List[memphis_sync.Consumer], count: int) -> List[memphis_sync.Message]:
    got: List[memphis_sync.Message] = []

    def more() -> bool:
        for consumer in consumers:
            for msg in consumer.fetch():
                msg.ack()
                got.append(msg)
        return len(got) >= count

    wait_until(more, TIMEOUT, f"{count} messages")
    return got


# -- MQTT in, memphis-sync out ---------------------------------------------------------------


def test_mqtt_devices_publish_qos1_and_a_consumer_group_gets_every_message_once(
    device_factory: Callable[..., Device], memphis: memphis_sync.Memphis
) -> None:
    station = _name("Sensors")  # any case: the topic uses the internal (lower-case) name
    memphis.station(station)
    topic = memphis_sync.mqtt_topic(station)
    assert topic == f"{station.lower()}$1/final"
    devices = [_connected(device_factory(f"dev-{i}-{uuid.uuid4().hex[:6]}")) for i in range(2)]
    per_device = 40
    sent = {i: [bytes([i, n]) + b"\x00\xff\r\n binary, intact" for n in range(per_device)] for i in range(2)}
    threads = [threading.Thread(target=d.publish_all, args=(topic, sent[i])) for i, d in enumerate(devices)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    group = [memphis.consumer(station, f"reader-{i}", consumer_group="dashboard", batch_size=25) for i in range(2)]
    got = _fetch_all(group, 2 * per_device)

    assert sorted(bytes(m.get_data()) for m in got) == sorted(sent[0] + sent[1])  # data intact, none twice
    for msg in got:  # MQTT 3.1.1 has no headers: nats-server's marker is all there is
        assert msg.get_headers() == {"Nmqtt-Pub": "1"} and msg.partition == 1
    for i in range(2):  # one device's messages are stored in the order it sent them
        mine = sorted((m for m in got if bytes(m.get_data())[0] == i), key=lambda m: m.get_sequence_number() or 0)
        assert [bytes(m.get_data()) for m in mine] == sent[i]
    js = JetStream(memphis.connection)
    assert js.stream_info(f"{station.lower()}$1").state.messages == 2 * per_device  # exact count


def test_a_puback_does_not_mean_a_station_stored_the_message(
    device_factory: Callable[..., Device], memphis: memphis_sync.Memphis
) -> None:
    existing, missing = _name("present"), _name("absent")
    memphis.station(existing)
    device = _connected(device_factory("dev-puback"))
    device.publish_all(memphis_sync.mqtt_topic(missing), [b"to nowhere"])  # PUBACKed all the same
    device.publish_all(memphis_sync.mqtt_topic(existing), [b"kept"])
    js = JetStream(memphis.connection)
    assert js.stream_info(f"{existing}$1").state.messages == 1  # positive control: the same path stores
    with pytest.raises(StreamNotFoundError):
        js.stream_info(f"{missing}$1")


# -- memphis-sync in, MQTT out ---------------------------------------------------------------


def test_an_mqtt_subscriber_receives_what_memphis_sync_produces(
    device_factory: Callable[..., Device], memphis: memphis_sync.Memphis
) -> None:
    station = _name("alerts")
    producer = memphis.producer(station, "backend")
    producer.produce(b"before the subscription")
    device = _connected(device_factory("dev-subscriber"))
    topic = memphis_sync.mqtt_topic(station)
    assert [code.getName() for code in device.subscribe(topic)] == ["Granted QoS 1"]
    sent = [f"alert {n}".encode() for n in range(20)]
    for n, payload in enumerate(sent):
        producer.produce(payload, headers={"seq": str(n)}, msg_id=f"alert-{n}")
    got = device.receive(len(sent))
    assert [bytes(m.payload) for m in got] == sent  # in order; only what came after the SUBSCRIBE
    for msg in got:
        assert msg.topic == topic and msg.qos == 0 and not msg.retain  # NATS publishers arrive at QoS 0
    assert device.messages.empty()


# -- partitions ------------------------------------------------------------------------------


def test_each_partition_topic_lands_in_its_partition(
    device_factory: Callable[..., Device], memphis: memphis_sync.Memphis
) -> None:
    station = _name("meters")
    memphis.station(station, partitions_number=3)
    device = _connected(device_factory("dev-partitions"))
    for partition in (1, 2, 3):  # partition p gets p messages
        device.publish_all(memphis_sync.mqtt_topic(station, partition), [f"p{partition}-{n}".encode() for n in range(partition)])
    got = _fetch_all([memphis.consumer(station, "reader", batch_size=10)], 6)
    by_partition = {p: sorted((m for m in got if m.partition == p), key=lambda m: m.get_sequence_number() or 0) for p in (1, 2, 3)}
    for partition, msgs in by_partition.items():
        assert [bytes(m.get_data()) for m in msgs] == [f"p{partition}-{n}".encode() for n in range(partition)]
        assert [m.get_sequence_number() for m in msgs] == list(range(1, partition + 1))
    js = JetStream(memphis.connection)
    assert [js.stream_info(f"{station}${p}").state.messages for p in (1, 2, 3)] == [1, 2, 3]


def test_an_mqtt_subscriber_of_one_partition_gets_that_partition_only(
    device_factory: Callable[..., Device], memphis: memphis_sync.Memphis
) -> None:
    station = _name("zones")
    memphis.station(station, partitions_number=3)
    device = _connected(device_factory("dev-zone-2"))
    device.subscribe(memphis_sync.mqtt_topic(station, 2))
    producer = memphis.producer(station, "backend")
    for n in range(3):
        for partition in (1, 2, 3):
            producer.produce(f"z{partition}-{n}".encode(), producer_partition_number=partition)
    assert [bytes(m.payload) for m in device.receive(3)] == [b"z2-0", b"z2-1", b"z2-2"]
    producer.produce(b"z2-last", producer_partition_number=2)  # a marker: nothing else came before it
    assert bytes(device.receive(1)[0].payload) == b"z2-last"


# -- connecting: the token, the password -----------------------------------------------------


def test_token_mode_mqtt_clients_send_the_token_as_the_password_after_a_double_colon(
    broker: LocalBroker, device_factory: Callable[..., Device]
) -> None:
    token = broker.connection_token
    accepted = device_factory("dev-ok", username="anyone", password=f"whoever::{token}")
    bare = device_factory("dev-bare", username="anyone", password=token)
    wrong = device_factory("dev-wrong", username="anyone", password="whoever::not-the-token")
    assert accepted.wait_connack().getName() == "Success"  # no user check for MQTT clients
    assert bare.wait_connack().getName() == "Not authorized"  # no name with '::': '<user>::<token>'
    assert wrong.wait_connack().getName() == "Not authorized"


def test_password_mode_mqtt_clients_log_in_as_the_nats_user(
    memphis_broker_factory: Callable[..., LocalBroker], device_factory: Callable[..., Device]
) -> None:
    secured = memphis_broker_factory(mqtt_port=0, password="s3cret")
    ok = [device_factory(f"dev-{user.replace('$', '-')}", username=user, password="s3cret", on=secured) for user in ("root$1", "root")]
    refused = device_factory("dev-bad-password", username="root$1", password="wrong", on=secured)
    assert [d.wait_connack().getName() for d in ok] == ["Success", "Success"]
    assert refused.wait_connack().getName() == "Not authorized"


# -- what MQTT cannot reach ------------------------------------------------------------------


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    length, encoded = len(body), b""
    while True:  # the remaining length: 7 bits a byte, high bit = more
        length, digit = divmod(length, 128)
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            return bytes([first_byte]) + encoded + body


def _recv(sock: socket.socket, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only if the broker closed the connection."""
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        data += chunk
    return data


def _raw_publish_qos1(port: int, password: str, topic: str) -> bytes:
    """CONNECT, then one QoS 1 PUBLISH (packet id 1) of a topic paho would refuse to send; return
    what the broker answered the PUBLISH with (``b""``: it closed the connection)."""
    connect = _mqtt_string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30)  # 3.1.1, user+password+clean
    connect += _mqtt_string(f"raw-{uuid.uuid4().hex[:6]}") + _mqtt_string("raw") + _mqtt_string(password)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(_packet(0x10, connect))
        assert _recv(sock, 4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
        sock.sendall(_packet(0x32, _mqtt_string(topic) + struct.pack("!H", 1) + b"payload"))
        return _recv(sock, 4)


def test_a_dotted_station_has_no_mqtt_topic(broker: LocalBroker, memphis: memphis_sync.Memphis) -> None:
    memphis.station("plant.floor")  # internal name "plant#floor"
    memphis.station("plantfloor")
    password = f"raw::{broker.connection_token}"
    assert _raw_publish_qos1(_mqtt_port(broker), password, "plantfloor$1/final") == b"\x40\x02\x00\x01"  # PUBACK
    assert _raw_publish_qos1(_mqtt_port(broker), password, "plant#floor$1/final") == b""  # wildcard: closed
    with pytest.raises(MemphisValueError, match=r"'plant\.floor' cannot be reached over MQTT: its internal name 'plant#floor'"):
        memphis_sync.mqtt_topic("plant.floor")


# -- the helper ------------------------------------------------------------------------------


@pytest.mark.parametrize("station, partition, topic", [
    ("sensors", 1, "sensors$1/final"),
    ("Sensors", 1, "sensors$1/final"),
    ("Fleet-7", 3, "fleet-7$3/final"),  # the examples of docs/protocols_mqtt.rst
    ("Fleet-7_GPS", 12, "fleet-7_gps$12/final"),
    ("x" * 128, 10000, "x" * 128 + "$10000/final"),
])
def test_mqtt_topic(station: str, partition: int, topic: str) -> None:
    assert memphis_sync.mqtt_topic(station, partition) == topic


def test_mqtt_topic_defaults_to_the_first_partition() -> None:
    assert memphis_sync.mqtt_topic("sensors") == memphis_sync.mqtt_topic("sensors", 1)


@pytest.mark.parametrize("station, text", [
    ("a.b", "holds '#'"),
    ("A.B.C", "holds '#'"),
    ("", "Station name can not be empty"),
    ("bad name", "Only alphanumeric"),
    ("a/b", "Only alphanumeric"),
    ("a+b", "Only alphanumeric"),
    ("a#b", "Only alphanumeric"),
    ("sensors\n", "Only alphanumeric"),
    ("-sensors", "can not start or end"),
    ("x" * 129, "under 128 characters"),
    (b"sensors", "must be a str"),
    (None, "must be a str"),
])
def test_mqtt_topic_refuses_stations_mqtt_cannot_reach(station: object, text: str) -> None:
    with pytest.raises(MemphisValueError, match=text):
        memphis_sync.mqtt_topic(station, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("partition", [0, -1, True, 1.0, "1", None])
def test_mqtt_topic_refuses_bad_partitions(partition: object) -> None:
    with pytest.raises(MemphisValueError, match=r"partition must be an int >= 1, got "):
        memphis_sync.mqtt_topic("sensors", partition)  # type: ignore[arg-type]
