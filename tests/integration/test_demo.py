"""The main job: ``memphis-sync demo`` on a fresh local broker."""

from __future__ import annotations

import pytest

from memphis_sync.cli import main
from memphis_sync.demo import format_report, run_demo

pytestmark = pytest.mark.integration


def test_demo_consumes_every_message_exactly_once():
    lines = []
    result = run_demo(messages=600, producers=3, consumers=2, size=64, progress=lines.append)
    assert result.ok, format_report(result)
    assert result.received == 600 and sum(result.per_consumer) == 600
    assert len(result.latencies_ms) == 600
    assert any("local broker" in line for line in lines)
    assert "duplicates: 0, missing: 0 -> OK" in format_report(result)


def test_demo_command(capsys):
    assert main(["demo", "--messages", "200", "--producers", "2", "--consumers", "2"]) == 0
    out = capsys.readouterr().out
    assert "-> OK" in out and "broker stopped" in out
    with pytest.raises(SystemExit):
        main(["demo", "--size", "8"])
