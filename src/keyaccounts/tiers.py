"""Rule-based key-account tiers: ABC, customer pyramid, RFM segments, KAISM matrix, composite score.

Pure functions: pandas in, pandas out, indexed by customer_id, deterministic, no I/O. Every
threshold and weight comes from `config.TierConfig`.

Conventions
- Percentile rank (`percentile_rank`): (average rank - 1) / (n - 1) over the non-missing values, so
  the lowest is 0, the highest 1 and ties share the mean rank; all-equal values (or n = 1) get 0.5;
  a missing value (NaN) gets the neutral 0.5. Ranks ignore scale and outliers, so multiplying a
  column by a positive constant changes nothing.
- Families / components: a family whose columns are all absent or all NaN drops out and the
  weights of the remaining ones are renormalised to sum to 1.
- Boundaries are compared with a 1e-9 tolerance so float rounding at an exact boundary (80 % of
  value, a score of 80) never flips a tier.

Column sources (features from `features.build_features`, scores from `score.score_customers`)
- history value: `TierConfig.history_column` (monetary_total, or spend_365d)
- predicted value: expected_value (scores); KAISM value falls back to the history value
- growth: first of `TierConfig.growth_columns` present (spend_growth_ratio_90d, spend_slope_monthly)
- margin: margin_rate (KAISM), margin_total (composite) - only with a cost column
- retention: 1 - churn_probability (scores), else min(spend_90d / spend_prior_90d, cap)
- credit health: mean of 1 - percentile of days_past_due_mean, late_payment_share and
  overdue_balance (whichever exist; only with invoices)
- potential: potential_spend_annual (features.potential; weight 0 unless configured)

Your own criteria (`config.Criterion`, listed under kaism.attractiveness_criteria,
kaism.position_criteria and composite.criteria) read any column of the frame given (features,
scores and the customers columns the caller joined): numeric columns as percentile ranks,
text columns through their value map (category -> 0-1); `lower_is_better` flips the score to
1 - score; a missing value counts 0.5 (neutral), 0 (worst) or is left out of that account's
weighted mean (drop). `criteria_in_force` lists every component with its share of the weight.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .config import ActionConfig, Criterion, RfmRule, TierConfig
from .features.registry import names

EPS = 1e-9
POTENTIAL_COLUMN, HEADROOM_COLUMN = "potential_spend_annual", "headroom_spend_annual"
#: The columns of features.potential, as the feature registry declares them.
POTENTIAL_COLUMNS = tuple(names("potential"))
SCORE_INPUTS = ("churn_probability", "expected_value")  # the columns of the scores the tiers read
CREDIT_COLUMNS = ("days_past_due_mean", "late_payment_share", "overdue_balance")
INSUFFICIENT = "insufficient history"
QUADRANTS = ("key", "develop", "maintain", "harvest")
OUTPUT_COLUMNS = ("abc_history", "abc_predicted", "pyramid", "rfm_segment", "attractiveness", "position",
                  "kaism_quadrant", "composite_score", "composite_tier", "data_flag", "recommended_action",
                  "lifecycle_stage")


def _value_order(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values as float (NaN -> -inf) and the positions sorted by value descending, ties by index."""
    if not values.index.is_unique:
        raise ValueError("values must have a unique index (one row per customer)")
    v = values.to_numpy(dtype="float64", na_value=np.nan)
    v = np.where(np.isnan(v), -np.inf, v)
    keys = np.argsort(np.asarray(values.index.astype("str")), kind="stable")  # index ascending
    order = keys[np.argsort(-v[keys], kind="stable")]  # then value descending, stable keeps index order
    return v, order


def abc_tier(values: pd.Series, *, a_share: float = 0.80, b_share: float = 0.15) -> pd.Series:
    """ABC (Pareto) class per account: 'A', 'B' or 'C'.

    Accounts are sorted by value descending (ties by index ascending). With `before` = share of the
    total positive value held by the accounts ranked above this one: A if before < a_share (so the
    account that crosses 80 % is still A), B if before < a_share + b_share, else C. Non-positive and
    missing values are always C.
    """
    v, order = _value_order(values)
    pos = np.where(v > 0, v, 0.0)
    total = pos.sum()
    out = np.full(len(v), "C", dtype=object)
    if total > 0:
        before = np.empty(len(v))
        before[order] = (np.cumsum(pos[order]) - pos[order]) / total
        out = np.where(before < a_share + b_share - EPS, "B", out)
        out = np.where(before < a_share - EPS, "A", out)
        out = np.where(v > 0, out, "C")
    return pd.Series(out.astype(object), index=values.index, name=values.name, dtype="str")


DEFAULT_PYRAMID = (("VIP", 0.01), ("major", 0.04), ("medium", 0.15))


def pyramid_tier(values: pd.Series, *, bands: Sequence[tuple[str, float]] = DEFAULT_PYRAMID,
                 rest: str = "small") -> pd.Series:
    """Customer pyramid by count percentile of value. Accounts sorted by value descending (ties by
    index ascending); with `before` = share of accounts ranked above this one, the account falls in
    the first band whose cumulative share exceeds `before` (top 1 % VIP, next 4 % major, next 15 %
    medium by default; so the first account is always VIP). Non-positive / missing values: `rest`.
    """
    v, order = _value_order(values)
    n = len(v)
    before = np.empty(n)
    before[order] = np.arange(n) / max(n, 1)
    out = np.full(n, rest, dtype=object)
    for name, upper in reversed(list(zip([b[0] for b in bands], np.cumsum([b[1] for b in bands]), strict=False))):
        out = np.where(before < upper - EPS, name, out)
    out = np.where(v > 0, out, rest)
    return pd.Series(out.astype(object), index=values.index, name=values.name, dtype="str")


def rfm_segment(r_score: pd.Series, f_score: pd.Series, m_score: pd.Series, *,
                rules: Sequence[RfmRule] | None = None, default: str = "need attention") -> pd.Series:
    """Segment per account from the 1-5 quintile scores; first matching rule of the table wins
    (`TierConfig.rfm_rules`, the usual published map), `default` when none matches."""
    rules = TierConfig().rfm_rules if rules is None else rules
    r, f, m = (s.reindex(r_score.index).to_numpy(dtype="float64", na_value=np.nan) for s in (r_score, f_score, m_score))
    conds = [(r >= ru.r[0]) & (r <= ru.r[1]) & (f >= ru.f[0]) & (f <= ru.f[1]) & (m >= ru.m[0]) & (m <= ru.m[1])
             for ru in rules]
    seg = np.select(conds, [ru.segment for ru in rules], default=default) if rules else np.full(len(r), default)
    return pd.Series(seg.astype(object), index=r_score.index, name="rfm_segment", dtype="str")


def percentile_rank(values: pd.Series) -> pd.Series:
    """(average rank - 1) / (n - 1) over non-missing values: 0 lowest, 1 highest, ties share; missing
    and the all-tied (or single) case get 0.5."""
    v = pd.to_numeric(values, errors="coerce").astype("float64")
    n = int(v.notna().sum())
    if n <= 1:
        return pd.Series(0.5, index=values.index, dtype="float64")
    return ((v.rank(method="average") - 1) / (n - 1)).fillna(0.5)


def _data(features: pd.DataFrame, scores: pd.DataFrame | None) -> pd.DataFrame:
    if not features.index.is_unique:
        raise ValueError("features must have one row per customer_id")
    if scores is None:
        return features
    if not scores.index.is_unique:
        raise ValueError("scores must have one row per customer_id")
    extra = [c for c in SCORE_INPUTS if c in scores.columns]
    d = features.drop(columns=[c for c in extra if c in features.columns])
    for c in extra:
        d[c] = scores[c].reindex(features.index)
    return d


def _usable(d: pd.DataFrame, col: str) -> bool:
    return col in d.columns and bool(pd.to_numeric(d[col], errors="coerce").notna().any())


def _first(d: pd.DataFrame, cols: Sequence[str]) -> str | None:
    return next((c for c in cols if _usable(d, c)), None)


def _credit_health(d: pd.DataFrame) -> pd.Series | None:
    cols = [c for c in CREDIT_COLUMNS if _usable(d, c)]
    if not cols:
        return None
    return pd.concat([1 - percentile_rank(d[c]) for c in cols], axis=1).mean(axis=1)


def _retention(d: pd.DataFrame, cap: float) -> pd.Series | None:
    if _usable(d, "churn_probability"):
        return 1 - d["churn_probability"].astype("float64")
    if _usable(d, "spend_90d") and _usable(d, "spend_prior_90d"):
        prior = d["spend_prior_90d"].astype("float64")
        ratio = d["spend_90d"].astype("float64") / prior.where(prior > 0)
        return ratio.clip(lower=0, upper=cap).round(12)  # equal ratios tie exactly, whatever the scale
    return None


def _weighted(parts: dict[str, tuple[float, pd.Series | None]], index: pd.Index, what: str) -> pd.Series:
    """Weighted mean of the present parts (already on a 0-1 scale), weights renormalised. A part
    may be NaN for some accounts (a criterion with missing: drop): those accounts' weights are
    renormalised over their other parts (an account with no part left gets the neutral 0.5)."""
    present = {k: (w, s.reindex(index).astype("float64")) for k, (w, s) in parts.items() if s is not None}
    total = sum(w for w, _ in present.values())
    if total <= 0:
        raise ValueError(f"{what}: no component with a positive weight is present "
                         f"(looked for {', '.join(parts)})")
    # Per-account total, summed in the same order as `total`: identical to it when nothing is
    # dropped, so the scores stay the same to the last bit as without this feature.
    row_total = pd.Series(0.0, index=index)
    for w, s in present.values():
        row_total = row_total + s.notna() * w
    out = pd.Series(0.0, index=index)
    for w, s in present.values():
        out = out + (w / row_total.where(row_total > 0)) * s.fillna(0.0)
    return out.where(row_total > 0, 0.5)


def _numbers(col: pd.Series) -> pd.Series | None:
    """A column as float64 when it holds numbers (files are read as text, so "700" counts), else None."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    v = pd.to_numeric(col.astype("string").str.strip(), errors="coerce").astype("float64")
    return v if v.notna().sum() == col.notna().sum() else None


def criterion_score(d: pd.DataFrame, c: Criterion) -> pd.Series:
    """One user criterion on a 0-1 scale, 1 = best (see module docstring); NaN only for missing
    values under `missing: drop`. ValueError for an absent column, a text column without a value
    map, or categories the map does not list."""
    if c.column not in d.columns:
        raise ValueError(f"criterion column '{c.column}' is in neither the customers table nor the features "
                         f"(available: {', '.join(sorted(map(str, d.columns)))})")
    col = d[c.column]
    known = col.notna()
    if c.values is not None:
        text = col[known].astype("str")
        unmapped = sorted(set(text) - set(c.values))
        if unmapped:
            raise ValueError(f"criterion '{c.column}': values {unmapped[:5]} are not in its value map "
                             f"(map lists {sorted(c.values)})")
        score = text.map(c.values).astype("float64").reindex(d.index)
    elif _numbers(col) is not None:
        v = _numbers(col)
        known = v.notna()
        score = percentile_rank(v).where(known)
    else:
        raise ValueError(f"criterion '{c.column}' is a text column: give it a value map "
                         f"(values: {{category: score 0-1}}); categories seen: "
                         f"{sorted(col[known].astype('str').unique())[:5]}")
    if c.direction == "lower_is_better":
        score = 1 - score
    fill = {"neutral": 0.5, "worst": 0.0, "drop": np.nan}[c.missing]
    return score.where(known, fill).rename(c.column)


def criteria_parts(d: pd.DataFrame, criteria: Sequence[Criterion]) -> dict[str, tuple[float, pd.Series]]:
    """`_weighted` parts of the user criteria, keyed apart from the built-in components."""
    return {f"criterion {c.column}": (c.weight, criterion_score(d, c)) for c in criteria}


def criteria_columns(cfg: TierConfig) -> list[str]:
    """Every column the user criteria of `cfg` read, in order, once."""
    crit = [*cfg.kaism.attractiveness_criteria, *cfg.kaism.position_criteria, *cfg.composite.criteria]
    return list(dict.fromkeys(c.column for c in crit))


def uses_potential(cfg: TierConfig) -> bool:
    """Whether a score reads the peer potential (a potential weight above 0, or a criterion on one
    of its columns): only then is it computed, and only then may large headroom recommend develop,
    so the default settings give the published tiers."""
    return (cfg.kaism.potential_weight > 0 or cfg.composite.potential_weight > 0
            or bool(set(criteria_columns(cfg)) & set(POTENTIAL_COLUMNS)))


def check_criteria(d: pd.DataFrame, cfg: TierConfig) -> None:
    """Raise ValueError (a clear message) when a user criterion cannot be read from `d`: the
    caller runs this before any work so a bad criterion fails fast."""
    for c in [*cfg.kaism.attractiveness_criteria, *cfg.kaism.position_criteria, *cfg.composite.criteria]:
        criterion_score(d, c)


CRITERIA_COLUMNS = ("score", "component", "reads", "weight_share", "direction", "missing")


def _builtins(cfg: TierConfig) -> list[tuple[str, str, str, float, str]]:
    """(score, component, what it reads, weight, direction) of every built-in component."""
    k, c, hist = cfg.kaism, cfg.composite, cfg.history_column
    growth = "first present of " + ", ".join(cfg.growth_columns)
    credit = "credit health: " + ", ".join(CREDIT_COLUMNS) + " (needs invoices)"
    up, down = "higher_is_better", "lower_is_better"
    return [
        ("KAISM attractiveness", "value", f"expected_value, else {hist}", k.value_weight, up),
        ("KAISM attractiveness", "growth", growth, k.growth_weight, up),
        ("KAISM attractiveness", "margin", "margin_rate (needs a cost column)", k.margin_weight, up),
        ("KAISM attractiveness", "potential", POTENTIAL_COLUMN, k.potential_weight, up),
        ("KAISM position", "retention", "1 - churn_probability, else spend_90d / spend_prior_90d",
         k.retention_weight, up),
        ("KAISM position", "tenure", "tenure_days", k.tenure_weight, up),
        ("KAISM position", "credit", credit, k.credit_weight, down),
        ("composite score", "order amount", hist, c.order_amount_weight, up),
        ("composite score", "profit", "margin_total (needs a cost column)", c.profit_weight, up),
        ("composite score", "credit", credit, c.credit_weight, down),
        ("composite score", "growth", growth, c.growth_weight, up),
        ("composite score", "predicted value", "expected_value", c.predicted_value_weight, up),
        ("composite score", "churn risk", "churn_probability", c.churn_risk_weight, down),
        ("composite score", "potential", POTENTIAL_COLUMN, c.potential_weight, up),
    ]


def criteria_in_force(cfg: TierConfig | None = None) -> pd.DataFrame:
    """Every component with a positive weight, per score (KAISM attractiveness, KAISM position,
    composite score): what it reads, its share of the score's configured weight, direction and
    missing-value policy. Built-in components whose columns are absent drop out at scoring time and
    the others' shares grow (said in `missing`)."""
    cfg = cfg or TierConfig()
    rows = [(sc, name, reads, w, way, "neutral; family left out when its columns are absent")
            for sc, name, reads, w, way in _builtins(cfg)]
    for sc, crit in (("KAISM attractiveness", cfg.kaism.attractiveness_criteria),
                     ("KAISM position", cfg.kaism.position_criteria), ("composite score", cfg.composite.criteria)):
        for c in crit:
            reads = c.column + (" via " + ", ".join(f"{k}={v:g}" for k, v in c.values.items()) if c.values else "")
            rows.append((sc, f"your criterion: {c.column}", reads, c.weight, c.direction, c.missing))
    out = pd.DataFrame(rows, columns=CRITERIA_COLUMNS)
    out["weight_share"] = out["weight_share"] / out.groupby("score", sort=False)["weight_share"].transform("sum")
    return out[out["weight_share"] > 0].reset_index(drop=True)


def _potential(d: pd.DataFrame) -> pd.Series | None:
    return percentile_rank(d[POTENTIAL_COLUMN]) if _usable(d, POTENTIAL_COLUMN) else None


def _history_col(d: pd.DataFrame, cfg: TierConfig) -> str:
    if cfg.history_column not in d.columns:
        raise ValueError(f"features lack the history value column '{cfg.history_column}' (tiers.history_column)")
    return cfg.history_column


def kaism(features: pd.DataFrame, scores: pd.DataFrame | None, cfg: TierConfig | None = None) -> pd.DataFrame:
    """KAISM matrix: attractiveness, position (0-1) and kaism_quadrant.

    attractiveness = weighted mean of percentile ranks of value (expected_value, else the history
    value), growth (first of growth_columns) and margin (margin_rate); position = weighted mean of
    percentile ranks of retention (1 - churn_probability, else spend_90d / spend_prior_90d capped),
    tenure (tenure_days) and credit health; plus, when configured, the peer potential on
    attractiveness and the user criteria of each axis. Absent families drop out, weights renormalise.
    Quadrant (split s): attractiveness >= s & position >= s 'key'; >= s & < s 'develop';
    < s & >= s 'maintain'; else 'harvest'.
    """
    cfg = cfg or TierConfig()
    k = cfg.kaism
    d = _data(features, scores)
    value = _first(d, ["expected_value", _history_col(d, cfg)])
    growth = _first(d, cfg.growth_columns)
    retention = _retention(d, k.retention_ratio_cap)
    attract = _weighted({
        "value": (k.value_weight, percentile_rank(d[value]) if value else None),
        "growth": (k.growth_weight, percentile_rank(d[growth]) if growth else None),
        "margin": (k.margin_weight, percentile_rank(d["margin_rate"]) if _usable(d, "margin_rate") else None),
        "potential": (k.potential_weight, _potential(d)),
        **criteria_parts(d, k.attractiveness_criteria),
    }, d.index, "attractiveness")
    position = _weighted({
        "retention": (k.retention_weight, percentile_rank(retention) if retention is not None else None),
        "tenure": (k.tenure_weight, percentile_rank(d["tenure_days"]) if _usable(d, "tenure_days") else None),
        "credit": (k.credit_weight, _credit_health(d)),
        **criteria_parts(d, k.position_criteria),
    }, d.index, "position")
    hi, strong = attract >= k.split - EPS, position >= k.split - EPS
    quad = np.select([hi & strong, hi & ~strong, ~hi & strong], ["key", "develop", "maintain"], default="harvest")
    return pd.DataFrame({"attractiveness": attract, "position": position,
                         "kaism_quadrant": pd.Series(quad.astype(object), index=d.index, dtype="str")}, index=d.index)


def composite_score(features: pd.DataFrame, scores: pd.DataFrame | None,
                    cfg: TierConfig | None = None) -> pd.DataFrame:
    """composite_score (0-100, rounded to 6 decimals) = 100 x weighted mean of percentile ranks of
    order amount (history value), profit (margin_total), credit health, growth, predicted value
    (expected_value) and 1 - percentile of churn_probability (churn risk enters negatively), plus
    the peer potential and the user criteria when configured; absent components drop out, weights
    renormalise. composite_tier: first band whose min_score the score
    reaches, else `rest`. (Percentile ranks, not min-max: one outlier cannot squash everyone else.)
    """
    cfg = cfg or TierConfig()
    c = cfg.composite
    d = _data(features, scores)
    growth = _first(d, cfg.growth_columns)
    s = _weighted({
        "order_amount": (c.order_amount_weight, percentile_rank(d[_history_col(d, cfg)])),
        "profit": (c.profit_weight, percentile_rank(d["margin_total"]) if _usable(d, "margin_total") else None),
        "credit": (c.credit_weight, _credit_health(d)),
        "growth": (c.growth_weight, percentile_rank(d[growth]) if growth else None),
        "predicted_value": (c.predicted_value_weight,
                            percentile_rank(d["expected_value"]) if _usable(d, "expected_value") else None),
        "churn_risk": (c.churn_risk_weight,
                       1 - percentile_rank(d["churn_probability"]) if _usable(d, "churn_probability") else None),
        "potential": (c.potential_weight, _potential(d)),
        **criteria_parts(d, c.criteria),
    }, d.index, "composite score")
    score = (100 * s).round(6)
    tier = np.full(len(score), c.rest, dtype=object)
    for band in reversed(c.bands):
        tier = np.where(score.to_numpy() >= band.min_score - EPS, band.tier, tier)
    return pd.DataFrame({"composite_score": score,
                         "composite_tier": pd.Series(tier.astype(object), index=d.index, dtype="str")}, index=d.index)


def data_flag(features: pd.DataFrame, *, min_purchases: int = 2, min_tenure_days: int = 90) -> pd.Series:
    """'insufficient history' when frequency (purchase days) < min_purchases or tenure_days <
    min_tenure_days (missing counts as insufficient), else ''."""
    freq = features["frequency"].to_numpy(dtype="float64", na_value=np.nan)
    ten = features["tenure_days"].to_numpy(dtype="float64", na_value=np.nan) if "tenure_days" in features.columns \
        else np.full(len(features), np.nan)
    bad = ~(freq >= min_purchases) | ~(ten >= min_tenure_days)
    return pd.Series(np.where(bad, INSUFFICIENT, "").astype(object), index=features.index, name="data_flag",
                     dtype="str")


def large_headroom(headroom: pd.Series, potential: pd.Series, actions: ActionConfig | None = None) -> pd.Series:
    """True where the headroom is large: at least actions.develop_min_headroom_share of the
    potential AND at a percentile rank among accounts of at least develop_min_headroom_rank (so
    both a small account far below its peers and a big gap in money are needed)."""
    actions = actions or ActionConfig()
    h = pd.to_numeric(headroom, errors="coerce").astype("float64")
    pot = pd.to_numeric(potential.reindex(h.index), errors="coerce").astype("float64")
    if actions.develop_min_headroom_share is None:
        return pd.Series(False, index=h.index)
    share_ok = (h >= actions.develop_min_headroom_share * pot - EPS) & (h > 0)
    return share_ok & (percentile_rank(h) >= actions.develop_min_headroom_rank - EPS) & h.notna()


def recommended_action(quadrant: pd.Series, segment: pd.Series, *, churn_probability: pd.Series | None = None,
                       flag: pd.Series | None = None, actions: ActionConfig | None = None,
                       develop: pd.Series | None = None) -> pd.Series:
    """First matching override (RFM segment in its list and, when churn scores exist for the account,
    churn_probability >= its min_churn_probability), else actions.insufficient_history for flagged
    accounts, else actions.develop where `develop` (large headroom, see large_headroom) is True,
    else the action of the KAISM quadrant."""
    actions = actions or ActionConfig()
    idx = quadrant.index
    seg = segment.reindex(idx).astype("str").to_numpy()
    churn = (churn_probability.reindex(idx).to_numpy(dtype="float64", na_value=np.nan)
             if churn_probability is not None else np.full(len(idx), np.nan))
    out = quadrant.astype("str").map(actions.by_quadrant).to_numpy(dtype=object)
    if develop is not None:
        out = np.where(develop.reindex(idx, fill_value=False).to_numpy(dtype=bool), actions.develop, out)
    if flag is not None:
        out = np.where(flag.reindex(idx).to_numpy(dtype=object) == INSUFFICIENT, actions.insufficient_history, out)
    for o in reversed(actions.overrides):
        hit = np.isin(seg, o.segments)
        if o.min_churn_probability is not None:
            hit &= np.isnan(churn) | (churn >= o.min_churn_probability - EPS)
        out = np.where(hit, o.action, out)
    return pd.Series(out.astype(object), index=idx, name="recommended_action", dtype="str")


def assign_tiers(features: pd.DataFrame, scores: pd.DataFrame | None = None,
                 cfg: TierConfig | None = None) -> pd.DataFrame:
    """All tiers per customer (index of `features`): abc_history, abc_predicted, pyramid,
    rfm_segment, attractiveness, position, kaism_quadrant, composite_score, composite_tier,
    data_flag, recommended_action, lifecycle_stage. Works with features only (scores None or
    lacking columns) and without invoices / cost columns. With the peer potential columns
    (features.potential) present, large headroom recommends actions.develop. Accounts with insufficient history are
    still scored; their composite_tier is 'insufficient history'. Without expected_value (no
    scores) abc_predicted is missing (NA)."""
    cfg = cfg or TierConfig()
    d = _data(features, scores)
    hist = d[_history_col(d, cfg)]
    out = pd.DataFrame(index=d.index)
    out["abc_history"] = abc_tier(hist, a_share=cfg.abc_a_share, b_share=cfg.abc_b_share)
    out["abc_predicted"] = (abc_tier(d["expected_value"], a_share=cfg.abc_a_share, b_share=cfg.abc_b_share)
                            if "expected_value" in d.columns else pd.Series(pd.NA, index=d.index, dtype="str"))
    out["pyramid"] = pyramid_tier(hist, bands=[(b.name, b.share) for b in cfg.pyramid], rest=cfg.pyramid_rest)
    out["rfm_segment"] = rfm_segment(d["r_score"], d["f_score"], d["m_score"], rules=cfg.rfm_rules,
                                     default=cfg.rfm_default)
    out = out.join(kaism(d, None, cfg)).join(composite_score(d, None, cfg))
    out["data_flag"] = data_flag(d, min_purchases=cfg.min_purchases, min_tenure_days=cfg.min_tenure_days)
    out["composite_tier"] = out["composite_tier"].where(out["data_flag"] != INSUFFICIENT, INSUFFICIENT)
    develop = (large_headroom(d[HEADROOM_COLUMN], d[POTENTIAL_COLUMN], cfg.actions)
               if _usable(d, HEADROOM_COLUMN) and POTENTIAL_COLUMN in d.columns else None)
    out["recommended_action"] = recommended_action(
        out["kaism_quadrant"], out["rfm_segment"],
        churn_probability=d["churn_probability"] if "churn_probability" in d.columns else None,
        flag=out["data_flag"], actions=cfg.actions, develop=develop)
    out["lifecycle_stage"] = (d["lifecycle_stage"] if "lifecycle_stage" in d.columns
                              else pd.Series(pd.NA, index=d.index, dtype="str"))
    return out[list(OUTPUT_COLUMNS)]
