"""Forecast backtests: Maven CRM 2017 (quarterly, weekly snapshots) and interval calibration
on synthetic pipelines with known close probabilities, for each source of per-deal P(won).

    python benchmarks/forecast.py [--seeds 20] [--no-maven] [--no-synthetic] [--sims 2000]
        [--variants stage model model-acct model-weekly] [--synthetic-variants stage model]

Maven (fictitious; ../shared/data/maven_crm_sales_opportunities, skipped when absent): amount =
list price, stage history derived from engage/close dates; snapshots every 7 days from
2017-01-01 to 2017-12-31, each forecasting its own quarter; actual = list-price revenue of the
deals won in that quarter. Snapshots before the first close (2017-03-01) cannot be forecast
and are counted as skipped. Variants (forecast.probability and deal-model settings):
  stage         empirical stage exits (Aalen-Johansen), no deal model
  model         calibrated deal model (P(won within 90 d)), trained as of a snapshot on what was
                known then and reused for 28 days; features without the account ones (on Maven a
                blank account marks the deals that never close - an end-of-data fact, see
                benchmarks/deals.py), timing from the stage exits
  model-acct    the same with the account features (leaks on Maven; shown for the size of it)
  model-weekly  'model' retrained at every snapshot (cost of not reusing)
Per variant: per method n, MAPE, bias, P10-P90 coverage, WAPE, Brier/ECE of the per-deal
probabilities, per-quarter MAPE/coverage, the reliability table and the seconds taken.
Synthetic (`forecast.synthetic.known_pipeline`: stationary Poisson creation, two stages, known
P(won) = 0.3): per seed, 2022-2023 data, snapshots every 28 days through 2023, each forecasting
its own quarter; prints the share of periods whose realised won revenue fell inside P10-P90
(target 75-85 %) and the per-deal calibration, per probability source.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from keyaccounts import datasets
from keyaccounts.config import ForecastConfig
from keyaccounts.forecast import run_backtest
from keyaccounts.forecast.backtest import calibration_table, summarise
from keyaccounts.forecast.synthetic import STAGES, known_pipeline
from keyaccounts.models.deal import NUMERIC_FEATURES
from keyaccounts.schemas import prepare_table

NO_ACCOUNT = [f for f in NUMERIC_FEATURES if not f.startswith(("account_", "amount_vs_account"))]
VARIANTS = {
    "stage": {"probability": "stage"},
    "model": {"probability": "auto", "model_features": NO_ACCOUNT},
    "model-acct": {"probability": "auto"},
    "model-weekly": {"probability": "auto", "model_features": NO_ACCOUNT, "model_retrain_days": 1},
}
FMT = {"float_format": lambda v: f"{v:.4f}"}


def maven(sims: int, variants: list[str]) -> None:
    folder = datasets.shared_data() / "maven_crm_sales_opportunities"
    if not (folder / "sales_pipeline.csv").is_file():
        print(f"maven: skipped ({folder} not found)")
        return
    raw = datasets.maven_tables(folder)
    t = {n: prepare_table(raw[n], n, file=f"maven:{n}", stages=datasets.MAVEN_STAGES, date_format="%Y-%m-%d")[0]
         for n in ("opportunities", "stage_history")}
    for v in variants:
        cfg = ForecastConfig(stage_order=list(datasets.MAVEN_OPEN), n_simulations=sims, **VARIANTS[v])
        t0 = time.perf_counter()
        bt = run_backtest(t["opportunities"], start="2017-01-01", end="2017-12-31", every_days=7,
                          stage_history=t["stage_history"], config=cfg)
        sec = time.perf_counter() - t0
        print(f"\n== Maven 2017 [{v}] quarterly, weekly snapshots: {bt.rows['snapshot_date'].nunique()} scored, "
              f"{len(bt.skipped)} skipped (nothing closed before them); {sec:.0f} s")
        print(bt.summary.to_string(index=False, **FMT))
        by_q = bt.rows.groupby(["period", "method"]).apply(
            lambda r: pd.Series({"mape": r["abs_pct_error"].mean(), "coverage": r["inside"].astype(float).mean()}),
            include_groups=False).unstack("method")
        print(by_q.to_string(float_format=lambda x: f"{x:.3f}"))
        for n in bt.notes:
            print("note:", n)
        print("reliability (P(won within the snapshot's quarter) per deal open at the snapshot):")
        print(bt.calibration.to_string(index=False, **FMT))
        m = bt.summary.set_index("method")
        print(f"maven[{v}] mape_model={m.loc['model', 'mape']:.4f} coverage_model={m.loc['model', 'coverage']:.4f} "
              f"mape_stage_weighted={m.loc['stage_weighted', 'mape']:.4f} "
              f"coverage_stage_weighted={m.loc['stage_weighted', 'coverage']:.4f} "
              f"mape_naive={m.loc['naive', 'mape']:.4f} brier={m.loc['model', 'brier']:.4f} "
              f"ece={m.loc['model', 'ece']:.4f} seconds={sec:.0f}", flush=True)


def synthetic(seeds: int, sims: int, variants: list[str]) -> None:
    for v in variants:
        over = {k: val for k, val in VARIANTS[v].items() if k != "model_features"}
        cfg = ForecastConfig(stage_order=list(STAGES), n_simulations=sims, **over)
        t0 = time.perf_counter()
        rows, dps = [], []
        for seed in range(seeds):
            o, h = known_pipeline(seed=seed)
            bt = run_backtest(o, start="2023-01-01", end="2023-12-31", every_days=28, stage_history=h, config=cfg)
            rows.append(bt.rows.assign(seed=seed))
            dps.append(bt.deal_probabilities)
        r, dp = pd.concat(rows, ignore_index=True), pd.concat(dps, ignore_index=True)
        s = summarise(r, dp)
        print(f"\n== synthetic [{v}], known P(won) = 0.3: {seeds} seeds x {r['snapshot_date'].nunique()} snapshots; "
              f"{time.perf_counter() - t0:.0f} s")
        print(s.to_string(index=False, **FMT))
        print(calibration_table(dp["probability"].to_numpy(float), dp["won"].to_numpy(float)).to_string(index=False, **FMT))
        m = s.set_index("method").loc["model"]
        src = dp["source"].value_counts().to_dict()
        print(f"synthetic[{v}] p10_p90_coverage={m['coverage']:.4f} mape={m['mape']:.4f} brier={m['brier']:.4f} "
              f"ece={m['ece']:.4f} sources={src}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--no-maven", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--variants", nargs="+", default=["stage", "model"], choices=list(VARIANTS))
    ap.add_argument("--synthetic-variants", nargs="+", default=["stage", "model"], choices=["stage", "model"])
    args = ap.parse_args(argv)
    np.seterr(all="ignore")
    if not args.no_maven:
        maven(args.sims, args.variants)
    if not args.no_synthetic:
        synthetic(args.seeds, min(args.sims, 1000), args.synthetic_variants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
