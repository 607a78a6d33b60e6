"""Where a consumer group's durable starts reading (``memphis-wire.md`` §7.3), once: used by
the client when it creates a missing durable and by the local broker's control plane.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from ..jetstream.types import DeliverPolicy

__all__ = ["deliver_policy"]


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
