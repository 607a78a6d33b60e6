"""Ctrl-C reaches a thread blocked in the library at once, whatever it waits for, and the
connection stays usable. A real SIGINT is sent to the process; its handler raises, as
Python's default handler does with KeyboardInterrupt."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from typing import Callable, Iterator

import pytest

from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import connect
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration


def _stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until the kernel shows it stopped (the signal is asynchronous)."""
    os.kill(pid, signal.SIGSTOP)

    def stopped() -> bool:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "T"

    wait_until(stopped, 5, f"process {pid} to be stopped")


class Interrupted(Exception):
    """What our SIGINT handler raises (KeyboardInterrupt would stop pytest itself)."""


@pytest.fixture
def interrupt_after() -> Iterator[Callable[[float], None]]:
    old = signal.signal(signal.SIGINT, lambda signum, frame: (_ for _ in ()).throw(Interrupted()))
    timers = []

    def arm(seconds: float) -> None:
        timer = threading.Timer(seconds, os.kill, args=(os.getpid(), signal.SIGINT))
        timer.start()
        timers.append(timer)

    try:
        yield arm
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        signal.signal(signal.SIGINT, old)


def _interrupted_within(call: Callable[[], object], arm: Callable[[float], None], bound: float = 2.0) -> float:
    arm(0.3)
    start = time.monotonic()
    with pytest.raises(Interrupted):
        call()
    took = time.monotonic() - start
    assert took < bound, took
    return took


def test_ctrl_c_interrupts_a_request_without_a_limit(nats_server, interrupt_after):
    conn = connect(nats_server.url)
    try:
        conn.subscribe("silent")  # takes requests, never answers
        conn.flush(timeout=2)
        _interrupted_within(lambda: conn.request("silent", b"?", timeout=math.inf), interrupt_after)
        conn.subscribe("echo", callback=lambda m: conn.publish(m.reply, m.payload))
        assert conn.request("echo", b"still works", timeout=5).payload == b"still works"
    finally:
        conn.close()


def test_ctrl_c_interrupts_next_msg_and_flush(nats_server, interrupt_after):
    conn = connect(nats_server.url)
    try:
        sub = conn.subscribe("nothing")
        _interrupted_within(lambda: sub.next_msg(timeout=None), interrupt_after)
        _stop(nats_server.pid)
        try:
            _interrupted_within(lambda: conn.flush(timeout=None), interrupt_after)
        finally:
            os.kill(nats_server.pid, signal.SIGCONT)
        conn.flush(timeout=5)
    finally:
        conn.close()


def test_ctrl_c_interrupts_a_wait_for_a_full_window_and_for_acks(nats_server, interrupt_after):
    conn = connect(nats_server.url)
    try:
        js = JetStream(conn, max_pending=2, max_block=None)
        js.add_stream(None, name="CTRLC", subjects=["ctrlc"], storage="memory")
        _stop(nats_server.pid)
        try:
            futures = [js.publish_async("ctrlc", b"x", timeout=math.inf) for _ in range(2)]
            _interrupted_within(lambda: js.publish_async("ctrlc", b"blocked"), interrupt_after)
            _interrupted_within(lambda: js.publish_async_complete(timeout=None), interrupt_after)
        finally:
            os.kill(nats_server.pid, signal.SIGCONT)
        assert [f.result(timeout=10).seq for f in futures] == [1, 2]
        assert js.stream_info("CTRLC").state.messages == 2  # the interrupted one never went out
    finally:
        conn.close()
