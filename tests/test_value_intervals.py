"""Per-account P10/P90 of next-horizon spend: recalibrated levels on known zero-inflated gamma data."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.linear_model import GammaRegressor, LogisticRegression

from keyaccounts.features import Tables
from keyaccounts.models.intervals import pit_bounds, pit_quantiles, recalibrated_levels
from keyaccounts.models.value import TwoPartValue, make_value_model, zero_inflated_gamma_quantiles
from keyaccounts.snapshots import customer_snapshots, cutoffs, earliest_date
from keyaccounts.synth import synthesize

SHAPE = 2.0  # true gamma shape of spend given a purchase (dispersion 0.5)


def zig_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, P(buy), E[spend | buy], y drawn from the zero-inflated gamma they define."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1.0 / (1.0 + np.exp(-(0.3 + 1.2 * x)))
    m = np.exp(3.0 + 0.5 * x)
    y = np.where(rng.uniform(size=n) < p, rng.gamma(SHAPE, m / SHAPE), 0.0)
    return x, p, m, y


def cover(y, q) -> tuple[float, float, float]:
    """(coverage of [P10, P90], share below P10, share above P90)."""
    below, above = y < q[:, 0], y > q[:, 1]
    return float(1 - below.mean() - above.mean()), float(below.mean()), float(above.mean())


def tolerance(share: float, n_cal: int, n_test: int) -> float:
    """4 standard errors of a share estimated on n_test rows at levels learned on n_cal rows:
    both samples' binomial noise (independent), added in variance."""
    return 4 * math.sqrt(share * (1 - share) * (1 / n_cal + 1 / n_test))


def test_recalibration_corrects_a_misspecified_dispersion():
    n_cal, n_test = 20_000, 20_000
    _, p, m, y = zig_data(n_cal, seed=1)
    _, pt, mt, yt = zig_data(n_test, seed=2)
    tol, tol_tail = tolerance(0.8, n_cal, n_test), tolerance(0.1, n_cal, n_test)
    for dispersion in (0.05, 2.0):  # true 0.5: ten times too narrow, four times too wide
        raw = cover(yt, zero_inflated_gamma_quantiles(pt, mt, dispersion, (0.1, 0.9)))
        # visible before recalibration in the upper tail (the coverage alone can hide it: too narrow
        # a gamma and the point mass at 0 pull it in opposite directions)
        assert abs(raw[2] - 0.1) > tol_tail, raw
        levels = recalibrated_levels((0.1, 0.9), *pit_quantiles(*pit_bounds(y, p, m, dispersion)))
        got = cover(yt, zero_inflated_gamma_quantiles(pt, mt, dispersion, levels))
        assert abs(got[0] - 0.8) <= tol, (dispersion, raw, got)
        assert abs(got[1] - 0.1) <= tol_tail and abs(got[2] - 0.1) <= tol_tail, (dispersion, got)


def test_true_model_keeps_its_upper_level_and_moves_the_lower_one():
    # With the true distribution the P90 needs no change (F(y-) is uniform on the buyers' range),
    # while the point mass at 0 makes the nominal P10 cover every non-buyer: the lower level rises.
    n = 50_000
    _, p, m, y = zig_data(n, seed=3)
    lo, hi = recalibrated_levels((0.1, 0.9), *pit_quantiles(*pit_bounds(y, p, m, 1.0 / SHAPE)))
    assert abs(hi - 0.9) <= 4 * math.sqrt(0.9 * 0.1 / n) / 0.5  # level SE = share SE / PIT density (>= 0.5 here)
    assert lo > 0.1 + 0.05
    raw = cover(y, zero_inflated_gamma_quantiles(p, m, 1.0 / SHAPE, (0.1, 0.9)))
    assert raw[0] > 0.8 + tolerance(0.8, n, n)


def snapshot_frame(n_per_cut: int, cuts: list[str], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Snapshot-shaped rows (index cutoff x customer_id) of the known zero-inflated gamma."""
    x, _, _, y = zig_data(n_per_cut * len(cuts), seed)
    idx = pd.MultiIndex.from_product([pd.to_datetime(cuts), [f"c{i}" for i in range(n_per_cut)]],
                                     names=["cutoff", "customer_id"])
    return pd.DataFrame({"x": x}, index=idx), y


def two_part(**kw) -> TwoPartValue:
    return TwoPartValue(classifier=LogisticRegression(), regressor=GammaRegressor(alpha=0.0), **kw)


def test_two_part_value_intervals_cover_80_percent_on_known_data():
    cuts = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]
    X, y = snapshot_frame(5_000, cuts, seed=4)
    Xt, yt = snapshot_frame(20_000, ["2024-07-01"], seed=5)
    m = two_part(interval_gap_days=45).fit(X, y)
    assert m.interval_calibration_.startswith("held-out cutoff 2024-04-01 (5,000 rows)")
    assert "up to 2024-02-01" in m.interval_calibration_  # 45 d gap: March is too close to April
    got = cover(yt, m.predict_quantiles(Xt))
    assert abs(got[0] - 0.8) <= tolerance(0.8, 5_000, 20_000), got
    raw = cover(yt, m.predict_quantiles(Xt, recalibrated=False))
    assert raw[0] > 0.8 + tolerance(0.8, 5_000, 20_000), raw  # P10 = 0 covers every non-buyer
    plain = two_part(calibrate_intervals=False).fit(X, y)
    assert np.array_equal(plain.predict(Xt), m.predict(Xt))  # intervals never touch point forecasts
    assert not hasattr(plain, "interval_pit_at_")
    np.testing.assert_array_equal(plain.predict_quantiles(Xt), raw_q := m.predict_quantiles(Xt, recalibrated=False))
    assert (raw_q[:, 0] <= raw_q[:, 1]).all()


def test_without_cutoffs_the_levels_are_learned_in_sample_and_said_so():
    X, y = snapshot_frame(4_000, ["2024-01-01"], seed=6)
    m = two_part().fit(X.reset_index(drop=True), y)
    assert m.interval_calibration_.startswith("in-sample (4,000 training rows")
    Xt, yt = snapshot_frame(20_000, ["2024-07-01"], seed=7)
    assert abs(cover(yt, m.predict_quantiles(Xt.reset_index(drop=True)))[0] - 0.8) <= tolerance(0.8, 4_000, 20_000)


def test_the_shipped_value_model_keeps_its_point_forecasts_and_holds_out_the_latest_cutoff():
    s = synthesize(n_customers=400, seed=11)
    t = Tables(s.transactions, s.customers, s.invoices)
    cuts = cutoffs(as_of=pd.Timestamp("2025-07-01"), horizon_days=90, step_days=30, max_snapshots=6,
                   earliest=earliest_date(s.transactions), min_history_days=60)
    snaps = customer_snapshots(t, cuts=cuts, horizon_days=90)
    X, y = snaps.drop(columns=["churned", "future_value", "future_purchase_days"]), snaps["future_value"]
    params = {"horizon_days": 90, "xgb": {"n_estimators": 60}}
    on = make_value_model(params).fit(X, y)
    off = make_value_model({**params, "calibrate_intervals": False}).fit(X, y)
    assert np.array_equal(on.predict(X), off.predict(X))
    assert np.array_equal(on.predict_buy_proba(X), off.predict_buy_proba(X))
    # 6 cutoffs 30 d apart span 150 d: the gap is min(H = 90, 75) d, so the copy stops 90 d before
    last = max(cuts)
    assert on.interval_calibration_.startswith(f"held-out cutoff {last.date()}")
    assert f"up to {(last - pd.Timedelta(days=90)).date()}" in on.interval_calibration_
    q = on.predict_quantiles(X)
    assert (q[:, 0] <= q[:, 1]).all() and (q >= 0).all()
