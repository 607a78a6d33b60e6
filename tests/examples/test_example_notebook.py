"""examples/quickstart.ipynb, executed top to bottom by a real Jupyter kernel (nbclient) that
runs this virtualenv's Python: once starting its own local broker, once connecting to the test's
broker through the ``MEMPHIS_*`` variables."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from example_tools import EXAMPLES, broker_env

import memphis_sync
from memphis_sync.testing import wait_until

pytestmark = pytest.mark.integration

KERNEL = "memphis-sync-test-venv"
TIMEOUT = 60  # seconds for any one cell (nbclient's per-cell timeout)

# what the test adds to its in-memory copy of the notebook (the file is not changed)
PROBE_AFTER_CONNECT = "_probe_pids = list(broker.pids) if broker is not None else []"
PROBE_AT_END = "print(json.dumps({'executable': sys.executable, 'pids': _probe_pids}))"


@pytest.fixture
def jupyter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec that runs this Python, and Jupyter/IPython state under ``tmp_path``."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "memphis-sync tests", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    for name in [n for n in os.environ if n.startswith("MEMPHIS_")]:
        monkeypatch.delenv(name)
    return KERNEL


def execute(kernel: str) -> List[Dict[str, Any]]:
    """Run the notebook (plus the probes); the outputs of each code cell."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    nb.cells.insert(code[0] + 1, nbformat.v4.new_code_cell("import sys\n" + PROBE_AFTER_CONNECT))
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_AT_END))
    client = NotebookClient(nb, timeout=TIMEOUT, kernel_name=kernel, resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()  # raises CellExecutionError (with the traceback) if a cell fails
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def _text(outputs: List[Dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_with_its_own_broker(jupyter_env):
    outputs = execute(jupyter_env)
    text = _text(outputs)
    assert "200 messages stored; median ack latency" in text
    assert "received 200 messages; the first: {'i': 0, 'value': 0}" in text
    assert "closed; broker running: False" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot is shown"
    assert any("<Memphis 127.0.0.1:" in o.get("data", {}).get("text/plain", "") for o in outputs)
    probe = json.loads(text.strip().splitlines()[-1])
    assert probe["executable"] == sys.executable, "the kernel runs this virtualenv's Python"
    assert probe["pids"], "the notebook started its own broker"
    wait_until(lambda: all(_gone(pid) for pid in probe["pids"]), 10, "the notebook's broker processes to exit")


@pytest.mark.slow
def test_the_notebook_connects_to_the_broker_of_the_environment(jupyter_env, memphis_broker_function, monkeypatch):
    broker = memphis_broker_function
    for name, value in broker_env(broker).items():
        monkeypatch.setenv(name, value)
    text = _text(execute(jupyter_env))
    assert "closed; broker running: not ours" in text
    assert json.loads(text.strip().splitlines()[-1])["pids"] == []
    with memphis_sync.connect(**broker.connect_kwargs()) as memphis:  # the messages are on the test's broker
        consumer = memphis.consumer("notebook-readings", "test-check", batch_size=500, batch_max_time_to_wait_ms=500)
        got: List[Any] = []
        wait_until(lambda: got.extend(consumer.fetch()) or len(got) >= 200, 10, "the notebook's 200 messages")
        assert len(got) == 200
