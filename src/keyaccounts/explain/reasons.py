"""Reason tables: the strongest reason groups per row, phrased with the account's raw values."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..features.registry import reason_key
from .contributions import BIAS, KINDS, contributions
from .phrases import REASON_PHRASES, UP_IS_RISK, fallback_phrase


def _raw_getters(raw: pd.DataFrame):
    cache: dict[str, np.ndarray] = {}

    def col(c: str) -> np.ndarray:
        if c not in cache:
            s = raw[c]
            if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                cache[c] = s.to_numpy(dtype="float64", na_value=np.nan)
            else:
                cache[c] = s.astype("str").to_numpy(dtype=object)
        return cache[c]
    return col


def _join(parts: list[np.ndarray]) -> np.ndarray:
    """Row-wise '; '.join of the non-empty phrases (empty phrases only ever trail)."""
    if not parts:
        return np.zeros(0, dtype=object)
    out = parts[0].copy()
    for p in parts[1:]:
        has = p != ""
        out[has] = out[has] + "; " + p[has]
    return out


def top_reasons(contrib: pd.DataFrame, raw: pd.DataFrame, *, n: int = 3, kind: str,
                min_abs: float = 1e-9) -> pd.DataFrame:
    """Plain-words reasons per row from exact contributions.

    contrib: `contributions(...)` (bias ignored); raw: the raw feature frame (build_features
    frame for churn/value, the deal frame for deal) with the same index (reindexed by label when
    the index differs). Contributions are summed per reason group (`reason_key`); per row, up to
    `n` groups with a positive sum go to `reasons_up` and up to `n` with a negative sum to
    `reasons_down`, each ordered by |contribution| descending (ties: reason key, alphabetical),
    joined by "; ". |sum| <= min_abs is not a reason. Up means the score goes up: for churn a
    risk ("no purchase for 142 days"), for value/deal a strength.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if n < 0:
        raise ValueError("n must not be negative")
    feats = [c for c in contrib.columns if c != BIAS]
    keys_of = [reason_key(str(f)) for f in feats]
    keys = sorted(set(keys_of))
    N = len(contrib)
    empty = pd.DataFrame({"reasons_up": np.full(N, "", dtype=object), "reasons_down": np.full(N, "", dtype=object)},
                         index=contrib.index)
    if N == 0 or not keys or n == 0:
        return empty.astype("str")
    if not raw.index.equals(contrib.index):
        raw = raw.reindex(contrib.index)
    # group sums: (rows x features) @ (features x groups), exact sums of exact contributions
    G = np.zeros((len(feats), len(keys)))
    kidx = {k: i for i, k in enumerate(keys)}
    G[np.arange(len(feats)), [kidx[k] for k in keys_of]] = 1.0
    V = contrib[feats].to_numpy(dtype="float64") @ G
    np.nan_to_num(V, copy=False)
    out = {side: _side_phrases(V * sign, raw, keys, k=min(n, len(keys)), min_abs=min_abs,
                               risk_all=UP_IS_RISK[kind] if sign > 0 else not UP_IS_RISK[kind])
           for side, sign in (("reasons_up", 1.0), ("reasons_down", -1.0))}
    return pd.DataFrame(out, index=contrib.index).astype("str")


def _side_phrases(S: np.ndarray, raw: pd.DataFrame, keys: list[str], *, k: int, min_abs: float,
                  risk_all: bool) -> np.ndarray:
    """One side's joined phrases per row: S holds the group sums signed so that positive means
    this side; the k largest above min_abs are phrased, `risk_all` telling whether they are risks."""
    N = len(S)
    col = _raw_getters(raw)
    raw_cols = set(raw.columns)
    S = S.copy()
    S[S <= min_abs] = 0.0
    # stable sort of -S keeps the alphabetical key order among ties
    top = np.argsort(-S, axis=1, kind="stable")[:, :k]
    val = np.take_along_axis(S, top, axis=1)
    phrases = np.full((N, k), "", dtype=object)
    rows, slots = np.nonzero(val > 0)
    groups = top[rows, slots]
    for g in np.unique(groups):
        m = groups == g
        r = rows[m]
        key = keys[g]
        spec = REASON_PHRASES.get(key)
        risk = np.full(len(r), risk_all)

        def get(c, r=r):
            return col(c)[r] if c in raw_cols else np.full(len(r), np.nan)

        def get_str(c, r=r):
            return col(c)[r].astype(str).astype(object) if c in raw_cols else np.full(len(r), "?", dtype=object)
        if spec is not None and all(c in raw_cols for c in spec.needs):
            txt = spec.render(get, risk, get_str)
        else:
            txt = fallback_phrase(key)(get, risk, get_str, key in raw_cols)
        phrases[r, slots[m]] = np.asarray(txt, dtype=object)
    return _join([phrases[:, j] for j in range(k)])


def select_rows(scores: pd.Series, reasons: str = "all") -> pd.Index:
    """The rows that get reasons: 'all' -> every row (original order); 'top:N' -> the N
    highest scores (highest priority first; ties keep the original order); 'none' -> none.
    NaN scores rank last."""
    if not isinstance(scores, pd.Series):
        scores = pd.Series(scores)
    spec = str(reasons).strip().lower()
    if spec == "all":
        return scores.index
    if spec == "none":
        return scores.index[:0]
    mt = re.fullmatch(r"top:(\d+)", spec)
    if not mt:
        raise ValueError(f"reasons must be 'all', 'none' or 'top:N' (N a whole number), got {reasons!r}")
    k = int(mt.group(1))
    v = scores.to_numpy(dtype="float64", na_value=np.nan)
    order = np.argsort(np.where(np.isnan(v), np.inf, -v), kind="stable")[:k]
    return scores.index[order]


def _scores(model, X: pd.DataFrame, kind: str) -> np.ndarray:
    if kind == "value":
        return np.asarray(model.predict(X), dtype="float64")
    return np.asarray(model.predict_proba(X)[:, 1], dtype="float64")


def explain_accounts(model, X: pd.DataFrame, raw: pd.DataFrame | None = None, *, n: int = 3, kind: str = "churn",
                     reasons: str = "all", scores: pd.Series | np.ndarray | None = None,
                     part: str | None = None) -> pd.DataFrame:
    """reasons_up / reasons_down per row of X (index = X.index; '' for rows without reasons).

    model: the fitted (calibrated) churn model, TwoPartValue (kind='value': the spend part by
    default, part='buy' for P(buy)) or deal model; X: what the model reads; raw: the raw feature
    frame for the phrases (default X). reasons='all' explains every row; 'top:N' only the N
    highest-priority rows (by `scores`, default the model's own prediction: P(churn), expected
    value or P(win)), so scoring 1M accounts and explaining the top 1,000 costs little.
    Linear contributions are measured from the reference fixed at training (see `contributions`),
    so a row's reasons do not depend on the other rows of X.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    raw = X if raw is None else raw
    out = pd.DataFrame({"reasons_up": np.full(len(X), "", dtype=object),
                        "reasons_down": np.full(len(X), "", dtype=object)}, index=X.index)
    spec = str(reasons).strip().lower()
    if spec == "all":
        sel = None
    else:
        if scores is None:
            scores = _scores(model, X, kind)
        s = pd.Series(np.asarray(scores, dtype="float64"), index=pd.RangeIndex(len(X)))
        sel = np.sort(select_rows(s, spec).to_numpy())
        if len(sel) == 0:
            return out.astype("str")
    Xs = X if sel is None else X.iloc[sel]
    C = contributions(model, Xs, part=part if kind == "value" else None)
    if raw.index.equals(X.index):
        rs = raw if sel is None else raw.iloc[sel]
    else:
        rs = raw.reindex(Xs.index)
    R = top_reasons(C, rs.set_axis(C.index) if len(rs) == len(C) else rs, n=n, kind=kind)
    if sel is None:
        return R
    for c in ("reasons_up", "reasons_down"):
        v = out[c].to_numpy(dtype=object)
        v[sel] = R[c].to_numpy(dtype=object)
        out[c] = v
    return out.astype("str")
