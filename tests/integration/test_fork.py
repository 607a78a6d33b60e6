"""A connection used in a forked child (gunicorn/uWSGI preforking) fails clearly and
leaves the parent's connection intact."""

from __future__ import annotations

import os
import warnings

import pytest

from memphis_sync.connection import connect
from memphis_sync.errors import ForkedConnectionError

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
