"""The ``memphis-sync`` client commands (produce, consume, stations, bench) on the session's local
broker, in process and as real subprocesses (signals, environment variables)."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from memphis_sync import _version
from memphis_sync.broker.local import LocalBroker
from memphis_sync.cli import build_parser, main
from memphis_sync.cli.options import connection_settings
from memphis_sync.errors import MemphisValueError
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _conn(broker: LocalBroker) -> List[str]:
    return ["--host", broker.host, "--port", str(broker.port), "--token", broker.connection_token or "memphis"]


def _run(*argv: str, stdin: str = "") -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv), out=out, err=err)
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def _records(text: str) -> List[Dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- the parser ---------------------------------------------------------------------------


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for inner, path in _actions(sub):
                    yield inner, f"{name} {path}"
        else:
            yield action, "/".join(action.option_strings) or action.dest


def test_every_option_has_help_and_the_description_is_plain_text(capsys):
    parser = build_parser()
    missing = [path for action, path in _actions(parser) if not action.help]
    assert not missing, f"options without help: {missing}"
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "produce" in text and "MEMPHIS_URL" in text
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"memphis-sync {_version.__version__}"


@pytest.mark.parametrize("argv", [
    ["consume", "s", "--count", "0"],
    ["consume", "s", "--batch-size", "0"],
    ["produce", "s", "a", "b", "--msg-id", "x"],
    ["produce", "s", "-H", "novalue"],
    ["produce", "s", "a", "--file", "f"],
    ["bench", "--size", "8"],
    ["nonsense"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert "usage: memphis-sync" in capsys.readouterr().err


# -- connection settings --------------------------------------------------------------------


def _settings(argv: List[str], env: Dict[str, str]) -> Dict[str, object]:
    args = build_parser().parse_args(["stations", *argv])
    return connection_settings(args, env)


def test_settings_precedence_defaults_env_url_options():
    assert _settings([], {}) == {"host": "localhost", "username": "root", "connection_token": "memphis"}
    env = {"MEMPHIS_HOST": "envhost", "MEMPHIS_PORT": "7000", "MEMPHIS_PASSWORD": "envpw", "MEMPHIS_ACCOUNT_ID": "3"}
    assert _settings([], env) == {"host": "envhost", "port": 7000, "username": "root", "password": "envpw", "account_id": 3}
    url = ["--url", "memphis://app:tok@urlhost:7100?account_id=4"]
    assert _settings(url, env) == {"host": "urlhost", "port": 7100, "username": "app", "connection_token": "tok", "account_id": 4}
    assert _settings([*url, "--port", "7200", "--password", "cli"], env) == {
        "host": "urlhost", "port": 7200, "username": "app", "password": "cli", "account_id": 4,
    }
    assert _settings(["--connect-timeout", "0.5"], {})["timeout_ms"] == 500


def test_bad_settings_are_usage_errors_that_hide_secrets():
    with pytest.raises(MemphisValueError) as bad:
        _settings([], {"MEMPHIS_PORT": "six"})
    assert "MEMPHIS_PORT" in str(bad.value)
    code, out, err = _run("stations", "--url", "memphis://root:S3CRET@127.0.0.1:notaport")
    assert code == 1 and "bad port" in err and "S3CRET" not in err + out and "***" in err
    with pytest.raises(MemphisValueError, match="not both"):
        _settings([], {"MEMPHIS_PASSWORD": "a", "MEMPHIS_CONNECTION_TOKEN": "b"})


def test_an_unreachable_broker_is_exit_1_with_one_clear_line():
    code, out, err = _run("stations", "--host", "127.0.0.1", "--port", "1", "--connect-timeout", "0.5")
    assert code == 1 and out == ""
    assert err.startswith("memphis-sync stations: ") and len(err.strip().splitlines()) == 1
    assert "127.0.0.1:1" in err


# -- produce and consume --------------------------------------------------------------------


def test_produce_arguments_then_consume_json_once(memphis_broker):
    station, conn = _name("cli"), _conn(memphis_broker)
    assert _run("produce", station, "one", "two", "-H", "trace=t1", "-H", "kind=demo", *conn)[0] == 0
    for _ in range(2):  # the same msg_id twice: stored once
        assert _run("produce", station, "three", "--msg-id", "m-1", *conn)[0] == 0
    code, out, err = _run("consume", station, "--json", "--count", "10", "--idle", "1", *conn)
    assert code == 0 and "consumed 3 message(s)" in err
    records = _records(out)
    assert [r["data"] for r in records] == ["one", "two", "three"]
    assert records[0]["headers"] == {"trace": "t1", "kind": "demo"} and records[0]["sequence"] == 1
    assert records[2]["headers"]["msg-id"] == "m-1"
    assert _run("consume", station, "--json", "--idle", "0.5", *conn)[1] == ""  # acked: the group is done


def test_produce_from_stdin_and_file_consume_to_file_and_no_ack(memphis_broker, tmp_path):
    station, conn = _name("cli"), _conn(memphis_broker)
    assert _run("produce", station, *conn, stdin="a\nb\n")[0] == 0
    lines = tmp_path / "lines.txt"
    lines.write_text("c\r\nd\n", encoding="utf-8")
    assert _run("produce", station, "--file", str(lines), *conn)[0] == 0
    code, out, _ = _run("consume", station, "--group", "peek", "--no-ack", "--count", "4", *conn)
    assert code == 0 and out.splitlines() == ["a", "b", "c", "d"]
    target = tmp_path / "out.jsonl"
    code, out, _ = _run("consume", station, "--group", "copy", "--json", "--count", "4", "-o", str(target), *conn)
    assert code == 0 and out == ""  # another group reads them all, into the file
    assert [r["data"] for r in _records(target.read_text(encoding="utf-8"))] == ["a", "b", "c", "d"]
    code, out, _ = _run("consume", station, "--group", "peek", "--idle", "0.5", *conn)
    assert code == 0 and out == ""  # unacked ones come back only after the group's ack wait (30 s), not at once


def test_produce_refuses_bad_input_with_exit_1(memphis_broker):
    conn = _conn(memphis_broker)
    code, _, err = _run("produce", "bad station", "x", *conn)
    assert code == 1 and err.startswith("memphis-sync produce: ") and "memphis: " not in err
    code, _, err = _run("produce", _name("cli"), "x", "-H", "$memphis_x=1", *conn)
    assert code == 1 and "$memphis" in err


def _env(broker: LocalBroker) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"MEMPHIS_URL": f"memphis://root:{broker.connection_token}@{broker.host}:{broker.port}", "PYTHONUNBUFFERED": "1"})
    return env


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_consume_follow_until_a_signal(memphis_broker, sig, code):
    station = _name("follow")
    assert _run("produce", station, "first", *_conn(memphis_broker))[0] == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "memphis_sync", "consume", station, "--follow"], env=_env(memphis_broker),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"  # from MEMPHIS_URL alone; then it waits for more
        assert _run("produce", station, "second", *_conn(memphis_broker))[0] == 0
        assert proc.stdout.readline() == "second\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code and "interrupted after 2 message(s)" in err


# -- stations and bench ---------------------------------------------------------------------


def test_stations_list_inspect_json_and_missing(memphis_broker):
    station, conn = _name("inspect"), _conn(memphis_broker)
    assert _run("produce", station, "x", "y", "--partition-number", "1", *conn)[0] == 0
    assert _run("consume", station, "--group", "readers", "--count", "1", *conn)[0] == 0
    code, out, _ = _run("stations", *conn)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["STATION", "PARTITIONS", "RETENTION"]
    row = next(line for line in out.splitlines() if line.startswith(station + " "))
    assert row.split()[1:4] == ["1", "message_age_sec", "3600"] and "readers" in row
    code, out, _ = _run("stations", station, "--json", *conn)
    [info] = json.loads(out)
    assert (info["name"], info["messages"], info["partitions"], info["dead_letters"]) == (station, 2, 1, 0)
    assert info["consumer_groups"] == {"readers": {"unread": 1, "unacked": 0, "redelivered": 0}}
    import memphis_sync

    with memphis_sync.connect(**memphis_broker.connect_kwargs()) as memphis:
        [msg] = memphis.consumer(station, "r2", consumer_group="readers").fetch(batch_size=1)
        msg.dead_letter("cannot parse")

    def dead_letters() -> object:
        return json.loads(_run("stations", station, "--json", *conn)[1])[0]["dead_letters"]

    assert wait_until(lambda: dead_letters() == 1, timeout=10)
    code, out, err = _run("stations", station, "no-such-station", *conn)
    assert code == 1 and f"station {station}" in out and "no station 'no-such-station'" in err


def test_bench_table_and_plot(memphis_broker, tmp_path):
    pytest.importorskip("matplotlib")
    station, conn, png = _name("bench"), _conn(memphis_broker), tmp_path / "bench.png"
    code, out, err = _run("bench", "--station", station, "--messages", "400", "--producers", "2", "--consumers", "2",
                          "--plot", str(png), *conn)
    assert code == 0, err
    assert "THROUGHPUT" in out and "produce  400/400" in out and "consume  400/400" in out and "-> OK" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert wait_until(lambda: station not in _run("stations", *conn)[1], timeout=5)  # the bench removed its station
    assert _run("produce", station, "x", *conn)[0] == 0
    code, _, err = _run("bench", "--station", station, "--messages", "10", *conn)
    assert code == 1 and "exists" in err


def test_the_installed_script_runs():
    script = Path(sys.executable).with_name("memphis-sync")
    if not script.exists():
        pytest.skip("no console script next to this interpreter")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("memphis-sync ")


def test_the_readme_commands(memphis_broker):
    """README's produce and consume lines, as written, against the session broker (its port added)."""
    import shlex

    lines = [line.split("#")[0].strip() for line in (REPO / "README.rst").read_text(encoding="utf-8").splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith(".venv/bin/memphis-sync ")]
    verbs = [argv[0] for argv in commands]
    assert verbs == ["broker", "produce", "consume"], verbs
    station = commands[1][1]
    with_port = ["--host", memphis_broker.host, "--port", str(memphis_broker.port)]
    commands[1][1] = commands[2][1] = _name(station)  # a station of this test only
    assert _run(*commands[1], *with_port)[0] == 0
    code, out, _ = _run(*commands[2], *with_port)
    assert code == 0 and out == "first order\n"
    args = build_parser().parse_args(commands[0])  # the broker line parses (tests/broker runs the broker command)
    assert args.command == "broker" and args.port == 6666


def _doc_commands(page: str) -> List[str]:
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    return [line.strip()[2:].split("  #")[0].strip() for line in text.splitlines()
            if line.strip().startswith("$ ") and "memphis-sync" in line]


@pytest.mark.parametrize("page", ["cli.rst", "quickstart.rst"])
def test_the_docs_commands_as_written(memphis_broker, page, tmp_path, monkeypatch):
    """Every ``$ memphis-sync ...`` line of the page: client commands run against the session
    broker (its host and port added, the station renamed, the bench's count made small); broker
    and demo lines parse (tests/broker and tests/test_demo.py run those commands)."""
    import shlex

    monkeypatch.chdir(tmp_path)  # bench --plot writes its PNG here
    station = _name("docs")
    ran = []
    for line in _doc_commands(page):
        stdin = ""
        if "|" in line:  # "seq 1 1000 | memphis-sync produce orders"
            feeder, line = (part.strip() for part in line.split("|", 1))
            first, last = (int(n) for n in shlex.split(feeder)[1:])
            assert shlex.split(feeder)[0] == "seq"
            stdin = "".join(f"{n}\n" for n in range(first, last + 1))
        argv = shlex.split(line.split(">")[0].split(";")[0])[1:]
        assert argv, line
        if argv[0] in ("broker", "demo") or argv == ["--version"]:
            if argv != ["--version"]:
                assert build_parser().parse_args(argv).command == argv[0]
            continue
        argv = [station if arg == "orders" else ("1000" if prev == "--messages" else arg)
                for prev, arg in zip([""] + argv, argv)]
        if argv[0] == "bench":
            argv += ["--station", _name("docs-bench")]
        code, out, err = _run(*argv, "--host", memphis_broker.host, "--port", str(memphis_broker.port), stdin=stdin)
        assert code == 0, (line, err)
        ran.append(argv[0])
    assert "produce" in ran and "consume" in ran and "stations" in ran
