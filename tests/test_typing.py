"""The package's types help users' own ``mypy --strict`` runs (tests/typing/user_code.py; and the
examples, when there are any)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: What a user's mypy sees, plus what this virtualenv needs: packages of the test extra installed
#: for a newer Python than 3.9 use 3.10 syntax (match) that mypy cannot parse when checking as 3.9
#: (tornado, through ipykernel, which tenacity imports if present; click, through flask and
#: celery): not followed, as in setup.cfg. celery ships no types: the example's decorators are
#: untyped.
CONFIG = """\
[mypy]

[mypy-tornado.*,click.*]
follow_imports = skip

[mypy-celery.*]
ignore_missing_imports = True

[mypy-celery_app]
disallow_untyped_decorators = False
"""


def _config(tmp_path: Path) -> str:
    path = tmp_path / "mypy.ini"
    path.write_text(CONFIG, encoding="utf-8")
    return str(path)


@pytest.mark.timeout(300)
def test_user_code_is_mypy_strict_clean(tmp_path):
    pytest.importorskip("mypy")  # CI installs it (see .ci/run)
    targets = [str(REPO / "tests" / "typing" / "user_code.py")]
    targets += [str(p) for p in sorted((REPO / "examples").glob("*.py"))] if (REPO / "examples").is_dir() else []
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.9", "--no-incremental",
         "--config-file", _config(tmp_path), "--cache-dir", str(tmp_path / "cache"), *targets],
        capture_output=True, text=True, cwd=tmp_path, timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_wrong_type_is_caught(tmp_path):
    """Positive control: the same run fails on user code that misreads a return type."""
    pytest.importorskip("mypy")
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import memphis_sync\n"
        "def f(memphis: memphis_sync.Memphis) -> int:\n"
        "    fut = memphis.producer('s', 'p').produce(b'x', nonblocking=True)\n"
        "    return fut.seq\n",  # a Future has no .seq: the overload says so
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.9", "--config-file", _config(tmp_path),
         "--cache-dir", str(tmp_path / "cache"), str(bad)],
        capture_output=True, text=True, cwd=tmp_path, timeout=280,
    )
    assert done.returncode == 1 and '"Future[PubAck]" has no attribute "seq"' in done.stdout, done.stdout + done.stderr
