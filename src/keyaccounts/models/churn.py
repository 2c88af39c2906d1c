"""Churn model: P(no positive purchase in the next H days | point-in-time features).

    from keyaccounts.models.churn import make_churn_model, calibrate
    model = make_churn_model({"horizon_days": 180}).fit(X_train, y_train)   # X: snapshot features
    cal = calibrate(model, X_val, y_val, method="sigmoid")                  # latest cutoff's fold
    p_churn = cal.predict_proba(X_test)[:, 1]

X is the frame of `features.build_features` / `snapshots.customer_snapshots` (labels and
context columns are ignored). Columns read: frequency, recency_days, first_purchase_days_ago,
monetary_total (the XGBoost part also reads monetary_avg, n_purchases_90d, spend_90d,
interval_mean_days when present). y: 1 = churned (the `churned` label), 0 = bought.
Pass {"horizon_days": H} with the label horizon (BG/NBD expected purchases are over H).

Design (benchmarks/accuracy.py; CDNOW 1997-10-01, H = 180 d)
- Features: NumericSelector -> RatioFeatures -> BTYDFeatures (BG/NBD fitted on the training
  rows: p_alive, expected_purchases over H, p_no_purchase).
- Estimator "glm" (default): logistic regression on sign-log transformed inputs that keep
  their meaning at any tenure (GLM_FEATURES: recency / tenure, purchase and spend rates,
  active-span share, BG/NBD quantities). Training cutoffs (as_of - H - k*step) can only show
  shorter histories than the customers scored at as_of; trees flatten out at the edge of the
  training range, and raw recency/tenure terms move the probability level when extrapolated.
  `keyaccounts train` chooses among "glm" (C = 0.1 / 1), "xgb" (monotone constraints) and
  "blend" (soft vote) on the validation cutoff, with the candidates fitted a gap before it (as
  deployment scores H after the newest training cutoff) and the one-SE rule favouring the
  simpler (train.choose_churn); a fixed `estimator` in params skips the choice.
- Calibration: `calibrate` wraps the fitted model in CalibratedClassifierCV(FrozenEstimator).
  "sigmoid" keeps the ranking (AUC) intact; "isotonic" is a step function (ties lower AUC a
  little) but more flexible.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from .common import calibrate, merge_params
from .linear import SignedLogisticRegression
from .transformers import (
    BTYDFeatures,
    ColumnSubset,
    NumericSelector,
    RatioFeatures,
    SignedLog1p,
)

__all__ = [
    "CHURN_SIGNS",
    "DEFAULT_PARAMS",
    "GLM_FEATURES",
    "XGB_FEATURES",
    "XGB_MONOTONE",
    "ProbabilityLogit",
    "UnitLogistic",
    "btyd_churn_model",
    "calibrate",
    "feature_steps",
    "glm_steps",
    "make_churn_baseline",
    "make_churn_model",
    "xgb_steps",
]

#: Inputs of the logistic part (after RatioFeatures + BTYDFeatures), sign-log transformed: only
#: quantities that keep their meaning at any tenure (rates, shares, BG/NBD quantities). Raw
#: recency/tenure/frequency are left out: their scoring range lies beyond the training range
#: and a linear term in them moves the probability level under extrapolation.
GLM_FEATURES = ("recency_over_tenure", "purchases_per_month", "spend_per_month", "active_span_share",
                "p_alive", "expected_purchases", "p_no_purchase")
#: The direction a salesperson states for the GLM inputs that are phrased on their own: buying
#: more often or spending more per month lowers churn risk. Their coefficients are bounded to
#: these signs (models.linear), so collinearity with the BG/NBD quantities (expected purchases,
#: P(alive): phrased together as recency) can never turn "buys 4 times a month" into a risk.
#: Inputs phrased as one group (recency ratios and BG/NBD quantities) are left free: their
#: collinearity cancels inside the group's summed contribution.
CHURN_SIGNS = {"purchases_per_month": -1, "spend_per_month": -1}

#: Inputs of the XGBoost part (rates + BG/NBD + recent activity; absent optional ones skipped).
XGB_FEATURES = GLM_FEATURES + ("frequency", "recency_days", "monetary_avg", "n_purchases_90d", "spend_90d",
                               "recency_over_interval", "interval_mean_days")
#: P(churn) never decreases with recency share / recency, never increases with purchase rates.
XGB_MONOTONE = {"recency_over_tenure": 1, "recency_days": 1, "purchases_per_month": -1,
                "active_span_share": -1, "expected_purchases": -1, "frequency": -1, "n_purchases_90d": -1}

DEFAULT_PARAMS: dict[str, Any] = {
    "horizon_days": 180,        # BG/NBD expected purchases over this horizon: pass the label horizon
    "time_unit_days": 7.0,
    "estimator": "glm",         # "glm" | "xgb" | "blend"
    "C": 1.0,                   # inverse L2 strength of the logistic regression
    "glm_features": GLM_FEATURES,
    "xgb_weight": 0.5,          # weight of XGBoost in the blend
    "xgb": {"n_estimators": 300, "max_depth": 3, "learning_rate": 0.05, "min_child_weight": 50.0,
            "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "tree_method": "hist",
            "n_jobs": 1, "random_state": 0},
    "monotone": True,
    "signed": True,             # GLM coefficients bounded to CHURN_SIGNS (reasons read as a salesperson expects)
}


def _params(params: dict | None) -> dict[str, Any]:
    p = merge_params(DEFAULT_PARAMS, params, "churn model")
    if p["estimator"] not in ("glm", "xgb", "blend"):
        raise ValueError("estimator must be 'glm', 'xgb' or 'blend'")
    return p


def feature_steps(horizon_days: float, time_unit_days: float = 7.0) -> list[tuple[str, Any]]:
    """The shared feature steps: numeric columns -> ratios -> BG/NBD features."""
    return [("select", NumericSelector()), ("ratios", RatioFeatures()),
            ("btyd", BTYDFeatures(horizon_days=horizon_days, time_unit_days=time_unit_days))]


def glm_steps(columns=GLM_FEATURES, C: float = 1.0, signs: dict | None = None) -> list[tuple[str, Any]]:
    """Logistic regression on sign-log features, median-imputed and standardised; with `signs`
    ({input: +1 | -1}) its coefficients are bounded to those directions."""
    lr = (SignedLogisticRegression(C=C, signs=dict(signs)) if signs is not None
          else LogisticRegression(C=C, max_iter=2000))
    # pandas output keeps the input names up to the regression (signs are matched by name)
    return [("columns", ColumnSubset(list(columns), strict=False)), ("log", SignedLog1p()),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True).set_output(transform="pandas")),
            ("scale", StandardScaler().set_output(transform="pandas")), ("lr", lr)]


def xgb_steps(columns=XGB_FEATURES, xgb_params: dict | None = None, monotone: bool = True) -> list[tuple[str, Any]]:
    """Shallow XGBoost (NaN-tolerant) on the given columns, optionally monotone (XGB_MONOTONE)."""
    kw = {**DEFAULT_PARAMS["xgb"], **(xgb_params or {})}
    if monotone:
        kw["monotone_constraints"] = dict(XGB_MONOTONE)
    return [("columns", ColumnSubset(list(columns), strict=False)),
            ("xgb", XGBClassifier(objective="binary:logistic", eval_metric="logloss", **kw))]


def make_churn_model(params: dict | None = None) -> Pipeline:
    """Unfitted churn pipeline: feature steps + the estimator (see DEFAULT_PARAMS), one flat
    Pipeline for "glm"/"xgb" (so tools can find the booster), a soft VotingClassifier of the
    two for "blend". `predict_proba(X)[:, 1]` = P(churn) = P(no positive purchase in H)."""
    p = _params(params)
    feats = feature_steps(p["horizon_days"], p["time_unit_days"])
    glm = glm_steps(p["glm_features"], C=p["C"], signs=CHURN_SIGNS if p["signed"] else None)
    if p["estimator"] == "glm":
        return Pipeline(feats + glm)
    xgb = xgb_steps(XGB_FEATURES, p["xgb"], monotone=p["monotone"])
    if p["estimator"] == "xgb":
        return Pipeline(feats + xgb)
    w = float(p["xgb_weight"])
    if not 0.0 <= w <= 1.0:
        raise ValueError("xgb_weight must be in [0, 1]")
    vote = VotingClassifier([("glm", Pipeline(glm)), ("xgb", Pipeline(xgb))], voting="soft", weights=[1.0 - w, w])
    return Pipeline(feats + [("model", vote)])


def make_churn_baseline() -> Pipeline:
    """Plain logistic regression on every numeric feature (median imputer + scaler inside)."""
    return Pipeline([("select", NumericSelector()),
                     ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=2000))])


class ProbabilityLogit(BaseEstimator):
    """logit of a probability column (clipped to [1e-6, 1 - 1e-6]); missing values (rows
    BG/NBD cannot place: no purchase yet) take the training rows' mean probability."""

    def fit(self, X, y=None):
        self.fill_ = X.mean(numeric_only=True).to_dict()
        return self

    def transform(self, X):
        p = X.fillna(self.fill_).clip(1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def get_feature_names_out(self, input_features=None):
        return np.asarray(list(self.fill_), dtype=object)


class UnitLogistic(ClassifierMixin, BaseEstimator):
    """P(1) = sigmoid(sum of the inputs): a logistic 'model' with coefficients 1 and intercept 0,
    nothing learnt. On a logit it returns that probability, and explain reads it as a linear
    model (one contribution per input)."""

    def fit(self, X, y=None):
        self.coef_ = np.ones((1, X.shape[1]))
        self.intercept_ = np.zeros(1)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        z = np.asarray(X, dtype="float64") @ self.coef_.ravel() + self.intercept_[0]
        p = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype("int64")


def btyd_churn_model(horizon_days: float = 180.0, time_unit_days: float = 7.0) -> Pipeline:
    """The BG/NBD baseline as a churn pipeline: P(churn) = BG/NBD's P(no purchase in the next
    horizon_days), BG/NBD fitted on the rows given to `fit` (a feature frame; labels are not
    needed, so it serves where the history holds no labelled snapshot). One linear reason:
    p_no_purchase (its logit, measured from the reference that explain.fix_reference sets)."""
    return Pipeline(feature_steps(horizon_days, time_unit_days)
                    + [("columns", ColumnSubset(["p_no_purchase"])), ("logit", ProbabilityLogit()),
                       ("bgnbd", UnitLogistic())])
