"""Per-account explanations: exact additive contributions and plain-words reasons.

    from keyaccounts.explain import contributions, check_additivity, top_reasons, explain_accounts
    C = contributions(churn_model, X)                 # one column per model input + "bias"
    check_additivity(churn_model, X, C)               # max |sum(C) - margin|, ~1e-6 or better
    R = explain_accounts(churn_model, X, raw=features, kind="churn", reasons="top:1000")
    R.loc["C000042", "reasons_up"]                    # 'no purchase for 142 days; buys 0.1 times a month'

Contributions (`contributions`) are exact, in the margin of the model's final estimator:
- tree part (XGBoost last step): TreeSHAP via `Booster.predict(pred_contribs=True)` (the
  path-dependent algorithm over the trees' own cover, so `background` is not used); the margin is
  `predict(..., output_margin=True)`: log-odds for `binary:logistic`, log(E[spend]) for `reg:gamma`.
- linear part (an estimator with `coef_`, e.g. LogisticRegression): exact linear SHAP
  coef * (z - reference) with bias = intercept + coef . reference, where z are the final
  estimator's inputs (after imputing/scaling) and the reference is the training population's
  mean of z, stored in the model when it is trained (`fix_reference`; for a StandardScaler
  fitted with the model that mean is 0). The reference never depends on the rows scored, so an
  account's reasons are the same in every list. The margin is `decision_function` (the log
  link's linear predictor for gamma/Poisson GLMs).
- Calibrated wrappers (CalibratedClassifierCV(FrozenEstimator(model))): the underlying frozen
  model's margin is explained. Sigmoid and isotonic calibration are monotone maps of that
  margin, so the order and direction of the reasons are the calibrated probability's too.
- TwoPartValue (value model): `part="spend"` (default) explains the E[spend | buy] regressor
  (tree margin = log E[spend | buy]); `part="buy"` the P(buy) logistic part. Their product
  (expected value) has no exact additive decomposition in either margin.
- StageRateBaseline (refused deal model): one contribution, stage_at_as_of = logit(rate of the
  stage) - logit(overall rate), bias = logit(overall rate).

Reasons (`top_reasons`) group model inputs by what they say about the account (REASON_CODES:
e.g. recency_over_tenure, p_alive, expected_purchases all speak of recency), sum the exact
contributions inside each group (sums stay exact), and phrase the strongest groups with the
account's RAW values from the `build_features` / deal frame ("no purchase for 142 days").
`reasons_up` push the score up (for churn: risks), `reasons_down` push it down (for churn:
strengths); for value and deal models up is a strength and down a risk. Order: |contribution|
descending, ties by reason key (alphabetical), so the output is deterministic.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["contributions", "fix_reference", "reference_points", "margin", "check_additivity", "float32_margin_error_bound", "REASON_CODES", "REASON_PHRASES", "reason_key",
           "top_reasons", "explain_accounts", "select_rows", "global_importance"]

BIAS = "bias"
KINDS = ("churn", "value", "deal")


# ================================================================ unwrapping

def _final_model(model, part: str | None):
    """The fitted Pipeline/estimator whose margin is explained (calibration and the two-part
    model unwrapped)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from .models.value import TwoPartValue
    if part not in (None, "spend", "buy"):
        raise ValueError("part must be None, 'spend' or 'buy'")
    m = model
    for _ in range(10):
        if isinstance(m, CalibratedClassifierCV):
            cc = getattr(m, "calibrated_classifiers_", None)
            if not cc:
                raise ValueError("the calibrated model is not fitted")
            if len(cc) > 1:
                raise ValueError("a cross-validated CalibratedClassifierCV averages several models; "
                                 "only CalibratedClassifierCV(FrozenEstimator(model)) has one margin to explain")
            m = cc[0].estimator
        elif isinstance(m, FrozenEstimator):
            m = m.estimator
        elif isinstance(m, TwoPartValue):
            m = m.classifier_ if part == "buy" else m.regressor_
        else:
            break
    return m


def _split(m):
    """(preprocessing Pipeline or None, final estimator)."""
    steps = getattr(m, "steps", None)
    if steps is None:
        return None, m
    pre, final = (m[:-1] if len(steps) > 1 else None), steps[-1][1]
    if getattr(final, "steps", None) is not None:        # nested pipeline as last step
        inner_pre, final = _split(final)
        if inner_pre is not None:
            from sklearn.pipeline import Pipeline
            pre = Pipeline((list(pre.steps) if pre is not None else []) + list(inner_pre.steps))
    return pre, final


def _kind_of(final) -> str:
    if hasattr(final, "get_booster"):
        return "tree"
    if getattr(final, "coef_", None) is not None and getattr(final, "intercept_", None) is not None:
        return "linear"
    if hasattr(final, "stage_rates_"):
        return "stage_rate"
    raise TypeError(f"cannot explain a {type(final).__name__} exactly: supported final estimators are "
                    "XGBoost models, linear models (coef_) and StageRateBaseline (a soft-voting blend of "
                    "probabilities has no additive margin)")


def _transform(pre, X: pd.DataFrame):
    Z = pre.transform(X) if pre is not None else X
    if isinstance(Z, pd.DataFrame):
        names = [str(c) for c in Z.columns]
    elif pre is not None and hasattr(pre, "get_feature_names_out"):
        names = [str(c) for c in pre.get_feature_names_out()]
    else:
        names = [str(c) for c in X.columns]
    return Z, names


def _as_float(Z) -> np.ndarray:
    if isinstance(Z, pd.DataFrame):
        return Z.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(Z, dtype="float64")


def _iteration_range(est) -> tuple[int, int]:
    best = getattr(est, "best_iteration", None) if getattr(est, "early_stopping_rounds", None) else None
    return (0, int(best) + 1) if best is not None else (0, 0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


# ================================================================ contributions

def _cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def contributions(model, X: pd.DataFrame, *, background: pd.DataFrame | None = None,
                  part: str | None = None) -> pd.DataFrame:
    """Exact per-row contributions of the final estimator's inputs to the model's margin.

    Returns a float64 frame indexed like X with one column per input of the final estimator
    (e.g. the 7 GLM inputs of the churn model, or the numeric + one-hot stage columns of the deal
    model) plus `bias`; each row sums to the margin (`margin(model, X)`):
    log-odds for classifiers, log E[spend | buy] for the gamma spend regressor.

    - XGBoost last step: exact TreeSHAP (`pred_contribs=True`, path-dependent on the trees'
      cover; `background` is ignored). Identical to shap.TreeExplainer(booster).
    - linear last step: coef * (z - reference) and bias = intercept + coef . reference, with z
      the (imputed, scaled) estimator inputs and the reference fixed at training (see
      `fix_reference`; `background` overrides it only for a model that stores none), so a row's
      contributions are the same whichever other rows are explained with it.
    - Calibrated models (CalibratedClassifierCV(FrozenEstimator(m))): explains m's margin, not
      the calibrated probability; calibration (sigmoid/isotonic) is monotone in that margin,
      so the ranking and direction of reasons are unaffected.
    - TwoPartValue: part="spend" (default) the E[spend | buy] regressor, part="buy" the P(buy)
      classifier.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError("contributions needs a pandas DataFrame of features")
    m = _final_model(model, part)
    pre, final = _split(m)
    kind = _kind_of(final)
    if kind == "tree":
        import xgboost as xgb
        Z, names = _transform(pre, X)
        # a copy, so the thread count set for explaining never changes the fitted model; each
        # row's TreeSHAP is computed independently, so threads cannot change a bit of it
        booster = final.get_booster().copy()
        booster.set_param({"nthread": _cpu_count()})
        dm = xgb.DMatrix(Z, missing=getattr(final, "missing", np.nan),
                         feature_names=booster.feature_names, nthread=_cpu_count())
        C = booster.predict(dm, pred_contribs=True, iteration_range=_iteration_range(final))
        C = np.asarray(C, dtype="float64")
        if C.ndim != 2:
            raise ValueError("only single-output (binary / regression) XGBoost models can be explained")
        names = list(booster.feature_names or names)
    elif kind == "linear":
        Z, names = _transform(pre, X)
        A = _as_float(Z)
        coef = np.asarray(final.coef_, dtype="float64")
        if coef.ndim == 2 and coef.shape[0] != 1:
            raise ValueError("only binary classifiers / single-output linear models can be explained")
        coef = coef.ravel()
        mu = _linear_reference(pre, final, background, A.shape[1])
        C = np.empty((A.shape[0], A.shape[1] + 1), dtype="float64")
        np.subtract(A, mu, out=C[:, :-1])
        C[:, :-1] *= coef
        C[:, -1] = float(np.ravel(final.intercept_)[0]) + float(coef @ mu)
    else:  # StageRateBaseline
        rate = final.predict_proba(X)[:, 1]
        base = float(_logit(np.array([final.overall_rate_]))[0])
        C = np.column_stack([_logit(rate) - base, np.full(len(X), base)])
        names = [final.stage_col]
    return pd.DataFrame(C, index=X.index, columns=list(names) + [BIAS])


REFERENCE_ATTR = "explain_reference_"


def _linear_reference(pre, final, background: pd.DataFrame | None, width: int) -> np.ndarray:
    """The point a linear model's contributions are measured from, fixed at training so an
    account's reasons never depend on which other rows are scored: the stored training mean
    (`fix_reference`); else the mean over an explicit `background`; else, when the inputs end
    in a StandardScaler fitted with the model, 0 (the training mean in scaled units)."""
    ref = getattr(final, REFERENCE_ATTR, None)
    if ref is not None:
        return np.asarray(ref, dtype="float64")
    if background is not None:
        return _as_float(_transform(pre, background)[0]).mean(axis=0)
    last = pre.steps[-1][1] if pre is not None else None
    if getattr(last, "with_mean", False) and hasattr(last, "mean_"):
        return np.zeros(width, dtype="float64")
    raise ValueError("this linear model has no fixed reference point: call explain.fix_reference(model, "
                     "X_train) after fitting, or pass background= (the training rows)")


def _linear_parts(model) -> list:
    """(part, preprocessing, final estimator) of every linear part of a fitted model: part None
    for a one-part model, 'buy' / 'spend' for the two-part value model."""
    out = []
    for part in (("buy", "spend") if hasattr(model, "classifier_") else (None,)):
        pre, final = _split(_final_model(model, part))
        if getattr(final, "coef_", None) is not None:
            out.append((part, pre, final))
    return out


def fix_reference(model, X_train: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Store the training population's mean of every linear part's (transformed) inputs in the
    fitted model (attribute `explain_reference_`), so contributions are measured from the same
    point at every scoring; returns `reference_points(model)` for the card and the run. Tree
    parts need nothing: TreeSHAP's reference is the trees' own training cover."""
    for _, pre, final in _linear_parts(model):
        setattr(final, REFERENCE_ATTR, _as_float(_transform(pre, X_train)[0]).mean(axis=0))
    return reference_points(model)


def reference_points(model) -> dict[str, dict[str, float]]:
    """{part: {input: reference value}} of the model's linear parts ('' part for a one-part
    model; 'buy' / 'spend' for the two-part value model); tree parts are not listed."""
    out = {}
    for part, pre, final in _linear_parts(model):
        ref = getattr(final, REFERENCE_ATTR, None)
        if ref is None:
            continue
        names = [str(c) for c in pre.get_feature_names_out()] if hasattr(pre, "get_feature_names_out") else \
            [f"x{i}" for i in range(len(ref))]
        out[part or ""] = {n: round(float(v), 12) for n, v in zip(names, np.asarray(ref, dtype="float64"))}
    return out


def _tree_leaf_values(booster) -> tuple[np.ndarray, float]:
    """Leaf values (float32, widened to float64) per tree as a padded (trees x nodes) table and
    the base margin, from the booster's JSON."""
    import json
    cfg = json.loads(booster.save_config())
    if cfg["learner"]["gradient_booster"]["name"] != "gbtree":
        raise ValueError("exact float64 margins need a gbtree booster")
    model = json.loads(booster.save_raw("json").decode() if isinstance(booster.save_raw("json"), (bytes, bytearray))
                       else booster.save_raw("json"))
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    width = max(len(t["split_conditions"]) for t in trees)
    L = np.zeros((len(trees), width), dtype="float64")
    for i, t in enumerate(trees):
        v = np.asarray(t["split_conditions"], dtype="float32").astype("float64")
        leaf = np.asarray(t["left_children"]) == -1
        L[i, :len(v)] = np.where(leaf, v, np.nan)
    bs = float(str(model["learner"]["learner_model_param"]["base_score"]).strip("[]").split(",")[0])
    obj = cfg["learner"]["objective"]["name"]
    if obj == "binary:logistic":
        base = float(_logit(np.array([bs]))[0])
    elif obj in ("reg:gamma", "count:poisson", "reg:tweedie"):
        base = float(np.log(bs))
    elif obj in ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "binary:logitraw"):
        base = bs
    else:
        raise ValueError(f"exact float64 margin not implemented for objective {obj}")
    return L, base


def _tree_margin64(final, Z, chunk: int = 100_000) -> np.ndarray:
    """The XGBoost margin summed in float64 from the float32 leaf values (XGBoost's own
    output_margin accumulates in float32, ~1e-6 relative)."""
    import xgboost as xgb
    booster = final.get_booster()
    L, base = _tree_leaf_values(booster)
    it = _iteration_range(final)
    n = Z.shape[0]
    out = np.empty(n, dtype="float64")
    for a in range(0, n, chunk):
        Zc = Z.iloc[a:a + chunk] if isinstance(Z, pd.DataFrame) else Z[a:a + chunk]
        dm = xgb.DMatrix(Zc, missing=getattr(final, "missing", np.nan), feature_names=booster.feature_names)
        leaves = booster.predict(dm, pred_leaf=True, iteration_range=it).astype(np.int64)
        leaves = leaves.reshape(len(leaves), -1)
        out[a:a + chunk] = base + L[np.arange(leaves.shape[1]), leaves].sum(axis=1)
    return out


def margin(model, X: pd.DataFrame, *, part: str | None = None, exact: bool = False) -> np.ndarray:
    """The margin that `contributions` decomposes, computed independently of it:
    `predict(..., output_margin=True)` for XGBoost (with exact=True: the same trees' leaf values
    summed in float64 instead of XGBoost's float32 accumulation), `decision_function` for linear
    classifiers, log(predict) for log-link GLMs (gamma/Poisson/Tweedie), predict for other
    linear regressors, logit(P) for StageRateBaseline."""
    m = _final_model(model, part)
    pre, final = _split(m)
    kind = _kind_of(final)
    if kind == "tree":
        Z = pre.transform(X) if pre is not None else X
        if exact:
            return _tree_margin64(final, Z)
        return np.asarray(final.predict(Z, output_margin=True), dtype="float64").ravel()
    if kind == "linear":
        if hasattr(m, "decision_function") and hasattr(final, "decision_function"):
            return np.asarray(m.decision_function(X), dtype="float64").ravel()
        from sklearn.linear_model import GammaRegressor, PoissonRegressor, TweedieRegressor
        pred = np.asarray(m.predict(X), dtype="float64").ravel()
        log_link = isinstance(final, (GammaRegressor, PoissonRegressor)) or (
            isinstance(final, TweedieRegressor) and (final.link == "log" or (final.link == "auto" and final.power > 0)))
        return np.log(pred) if log_link else pred
    return _logit(final.predict_proba(X)[:, 1])


FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24


def float32_margin_error_bound(model, *, part: str | None = None) -> float:
    """Worst-case |float32 margin - exact margin| of an XGBoost part, from the arithmetic.

    XGBoost sums the base margin and one leaf per tree in float32 (recursive summation of T + 1
    terms: error <= T u (|base| + sum over trees of the largest |leaf|), u = 2**-24), and TreeSHAP
    adds, per tree, up to depth + 2 float32 products and sums along a path into each
    contribution; the bound below counts (T (depth + 2) + 1) such roundings on the same
    magnitude. It grows with the number of trees and the margin's size, not with the CPU; a
    tolerance derived from it holds on any machine. Linear parts (float64): 0.0 is returned."""
    pre, final = _split(_final_model(model, part))
    if _kind_of(final) != "tree":
        return 0.0
    L, base = _tree_leaf_values(final.get_booster())
    start, stop = _iteration_range(final)
    L = L[start:stop or None]
    depth = int(final.get_params().get("max_depth") or 6)
    magnitude = abs(base) + float(np.nansum(np.nanmax(np.abs(L), axis=1)))
    n_ops = L.shape[0] * (depth + 2) + 1
    return float(n_ops * FLOAT32_UNIT_ROUNDOFF * magnitude)


def check_additivity(model, X: pd.DataFrame, contrib: pd.DataFrame, *, part: str | None = None,
                     exact: bool = False) -> float:
    """max over rows of |sum of contributions (incl. bias) - margin(model, X)|.

    Linear parts: ~1e-15. XGBoost parts work in float32: against `predict(output_margin=True)`
    (default) expect ~1e-6 x |margin| (e.g. ~1e-5 for a gamma margin of log $3,000 = 8); with
    exact=True the reference is the trees' leaf values summed in float64, isolating the
    contributions' own float32 rounding (~1e-6)."""
    if len(contrib) != len(X):
        raise ValueError(f"contrib has {len(contrib)} rows but X has {len(X)}")
    if not len(X):
        return 0.0
    s = contrib.to_numpy(dtype="float64").sum(axis=1)
    return float(np.max(np.abs(s - margin(model, X, part=part, exact=exact))))


def global_importance(contrib: pd.DataFrame) -> pd.Series:
    """Mean |contribution| per feature (bias excluded), largest first (ties by name)."""
    c = contrib.drop(columns=[BIAS], errors="ignore")
    imp = pd.Series(np.abs(c.to_numpy(dtype="float64")).mean(axis=0), index=c.columns, name="mean_abs_contribution")
    order = np.lexsort((np.asarray(imp.index, dtype=str), -imp.to_numpy()))
    return imp.iloc[order]


# ================================================================ phrase formatting (vectorised)

def _plural(n: np.ndarray, one: str, many: str) -> np.ndarray:
    return np.where(np.abs(n) == 1, one, many).astype(object)


def _int(v: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(np.asarray(v, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
    return np.round(v).astype(np.int64).astype(str).astype(object)


def _money(v: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(np.asarray(v, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
    return np.array([f"-${-x:,.0f}" if x < -0.5 else f"${x:,.0f}" for x in v.tolist()], dtype=object)


def _pct(v: np.ndarray) -> np.ndarray:
    return _int(np.asarray(v, dtype="float64") * 100.0)


def _num(v: np.ndarray) -> np.ndarray:
    """2 significant digits below 10 (0.23, 2.3), whole numbers above."""
    v = np.nan_to_num(np.asarray(v, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
    return np.array([f"{x:.0f}" if abs(x) >= 9.95 else f"{x:.2g}" for x in v.tolist()], dtype=object)


def _nan(v) -> np.ndarray:
    return ~np.isfinite(np.asarray(v, dtype="float64"))


def _months(get) -> np.ndarray:
    return np.maximum(get("first_purchase_days_ago"), 1.0) / 30.0 + 1.0


def _days_phrase(d: np.ndarray) -> np.ndarray:
    return _int(d) + " " + _plural(np.round(np.nan_to_num(d)), "day", "days")


# Each renderer: (get, risk) -> object array of phrases; get(col) gives the raw column as float64
# for the selected rows (get_str(col) as strings), risk is True where the reason reads as a risk.

def _r_recency(get, risk, get_str):
    d = get("recency_days")
    return np.where(_nan(d), "no purchase yet",
                    np.where(risk, "no purchase for " + _days_phrase(d),
                             np.where(np.round(d) == 1, "last purchase yesterday",
                                      "last purchase " + _days_phrase(d) + " ago")))


def _r_rate(get, risk, get_str):
    x = get("frequency") / _months(get)
    return "buys " + _num(x) + " times a month"


def _r_frequency(get, risk, get_str):
    n = get("frequency")
    return np.where(n <= 1, np.where(n <= 0, "no purchase yet", "bought once so far"),
                    _int(n) + " purchase days so far")


def _r_recent_count(days: int):
    col = f"n_purchases_{days}d"

    def render(get, risk, get_str):
        n = get(col)
        return np.where(n <= 0, f"no purchase in the last {days} days",
                        _int(n) + _plural(n, " purchase day", " purchase days")
                        + f" in the last {days} days")
    return render


def _r_spend_month(get, risk, get_str):
    x = get("monetary_total") / _months(get)
    return "spends " + _money(x) + " a month on average"


def _r_avg_order(get, risk, get_str):
    return "average order " + _money(get("monetary_avg"))


def _r_window_spend(days: int, label: str):
    col = f"spend_{days}d"

    def render(get, risk, get_str):
        x = get(col)
        return np.where(x <= 0, f"no spend in the {label}", "spent " + _money(x) + f" in the {label}")
    return render


def _r_growth(get, risk, get_str):
    r = get("spend_growth_ratio_90d")
    up, down = _pct(r - 1.0), _pct(1.0 - r)
    return np.where(_nan(r), "no spend in the prior quarter to compare",
                    np.where(up == "0", "spend flat vs prior quarter",
                             np.where(r > 1, "spend up " + up + " % vs prior quarter",
                                      "spend down " + down + " % vs prior quarter")))


def _r_interval(get, risk, get_str):
    d = get("interval_mean_days")
    return np.where(_nan(d), "no repeat purchase yet", "buys every " + _days_phrase(d) + " on average")


def _r_interval_trend(get, risk, get_str):
    x = get("interval_trend_ratio")
    return np.where(_nan(x), "too few purchases to see a trend",
                    "last gap between purchases " + _num(x) + "x the usual")


def _r_tenure(get, risk, get_str):
    d = get("tenure_days")
    mo = d / 30.0
    return np.where(_nan(d), "new customer",
                    np.where(mo < 2, "customer for " + _days_phrase(d),
                             "customer for " + _int(mo) + " months"))


def _r_returns(get, risk, get_str):
    x = get("return_ratio")
    return np.where(_nan(x) | (x <= 0), "no returns", "returns " + _pct(x) + " % of purchases")


def _r_margin(get, risk, get_str):
    x = get("margin_rate")
    return np.where(_nan(x), "margin unknown", "margin " + _pct(x) + " %")


def _r_past_due(get, risk, get_str):
    d = get("days_past_due_mean")
    return np.where(_nan(d), "no invoices yet", np.where(d <= 0.5, "pays invoices on time on average",
                                                         "invoices " + _days_phrase(d) + " past due on average"))


def _r_late_share(get, risk, get_str):
    x = get("late_payment_share")
    return np.where(_nan(x), "no paid invoices yet", _pct(x) + " % of invoices paid late")


def _r_overdue30(get, risk, get_str):
    n = np.nan_to_num(get("n_overdue_30d"))
    return np.where(n <= 0, "no invoice overdue > 30 days",
                    _int(n) + _plural(n, " invoice overdue > 30 days", " invoices overdue > 30 days"))


def _r_overdue_balance(get, risk, get_str):
    x = np.nan_to_num(get("overdue_balance"))
    return np.where(x <= 0, "nothing overdue", _money(x) + " overdue")


def _r_open_balance(get, risk, get_str):
    return "open balance " + _money(get("open_balance"))


def _r_credit(get, risk, get_str):
    x = get("credit_utilisation")
    return np.where(_nan(x), "no credit limit on file", "uses " + _pct(x) + " % of credit limit")


def _r_n_invoices(get, risk, get_str):
    n = np.nan_to_num(get("n_invoices"))
    return _int(n) + _plural(n, " invoice", " invoices") + " so far"


def _r_rfm(get, risk, get_str):
    return "RFM score " + _int(get("rfm_score")) + " of 15"


def _r_deal_age(get, risk, get_str):
    return "deal open " + _days_phrase(get("age_days"))


def _r_stage(get, risk, get_str):
    return "in stage " + get_str("stage_at_as_of")


def _r_stage_change(get, risk, get_str):
    d = get("days_since_stage_change")
    return np.where(_nan(d), "no stage history", np.where(
        risk, "no stage change for " + _days_phrase(d),
        np.where(np.round(d) <= 0, "stage changed today", "stage changed " + _days_phrase(d) + " ago")))


def _r_amount(get, risk, get_str):
    return "deal amount " + _money(get("amount"))


def _r_won(get, risk, get_str):
    n = get("account_won_deals")
    return np.where(_nan(n), "no account on the deal", np.where(
        n <= 0, "account has never won a deal", "account won " + _int(n) + _plural(n, " deal", " deals") + " before"))


def _r_lost(get, risk, get_str):
    n = get("account_lost_deals")
    return np.where(_nan(n), "no account on the deal", np.where(
        n <= 0, "account has never lost a deal", "account lost " + _int(n) + _plural(n, " deal", " deals") + " before"))


def _r_vs_won(get, risk, get_str):
    x = get("amount_vs_account_won_avg")
    return np.where(_nan(x), "no won deal on the account to compare", _num(x) + "x the account's usual deal")


def _r_account_spend(get, risk, get_str):
    x = get("account_spend_365d")
    return np.where(_nan(x) | (x <= 0), "no account spend in the last year",
                    "account spent " + _money(x) + " in the last year")


def _r_owner(get, risk, get_str):
    x = get("owner_win_rate")
    return np.where(_nan(x), "owner's win rate unknown", "owner wins " + _pct(x) + " % of deals")


def _r_expected_close(get, risk, get_str):
    d = get("days_to_expected_close")
    return np.where(_nan(d), "no expected close date", np.where(
        d >= 0, "expected to close in " + _days_phrase(d), "expected close date passed " + _days_phrase(-d) + " ago"))


@dataclass(frozen=True)
class Reason:
    """A reason group: the raw columns its phrase reads and the phrase renderer."""
    needs: tuple[str, ...]
    render: Callable


#: reason key -> phrase (keys double as the tie-break order).
REASON_PHRASES: dict[str, Reason] = {
    "recency_days": Reason(("recency_days",), _r_recency),
    "purchases_per_month": Reason(("frequency", "first_purchase_days_ago"), _r_rate),
    "frequency": Reason(("frequency",), _r_frequency),
    "n_purchases_30d": Reason(("n_purchases_30d",), _r_recent_count(30)),
    "n_purchases_90d": Reason(("n_purchases_90d",), _r_recent_count(90)),
    "n_purchases_365d": Reason(("n_purchases_365d",), _r_recent_count(365)),
    "spend_per_month": Reason(("monetary_total", "first_purchase_days_ago"), _r_spend_month),
    "monetary_avg": Reason(("monetary_avg",), _r_avg_order),
    "spend_30d": Reason(("spend_30d",), _r_window_spend(30, "last 30 days")),
    "spend_90d": Reason(("spend_90d",), _r_window_spend(90, "last 90 days")),
    "spend_365d": Reason(("spend_365d",), _r_window_spend(365, "last year")),
    "spend_growth_ratio_90d": Reason(("spend_growth_ratio_90d",), _r_growth),
    "interval_mean_days": Reason(("interval_mean_days",), _r_interval),
    "interval_trend_ratio": Reason(("interval_trend_ratio",), _r_interval_trend),
    "tenure_days": Reason(("tenure_days",), _r_tenure),
    "return_ratio": Reason(("return_ratio",), _r_returns),
    "margin_rate": Reason(("margin_rate",), _r_margin),
    "days_past_due_mean": Reason(("days_past_due_mean",), _r_past_due),
    "late_payment_share": Reason(("late_payment_share",), _r_late_share),
    "n_overdue_30d": Reason(("n_overdue_30d",), _r_overdue30),
    "overdue_balance": Reason(("overdue_balance",), _r_overdue_balance),
    "open_balance": Reason(("open_balance",), _r_open_balance),
    "credit_utilisation": Reason(("credit_utilisation",), _r_credit),
    "n_invoices": Reason(("n_invoices",), _r_n_invoices),
    "rfm_score": Reason(("rfm_score",), _r_rfm),
    # deals
    "age_days": Reason(("age_days",), _r_deal_age),
    "stage_at_as_of": Reason(("stage_at_as_of",), _r_stage),
    "days_since_stage_change": Reason(("days_since_stage_change",), _r_stage_change),
    "amount": Reason(("amount",), _r_amount),
    "account_won_deals": Reason(("account_won_deals",), _r_won),
    "account_lost_deals": Reason(("account_lost_deals",), _r_lost),
    "amount_vs_account_won_avg": Reason(("amount_vs_account_won_avg",), _r_vs_won),
    "account_spend_365d": Reason(("account_spend_365d",), _r_account_spend),
    "owner_win_rate": Reason(("owner_win_rate",), _r_owner),
    "days_to_expected_close": Reason(("days_to_expected_close",), _r_expected_close),
}

#: model input feature -> reason key (features not listed are their own key and read
#: "<feature> = value"; one-hot columns stage_at_as_of_<stage> map to stage_at_as_of).
REASON_CODES: dict[str, str] = {
    **{k: k for k in REASON_PHRASES},
    # recency: BG/NBD quantities and recency ratios all speak of the time since the last purchase
    "recency_over_tenure": "recency_days", "active_span_share": "recency_days", "p_alive": "recency_days",
    "p_no_purchase": "recency_days", "expected_purchases": "recency_days",
    "recency_over_interval": "recency_days", "recency_to_interval_ratio": "recency_days", "r_score": "recency_days",
    "repeat_purchases_per_month": "purchases_per_month",
    "f_score": "frequency",
    "monetary_total": "spend_per_month", "m_score": "spend_per_month",
    "spend_growth_diff_90d": "spend_growth_ratio_90d", "spend_prior_90d": "spend_growth_ratio_90d",
    "spend_slope_monthly": "spend_growth_ratio_90d", "recent_spend_share": "spend_growth_ratio_90d",
    "interval_last_days": "interval_trend_ratio",
    "first_purchase_days_ago": "tenure_days", "age_at_first_purchase_days": "tenure_days",
    "n_returns": "return_ratio", "margin_total": "margin_rate",
    "days_past_due_max": "days_past_due_mean",
    "stage_index": "stage_at_as_of",
    "owner_closed_deals": "owner_win_rate",
}

_STAGE_ONEHOT = re.compile(r"^stage_at_as_of_.+")

#: Which direction reads as a risk: for churn a push up is a risk, for value and deal a push down.
_UP_IS_RISK = {"churn": True, "value": False, "deal": False}


def reason_key(feature: str) -> str:
    """The reason group of a model input feature (itself when unknown)."""
    if feature in REASON_CODES:
        return REASON_CODES[feature]
    if _STAGE_ONEHOT.match(feature):
        return "stage_at_as_of"
    return feature


def _fallback(key: str):
    def render(get, risk, get_str, raw_has: bool):
        if not raw_has:
            return np.full(len(risk), key, dtype=object)
        v = get(key)
        vals = np.array(["n/a" if not np.isfinite(x) else f"{x:.4g}" for x in v.tolist()], dtype=object)
        return key + " = " + vals
    return render


# ================================================================ reasons

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
    k = min(n, len(keys))
    col = _raw_getters(raw)
    raw_cols = set(raw.columns)
    up_is_risk = _UP_IS_RISK[kind]
    out = {}
    for side, sign in (("reasons_up", 1.0), ("reasons_down", -1.0)):
        S = V * sign                        # positive = this side
        S[S <= min_abs] = 0.0
        # stable sort of -S keeps the alphabetical key order among ties
        top = np.argsort(-S, axis=1, kind="stable")[:, :k]
        val = np.take_along_axis(S, top, axis=1)
        phrases = np.full((N, k), "", dtype=object)
        valid = val > 0
        rows, slots = np.nonzero(valid)
        groups = top[rows, slots]
        risk_all = up_is_risk if sign > 0 else not up_is_risk
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
                txt = _fallback(key)(get, risk, get_str, key in raw_cols)
            phrases[r, slots[m]] = np.asarray(txt, dtype=object)
        out[side] = _join([phrases[:, j] for j in range(k)])
    return pd.DataFrame(out, index=contrib.index).astype("str")


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
