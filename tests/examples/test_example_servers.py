"""The Flask example under real servers, started with the commands of the docs: ``flask run``
(threads) and gunicorn with examples/gunicorn.conf.py (two forked workers, one connection each,
made after the fork; the master makes none)."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Set

import pytest
from example_tools import broker_env, doc_command, start_server, subprocess_env

from memphis_sync.broker.local import LocalBroker
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


def _client_names(broker: LocalBroker) -> Set[str]:
    connz = broker.nats_server.monitor("/connz?limit=1000")  # type: ignore[union-attr]
    return {c.get("name", "") for c in connz.get("connections") or []}


def _post(port: int, order: Dict[str, Any]) -> Dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/orders", data=json.dumps(order).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.status == 201
        return dict(json.loads(response.read()))


def test_flask_run_with_threads(memphis_broker):
    def make(port: int) -> Any:
        env = dict(broker_env(memphis_broker), ORDERS_STATION="flask-run", FLASK_RUN_PORT=str(port))
        argv, cwd = doc_command("flask-run")
        return argv, cwd, subprocess_env(env)

    server, port = start_server(make, "Running on http://127.0.0.1:{port}")
    try:
        first = _post(port, {"id": "run-0"})
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda i: _post(port, {"id": f"run-{i}"}), range(1, 40)))
    finally:
        out = server.stop(signal.SIGINT)
    assert {b["connection_id"] for b in bodies} == {first["connection_id"]}, out
    assert sorted(b["seq"] for b in [first, *bodies]) == list(range(1, 41))
    assert "Traceback" not in out, out


def test_gunicorn_workers_connect_after_the_fork_and_close_on_exit(memphis_broker):
    def make(port: int) -> Any:
        env = dict(broker_env(memphis_broker), ORDERS_STATION="flask-gunicorn", GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}")
        argv, cwd = doc_command("gunicorn")
        return argv, cwd, subprocess_env(env)

    before = _client_names(memphis_broker)
    server, port = start_server(make, "Listening at: http://127.0.0.1:{port}")
    try:
        # both workers connect in post_worker_init, before their first request
        wait_until(lambda: server.output.count("connected to Memphis (connection") >= 2, 30, "a connection per worker")
        with ThreadPoolExecutor(16) as pool:
            bodies: List[Any] = list(pool.map(lambda i: _post(port, {"id": f"g-{i}"}), range(80)))
        new = _client_names(memphis_broker) - before
    finally:
        out = server.stop(signal.SIGTERM)  # a graceful stop: worker_exit closes
    by_pid: Dict[int, Set[str]] = {}
    for body in bodies:
        by_pid.setdefault(body["pid"], set()).add(body["connection_id"])
    assert server.proc.pid not in by_pid, "the master serves nothing"
    assert all(len(ids) == 1 for ids in by_pid.values()), f"one connection per worker: {by_pid}"
    assert len(new) == 2, f"two workers, two connections, none in the master: {new}"
    assert {ids.pop() + "::root" for ids in by_pid.values()} <= new
    assert out.count("connected to Memphis (connection") == 2, out
    assert out.count("closed its Memphis connection") == 2, out
    assert "Traceback" not in out, out
    wait_until(lambda: not (_client_names(memphis_broker) - before), 10, "the workers' connections to be gone")


def test_gunicorn_worker_starts_with_the_broker_down_and_answers_503(unused_port):
    dead = str(unused_port)

    def make(port: int) -> Any:
        env = {"MEMPHIS_PORT": dead, "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 1"}
        argv, cwd = doc_command("gunicorn")
        return argv, cwd, subprocess_env(env)

    server, port = start_server(make, "Listening at: http://127.0.0.1:{port}")
    try:
        wait_until(lambda: "no Memphis connection yet" in server.output, 30, "the worker's start")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/orders", data=b"{}",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        with error.value:
            body = json.loads(error.value.read())
    finally:
        out = server.stop(signal.SIGTERM)
    assert error.value.code == 503, out
    assert body["error"] == "the message broker is unavailable" and dead in body["detail"]
    assert server.proc.returncode == 0, out
