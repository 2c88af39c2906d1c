"""Shared, pure helpers: turn a transactions frame into integer arrays before `as_of`.

Days are calendar days since 1970-01-01 (int64); a row is read iff its day < as_of's day,
which for timestamps with a time of day means timestamp < as_of (midnight).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Above this many (customer x day) cells (bytes) the distinct-day bitmap is too large; sort instead.
_BITMAP_MAX_CELLS = 400_000_000

#: Money is summed in integer units of this many per currency unit (micro-units): every amount
#: is rounded to 1e-6 first, so sums are exact, cancelling amounts give exactly 0 and row order
#: cannot change a bit (float addition is not associative; integer addition is).
MONEY_UNITS_PER_CURRENCY = 1_000_000
# float64 adds integers exactly while every partial sum stays below 2**53.
_FLOAT_EXACT_UNITS = 2.0 ** 53


def as_of_day(as_of: dt.date | str | pd.Timestamp) -> int:
    """as_of as a day number; rejects times of day so the cutoff is never ambiguous."""
    if as_of is None:
        raise TypeError("as_of is required (features never default to the data's max date)")
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is not None or ts != ts.normalize():
        raise ValueError(f"as_of must be a calendar date, got {as_of!r}")
    return int(np.datetime64(ts.date(), "D").astype(np.int64))


def day_numbers(s: pd.Series) -> np.ndarray:
    v = s.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT"))
    days = v.astype("datetime64[D]").astype(np.int64)
    return days


def _codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return ids.cat.codes.to_numpy(), pd.Index(ids.cat.categories.astype("str"), name="customer_id")
    codes, uniques = pd.factorize(ids.astype("str"), sort=True)
    return codes, pd.Index(uniques, name="customer_id")


@dataclass(frozen=True)
class TxnArrays:
    """Rows strictly before as_of, as parallel arrays; `ids[code]` is the customer id."""

    code: np.ndarray      # int64, one per row
    day: np.ndarray       # int64 day numbers
    amount: np.ndarray    # float64
    ids: pd.Index         # all ids the frame knows (some may have no row before as_of)
    as_of: int            # day number
    extra: dict           # other requested columns, filtered the same way

    @property
    def n(self) -> int:
        return len(self.ids)

    def seen(self) -> np.ndarray:
        """Boolean per id: has any row before as_of."""
        return np.bincount(self.code, minlength=self.n) > 0

    def sum_by(self, weights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Exact per-customer sums of money (see `money_sum`), rows where `mask`."""
        if mask is None:
            return money_sum(self.code, weights, self.n)
        return money_sum(self.code[mask], weights[mask], self.n)


def money_sum(code: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-code sums of money amounts, exact, so the result is the same bit for bit under any
    row order and amounts that cancel give 0.0.

    Amounts are rounded to micro-units (MONEY_UNITS_PER_CURRENCY) and summed as integer-valued
    float64, exact while max|units| x max rows per code stays below 2**53 (amounts up to ~1e9
    per customer). Beyond that each customer's amounts are summed with math.fsum, which is
    correctly rounded and therefore independent of order too (slower; only for such data)."""
    values = np.asarray(values, dtype="float64")
    if len(values) == 0:
        return np.zeros(n, dtype="float64")
    with np.errstate(over="ignore", invalid="ignore"):
        units = np.rint(values * MONEY_UNITS_PER_CURRENCY)
        bound = float(np.abs(units).max()) * float(np.bincount(code, minlength=n).max())
    if np.isfinite(bound) and bound < _FLOAT_EXACT_UNITS:
        return np.bincount(code, weights=units, minlength=n) / MONEY_UNITS_PER_CURRENCY
    order = np.argsort(code, kind="stable")
    c, v = code[order], values[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    out = np.zeros(n, dtype="float64")
    for k, part in zip(c[starts], np.split(v, starts[1:]), strict=False):
        try:
            out[k] = math.fsum(part)
        except OverflowError:  # the exact sum exceeds float64: say so as inf, as float addition would
            out[k] = math.copysign(np.inf, float(part.sum()))
    return out


def txn_arrays(txns: pd.DataFrame, *, as_of, columns: tuple[str, ...] = ()) -> TxnArrays:
    day0 = as_of_day(as_of)
    day = day_numbers(txns["timestamp"])
    keep = day < day0  # NaT is the minimum int64 and is never present after validation
    code, ids = _codes(txns["customer_id"])
    keep &= code >= 0
    idx = np.flatnonzero(keep)
    extra = {c: txns[c].to_numpy(dtype="float64", na_value=np.nan)[idx] for c in columns}
    return TxnArrays(code=code[idx].astype(np.int64), day=day[idx],
                     amount=txns["amount"].to_numpy(dtype="float64")[idx], ids=ids, as_of=day0, extra=extra)


@dataclass(frozen=True)
class PurchaseDays:
    """Distinct (customer, day) pairs with positive spend that day, sorted by customer then day."""

    code: np.ndarray
    day: np.ndarray
    n: int

    def count(self, since_day: int | None = None) -> np.ndarray:
        if since_day is None:
            return np.bincount(self.code, minlength=self.n)
        m = self.day >= since_day
        return np.bincount(self.code[m], minlength=self.n)

    def nth_from_end(self, k: int) -> np.ndarray:
        """Day of each customer's k-th last purchase day (k=0: last); NaN where fewer."""
        out = np.full(self.n, np.nan)
        if len(self.code) == 0:
            return out
        last_pos = np.flatnonzero(np.r_[self.code[1:] != self.code[:-1], True])
        first_pos = np.r_[0, last_pos[:-1] + 1]
        pos = last_pos - k
        ok = pos >= first_pos
        out[self.code[last_pos[ok]]] = self.day[pos[ok]]
        return out

    def first(self) -> np.ndarray:
        out = np.full(self.n, np.nan)
        if len(self.code) == 0:
            return out
        first_pos = np.flatnonzero(np.r_[True, self.code[1:] != self.code[:-1]])
        out[self.code[first_pos]] = self.day[first_pos]
        return out


def purchase_days(a: TxnArrays) -> PurchaseDays:
    """Distinct purchase days per customer. A 'purchase' is a row with amount > 0."""
    pos = a.amount > 0
    code, day = a.code[pos], a.day[pos]
    if len(code) == 0:
        return PurchaseDays(code=code, day=day, n=a.n)
    lo = int(day.min())
    span = a.as_of - lo
    if a.n * span <= _BITMAP_MAX_CELLS:
        # Marking a bitmap is O(rows) and yields the pairs already sorted.
        bitmap = np.zeros(a.n * span, dtype=bool)
        bitmap[code * span + (day - lo)] = True
        keys = np.flatnonzero(bitmap)
    else:
        keys = np.unique(code * span + (day - lo))
    return PurchaseDays(code=keys // span, day=keys % span + lo, n=a.n)


def frame(ids: pd.Index, keep: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Assemble a feature frame for the ids where `keep`, sorted by id."""
    idx = ids[keep]
    out = pd.DataFrame({k: v[keep] for k, v in columns.items()}, index=idx)
    out.index.name = "customer_id"
    if not out.index.is_monotonic_increasing:
        out = out.sort_index()
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den <= 0 or undefined, or where the quotient overflows (a
    near-zero denominator): features are finite or NaN, never inf."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = num / np.where(den > 0, den, 1.0)
        return np.where((den > 0) & np.isfinite(q), q, np.nan)
