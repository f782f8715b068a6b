"""The notebook tour (notebooks/faa_tour.ipynb): stored without outputs, and it runs top to bottom.

The run executes every cell with nbclient in a fresh kernel (three trainings
of about a minute each on a 2-core CPU) and checks that the story's numbers
came out: the oracle, per-round purity, the test table, the ablation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "faa_tour.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 8
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, "".join(cell["source"])[:80]
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}  # no widget state or execution timings


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    monkeypatch.setenv("FAA_LEARN_DIR", str(tmp_path / "learn"))  # the kernel inherits it: runs land here
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError naming the cell when one fails
    text = "\n".join(
        o.get("text", "") + "".join(o.get("data", {}).get("text/markdown", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "verify_v2f_test      oracle" in text
    assert "SL (seed 0, world tiny): done" in text and "FAA (seed 0, world tiny): done" in text
    assert "FAA without diverse positives (seed 0, world tiny): done" in text
    assert "round  clusters  purity  val AUC" in text and "| verify_v2f_test |" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # curves x2, projection, overlay, attention
    assert len(list((tmp_path / "learn" / "runs").iterdir())) == 3
