"""A WSGI app for ``gunicorn --preload``: the docs' lazy connection recipe, with a connection
made at import time in the master (the case that used to break: the workers inherit it)."""

from __future__ import annotations

import json
import os
import threading

import memphis_sync

_KWARGS = json.loads(os.environ["MEMPHIS_TEST_CONNECT"])
_STATION = os.environ["MEMPHIS_TEST_STATION"]
_lock = threading.Lock()
_memphis = memphis_sync.connect(**_KWARGS)  # made before the fork, on purpose
_pid = os.getpid()


def memphis() -> memphis_sync.Memphis:
    """The recipe of docs/recipes.rst: one lazy connection per process."""
    global _memphis, _pid
    with _lock:
        if _memphis is None or _pid != os.getpid():
            _memphis = memphis_sync.connect(**_KWARGS)
            _pid = os.getpid()
        return _memphis


def app(environ, start_response):
    ack = memphis().produce(_STATION, "web", f"from {os.getpid()}".encode(), msg_id=environ.get("HTTP_X_ID"))
    body = json.dumps({"seq": ack.seq, "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
