"""Logistic regression whose coefficients keep the sign a salesperson would state.

    from keyaccounts.models.linear import SignedLogisticRegression
    lr = SignedLogisticRegression(C=1.0, signs={"purchases_per_month": -1, "recency_over_tenure": 1})
    lr.fit(Z, y)            # Z: a DataFrame (signs are matched by column name)
    lr.predict_proba(Z)[:, 1]

Why: inputs such as purchase rate, expected purchases and P(alive) are strongly correlated, so an
unconstrained fit can give one of them a coefficient of the "wrong" sign that only the others
cancel. The reasons read from such a model say "buys 4 times a month" raises churn risk. Bounding
each named coefficient's sign (L-BFGS-B on the L2-penalised log loss, the same objective as
sklearn's LogisticRegression with penalty='l2') keeps every reason monotone in its input; an
input whose best coefficient has the wrong sign gets 0 and drops out of the reasons. Columns
not named in `signs` are unconstrained.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted

__all__ = ["SignedLogisticRegression"]


def _loss_grad(theta: np.ndarray, X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float):
    """C x weighted log loss + ||coef||^2 / 2 (intercept unpenalised) and its gradient."""
    coef, b = theta[:-1], theta[-1]
    z = X @ coef + b
    loss = C * float(np.sum(w * (np.logaddexp(0.0, z) - y * z))) + 0.5 * float(coef @ coef)
    r = C * w * (special.expit(z) - y)
    return loss, np.append(X.T @ r + coef, r.sum())


class SignedLogisticRegression(ClassifierMixin, BaseEstimator):
    """Binary L2 logistic regression with sign bounds on named coefficients (see module doc).

    signs: {column name: +1 (coefficient >= 0) | -1 (<= 0) | 0 (free)}; names absent from the
    fitted frame are ignored, so one setting serves tables with and without optional columns."""

    def __init__(self, C: float = 1.0, signs: dict | None = None, max_iter: int = 2000, tol: float = 1e-10):
        self.C = C
        self.signs = signs
        self.max_iter = max_iter
        self.tol = tol

    def _bounds(self, names: list[str]) -> list[tuple[float | None, float | None]]:
        signs = dict(self.signs or {})
        bad = {k: v for k, v in signs.items() if v not in (-1, 0, 1)}
        if bad:
            raise ValueError(f"signs must be -1, 0 or +1, got {bad}")
        table = {1: (0.0, None), -1: (None, 0.0), 0: (None, None)}
        return [table[signs.get(n, 0)] for n in names] + [(None, None)]

    def fit(self, X, y, sample_weight=None):
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        A = np.asarray(X, dtype="float64")
        if A.ndim != 2 or not np.isfinite(A).all():
            raise ValueError("SignedLogisticRegression needs a finite 2-D input (impute first)")
        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ValueError(f"SignedLogisticRegression is binary; got classes {list(self.classes_)}")
        t = (np.asarray(y) == self.classes_[1]).astype("float64")
        w = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype="float64")
        names = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else [
            f"x{i}" for i in range(A.shape[1])]
        res = optimize.minimize(_loss_grad, np.zeros(A.shape[1] + 1), args=(A, t, w, float(self.C)), jac=True,
                                method="L-BFGS-B", bounds=self._bounds(names),
                                options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-15})
        self.coef_ = res.x[:-1].reshape(1, -1)
        self.intercept_ = res.x[-1:].copy()
        self.n_features_in_ = A.shape[1]
        self.n_iter_ = np.array([res.nit])
        return self

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype="float64") @ self.coef_.ravel() + self.intercept_[0]

    def predict_proba(self, X) -> np.ndarray:
        p = special.expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
