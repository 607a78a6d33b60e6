"""LocalBroker: authentication modes, restarts keeping data, clear startup errors, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from broker_tools import ask

from memphis_sync.broker.local import LocalBroker, default_store_dir
from memphis_sync.errors import AuthorizationError, BrokerError, MemphisConnectError
from memphis_sync.jetstream import JetStream
from memphis_sync.nats.connection import connect
from memphis_sync.nats.reconnect import ReconnectPolicy
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NO_RECONNECT = ReconnectPolicy(enabled=False)


def test_fixture_broker_exposes_what_clients_need(memphis_broker: LocalBroker) -> None:
    assert memphis_broker.is_running()
    assert memphis_broker.host == "127.0.0.1"
    assert memphis_broker.port > 0 and memphis_broker.url == f"nats://127.0.0.1:{memphis_broker.port}"
    assert (memphis_broker.username, memphis_broker.connection_token, memphis_broker.password) == ("root", "memphis", "")
    assert memphis_broker.account_id == 1
    assert len(memphis_broker.pids) == 1 and memphis_broker.pids[0] == memphis_broker.nats_server.pid
    assert memphis_broker.connect_kwargs() == {
        "host": "127.0.0.1", "port": memphis_broker.port, "username": "root", "connection_token": "memphis",
    }
    varz = memphis_broker.nats_server.monitor("/varz")
    assert varz["max_payload"] == 8 * 1024 * 1024


def test_token_mode_refuses_a_wrong_token(memphis_broker: LocalBroker) -> None:
    with pytest.raises((AuthorizationError, MemphisConnectError)):
        connect(memphis_broker.url, token="wrong", name="x::root", reconnect=NO_RECONNECT)
    conn = connect(memphis_broker.url, token="memphis", name="x::root")
    conn.close()


def test_password_mode_users(memphis_broker_factory: Callable[..., LocalBroker]) -> None:
    broker = memphis_broker_factory(password="s3cret", users={"app": "app-pw"})
    assert broker.connect_kwargs() == {
        "host": "127.0.0.1", "port": broker.port, "username": "root", "password": "s3cret", "account_id": 1,
    }
    for user, password in (("root$1", "s3cret"), ("root", "s3cret"), ("app$1", "app-pw"), ("app", "app-pw")):
        conn = connect(broker.url, user=user, password=password, name=f"id::{user}")
        assert ask(conn, "$memphis_station_creations", {"name": f"st-{user.replace('$', '-')}", "partitions_number": 1, "username": user}) == ""
        conn.close()
    for user, password in (("root$1", "wrong"), ("ghost$1", "s3cret"), ("ghost", "s3cret"), ("app$1", "s3cret")):
        with pytest.raises((AuthorizationError, MemphisConnectError)):
            connect(broker.url, user=user, password=password, reconnect=NO_RECONNECT)
    with pytest.raises((AuthorizationError, MemphisConnectError)):
        connect(broker.url, token="memphis", reconnect=NO_RECONNECT)


def test_restart_keeps_stations_messages_and_positions(memphis_broker_function: LocalBroker) -> None:
    broker = memphis_broker_function
    conn = connect(broker.url, token="memphis", name="t::root")
    try:
        js = JetStream(conn)
        assert ask(conn, "$memphis_station_creations", {"name": "keep.me", "partitions_number": 2, "username": "root"}) == ""
        reply = json.loads(ask(conn, "$memphis_consumer_creations", {
            "name": "c", "station_name": "keep.me", "connection_id": "c1", "consumer_type": "application",
            "consumers_group": "", "max_ack_time_ms": 30000, "max_msg_deliveries": 2,
            "start_consume_from_sequence": 1, "last_messages": -1, "req_version": 4, "username": "root"}))
        assert reply["error"] == ""
        for i in range(10):
            js.publish("keep#me$1.final", b"m%d" % i)
        sub = js.pull_subscribe("keep#me$1", "c")
        for msg in sub.fetch(4, timeout=5):
            msg.ack_sync()
        sub.unsubscribe()
        pids_before = broker.pids
        broker.restart()
        assert broker.pids != pids_before
        # our connection reconnects by itself; the control plane is a new one on the same store
        assert broker.control_plane.get_station("keep.me")["partitions_list"] == [1, 2]
        assert [c["name"] for c in broker.control_plane.consumers("keep.me")] == ["c"]
        wait_until(lambda: conn.is_connected(), 10, "conn.is_connected()")
        info = js.consumer_info("keep#me$1", "c")
        assert (info.ack_floor.stream_seq, info.num_pending) == (4, 6)
        sub = js.pull_subscribe("keep#me$1", "c")
        (msg,) = sub.fetch(1, timeout=5)
        assert msg.data == b"m4"
        msg.ack_sync()
        sub.unsubscribe()
        # and the control plane answers again
        assert ask(conn, "$memphis_station_creations", {"name": "keep.me", "partitions_number": 2, "username": "root"}) == ""
        assert ask(conn, "$memphis_station_destructions", {"station_name": "keep.me", "username": "root"}) == ""
    finally:
        conn.close()


def test_control_plane_survives_a_nats_server_restart(memphis_broker_function: LocalBroker) -> None:
    broker = memphis_broker_function
    broker.nats_server.restart()
    # in token mode connects are checked by the control plane (auth callout): wait for it to be back
    wait_until(lambda: broker.control_plane.connection.is_connected(), 10, "control plane reconnected")
    broker.control_plane.connection.flush()  # its SUBs are in place
    conn = connect(broker.url, token="memphis", name="t::root")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert ask(conn, "$memphis_station_creations", {"name": "after", "partitions_number": 1, "username": "root"}) == ""
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        conn.close()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        broker = LocalBroker(port=port, store_dir=tmp_path)
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            broker.start()
        broker.close()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    broker = LocalBroker(port=0, store_dir=tmp_path, binary=str(tmp_path / "no-such-nats-server"))
    with pytest.raises(BrokerError, match="nats-server not found"):
        broker.start()
    broker.close()


def test_default_store_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_dir() == tmp_path / "memphis-sync" / "broker"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_dir() == tmp_path / "home" / ".local" / "share" / "memphis-sync" / "broker"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        LocalBroker(cluster_size=2)
    with pytest.raises(ValueError):
        LocalBroker(password="")


def _run_cli(tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "memphis_sync", "broker", "--port", "0", "--rest-port", "0", "--store", str(tmp_path / "store"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path),
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_runs_until_signal(tmp_path: Path, sig: int) -> None:
    proc = _run_cli(tmp_path, "--password", "pw")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "memphis broker ready on nats://127.0.0.1:" in line, line + (proc.stderr.read() if proc.poll() is not None else "")
        assert "username 'root' and password 'pw'" in line
        url = line.split("ready on ")[1].split(" ")[0]
        ws_url = line.split(" and ")[1].split(" ")[0]
        assert ws_url.startswith("ws://127.0.0.1:") and ws_url != "ws://127.0.0.1:7770"  # --port 0: a free one
        for server in (url, ws_url):
            conn = connect(server, user="root$1", password="pw")
            assert ask(conn, "$memphis_station_creations", {"name": "cli", "partitions_number": 1, "username": "root"}) == ""
            conn.close()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "memphis broker stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_prints_the_mqtt_url(tmp_path: Path) -> None:
    proc = _run_cli(tmp_path, "--mqtt-port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert ", MQTT mqtt://127.0.0.1:" in line, line
        port = int(line.split(", MQTT mqtt://127.0.0.1:")[1].split(" ")[0].rstrip(","))
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # a free port was chosen and is served
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        result = subprocess.run(
            [sys.executable, "-m", "memphis_sync", "broker", "--port", str(port), "--no-rest", "--store", str(tmp_path)],
            capture_output=True, text=True, env=env, timeout=30,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


def test_start_after_nats_server_was_killed_replaces_the_control_plane(memphis_broker_function: LocalBroker) -> None:
    """kill -9 of nats-server, then start(): one control plane serves again and the dead one's
    connection and threads are gone (the leak check of the conftest fails otherwise)."""
    import threading

    import memphis_sync

    broker = memphis_broker_function
    old_plane = broker.control_plane
    old_threads = [t for t in threading.enumerate() if t.name.endswith(f"-{old_plane.connection.number}")]
    assert old_threads  # its reader and flusher
    pid = broker.pids[0]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not (broker.is_running()), 10, "not (broker.is_running())")
    assert not broker.is_running()
    broker.start()
    assert broker.control_plane is not old_plane and not old_plane.is_running()
    with memphis_sync.connect(**broker.connect_kwargs()) as memphis:
        memphis.station("after-kill")
        assert memphis.producer("after-kill", "p").produce(b"x").seq == 1
    for thread in old_threads:
        thread.join(5)
    assert not [t.name for t in old_threads if t.is_alive()]  # the dead plane's connection is gone
