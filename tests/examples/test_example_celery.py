"""examples/celery_app.py under a real ``celery worker`` (prefork pool of 2, the command of
docs/frameworks/celery.rst): each pool process connects after the fork and closes on a warm
shutdown; the main process never connects. Celery's own broker is its filesystem transport."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
from example_tools import EXAMPLES, ROOT, broker_env, doc_command, subprocess_env

import memphis_sync
from memphis_sync.broker.local import LocalBroker
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

TASKS = 30


def _client_names(broker: LocalBroker) -> Set[str]:
    connz = broker.nats_server.monitor("/connz?limit=1000")  # type: ignore[union-attr]
    return {c.get("name", "") for c in connz.get("connections") or []}


def test_each_pool_process_has_its_own_connection(memphis_broker, tmp_path: Path, examples_on_path, monkeypatch):
    pytest.importorskip("celery")
    station = "celery-orders"
    env = subprocess_env(dict(broker_env(memphis_broker), ORDERS_STATION=station,
                              CELERY_FILESYSTEM_DIR=str(tmp_path / "celery")))
    # send the tasks first, from this process (as a web app would): they wait in the folder
    monkeypatch.setenv("CELERY_FILESYSTEM_DIR", env["CELERY_FILESYSTEM_DIR"])
    import celery_app

    for i in range(TASKS):
        celery_app.produce_order.delay({"id": f"task-{i}", "n": i})
    before = _client_names(memphis_broker)

    argv, cwd = doc_command("celery-worker")
    worker = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    got: List[Dict[str, Any]] = []
    try:
        with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
            consumer = memphis.consumer(station, "check", batch_size=100, batch_max_time_to_wait_ms=500)

            def all_arrived() -> bool:
                assert worker.poll() is None, f"the worker exited: {worker.communicate()[0]}"
                for msg in consumer.fetch():
                    got.append(json.loads(bytes(msg.get_data())))
                    msg.ack()
                return len(got) >= TASKS

            wait_until(all_arrived, 45, f"the {TASKS} tasks' messages")
            new = _client_names(memphis_broker) - before - {f"{memphis.connection_id}::root"}
    finally:
        try:
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            out = worker.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            worker.kill()
            out = worker.communicate()[0]

    assert sorted(m["n"] for m in got) == list(range(TASKS))
    by_pid: Dict[int, Set[str]] = {}
    for m in got:
        by_pid.setdefault(m["pid"], set()).add(m["connection"])
    assert worker.pid not in by_pid, "the main process runs no task"
    assert all(len(ids) == 1 for ids in by_pid.values()), f"one connection per pool process: {by_pid}"
    assert len(new) == 2, f"two pool processes, two connections, none in the main process: {new}"
    assert out.count(": connected to Memphis (connection") == 2, out
    assert out.count(": closed its Memphis connection") == 2, out
    assert "Traceback" not in out, out
    wait_until(lambda: not (_client_names(memphis_broker) - before), 10, "the pool's connections to be gone")
    for folder in (EXAMPLES, ROOT, Path.cwd()):  # the worker's working directory, and this process's
        assert not (folder / "control").exists(), "the filesystem transport keeps its files in CELERY_FILESYSTEM_DIR"


def test_a_pool_process_starts_with_the_broker_down_and_its_task_connects_later(
    memphis_broker, examples_on_path, monkeypatch, unused_port, tmp_path: Path, caplog
):
    """The signal handlers and the task, called in this process as a pool process would."""
    pytest.importorskip("celery")
    monkeypatch.setenv("CELERY_FILESYSTEM_DIR", str(tmp_path / "celery"))
    monkeypatch.setenv("ORDERS_STATION", "celery-later")
    monkeypatch.setenv("MEMPHIS_HOST", memphis_broker.host)
    monkeypatch.setenv("MEMPHIS_PORT", str(unused_port))  # the broker is down
    import celery_app

    try:
        with caplog.at_level("WARNING", logger="celery_app"):
            celery_app.connect_memphis()  # must not raise: that would stop the worker
        assert "no Memphis connection yet" in caplog.text and "could not connect" in caplog.text
        assert celery_app._memphis is None
        monkeypatch.setenv("MEMPHIS_PORT", str(memphis_broker.port))  # the broker is back
        assert celery_app.produce_order.run({"id": "later-1"}) == 1  # the task body: connects now
        assert celery_app._memphis is not None
    finally:
        celery_app.close_memphis()
    assert celery_app._memphis is None
