"""Funnel forecast with deal-model probabilities: the coupling of model P(won) with the stage-exit
timing, the refusal fallback, point-in-time training, backtest model reuse and the per-deal
calibration report."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from test_forecast import EXACT, OPP_CSV, _run, closed_tiny, tiny
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import ForecastConfig
from keyaccounts.errors import InputError
from keyaccounts.forecast import backtest as backtest_mod
from keyaccounts.forecast import run_backtest, run_forecast
from keyaccounts.forecast.backtest import calibration_table
from keyaccounts.forecast.probability import DealModel, couple
from keyaccounts.forecast.synthetic import STAGES as SYN_STAGES
from keyaccounts.forecast.synthetic import known_pipeline


class Const:
    """A fitted 'model' answering the same P(won) for every deal."""

    def __init__(self, p: float):
        self.p = p

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 1 - self.p), np.full(len(X), self.p)])


def const_model(p: float, as_of="2024-03-02", horizon=90) -> DealModel:
    return DealModel(pd.Timestamp(as_of), horizon, Const(p))


# ---------------------------------------------------------------- couple

def test_couple_keeps_timing_and_sets_probability():
    """Deal 0 wins on day 105 in half of its paths (never otherwise): with p = 1 every path
    wins on day 105; with p = 0 none wins before t_h. Deal 1 never wins in its paths, so with
    p = 1 it takes the pooled winning day of its group (deal 0's, same group)."""
    won = np.array([[105.0, np.inf], [np.inf, np.inf]] * 50)
    rng = np.random.default_rng(0)
    out = couple(won, np.array([1.0, 1.0]), t_h=190, d0=100, rng=rng, group=np.array([0, 0]))
    assert (out == 105.0).all()
    out = couple(won, np.array([0.0, 0.0]), t_h=190, d0=100, rng=rng)
    assert np.isinf(out).all()
    out = couple(np.tile(won, (40, 1)), np.array([0.3, np.nan]), t_h=190, d0=100, rng=rng)
    assert abs(np.isfinite(out[:, 0]).mean() - 0.3) < 0.03
    assert set(out[np.isfinite(out[:, 0]), 0]) == {105.0}
    assert np.isinf(out[:, 1]).all()                     # NaN p: the paths are kept


def test_couple_later_wins_stay_after_the_model_window():
    """A path won after t_h is a 'not won before t_h' path: kept when the model says no."""
    won = np.array([[150.0], [250.0]] * 100)
    out = couple(won, np.array([0.0]), t_h=200, d0=100, rng=np.random.default_rng(1))
    assert (out == 250.0).all()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1.0), st.integers(2, 40))
def test_couple_draws_only_days_the_deal_could_take(seed, p, n_sims):
    """Every output day is one of the deal's own simulated days or never (inf, when all its paths
    win but the model says no), except for a deal with no path won before t_h that the model
    makes win: it gets a pooled winning day before t_h."""
    rng = np.random.default_rng(seed)
    won = np.where(rng.random((n_sims, 3)) < 0.4, 100 + rng.integers(0, 200, (n_sims, 3)), np.inf)
    won[:, 2] = np.inf
    out = couple(won, np.array([p, p, p]), t_h=200, d0=100, rng=rng)
    pooled = set(won[won < 200])
    for j in range(3):
        if (won[:, j] < 200).any():
            assert set(out[:, j]) <= set(won[:, j]) | {np.inf}
        else:
            took = out[:, j][out[:, j] < 200]
            assert set(out[:, j]) <= set(won[:, j]) | set(took)
            assert ((took >= 100) & (took < 200)).all()
            if pooled:
                assert set(took) <= pooled


# ---------------------------------------------------------------- run_forecast with a model

def test_tiny_pipeline_with_model_probability(make_opps, make_history):
    """The stage exits say 3/4, closing on 2024-03-11; a model saying 0.2 replaces the
    probability and keeps the timing: E(Q1) = 3000 won + 0.2 x 600, nothing in Q2."""
    opps, hist = tiny(make_opps, make_history)
    cfg = ForecastConfig(**{**EXACT, "probability": "model"})
    res = run_forecast(opps, as_of="2024-03-02", stage_history=hist, config=cfg, deal_model=const_model(0.2))
    q1, q2 = res.periods.iloc[0], res.periods.iloc[1]
    se = np.sqrt(0.2 * 0.8 * (100 ** 2 + 200 ** 2 + 300 ** 2) / 20000)
    assert abs(q1["existing_pipeline"] - 120.0) < 4 * se
    assert q2["existing_pipeline"] == 0.0
    assert (q1["p10"], q1["p90"]) == (3000.0, 3300.0)   # P(none won) = 0.512; P(won <= 300) = 0.928
    d = res.deals.set_index("opportunity_id")
    assert np.allclose(d["model_probability"], 0.2)
    assert np.allclose(d["close_probability"], 0.2, atol=0.02)
    assert set(d["category"]) == {"pipeline"}
    assert q1["stage_weighted"] == pytest.approx(3450.0)       # the baseline is unchanged
    assert res.info["probability"] == "model" and "2024-03-02" in res.info["probability_note"]


def test_model_trained_after_as_of_is_refused(make_opps, make_history):
    opps, hist = tiny(make_opps, make_history)
    cfg = ForecastConfig(**{**EXACT, "probability": "model"})
    with pytest.raises(ValueError, match="read later data"):
        run_forecast(opps, as_of="2024-03-02", stage_history=hist, config=cfg,
                     deal_model=const_model(0.2, as_of="2024-03-03"))


def test_untrainable_model_falls_back_or_refuses(make_opps, make_history):
    """4 closed deals: far below 40 deals won / 40 not won within the horizon at the cut-offs.
    auto -> stage exits, saying why; model -> InputError."""
    opps, hist = tiny(make_opps, make_history)
    res = run_forecast(opps, as_of="2024-03-02", stage_history=hist,
                       config=ForecastConfig(**{**EXACT, "probability": "auto", "n_simulations": 200}))
    assert res.info["probability"] == "stage"
    note = res.info["probability_note"]
    assert "refused" in note and "won within 90 days" in note and "at least 40 of each" in note
    assert res.deals["model_probability"].isna().all()
    with pytest.raises(InputError, match="cannot be trained"):
        run_forecast(opps, as_of="2024-03-02", stage_history=hist,
                     config=ForecastConfig(**{**EXACT, "probability": "model", "n_simulations": 200}))


def known_at_export(opps: pd.DataFrame, hist: pd.DataFrame, as_of: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What files exported at the start of as_of would hold: later deals absent, later closes open."""
    cut = pd.Timestamp(as_of)
    o = opps[opps["created_date"] < cut].copy()
    h = hist[hist["changed_at"] < cut].copy()
    later = (o["closed_date"] >= cut).to_numpy()
    last = h.sort_values("changed_at", kind="stable").groupby("opportunity_id").tail(1).set_index("opportunity_id")
    o.loc[later, "stage"] = o.loc[later, "opportunity_id"].map(last["stage"]).to_numpy()
    o.loc[later, "outcome"] = None
    o.loc[later, "closed_date"] = pd.NaT
    return o.sample(frac=1.0, random_state=0).reset_index(drop=True), h.sample(frac=1.0, random_state=1)


@pytest.mark.slow
def test_model_forecast_reads_nothing_on_or_after_as_of():
    """Trained and scored as of as_of on the full tables or on an export taken at as_of
    (rows shuffled): the same forecast, deal by deal."""
    o, h = known_pipeline(seed=3, start="2022-06-01", end="2023-09-30", rate=2.0)
    cfg = ForecastConfig(stage_order=list(SYN_STAGES), probability="model", n_simulations=400, periods=2,
                         parameter_draws=4)
    full = run_forecast(o, as_of="2023-05-01", stage_history=h, config=cfg)
    o2, h2 = known_at_export(o, h, "2023-05-01")
    cut = run_forecast(o2, as_of="2023-05-01", stage_history=h2, config=cfg)
    assert full.info["probability"] == "model"
    assert_frame_equal(full.periods, cut.periods)
    assert_frame_equal(full.deals, cut.deals)
    assert full.info["deal_model_val_auc"] == cut.info["deal_model_val_auc"]


# ---------------------------------------------------------------- backtest


def test_backtest_reuses_the_model_only_forward(make_opps, make_history, monkeypatch):
    """Weekly snapshots, retrain every 14 days: trained at the first snapshot, then every second
    one; a refusal is retried at the next snapshot; no snapshot uses a model trained after it."""
    opps, hist = closed_tiny(make_opps, make_history)
    trained = []

    def fake_train(opportunities, *, as_of, stage_history, stages, config):
        trained.append(pd.Timestamp(as_of))
        if pd.Timestamp(as_of) < pd.Timestamp("2024-01-15"):
            return DealModel(pd.Timestamp(as_of), config.model_horizon_days, None, reason="too few deals")
        return DealModel(pd.Timestamp(as_of), config.model_horizon_days, Const(0.5))

    monkeypatch.setattr(backtest_mod, "train_forecast_model", fake_train)
    cfg = ForecastConfig(**{**EXACT, "n_simulations": 200, "probability": "auto", "model_retrain_days": 14})
    bt = run_backtest(opps, start="2024-01-01", end="2024-03-31", every_days=7, stage_history=hist, config=cfg)
    assert [d.strftime("%m-%d") for d in trained] == ["01-01", "01-08", "01-15", "01-29", "02-12", "02-26",
                                                       "03-11", "03-25"]
    assert any("trained 6 time(s)" in n and "refused 2 time(s)" in n for n in bt.notes)
    dp = bt.deal_probabilities
    assert set(dp["snapshot_date"].dt.strftime("%m-%d")) == {"03-04", "03-11"}
    assert set(dp["source"]) == {"model"}
    assert np.allclose(dp["probability"], 0.5, atol=0.1)


def test_backtest_calibration_by_hand(make_opps, make_history):
    """At the 03-11 snapshot D0..D2 are open (they close that day): the stage exits give each
    P = 3/4 of winning by 03-31; D0 and D1 were won -> Brier = (2 x 1/16 + 9/16) / 3."""
    opps, hist = closed_tiny(make_opps, make_history)
    cfg = ForecastConfig(**{**EXACT, "n_simulations": 4000})
    bt = run_backtest(opps, start="2024-01-01", end="2024-03-31", every_days=14, stage_history=hist, config=cfg)
    dp = bt.deal_probabilities.set_index("opportunity_id")
    assert list(dp.index) == ["D2", "D1", "D0"] or sorted(dp.index) == ["D0", "D1", "D2"]
    assert (dp["snapshot_date"] == pd.Timestamp("2024-03-11")).all()
    assert dp.loc[["D0", "D1", "D2"], "won"].tolist() == [1, 1, 0]
    assert np.allclose(dp["probability"], 0.75, atol=0.03)
    m = bt.summary.set_index("method")
    assert m.loc["model", "brier"] == pytest.approx(((dp["probability"] - dp["won"]) ** 2).mean())
    assert m.loc["model", "brier"] == pytest.approx((2 / 16 + 9 / 16) / 3, abs=0.03)
    assert m[["brier", "ece"]].drop(index="model").isna().all().all()
    cal = bt.calibration
    assert len(cal) == 1 and cal["n"].iloc[0] == 3 and cal["observed_rate"].iloc[0] == pytest.approx(2 / 3)
    assert any("Brier" in n and "ECE" in n for n in bt.notes)


def test_calibration_table_by_hand():
    t = calibration_table(np.array([0.05, 0.15, 0.12, 0.95, 1.0]), np.array([0, 1, 0, 1, 1]), n_bins=10)
    expected = pd.DataFrame({"bin": [1, 2, 10], "p_low": [0.0, 0.1, 0.9], "p_high": [0.1, 0.2, 1.0],
                             "n": [1, 2, 2], "mean_probability": [0.05, 0.135, 0.975],
                             "observed_rate": [0.0, 0.5, 1.0]})
    assert_frame_equal(t, expected, check_exact=False)


@pytest.mark.slow
def test_cli_backtest_writes_calibration(tmp_path):
    """Deal-snapshots scored: D0..D2 at 03-11 (D0 closes that day), D1 and D2 at 03-25."""
    text = OPP_CSV.replace("D0,bob,2024-03-01,propose,100,", "D0,bob,2024-03-01,won,100,2024-03-11")
    r, out = _run(tmp_path, text, "--backtest", "--from", "2024-01-15", "--to", "2024-03-31", "--every", "14d")
    assert r.exit_code == 0, r.output
    cal = pd.read_csv(tmp_path / "out" / "fc_calibration.csv")
    assert {"bin", "n", "mean_probability", "observed_rate"} <= set(cal.columns) and cal["n"].sum() == 5
    assert "per-deal calibration" in r.output
    summ = pd.read_csv(tmp_path / "out" / "fc_summary.csv")
    assert {"brier", "ece"} <= set(summ.columns)


def test_cli_model_probability_refused_is_exit_2(tmp_path):
    (tmp_path / "opps.csv").write_text(OPP_CSV)
    (tmp_path / "p.yaml").write_text("stages:\n  open: [qualify, propose]\n  won: [won]\n  lost: [lost]\n"
                                     "forecast:\n  n_simulations: 200\n  probability: model\n")
    out = tmp_path / "out" / "fc.csv"
    r = CliRunner().invoke(app, ["forecast", "--opportunities", str(tmp_path / "opps.csv"), "-p",
                                 str(tmp_path / "p.yaml"), "--out", str(out), "--no-track", "--as-of", "2024-03-02"])
    assert r.exit_code == 2, r.output
    assert "cannot be trained" in r.output
    assert not (tmp_path / "out").exists()


def test_config_rejects_unknown_probability_source():
    with pytest.raises(ValueError):
        ForecastConfig(probability="xgb")
