"""Labels: what happens in [as_of, as_of + horizon). The only module that looks forward."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .features.arrays import as_of_day, day_numbers, money_sum


def customer_labels(txns: pd.DataFrame, *, as_of, horizon_days: int, index: pd.Index) -> pd.DataFrame:
    """For each customer in `index` (the feature population):
    - churned: 1 if no positive purchase in [as_of, as_of + horizon_days), else 0
    - future_value: net spend in that window (returns subtract)
    - future_purchase_days: distinct positive purchase days in that window
    """
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    d0 = as_of_day(as_of)
    day = day_numbers(txns["timestamp"])
    win = (day >= d0) & (day < d0 + horizon_days)
    w = txns.loc[win, ["customer_id", "amount"]].assign(day=day[win])
    ids = w["customer_id"].astype("str")
    code, keys = pd.factorize(ids)  # net spend is money: summed exactly (money_sum), any row order
    known = code >= 0
    value = pd.Series(money_sum(code[known], w["amount"].to_numpy("float64")[known], len(keys)), index=keys)
    pos = w[w["amount"] > 0]
    pdays = pos.groupby(pos["customer_id"].astype("str"))["day"].nunique()
    out = pd.DataFrame(index=pd.Index(index, name="customer_id"))
    out["future_purchase_days"] = pdays.reindex(out.index).fillna(0).astype("int64")
    out["churned"] = (out["future_purchase_days"] == 0).astype("int64")
    out["future_value"] = value.reindex(out.index).fillna(0.0).astype("float64")
    return out[["churned", "future_value", "future_purchase_days"]]


def deal_labels(opps: pd.DataFrame, *, as_of, horizon_days: int, index: pd.Index) -> pd.DataFrame:
    """For each opportunity in `index` (open at as_of): won_within_horizon = 1 if it was won
    with closed_date in [as_of, as_of + horizon_days); closed_within_horizon likewise for any
    outcome."""
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    d0 = as_of_day(as_of)
    o = opps.set_index(opps["opportunity_id"].astype("str")).reindex(pd.Index(index, name="opportunity_id"))
    if "closed_date" in o.columns:
        cd = day_numbers(o["closed_date"])
        in_win = o["closed_date"].notna().to_numpy() & (cd >= d0) & (cd < d0 + horizon_days)
    else:
        in_win = np.zeros(len(o), bool)
    won = (o["outcome"] == "won").to_numpy() if "outcome" in o.columns else np.zeros(len(o), bool)
    return pd.DataFrame({"won_within_horizon": (in_win & won).astype("int64"),
                         "closed_within_horizon": in_win.astype("int64")}, index=o.index)
