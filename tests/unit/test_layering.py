"""Import edges follow the layer order, and the protocol module does no I/O."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "memphis_sync"

# lowest first; a module may import from its own layer or below
LAYERS = [
    {"errors", "_defaults", "_version", "headers", "protocol", "_nuid", "_future", "_timeouts"},
    {"transport", "_server_pool", "_handshake"},
    {"_retry", "subscription", "connection"},
    {"js_api", "js_msg"},
    {"js_pull"},
    {"jetstream"},
    {"client", "station", "producer", "consumer", "message", "schemas", "_partition"},
    {"broker", "testing", "cli", "__main__", "__init__", "bench", "demo"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                yield node.module.split(".")[0]
            elif node.level == 1:
                for alias in node.names:
                    yield alias.name
            elif node.module and node.module.startswith("memphis_sync."):
                yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("memphis_sync."):
                    yield alias.name.split(".")[1]


def _stdlib_imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_layers(path):
    me = _module_name(path)
    assert me in LEVEL, f"{me} is not assigned to a layer in test_layering.py"
    for target in _imports(path):
        if me == "broker" and path.parent.name == "broker" and target in {"server", "control_plane", "cluster", "_config", "dls", "cli"}:
            continue  # modules inside the broker package
        assert target in LEVEL, f"{me} imports unknown module {target}"
        assert LEVEL[target] <= LEVEL[me], f"{me} (layer {LEVEL[me]}) imports {target} (layer {LEVEL[target]})"


def test_protocol_does_no_io():
    forbidden = {"socket", "threading", "select", "time", "ssl", "asyncio", "selectors"}
    for name in ("protocol.py", "headers.py"):
        used = set(_stdlib_imports(PACKAGE / name)) & forbidden
        assert not used, f"{name} imports {used}"
