"""scikit-learn transformers for the customer models (churn, value): DataFrame in, DataFrame out.

All follow the sklearn contract: `__init__` only stores parameters, fitted attributes end in
`_`, `get_feature_names_out()` names the output columns, `clone` works, and they pickle
(module-level classes, no lambdas). Input is the frame of `features.build_features` /
`snapshots.customer_snapshots` (any extra columns are tolerated; label columns are dropped).

    NumericSelector   numeric feature columns only (drops lifecycle_stage, rfm_code, as_of, labels)
    RatioFeatures     tenure-free rates/ratios (recency / tenure, purchases per month, ...)
    BTYDFeatures      BG/NBD fitted on the training rows -> p_alive, expected_purchases, p_no_purchase
    ColumnSubset      a fixed list of columns (those absent at fit are an error)
    SignedLog1p       sign(x) * log1p(|x|), for GLMs on heavy-tailed counts and money

Why ratios: training snapshots sit at cutoffs as_of - H - k*step, so their tenure/recency
ranges can be far shorter than at as_of (CDNOW: one Q1-1997 cohort; training tenure <= 93 days,
scoring tenure 183-273 days). Trees cannot extrapolate beyond ranges seen in training; ratios
such as recency / tenure stay in [0, 1] at every cutoff, and BG/NBD quantities extrapolate
through the model's own structure.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .btyd import BGNBD

__all__ = ["CONTEXT_COLUMNS", "LABEL_COLUMNS", "NumericSelector", "RatioFeatures", "BTYDFeatures",
           "ColumnSubset", "SignedLog1p", "RATIO_COLUMNS", "BTYD_COLUMNS"]

#: Columns that are identifiers/context, not features (dropped by NumericSelector).
CONTEXT_COLUMNS = ("as_of", "cutoff", "customer_id", "lifecycle_stage", "rfm_code")
#: Label columns of `labels.customer_labels` (never features; dropped if present).
LABEL_COLUMNS = ("churned", "future_value", "future_purchase_days")

RATIO_COLUMNS = ("recency_over_tenure", "purchases_per_month", "repeat_purchases_per_month",
                 "spend_per_month", "active_span_share", "recency_over_interval", "recent_spend_share")
BTYD_COLUMNS = ("p_alive", "expected_purchases", "p_no_purchase")

_DAYS_PER_MONTH = 30.0


def _as_frame(X, where: str) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{where} needs a pandas DataFrame with named feature columns, got {type(X).__name__}")
    return X


def _require(X: pd.DataFrame, cols: Sequence[str], where: str) -> None:
    missing = [c for c in cols if c not in X.columns]
    if missing:
        raise ValueError(f"{where}: missing input column(s) {missing}")


class _FrameTransformer(TransformerMixin, BaseEstimator):
    """Shared bits: remember input names at fit, check them at transform."""

    def _fit_names(self, X: pd.DataFrame) -> None:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(X.columns)


class NumericSelector(_FrameTransformer):
    """Keep numeric (and boolean) columns, drop context/label columns and columns with no
    observed value at fit. Output is float64, same column order as the input.

    exclude: extra column names to drop besides CONTEXT_COLUMNS and LABEL_COLUMNS.
    """

    def __init__(self, exclude: Sequence[str] | None = None, drop_empty: bool = True):
        self.exclude = exclude
        self.drop_empty = drop_empty

    def fit(self, X, y=None):
        X = _as_frame(X, "NumericSelector")
        self._fit_names(X)
        skip = set(CONTEXT_COLUMNS) | set(LABEL_COLUMNS) | set(self.exclude or ())
        cols = []
        for c in X.columns:
            if c in skip:
                continue
            s = X[c]
            if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                continue
            if self.drop_empty and not s.notna().any():
                continue
            cols.append(c)
        if not cols:
            raise ValueError("NumericSelector: no numeric feature columns")
        self.columns_ = cols
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        X = _as_frame(X, "NumericSelector")
        _require(X, self.columns_, "NumericSelector")
        return X[self.columns_].astype("float64")

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "columns_")
        return np.asarray(self.columns_, dtype=object)


class RatioFeatures(_FrameTransformer):
    """Append tenure-free ratios (input columns pass through unchanged):

    recency_over_tenure         recency_days / first_purchase_days_ago (1 = bought once, long ago)
    purchases_per_month         frequency / (months since first purchase + 1)
    repeat_purchases_per_month  (frequency - 1) / (months since first purchase + 1)
    spend_per_month             monetary_total / (months since first purchase + 1)
    active_span_share           (first purchase - last purchase span) / first_purchase_days_ago
    recency_over_interval       recency_days / interval_mean_days (NaN for one-time buyers)
    recent_spend_share          spend_90d / monetary_total (NaN when the total is not positive)

    Needs recency_days, frequency, first_purchase_days_ago; the last ratios appear only when
    their inputs (monetary_total, interval_mean_days, spend_90d) are present at fit.
    Tenure is counted from the first purchase (a signup before it is not purchase history).
    """

    REQUIRED = ("recency_days", "frequency", "first_purchase_days_ago")

    def __init__(self, min_tenure_days: float = 1.0):
        self.min_tenure_days = min_tenure_days

    def fit(self, X, y=None):
        X = _as_frame(X, "RatioFeatures")
        _require(X, self.REQUIRED, "RatioFeatures")
        self._fit_names(X)
        have = set(X.columns)
        out = ["recency_over_tenure", "purchases_per_month", "repeat_purchases_per_month", "active_span_share"]
        if "monetary_total" in have:
            out.append("spend_per_month")
        if "interval_mean_days" in have:
            out.append("recency_over_interval")
        if {"spend_90d", "monetary_total"} <= have:
            out.append("recent_spend_share")
        self.ratios_ = [c for c in RATIO_COLUMNS if c in out]
        self.passthrough_ = [c for c in X.columns if c not in self.ratios_]
        return self

    def transform(self, X):
        check_is_fitted(self, "ratios_")
        X = _as_frame(X, "RatioFeatures")
        _require(X, self.passthrough_, "RatioFeatures")

        def f(c):
            return X[c].to_numpy(dtype="float64", na_value=np.nan)

        rec, freq = f("recency_days"), f("frequency")
        ten = np.maximum(f("first_purchase_days_ago"), self.min_tenure_days)
        months = ten / _DAYS_PER_MONTH + 1.0
        new = {
            "recency_over_tenure": np.clip(rec / ten, 0.0, 1.0),
            "purchases_per_month": freq / months,
            "repeat_purchases_per_month": np.maximum(freq - 1.0, 0.0) / months,
            "active_span_share": np.clip((ten - rec) / ten, 0.0, 1.0),
        }
        with np.errstate(divide="ignore", invalid="ignore"):
            if "spend_per_month" in self.ratios_:
                new["spend_per_month"] = f("monetary_total") / months
            if "recency_over_interval" in self.ratios_:
                iv = f("interval_mean_days")
                new["recency_over_interval"] = np.where(iv > 0, rec / iv, np.nan)
            if "recent_spend_share" in self.ratios_:
                tot = f("monetary_total")
                new["recent_spend_share"] = np.where(tot > 0, f("spend_90d") / tot, np.nan)
        out = X[self.passthrough_].copy()
        for c in self.ratios_:
            out[c] = new[c]
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "ratios_")
        return np.asarray(list(self.passthrough_) + list(self.ratios_), dtype=object)


class BTYDFeatures(_FrameTransformer):
    """Fit BG/NBD (models.btyd.BGNBD) on the training rows and append, per row:

    p_alive             P(still active) given (x, t_x, T)
    expected_purchases  E[repeat purchases in the next horizon_days]
    p_no_purchase       P(no purchase in the next horizon_days) = 1 - p_alive * (1 - ((a+T)/(a+T+t))^(r+x))

    Inputs from the feature frame: x = frequency - 1 (repeat purchase days), T =
    first_purchase_days_ago, t_x = T - recency_days, all in `time_unit_days` units. Rows with
    frequency < 1 (prospects) or missing days are left out of the fit and get NaN.
    Stacked snapshots give one row per (cutoff, customer); the fit treats them as independent
    rows, which only reweights customers seen at many cutoffs.
    """

    REQUIRED = ("frequency", "recency_days", "first_purchase_days_ago")

    def __init__(self, horizon_days: float = 180.0, time_unit_days: float = 7.0, penalizer: float = 0.0):
        self.horizon_days = horizon_days
        self.time_unit_days = time_unit_days
        self.penalizer = penalizer

    def _summary(self, X: pd.DataFrame):
        freq = X["frequency"].to_numpy(dtype="float64", na_value=np.nan)
        T_days = X["first_purchase_days_ago"].to_numpy(dtype="float64", na_value=np.nan)
        rec = X["recency_days"].to_numpy(dtype="float64", na_value=np.nan)
        ok = np.isfinite(freq) & np.isfinite(T_days) & np.isfinite(rec) & (freq >= 1)
        u = float(self.time_unit_days)
        x = np.where(ok, freq - 1.0, 0.0)
        T = np.where(ok, T_days / u, 1.0)
        tx = np.where(ok, np.clip(T_days - rec, 0.0, None) / u, 0.0)
        return ok, x, tx, T

    def fit(self, X, y=None):
        X = _as_frame(X, "BTYDFeatures")
        _require(X, self.REQUIRED, "BTYDFeatures")
        if self.horizon_days <= 0 or self.time_unit_days <= 0:
            raise ValueError("horizon_days and time_unit_days must be positive")
        self._fit_names(X)
        ok, x, tx, T = self._summary(X)
        if ok.sum() < 10:
            raise ValueError("BTYDFeatures needs at least 10 rows with a purchase to fit BG/NBD")
        self.bgnbd_ = BGNBD(penalizer=self.penalizer).fit(x[ok], tx[ok], T[ok])
        self.params_ = dict(self.bgnbd_.params_)
        self.passthrough_ = [c for c in X.columns if c not in BTYD_COLUMNS]
        return self

    def transform(self, X):
        check_is_fitted(self, "bgnbd_")
        X = _as_frame(X, "BTYDFeatures")
        _require(X, self.passthrough_, "BTYDFeatures")
        ok, x, tx, T = self._summary(X)
        t = float(self.horizon_days) / float(self.time_unit_days)
        pa = self.bgnbd_.p_alive(x, tx, T)
        ep = self.bgnbd_.expected_purchases(t, x, tx, T)
        p0 = self.bgnbd_.p_no_purchase(t, x, tx, T)
        out = X[self.passthrough_].copy()
        out["p_alive"] = np.where(ok, pa, np.nan)
        out["expected_purchases"] = np.where(ok, ep, np.nan)
        out["p_no_purchase"] = np.where(ok, p0, np.nan)
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "bgnbd_")
        return np.asarray(list(self.passthrough_) + list(BTYD_COLUMNS), dtype=object)


class ColumnSubset(_FrameTransformer):
    """Select `columns` (in that order). A column absent at fit is an error: the model's
    inputs are part of its contract. With strict=False, absent columns are skipped at fit."""

    def __init__(self, columns: Sequence[str] = (), strict: bool = True):
        self.columns = columns
        self.strict = strict

    def fit(self, X, y=None):
        X = _as_frame(X, "ColumnSubset")
        if self.strict:
            _require(X, list(self.columns), "ColumnSubset")
        self._fit_names(X)
        self.columns_ = [c for c in self.columns if c in X.columns]
        if not self.columns_:
            raise ValueError("ColumnSubset: none of the requested columns is present")
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        X = _as_frame(X, "ColumnSubset")
        _require(X, self.columns_, "ColumnSubset")
        return X[self.columns_]

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "columns_")
        return np.asarray(self.columns_, dtype=object)


class SignedLog1p(_FrameTransformer):
    """sign(x) * log1p(|x|) on every column (NaN stays NaN); names unchanged."""

    def fit(self, X, y=None):
        X = _as_frame(X, "SignedLog1p")
        self._fit_names(X)
        self.columns_ = list(X.columns)
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        X = _as_frame(X, "SignedLog1p")
        _require(X, self.columns_, "SignedLog1p")
        v = X[self.columns_].to_numpy(dtype="float64", na_value=np.nan)
        return pd.DataFrame(np.sign(v) * np.log1p(np.abs(v)), index=X.index, columns=self.columns_)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "columns_")
        return np.asarray(self.columns_, dtype=object)
