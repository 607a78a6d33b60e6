"""A script that exits without closing its connection loses nothing it could still send, and
says how much the server never confirmed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import connect

pytestmark = pytest.mark.integration


def _run(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
    )


def test_nonblocking_produces_are_confirmed_at_exit(memphis_broker):
    kwargs = memphis_broker.connect_kwargs()
    result = _run(f"""
        import memphis_sync
        memphis = memphis_sync.connect(**{kwargs!r})
        memphis.station("exit-flush")
        producer = memphis.producer("exit-flush", "script")
        for i in range(5000):
            producer.produce(b"m%d" % i, nonblocking=True)
        print("produced")
        # no flush(), no close(): the interpreter exits here
    """)
    assert result.returncode == 0, result.stderr
    assert "produced" in result.stdout
    assert "UnconfirmedPublishWarning" not in result.stderr, result.stderr
    conn = connect(memphis_broker.url, token=memphis_broker.connection_token, name="t::root")
    try:
        assert JetStream(conn).stream_info("exit-flush$1").state.messages == 5000
    finally:
        conn.close()


def test_plain_publishes_queued_at_exit_are_written(nats_server):
    result = _run(f"""
        from memphis_sync.nats.connection import connect
        conn = connect({nats_server.url!r})
        from memphis_sync.jetstream import JetStream
        js = JetStream(conn)
        js.add_stream(None, name="EXITPUB", subjects=["exitpub"], storage="memory")
        futures = [js.publish_async("exitpub", b"x" * 100) for _ in range(3000)]
    """)
    assert result.returncode == 0, result.stderr
    assert "Unconfirmed" not in result.stderr, result.stderr
    conn = connect(nats_server.url)
    try:
        assert JetStream(conn).stream_info("EXITPUB").state.messages == 3000
    finally:
        conn.close()


def test_exit_with_a_paused_server_is_bounded_and_warns_with_the_count(nats_server):
    """The server stops answering before the script ends: the exit takes at most the exit
    flush timeout, and the warning gives the number of publishes never confirmed."""
    script = f"""
        import os, signal, sys
        import memphis_sync.nats.connection as connection
        from memphis_sync.jetstream import JetStream
        connection.exit_flush_timeout = 1.5
        conn = connection.connect({nats_server.url!r})
        js = JetStream(conn)
        js.add_stream(None, name="EXITSTOP", subjects=["exitstop"], storage="memory")
        os.kill({nats_server.pid}, signal.SIGSTOP)
        futures = [js.publish_async("exitstop", b"x", timeout=60) for _ in range(50)]
        print("queued", flush=True)
    """
    start = time.monotonic()
    try:
        result = _run(script, timeout=30)
    finally:
        os.kill(nats_server.pid, signal.SIGCONT)
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert "queued" in result.stdout
    assert "UnconfirmedPublishWarning" in result.stderr and "50 pipelined publish(es)" in result.stderr, result.stderr
    assert took < 15, took
