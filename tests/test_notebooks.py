"""Notebooks only import the package, are stored without outputs, and run (nbclient, a real
kernel) on small synthetic data; the MLflow notebook reads the session's demo store; charts show
in notebooks because the package never touches matplotlib's backend."""
from __future__ import annotations

import json
import os
import subprocess
import sys
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
    if nb.name.startswith("03"):
        # the chart cell shows its figure, even with the kernel on Agg (set above)
        chart = [c for c in book.cells if c.cell_type == "code" and "backtest_chart(" in c.source
                 and "import" not in c.source]
        assert len(chart) == 1 and any("image/png" in o.get("data", {}) for o in chart[0].outputs), chart
    assert not [p for p in NOTEBOOK_DIR.iterdir() if p.name in ("mlruns", "out", "models")]  # wrote nothing there


# Imports every module of the package, then draws the training figures, report charts and the
# backtest chart, in a fresh interpreter: the backend it started with must still be the one.
_BACKEND_PROBE = r"""
import importlib, json, pkgutil, sys
import matplotlib
before = matplotlib.get_backend()
import keyaccounts
for m in pkgutil.walk_packages(keyaccounts.__path__, "keyaccounts."):
    try:
        importlib.import_module(m.name)
    except ImportError as e:  # an optional extra that is not installed
        if (e.name or "").startswith("keyaccounts"):
            raise
after_import = matplotlib.get_backend()
import numpy as np, pandas as pd
from keyaccounts import plots
from keyaccounts.forecast import backtest_chart, run_backtest
from keyaccounts.report import charts
from keyaccounts.synth import synthesize
y, p = np.array([0, 1, 0, 1, 1.0]), np.array([0.1, 0.8, 0.3, 0.6, 0.9])
figs = {"cal": plots.calibration_figure(y, {"m": p}, n_bins=2), "lift": plots.lift_figure(y, p),
        "imp": plots.importance_figure(pd.Series([0.3, 0.1], index=["a", "b"]))}
charts.drift_chart(pd.DataFrame({"feature": ["a", "b"], "psi": [0.5, 0.1]}), 0.2)
t = synthesize(n_customers=150, seed=1)
bt = run_backtest(t.opportunities, start="2025-01-01", end="2025-09-30", every_days=90, period="quarter",
                  stage_history=t.stage_history)
png = backtest_chart(bt.rows)._repr_png_()
plots.close(figs)
print(json.dumps({"before": before, "after_import": after_import, "after_drawing": matplotlib.get_backend(),
                  "pyplot": "matplotlib.pyplot" in sys.modules, "png": png[:4].decode("latin-1")}))
"""


@pytest.mark.parametrize("backend", ["svg", "module://matplotlib_inline.backend_inline"])
def test_package_leaves_the_matplotlib_backend_alone(backend, tmp_path):
    env = {**os.environ, "MPLBACKEND": backend, "MPLCONFIGDIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", _BACKEND_PROBE], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["before"] == backend
    assert got["after_import"] == got["after_drawing"] == backend
    # figures are drawn without pyplot (which could pick a backend of its own), and render to PNG
    assert got["pyplot"] is False and got["png"] == "\x89PNG"
