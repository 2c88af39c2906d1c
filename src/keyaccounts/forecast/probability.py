"""Per-deal P(won) from the calibrated deal-close model, for the funnel forecast.

The model (`models.deal.train_deal_model`: XGBoost on deal features, sigmoid-calibrated on the
newest training cutoff) is trained as of a date D on the tables cut to what was known at the
start of D (`models.deal.known_at`), so nothing dated D or later is read; it scores the deals
open at any as_of >= D (the backtest reuses a model for `model_retrain_days`). It answers
P(won within `model_horizon_days` of as_of); the forecast keeps the empirical stage-exit
timing and replaces only that event's probability (`couple`).

With fewer than MIN_WON won / MIN_LOST lost deals before D, or when the time split cannot be
made, the model is refused and the forecast falls back to the stage-exit probabilities, saying
why in `info['probability_note']`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import ForecastConfig
from ..errors import InputError
from ..features import Tables
from ..features.arrays import as_of_day


@dataclass
class DealModel:
    """A deal-close model trained as of `trained_as_of` (model None when refused; `reason` says
    why). `metrics`: its cross-fitted validation metrics (roc_auc, brier, ece, ...)."""
    trained_as_of: pd.Timestamp
    horizon_days: int
    model: Any | None
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    n_train: int = 0

    @property
    def usable(self) -> bool:
        return self.model is not None


def train_forecast_model(opportunities: pd.DataFrame, *, as_of, stage_history: pd.DataFrame | None,
                         stages: list[str], config: ForecastConfig) -> DealModel:
    """Train the deal model as of `as_of` on the tables as known at its start (see module docstring)."""
    from ..models.deal import NUMERIC_FEATURES, known_at, train_deal_model
    feats = tuple(config.model_features) if config.model_features else NUMERIC_FEATURES
    unknown = sorted(set(feats) - set(NUMERIC_FEATURES))
    if unknown:
        raise InputError(f"forecast.model_features has unknown deal features {unknown}; "
                         f"choose from {list(NUMERIC_FEATURES)}")
    past = known_at(Tables(transactions=None, opportunities=opportunities, stage_history=stage_history),
                    as_of=as_of, open_stages=stages)
    r = train_deal_model(past, as_of=as_of, horizon_days=config.model_horizon_days, open_stages=stages,
                         features=feats)
    ts = pd.Timestamp(as_of)
    if r.refused_reason:
        return DealModel(ts, config.model_horizon_days, None, reason=r.refused_reason, n_train=r.n_train)
    return DealModel(ts, config.model_horizon_days, r.model, metrics=dict(r.metrics), n_train=r.n_train)


def score_open_deals(dm: DealModel, opportunities: pd.DataFrame, *, as_of, stage_history: pd.DataFrame | None,
                     stages: list[str], index: pd.Index) -> np.ndarray:
    """P(won within dm.horizon_days of as_of) for the deals in `index` (open at as_of), from
    features read strictly before as_of. NaN for a deal the feature frame does not hold."""
    from ..models.deal import deal_frame, known_at
    if as_of_day(as_of) < as_of_day(dm.trained_as_of):
        raise ValueError(f"a deal model trained as of {dm.trained_as_of.date()} cannot score as of "
                         f"{pd.Timestamp(as_of).date()}: it has read later data")
    past = known_at(Tables(transactions=None, opportunities=opportunities, stage_history=stage_history),
                    as_of=as_of, open_stages=stages)
    X = deal_frame(past, as_of=as_of, open_stages=stages)
    if not len(X):
        return np.full(len(index), np.nan)
    p = pd.Series(dm.model.predict_proba(X)[:, 1], index=X.index.astype("str"))
    return p.reindex(pd.Index(index, dtype="str")).to_numpy(np.float64)


def couple(won: np.ndarray, p: np.ndarray, *, t_h: int, d0: int, rng, odds: np.ndarray | None = None,
           group: np.ndarray | None = None) -> np.ndarray:
    """Won days (sims x deals; inf = not won) with P(won before t_h) set to `p` per deal,
    timing kept from the simulated paths.

    Each path's event W = (won < t_h) is re-drawn as B ~ Bernoulli(p), shifted per simulation
    by the shared win-odds shock `odds` (odds-ratio multiplier) when given. A path whose B
    equals its W keeps its own won day; otherwise it takes the won day of a random path of the
    same deal with the other outcome (won before t_h, or not: later or never). A deal with no
    path won before t_h takes a random winning day of the deals in the same `group` (its
    stage), else of all deals, else a day uniform in [d0, t_h). NaN p: the paths are kept."""
    won = np.asarray(won, np.float64)
    s, n = won.shape
    pj = np.clip(np.where(np.isnan(p), 0.5, p), 0.0, 1.0)
    if odds is not None:
        ps = odds[:, None] * pj[None, :] / (1.0 - pj[None, :] + odds[:, None] * pj[None, :])
    else:
        ps = np.broadcast_to(pj, (s, n))
    w = won < t_h
    b = rng.random((s, n)) < ps
    b[:, np.isnan(p)] = w[:, np.isnan(p)]
    out = won.copy()
    k = w.sum(axis=0)
    order = np.argsort(~w, axis=0, kind="stable")       # per deal: rows won before t_h first
    u = rng.random((s, n))
    # to "won before t_h"
    need = b & ~w
    have = need & (k[None, :] > 0)
    r, c = np.nonzero(have)
    out[r, c] = won[order[np.floor(u[r, c] * k[c]).astype(np.int64), c], c]
    r, c = np.nonzero(need & (k[None, :] == 0))
    if len(r):
        out[r, c] = _pooled_days(won, w, c, group, d0=d0, t_h=t_h, rng=rng)
    # to "not won before t_h"
    need = ~b & w
    m = s - k
    r, c = np.nonzero(need & (m[None, :] > 0))
    out[r, c] = won[order[k[c] + np.floor(u[r, c] * m[c]).astype(np.int64), c], c]
    r, c = np.nonzero(need & (m[None, :] == 0))
    out[r, c] = np.inf
    return out


def _pooled_days(won: np.ndarray, w: np.ndarray, cols: np.ndarray, group: np.ndarray | None, *, d0: int,
                 t_h: int, rng) -> np.ndarray:
    """Won days for deals without a winning path of their own (see `couple`)."""
    out = np.empty(len(cols))
    g = np.zeros(won.shape[1], np.int64) if group is None else np.asarray(group, np.int64)
    all_days = won[w]
    for gv in np.unique(g[cols]):
        sel = g[cols] == gv
        days = won[:, g == gv][w[:, g == gv]]
        if not len(days):
            days = all_days
        if len(days):
            out[sel] = days[rng.integers(0, len(days), int(sel.sum()))]
        else:
            out[sel] = d0 + np.floor(rng.random(int(sel.sum())) * max(t_h - d0, 1))
    return out


def prepare_probabilities(opportunities: pd.DataFrame, *, as_of, stage_history: pd.DataFrame | None,
                          stages: list[str], config: ForecastConfig, index: pd.Index,
                          deal_model: DealModel | None = None) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Model P(won within model_horizon_days) per deal in `index`, or None for the stage-exit
    probabilities; and the info entries saying which was used and why. A refused model falls
    back to the stage exits, except that probability 'model' without a given `deal_model` (a
    single forecast, not a backtest snapshot) raises InputError with the reason."""
    mode = config.probability
    if mode == "stage":
        return None, {"probability": "stage", "probability_note": "empirical stage exits (forecast.probability: stage)"}
    dm = deal_model or train_forecast_model(opportunities, as_of=as_of, stage_history=stage_history,
                                            stages=stages, config=config)
    if not dm.usable:
        if mode == "model" and deal_model is None:
            raise InputError(f"forecast.probability is 'model' but the deal model cannot be trained: {dm.reason} "
                             "(use probability: auto to fall back to the stage-exit probabilities)")
        return None, {"probability": "stage",
                      "probability_note": f"deal model refused ({dm.reason}); empirical stage exits used"}
    p = score_open_deals(dm, opportunities, as_of=as_of, stage_history=stage_history, stages=stages, index=index)
    info = {"probability": "model",
            "probability_note": (f"calibrated deal model trained as of {dm.trained_as_of.date()} on {dm.n_train} "
                                 f"deal snapshots: P(won within {dm.horizon_days} d); timing from stage exits"),
            "deal_model_trained_as_of": str(dm.trained_as_of.date()), "deal_model_horizon_days": dm.horizon_days,
            "deal_model_val_auc": float(dm.metrics.get("roc_auc", np.nan)),
            "deal_model_val_ece": float(dm.metrics.get("ece", np.nan)),
            "deal_model_unscored": int(np.isnan(p).sum())}
    return p, info
