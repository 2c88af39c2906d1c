"""Population drift: PSI per feature between a training reference and a scoring population.

The reference is a JSON-able summary of the feature distributions a model was validated on
(`reference_summary`), stored with every training run (`drift_reference.json`, see
`tracking.Tracker.log_training`). At scoring time `psi_table` bins the scoring population with
the reference's bin edges and compares shares:

    PSI = sum over bins of (cur - ref) * ln(cur / ref)

Which columns are compared, and how, is decided by one rule (`treatment`), in this order:

1. Left out, by role: identifiers (`id`, `*_id`, `*_uuid`, `*_key`), names (`name`, `*_name`,
   `owner`, `email`, `phone`) and dates (`as_of`, `date`, `timestamp`, `*_date`, `*_at`, any
   datetime/timedelta/period dtype). They say who or when a row is, not what it is: a new
   month of customers or deals has new ids and dates by construction.
2. Left out: identifier-like text, a non-numeric column with more than `MAX_CATEGORIES`
   distinct values, or with 90 % of 20 or more values distinct (free text, codes).
3. Left out: time since a one-off start (`tenure*`, `*_days_ago`). It grows by one day a day
   for every customer, so a later population is older by construction.
4. Compared as a rate per month of tenure: counts and sums over all history (`*_total`,
   `frequency`, `n_*` without a `_<N>d` window or threshold suffix, `*_deals`). They grow with
   calendar time as history accumulates; divided by `tenure_days` (counted as at least one
   month) they compare behaviour, not age. Without `tenure_days` they are left out.
5. Compared where nonzero (and known): balances at the snapshot (`*_balance`, `*_utilisation`).
   Whether an invoice is still open swings with the billing cycle (a snapshot just after the
   monthly invoicing sees most customers with an open balance, one just before it few), so the
   share of zeros depends on the snapshot's day of the month; the size of open balances does
   not. Payment behaviour itself is covered by days_past_due_* and late_payment_share.
6. Everything else is compared as is. Time since a recurring event (recency_days,
   days_since_stage_change) resets and stays comparable; so does an open deal's age_days,
   since deals close (a pipeline going stale is a real shift the deal model must hear of).

Numeric features: bins are reference quantiles, at most `bins` of them and at least
`MIN_BIN_ROWS` reference rows each (two samples of one population score about
(bins - 1) * (1/n_ref + 1/n_cur) by chance alone, so fewer rows need fewer bins; and a PSI
above the threshold is a warning only when chance alone would reach it less than once in a
thousand, see `chance_psi`). Each edge sits
halfway between the reference values around it, so a feature with ties (a rate shared by all
deals of one owner, a count) does not flip a whole tied group into the next bin on a small
wobble. Bins are right-closed: x <= edge[0] is bin 0. Missing values (NaN, inf) form their own
bin. Categorical/text features: one bin per category seen in the reference; categories never
seen there get a reference share of 0. Shares are floored at `EPS` (1e-4) before the log so an
empty bin gives a large but finite term; a bin empty on both sides contributes 0. Rules of
thumb: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 (the default warning threshold) a
population the model was not validated on.

References of version 1 (before these rules) stored every column as is: `psi_table` applies the
rule to them too; a column the rule leaves out, or would compare as a rate or where nonzero, is
left out with a note saying so (retrain to compare it).
"""
from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

EPS = 1e-4
VERSION = 2
MISSING = "(missing)"
MIN_BIN_ROWS = 40  # reference rows per numeric bin: chance PSI ~0.05 at most, a quarter of 0.2
MAX_CATEGORIES = 50  # more distinct text values than this: identifier-like, not a category
TENURE = "tenure_days"  # denominator of the rates
DAYS_PER_MONTH = 365.25 / 12

# The rule, by column name (see the module docstring): role -> pattern of names.
LEFT_OUT_ROLES = {
    "identifier": re.compile(r"(?:^|_)(?:id|uuid|key)$"),
    "name": re.compile(r"(?:^|_)name$|^(?:owner|email|phone)$"),
    "date": re.compile(r"^(?:as_of|date|timestamp)$|_(?:date|at|timestamp)$"),
}
GROWS_WITH_TIME = re.compile(r"^tenure(?:_|$)|_days_ago$")
# A `_<N>d` suffix marks a window (n_purchases_90d) or a threshold (n_overdue_30d): not all history.
CUMULATIVE = re.compile(r"_total$|^frequency$|^n_(?!.*_\d+d$)\w+$|_deals$")
CYCLE_BALANCE = re.compile(r"_balance$|_utili[sz]ation$")

AS_IS, RATE, NONZERO, LEFT_OUT = "as_is", "per_tenure_month", "nonzero", "left_out"
NOTES = {
    AS_IS: "",
    RATE: "compared as rate per month of tenure",
    NONZERO: "compared where nonzero: whether a balance is open swings with the billing cycle",
}
GROWS_NOTE = "left out: grows with calendar time"


class Treatment(NamedTuple):
    """How a column enters drift: action (AS_IS, RATE, NONZERO, LEFT_OUT) and the reason shown."""

    action: str
    note: str


def _is_numeric(s: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)) and not isinstance(
        s.dtype, pd.CategoricalDtype)


def _is_date(s: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s) \
            or isinstance(s.dtype, pd.PeriodDtype):
        return True
    if s.dtype != object:
        return False
    return pd.api.types.infer_dtype(s, skipna=True) in ("datetime", "datetime64", "date", "period", "timedelta")


def _identifier_like(n_distinct: int, n_values: int) -> bool:
    return n_distinct > MAX_CATEGORIES or (n_values >= 20 and n_distinct >= 0.9 * n_values)


def treatment(name: str, s: pd.Series | None = None, columns=()) -> Treatment:
    """The rule (module docstring) for column `name`: its values `s` (dtype and cardinality
    checks; None skips them) and the other `columns` of its frame (is TENURE there?)."""
    for role, pattern in LEFT_OUT_ROLES.items():
        if pattern.search(name):
            return Treatment(LEFT_OUT, f"left out: {role}")
    if s is not None and _is_date(s):
        return Treatment(LEFT_OUT, "left out: date")
    numeric = s is None or _is_numeric(s)
    if not numeric:
        distinct = int(s.nunique(dropna=True))
        if _identifier_like(distinct, int(s.notna().sum())):
            return Treatment(LEFT_OUT, f"left out: identifier-like text ({distinct} distinct values)")
        return Treatment(AS_IS, NOTES[AS_IS])
    if GROWS_WITH_TIME.search(name):
        return Treatment(LEFT_OUT, GROWS_NOTE)
    if CUMULATIVE.search(name):
        if TENURE in columns:
            return Treatment(RATE, NOTES[RATE])
        return Treatment(LEFT_OUT, f"{GROWS_NOTE} (no {TENURE} to make it a rate)")
    if CYCLE_BALANCE.search(name):
        return Treatment(NONZERO, NOTES[NONZERO])
    return Treatment(AS_IS, NOTES[AS_IS])


def _numeric_values(s: pd.Series) -> np.ndarray:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isfinite(v), v, np.nan)


def _compared_values(action: str, X: pd.DataFrame, name: str) -> np.ndarray:
    """The values of X[name] that are compared under `action` (RATE needs X[TENURE])."""
    v = _numeric_values(X[name])
    if action == RATE:
        # at least one month: a customer of a few days would otherwise get an inflated rate
        months = np.maximum(_numeric_values(X[TENURE]) / DAYS_PER_MONTH, 1.0)
        return v / months
    if action == NONZERO:
        # missing values go too: among fewer open balances an unknown credit limit would
        # look more common, swinging with the billing cycle like the zeros
        return v[(v != 0) & ~np.isnan(v)]
    return v


def _numeric_shares(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of bins 0..len(edges) plus the missing bin (last), over all rows."""
    ok = ~np.isnan(v)
    counts = np.bincount(np.searchsorted(edges, v[ok], side="left"), minlength=len(edges) + 1)
    counts = np.append(counts, (~ok).sum()).astype("float64")
    return counts / max(len(v), 1)


def _edges(finite: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges of the reference values (module docstring): quantiles of at most
    `bins` bins of MIN_BIN_ROWS rows, each moved halfway to the next distinct value above it.
    No reference value lies in between, so the reference's rows stay in the same bins."""
    if not len(finite):
        return np.zeros(0)
    k = min(bins, max(2, len(finite) // MIN_BIN_ROWS))
    q = np.quantile(finite, np.arange(1, k) / k)
    u = np.unique(finite)
    above = np.searchsorted(u, q, side="right")  # index of the first distinct value > q
    below = u[above - 1]  # the largest value <= q (q >= the minimum, so above >= 1)
    # an edge at the maximum (ties at the top) would leave the reference an empty top bin that
    # any value a little above its maximum falls into: dropped, the top bin is open-ended
    inside = above < len(u)
    return np.unique((below[inside] + u[above[inside]]) / 2)


def _labels(s: pd.Series) -> pd.Series:
    return s.astype("object").where(s.notna(), MISSING).astype("str")


def _feature_summary(X: pd.DataFrame, col: str, bins: int) -> dict[str, Any]:
    t = treatment(col, X[col], X.columns)
    if t.action == LEFT_OUT:
        return {"kind": "left out", "note": t.note}
    if not _is_numeric(X[col]):
        shares = _labels(X[col]).value_counts(normalize=True, sort=False).sort_index()
        return {"kind": "categorical", "shares": {str(k): float(x) for k, x in shares.items()}}
    v = _compared_values(t.action, X, col)
    if not len(v):
        return {"kind": "left out", "note": "left out: no nonzero values in the reference"}
    edges = _edges(v[~np.isnan(v)], bins)
    spec = {"kind": "numeric", "edges": edges.tolist(), "shares": _numeric_shares(v, edges).tolist()}
    if t.action == AS_IS:
        return spec  # the version-1 layout: no transform, no note, every row compared
    return {"kind": "numeric", "transform": t.action, "note": t.note, "n": int(len(v)), **spec}


def reference_summary(X: pd.DataFrame, *, bins: int = 10) -> dict[str, Any]:
    """JSON-able distribution summary of every column of X (the reference population).

    Returns {'version', 'n', 'bins', 'features': {name: spec}}, spec one of
    {'kind': 'numeric', 'edges': [...], 'shares': [... one per bin, then the missing share]}
    (plus 'transform' and 'note' when compared as a rate or where nonzero, the shares then of
    the compared values), {'kind': 'categorical', 'shares': {category: share}} or
    {'kind': 'left out', 'note': why}. `bins` is the most bins of a numeric feature (fewer
    when the reference is small). Shares of a feature sum to 1.
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    feats = {str(col): _feature_summary(X, col, bins) for col in X.columns}
    return {"version": VERSION, "n": int(len(X)), "bins": int(bins), "features": feats}


def psi(ref: np.ndarray, cur: np.ndarray, *, eps: float = EPS) -> float:
    """PSI of two share vectors over the same bins (see module docstring)."""
    ref, cur = np.asarray(ref, "float64"), np.asarray(cur, "float64")
    if ref.shape != cur.shape:
        raise ValueError("share vectors must have the same bins")
    used = (ref > 0) | (cur > 0)
    r, c = np.maximum(ref[used], eps), np.maximum(cur[used], eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _legacy_spec(name: str, spec: dict[str, Any], X: pd.DataFrame) -> dict[str, Any]:
    """A version-1 spec (every column stored as is) under the current rule."""
    s = X[name] if name in X.columns else None
    if s is None and spec["kind"] == "categorical":
        s = pd.Series([], dtype="object")  # absent from X: still text, for the rule
    t = treatment(name, s, X.columns)
    if t.action == AS_IS and spec["kind"] == "categorical" and _identifier_like(len(spec["shares"]), 0):
        t = Treatment(LEFT_OUT, f"left out: identifier-like text ({len(spec['shares'])} categories)")
    if t.action == LEFT_OUT:
        return {"kind": "left out", "note": t.note}
    if t.action != AS_IS and spec["kind"] == "numeric":
        return {"kind": "left out",
                "note": f"left out: an older reference stores it as is; retrain to have it {t.note}"}
    return spec


def chance_psi(n_bins: int, n_ref: int, n_cur: int, significance: float = 0.001) -> float:
    """PSI that sampling alone exceeds with probability `significance` when two samples of
    n_ref and n_cur rows come from one population, over n_bins bins: n_eff * PSI is about
    chi-square with n_bins - 1 degrees of freedom, n_eff = 1 / (1/n_ref + 1/n_cur)."""
    from scipy.special import chdtri  # scipy comes with scikit-learn; loaded only to score drift

    if n_bins < 2 or n_ref < 1 or n_cur < 1:
        return 0.0
    return float(chdtri(n_bins - 1, significance)) * (1.0 / n_ref + 1.0 / n_cur)


def _shares(spec: dict[str, Any], X: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Reference and current shares over the same bins, and the current row count."""
    if spec["kind"] == "numeric":
        v = _compared_values(spec.get("transform", AS_IS), X, name)
        return np.asarray(spec["shares"], "float64"), _numeric_shares(v, np.asarray(spec["edges"])), len(v)
    ref = dict(spec["shares"])
    cur = _labels(X[name]).value_counts(normalize=True, sort=False)
    keys = sorted(set(ref) | set(cur.index))
    return (np.array([ref.get(k, 0.0) for k in keys]), np.array([float(cur.get(k, 0.0)) for k in keys]),
            len(X))


def _row(name: str, spec: dict[str, Any], X: pd.DataFrame, n_ref: int, threshold: float,
         significance: float | None) -> dict[str, Any]:
    row = {"feature": name, "psi": math.nan, "drifted": False, "kind": spec["kind"], "note": spec.get("note", "")}
    if spec["kind"] == "left out":
        return row
    need = [name] + ([TENURE] if spec.get("transform") == RATE else [])
    if any(c not in X.columns for c in need):
        why = f" ({TENURE}, needed for the rate)" if name in X.columns else ""
        row["note"] = "absent from the scoring data" + why
        return row
    ref, cur, n_cur = _shares(spec, X, name)
    if not n_cur:
        row["note"] += "; no nonzero values in the scoring data"
        return row
    value = psi(ref, cur)
    drifted = value > threshold
    n_ref = int(spec.get("n", n_ref))  # set where only some reference rows are compared
    if drifted and significance is not None and \
            value <= chance_psi(int(((ref > 0) | (cur > 0)).sum()), n_ref, n_cur, significance):
        # a few dozen rows give a PSI above the threshold by chance alone: no warning
        drifted = False
        row["note"] = "; ".join(filter(None, [row["note"], f"above {threshold:g} but within chance for "
                                                           f"{n_ref} and {n_cur} rows"]))
    return {**row, "psi": value, "drifted": bool(drifted)}


def psi_table(reference: dict[str, Any], X: pd.DataFrame, *, threshold: float = 0.2,
              significance: float | None = 0.001) -> pd.DataFrame:
    """PSI of every reference feature in the scoring population X, highest first.

    Columns: feature, psi, drifted, kind, note. drifted: psi > threshold and, unless
    `significance` is None, above what sampling alone reaches with that probability for these
    row counts (`chance_psi`; a small population can cross the threshold by chance, and the
    note then says so). The note says how a feature was compared when not as is ('compared as
    rate per month of tenure', ...) and why one was left out ('left out: identifier', 'left
    out: grows with calendar time', ...); left-out features have psi NaN and drifted False. A
    reference feature absent from X gets psi NaN, drifted False and note 'absent from the
    scoring data'; an empty X raises ValueError (there is no population to compare).
    Version-1 references are read under the current rule (module docstring).
    """
    if len(X) == 0:
        raise ValueError("the scoring population is empty: no drift to measure")
    legacy = int(reference.get("version", 1)) < 2
    n_ref = int(reference.get("n", 0))
    rows = [_row(name, _legacy_spec(name, spec, X) if legacy else spec, X, n_ref, threshold, significance)
            for name, spec in reference.get("features", {}).items()]
    out = pd.DataFrame(rows, columns=["feature", "psi", "drifted", "kind", "note"])
    out["psi"] = out["psi"].astype("float64")
    out["drifted"] = out["drifted"].astype("bool")
    return out.sort_values(["psi", "feature"], ascending=[False, True], na_position="last",
                           ignore_index=True)
