"""The main job: ``memphis-sync demo`` on a fresh local broker; its time limit and its signals."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from memphis_sync.cli import main
from memphis_sync.demo import format_report, run_demo

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
#: More messages than any machine produces in the few seconds before the signal.
ENDLESS = "5000000"
#: Seconds the demo gets to start, and to be gone after a signal or its time limit.
START_WAIT = 20.0
EXIT_WAIT = 10.0


def _gone(pid: int) -> bool:
    """No such process, or a zombie (an orphan whose reaper is slow still counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _leftovers(tmp: Path) -> List[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("memphis-sync-"))


class _Demo:
    """``python -m memphis_sync demo ...`` in a subprocess with its own TMPDIR; output read by a thread."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(self.tmp), "PYTHONFAULTHANDLER": "1"}
        self.err_path = tmp_path / "stderr.txt"
        with open(self.err_path, "w") as err:  # a file: nothing to read while waiting
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memphis_sync", "demo", *args],
                stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=str(tmp_path),
            )
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.out: List[str] = []
        self._reader = threading.Thread(target=self._read, name="test-demo-stdout", daemon=True)
        self._reader.start()
        self.nats_pid: Optional[int] = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = START_WAIT) -> str:
        """Return the first line containing ``text``, remembering the nats-server pid on the way."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the demo printed no {text!r} within {timeout} s; output: {''.join(self.out)!r}")
            if line is None:
                pytest.fail(f"the demo exited ({self.proc.wait(EXIT_WAIT)}) before printing {text!r}: "
                            f"{''.join(self.out)!r} {self.err_path.read_text()}")
            self.out.append(line)
            found = re.search(r"nats-server pid (\d+)", line)
            if found:
                self.nats_pid = int(found.group(1))
            if text in line:
                return line

    def finish(self, timeout: float = EXIT_WAIT) -> str:
        """Wait for the exit (bounded); return stderr. The rest of stdout lands in ``out``."""
        self.proc.wait(timeout)
        self._reader.join(EXIT_WAIT)  # it ends at the end of stdout and queues None last
        while True:
            line = self.lines.get(timeout=EXIT_WAIT)
            if line is None:
                return self.err_path.read_text()
            self.out.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(EXIT_WAIT)
        self._reader.join(EXIT_WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.nats_pid is not None and not _gone(self.nats_pid):  # never leave a server behind
            os.kill(self.nats_pid, signal.SIGKILL)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[List[_Demo]]:
    started: List[_Demo] = []
    yield started
    for one in started:
        one.close()


def test_demo_consumes_every_message_exactly_once():
    lines = []
    counts = []
    result = run_demo(messages=600, producers=3, consumers=2, size=64, progress=lines.append,
                      on_counts=lambda *c: counts.append(c))
    assert result.ok, format_report(result)
    assert result.received == 600 and sum(result.per_consumer) == 600 and result.produced == 600
    assert len(result.latencies_ms) == 600 and result.ack_latencies_ms
    assert not result.timed_out and result.error is None and result.status == "OK"
    assert any("local broker" in line for line in lines)
    assert counts and counts[-1] == (600, 600, 600)
    report = format_report(result)
    assert "duplicates: 0, missing: 0 -> OK" in report and "TIMED OUT" not in report
    assert "produce->ack latency" in report and "includes waiting in the backlog" in report
    assert not [t.name for t in threading.enumerate() if t.name.startswith("demo-")]


def test_demo_command(capsys):
    assert main(["demo", "--messages", "200", "--producers", "2", "--consumers", "2"]) == 0
    out = capsys.readouterr().out
    assert "-> OK" in out and "broker stopped" in out
    with pytest.raises(SystemExit):
        main(["demo", "--size", "8"])
    with pytest.raises(SystemExit):
        main(["demo", "--timeout", "0"])


def test_time_limit_stops_the_demo_and_its_broker():
    lines: List[str] = []
    started = time.monotonic()
    result = run_demo(messages=int(ENDLESS), timeout=1.0, progress=lines.append)
    assert time.monotonic() - started < 1.0 + EXIT_WAIT
    assert result.timed_out and not result.ok and result.status == "TIMED OUT"
    assert 0 < result.missing <= result.messages
    assert "TIMED OUT" in format_report(result) and "-> TIMED OUT" in format_report(result)
    pid = int(re.search(r"nats-server pid (\d+)", lines[0]).group(1))
    assert _gone(pid)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("demo-")]


def test_time_limit_of_the_command(tmp_path: Path, demo: List[_Demo]):
    run = _Demo(tmp_path, "--messages", ENDLESS, "--timeout", "1.5")
    demo.append(run)
    run.wait_for("nats-server pid")
    err = run.finish()
    out = "".join(run.out)
    assert run.proc.returncode == 1, out + err
    assert "TIMED OUT" in out and "broker stopped" in out
    assert run.nats_pid is not None and _gone(run.nats_pid)
    assert _leftovers(run.tmp) == []


@pytest.mark.parametrize(
    "sig, delay",
    [(signal.SIGINT, 0.5), (signal.SIGTERM, 0.5), (signal.SIGTERM, 0.0)],
    ids=["SIGINT", "SIGTERM", "SIGTERM-while-starting-threads"],
)
def test_signal_stops_the_demo_cleanly(tmp_path: Path, demo: List[_Demo], sig: signal.Signals, delay: float):
    run = _Demo(tmp_path, "--messages", ENDLESS, "--timeout", "120")
    demo.append(run)
    run.wait_for("producing")  # printed just before the threads start
    time.sleep(delay)
    assert run.nats_pid is not None and not _gone(run.nats_pid)
    assert _leftovers(run.tmp)  # the demo's store and the server's directory
    sent = time.monotonic()
    run.proc.send_signal(sig)
    err = run.finish()
    assert time.monotonic() - sent < EXIT_WAIT
    assert run.proc.returncode == 128 + sig, err
    assert f"interrupted by {sig.name}" in err and "broker stopped" in err
    assert len(err.strip().splitlines()) == 1, err
    assert _gone(run.nats_pid)
    assert _leftovers(run.tmp) == []


def test_nats_server_dies_with_a_killed_demo(tmp_path: Path, demo: List[_Demo]):
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    run = _Demo(tmp_path, "--messages", ENDLESS, "--timeout", "120")
    demo.append(run)
    run.wait_for("producing")
    assert run.nats_pid is not None
    run.proc.kill()  # SIGKILL: no finalizer runs, only the kernel can tell nats-server
    run.finish()
    assert _wait_gone(run.nats_pid, EXIT_WAIT), f"nats-server pid {run.nats_pid} outlived its killed parent"
