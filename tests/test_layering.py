"""The tree shows the layers: a folder is a layer, a module imports only from its own folder or
below (``TYPE_CHECKING`` imports included), no ``_private`` name crosses a folder, the sans-IO
protocol does no I/O, and modules stay small."""

from __future__ import annotations

import ast
import pathlib
import re
from typing import Iterator, List, Optional, Tuple

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "memphis_sync"

#: Former flat module paths, kept as aliases of the moved modules (re-export only).
ALIASES = {
    "connection", "protocol", "headers", "transport", "subscription", "js_api", "js_pull", "js_msg",
    "client", "station", "producer", "consumer", "message", "schemas",
}

# lowest first; a unit (a folder, or a module at the top) may import from its own layer or below
LAYERS = [
    {"errors", "_defaults", "_version", "_timeouts", "_names", "_html"},
    {"nats"},
    {"jetstream"},
    {"memphis"},
    {"rest"},  # the REST gateway client: beside the Memphis API, on its message and header rules
    {"broker"},
    {"testing", "cli", "__main__", "__init__", "demo", "demo_report"} | ALIASES,
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}

#: Modules over the size limit, with the size they may not exceed until they are split.
OVERSIZED = {
}
MAX_LINES = 500


def _dotted(path: pathlib.Path) -> List[str]:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _unit(parts: List[str], path: Optional[pathlib.Path] = None) -> str:
    if not parts:
        return "__init__"
    if len(parts) == 1 and path is not None and path.name != "__init__.py":
        return parts[0]  # a module at the top
    return parts[0]


def _nodes(tree: ast.AST, include_type_checking: bool) -> Iterator[ast.AST]:
    if include_type_checking:
        yield from ast.walk(tree)
        return
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: pathlib.Path, include_type_checking: bool = True) -> Iterator[Tuple[List[str], List[str]]]:
    """``(target module parts under memphis_sync, imported names)`` for every import, the ones
    under ``if TYPE_CHECKING:`` included unless asked otherwise."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path)[:-1]
    for node in _nodes(tree, include_type_checking):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and (node.module == "memphis_sync" or node.module.startswith("memphis_sync.")):
                target = node.module.split(".")[1:]
            else:
                continue
            if not node.module or not target:  # from . import a / from memphis_sync import a
                for name in names:
                    yield target + [name], []
            else:
                yield target, names
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("memphis_sync."):
                    yield alias.name.split(".")[1:], []


def _stdlib_imports(path: pathlib.Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _ids(path: pathlib.Path) -> str:
    return str(path.relative_to(PACKAGE))


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_imports_follow_layers(path: pathlib.Path) -> None:
    me = _unit(_dotted(path), path)
    assert me in LEVEL, f"{me} is not assigned to a layer in test_layering.py"
    for target, _ in _imports(path):
        unit = target[0] if target else "__init__"
        assert unit in LEVEL, f"{_ids(path)} imports unknown module {'.'.join(target)}"
        assert LEVEL[unit] <= LEVEL[me], (
            f"{_ids(path)} (layer {LEVEL[me]}) imports {'.'.join(target)} (layer {LEVEL[unit]})"
        )


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_no_private_name_crosses_a_folder(path: pathlib.Path) -> None:
    me = _unit(_dotted(path), path)
    if me in ALIASES:
        return  # an alias module is its target, under the old name
    for target, names in _imports(path):
        unit = target[0] if target else "__init__"
        if unit == me or unit in LAYERS[0]:
            continue  # its own folder, or the shared base modules at the top
        private = [part for part in target[1:] if part.startswith("_") and part != "__init__"]
        private += [name for name in names if name.startswith("_")]
        assert not private, f"{_ids(path)} imports private {private} from {'.'.join(target)}"


_CONN_PRIVATE = re.compile(r"\b(?:conn|_conn|connection|sub|subscription)\._[a-z]\w*")


@pytest.mark.parametrize("path", [p for p in MODULES if _unit(_dotted(p), p) not in {"nats"} | ALIASES], ids=_ids)
def test_no_private_connection_member_is_used_above_nats(path: pathlib.Path) -> None:
    """The layers above use the connection's small documented internal API (``request_async``,
    ``write_now``, ``subscribe_internal``...), never its private members."""
    found = _CONN_PRIVATE.findall(path.read_text(encoding="utf-8"))
    assert not found, f"{_ids(path)} uses private connection members: {sorted(set(found))}"


def test_protocol_does_no_io() -> None:
    forbidden = {"socket", "threading", "select", "time", "ssl", "asyncio", "selectors"}
    paths = sorted((PACKAGE / "nats" / "protocol").glob("*.py"))
    assert paths
    for path in paths:
        used = set(_stdlib_imports(path)) & forbidden
        assert not used, f"{_ids(path)} imports {used}"


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_modules_stay_small(path: pathlib.Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    limit = OVERSIZED.get(_ids(path), MAX_LINES)
    assert lines <= limit, f"{_ids(path)} has {lines} lines (limit {limit}): split it by job"


def test_the_oversized_list_only_shrinks() -> None:
    for name, limit in OVERSIZED.items():
        path = PACKAGE / name
        assert path.exists(), f"{name} is gone: remove it from OVERSIZED"
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines > MAX_LINES, f"{name} has {lines} lines now: remove it from OVERSIZED"


def _graph(include_type_checking: bool) -> dict:
    """module -> modules it imports (dotted names under memphis_sync)."""
    graph = {}
    known = {".".join(_dotted(p)) for p in MODULES}
    for path in MODULES:
        me = ".".join(_dotted(path))
        targets = set()
        for target, names in _imports(path, include_type_checking):
            # "from package import module" imports the module, not the package's __init__
            candidates = [".".join(target + [n]) for n in names]
            if names and all(c in known for c in candidates):
                found = candidates
            else:
                name = ".".join(target)
                while name and name not in known:
                    name = name.rpartition(".")[0]
                found = [name] if name else []
            targets.update(n for n in found if n != me)
        graph[me] = targets
    return graph


def _cycle(graph: dict) -> List[str]:
    state: dict = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


#: Lazy re-exports that keep an old public path working (a module ``__getattr__``), not imports
#: the module needs: ``memphis_sync.broker.server.NatsCluster`` now lives in ``broker.cluster``.
LAZY_COMPAT = {("broker.server", "broker.cluster")}


def test_no_import_cycle() -> None:
    """No module depends on itself through others: lazy imports inside functions and
    ``TYPE_CHECKING`` imports included."""
    graph = _graph(include_type_checking=True)
    for module, target in LAZY_COMPAT:
        assert target in graph[module], f"{module} no longer imports {target}: drop it from LAZY_COMPAT"
        graph[module].discard(target)
    assert not _cycle(graph), " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_cycles() -> None:
    """Positive control: the graph walk finds a cycle through a TYPE_CHECKING-only import."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
    graph = _graph(include_type_checking=True)
    run_time = _graph(include_type_checking=False)
    assert graph["memphis.registry"] == run_time["memphis.registry"]
    assert "nats._core" in graph and "nats.transport" in graph["nats._core"]  # a TYPE_CHECKING-only edge is seen
    assert "nats.transport" not in run_time["nats._core"]
