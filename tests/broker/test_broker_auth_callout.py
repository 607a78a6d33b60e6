"""Token mode checks users at connect, as a Memphis broker does: the auth callout.

The rules alone (:class:`ConnectCheck`, no server), then the local broker refusing unknown users
with ``-ERR 'Authorization Violation'`` for our client, the official SDK and plain NATS clients,
letting known ones in, and refusing connects while no control plane answers.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import socket
import time
from typing import Any, Callable, Dict, List

import nacl.signing
import nats
import pytest
from broker_tools import ask
from memphis import Memphis  # memphis-py==1.3.1, in the test extra

import memphis_sync
from memphis_sync.broker.auth_callout import AuthCallout, ConnectCheck, decode_jwt, encode_jwt
from memphis_sync.broker.control_plane import ControlPlane
from memphis_sync.broker.local import CONTROL_PLANE_USER, LocalBroker
from memphis_sync.broker.rules import Refusal
from memphis_sync.errors import AuthorizationError, MemphisConnectError
from memphis_sync.nats.connection import connect
from memphis_sync.nats.reconnect import ReconnectPolicy

NO_RECONNECT = ReconnectPolicy(enabled=False)
CALLOUT_LOGGER = "memphis_sync.broker.auth_callout"
USERS = {"root": "root", "app": "application", "ops": "management"}


# -- the rules -------------------------------------------------------------------------------


def check(name: str, token: str, client_type: str = "nats") -> str:
    rules = ConnectCheck(connection_token="memphis", users=USERS, account_id=1)
    return rules.check({"name": name, "auth_token": token}, client_type)


@pytest.mark.parametrize("name, token, user", [
    ("3f2a::root", "memphis", "root"),  # a Memphis SDK: "<connection_id>::<username>", the token as is
    ("3f2a::App", "memphis", "app"),  # names are compared in lower case
    ("", "root::memphis", "root"),  # a plain NATS client: "<username>::<token>"
    ("my-tool", "APP$1::memphis", "app"),  # ... with the account id suffix
    ("NATS CLI Version 0.1", "anyone::memphis", ""),  # the NATS CLI: token only
])
def test_the_rules_admit(name: str, token: str, user: str) -> None:
    assert check(name, token) == user


@pytest.mark.parametrize("name, token, reason", [
    ("3f2a::ghost", "memphis", "user doesn't exist"),
    ("3f2a::ops", "memphis", "please use a user of type Root/Application and not Management"),
    ("3f2a::root", "wrong", "wrong connection token"),
    ("3f2a::root", "", "wrong connection token"),
    ("3f2a::root", "root::memphis", "wrong connection token"),  # an SDK sends the bare token
    ("a::b::root", "memphis", "missing username or connectionId"),
    ("", "memphis", "must present the token as '<username>::<token>'"),  # plain client, bare token
    ("", "root::wrong", "wrong connection token"),
    ("", "ghost::memphis", "user doesn't exist"),
    ("", "root$2::memphis", "user doesn't exist"),  # another account
    ("", "a::b::memphis", "must present the token as '<username>::<token>'"),
    ("NATS CLI Version 0.1", "memphis", "must present the token"),  # the CLI still needs the token
])
def test_the_rules_refuse(name: str, token: str, reason: str) -> None:
    with pytest.raises(Refusal) as info:
        check(name, token)
    assert reason in info.value.text
    assert "memphis" not in info.value.text.replace("'<username>::<token>'", "")  # never the token


def test_websocket_and_mqtt_clients_are_checked_for_the_token_only() -> None:
    assert check("", "ghost::memphis", "websocket") == "" and check("", "x::memphis", "mqtt") == ""
    with pytest.raises(Refusal, match="wrong connection token"):
        check("", "ghost::wrong", "websocket")
    with pytest.raises(Refusal, match="user doesn't exist"):  # control: the same as a NATS client
        check("", "ghost::memphis", "nats")


def _verify(token: str) -> Dict[str, Any]:
    """Check a JWT's ed25519 signature against the public nkey of its issuer; return its claims."""
    header, body, signature = token.split(".")
    claims = decode_jwt(token)
    raw = base64.b32decode(claims["iss"] + "=" * (-len(claims["iss"]) % 8))
    nacl.signing.VerifyKey(raw[1:33]).verify(f"{header}.{body}".encode(), base64.urlsafe_b64decode(signature + "=="))
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))) == {"typ": "JWT", "alg": "ed25519-nkey"}
    return claims


class ServerKey:
    """The server's side of the exchange, for the tests only (its public key is not a real one)."""

    def __init__(self) -> None:
        self.key = nacl.signing.SigningKey.generate()
        self.public_key = "N" + "A" * 55

    def sign(self, data: bytes) -> bytes:
        return bytes(self.key.sign(data).signature)


def _request(name: str, token: str) -> bytes:
    claims = {"sub": "AISSUER", "aud": "nats-authorization-request", "nats": {
        "server_id": {"name": "n", "host": "127.0.0.1", "id": "NSERVERID"}, "user_nkey": "UCLIENTKEY",
        "client_info": {"host": "127.0.0.1", "id": 7, "type": "nats", "kind": "Client"},
        "connect_opts": {"name": name, "auth_token": token, "protocol": 1},
        "type": "authorization_request", "version": 2}}
    return encode_jwt(claims, ServerKey()).encode()


def test_answers_are_signed_responses_for_the_requesting_user_and_server() -> None:
    callout = AuthCallout(ConnectCheck(connection_token="memphis", users=USERS))
    assert callout.issuer.startswith("A") and len(callout.issuer) == 56
    assert "memphis" not in repr(callout)
    answer = callout.answer(_request("c1::root", "memphis"))
    assert answer is not None
    response = _verify(answer.decode())
    assert (response["iss"], response["sub"], response["aud"]) == (callout.issuer, "UCLIENTKEY", "NSERVERID")
    assert response["nats"]["type"] == "authorization_response" and "error" not in response["nats"]
    user = _verify(response["nats"]["jwt"])
    assert (user["iss"], user["sub"], user["aud"], user["name"]) == (callout.issuer, "UCLIENTKEY", "$G", "root")
    assert user["nats"]["sub"] == {"deny": ["$SYS.REQ.USER.AUTH"]}
    refused = _verify(callout.answer(_request("c1::ghost", "memphis")).decode())  # type: ignore[union-attr]
    assert refused["nats"]["error"] == "user doesn't exist" and "jwt" not in refused["nats"]
    assert callout.server_config(("cp",)) == {"issuer": callout.issuer, "auth_users": ["cp"]}


@pytest.mark.parametrize("payload", [b"", b"not a jwt", b"a.b.c", b"\xff.\xfe.\xfd",
                                     encode_jwt({"nats": {"type": "user"}}, ServerKey()).encode()])
def test_what_is_not_a_request_goes_unanswered(payload: bytes, caplog: pytest.LogCaptureFixture) -> None:
    callout = AuthCallout(ConnectCheck(connection_token="memphis", users=USERS))
    assert callout.answer(payload) is None
    assert "not an authorization request" in caplog.text


# -- the local broker --------------------------------------------------------------------------


#: memphis-py 1.3.1 and nats-py leave the sockets of refused connections to the garbage collector
SDK_WARNINGS = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def run(coro: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``asyncio.run``, then collect the sockets left behind while the warnings are ignored. nats-py
    logs each refusal with its traceback, which would keep a socket alive in the captured log
    records until a later test: its logger is off meanwhile."""
    monkeypatch.setattr(logging.getLogger("nats.aio.client"), "disabled", True)
    try:
        return asyncio.run(coro)
    finally:
        gc.collect()


def _refusals(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == CALLOUT_LOGGER and "refused" in r.getMessage()]


@pytest.mark.integration
def test_the_wire_answer_is_the_memphis_one(memphis_broker: LocalBroker) -> None:
    def handshake(name: str) -> bytes:
        with socket.create_connection((memphis_broker.host, memphis_broker.port), timeout=5) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"INFO ")
            connect_opts = {"name": name, "auth_token": "memphis", "verbose": False, "pedantic": False, "protocol": 1}
            sock.sendall(b"CONNECT " + json.dumps(connect_opts).encode() + b"\r\nPING\r\n")
            return reader.readline()

    assert handshake("c1::ghost") == b"-ERR 'Authorization Violation'\r\n"
    assert handshake("c1::root") == b"PONG\r\n"


@pytest.mark.integration
def test_our_client_refused_at_once_and_only_once(memphis_broker: LocalBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=CALLOUT_LOGGER)
    kwargs = dict(memphis_broker.connect_kwargs(), username="ghost", reconnect_interval_ms=100)
    started = time.monotonic()
    with pytest.raises(MemphisConnectError, match="as 'ghost': .*Authorization Violation") as info:
        memphis_sync.connect(**kwargs)
    assert time.monotonic() - started < 1.0
    assert isinstance(info.value.__cause__, AuthorizationError)
    time.sleep(0.5)  # five reconnect intervals: a retrying client would have come back
    assert len(_refusals(caplog)) == 1 and "ghost" in _refusals(caplog)[0]  # counted: the control
    with memphis_sync.connect(**dict(kwargs, username="root")) as memphis:  # a known user works
        memphis.station("callout.ok")
        memphis.produce("callout.ok", "p", b"hello")
        consumer = memphis.consumer("callout.ok", "c")
        assert [m.get_data() for m in consumer.fetch(batch_size=1)] == [b"hello"]
    assert len(_refusals(caplog)) == 1


@pytest.mark.integration
def test_application_users_connect_and_unknown_users_do_not(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(users={"app": "ignored in token mode"})
    with memphis_sync.connect(**dict(broker.connect_kwargs(), username="App")) as memphis:
        memphis.station("by.app")
        assert broker.control_plane.get_station("by.app")["created_by_username"].lower() == "app"
    with pytest.raises(MemphisConnectError, match="Authorization Violation"):
        memphis_sync.connect(**dict(broker.connect_kwargs(), username="root2"))
    with pytest.raises(MemphisConnectError, match="Authorization Violation"):  # the token still counts
        memphis_sync.connect(**dict(broker.connect_kwargs(), username="app", connection_token="wrong"))


@pytest.mark.integration
@SDK_WARNINGS[0]
@SDK_WARNINGS[1]
def test_the_official_sdk_is_refused_the_same_way(
    memphis_broker: LocalBroker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memphis.exceptions import MemphisError as SdkError

    caplog.set_level(logging.INFO, logger=CALLOUT_LOGGER)
    kwargs = dict(memphis_broker.connect_kwargs(), reconnect=False)  # the SDK's default retries forever

    async def flow() -> None:
        with pytest.raises(SdkError, match="Authorization Violation"):
            await Memphis().connect(**dict(kwargs, username="ghost"))
        client = Memphis()
        await client.connect(**kwargs)
        try:
            await client.station(name="callout.sdk")
            await client.produce(station_name="callout.sdk", producer_name="p", message=bytearray(b"sdk"))
        finally:
            await client.close()

    run(flow(), monkeypatch)
    assert len(_refusals(caplog)) == 1 and "::ghost" in _refusals(caplog)[0]
    assert memphis_broker.control_plane.get_station("callout.sdk") is not None


@pytest.mark.integration
@SDK_WARNINGS[0]
@SDK_WARNINGS[1]
def test_plain_nats_clients_present_user_and_token(memphis_broker: LocalBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    url = memphis_broker.url

    async def attempt(token: str, name: Any = None) -> str:
        try:
            nc = await nats.connect(url, token=token, name=name, allow_reconnect=False, max_reconnect_attempts=0)
        except Exception as exc:  # nats-py raises its own errors.Error
            return str(exc)
        try:
            await nc.flush(timeout=5)
            return "connected"
        finally:
            await nc.close()

    async def flow() -> Dict[str, str]:
        tokens = ("root::memphis", "ROOT$1::memphis", "ghost::memphis", "memphis", "root::wrong")
        answers = {token: await attempt(token) for token in tokens}
        answers["native name"] = await attempt("memphis", "c1::root")  # a name with "::": bare token
        return answers

    answers = run(flow(), monkeypatch)
    assert [t for t, a in answers.items() if a == "connected"] == ["root::memphis", "ROOT$1::memphis", "native name"]
    assert all("Authorization Violation" in a for a in answers.values() if a != "connected"), answers


@pytest.mark.integration
def test_internal_users_are_exempt_and_clients_do_not_see_requests(memphis_broker: LocalBroker) -> None:
    info = memphis_broker.nats_server.monitor("/connz?auth=true")
    (plane,) = [c for c in info["connections"] if c.get("name") == "memphis-sync-control-plane"]
    assert plane["authorized_user"] == CONTROL_PLANE_USER  # never called out for
    conn = connect(memphis_broker.url, token="memphis", name="spy::root")
    try:
        conn.subscribe("$SYS.REQ.USER.AUTH")
        conn.subscribe("spy.control")
        conn.flush()
        connect(memphis_broker.url, token="memphis", name="other::root").close()  # a request is made
        subs = memphis_broker.nats_server.monitor("/connz?subs=true&auth=true")["connections"]
        (spy,) = [c for c in subs if c.get("name") == "spy::root"]
        assert spy["authorized_user"] == "root"
        assert "spy.control" in spy["subscriptions_list"]  # the control: subscriptions are listed
        assert "$SYS.REQ.USER.AUTH" not in spy["subscriptions_list"]
    finally:
        conn.close()


@pytest.mark.integration
def test_connects_wait_for_a_control_plane(memphis_broker_function: LocalBroker) -> None:
    broker = memphis_broker_function
    conn = connect(broker.url, token="memphis", name="t::root")
    try:
        broker.control_plane.stop()
        conn.flush(timeout=5)  # connected clients are not affected
        started = time.monotonic()
        with pytest.raises(AuthorizationError):  # unanswered: refused at nats-server's auth timeout
            connect(broker.url, token="memphis", name="t2::root", reconnect=NO_RECONNECT)
        assert 1.0 < time.monotonic() - started < 2.0  # AUTH_CALLOUT_TIMEOUT
        with ControlPlane(broker.url, **broker.control_plane_kwargs()):
            late = connect(broker.url, token="memphis", name="t3::root")
            assert ask(late, "$memphis_station_creations", {"name": "late", "partitions_number": 1, "username": "root"}) == ""
            late.close()
            with pytest.raises(AuthorizationError):
                connect(broker.url, token="memphis", name="t3::ghost", reconnect=NO_RECONNECT)
    finally:
        conn.close()


@pytest.mark.integration
@pytest.mark.slow
def test_every_node_of_a_cluster_checks_users(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(cluster_size=3)
    for url in broker.urls:  # the control plane is connected to one node; the others route to it
        connect(url, token="memphis", name="n::root").close()
        with pytest.raises(AuthorizationError):
            connect(url, token="memphis", name="n::ghost", reconnect=NO_RECONNECT)
