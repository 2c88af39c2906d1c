"""Forecast backtests: Maven CRM 2017 (quarterly, weekly snapshots) and interval calibration
on synthetic pipelines with known close probabilities.

    python benchmarks/forecast.py [--seeds 20] [--no-maven] [--sims 2000]

Maven (fictitious; ../shared/data/maven_crm_sales_opportunities, skipped when absent): amount =
list price, stage history derived from engage/close dates; snapshots every 7 days from
2017-01-01 to 2017-12-31, each forecasting its own quarter; actual = list-price revenue of the
deals won in that quarter. Snapshots before the first close (2017-03-01) cannot be forecast
and are counted as skipped. Prints per method n, MAPE, bias, P10-P90 coverage, WAPE, and the
seconds taken.
Synthetic (`forecast.synthetic.known_pipeline`: stationary Poisson creation, two stages, known
P(won) = 0.3): per seed, 2022-2023 data, snapshots every 28 days through 2023, each forecasting
its own quarter; prints the share of periods whose realised won revenue fell inside P10-P90
(target 75-85 %).
"""
from __future__ import annotations

import argparse
import time

import pandas as pd

from keyaccounts import datasets
from keyaccounts.config import ForecastConfig
from keyaccounts.forecast import run_backtest
from keyaccounts.forecast.backtest import summarise
from keyaccounts.forecast.synthetic import STAGES, known_pipeline
from keyaccounts.schemas import prepare_table


def maven(sims: int) -> None:
    folder = datasets.shared_data() / "maven_crm_sales_opportunities"
    if not (folder / "sales_pipeline.csv").is_file():
        print(f"maven: skipped ({folder} not found)")
        return
    raw = datasets.maven_tables(folder)
    t = {n: prepare_table(raw[n], n, file=f"maven:{n}", stages=datasets.MAVEN_STAGES, date_format="%Y-%m-%d")[0]
         for n in ("opportunities", "stage_history")}
    cfg = ForecastConfig(stage_order=list(datasets.MAVEN_OPEN), n_simulations=sims)
    t0 = time.perf_counter()
    bt = run_backtest(t["opportunities"], start="2017-01-01", end="2017-12-31", every_days=7,
                      stage_history=t["stage_history"], config=cfg)
    sec = time.perf_counter() - t0
    print(f"Maven 2017, quarterly, weekly snapshots: {bt.rows['snapshot_date'].nunique()} snapshots scored, "
          f"{len(bt.skipped)} skipped (nothing closed before them); {sec:.0f} s")
    print(bt.summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    by_q = bt.rows.groupby(["period", "method"]).apply(
        lambda r: pd.Series({"mape": r["abs_pct_error"].mean(), "coverage": r["inside"].astype(float).mean()}),
        include_groups=False).unstack("method")
    print(by_q.to_string(float_format=lambda v: f"{v:.3f}"))
    m = bt.summary.set_index("method")
    print(f"maven_mape_model={m.loc['model', 'mape']:.4f} maven_mape_stage_weighted={m.loc['stage_weighted', 'mape']:.4f} "
          f"maven_coverage_model={m.loc['model', 'coverage']:.4f}")


def synthetic(seeds: int, sims: int) -> None:
    cfg = ForecastConfig(stage_order=list(STAGES), n_simulations=sims)
    t0 = time.perf_counter()
    rows = []
    for seed in range(seeds):
        o, h = known_pipeline(seed=seed)
        rows.append(run_backtest(o, start="2023-01-01", end="2023-12-31", every_days=28, stage_history=h,
                                 config=cfg).rows.assign(seed=seed))
    r = pd.concat(rows, ignore_index=True)
    s = summarise(r)
    print(f"synthetic, known P(won) = 0.3: {seeds} seeds x {r['snapshot_date'].nunique()} snapshots; "
          f"{time.perf_counter() - t0:.0f} s")
    print(s.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"synthetic_p10_p90_coverage={s.set_index('method').loc['model', 'coverage']:.4f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--no-maven", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_maven:
        maven(args.sims)
    synthetic(args.seeds, min(args.sims, 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
