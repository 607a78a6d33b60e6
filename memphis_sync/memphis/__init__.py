"""The Memphis API: the names, parameters and defaults of the official SDK, without ``await``."""

from .client import Memphis, connect
from .consumer import Consumer
from .message import Headers, Message
from .producer import Producer
from .station import Retention, Station, Storage

__all__ = ["Memphis", "connect", "Consumer", "Headers", "Message", "Producer", "Retention", "Station", "Storage"]
