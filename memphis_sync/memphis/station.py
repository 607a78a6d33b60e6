"""Stations: the creation request (wire contract §4), ``Station.destroy()``, names and enums.

A station is a set of partition streams named ``internal(name) + "$" + p`` (p = 1..N); the broker
creates them on ``$memphis_station_creations``. ``internal(name)`` is the lower-cased name with
``.`` replaced by ``#`` (§2.1). Names are checked here with the broker's own rules and texts
(§2.2) so a bad name fails before anything is sent.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Any, Dict, Type, TypeVar

import attrs

from .. import _defaults
from ..errors import MemphisValueError

if TYPE_CHECKING:  # pragma: no cover
    from .client import Memphis

__all__ = ["Retention", "Storage", "Station", "internal_name", "validate_name", "check_int", "enum_value"]

_NAME_RE = re.compile(r"^[a-z0-9_.-]*$")
_E = TypeVar("_E", bound=enum.Enum)


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


def internal_name(name: str) -> str:
    """The broker's internal form of a station/group name: lower-case, ``.`` → ``#``."""
    return name.lower().replace(".", "#")


def validate_name(name: object, object_type: str) -> str:
    """Check a name with the broker's rules and return it lower-cased.

    Args:
        name: the name given by the caller.
        object_type: ``"Station"``, ``"Producer"``, ``"Consumer"`` or ``"Schema"`` (used in texts).

    Raises:
        MemphisValueError: with the broker's text (empty, over 128 characters, bad characters,
            starting or ending with ``.``, ``-`` or ``_``).
    """
    if not isinstance(name, str):
        raise MemphisValueError(f"{object_type} name must be a str, got {type(name).__name__}: {name!r}")
    lowered = name.lower()
    if not lowered:
        raise MemphisValueError(f"{object_type} name can not be empty")
    if len(lowered) > _defaults.MEMPHIS_MAX_NAME_LENGTH:
        raise MemphisValueError(f"{object_type} should be under 128 characters ({name[:20]!r}... has {len(name)})")
    if not _NAME_RE.match(lowered):
        raise MemphisValueError(
            f"Only alphanumeric and the '_', '-', '.' characters are allowed in {object_type} (got {name!r})"
        )
    if lowered[0] in "._-" or lowered[-1] in "._-":
        raise MemphisValueError(f"{object_type} name can not start or end with non alphanumeric character (got {name!r})")
    return lowered


def check_int(value: Any, what: str, minimum: int, maximum: int = 2**63 - 1) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) in ``[minimum, maximum]``.

    Raises:
        MemphisValueError: naming ``what``, the bounds and the value.
    """
    if type(value) is not int or not minimum <= value <= maximum:
        bound = f">= {minimum}" if maximum == 2**63 - 1 else f"between {minimum} and {maximum}"
        raise MemphisValueError(f"{what} must be an int {bound}, got {value!r}")
    return value


def enum_value(cls: Type[_E], value: Any, what: str) -> _E:
    """Accept a member of ``cls`` or its wire value (any case); refuse anything else clearly.

    Raises:
        MemphisValueError: ``value`` is not one of ``cls``.
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls(value.lower())
        except ValueError:
            pass
    choices = ", ".join(f"{cls.__name__}.{m.name} ({m.value!r})" for m in cls)
    raise MemphisValueError(f"unknown {what} {value!r}; use one of {choices}")


@attrs.define(eq=False)
class Station:
    """A station. Create with :meth:`Memphis.station`.

    Attributes:
        name: the station name, lower-cased (external form, with dots).
        internal_station_name: ``name`` with ``.`` replaced by ``#`` (stream and subject prefix).
    """

    name: str
    _client: "Memphis" = attrs.field(repr=False)
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
        body: Dict[str, Any] = {"station_name": self.name, "username": self._client.username}
        reply = self._client._request(
            "$memphis_station_destructions", body, _defaults.MEMPHIS_DESTROY_TIMEOUT, timeout_retries
        )
        self._client._raise_for_text(reply, ignore="not exist", what=f"destroying station {self.name!r}")
        self._client._forget_station(self.internal_station_name)
