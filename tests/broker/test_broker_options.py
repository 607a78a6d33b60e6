"""LocalBroker options: a 3-node cluster (R3 stations, two control planes), TLS, websocket, MQTT."""

from __future__ import annotations

import socket
from typing import Callable

import pytest
from broker_tools import ask

from memphis_sync.broker.control_plane import ControlPlane
from memphis_sync.broker.local import LocalBroker
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import TlsOptions, connect

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_cluster_of_three_with_r3_stations_and_two_control_planes(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(cluster_size=3)
    assert len(broker.pids) == 3 and len(broker.urls) == 3
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
    conn = connect(broker.url, token="memphis", name="t::root", tls=TlsOptions(ca_file=str(tls_certs.ca_pem)))
    try:
        assert ask(conn, "$memphis_station_creations", {"name": "over-tls", "partitions_number": 1, "username": "root"}) == ""
    finally:
        conn.close()


def test_mutual_tls_broker(memphis_broker_factory: Callable[..., LocalBroker], tls_certs) -> None:
    broker = memphis_broker_factory(tls=tls_certs.server_tls(verify=True))
    conn = connect(broker.url, token="memphis", name="t::root", tls=TlsOptions(
        ca_file=str(tls_certs.ca_pem), cert_file=str(tls_certs.client_cert), key_file=str(tls_certs.client_key)))
    try:
        assert ask(conn, "$memphis_station_creations", {"name": "over-mtls", "partitions_number": 1, "username": "root"}) == ""
    finally:
        conn.close()


def test_websocket_and_mqtt_listeners(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(websocket_port=0, mqtt_port=0)
    server = broker.nats_server
    for port in (server.websocket_port, server.mqtt_port):
        assert port
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
