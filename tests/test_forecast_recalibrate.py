"""Self-recalibrated intervals, the creation trend, funnels without loss records and bad input.

By-hand checks of the conformal widening, the replay windows and the creation trend; the
recalibrated forecast reads nothing on or after as_of; short history widens and says so; the
trend enters the simulation; a funnel with no wins refuses with a clear message."""
from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import ForecastConfig
from keyaccounts.forecast import NotEnoughHistory, run_forecast
from keyaccounts.forecast.core import forecast_once, period_table
from keyaccounts.forecast.probability import train_forecast_model
from keyaccounts.forecast.recalibrate import (
    Q_SHORT,
    PeriodRecalibration,
    Recalibration,
    apply_recalibration,
    conformal_widen,
    replay_windows,
    won_in_windows,
)
from keyaccounts.forecast.trend import conversion_trend, creation_trend
from keyaccounts.synth import RAMP_STAGE, ramping_funnel

FAST = {"stage_order": [RAMP_STAGE], "period": "month", "periods": 2, "n_simulations": 400,
        "parameter_draws": 4, "recalibration_replays": 6}


def test_conformal_rank_by_hand():
    # n = 4: rank ceil(5 * 0.8) = 4, the largest score
    assert conformal_widen(np.array([0.5, -0.1, 0.2, 0.0])) == (0.5, False)
    # n = 9: rank ceil(8.0) = 8 -> the 8th smallest
    assert conformal_widen(np.arange(9) / 10.0) == (0.7, False)
    # too many replays inside: narrowing never past the median
    assert conformal_widen(np.full(9, -3.0)) == (-0.5, False)


def test_short_history_widens_to_the_p1_p99_span():
    z = NormalDist().inv_cdf
    assert Q_SHORT == pytest.approx((z(0.99) - z(0.9)) / (2 * z(0.9)), rel=1e-15)
    assert conformal_widen(np.array([0.1, -0.2, 0.0])) == (Q_SHORT, True)      # n = 3 < rank 4
    assert conformal_widen(np.array([2.0])) == (2.0, True)                      # larger score seen
    assert conformal_widen(np.array([])) == (Q_SHORT, True)


def test_apply_recalibration_by_hand():
    per = pd.DataFrame({"group": "(all)", "period": ["A", "B"], "closed_won": [50.0, 0.0],
                        "p10": [100.0, 10.0], "p50": [200.0, 20.0], "p90": [300.0, 30.0]})
    rec = Recalibration([PeriodRecalibration("A", 9, 0.5, 0.5, False),
                         PeriodRecalibration("B", 9, 0.9, -0.25, False)], [], [])
    out = apply_recalibration(per, rec)
    # A: 100 - 0.5 * 200 = 0, floored at the 50 already won; 300 + 100. B: 10 + 5, 30 - 5
    assert out["p10"].tolist() == [50.0, 15.0]
    assert out["p90"].tolist() == [400.0, 25.0]
    assert out["p50"].tolist() == per["p50"].tolist()


def test_replay_windows_and_actuals_by_hand():
    pt = period_table("2024-03-10", "month", 2)
    d0 = int(pt["start_day"].iloc[0]) + 9                 # 2024-03-10
    win = replay_windows(pt, d0=d0, snapshot=d0 - 60)
    # [as_of, Apr 1) = 22 days, then April's 30, both shifted 60 days back
    assert (win["end_day"] - win["start_day"]).tolist() == [22, 30]
    assert win["start_day"].iloc[0] == d0 - 60 and win["start_day"].iloc[1] == win["end_day"].iloc[0]
    opps = pd.DataFrame({"amount": [1.0, 2.0, 4.0, 8.0], "outcome": ["won", "won", "lost", "won"],
                         "closed_date": pd.to_datetime(["2024-01-10", "2024-02-05", "2024-01-11", "2024-03-10"])})
    # 2024-01-10 is in the first window [Jan 10, Feb 1), 2024-02-05 in the second; the lost deal
    # does not count and the win on as_of is not known yet
    got = won_in_windows(opps, as_of="2024-03-10", windows=win)
    assert pd.Timestamp(win["period_start"].iloc[0]) == pd.Timestamp("2024-01-10")
    assert got.tolist() == [1.0, 2.0]


def test_creation_trend_recovers_an_exact_line():
    d0 = 1000
    # 30-day windows before d0 holding 30, 60, ..., 180 deals: 1 .. 6 deals per day
    days = np.concatenate([d0 - 30 * (6 - i) + (np.arange(30 * (i + 1)) % 30) for i in range(6)])
    tr = creation_trend(days, d0=d0, window_days=30, n_windows=6)
    assert tr.fitted and tr.n_windows == 6
    # rate at window centre x = -15 - 30 j is 6 - j: slope 1/30 per day, level 6 + 15 / 30
    assert tr.slope == pytest.approx(1 / 30, rel=1e-9)
    assert tr.level == pytest.approx(6.5, rel=1e-9)
    # residuals are 0, so the covariance rests on the Poisson variance of a window's rate
    assert tr.cov[0, 0] > 0 and tr.shock_sd == 0.0


def test_trend_enters_the_simulation():
    opps = ramping_funnel(seed=1)
    cfg = ForecastConfig(**{**FAST, "recalibrate": False, "shocks": False, "periods": 3})
    up = forecast_once(opps, as_of="2023-04-15", config=cfg)
    flat = forecast_once(opps, as_of="2023-04-15", config=cfg.model_copy(update={"trend": False}))
    assert "linear creation trend" in up.info["creation_trend"]
    assert up.info["creation_trend_slope_per_day2"] > 0
    # creation still ramps: the trend expects more new deals won in every later period
    assert (up.periods["new_pipeline"].to_numpy()[1:] > flat.periods["new_pipeline"].to_numpy()[1:]).all()


@pytest.mark.slow
def test_recalibrated_forecast_reads_nothing_on_or_after_as_of():
    opps = ramping_funnel(seed=2)
    cfg = ForecastConfig(**FAST)
    a = run_forecast(opps, as_of="2023-06-10", config=cfg)
    later = opps["created_date"] >= "2023-06-10"
    moved = opps.copy()
    moved.loc[later, "amount"] = moved.loc[later, "amount"] * 7.0
    closed_late = moved["closed_date"] >= "2023-06-10"
    moved.loc[closed_late, "closed_date"] = moved.loc[closed_late, "closed_date"] + pd.Timedelta(days=3)
    b = run_forecast(moved.sample(frac=1.0, random_state=0), as_of="2023-06-10", config=cfg)
    pd.testing.assert_frame_equal(a.periods, b.periods)
    assert a.info["recalibration_widen"] == b.info["recalibration_widen"]
    # June's window [as_of, Jul 1) = 21 days: replays at as_of - 21 - 7 j, all 6 scored on it
    assert a.info["recalibration_replays"]["2023-06"] == 6


def test_short_history_widens_and_says_so():
    opps = ramping_funnel(seed=3)
    cfg = ForecastConfig(**{**FAST, "periods": 1})
    raw = forecast_once(opps, as_of="2023-02-20", config=cfg.model_copy(update={"recalibrate": False}))
    res = run_forecast(opps, as_of="2023-02-20", config=cfg)
    assert res.info["recalibration_short_history"] == ["2023-02"]
    assert "short history" in res.info["recalibration"]
    assert res.info["recalibration_widen"]["2023-02"] >= round(Q_SHORT, 4)
    r, w = raw.periods.iloc[0], res.periods.iloc[0]
    assert w["p10"] <= r["p10"] and w["p90"] > r["p90"]


def test_no_loss_funnel_forecasts_and_stale_leads_get_low_probability():
    opps = ramping_funnel(seed=4)
    assert set(opps["outcome"].dropna()) == {"won"}
    res = forecast_once(opps, as_of="2023-08-01", config=ForecastConfig(**{**FAST, "recalibrate": False}))
    d = res.deals
    young = d.loc[d["age_days"] <= 14, "close_probability"].mean()
    stale = d.loc[d["age_days"] >= 150, "close_probability"].mean()
    # leads win after 1 + Gamma(2, 15) days (P(> 150 d) ~ 5e-4): a stale lead has learnt ~0 chance
    assert young > 0.2 and stale < young / 10
    assert res.periods["expected"].iloc[0] > 0 and res.info["funnel_note"].startswith("one open stage")


def test_no_win_before_as_of_is_a_clear_refusal():
    opps = pd.DataFrame({"opportunity_id": ["a", "b", "c"], "created_date": pd.to_datetime(["2024-01-01"] * 3),
                         "stage": ["lost", "lost", RAMP_STAGE], "amount": [1.0, 2.0, 3.0],
                         "closed_date": pd.to_datetime(["2024-01-05", "2024-01-06", None]),
                         "outcome": pd.array(["lost", "lost", None], dtype="str")})
    with pytest.raises(NotEnoughHistory, match="no deal won before 2024-02-01"):
        run_forecast(opps, as_of="2024-02-01", config=ForecastConfig(**FAST))
    with pytest.raises(NotEnoughHistory, match="no deal closed before"):
        run_forecast(opps, as_of="2024-01-03", config=ForecastConfig(**FAST))


def test_ramping_funnel_is_seeded_and_ramps():
    a, b = ramping_funnel(seed=5), ramping_funnel(seed=5)
    pd.testing.assert_frame_equal(a, b)
    wins = a.loc[a["outcome"] == "won", "closed_date"].dt.month.value_counts().sort_index()
    assert wins.loc[2] < 60 and wins.loc[7] > 150     # ~5 -> ~200 wins a month


def test_conversion_trend_by_hand():
    d0 = 600
    # 6 windows of 30 days, 20 closes each; the win share climbs 0.2, 0.3, ..., 0.7
    days = np.repeat(d0 - 30 * np.arange(6, 0, -1), 20)     # the first day of each window
    won = np.concatenate([np.arange(20) < 4 + 2 * i for i in range(6)])
    tr = conversion_trend(days, won, d0=d0, window_days=30, n_windows=6)
    pooled = np.log(won.mean() / (1 - won.mean()))
    # at as_of the fitted log-odds lies beyond the last window's logit(0.7): above the pooled one
    assert tr.log_odds > np.log(0.7 / 0.3) - pooled > 0 and tr.sd > 0
    assert "conversion trend over 6 windows" in tr.note
    flat = conversion_trend(days, np.tile(np.arange(20) < 8, 6), d0=d0, window_days=30, n_windows=6)
    assert abs(flat.log_odds) < 1e-9        # the same share in every window: no drift
    none = conversion_trend(days, np.ones(len(days), bool), d0=d0, window_days=30, n_windows=6)
    assert none.log_odds == 0.0 and none.note.startswith("no conversion trend: closed deals are all won")


@pytest.mark.slow
def test_deal_model_trains_on_a_funnel_without_losses():
    # no lost deal at all: the rule counts deals won / not won within the horizon at the cut-offs
    opps = ramping_funnel(seed=6)
    dm = train_forecast_model(opps, as_of="2023-10-01", stage_history=None, stages=[RAMP_STAGE],
                              config=ForecastConfig(stage_order=[RAMP_STAGE]))
    assert dm.usable, dm.reason
    early = train_forecast_model(opps, as_of="2023-02-15", stage_history=None, stages=[RAMP_STAGE],
                                 config=ForecastConfig(stage_order=[RAMP_STAGE]))
    assert not early.usable and "won within 90 days" in early.reason


@pytest.mark.slow
def test_cli_synth_ramping_funnel_then_forecast(tmp_path):
    r = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "d"), "--customers", "20", "--ramping-funnel",
                                 "--start", "2023-01-01", "--end", "2023-09-30"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "d" / "stage_history.csv").exists()
    opps = pd.read_csv(tmp_path / "d" / "opportunities.csv")
    assert set(opps["outcome"].dropna()) == {"won"} and set(opps["stage"]) == {"won", RAMP_STAGE}
    (tmp_path / "p.yaml").write_text(f"stages:\n  open: [{RAMP_STAGE}]\n  won: [won]\n  lost: [lost]\n"
                                     "forecast:\n  period: month\n  periods: 1\n  n_simulations: 400\n")
    out = tmp_path / "fc.csv"
    r = CliRunner().invoke(app, ["forecast", "--opportunities", str(tmp_path / "d" / "opportunities.csv"), "-p",
                                 str(tmp_path / "p.yaml"), "--as-of", "2023-08-01", "--out", str(out), "--no-track"])
    assert r.exit_code == 0, r.output
    assert "recalibration: P10-P90 recalibrated from" in r.output and "creation trend" in r.output
    per = pd.read_csv(out)
    assert per["expected"].iloc[0] > 0 and per["p10"].iloc[0] < per["expected"].iloc[0] < per["p90"].iloc[0]
