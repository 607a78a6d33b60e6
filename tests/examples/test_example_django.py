"""examples/django_project, run for real: the view through Django's test client, the
``consume_orders`` management command and ``manage.py check`` in subprocesses, and runserver
with its autoreloader (two processes, one connection), against the local broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Set

import pytest
from example_tools import EXAMPLES, ServerProcess, broker_env, doc_command, start_server, subprocess_env

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

PROJECT = EXAMPLES / "django_project"


def manage(args: List[str], env: Dict[str, str], timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=subprocess_env(env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def django_settings() -> Iterator[Any]:
    """Django set up in this process with the project's settings (once: Django cannot be torn down)."""
    pytest.importorskip("django")
    saved_path = list(sys.path)
    sys.path.insert(0, str(PROJECT))
    saved_env = os.environ.get("DJANGO_SETTINGS_MODULE")
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    import django
    from django.conf import settings

    django.setup()
    try:
        yield settings
    finally:
        sys.path[:] = saved_path
        if saved_env is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = saved_env


@pytest.fixture
def client_for(django_settings: Any) -> Iterator[Any]:
    """``client_for(memphis_kwargs, station)``: Django's test client with those settings."""
    from django.test import Client, override_settings
    from orders.memphis import close_memphis

    overrides: List[Any] = []

    def make(kwargs: Dict[str, Any], station: str) -> Any:
        override = override_settings(MEMPHIS=kwargs, ORDERS_STATION=station)
        override.enable()
        overrides.append(override)
        return Client()

    try:
        yield make
    finally:
        close_memphis()  # the next test connects anew, with its own settings
        for override in reversed(overrides):
            override.disable()


def _post(client: Any, body: Any) -> Any:
    return client.post("/orders/", data=json.dumps(body), content_type="application/json")


def test_the_view_produces_through_one_lazy_connection(memphis_broker, client_for):
    from orders import memphis as orders_memphis

    client = client_for(memphis_broker.connect_kwargs(), "django-view")
    assert orders_memphis._memphis is None  # nothing connected before the first request
    first, second = _post(client, {"id": "o-1", "qty": 1}), _post(client, {"id": "o-2", "qty": 2})
    assert (first.status_code, second.status_code) == (201, 201), first.content
    assert first.json()["connection_id"] == second.json()["connection_id"]
    assert [first.json()["seq"], second.json()["seq"]] == [1, 2]
    again = _post(client, {"id": "o-1", "qty": 1})
    assert (again.status_code, again.json()["duplicate"]) == (201, True)
    assert _post(client, [1]).status_code == 400
    assert client.get("/orders/").status_code == 405
    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
        consumer = memphis.consumer("django-view", "check", batch_max_time_to_wait_ms=500)
        got: List[Any] = []
        wait_until(lambda: got.extend(consumer.fetch()) or len(got) >= 2, 10, "the two orders")
        assert [json.loads(bytes(m.get_data())) for m in got] == [{"id": "o-1", "qty": 1}, {"id": "o-2", "qty": 2}]


def test_the_view_answers_503_when_the_broker_is_down(client_for, unused_port):
    client = client_for({"host": "127.0.0.1", "port": unused_port, "username": "root", "connection_token": "memphis"}, "x")
    response = _post(client, {"id": "o-1"})
    assert response.status_code == 503
    assert response.json()["error"] == "the message broker is unavailable"
    assert "could not connect" in response.json()["detail"]


def test_consume_orders_command_receives_what_the_view_produced(memphis_broker, client_for):
    station = "django-command"
    client = client_for(memphis_broker.connect_kwargs(), station)
    for i in range(20):
        assert _post(client, {"id": f"c-{i}", "n": i}).status_code == 201
    env = dict(broker_env(memphis_broker), ORDERS_STATION=station)
    argv, cwd = doc_command("django-consume")  # group order-workers
    result = subprocess.run(argv, cwd=cwd, env=subprocess_env(env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["order"]["n"] for line in lines] == list(range(20))
    assert "connected to Memphis at" in result.stderr and "closed the Memphis connection" in result.stderr
    # acked: the group has nothing more
    result = manage(["consume_orders", "--count", "1", "--timeout", "1"], env)
    assert result.returncode == 1
    assert "CommandError: only 0 of 1 orders within 1 s" in result.stderr


def test_manage_py_check_works_with_the_broker_down(unused_port):
    env = {"MEMPHIS_PORT": str(unused_port)}
    argv, cwd = doc_command("django-check")
    result = subprocess.run(argv, cwd=cwd, env=subprocess_env(env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "connected to Memphis" not in result.stderr
    # the positive control: the same environment does point at a dead broker
    result = manage(["consume_orders", "--count", "1"], env)
    assert result.returncode == 1
    assert "could not connect to Memphis" in result.stderr and env["MEMPHIS_PORT"] in result.stderr
    assert "Traceback" not in result.stderr


def _client_names(broker: LocalBroker) -> Set[str]:
    connz = broker.nats_server.monitor("/connz?limit=1000")  # type: ignore[union-attr]
    return {c.get("name", "") for c in connz.get("connections") or []}


def test_runserver_autoreloader_parent_never_connects_and_the_child_closes_at_exit(memphis_broker):
    env = subprocess_env(dict(broker_env(memphis_broker), ORDERS_STATION="django-runserver"))
    before = _client_names(memphis_broker)

    def make(port: int) -> Any:
        argv, cwd = doc_command("django-runserver", port)  # with the autoreloader
        return argv, cwd, env

    def post(server: ServerProcess, port: int) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/orders/", data=b'{"id": "r-1"}',
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if server.proc.poll() is not None:
                assert "That port is already in use" in server.output, f"runserver exited: {server.output}"
                return "port taken"
            return None

    for _ in range(3):
        # printed before the child binds the port: another process may take it in between
        server, port = start_server(make, "Quit the server with CONTROL-C.", start_new_session=True)
        try:
            body = wait_until(lambda: post(server, port), 30, "runserver to answer")
            if body == "port taken":
                continue
            assert body["pid"] != server.proc.pid, "the request is served by the autoreloader's child"
            new = _client_names(memphis_broker) - before
            assert new == {f"{body['connection_id']}::{memphis_broker.username}"}, "one connection: the child's"
            break
        finally:
            out = server.stop(signal.SIGINT, group=True)  # Ctrl-C reaches parent and child (its own group)
    else:
        pytest.fail(f"runserver found no free port in 3 attempts: {out}")
    assert out.count("connected to Memphis at") == 1, out
    assert f"closed the Memphis connection (pid {body['pid']})" in out, out
    wait_until(lambda: not (_client_names(memphis_broker) - before), 10, "the child's connection to be gone")
