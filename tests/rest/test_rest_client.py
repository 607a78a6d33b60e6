"""memphis_sync.rest.RestClient against the local broker's REST ingress, with the NATS Memphis API
as the peer on the other side (HTTP in, NATS out; NATS in, HTTP out), and against a small
fault-injecting HTTP server for the retry rules."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from rest_tools import drain, json_schema_file

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.errors import (
    AuthorizationError,
    MemphisConnectError,
    MemphisHeaderError,
    MemphisMessageTypeError,
    MemphisSchemaError,
    MemphisValueError,
    RequestTimeout,
    RestAuthError,
    RestError,
    RestSchemaError,
    RestServerError,
    ServerError,
)
from memphis_sync.rest import RestClient, RestMessage
from memphis_sync.testing import wait_until


@pytest.fixture
def client(rest_broker: LocalBroker) -> Iterator[RestClient]:
    with RestClient(rest_broker.rest_url, "root", connection_token=rest_broker.connection_token) as c:
        yield c


def test_http_in_nats_out(client: RestClient, memphis: memphis_sync.Memphis, station: str) -> None:
    client.produce(station, {"kind": "dict"}, headers={"X-Trace": "t1", "X-Text": "ü€ 日本"})
    client.produce(station, "text é", headers=memphis_sync.Headers({"multi": ["a", "b"]}))
    client.produce(station, b"\x00\xffbytes", msg_id="b-1")
    client.produce(station, b"\x00\xffbytes", msg_id="b-1")  # a repeat: dropped by the broker
    client.produce_batch(station, [{"i": 1}, {"i": 2}], headers={"X-Batch": "yes"})
    msgs = drain(memphis, station)
    assert [bytes(m.get_data()) for m in msgs] == [
        b'{"kind": "dict"}', "text é".encode(), b"\x00\xffbytes", b'{"i":1}', b'{"i":2}',
    ]
    headers = [m.get_headers() for m in msgs]
    assert headers[0]["X-Trace"] == "t1" and headers[0]["Content-Type"] == "application/json"
    assert headers[0]["X-Text"] == "ü€ 日本"  # UTF-8 values survive HTTP
    assert msgs[1].get_all_headers().get_all("multi") == ["a,b"]  # repeated HTTP headers: one, comma-joined
    assert headers[1]["Content-Type"] == "text/plain; charset=utf-8"
    assert headers[2]["Content-Type"] == "application/octet-stream" and headers[2]["msg-id"] == "b-1"
    assert all(h["$memphis_producedBy"] == "rest-gateway" for h in headers)
    assert headers[3]["X-Batch"] == headers[4]["X-Batch"] == "yes"


def test_nats_in_http_out(client: RestClient, memphis: memphis_sync.Memphis, station: str) -> None:
    producer = memphis.producer(station, "nats-side")
    producer.produce(b"\x80binary\x00", headers={"h1": "v1"})
    producer.produce("plain", headers={"h2": "v2"})
    producer.produce({"a": [1, 2]})
    got = client.consume_batch(station, "http-side", batch_size=10, batch_max_wait_time_ms=1000)
    assert [m.get_data() for m in got] == [b"\x80binary\x00", b"plain", b'{"a": [1, 2]}']
    assert got[0].get_headers() == {"h1": "v1"} and got[1].headers == {"h2": "v2"}
    assert not any(k.startswith("$memphis") for m in got for k in m.headers)
    assert client.consume_batch(station, "http-side", batch_max_wait_time_ms=200) == []  # acked
    # another group gets them all, from the start
    assert len(client.consume_batch(station, "other", consumer_group="g2", batch_max_wait_time_ms=1000)) == 3


def test_typed_errors(rest_broker: LocalBroker, client: RestClient, memphis: memphis_sync.Memphis, station: str, tmp_path: Path) -> None:
    memphis.create_schema(f"{station}-s", "json", json_schema_file(tmp_path))
    memphis.station(station)
    memphis.enforce_schema(f"{station}-s", station)
    with pytest.raises(RestSchemaError) as info:
        client.produce(station, {"n": "not a number"})
    assert isinstance(info.value, MemphisSchemaError) and info.value.status == 400
    with pytest.raises(RestSchemaError) as info:
        client.produce_batch(station, [{"n": 1}, {"n": "x"}])
    assert info.value.results is not None and info.value.results[0] is None and "Schema validation" in str(info.value.results[1])
    bad = RestClient(rest_broker.rest_url, "root", connection_token="wrong")
    with pytest.raises(RestAuthError) as auth:
        bad.produce(station, {"n": 1})
    assert isinstance(auth.value, AuthorizationError) and auth.value.status == 401
    with pytest.raises(RestError) as other:
        client.produce(station, b"x", content_type="image/png")
    assert other.value.status == 415 and not isinstance(other.value, (RestServerError, RestSchemaError))
    assert [json.loads(bytes(m.get_data())) for m in drain(memphis, station)] == [{"n": 1}]  # the batch's good one


def test_bad_arguments_send_nothing(client: RestClient, memphis: memphis_sync.Memphis, station: str) -> None:
    for headers in ({"$memphis_x": "1"}, {"bad name": "1"}, {"Authorization": "x"}, {"msg-id": "1"}, {"k": "a\r\nb"}):
        with pytest.raises(MemphisHeaderError):
            client.produce(station, "x", headers=headers)
    with pytest.raises(MemphisMessageTypeError):
        client.produce(station, 3.5)
    with pytest.raises(MemphisValueError):
        client.produce_batch(station, ["not", "dicts"])  # type: ignore[list-item]
    with pytest.raises(MemphisValueError):
        client.consume_batch(station, "c", batch_size=0)
    for kwargs in ({"connection_token": "a", "password": "b"}, {}, {"connection_token": "a", "timeout": 0}):
        with pytest.raises(MemphisValueError):
            RestClient("http://127.0.0.1:1", "root", **kwargs)
    with pytest.raises(MemphisValueError):
        RestClient("ftp://x", "root", connection_token="a")
    client.produce(station, "control")  # positive control: the one message stored
    assert [bytes(m.get_data()) for m in drain(memphis, station)] == [b"control"]


def test_unreachable_gateway(unused_port: int) -> None:
    with RestClient(f"http://127.0.0.1:{unused_port}", "root", connection_token="memphis", retries=1, timeout=2) as c:
        assert c.status() is False
        with pytest.raises(MemphisConnectError):
            c.produce("s", "x")


def test_refreshes_before_expiry_and_logs_in_again(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="memphis_sync.rest")
    client = RestClient(
        rest_broker.rest_url, "root", connection_token=rest_broker.connection_token,
        token_expiry_minutes=0.02, refresh_token_expiry_minutes=0.05,  # 1.2 s and 3 s
    )
    client.produce(station, "first")
    first = client._token
    wait_until(lambda: client._bearer() != first, 5, "a refreshed token")
    assert "REST token refreshed" in caplog.text
    client.produce(station, "after refresh")
    second = client._token
    wait_until(lambda: client._bearer() != second, 5, "another token")
    wait_until(lambda: time.monotonic() > client._refresh_expires, 5, "the refresh token's renewal time")
    client.produce(station, "after a new login")
    assert [bytes(m.get_data()) for m in drain(memphis, station)] == [b"first", b"after refresh", b"after a new login"]


def test_a_refused_token_gets_one_new_login(rest_broker: LocalBroker, client: RestClient, memphis: memphis_sync.Memphis, station: str) -> None:
    client.produce(station, "one")
    client._token = "stale.token.value"  # as after a gateway restart with new secrets
    client.produce(station, "two")
    assert [bytes(m.get_data()) for m in drain(memphis, station)] == [b"one", b"two"]


def test_threads_share_one_client(client: RestClient, memphis: memphis_sync.Memphis, station: str) -> None:
    def work(worker: int) -> None:
        for i in range(15):
            client.produce(station, {"w": worker, "i": i}, msg_id=f"{worker}-{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    got = sorted((json.loads(bytes(m.get_data()))["w"], json.loads(bytes(m.get_data()))["i"]) for m in drain(memphis, station))
    assert got == sorted((w, i) for w in range(8) for i in range(15))

    consumed: List[RestMessage] = []
    lock = threading.Lock()
    for w in range(2):
        client.produce_batch(station, [{"again": w, "i": i} for i in range(30)])

    def take(_: int) -> None:
        while True:
            batch = client.consume_batch(station, "shared", consumer_group="many", batch_size=7, batch_max_wait_time_ms=500)
            if not batch:
                return
            with lock:
                consumed.extend(batch)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(take, range(4)))
    assert len(consumed) == 120 + 60  # each message once to the group: none lost, none twice
    assert len({m.data for m in consumed}) == 180


class _Faulty(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests of each path, then 200."""

    server: Any

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.server.lock:
            self.server.calls.append(self.path)
            failing = self.server.calls.count(self.path) <= self.server.fail
        if self.path == "/auth/authenticate":
            status, body = 200, {"jwt": "t", "expires_in": 60000, "jwt_refresh_token": "r", "refresh_token_expires_in": 60000}
        elif failing:
            status, body = 503, {"success": False, "error": "broker unavailable"}
        else:
            status, body = 200, [] if self.path.endswith("consume/batch") else {"success": True, "error": None}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def faulty() -> Iterator[Tuple[str, Any]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    server.calls, server.lock, server.fail = [], threading.Lock(), 2  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="faulty-gateway")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_retries_only_where_safe(faulty: Tuple[str, Any]) -> None:
    url, server = faulty
    with RestClient(url, "root", connection_token="memphis", retries=2) as c:
        c.produce("idem", "x", msg_id="m-1")  # 503, 503, 200
        assert server.calls.count("/stations/idem/produce/single") == 3
        with pytest.raises(RestServerError) as info:
            c.produce("once", "x")  # no msg_id: a 503 is not retried (it may have been stored)
        assert isinstance(info.value, ServerError) and info.value.status == 503
        assert server.calls.count("/stations/once/produce/single") == 1
        with pytest.raises(RestServerError):
            c.consume_batch("c", "name", batch_max_wait_time_ms=100)
        assert server.calls.count("/stations/c/consume/batch") == 1
        server.fail = 5
        with pytest.raises(RestServerError):
            c.produce_batch("idem2", [{"a": 1}], msg_id="m-2")  # retried twice, then the error
        assert server.calls.count("/stations/idem2/produce/batch") == 3
        assert server.calls.count("/auth/authenticate") == 1  # one login for all of it


def test_timeouts_are_bounded(rest_broker: LocalBroker, station: str) -> None:
    with RestClient(rest_broker.rest_url, "root", connection_token=rest_broker.connection_token, timeout=0.5) as c:
        started = time.monotonic()
        assert c.consume_batch(station, "slow", batch_max_wait_time_ms=1500) == []  # the wait is added to the timeout
        assert 1.4 < time.monotonic() - started < 5
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with RestClient(f"http://127.0.0.1:{silent.getsockname()[1]}", "root", connection_token="m", timeout=0.5, retries=0) as c:
            started = time.monotonic()
            with pytest.raises(RequestTimeout, match="no reply"):
                c.authenticate()
            assert time.monotonic() - started < 3


def test_password_mode_with_account_id(memphis_broker_factory: Any, station: str) -> None:
    broker = memphis_broker_factory(password="pw", users={"app": "app-pw"}, rest_port=0)
    with RestClient(broker.rest_url, "app", password="app-pw", account_id=1) as app, \
            RestClient(broker.rest_url, "root$1", password="pw") as root:
        app.produce(station, "from app")
        root.produce(station, "from root")
        got = root.consume_batch(station, "reader", batch_max_wait_time_ms=1000)
        assert [m.data for m in got] == [b"from app", b"from root"]
    with pytest.raises(RestAuthError):
        RestClient(broker.rest_url, "app", password="app-pw", account_id=7).authenticate()


def test_broker_down_is_a_server_error_then_recovers(memphis_broker_factory: Any, station: str) -> None:
    from memphis_sync.broker.rest import RestSettings

    broker = memphis_broker_factory(rest_port=0, rest_settings=RestSettings(ack_wait_sec=1))
    with RestClient(broker.rest_url, "root", connection_token=broker.connection_token, retries=0, timeout=10) as c:
        c.produce(station, "before")
        broker.nats_server.stop()
        started = time.monotonic()
        with pytest.raises(RestServerError) as info:
            c.produce(station, "while down", msg_id="down-1")
        assert info.value.status == 503 and time.monotonic() - started < 8
        broker.nats_server.start()
        wait_until(lambda: _ok(lambda: c.produce(station, "after", msg_id="after-1")), 20, "a produce after the restart")
        # a 503 here (the control plane still reconnecting) fetched nothing: asking again is safe
        got = wait_until(lambda: _ok(lambda: c.consume_batch(station, "r", batch_max_wait_time_ms=1000)), 20, "a consume")
    assert [m.data for m in got][0] == b"before" and [m.data for m in got][-1] == b"after"


def _ok(call: Any) -> Any:
    try:
        return call() or True
    except (RestServerError, MemphisConnectError, RequestTimeout):
        return False
