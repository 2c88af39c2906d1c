"""Peer potential (whitespace): what an account could spend, judged from its segment's best spenders.

An account's wallet is not in any table, but accounts of the same kind (size, industry, region)
that already buy a lot show what such an account can spend with us. The potential is a high
percentile of the peers' run-rate, and the headroom is what the account leaves on the table.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .arrays import frame, txn_arrays
from .registry import names
from .rfm import prospects

DAYS_PER_YEAR = 365.0


def run_rate(txns: pd.DataFrame, customers: pd.DataFrame | None = None, *, as_of, window_days: int = 365,
             min_active_days: int = 90) -> pd.Series:
    """run_rate_spend_annual: net spend in [as_of - window_days, as_of), per year of the time the
    account was active in that window (days since its first row, clipped to [min_active_days,
    window_days]), floored at 0. Annualising over the active days keeps a young account's rate
    comparable with an old one's; the floor keeps one early order from reading as a huge rate.
    Prospects (signed up before as_of, no rows) get 0. Indexed by customer_id, sorted."""
    a = txn_arrays(txns, as_of=as_of)
    spend = a.sum_by(a.amount, a.day >= a.as_of - window_days)
    first = np.full(a.n, a.as_of, dtype=np.int64)
    np.minimum.at(first, a.code, a.day)
    active = np.clip(a.as_of - first, min_active_days, window_days).astype("float64")
    out = frame(a.ids, a.seen(), {"run_rate_spend_annual": np.maximum(spend, 0.0) * DAYS_PER_YEAR / active})
    extra = prospects(customers, as_of=as_of).difference(out.index)
    rate = out["run_rate_spend_annual"]
    if len(extra):
        rate = pd.concat([rate, pd.Series(0.0, index=extra)]).sort_index()
        rate.index.name = "customer_id"
    return rate.rename("run_rate_spend_annual")


def segments(customers: pd.DataFrame | None, index: pd.Index, columns: Sequence[str]) -> pd.DataFrame:
    """The segment columns present in `customers`, one row per id of `index` (missing: NaN). A
    customer listed twice keeps the smallest value per column, so row order cannot matter."""
    cols = [c for c in columns if customers is not None and c in customers.columns]
    if not cols:
        return pd.DataFrame(index=index)
    c = customers[cols].astype("string").set_axis(customers["customer_id"].astype("str"))
    return c.groupby(level=0).min().reindex(index)


def _group_quantile(code: np.ndarray, values: np.ndarray, n_groups: int, q: float) -> tuple[np.ndarray, np.ndarray]:
    """(count, linear-interpolated q-quantile) of `values` per group code 0..n_groups-1. Sorting by
    (code, value) first makes the answer independent of the input order."""
    order = np.lexsort((values, code))
    c, v = code[order], values[order]
    count = np.bincount(c, minlength=n_groups)
    start = np.cumsum(count) - count
    pos = start + q * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, start + np.maximum(count - 1, 0))
    quant = np.full(n_groups, np.nan)
    has = count > 0
    if has.any():
        lo_v, hi_v = v[lo[has]], v[hi[has]]
        quant[has] = lo_v + (hi_v - lo_v) * (pos[has] - lo[has])
    return count, quant


def potential(txns: pd.DataFrame, customers: pd.DataFrame | None, *, as_of,
              segment_columns: Sequence[str] = ("size", "industry", "region"), percentile: float = 0.9,
              min_peers: int = 20, window_days: int = 365, min_active_days: int = 90) -> pd.DataFrame:
    """Per customer (the `rfm` population), from rows strictly before `as_of`:
    - run_rate_spend_annual: see `run_rate`
    - potential_spend_annual: the `percentile` quantile of run_rate among peers with a positive
      run-rate, in the finest segment (all present segment_columns, then dropping columns from
      the end, last: every account) that holds at least `min_peers` of them; never below the
      account's own run-rate (what it spends now is attainable)
    - headroom_spend_annual = potential_spend_annual - run_rate_spend_annual (>= 0)
    - potential_peers: positive-run-rate accounts in the segment used
    - potential_segment_level: segment columns used (0 = all accounts)
    """
    rate = run_rate(txns, customers, as_of=as_of, window_days=window_days, min_active_days=min_active_days)
    seg = segments(customers, rate.index, segment_columns)
    r = rate.to_numpy(dtype="float64")
    n = len(r)
    pot, peers, level = np.full(n, np.nan), np.zeros(n, np.int64), np.full(n, -1, np.int64)
    for k in range(seg.shape[1], -1, -1):
        keys = seg.iloc[:, :k]
        known = keys.notna().all(axis=1).to_numpy()
        code = keys.groupby(list(keys.columns), sort=True, dropna=True).ngroup().fillna(-1).to_numpy() if k \
            else np.zeros(n)
        code = np.where(known, code, -1).astype(np.int64)
        n_groups = int(code.max()) + 1 if n else 0
        use = (code >= 0) & (r > 0)
        count, quant = _group_quantile(code[use], r[use], n_groups, percentile)
        enough = count >= (min_peers if k else 1)
        take = (level < 0) & (code >= 0) & enough[np.maximum(code, 0)] if n_groups else np.zeros(n, bool)
        pot[take], peers[take], level[take] = quant[code[take]], count[code[take]], k
    pot = np.fmax(pot, r)
    values = {"run_rate_spend_annual": r, "potential_spend_annual": pot, "headroom_spend_annual": pot - r,
              "potential_peers": peers, "potential_segment_level": level}
    return pd.DataFrame({c: values[c] for c in names("potential")}, index=rate.index)
