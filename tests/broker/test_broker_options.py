"""LocalBroker options: a 3-node cluster (R3 stations, two control planes), TLS, websocket, MQTT."""

from __future__ import annotations

import argparse
import socket
from typing import Callable

import pytest
from broker_tools import ask

import memphis_sync
from memphis_sync.broker import cli as broker_cli
from memphis_sync.broker.control_plane import ControlPlane
from memphis_sync.broker.local import LocalBroker
from memphis_sync.errors import BrokerError
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import TlsOptions, connect
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_cluster_of_three_with_r3_stations_and_two_control_planes(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    with socket.socket() as taken:  # a fixed MQTT port: nodes of one host cannot share it
        taken.bind(("127.0.0.1", 0))
        fixed = taken.getsockname()[1]
    broker = memphis_broker_factory(cluster_size=3, mqtt_port=fixed)
    assert len(broker.pids) == 3 and len(broker.urls) == 3
    assert len({url.rsplit(":", 1)[1] for url in broker.mqtt_urls}) == 3  # each node its own free MQTT port
    conn = connect(broker.urls[2], token="memphis", name="t::root")
    try:
        js = JetStream(conn)
        with ControlPlane(broker.urls[1], **broker.control_plane_kwargs()) as second:
            for i in range(6):  # the queue groups spread these over both instances
                assert ask(conn, "$memphis_station_creations", {
                    "name": f"r3.{i}", "replicas": 3, "partitions_number": 2, "username": "root"}) == ""
            assert second.get_station("r3.5")["replicas"] == 3
        for i in range(6):
            for p in (1, 2):
                assert js.stream_info(f"r3#{i}${p}").config.num_replicas == 3
        assert js.stream_info("$memphis_sync_metadata").config.num_replicas == 3
        js.publish("r3#0$1.final", b"replicated")
        assert js.get_msg("r3#0$1", 1).data == b"replicated"
    finally:
        conn.close()


def test_tls_broker(memphis_broker_factory: Callable[..., LocalBroker], tls_certs) -> None:
    broker = memphis_broker_factory(tls=tls_certs.server_tls(verify=False))
    assert broker.url.startswith("tls://127.0.0.1:")
    assert broker.websocket_url.startswith("wss://127.0.0.1:")  # the same certificate on the websocket port
    assert broker.nats_server.build_config()["websocket"]["tls"]["cert_file"] == str(tls_certs.server_cert)
    for url in (broker.url, broker.websocket_url):
        conn = connect(url, token="memphis", name="t::root", tls=TlsOptions(ca_file=str(tls_certs.ca_pem)))
        try:
            assert ask(conn, "$memphis_station_creations", {"name": "over-tls", "partitions_number": 1, "username": "root"}) == ""
        finally:
            conn.close()


def test_mutual_tls_broker_memphis_api_over_wss(memphis_broker_factory: Callable[..., LocalBroker], tls_certs) -> None:
    broker = memphis_broker_factory(tls=tls_certs.server_tls(verify=True))
    files = {"cert_file": str(tls_certs.client_cert), "key_file": str(tls_certs.client_key), "ca_file": str(tls_certs.ca_pem)}
    with memphis_sync.connect(**broker.connect_kwargs(websocket=True), **files) as memphis:
        assert memphis.connection.describe_server() == broker.websocket_url
        producer = memphis.producer("over-wss", "p")
        producer.produce(b"secure", headers={"h": "1"})
        consumer = memphis.consumer("over-wss", "c")
        msgs = wait_until(consumer.fetch, 10, "the message over wss")
        assert (bytes(msgs[0].get_data()), msgs[0].get_headers()["h"]) == (b"secure", "1")
        msgs[0].ack()
    with pytest.raises(memphis_sync.MemphisConnectError):  # positive control: no client certificate
        memphis_sync.connect(**broker.connect_kwargs(websocket=True), timeout_ms=2000, reconnect=False)


def test_mutual_tls_broker(memphis_broker_factory: Callable[..., LocalBroker], tls_certs) -> None:
    broker = memphis_broker_factory(tls=tls_certs.server_tls(verify=True))
    conn = connect(broker.url, token="memphis", name="t::root", tls=TlsOptions(
        ca_file=str(tls_certs.ca_pem), cert_file=str(tls_certs.client_cert), key_file=str(tls_certs.client_key)))
    try:
        assert ask(conn, "$memphis_station_creations", {"name": "over-mtls", "partitions_number": 1, "username": "root"}) == ""
    finally:
        conn.close()


def test_websocket_is_on_by_default_and_can_be_turned_off(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory()
    assert broker.websocket_url.startswith("ws://127.0.0.1:") and broker.websocket_url != "ws://127.0.0.1:7770"
    assert broker.nats_server.build_config()["websocket"]["no_tls"] is True
    off = memphis_broker_factory(websocket_port=None)
    assert off.websocket_urls == [] and "websocket" not in off.nats_server.build_config()
    with pytest.raises(BrokerError, match="WebSocket listener is off"):
        assert not off.websocket_url


@pytest.mark.parametrize(
    "argv, expected",
    [([], 7770), (["--port", "0"], -1), (["--websocket-port", "9999"], 9999), (["--port", "0", "--websocket-port", "0"], -1),
     (["--no-websocket"], None)],  # -1: nats-server's "a free port"
)
def test_cli_websocket_port(argv, expected) -> None:
    parser = argparse.ArgumentParser()
    broker_cli.add_arguments(parser)
    broker = broker_cli._broker(parser.parse_args(argv))
    assert broker.nats_server.build_config().get("websocket", {}).get("port") == expected


def test_websocket_and_mqtt_listeners(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(websocket_port=0, mqtt_port=0)
    server = broker.nats_server
    for port in (server.websocket_port, server.mqtt_port):
        assert port
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_the_connect_check_skips_websocket_clients_as_the_memphis_broker_does(memphis_broker: LocalBroker) -> None:
    # memphis-wire.md §1.3: the user checks of the connect hook do not run for websocket clients
    from memphis_sync.errors import AuthorizationError
    from memphis_sync.nats.connection import ReconnectPolicy

    options = {"token": memphis_broker.connection_token, "name": "cid::no-such-user", "reconnect": ReconnectPolicy(enabled=False)}
    with pytest.raises(AuthorizationError):  # positive control: over TCP the unknown user is refused
        connect(memphis_broker.url, **options)
    with connect(memphis_broker.websocket_url, **options) as conn:
        conn.flush(timeout=2)
    with pytest.raises(AuthorizationError):  # the token itself is still checked over websocket
        connect(memphis_broker.websocket_url, **{**options, "token": "wrong"})
