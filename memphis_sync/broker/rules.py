"""The broker's Memphis rules, pure: names, station settings, stream and durable configurations.

This is the broker's one copy of the Memphis name and validation rules. Nothing here does I/O;
the handlers (:mod:`memphis_sync.broker.handlers`) call these functions and talk to JetStream.
Every error text is byte-exact from the contract (``memphis-wire.md`` §2, §4, §7); a function that
can fail returns the error text (``str``) instead of raising, because the control plane replies
with that text as is.

Choices where the Memphis 1.x broker has a defect (``memphis-wire.md`` §15) follow the intended
behaviour and are marked ``§15.<n>`` where they are made.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import attrs

from .._defaults import MEMPHIS_MAX_NAME_LENGTH
from .._names import internal_name, name_error
from ..memphis import durable

__all__ = [
    "Refusal",
    "MAX_NAME_LENGTH",
    "MAX_PARTITIONS",
    "internal_name",
    "validate_name",
    "station_name_from_str",
    "split_username",
    "StationSettings",
    "station_settings",
    "default_station_settings",
    "stream_name",
    "stream_config",
    "ConsumerSettings",
    "consumer_settings",
    "durable_config",
    "deliver_policy",
    "empty_schema_update",
]

#: Longest allowed name (``validateName``: 128 is allowed, 129 is not).
MAX_NAME_LENGTH = MEMPHIS_MAX_NAME_LENGTH
#: The partition limit quoted by the broker's error text (``MAX_PARTITIONS``).
MAX_PARTITIONS = 10000
#: ``message_age_sec`` default when no or a non-positive retention is given (1 hour).
DEFAULT_RETENTION_SEC = 3600
#: Default idempotency (JetStream duplicate window), ms; minimum 100 ms; maximum 24 h.
DEFAULT_IDEMPOTENCY_MS = 120000
MIN_IDEMPOTENCY_MS = 100
MAX_IDEMPOTENCY_MS = 86400000
#: Consumer defaults: ack wait 30 s, max deliveries clamped to 1..10 (out of range → 10).
DEFAULT_MAX_ACK_TIME_MS = 30000
MAX_MSG_DELIVERIES = 10

_USER_TENANT_RE = re.compile(r"(.*)\$(\d+)", re.DOTALL)
_RETENTION_TYPES = ("message_age_sec", "messages", "bytes", "ack_based")
_STORAGE_TYPES = ("file", "memory")
_NS_PER_MS = 1_000_000


class Refusal(Exception):
    """Raised by a control-plane handler to answer at once with the broker's error text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def validate_name(name: str, object_type: str) -> Optional[str]:
    """Check an already lower-cased name; return the broker's error text, or None if valid
    (the rules of :func:`memphis_sync._names.name_error`)."""
    return name_error(name, object_type)


def station_name_from_str(name: Any) -> Tuple[str, Optional[str]]:
    """``StationNameFromStr``: lower-case and validate an external station name.

    A name with ``#`` would be an internal name; its validation always fails on the ``#``, as
    on the broker, so callers must send external names.

    Returns:
        ``(external_name, error_text_or_None)``.
    """
    lowered = str(name or "").lower()
    return lowered, validate_name(lowered, "Station")


def split_username(username: Any) -> Tuple[str, int]:
    """``getUserAndTenantIdFromString``: ``"name$<digits>"`` → ``("name", digits)``; else tenant -1."""
    text = str(username or "")
    match = _USER_TENANT_RE.fullmatch(text)
    if match:
        return match.group(1), int(match.group(2))
    return text, -1


def _int(value: Any, default: int = 0) -> int:
    """Go's JSON decoding into an int: numbers only (floats truncated); anything else → default."""
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, (int, float)):
        return int(value)
    return default


def _key(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Look ``key`` up case-insensitively, as Go's ``encoding/json`` does (``Schemaverse``)."""
    if key in data:
        return data[key]
    lowered = key.lower()
    for name, value in data.items():
        if isinstance(name, str) and name.lower() == lowered:
            return value
    return default


@attrs.frozen(kw_only=True)
class StationSettings:
    """A station's normalised settings, as stored by the control plane."""

    name: str
    retention_type: str = "message_age_sec"
    retention_value: int = DEFAULT_RETENTION_SEC
    storage_type: str = "file"
    replicas: int = 1
    idempotency_window_in_ms: int = DEFAULT_IDEMPOTENCY_MS
    schema_name: str = ""
    dls_poison: bool = True
    dls_schemaverse: bool = True
    tiered_storage_enabled: bool = False
    partitions_number: int = 1
    dls_station: str = ""

    @property
    def internal_name(self) -> str:
        """The internal station name (``.`` → ``#``)."""
        return internal_name(self.name)

    @property
    def partitions_list(self) -> List[int]:
        """``[1, ..., partitions_number]``."""
        return list(range(1, self.partitions_number + 1))

    def to_record(self) -> Dict[str, Any]:
        """The JSON-compatible record kept in the metadata store (Memphis model field names)."""
        return {
            "name": self.name,
            "retention_type": self.retention_type,
            "retention_value": self.retention_value,
            "storage_type": self.storage_type,
            "replicas": self.replicas,
            "idempotency_window_in_ms": self.idempotency_window_in_ms,
            "schema_name": self.schema_name,
            "dls_configuration": {"poison": self.dls_poison, "schemaverse": self.dls_schemaverse},
            "tiered_storage_enabled": self.tiered_storage_enabled,
            "partitions_list": self.partitions_list,
            "dls_station": self.dls_station,
            "version": 2,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "StationSettings":
        """Rebuild from :meth:`to_record` output."""
        dls = record.get("dls_configuration") or {}
        return cls(
            name=record["name"],
            retention_type=record["retention_type"],
            retention_value=int(record["retention_value"]),
            storage_type=record["storage_type"],
            replicas=int(record["replicas"]),
            idempotency_window_in_ms=int(record["idempotency_window_in_ms"]),
            schema_name=record.get("schema_name", ""),
            dls_poison=bool(dls.get("poison", True)),
            dls_schemaverse=bool(dls.get("schemaverse", True)),
            tiered_storage_enabled=bool(record.get("tiered_storage_enabled", False)),
            partitions_number=len(record.get("partitions_list") or [1]),
            dls_station=record.get("dls_station", ""),
        )


def _clamp_replicas(replicas: int) -> int:
    """``getStationReplicas``: ``<= 0`` → 1, 2 or 4 → 3 (odd quorum), ``> 5`` → 5."""
    if replicas <= 0:
        return 1
    if replicas in (2, 4):
        return 3
    return min(replicas, 5)


def station_settings(request: Mapping[str, Any]) -> Union[StationSettings, str]:
    """Normalise and validate a ``$memphis_station_creations`` request (§4.1), name excluded.

    The name must have been checked with :func:`station_name_from_str` first. Checks run in the
    broker's order: partitions, retention type, storage type, replicas, idempotency window.

    Returns:
        The settings, or the broker's error text.
    """
    name, _ = station_name_from_str(_key(request, "name"))
    partitions = _int(_key(request, "partitions_number"))
    if partitions == 0:
        return "you are using an old SDK, make sure to update your SDK"
    if partitions < 1 or partitions > MAX_PARTITIONS:
        return (
            f"cannot create station with {partitions} partitions (max:{MAX_PARTITIONS} min:1): "
            f"Station -  {_key(request, 'name')}, "
        )
    retention_type = str(_key(request, "retention_type") or "").lower()
    retention_value = _int(_key(request, "retention_value"))
    if retention_type:
        if retention_type not in _RETENTION_TYPES:
            return "retention type can be one of the following message_age_sec/messages/bytes/ack_based"
        if retention_value <= 0 and retention_type != "ack_based":
            retention_type, retention_value = "message_age_sec", DEFAULT_RETENTION_SEC
    else:
        retention_type, retention_value = "message_age_sec", DEFAULT_RETENTION_SEC
    storage_type = str(_key(request, "storage_type") or "file").lower()
    if storage_type not in _STORAGE_TYPES:
        return "storage type can be one of the following file/memory"
    replicas = _clamp_replicas(_int(_key(request, "replicas")))
    window = _int(_key(request, "idempotency_window_in_ms"))
    if window <= 0:
        window = DEFAULT_IDEMPOTENCY_MS
    elif window < MIN_IDEMPOTENCY_MS:
        window = MIN_IDEMPOTENCY_MS
    if window > MAX_IDEMPOTENCY_MS:
        return "idempotency window can not exceed 24 hours"
    if retention_type == "message_age_sec" and window > retention_value * 1000:
        return "idempotency window cannot be greater than the station retention"
    dls = _key(request, "dls_configuration")
    dls = dls if isinstance(dls, Mapping) else {}
    return StationSettings(
        name=name,
        retention_type=retention_type,
        retention_value=retention_value,
        storage_type=storage_type,
        replicas=replicas,
        idempotency_window_in_ms=window,
        schema_name=str(_key(request, "schema_name") or "").lower(),
        # Go decodes a missing bool as false; the py SDK always sends both keys
        dls_poison=bool(_key(dls, "poison", False)),
        dls_schemaverse=bool(_key(dls, "schemaverse", False)),
        tiered_storage_enabled=bool(_key(request, "tiered_storage_enabled", False)),
        partitions_number=partitions,
        dls_station=str(_key(request, "dls_station") or "").lower(),
    )


def default_station_settings(name: str, replicas: int = 1) -> StationSettings:
    """``CreateDefaultStation`` (§4.6): 1 hour age retention, file, 120 s idempotency, 1 partition."""
    return StationSettings(name=name, replicas=replicas)


def stream_name(station: str, partition: int) -> str:
    """The stream of one partition: ``internal(station) + "$" + partition``."""
    return f"{internal_name(station)}${partition}"


def stream_config(settings: StationSettings, partition: int) -> Dict[str, Any]:
    """The JetStream ``STREAM.CREATE`` config of one partition (§4.3), field by field.

    ``tiered_storage_enabled`` is left out: stock nats-server refuses unknown stream fields
    (``invalid JSON: json: unknown field "tiered_storage_enabled"``, err_code 10025); the value is
    kept in the station record instead.
    """
    name = stream_name(settings.name, partition)
    kind, value = settings.retention_type, settings.retention_value
    return {
        "name": name,
        "subjects": [f"{name}.>"],
        "retention": "interest" if kind == "ack_based" else "limits",
        "max_consumers": -1,
        "max_msgs": value if kind == "messages" and value > 0 else -1,
        "max_bytes": value if kind == "bytes" and value > 0 else -1,
        "max_age": value * 1_000_000_000 if kind == "message_age_sec" and value > 0 else 0,
        "max_msgs_per_subject": -1,
        "discard": "old",
        "storage": "memory" if settings.storage_type == "memory" else "file",
        "num_replicas": settings.replicas,
        "no_ack": False,
        "duplicate_window": settings.idempotency_window_in_ms * _NS_PER_MS,
    }


def empty_schema_update() -> Dict[str, Any]:
    """The all-zero ``SchemaUpdateInit`` sent when a station has no schema (§5.2)."""
    return {
        "schema_name": "",
        "active_version": {"version_number": 0, "descriptor": "", "schema_content": "", "message_struct_name": ""},
        "type": "",
    }


@attrs.frozen(kw_only=True)
class ConsumerSettings:
    """A consumer creation request after the broker's defaults and checks (§7.1)."""

    name: str
    station: str
    consumers_group: str
    consumer_type: str
    connection_id: str
    username: str
    max_ack_time_ms: int
    max_msg_deliveries: int
    start_consume_from_sequence: int
    last_messages: int
    req_version: int


def consumer_settings(request: Mapping[str, Any]) -> Union[ConsumerSettings, str]:
    """Check a ``$memphis_consumer_creations`` request in the broker's order (§7.1).

    Returns:
        The settings (station name lower-cased, not yet validated), or the error text.
    """
    start = _key(request, "start_consume_from_sequence")
    start = 1 if start is None else _int(start)
    last = _key(request, "last_messages")
    last = -1 if last is None else _int(last)
    if start <= 0:
        return "startConsumeFromSequence has to be a positive number"
    if last < -1:
        return "min value for LastMessages is -1"
    if start > 1 and last > -1:
        return "consumer creation options can't contain both startConsumeFromSequence and lastMessages"
    name = str(_key(request, "name") or "").lower()
    error = validate_name(name, "Consumer")
    if error:
        return error
    group = str(_key(request, "consumers_group") or "").lower()
    if group:
        error = validate_name(group, "Consumer")
        if error:
            return error
    else:
        group = name
    consumer_type = str(_key(request, "consumer_type") or "").lower()
    if consumer_type not in ("application", "connector"):
        return f"consumer type has to be one of the following application/connector and not {consumer_type}"
    ack = _int(_key(request, "max_ack_time_ms"))
    deliveries = _int(_key(request, "max_msg_deliveries"))
    return ConsumerSettings(
        name=name,
        station=str(_key(request, "station_name") or ""),
        consumers_group=group,
        consumer_type=consumer_type,
        connection_id=str(_key(request, "connection_id") or ""),
        username=str(_key(request, "username") or ""),
        max_ack_time_ms=ack if ack > 0 else DEFAULT_MAX_ACK_TIME_MS,
        max_msg_deliveries=deliveries if 0 < deliveries <= MAX_MSG_DELIVERIES else MAX_MSG_DELIVERIES,
        start_consume_from_sequence=start,
        last_messages=last,
        req_version=_int(_key(request, "req_version")),
    )


def deliver_policy(start_seq: int, last_messages: int, last_seq: int) -> Tuple[str, Optional[int]]:
    """The durable's deliver policy (its wire value) and ``opt_start_seq`` (§7.3), by the rule of
    :func:`memphis_sync.memphis.durable.deliver_policy`.

    Args:
        start_seq: ``start_consume_from_sequence``.
        last_messages: ``last_messages``.
        last_seq: The partition stream's last sequence (used with ``last_messages > 0``).
    """
    policy, start = durable.deliver_policy(start_seq, last_messages, lambda: last_seq)
    return policy.value, start


def durable_config(
    stream: str, group: str, *, max_ack_time_ms: int, max_msg_deliveries: int, policy: str, opt_start_seq: Optional[int]
) -> Dict[str, Any]:
    """The ``config`` of ``$JS.API.CONSUMER.DURABLE.CREATE.<stream>.<durable>`` (§7.3), field by field."""
    config: Dict[str, Any] = {
        "durable_name": internal_name(group),
        "deliver_policy": policy,
        "ack_policy": "explicit",
        "ack_wait": max_ack_time_ms * _NS_PER_MS,
        "max_deliver": max_msg_deliveries,
        "filter_subject": f"{stream}.final",
        "replay_policy": "instant",
        "max_ack_pending": -1,
        "headers_only": False,
    }
    if opt_start_seq is not None:
        config["opt_start_seq"] = opt_start_seq
    return config
