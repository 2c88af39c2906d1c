"""The report renders the score and forecast results it is given and recomputes nothing it has:
the same inputs give the same report whether it renders the steps' results (in a pipeline run, or
their files read back) or computes them itself (uses the session's demo run)."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import load_pipeline
from keyaccounts.demo import rebase_pipeline
from keyaccounts.pipeline import load_inputs, step_forecast
from keyaccounts.report import build_report
from keyaccounts.results import ScoreResult, StepResults, read_score_files
from keyaccounts.score import score_accounts_and_features, score_deals_and_features
from keyaccounts.tracking import Tracker

runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(demo_run):
    assert demo_run.exit_code == 0, demo_run.output
    p, _ = rebase_pipeline(load_pipeline(demo_run.repo / "pipelines" / "demo.yaml"), demo_run.workdir)
    p = p.model_copy(update={"tracking_uri": demo_run.tracking_uri,
                             "report": p.report.model_copy(update={"backtest_days": 0})})
    return p, load_inputs(p), Tracker(demo_run.tracking_uri, models_dir=demo_run.workdir / "models")


def _score_step_result(loaded, p, tracker) -> ScoreResult:
    """What the score step of the demo leaves for the report: every account, reasons for all."""
    t, kw = loaded.tables, {"as_of": p.as_of, "horizon_days": p.horizon_days, "p": p, "tracker": tracker}
    accounts, versions, f = score_accounts_and_features(t, reasons="all", **kw)
    deals, dv, d = score_deals_and_features(t, reasons="all", **kw)
    return ScoreResult(accounts=accounts, deals=deals, versions={**versions, **dv}, features=f, deal_features=d)


def test_rendering_the_steps_results_gives_the_recomputed_report(setup, tmp_path):
    p, loaded, tracker = setup
    computed_says, rendered_says = [], []
    computed = build_report(loaded, p, tracker=tracker, progress=computed_says.append)
    results = StepResults(score=_score_step_result(loaded, p, tracker))
    # a forecast step (not tracked) hands its result over as the pipeline does
    step_forecast(loaded, p, {"out": tmp_path / "forecast.csv", "track": False}, say=lambda m: None, results=results)
    assert results.forecast is not None and results.forecast.forecast is not None
    rendered = build_report(loaded, p, tracker=tracker, progress=rendered_says.append, scores=results.score,
                            forecast=results.forecast)
    a, b = computed.context, rendered.context
    assert a["headline"] == b["headline"]
    assert a["key_accounts"] == b["key_accounts"]  # same rows, same reasons (top_n explained either way)
    assert any(r.get("churn_reasons_up") for r in b["key_accounts"])
    assert a["risk"]["at_risk"] == b["risk"]["at_risk"]
    assert a["forecast"] == b["forecast"] and a["drift"] == b["drift"] and a == b
    assert computed.html == rendered.html
    # rendering computed nothing: no scoring, no features, no forecast
    assert any("computing them" in m for m in computed_says)
    assert not any("computing" in m or "scoring" in m or "building" in m for m in rendered_says), rendered_says
    # the demo's forecast step runs per owner: the team rows are those of the report's own forecast
    # (up to the order of the float sums), and the per-owner table comes with them
    by_owner = StepResults()
    step_forecast(loaded, p, {"out": tmp_path / "by_owner.csv", "by": "owner", "track": False}, say=lambda m: None,
                  results=by_owner)
    owners = build_report(loaded, p, tracker=tracker, scores=results.score, forecast=by_owner.forecast).context
    pd.testing.assert_frame_equal(pd.DataFrame(owners["forecast"]["periods"]), pd.DataFrame(a["forecast"]["periods"]),
                                  rtol=1e-9)
    assert owners["key_accounts"] == a["key_accounts"]


def test_a_cut_or_regrouped_score_result_is_not_rendered_but_recomputed(setup):
    p, loaded, tracker = setup
    full = _score_step_result(loaded, p, tracker)
    cut = ScoreResult(accounts=full.accounts.head(10), deals=full.deals, versions=full.versions, complete=False)
    says = []
    rep = build_report(loaded, p, tracker=tracker, progress=says.append, scores=cut)
    assert rep.context["headline"]["accounts"] == len(full.accounts)
    assert any("not used (it is cut" in m for m in says) and any("computing them" in m for m in says)


def test_demo_report_step_renders_the_score_and_forecast_steps(demo_run):
    out = demo_run.output
    assert "scores: rendering the results of the score step" in out
    assert "forecast: rendering the results of the forecast step" in out
    assert "no usable score results" not in out and "no forecast results" not in out


def test_standalone_report_reads_the_files_and_says_which(demo_run, setup, tmp_path, monkeypatch):
    p, loaded, _ = setup
    monkeypatch.chdir(demo_run.workdir)
    cfg = yaml.safe_load((demo_run.repo / "pipelines" / "demo.yaml").read_text())
    cfg["report"]["backtest_days"] = 0
    pipeline = tmp_path / "demo_fast.yaml"
    pipeline.write_text(yaml.safe_dump(cfg))
    scores, fc = demo_run.workdir / "out" / "demo" / "scores.csv", demo_run.workdir / "out" / "demo" / "forecast.csv"
    base = ["report", "--pipeline", str(pipeline), "--tracking-uri", demo_run.tracking_uri]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "r.html"), "--scores", str(scores), "--forecast", str(fc),
                              "--deal-scores", str(scores.with_name("deal_scores.csv"))])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert f"scores: rendering the results of {scores}, {scores.with_name('deal_scores.csv')}" in said
    assert f"forecast: rendering the results of {fc}" in said
    assert "computing them" not in said
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    listed = read_score_files(scores, as_of=p.as_of).accounts
    assert f"{listed['expected_value'].sum():,.0f}" in html and str(listed.index[0]) in html
    assert "open deals" in html
    # without files it computes, and says so
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "r2.html")])
    assert res.exit_code == 0, res.output
    assert "computing them" in res.output


@pytest.mark.parametrize("drop,which", [("value_at_risk", "scores"), ("p90", "forecast")])
def test_a_results_file_without_a_needed_column_exits_2_naming_it(demo_run, tmp_path, monkeypatch, drop, which):
    monkeypatch.chdir(demo_run.workdir)
    src = demo_run.workdir / "out" / "demo" / ("scores.csv" if which == "scores" else "forecast.csv")
    bad = tmp_path / src.name
    pd.read_csv(src, dtype=str).drop(columns=[drop]).to_csv(bad, index=False)
    for suffix in ("_deals", "_funnel"):  # the files beside it, intact
        side = src.with_name(src.stem + suffix + ".csv")
        if side.is_file():
            (tmp_path / side.name).write_bytes(side.read_bytes())
    res = runner.invoke(app, ["report", "--pipeline", str(demo_run.repo / "pipelines" / "demo.yaml"),
                              "--tracking-uri", demo_run.tracking_uri, "--out", str(tmp_path / "r.html"),
                              f"--{which}", str(bad)])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert str(bad) in said and f"'{drop}'" in said and "Traceback" not in said
    assert not (tmp_path / "r.html").exists()
