"""The one place a connection's status changes: :meth:`_Status._set_status` (under
``_state_lock``), which refuses any change that :data:`~memphis_sync.nats.states.TRANSITIONS`
does not list (h11 style); ``docs/protocol.rst`` draws the table. Readers may read it without the lock (one attribute read).

:class:`_Status` (a mixin of :class:`~memphis_sync.nats.connection.Connection`) owns ``_status``
and ``_fast``, the publish fast-path flag that is True exactly while CONNECTED in the process
that made the connection (the fork hook and ``_shutdown`` switch it off directly).
"""

from __future__ import annotations

import logging
from typing import List

from ..errors import ConnectionClosedError, ForkedConnectionError
from ._core import _ConnectionCore
from .states import CLOSED, CONNECTED, CONNECTING, TRANSITIONS, ConnectionStatus

__all__: List[str] = []

logger = logging.getLogger("memphis_sync.connection")  # the name users configure (kept from the flat layout)


class _Status(_ConnectionCore):
    """Change the status (only through the table) and refuse calls a closed connection cannot take."""

    def _set_status(self, new: ConnectionStatus) -> ConnectionStatus:
        with self._state_lock:
            old = self._status
            if new is old:
                return old
            if new not in TRANSITIONS[old]:
                raise ConnectionClosedError(f"connection is {old.value}; cannot become {new.value}")
            self._status = new
            self._fast = new is CONNECTED and not self._forked()
            logger.debug("connection %s: %s -> %s", self._id, old.value, new.value)
            return old

    def _check_usable(self) -> None:
        self._check_fork()
        if self._status is CLOSED:
            if self._fork_error:
                raise ForkedConnectionError(self._fork_error)
            raise ConnectionClosedError("connection is closed")
        if self._status is CONNECTING and self._stream is None:
            raise ConnectionClosedError("not connected yet: call connect() first")
