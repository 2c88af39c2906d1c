"""Evaluation metrics for churn / deal probabilities and future-value predictions."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Weighted mean |observed rate - mean prediction| over equal-count bins of p."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, n_bins)
    return float(sum(len(b) * abs(y[b].mean() - p[b].mean()) for b in bins if len(b)) / len(p))


def classification_metrics(y, p) -> dict[str, float]:
    """roc_auc, pr_auc, brier, log_loss, ece (10 equal-count bins), base_rate, mean_prediction."""
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    two = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "base_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
    }


def normalized_gini(actual, pred) -> float:
    """Gini of `actual` ordered by `pred`, over the Gini of the perfect ordering (1 = perfect).

    Ties in `pred` count as the average over their orderings (average ranks), so the result
    does not depend on row order and a constant prediction scores exactly 0. Uses
    sum_i actual_i * rank(pred)_i / (n * sum(actual)) - (n + 1) / (2n), the area form of the
    cumulative-gains curve."""
    a = np.asarray(actual, float)
    p = np.asarray(pred, float)
    n, total = len(a), a.sum()
    if n == 0 or total == 0:
        return float("nan")

    def g(ranks):
        return float((a * ranks).sum() / (n * total) - (n + 1) / (2 * n))

    best = g(rankdata(a))
    return g(rankdata(p)) / best if best else float("nan")


def value_metrics(actual, pred) -> dict[str, float]:
    """spearman, gini (normalised), mae, total_rel_error ((sum pred - sum actual) / sum actual),
    decile_mape (mean |pred - actual| / actual over deciles of pred, by decile totals),
    top_decile_capture (share of actual value in the top 10 % by pred)."""
    a, p = np.asarray(actual, float), np.asarray(pred, float)
    order = np.argsort(-p, kind="stable")
    deciles = np.array_split(order, 10)
    dec = [abs(p[d].sum() - a[d].sum()) / abs(a[d].sum()) for d in deciles if len(d) and a[d].sum() != 0]
    return {
        "spearman": float(spearmanr(a, p).statistic),
        "gini": normalized_gini(a, p),
        "mae": float(np.abs(a - p).mean()),
        "total_rel_error": float((p.sum() - a.sum()) / a.sum()) if a.sum() else float("nan"),
        "decile_mape": float(np.mean(dec)) if dec else float("nan"),
        "top_decile_capture": float(a[deciles[0]].sum() / a.sum()) if a.sum() else float("nan"),
    }
