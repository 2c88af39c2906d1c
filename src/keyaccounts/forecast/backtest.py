"""Backtest: replay the forecast at past snapshots and compare with the won revenue that closed.

At each snapshot date only what was known then is read (`run_forecast` reads rows strictly
before its as_of: deals created before it, outcomes closed before it, stage history before
it), and each forecast period is compared with the revenue of deals won with a close date in
that period, from the full table. A period is scored only when it ends on or before `end`, so
its actual is complete within the data given.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config import ForecastConfig
from ..errors import InputError
from .core import ALL, NotEnoughHistory, run_forecast

METHODS = ("model", "stage_weighted", "naive")
ROW_COLUMNS = ["snapshot_date", "period", "periods_ahead", "method", "forecast", "p10", "p90", "actual",
               "error", "abs_pct_error", "inside"]


@dataclass
class BacktestResult:
    """rows: one per snapshot x period x method (ROW_COLUMNS); summary: per method n, mape
    (mean |forecast - actual| / actual), bias (mean (forecast - actual) / actual), coverage
    (share of actuals inside P10-P90; NaN for a method without an interval), wape;
    skipped: snapshot dates with nothing closed before them (no forecast possible)."""
    rows: pd.DataFrame
    summary: pd.DataFrame
    skipped: list[pd.Timestamp] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def actual_won(opportunities: pd.DataFrame, start, end) -> float:
    """Revenue (amount) of deals won with closed_date in [start, end] (inclusive days)."""
    if "closed_date" not in opportunities.columns or "outcome" not in opportunities.columns:
        raise InputError("a backtest needs closed_date and outcome (or won/lost stages) in the opportunities")
    cd = opportunities["closed_date"]
    m = (opportunities["outcome"] == "won").to_numpy() & cd.notna().to_numpy() \
        & (cd >= pd.Timestamp(start)).to_numpy() & (cd < pd.Timestamp(end) + pd.Timedelta(days=1)).to_numpy()
    return float(opportunities.loc[m, "amount"].sum())


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: n, mape, bias, coverage, wape (see BacktestResult)."""
    out = []
    for m in METHODS:
        r = rows[rows["method"] == m]
        pos = r["actual"] > 0
        rel = (r.loc[pos, "forecast"] - r.loc[pos, "actual"]) / r.loc[pos, "actual"]
        inside = r["inside"].dropna()
        out.append({"method": m, "n": int(len(r)), "mape": float(rel.abs().mean()) if len(rel) else np.nan,
                    "bias": float(rel.mean()) if len(rel) else np.nan,
                    "coverage": float(inside.astype(float).mean()) if len(inside) else np.nan,
                    "wape": float((r["forecast"] - r["actual"]).abs().sum() / r["actual"].sum())
                    if len(r) and r["actual"].sum() > 0 else np.nan})
    return pd.DataFrame(out)


def run_backtest(opportunities: pd.DataFrame, *, start, end, every_days: int = 7, period: str | None = None,
                 stage_history: pd.DataFrame | None = None, config: ForecastConfig | None = None,
                 periods: int | None = None, progress=None) -> BacktestResult:
    """Forecast at snapshots start, start + every_days, ... <= end and score each of the
    `periods` (default config.backtest_periods) periods from the snapshot's own one that end
    on or before `end` against actual won revenue; for our forecast ('model'), the
    stage-weighted pipeline and the naive 'same as last period'."""
    cfg = config or ForecastConfig()
    period = period or cfg.period
    periods = periods or cfg.backtest_periods
    if every_days < 1:
        raise InputError("--every must be at least 1 day")
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if s > e:
        raise InputError("--from must be on or before --to")
    snaps = pd.date_range(s, e, freq=f"{every_days}D")
    rows, skipped = [], []
    actual_cache: dict[str, float] = {}
    for i, snap in enumerate(snaps):
        if progress:
            progress(i, len(snaps), snap)
        try:
            res = run_forecast(opportunities, as_of=snap.date(), stage_history=stage_history, period=period,
                               periods=periods, config=cfg)
        except NotEnoughHistory:
            skipped.append(snap)
            continue
        per = res.periods[res.periods["group"] == ALL].reset_index(drop=True)
        for k, p in per.iterrows():
            if p["period_end"] > e:
                continue
            if p["period"] not in actual_cache:
                actual_cache[p["period"]] = actual_won(opportunities, p["period_start"], p["period_end"])
            a = actual_cache[p["period"]]
            for method, f, lo, hi in (("model", p["expected"], p["p10"], p["p90"]),
                                      ("stage_weighted", p["stage_weighted"], p["stage_weighted_p10"],
                                       p["stage_weighted_p90"]),
                                      ("naive", p["naive"], np.nan, np.nan)):
                rows.append({"snapshot_date": snap, "period": p["period"], "periods_ahead": k, "method": method,
                             "forecast": f, "p10": lo, "p90": hi, "actual": a, "error": f - a,
                             "abs_pct_error": abs(f - a) / a if a > 0 else np.nan,
                             "inside": (bool(lo <= a <= hi) if np.isfinite(lo) and np.isfinite(hi) else None)})
    df = pd.DataFrame(rows, columns=ROW_COLUMNS)
    df["inside"] = df["inside"].astype("boolean")
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} snapshot(s) skipped, nothing closed before them "
                     f"({skipped[0].date()} .. {skipped[-1].date()})")
    return BacktestResult(rows=df, summary=summarise(df), skipped=skipped, notes=notes)


def backtest_chart(rows: pd.DataFrame, title: str = "forecast backtest"):
    """Figure: per snapshot, each method's forecast of the snapshot's own period, our P10-P90
    band, and the actual won revenue of that period (dashed)."""
    from ..plots import _plt
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 5))
    r0 = rows[rows["periods_ahead"] == 0]
    colors = {"model": "tab:blue", "stage_weighted": "tab:orange", "naive": "tab:green"}
    for m in METHODS:
        r = r0[r0["method"] == m].sort_values("snapshot_date")
        if not len(r):
            continue
        ax.plot(r["snapshot_date"], r["forecast"], marker=".", lw=1.2, color=colors[m], label=m)
        if m == "model":
            ax.fill_between(r["snapshot_date"], r["p10"].astype(float), r["p90"].astype(float), color=colors[m],
                            alpha=0.2, label="model P10-P90")
    act = r0[r0["method"] == "model"].sort_values("snapshot_date")
    for per, g in act.groupby("period", sort=False):
        ax.plot(g["snapshot_date"], g["actual"], ls="--", color="black", lw=1.5,
                label="actual (period won)" if per == act["period"].iloc[0] else None)
    ax.set(title=title, xlabel="snapshot date", ylabel="won revenue of the snapshot's period")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
