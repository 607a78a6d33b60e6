"""Helpers of the local-broker tests: one place for what every broker test file needs."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from memphis_sync.nats.connection import Connection


def ask(conn: Connection, subject: str, body: Any) -> str:
    """Send a control-plane request (a JSON body, or raw bytes) and return the reply text."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return conn.request(subject, payload, timeout=10).payload.decode()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until ``predicate()`` is true and return it (or its last value at the deadline),
    for assertions that state what they waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
