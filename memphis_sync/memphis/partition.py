"""Partition choice: MurmurHash3 (x86, 32-bit) of the partition key, its mapping to a partition,
and the checks of a partition key or number (producers and consumers share them).

Every official Memphis SDK hashes the UTF-8 bytes of a partition key with MurmurHash3 x86_32,
seed 31, reads the hash as unsigned and uses ``hash % len(partitions_list)`` as an *index* into
the station's partition list (memphis-py ``mmh3.hash(key, 31, signed=False)``, memphis.go
``murmur3.New32WithSeed(31)``). Producing the same partition for the same key as those SDKs is
what makes key ordering hold across languages, so the hash here is written from the published
algorithm (Austin Appleby's MurmurHash3 reference) and tested against its known vectors and, in
the tests, against the ``mmh3`` package.
"""

from __future__ import annotations

import itertools
import struct
from typing import Optional, Sequence

from .. import _defaults
from ..errors import MemphisValueError
from .validate import INT_MAX, check_str

__all__ = ["murmur3_32", "partition_for_key", "checked_key", "check_partition_args", "check_partition_number", "pick_partition"]

_MASK = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_BLOCKS = struct.Struct("<I")


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 of ``data`` as an unsigned 32-bit integer.

    Args:
        data: the bytes to hash.
        seed: the 32-bit seed.

    Returns:
        The hash, ``0 <= h < 2**32``.
    """
    h = seed & _MASK
    length = len(data)
    end = length - (length % 4)
    for (k,) in _BLOCKS.iter_unpack(data[:end]):
        k = (k * _C1) & _MASK
        k = _rotl(k, 15)
        k = (k * _C2) & _MASK
        h ^= k
        h = _rotl(h, 13)
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = data[end:]
    if tail:
        k = 0
        for i, byte in enumerate(tail):  # little-endian: byte i goes to bits 8*i
            k |= byte << (8 * i)
        k = (k * _C1) & _MASK
        k = _rotl(k, 15)
        k = (k * _C2) & _MASK
        h ^= k
    h ^= length
    # final avalanche (fmix32)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def partition_for_key(key: str, partitions: Sequence[int]) -> int:
    """The partition number the official SDKs pick for ``key`` among ``partitions``.

    Args:
        key: the partition key (hashed as UTF-8).
        partitions: the station's partition list (as the broker sent it, e.g. ``[1, 2, 3]``).

    Returns:
        ``partitions[murmur3_32(key, 31) % len(partitions)]``.

    Raises:
        MemphisValueError: ``key`` is not a UTF-8 ``str`` (or bytes).
    """
    data = bytes(key) if isinstance(key, (bytes, bytearray)) else checked_key(key).encode("utf-8")
    return partitions[murmur3_32(data, _defaults.MEMPHIS_PARTITION_SEED) % len(partitions)]


def checked_key(key: object) -> str:
    """``key`` if it is a partition key: a ``str`` encodable as UTF-8.

    Raises:
        MemphisValueError: anything else.
    """
    text = check_str(key, "partition key")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MemphisValueError(f"partition key {text!r} is not encodable as UTF-8") from None
    return text


def check_partition_args(key: Optional[str], number: int) -> None:
    """Refuse a bad partition key/number before anything is sent.

    Raises:
        MemphisValueError: a key that is not a UTF-8 ``str``, a number that is not an int >= 1 or -1.
    """
    if key is not None:
        checked_key(key)
    if type(number) is not int or (number < 1 and number != -1) or number > INT_MAX:
        raise MemphisValueError(f"partition number must be an int >= 1 (or -1 for none), got {number!r}")


def check_partition_number(partitions: Sequence[int], internal_station: str, number: int) -> None:
    """Refuse a partition number that the station does not have (the SDK's texts)."""
    if type(number) is not int or not 1 <= number <= len(partitions):
        raise MemphisValueError("Partition number is out of range")
    if number not in partitions:
        raise MemphisValueError(f"Partition {number} does not exist in station {internal_station}")


def pick_partition(
    partitions: Sequence[int], internal_station: str, key: Optional[str], number: int, rr: "itertools.count[int]"
) -> int:
    """Choose a partition like the SDK (§6.1 steps 3-6): key hash, explicit number, or round robin."""
    if key is not None and number > 0:
        raise MemphisValueError("Can not use both partition number and partition key")
    if key is not None:
        return partition_for_key(key, partitions)
    if number > 0:
        check_partition_number(partitions, internal_station, number)
        return number
    return partitions[next(rr) % len(partitions)]
