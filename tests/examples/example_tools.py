"""Helpers of the example tests: where the examples are, the ``MEMPHIS_*`` environment (as the
examples read it) of a local broker, subprocess environments, a port nobody listens on."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Dict

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


