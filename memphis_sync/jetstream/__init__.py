"""JetStream on a NATS :class:`~memphis_sync.nats.connection.Connection`: the ``$JS.API``
requests, publish with acks (one by one, or pipelined with futures), pull consumers and their
messages."""

from .api import JetStream
from .msg import JsMsg, MsgMetadata
from .pull import PullSubscription, RawStreamMsg
from .types import ConsumerConfig, ConsumerInfo, PubAck, StreamConfig, StreamInfo

__all__ = [
    "JetStream", "JsMsg", "MsgMetadata", "PullSubscription", "RawStreamMsg", "ConsumerConfig", "ConsumerInfo",
    "PubAck", "StreamConfig", "StreamInfo",
]
