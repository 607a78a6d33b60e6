"""docs/frameworks/ stays true to the examples: every shell command of its pages is one of
DOC_COMMANDS (which the tests here run, as shown), every example file a page names exists, and
every page is in the toctree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Set, Tuple

import pytest
from example_tools import DOC_COMMANDS, ROOT

PAGES = ROOT / "docs" / "frameworks"
TESTS = Path(__file__).resolve().parent


def _console_commands(text: str) -> List[Tuple[str, str]]:
    """``(folder, command)`` for each ``$`` line of the page's ``console`` blocks; a ``$ cd``
    line sets the folder (from the repository root) of the lines after it in its block."""
    commands: List[Tuple[str, str]] = []
    for block in re.finditer(r"^\.\. code-block:: console\n\n((?:(?:   .*)?\n)+)", text, re.MULTILINE):
        folder = "."
        for line in block.group(1).splitlines():
            line = line.strip()
            if not line.startswith("$ "):
                continue
            command = line[2:].split("  #")[0].strip()
            if command.startswith("cd "):
                folder = command[3:].strip()
            else:
                commands.append((folder, command))
    return commands


def _pages() -> List[Path]:
    return sorted(PAGES.glob("*.rst"))


def test_the_parser_finds_commands() -> None:  # the positive control of the checks below
    text = ".. code-block:: console\n\n   $ cd examples\n   $ python x.py --n 1   # note\n   output\n\nprose\n"
    assert _console_commands(text) == [("examples", "python x.py --n 1")]


def test_every_command_of_the_pages_is_run_by_a_test() -> None:
    documented: Set[Tuple[str, str]] = set()
    for page in _pages():
        documented.update(_console_commands(page.read_text(encoding="utf-8")))
    assert documented == set(DOC_COMMANDS.values()), (
        f"in the docs, not in DOC_COMMANDS: {sorted(documented - set(DOC_COMMANDS.values()))}; "
        f"in DOC_COMMANDS, not in the docs: {sorted(set(DOC_COMMANDS.values()) - documented)}"
    )
    sources = "".join(path.read_text(encoding="utf-8") for path in TESTS.glob("test_*.py"))
    unused = [key for key in DOC_COMMANDS if not re.search(rf"doc_command\(\"{re.escape(key)}\"", sources)]
    assert not unused, f"no test runs these docs commands: {unused}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_the_example_files_a_page_names_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    named = re.findall(r"``(examples/[^`]+)``", text)
    if page.name != "index.rst":
        assert re.search(r"^Example: ``examples/", text, re.MULTILINE), f"{page.name} points to no example"
    for path in named:
        assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"


def test_every_page_is_in_the_toctree() -> None:
    index = (PAGES / "index.rst").read_text(encoding="utf-8")
    toctree = index[index.index(".. toctree::"):].split("\n\n", 2)[1]
    listed = {line.strip() for line in toctree.splitlines() if line.strip()}
    assert listed == {p.stem for p in _pages() if p.name != "index.rst"}
    assert "   frameworks/index\n" in (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
