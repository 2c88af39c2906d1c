"""`keyaccounts demo`: end to end into its own work folder, and the CLI comfort around it
(progress summary, --quiet, exit codes)."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import InputSpec, Pipeline
from keyaccounts.demo import rebase_pipeline
from keyaccounts.progress import StepProgress

runner = CliRunner()


@pytest.mark.slow
def test_demo_end_to_end_inside_its_workdir(demo_run):
    assert demo_run.exit_code == 0, demo_run.output
    w = demo_run.workdir
    assert os.listdir(demo_run.cwd) == []  # nothing written where it was started
    for f in ("data/demo/transactions.csv", "data/demo/opportunities.csv", "out/demo/quality.csv",
              "out/demo/features.parquet", "out/demo/scores.csv", "out/demo/deal_scores.csv",
              "out/demo/report.html", "mlruns/mlflow.db", "models/churn-90d/model.joblib",
              "models/value-90d/card.json", "models/deal-90d/model.joblib"):
        assert (w / f).is_file(), f
    out = demo_run.output
    # where each output is, and the exact MLflow UI command
    assert f"mlflow ui --backend-store-uri sqlite:///{(w / 'mlruns' / 'mlflow.db').as_posix()}" in out
    assert f"file://{(w / 'out' / 'demo' / 'report.html').as_posix()}" in out
    # the summary table lists every step as done
    for step in ("synthetic data", "load and validate", "validate", "features", "train", "score", "report"):
        assert f"{step}" in out
    assert "failed" not in out and "Traceback" not in out
    from keyaccounts.tracking import Tracker
    models = Tracker(demo_run.tracking_uri).list_models()
    assert set(models.loc[models["aliases"] == "champion", "name"]) == {"churn-90d", "value-90d", "deal-90d"}
    scores = pd.read_csv(w / "out" / "demo" / "scores.csv")
    assert len(scores) > 200 and scores["churn_probability"].between(0, 1).all()


def test_rebase_pipeline_puts_relative_paths_under_the_workdir(tmp_path):
    p = Pipeline(as_of="2025-01-01", inputs={"transactions": InputSpec(path="data/t.csv"),
                                             "customers": InputSpec(path="/abs/c.csv")},
                 steps=[{"features": {"out": "out/f.parquet", "deals_out": "/abs/d.parquet"}}, {"train": None}])
    q, steps = rebase_pipeline(p, tmp_path)
    assert q.inputs["transactions"].path == str(tmp_path / "data" / "t.csv")
    assert q.inputs["customers"].path == "/abs/c.csv"
    assert steps == [{"features": {"out": str(tmp_path / "out" / "f.parquet"), "deals_out": "/abs/d.parquet"}},
                     {"train": {}}]


def test_demo_with_a_missing_pipeline_is_bad_input(tmp_path):
    res = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "w"), "--pipeline", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "nope.yaml" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "w").exists()


def test_quiet_prints_nothing_but_errors(tmp_path):
    res = runner.invoke(app, ["--quiet", "synth", "--out", str(tmp_path / "d"), "--customers", "20"])
    assert res.exit_code == 0 and res.output == ""
    assert (tmp_path / "d" / "transactions.csv").is_file()
    res = runner.invoke(app, ["--quiet", "features", "-t", str(tmp_path / "missing.csv"), "--as-of", "2025-01-01",
                              "--out", str(tmp_path / "f.csv")])
    assert res.exit_code == 2 and "missing.csv" in res.output and not (tmp_path / "f.csv").exists()
    # the flag is per invocation, not sticky
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "d"), "--customers", "20", "--replace"])
    assert "wrote" in res.output


def test_step_progress_records_and_marks_failures():
    console = Console(record=True, width=120, force_terminal=False)
    with StepProgress(console, total=2) as sp:
        with sp.step("first"):
            sp.say("working")
            sp.wrote(Path("a.csv"))
        with pytest.raises(ValueError), sp.step("second"):
            raise ValueError("boom")
    assert [(r.name, r.status, r.outputs) for r in sp.records] == [("first", "done", ["a.csv"]),
                                                                   ("second", "failed", [])]
    console.print(sp.summary())
    text = console.export_text()
    assert "working" in text and "first done in" in text and "failed" in text
    quiet = Console(record=True, quiet=True)
    with StepProgress(quiet, total=1) as sp, sp.step("x"):
        sp.say("hidden")
    assert quiet.export_text() == ""
