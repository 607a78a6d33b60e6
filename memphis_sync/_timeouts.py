"""One meaning for every ``timeout`` argument: seconds, with ``None`` and ``inf`` for "no limit".

Every blocking call turns its ``timeout`` into a deadline with :func:`deadline_after` *before*
anything is sent, so a bad value (negative, NaN, not a number) is refused up front and a
"wait for ever" value (``None``, ``float("inf")``, anything beyond ``threading.TIMEOUT_MAX``)
never reaches a primitive that would raise ``OverflowError`` after the message went out.
:func:`left` turns the deadline back into a wait that every ``threading`` primitive accepts.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Optional, overload

from .errors import LocalProtocolError

if TYPE_CHECKING:  # pragma: no cover - typing_extensions is needed by type checkers only (3.9 has no TypeGuard)
    from typing_extensions import TypeGuard

__all__ = ["deadline_after", "left", "check_timeout", "check_wait", "describe", "is_number"]

#: Longest single wait handed to a ``threading`` primitive (it raises OverflowError beyond).
_MAX_WAIT = min(threading.TIMEOUT_MAX, 7 * 24 * 3600.0)


def is_number(value: Any) -> "TypeGuard[float]":
    """True for an ``int`` or a ``float`` that is not NaN; False for a ``bool`` (an ``int`` to
    Python, never meant as a number here) and anything else. Every number check of the package
    starts with it and adds its own bounds."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def check_timeout(timeout: Any, what: str = "timeout", *, error: type = LocalProtocolError) -> Optional[float]:
    """``timeout`` as seconds, or None for "no limit"; raises ``error`` for a bad value."""
    if timeout is None:
        return None
    if not is_number(timeout):
        if isinstance(timeout, float):  # NaN
            raise error(f"{what} must be >= 0 seconds (or None / inf for no limit), got {timeout!r}")
        raise error(f"{what} must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise error(f"{what} must be >= 0 seconds (or None / inf for no limit), got {timeout!r}")
    if timeout >= _MAX_WAIT:
        return None
    return float(timeout)


def check_wait(value: Any, what: str, *, above_zero: bool = False, error: type = LocalProtocolError) -> float:
    """A number of seconds for an interval option (a connect timeout, a ping interval, a
    reconnect wait): refused as :func:`check_timeout` refuses, and ``0`` too with
    ``above_zero``; ``inf`` and anything beyond the longest wait become that longest wait
    (about a week), so no primitive ever gets a value it would raise ``OverflowError`` for."""
    seconds = check_timeout(value, what, error=error)
    if seconds is None:
        if value is None:
            raise error(f"{what} must be a number of seconds, got None")
        return _MAX_WAIT
    if above_zero and seconds <= 0:
        raise error(f"{what} must be a number of seconds > 0, got {value!r}")
    return seconds


def deadline_after(timeout: Any, what: str = "timeout", *, error: type = LocalProtocolError) -> Optional[float]:
    """The ``time.monotonic()`` deadline ``timeout`` seconds from now (None = no limit)."""
    seconds = check_timeout(timeout, what, error=error)
    return None if seconds is None else time.monotonic() + seconds


@overload
def left(deadline: float) -> float: ...
@overload
def left(deadline: None) -> None: ...
@overload
def left(deadline: Optional[float]) -> Optional[float]: ...
def left(deadline: Optional[float]) -> Optional[float]:
    """Seconds until ``deadline`` (>= 0), or None for no deadline: safe for any ``wait()``."""
    if deadline is None:
        return None
    return max(0.0, min(deadline - time.monotonic(), _MAX_WAIT))


def describe(timeout: Optional[float]) -> str:
    """``timeout`` for an error message: ``"2.5 s"`` or ``"no limit"``."""
    return "no limit" if timeout is None else f"{timeout:g} s"
