"""Training snapshots: features at several cutoffs, each labelled by the next `horizon` days.

Cutoffs are as_of - H, as_of - H - step, ... so every label window [c, c + H) ends on or
before as_of: nothing on or after as_of is read. The latest cutoff is the validation fold.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .config import FeatureConfig
from .features import Tables, build_features, deals
from .features.arrays import day_numbers
from .labels import customer_labels, deal_labels


def cutoffs(*, as_of, horizon_days: int, step_days: int, max_snapshots: int,
            earliest: dt.date | pd.Timestamp, min_history_days: int = 0) -> list[pd.Timestamp]:
    """Cutoffs newest first: as_of - H - k*step for k = 0.., not before earliest + min_history."""
    if step_days <= 0 or max_snapshots <= 0:
        raise ValueError("step_days and max_snapshots must be positive")
    first = pd.Timestamp(as_of) - pd.Timedelta(days=horizon_days)
    floor = pd.Timestamp(earliest) + pd.Timedelta(days=min_history_days)
    out = [first - pd.Timedelta(days=k * step_days) for k in range(max_snapshots)]
    return [c for c in out if c >= floor]


def earliest_date(txns: pd.DataFrame) -> pd.Timestamp:
    return pd.Timestamp(np.datetime64(int(day_numbers(txns["timestamp"]).min()), "D"))


def customer_snapshots(tables: Tables, *, cuts: list[pd.Timestamp], horizon_days: int,
                       config: FeatureConfig | None = None, population: str = "purchasers") -> pd.DataFrame:
    """Stacked features + labels, one row per (cutoff, customer); index (cutoff, customer_id).

    population 'purchasers': customers with a positive purchase before the cutoff;
    'all': everyone in the feature population (prospects included).
    """
    parts = []
    for c in cuts:
        f = build_features(tables, as_of=c.date(), config=config)
        if population == "purchasers":
            f = f[f["frequency"] > 0]
        y = customer_labels(tables.transactions, as_of=c.date(), horizon_days=horizon_days, index=f.index)
        parts.append(pd.concat({c: f.join(y)}, names=["cutoff"]))
    if not parts:
        raise ValueError("no training cutoffs: history too short for this horizon")
    return pd.concat(parts)


def deal_snapshots(tables: Tables, *, cuts: list[pd.Timestamp], horizon_days: int, open_stages: list[str],
                   owner_prior: float = 10.0) -> pd.DataFrame:
    """Stacked deal features + labels over deals open at each cutoff; index (cutoff, opportunity_id)."""
    parts = []
    for c in cuts:
        f = deals(tables.opportunities, as_of=c.date(), open_stages=open_stages,
                  stage_history=tables.stage_history, txns=tables.transactions, owner_prior=owner_prior)
        if len(f) == 0:
            continue
        y = deal_labels(tables.opportunities, as_of=c.date(), horizon_days=horizon_days, index=f.index)
        parts.append(pd.concat({c: f.join(y)}, names=["cutoff"]))
    if not parts:
        raise ValueError("no open deals at any training cutoff")
    return pd.concat(parts)
