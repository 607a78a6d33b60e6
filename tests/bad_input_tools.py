"""What the bad-input catalogues (tests/nats/test_nats_bad_input.py and
tests/memphis/test_memphis_bad_input.py) share: the exceptions a docstring documents, the
hostile strings, and the checks every case makes on what it raised and logged.
"""

from __future__ import annotations

import inspect
import logging
import re
from typing import Any, Callable, Iterable, List, Sequence, Tuple, Type

import pytest
from wiretap import WireTap, without_pings

import memphis_sync.errors

__all__ = ["documented_raises", "placed", "WRONG_TYPES", "BAD_NUMBERS", "assert_no_secret", "case_id", "check_case"]

_ENTRY = re.compile(r"^(\s+)([A-Z]\w*(?:\s*/\s*[A-Z]\w*)*)\s*:")

#: Not a str (or not bytes): what a caller passes by mistake.
WRONG_TYPES: Sequence[Any] = (None, 5, 1.5, b"ab", ["ab"], object())
#: Numbers no count, size or interval may be: non-finite, negative, huge, not numbers.
BAD_NUMBERS: Sequence[Any] = (float("nan"), float("-inf"), -1, 2**64, "1", True, None)


def documented_raises(func: Any) -> Tuple[Type[BaseException], ...]:
    """The exception classes the Google-style ``Raises:`` section of ``func``'s docstring names
    (of each function, for a tuple of them: a call that documents itself as another's).

    Fails (AssertionError) when there is no such section or a name is not an exception of
    :mod:`memphis_sync.errors`, so a docstring cannot drift away from the code unnoticed.
    """
    if isinstance(func, tuple):
        return tuple(cls for one in func for cls in documented_raises(one))
    doc = inspect.getdoc(func) or ""
    lines = doc.splitlines()
    assert "Raises:" in (line.strip() for line in lines), f"{func.__qualname__} documents no Raises: section"
    start = [line.strip() for line in lines].index("Raises:")
    found: List[Type[BaseException]] = []
    indent = None
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        match = _ENTRY.match(line)
        if match and (indent is None or len(match.group(1)) == indent):
            indent = len(match.group(1))
            for name in re.split(r"\s*/\s*", match.group(2)):
                cls = getattr(memphis_sync.errors, name, None)
                assert isinstance(cls, type) and issubclass(cls, BaseException), f"{func.__qualname__}: {name} is not an error class"
                found.append(cls)
    assert found, f"{func.__qualname__}: empty Raises: section"
    return tuple(found)


def placed(chars: Iterable[str], base: str = "ab") -> List[str]:
    """Each character at the start, in the middle and at the end of ``base``."""
    return [text for c in chars for text in (c + base, base[:1] + c + base[1:], base + c)]


def case_id(value: Any) -> str:
    """A short, printable test id for a value."""
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "..."


def assert_no_secret(secrets: Sequence[str], exc: BaseException, records: Sequence[logging.LogRecord], *reprs: object) -> None:
    """None of ``secrets`` is in the error (its chain included), any repr, or any log record."""
    texts = [repr(r) for r in reprs]
    error: Any = exc
    while error is not None:
        texts += [str(error), repr(error), repr(error.args)]
        error = error.__cause__ or error.__context__
    for record in records:
        texts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(str(record.exc_info[1]))
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"a secret leaked: {text[:200]!r}"


def check_case(
    caplog: pytest.LogCaptureFixture, tap: WireTap, call: Callable[[], Any], documented: Any, expected: type, *,
    flush: Callable[[], Any], round_trip: Callable[[], Any], secrets: Sequence[str], reprs: Sequence[object],
) -> None:
    """The checks every catalogue case makes: ``call()`` raises ``expected``, one of the classes
    ``documented`` lists; after ``flush()`` (a PING the server answers) nothing but PINGs and
    PONGs passed the tap and nothing dialled; ``round_trip()`` works on the same connection;
    no secret is in the error, ``reprs`` or the log records (DEBUG and up) of the case."""
    mark, accepted = tap.mark(), tap.accepted
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(expected) as info:
            call()
        assert isinstance(info.value, documented_raises(documented)), f"{info.value!r} is not documented"
        flush()
        assert without_pings(tap.sent_since(mark)) == b"", "the bad call put something on the wire"
        assert tap.accepted == accepted, "the bad call dialled"
        round_trip()
    assert_no_secret(secrets, info.value, caplog.records, *reprs)
