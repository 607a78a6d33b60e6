"""A Celery app whose tasks produce to Memphis, one connection per worker process.

The prefork pool forks its worker processes from the main ``celery worker`` process, and a
Memphis connection does not survive ``fork()`` (the library closes it in the child). So each
pool process connects in ``worker_process_init`` (it runs in the child, after the fork) and
closes in ``worker_process_shutdown``; the main process never connects.

Configuration: the ``MEMPHIS_*`` variables of ``memphis_env.py``; ``CELERY_BROKER_URL`` for
Celery's own broker (default ``filesystem://``: a folder, ``CELERY_FILESYSTEM_DIR``, so that
the example needs no Redis or RabbitMQ; use your usual broker in production).

Run it (with ``memphis-sync broker`` running)::

    cd examples
    celery -A celery_app worker --concurrency 2 --loglevel INFO

and send tasks from Python: ``celery_app.produce_order.delay({"id": "o-1"})``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Dict, Optional

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from memphis_env import connect_kwargs

import memphis_sync

logger = logging.getLogger(__name__)

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
STATION = os.environ.get("ORDERS_STATION", "orders")

app = Celery("celery_app", broker=BROKER_URL)
if BROKER_URL.startswith("filesystem://"):
    folder = os.environ.get("CELERY_FILESYSTEM_DIR") or os.path.join(tempfile.gettempdir(), "celery-example")
    os.makedirs(folder, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": folder, "data_folder_out": folder, "control_folder": os.path.join(folder, "control"),
        "polling_interval": 0.2,
    }
app.conf.task_ignore_result = True  # results go to Memphis, not to a result backend

_memphis: Optional[memphis_sync.Memphis] = None  # this pool process's connection


def get_memphis() -> memphis_sync.Memphis:
    """This pool process's connection (made in ``worker_process_init``, or here if that failed).

    A pool process runs one task at a time, so no lock is needed.
    """
    global _memphis
    if _memphis is None:
        _memphis = memphis_sync.connect(**connect_kwargs())
        logger.info("pool process %d: connected to Memphis (connection %s)", os.getpid(), _memphis.connection_id)
    return _memphis


@worker_process_init.connect
def connect_memphis(**_: Any) -> None:
    """In each pool process, after the fork: its own connection. With the broker down, the
    process starts anyway (an exception here would stop the worker) and its tasks connect."""
    try:
        get_memphis()
    except memphis_sync.MemphisError as exc:
        logger.warning("pool process %d: no Memphis connection yet: %s", os.getpid(), exc)


@worker_process_shutdown.connect
def close_memphis(**_: Any) -> None:
    global _memphis
    if _memphis is not None:
        _memphis.close()
        _memphis = None
        logger.info("pool process %d: closed its Memphis connection", os.getpid())


@app.task
def produce_order(order: Dict[str, Any]) -> int:
    """Produce ``order`` (its ``id`` is the message id) and return the stream sequence."""
    memphis = get_memphis()
    ack = memphis.produce(STATION, "celery", dict(order, pid=os.getpid(), connection=memphis.connection_id),
                          msg_id=str(order.get("id") or "") or None, ack_wait_sec=10)
    return ack.seq
