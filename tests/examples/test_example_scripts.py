"""examples/producer.py and examples/consumer.py, run as scripts in subprocesses against the
local broker, configured by the ``MEMPHIS_*`` environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest
from example_tools import EXAMPLES, broker_env, doc_command, subprocess_env

pytestmark = pytest.mark.integration


def run(script: str, args: List[str], env: Dict[str, str], timeout: float = 30) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], env=subprocess_env(env), cwd=EXAMPLES,
                          capture_output=True, text=True, timeout=timeout)


def test_the_producer_sends_n_and_the_consumer_receives_n_and_exits(memphis_broker_function):
    """The commands of docs/frameworks/scripts.rst, as shown (station ``orders``: a fresh broker)."""
    env = subprocess_env(broker_env(memphis_broker_function))
    argv, cwd = doc_command("producer")
    produced = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.startswith("produced 100 messages to 'orders' in ")

    argv, cwd = doc_command("consumer")
    consumed = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert consumed.returncode == 0, consumed.stderr
    lines = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [line["data"] for line in lines] == [{"n": n, "text": "hello"} for n in range(100)]
    assert [line["seq"] for line in lines] == list(range(1, 101))

    # run again with the same ids: the broker drops the repeats (the idempotency window)
    again = run("producer.py", ["--count", "100", "--nonblocking"], broker_env(memphis_broker_function))
    assert again.returncode == 0, again.stderr
    nothing = run("consumer.py", ["--count", "1", "--timeout", "1"], broker_env(memphis_broker_function))
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


@pytest.fixture
def scripts(examples_on_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The two scripts imported (their ``main(argv)``), with no ``MEMPHIS_*`` variable set."""
    for name in [n for n in os.environ if n.startswith("MEMPHIS_")]:
        monkeypatch.delenv(name)
    import consumer
    import producer

    yield producer, consumer
    for name in ("producer", "consumer"):
        sys.modules.pop(name, None)


def test_broker_unreachable_exits_2_with_the_reason(scripts, monkeypatch, capsys, unused_port):
    port = str(unused_port)
    monkeypatch.setenv("MEMPHIS_PORT", port)
    for script in scripts:
        assert script.main(["--count", "1"]) == 2
        err = capsys.readouterr().err
        assert "could not connect" in err and port in err, err


def test_bad_environment_and_arguments_are_reported(scripts, monkeypatch, capsys):
    producer, consumer = scripts
    monkeypatch.setenv("MEMPHIS_PORT", "six")
    assert producer.main([]) == 2
    assert "producer: memphis: MEMPHIS_PORT must be an integer, got 'six'" in capsys.readouterr().err
    monkeypatch.setenv("MEMPHIS_PORT", "6666")
    monkeypatch.setenv("MEMPHIS_PASSWORD", "pw")
    monkeypatch.setenv("MEMPHIS_CONNECTION_TOKEN", "tok")
    assert consumer.main([]) == 2
    assert "consumer: memphis: set MEMPHIS_CONNECTION_TOKEN or MEMPHIS_PASSWORD, not both" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        consumer.main(["--count", "0"])
    assert exit_info.value.code == 2 and "--count must be >= 1" in capsys.readouterr().err
