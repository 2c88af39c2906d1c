"""Diagnostic figures for training runs and the report (matplotlib, object-oriented API).

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot, and nothing here
selects a backend: importing the package or drawing a chart leaves matplotlib's global state
(the backend a notebook or application chose, pyplot's figure list) as it was. A figure saves
without a display (`fig.savefig`, `io.write_figure`, `mlflow.log_figure` render PNG with Agg's
canvas for that one call) and, in IPython/Jupyter, shows itself when it is a cell's value or is
passed to `IPython.display.display`, whatever the backend (`ChartFigure._repr_png_`).
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from io import BytesIO
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # the object-oriented API: importing it selects no backend


class ChartFigure(Figure):
    """A Figure that IPython displays as PNG (rich display protocol), with or without pyplot.

    Where IPython already formats matplotlib figures (`%matplotlib inline`), that formatter
    is used instead: one image either way."""

    def _repr_png_(self) -> bytes:
        buf = BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **subplot_kw: Any):
    """(figure, axes) like `pyplot.subplots`, without pyplot: nothing global is touched, and
    the figure is freed when no longer referenced (no `close` needed)."""
    fig = ChartFigure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplot_kw)


def calibration_figure(y, probs: dict[str, np.ndarray], n_bins: int = 10, title: str = "calibration"):
    """Reliability diagram: mean prediction vs observed rate in equal-count bins."""
    fig, ax = new_figure((5, 5))
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
    a, p = np.asarray(actual, float), np.asarray(pred, float)
    order = np.argsort(-p, kind="stable")
    dec = np.array_split(order, 10)
    fig, ax = new_figure((6, 4))
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
    imp = importance.head(top)[::-1]
    fig, ax = new_figure((6, 0.3 * len(imp) + 1.2))
    ax.barh(imp.index.astype(str), imp.to_numpy())
    ax.set(xlabel="mean |SHAP value| (margin units)", title=title)
    fig.tight_layout()
    return fig


def close(figures: dict | Iterable) -> None:
    """Release figures once written or logged (a dict's values, or an iterable). Figures made
    here are not registered anywhere and need nothing; one a caller made through pyplot is
    closed there. pyplot is never imported for this (that could select a backend)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for fig in (figures.values() if isinstance(figures, dict) else figures):
        plt.close(fig)  # a no-op for a figure pyplot does not manage


