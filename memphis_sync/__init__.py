"""memphis-sync: a synchronous, thread-safe, blocking client for the Memphis message broker.

The NATS layer (:class:`Connection`, subscriptions, request/reply) is usable on its own with any
NATS server; the Memphis API builds on it.
"""

from ._version import __version__
from .errors import (
    AuthorizationError,
    BrokerError,
    ConnectionClosedError,
    ConnectTimeout,
    ConsumerNameInUseError,
    ConsumerNotFoundError,
    DrainTimeout,
    FlushTimeout,
    ForkedConnectionError,
    JetStreamError,
    JetStreamNotEnabledError,
    LocalProtocolError,
    MaxBlockTimeout,
    MemphisConnectError,
    MemphisError,
    MemphisHeaderError,
    MemphisMessageTypeError,
    MemphisRequestError,
    MemphisSchemaError,
    MemphisTimeoutError,
    MemphisValueError,
    MessageAlreadyAckedError,
    MessageNotFoundError,
    MessageTimeout,
    NetworkError,
    NoRespondersError,
    NoStreamResponseError,
    OutboundBufferFullError,
    PayloadTooLargeError,
    PermissionViolationError,
    ProtocolError,
    ReadError,
    RemoteProtocolError,
    RequestTimeout,
    ServerError,
    SlowConsumerError,
    StaleConnectionError,
    StreamNameInUseError,
    StreamNotFoundError,
    SubscriptionClosedError,
    UnconfirmedPublishWarning,
    WebSocketUpgradeError,
    WriteError,
    WrongLastSequenceError,
)
from .memphis.client import Memphis, connect, from_url
from .memphis.consumer import Consumer
from .memphis.message import Headers, Message
from .memphis.mqtt import mqtt_topic
from .memphis.producer import Producer
from .memphis.station import Retention, Station, Storage
from .nats.connection import Connection, ConnectionStatus, ServerAddress, TlsOptions
from .nats.connection import connect as nats_connect
from .nats.protocol import Msg
from .nats.reconnect import ReconnectPolicy
from .nats.subscription import Subscription

__all__ = [
    # Memphis API
    "connect",
    "from_url",
    "Memphis",
    "Station",
    "Retention",
    "Storage",
    "Producer",
    "Consumer",
    "Message",
    "Headers",
    "mqtt_topic",
    # NATS layer
    "nats_connect",
    "Connection",
    "ConnectionStatus",
    "ServerAddress",
    "TlsOptions",
    "ReconnectPolicy",
    "Subscription",
    "Msg",
    # errors
    "MemphisError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PayloadTooLargeError",
    "NetworkError",
    "MemphisConnectError",
    "WebSocketUpgradeError",
    "ReadError",
    "WriteError",
    "ConnectionClosedError",
    "StaleConnectionError",
    "OutboundBufferFullError",
    "ForkedConnectionError",
    "MemphisTimeoutError",
    "ConnectTimeout",
    "RequestTimeout",
    "FlushTimeout",
    "MessageTimeout",
    "DrainTimeout",
    "MaxBlockTimeout",
    "UnconfirmedPublishWarning",
    "SubscriptionClosedError",
    "AuthorizationError",
    "PermissionViolationError",
    "ServerError",
    "SlowConsumerError",
    "NoRespondersError",
    "NoStreamResponseError",
    "JetStreamError",
    "JetStreamNotEnabledError",
    "StreamNotFoundError",
    "StreamNameInUseError",
    "ConsumerNotFoundError",
    "ConsumerNameInUseError",
    "WrongLastSequenceError",
    "MessageNotFoundError",
    "MessageAlreadyAckedError",
    "MemphisRequestError",
    "MemphisHeaderError",
    "MemphisSchemaError",
    "MemphisMessageTypeError",
    "MemphisValueError",
    "BrokerError",
    # version
    "__version__",
]
