"""A trained workspace for the deployment tests (test_retrain.py, test_serving.py): synthetic
tables in root/d, a pipeline YAML, and champions + keyaccounts-scorer in root/mlruns, trained
through the installed `keyaccounts` command (a few snapshots only, to stay quick)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

KA = str(Path(sys.executable).parent / "keyaccounts")
ENV = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "KEYACCOUNTS_DEBUG")}
ENV.update(PYTHONUNBUFFERED="1", NO_COLOR="1")
PIPELINE = """\
name: deploy-test
horizon_days: 90
inputs:
  transactions: {{path: d/tx.csv}}
  customers: {{path: d/customers.csv}}
train: {{max_snapshots: 6}}
retrain: {retrain}
tracking_uri: sqlite:///mlruns/mlflow.db
"""


def ka(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`keyaccounts ARGS` in `root`; stdout and stderr together in .stdout."""
    return subprocess.run([KA, *args], cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def write_pipeline(root: Path, name: str = "p.yaml", retrain: str = "{}") -> Path:
    (root / name).write_text(PIPELINE.format(retrain=retrain), encoding="utf-8")
    return root / name


def export_until(root: Path, day: str) -> int:
    """d/tx.csv = the synthetic transactions before `day` (an export made that day); its rows."""
    tx = pd.read_csv(root / "d" / "transactions.csv", dtype=str)
    part = tx[tx["timestamp"] < day]
    part.to_csv(root / "d" / "tx.csv", index=False)
    return len(part)


def trained(root: Path, as_of: str = "2025-09-01") -> Path:
    """Synthesise, export the transactions before as_of and train as of it."""
    res = ka(root, "synth", "--out", "d", "--customers", "300", "--seed", "3")
    assert res.returncode == 0, res.stdout
    export_until(root, as_of)
    write_pipeline(root)
    res = ka(root, "train", "-p", "p.yaml", "--as-of", as_of)
    assert res.returncode == 0, res.stdout
    return root


def versions(root: Path, name: str) -> list[int]:
    """Registered versions of model `name` (read with sqlite3: the test process stays off mlflow)."""
    import sqlite3
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as c:
        return sorted(int(v) for (v,) in c.execute("select version from model_versions where name = ?", (name,)))


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    """One trained workspace per session (worker), as of 2025-09-01, for tests that only read it
    (test_serving, test_changes); import it into the test module to use it."""
    return trained(tmp_path_factory.mktemp("deployed"), "2025-09-01")
