"""Funnel forecast: hand-checkable tiny pipelines, the censoring-aware exit table, point-in-time
reading, and the CLI (outputs, bad input -> exit 2 with nothing written)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import ForecastConfig
from keyaccounts.forecast import run_backtest, run_forecast
from keyaccounts.forecast.core import NotEnoughHistory, period_table
from keyaccounts.forecast.funnel import CENSORED, exit_table, funnel_state, funnel_table

STAGES = ["qualify", "propose"]
OPP_COLS = ("opportunity_id", "owner", "created_date", "stage", "amount", "closed_date", "outcome")
# Fixed settings: no new deals, no shocks, no parameter redraws, raw simulated intervals (no
# recalibration from replays) -> only deal outcomes vary.
EXACT = dict(stage_order=STAGES, new_pipeline=False, shocks=False, parameter_draws=0, n_simulations=20000,
             periods=2, seed=3, recalibrate=False)


def tiny(make_opps, make_history, history_won=(True, True, True, False)):
    """4 closed deals that sat 10 days in 'propose' (won per `history_won`, amount 1000 each,
    closed 2024-01-11) and 3 open deals in 'propose' since 2024-03-01 (100, 200, 300)."""
    rows, hist = [], []
    for i, w in enumerate(history_won):
        oid = f"H{i}"
        rows.append((oid, "ann", "2024-01-01", "won" if w else "lost", 1000.0, "2024-01-11", "won" if w else "lost"))
        hist += [(oid, "propose", "2024-01-01"), (oid, "won" if w else "lost", "2024-01-11")]
    for i, a in enumerate((100.0, 200.0, 300.0)):
        oid = f"D{i}"
        rows.append((oid, "bob", "2024-03-01", "propose", a, None, None))
        hist.append((oid, "propose", "2024-03-01"))
    return make_opps(rows, columns=OPP_COLS), make_history(hist)


def test_three_deals_known_probability(make_opps, make_history):
    """P(won) = 3/4 each, closing 10 days after entering 'propose' (2024-03-11, in 2024Q1):
    E = 0.75 * 600 = 450 on top of 3000 already won in Q1; the total's distribution is
    enumerable: P10 = 200, P50 = 500, P90 = 600 (+3000)."""
    opps, hist = tiny(make_opps, make_history)
    res = run_forecast(opps, as_of="2024-03-02", stage_history=hist, config=ForecastConfig(**EXACT))
    q1 = res.periods.iloc[0]
    assert (q1["group"], q1["period"]) == ("(all)", "2024Q1")
    assert q1["closed_won"] == 3000.0
    se = np.sqrt(0.75 * 0.25 * (100 ** 2 + 200 ** 2 + 300 ** 2) / 20000)
    assert abs(q1["existing_pipeline"] - 450.0) < 4 * se
    assert (q1["p10"], q1["p50"], q1["p90"]) == (3200.0, 3500.0, 3600.0)
    assert q1["stage_weighted"] == pytest.approx(3000.0 + 450.0)   # exact: 3/4 x 600
    assert q1["naive"] == 0.0                                      # nothing won in 2023Q4
    q2 = res.periods.iloc[1]
    assert q2["existing_pipeline"] == 0.0 and q2["closed_won"] == 0.0 and q2["new_pipeline"] == 0.0
    d = res.deals.set_index("opportunity_id")
    assert sorted(d.index) == ["D0", "D1", "D2"]
    assert np.allclose(d["close_probability"], 0.75, atol=0.02)
    assert set(d["category"]) == {"commit"} and set(d["expected_close_period"]) == {"2024Q1"}


def test_certain_wins_are_exact(make_opps, make_history):
    opps, hist = tiny(make_opps, make_history, history_won=(True, True, True, True))
    cfg = ForecastConfig(**{**EXACT, "n_simulations": 200})
    q1 = run_forecast(opps, as_of="2024-03-02", stage_history=hist, config=cfg).periods.iloc[0]
    assert q1["closed_won"] == 4000.0
    assert q1["expected"] == q1["p10"] == q1["p90"] == q1["stage_weighted"] == 4600.0


def test_funnel_table_by_hand(make_opps, make_history):
    opps, hist = tiny(make_opps, make_history)
    f = funnel_table(funnel_state(opps, as_of="2024-03-02", stages=STAGES, stage_history=hist))
    expected = pd.DataFrame({"stage": STAGES, "order": [1, 2], "count": [0, 3], "amount": [0.0, 600.0],
                             "conversion_rate": [np.nan, 0.75], "avg_days_in_stage": [np.nan, 10.0],
                             "win_rate": [0.75, 0.75]})
    assert_frame_equal(f, expected)


def test_exit_table_counts_open_deals_as_at_risk():
    """dwell 1 won; dwell 2 won and lost; one deal still in the stage after 3 days: at u=1 four
    at risk (h = 1/4); at u=2 three (h = 2/3, S = 3/4), so 1/4 each; 1/4 never seen leaving."""
    t = exit_table(np.array([1, 2, 2, 3]), np.array([2, 2, 3, CENSORED]))
    assert t.dwell.tolist() == [1, 2, 2] and t.dest.tolist() == [2, 2, 3]
    assert np.allclose(t.mass, [0.25, 0.25, 0.25])
    assert np.allclose(t.before(np.array([0, 1, 2, 3])), [0.0, 0.0, 0.25, 0.75])


def test_no_history_before_as_of_is_refused(make_opps, make_history):
    opps, hist = tiny(make_opps, make_history)
    with pytest.raises(NotEnoughHistory):
        run_forecast(opps, as_of="2024-01-05", stage_history=hist, config=ForecastConfig(**EXACT))


def test_period_table():
    pt = period_table("2017-08-15", "quarter", 2)
    assert pt["period"].tolist() == ["2017Q3", "2017Q4"]
    assert pt["period_end"].iloc[0] == pd.Timestamp("2017-09-30")
    assert period_table("2017-08-15", "month", 1)["period"].tolist() == ["2017-08"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_new=st.integers(0, 4), close_open=st.booleans(), seed=st.integers(0, 3))
def test_rows_on_or_after_as_of_change_nothing(make_opps, make_history, n_new, close_open, seed):
    """Deals created on/after as_of, closes and stage changes dated on/after as_of are not read."""
    opps, hist = tiny(make_opps, make_history)
    cfg = ForecastConfig(**{**EXACT, "n_simulations": 300, "new_pipeline": True, "shocks": True,
                            "parameter_draws": 3})
    base = run_forecast(opps, as_of="2024-03-02", stage_history=hist, config=cfg)
    rng = np.random.default_rng(seed)
    o2, h2 = opps.copy(), hist.copy()
    if close_open:
        o2.loc[o2["opportunity_id"] == "D0", ["stage", "outcome"]] = "won"
        o2.loc[o2["opportunity_id"] == "D0", "closed_date"] = pd.Timestamp("2024-03-02")
        h2 = pd.concat([h2, make_history([("D0", "won", "2024-03-02")])], ignore_index=True)
    new = [(f"N{i}", "cy", str((pd.Timestamp("2024-03-02") + pd.Timedelta(days=int(rng.integers(0, 60)))).date()),
            "propose", 50.0, None, None) for i in range(n_new)]
    if new:
        o2 = pd.concat([o2, make_opps(new, columns=OPP_COLS)], ignore_index=True)
    o2 = o2.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    after = run_forecast(o2, as_of="2024-03-02", stage_history=h2, config=cfg)
    assert_frame_equal(base.periods, after.periods)
    assert_frame_equal(base.deals, after.deals)


def closed_tiny(make_opps, make_history):
    """The tiny pipeline where D0..D2 really close: D0, D1 won on 2024-03-11, D2 lost."""
    opps, hist = tiny(make_opps, make_history)
    for oid, out in (("D0", "won"), ("D1", "won"), ("D2", "lost")):
        m = opps["opportunity_id"] == oid
        opps.loc[m, ["stage", "outcome"]] = out
        opps.loc[m, "closed_date"] = pd.Timestamp("2024-03-11")
    return opps, hist


def test_backtest_rows_and_summary(make_opps, make_history):
    opps, hist = closed_tiny(make_opps, make_history)
    cfg = ForecastConfig(**{**EXACT, "n_simulations": 400})
    bt = run_backtest(opps, start="2024-01-01", end="2024-03-31", every_days=14, stage_history=hist, config=cfg)
    assert [d.strftime("%m-%d") for d in bt.skipped] == ["01-01"]          # nothing closed yet
    assert set(bt.rows["method"]) == {"model", "stage_weighted", "naive"}
    assert (bt.rows["actual"] == 3300.0).all()                              # 3000 + D0 + D1
    assert {"snapshot_date", "period", "method", "forecast", "p10", "p90", "actual"} <= set(bt.rows.columns)
    assert bt.summary["method"].tolist() == ["model", "stage_weighted", "naive"]


# ---------------------------------------------------------------- CLI

OPP_CSV = """opportunity_id,owner,created_date,stage,amount,closed_date
H0,ann,2024-01-01,won,1000,2024-01-11
H1,ann,2024-01-01,won,1000,2024-01-11
H2,ann,2024-01-01,won,1000,2024-01-11
H3,ann,2024-01-01,lost,1000,2024-01-11
D0,bob,2024-03-01,propose,100,
D1,bob,2024-03-01,propose,200,
D2,bob,2024-03-01,propose,300,
"""
PIPE = """stages:
  open: [qualify, propose]
  won: [won]
  lost: [lost]
forecast:
  n_simulations: 200
  parameter_draws: 4
"""


def _run(tmp_path, csv_text, *extra):
    (tmp_path / "opps.csv").write_text(csv_text)
    (tmp_path / "p.yaml").write_text(PIPE)
    out = tmp_path / "out" / "fc.csv"
    r = CliRunner().invoke(app, ["forecast", "--opportunities", str(tmp_path / "opps.csv"), "-p",
                                 str(tmp_path / "p.yaml"), "--out", str(out), "--no-track", *extra])
    return r, out


def test_cli_forecast_writes_three_tables(tmp_path):
    r, out = _run(tmp_path, OPP_CSV, "--as-of", "2024-03-02", "--by", "owner", "--periods", "2")
    assert r.exit_code == 0, r.output
    per = pd.read_csv(out)
    assert set(per["group"]) == {"(all)", "ann", "bob"} and len(per) == 6
    assert len(pd.read_csv(tmp_path / "out" / "fc_deals.csv")) == 3
    assert pd.read_csv(tmp_path / "out" / "fc_funnel.csv")["stage"].tolist() == ["qualify", "propose"]


def test_cli_backtest_writes_rows_chart_summary(tmp_path):
    text = OPP_CSV.replace("D0,bob,2024-03-01,propose,100,", "D0,bob,2024-03-01,won,100,2024-03-11")
    r, out = _run(tmp_path, text, "--backtest", "--from", "2024-01-15", "--to", "2024-03-31", "--every", "14d")
    assert r.exit_code == 0, r.output
    rows = pd.read_csv(out)
    assert set(rows["method"]) == {"model", "stage_weighted", "naive"}
    assert (tmp_path / "out" / "fc.png").stat().st_size > 1000
    assert "mape" in r.output and "coverage" in r.output


@pytest.mark.parametrize("bad, column", [
    ("D0,bob,2024-03-01,negotiate,100,", "stage"),                 # unknown stage
    ("D0,bob,2024-03-01,won,100,2024-02-01", "closed_date"),       # closed before created
    ("D0,bob,2024-03-01,propose,-100,", "amount"),                 # negative amount
    ("D1,bob,2024-03-01,propose,999,", "opportunity_id"),          # duplicate id, different data
])
def test_cli_bad_input_exit_2_nothing_written(tmp_path, bad, column):
    r, out = _run(tmp_path, OPP_CSV.replace("D0,bob,2024-03-01,propose,100,", bad), "--as-of", "2024-03-02")
    assert r.exit_code == 2, r.output
    assert "bad input" in r.output and column in r.output
    assert not (tmp_path / "out").exists()


def test_cli_requires_as_of_for_a_forecast(tmp_path):
    r, _ = _run(tmp_path, OPP_CSV)
    assert r.exit_code == 2 and "as_of" in r.output
