"""Unique, unguessable inbox names (NUIDs), safe across ``fork()``.

A NUID is 22 base-62 characters: a 12-character random prefix and a 10-character sequence
advanced by a random increment. The generator re-randomizes itself when the process id
changes, so a child process never repeats its parent's inbox names (a private
``random.Random`` is not reseeded by CPython after ``fork()``).
"""

from __future__ import annotations

import os
import secrets
import threading

__all__ = ["Nuid", "next_nuid"]

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE = 62
_PREFIX_LEN = 12
_SEQ_LEN = 10
_MAX_SEQ = _BASE**_SEQ_LEN
_MIN_INC = 33
_MAX_INC = 333


class Nuid:
    """A thread-safe NUID generator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._prefix = "".join(secrets.choice(_DIGITS) for _ in range(_PREFIX_LEN))
        self._seq = secrets.randbelow(_MAX_SEQ)
        self._inc = _MIN_INC + secrets.randbelow(_MAX_INC - _MIN_INC)

    def _after_fork(self) -> None:
        # the lock may have been held by a parent thread that does not exist in the child
        self._lock = threading.Lock()
        self._reset()

    def next(self) -> str:
        """Return the next NUID."""
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            self._seq += self._inc
            if self._seq >= _MAX_SEQ:
                self._reset()
            seq = self._seq
        digits = []
        for _ in range(_SEQ_LEN):
            seq, rem = divmod(seq, _BASE)
            digits.append(_DIGITS[rem])
        return self._prefix + "".join(reversed(digits))


_GLOBAL = Nuid()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_GLOBAL._after_fork)


def next_nuid() -> str:
    """Return a new NUID from the process-wide generator."""
    return _GLOBAL.next()
