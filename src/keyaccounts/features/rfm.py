"""Recency, frequency, monetary value, windowed spend and RFM quintile scores."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .arrays import as_of_day, day_numbers, frame, purchase_days, ratio, txn_arrays

SCORE_COLUMNS = ("r_score", "f_score", "m_score")


def quintile_score(values: pd.Series | np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1-5: 1 + floor(5 * share of customers strictly worse). Ties share a score;
    NaN counts as the worst value."""
    v = np.asarray(values, dtype="float64")
    v = v if higher_is_better else -v
    v = np.where(np.isnan(v), -np.inf, v)
    n = len(v)
    if n == 0:
        return np.zeros(0, dtype="int64")
    worse = np.searchsorted(np.sort(v), v, side="left")
    return (1 + (5 * worse) // n).astype("int64")


def prospects(customers: pd.DataFrame | None, *, as_of) -> pd.Index:
    """Customers known from the customers table with signup_date before as_of."""
    if customers is None or "signup_date" not in customers.columns:
        return pd.Index([], name="customer_id", dtype="str")
    day = day_numbers(customers["signup_date"])
    ok = customers["signup_date"].notna().to_numpy() & (day < as_of_day(as_of))
    return pd.Index(customers.loc[ok, "customer_id"].astype("str").unique(), name="customer_id")


def rfm(txns: pd.DataFrame, *, as_of, windows_days: Sequence[int] = (30, 90, 365),
        customers: pd.DataFrame | None = None) -> pd.DataFrame:
    """RFM per customer from rows before `as_of`.

    One row per customer with any transaction before as_of, plus (when `customers` has
    signup_date) customers signed up before as_of without purchases (counts 0, recency NaN).
    - recency_days: days from the last positive purchase day to as_of (yesterday = 1)
    - frequency: distinct days with a positive purchase
    - monetary_total: net spend (returns subtract); monetary_avg = monetary_total / frequency
    - spend_{w}d / n_purchases_{w}d: net spend / purchase days in [as_of - w days, as_of)
    - r_score, f_score, m_score (1-5 quintiles, see quintile_score), rfm_score = r + f + m,
      rfm_code = 100 r + 10 f + m
    """
    a = txn_arrays(txns, as_of=as_of)
    pdays = purchase_days(a)
    freq = pdays.count()
    last = pdays.nth_from_end(0)
    total = a.sum_by(a.amount)
    cols: dict[str, np.ndarray] = {
        "recency_days": a.as_of - last,
        "frequency": freq,
        "monetary_total": total,
        "monetary_avg": ratio(total, freq),
    }
    for w in windows_days:
        cols[f"spend_{w}d"] = a.sum_by(a.amount, a.day >= a.as_of - w)
    for w in windows_days:
        cols[f"n_purchases_{w}d"] = pdays.count(a.as_of - w)
    out = frame(a.ids, a.seen(), cols)
    extra = prospects(customers, as_of=as_of).difference(out.index)
    if len(extra):
        fill = {c: (np.nan if c in ("recency_days", "monetary_avg") else 0) for c in out.columns}
        out = pd.concat([out, pd.DataFrame(fill, index=extra)]).sort_index()
        out.index.name = "customer_id"
        out["frequency"] = out["frequency"].astype("int64")
    out["r_score"] = quintile_score(out["recency_days"], higher_is_better=False)
    out["f_score"] = quintile_score(out["frequency"])
    out["m_score"] = quintile_score(out["monetary_total"])
    out["rfm_score"] = out["r_score"] + out["f_score"] + out["m_score"]
    out["rfm_code"] = 100 * out["r_score"] + 10 * out["f_score"] + out["m_score"]
    return out
