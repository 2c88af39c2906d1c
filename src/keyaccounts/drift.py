"""Population drift: PSI per feature between a training reference and a scoring population.

The reference is a JSON-able summary of the feature distributions a model was validated on
(`reference_summary`), stored with every training run (`drift_reference.json`, see
`tracking.Tracker.log_training`). At scoring time `psi_table` bins the scoring population with
the reference's bin edges and compares shares:

    PSI = sum over bins of (cur - ref) * ln(cur / ref)

Numeric features: bins are the reference deciles (interior quantile edges, duplicates dropped,
so a heavily tied feature gets fewer bins), right-closed: x <= edge[0] is bin 0. Missing values
(NaN, inf) form their own bin. Categorical/text features: one bin per category seen in the
reference; categories never seen there get a reference share of 0. Shares are floored at
`EPS` (1e-4) before the log so an empty bin gives a large but finite term; a bin empty on both
sides contributes 0. Rules of thumb: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 (the default
warning threshold) a population the model was not validated on.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-4
VERSION = 1
MISSING = "(missing)"


def _is_numeric(s: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)) and not isinstance(
        s.dtype, pd.CategoricalDtype)


def _numeric_values(s: pd.Series) -> np.ndarray:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isfinite(v), v, np.nan)


def _numeric_shares(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of bins 0..len(edges) plus the missing bin (last), over all rows."""
    ok = ~np.isnan(v)
    counts = np.bincount(np.searchsorted(edges, v[ok], side="left"), minlength=len(edges) + 1)
    counts = np.append(counts, (~ok).sum()).astype("float64")
    return counts / max(len(v), 1)


def _labels(s: pd.Series) -> pd.Series:
    return s.astype("object").where(s.notna(), MISSING).astype("str")


def reference_summary(X: pd.DataFrame, *, bins: int = 10) -> dict[str, Any]:
    """JSON-able distribution summary of every column of X (the reference population).

    Returns {'version', 'n', 'bins', 'features': {name: {'kind': 'numeric', 'edges': [...],
    'shares': [... one per bin, then the missing share]} | {'kind': 'categorical',
    'shares': {category: share}}}}. Shares of a feature sum to 1.
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    feats: dict[str, Any] = {}
    for col in X.columns:
        s = X[col]
        if _is_numeric(s):
            v = _numeric_values(s)
            finite = v[~np.isnan(v)]
            edges = (np.unique(np.quantile(finite, np.arange(1, bins) / bins)) if len(finite)
                     else np.zeros(0))
            feats[str(col)] = {"kind": "numeric", "edges": edges.tolist(),
                               "shares": _numeric_shares(v, edges).tolist()}
        else:
            shares = _labels(s).value_counts(normalize=True, sort=False).sort_index()
            feats[str(col)] = {"kind": "categorical", "shares": {str(k): float(x) for k, x in shares.items()}}
    return {"version": VERSION, "n": int(len(X)), "bins": int(bins), "features": feats}


def psi(ref: np.ndarray, cur: np.ndarray, *, eps: float = EPS) -> float:
    """PSI of two share vectors over the same bins (see module docstring)."""
    ref, cur = np.asarray(ref, "float64"), np.asarray(cur, "float64")
    if ref.shape != cur.shape:
        raise ValueError("share vectors must have the same bins")
    used = (ref > 0) | (cur > 0)
    r, c = np.maximum(ref[used], eps), np.maximum(cur[used], eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _current_shares(spec: dict[str, Any], s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if spec["kind"] == "numeric":
        return np.asarray(spec["shares"], "float64"), _numeric_shares(_numeric_values(s), np.asarray(spec["edges"]))
    ref = dict(spec["shares"])
    cur = _labels(s).value_counts(normalize=True, sort=False)
    keys = sorted(set(ref) | set(cur.index))
    return (np.array([ref.get(k, 0.0) for k in keys]), np.array([float(cur.get(k, 0.0)) for k in keys]))


def psi_table(reference: dict[str, Any], X: pd.DataFrame, *, threshold: float = 0.2) -> pd.DataFrame:
    """PSI of every reference feature in the scoring population X, highest first.

    Columns: feature, psi, drifted (psi > threshold), kind, note. A reference feature absent
    from X gets psi NaN, drifted False and note 'absent from the scoring data'; an empty X
    raises ValueError (there is no population to compare).
    """
    if len(X) == 0:
        raise ValueError("the scoring population is empty: no drift to measure")
    rows = []
    for name, spec in reference.get("features", {}).items():
        if name not in X.columns:
            rows.append({"feature": name, "psi": math.nan, "drifted": False, "kind": spec["kind"],
                         "note": "absent from the scoring data"})
            continue
        ref, cur = _current_shares(spec, X[name])
        value = psi(ref, cur)
        rows.append({"feature": name, "psi": value, "drifted": bool(value > threshold), "kind": spec["kind"],
                     "note": ""})
    out = pd.DataFrame(rows, columns=["feature", "psi", "drifted", "kind", "note"])
    out["psi"] = out["psi"].astype("float64")
    out["drifted"] = out["drifted"].astype("bool")
    return out.sort_values(["psi", "feature"], ascending=[False, True], na_position="last",
                           ignore_index=True)
