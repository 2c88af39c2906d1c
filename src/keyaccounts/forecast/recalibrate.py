"""Self-recalibration of the forecast's P10-P90 from its own replays before as_of.

The simulation's spread rests on modelling choices (independent deals, shock sizes, stage-exit
tables) that hold on some funnels and not others. So before forecasting as of D the forecaster
replays itself: at snapshots s = D - L - j * every (L = days from D to the end of the first
period, j = 0 .. recalibration_replays - 1), it forecasts the same horizon shifted to s (the
windows [s + (a - D), s + (b - D)) for each period [a, b) of the forecast, a clipped to D) from
the data before s, and each window whose end is on or before D is scored against the revenue
won in it, read from deals closed before D. Nothing on or after D is read.

Recalibration is split conformal on normalised scores (conformalised quantile regression):
score = max(lo - y, y - hi) / (hi - lo) with lo, hi the replay's P10, P90; with n scores the
widening Q is the ceil((n + 1) * 0.8)-th smallest (the finite-sample conformal rank for 80 %),
and the forecast's interval becomes [P10 - Q w, P90 + Q w] (w = P90 - P10 of its uncertain
part, the lower end never below the revenue already won). Q > 0 widens, Q < 0 narrows (to no
less than the median). Replays overlap in time, so they are not exchangeable and the
guarantee is approximate; the backtest measures what it gives.

Too little history (n below the rank, i.e. n < 4 for 80 %): the interval is not narrowed and
is widened to at least the normal-theory P1-P99 span (Q_SHORT) or the largest score seen,
whichever is wider, and `info` says so. Replays use fewer simulations (quantiles, not tails)
and, with a deal model, one model trained as of the earliest replay (a model trained later
would have read the outcomes the replays are scored on).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from statistics import NormalDist

import numpy as np
import pandas as pd

from ..config import ForecastConfig
from ..features.arrays import as_of_day, day_numbers
from .core import NotEnoughHistory, forecast_once
from .probability import DealModel, train_forecast_model

LEVEL = 0.8
_Z90 = NormalDist().inv_cdf(0.90)
#: Widening (in P10-P90 widths, per side) that turns a normal P10-P90 into its P1-P99.
Q_SHORT = (NormalDist().inv_cdf(0.99) - _Z90) / (2 * _Z90)


@dataclass(frozen=True)
class PeriodRecalibration:
    """One forecast period: replays scored (n), the share of them inside their raw P10-P90,
    the widening applied (Q, in P10-P90 widths per side) and whether history was short."""
    period: str
    n: int
    raw_coverage: float
    widen: float
    short: bool


@dataclass(frozen=True)
class Recalibration:
    """Per period recalibration, the replay snapshots run and notes (said in `info`)."""
    periods: list[PeriodRecalibration]
    replay_dates: list[str]
    notes: list[str]

    def info(self) -> dict:
        """The entries `run_forecast` adds to `info`."""
        return {"recalibration": "; ".join(self.notes),
                "recalibration_widen": {p.period: round(p.widen, 4) for p in self.periods},
                "recalibration_replays": {p.period: p.n for p in self.periods},
                "recalibration_raw_coverage": {p.period: p.raw_coverage for p in self.periods},
                "recalibration_short_history": [p.period for p in self.periods if p.short]}


def conformal_widen(scores: np.ndarray, level: float = LEVEL) -> tuple[float, bool]:
    """(Q, short): the conformal quantile of the scores, or the short-history widening."""
    s = np.sort(np.asarray(scores, float))
    n = len(s)
    rank = ceil((n + 1) * level)
    if rank <= n:
        return max(float(s[rank - 1]), -0.5), False
    return max(float(s[-1]) if n else Q_SHORT, Q_SHORT), True


def replay_windows(pt: pd.DataFrame, *, d0: int, snapshot: int) -> pd.DataFrame:
    """The forecast's period windows (from as_of) shifted to start at `snapshot` (day numbers)."""
    start = np.maximum(pt["start_day"].to_numpy(np.int64), d0) - d0 + snapshot
    end = pt["end_day"].to_numpy(np.int64) - d0 + snapshot
    def day(v):
        return pd.to_datetime(np.asarray(v, "int64").astype("datetime64[D]"))
    return pd.DataFrame({"period": pt["period"].to_numpy(), "period_start": day(start),
                         "period_end": day(end - 1), "start_day": start, "end_day": end})


def won_in_windows(opportunities: pd.DataFrame, *, as_of, windows: pd.DataFrame) -> np.ndarray:
    """Revenue won in each window [start_day, end_day), from deals closed before as_of."""
    d0 = as_of_day(as_of)
    cd = day_numbers(opportunities["closed_date"]).astype(np.float64)
    cd[opportunities["closed_date"].isna().to_numpy()] = np.inf
    won = (opportunities["outcome"] == "won").to_numpy() & (cd < d0)
    amt = opportunities["amount"].astype("float64").fillna(0.0).to_numpy()
    return np.array([amt[won & (cd >= a) & (cd < b)].sum()
                     for a, b in zip(windows["start_day"], windows["end_day"], strict=False)])


def replay_config(cfg: ForecastConfig) -> ForecastConfig:
    """The replays' settings: the forecast's own, with fewer draws: a replay only needs its
    P10 and P90, which 250 simulations (of the default 2000) place within a few percentiles,
    and it runs recalibration_replays times per forecast."""
    return cfg.model_copy(update={"recalibrate": False, "n_simulations": max(100, cfg.n_simulations // 8),
                                  "parameter_draws": min(cfg.parameter_draws, 5)})


def replay_scores(opportunities: pd.DataFrame, *, as_of, stage_history: pd.DataFrame | None,
                  config: ForecastConfig, pt: pd.DataFrame) -> tuple[list[list[tuple[float, bool]]], list[str]]:
    """Per forecast period, (score, inside raw P10-P90) of each replay scored on it; and the
    replay dates run (see the module docstring)."""
    d0 = as_of_day(as_of)
    first_len = int(pt["end_day"].iloc[0]) - d0
    snaps = [d0 - first_len - j * config.recalibration_every_days for j in range(config.recalibration_replays)]
    rcfg = replay_config(config)
    ends = pt["end_day"].to_numpy(np.int64) - d0
    dm = _replay_model(opportunities, stage_history=stage_history, config=config, snapshots=snaps, ends=ends, d0=d0)
    out: list[list[tuple[float, bool]]] = [[] for _ in range(len(pt))]
    ran = []
    for s in snaps:
        use = s + ends <= d0
        if not use.any():
            continue
        win = replay_windows(pt, d0=d0, snapshot=s)
        day = pd.Timestamp(np.datetime64(int(s), "D")).date()
        try:
            res = forecast_once(opportunities, as_of=day, stage_history=stage_history, config=rcfg,
                                deal_model=dm, windows=win)
        except NotEnoughHistory:
            continue
        ran.append(str(day))
        per = res.periods[res.periods["group"] == res.periods["group"].iloc[0]]
        y = won_in_windows(opportunities, as_of=as_of, windows=win)
        lo, hi = per["p10"].to_numpy(float), per["p90"].to_numpy(float)
        for k in np.flatnonzero(use):
            w = hi[k] - lo[k]
            if w > 0:   # a point forecast has no spread to rescale
                out[k].append((max(lo[k] - y[k], y[k] - hi[k]) / w, bool(lo[k] <= y[k] <= hi[k])))
    return out, ran


def _replay_model(opportunities, *, stage_history, config: ForecastConfig, snapshots: list[int],
                  ends: np.ndarray, d0: int) -> DealModel | None:
    """One deal model for all replays, trained as of the earliest replay scored (see module docstring)."""
    if config.probability == "stage":
        return None
    used = [s for s in snapshots if (s + ends <= d0).any()]
    if not used:
        return None
    day = pd.Timestamp(np.datetime64(int(min(used)), "D")).date()
    return train_forecast_model(opportunities, as_of=day, stage_history=stage_history,
                                stages=list(config.stage_order or []), config=config)


def recalibrate(opportunities: pd.DataFrame, *, as_of, stage_history: pd.DataFrame | None,
                config: ForecastConfig, pt: pd.DataFrame) -> Recalibration:
    """Replay, score and derive the per-period widening (see the module docstring)."""
    scores, ran = replay_scores(opportunities, as_of=as_of, stage_history=stage_history, config=config, pt=pt)
    per = []
    for k, sc in enumerate(scores):
        q, short = conformal_widen(np.array([v for v, _ in sc]))
        cov = float(np.mean([i for _, i in sc])) if sc else float("nan")
        per.append(PeriodRecalibration(str(pt["period"].iloc[k]), len(sc), cov, q, short))
    notes = [f"P10-P90 recalibrated from {len(ran)} replay(s) before as_of (split conformal, 80 %)"]
    for p in per:
        what = f"{p.period}: {p.n} replay(s) scored, raw coverage " + \
               (f"{p.raw_coverage:.0%}" if p.n else "n/a") + f", widened by {p.widen:+.2f} x width per side"
        if p.short:
            what += " (short history: widened to at least the P1-P99 span, never narrowed)"
        notes.append(what)
    return Recalibration(per, ran, notes)


def apply_recalibration(periods: pd.DataFrame, rec: Recalibration) -> pd.DataFrame:
    """The periods table with p10/p90 of every group widened by its period's Q (the p10 never
    below the revenue already won in the period)."""
    q = periods["period"].map({p.period: p.widen for p in rec.periods}).fillna(Q_SHORT).to_numpy(float)
    lo, hi = periods["p10"].to_numpy(float), periods["p90"].to_numpy(float)
    w = hi - lo
    out = periods.copy()
    out["p10"] = np.maximum(lo - q * w, periods["closed_won"].to_numpy(float))
    out["p90"] = np.maximum(hi + q * w, out["p10"].to_numpy(float))
    return out
