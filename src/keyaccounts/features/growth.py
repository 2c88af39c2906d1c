"""Growth: recent vs prior spend, monthly spend slope, purchase-interval trend."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .arrays import frame, purchase_days, ratio, txn_arrays


def growth(txns: pd.DataFrame, *, as_of, window_days: int = 90, slope_months: int = 12) -> pd.DataFrame:
    """Per customer with rows before `as_of` (w = window_days):
    - spend_prior_{w}d: net spend in [as_of - 2w, as_of - w)
    - spend_growth_ratio_{w}d = spend in [as_of - w, as_of) / spend_prior (NaN if prior <= 0)
    - spend_growth_diff_{w}d = recent - prior
    - spend_slope_monthly: least-squares slope of net spend per 30-day month over the last
      `slope_months` months, counting only months since the customer's first row
      (month 0 = [as_of - 30, as_of)); positive = growing; NaN with fewer than 2 months
    - interval_mean_days: (last - first purchase day) / (frequency - 1), frequency >= 2
    - interval_last_days: gap between the last two purchase days
    - interval_trend_ratio: interval_last / mean of the earlier gaps (> 1 = slowing), freq >= 3
    - recency_to_interval_ratio: days since last purchase / interval_mean
    """
    a = txn_arrays(txns, as_of=as_of)
    recent = a.sum_by(a.amount, a.day >= a.as_of - window_days)
    prior = a.sum_by(a.amount, (a.day >= a.as_of - 2 * window_days) & (a.day < a.as_of - window_days))

    month = (a.as_of - 1 - a.day) // 30
    inside = month < slope_months
    sy = a.sum_by(a.amount, inside)
    sxy = -a.sum_by(a.amount * month, inside)  # x = -month: later months are larger x
    first_any = np.full(a.n, np.iinfo(np.int64).max)
    np.minimum.at(first_any, a.code, a.day)
    k = np.minimum(slope_months, (a.as_of - 1 - first_any) // 30 + 1).astype("float64")
    sx = -k * (k - 1) / 2
    sxx = (k - 1) * k * (2 * k - 1) / 6
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(k >= 2, (k * sxy - sx * sy) / (k * sxx - sx * sx), np.nan)

    p = purchase_days(a)
    freq = p.count()
    first, last, second_last = p.first(), p.nth_from_end(0), p.nth_from_end(1)
    mean_iv = ratio(last - first, freq - 1.0)
    earlier_mean = ratio(second_last - first, freq - 2.0)
    cols = {
        f"spend_prior_{window_days}d": prior,
        f"spend_growth_ratio_{window_days}d": ratio(recent, prior),
        f"spend_growth_diff_{window_days}d": recent - prior,
        "spend_slope_monthly": slope,
        "interval_mean_days": mean_iv,
        "interval_last_days": np.where(freq >= 2, last - second_last, np.nan),
        "interval_trend_ratio": np.where(freq >= 3, ratio(last - second_last, earlier_mean), np.nan),
        "recency_to_interval_ratio": ratio(a.as_of - last, mean_iv),
    }
    return frame(a.ids, a.seen(), cols)
