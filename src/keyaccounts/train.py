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
from sklearn.ensemble import VotingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from . import plots
from .config import FeatureConfig, StageConfig, TrainConfig
from .explain import fix_reference
from .features import Tables, build_features
from .labels import customer_labels
from .models import metrics as M
from .models.btyd import BGNBD, GammaGamma, btyd_summary
from .models.churn import (
    btyd_churn_model,
    calibrate,
    feature_steps,
    make_churn_baseline,
    make_churn_model,
)
from .models.common import cross_fitted_calibration
from .models.deal import train_deal_model
from .models.value import RECENT_SPEND, SPEND_FEATURES, BTYDValue, make_value_model
from .snapshots import customer_snapshots, cutoffs, earliest_date
from .tracking import TrainedModel

LABELS = ("churned", "future_value", "future_purchase_days")


@dataclass
class Split:
    X_train: pd.DataFrame
    X_val: pd.DataFrame
    y_train: pd.DataFrame
    y_val: pd.DataFrame
    cuts: list[pd.Timestamp]
    val_cuts: list[pd.Timestamp]


#: Shortest step between training cutoffs tried when the configured one leaves too few: closer
#: cutoffs mostly repeat the same customers' rows with a few days more history.
MIN_STEP_DAYS = 7
#: Training cutoffs (beside the validation ones) below which shorter steps are tried.
MIN_TRAIN_CUTOFFS = 2


class HistoryTooShort(ValueError):
    """Not one training cutoff beside the validation fold fits before as_of - H."""


def fit_cutoffs(*, as_of, horizon_days: int, cfg: TrainConfig, earliest) -> tuple[list[pd.Timestamp], int]:
    """(cutoffs newest first, step used): cfg.step_days, or, when that leaves fewer than
    n_val + MIN_TRAIN_CUTOFFS, the step halved (down to MIN_STEP_DAYS, windows overlapping) until
    enough fit. Raises HistoryTooShort when not even n_val + 1 fit."""
    step = cfg.step_days
    need = cfg.n_val_cutoffs + MIN_TRAIN_CUTOFFS

    def at(step_days: int) -> list[pd.Timestamp]:
        return cutoffs(as_of=as_of, horizon_days=horizon_days, step_days=step_days,
                       max_snapshots=cfg.max_snapshots, earliest=earliest, min_history_days=cfg.min_history_days)

    cuts = at(step)
    while len(cuts) < need and step > MIN_STEP_DAYS:
        step = max(MIN_STEP_DAYS, step // 2)
        cuts = at(step)
    if len(cuts) <= cfg.n_val_cutoffs:
        raise HistoryTooShort(
            f"history too short: {len(cuts)} cutoff(s) for horizon {horizon_days} d even at a {step}-day step "
            f"(the first cutoff needs {cfg.min_history_days} d of history, the last ends its label window by "
            f"as_of); need more than {cfg.n_val_cutoffs}")
    return cuts, step


def customer_split(tables: Tables, *, as_of: dt.date, horizon_days: int, cfg: TrainConfig,
                   features: FeatureConfig) -> Split:
    """Snapshots split by time: validation = the n_val latest cutoffs (see fit_cutoffs)."""
    cuts, _ = fit_cutoffs(as_of=as_of, horizon_days=horizon_days, cfg=cfg,
                          earliest=earliest_date(tables.transactions))
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


#: Days per year for "the same period of earlier years".
YEAR_DAYS = 364  # 52 weeks: the same weekdays a year earlier


def base_spend(txns: pd.DataFrame, *, at: pd.Timestamp, horizon_days: int) -> tuple[float, float]:
    """(spend in [at - H, at), spend in [at, at + H)) of the customer base at `at` (customers
    with a positive purchase before `at`). The second reads rows on/after `at`: callers pass
    at + H <= as_of."""
    ts, amt = txns["timestamp"], txns["amount"].astype("float64")
    first = ts[amt > 0].groupby(txns.loc[amt > 0, "customer_id"], observed=True).min()
    base = txns["customer_id"].isin(first.index[first < at])
    H = pd.Timedelta(days=horizon_days)
    prev = float(amt[base & (ts >= at - H) & (ts < at)].sum())
    nxt = float(amt[base & (ts >= at) & (ts < at + H)].sum())
    return prev, nxt


@dataclass
class PopulationLevel:
    """Forecast growth of the customer base's spend over the next horizon vs the last one."""
    growth: float | None  # None: no level could be learned
    method: str           # "same period of earlier years" | "recent trend" | "none"
    seasonal: bool
    note: str


def population_level(txns: pd.DataFrame, *, as_of, horizon_days: int) -> PopulationLevel:
    """Growth of the base's spend, from rows before as_of only: with a year + H of history,
    the geometric mean of the same period's growth in earlier years (seasonality); else the
    latest fully observed growth (at as_of - H: the recent trend); else none."""
    as_of, H = pd.Timestamp(as_of), pd.Timedelta(days=horizon_days)
    txns = txns[txns["timestamp"] < as_of]
    start = txns["timestamp"].min()
    years = []
    k = 1
    while as_of - pd.Timedelta(days=YEAR_DAYS * k) - H >= start:
        prev, nxt = base_spend(txns, at=as_of - pd.Timedelta(days=YEAR_DAYS * k), horizon_days=horizon_days)
        if prev > 0 and nxt > 0:
            years.append(nxt / prev)
        k += 1
    if years:
        g = float(np.exp(np.mean(np.log(years))))
        return PopulationLevel(g, "same period of earlier years", True, f"growth {g:.3f} from {len(years)} earlier year(s)")
    why = f"seasonality could not be learned: {(as_of - start).days} d of history, it needs a year + H"
    if as_of - 2 * H >= start:
        prev, nxt = base_spend(txns, at=as_of - H, horizon_days=horizon_days)
        if prev > 0:
            return PopulationLevel(nxt / prev, "recent trend", False, f"{why}; recent growth {nxt / prev:.3f}")
    return PopulationLevel(None, "none", False, f"{why}; no full pair of horizons for a trend either")


def level_factor(txns: pd.DataFrame, *, as_of, horizon_days: int, predicted_total: float) -> tuple[float, PopulationLevel]:
    """(factor, level): the multiplier that brings the per-account forecast's total to the
    population component's (base spend of the last H days x growth); 1 when none."""
    lv = population_level(txns, as_of=as_of, horizon_days=horizon_days)
    prev, _ = base_spend(txns[txns["timestamp"] < pd.Timestamp(as_of)], at=pd.Timestamp(as_of), horizon_days=horizon_days)
    if lv.growth is None or predicted_total <= 0 or prev <= 0:
        return 1.0, lv
    return prev * lv.growth / predicted_total, lv


def level_on_validation(txns: pd.DataFrame, *, cutoff, horizon_days: int, predicted: np.ndarray,
                        actual: np.ndarray) -> tuple[bool, str]:
    """Does the population component beat the model's own total at the validation cutoff?
    Both from data before the cutoff; compared by |relative error| of the total there."""
    total = float(np.sum(predicted))
    f, lv = level_factor(txns, as_of=cutoff, horizon_days=horizon_days, predicted_total=total)
    a = float(np.sum(actual))
    if a <= 0 or lv.growth is None:
        return False, f"population component not used: {lv.note}"
    e_model, e_pop = total / a - 1, total * f / a - 1
    use = abs(e_pop) < abs(e_model)
    return use, (f"population component ({lv.method}) {'used' if use else 'not used'}: validation total error "
                 f"{e_pop:+.1%} with it vs {e_model:+.1%} without; {lv.note}")


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


#: Candidates per family, simplest first (every one reads the BG/NBD quantities as features).
#: The choice falls to the simplest candidate whose validation score is within one bootstrap
#: standard error of the best one's (one-SE rule): a more flexible model must win by more than
#: the validation fold's own noise.
CHURN_CANDIDATES = {"glm_C0.1": {"estimator": "glm", "C": 0.1}, "glm_C1": {"estimator": "glm", "C": 1.0},
                    "xgb_monotone": {"estimator": "xgb"}, "blend": {"estimator": "blend"}}
VALUE_CANDIDATES = {"spend_glm": {"spend_model": "glm"}, "spend_xgb": {"spend_model": "xgb"},
                    "spend_xgb_recent": {"spend_model": "xgb", "spend_features": SPEND_FEATURES + RECENT_SPEND}}
#: Bootstrap resamples of the validation rows behind the one-SE rule (seeded).
N_BOOTSTRAP = 30


@dataclass
class Choice:
    """A family's model chosen on the validation fold: the winner (fitted on the training rows),
    every candidate's validation figures, and why."""
    name: str
    params: dict
    model: object
    scores: dict[str, dict[str, float]]
    reason: str


def one_se_choice(per_row: dict[str, np.ndarray], metric, *, greater_is_better: bool,
                  seed: int = 0) -> tuple[str, dict[str, float], str]:
    """(name, {name: score}, reason): `metric(rows)` scores each candidate's per-row values on
    the validation rows; the simplest candidate (dict order) within one bootstrap SE of the
    best, the SE taken over the paired differences of resampled scores."""
    names = list(per_row)
    n = len(next(iter(per_row.values())))
    full = {k: float(metric(v, np.arange(n))) for k, v in per_row.items()}
    sign = 1.0 if greater_is_better else -1.0
    best = max(names, key=lambda k: sign * full[k])
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, n, n) for _ in range(N_BOOTSTRAP)]
    for k in names:
        diff = np.array([sign * (metric(per_row[best], b) - metric(per_row[k], b)) for b in boots])
        se = float(diff.std(ddof=1))
        if k == best:
            return k, full, f"{k} is best ({full[k]:.4f}) and no simpler candidate is within one bootstrap SE of it"
        if sign * (full[best] - full[k]) <= se:
            return k, full, (f"{k} ({full[k]:.4f}) is within one bootstrap SE ({se:.4f}) of the best "
                             f"({best} {full[best]:.4f}); simplest such candidate")
    return best, full, f"{best} is best"


def fit_sharing_features(params_list: dict[str, dict], X_tr, y_tr) -> dict:
    """make_churn_model(params) for each entry, fitted; the feature steps (ratios, BG/NBD) are
    fitted once on the first and shared, only each candidate's estimator is fitted on top."""
    out, feats, F = {}, None, None
    for name, params in params_list.items():
        m = make_churn_model(params)
        n = len(feature_steps(params["horizon_days"]))
        if feats is None:
            m.fit(X_tr, y_tr)
            feats, F = m.steps[:n], Pipeline(m.steps[:n]).transform(X_tr)
        else:
            Pipeline(m.steps[n:]).fit(F, y_tr)
            m.steps[:n] = feats
        out[name] = m
    return out


def soft_vote(glm: Pipeline, xgb: Pipeline, weight: float, X, y) -> Pipeline:
    """The blend candidate from two fitted churn pipelines that share their feature steps,
    without refitting either: their frozen estimator parts in a soft VotingClassifier (its fit
    on (X, y) only records the classes)."""
    n = len(feature_steps(180))
    feats = glm.steps[:n]
    head = [(k, FrozenEstimator(Pipeline(m.steps[n:]))) for k, m in (("glm", glm), ("xgb", xgb))]
    vote = VotingClassifier(head, voting="soft", weights=[1.0 - weight, weight])
    vote.fit(Pipeline(feats).transform(X), y)
    return Pipeline(feats + [("model", vote)])


def choice_rows(X_tr: pd.DataFrame, *, val_cut: pd.Timestamp, horizon_days: int) -> np.ndarray:
    """Mask of the training rows the candidates are fitted on for the comparison: cutoffs at
    least min(H, half the training span) before the validation cutoff. Deployed, the model
    scores H after its newest training cutoff (older tenures than it was trained on); the
    comparison keeps as much of that gap as the history allows. The winner is then refitted on
    every training row."""
    c = X_tr.index.get_level_values("cutoff")
    gap = min(pd.Timedelta(days=horizon_days), (pd.Timestamp(val_cut) - c.min()) / 2)
    return np.asarray(c <= pd.Timestamp(val_cut) - gap)


def choose_churn(X_tr, y_tr, X_val, y_val, *, horizon_days: int, params: dict, calibration: str) -> Choice:
    """Each churn candidate (CHURN_CANDIDATES, feature steps shared; the blend from the fitted
    GLM and XGBoost) fitted on the training rows, calibrated cross-fitted on the validation
    fold and compared by log loss there (one-SE rule). A fixed `estimator` in params leaves
    only that candidate."""
    base = {"horizon_days": horizon_days, **params}
    if "estimator" in params:
        cands = {"configured": {}}
        models = {"configured": make_churn_model(base).fit(X_tr, y_tr)}
    else:
        cands = CHURN_CANDIDATES
        models = fit_sharing_features({k: {**base, **v} for k, v in cands.items() if v["estimator"] != "blend"},
                                      X_tr, y_tr)
        w = float(base.get("xgb_weight", 0.5))
        models["blend"] = soft_vote(models["glm_C1"], models["xgb_monotone"], w, X_val, y_val)
    y = np.asarray(y_val, dtype="float64")
    probs = {k: np.clip(cross_fitted_calibration(m, X_val, y_val, calibration), 1e-7, 1 - 1e-7)
             for k, m in models.items()}

    def log_loss(p, rows):
        return -np.mean(y[rows] * np.log(p[rows]) + (1 - y[rows]) * np.log(1 - p[rows]))

    name, full, why = one_se_choice(probs, log_loss, greater_is_better=False)
    scores = {k: {"log_loss": v, "roc_auc": M.classification_metrics(y, probs[k])["roc_auc"]} for k, v in full.items()}
    model = models[name]
    if name == "blend":  # registered as one ordinary pipeline (explainable), fitted in full
        model = make_churn_model({**base, **cands[name]}).fit(X_tr, y_tr)
    return Choice(name, {**params, **cands[name]}, model, scores, why)


def choose_value(X_tr, y_tr, X_val, y_val, *, horizon_days: int, params: dict) -> Choice:
    """Each value candidate fitted on the training rows and compared by validation Gini
    (one-SE rule); a fixed `spend_model` in params leaves only that candidate."""
    cands = {"configured": {}} if "spend_model" in params else VALUE_CANDIDATES
    a = np.asarray(y_val, dtype="float64")
    models, preds = {}, {}
    for name, extra in cands.items():
        # candidates are compared on point forecasts only: no interval levels (one fit fewer each)
        models[name] = make_value_model({"horizon_days": horizon_days, **params, **extra,
                                         "calibrate_intervals": False}).fit(X_tr, y_tr)
        preds[name] = models[name].predict(X_val)
    name, full, why = one_se_choice(preds, lambda p, rows: M.normalized_gini(a[rows], p[rows]),
                                    greater_is_better=True)
    scores = {k: {"gini": v, "total_rel_error": M.value_metrics(a, preds[k])["total_rel_error"]}
              for k, v in full.items()}
    return Choice(name, {**params, **cands[name]}, models[name], scores, why)


def choice_lines(family: str, c: Choice) -> list[str]:
    """What `train` prints about a family's model choice."""
    rows = [f"  {k:14s} " + "  ".join(f"{m} {v:.4f}" for m, v in s.items()) for k, s in c.scores.items()]
    return [f"{family}: validation candidates"] + rows + [f"{family}: chose {c.name}: {c.reason}"]


def choice_params(c: Choice) -> dict:
    """The choice as run params (flattened by the tracker)."""
    out = {"model_choice": c.name, "model_choice_reason": c.reason}
    for k, s in c.scores.items():
        out.update({f"candidate.{k}.{m}": round(v, 6) for m, v in s.items()})
    return out


def btyd_champions(tables: Tables, *, as_of: dt.date, horizon_days: int, features: FeatureConfig,
                   fingerprint: str, reason: str) -> list:
    """The BG/NBD + Gamma-Gamma pair fitted on the history before as_of (no labels needed),
    registered as the churn and value champions with `reason` (too little history for
    snapshots)."""
    f = build_features(tables, as_of=as_of, config=features)
    f = f[f["frequency"] > 0]
    why = f"BG/NBD + Gamma-Gamma registered as champion: {reason}"
    out = []
    for family, model, metric in (("churn", btyd_churn_model(horizon_days=horizon_days), "roc_auc"),
                                  ("value", BTYDValue(horizon_days=horizon_days), "gini")):
        model.fit(f)
        if hasattr(model, "steps"):  # the churn baseline's one linear reason, measured from the fitted rows' mean
            fix_reference(model, f)
        out.append(TrainedModel(
            family=family, horizon_days=horizon_days, model=model, feature_names=list(f.columns),
            params={"as_of": str(as_of), "horizon_days": horizon_days, "model_kind": "btyd_baseline",
                    "fallback_reason": reason},
            metrics={}, baseline_metrics={}, figures={}, input_example=f.head(5), data_fingerprint=fingerprint,
            validation=None, primary_metric=metric, gate_decision=(True, why)))
    return out


def train_customer_models(tables: Tables, *, as_of: dt.date, horizon_days: int, cfg: TrainConfig,
                          features: FeatureConfig, fingerprint: str, progress=None) -> list:
    """Churn and value models (chosen on the validation fold among candidates, gated against
    their BG/NBD baseline there) ready for the tracker; the BG/NBD + Gamma-Gamma pair as
    champions when the history holds no training snapshot."""
    step = progress or (lambda msg: None)
    step("building training snapshots")
    try:
        sp = customer_split(tables, as_of=as_of, horizon_days=horizon_days, cfg=cfg, features=features)
    except HistoryTooShort as e:
        step(f"{e} -> BG/NBD + Gamma-Gamma fitted on the history before as_of, registered as champion")
        return btyd_champions(tables, as_of=as_of, horizon_days=horizon_days, features=features,
                              fingerprint=fingerprint, reason=str(e))
    step(f"{len(sp.X_train):,} training rows over {len(sp.cuts) - len(sp.val_cuts)} cutoffs, "
         f"{len(sp.X_val):,} validation rows")
    base = baseline_scores(tables, sp.X_val, horizon_days=horizon_days)
    common = {"as_of": as_of, "horizon_days": horizon_days, "cfg": cfg, "fingerprint": fingerprint, "say": step}
    values = train_value(sp, base, **common)
    level = set_level(values[0].model, tables, sp, as_of=as_of, horizon_days=horizon_days, features=features)
    step(level)
    values[0].params["population_level"] = level
    return train_churn(sp, base, **common) + values


def set_level(value, tables: Tables, sp: Split, *, as_of, horizon_days: int, features: FeatureConfig) -> str:
    """Give the value model the population component (value.level_) when it beat the model's
    own total at the validation cutoff; returns what was decided, to print and log."""
    use, why = level_on_validation(tables.transactions, cutoff=max(sp.val_cuts), horizon_days=horizon_days,
                                   predicted=value.predict(sp.X_val), actual=sp.y_val["future_value"].to_numpy())
    if not use:
        return f"{why}; at as_of: {population_level(tables.transactions, as_of=as_of, horizon_days=horizon_days).note}"
    f = build_features(tables, as_of=as_of, config=features)
    f = f[f["frequency"] > 0]
    factor, lv = level_factor(tables.transactions, as_of=as_of, horizon_days=horizon_days,
                              predicted_total=float(value.predict(f[list(sp.X_train.columns)]).sum()))
    value.level_ = factor
    return f"{why}; at as_of: {lv.note}, forecast scaled by {factor:.3f}"


def gate_on_baseline(family: str, score: float, baseline: float, metric: str, say) -> tuple[bool, str] | None:
    """None when the challenger beats its BG/NBD baseline on the validation fold; else the
    (not promoted, why) decision, said."""
    if score > baseline:
        return None
    why = (f"{family} challenger {metric} {score:.4f} does not beat its BG/NBD baseline's {baseline:.4f} on the "
           f"validation fold: not promoted; the baseline is registered as champion")
    say(why)
    return False, why


def baseline_model(tm: TrainedModel, model, X_fit: pd.DataFrame, decision: tuple[bool, str]) -> TrainedModel:
    """The BG/NBD baseline (fitted on X_fit's rows) registered in the losing challenger's place."""
    model.fit(X_fit)
    if hasattr(model, "steps"):  # the churn baseline's one linear reason, measured from the fitted rows' mean
        fix_reference(model, X_fit)
    return TrainedModel(
        family=tm.family, horizon_days=tm.horizon_days, model=model, feature_names=tm.feature_names,
        params={**{k: v for k, v in tm.params.items() if not k.startswith(("model.", "candidate.", "explain"))},
                "model_kind": "btyd_baseline", "fallback_reason": decision[1]},
        metrics=dict(tm.baseline_metrics.get("btyd", {})), baseline_metrics={}, figures={},
        input_example=tm.input_example, data_fingerprint=tm.data_fingerprint, validation=None,
        primary_metric=tm.primary_metric, gate_decision=(True, decision[1]))


def train_churn(sp: Split, base: pd.DataFrame, *, as_of, horizon_days: int, cfg: TrainConfig, fingerprint: str,
                say) -> list:
    """The churn challenger (chosen, calibrated) and, when it loses to BG/NBD, the baseline."""
    say("training churn model: candidates on the validation fold")
    y_tr, y_val = sp.y_train["churned"], sp.y_val["churned"]
    rows = choice_rows(sp.X_train, val_cut=max(sp.val_cuts), horizon_days=horizon_days)
    choice = choose_churn(sp.X_train[rows], y_tr[rows], sp.X_val, y_val, horizon_days=horizon_days,
                          params=cfg.churn_params, calibration=cfg.calibration)
    for line in choice_lines("churn", choice):
        say(line)
    churn = make_churn_model({"horizon_days": horizon_days, **choice.params}).fit(sp.X_train, y_tr)
    raw = churn.predict_proba(sp.X_val)[:, 1]
    cross = cross_fitted_calibration(churn, sp.X_val, y_val, cfg.calibration)
    calibrated = calibrate(churn, sp.X_val, y_val, method=cfg.calibration)
    churn_ref = fix_reference(calibrated, sp.X_train)  # reasons measured from the training mean
    m = M.classification_metrics(y_val, cross)
    m.update({f"raw_{k}": v for k, v in M.classification_metrics(y_val, raw).items()})
    p_lr = make_churn_baseline().fit(sp.X_train, y_tr).predict_proba(sp.X_val)[:, 1]
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
    return gated_models(
        "churn", calibrated, sp, y_val, choice=choice, reference=churn_ref, metrics=m, baselines=baselines,
        figures=figs, primary="roc_auc", baseline=btyd_churn_model(horizon_days=horizon_days), as_of=as_of,
        horizon_days=horizon_days, cfg=cfg, fingerprint=fingerprint, say=say)


def train_value(sp: Split, base: pd.DataFrame, *, as_of, horizon_days: int, cfg: TrainConfig, fingerprint: str,
                say) -> list:
    """The value challenger (chosen on Gini) and, when it loses to BG/NBD + Gamma-Gamma, the baseline."""
    say("training value model: candidates on the validation fold")
    v_tr, v_val = sp.y_train["future_value"], sp.y_val["future_value"]
    rows = choice_rows(sp.X_train, val_cut=max(sp.val_cuts), horizon_days=horizon_days)
    choice = choose_value(sp.X_train[rows], v_tr[rows], sp.X_val, v_val, horizon_days=horizon_days,
                          params=cfg.value_params)
    for line in choice_lines("value", choice):
        say(line)
    value = make_value_model({"horizon_days": horizon_days, **choice.params}).fit(sp.X_train, v_tr)
    say(f"value P10/P90 levels: {getattr(value, 'interval_calibration_', 'nominal (calibrate_intervals off)')}")
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
    return gated_models(
        "value", value, sp, v_val, choice=choice, reference=value_ref, metrics=vm, baselines=vb, figures=vfigs,
        primary="gini", baseline=BTYDValue(horizon_days=horizon_days), as_of=as_of, horizon_days=horizon_days,
        cfg=cfg, fingerprint=fingerprint, say=say)


def gated_models(family: str, model, sp: Split, y_val, *, choice, reference, metrics: dict, baselines: dict,
                 figures: dict, primary: str, baseline, as_of, horizon_days: int, cfg: TrainConfig,
                 fingerprint: str, say) -> list:
    """The challenger as a TrainedModel and, when it does not beat BG/NBD on `primary` at the
    validation fold, the BG/NBD `baseline` registered after it (the gate's decision says why)."""
    feature_names = list(sp.X_train.columns)
    decision = gate_on_baseline(family, metrics[primary], baselines["btyd"][primary], primary, say)
    tm = TrainedModel(
        family=family, horizon_days=horizon_days, model=model, feature_names=feature_names,
        params=_params(as_of, horizon_days, cfg, sp.cuts, sp.val_cuts, feature_names,
                       {**{f"model.{k}": v for k, v in choice.params.items()}, **choice_params(choice),
                        "explain_reference": reference}),
        metrics=metrics, baseline_metrics=baselines, figures=figures, input_example=sp.X_val.head(5),
        data_fingerprint=fingerprint, validation=(sp.X_val, y_val), primary_metric=primary, gate_decision=decision)
    if decision is None:
        return [tm]
    return [tm, baseline_model(tm, baseline, sp.X_train, decision)]


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
