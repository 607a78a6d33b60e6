"""The NATS client: a blocking connection with a reader thread, usable on its own with any NATS
server. ``protocol/`` is the sans-IO wire format; the modules beside it own the socket, where to
dial, how to reconnect, and the connection's threads."""

from .connection import Connection, ConnectionStatus, connect
from .protocol import Msg
from .protocol.headers import Headers
from .reconnect import ReconnectPolicy
from .servers import ServerAddress, TlsOptions
from .subscription import Subscription

__all__ = [
    "Connection", "ConnectionStatus", "connect", "Headers", "Msg", "ReconnectPolicy", "ServerAddress",
    "TlsOptions", "Subscription",
]
