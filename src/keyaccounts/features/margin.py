"""Profit contribution, when transactions carry a cost."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .arrays import frame, ratio, txn_arrays


def margin(txns: pd.DataFrame, *, as_of) -> pd.DataFrame:
    """Per customer with rows before `as_of`, over rows whose cost is known (cost is the row's
    total cost, same sign convention as amount):
    - margin_total = sum(amount - cost); margin_rate = margin_total / sum(amount) (NaN if <= 0)
    Without a cost column: an empty frame (no columns) on the same index.
    """
    if "cost" not in txns.columns:
        a = txn_arrays(txns, as_of=as_of)
        return frame(a.ids, a.seen(), {})
    a = txn_arrays(txns, as_of=as_of, columns=("cost",))
    cost = a.extra["cost"]
    known = ~np.isnan(cost)
    m = a.sum_by(a.amount - np.where(known, cost, 0.0), known)
    rev = a.sum_by(a.amount, known)
    has = np.bincount(a.code[known], minlength=a.n) > 0
    return frame(a.ids, a.seen(), {"margin_total": np.where(has, m, np.nan), "margin_rate": ratio(m, rev)})
