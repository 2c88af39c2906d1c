"""Deal win model: P(an opportunity open at as_of is won within the next H days).

    from keyaccounts.models.deal import train_deal_model
    res = train_deal_model(tables, as_of="2017-10-01", horizon_days=90, open_stages=[...])
    X = deal_frame(tables, as_of="2017-10-01", open_stages=[...])
    p = res.model.predict_proba(X)[:, 1]           # calibrated model, or the baseline if refused

Design
- Training rows are `snapshots.deal_snapshots` at cutoffs as_of-H, as_of-H-step, ... so every
  label window [c, c+H) ends on or before as_of: nothing on or after as_of is read.
- Time split: the newest `n_val_cutoffs` cutoffs are the validation fold, older ones train.
- Model: a sklearn Pipeline (numeric deal features + one-hot stage_at_as_of -> shallow
  XGBoost, NaN-tolerant), fitted on the training fold; Platt/isotonic calibration fitted on the
  whole validation fold (`calibrate`, a CalibratedClassifierCV around a FrozenEstimator).
- Metrics: the calibrated probabilities are scored by 2-fold cross-fitting on the validation
  fold (calibrate on one half, score the other), so no probability is scored by a calibrator
  that saw its label. `raw_metrics` are the uncalibrated model on the whole validation fold.
- Overlap: with step < H a training cutoff's label window runs past the validation cutoff
  (all windows still end by as_of); deals are not identified to the model (no ids), so this
  only makes validation slightly less strict than deployment, where nothing overlaps.
- Refusal (`enough_labels`): with fewer than MIN_WON deal snapshots won within H or MIN_LOST
  not won within H at the cutoffs (not recorded losses: a funnel that never records one still
  trains) there is not enough history to learn more than stage rates; the result then carries the stage-rate
  baseline as its model and says why in `refused_reason`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted
from xgboost import XGBClassifier

from ..features import Tables, deals
from ..features.arrays import as_of_day, day_numbers
from ..snapshots import cutoffs, deal_snapshots
from .common import calibrate, cross_fitted_calibration
from .metrics import classification_metrics

__all__ = ["MIN_WON", "MIN_LOST", "NUMERIC_FEATURES", "STAGE_COLUMN", "LABEL", "DEFAULT_PARAMS",
           "enough_labels", "StageRateBaseline", "make_deal_model", "calibrate", "deal_frame",
           "DealTrainingResult", "train_deal_model", "known_at"]

MIN_WON = MIN_LOST = 40

#: Numeric columns of `features.deals` the model may read (those present at fit are used).
NUMERIC_FEATURES = ("age_days", "stage_index", "days_since_stage_change", "amount",
                    "account_won_deals", "account_lost_deals", "amount_vs_account_won_avg",
                    "account_spend_365d", "owner_win_rate", "owner_closed_deals",
                    "days_to_expected_close")
STAGE_COLUMN = "stage_at_as_of"
LABEL = "won_within_horizon"

#: Shallow trees (pairwise interactions, e.g. stage x owner), few rounds, leaves of >= 20
#: deals' weight, row/column subsampling: a small-data model. Depth 2 and depth 3 tied on the
#: validation folds of benchmarks/deals.py; the simpler one is kept. One thread: fits take
#: ~50 ms, and OpenMP threads spin-wait badly when the machine is oversubscribed.
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 150, "max_depth": 2, "learning_rate": 0.05, "min_child_weight": 20.0,
    "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 5.0, "tree_method": "hist",
    "objective": "binary:logistic", "eval_metric": "logloss", "n_jobs": 1, "random_state": 0,
}
MAX_DEPTH, MAX_ROUNDS = 4, 300


# ---------------------------------------------------------------- refusal rule

def enough_labels(snaps: pd.DataFrame | None, *, as_of, horizon_days: int) -> tuple[bool, str]:
    """Whether the training snapshots (deals open at the cut-offs before `as_of`) hold at least
    MIN_WON deals won within the horizon and MIN_LOST not won within it. This, not recorded
    losses, is what the model learns from: a funnel that never records a loss (unconverted
    leads just stay open) still has deals not won within the horizon at every cut-off."""
    won = int(snaps[LABEL].sum()) if snaps is not None and len(snaps) else 0
    other = (len(snaps) if snaps is not None else 0) - won
    if won >= MIN_WON and other >= MIN_LOST:
        return True, ""
    day = pd.Timestamp(as_of).date().isoformat()
    return False, (f"only {won} deal snapshot(s) won within {horizon_days} days and {other} not, at the cut-offs "
                   f"before {day}; a deal model needs at least {MIN_WON} of each, so deal probabilities are "
                   "the stage-rate baseline (historical win rate by stage) instead")


# ---------------------------------------------------------------- baseline

class StageRateBaseline(ClassifierMixin, BaseEstimator):
    """P(won within horizon) = the training win rate of the deal's stage_at_as_of, smoothed
    toward the overall rate by `prior` pseudo-deals:

        rate(stage) = (wins(stage) + prior * overall) / (n(stage) + prior)

    A stage not seen in training gets the overall rate. X is a DataFrame with column
    `stage_col` (other columns are ignored); y is 0/1.
    """

    def __init__(self, prior: float = 10.0, stage_col: str = STAGE_COLUMN):
        self.prior = prior
        self.stage_col = stage_col

    def _stages(self, X) -> pd.Series:
        if isinstance(X, pd.Series):
            return X.astype("str").reset_index(drop=True)
        if not isinstance(X, pd.DataFrame) or self.stage_col not in X.columns:
            raise ValueError(f"StageRateBaseline needs a DataFrame with column {self.stage_col!r}")
        return X[self.stage_col].astype("str").reset_index(drop=True)

    def fit(self, X, y):
        stages = self._stages(X)
        y = np.asarray(y, dtype="float64").ravel()
        if len(y) != len(stages):
            raise ValueError(f"X has {len(stages)} rows but y has {len(y)}")
        if len(y) == 0:
            raise ValueError("StageRateBaseline needs at least one labelled row")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("y must be 0/1")
        if self.prior < 0:
            raise ValueError("prior must not be negative")
        self.classes_ = np.array([0, 1])
        self.overall_rate_ = float(y.mean())
        g = pd.Series(y).groupby(stages.to_numpy())
        self.stage_counts_ = g.size().astype("int64")
        self.stage_wins_ = g.sum().astype("float64")
        self.stage_rates_ = ((self.stage_wins_ + self.prior * self.overall_rate_)
                             / (self.stage_counts_ + self.prior)).rename("rate")
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "stage_rates_")
        p = self._stages(X).map(self.stage_rates_).fillna(self.overall_rate_).to_numpy(dtype="float64")
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype("int64")


# ---------------------------------------------------------------- model

def make_deal_model(params: dict[str, Any] | None = None, *,
                    features: Sequence[str] = NUMERIC_FEATURES) -> Pipeline:
    """Unfitted Pipeline: select the numeric `features` present at fit (passed through, NaN
    kept) plus a one-hot of stage_at_as_of (unseen stages -> all zeros) -> XGBClassifier.

    `params` override DEFAULT_PARAMS; max_depth must be <= 4 and n_estimators <= 300.
    The input is a `features.deals` frame; other columns (customer_id, owner, labels) are dropped.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    if p["max_depth"] > MAX_DEPTH or p["n_estimators"] > MAX_ROUNDS:
        raise ValueError(f"deal model trees are shallow: max_depth <= {MAX_DEPTH} and "
                         f"n_estimators <= {MAX_ROUNDS} (got {p['max_depth']}, {p['n_estimators']})")
    unknown = set(features) - set(NUMERIC_FEATURES)
    if unknown:
        raise ValueError(f"unknown deal features {sorted(unknown)}; choose from {list(NUMERIC_FEATURES)}")
    numeric = make_column_selector(pattern="^(?:" + "|".join(features) + ")$")
    features = ColumnTransformer(
        [("num", "passthrough", numeric),
         ("stage", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64),
          [STAGE_COLUMN])],
        remainder="drop", verbose_feature_names_out=False)
    features.set_output(transform="pandas")
    return Pipeline([("features", features), ("xgb", XGBClassifier(**p))])


def deal_frame(tables: Tables, *, as_of, open_stages: Sequence[str], owner_prior: float = 10.0) -> pd.DataFrame:
    """`features.deals` for the deals open at as_of, from the tables (what the model reads)."""
    return deals(tables.opportunities, as_of=as_of, open_stages=open_stages,
                 stage_history=tables.stage_history, txns=tables.transactions, owner_prior=owner_prior)


# ---------------------------------------------------------------- training

@dataclass
class DealTrainingResult:
    """model: the calibrated deal model (predict_proba on a `deal_frame`), or the fitted
    StageRateBaseline when refused (None only if no deal was open at any cutoff).
    metrics: calibrated probabilities on the validation fold, 2-fold cross-fitted (each half
    scored by a calibrator fitted on the other half); raw_metrics: the uncalibrated model on
    the whole validation fold; baseline_metrics: the baseline (fitted on the training fold) on
    the validation fold. Empty dicts when refused."""
    model: Any
    baseline: StageRateBaseline | None
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    cutoffs: list[pd.Timestamp]
    refused_reason: str | None
    X_val: pd.DataFrame | None
    y_val: pd.Series | None
    feature_names: list[str]
    raw_metrics: dict[str, float] = field(default_factory=dict)
    val_cutoffs: list[pd.Timestamp] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    metrics_note: str = ""


def _training_snapshots(tables: Tables, *, as_of, horizon_days: int, open_stages: Sequence[str], step_days: int,
                        max_snapshots: int, owner_prior: float) -> pd.DataFrame | None:
    """Deal snapshots at the training cutoffs (label windows end on or before as_of); None when
    no cutoff fits or no deal is open at any."""
    opps = tables.opportunities
    if opps is None:
        raise ValueError("train_deal_model needs tables.opportunities")
    created = day_numbers(opps["created_date"])
    cuts = cutoffs(as_of=as_of, horizon_days=horizon_days, step_days=step_days, max_snapshots=max_snapshots,
                   earliest=pd.Timestamp(np.datetime64(int(created.min()), "D"))) if len(created) else []
    if not cuts:
        return None
    try:
        return deal_snapshots(tables, cuts=cuts, horizon_days=horizon_days, open_stages=list(open_stages),
                              owner_prior=owner_prior)
    except ValueError:  # no deal open at any cutoff
        return None


def _fold_problem(y_tr: np.ndarray, y_va: np.ndarray, horizon_days: int) -> str | None:
    """Why the folds cannot fit and calibrate a model, or None. Validation needs 2 of each class
    in each half of the 2-fold cross-fitted calibration metrics."""
    for name, y, least in (("training", y_tr, 2), ("validation", y_va, 4)):
        counts = np.bincount(y.astype("int64"), minlength=2)
        if counts.min() < least:
            return (f"the {name} fold has {counts[1]} deal(s) won within {horizon_days} days and "
                    f"{counts[0]} not; a model cannot be fitted and calibrated on that, so deal "
                    "probabilities are the stage-rate baseline")
    return None


def train_deal_model(tables: Tables, *, as_of, horizon_days: int, open_stages: Sequence[str],
                     step_days: int = 30, max_snapshots: int = 12, n_val_cutoffs: int = 1,
                     params: dict[str, Any] | None = None, calibration: str = "sigmoid",
                     owner_prior: float = 10.0, baseline_prior: float = 10.0,
                     features: Sequence[str] = NUMERIC_FEATURES) -> DealTrainingResult:
    """Train the deal model as of `as_of` from deal snapshots whose label windows end on or
    before as_of (see the module docstring). Refuses (baseline as model, `refused_reason` set)
    with fewer than MIN_WON won / MIN_LOST not won within H at the cutoffs, with too few
    cutoffs for a time split, or when either fold lacks won or not-won deals."""
    snaps = _training_snapshots(tables, as_of=as_of, horizon_days=horizon_days, open_stages=open_stages,
                                step_days=step_days, max_snapshots=max_snapshots, owner_prior=owner_prior)
    used = sorted(snaps.index.get_level_values("cutoff").unique(), reverse=True) if snaps is not None else []

    def refuse(why: str, fit_rows: pd.DataFrame | None) -> DealTrainingResult:
        base = None
        if fit_rows is not None and len(fit_rows):
            base = StageRateBaseline(prior=baseline_prior).fit(fit_rows, fit_rows[LABEL])
        return DealTrainingResult(model=base, baseline=base, metrics={}, baseline_metrics={}, cutoffs=used,
                                  refused_reason=why, X_val=None, y_val=None, feature_names=[],
                                  n_train=0 if fit_rows is None else len(fit_rows))

    ok, reason = enough_labels(snaps, as_of=as_of, horizon_days=horizon_days)
    if not ok:
        return refuse(reason, snaps)
    if len(used) < n_val_cutoffs + 1:
        return refuse(f"only {len(used)} cutoff(s) with open deals before {pd.Timestamp(as_of).date()}; "
                      f"a time split needs {n_val_cutoffs} for validation and at least one older one "
                      "for training, so deal probabilities are the stage-rate baseline", snaps)
    val_cuts = used[:n_val_cutoffs]
    is_val = snaps.index.get_level_values("cutoff").isin(val_cuts)
    labels = [LABEL, "closed_within_horizon"]
    train, val = snaps[~is_val].drop(columns=labels), snaps[is_val].drop(columns=labels)
    y_tr, y_va = snaps.loc[~is_val, LABEL].to_numpy(), snaps.loc[is_val, LABEL].to_numpy()
    why = _fold_problem(y_tr, y_va, horizon_days)
    if why:
        return refuse(why, snaps)

    baseline = StageRateBaseline(prior=baseline_prior).fit(train, y_tr)
    raw = make_deal_model(params, features=features).fit(train, y_tr)
    model = calibrate(raw, val, y_va, calibration)
    p_cf = cross_fitted_calibration(raw, val, y_va, calibration)
    vc = ", ".join(str(c.date()) for c in val_cuts)
    return DealTrainingResult(
        model=model, baseline=baseline,
        metrics=classification_metrics(y_va, p_cf),
        baseline_metrics=classification_metrics(y_va, baseline.predict_proba(val)[:, 1]),
        cutoffs=used, refused_reason=None, X_val=val,
        y_val=snaps.loc[is_val, LABEL], feature_names=list(raw.named_steps["features"].get_feature_names_out()),
        raw_metrics=classification_metrics(y_va, raw.predict_proba(val)[:, 1]),
        val_cutoffs=val_cuts, n_train=len(train), n_val=len(val),
        metrics_note=(f"validation fold = deals open at cutoff(s) {vc}, labelled by the next {horizon_days} "
                      f"days; metrics: {calibration} calibration, 2-fold cross-fitted on that fold; "
                      "raw_metrics: uncalibrated, whole fold; model fitted on older cutoffs only"))


# ---------------------------------------------------------------- point-in-time view

def known_at(tables: Tables, *, as_of, open_stages: Sequence[str]) -> Tables:
    """The tables as they stood at the start of `as_of`: deals created before as_of; a deal
    closed on or after as_of is open again (outcome and closed_date blank, stage = its last
    stage entered before as_of from the history, else the first open stage); history,
    transactions and invoice issues before as_of (payments on or after as_of blank).
    Used to check that training as of D reads nothing dated D or later."""
    from ..config import normalise_stage
    d0 = as_of_day(as_of)
    first = normalise_stage(open_stages[0])
    o = tables.opportunities
    o = o.loc[day_numbers(o["created_date"]) < d0].copy()
    h = tables.stage_history
    if h is not None:
        h = h.loc[(day_numbers(h["changed_at"]) < d0) & h["opportunity_id"].isin(o["opportunity_id"])].copy()
    if "closed_date" in o.columns:
        reopen = o["closed_date"].notna().to_numpy() & (day_numbers(o["closed_date"]) >= d0)
        o.loc[reopen, "closed_date"] = pd.NaT
        if "outcome" in o.columns:
            o.loc[reopen, "outcome"] = np.nan
        stage = pd.Series(first, index=o.index[reopen], dtype=o["stage"].dtype)
        if h is not None and len(h):
            last = h.sort_values(["opportunity_id", "changed_at"], kind="stable").groupby("opportunity_id").tail(1)
            stage = o.loc[reopen, "opportunity_id"].map(last.set_index("opportunity_id")["stage"]).fillna(first)
        o.loc[reopen, "stage"] = stage.astype(o["stage"].dtype)
    t = tables.transactions
    t = t.loc[day_numbers(t["timestamp"]) < d0] if t is not None else None
    inv = tables.invoices
    if inv is not None:
        inv = inv.loc[day_numbers(inv["issue_date"]) < d0].copy()
        late = inv["paid_date"].notna().to_numpy() & (day_numbers(inv["paid_date"]) >= d0)
        inv.loc[late, "paid_date"] = pd.NaT
    return Tables(transactions=t, customers=tables.customers, invoices=inv, opportunities=o, stage_history=h)
