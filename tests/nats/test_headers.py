"""Unit tests for memphis_sync.nats.protocol.headers.Headers."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from memphis_sync.errors import LocalProtocolError
from memphis_sync.nats.protocol.encoder import encode_headers
from memphis_sync.nats.protocol.headers import Headers


def test_empty() -> None:
    h = Headers()
    assert len(h) == 0
    assert list(h) == []
    assert list(h.items_all()) == []
    assert h == Headers(None) == {}
    assert h.get("a") is None
    with pytest.raises(KeyError):
        h["a"]


def test_from_mapping_with_lists_and_tuples() -> None:
    data: Dict[str, Any] = {"A": "1", "B": ["2", "3"], "C": ("4",), "D": []}
    h = Headers(data)
    assert list(h.items_all()) == [("A", "1"), ("B", "2"), ("B", "3"), ("C", "4")]
    assert list(h) == ["A", "B", "C"]
    assert len(h) == 3
    assert h["B"] == "2"
    assert h.get_all("B") == ["2", "3"]


def test_from_pairs_keeps_interleaved_order() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("A", "3")])
    assert list(h.items_all()) == [("A", "1"), ("B", "2"), ("A", "3")]
    assert list(h) == ["A", "B"]
    assert h.get_all("A") == ["1", "3"]


def test_from_headers_is_a_copy() -> None:
    a = Headers([("A", "1"), ("A", "2")])
    b = Headers(a)
    c = a.copy()
    b.add("A", "3")
    c["A"] = "x"
    assert a.get_all("A") == ["1", "2"]
    assert b.get_all("A") == ["1", "2", "3"]
    assert c.get_all("A") == ["x"]


def test_bad_pair_shape() -> None:
    with pytest.raises(LocalProtocolError, match="pairs"):
        Headers([("A", "1", "2")])  # type: ignore[list-item]


def test_lookup_is_case_sensitive_and_get_ci_is_not() -> None:
    h = Headers([("Foo", "1"), ("FOO", "2")])
    assert h["Foo"] == "1"
    assert h["FOO"] == "2"
    assert "foo" not in h
    assert h.get("foo") is None
    assert h.get("foo", "d") == "d"
    assert h.get_ci("foo") == "1"
    assert h.get_ci("fOO") == "1"
    assert h.get_ci("bar") is None
    assert h.get_ci("bar", "d") == "d"
    assert h.get_ci(1) is None  # type: ignore[arg-type]


def test_setitem_replaces_all_values_at_first_position() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("A", "3"), ("C", "4")])
    h["A"] = "x"
    assert list(h.items_all()) == [("A", "x"), ("B", "2"), ("C", "4")]
    h["D"] = "5"
    assert list(h.items_all())[-1] == ("D", "5")
    assert list(h) == ["A", "B", "C", "D"]


def test_delitem_removes_all_values() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("A", "3")])
    del h["A"]
    assert list(h.items_all()) == [("B", "2")]
    assert "A" not in h
    assert h.get_all("A") == []
    with pytest.raises(KeyError):
        del h["A"]


def test_add_appends() -> None:
    h = Headers()
    h.add("A", "1")
    h.add("B", "2")
    h.add("A", "")
    assert list(h.items_all()) == [("A", "1"), ("B", "2"), ("A", "")]
    assert h["A"] == "1"
    assert len(h) == 2


def test_get_all_returns_a_copy() -> None:
    h = Headers({"A": "1"})
    h.get_all("A").append("zzz")
    assert h.get_all("A") == ["1"]


def test_items_all_is_a_snapshot() -> None:
    h = Headers({"A": "1"})
    it = h.items_all()
    h.add("B", "2")
    assert list(it) == [("A", "1")]


def test_mutable_mapping_mixins() -> None:
    h = Headers([("A", "1"), ("A", "2")])
    h.update({"B": "3"})
    assert h.pop("A") == "1"
    assert "A" not in h
    assert h.setdefault("C", "4") == "4"
    assert dict(h) == {"B": "3", "C": "4"}
    assert sorted(h.keys()) == ["B", "C"]
    h.clear()
    assert len(h) == 0 and list(h.items_all()) == []


def test_eq() -> None:
    a = Headers([("A", "1"), ("B", "2")])
    assert a == Headers([("A", "1"), ("B", "2")])
    assert a != Headers([("B", "2"), ("A", "1")])  # order matters between Headers
    assert a == {"A": "1", "B": "2"}
    assert a == {"B": "2", "A": "1"}  # dicts: first values only
    assert Headers([("A", "1"), ("A", "2")]) == {"A": "1"}
    assert a != {"A": "1"}
    assert a != {"A": "1", "B": "x"}
    assert a != {"A": "1", "C": "2"}
    assert a != 1
    assert a != [("A", "1"), ("B", "2")]


def test_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Headers())


def test_repr_round_trips() -> None:
    h = Headers([("A", "1"), ("B", "é"), ("A", "")])
    assert repr(h) == "Headers([('A', '1'), ('B', 'é'), ('A', '')])"
    assert eval(repr(h), {"Headers": Headers}) == h


@pytest.mark.parametrize("name", ["", "A:B", "A B", "Ä", "A\tB", "A\x7f", "A\r", "A\n", "\x00"])
def test_invalid_names(name: str) -> None:
    for build in (
        lambda: Headers({name: "v"}),
        lambda: Headers([(name, "v")]),
        lambda: Headers().add(name, "v"),
        lambda: Headers().__setitem__(name, "v"),
    ):
        with pytest.raises(LocalProtocolError) as info:
            build()
        assert repr(name) in str(info.value)


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00b", "\r\n", "\ud800"])
def test_invalid_values(value: str) -> None:
    for build in (
        lambda: Headers({"Name": value}),
        lambda: Headers().add("Name", value),
        lambda: Headers().__setitem__("Name", value),
    ):
        with pytest.raises(LocalProtocolError) as info:
            build()
        assert "'Name'" in str(info.value)


@pytest.mark.parametrize("name, value", [(1, "v"), (b"A", "v"), ("A", 1), ("A", b"v"), ("A", None)])
def test_non_str_rejected(name: object, value: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Headers().add(name, value)  # type: ignore[arg-type]
    assert repr(name) in str(info.value) or repr(value) in str(info.value)


def test_allowed_characters() -> None:
    printable = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ":")
    h = Headers({printable: " any ✓ text: with colons, tabs\tand spaces "})
    assert h[printable].startswith(" any")
    assert Headers({"Empty": ""})["Empty"] == ""


def test_invalid_header_rejected_before_partial_insert() -> None:
    h = Headers({"A": "1"})
    with pytest.raises(LocalProtocolError):
        h["A"] = "bad\r\n"
    assert list(h.items_all()) == [("A", "1")]


def test_wire_headers_are_kept_but_not_resent() -> None:
    h = Headers._from_wire([("Bad Name", "v"), ("A", "x\ny")])
    assert h["Bad Name"] == "v"
    assert h["A"] == "x\ny"
    with pytest.raises(LocalProtocolError):
        encode_headers(h)
