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
from .._html import fields_table
from .requester import Requester
from .state import StationCache
from .validate import check_bool, check_int, enum_value, internal_name, validate_name, validate_optional_name

__all__ = ["Retention", "Storage", "Station", "creation_body", "internal_name", "validate_name", "check_int", "enum_value"]


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


def creation_body(
    name: str, retention_type: Any, retention_value: int, storage_type: Any, replicas: int, idempotency_window_ms: int,
    schema_name: str, send_poison_msg_to_dls: bool, send_schema_failed_msg_to_dls: bool,
    tiered_storage_enabled: bool, partitions_number: int, dls_station: str, username: str,
) -> Dict[str, Any]:
    """Check the arguments of :meth:`Memphis.station` and return the ``$memphis_station_creations``
    body (§4.1; the official SDK's keys and order).

    Raises:
        MemphisValueError: a bad argument.
    """
    validate_name(name, "Station")
    retention = enum_value(Retention, retention_type, "retention_type")
    storage = enum_value(Storage, storage_type, "storage_type")
    check_int(retention_value, "retention_value", 0)
    check_int(replicas, "replicas", 1, _defaults.MEMPHIS_MAX_REPLICAS)
    check_int(idempotency_window_ms, "idempotency_window_ms", 0, _defaults.MEMPHIS_MAX_IDEMPOTENCY_WINDOW_MS)
    check_int(partitions_number, "partitions_number", 0)
    validate_optional_name(schema_name, "schema_name", "Schema")
    validate_optional_name(dls_station, "dls_station", "Station")
    check_bool(send_poison_msg_to_dls, "send_poison_msg_to_dls")
    check_bool(send_schema_failed_msg_to_dls, "send_schema_failed_msg_to_dls")
    check_bool(tiered_storage_enabled, "tiered_storage_enabled")
    return {
        "name": name,
        "retention_type": retention.value,
        "retention_value": retention_value,
        "storage_type": storage.value,
        "replicas": replicas,
        "idempotency_window_in_ms": idempotency_window_ms,
        "schema_name": schema_name,
        "dls_configuration": {"poison": send_poison_msg_to_dls, "Schemaverse": send_schema_failed_msg_to_dls},
        "username": username,
        "tiered_storage_enabled": tiered_storage_enabled,
        "partitions_number": partitions_number or 1,
        "dls_station": dls_station,
    }


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

    def _repr_html_(self) -> str:
        return fields_table(f"Station {self.name}", [("name", self.name), ("internal name", self.internal_station_name)])

    def destroy(self, timeout_retries: int = _defaults.MEMPHIS_TIMEOUT_RETRIES) -> None:
        """Delete the station, its partitions, messages and consumer groups (§4.4).

        A station that is already gone is not an error. Local producers and consumers of the
        station are dropped from the connection's caches.

        Raises:
            MemphisValueError: a bad ``timeout_retries`` (nothing was sent).
            MemphisRequestError / ConnectionClosedError: the broker refused, or the connection is closed.
        """
        requester = self._requester
        body: Dict[str, Any] = {"station_name": self.name, "username": requester.username}
        requester.ask(
            "$memphis_station_destructions", body, timeout_retries, what=f"destroying station {self.name!r}",
            ignore="not exist", destroy=True,
        )
        self._stations.forget_station(self.internal_station_name)
