"""A connection used in a forked child (gunicorn/uWSGI preforking) fails clearly and
leaves the parent's connection intact."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from memphis_sync.errors import ForkedConnectionError
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import connect

pytestmark = pytest.mark.integration


def _in_child(fn) -> int:
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "fork() with threads" on 3.12+
        pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            code = fn()
        finally:
            os.write(write_fd, bytes([code]))
            os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    data = os.read(read_fd, 1)
    os.close(read_fd)
    assert os.WIFEXITED(status)
    return data[0]


def test_child_gets_clear_error_and_parent_keeps_working(nats_server):
    conn = connect(nats_server.url)
    try:
        sub = conn.subscribe("fork.test")
        conn.flush()

        def child() -> int:
            codes = 0
            for call in (lambda: conn.publish("fork.test", b"from child"),
                         lambda: conn.request("fork.test", b"", timeout=1),
                         lambda: conn.flush(timeout=1)):
                try:
                    call()
                except ForkedConnectionError as exc:
                    if "fork" in str(exc):
                        codes += 1
                except Exception:
                    pass
            conn.close()  # must not disturb the parent's socket
            return 10 + codes

        assert _in_child(child) == 13
        conn.publish("fork.test", b"from parent")
        conn.flush(timeout=2)
        msg = sub.next_msg(timeout=2)
        assert msg.payload == b"from parent"
        assert conn.is_connected()
    finally:
        conn.close()


def test_inherited_connection_is_not_connected_in_the_child(nats_server):
    """The recipes' "reconnect if not connected" guard must see the inherited connection as
    down at once (it used to say True until the first use failed)."""
    conn = connect(nats_server.url)
    try:
        sub = conn.subscribe("fork.lazy")
        conn.flush()

        def child() -> int:
            if conn.is_connected() or not conn.is_closed():
                return 1
            fresh = connect(nats_server.url)  # the lazy recipe: a connection of its own
            fresh.publish("fork.lazy", b"child %d" % os.getpid())
            fresh.flush(timeout=2)
            fresh.close()
            return 20

        assert _in_child(child) == 20
        assert sub.next_msg(timeout=2).payload.startswith(b"child ")
        assert conn.is_connected()  # the parent's connection is untouched
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None and shutil.which("gunicorn") is None,
                    reason="gunicorn is in the test extra")
def test_gunicorn_preload_workers_use_the_lazy_recipe(memphis_broker, tmp_path):
    """``gunicorn --preload -w 2`` with a connection made at import time in the master: every
    request of every worker succeeds (it used to be HTTP 500 on each worker's first request)."""
    port = _free_port()
    station = "gunicorn-preload"
    env = dict(os.environ, MEMPHIS_TEST_CONNECT=json.dumps(memphis_broker.connect_kwargs()),
               MEMPHIS_TEST_STATION=station, PYTHONPATH=str(Path(__file__).parent))
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or shutil.which("gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "--preload", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}", "apps.preload_app:app"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        pids, statuses = set(), []
        for i in range(40):
            req = urllib.request.Request(url, headers={"X-Id": f"req-{i}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                statuses.append(resp.status)
                pids.add(json.loads(resp.read())["pid"])
        assert statuses == [200] * 40
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
    assert b"Traceback" not in out, out.decode(errors="replace")[-3000:]
    conn = connect(memphis_broker.url, token=memphis_broker.connection_token, name="t::root")
    try:
        assert JetStream(conn).stream_info(f"{station}$1").state.messages == 41  # 40 + the probe
    finally:
        conn.close()
