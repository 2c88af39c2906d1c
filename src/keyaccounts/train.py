"""Retrain every model family as of a date with the snapshot protocol (see README).

Cutoffs as_of - H, as_of - H - step, ...; each snapshot labelled by its next H days, all
before as_of. The latest cutoff(s) are the time-validation fold; models are fitted on the older
ones, probabilities calibrated on the validation fold.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import FeatureConfig, StageConfig, TrainConfig
from .explain import fix_reference
from .features import Tables
from .labels import customer_labels
from .models import metrics as M
from .models.btyd import BGNBD, GammaGamma, btyd_summary
from .snapshots import customer_snapshots, cutoffs, earliest_date

LABELS = ("churned", "future_value", "future_purchase_days")


@dataclass
class Split:
    X_train: pd.DataFrame
    X_val: pd.DataFrame
    y_train: pd.DataFrame
    y_val: pd.DataFrame
    cuts: list[pd.Timestamp]
    val_cuts: list[pd.Timestamp]


def customer_split(tables: Tables, *, as_of: dt.date, horizon_days: int, cfg: TrainConfig,
                   features: FeatureConfig) -> Split:
    """Snapshots split by time: validation = the n_val latest cutoffs."""
    cuts = cutoffs(as_of=as_of, horizon_days=horizon_days, step_days=cfg.step_days,
                   max_snapshots=cfg.max_snapshots, earliest=earliest_date(tables.transactions),
                   min_history_days=cfg.min_history_days)
    if len(cuts) <= cfg.n_val_cutoffs:
        raise ValueError(f"history too short: {len(cuts)} cutoff(s) for horizon {horizon_days} d; need more than "
                         f"{cfg.n_val_cutoffs} (lower step_days/min_history_days or the horizon)")
    snaps = customer_snapshots(tables, cuts=cuts, horizon_days=horizon_days, config=features)
    val_cuts = cuts[:cfg.n_val_cutoffs]
    is_val = snaps.index.get_level_values("cutoff").isin(val_cuts)
    X = snaps.drop(columns=list(LABELS))
    y = snaps[list(LABELS)]
    return Split(X[~is_val], X[is_val], y[~is_val], y[is_val], cuts, val_cuts)


def btyd_baseline(txns: pd.DataFrame, *, as_of, horizon_days: int, index: pd.Index,
                  time_unit_days: float = 7.0) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma fitted on history before as_of: p_alive, p_no_purchase and
    expected_purchases over the horizon, expected spend per purchase, btyd_value = expected
    purchases x spend."""
    s = btyd_summary(txns, as_of=as_of, time_unit_days=time_unit_days)
    return btyd_from_summary(s, horizon_days=horizon_days, index=index, time_unit_days=time_unit_days)


def btyd_from_summary(s: pd.DataFrame, *, horizon_days: int, index: pd.Index,
                      time_unit_days: float = 7.0) -> pd.DataFrame:
    """btyd_baseline from a btyd_summary frame (built by either engine): fit on every row of
    `s`, evaluate for `index`."""
    bg = BGNBD().fit(s["frequency"], s["recency"], s["T"])
    gg = GammaGamma().fit(s["frequency"], s["monetary_value"])
    s = s.reindex(index)
    t = horizon_days / time_unit_days
    ep = bg.expected_purchases(t, s["frequency"], s["recency"], s["T"])
    spend = gg.expected_spend(s["frequency"], s["monetary_value"])
    return pd.DataFrame({"p_alive": bg.p_alive(s["frequency"], s["recency"], s["T"]),
                         "p_no_purchase": bg.p_no_purchase(t, s["frequency"], s["recency"], s["T"]),
                         "expected_purchases": ep, "btyd_spend_per_purchase": spend,
                         "btyd_value": ep * spend}, index=index)


def naive_value(txns: pd.DataFrame, *, as_of, horizon_days: int, index: pd.Index) -> np.ndarray:
    """Naive forecast: the last horizon's net spend repeats."""
    start = pd.Timestamp(as_of) - pd.Timedelta(days=horizon_days)
    return customer_labels(txns, as_of=start.date(), horizon_days=horizon_days, index=index)["future_value"].to_numpy()


def baseline_scores(tables: Tables, X_val: pd.DataFrame, *, horizon_days: int) -> dict[str, pd.DataFrame]:
    """Per validation row: naive and BG/NBD baselines, computed at each row's own cutoff."""
    rows = []
    for cut, Xc in X_val.groupby(level="cutoff", sort=False):
        ids = Xc.index.get_level_values("customer_id")
        b = btyd_baseline(tables.transactions, as_of=cut.date(), horizon_days=horizon_days, index=ids)
        b["naive_value"] = naive_value(tables.transactions, as_of=cut.date(), horizon_days=horizon_days, index=ids)
        b["naive_churn"] = Xc["recency_days"].to_numpy()
        b.index = Xc.index
        rows.append(b)
    return pd.concat(rows).reindex(X_val.index)


def _params(as_of, horizon_days: int, cfg: TrainConfig, split_cuts, val_cuts, feature_names, extra=None) -> dict:
    return {"as_of": str(as_of), "horizon_days": horizon_days, "step_days": cfg.step_days,
            "n_snapshots": len(split_cuts), "cutoffs": ",".join(str(c.date()) for c in split_cuts),
            "validation_cutoffs": ",".join(str(c.date()) for c in val_cuts),
            "calibration": cfg.calibration, "features": ",".join(feature_names), **(extra or {})}


def train_customer_models(tables: Tables, *, as_of: dt.date, horizon_days: int, cfg: TrainConfig,
                          features: FeatureConfig, fingerprint: str, progress=None) -> list:
    """Churn and value models (with baselines and figures) ready for the tracker."""
    from . import plots
    from .models.churn import calibrate, make_churn_baseline, make_churn_model
    from .models.common import cross_fitted_calibration
    from .models.value import make_value_model
    from .tracking import TrainedModel

    step = progress or (lambda msg: None)
    step("building training snapshots")
    sp = customer_split(tables, as_of=as_of, horizon_days=horizon_days, cfg=cfg, features=features)
    step(f"{len(sp.X_train):,} training rows over {len(sp.cuts) - len(sp.val_cuts)} cutoffs, "
         f"{len(sp.X_val):,} validation rows")
    base = baseline_scores(tables, sp.X_val, horizon_days=horizon_days)
    feature_names = list(sp.X_train.columns)
    example = sp.X_val.head(5)

    step("training churn model")
    y_tr, y_val = sp.y_train["churned"], sp.y_val["churned"]
    churn = make_churn_model({"horizon_days": horizon_days, **cfg.churn_params}).fit(sp.X_train, y_tr)
    raw = churn.predict_proba(sp.X_val)[:, 1]
    cross = cross_fitted_calibration(churn, sp.X_val, y_val, cfg.calibration)
    calibrated = calibrate(churn, sp.X_val, y_val, method=cfg.calibration)
    churn_ref = fix_reference(calibrated, sp.X_train)  # reasons measured from the training mean
    m = M.classification_metrics(y_val, cross)
    m.update({f"raw_{k}": v for k, v in M.classification_metrics(y_val, raw).items()})
    lr = make_churn_baseline().fit(sp.X_train, y_tr)
    p_lr = lr.predict_proba(sp.X_val)[:, 1]
    baselines = {
        "logreg": M.classification_metrics(y_val, p_lr),
        "naive_recency": {"roc_auc": M.classification_metrics(y_val, M_rank(base["naive_churn"]))["roc_auc"]},
        "btyd": M.classification_metrics(y_val, base["p_no_purchase"].to_numpy()),
    }
    figs = {"calibration": plots.calibration_figure(y_val, {"model (cross-fitted)": cross, "uncalibrated": raw,
                                                            "logreg": p_lr}, title="churn: calibration"),
            "lift": plots.lift_figure(y_val, cross, title="churn: decile lift")}
    imp = plots.shap_importance(churn, sp.X_val)
    if imp is not None:
        figs["shap_summary"] = plots.importance_figure(imp, title="churn: SHAP summary")
        m.update(_importance_metrics(imp))
    out = [TrainedModel(
        family="churn", horizon_days=horizon_days, model=calibrated, feature_names=feature_names,
        params=_params(as_of, horizon_days, cfg, sp.cuts, sp.val_cuts, feature_names,
                       {**{f"model.{k}": v for k, v in cfg.churn_params.items()},
                        "explain_reference": churn_ref}),
        metrics=m, baseline_metrics=baselines, figures=figs, input_example=example,
        data_fingerprint=fingerprint, validation=(sp.X_val, y_val), primary_metric="roc_auc")]

    step("training value model")
    v_tr, v_val = sp.y_train["future_value"], sp.y_val["future_value"]
    value = make_value_model({"horizon_days": horizon_days, **cfg.value_params}).fit(sp.X_train, v_tr)
    value_ref = fix_reference(value, sp.X_train)
    pred = value.predict(sp.X_val)
    vb = {"naive": M.value_metrics(v_val, base["naive_value"]), "btyd": M.value_metrics(v_val, base["btyd_value"])}
    vfigs = {"lift": plots.lift_figure(v_val, pred, title="value: decile lift")}
    vimp = plots.shap_importance(value, sp.X_val)
    vm = M.value_metrics(v_val, pred)
    if vimp is not None:
        vm.update(_importance_metrics(vimp))
        vfigs["shap_summary"] = plots.importance_figure(
            vimp, title="value: SHAP summary (tree part of the two-part model)")
    out.append(TrainedModel(
        family="value", horizon_days=horizon_days, model=value, feature_names=feature_names,
        params=_params(as_of, horizon_days, cfg, sp.cuts, sp.val_cuts, feature_names,
                       {**{f"model.{k}": v for k, v in cfg.value_params.items()},
                        "explain_reference": value_ref}),
        metrics=vm, baseline_metrics=vb, figures=vfigs, input_example=example,
        data_fingerprint=fingerprint, validation=(sp.X_val, v_val), primary_metric="gini"))
    return out


def _importance_metrics(imp: pd.Series) -> dict[str, float]:
    """Global importance (mean |SHAP| on the validation fold) as run metrics, one per input."""
    return {f"shap_importance.{k}": float(v) for k, v in imp.items()}


def M_rank(x) -> np.ndarray:
    """Scores in [0, 1] that preserve the order of x (for AUC of an unbounded score)."""
    s = pd.Series(np.asarray(x, float)).rank(pct=True).fillna(1.0)
    return s.to_numpy()


def train_deal(tables: Tables, *, as_of: dt.date, horizon_days: int, cfg: TrainConfig, stages: StageConfig,
               owner_prior: float, fingerprint: str):
    """Deal-close model, or the stage-rate baseline when history is too thin (says why)."""
    from . import plots
    from .models.deal import train_deal_model
    from .tracking import TrainedModel

    r = train_deal_model(tables, as_of=as_of, horizon_days=horizon_days, open_stages=stages.open,
                         step_days=cfg.deal_step_days, max_snapshots=cfg.deal_max_snapshots,
                         n_val_cutoffs=cfg.n_val_cutoffs, params=cfg.deal_params or None,
                         calibration=cfg.calibration, owner_prior=owner_prior)
    if r.model is None:
        return None, r
    figs, metrics = {}, dict(r.metrics)
    if r.X_val is not None and not r.refused_reason:
        p = r.model.predict_proba(r.X_val)[:, 1]
        figs["calibration"] = plots.calibration_figure(
            r.y_val, {"calibrated (in-sample: fitted on this fold)": p}, title="deal: calibration")
        imp = plots.shap_importance(r.model, r.X_val)
        if imp is not None:
            figs["shap_summary"] = plots.importance_figure(imp, title="deal: SHAP summary")
            metrics.update(_importance_metrics(imp))
    example = r.X_val.head(5) if r.X_val is not None else None
    tm = TrainedModel(
        # the card lists the columns the model takes (as for the customer models), not the
        # one-hot names inside it: bundle checks and champion gating select by these
        family="deal", horizon_days=horizon_days, model=r.model,
        feature_names=[str(c) for c in getattr(r.model, "feature_names_in_", r.feature_names)],
        params={"as_of": str(as_of), "horizon_days": horizon_days,
                "cutoffs": ",".join(str(c.date()) for c in r.cutoffs), "refused_reason": r.refused_reason or "",
                "model_kind": "stage_rate_baseline" if r.refused_reason else "xgboost", "metrics_note": r.metrics_note},
        metrics=metrics, baseline_metrics={"stage_rate": r.baseline_metrics}, figures=figs,
        input_example=example, data_fingerprint=fingerprint,
        validation=(r.X_val, r.y_val) if r.X_val is not None else None, primary_metric="roc_auc")
    return tm, r
