"""The documentation stays true to the code: API coverage, the status table, the error tree, a clean build."""

from __future__ import annotations

import inspect
import pathlib
import re
import sys
import uuid
from typing import Any, Dict, List, Optional, Set, Tuple, Type

import pytest

import memphis_sync
import memphis_sync.errors
from memphis_sync.nats.connection import TRANSITIONS

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# -- 1. every public name has an autodoc entry ----------------------------------------------


@pytest.mark.parametrize("name", [n for n in memphis_sync.__all__ if n != "__version__"])
def test_every_public_name_is_in_api_rst(name: str) -> None:
    pattern = rf"^\.\. auto(?:class|exception|function|data)::\s+memphis_sync\.{re.escape(name)}\s*$"
    assert re.search(pattern, _read("api.rst"), re.MULTILINE), (
        f"docs/api.rst has no autodoc entry for memphis_sync.{name}"
    )


# -- 2. the status transition table is TRANSITIONS ------------------------------------------


def _simple_table_after(text: str, label: str) -> List[List[str]]:
    """Rows (cells stripped) of the first RST simple table after ``label``, header excluded.
    Continuation lines (an empty first cell) are merged into the row above."""
    lines = text[text.index(label):].splitlines()
    borders = [i for i, line in enumerate(lines) if re.fullmatch(r"=+( +=+)+", line.strip())]
    assert len(borders) >= 3, f"no simple table after {label}"
    first, second, third = borders[:3]
    spans = [m.span() for m in re.finditer(r"=+", lines[first])]
    rows: List[List[str]] = []
    for line in lines[second + 1 : third]:
        if not line.strip():
            continue
        cells = [line[start:end if k < len(spans) - 1 else None].strip() for k, (start, end) in enumerate(spans)]
        if not cells[0] and rows:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return rows


def test_transition_table_matches_connection_transitions() -> None:
    rows = _simple_table_after(_read("protocol.rst"), ".. _status-transitions:")
    documented: Dict[str, Set[str]] = {}
    seen: Set[Tuple[str, str]] = set()
    for row in rows:
        source, target = row[0], row[1]
        assert (source, target) not in seen, f"duplicate row {source} -> {target}"
        seen.add((source, target))
        targets = documented.setdefault(source, set())
        if target != "(none)":
            targets.add(target)
    actual = {state.name: {t.name for t in targets} for state, targets in TRANSITIONS.items()}
    assert documented == actual


# -- 3. the exception tree is the class hierarchy -------------------------------------------


def _error_classes() -> Dict[str, Type[BaseException]]:
    module = memphis_sync.errors
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and not issubclass(obj, Warning)
        and obj.__module__ == module.__name__
    }


def test_warning_classes_are_documented() -> None:
    module = memphis_sync.errors
    warning_classes = [
        name for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, Warning) and obj.__module__ == module.__name__
    ]
    text = _read("errors.rst")
    assert warning_classes
    for name in warning_classes:
        assert f":exc:`{name}`" in text[text.index("Warnings"):], name


def _documented_tree() -> List[Tuple[str, Optional[str], Set[str]]]:
    """``(name, parent, builtin bases noted as "(also ...)")`` for each item of the nested list."""
    text = _read("errors.rst")
    section = text[text.index("The hierarchy") : text.index("Catching errors")]
    items: List[Tuple[str, Optional[str], Set[str]]] = []
    stack: List[Tuple[int, str]] = []
    for line in section.splitlines():
        match = re.match(r"^( *)\* :exc:`~?(?:memphis_sync\.(?:errors\.)?)?(\w+)`(.*)$", line)
        if not match:
            continue
        indent, name, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else None
        also = re.match(r"\s*\(also ([^)]*)\)", rest)
        noted = set(re.findall(r"``(\w+)``", also.group(1))) if also else set()
        items.append((name, parent, noted))
        stack.append((indent, name))
    return items


def test_error_tree_matches_class_hierarchy() -> None:
    classes = _error_classes()
    items = _documented_tree()
    names = [name for name, _, _ in items]
    assert len(names) == len(set(names)), "a class is listed twice in docs/errors.rst"
    assert set(names) == set(classes), (
        f"missing from docs/errors.rst: {sorted(set(classes) - set(names))}; "
        f"not in memphis_sync.errors: {sorted(set(names) - set(classes))}"
    )
    for name, parent, noted in items:
        cls = classes[name]
        ours = [base.__name__ for base in cls.__bases__ if base.__module__ == memphis_sync.errors.__name__]
        expected_parent = ours[0] if ours else None
        assert parent == expected_parent, f"{name} is listed under {parent}, its first base is {expected_parent}"
        builtin = {b.__name__ for b in cls.__bases__ if b.__module__ != memphis_sync.errors.__name__} - {"Exception"}
        assert noted == builtin, f"{name}: the docs note bases {sorted(noted)}, the class has {sorted(builtin)}"


# -- 4. the docs build without a single warning ---------------------------------------------


@pytest.mark.slow
# Sphinx's own deprecation warnings (napoleon on Sphinx 9 uses its deprecated options mapping)
# are Sphinx's business; our docs are held to -W, which fails on any Sphinx warning.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:sphinx")
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:sphinx")
@pytest.mark.timeout(300)  # a full Sphinx build: slow on a busy machine
def test_docs_build_without_warnings(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sphinx.cmd.build import build_main  # the "test" extra installs sphinx

    saved_path = list(sys.path)
    try:
        code = build_main(["-W", "--keep-going", "-b", "html", "-q", str(DOCS), str(tmp_path / "html")])
    finally:
        sys.path[:] = saved_path  # docs/conf.py inserts the repository root
    output = capsys.readouterr()
    assert code == 0, f"sphinx-build failed:\n{output.err}{output.out}"


# -- the local broker's known differences from a Memphis broker are all listed --------------

#: Every entry docs/testing.rst must keep (its bold lead).
BROKER_DIFFERENCES = {
    "msg-id de-duplication", "Single-partition last_messages", "Partition cap", "Schema name and type validation",
    "Protobuf compiler", "Missing schema or user at station creation", "Rejoining a consumer group with another start",
    "DLS retention", "DLS forwarding partition", "Schema DLS setting updates", "Disconnect tracking",
    "Plain NATS clients in token mode", "User types", "Connects while no control plane runs",
    "Password mode connection names", "WebSocket listener", "Tiered storage",
}
#: ``§15.<n>`` markers in memphis_sync/broker/ where the local broker does what the broker does.
SAME_AS_THE_BROKER = {
    "15.16",  # new schema versions are inserted inactive
    "15.20",  # a nacked-DLS report needs a partition
}


def test_local_broker_differences_are_all_listed() -> None:
    text = _read("testing.rst")
    section = text[text.index(".. _local-broker-differences:"):]
    leads = set(re.findall(r"^\* \*\*(.+?)\*\*", section, re.MULTILINE))
    assert not BROKER_DIFFERENCES - leads, f"docs/testing.rst lost: {sorted(BROKER_DIFFERENCES - leads)}"
    package = pathlib.Path(memphis_sync.__file__).parent / "broker"
    markers = {m for path in package.rglob("*.py") for m in re.findall(r"§(15\.\d+)", path.read_text(encoding="utf-8"))}
    assert markers, "no §15 markers found in memphis_sync/broker/ (the scan is broken)"
    undocumented = {m for m in markers - SAME_AS_THE_BROKER if f"(§{m})" not in section}
    assert not undocumented, f"§15 choices of the local broker missing from docs/testing.rst: {sorted(undocumented)}"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_quickstart_runs_as_written(memphis_broker: Any) -> None:
    """The quickstart's Python blocks, in order, against the session broker (its port for 6666)."""
    import re

    text = _read("quickstart.rst")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) >= 3
    code = "\n".join("\n".join(line[3:] for line in block.splitlines()) for block in blocks)
    assert 'port=6666' in code
    code = code.replace("port=6666", f"port={memphis_broker.port}").replace('host="localhost"', f'host="{memphis_broker.host}"')
    code = code.replace("orders", f"orders-{uuid.uuid4().hex[:8]}")
    namespace: Dict[str, Any] = {}
    exec(compile(code, "quickstart.rst", "exec"), namespace)  # noqa: S102 - our own docs
    assert namespace["received"] == 99 and namespace["ack"].seq == 1
    assert not namespace["memphis"].is_connected()
