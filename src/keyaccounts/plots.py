"""Diagnostic figures for training runs (matplotlib, headless)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def calibration_figure(y, probs: dict[str, np.ndarray], n_bins: int = 10, title: str = "calibration"):
    """Reliability diagram: mean prediction vs observed rate in equal-count bins."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    y = np.asarray(y, float)
    for name, p in probs.items():
        order = np.argsort(np.asarray(p, float), kind="stable")
        bins = [b for b in np.array_split(order, n_bins) if len(b)]
        ax.plot([p[b].mean() for b in bins], [y[b].mean() for b in bins], marker="o", label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def lift_figure(actual, pred, title: str = "decile lift"):
    """Mean actual and mean predicted value per decile of the prediction (1 = highest)."""
    plt = _plt()
    a, p = np.asarray(actual, float), np.asarray(pred, float)
    order = np.argsort(-p, kind="stable")
    dec = np.array_split(order, 10)
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, len(dec) + 1)
    ax.bar(x - 0.2, [a[d].mean() for d in dec], width=0.4, label="actual")
    ax.bar(x + 0.2, [p[d].mean() for d in dec], width=0.4, label="predicted")
    ax.set(xlabel="decile of prediction (1 = highest)", ylabel="mean per customer", title=title, xticks=x)
    ax.legend()
    fig.tight_layout()
    return fig


def find_pipeline(model: Any, is_last, depth: int = 0):
    """The innermost sklearn Pipeline inside `model` whose last step satisfies `is_last`."""
    if depth > 6 or model is None:
        return None
    steps = getattr(model, "steps", None)
    if steps and is_last(steps[-1][1]):
        return model
    for attr in ("estimator", "calibrated_classifiers_", "classifier_", "regressor_"):
        sub = getattr(model, attr, None)
        if isinstance(sub, list):
            sub = sub[0] if sub else None
        found = find_pipeline(sub, is_last, depth + 1)
        if found is not None:
            return found
    for _, step in reversed(steps or []):
        found = find_pipeline(step, is_last, depth + 1)
        if found is not None:
            return found
    return None


def shap_importance(model: Any, X: pd.DataFrame, max_rows: int = 5000) -> pd.Series | None:
    """Mean |SHAP| per model input, in margin units: exact TreeSHAP (XGBoost pred_contribs) for a
    tree part, exact linear SHAP coef * (x - mean x) for a linear part; None for neither."""
    Xs = X.iloc[:max_rows]
    pipe = find_pipeline(model, lambda est: hasattr(est, "get_booster"))
    if pipe is not None:
        import xgboost as xgb
        Xt = pipe[:-1].transform(Xs) if len(pipe.steps) > 1 else Xs
        booster = pipe.steps[-1][1].get_booster()
        names = list(Xt.columns) if hasattr(Xt, "columns") else \
            (booster.feature_names or [f"f{i}" for i in range(np.shape(Xt)[1])])
        dm = xgb.DMatrix(np.asarray(Xt, dtype="float64"), feature_names=booster.feature_names)
        contrib = booster.predict(dm, pred_contribs=True)[:, :-1]
    else:
        pipe = find_pipeline(model, lambda est: getattr(est, "coef_", None) is not None)
        if pipe is None:
            return None
        Xt = pipe[:-1].transform(Xs) if len(pipe.steps) > 1 else Xs
        names = list(pipe[:-1].get_feature_names_out()) if len(pipe.steps) > 1 else list(Xs.columns)
        A = np.asarray(Xt, dtype="float64")
        contrib = (A - A.mean(axis=0)) * np.ravel(pipe.steps[-1][1].coef_)
    return pd.Series(np.abs(contrib).mean(axis=0), index=names).sort_values(ascending=False)


def importance_figure(importance: pd.Series, title: str = "SHAP summary (mean |contribution|)", top: int = 20):
    plt = _plt()
    imp = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(imp) + 1.2))
    ax.barh(imp.index.astype(str), imp.to_numpy())
    ax.set(xlabel="mean |SHAP value| (margin units)", title=title)
    fig.tight_layout()
    return fig


def close(figures: dict) -> None:
    """Release figures once logged (pyplot keeps every open figure alive)."""
    plt = _plt()
    for fig in figures.values():
        plt.close(fig)
