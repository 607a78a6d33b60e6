"""Fixtures of the example tests (helpers in example_tools.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest
from example_tools import EXAMPLES


@pytest.fixture
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``examples/`` importable (as the scripts see it when run from there)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield EXAMPLES
    for name in ("flask_app", "memphis_env", "producer", "consumer", "celery_app"):
        sys.modules.pop(name, None)
