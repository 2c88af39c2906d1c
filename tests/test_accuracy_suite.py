"""Accuracy suite (benchmarks/accuracy.py --suite), short histories, baseline gating, intervals."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import FeatureConfig, TrainConfig
from keyaccounts.datasets import SHARED_DATA, completejourney_transactions
from keyaccounts.features import Tables, build_features
from keyaccounts.models.churn import btyd_churn_model
from keyaccounts.models.value import BTYDValue, zero_inflated_gamma_quantiles
from keyaccounts.schemas import prepare_table
from keyaccounts.synth import synthesize
from keyaccounts.tracking import Tracker
from keyaccounts.train import HistoryTooShort, fit_cutoffs, train_customer_models

ROOT = Path(__file__).resolve().parents[1]
CJ = SHARED_DATA / "completejourney"
runner = CliRunner()


def _accuracy():
    spec = importlib.util.spec_from_file_location("accuracy_bench", ROOT / "benchmarks" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_rolling_origins_are_distinct_month_starts_with_full_label_windows():
    acc = _accuracy()
    tx = pd.DataFrame({"timestamp": pd.to_datetime(["2017-01-01", "2017-12-31"])})
    got = acc.origins(tx, horizon_days=90)
    assert got == [pd.Timestamp("2017-10-01"), pd.Timestamp("2017-09-01"), pd.Timestamp("2017-08-01")]
    assert all(d + pd.Timedelta(days=90) <= pd.Timestamp("2018-01-01") for d in got)


def test_short_history_takes_shorter_steps_then_gives_up():
    cfg = TrainConfig(step_days=28, max_snapshots=20, min_history_days=28, n_val_cutoffs=1)
    start = pd.Timestamp("2024-01-01")
    # as_of - H leaves 28 + 30 days after the first cutoff may sit: 28-day steps fit 2, 7-day steps 5
    cuts, step = fit_cutoffs(as_of=start + pd.Timedelta(days=28 + 30 + 45), horizon_days=45, cfg=cfg, earliest=start)
    assert step < 28 and len(cuts) >= cfg.n_val_cutoffs + 2
    assert max(cuts) + pd.Timedelta(days=45) <= start + pd.Timedelta(days=28 + 30 + 45)
    with pytest.raises(HistoryTooShort):
        fit_cutoffs(as_of=start + pd.Timedelta(days=75), horizon_days=45, cfg=cfg, earliest=start)


def test_zero_inflated_gamma_quantiles_cover_their_share():
    rng = np.random.default_rng(0)
    n, shape = 20_000, 2.0
    p = rng.uniform(0.05, 0.95, n)
    m = rng.uniform(10, 100, n)
    y = np.where(rng.uniform(size=n) < p, rng.gamma(shape, m / shape), 0.0)
    q = zero_inflated_gamma_quantiles(p, m, 1.0 / shape, (0.1, 0.9))
    cover = ((y >= q[:, 0]) & (y <= q[:, 1])).mean()
    # zeros sit on the P10 when P(no buy) >= 10 %: coverage is at least 80 %, at most 80 % plus the
    # share of rows whose P10 is 0 with mass (1 - p) - 0.1 above 10 %; 4 binomial SE of noise
    slack = ((1 - p) - 0.1).clip(0).mean() + 4 * math.sqrt(0.8 * 0.2 / n)
    assert 0.8 - 4 * math.sqrt(0.8 * 0.2 / n) <= cover <= 0.8 + slack
    assert (q[:, 0] <= q[:, 1]).all() and (q[p < 0.1, 1] == 0).all()


@pytest.fixture(scope="module")
def cj_slice():
    """Complete Journey cut to 75 days of history before as_of (plus the next 45 for labels)."""
    if not CJ.exists():
        pytest.skip(f"shared data absent: {CJ}")
    tx = prepare_table(completejourney_transactions(CJ), "transactions", file="cj")[0]
    start = tx["timestamp"].min().normalize()
    as_of = start + pd.Timedelta(days=75)
    return tx[tx["timestamp"] < as_of + pd.Timedelta(days=45)].reset_index(drop=True), as_of


@pytest.mark.slow
def test_75_days_of_history_registers_btyd_and_score_answers(cj_slice, tmp_path, monkeypatch):
    tx, as_of = cj_slice
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tx.to_csv("tx.csv", index=False)
    args = ["-t", "tx.csv", "--as-of", str(as_of.date()), "--horizon-days", "45"]
    res = runner.invoke(app, ["train", *args])
    assert res.exit_code == 0, res.output
    assert "history too short" in res.output and "BG/NBD + Gamma-Gamma registered as champion" in res.output
    res = runner.invoke(app, ["score", *args, "--out", "scores.csv"])
    assert res.exit_code == 0, res.output
    s = pd.read_csv("scores.csv")
    assert len(s) == tx.loc[tx["timestamp"] < as_of, "customer_id"].nunique()
    assert s["churn_probability"].between(0, 1).all() and (s["expected_value"] >= 0).all()
    assert s["expected_value"].gt(0).mean() > 0.5


@pytest.fixture(scope="module")
def synth():
    return synthesize(n_customers=500, seed=21)


@pytest.mark.slow
def test_challenger_that_loses_to_btyd_is_held_back_and_the_baseline_registered(synth, tmp_path):
    t = Tables(synth.transactions, synth.customers, synth.invoices)
    # a churn GLM reading only spend per month: the BG/NBD probability ranks churn better
    cfg = TrainConfig(step_days=30, max_snapshots=6, min_history_days=60,
                      churn_params={"estimator": "glm", "glm_features": ["spend_per_month"]})
    said = []
    tms = train_customer_models(t, as_of=pd.Timestamp("2025-09-01").date(), horizon_days=90, cfg=cfg,
                                features=FeatureConfig(), fingerprint="x", progress=said.append)
    churn = [tm for tm in tms if tm.family == "churn"]
    assert len(churn) == 2, said
    challenger, baseline = churn
    assert challenger.metrics["roc_auc"] <= challenger.baseline_metrics["btyd"]["roc_auc"]
    assert challenger.gate_decision[0] is False and baseline.model.steps[-1][0] == "bgnbd"
    assert any("does not beat its BG/NBD baseline" in s for s in said)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", models_dir=tmp_path / "models")
    results = [tracker.log_training(tm) for tm in churn]
    assert [r["promoted"] for r in results] == [False, True]
    model, _ = tracker.load_champion("churn-90d")
    assert model.steps[-1][0] == "bgnbd"  # the BG/NBD baseline pipeline
    assert any(line.startswith("value: chose") for line in said)


@pytest.mark.slow
def test_small_suite_prints_every_model_metric_and_criterion(synth):
    acc = _accuracy()
    ds = acc.SuiteSet("synth_small", lambda: synth.transactions, 90, True)
    cfg = TrainConfig(step_days=30, max_snapshots=6, min_history_days=60)
    recs = acc.suite_records(ds, synth.transactions, as_of=pd.Timestamp("2025-09-01"), cfg=cfg, n_jobs=1)
    table = pd.DataFrame(recs)
    assert {"naive", "btyd", "ours"} <= set(table["model"])
    ours = table[table["model"] == "ours"].iloc[0]
    for k in ("auc", "pr_auc", "brier", "gini", "top10", "mae", "total", "coverage80"):
        assert np.isfinite(ours[k]), k
    passes = [c for c in table.columns if c.startswith("pass: ")]
    assert len(passes) == 6, passes  # label windows, AUC, Gini, top decile, total, coverage
    assert (table["model"].str.startswith("oracle").any()) == (not ours[passes].astype(bool).all())


def test_btyd_value_model_fits_without_labels(synth):
    f = build_features(Tables(synth.transactions), as_of=pd.Timestamp("2025-09-01").date())
    f = f[f["frequency"] > 0]
    v = BTYDValue(horizon_days=90).fit(f)
    pred = v.predict(f)
    assert np.isfinite(pred).all() and (pred >= 0).all()
    # the churn pipeline clips BG/NBD's probability to [1e-6, 1 - 1e-6] before its logit
    p_churn = btyd_churn_model(horizon_days=90).fit(f).predict_proba(f)[:, 1]
    np.testing.assert_allclose(v.predict_buy_proba(f), 1 - p_churn, rtol=0, atol=1e-6 + 1e-12)


def seasonal_business(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Customers acquired in the first month of 2021, each lost after an exponential lifetime
    (mean 3 years), buying as Poisson processes whose rate swings +-70 % over the year (peak
    mid-November), gamma spend."""
    rng = np.random.default_rng(seed)
    start, days = pd.Timestamp("2021-01-01"), 3 * 364
    first = rng.integers(0, 28, n)
    last = first + rng.exponential(3 * 364, n)
    rate = rng.gamma(2.0, 0.5, n) / 7.0  # purchases per day at the average season
    t = np.arange(days)
    season = 1.0 + 0.7 * np.cos(2 * np.pi * (t - 318) / 364)
    alive = (t[None, :] >= first[:, None]) & (t[None, :] < last[:, None])
    counts = rng.poisson(np.outer(rate, season) * alive)
    counts[np.arange(n), first] = np.maximum(counts[np.arange(n), first], 1)
    cust, day = np.nonzero(counts)
    return pd.DataFrame({"customer_id": pd.Categorical([f"C{i:05d}" for i in cust]),
                         "timestamp": start + pd.to_timedelta(day, unit="D"),
                         "amount": rng.gamma(3.0, 20.0, len(day)) * counts[cust, day]})


@pytest.mark.slow
def test_population_component_tracks_a_seasonal_total():
    acc = _accuracy()
    tx = seasonal_business()
    as_of, H = pd.Timestamp("2023-10-02"), 90  # the next 90 days are the peak, the last 90 the trough
    past = tx[tx["timestamp"] < as_of]
    cfg = TrainConfig(step_days=28, max_snapshots=8, min_history_days=28)
    ours = acc.train_ours(past, as_of=as_of, horizon_days=H, cfg=cfg, n_jobs=1)
    assert "used" in ours.info["level"] and ours.value.level_ != 1.0, ours.info["level"]
    f = build_features(Tables(past), as_of=as_of.date())
    f = f[f["frequency"] > 0]
    actual = tx.loc[(tx["timestamp"] >= as_of) & (tx["timestamp"] < as_of + pd.Timedelta(days=H)), "amount"].sum()
    with_level = ours.value.predict(f).sum() / actual - 1
    without = ours.value.predict(f).sum() / ours.value.level_ / actual - 1
    assert abs(with_level) <= 0.10 < abs(without), (with_level, without)
