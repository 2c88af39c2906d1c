"""Value model: expected net spend over the next H days, as a two-part model.

    from keyaccounts.models.value import make_value_model
    m = make_value_model({"horizon_days": 180}).fit(X_train, y_train)   # y = future_value
    m.predict(X)              # expected_value = P(buy) * E[spend | buy]
    m.predict_buy_proba(X)    # P(future_value > 0)
    m.predict_spend(X)        # E[future_value | future_value > 0]

X is the frame of `features.build_features` / `snapshots.customer_snapshots` (see
models/churn.py for the columns read). Both parts are full pipelines from that frame
(NumericSelector -> RatioFeatures -> BTYDFeatures -> model), so each part can be used alone.

Design
- P(buy): the churn GLM (logistic regression on tenure-free ratios + BG/NBD features, purchase
  and spend rates bounded to "more raises P(buy)"), fitted on y > 0.
  A GLM extrapolates to customers older than any training cutoff saw.
- E[spend | buy]: gamma deviance (log link) on the buyers only, never squared error on raw
  spend. Default "xgb": shallow XGBoost `reg:gamma` on tenure-free inputs (average spend per
  purchase day, frequency, purchase rate, recency share, BG/NBD quantities); "glm": gamma GLM on
  the same inputs, sign-log transformed.
- expected_value = P(buy) * E[spend | buy] is a mean forecast: its sum is the expected total.
- Net returns: a window whose net spend is <= 0 counts as "no buy" (the forecast is >= 0).
- Intervals (predict_quantiles): zero-inflated gamma around the two parts, its levels
  recalibrated at fit time on the latest training cutoff held out (models/intervals.py), so that
  10 % of held-out accounts fell below the P10 and 10 % above the P90.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import GammaRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from xgboost import XGBRegressor

from .btyd import GammaGamma
from .churn import (
    CHURN_SIGNS,
    GLM_FEATURES,
    feature_steps,
    glm_steps,
    make_churn_baseline,
)
from .common import merge_params
from .intervals import pit_bounds, pit_quantiles, recalibrated_levels, zero_inflated_gamma_quantiles
from .transformers import ColumnSubset, NumericSelector, SignedLog1p

__all__ = [
    "BUY_SIGNS",
    "DEFAULT_PARAMS",
    "RECENT_SPEND",
    "SPEND_FEATURES",
    "BTYDValue",
    "TwoPartValue",
    "make_value_baseline",
    "make_value_model",
    "spend_steps",
    "zero_inflated_gamma_quantiles",
]

#: Inputs of the spend-given-buy model: levels that do not grow with tenure, plus BG/NBD.
SPEND_FEATURES = ("monetary_avg", "frequency", "purchases_per_month", "recency_over_tenure",
                  "expected_purchases", "p_alive")
#: Recent-window spend levels: a candidate's extra spend inputs (frequent buyers' next spend
#: follows their last quarter's more than their lifetime average).
RECENT_SPEND = ("spend_90d", "n_purchases_90d")
#: P(buy) is 1 - P(churn): the churn GLM's bounded directions reversed.
BUY_SIGNS = {k: -v for k, v in CHURN_SIGNS.items()}

DEFAULT_PARAMS: dict[str, Any] = {
    "horizon_days": 180,
    "time_unit_days": 7.0,
    "C": 1.0,                  # logistic regression of P(buy)
    "glm_features": GLM_FEATURES,
    "spend_features": SPEND_FEATURES,
    "spend_model": "xgb",      # "xgb" | "glm"
    "xgb": {"n_estimators": 300, "max_depth": 3, "learning_rate": 0.05, "min_child_weight": 50.0,
            "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "tree_method": "hist",
            "n_jobs": 1, "random_state": 0},
    "glm_alpha": 1e-4,
    "min_spend": 1.0,          # buyers' spend is floored here before the gamma fit (gamma needs > 0)
    "signed": True,            # P(buy) GLM's purchase and spend rates bounded to BUY_SIGNS
    "calibrate_intervals": True,  # learn the P10/P90 levels on a held-out cutoff (one more fit)
}


class TwoPartValue(RegressorMixin, BaseEstimator):
    """E[y] = P(y > 0) * E[y | y > 0].

    classifier: fitted on (X, y > 0); its predict_proba(X)[:, 1] is P(buy).
    regressor:  fitted on the rows with y > 0, target max(y, min_spend); predictions are
                floored at 0.
    calibrate_intervals: learn predict_quantiles' levels at fit time. With a `cutoff` index
                level in X (snapshots) a copy is fitted on the cutoffs at least
                interval_gap_days before the latest one (at most half the span: deployed, the
                model scores that long after its newest cutoff) and the latest cutoff is held
                out; without one, on the training rows themselves (in-sample, optimistic).
                interval_calibration_ says which.
    """

    def __init__(self, classifier=None, regressor=None, min_spend: float = 1.0, calibrate_intervals: bool = True,
                 interval_gap_days: float = 0.0):
        self.classifier = classifier
        self.regressor = regressor
        self.min_spend = min_spend
        self.calibrate_intervals = calibrate_intervals
        self.interval_gap_days = interval_gap_days

    def fit(self, X, y, sample_weight=None):
        if self.classifier is None or self.regressor is None:
            raise ValueError("TwoPartValue needs a classifier and a regressor")
        y = np.asarray(y, dtype="float64").ravel()
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if not np.isfinite(y).all():
            raise ValueError("y (future value) must be finite")
        buy = y > 0
        if buy.all() or not buy.any():
            raise ValueError("TwoPartValue needs both buyers (y > 0) and non-buyers in the training rows")
        kw = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)}
        self.classifier_ = clone(self.classifier).fit(X, buy.astype("int64"), **_route(self.classifier, kw))
        Xb = X[buy] if isinstance(X, pd.DataFrame) else np.asarray(X)[buy]
        kwb = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)[buy]}
        self.regressor_ = clone(self.regressor).fit(Xb, np.maximum(y[buy], self.min_spend),
                                                    **_route(self.regressor, kwb))
        self.buy_rate_ = float(buy.mean())
        self.mean_spend_ = float(y[buy].mean())
        # Gamma dispersion of spend around E[spend | buy] (Pearson estimator on the buyers): the
        # spread of the per-account intervals; shape = 1 / dispersion.
        mu = np.maximum(np.asarray(self.regressor_.predict(Xb), dtype="float64"), self.min_spend)
        self.spend_dispersion_ = float(np.mean(((np.maximum(y[buy], self.min_spend) - mu) / mu) ** 2))
        if self.calibrate_intervals:
            self._fit_interval_levels(X, y, sample_weight)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def _holdout(self, X, y) -> tuple[np.ndarray, np.ndarray, str] | None:
        """(rows to fit the copy on, held-out rows, description), or None when X has no cutoff
        index level or the split leaves no buyers/non-buyers to fit on."""
        if not isinstance(X, pd.DataFrame) or "cutoff" not in (X.index.names or []):
            return None
        c = pd.DatetimeIndex(X.index.get_level_values("cutoff"))
        last = c.max()
        gap = min(pd.Timedelta(days=float(self.interval_gap_days)), (last - c.min()) / 2)
        fit, held = np.asarray((c < last) & (c <= last - gap)), np.asarray(c == last)
        if not fit.any() or (y[fit] > 0).all() or not (y[fit] > 0).any():
            return None
        return fit, held, (f"held-out cutoff {last.date()} ({held.sum():,} rows); copy fitted on "
                           f"{c[fit].nunique()} cutoffs up to {c[fit].max().date()}")

    def _fit_interval_levels(self, X, y, sample_weight) -> None:
        """interval_pit_at_ / interval_pit_below_: held-out F(y) and F(y-) at PIT_GRID (see
        models/intervals.py); unweighted (they count accounts, as coverage does)."""
        split = self._holdout(X, y)
        if split is None:
            model, Xh, yh = self, X, y
            self.interval_calibration_ = f"in-sample ({len(y):,} training rows: no earlier cutoff to hold out from)"
        else:
            fit, held, self.interval_calibration_ = split
            sw = None if sample_weight is None else np.asarray(sample_weight)[fit]
            model = clone(self).set_params(calibrate_intervals=False).fit(X[fit], y[fit], sample_weight=sw)
            Xh, yh = X[held], y[held]
        at, below = pit_bounds(yh, model.predict_buy_proba(Xh), model.predict_spend(Xh), model.spend_dispersion_)
        self.interval_pit_at_, self.interval_pit_below_ = pit_quantiles(at, below)

    def predict_buy_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict_proba(X)[:, 1]

    def predict_spend(self, X) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        return np.maximum(np.asarray(self.regressor_.predict(X), dtype="float64"), 0.0)

    #: Population-level multiplier of every forecast (train.level_factor: the customer base's
    #: recent trend or same period of earlier years, set after fit when it beat the model's own
    #: total on the validation fold); 1 = the accounts' own forecast.
    level_: float = 1.0

    def predict(self, X) -> np.ndarray:
        return self.predict_buy_proba(X) * self.predict_spend(X) * self.level_

    def predict_quantiles(self, X, quantiles=(0.1, 0.9), recalibrated: bool = True) -> np.ndarray:
        """Per-row quantiles of next-horizon spend (rows x quantiles): no spend with
        probability 1 - P(buy), else gamma with mean E[spend | buy] x level_ and the fitted
        dispersion, read at the levels learned at fit time (recalibrated=False, or a model
        fitted without them: at the nominal levels)."""
        check_is_fitted(self, "spend_dispersion_")
        levels = np.asarray(quantiles, dtype="float64")
        if recalibrated and hasattr(self, "interval_pit_at_"):
            levels = recalibrated_levels(levels, self.interval_pit_at_, self.interval_pit_below_)
        return zero_inflated_gamma_quantiles(self.predict_buy_proba(X), self.predict_spend(X) * self.level_,
                                             self.spend_dispersion_, levels)


def _route(est, kw: dict) -> dict:
    """sample_weight for a Pipeline goes to its last step."""
    if not kw:
        return {}
    if isinstance(est, Pipeline):
        return {f"{est.steps[-1][0]}__sample_weight": kw["sample_weight"]}
    return kw


def _params(params: dict | None) -> dict[str, Any]:
    p = merge_params(DEFAULT_PARAMS, params, "value model")
    if p["spend_model"] not in ("xgb", "glm"):
        raise ValueError("spend_model must be 'xgb' or 'glm'")
    return p


def spend_steps(p: dict[str, Any]) -> list[tuple[str, Any]]:
    """E[spend | buy] on SPEND_FEATURES with gamma deviance: XGBoost or a gamma GLM."""
    cols = ("columns", ColumnSubset(list(p["spend_features"]), strict=False))
    if p["spend_model"] == "xgb":
        return [cols, ("xgb", XGBRegressor(objective="reg:gamma", **p["xgb"]))]
    return [cols, ("log", SignedLog1p()), ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()), ("glm", GammaRegressor(alpha=p["glm_alpha"], max_iter=1000))]


def make_value_model(params: dict | None = None) -> TwoPartValue:
    """Unfitted two-part value model (see DEFAULT_PARAMS); each part is one flat Pipeline from
    the raw feature frame."""
    p = _params(params)
    clf = Pipeline(feature_steps(p["horizon_days"], p["time_unit_days"])
                   + glm_steps(p["glm_features"], C=p["C"], signs=BUY_SIGNS if p["signed"] else None))
    reg = Pipeline(feature_steps(p["horizon_days"], p["time_unit_days"]) + spend_steps(p))
    return TwoPartValue(classifier=clf, regressor=reg, min_spend=p["min_spend"],
                        calibrate_intervals=p["calibrate_intervals"], interval_gap_days=float(p["horizon_days"]))


def make_value_baseline() -> TwoPartValue:
    """Plain two-part GLM on every numeric feature: logistic P(buy) x gamma GLM spend."""
    reg = Pipeline([("select", NumericSelector()), ("log", SignedLog1p()),
                    ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                    ("scale", StandardScaler()), ("glm", GammaRegressor(alpha=1e-3, max_iter=1000))])
    return TwoPartValue(classifier=make_churn_baseline(), regressor=reg, min_spend=1.0)


class BTYDValue(RegressorMixin, BaseEstimator):
    """The BG/NBD + Gamma-Gamma baseline as a value model, fitted on a feature frame (no labels
    needed): expected repeat purchases over horizon_days x Gamma-Gamma's expected spend per
    purchase. Gamma-Gamma reads x = frequency - 1 and m = monetary_avg (the average spend per
    purchase day, first day included: the feature frame has no repeat-only average).
    predict_buy_proba = 1 - BG/NBD's P(no purchase); prospects get the population means."""

    #: score.py writes no per-feature reasons for it (no additive contributions to explain)
    has_reasons = False

    def __init__(self, horizon_days: float = 180.0, time_unit_days: float = 7.0):
        self.horizon_days = horizon_days
        self.time_unit_days = time_unit_days

    def fit(self, X, y=None):
        self.features_ = Pipeline(feature_steps(self.horizon_days, self.time_unit_days)).fit(X)
        x, m = self._xm(X)
        self.gamma_gamma_ = GammaGamma().fit(x, m)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        F = self.features_.transform(X)
        self.fill_ = {c: float(np.nanmean(F[c].to_numpy("float64", na_value=np.nan)))
                      for c in ("expected_purchases", "p_no_purchase")}
        return self

    @staticmethod
    def _xm(X) -> tuple[np.ndarray, np.ndarray]:
        x = X["frequency"].to_numpy("float64", na_value=np.nan) - 1.0
        m = X["monetary_avg"].to_numpy("float64", na_value=np.nan)
        return np.nan_to_num(np.maximum(x, 0.0)), m

    def _btyd(self, X, col: str) -> np.ndarray:
        v = self.features_.transform(X)[col].to_numpy("float64", na_value=np.nan)
        return np.where(np.isfinite(v), v, self.fill_[col])

    def predict_buy_proba(self, X) -> np.ndarray:
        return 1.0 - self._btyd(X, "p_no_purchase")

    def predict(self, X) -> np.ndarray:
        x, m = self._xm(X)
        return self._btyd(X, "expected_purchases") * self.gamma_gamma_.expected_spend(x, m)

    def predict_spend(self, X) -> np.ndarray:
        return self.predict(X) / np.maximum(self.predict_buy_proba(X), 1e-9)
