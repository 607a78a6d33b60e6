"""Message headers: an ordered, case-preserving, multi-valued mapping.

NATS headers (ADR-4) look like HTTP headers but are **case-sensitive**, may repeat a name (one
value per line on the wire, never comma-joined) and keep the order they were written in.
:class:`Headers` models exactly that: lookups by name return the first value, :meth:`Headers.add`
appends another one, and :meth:`Headers.items_all` yields every pair in wire order.

Every insert is validated, so a :class:`Headers` built by user code can always be encoded:
names are non-empty printable ASCII (``0x21``-``0x7E``) without ``:``, values are ``str`` with no
CR, LF or NUL (any other character is allowed and is sent as UTF-8). Headers decoded from the wire
are kept even when they break those rules (a header is never dropped on receipt); such a header
is rejected only if the same object is sent again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Dict, List, Optional, Tuple, TypeVar, Union, overload

from ...errors import LocalProtocolError

__all__ = ["Headers", "HeadersInit", "HeadersLike", "header_pairs", "validate_header_name", "validate_header_value"]

_T = TypeVar("_T")

#: What the :class:`Headers` constructor accepts.
HeadersInit = Union[
    "Headers",
    Mapping[str, Union[str, List[str], Tuple[str, ...]]],
    Iterable[Tuple[str, str]],
    None,
]


def validate_header_name(name: object) -> str:
    """Check that ``name`` may be sent as a header name.

    Args:
        name: The candidate name.

    Returns:
        ``name`` unchanged.

    Raises:
        LocalProtocolError: ``name`` is not a ``str``, is empty, or has a character outside
            printable ASCII ``0x21``-``0x7E``, or a ``:``.
    """
    if not isinstance(name, str):
        raise LocalProtocolError(f"header name must be a str, got {type(name).__name__}: {name!r}")
    # isprintable() on ASCII admits exactly 0x20-0x7E; the space and ':' are then excluded by hand.
    if not name or not name.isascii() or not name.isprintable() or " " in name or ":" in name:
        raise LocalProtocolError(
            f"invalid header name {name!r}: must be non-empty printable ASCII without spaces or ':'"
        )
    return name


def validate_header_value(name: str, value: object) -> str:
    """Check that ``value`` may be sent as the value of header ``name``.

    Args:
        name: The header name (used in the error message only).
        value: The candidate value.

    Returns:
        ``value`` unchanged.

    Raises:
        LocalProtocolError: ``value`` is not a ``str``, contains CR, LF or NUL, or cannot be
            encoded as UTF-8 (a lone surrogate).
    """
    if not isinstance(value, str):
        raise LocalProtocolError(
            f"value of header {name!r} must be a str, got {type(value).__name__}: {value!r}"
        )
    if "\r" in value or "\n" in value or "\0" in value:
        raise LocalProtocolError(f"invalid value for header {name!r}: {value!r} contains CR, LF or NUL")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError(
                f"invalid value for header {name!r}: {value!r} is not encodable as UTF-8"
            ) from None
    return value


class Headers(MutableMapping[str, str]):
    """Ordered, case-preserving, multi-valued header mapping (case-sensitive lookups).

    As a ``Mapping`` it shows one value per name, the first; ``len()`` counts distinct names and
    iteration yields them in first-seen order. The multi-value view is :meth:`get_all`,
    :meth:`add` and :meth:`items_all`.

    Args:
        data: ``None``; another :class:`Headers` (copied); a mapping whose values are a ``str`` or
            a list/tuple of ``str`` (one header line per item); or an iterable of
            ``(name, value)`` pairs.

    Raises:
        LocalProtocolError: A name or value is invalid (see :func:`validate_header_name` and
            :func:`validate_header_value`).

    Example:
        >>> h = Headers({"Foo": "1"})
        >>> h.add("Foo", "2")
        >>> h["Foo"], h.get_all("Foo")
        ('1', ['1', '2'])
    """

    __slots__ = ("_pairs", "_index")

    # Invariants: ``_pairs`` is every (name, value) in wire order; ``_index[name]`` lists the values
    # of ``name`` in the same order and is never empty; ``_index`` keys are in first-seen order.

    def __init__(self, data: HeadersInit = None) -> None:
        self._pairs: List[Tuple[str, str]] = []
        self._index: Dict[str, List[str]] = {}
        if data is None:
            return
        if isinstance(data, Headers):
            self._pairs = list(data._pairs)
            self._index = {name: list(values) for name, values in data._index.items()}
            return
        for name, value in header_pairs(data):
            self.add(name, value)

    @classmethod
    def _from_wire(cls, pairs: List[Tuple[str, str]]) -> Headers:
        """Build from pairs decoded off the wire, without validation (never drop a header)."""
        self = cls.__new__(cls)
        self._pairs = pairs
        index: Dict[str, List[str]] = {}
        for name, value in pairs:
            values = index.get(name)
            if values is None:
                index[name] = [value]
            else:
                values.append(value)
        self._index = index
        return self

    # -- Mapping ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> str:
        return self._index[name][0]

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by ``value``, at the position of its first line."""
        validate_header_name(name)
        validate_header_value(name, value)
        if name not in self._index:
            self._pairs.append((name, value))
            self._index[name] = [value]
            return
        pairs: List[Tuple[str, str]] = []
        placed = False
        for pair in self._pairs:
            if pair[0] != name:
                pairs.append(pair)
            elif not placed:
                pairs.append((name, value))
                placed = True
        self._pairs = pairs
        self._index[name] = [value]

    def __delitem__(self, name: str) -> None:
        """Remove every value of ``name``; ``KeyError`` if absent."""
        del self._index[name]
        self._pairs = [pair for pair in self._pairs if pair[0] != name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @overload
    def get(self, name: str) -> Optional[str]: ...

    @overload
    def get(self, name: str, default: Union[str, _T]) -> Union[str, _T]: ...

    def get(self, name: str, default: Any = None) -> Any:
        """Return the first value of ``name``, or ``default`` if absent (case-sensitive)."""
        values = self._index.get(name)
        return values[0] if values else default

    def clear(self) -> None:
        """Remove every header."""
        self._pairs = []
        self._index = {}

    # -- multi-value API -------------------------------------------------------------------

    def add(self, name: str, value: str) -> None:
        """Append another ``name: value`` line, keeping the existing values of ``name``.

        Args:
            name: Header name.
            value: Header value.

        Raises:
            LocalProtocolError: ``name`` or ``value`` is invalid.
        """
        validate_header_name(name)
        validate_header_value(name, value)
        self._pairs.append((name, value))
        values = self._index.get(name)
        if values is None:
            self._index[name] = [value]
        else:
            values.append(value)

    def get_all(self, name: str) -> List[str]:
        """Return every value of ``name`` in order (a new list; empty if absent)."""
        return list(self._index.get(name, ()))

    def items_all(self) -> Iterator[Tuple[str, str]]:
        """Iterate over every ``(name, value)`` pair in wire order (a snapshot)."""
        return iter(list(self._pairs))

    def get_ci(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """Case-insensitive lookup: the first value whose name equals ``name`` ignoring case.

        Args:
            name: Header name, any case.
            default: Returned when no header matches.

        Returns:
            The first matching value in wire order, or ``default``.
        """
        if not isinstance(name, str):
            return default
        lowered = name.lower()
        for key, value in self._pairs:
            if key.lower() == lowered:
                return value
        return default

    def copy(self) -> Headers:
        """Return an independent copy."""
        return Headers(self)

    # -- dunder ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Equal to another :class:`Headers` with the same pairs in the same order, or to a
        mapping whose items equal the first value of each name."""
        if isinstance(other, Headers):
            return self._pairs == other._pairs
        if isinstance(other, Mapping):
            return len(other) == len(self._index) and all(
                values[0] == other.get(name, _MISSING) for name, values in self._index.items()
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


_MISSING: Any = object()


#: What publish calls accept as headers: a :class:`Headers`, a plain ``{name: value}`` mapping, or None.
HeadersLike = Union[Headers, Mapping[str, str], None]


def header_pairs(data: HeadersInit) -> List[Tuple[Any, Any]]:
    """The ``(name, value)`` pairs of headers given in any accepted form, in order: a
    :class:`Headers` (every value), a mapping (a list or tuple value gives one pair per item), or
    an iterable of pairs. Nothing is validated here but the shape.

    Raises:
        LocalProtocolError: not one of those forms, or an item of an iterable is not a
            ``(name, value)`` pair.
    """
    if data is None:
        return []
    if isinstance(data, Headers):
        return list(data.items_all())
    if isinstance(data, Mapping):
        pairs: List[Tuple[Any, Any]] = []
        for name, value in data.items():
            if isinstance(value, (list, tuple)):
                pairs.extend((name, item) for item in value)
            else:
                pairs.append((name, value))
        return pairs
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise LocalProtocolError(f"headers must be a Headers, a mapping or (name, value) pairs, got {type(data).__name__}")
    out: List[Tuple[Any, Any]] = []
    for pair in data:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise LocalProtocolError(f"header items must be (name, value) pairs, got {pair!r}") from None
        out.append((name, value))
    return out
