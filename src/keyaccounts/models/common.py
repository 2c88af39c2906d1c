"""Small helpers shared by the model factories."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedKFold

from ..errors import InputError

#: CalibratedClassifierCV's folds over the held-out data (fewer when a class is rarer).
CALIBRATION_FOLDS = 5


def merge_params(defaults: dict[str, Any], params: dict | None, what: str) -> dict[str, Any]:
    """defaults updated by params (the nested 'xgb' dict merged key by key); unknown keys fail."""
    params = params or {}
    p = {**defaults, **params}
    if "xgb" in defaults:
        p["xgb"] = {**defaults["xgb"], **(params.get("xgb") or {})}
    unknown = set(p) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {what} parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return p


def calibrate(fitted_model, X_val, y_val, method: str = "sigmoid") -> CalibratedClassifierCV:
    """Calibrate an already fitted classifier on held-out data: the model is frozen (never
    refitted); calibrators ('sigmoid' or 'isotonic') fitted on stratified folds of (X_val, y_val)
    are averaged. Folds = min(5, rarer class count); InputError when a class has < 2 rows there."""
    if method not in ("isotonic", "sigmoid"):
        raise ValueError("method must be 'isotonic' or 'sigmoid'")
    y = np.asarray(y_val)
    counts = {v: int((y == v).sum()) for v in (0, 1)}
    rarer = min(counts.values())
    if rarer < 2:
        raise InputError(f"cannot calibrate: the held-out fold has {counts[1]} positive and {counts[0]} negative "
                         f"row(s) ({len(y)} in all); calibration needs at least 2 of each",
                         hint="give more history (more customers or deals, an earlier data start) or a different "
                              "--horizon-days")
    cv = min(CALIBRATION_FOLDS, rarer)
    return CalibratedClassifierCV(FrozenEstimator(fitted_model), method=method, cv=cv).fit(X_val, y_val)


def cross_fitted_calibration(fitted_model, X, y, method: str = "sigmoid") -> np.ndarray:
    """Calibrated probabilities on held-out X where each half is calibrated on the other half
    (stratified, seeded), so the reported calibration is measured on labels its calibrator did
    not see."""
    y = np.asarray(y)
    out = np.empty(len(y), dtype="float64")
    for fit_idx, eval_idx in StratifiedKFold(n_splits=2, shuffle=True, random_state=0).split(X, y):
        cal = calibrate(fitted_model, X.iloc[fit_idx], y[fit_idx], method=method)
        out[eval_idx] = cal.predict_proba(X.iloc[eval_idx])[:, 1]
    return out
