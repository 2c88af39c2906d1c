"""Helpers for the subprocess tests of interrupted and concurrent runs (test_interrupt.py,
test_concurrency.py): a trained workspace, a run signalled midway, registry/bundle snapshots.

The test process never imports mlflow: the registry is read with sqlite3."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

KA = str(Path(sys.executable).parent / "keyaccounts")
ENV = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "KEYACCOUNTS_DEBUG")}
ENV.update(PYTHONUNBUFFERED="1", NO_COLOR="1")
INPUTS = ["-t", "d/transactions.csv", "--customers", "d/customers.csv", "--invoices", "d/invoices.csv",
          "--as-of", "2025-10-01", "--horizon-days", "90", "--tracking-uri", "sqlite:///mlruns/mlflow.db"]


def ka(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `keyaccounts ARGS` in `root`; output (stdout + stderr) in .stdout."""
    return subprocess.run([KA, *args], cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def trained_workspace(root: Path) -> Path:
    """Synthetic tables in root/d and churn/value champions (v1) in root/mlruns and root/models."""
    res = ka(root, "synth", "--out", "d", "--customers", "300", "--seed", "3")
    assert res.returncode == 0, res.stdout
    res = ka(root, "train", *INPUTS)
    assert res.returncode == 0, res.stdout
    return root


@pytest.fixture(scope="session")
def ws(tmp_path_factory):
    """One trained workspace per test session (worker); import it into a test module to use it."""
    return trained_workspace(tmp_path_factory.mktemp("robust"))


def signal_midway(root: Path, args: list[str], marker: str, sig: int, timeout: float = 300) -> tuple[int, str]:
    """Start `keyaccounts ARGS`, send `sig` as soon as a line containing `marker` is printed,
    and return (exit code, whole output)."""
    p = subprocess.Popen([KA, *args], cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, bufsize=1)
    watchdog = threading.Timer(timeout, p.kill)
    watchdog.start()
    seen = []
    try:
        for line in p.stdout:
            seen.append(line)
            if marker in line:
                p.send_signal(sig)
                break
        rest = p.stdout.read()
        p.wait()
    finally:
        watchdog.cancel()
    out = "".join(seen) + rest
    assert any(marker in s for s in seen), f"never printed {marker!r}:\n{out}"
    return p.returncode, out


def temp_files(root: Path) -> list[Path]:
    """Temp files of atomic writes (.NAME.*.tmp) anywhere under root."""
    return sorted(p for p in root.rglob(".*.tmp"))


def aliases(root: Path) -> dict[str, str]:
    """registered model name -> version behind its 'champion' alias."""
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as c:
        rows = c.execute("select name, version from registered_model_aliases where alias = 'champion'").fetchall()
    return {n: str(v) for n, v in rows}


def run_statuses(root: Path, experiment: str) -> list[str]:
    """Statuses of the runs of `experiment`, oldest first."""
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as c:
        rows = c.execute("select r.status from runs r join experiments e on r.experiment_id = e.experiment_id "
                         "where e.name = ? order by r.start_time", (experiment,)).fetchall()
    return [r[0] for r in rows]


def bundle(root: Path, name: str) -> dict[str, bytes]:
    folder = root / "models" / name
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def bundle_consistent(root: Path, name: str) -> dict:
    """The card of models/NAME after checking that it describes the model file next to it."""
    b = bundle(root, name)
    card = json.loads(b["card.json"])
    assert hashlib.sha256(b["model.joblib"]).hexdigest() == card["sha256"], f"{name}: card and model disagree"
    return card


SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
