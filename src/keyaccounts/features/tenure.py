"""Tenure: how long we have known the customer, as of a date."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .arrays import day_numbers, frame, purchase_days, txn_arrays
from .rfm import prospects


def tenure(txns: pd.DataFrame, customers: pd.DataFrame | None = None, *, as_of) -> pd.DataFrame:
    """Per customer (same population as `rfm`):
    - tenure_days: as_of minus the earliest of signup_date (if before as_of) and the first
      positive purchase; first transaction of any kind when neither is known
    - first_purchase_days_ago: as_of minus the first positive purchase day (NaN if none)
    - age_at_first_purchase_days: first purchase minus signup (NaN unless both known)
    """
    a = txn_arrays(txns, as_of=as_of)
    first_buy = purchase_days(a).first()
    first_any = np.full(a.n, np.inf)
    np.minimum.at(first_any, a.code, a.day.astype("float64"))
    out = frame(a.ids, a.seen(), {"first_buy": first_buy, "first_any": first_any})
    out = out.reindex(out.index.union(prospects(customers, as_of=as_of)))
    out.index.name = "customer_id"
    signup = pd.Series(np.nan, index=out.index)
    if customers is not None and "signup_date" in customers.columns:
        c = customers.dropna(subset=["signup_date"])
        sd = pd.Series(day_numbers(c["signup_date"]).astype("float64"), index=c["customer_id"].astype("str"))
        sd = sd[sd < a.as_of]
        signup = sd.groupby(level=0).min().reindex(out.index)
    start = np.fmin(signup.to_numpy(), out["first_buy"].to_numpy())
    start = np.where(np.isnan(start), out["first_any"].to_numpy(), start)
    res = pd.DataFrame({
        "tenure_days": a.as_of - start,
        "first_purchase_days_ago": a.as_of - out["first_buy"].to_numpy(),
        "age_at_first_purchase_days": out["first_buy"].to_numpy() - signup.to_numpy(),
    }, index=out.index)
    return res
