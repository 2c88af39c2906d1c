"""Scoring benchmark: prediction alone vs exact per-account contributions + top-3 reasons.

    python benchmarks/score.py [--customers N] [--train-customers M]

Builds synthetic transactions for N customers (~8 rows each), their features as of --as-of,
trains churn (calibrated GLM) and value (two-part, XGBoost spend) models on snapshots of a
smaller synthetic set (the benchmark is about scoring throughput), then times on all N rows:
(a) prediction: churn predict_proba + value predict;
(b) explanation: exact contributions (linear SHAP for churn, TreeSHAP for the value spend part)
    + top-3 reasons up/down for churn and value.
Prints rows/s and peak RSS (process RSS sampled every 5 ms) for each, the additivity error on a
sample, and last `reasons_over_prediction_time_ratio=X`.
Targets (product issue): prediction >= 100k rows/s; exact reasons for 1M accounts <= 6 min, < 8 GB.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from _memory import PeakRSS, rss_bytes  # benchmarks/_memory.py

from keyaccounts import explain as E
from keyaccounts.config import FeatureConfig, TrainConfig
from keyaccounts.features import Tables, build_features
from keyaccounts.models.churn import calibrate, make_churn_model
from keyaccounts.models.value import make_value_model
from keyaccounts.synth import synth_transactions, synthesize
from keyaccounts.train import customer_split


def gb(b: int) -> str:
    return f"{b / 2**30:.2f} GB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--train-customers", type=int, default=20_000)
    ap.add_argument("--as-of", default="2025-07-01")
    ap.add_argument("--horizon-days", type=int, default=90)
    args = ap.parse_args()
    H = args.horizon_days

    t0 = time.perf_counter()
    s = synthesize(n_customers=args.train_customers, seed=5)
    cfg = TrainConfig(step_days=30, max_snapshots=4, min_history_days=60)
    sp = customer_split(Tables(s.transactions), as_of=pd.Timestamp("2025-09-01").date(), horizon_days=H,
                        cfg=cfg, features=FeatureConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        churn = make_churn_model({"horizon_days": H}).fit(sp.X_train, sp.y_train["churned"])
        churn = calibrate(churn, sp.X_val, sp.y_val["churned"])
        value = make_value_model({"horizon_days": H}).fit(sp.X_train, sp.y_train["future_value"])
    print(f"training: {len(sp.X_train):,} snapshot rows from {args.train_customers:,} customers "
          f"in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    txns = synth_transactions(n_rows=8 * args.customers, n_customers=args.customers, seed=1)
    f = build_features(Tables(txns), as_of=args.as_of)
    del txns
    X = f[f["frequency"] > 0]
    n = len(X)
    print(f"scoring frame: {n:,} customers x {X.shape[1]} features as of {args.as_of}, "
          f"built in {time.perf_counter() - t0:.1f}s; RSS {gb(rss_bytes())}")

    with PeakRSS() as pk_pred:
        t0 = time.perf_counter()
        p_churn = churn.predict_proba(X)[:, 1]
        ev = value.predict(X)
        t_pred = time.perf_counter() - t0
    print(f"(a) prediction (churn + value): {t_pred:.1f}s, {n / t_pred:,.0f} rows/s, peak RSS {gb(pk_pred.peak)}")

    with PeakRSS() as pk_exp:
        t0 = time.perf_counter()
        Cc = E.contributions(churn, X)
        t_cc = time.perf_counter() - t0
        Rc = E.top_reasons(Cc, X, n=3, kind="churn")
        t_rc = time.perf_counter() - t0 - t_cc
        Cv = E.contributions(value, X)
        t_cv = time.perf_counter() - t0 - t_cc - t_rc
        Rv = E.top_reasons(Cv, X, n=3, kind="value")
        t_exp = time.perf_counter() - t0
    t_rv = t_exp - t_cc - t_rc - t_cv
    print(f"(b) exact contributions + top-3 reasons (churn + value): {t_exp:.1f}s, {n / t_exp:,.0f} rows/s, "
          f"peak RSS {gb(pk_exp.peak)}")
    print(f"    churn contributions {t_cc:.1f}s, churn reasons {t_rc:.1f}s, "
          f"value (TreeSHAP) contributions {t_cv:.1f}s, value reasons {t_rv:.1f}s")

    idx = np.random.default_rng(0).choice(n, size=min(n, 20_000), replace=False)
    Xs = X.iloc[np.sort(idx)]
    print(f"additivity on {len(Xs):,} sampled rows: churn (linear, vs decision_function) "
          f"{E.check_additivity(churn, Xs, Cc.iloc[np.sort(idx)]):.2e}; value spend (tree) vs float64 leaf sum "
          f"{E.check_additivity(value, Xs, Cv.iloc[np.sort(idx)], exact=True):.2e}, vs XGBoost float32 output_margin "
          f"{E.check_additivity(value, Xs, Cv.iloc[np.sort(idx)]):.2e}")
    top = int(np.argmax(p_churn))
    print(f"example (highest P(churn) {p_churn[top]:.2f}, {X.index[top]}): up: {Rc['reasons_up'].iloc[top]!r}; "
          f"down: {Rc['reasons_down'].iloc[top]!r}")
    top = int(np.argmax(ev))
    print(f"example (highest expected value {ev[top]:,.0f}, {X.index[top]}): up: {Rv['reasons_up'].iloc[top]!r}; "
          f"down: {Rv['reasons_down'].iloc[top]!r}")
    print(f"targets: prediction >= 100k rows/s: {'ok' if n / t_pred >= 100_000 else 'MISSED'}; "
          f"reasons <= 6 min: {'ok' if t_exp * 1_000_000 / n <= 360 else 'MISSED'} (scaled to 1M), "
          f"< 8 GB: {'ok' if pk_exp.peak < 8 * 2**30 else 'MISSED'}")
    print(f"reasons_over_prediction_time_ratio={t_exp / t_pred:.2f}")


if __name__ == "__main__":
    main()
