"""The HTML report end to end: self-contained, every section, escaping, CLI exit codes, and the
drift reference stored with the trained models (uses the session's demo run)."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import load_pipeline
from keyaccounts.report import SECTIONS

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html(demo_run) -> str:
    assert demo_run.exit_code == 0, demo_run.output
    return demo_run.report.read_text(encoding="utf-8")


def test_report_has_every_section_and_the_numbers(html, demo_run):
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    scores = pd.read_csv(demo_run.workdir / "out" / "demo" / "scores.csv")
    # the headline total equals the ranked list's expected value
    assert f"{scores['expected_value'].sum():,.0f}" in html
    top = scores.sort_values("rank").iloc[0]
    assert str(top["customer_id"]) in html
    # forecast with its band and a scored backtest; model cards with validation metrics vs baselines
    assert "P10" in html and "P90" in html and "Backtest accuracy" in html and "No backtest" not in html
    # the card shows the champion in use: a challenger that lost to its baseline is not promoted,
    # the baseline is registered after it (a later version) and named as the family in use
    for model in ("churn-90d", "value-90d", "deal-90d"):
        m = re.search(rf"{model} &middot; version (\d+)(?: &middot; (\w+))?", html)
        assert m, model
        assert m.group(1) == "1" or m.group(2) == "btyd_baseline"
    assert "naive_recency" in html and "stage_rate" in html
    assert "No forecast" not in html and "No funnel" not in html


def test_report_is_self_contained(html):
    assert "<script" not in html.lower()
    # every src/href is inline data or an in-page anchor; no CSS import or url()
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "@import" not in html and "url(" not in html
    assert not re.search(r"https?://", html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "@media print" in html


def test_drift_reference_is_logged_with_each_model(demo_run):
    from keyaccounts.tracking import DRIFT_REFERENCE, Tracker

    t = Tracker(demo_run.tracking_uri)
    for name in ("churn-90d", "deal-90d"):
        card = t.champion_card(name)
        ref = t.run_dict(card["run_id"], DRIFT_REFERENCE)
        # every model input, raw (the deal model one-hot encodes stage_at_as_of inside its pipeline)
        assert ref["n"] > 0 and set(ref["features"]) <= set(card["feature_names"]) | {"stage_at_as_of"}
        assert all(f in ref["features"] or f.startswith("stage_at_as_of_") for f in card["feature_names"])
    assert t.run_artifact(card["run_id"], "figures/calibration.png").startswith(b"\x89PNG")
    assert t.run_artifact(card["run_id"], "figures/nope.png") is None
    runs = t.runs("churn")
    assert len(runs) == 1 and {"metrics.roc_auc", "metrics.logreg_roc_auc", "run_name"} <= set(runs.columns)


def test_hostile_strings_are_escaped(demo_run):
    from keyaccounts.demo import rebase_pipeline
    from keyaccounts.pipeline import load_inputs
    from keyaccounts.report import build_report
    from keyaccounts.tracking import Tracker

    p, _ = rebase_pipeline(load_pipeline(demo_run.repo / "pipelines" / "demo.yaml"), demo_run.workdir)
    p = p.model_copy(update={"report": p.report.model_copy(update={"backtest_days": 0, "top_n": 3})})
    loaded = load_inputs(p)
    loaded.tables.customers["name"] = "<script>alert(1)</script>"
    loaded.tables.customers["owner"] = "O'Brien & <b>Sons</b>"
    rep = build_report(loaded, p, tracker=Tracker(demo_run.tracking_uri, models_dir=demo_run.workdir / "models"))
    assert "<script" not in rep.html and "<b>Sons" not in rep.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rep.html
    assert "O&#39;Brien &amp; &lt;b&gt;Sons&lt;/b&gt;" in rep.html
    assert rep.html.count("<tr>\n    <td class=\"n\">") == 3  # --top honoured
    assert "Backtest switched off" in rep.html


def test_report_cli_and_exit_codes(demo_run, tmp_path, monkeypatch):
    monkeypatch.chdir(demo_run.workdir)  # the demo pipeline's relative paths
    out = tmp_path / "r.html"
    cfg = yaml.safe_load((demo_run.repo / "pipelines" / "demo.yaml").read_text())
    cfg["report"]["backtest_days"] = 0  # the backtest is covered above; keep this test quick
    pipeline = tmp_path / "demo_fast.yaml"
    pipeline.write_text(yaml.safe_dump(cfg))
    pipeline = str(pipeline)
    res = runner.invoke(app, ["report", "--pipeline", pipeline, "--tracking-uri", demo_run.tracking_uri,
                              "--out", str(out), "--top", "4", "--psi-threshold", "1000"])
    assert res.exit_code == 0, res.output
    text = out.read_text(encoding="utf-8")
    assert "<h2>Drift</h2>" in text and "No feature above the threshold" in text
    assert f"file://{out.as_posix()}" in res.output
    # quiet: nothing on stdout, same file
    res = runner.invoke(app, ["--quiet", "report", "--pipeline", pipeline, "--tracking-uri", demo_run.tracking_uri,
                              "--out", str(out), "--top", "4"])
    assert res.exit_code == 0 and res.output.strip() == "", res.output
    # no models in this store (and no models/ bundles here): bad input (exit 2) with a hint, nothing written
    monkeypatch.chdir(tmp_path)
    data = demo_run.workdir / "data" / "demo"
    empty = tmp_path / "empty.html"
    res = runner.invoke(app, ["report", "-t", str(data / "transactions.csv"), "--customers", str(data / "customers.csv"),
                              "--as-of", "2025-10-01", "--tracking-uri", f"sqlite:///{tmp_path}/none.db",
                              "--out", str(empty)])
    assert res.exit_code == 2 and "keyaccounts train" in res.output and "Traceback" not in res.output
    assert not empty.exists()
    # as_of required
    res = runner.invoke(app, ["report", "-t", str(demo_run.workdir / "data" / "demo" / "transactions.csv"),
                              "--out", str(empty)])
    assert res.exit_code == 2 and "as_of is required" in res.output and not empty.exists()
