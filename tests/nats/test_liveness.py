"""Liveness: client PINGs detect a dead server, server PINGs are answered, slow consumers
are reported."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from memphis_sync.errors import SlowConsumerError
from memphis_sync.nats.connection import ConnectionStatus, ReconnectPolicy, connect

pytestmark = pytest.mark.integration


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_unanswered_pings_mark_connection_stale_and_reconnect(nats_server):
    reconnected = threading.Event()
    c = connect(
        nats_server.url,
        ping_interval=0.1,
        max_pings_outstanding=2,
        connect_timeout=0.5,
        reconnect=ReconnectPolicy(wait=0.05, jitter=0, max_attempts=-1),
        on_reconnected=lambda conn: reconnected.set(),
    )
    sub = c.subscribe("alive")
    os.kill(nats_server.pid, signal.SIGSTOP)  # the server freezes: TCP stays up, nothing answers
    try:
        assert _wait_for(lambda: c.status is ConnectionStatus.RECONNECTING, 5), c.status
    finally:
        os.kill(nats_server.pid, signal.SIGCONT)
    try:
        assert reconnected.wait(10)
        c.publish("alive", b"again")
        assert sub.next_msg(timeout=5).payload == b"again"
    finally:
        c.close()


def test_server_pings_are_answered(nats_server_factory):
    # the server pings every 50 ms and drops a client after 2 unanswered pings
    server = nats_server_factory(extra_config={"ping_interval": "50ms", "ping_max": 2})
    disconnected = threading.Event()
    with connect(server.url, ping_interval=3600, on_disconnected=lambda conn: disconnected.set()) as c:
        # positive control: a raw client that never answers PINGs is dropped meanwhile
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            raw.recv(4096)  # INFO
            raw.sendall(b'CONNECT {"verbose":false}\r\n')
            time.sleep(0.6)  # idle for many server ping intervals
            seen = b""
            try:
                while True:
                    chunk = raw.recv(4096)
                    if not chunk:
                        break
                    seen += chunk
            except OSError:
                pass
        assert b"PING" in seen and b"Stale Connection" in seen, seen
        assert not disconnected.is_set()
        assert c.is_connected()
        c.flush(timeout=2)


def test_slow_consumer_is_reported_once_per_episode(nats_server):
    errors = []
    got_error = threading.Event()

    def on_error(conn, exc):
        errors.append(exc)
        got_error.set()

    with connect(nats_server.url, on_error=on_error) as c:
        sub = c.subscribe("flood", pending_msgs_limit=10)
        for i in range(50):
            c.publish("flood", str(i).encode())
        c.flush()
        assert got_error.wait(5)
        assert _wait_for(lambda: sub.dropped == 40, 5)
        assert len(errors) == 1 and isinstance(errors[0], SlowConsumerError)
        assert errors[0].subject == "flood"
        assert [sub.next_msg(timeout=1).payload for _ in range(10)] == [str(i).encode() for i in range(10)]
        assert c.is_connected()
