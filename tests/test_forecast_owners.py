"""The forecast a manager reads: one open-pipeline quantity split by category, the per-owner
roll-up with targets (resolved and validated at the boundary), and the CLI / YAML paths."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import ForecastConfig, load_pipeline
from keyaccounts.demo import rebase_pipeline
from keyaccounts.errors import InputError
from keyaccounts.forecast import run_forecast
from keyaccounts.forecast.core import EXISTING_BY_CATEGORY
from keyaccounts.forecast.owners import owner_table, resolve_targets
from keyaccounts.pipeline import load_inputs
from keyaccounts.report import build_report
from keyaccounts.synth import SynthTables, rep_calls, synthesize
from keyaccounts.tracking import Tracker


def test_existing_pipeline_split_by_category_adds_up_and_matches_the_deals():
    """existing_from_* add up to existing_pipeline in every row, and the deals' expected revenue
    over the horizon is the same quantity (one open-pipeline number everywhere)."""
    t = synthesize(n_customers=300, start="2023-01-01", end="2024-06-30", seed=2)
    cfg = ForecastConfig(stage_order=["prospecting", "qualification", "proposal", "negotiation"],
                         n_simulations=300, parameter_draws=3, recalibrate=False, periods=3)
    res = run_forecast(t.opportunities, as_of="2024-05-01", stage_history=t.stage_history, by="owner", config=cfg)
    per = res.periods
    split = per[list(EXISTING_BY_CATEGORY)].sum(axis=1)
    np.testing.assert_allclose(split, per["existing_pipeline"], rtol=1e-9, atol=1e-6)
    team = per[per["group"] == "(all)"]
    assert res.deals["expected_revenue"].sum() == pytest.approx(team["existing_pipeline"].sum(), rel=1e-9)
    # a category holding no deal contributes nothing
    for cat, col in zip(("commit", "best_case", "pipeline"), EXISTING_BY_CATEGORY, strict=True):
        if not (res.deals["category"] == cat).any():
            assert (team[col] == 0).all()
    assert (team[list(EXISTING_BY_CATEGORY)].sum().sum()) > 0


def _periods():
    return pd.DataFrame({"group": ["ann", "ann", "bob", "bob", "(all)", "(all)"],
                         "period": ["2024Q1", "2024Q2"] * 3,
                         "period_start": pd.to_datetime(["2024-01-01", "2024-04-01"] * 3),
                         "period_end": pd.to_datetime(["2024-03-31", "2024-06-30"] * 3),
                         "closed_won": [100.0, 0, 0, 0, 100, 0], "existing_pipeline": [50.0, 10, 200, 0, 250, 10],
                         "new_pipeline": [0.0, 40, 0, 60, 0, 100], "expected": [150.0, 50, 200, 60, 350, 110],
                         "p10": [120.0, 30, 150, 20, 300, 60], "p90": [180.0, 70, 250, 90, 400, 160]})


def test_owner_table_attainment_and_gap():
    targets = resolve_targets(pd.DataFrame({"owner": ["ann", "bob", "(all)"], "period": ["2024Q1", "2024-05-20", "2024Q1"],
                                            "target": [300.0, 120.0, 500.0]}),
                              owners={"ann", "bob"}, period="quarter")
    assert targets["period"].tolist() == ["2024Q1", "2024Q2", "2024Q1"]   # a date names its quarter
    t = owner_table(_periods(), targets=targets).set_index(["owner", "period"])
    assert t.loc[("ann", "2024Q1"), "attainment"] == pytest.approx(0.5)
    assert t.loc[("ann", "2024Q1"), "gap"] == pytest.approx(150.0)
    assert t.loc[("bob", "2024Q2"), "attainment"] == pytest.approx(0.5)
    assert t.loc[("(all)", "2024Q1"), "attainment"] == pytest.approx(0.7)
    assert np.isnan(t.loc[("bob", "2024Q1"), "target"]) and np.isnan(t.loc[("bob", "2024Q1"), "attainment"])
    assert t.index.get_level_values("owner")[-1] == "(all)"                 # the team last


@pytest.mark.parametrize("rows, period, words", [
    ({"owner": ["zed"], "period": ["2024Q1"], "target": [1.0]}, "quarter", ["'zed'", "owner"]),
    ({"owner": ["ann"], "period": ["someday"], "target": [1.0]}, "quarter", ["'someday'", "period"]),
    ({"owner": ["ann"], "period": ["2024Q1"], "target": [1.0]}, "month", ["'2024Q1'", "month"]),
    ({"owner": ["ann", "ann"], "period": ["2024Q1", "2024-02-01"], "target": [1.0, 2.0]}, "quarter", ["ann 2024Q1"]),
])
def test_bad_targets_are_named(rows, period, words):
    with pytest.raises(InputError) as e:
        resolve_targets(pd.DataFrame(rows), owners={"ann", "bob"}, period=period, file="targets.csv")
    text = str(e.value)
    assert "targets.csv" in text and all(w in text for w in words), text


OPP_CSV = """opportunity_id,owner,created_date,stage,amount,closed_date,rep_probability,rep_category
H0,ann,2024-01-01,won,1000,2024-01-11,,
H1,ann,2024-01-01,won,1000,2024-01-11,,
H2,ann,2024-01-01,won,1000,2024-01-11,,
H3,bob,2024-01-01,lost,1000,2024-01-11,,
D0,bob,2024-03-01,propose,100,,0.9,commit
D1,bob,2024-03-01,propose,200,,0.5,Best Case
D2,ann,2024-03-01,propose,300,,0.2,omit
"""
PIPE = """stages:
  open: [qualify, propose]
  won: [won]
  lost: [lost]
forecast:
  n_simulations: 200
  parameter_draws: 2
  recalibrate: false
  periods: 2
"""


def _run(tmp_path, opps: str, targets: str | None, *extra, yaml_targets: bool = False):
    (tmp_path / "opps.csv").write_text(opps)
    pipe = PIPE
    args = []
    if targets is not None:
        (tmp_path / "targets.csv").write_text(targets)
        if yaml_targets:
            pipe += f"inputs:\n  targets:\n    path: {tmp_path / 'targets.csv'}\n"
        else:
            args = ["--targets", str(tmp_path / "targets.csv")]
    (tmp_path / "p.yaml").write_text(pipe)
    out = tmp_path / "out" / "fc.csv"
    r = CliRunner().invoke(app, ["forecast", "--opportunities", str(tmp_path / "opps.csv"), "-p", str(tmp_path / "p.yaml"),
                                 "--as-of", "2024-03-02", "--out", str(out), "--no-track", *args, *extra])
    return r, out


@pytest.mark.parametrize("yaml_targets", [False, True], ids=["--targets", "inputs.targets"])
def test_cli_owners_table_with_targets_and_rep_call(tmp_path, yaml_targets):
    r, out = _run(tmp_path, OPP_CSV, "owner,period,target\nann,2024Q1,1000\nbob,2024-02-15,500\n(all),2024Q1,4000\n",
                  yaml_targets=yaml_targets)
    assert r.exit_code == 0, r.output
    o = pd.read_csv(tmp_path / "out" / "fc_owners.csv").set_index(["owner", "period"])
    per = pd.read_csv(out).set_index(["group", "period"])
    for owner, target in (("ann", 1000.0), ("bob", 500.0), ("(all)", 4000.0)):
        row = o.loc[(owner, "2024Q1")]
        assert row["target"] == target
        assert row["expected"] == pytest.approx(per.loc[(owner, "2024Q1"), "expected"])
        assert row["attainment"] == pytest.approx(row["expected"] / target)
        assert row["gap"] == pytest.approx(target - row["expected"])
    assert o.loc[("ann", "2024Q1"), "closed_won"] == 3000.0
    # the rep call: bob's commit 100, best case 100 + 200, rep-weighted 0.9*100 + 0.5*200; ann omitted D2
    bob = o.loc[("bob", "2024Q1")]
    assert (bob["rep_commit"], bob["rep_best_case"], bob["rep_expected"], bob["rep_deals"]) == (100, 300, 190, 2)
    assert o.loc[("ann", "2024Q1"), "rep_deals"] == 0
    dis = pd.read_csv(tmp_path / "out" / "fc_disagreements.csv")
    assert set(dis["opportunity_id"]) == {"D0", "D1", "D2"}
    assert dis["difference"].abs().is_monotonic_decreasing


def test_cli_unknown_owner_in_targets_exit_2_nothing_written(tmp_path):
    r, _ = _run(tmp_path, OPP_CSV, "owner,period,target\nann,2024Q1,1000\ncarl,2024Q1,500\n")
    assert r.exit_code == 2, r.output
    assert "carl" in r.output and "targets.csv" in r.output
    assert not (tmp_path / "out").exists()


def test_cli_negative_target_exit_2(tmp_path):
    r, _ = _run(tmp_path, OPP_CSV, "owner,period,target\nann,2024Q1,-5\n")
    assert r.exit_code == 2 and "target" in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_cli_targets_need_owner_grouping(tmp_path):
    r, _ = _run(tmp_path, OPP_CSV, "owner,period,target\nann,2024Q1,1000\n", "--by", "product")
    assert r.exit_code == 2 and "--by owner" in r.output, r.output


def test_cli_without_targets_or_rep_calls_writes_what_it_did(tmp_path):
    """A funnel without rep columns or targets: the same three tables as before, no owner roll-up."""
    plain = "\n".join(",".join(line.split(",")[:6]) for line in OPP_CSV.splitlines()) + "\n"
    r, out = _run(tmp_path, plain, None)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fc.csv", "fc_deals.csv", "fc_funnel.csv"]
    assert set(pd.read_csv(out)["group"]) == {"(all)"}
    assert "rep_probability" not in pd.read_csv(tmp_path / "out" / "fc_deals.csv").columns


def test_grouping_per_owner_leaves_the_team_rows_unchanged():
    """Targets or rep calls switch the forecast to per owner: the team's numbers must not move."""
    t = synthesize(n_customers=300, start="2023-01-01", end="2024-06-30", seed=4)
    cfg = ForecastConfig(stage_order=["prospecting", "qualification", "proposal", "negotiation"],
                         n_simulations=300, parameter_draws=3, recalibrate=False, periods=2)
    plain = run_forecast(t.opportunities, as_of="2024-04-01", stage_history=t.stage_history, config=cfg)
    owners = run_forecast(t.opportunities, as_of="2024-04-01", stage_history=t.stage_history, by="owner", config=cfg)
    team = owners.periods[owners.periods["group"] == "(all)"].reset_index(drop=True)
    pd.testing.assert_frame_equal(team, plain.periods.reset_index(drop=True))
    assert owners.periods["group"].nunique() > 2


def test_cli_backtest_scores_the_reps_beside_the_model(tmp_path):
    opps = OPP_CSV.replace("D0,bob,2024-03-01,propose,100,,0.9,commit", "D0,bob,2024-03-01,won,100,2024-03-11,,")
    (tmp_path / "calls.csv").write_text("opportunity_id,snapshot_date,rep_probability\nD0,2024-03-11,0.8\n"
                                        "D1,2024-03-11,0.3\nD2,2024-03-11,0.6\nD1,2024-04-08,0.9\n")
    r, out = _run(tmp_path, opps, None, "--backtest", "--from", "2024-01-15", "--to", "2024-03-31", "--every", "14d",
                  "--snapshots", str(tmp_path / "calls.csv"))
    assert r.exit_code == 0, r.output
    reps = pd.read_csv(tmp_path / "out" / "fc_reps.csv").set_index("owner")
    bob, ann = reps.loc["bob"], reps.loc["ann"]
    # the call after --to is not read; D0 won in the window, D1 did not
    assert bob["calls"] == 2 and bob["actual"] == 100.0 and ann["calls"] == 1
    assert bob["rep_called"] == pytest.approx(0.8 * 100 + 0.3 * 200)
    assert bob["rep_brier"] == pytest.approx(((0.8 - 1) ** 2 + 0.3 ** 2) / 2)
    assert np.isfinite(bob["model_brier"]) and 0 <= bob["model_brier"] <= 1


def report_with_rep_calls(workdir, tracking_uri):
    """The demo's report (no backtest) with the synthetic reps' calls, their history and targets added."""
    repo = Path(__file__).resolve().parents[1]
    p, _ = rebase_pipeline(load_pipeline(repo / "pipelines" / "demo.yaml"), workdir)
    p = p.model_copy(update={"tracking_uri": tracking_uri, "report": p.report.model_copy(update={"backtest_days": 0})})
    loaded = load_inputs(p)
    t = loaded.tables
    opps, snaps = rep_calls(SynthTables(t.transactions, t.customers, t.invoices, t.opportunities, t.stage_history, None))
    owners = sorted(opps["owner"].dropna().unique())
    targets = pd.DataFrame({"owner": owners, "period": ["2025Q4"] * len(owners), "target": [20000.0] * len(owners)})
    tables = dataclasses.replace(t, opportunities=opps, opportunity_snapshots=snaps, targets=targets)
    return build_report(dataclasses.replace(loaded, tables=tables), p,
                        tracker=Tracker(tracking_uri, models_dir=Path(workdir) / "models")), owners


@pytest.mark.slow
def test_report_shows_the_rep_call_targets_and_one_open_pipeline_number(demo_run):
    assert demo_run.exit_code == 0, demo_run.output
    rep, owners = report_with_rep_calls(demo_run.workdir, demo_run.tracking_uri)
    fc, html = rep.context["forecast"], rep.html
    assert fc["rep_call"] and fc["targets"] and fc["disagreements"] and fc["reps"]
    assert {r["owner"] for r in fc["owners"]} == {*owners, "(all)"}
    for needle in ("the rep call beside the model", "Whose calls to trust", "disagree most", "attainment"):
        assert needle in html
    # one open-pipeline number: headline, category table total and the periods' sum are the same
    total = sum(r["existing_pipeline"] for r in fc["periods"])
    assert fc["open_pipeline"]["expected"] == pytest.approx(total)
    assert sum(r["expected"] for r in fc["categories"]) == pytest.approx(total)
    assert html.count(f"{fc['open_pipeline']['expected']:,.0f}") >= 2
