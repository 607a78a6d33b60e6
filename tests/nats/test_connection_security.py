"""TLS, mutual TLS, token and user/password authentication against a real nats-server."""

from __future__ import annotations

import time

import pytest

from memphis_sync.errors import AuthorizationError, MemphisConnectError
from memphis_sync.nats.connection import ReconnectPolicy, TlsOptions, connect
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


def _roundtrip(conn) -> None:
    sub = conn.subscribe("sec")
    conn.publish("sec", b"secret")
    assert sub.next_msg(timeout=2).payload == b"secret"


def test_tls_with_server_verification(tls_nats_server, tls_certs):
    with connect(tls_nats_server.url, tls=TlsOptions(ca_file=str(tls_certs.ca_pem))) as c:
        _roundtrip(c)
        assert c.server_info.tls_required


def test_tls_server_stop_is_a_disconnect_and_the_client_reconnects(tls_nats_server, tls_certs):
    # nats-server ends TLS with close_notify: the reader must see the end of the stream (it
    # used to spin on the empty reads, connected forever, at full CPU)
    with connect(tls_nats_server.url, tls=TlsOptions(ca_file=str(tls_certs.ca_pem)), reconnect=ReconnectPolicy(wait=0.05)) as c:
        sub = c.subscribe("sec")
        tls_nats_server.stop()
        wait_until(lambda: not c.is_connected(), 5, "the disconnect")
        tls_nats_server.start()
        wait_until(c.is_connected, 10, "the reconnect")
        c.publish("sec", b"again")
        assert sub.next_msg(timeout=2).payload == b"again"


def test_tls_required_by_server_is_honoured_without_tls_scheme(tls_nats_server, tls_certs):
    url = f"nats://127.0.0.1:{tls_nats_server.port}"
    with connect(url, tls=TlsOptions(ca_file=str(tls_certs.ca_pem))) as c:
        _roundtrip(c)


def test_tls_untrusted_server_is_refused(tls_nats_server):
    # the system store does not trust the test CA: verification must fail, not pass silently
    with pytest.raises(MemphisConnectError):
        connect(tls_nats_server.url)


def test_tls_hostname_is_checked(tls_nats_server, tls_certs):
    with pytest.raises(MemphisConnectError):
        connect(tls_nats_server.url, tls=TlsOptions(ca_file=str(tls_certs.ca_pem), hostname="not-the-server.example"))


def test_mutual_tls(mtls_nats_server, tls_certs):
    opts = TlsOptions(
        ca_file=str(tls_certs.ca_pem), cert_file=str(tls_certs.client_cert), key_file=str(tls_certs.client_key)
    )
    with connect(mtls_nats_server.url, tls=opts) as c:
        _roundtrip(c)
    with pytest.raises(MemphisConnectError):
        connect(mtls_nats_server.url, tls=TlsOptions(ca_file=str(tls_certs.ca_pem)))


def test_token_auth(nats_server_factory):
    server = nats_server_factory(token="s3cret")
    with connect(server.url, token="s3cret") as c:
        _roundtrip(c)
    with connect(f"nats://s3cret@127.0.0.1:{server.port}") as c:  # token in the URL
        _roundtrip(c)
    t0 = time.monotonic()
    with pytest.raises(AuthorizationError):
        connect(server.url, token="wrong")
    with pytest.raises(AuthorizationError):
        connect(server.url)
    assert time.monotonic() - t0 < 3


def test_user_password_auth(nats_server_factory):
    server = nats_server_factory(users=[{"user": "alice", "password": "pa ss:w@rd"}])
    with connect(server.url, user="alice", password="pa ss:w@rd") as c:
        _roundtrip(c)
    with pytest.raises(AuthorizationError):
        connect(server.url, user="alice", password="nope")
    with pytest.raises(AuthorizationError):
        connect(server.url, user="mallory", password="pa ss:w@rd")


def test_wrong_credentials_do_not_retry_forever(nats_server_factory):
    server = nats_server_factory(token="right")
    t0 = time.monotonic()
    with pytest.raises(AuthorizationError):
        connect(server.url, token="wrong", retry_on_failed_connect=True,
                reconnect=ReconnectPolicy(wait=0.01, jitter=0, max_attempts=-1))
    assert time.monotonic() - t0 < 3


def test_conflicting_credentials_are_refused(nats_server):
    with pytest.raises(ValueError):
        connect(nats_server.url, token="a", user="b", password="c")
    with pytest.raises(ValueError):
        connect(nats_server.url, user="b")
