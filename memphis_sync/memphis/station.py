"""Stations: the creation request (wire contract §4), ``Station.destroy()``, names and enums.

A station is a set of partition streams named ``internal(name) + "$" + p`` (p = 1..N); the broker
creates them on ``$memphis_station_creations``. ``internal(name)`` is the lower-cased name with
``.`` replaced by ``#`` (§2.1). Names are checked (in :mod:`.validate`) with the broker's own
rules and texts (§2.2) so a bad name fails before anything is sent.
"""

from __future__ import annotations

import enum
from typing import Any, Dict

import attrs

from .. import _defaults
from .requester import Requester
from .state import StationCache
from .validate import check_int, enum_value, internal_name, validate_name

__all__ = ["Retention", "Storage", "Station", "internal_name", "validate_name", "check_int", "enum_value"]


class Retention(str, enum.Enum):
    """How a station drops messages (values as sent on the wire; names as in the SDK)."""

    MAX_MESSAGE_AGE_SECONDS = "message_age_sec"
    MESSAGES = "messages"
    BYTES = "bytes"
    ACK_BASED = "ack_based"


class Storage(str, enum.Enum):
    """Where a station stores messages."""

    DISK = "file"
    MEMORY = "memory"


@attrs.define(eq=False)
class Station:
    """A station. Create with :meth:`Memphis.station`.

    Attributes:
        name: the station name, lower-cased (external form, with dots).
        internal_station_name: ``name`` with ``.`` replaced by ``#`` (stream and subject prefix).
    """

    name: str
    _requester: Requester = attrs.field(repr=False)
    _stations: StationCache = attrs.field(repr=False)
    internal_station_name: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.internal_station_name = internal_name(self.name)

    def destroy(self, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Delete the station, its partitions, messages and consumer groups (§4.4).

        A station that is already gone is not an error. Local producers and consumers of the
        station are dropped from the connection's caches.

        Raises:
            MemphisRequestError: the broker refused.
        """
        requester = self._requester
        body: Dict[str, Any] = {"station_name": self.name, "username": requester.username}
        reply = requester.request("$memphis_station_destructions", body, _defaults.MEMPHIS_DESTROY_TIMEOUT, timeout_retries)
        requester.raise_for_text(reply, ignore="not exist", what=f"destroying station {self.name!r}")
        self._stations.forget_station(self.internal_station_name)
