"""Batch predictor: champion models + rule-based tiers + reasons -> ranked lists.

Per account (customers with a positive purchase before as_of): churn_probability,
expected_value (net spend over [as_of, as_of + H)), value_at_risk, BG/NBD p_alive and
expected purchases, every tier, the composite score, plain-words reasons, a recommended action,
model versions and as_of. Per open deal: close_probability, expected revenue and reasons.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import Pipeline
from .errors import InputError
from .features import Tables, build_features
from .train import btyd_baseline

RANK_BY = ("composite_score", "value_at_risk", "expected_value", "churn_probability")
CONTEXT = ("name", "owner", "region")


@dataclass
class Scored:
    accounts: pd.DataFrame
    deals: pd.DataFrame | None
    versions: dict[str, str]
    counts: dict[str, float] = field(default_factory=dict)


def _check_features(name: str, card: dict, X: pd.DataFrame) -> pd.DataFrame:
    want = list(card.get("feature_names") or [])
    missing = [c for c in want if c not in X.columns]
    if missing:
        raise InputError(f"model {name} v{card.get('version')} was trained on features that the data "
                         f"does not produce now: {missing[:10]}",
                         hint="pass the same kinds of tables (e.g. --invoices, cost column) as at training, "
                              "or retrain")
    return X[want] if want else X


def _load(tracker, name: str, prefer: str):
    try:
        return tracker.load_champion(name, prefer=prefer)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - registry/bundle absent: say what to do
        raise InputError(f"no usable champion model '{name}' ({type(e).__name__}: {e})",
                         hint="run `keyaccounts train` for this horizon first") from None


def parse_reasons(reasons: str) -> tuple[str, int]:
    """'all' | 'none' | 'top:N' -> (mode, N)."""
    if reasons in ("all", "none"):
        return reasons, 0
    if reasons.startswith("top:") and reasons[4:].isdigit() and int(reasons[4:]) > 0:
        return "top", int(reasons[4:])
    raise InputError(f"--reasons must be all, none or top:N, got '{reasons}'")


def _rank(df: pd.DataFrame, by: str, group: str | None) -> pd.DataFrame:
    """Sort by `by` descending, ties by id; rank 1 = first. With a group: grouped, group_rank."""
    if by not in df.columns:
        raise InputError(f"cannot rank by '{by}': not in the output (choose from {', '.join(RANK_BY)})")
    ids = df.index.to_series().astype("str")
    order = pd.DataFrame({"k": -df[by].astype("float64").fillna(-np.inf), "id": ids.to_numpy()}, index=df.index)
    df = df.loc[order.sort_values(["k", "id"], kind="stable").index]
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    if group:
        if group not in df.columns:
            raise InputError(f"--by {group}: the customers/opportunities table has no '{group}' column")
        g = df[group].astype("str").fillna("(none)")
        df = df.assign(_g=g).sort_values(["_g", "rank"], kind="stable").drop(columns="_g")
        df.insert(1, "group_rank", df.groupby(g.loc[df.index], sort=False).cumcount().to_numpy() + 1)
    return df


def _top(df: pd.DataFrame, top: int | None, group: str | None) -> pd.DataFrame:
    if not top:
        return df
    return df[df["group_rank"] <= top] if group else df[df["rank"] <= top]


def score_accounts(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                   prefer: str = "registry", reasons: str = "all", rank_by: str = "composite_score",
                   by: str | None = None, top: int | None = None, say=None,
                   on_family=None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The ranked account list (see module docstring). `say(message)` hears the sub-steps,
    `on_family` is build_features' progress callback; neither changes the result."""
    from .explain import explain_accounts, select_rows
    from .tiers import assign_tiers
    from .tracking import model_name
    say = say or (lambda message: None)
    mode, n_top = parse_reasons(reasons)
    say("building customer features")
    f = build_features(tables, as_of=as_of, config=p.features, progress=on_family)
    f = f[f["frequency"] > 0]
    if f.empty:
        raise InputError(f"no customer has a purchase before as_of {as_of}: nothing to score")
    versions, models = {}, {}
    out = pd.DataFrame(index=f.index)
    for fam, col in (("churn", "churn_probability"), ("value", "expected_value")):
        name = model_name(fam, horizon_days)
        say(f"predicting {col} for {len(f):,} accounts ({name})")
        model, card = _load(tracker, name, prefer)
        X = _check_features(name, card, f)
        out[col] = model.predict_proba(X)[:, 1] if fam == "churn" else np.maximum(model.predict(X), 0.0)
        versions[name] = str(card.get("version"))
        models[fam] = (model, X)
    # Revenue at stake: this customer's run-rate over the horizon, times the risk of losing it.
    run_rate = f["spend_365d"].clip(lower=0) * horizon_days / 365.0 if "spend_365d" in f.columns else out["expected_value"]
    out["value_at_risk"] = out["churn_probability"] * run_rate
    b = btyd_baseline(tables.transactions, as_of=as_of, horizon_days=horizon_days, index=f.index)
    out = out.join(b[["p_alive", "expected_purchases", "btyd_value"]])
    tiers = assign_tiers(f, out, p.tiers)
    out = out.join(tiers)
    if mode != "none":
        chosen = out.index if mode == "all" else select_rows(out[rank_by], f"top:{n_top}")
        for fam in ("churn", "value"):
            say(f"SHAP reasons ({fam}) for {len(chosen):,} accounts")
            model, X = models[fam]
            r = explain_accounts(model, X.loc[chosen], f.loc[chosen], n=3, kind=fam)
            out[f"{fam}_reasons_up"] = r["reasons_up"].reindex(out.index).fillna("")
            out[f"{fam}_reasons_down"] = r["reasons_down"].reindex(out.index).fillna("")
    if tables.customers is not None:
        ctx = [c for c in CONTEXT if c in tables.customers.columns]
        if ctx:
            cust = tables.customers.set_index(tables.customers["customer_id"].astype("str"))[ctx]
            out = cust.reindex(out.index).join(out)
    for fam in ("churn", "value"):
        name = model_name(fam, horizon_days)
        out[f"{fam}_model_version"] = f"{name}/v{versions[name]}"
    out["as_of"] = pd.Timestamp(as_of)
    out.index.name = "customer_id"
    out = _top(_rank(out, rank_by, by), top, by)
    return out, versions


def score_deals(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                prefer: str = "registry", reasons: str = "all", by: str | None = None,
                top: int | None = None, say=None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Open deals at as_of ranked by expected revenue = close_probability x amount; `say`
    hears the sub-steps."""
    from .explain import explain_accounts
    from .features import deals
    from .tracking import model_name
    say = say or (lambda message: None)
    say("building deal features")
    d = deals(tables.opportunities, as_of=as_of, open_stages=p.stages.open, stage_history=tables.stage_history,
              txns=tables.transactions, owner_prior=p.features.owner_win_rate_prior)
    name = model_name("deal", horizon_days)
    model, card = _load(tracker, name, prefer)
    fitted = getattr(model, "feature_names_in_", None)
    X = _check_features(name, {**card, "feature_names": list(map(str, fitted))}, d) if fitted is not None else d
    out = d[["customer_id", "owner", "stage_at_as_of", "amount"]].copy()
    say(f"predicting close_probability for {len(d):,} open deals ({name})")
    out["close_probability"] = model.predict_proba(X)[:, 1] if len(d) else np.zeros(0)
    out["expected_revenue"] = out["close_probability"] * out["amount"].fillna(0.0)
    if len(d) and parse_reasons(reasons)[0] != "none" and not card.get("refused_reason"):
        try:
            say(f"SHAP reasons (deal) for {len(d):,} open deals")
            r = explain_accounts(model, X, d, n=3, kind="deal")
            out["reasons_up"], out["reasons_down"] = r["reasons_up"], r["reasons_down"]
        except ValueError:  # the stage-rate fallback has no per-feature contributions
            pass
    out["deal_model_version"] = f"{name}/v{card.get('version')}"
    out["as_of"] = pd.Timestamp(as_of)
    by = by if by in out.columns else None
    return _top(_rank(out, "expected_revenue", by), top, by), {name: str(card.get("version"))}


def tier_counts(accounts: pd.DataFrame) -> dict[str, float]:
    """Counts per tier value, as flat metric names (e.g. 'tier.abc_predicted.A')."""
    out = {}
    for col in ("abc_history", "abc_predicted", "pyramid", "rfm_segment", "kaism_quadrant", "composite_tier"):
        if col in accounts.columns:
            for k, v in accounts[col].astype("str").value_counts().sort_index().items():
                out[f"tier.{col}.{k}".replace(" ", "_").replace("'", "")] = float(v)
    return out
