"""The servable scorer `keyaccounts-scorer` (keyaccounts.serving): registered at training, it
takes raw rows + as_of and answers the same list as `keyaccounts score`, in process and served
by `mlflow models serve` from a fresh virtualenv built from its logged requirements."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deploy_support import deployed, ka, versions  # noqa: F401 - deployed: the session's trained workspace

AS_OF = "2025-09-01"


@pytest.fixture(scope="module")
def ws(deployed):
    """Trained workspace, a 40-customer slice of its tables as files, and the request frame
    holding the same rows (customers marked by the table column)."""
    root = deployed
    tx = pd.read_csv(root / "d" / "tx.csv", dtype=str)
    cu = pd.read_csv(root / "d" / "customers.csv", dtype=str)
    ids = sorted(cu["customer_id"])[:40]
    tx, cu = tx[tx["customer_id"].isin(ids)], cu[cu["customer_id"].isin(ids)]
    tx.to_csv(root / "slice_tx.csv", index=False)
    cu.to_csv(root / "slice_cu.csv", index=False)
    request = pd.concat([tx.assign(table="transactions"), cu.assign(table="customers")], ignore_index=True)
    res = ka(root, "score", "-t", "slice_tx.csv", "--customers", "slice_cu.csv", "--as-of", AS_OF,
             "--out", "slice_scores.csv")
    assert res.returncode == 0, res.stdout
    return root, request, pd.read_csv(root / "slice_scores.csv", keep_default_na=False)


def assert_same_list(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Column by column: numbers to 1e-9 relative (the CSV keeps 10 significant digits), text exact."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) > 0
    for c in want.columns:
        w, g = want[c], got[c]
        if pd.api.types.is_numeric_dtype(w) and w.notna().any():
            np.testing.assert_allclose(pd.to_numeric(g).astype(float), w.astype(float), rtol=1e-9, err_msg=c)
        else:
            assert list(g.fillna("").astype(str)) == list(w.astype(str)), c


def _mlflow(root: Path):
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    return mlflow


@pytest.mark.slow
def test_pyfunc_in_process_equals_score_and_refuses_bad_requests(ws):
    root, request, want = ws
    mlflow = _mlflow(root)
    try:
        model = mlflow.pyfunc.load_model("models:/keyaccounts-scorer@champion")
        got = model.predict(request, params={"as_of": AS_OF})
        assert_same_list(got, want)
        top = model.predict(request.assign(as_of=AS_OF), params={"top": 5, "reasons": "none"})
        assert list(top["customer_id"]) == list(want["customer_id"][:5])
        from mlflow.exceptions import MlflowException
        with pytest.raises(MlflowException, match="as_of is required"):
            model.predict(request)
        with pytest.raises(MlflowException, match="timestamp"):
            model.predict(request.drop(columns="timestamp"), params={"as_of": AS_OF})
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_scorer_packages_code_and_pinned_requirements_and_is_not_registered_twice(ws):
    root, _, _ = ws
    mlflow = _mlflow(root)
    try:
        local = Path(mlflow.artifacts.download_artifacts("models:/keyaccounts-scorer@champion-90d",
                                                         dst_path=str(root / "scorer_copy")))
    finally:
        mlflow.set_tracking_uri(None)
    reqs = (local / "requirements.txt").read_text().split()
    for dist in ("pandas==", "scikit-learn==", "xgboost", "pandera==", "mlflow=="):
        assert any(r.startswith(dist) for r in reqs), (dist, reqs)
    assert (local / "code" / "keyaccounts" / "serving.py").is_file()
    assert versions(root, "keyaccounts-scorer") == [1]
    # the registered champions did not change: a second registration is refused as identical
    code = ("from keyaccounts.config import load_pipeline\nfrom keyaccounts.tracking import Tracker\n"
            "p = load_pipeline('p.yaml')\nprint(Tracker(p.tracking_uri).log_scorer(p, horizon_days=90))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert "'registered': False" in out.stdout, out.stdout + out.stderr
    assert versions(root, "keyaccounts-scorer") == [1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_served_from_a_fresh_virtualenv_equals_score(ws, tmp_path):
    """Builds a virtualenv with only the model's requirements.txt (keyaccounts is not installed in
    it: it travels as code_paths), serves the registered model and posts the slice."""
    root, request, want = ws
    model_dir = root / "scorer_copy"
    if not (model_dir / "requirements.txt").is_file():
        mlflow = _mlflow(root)
        try:
            mlflow.artifacts.download_artifacts("models:/keyaccounts-scorer@champion", dst_path=str(model_dir))
        finally:
            mlflow.set_tracking_uri(None)
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    pip = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                          str(model_dir / "requirements.txt")], capture_output=True, text=True, timeout=1500)
    if pip.returncode != 0:
        last = (pip.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"cannot build the scorer's virtualenv here (no package index?): {last}")
    check = subprocess.run([str(env / "bin" / "python"), "-c", "import keyaccounts"], capture_output=True)
    assert check.returncode != 0, "the fresh env must not have keyaccounts installed"
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTHONPATH")}
    server = subprocess.Popen([str(env / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir),
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env={**clean, "PATH": f"{env / 'bin'}:{clean.get('PATH', '')}"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)  # its own group: mlflow starts uvicorn as a child
    try:
        body = {"dataframe_split": json.loads(request.to_json(orient="split", index=False)),
                "params": {"as_of": AS_OF}}
        answer = _post(port, body, server)
        got = pd.DataFrame(answer["predictions"])
        assert_same_list(got, want)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _post(port: int, body: dict, server: subprocess.Popen, wait_s: float = 180) -> dict:
    """POST /invocations once the server answers /ping (it loads the model first)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5).read()
            break
        except OSError as err:
            if server.poll() is not None or time.monotonic() > deadline:
                out = server.stdout.read() if server.poll() is not None else ""
                raise AssertionError(f"server did not come up:\n{out}") from err
            time.sleep(1)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())
