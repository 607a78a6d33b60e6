"""examples/flask_app.py, run for real: a threaded werkzeug server on a free port, ~500 concurrent
HTTP requests over one shared connection, against the local broker; the broker down gives a
clear HTTP error."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

REQUESTS = 500
CLIENT_THREADS = 48  # requests in flight at once (werkzeug's listen backlog is 128)


class Served:
    """The example app behind a threaded werkzeug server in a thread of this process."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="werkzeug-test-server", daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
                headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        self.app.extensions["memphis"].close()


@pytest.fixture
def serve(examples_on_path: Path) -> Iterator[Any]:
    import flask_app

    served: List[Served] = []

    def start(kwargs: Dict[str, Any], station: str) -> Served:
        served.append(Served(flask_app.create_app(kwargs, station)))
        return served[-1]

    try:
        yield start
    finally:
        for s in served:
            s.stop()


def _drain(broker: LocalBroker, station: str, expected: int) -> List[Dict[str, Any]]:
    """Every message of ``station`` (a new consumer group reads from the start), acked."""
    got: List[Dict[str, Any]] = []
    with memphis_sync.connect(**broker.connect_kwargs()) as memphis:
        consumer = memphis.consumer(station, "checker", batch_size=500, batch_max_time_to_wait_ms=200)

        def fetch_all() -> bool:
            for msg in consumer.fetch():
                got.append(json.loads(bytes(msg.get_data())))
                msg.ack()
            return len(got) >= expected

        wait_until(fetch_all, 20, f"{expected} messages on {station}")
        assert consumer.fetch() == []  # nothing beyond them (the fetches above found them all)
    return got


def test_concurrent_requests_share_one_connection_and_every_message_arrives_once(memphis_broker, serve):
    station = "flask-orders-load"
    served = serve(memphis_broker.connect_kwargs(), station)

    def post(i: int) -> Tuple[int, Dict[str, Any]]:
        return served.request("POST", "/orders", {"id": f"order-{i}", "n": i})

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        results = list(pool.map(post, range(REQUESTS)))

    statuses = [status for status, _ in results]
    assert statuses == [201] * REQUESTS, [r for r in results if r[0] != 201][:3]
    bodies = [body for _, body in results]
    assert len({b["connection_id"] for b in bodies}) == 1, "one connection for every request thread"
    assert sorted(b["seq"] for b in bodies) == list(range(1, REQUESTS + 1))
    assert not any(b["duplicate"] for b in bodies)
    assert {b["msg_id"] for b in bodies} == {f"order-{i}" for i in range(REQUESTS)}

    got = _drain(memphis_broker, station, REQUESTS)
    ids = [m["id"] for m in got]
    assert len(ids) == REQUESTS and set(ids) == {f"order-{i}" for i in range(REQUESTS)}


def test_a_retried_request_is_stored_once_and_the_fetch_endpoint_returns_it(memphis_broker, serve):
    station = "flask-orders-fetch"
    served = serve(memphis_broker.connect_kwargs(), station)
    first = served.request("POST", "/orders", {"id": "a", "qty": 1})
    again = served.request("POST", "/orders", {"id": "a", "qty": 1})
    other = served.request("POST", "/orders", {"id": "b", "qty": 2})
    assert [first[0], again[0], other[0]] == [201, 201, 201]
    assert again[1]["duplicate"] is True and again[1]["seq"] == first[1]["seq"]
    keyed = [served.request("POST", "/orders", {"qty": 3}, headers={"Idempotency-Key": "k-1"}) for _ in range(2)]
    assert [(s, b["msg_id"], b["duplicate"]) for s, b in keyed] == [(201, "k-1", False), (201, "k-1", True)]

    messages: List[Dict[str, Any]] = []

    def fetched() -> bool:
        status, body = served.request("GET", "/orders?max=10")
        assert status == 200, body
        messages.extend(body["messages"])
        return len(messages) >= 3

    wait_until(fetched, 10, "the three orders through GET /orders")
    assert [m["data"] for m in messages] == [{"id": "a", "qty": 1}, {"id": "b", "qty": 2}, {"qty": 3}]
    assert served.request("GET", "/orders?max=10") == (200, {"station": station, "messages": []})  # acked: gone


def test_bad_requests_get_400(memphis_broker, serve):
    served = serve(memphis_broker.connect_kwargs(), "flask-orders-bad")
    assert served.request("POST", "/orders", {"id": "ok"})[0] == 201  # the positive control
    status, body = served.request("GET", "/orders?max=0")
    assert (status, body["error"]) == (400, "bad request")
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        conn.request("POST", "/orders", body=b"[1, 2]", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())["detail"]) == (400, "the body must be a JSON object")
    finally:
        conn.close()


def test_broker_unreachable_gives_503_with_the_reason(serve, monkeypatch, unused_port):
    import flask_app

    monkeypatch.setattr(flask_app, "RETRY_CONNECT_SEC", 60.0)  # the second request comes well within it
    kwargs = {"host": "127.0.0.1", "port": unused_port, "username": "root", "connection_token": "memphis"}
    served = serve(kwargs, "flask-orders-down")
    status, body = served.request("POST", "/orders", {"id": "x"})
    assert status == 503
    assert body["error"] == "the message broker is unavailable"
    assert "could not connect" in body["detail"] and str(kwargs["port"]) in body["detail"]
    status, again = served.request("GET", "/orders")  # within RETRY_CONNECT_SEC: the same reason, at once
    assert status == 503 and again["detail"] == body["detail"] + " (the next attempt within 60 s)"


def test_broker_going_down_gives_503_at_once_then_recovers(memphis_broker_function, serve):
    broker = memphis_broker_function
    served = serve(broker.connect_kwargs(), "flask-orders-restart")
    assert served.request("POST", "/orders", {"id": "before"})[0] == 201
    holder = served.app.extensions["memphis"]
    broker.stop()
    wait_until(lambda: not holder.get().is_connected(), 10, "the app's connection to notice the broker is gone")
    status, body = served.request("POST", "/orders", {"id": "during"})
    assert (status, body["error"]) == (503, "the message broker is unavailable")
    assert "reconnecting" in body["detail"]
    broker.start()
    wait_until(lambda: holder.get().is_connected(), 20, "the app's connection to reconnect")
    status, body = served.request("POST", "/orders", {"id": "after"})
    assert status == 201, body
    assert [m["id"] for m in _drain(broker, "flask-orders-restart", 2)] == ["before", "after"]
