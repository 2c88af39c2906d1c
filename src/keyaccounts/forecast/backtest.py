"""Backtest: replay the forecast at past snapshots and compare with the won revenue that closed.

At each snapshot date only what was known then is read (`run_forecast` reads rows strictly
before its as_of: deals created before it, outcomes closed before it, stage history before
it), and each forecast period is compared with the revenue of deals won with a close date in
that period, from the full table. A period is scored only when it ends on or before `end`, so
its actual is complete within the data given.

With forecast.probability model/auto the deal model is trained as of a snapshot (on the tables
as known then) and reused for the snapshots of the next `model_retrain_days` days (it never
scores a snapshot before its training date); refused trainings are retried at the next snapshot.
Calibration: for the deals open at each snapshot whose forecast periods all end by `end`, the
probability that fed the forecast (P(won within those periods), `close_probability`) against
whether the deal was won in them: Brier, ECE and a reliability table (`calibration`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config import ForecastConfig, StageConfig
from ..errors import InputError
from ..models.metrics import expected_calibration_error
from .api import run_forecast
from .core import ALL, NotEnoughHistory
from .probability import DealModel, train_forecast_model

METHODS = ("model", "stage_weighted", "naive")
CALIBRATION_COLUMNS = ["bin", "p_low", "p_high", "n", "mean_probability", "observed_rate"]
ROW_COLUMNS = ["snapshot_date", "period", "periods_ahead", "method", "forecast", "p10", "p90", "actual",
               "error", "abs_pct_error", "inside"]
RECAL_COLUMNS = ["snapshot_date", "period", "widen", "replays", "short_history"]


@dataclass
class BacktestResult:
    """rows: one per snapshot x period x method (ROW_COLUMNS); summary: per method n, mape
    (mean |forecast - actual| / actual), bias (mean (forecast - actual) / actual), coverage
    (share of actuals inside P10-P90; NaN for a method without an interval), wape, and for
    'model' brier / ece of the per-deal probabilities; skipped: snapshot dates with nothing
    closed before them (no forecast possible); calibration: reliability table (CALIBRATION_COLUMNS)
    of the per-deal probabilities that fed our forecast; deal_probabilities: one row per
    snapshot x deal scored (snapshot_date, opportunity_id, probability, source, won);
    recalibration: per snapshot x forecast period, the P10-P90 widening applied (widen, in
    widths per side), the replays it rests on and whether history was short (RECAL_COLUMNS)."""
    rows: pd.DataFrame
    summary: pd.DataFrame
    skipped: list[pd.Timestamp] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CALIBRATION_COLUMNS))
    deal_probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)
    recalibration: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RECAL_COLUMNS))


def actual_won(opportunities: pd.DataFrame, start, end) -> float:
    """Revenue (amount) of deals won with closed_date in [start, end] (inclusive days)."""
    if "closed_date" not in opportunities.columns or "outcome" not in opportunities.columns:
        raise InputError("a backtest needs closed_date and outcome (or won/lost stages) in the opportunities")
    cd = opportunities["closed_date"]
    m = (opportunities["outcome"] == "won").to_numpy() & cd.notna().to_numpy() \
        & (cd >= pd.Timestamp(start)).to_numpy() & (cd < pd.Timestamp(end) + pd.Timedelta(days=1)).to_numpy()
    return float(opportunities.loc[m, "amount"].sum())


def calibration_table(p: np.ndarray, won: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table: equal-width bins of p over [0, 1] (the last one closed), per bin the
    deals n, their mean probability and the share won; empty bins are left out."""
    p, won = np.asarray(p, float), np.asarray(won, float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    rows = [{"bin": i + 1, "p_low": edges[i], "p_high": edges[i + 1], "n": int((b == i).sum()),
             "mean_probability": float(p[b == i].mean()), "observed_rate": float(won[b == i].mean())}
            for i in range(n_bins) if (b == i).any()]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def summarise(rows: pd.DataFrame, deal_probabilities: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: n, mape, bias, coverage, wape, and brier / ece of the per-deal probabilities
    for 'model' (see BacktestResult)."""
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
                    if len(r) and r["actual"].sum() > 0 else np.nan, "brier": np.nan, "ece": np.nan})
    df = pd.DataFrame(out)
    dp = deal_probabilities
    if dp is not None and len(dp):
        p, y = dp["probability"].to_numpy(float), dp["won"].to_numpy(float)
        df.loc[df["method"] == "model", ["brier", "ece"]] = [float(np.mean((p - y) ** 2)),
                                                             expected_calibration_error(y, p)]
    return df


def _won_between(opportunities: pd.DataFrame, ids: pd.Index, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """1 for each deal in `ids` won with closed_date in [start, end] (inclusive days), else 0."""
    o = opportunities.set_index(opportunities["opportunity_id"].astype("str"))
    o = o[~o.index.duplicated()].reindex(pd.Index(ids, dtype="str"))
    cd = o["closed_date"]
    m = (o["outcome"] == "won").to_numpy() & cd.notna().to_numpy() & (cd >= start).to_numpy() \
        & (cd < end + pd.Timedelta(days=1)).to_numpy()
    return m.astype(np.int64)


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
    rows, skipped, dps, recal = [], [], [], []
    actual_cache: dict[str, float] = {}
    stages = list(cfg.stage_order or StageConfig().open)
    dm: DealModel | None = None
    n_trained = n_refused = 0
    for i, snap in enumerate(snaps):
        if progress:
            progress(i, len(snaps), snap)
        if cfg.probability != "stage" and not (dm is not None and dm.usable and dm.trained_as_of <= snap
                                                and (snap - dm.trained_as_of).days < cfg.model_retrain_days):
            dm = train_forecast_model(opportunities, as_of=snap.date(), stage_history=stage_history, stages=stages,
                                      config=cfg)
            n_trained += dm.usable
            n_refused += not dm.usable
        try:
            res = run_forecast(opportunities, as_of=snap.date(), stage_history=stage_history, period=period,
                               periods=periods, config=cfg, deal_model=dm)
        except NotEnoughHistory:
            skipped.append(snap)
            continue
        per = res.periods[res.periods["group"] == ALL].reset_index(drop=True)
        short = set(res.info.get("recalibration_short_history", []))
        recal += [{"snapshot_date": snap, "period": k, "widen": q, "replays": res.info["recalibration_replays"][k],
                   "short_history": k in short} for k, q in res.info.get("recalibration_widen", {}).items()]
        if len(per) and per["period_end"].max() <= e and len(res.deals):
            d = res.deals
            dps.append(pd.DataFrame({
                "snapshot_date": snap, "opportunity_id": d["opportunity_id"].astype("str").to_numpy(),
                "probability": d["close_probability"].to_numpy(float), "source": res.info.get("probability", "stage"),
                "won": _won_between(opportunities, pd.Index(d["opportunity_id"]), snap, per["period_end"].max())}))
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
    dp = pd.concat(dps, ignore_index=True) if dps else pd.DataFrame(
        columns=["snapshot_date", "opportunity_id", "probability", "source", "won"])
    if cfg.probability != "stage":
        n_model = int(dp.loc[dp["source"] == "model", "snapshot_date"].nunique()) if len(dp) else 0
        notes.append(f"deal probabilities: deal model trained {n_trained} time(s) (reused up to "
                     f"{cfg.model_retrain_days} d), refused {n_refused} time(s) (stage exits used then); "
                     f"{n_model} of {dp['snapshot_date'].nunique() if len(dp) else 0} calibrated snapshots used the model")
    summary = summarise(df, dp)
    cal = calibration_table(dp["probability"].to_numpy(float), dp["won"].to_numpy(float)) if len(dp) else \
        pd.DataFrame(columns=CALIBRATION_COLUMNS)
    if len(dp):
        m = summary.set_index("method").loc["model"]
        notes.append(f"per-deal calibration ({len(dp)} deal-snapshots, P(won within the forecast periods)): "
                     f"Brier {m['brier']:.4f}, ECE {m['ece']:.4f}, mean probability {dp['probability'].mean():.3f} "
                     f"vs won {dp['won'].mean():.3f}")
    rc = pd.DataFrame(recal, columns=RECAL_COLUMNS)
    if len(rc):
        notes.append(f"recalibration: P10-P90 widened by {rc['widen'].mean():+.2f} widths per side on average "
                     f"(min {rc['widen'].min():+.2f}, max {rc['widen'].max():+.2f}); short history at "
                     f"{int(rc['short_history'].sum())} of {len(rc)} snapshot-periods")
    return BacktestResult(rows=df, summary=summary, skipped=skipped, notes=notes, calibration=cal,
                          deal_probabilities=dp, recalibration=rc)


def backtest_chart(rows: pd.DataFrame, title: str = "forecast backtest"):
    """Figure: per snapshot, each method's forecast of the snapshot's own period, our P10-P90
    band, and the actual won revenue of that period (dashed)."""
    from ..plots import new_figure
    fig, ax = new_figure((10, 5))
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
