"""Where a consumer group's durable starts reading (``memphis-wire.md`` §7.3), once: used by
the client when it creates a missing durable and by the local broker's control plane; and the
client's check of the two options that say it.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from ..errors import MemphisValueError
from ..jetstream.types import DeliverPolicy
from ..nats.protocol import INT_MAX

__all__ = ["deliver_policy", "check_start"]


def check_start(start_consume_from_sequence: object, last_messages: object) -> None:
    """Refuse a bad ``start_consume_from_sequence`` / ``last_messages`` pair (the SDK's texts).

    Raises:
        MemphisValueError: not an int >= 1 / >= -1 (nor beyond int64), or both given.
    """
    if type(start_consume_from_sequence) is not int or not 1 <= start_consume_from_sequence <= INT_MAX:
        raise MemphisValueError(f"start_consume_from_sequence has to be a positive number, got {start_consume_from_sequence!r}")
    if type(last_messages) is not int or not -1 <= last_messages <= INT_MAX:
        raise MemphisValueError(f"min value for last_messages is -1, got {last_messages!r}")
    if start_consume_from_sequence > 1 and last_messages > -1:
        raise MemphisValueError("Consumer creation options can't contain both start_consume_from_sequence and last_messages")


def deliver_policy(
    start_consume_from_sequence: int, last_messages: int, last_seq: Callable[[], int]
) -> Tuple[DeliverPolicy, Optional[int]]:
    """The durable's deliver policy and ``opt_start_seq``.

    ``last_messages > 0`` starts that many messages before the end, whatever the partition
    count (§15.3: the Memphis broker skips one-partition stations by mistake).

    Args:
        start_consume_from_sequence: the consumer's ``start_consume_from_sequence`` (>= 1).
        last_messages: the consumer's ``last_messages`` (-1: not used; 0: only new messages).
        last_seq: gives the partition stream's last sequence; called only when
            ``last_messages > 0`` (it may ask the server).
    """
    if last_messages == 0 and start_consume_from_sequence == 1:
        return DeliverPolicy.NEW, None
    if last_messages > 0:
        return DeliverPolicy.BY_START_SEQUENCE, max(1, last_seq() - last_messages + 1)
    if start_consume_from_sequence > 1:
        return DeliverPolicy.BY_START_SEQUENCE, start_consume_from_sequence
    return DeliverPolicy.ALL, None
