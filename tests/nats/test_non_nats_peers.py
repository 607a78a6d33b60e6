"""A peer that is not a NATS server fails the handshake as a connect error that says so (with
an excerpt of what it sent), promptly, and the next server of the pool is tried, on the first
connect and on reconnect. The peers are real sockets on free loopback ports (fake_peers.py),
plus the real HTTP server of nats-server's monitoring port."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Iterator, Tuple

import pytest
from fake_peers import FakePeer, closes_at_once, endless_line, fake_peer, sends, silent, tls_server

from memphis_sync.errors import ConnectTimeout, MemphisConnectError
from memphis_sync.nats.connection import ReconnectPolicy, connect
from memphis_sync.nats.handshake import excerpt
from memphis_sync.nats.protocol import MAX_JSON_LINE
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

#: (behaviour, error class, texts the message must hold)
GREETERS = {
    "http-response": (
        sends(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nbad request"),
        ["is not a NATS server", "a NATS server starts with INFO", r"'HTTP/1.1 400 Bad Request\r\nContent-Type: text/pla..."],
    ),
    "garbage": (sends(b"\x00\xff\x16\x03garbage"), ["is not a NATS server", r"'\x00\xff\x16\x03garbage'"]),
    "endless-line": (endless_line(b"AAAA"), ["is not a NATS server", "a NATS server starts with INFO; received 'AAAA"]),
    "endless-info-line": (
        endless_line(b'INFO {"server_id":"'),
        ["is not a NATS server", f"control line longer than {MAX_JSON_LINE} bytes and no CRLF yet", "while we waited for INFO"],
    ),
    "info-not-json": (sends(b"INFO <html>\r\n"), ["is not a NATS server", "invalid INFO JSON", "b'<html>'"]),
    "ping-first": (sends(b"PING\r\n"), ["is not a NATS server", "a NATS server starts with INFO", r"'PING\r\n'"]),
    "closes-at-once": (closes_at_once, ["is not a NATS server", "closed the connection before sending INFO", "received nothing"]),
    "ssh-banner": (sends(b"SSH-2.0-OpenSSH_9.6\r\n"), ["is not a NATS server", r"'SSH-2.0-OpenSSH_9.6\r\n'"]),
}


@pytest.fixture(params=sorted(GREETERS))
def greeter(request: pytest.FixtureRequest) -> Iterator[Tuple[FakePeer, list]]:
    behave, texts = GREETERS[request.param]
    with fake_peer(behave) as peer:
        yield peer, texts


def test_a_peer_that_is_not_nats_fails_promptly_as_a_connect_error(greeter):
    peer, texts = greeter
    t0 = time.monotonic()
    with pytest.raises(MemphisConnectError) as info:
        connect(peer.url, connect_timeout=5, reconnect=ReconnectPolicy(enabled=False))
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert not isinstance(info.value, ConnectTimeout)
    assert elapsed < 2, f"took {elapsed:.2f} s (the connect_timeout is 5 s): {message}"
    assert peer.url in message
    for text in texts:
        assert text in message
    assert "parser unusable" not in message
    assert peer.accepted == 1


def test_the_next_server_of_the_pool_is_tried_after_a_non_nats_peer(greeter, nats_server):
    peer, _ = greeter
    with connect([peer.url, nats_server.url], connect_timeout=5) as c:
        assert c.connected_url == nats_server.url
        assert peer.accepted == 1  # positive control: the fake peer really was tried first
        sub = c.subscribe("after.fake")
        c.publish("after.fake", b"ok")
        assert sub.next_msg(timeout=2).payload == b"ok"


def test_a_silent_tls_server_times_out_with_a_hint_and_the_pool_moves_on(tls_certs, nats_server):
    # we speak plain NATS; a TLS server waits for our ClientHello and sends nothing
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls_certs.server_cert), str(tls_certs.server_key))
    with fake_peer(tls_server(context)) as peer:
        t0 = time.monotonic()
        with pytest.raises(ConnectTimeout) as info:
            connect(peer.url, connect_timeout=0.3)
        assert time.monotonic() - t0 < 2
        assert "no INFO from" in str(info.value) and "TLS-only or non-NATS port" in str(info.value)
        with connect([peer.url, nats_server.url], connect_timeout=0.3) as c:
            assert c.connected_url == nats_server.url
        assert peer.accepted == 2


def test_nats_servers_http_monitoring_port_is_not_a_nats_server(nats_server):
    # a real HTTP server (nats-server's monitoring port) says nothing until it gets a request
    http_port = int(nats_server.monitoring_url.rsplit(":", 1)[1])
    url = f"nats://127.0.0.1:{http_port}"
    with pytest.raises(ConnectTimeout, match="TLS-only or non-NATS port"):
        connect(url, connect_timeout=0.3)
    with connect([url, nats_server.url], connect_timeout=0.3) as c:
        assert c.connected_url == nats_server.url


def test_garbage_after_a_valid_info_is_a_connect_error_too(nats_server):
    info = b'INFO {"server_id":"fake","version":"2.10.0","max_payload":1048576}\r\n'
    with fake_peer(sends(info + b"WHAT IS THIS\r\n")) as peer:
        with pytest.raises(MemphisConnectError) as exc:
            connect(peer.url, connect_timeout=5)
        message = str(exc.value)
        assert "is not a NATS server" in message and "unknown protocol operation" in message
        assert "while we waited for PONG" in message and "parser unusable" not in message
        with connect([peer.url, nats_server.url], connect_timeout=5) as c:
            assert c.connected_url == nats_server.url


def test_reconnect_skips_a_non_nats_peer_like_an_unreachable_server(nats_server_factory, caplog):
    first, second = nats_server_factory(), nats_server_factory()
    reconnected = []
    with fake_peer(sends(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as peer:
        policy = ReconnectPolicy(max_attempts=10, wait=0.05, jitter=0)
        with caplog.at_level(logging.DEBUG, logger="memphis_sync"):
            with connect(
                [first.url, peer.url, second.url], reconnect=policy, ignore_discovered_servers=True,
                on_reconnected=lambda conn: reconnected.append(conn.connected_url),
            ) as c:
                assert peer.accepted == 0
                first.stop()
                wait_until(lambda: reconnected, 10, "the reconnect")
                assert reconnected == [second.url]
                assert peer.accepted >= 1  # it was tried on the way, and skipped
                assert c.is_connected() and not c.is_closed()
                sub = c.subscribe("after.reconnect")
                c.publish("after.reconnect", b"ok")
                assert sub.next_msg(timeout=2).payload == b"ok"
    assert any("is not a NATS server" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "data, shown",
    [
        (b"HTTP/1.1 200 OK", "'HTTP/1.1 200 OK'"),
        (b"a\r\nb\tc", r"'a\r\nb\tc'"),
        (b"\x00\x7f\xc3\xa9", r"'\x00\x7f\xc3\xa9'"),
        (b"x" * 100, "'" + "x" * 48 + "...'"),
        (b"", "''"),
    ],
)
def test_excerpt_is_short_and_printable(data, shown):
    text = excerpt(data)
    assert text == shown
    assert text.isprintable() and len(text) <= 48 * 4 + 5


def test_a_fake_peer_is_really_listening():
    # positive control for the "accepted" counts above
    with fake_peer(silent) as peer:
        with socket.create_connection(("127.0.0.1", peer.port), timeout=2):
            wait_until(lambda: peer.accepted == 1, 2, "the accept")


def test_writes_after_a_reconnect_are_not_stalled(nats_server_factory):
    # regression: a flusher woken while disconnected left its kick flag set, so after the
    # reconnect every kick was swallowed and nothing was written until the next liveness PING
    # (2 minutes by default): this subscribe + publish then timed out
    first, second = nats_server_factory(), nats_server_factory()
    reconnected = []
    policy = ReconnectPolicy(max_attempts=10, wait=0.05, jitter=0)
    with connect(
        [first.url, second.url], reconnect=policy, ignore_discovered_servers=True,
        on_reconnected=lambda conn: reconnected.append(conn.connected_url),
    ) as c:
        assert c.ping_interval >= 60
        first.stop()
        wait_until(lambda: reconnected, 10, "the reconnect")
        sub = c.subscribe("after.reconnect")
        c.publish("after.reconnect", b"ok")
        assert sub.next_msg(timeout=2).payload == b"ok"
