"""Forecast backtest table over every funnel, with DEFAULT settings (README "Backtest").

    python benchmarks/forecast.py [--funnels maven-opps maven-history synthetic ramping]
        [--seeds 20] [--ramp-seeds 5] [--maven-every 7] [--synthetic-every 28] [--raw]

Every funnel is forecast with `ForecastConfig()` defaults; only what describes the data is
given: its open stages in funnel order and the period asked for. `--raw` turns off the
self-recalibration and the creation trend (the forecaster before issue 16), for comparison.

- maven-opps: Maven CRM 2017 (fictitious; ../shared/data/maven_crm_sales_opportunities),
  opportunities only (no stage history), quarterly, snapshots every 7 days from 2017-01-01 to
  2017-12-31, each forecasting its own quarter; amount = list price. Snapshots before the
  first close (2017-03-01) cannot be forecast (skipped).
- maven-history: the same with the stage history derived from the engage/close dates.
- synthetic: `forecast.synthetic.known_pipeline` (stationary, two stages, P(won) = 0.3), per
  seed 2022-2023, quarterly, snapshots every 28 days through 2023.
- ramping: `synth.ramping_funnel` (no loss records, lead creation ramping 0.5 -> 20 a day over
  150 days), per seed, monthly, snapshots every 7 days from 2023-02-01 to 2023-06-30.

Per funnel and method (ours, stage-weighted, naive): scored periods, MAPE, bias, P10-P90
coverage, and for ours the per-deal Brier / ECE of P(won within the snapshot's periods), the
mean recalibration widening and the seconds taken. Prints one markdown table (the README's).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from keyaccounts import datasets
from keyaccounts.config import ForecastConfig
from keyaccounts.forecast import run_backtest
from keyaccounts.forecast.backtest import summarise
from keyaccounts.forecast.synthetic import STAGES, known_pipeline
from keyaccounts.schemas import prepare_table
from keyaccounts.synth import RAMP_STAGE, ramping_funnel

RAW = {"recalibrate": False, "trend": False}
NAMES = {"model": "ours", "stage_weighted": "stage-weighted", "naive": "naive"}


def _maven_tables():
    folder = datasets.shared_data() / "maven_crm_sales_opportunities"
    if not (folder / "sales_pipeline.csv").is_file():
        return None
    raw = datasets.maven_tables(folder)
    return {n: prepare_table(raw[n], n, file=f"maven:{n}", stages=datasets.MAVEN_STAGES, date_format="%Y-%m-%d")[0]
            for n in ("opportunities", "stage_history")}


def _runs(funnel: str, seeds: int, ramp_seeds: int, over: dict, every: dict[str, int]):
    """(opportunities, stage_history, config, start, end, every) per backtest of the funnel."""
    if funnel.startswith("maven"):
        t = _maven_tables()
        if t is None:
            print(f"{funnel}: skipped (Maven data not found)")
            return
        cfg = ForecastConfig(stage_order=list(datasets.MAVEN_OPEN), period="quarter", **over)
        hist = t["stage_history"] if funnel == "maven-history" else None
        yield t["opportunities"], hist, cfg, "2017-01-01", "2017-12-31", every["maven"]
    elif funnel == "synthetic":
        cfg = ForecastConfig(stage_order=list(STAGES), period="quarter", **over)
        for seed in range(seeds):
            o, h = known_pipeline(seed=seed)
            yield o, h, cfg, "2023-01-01", "2023-12-31", every["synthetic"]
    else:
        cfg = ForecastConfig(stage_order=[RAMP_STAGE], period="month", **over)
        for seed in range(ramp_seeds):
            yield ramping_funnel(seed=seed), None, cfg, "2023-02-01", "2023-06-30", 7


def backtest(funnel: str, seeds: int, ramp_seeds: int, over: dict, every: dict[str, int]) -> pd.DataFrame | None:
    t0 = time.perf_counter()
    rows, dps, widen = [], [], []
    for opps, hist, cfg, start, end, step in _runs(funnel, seeds, ramp_seeds, over, every):
        bt = run_backtest(opps, start=start, end=end, every_days=step, stage_history=hist, config=cfg)
        rows.append(bt.rows)
        dps.append(bt.deal_probabilities)
        widen += bt.recalibration["widen"].astype(float).tolist()
        for n in bt.notes:
            print(f"  {funnel}: {n}")
    if not rows:
        return None
    s = summarise(pd.concat(rows, ignore_index=True), pd.concat(dps, ignore_index=True))
    s.insert(0, "funnel", funnel)
    s["widen_mean"] = np.where(s["method"] == "model", np.mean(widen) if widen else np.nan, np.nan)
    s["seconds"] = time.perf_counter() - t0
    print(s.to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
    return s


def markdown(table: pd.DataFrame) -> str:
    def pct(v):
        return "–" if pd.isna(v) else f"{100 * v:.1f} %"

    def num(v, d):
        return "–" if pd.isna(v) else f"{v:.{d}f}"
    out = ["| funnel | method | n | MAPE | bias | P10–P90 coverage | per-deal Brier | ECE | widening |",
           "|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        out.append(f"| {r['funnel']} | {NAMES[r['method']]} | {r['n']} | {pct(r['mape'])} | {pct(r['bias'])} | "
                   f"{pct(r['coverage'])} | {num(r['brier'], 4)} | {num(r['ece'], 3)} | {num(r['widen_mean'], 2)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--funnels", nargs="+", default=["maven-opps", "maven-history", "synthetic", "ramping"],
                    choices=["maven-opps", "maven-history", "synthetic", "ramping"])
    ap.add_argument("--seeds", type=int, default=20, help="synthetic seeds")
    ap.add_argument("--ramp-seeds", type=int, default=5, help="ramping-funnel seeds")
    ap.add_argument("--maven-every", type=int, default=7, help="days between Maven snapshots")
    ap.add_argument("--synthetic-every", type=int, default=28, help="days between synthetic snapshots")
    ap.add_argument("--raw", action="store_true", help="no recalibration, no trend (before issue 16)")
    args = ap.parse_args(argv)
    np.seterr(all="ignore")
    over = RAW if args.raw else {}
    every = {"maven": args.maven_every, "synthetic": args.synthetic_every}
    parts = [backtest(f, args.seeds, args.ramp_seeds, over, every) for f in args.funnels]
    parts = [p for p in parts if p is not None]
    if parts:
        print()
        print(markdown(pd.concat(parts, ignore_index=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
