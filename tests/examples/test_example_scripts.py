"""examples/producer.py and examples/consumer.py, run as scripts in subprocesses against the
local broker, configured by the ``MEMPHIS_*`` environment variables."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, List

import pytest
from example_tools import EXAMPLES, broker_env, refused_port, subprocess_env

pytestmark = pytest.mark.integration


def run(script: str, args: List[str], env: Dict[str, str], timeout: float = 30) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], env=subprocess_env(env), cwd=EXAMPLES,
                          capture_output=True, text=True, timeout=timeout)


def test_the_producer_sends_n_and_the_consumer_receives_n_and_exits(memphis_broker):
    env = broker_env(memphis_broker)
    station = "scripts-orders"
    produced = run("producer.py", ["--station", station, "--count", "60", "--text", "hi"], env)
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.startswith(f"produced 60 messages to {station!r} in ")

    consumed = run("consumer.py", ["--station", station, "--group", "scripts-reader", "--count", "60"], env)
    assert consumed.returncode == 0, consumed.stderr
    lines = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [line["data"] for line in lines] == [{"n": n, "text": "hi"} for n in range(60)]
    assert [line["seq"] for line in lines] == list(range(1, 61))

    # run again with the same ids: the broker drops the repeats (the idempotency window)
    again = run("producer.py", ["--station", station, "--count", "60", "--nonblocking"], env)
    assert again.returncode == 0, again.stderr
    nothing = run("consumer.py", ["--station", station, "--group", "scripts-reader", "--count", "1", "--timeout", "1"], env)
    assert nothing.returncode == 1
    assert "only 0 of 1 messages within 1 s" in nothing.stderr


def test_a_consumer_started_first_waits_for_the_producer(memphis_broker):
    env = broker_env(memphis_broker)
    station = "scripts-live"
    consumer = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "consumer.py"), "--station", station, "--group", "live", "--count", "25"],
        env=subprocess_env(env), cwd=EXAMPLES, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert consumer.stderr is not None
        ready = consumer.stderr.readline()  # printed once its consumer exists on the broker
        assert ready == f"consumer: waiting for 25 messages on {station!r} (group 'live')\n"
        produced = run("producer.py", ["--station", station, "--count", "25", "--nonblocking", "--id-prefix", "live"], env)
        assert produced.returncode == 0, produced.stderr
        out, err = consumer.communicate(timeout=30)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.communicate()
    assert consumer.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["data"]["n"] for line in lines) == list(range(25))


def test_broker_unreachable_exits_2_with_the_reason():
    env = {"MEMPHIS_HOST": "127.0.0.1", "MEMPHIS_PORT": str(refused_port())}
    for script in ("producer.py", "consumer.py"):
        result = run(script, ["--count", "1"], env)
        assert result.returncode == 2, (script, result.stdout, result.stderr)
        assert "could not connect" in result.stderr and env["MEMPHIS_PORT"] in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_environment_and_arguments_are_reported():
    result = run("producer.py", [], {"MEMPHIS_PORT": "six"})
    assert result.returncode == 2 and "MEMPHIS_PORT must be an integer, got 'six'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("consumer.py", ["--count", "0"], {})
    assert result.returncode == 2 and "--count must be >= 1" in result.stderr
