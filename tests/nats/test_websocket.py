"""NATS over WebSocket (``ws://``, ``wss://``): the NATS layer on a real nats-server's websocket
listener, and the faults only a scripted server produces (tests/nats/ws_fake.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Callable, Iterator, List

import pytest
from ws_fake import FakeWsServer
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong

from memphis_sync.broker.cluster import NatsCluster
from memphis_sync.broker.server import NatsServer
from memphis_sync.errors import (
    ConnectTimeout,
    MemphisConnectError,
    PayloadTooLargeError,
    RemoteProtocolError,
    WebSocketUpgradeError,
)
from memphis_sync.nats.connection import ConnectionStatus, ReconnectPolicy, ServerAddress, TlsOptions, connect
from memphis_sync.testing import wait_until

FAST = ReconnectPolicy(wait=0.05, jitter=0.0, max_attempts=-1)


@pytest.fixture
def ws_server(nats_server_factory: Callable[..., NatsServer]) -> NatsServer:
    return nats_server_factory(websocket_port=0, max_payload=64 * 1024)


@pytest.fixture
def fake() -> Iterator[FakeWsServer]:
    server = FakeWsServer()
    try:
        yield server
    finally:
        server.close()


def _ws(server: NatsServer) -> str:
    return f"ws://127.0.0.1:{server.websocket_port}"


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, url, port, tls, path",
    [
        ("ws://broker", "ws://broker:80", 80, False, "/"),
        ("wss://broker.example.com", "wss://broker.example.com:443", 443, True, "/"),
        ("ws://127.0.0.1:7770", "ws://127.0.0.1:7770", 7770, False, "/"),
        ("WSS://[::1]:8443/nats?x=1", "wss://[::1]:8443/nats?x=1", 8443, True, "/nats?x=1"),
    ],
)
def test_websocket_urls_parse(text: str, url: str, port: int, tls: bool, path: str) -> None:
    server = ServerAddress.parse(text)
    assert (server.websocket, server.url, server.port, server.tls, server.path) == (True, url, port, tls, path)
    assert not ServerAddress.parse("nats://broker").websocket  # positive control


# -- the NATS layer over a real nats-server -------------------------------------------------------


@pytest.mark.integration
def test_publish_subscribe_request_headers_over_websocket(ws_server: NatsServer) -> None:
    with connect(_ws(ws_server)) as c:
        assert repr(c).startswith(f"<Connection {_ws(ws_server)} CONNECTED")
        sub = c.subscribe("ws.>")
        c.publish("ws.plain", b"hello")
        c.publish("ws.hdr", b"with headers", headers={"k": "v", "Multi": ["a", "b"]})
        first, second = sub.next_msg(timeout=2), sub.next_msg(timeout=2)
        assert (first.subject, first.payload, first.headers) == ("ws.plain", b"hello", None)
        assert second.payload == b"with headers" and second.headers["k"] == "v"
        assert second.headers.get_all("Multi") == ["a", "b"]
        c.subscribe("svc", callback=lambda msg: c.publish(msg.reply, msg.payload[::-1]))
        assert c.request("svc", b"abc", timeout=2).payload == b"cba"
        big = bytes(range(256)) * 200  # 51 200 bytes: several TCP segments, one frame each way
        assert c.request("svc", big, timeout=2).payload == big[::-1]
        for i in range(2000):  # a burst: many NATS frames per WebSocket message
            c.publish("ws.burst", str(i).encode())
        c.flush(timeout=5)
        got = [sub.next_msg(timeout=2).payload for _ in range(2000)]
        assert got == [str(i).encode() for i in range(2000)]


@pytest.mark.integration
def test_max_payload_over_websocket(ws_server: NatsServer) -> None:
    with connect(_ws(ws_server)) as c:
        assert c.max_payload == 64 * 1024
        sub = c.subscribe("mp")
        c.publish("mp", b"x" * (64 * 1024))  # exactly the limit goes through
        assert len(sub.next_msg(timeout=2).payload) == 64 * 1024
        with pytest.raises(PayloadTooLargeError):
            c.publish("mp", b"x" * (64 * 1024 + 1))
        c.publish("mp", b"still usable")
        assert sub.next_msg(timeout=2).payload == b"still usable"


@pytest.mark.integration
def test_reconnect_after_a_server_restart_over_websocket(ws_server: NatsServer) -> None:
    events: List[str] = []
    c = connect(_ws(ws_server), reconnect=FAST, on_reconnected=lambda conn: events.append("reconnected"))
    try:
        sub = c.subscribe("resume")
        c.publish("resume", b"before")
        assert sub.next_msg(timeout=2).payload == b"before"
        ws_server.stop()
        wait_until(lambda: c.status is ConnectionStatus.RECONNECTING, 5, "the disconnect")
        for i in range(3):
            c.publish("resume", f"buffered-{i}".encode())
        ws_server.start()  # same websocket port
        assert [sub.next_msg(timeout=10).payload for _ in range(3)] == [b"buffered-0", b"buffered-1", b"buffered-2"]
        wait_until(lambda: events == ["reconnected"], 5, "the reconnected callback")
        assert c.describe_server() == _ws(ws_server)
        c.publish("resume", b"after")
        assert sub.next_msg(timeout=2).payload == b"after"
    finally:
        c.close()


@pytest.mark.integration
def test_wss_with_certificates_made_in_the_test(nats_server_factory: Callable[..., NatsServer], tls_certs) -> None:
    server = nats_server_factory(websocket_port=0, tls=tls_certs.server_tls(verify=False))
    url = f"wss://localhost:{server.websocket_port}"
    with connect(url, tls=TlsOptions(ca_file=str(tls_certs.ca_pem))) as c:
        sub = c.subscribe("secure")
        c.publish("secure", b"over wss")
        assert sub.next_msg(timeout=2).payload == b"over wss"
        assert c.describe_server() == url
    # positive control: the same server, verified against the system CAs, is refused
    with pytest.raises(MemphisConnectError, match="certificate verify failed"):
        connect(url, reconnect=ReconnectPolicy(enabled=False))


@pytest.mark.integration
def test_mutual_tls_over_wss(nats_server_factory: Callable[..., NatsServer], tls_certs) -> None:
    server = nats_server_factory(websocket_port=0, tls=tls_certs.server_tls(verify=True))
    url = f"wss://127.0.0.1:{server.websocket_port}"
    tls = TlsOptions(ca_file=str(tls_certs.ca_pem), cert_file=str(tls_certs.client_cert), key_file=str(tls_certs.client_key))
    with connect(url, tls=tls) as c:
        c.flush(timeout=2)
    with pytest.raises(MemphisConnectError):  # no client certificate
        connect(url, tls=TlsOptions(ca_file=str(tls_certs.ca_pem)))


@pytest.mark.integration
def test_a_pool_mixing_schemes_fails_over_between_them(nats_server_factory: Callable[..., NatsServer], unused_port: int) -> None:
    server = nats_server_factory(websocket_port=0)
    with connect([f"ws://127.0.0.1:{unused_port}", server.url]) as c:
        assert c.describe_server() == server.url
    with connect([f"nats://127.0.0.1:{unused_port}", _ws(server)], reconnect=FAST) as c:
        assert c.describe_server() == _ws(server)
        sub = c.subscribe("mixed")
        server.stop()
        wait_until(lambda: not c.is_connected(), 5, "the disconnect")
        server.start()
        wait_until(c.is_connected, 10, "the reconnect to the websocket server")
        assert c.describe_server() == _ws(server)
        c.publish("mixed", b"back")
        assert sub.next_msg(timeout=2).payload == b"back"


@pytest.mark.integration
def test_servers_discovered_over_websocket_are_websocket_servers(tmp_path) -> None:
    cluster = NatsCluster(2, store_root=tmp_path / "cluster", websocket_port=0, jetstream=False)
    try:
        cluster.start()
        first, second = cluster.nodes
        found = threading.Event()
        with connect(_ws(first), on_discovered_server=lambda conn: found.set()) as c:
            wait_until(lambda: _ws(second) in c.servers, 10, f"{_ws(second)} in the pool")
            assert second.url not in c.servers  # the NATS port of a websocket peer is not gossiped
            first.stop()
            wait_until(lambda: c.is_connected() and c.describe_server() == _ws(second), 15, "the failover to the discovered websocket server")
            c.flush(timeout=2)
    finally:
        cluster.close()


# -- faults from a scripted server ---------------------------------------------------------------


@pytest.mark.parametrize("status, phrase", [(403, "Forbidden"), (404, "Not Found")])
def test_an_http_error_on_the_upgrade_is_a_clear_connect_error(status: int, phrase: str) -> None:
    server = FakeWsServer(reject=status)
    try:
        with pytest.raises(WebSocketUpgradeError, match=f"HTTP {status} {phrase}: go away") as info:
            connect(server.url, reconnect=ReconnectPolicy(enabled=False))
        assert info.value.status_code == status
        assert isinstance(info.value, MemphisConnectError)
        (request,) = server.requests
        assert (request.host, request.target) == (f"127.0.0.1:{server.port}", "/")
    finally:
        server.close()


@pytest.mark.integration
def test_after_an_http_error_the_next_server_of_the_pool_is_tried(ws_server: NatsServer) -> None:
    refusing = FakeWsServer(reject=403)
    try:
        with connect([refusing.url, _ws(ws_server)]) as c:
            assert c.describe_server() == _ws(ws_server)
            c.flush(timeout=2)
        assert refusing.requests  # positive control: the refusing server was asked first
    finally:
        refusing.close()


def test_an_answer_that_is_not_http_is_a_connect_error(nats_server_factory: Callable[..., NatsServer]) -> None:
    server = nats_server_factory(jetstream=False)
    with pytest.raises(MemphisConnectError, match="not a websocket upgrade"):
        connect(f"ws://127.0.0.1:{server.port}", reconnect=ReconnectPolicy(enabled=False))  # the NATS port: INFO, not HTTP


def test_no_answer_to_the_upgrade_is_a_connect_timeout() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(ConnectTimeout, match="websocket upgrade .* no answer in time"):
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}", connect_timeout=0.3, reconnect=ReconnectPolicy(enabled=False))


def test_fragmented_frames_and_pings_from_the_server(fake: FakeWsServer) -> None:
    with connect(fake.url) as c:
        sub = c.subscribe("frag")
        frame = b"MSG frag 1 11\r\nhello world\r\nMSG frag 1 3\r\nbye\r\n"
        # one NATS frame split over three WebSocket frames, a ping frame between two fragments,
        # and the next NATS frame sharing the last fragment
        fake.send(
            BytesMessage(data=frame[:5], message_finished=False),
            Ping(payload=b"are you there"),
            BytesMessage(data=frame[5:20], message_finished=False),
            BytesMessage(data=frame[20:], message_finished=True),
        )
        assert sub.next_msg(timeout=2).payload == b"hello world"
        assert sub.next_msg(timeout=2).payload == b"bye"
        wait_until(lambda: any(isinstance(e, Pong) for e in fake.received), 5, "the pong")
        (pong,) = [e for e in fake.received if isinstance(e, Pong)]
        assert pong.payload == b"are you there"
        c.flush(timeout=2)  # still in sync after the control frame


def test_a_close_frame_from_the_server_is_answered_and_the_client_reconnects(fake: FakeWsServer) -> None:
    events: List[str] = []
    with connect(fake.url, reconnect=FAST, on_reconnected=lambda conn: events.append("reconnected")) as c:
        fake.send(CloseConnection(code=1001, reason="going away"))
        wait_until(lambda: any(isinstance(e, CloseConnection) for e in fake.received), 5, "the client's close frame")
        (close,) = [e for e in fake.received if isinstance(e, CloseConnection)]
        assert close.code == 1001  # the close handshake echoes the code
        wait_until(lambda: events == ["reconnected"], 10, "the reconnect")
        assert fake.accepted == 2
        c.flush(timeout=2)


def test_a_malformed_frame_is_a_protocol_error_and_the_client_reconnects(fake: FakeWsServer) -> None:
    errors: List[BaseException] = []
    with connect(fake.url, reconnect=FAST, on_disconnected=lambda conn: errors.append(conn.last_error)) as c:
        fake.send_raw(b"\x83\x00")  # opcode 3 is reserved (RFC 6455 5.2)
        wait_until(lambda: fake.accepted == 2 and c.is_connected(), 10, "the reconnect")
        assert isinstance(errors[0], RemoteProtocolError) and "bad frame" in str(errors[0])
        closes = [e for e in fake.received if isinstance(e, CloseConnection)]
        assert closes and closes[0].code == 1002  # we told the server why


def test_closing_sends_a_close_frame(fake: FakeWsServer) -> None:
    c = connect(fake.url)
    c.flush(timeout=2)
    assert not any(isinstance(e, CloseConnection) for e in fake.received)  # positive control
    c.close()
    wait_until(lambda: any(isinstance(e, CloseConnection) for e in fake.received), 5, "the close frame")
    (close,) = [e for e in fake.received if isinstance(e, CloseConnection)]
    assert close.code == 1000


# -- a third-party peer: nats-py over WebSocket, on the same broker ------------------------------------

# nats-py passes aiohttp a float timeout, which aiohttp >= 3.10 deprecates (not ours to fix)
_NATS_PY_WARNING = "ignore:parameter 'timeout' of type 'float' is deprecated:DeprecationWarning"
_NATS_PY_OPTIONS = {"connect_timeout": 5, "max_reconnect_attempts": 0, "allow_reconnect": False}


@pytest.mark.integration
@pytest.mark.filterwarnings(_NATS_PY_WARNING)
def test_nats_py_over_websocket_talks_to_memphis_sync(ws_server: NatsServer) -> None:
    pytest.importorskip("aiohttp", reason="nats-py's websocket transport needs aiohttp (the test extra installs it)")
    import nats

    with connect(ws_server.url) as ours:  # memphis-sync over TCP; nats-py over WebSocket
        sub = ours.subscribe("from.py")
        ours.subscribe("to.py", callback=lambda msg: ours.publish(msg.reply, b"sync:" + msg.payload))
        ours.flush(timeout=2)

        async def peer() -> bytes:
            nc = await nats.connect(_ws(ws_server), **_NATS_PY_OPTIONS)
            try:
                await nc.publish("from.py", b"hi from nats-py", headers={"h": "1"})
                reply = await nc.request("to.py", b"ping", timeout=2)
                return reply.data
            finally:
                await nc.close()

        assert asyncio.run(peer()) == b"sync:ping"
        msg = sub.next_msg(timeout=2)
        assert (msg.payload, msg.headers["h"]) == (b"hi from nats-py", "1")


@pytest.mark.integration
@pytest.mark.filterwarnings(_NATS_PY_WARNING)
def test_memphis_sync_over_websocket_talks_to_nats_py(ws_server: NatsServer) -> None:
    pytest.importorskip("aiohttp", reason="nats-py's websocket transport needs aiohttp (the test extra installs it)")
    import nats

    received: List[bytes] = []

    async def peer(ready: threading.Event, done: threading.Event) -> None:
        nc = await nats.connect(_ws(ws_server), **_NATS_PY_OPTIONS)
        try:
            async def on_msg(msg) -> None:
                received.append(msg.data)
                if msg.reply:
                    await nc.publish(msg.reply, b"py:" + msg.data)

            await nc.subscribe("to.py", cb=on_msg)
            await nc.flush()
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.01)
        finally:
            await nc.close()

    ready, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(peer(ready, done)), name="nats-py-peer")
    thread.start()
    try:
        assert ready.wait(10)
        with connect(_ws(ws_server)) as ours:
            assert ours.request("to.py", b"hello", timeout=5).payload == b"py:hello"
            ours.publish("to.py", b"x" * 60_000)
            ours.flush(timeout=2)
            wait_until(lambda: len(received) == 2, 5, "nats-py's second message")
        assert received == [b"hello", b"x" * 60_000]
    finally:
        done.set()
        thread.join(10)
