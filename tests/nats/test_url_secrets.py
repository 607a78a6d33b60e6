"""No password or token of a server URL is ever shown: not in an error (its str, repr, args
and the whole __cause__/__context__ chain), a repr, or a log record (captured at DEBUG), on
every path that formats a URL: bad addresses, refused and unreachable servers, non-NATS
peers, reconnects, servers discovered from INFO, and the Memphis layer's host."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Iterable, Iterator, List, Sequence

import pytest
from fake_peers import fake_peer, sends

import memphis_sync
from memphis_sync.errors import MemphisError
from memphis_sync.nats.connection import Connection, ReconnectPolicy, ServerAddress, connect
from memphis_sync.nats.servers import redact_url
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

SECRET = "S3CRET"
#: the secret and its pieces/encodings that a half-redaction could leave behind
SECRET_FORMS = (SECRET, "S3%43RET", "S3/CRET", "CRET")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: List[int] = []
    todo: List[BaseException] = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.append(id(item))
        yield item
        todo.extend(e for e in (item.__cause__, item.__context__) if e is not None)


def shown_texts(exc: BaseException = None, records: Iterable[logging.LogRecord] = (), objects: Sequence[object] = ()) -> List[str]:
    """Every text a user could see: exception chain, log records (with their exc_info), reprs."""
    texts: List[str] = []
    if exc is not None:
        for item in _chain(exc):
            texts += [str(item), repr(item), *map(repr, item.args)]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        texts.append(formatter.format(record))
        if record.exc_info and record.exc_info[1] is not None:
            texts += shown_texts(record.exc_info[1])
    texts += [repr(o) for o in objects] + [str(o) for o in objects]
    return texts


def assert_no_secret(exc: BaseException = None, records: Iterable[logging.LogRecord] = (), objects: Sequence[object] = ()) -> None:
    texts = shown_texts(exc, list(records), objects)
    assert texts, "nothing to check"
    leaks = [t for t in texts if any(form in t for form in SECRET_FORMS)]
    assert not leaks, f"the secret is shown: {leaks}"


def test_the_checker_finds_a_secret():
    # positive control for every test below
    with pytest.raises(AssertionError):
        assert_no_secret(ValueError(f"nats://root:{SECRET}@host"))
    inner = ValueError(f"port {SECRET}")
    try:
        try:
            raise inner
        except ValueError:
            raise MemphisError("outer")  # noqa: B904 - the implicit context is the point
    except MemphisError as outer:
        with pytest.raises(AssertionError):
            assert_no_secret(outer)
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "to %s", (f"nats://{SECRET}@h",), None)
    with pytest.raises(AssertionError):
        assert_no_secret(records=[record])


BAD_URLS = [
    f"nats://root:{SECRET}@127.0.0.1:notaport",  # bad port
    f"nats://{SECRET}@127.0.0.1:notaport",  # token form
    f"nats://root:{SECRET}@127.0.0.1:99999",  # port out of range
    f"root:{SECRET}@127.0.0.1:notaport",  # no scheme
    f"{SECRET}@127.0.0.1:x",
    f"http://root:{SECRET}@127.0.0.1:4222",  # bad scheme
    f"ws+bad://{SECRET}@127.0.0.1:4222",
    f"nats://root:{SECRET}@:4222",  # no host
    f"nats://{SECRET}@",
    f"tls://root:{SECRET}@",
    f"nats://root:{SECRET}@[::1",  # malformed IPv6
    f"nats://root:{SECRET}@[not-an-ip]:4222",
    "nats://root:S3/CRET@127.0.0.1:4222",  # a "/" in the password: urlsplit sees the port "S3"
    "nats://root:S3%43RET@127.0.0.1:notaport",  # percent-encoded
    f"nats://root:{SECRET}@x@127.0.0.1:bad",  # an "@" in the password
    f"nats://root:{SECRET}@127.0.0.1:4222,nats://{SECRET}@:1",  # the second of a list
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_server_addresses_do_not_show_the_secret(url, caplog):
    with caplog.at_level(logging.DEBUG):
        for call in (lambda: memphis_sync.nats_connect(url), lambda: Connection(url), lambda: Connection([url])):
            with pytest.raises(memphis_sync.LocalProtocolError) as info:
                call()
            assert "server address" in str(info.value) or "scheme" in str(info.value)
            assert "***@" in str(info.value)  # the address is still shown, redacted
            assert_no_secret(info.value, caplog.records)
        if "," not in url:
            with pytest.raises(memphis_sync.LocalProtocolError) as info:
                ServerAddress.parse(url)
            assert_no_secret(info.value, caplog.records)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("nats://root:S3CRET@host:4222", "nats://root:***@host:4222"),
        ("nats://S3CRET@host:4222", "nats://***@host:4222"),
        ("root:S3CRET@host", "root:***@host"),
        ("S3CRET@host", "***@host"),
        ("nats://root:S3CRET@x@host", "nats://root:***@host"),
        ("nats://root:S3/CRET@host", "nats://root:***@host"),
        ("nats://ro/ot:S3CRET@host", "nats://***@host"),
        ("nats://host:4222", "nats://host:4222"),
        ("tls://[::1]:4222", "tls://[::1]:4222"),
        ("", ""),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_server_address_repr_and_urls_hide_the_secret():
    with_password = ServerAddress.parse(f"nats://root:{SECRET}@127.0.0.1:4222")
    with_token = ServerAddress.parse(f"tls://{SECRET}@127.0.0.1:4222")
    assert with_password.password == SECRET and with_token.token == SECRET  # parsed, positive control
    assert repr(with_password) == "ServerAddress('nats://root:***@127.0.0.1:4222', discovered=False)"
    assert repr(with_token) == "ServerAddress('tls://***@127.0.0.1:4222', discovered=False)"
    assert with_password.url == "nats://127.0.0.1:4222"
    assert_no_secret(objects=[with_password, with_token, [with_password], with_token.url, with_token.redacted_url])


def test_refused_unreachable_and_non_nats_servers_do_not_show_the_secret(nats_server_factory, unused_port, caplog):
    server = nats_server_factory(users=[{"user": "root", "password": "right-password"}])
    peer_info = b'INFO {"server_id":"fake"}\r\nWHAT\r\n'
    with caplog.at_level(logging.DEBUG), fake_peer(sends(b"HTTP/1.1 400 Bad Request\r\n\r\n")) as http, \
            fake_peer(sends(peer_info)) as garbage:
        targets = [
            f"nats://root:{SECRET}@127.0.0.1:{server.port}",  # wrong password: refused
            f"nats://{SECRET}@127.0.0.1:{server.port}",  # a token where a user is needed
            f"nats://root:{SECRET}@127.0.0.1:{unused_port}",  # nothing listens
            f"nats://root:{SECRET}@127.0.0.1:{http.port}",  # not a NATS server
            f"nats://{SECRET}@127.0.0.1:{garbage.port}",
        ]
        for url in targets:
            with pytest.raises(MemphisError) as info:
                connect(url, connect_timeout=2)
            assert_no_secret(info.value, caplog.records)
        policy = ReconnectPolicy(max_attempts=3, wait=0.01, jitter=0)
        with pytest.raises(MemphisError) as info:
            connect(targets, connect_timeout=2, retry_on_failed_connect=True, reconnect=policy)
        assert_no_secret(info.value, caplog.records)
    assert len(caplog.records) > 5  # positive control: there were records to check


def test_reconnect_logs_reprs_and_status_do_not_show_the_secret(nats_server_factory, caplog):
    server = nats_server_factory(users=[{"user": "root", "password": SECRET}])
    url = f"nats://root:{SECRET}@127.0.0.1:{server.port}"
    reconnected = threading.Event()
    with caplog.at_level(logging.DEBUG):
        with connect(url, reconnect=ReconnectPolicy(wait=0.05, jitter=0), on_reconnected=lambda c: reconnected.set()) as conn:
            assert conn.is_connected()  # the credentials from the URL worked
            server.restart()
            wait_until(reconnected.is_set, 10, "the reconnect")
            sub = conn.subscribe("s")
            conn.publish("s", b"x")
            assert sub.next_msg(timeout=2).payload == b"x"
            assert_no_secret(objects=[conn, conn.servers, conn.connected_url, conn.status, sub])
    assert any("disconnected" in r.getMessage() for r in caplog.records)  # the reconnect was logged
    assert_no_secret(records=caplog.records)


def _nats_like(info: bytes):
    """A minimal NATS server: sends ``info``, answers every PING with a PONG."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(info)
        conn.settimeout(0.05)
        while not stop.is_set():
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            for _ in range(data.count(b"PING\r\n")):
                conn.sendall(b"PONG\r\n")

    return behave


def test_discovered_servers_with_credentials_are_redacted(caplog):
    urls = [f"root:{SECRET}@127.0.0.1:notaport", f"{SECRET}@127.0.0.2:4333", f"nats://root:{SECRET}@127.0.0.3:4444"]
    info = b'INFO {"server_id":"fake","max_payload":1048576,"connect_urls":%s}\r\n' % str(urls).replace("'", '"').encode()
    with caplog.at_level(logging.DEBUG), fake_peer(_nats_like(info)) as peer:
        with connect(peer.url, reconnect=ReconnectPolicy(enabled=False)) as conn:
            assert len(conn.servers) == 3  # two of them were added: positive control
            assert_no_secret(objects=[conn, conn.servers])
    assert any("ignoring bad connect_url" in r.getMessage() for r in caplog.records)
    assert_no_secret(records=caplog.records)


@pytest.mark.parametrize("host", [f"root:{SECRET}@127.0.0.1", f"{SECRET}@127.0.0.1", f"https://root:{SECRET}@broker"])
def test_memphis_host_with_credentials_is_refused_without_showing_them(host, caplog):
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(memphis_sync.MemphisConnectError, match="without credentials") as info:
            memphis_sync.connect(host, "root", connection_token="t")
    assert "***@" in str(info.value)
    assert_no_secret(info.value, caplog.records)


def test_memphis_password_is_never_shown(memphis_broker_factory, unused_port, caplog):
    broker = memphis_broker_factory(password=SECRET)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(memphis_sync.MemphisConnectError) as info:
            memphis_sync.connect("127.0.0.1", "root", password=SECRET, port=unused_port, timeout_ms=500)
        assert_no_secret(info.value, caplog.records)
        with pytest.raises(memphis_sync.MemphisConnectError) as info:
            memphis_sync.connect("127.0.0.1", "root", password=SECRET + "x", port=broker.port, timeout_ms=2000)
        assert_no_secret(info.value, caplog.records)
        client = memphis_sync.connect("127.0.0.1", "root", password=SECRET, port=broker.port)
        try:
            assert client.is_connected()
            assert_no_secret(objects=[client, client.connection, client.connection.servers])
        finally:
            client.close()
    assert_no_secret(records=caplog.records)
