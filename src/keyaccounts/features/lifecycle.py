"""Lifecycle stage by rule: prospect / first-time / repeat / loyal / lapsed."""
from __future__ import annotations

import numpy as np
import pandas as pd

STAGES = ("prospect", "first-time", "repeat", "loyal", "lapsed")


def lifecycle_stage(rfm_features: pd.DataFrame, *, lapsed_after_days: int = 180,
                    loyal_min_purchases: int = 5) -> pd.Series:
    """Stage from `rfm` output (already as of a date), first matching rule wins:
    prospect (no purchase yet), lapsed (recency_days > lapsed_after_days), first-time
    (1 purchase day), loyal (>= loyal_min_purchases purchase days), repeat (otherwise)."""
    f = rfm_features["frequency"].to_numpy()
    r = rfm_features["recency_days"].to_numpy(dtype="float64")
    stage = np.select(
        [f == 0, r > lapsed_after_days, f == 1, f >= loyal_min_purchases],
        ["prospect", "lapsed", "first-time", "loyal"], default="repeat")
    return pd.Series(pd.Categorical(stage, categories=STAGES), index=rfm_features.index, name="lifecycle_stage")
