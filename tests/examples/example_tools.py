"""Helpers of the example tests: where the examples are, the ``MEMPHIS_*`` environment (as the
examples read it) of a local broker, subprocess environments, a port nobody listens on."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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


def refused_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
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
