"""``memphis-sync demo`` without a broker: the report's wording, the progress display, the help."""

from __future__ import annotations

import io

import pytest

from memphis_sync import cli
from memphis_sync.cli import progress
from memphis_sync.cli.progress import Progress
from memphis_sync.demo import DEFAULT_TIMEOUT, DemoResult, default_timeout, format_report


def _result(**changes) -> DemoResult:
    fields = dict(
        broker="nats://127.0.0.1:1", messages=1000, producers=4, consumers=3, size=128, produced=1000,
        produce_secs=0.5, received=1000, consume_secs=0.4, duplicates=0, missing=0, per_consumer=[400, 300, 300],
        latencies_ms=[1.0, 2.0, 30.0], ack_latencies_ms=[0.5, 0.7], elapsed_secs=0.6, timeout=60.0,
    )
    fields.update(changes)
    return DemoResult(**fields)


def test_report_of_a_good_run_says_what_each_figure_measures() -> None:
    report = format_report(_result())
    assert report.endswith("duplicates: 0, missing: 0 -> OK")
    assert "in 0.500 s (2,000 msg/s)" in report
    assert "in 0.400 s from the first message to the last (2,500 msg/s; consuming started with producing)" in report
    assert "produce->ack latency ms (2 sampled)" in report
    assert "end-to-end latency ms (includes waiting in the backlog)" in report
    assert "TIMED OUT" not in report


def test_report_of_a_timed_out_run() -> None:
    result = _result(produced=300, received=200, missing=800, per_consumer=[100, 100, 0], timed_out=True,
                     elapsed_secs=2.04, timeout=2.0, latencies_ms=[], ack_latencies_ms=[])
    assert not result.ok and result.status == "TIMED OUT"
    lines = format_report(result).splitlines()
    assert lines[0] == "TIMED OUT after 2.0 s (time limit 2 s): 300 of 1000 messages produced, 200 consumed"
    assert lines[-1] == "duplicates: 0, missing: 800 -> TIMED OUT"
    assert not any("latency" in line for line in lines)


def test_report_of_a_failed_run() -> None:
    result = _result(produced=990, produce_failed=10, received=990, missing=10, error="demo-producer-1: X: y")
    assert result.status == "FAILED"
    report = format_report(result)
    assert "(acknowledged, 10 failed)" in report and "error: demo-producer-1: X: y" in report
    assert _result(consume_secs=0.0, received=1).status == "FAILED"
    assert "rate n/a" in format_report(_result(consume_secs=0.0))


def test_default_timeout_scales_with_the_messages() -> None:
    assert default_timeout(0) == DEFAULT_TIMEOUT
    assert default_timeout(50_000) == DEFAULT_TIMEOUT + 25


def test_plain_progress_lines_when_not_a_terminal() -> None:
    out, err = io.StringIO(), io.StringIO()
    shown = Progress(out, err, interval=0.0)
    shown.step("local broker: nats-server pid 1")
    shown.update(10, 5, 100)
    shown.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "local broker: nats-server pid 1"
    assert lines[1].startswith("progress: 10 produced, 5 consumed of 100 (")
    assert err.getvalue() == "" and shown.counts == (10, 5, 100)


def test_plain_progress_lines_are_spaced() -> None:
    out = io.StringIO()
    shown = Progress(out, io.StringIO(), interval=3600.0)
    for n in range(50):
        shown.update(n, n, 100)
    assert out.getvalue() == ""


def test_progress_bars_with_tqdm() -> None:
    import tqdm  # in the test extra: missing means a broken install, not a skip

    out, err = io.StringIO(), io.StringIO()
    shown = Progress(out, err, bars=True)
    shown.update(10, 5, 100)
    shown.step("a step")
    shown.update(100, 100, 100)
    shown.close()
    assert "produced" in err.getvalue() and "consumed" in err.getvalue() and "100/100" in err.getvalue()
    assert "a step" in out.getvalue()
    assert tqdm.tqdm.monitor is None  # no monitor thread


def test_progress_without_tqdm_falls_back_to_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "load_tqdm", lambda: None)
    out = io.StringIO()
    shown = Progress(out, io.StringIO(), bars=True, interval=0.0)
    shown.update(1, 0, 4)
    assert out.getvalue().startswith("progress: 1 produced, 0 consumed of 4")


def test_every_demo_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option, words in [
        ("--messages", "messages to produce"), ("--producers", "producer threads"),
        ("--consumers", "consumer group"), ("--size", "payload bytes"), ("--timeout", "time limit"),
    ]:
        assert option in text and words in text, option


@pytest.mark.parametrize("argv", [["--size", "8"], ["--messages", "2", "--producers", "3"], ["--timeout", "-1"]])
def test_bad_demo_arguments(argv, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", *argv])
    assert exc.value.code == 2
