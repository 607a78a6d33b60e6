"""The one-call produce of :class:`~memphis_sync.memphis.client.Memphis` (``memphis.produce(station,
producer, message)``): the connection's cached producer of that name does the work. A mixin of
``Memphis``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Literal, Optional, Union, overload

from .. import _defaults
from .message import HeadersArg

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Future

    from ..jetstream.types import PubAck
    from .producer import Producer

__all__: List[str] = []


class _Shortcuts:
    """``produce()`` in one call; the class using it provides ``producer()``."""

    def producer(
        self, station_name: Union[str, List[str]], producer_name: str, generate_random_suffix: bool = False,
        timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES,
    ) -> "Producer":  # pragma: no cover - provided by Memphis
        raise NotImplementedError

    @overload
    def produce(
        self, station_name: Union[str, List[str]], producer_name: str, message: Any, generate_random_suffix: bool = ...,
        ack_wait_sec: float = ..., headers: HeadersArg = ..., async_produce: Literal[False] = ..., msg_id: Optional[str] = ...,
        producer_partition_key: Optional[str] = ..., producer_partition_number: int = ..., nonblocking: Literal[False] = ...,
    ) -> "PubAck": ...

    @overload
    def produce(
        self, station_name: Union[str, List[str]], producer_name: str, message: Any, generate_random_suffix: bool = ...,
        ack_wait_sec: float = ..., headers: HeadersArg = ..., async_produce: bool = ..., msg_id: Optional[str] = ...,
        producer_partition_key: Optional[str] = ..., producer_partition_number: int = ..., nonblocking: bool = ...,
    ) -> Union["PubAck", "Future[PubAck]"]: ...

    def produce(
        self,
        station_name: Union[str, List[str]],
        producer_name: str,
        message: Any,
        generate_random_suffix: bool = False,
        ack_wait_sec: float = 15,
        headers: HeadersArg = None,
        async_produce: bool = False,
        msg_id: Optional[str] = None,
        producer_partition_key: Optional[str] = None,
        producer_partition_number: int = -1,
        nonblocking: bool = False,
    ) -> Union["PubAck", "Future[PubAck]"]:
        """Produce one message through this connection's producer of that name (created on first use).

        Same arguments as :meth:`Producer.produce`; ``nonblocking`` is an addition (the SDK's
        README shows it, its code lacks it).
        """
        producer = self.producer(station_name, producer_name, generate_random_suffix)
        return producer.produce(
            message, ack_wait_sec=ack_wait_sec, headers=headers, nonblocking=nonblocking or async_produce,
            msg_id=msg_id, producer_partition_key=producer_partition_key,
            producer_partition_number=producer_partition_number,
        )
