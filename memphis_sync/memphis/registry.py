"""The producers and consumers of one connection, by ``<internal station>_<real name>``.

``Memphis.producer()`` returns the cached producer of a (station, name) pair, creating it once
even when threads ask together (a creation lock per key); ``fetch_messages()`` reuses the
cached consumer. Destroying a producer or consumer, or the station, forgets it here.
"""

from __future__ import annotations

import secrets
import threading
import warnings
from typing import Any, Dict, Generic, List, Optional, Protocol, TypeVar

from .validate import check_bool, internal_name

__all__ = ["Member", "Registry", "registry_key", "with_random_suffix"]


class Member(Protocol):
    """What the registry needs of a producer or consumer: its station and its name."""

    @property
    def internal_station_name(self) -> str:
        """The internal name of its station."""

    @property
    def real_name(self) -> str:
        """Its name without suffix."""


_P = TypeVar("_P", bound=Member)
_C = TypeVar("_C", bound=Member)
_M = TypeVar("_M", bound=Member)


def registry_key(station_name: str, real_name: str) -> str:
    """The cache key of a producer or consumer: internal station name, ``_``, real name."""
    return internal_name(station_name) + "_" + real_name


def with_random_suffix(name: str, generate: Any) -> str:
    """``name``, or with ``generate`` (deprecated, warned) ``name_<8 hex>``.

    Raises:
        MemphisValueError: ``generate`` is not a bool.
    """
    if not check_bool(generate, "generate_random_suffix"):
        return name
    warnings.warn(
        "Deprecation warning: generate_random_suffix will be stopped to be supported after November 1'st, 2023.",
        DeprecationWarning, stacklevel=3,
    )
    return f"{name}_{secrets.token_hex(4)}"


class Registry(Generic[_P, _C]):
    """The cached producers (``_P``) and consumers (``_C``) of one connection. Thread-safe.

    Generic so that this module needs neither :class:`Producer` nor :class:`Consumer` (which
    both use it): the client makes a ``Registry[Producer, Consumer]``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._producers: Dict[str, _P] = {}
        self._consumers: Dict[str, _C] = {}
        self._creating: Dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"<Registry producers={len(self._producers)} consumers={len(self._consumers)}>"

    def counts(self) -> "tuple[int, int]":
        """``(cached producers, cached consumers)``, now."""
        with self._lock:
            return len(self._producers), len(self._consumers)

    # -- producers -----------------------------------------------------------------------

    def producer(self, key: str) -> Optional[_P]:
        """The cached producer of ``key``, or None."""
        with self._lock:
            return self._producers.get(key)

    def add_producer(self, key: str, producer: _P) -> _P:
        """Cache ``producer`` unless ``key`` has one already; return the cached one."""
        with self._lock:
            return self._producers.setdefault(key, producer)

    def creation_lock(self, key: str) -> threading.Lock:
        """The lock held while the producer of ``key`` is created (one creation at a time)."""
        with self._lock:
            lock = self._creating.get(key)
            if lock is None:
                lock = self._creating[key] = threading.Lock()
            return lock

    def forget_producer(self, producer: _P) -> None:
        """Forget ``producer`` if it is the cached one of its key."""
        self._forget(self._producers, producer)

    def has_producers(self) -> bool:
        """True while some producer is cached."""
        return bool(self._producers)

    # -- consumers -----------------------------------------------------------------------

    def consumer(self, key: str) -> Optional[_C]:
        """The cached consumer of ``key``, or None."""
        with self._lock:
            return self._consumers.get(key)

    def add_consumer(self, key: str, consumer: _C) -> None:
        """Cache ``consumer`` under ``key`` (replacing an older one)."""
        with self._lock:
            self._consumers[key] = consumer

    def forget_consumer(self, consumer: _C) -> None:
        """Forget ``consumer`` if it is the cached one of its key."""
        self._forget(self._consumers, consumer)

    def consumers(self) -> List[_C]:
        """The cached consumers, now."""
        with self._lock:
            return list(self._consumers.values())

    def has_consumers(self) -> bool:
        """True while some consumer is cached."""
        return bool(self._consumers)

    # -- stations ------------------------------------------------------------------------

    def unset_producers_of(self, internal: str) -> None:
        """Forget the cached producers of a station (they are not destroyed)."""
        self._unset(self._producers, internal)

    def unset_consumers_of(self, internal: str) -> None:
        """Forget the cached consumers of a station (they are not destroyed)."""
        self._unset(self._consumers, internal)

    def _forget(self, table: Dict[str, _M], item: _M) -> None:
        key = item.internal_station_name + "_" + item.real_name
        with self._lock:
            if table.get(key) is item:
                del table[key]

    def _unset(self, table: Dict[str, _M], internal: str) -> None:
        with self._lock:
            for key in [k for k, v in table.items() if v.internal_station_name == internal]:
                del table[key]

    def drop_station(self, internal: str) -> List[_C]:
        """Forget every producer and consumer of a station; return the consumers dropped."""
        prefix = internal + "_"
        with self._lock:
            for key in [k for k in self._producers if k.startswith(prefix)]:
                del self._producers[key]
            dropped = [(k, c) for k, c in self._consumers.items() if k.startswith(prefix)]
            for key, _ in dropped:
                del self._consumers[key]
        return [consumer for _, consumer in dropped]

    def clear(self) -> None:
        """Forget every producer and consumer (on close)."""
        with self._lock:
            self._producers.clear()
            self._consumers.clear()
