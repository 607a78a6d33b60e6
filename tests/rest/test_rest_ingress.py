"""The local broker's REST ingress (memphis_sync.broker.rest) spoken to with raw HTTP and curl:
the gateway 1.2.8 paths, fields, replies and status codes, and what it does better (no
credentials in tokens, no auth headers in messages, per-message batch results, acks after the
reply). Every refusal is checked to have stored nothing, next to a request that did store."""

from __future__ import annotations

import http.client as httplib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List

import jwt
import pytest
from rest_tools import bearer, drain, http, json_schema_file, login

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.broker.rest import RestSettings
from memphis_sync.broker.rest.tokens import Identity, TokenIssuer
from memphis_sync.testing import wait_until

REPO = Path(__file__).resolve().parents[2]


def produce(broker: LocalBroker, station: str, body: Any, token: str, **headers: str) -> Any:
    hdrs = {"Content-Type": "text/plain", **bearer(token), **headers}
    return http(broker.rest_url, "POST", f"/stations/{station}/produce/single", body, hdrs)


# -- routes, auth ----------------------------------------------------------------------------


def test_status_and_route_matching(rest_broker: LocalBroker) -> None:
    assert http(rest_broker.rest_url, "GET", "/monitoring/status")[::2] == (200, {"status": "ok"})
    assert http(rest_broker.rest_url, "GET", "/Monitoring/Status/")[0] == 200  # case and slash, as fiber
    status, _, reply = http(rest_broker.rest_url, "GET", "/nothing/here")
    assert status == 404 and reply["success"] is False
    status, headers, _ = http(rest_broker.rest_url, "GET", "/stations/x/produce/single")
    assert status == 405 and "POST" in headers["allow"]


def test_authenticate_reply_is_honest_and_the_token_carries_no_credentials(rest_broker: LocalBroker) -> None:
    before = time.time()
    reply = login(rest_broker)
    assert set(reply) == {"jwt", "expires_in", "jwt_refresh_token", "refresh_token_expires_in"}
    assert reply["expires_in"] == 15 * 60 * 1000  # a lifetime in ms (the gateway sends exp*60000)
    assert reply["refresh_token_expires_in"] == 300 * 60 * 1000
    for token in (reply["jwt"], reply["jwt_refresh_token"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        assert set(claims) == {"username", "account_id", "iat", "exp", "typ"}
        assert claims["username"] == "root" and claims["account_id"] == 1
        assert rest_broker.connection_token not in json.dumps(claims)
    claims = jwt.decode(reply["jwt"], options={"verify_signature": False})
    assert before + 900 - 2 <= claims["exp"] <= time.time() + 902
    short = login(rest_broker, token_expiry_in_minutes=2, refresh_token_expiry_in_minutes=3)
    assert (short["expires_in"], short["refresh_token_expires_in"]) == (120000, 180000)


def test_authenticate_refusals(rest_broker: LocalBroker) -> None:
    url = rest_broker.rest_url
    for body in (
        {"username": "root", "connection_token": "wrong"},
        {"username": "nobody", "connection_token": rest_broker.connection_token},
        {"username": "root", "connection_token": rest_broker.connection_token, "account_id": 2},
        {"username": "root", "password": "memphis"},  # token mode: a password is no token
    ):
        status, _, reply = http(url, "POST", "/auth/authenticate", body)
        assert status == 401 and reply["message"] == "Unauthorized", body
    status, _, reply = http(url, "POST", "/auth/authenticate", {"connection_token": "memphis"})
    assert (status, reply) == (400, {"message": [{"field": "Username", "reason": "required"}]})
    status, _, reply = http(url, "POST", "/auth/authenticate", {"username": "root", "connection_token": "memphis", "account_id": "1"})
    assert status == 400 and "account_id field should be sent as a number" in reply["message"]
    assert http(url, "POST", "/auth/authenticate", "not json", {"Content-Type": "application/json"})[0] == 400
    # form bodies work, as with the gateway's body parser (curl -d sends them)
    form = urllib.parse.urlencode({"username": "root", "connection_token": rest_broker.connection_token})
    status, _, reply = http(url, "POST", "/auth/authenticate", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and reply["jwt"]


def test_refresh_token(rest_broker: LocalBroker) -> None:
    url = rest_broker.rest_url
    pair = login(rest_broker)
    status, _, fresh = http(url, "POST", "/auth/refreshToken", {"jwt_refresh_token": pair["jwt_refresh_token"], "token_expiry_in_minutes": 1})
    assert status == 200 and fresh["expires_in"] == 60000
    assert http(rest_broker.rest_url, "GET", "/monitoring/status")[0] == 200
    assert produce(rest_broker, "warmup", "refreshed", fresh["jwt"])[0] == 200
    # an access token is no refresh token, and the other way round
    assert http(url, "POST", "/auth/refreshToken", {"jwt_refresh_token": pair["jwt"]})[0] == 401
    assert produce(rest_broker, "warmup", "x", pair["jwt_refresh_token"])[0] == 401
    status, _, reply = http(url, "POST", "/auth/refreshToken", {})
    assert status == 401 and reply["message"] == "Unauthorized"


def test_bad_and_expired_tokens_store_nothing(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str) -> None:
    token = login(rest_broker, token_expiry_in_minutes=0.02)["jwt"]  # 1.2 s
    expiry = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert produce(rest_broker, station, "stored", token)[0] == 200  # positive control
    forged = TokenIssuer().issue(Identity("root", 1), 60, 60)["jwt"]  # another broker's secret
    for headers in (
        {},
        {"Authorization": "Bearer garbage"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Bearer {forged}"},
    ):
        status, www, reply = http(rest_broker.rest_url, "POST", f"/stations/{station}/produce/single", "refused", {"Content-Type": "text/plain", **headers})
        assert status == 401 and reply["message"] == "Unauthorized" and "bearer" in www["www-authenticate"].lower(), headers
    # ?authorization= works as the header does
    assert http(rest_broker.rest_url, "POST", f"/stations/{station}/produce/single?authorization={token}", "stored too", {"Content-Type": "text/plain"})[0] == 200

    wait_until(lambda: time.time() > expiry + 0.05, 5, "the token's expiry time")
    status, _, reply = produce(rest_broker, station, "too late", token)
    assert status == 401 and "expired" in reply["error"]
    assert sorted(bytes(m.get_data()) for m in drain(memphis, station)) == [b"stored", b"stored too"]


# -- produce ---------------------------------------------------------------------------------


def test_produce_single_headers_are_message_headers_without_credentials(
    rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str
) -> None:
    token = login(rest_broker)["jwt"]
    status, _, reply = produce(
        rest_broker, station, "hello", token, **{"X-Custom": "v1", "x_under": "kept", "Cookie": "secret=1", "Connection": "keep-alive, X-Hop", "X-Hop": "hop"}
    )
    assert (status, reply) == (200, {"success": True, "error": None})
    [msg] = drain(memphis, station)
    assert bytes(msg.get_data()) == b"hello"
    headers = msg.get_headers()
    assert headers["X-Custom"] == "v1" and headers["x_under"] == "kept" and headers["Content-Type"] == "text/plain"
    assert headers["$memphis_producedBy"] == "rest-gateway"
    lowered = {k.lower() for k in headers}
    assert not lowered & {"authorization", "cookie", "connection", "x-hop", "content-length"}, headers
    assert token not in json.dumps(headers)


def test_reserved_header_and_msg_id(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str) -> None:
    token = login(rest_broker)["jwt"]
    status, _, reply = produce(rest_broker, station, "no", token, **{"$memphis_producedBy": "me"})
    assert status == 400 and "$memphis" in reply["error"]
    for _ in range(3):  # a retried request with the same msg-id is stored once
        assert produce(rest_broker, station, "once", token, **{"msg-id": "order-1"})[0] == 200
    assert produce(rest_broker, station, "other", token, **{"msg-id": "order-2"})[0] == 200
    assert [bytes(m.get_data()) for m in drain(memphis, station)] == [b"once", b"other"]


def test_content_types(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str) -> None:
    token = login(rest_broker)["jwt"]
    accepted = ["text/plain", "text/csv; charset=utf-8", "application/json", "application/x-protobuf", "application/octet-stream"]
    for ctype in accepted:
        assert produce(rest_broker, station, f"as {ctype}", token, **{"Content-Type": ctype})[0] == 200, ctype
    for ctype in ("image/png", "application/xml", ""):
        status, _, reply = produce(rest_broker, station, "refused", token, **{"Content-Type": ctype})
        assert status == 415 and "unsupported content type" in reply["error"], ctype
    status, _, reply = http(rest_broker.rest_url, "POST", f"/stations/{station}/produce/batch", '[{"a": 1}]', {"Content-Type": "text/plain", **bearer(token)})
    assert status == 415
    assert [bytes(m.get_data()).decode() for m in drain(memphis, station)] == [f"as {c}" for c in accepted]


def test_oversize_body_is_413_and_stores_nothing(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str) -> None:
    token = login(rest_broker)["jwt"]
    limit = RestSettings().max_body
    status, _, reply = produce(rest_broker, station, b"x" * (limit + 1), token, **{"Content-Type": "application/octet-stream"})
    assert status == 413 and reply["success"] is False
    assert produce(rest_broker, station, b"y" * limit, token, **{"Content-Type": "application/octet-stream"})[0] == 200

    def chunked(size: int) -> int:  # no Content-Length: the limit holds while reading
        host, port = rest_broker.rest_url.split("//")[1].rsplit(":", 1)
        conn = httplib.HTTPConnection(host, int(port), timeout=20)
        try:
            pieces = (b"z" * 65536 for _ in range(size // 65536))
            conn.request("POST", f"/stations/{station}/produce/single", body=pieces, encode_chunked=True,
                         headers={"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked", **bearer(token)})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    assert chunked(limit + 65536) == 413
    assert chunked(65536 * 2) == 200
    assert [bytes(m.get_data()) for m in drain(memphis, station)] == [b"y" * limit, b"z" * 65536 * 2]


def test_unknown_station_is_created_and_bad_names_are_refused(
    rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str
) -> None:
    token = login(rest_broker)["jwt"]
    assert rest_broker.control_plane.get_station(station) is None
    assert produce(rest_broker, station, "creates it", token)[0] == 200  # as any Memphis producer
    assert rest_broker.control_plane.get_station(station) is not None
    for bad in ("bad%20name", "-dash-first", "x" * 200, "a%0D%0Ab"):
        status, _, reply = produce(rest_broker, bad, "no", token)
        assert status == 400 and reply["success"] is False, (bad, reply)
        status, _, reply = http(rest_broker.rest_url, "POST", f"/stations/{bad}/consume/batch", {"consumer_name": "c"}, bearer(token))
        assert status == 400, (bad, reply)
    names = {s["name"] for s in rest_broker.control_plane.stations()}
    assert not any(n.startswith(("bad", "-dash", "xxx", "a\r")) for n in names)
    assert [bytes(m.get_data()) for m in drain(memphis, station)] == [b"creates it"]


def test_schema_failures_single_and_per_message_batch_results(
    rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str, tmp_path: Path
) -> None:
    memphis.create_schema(f"{station}-schema", "json", json_schema_file(tmp_path))
    memphis.station(station)
    memphis.enforce_schema(f"{station}-schema", station)
    token = login(rest_broker)["jwt"]
    url = rest_broker.rest_url
    status, _, reply = produce(rest_broker, station, '{"n": "x"}', token, **{"Content-Type": "application/json"})
    assert status == 400 and "Schema validation has failed" in reply["error"]
    batch: List[Dict[str, Any]] = [{"n": 1}, {"n": "two"}, {"n": 3}]
    status, _, reply = http(url, "POST", f"/stations/{station}/produce/batch", batch, bearer(token))
    assert status == 400 and reply["success"] is False
    assert (reply["sent"], reply["fail"]) == (2, 1)
    assert [r["success"] for r in reply["results"]] == [True, False, True]
    assert "Schema validation has failed" in reply["results"][1]["error"]
    assert [json.loads(bytes(m.get_data())) for m in drain(memphis, station)] == [{"n": 1}, {"n": 3}]


def test_batch_bodies(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str) -> None:
    token = login(rest_broker)["jwt"]
    url = rest_broker.rest_url
    path = f"/stations/{station}/produce/batch"
    for body in ("not json", "[1, 2]", '{"a": 1}'):
        status, _, reply = http(url, "POST", path, body, {"Content-Type": "application/json", **bearer(token)})
        assert status == 400 and reply["success"] is False, body
    assert http(url, "POST", path, [], bearer(token))[::2] == (200, {"success": True, "error": None, "sent": 0, "fail": 0, "results": []})
    headers = {**bearer(token), "X-Batch": "b", "msg-id": "batch-1"}
    for _ in range(2):  # the same batch twice: each message is stored once
        status, _, reply = http(url, "POST", path, [{"i": 0}, {"i": 1, "s": "é"}], headers)
        assert status == 200 and reply["sent"] == 2
    msgs = drain(memphis, station)
    assert [bytes(m.get_data()) for m in msgs] == [b'{"i":0}', '{"i":1,"s":"é"}'.encode()]
    assert all(m.get_headers()["X-Batch"] == "b" for m in msgs)


# -- consume ---------------------------------------------------------------------------------


def test_consume_batch_fields_and_acks(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str) -> None:
    token = login(rest_broker)["jwt"]
    url = rest_broker.rest_url
    path = f"/stations/{station}/consume/batch"
    status, _, reply = http(url, "POST", path, {"consumer_group": "g"}, bearer(token))
    assert (status, reply) == (400, {"success": False, "error": "Consumer name is required"})
    assert http(url, "POST", path, "x", {"Content-Type": "text/plain", **bearer(token)})[::2] == (400, {"success": False, "error": "Invalid request body"})
    assert http(url, "POST", path, {"consumer_name": "c", "batch_size": 6000}, bearer(token))[0] == 400
    memphis.produce(station, "nats-producer", b"\xff\x00binary", headers={"k": "v"})
    memphis.produce(station, "nats-producer", "text")
    status, _, reply = http(url, "POST", path, {"consumer_name": "c", "consumer_group": "g", "batch_size": 5, "batch_max_wait_time_ms": 500}, bearer(token))
    assert status == 200 and [m["message"] for m in reply] == ["\ufffd\x00binary", "text"]
    assert reply[0]["message_base64"] == "/wBiaW5hcnk=" and "message_base64" not in reply[1]
    assert reply[0]["headers"] == {"k": "v"}  # no $memphis_* headers
    assert rest_broker.control_plane.consumers(station)[0]["consumers_group"] == "g-rest-gateway"
    # acked once written: the group gets nothing more
    assert http(url, "POST", path, {"consumer_name": "c", "consumer_group": "g", "batch_max_wait_time_ms": 200}, bearer(token))[::2] == (200, [])


def test_a_reply_that_cannot_be_written_is_delivered_again(
    rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="memphis_sync.broker.rest")
    token = login(rest_broker)["jwt"]
    body = json.dumps({"consumer_name": "lost", "batch_size": 1, "batch_max_wait_time_ms": 3000}).encode()
    host, port = rest_broker.rest_url.split("//")[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST /stations/{station}/consume/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    wait_until(lambda: rest_broker.control_plane.consumers(station), 5, "the REST consumer")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset: the reply cannot be written
    memphis.produce(station, "p", "survives")
    wait_until(lambda: not rest_broker.rest_gateway.active_requests(), 10, "the consume to end")
    assert "a consume reply was not written; 1 message(s) will be delivered again" in caplog.text
    status, _, reply = http(rest_broker.rest_url, "POST", f"/stations/{station}/consume/batch", {"consumer_name": "lost", "batch_max_wait_time_ms": 3000}, bearer(token))
    assert status == 200 and [m["message"] for m in reply] == ["survives"]


# -- curl, a third-party client --------------------------------------------------------------


def curl(*args: str) -> Any:
    result = subprocess.run(["curl", "-sS", "--noproxy", "*", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    body, _, code = result.stdout.rpartition("\n")
    return int(code), json.loads(body)


def test_curl_authenticate_produce_consume(rest_broker: LocalBroker, memphis: memphis_sync.Memphis, station: str) -> None:
    url = rest_broker.rest_url
    code, reply = curl("-X", "POST", f"{url}/auth/authenticate", "-H", "Content-Type: application/json",
                       "-d", json.dumps({"username": "root", "connection_token": rest_broker.connection_token}))
    assert code == 200
    token = reply["jwt"]
    code, reply = curl("-X", "POST", f"{url}/stations/{station}/produce/single", "-H", f"Authorization: Bearer {token}",
                       "-H", "Content-Type: application/json", "-H", "X-Source: curl", "-d", '{"from": "curl"}')
    assert (code, reply) == (200, {"success": True, "error": None})
    code, reply = curl("-X", "POST", f"{url}/stations/{station}/produce/batch?authorization={token}",
                       "-H", "Content-Type: application/json", "-d", '[{"n": 1}, {"n": 2}]')
    assert code == 200 and reply["sent"] == 2
    code, reply = curl("-X", "POST", f"{url}/stations/{station}/consume/batch", "-H", f"Authorization: Bearer {token}",
                       "-d", "consumer_name=curl&batch_max_wait_time_ms=500")  # a form body, curl's default
    assert code == 200
    assert [m["message"] for m in reply] == ['{"from": "curl"}', '{"n":1}', '{"n":2}']
    assert reply[0]["headers"]["X-Source"] == "curl" and "Authorization" not in reply[0]["headers"]
    code, reply = curl("-X", "POST", f"{url}/stations/{station}/produce/single", "-H", "Authorization: Bearer nope", "-d", "x")
    assert code == 401


# -- limits, lifecycle, modes ----------------------------------------------------------------


def test_connection_limit_and_idle_timeout(memphis_broker_factory: Any) -> None:
    broker = memphis_broker_factory(rest_port=0, rest_settings=RestSettings(max_connections=1, request_timeout=0.5))
    host, port = broker.rest_url.split("//")[1].rsplit(":", 1)
    idle = socket.create_connection((host, int(port)))  # holds the one slot, says nothing
    try:
        wait_until(lambda: broker.rest_gateway.active_requests(), 5, "the idle connection to be served")
        status, _, reply = http(broker.rest_url, "GET", "/monitoring/status")
        assert status == 503 and "too many connections" in reply["error"]
        idle.settimeout(5)
        assert idle.recv(100) == b""  # dropped after request_timeout
    finally:
        idle.close()
    wait_until(lambda: http(broker.rest_url, "GET", "/monitoring/status")[0] == 200, 5, "a free slot")


def test_stop_with_a_consume_waiting_and_tokens_survive_a_restart(memphis_broker_factory: Any, station: str) -> None:
    broker = memphis_broker_factory(rest_port=0)
    token = login(broker)["jwt"]
    port = broker.rest_gateway.port
    before = set(threading.enumerate())
    outcome: Dict[str, Any] = {}

    def waiting_consume() -> None:
        try:
            outcome["reply"] = http(broker.rest_url, "POST", f"/stations/{station}/consume/batch", {"consumer_name": "w", "batch_max_wait_time_ms": 20000}, bearer(token))
        except OSError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=waiting_consume)
    thread.start()
    wait_until(lambda: broker.control_plane.consumers(station), 10, "the consume to wait")
    started = time.monotonic()
    broker.stop()
    thread.join(10)
    assert time.monotonic() - started < 8 and not thread.is_alive()
    assert "error" in outcome or outcome["reply"][0] >= 500, outcome
    assert not [t.name for t in set(threading.enumerate()) - before if t.name.startswith("memphis-sync")]
    broker.start()
    assert broker.rest_gateway.port == port
    assert produce(broker, station, "after restart", token)[0] == 200


def test_password_mode(memphis_broker_factory: Any) -> None:
    broker = memphis_broker_factory(password="pw", users={"app": "app-pw"}, rest_port=0)
    url = broker.rest_url
    for body in (
        {"username": "root", "password": "pw", "account_id": 1},
        {"username": "root$1", "password": "pw"},
        {"username": "app", "password": "app-pw"},
    ):
        status, _, reply = http(url, "POST", "/auth/authenticate", body)
        assert status == 200, (body, reply)
    assert http(url, "POST", "/auth/authenticate?accountId=1", {"username": "app", "password": "app-pw"})[0] == 200
    for body in (
        {"username": "root", "password": "wrong"},
        {"username": "app", "password": "pw"},
        {"username": "root", "password": "pw", "account_id": 2},
        {"username": "root", "connection_token": "memphis"},
    ):
        assert http(url, "POST", "/auth/authenticate", body)[0] == 401, body
    token = http(url, "POST", "/auth/authenticate", {"username": "app", "password": "app-pw"})[2]["jwt"]
    assert produce(broker, "pw-station", "as app", token)[0] == 200


def test_cli_serves_rest(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "memphis_sync", "broker", "--port", "0", "--rest-port", "0", "--store", str(tmp_path / "store")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "REST gateway http://127.0.0.1:" in line, line
        rest_url = line.split("REST gateway ")[1].split(")")[0]
        assert http(rest_url, "GET", "/monitoring/status")[::2] == (200, {"status": "ok"})
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_taken_rest_port_is_a_broker_error(tmp_path: Path) -> None:
    from memphis_sync.errors import BrokerError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = LocalBroker(port=0, rest_port=taken.getsockname()[1], store_dir=tmp_path / "store")
        try:
            with pytest.raises(BrokerError, match=f"REST port {taken.getsockname()[1]} on 127.0.0.1 is already in use"):
                broker.start()
            assert not broker.is_running() and not broker.nats_server.is_running()
        finally:
            broker.close()


@pytest.mark.parametrize("verify", [False, True], ids=["tls", "mutual-tls"])
def test_ingress_of_a_tls_broker(memphis_broker_factory: Any, tls_certs: Any, station: str, verify: bool) -> None:
    broker = memphis_broker_factory(tls=tls_certs.server_tls(verify=verify), rest_port=0)
    token = login(broker)["jwt"]
    assert produce(broker, station, "over tls", token)[0] == 200  # the ingress's connection uses TLS
    status, _, reply = http(broker.rest_url, "POST", f"/stations/{station}/consume/batch", {"consumer_name": "t", "batch_max_wait_time_ms": 500}, bearer(token))
    assert status == 200 and [m["message"] for m in reply] == ["over tls"]
