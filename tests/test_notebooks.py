"""Notebooks only import the package, are stored without outputs, and run (nbclient, a real
kernel) on small synthetic data; the MLflow notebook reads the session's demo store."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text(encoding="utf-8"))["cells"]


def _code(nb: Path) -> str:
    return "\n\n".join("".join(c["source"]) for c in _cells(nb) if c["cell_type"] == "code")


def test_there_are_notebooks_for_each_audience():
    assert {p.name for p in NOTEBOOKS} >= {"01_customer_base.ipynb", "02_models_from_mlflow.ipynb",
                                           "03_forecast_backtest.ipynb"}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_defines_no_logic(nb):
    code = _code(nb)
    assert "def " not in code and "class " not in code and "lambda" not in code, \
        "put logic in src/keyaccounts, not notebooks"
    assert "keyaccounts" in code


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(nb):
    for cell in _cells(nb):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, \
                f"{nb.name}: clear outputs before committing (Kernel > Restart & Clear Output)"
    meta = json.loads(nb.read_text(encoding="utf-8"))["metadata"]
    assert "widgets" not in meta


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(nb, demo_run, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    assert demo_run.exit_code == 0, demo_run.output
    monkeypatch.setenv("MLFLOW_TRACKING_URI", demo_run.tracking_uri)  # the kernel inherits it
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(nb, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    text = json.dumps([o.get("data", {}).get("text/plain", o.get("text", "")) for o in outputs])
    if nb.name.startswith("02"):
        # read the demo's store: champions of every family, with baselines side by side
        assert "churn-90d" in text and "logreg" in text and "no champion yet" not in text
    assert not [p for p in NOTEBOOK_DIR.iterdir() if p.name in ("mlruns", "out", "models")]  # wrote nothing there
