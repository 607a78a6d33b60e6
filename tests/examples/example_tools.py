"""Helpers of the example tests: where the examples are, the ``MEMPHIS_*`` environment (as the
examples read it) of a local broker, subprocess environments, free ports, the
commands of the docs, servers in subprocesses."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from memphis_sync.broker.local import LocalBroker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def broker_env(broker: LocalBroker) -> Dict[str, str]:
    """The ``MEMPHIS_*`` variables that point the examples at ``broker`` (token mode)."""
    return {
        "MEMPHIS_HOST": broker.host,
        "MEMPHIS_PORT": str(broker.port),
        "MEMPHIS_USERNAME": broker.username,
        "MEMPHIS_CONNECTION_TOKEN": broker.connection_token,
    }


def subprocess_env(extra: Dict[str, str]) -> Dict[str, str]:
    """This process's environment without ``MEMPHIS_*`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPHIS_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    """A loopback port free now (bound, then released), for a server to take. For a port where
    connections are refused, use the ``unused_port`` fixture (kept bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])




ROOT = EXAMPLES.parent
BIN = Path(sys.executable).parent

#: Every shell command of docs/frameworks/*.rst: key -> (the folder its block ``cd``\ s to, the
#: command exactly as the docs show it). test_example_docs.py checks that the docs show these and
#: no others, and that a test runs each one (``doc_command(key)``, with a free port in place of
#: the docs' 8000 where the docs name one).
DOC_COMMANDS: Dict[str, Tuple[str, str]] = {
    "producer": ("examples", "python producer.py --count 100"),
    "consumer": ("examples", "python consumer.py --count 100"),
    "flask-run": ("examples", "flask --app flask_app run --with-threads"),
    "gunicorn": ("examples", "gunicorn -c gunicorn.conf.py flask_app:app"),
    "django-check": ("examples/django_project", "python manage.py check"),
    "django-runserver": ("examples/django_project", "python manage.py runserver 127.0.0.1:8000"),
    "django-consume": ("examples/django_project", "python manage.py consume_orders --count 20"),
    "celery-worker": ("examples", "celery -A celery_app worker --concurrency 2 --loglevel INFO"),
}


def doc_command(key: str, port: Optional[int] = None) -> Tuple[List[str], Path]:
    """``(argv, cwd)`` of a docs command: ``python`` is this interpreter, other programs come
    from this virtualenv, the docs' port 8000 becomes ``port``."""
    folder, command = DOC_COMMANDS[key]
    if port is not None:
        assert ":8000" in command, f"{key!r} names no port"
        command = command.replace(":8000", f":{port}")
    argv = shlex.split(command)
    argv[0] = sys.executable if argv[0] == "python" else str(BIN / argv[0])
    return argv, ROOT / folder


class ServerProcess:
    """A server started in a subprocess (its output collected by a thread), ready once it
    printed ``ready`` (the line that says it listens)."""

    def __init__(self, argv: List[str], cwd: Path, env: Dict[str, str], ready: str, **popen: Any) -> None:
        self.ready_text = ready
        self.lines: List[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, **popen)
        self._reader = threading.Thread(target=self._read, name="example-server-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.ready_text in line:
                self._ready.set()
        self._ready.set()  # the process ended: wake wait_ready()

    def wait_ready(self, timeout: float) -> bool:
        """True once the server said it is ready; False if it exited first (e.g. port taken)."""
        if not self._ready.wait(timeout):
            raise AssertionError(f"no {self.ready_text!r} within {timeout:g} s: {self.output}")
        return any(self.ready_text in line for line in self.lines)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, signum: int = signal.SIGTERM, group: bool = False) -> str:
        """Send ``signum`` (to the process group with ``group``), wait (then kill); the output."""
        def send(sig: int) -> None:
            try:
                os.killpg(self.proc.pid, sig) if group else self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

        send(signum)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.output


def start_server(make: Callable[[int], Tuple[List[str], Path, Dict[str, str]]], ready: str,
                 timeout: float = 30, **popen: Any) -> Tuple[ServerProcess, int]:
    """Start ``make(port)`` (argv, cwd, env) on a free port until one attempt gets the port (a
    released port may be taken by another process before the server binds it); the server and
    its port. ``ready`` may contain ``{port}``."""
    outputs = []
    for _ in range(3):
        port = free_port()
        argv, cwd, env = make(port)
        server = ServerProcess(argv, cwd, env, ready.format(port=port), **popen)
        if server.wait_ready(timeout):
            return server, port
        outputs.append(server.stop())
    raise AssertionError(f"the server did not start in 3 attempts: {outputs}")
