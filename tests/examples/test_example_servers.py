"""The Flask example under real servers, started with the commands of the docs: ``flask run``
(threads) and gunicorn with examples/gunicorn.conf.py (two forked workers, one connection each,
made after the fork; the master makes none)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Set

import pytest
from example_tools import broker_env, doc_command, refused_port, subprocess_env

from memphis_sync.broker.local import LocalBroker
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


def _client_names(broker: LocalBroker) -> Set[str]:
    connz = broker.nats_server.monitor("/connz?limit=1000")  # type: ignore[union-attr]
    return {c.get("name", "") for c in connz.get("connections") or []}


def _post(port: int, order: Dict[str, Any], proc: "subprocess.Popen[str]") -> Optional[Dict[str, Any]]:
    """POST /orders; None while the server does not answer yet."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/orders", data=json.dumps(order).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            assert response.status == 201
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError):
        assert proc.poll() is None, f"the server exited: {proc.communicate()[0]}"
        return None


def _stop(proc: "subprocess.Popen[str]", sig: int) -> str:
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_flask_run_with_threads(memphis_broker):
    port = refused_port()
    env = dict(broker_env(memphis_broker), ORDERS_STATION="flask-run", FLASK_RUN_PORT=str(port))
    argv, cwd = doc_command("flask-run")
    proc = subprocess.Popen(argv, cwd=cwd, env=subprocess_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        first = wait_until(lambda: _post(port, {"id": "run-0"}, proc), 30, "flask run to answer")
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda i: _post(port, {"id": f"run-{i}"}, proc), range(1, 40)))
    finally:
        out = _stop(proc, signal.SIGINT)
    assert all(bodies) and {b["connection_id"] for b in bodies if b} == {first["connection_id"]}, out
    assert sorted(b["seq"] for b in [first, *bodies] if b) == list(range(1, 41))
    assert "Traceback" not in out, out


def test_gunicorn_workers_connect_after_the_fork_and_close_on_exit(memphis_broker):
    port = refused_port()
    env = dict(broker_env(memphis_broker), ORDERS_STATION="flask-gunicorn",
               GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}")
    before = _client_names(memphis_broker)
    argv, cwd = doc_command("gunicorn")
    proc = subprocess.Popen(argv, cwd=cwd, env=subprocess_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _post(port, {"id": "g-0"}, proc), 30, "gunicorn to answer")
        # both workers connect in post_worker_init, before their first request
        wait_until(lambda: len(_client_names(memphis_broker) - before) >= 2, 20, "a connection per worker")
        with ThreadPoolExecutor(16) as pool:
            bodies: List[Any] = list(pool.map(lambda i: _post(port, {"id": f"g-{i}"}, proc), range(1, 80)))
        new = _client_names(memphis_broker) - before
    finally:
        out = _stop(proc, signal.SIGTERM)  # a graceful stop: worker_exit closes
    assert all(bodies), out
    by_pid: Dict[int, Set[str]] = {}
    for body in bodies:
        by_pid.setdefault(body["pid"], set()).add(body["connection_id"])
    assert proc.pid not in by_pid, "the master serves nothing"
    assert all(len(ids) == 1 for ids in by_pid.values()), f"one connection per worker: {by_pid}"
    assert len(new) == 2, f"two workers, two connections, none in the master: {new}"
    assert {ids.pop() + "::root" for ids in by_pid.values()} <= new
    assert out.count("connected to Memphis (connection") == 2, out
    assert out.count("closed its Memphis connection") == 2, out
    assert "Traceback" not in out, out
    wait_until(lambda: not (_client_names(memphis_broker) - before), 10, "the workers' connections to be gone")


def test_gunicorn_worker_starts_with_the_broker_down_and_answers_503():
    port = refused_port()
    env = {"MEMPHIS_PORT": str(refused_port()), "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 1"}
    argv, cwd = doc_command("gunicorn")
    proc = subprocess.Popen(argv, cwd=cwd, env=subprocess_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    def answer() -> Optional[int]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/orders", data=b"{}",
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, f"gunicorn exited: {proc.communicate()[0]}"
            return None
        return 200

    try:
        status = wait_until(answer, 30, "gunicorn to answer")
    finally:
        out = _stop(proc, signal.SIGTERM)
    assert status == 503, out
    assert "no Memphis connection yet" in out, out
    assert proc.returncode == 0
