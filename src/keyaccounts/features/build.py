"""Join the feature families into one frame per customer, as of a date."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..config import FeatureConfig
from .credit import credit, returns
from .growth import growth
from .lifecycle import lifecycle_stage
from .margin import margin
from .rfm import rfm
from .tenure import tenure


@dataclass(frozen=True)
class Tables:
    """Canonical tables (see schemas). Only transactions is required."""

    transactions: pd.DataFrame
    customers: pd.DataFrame | None = None
    invoices: pd.DataFrame | None = None
    opportunities: pd.DataFrame | None = None
    stage_history: pd.DataFrame | None = None
    opportunity_snapshots: pd.DataFrame | None = None   # the reps' forecast calls over time (forecast only)
    targets: pd.DataFrame | None = None                 # revenue target per owner and period (forecast only)


# Families whose missing rows mean "nothing happened" rather than "unknown".
_ZERO_FILL = ("n_returns", "n_invoices", "open_balance", "overdue_balance")


def build_features(tables: Tables, *, as_of, config: FeatureConfig | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> pd.DataFrame:
    """All customer feature families as of `as_of`, indexed by customer_id (sorted).

    Population: customers with any transaction before as_of, plus customers signed up
    before as_of (prospects). Columns from invoices/cost appear only when those exist.
    `progress(family, done, total)`, when given, is called before each family with the number
    already finished (0..total-1), and once more at the end with done == total (and the last
    family's name). It only observes: the result is the same with or without it.
    """
    cfg = config or FeatureConfig()
    t, c = tables.transactions, tables.customers
    families: list[tuple[str, Callable[[], pd.DataFrame]]] = [
        ("rfm", lambda: rfm(t, as_of=as_of, windows_days=cfg.windows_days, customers=c)),
        ("tenure", lambda: tenure(t, c, as_of=as_of)),
        ("growth", lambda: growth(t, as_of=as_of, window_days=cfg.growth_window_days, slope_months=cfg.slope_months)),
        ("returns", lambda: returns(t, as_of=as_of)),
        ("margin", lambda: margin(t, as_of=as_of)),
    ]
    if tables.invoices is not None:
        families.append(("credit", lambda: credit(tables.invoices, c, as_of=as_of,
                                                  overdue_threshold_days=cfg.overdue_threshold_days)))
    total = len(families) + 1  # + the lifecycle stage, derived from the joined frame
    tick = progress or (lambda family, done, n: None)
    frames = []
    for i, (name, compute) in enumerate(families):
        tick(name, i, total)
        frames.append(compute())
    base, parts = frames[0], frames[1:]
    out = base.join([p.reindex(base.index) for p in parts])
    for col in out.columns:
        if col in _ZERO_FILL or col.startswith("n_overdue_"):
            out[col] = out[col].fillna(0)
            if col.startswith("n_"):  # counts stay integers whether or not a fill happened
                out[col] = out[col].astype("int64")
    tick("lifecycle", total - 1, total)
    out["lifecycle_stage"] = lifecycle_stage(out, lapsed_after_days=cfg.lifecycle.lapsed_after_days,
                                             loyal_min_purchases=cfg.lifecycle.loyal_min_purchases)
    tick("lifecycle", total, total)
    return out
