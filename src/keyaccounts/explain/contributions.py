"""Exact per-row contributions of a model's inputs to its margin (see the package docstring)."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..models.value import TwoPartValue

BIAS = "bias"
KINDS = ("churn", "value", "deal")


# ================================================================ unwrapping

def _final_model(model, part: str | None):
    """The fitted Pipeline/estimator whose margin is explained (calibration and the two-part
    model unwrapped)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

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
        out[part or ""] = {n: round(float(v), 12) for n, v in zip(names, np.asarray(ref, dtype="float64"), strict=False)}
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
