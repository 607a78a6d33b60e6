"""The process-wide Memphis connection of the project: made on first use, shared by every thread.

``get_memphis()`` connects lazily, in the process that needs it (a runserver child, a gunicorn
worker, a management command), with ``settings.MEMPHIS``; a connection inherited through
``fork()`` (which the library closes in the child) is replaced. ``close_memphis()`` runs at exit
(registered in ``OrdersConfig.ready()``).
"""

import logging
import os
import threading
from typing import Optional

from django.conf import settings

import memphis_sync

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_memphis: Optional[memphis_sync.Memphis] = None
_pid = 0


def get_memphis() -> memphis_sync.Memphis:
    """This process's connection (made on first use).

    Raises:
        memphis_sync.MemphisConnectError: the broker cannot be reached.
    """
    global _memphis, _pid
    memphis = _memphis
    if memphis is not None and _pid == os.getpid():
        return memphis
    with _lock:
        if _memphis is None or _pid != os.getpid():
            _memphis = memphis_sync.connect(**settings.MEMPHIS)
            _pid = os.getpid()
            logger.info("connected to Memphis at %s:%s (pid %d, connection %s)",
                        _memphis.host, _memphis.port, _pid, _memphis.connection_id)
        return _memphis


def close_memphis() -> None:
    """Close this process's connection, if it made one (bounded; idempotent)."""
    global _memphis
    with _lock:
        memphis, _memphis = _memphis, None
    if memphis is not None and _pid == os.getpid():
        memphis.close()
        logger.info("closed the Memphis connection (pid %d)", _pid)
