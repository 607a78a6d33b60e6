"""Where a connection is in its life: :class:`ConnectionStatus` and :data:`TRANSITIONS`, the
table of allowed changes (``docs/protocol.rst`` draws it). Pure data: the mixin that changes the
status is :mod:`memphis_sync.nats.status`.
"""

from __future__ import annotations

from enum import Enum
from typing import Dict, Set

__all__ = ["ConnectionStatus", "TRANSITIONS"]


class ConnectionStatus(Enum):
    """Where a :class:`Connection` is in its life."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    RECONNECTING = "RECONNECTING"
    DRAINING = "DRAINING"
    CLOSED = "CLOSED"


CONNECTING = ConnectionStatus.CONNECTING
CONNECTED = ConnectionStatus.CONNECTED
RECONNECTING = ConnectionStatus.RECONNECTING
DRAINING = ConnectionStatus.DRAINING
CLOSED = ConnectionStatus.CLOSED

#: Allowed status transitions; ``_set_status`` refuses anything else.
TRANSITIONS: Dict[ConnectionStatus, Set[ConnectionStatus]] = {
    CONNECTING: {CONNECTED, CLOSED},
    CONNECTED: {RECONNECTING, DRAINING, CLOSED},
    RECONNECTING: {CONNECTED, DRAINING, CLOSED},
    DRAINING: {CLOSED, RECONNECTING, CONNECTED},
    CLOSED: set(),
}
