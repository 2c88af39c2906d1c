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
from .explain import explain_accounts
from .features import Tables, build_features, deals, potential
from .tiers import POTENTIAL_COLUMNS, SCORE_INPUTS, assign_tiers, check_criteria, criteria_columns, uses_potential
from .tracking import model_name
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


def load_champion(tracker, name: str, prefer: str):
    try:
        return tracker.load_champion(name, prefer=prefer)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - registry/bundle absent: say what to do
        raise InputError(f"no usable champion model '{name}' ({type(e).__name__}: {e})",
                         hint="run `keyaccounts train` for this horizon first") from None


def parse_reasons(reasons: str) -> tuple[str, int]:
    """'all' | 'none' | 'top:K' -> (mode, K). With a group (--by), top:K is per group."""
    spec = str(reasons).strip().lower()
    if spec in ("all", "none"):
        return spec, 0
    if spec.startswith("top:") and spec[4:].isdigit() and int(spec[4:]) > 0:
        return "top", int(spec[4:])
    raise InputError(f"--reasons must be all, none or top:K with K a whole number >= 1 (per group with "
                     f"--by), got '{reasons}'")


def rank_rows(df: pd.DataFrame, by: str, group: str | None) -> pd.DataFrame:
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


def keep_top(df: pd.DataFrame, top: int | None, group: str | None) -> pd.DataFrame:
    """The first `top` rows of a ranked frame (per group when grouped)."""
    if not top:
        return df
    return df[df["group_rank"] <= top] if group else df[df["rank"] <= top]


def reason_rows(ranked: pd.DataFrame, reasons: str, group: str | None) -> pd.Index:
    """The rows of a ranked (and cut) frame that get reasons: all, none, or the top K by
    rank (per group when grouped, so every group's first K rows are explained)."""
    mode, k = parse_reasons(reasons)
    if mode == "all":
        return ranked.index
    if mode == "none":
        return ranked.index[:0]
    pos = ranked["group_rank"] if group and "group_rank" in ranked.columns else ranked["rank"]
    return ranked.index[pos.to_numpy() <= k]


def score_accounts(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                   prefer: str = "registry", reasons: str = "all", rank_by: str = "composite_score",
                   by: str | None = None, top: int | None = None, say=None,
                   on_family=None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The ranked account list (see module docstring). `say(message)` hears the sub-steps,
    `on_family` is build_features' progress callback; neither changes the result."""
    out, versions, _ = score_accounts_and_features(tables, as_of=as_of, horizon_days=horizon_days, p=p,
                                                   tracker=tracker, prefer=prefer, reasons=reasons, rank_by=rank_by,
                                                   by=by, top=top, say=say, on_family=on_family)
    return out, versions


def score_accounts_and_features(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                                prefer: str = "registry", reasons: str = "all", rank_by: str = "composite_score",
                                by: str | None = None, top: int | None = None, say=None,
                                on_family=None) -> tuple[pd.DataFrame, dict[str, str], pd.DataFrame]:
    """score_accounts plus the customer features the accounts were scored from (every customer
    with a purchase before as_of): the report measures drift on them instead of building them again."""
    say = say or (lambda message: None)
    parse_reasons(reasons)
    say("building customer features")
    f = build_features(tables, as_of=as_of, config=p.features, progress=on_family)
    f = f[f["frequency"] > 0]
    if f.empty:
        raise InputError(f"no customer has a purchase before as_of {as_of}: nothing to score")
    tier_in = tier_inputs(tables, f, as_of=as_of, p=p)
    versions, models = {}, {}
    out = pd.DataFrame(index=f.index)
    for fam, col in (("churn", "churn_probability"), ("value", "expected_value")):
        name = model_name(fam, horizon_days)
        say(f"predicting {col} for {len(f):,} accounts ({name})")
        model, card = load_champion(tracker, name, prefer)
        X = _check_features(name, card, f)
        out[col] = model.predict_proba(X)[:, 1] if fam == "churn" else np.maximum(model.predict(X), 0.0)
        if fam == "value" and hasattr(model, "predict_quantiles"):  # per-account P10 / P90 of next-H spend
            q = model.predict_quantiles(X, (0.1, 0.9))
            out["expected_value_p10"], out["expected_value_p90"] = q[:, 0], q[:, 1]
        versions[name] = str(card.get("version"))
        models[fam] = (model, X)
    # Revenue at stake: this customer's run-rate over the horizon, times the risk of losing it.
    run_rate = f["spend_365d"].clip(lower=0) * horizon_days / 365.0 if "spend_365d" in f.columns else out["expected_value"]
    out["value_at_risk"] = out["churn_probability"] * run_rate
    out = out.join(_btyd_columns(tables, as_of, horizon_days, f.index, say))
    out = out.join(tier_in[[c for c in POTENTIAL_COLUMNS[:3] if c in tier_in.columns]])  # whitespace, when used
    tiers = assign_tiers(tier_in, out, p.tiers)
    out = out.join(tiers)
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
    out = keep_top(rank_rows(out, rank_by, by), top, by)
    # Reasons after the cut: the reference point is fixed at training, so explaining only the
    # written rows gives each account the same reasons as explaining everyone.
    if parse_reasons(reasons)[0] == "none":
        return out, versions, f
    chosen = reason_rows(out, reasons, by)
    for fam in ("churn", "value"):
        say(f"SHAP reasons ({fam}) for {len(chosen):,} accounts")
        model, X = models[fam]
        if not getattr(model, "has_reasons", True):  # the BG/NBD baseline champion has no feature contributions
            say(f"no reasons for {fam}: its champion is the BG/NBD baseline (recency, frequency and tenure only)")
            chosen_fam = chosen[:0]
        else:
            chosen_fam = chosen
        r = explain_accounts(model, X.loc[chosen_fam], f.loc[chosen_fam], n=3, kind=fam) if len(chosen_fam) else None
        for side in ("up", "down"):
            out.insert(out.columns.get_loc("churn_model_version"), f"{fam}_reasons_{side}",
                       _fill(out.index, chosen, None if r is None else r[f"reasons_{side}"]))
    return out, versions, f


def tier_inputs(tables: Tables, f: pd.DataFrame, *, as_of: dt.date, p: Pipeline) -> pd.DataFrame:
    """What the tiers read beside the scores: the features `f`, the peer potential (when a score
    uses it, see tiers.uses_potential) and the customers columns the tier criteria name.
    The criteria are checked here, before any model runs, so a bad one exits 2 at once."""
    out, cust, pc = f, tables.customers, p.features.potential
    if uses_potential(p.tiers):
        pot = potential(tables.transactions, cust, as_of=as_of, segment_columns=pc.segment_columns,
                        percentile=pc.percentile, min_peers=pc.min_peers, window_days=pc.window_days,
                        min_active_days=pc.min_active_days)
        out = out.join(pot.drop(columns=[c for c in pot.columns if c in out.columns]))
    want = [c for c in criteria_columns(p.tiers)
            if cust is not None and c in cust.columns and c not in out.columns and c != "customer_id"]
    if want:
        ids = cust["customer_id"].astype("str")
        out = out.join(cust[want].set_axis(ids).loc[~ids.duplicated(keep="last").to_numpy()])
    # The scores come later; stand-ins let a criterion on them pass the check.
    probe = out.assign(**{c: np.nan for c in SCORE_INPUTS if c not in out.columns})
    try:
        check_criteria(probe, p.tiers)
    except ValueError as e:
        raise InputError(f"tiers criteria: {e}", hint="a criterion names a column of the customers table or of "
                         "the features, with a value map (category: score 0-1) for text") from None
    return out


def _btyd_columns(tables: Tables, as_of, horizon_days: int, index: pd.Index, say) -> pd.DataFrame:
    """The BG/NBD + Gamma-Gamma baseline beside the models, fitted on the history before as_of;
    left blank (and said) when that history is too small to fit, e.g. one account scored alone."""
    cols = ["p_alive", "expected_purchases", "btyd_value"]
    try:
        return btyd_baseline(tables.transactions, as_of=as_of, horizon_days=horizon_days, index=index)[cols]
    except (ValueError, RuntimeError) as e:
        say(f"[yellow]note[/]: BG/NBD baseline left blank ({e})")
        return pd.DataFrame(np.nan, index=index, columns=cols)


def _fill(index: pd.Index, chosen: pd.Index, values: pd.Series | None) -> pd.Series:
    """A text column over `index`: `values` on the chosen rows, '' elsewhere."""
    col = pd.Series("", index=index, dtype="object")
    if values is not None:
        col.loc[chosen] = values.reindex(chosen).to_numpy(dtype=object)
    return col.astype("str")


def score_deals(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                prefer: str = "registry", reasons: str = "all", by: str | None = None,
                top: int | None = None, say=None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Open deals at as_of ranked by expected revenue = close_probability x amount; `say`
    hears the sub-steps."""
    out, versions, _ = score_deals_and_features(tables, as_of=as_of, horizon_days=horizon_days, p=p, tracker=tracker,
                                                prefer=prefer, reasons=reasons, by=by, top=top, say=say)
    return out, versions


def score_deals_and_features(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                             prefer: str = "registry", reasons: str = "all", by: str | None = None,
                             top: int | None = None, say=None) -> tuple[pd.DataFrame, dict[str, str], pd.DataFrame]:
    """score_deals plus the open-deal features the deals were scored from (for the report's drift)."""
    say = say or (lambda message: None)
    say("building deal features")
    d = deals(tables.opportunities, as_of=as_of, open_stages=p.stages.open, stage_history=tables.stage_history,
              txns=tables.transactions, owner_prior=p.features.owner_win_rate_prior)
    name = model_name("deal", horizon_days)
    model, card = load_champion(tracker, name, prefer)
    fitted = getattr(model, "feature_names_in_", None)
    X = _check_features(name, {**card, "feature_names": list(map(str, fitted))}, d) if fitted is not None else d
    out = d[["customer_id", "owner", "stage_at_as_of", "amount"]].copy()
    say(f"predicting close_probability for {len(d):,} open deals ({name})")
    out["close_probability"] = model.predict_proba(X)[:, 1] if len(d) else np.zeros(0)
    out["expected_revenue"] = out["close_probability"] * out["amount"].fillna(0.0)
    out["deal_model_version"] = f"{name}/v{card.get('version')}"
    out["as_of"] = pd.Timestamp(as_of)
    by = by if by in out.columns else None
    out = keep_top(rank_rows(out, "expected_revenue", by), top, by)
    if not len(out) or parse_reasons(reasons)[0] == "none" or card.get("refused_reason"):
        return out, {name: str(card.get("version"))}, d
    chosen = reason_rows(out, reasons, by)
    say(f"SHAP reasons (deal) for {len(chosen):,} open deals")
    try:
        r = explain_accounts(model, X.loc[chosen], d.loc[chosen], n=3, kind="deal") if len(chosen) else None
    except ValueError:  # the stage-rate fallback has no per-feature contributions
        return out, {name: str(card.get("version"))}, d
    for side in ("up", "down"):
        out.insert(out.columns.get_loc("deal_model_version"), f"reasons_{side}",
                   _fill(out.index, chosen, None if r is None else r[f"reasons_{side}"]))
    return out, {name: str(card.get("version"))}, d


def tier_counts(accounts: pd.DataFrame) -> dict[str, float]:
    """Counts per tier value, as flat metric names (e.g. 'tier.abc_predicted.A')."""
    out = {}
    for col in ("abc_history", "abc_predicted", "pyramid", "rfm_segment", "kaism_quadrant", "composite_tier"):
        if col in accounts.columns:
            for k, v in accounts[col].astype("str").value_counts().sort_index().items():
                out[f"tier.{col}.{k}".replace(" ", "_").replace("'", "")] = float(v)
    return out
