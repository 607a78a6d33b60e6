"""gunicorn settings for the Flask example: ``gunicorn -c gunicorn.conf.py flask_app:app``.

Each worker is a forked process and makes its own Memphis connection, after the fork (a
connection does not survive ``fork()``: the library closes it in the child). The hooks below
connect when a worker starts, rather than on its first request, and close when it exits.
Settings from the command line or ``GUNICORN_CMD_ARGS`` (e.g. ``--bind``) take precedence.
"""

import logging
from typing import Any

import memphis_sync

bind = "127.0.0.1:8000"
workers = 2
threads = 8  # request threads per worker, all sharing the worker's one connection
graceful_timeout = 15

log = logging.getLogger("gunicorn.error")


def post_worker_init(worker: Any) -> None:  # in the worker, after the fork and after loading the app
    holder = worker.wsgi.extensions["memphis"]
    try:
        memphis = holder.get()
    except memphis_sync.MemphisError as exc:  # broker down: serve 503s, connect on a later request
        log.warning("worker %s: no Memphis connection yet: %s", worker.pid, exc)
    else:
        log.info("worker %s: connected to Memphis (connection %s)", worker.pid, memphis.connection_id)


def worker_exit(server: Any, worker: Any) -> None:  # in the worker, as it exits
    worker.wsgi.extensions["memphis"].close()
    log.info("worker %s: closed its Memphis connection", worker.pid)
