"""The argument checks of the Memphis layer, once: names (the broker's rules and texts, §2.2),
ints, strs and bools (the NATS layer's checks, raising this layer's error), numbers of a unit,
batch sizes, enums.

Every check raises :class:`~memphis_sync.errors.MemphisValueError` before anything is sent, and
returns the value (lower-cased, for a name) so a caller can check and use it in one step.
"""

from __future__ import annotations

import enum
from typing import Any, Optional, Type, TypeVar

from .. import _defaults
from .._names import internal_name, name_error
from .._timeouts import is_number
from ..errors import MemphisValueError
from ..nats.options import check_bool as _check_bool
from ..nats.options import check_str as _check_str
from ..nats.protocol import INT_MAX
from ..nats.protocol import check_int as _check_int

__all__ = [
    "INT_MAX", "internal_name", "validate_name", "validate_optional_name", "check_int", "check_number",
    "check_bool", "check_str", "check_batch_size", "enum_value",
]

_E = TypeVar("_E", bound=enum.Enum)


def validate_name(name: object, object_type: str) -> str:
    """Check a name with the broker's rules (:func:`memphis_sync._names.name_error`) and return
    it lower-cased.

    Args:
        name: the name given by the caller.
        object_type: ``"Station"``, ``"Producer"``, ``"Consumer"`` or ``"Schema"`` (used in texts).

    Raises:
        MemphisValueError: with the broker's text and the name given (empty, over 128 characters,
            bad characters anywhere, a final newline included, starting or ending with ``.``,
            ``-`` or ``_``).
    """
    if not isinstance(name, str):
        raise MemphisValueError(f"{object_type} name must be a str, got {type(name).__name__}: {name!r}")
    lowered = name.lower()
    error = name_error(lowered, object_type)
    if error is not None:
        shown = f"{name[:20]!r}... has {len(name)} characters" if len(name) > 40 else repr(name)
        raise MemphisValueError(f"{error} (got {shown})")
    return lowered


def validate_optional_name(name: object, what: str, object_type: str) -> str:
    """A ``str`` argument where ``""`` means none, and anything else must be a valid name.

    Raises:
        MemphisValueError: not a str (naming ``what``), or a bad name (see :func:`validate_name`).
    """
    if not isinstance(name, str):
        raise MemphisValueError(f"{what} must be a str, got {name!r}")
    if name:
        validate_name(name, object_type)
    return name


def check_int(value: Any, what: str, minimum: int, maximum: int = INT_MAX) -> int:
    """Return ``value`` if it is an ``int`` (not a bool) in ``[minimum, maximum]`` (the NATS
    layer's :func:`~memphis_sync.nats.protocol.check_int`, with this layer's error).

    Raises:
        MemphisValueError: naming ``what``, the bounds and the value.
    """
    return _check_int(value, what, minimum, maximum, error=MemphisValueError)


def check_str(value: Any, what: str, *, secret: bool = False) -> str:
    """Return ``value`` if it is a ``str``; a ``secret`` is not shown.

    Raises:
        MemphisValueError: naming ``what`` and the type given.
    """
    _check_str(value, what, secret=secret, error=MemphisValueError)
    checked: str = value  # a str: checked above
    return checked


def check_number(
    value: Any, what: str, unit: str, *, above_zero: bool = False, finite: bool = False, or_none: bool = False
) -> Optional[float]:
    """Return ``value`` if it is an int or a float (not a bool) ``>= 0`` (``> 0`` with
    ``above_zero``; not infinite with ``finite``), or None with ``or_none``.

    Raises:
        MemphisValueError: ``"<what> must be a number of <unit> >= 0, got ..."`` (NaN included).
    """
    if value is None and or_none:
        return None
    ok = is_number(value)
    if ok:
        ok = value > 0 if above_zero else value >= 0
        if finite:
            ok = ok and value < float("inf")
    if not ok:
        bound = "> 0" if above_zero else ">= 0"
        raise MemphisValueError(f"{what} must be a number of {unit} {bound}{' or None' if or_none else ''}, got {value!r}")
    number: float = value  # an int or a float: checked above
    return number


def check_bool(value: Any, what: str) -> bool:
    """Return ``value`` if it is a ``bool``.

    Raises:
        MemphisValueError: naming ``what``.
    """
    return _check_bool(value, what, error=MemphisValueError)


def check_batch_size(batch_size: Any) -> int:
    """Refuse a batch size outside 1..5000 with the SDK's text."""
    if type(batch_size) is not int or not 1 <= batch_size <= _defaults.MEMPHIS_MAX_BATCH_SIZE:
        raise MemphisValueError(f"Batch size can not be greater than 5000 or less than 1 (got {batch_size!r})")
    return batch_size


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
