"""Plain-words registry of the output columns of the ranked account and deal lists.

Defined once here, used by the Excel writer (`keyaccounts.xlsx`) for headers, number formats
and its "Read me" sheet: per column a human label, a one-line description and a kind
(`pct` probabilities and shares, `money`, `int`, `number`, `text`, `date`); per tier VALUE one
line saying what it means, built from the tier settings in force (`config.TierConfig`), so a
changed threshold changes the text too. Columns not known here (e.g. added by the user) get a
prettified label and a kind inferred from their dtype.

Horizon-dependent texts say "next 90 days" when the horizon is given, else "forecast horizon".
Reason columns follow `keyaccounts.explain`: for churn, "up" raises the risk (why at risk);
for the value and deal models, "up" is a strength.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from .config import ActionConfig, LifecycleConfig, RfmRule, TierConfig
from .tiers import INSUFFICIENT

KINDS = ("pct", "money", "int", "number", "text", "date")
TIER_COLUMNS = ("abc_history", "abc_predicted", "pyramid", "rfm_segment", "kaism_quadrant", "composite_tier",
                "data_flag", "recommended_action", "lifecycle_stage")
REASON_COLUMNS = ("churn_reasons_up", "churn_reasons_down", "value_reasons_up", "value_reasons_down",
                  "reasons_up", "reasons_down")


@dataclass(frozen=True)
class ColumnInfo:
    name: str          # the machine name, as in CSV/Parquet
    label: str         # what a person reads in the header
    description: str   # one line, plain words
    kind: str          # one of KINDS


# name -> (label, description, kind). {h} = "next 90 days" / "forecast horizon"; {group} = owner/region.
REGISTRY: dict[str, tuple[str, str, str]] = {
    # --- both lists
    "rank": ("Rank", "Position in the whole list, 1 = first (see 'Ranked by' above)", "int"),
    "group_rank": ("Rank within {group}", "Position among the rows of the same {group}, 1 = first", "int"),
    "customer_id": ("Customer ID", "The account's ID in your data", "text"),
    "name": ("Account name", "The account's name from the customers file", "text"),
    "owner": ("Owner", "The sales rep who owns the account or deal", "text"),
    "region": ("Region", "The account's region from the customers file", "text"),
    "as_of": ("Data as of", "Scores use the data before this date and look ahead from it", "date"),
    # --- account list: model outputs
    "churn_probability": ("Churn risk", "Chance the account makes no purchase in the {h} (model estimate)", "pct"),
    "expected_value": ("Expected spend ({h})", "Net spend the model expects from the account in the {h} "
                       "(returns subtract)", "money"),
    "value_at_risk": ("Revenue at risk ({h})", "Churn risk x the account's spend rate of the last 365 days over "
                      "the same length of time: what leaving would cost", "money"),
    "p_alive": ("Still active (BG/NBD)", "Chance the account is still an active buyer, judged from its purchase "
                "rhythm alone (BG/NBD model)", "pct"),
    "expected_purchases": ("Expected purchases ({h})", "Purchase days the BG/NBD model expects in the {h}", "number"),
    "btyd_value": ("Expected spend, rhythm model ({h})", "Cross-check of expected spend from purchase rhythm and "
                   "average order alone (BG/NBD + Gamma-Gamma)", "money"),
    "run_rate_spend_annual": ("Spend rate per year", "Net spend of the recent window (a year by default) per year "
                              "the account was active in it", "money"),
    "potential_spend_annual": ("Potential spend per year", "What the top spenders of the account's segment (size, "
                               "industry, region) spend: a high percentile of their spend rates (settings: "
                               "features.potential), never below the account's own", "money"),
    "headroom_spend_annual": ("Headroom per year", "Potential minus the account's spend rate: the whitespace "
                              "left to win", "money"),
    # --- account list: tiers (their values are explained in tier_meanings)
    "abc_history": ("ABC class (past spend)", "A, B or C by share of the total past net spend (Pareto)", "text"),
    "abc_predicted": ("ABC class (expected spend)", "A, B or C by share of the total expected spend in the {h}",
                      "text"),
    "pyramid": ("Customer pyramid", "Level by rank of past net spend: VIP at the top, small at the bottom", "text"),
    "rfm_segment": ("RFM segment", "Group by how recently, how often and how much the account buys (scores 1-5 "
                    "against the other accounts, 5 = most recent, most often, most spend)", "text"),
    "attractiveness": ("Attractiveness (0-1)", "How attractive the account is: expected spend, growth and margin "
                       "compared with the other accounts, 0 = least, 1 = most", "number"),
    "position": ("Our position (0-1)", "How strong our position with the account is: retention, tenure and "
                 "payment record compared with the other accounts, 0 = weakest, 1 = strongest", "number"),
    "kaism_quadrant": ("Key-account quadrant", "Attractiveness x position matrix (KAISM): key, develop, maintain "
                       "or harvest", "text"),
    "composite_score": ("Priority score (0-100)", "Weighted score from past spend, profit, payment record, growth, "
                        "expected spend and churn risk; higher = more important", "number"),
    "composite_tier": ("Tier", "Band of the priority score", "text"),
    "data_flag": ("Data warning", "'insufficient history' when the account is too new or bought too rarely to "
                  "tier reliably; empty otherwise", "text"),
    "recommended_action": ("Recommended action", "What to do next, from the quadrant, RFM segment and churn risk",
                           "text"),
    "lifecycle_stage": ("Lifecycle stage", "Buyer stage from purchase days and days since the last purchase",
                        "text"),
    # --- reasons (keyaccounts.explain: for churn, up = raises the risk; for value and deals, up = a strength)
    "churn_reasons_up": ("Why at risk", "Facts about the account that raise its churn risk most", "text"),
    "churn_reasons_down": ("Why likely to stay", "Facts about the account that lower its churn risk most", "text"),
    "value_reasons_up": ("What raises expected spend", "Facts that push the expected spend up most", "text"),
    "value_reasons_down": ("What lowers expected spend", "Facts that push the expected spend down most", "text"),
    "reasons_up": ("Why likely to win", "Facts about the deal that raise its chance to win most", "text"),
    "reasons_down": ("Why it may not win", "Facts about the deal that lower its chance to win most", "text"),
    # --- provenance
    "churn_model_version": ("Churn model", "Name and version of the model behind the churn risk", "text"),
    "value_model_version": ("Spend model", "Name and version of the model behind the expected spend", "text"),
    "deal_model_version": ("Deal model", "Name and version of the model behind the chance to win", "text"),
    # --- deal list
    "opportunity_id": ("Deal ID", "The deal's ID in your opportunities file", "text"),
    "stage_at_as_of": ("Stage", "The deal's stage on the as-of date", "text"),
    "amount": ("Deal amount", "Value of the deal as entered", "money"),
    "close_probability": ("Chance to win ({h})", "Chance the deal is won within the {h} (model estimate)", "pct"),
    "expected_revenue": ("Expected revenue", "Chance to win x deal amount", "money"),
}

_PCT_NAME = re.compile(r"(_probability|_share|_rate|_pct)$")
_MONEY_NAME = re.compile(r"(amount|revenue|spend|value|price|balance|margin_total)")


def horizon_words(horizon_days: int | None) -> str:
    return f"next {int(horizon_days)} days" if horizon_days else "forecast horizon"


def prettify(name: object) -> str:
    """'credit_limit' -> 'Credit limit', 'owner_id' -> 'Owner ID': a readable header for an unknown column."""
    words = str(name).replace("_", " ").split()
    words = ["ID" if w.lower() == "id" else w for w in words]
    text = " ".join(words) or str(name)
    return text[:1].upper() + text[1:]


def infer_kind(name: object, values: pd.Series | None) -> str:
    """Kind of an unknown column: from its dtype, with name hints for shares and money."""
    if values is None:
        return "text"
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return "text"
    if _PCT_NAME.search(str(name)):
        return "pct"
    if _MONEY_NAME.search(str(name)):
        return "money"
    return "int" if pd.api.types.is_integer_dtype(dtype) else "number"


def column_info(name: object, values: pd.Series | None = None, *, horizon_days: int | None = None,
                group: str | None = None) -> ColumnInfo:
    """Label, description and kind of one output column (`values` only for unknown columns)."""
    known = REGISTRY.get(name) if isinstance(name, str) else None
    if known is None:
        return ColumnInfo(str(name), prettify(name), "A column of your data (not described by keyaccounts)",
                          infer_kind(name, values))
    label, description, kind = known
    words = {"h": horizon_words(horizon_days), "group": group or "group"}
    return ColumnInfo(name, label.format(**words), description.format(**words), kind)


def is_reason_column(name: object) -> bool:
    return name in REASON_COLUMNS


# ---------------------------------------------------------------- tier values

def _pct(share: float) -> str:
    return f"{share * 100:.4g}%"


def _history_basis(cfg: TierConfig) -> str:
    return "all past net spend" if cfg.history_column == "monetary_total" else "net spend in the last 365 days"


def abc_meanings(basis: str, cfg: TierConfig) -> dict[str, str]:
    a, b = cfg.abc_a_share, cfg.abc_b_share
    return {
        "A": f"Top accounts that together make up the first {_pct(a)} of {basis}",
        "B": f"The accounts making up the next {_pct(b)} of {basis}",
        "C": f"The accounts making up the last {_pct(max(1 - a - b, 0))} of {basis}, and those with none",
    }


def pyramid_meanings(cfg: TierConfig) -> dict[str, str]:
    basis, out, seen = _history_basis(cfg), {}, 0.0
    for band in cfg.pyramid:
        where = "The top" if not seen else "The next"
        out[band.name] = f"{where} {_pct(band.share)} of accounts ranked by {basis}"
        seen += band.share
    out[cfg.pyramid_rest] = f"The other {_pct(max(1 - seen, 0))} of accounts, and those with no positive spend"
    return out


# What the usual published RFM map means; used only where a rule equals the default one.
_RFM_WORDS = {
    "champions": "Bought recently and buys often: the best customers right now",
    "loyal": "Buys often and not long ago: a steady customer",
    "potential loyalist": "Bought recently and now and then: could become loyal",
    "new": "Bought recently but rarely so far: a new or occasional buyer",
    "promising": "Bought fairly recently but rarely: worth nurturing",
    "can't lose": "Used to buy often but has not bought for a long time: win back",
    "at risk": "Bought often and spent well, but not for a while",
    "hibernating": "Buys rarely and has not bought for a while",
    "lost": "Buys rarely and has not bought for a long time",
}


def _rfm_rule_words(rule: RfmRule) -> str:
    parts = []
    for letter, what in (("r", "recency"), ("f", "frequency"), ("m", "spend")):
        lo, hi = getattr(rule, letter)
        if (lo, hi) != (1, 5):
            parts.append(f"{what} {lo}" if lo == hi else f"{what} {lo}-{hi}")
    return ", ".join(parts) or "every account"


def rfm_meanings(cfg: TierConfig) -> dict[str, str]:
    """Per segment: plain words (default rules) and the score ranges of its rule. Scores are
    quintiles 1-5 among all accounts (5 = most recent, most frequent, highest spend)."""
    defaults = {r.segment: r for r in TierConfig().rfm_rules}
    out: dict[str, str] = {}
    for rule in cfg.rfm_rules:
        if rule.segment in out:
            continue
        scores = f"scores: {_rfm_rule_words(rule)}"
        words = _RFM_WORDS.get(rule.segment) if defaults.get(rule.segment) == rule else None
        out[rule.segment] = f"{words} ({scores})" if words else scores.capitalize()
    out.setdefault(cfg.rfm_default, "None of the segments above: middling recency and frequency")
    return out


def kaism_meanings(cfg: TierConfig) -> dict[str, str]:
    s = f"{cfg.kaism.split:.2f}"
    return {
        "key": f"Attractive account (attractiveness >= {s}) where our position is strong (position >= {s})",
        "develop": f"Attractive account (attractiveness >= {s}) where our position is weak (< {s}): invest to win",
        "maintain": f"Less attractive account (< {s}) where our position is strong (>= {s}): keep efficiently",
        "harvest": f"Less attractive account where our position is weak (both < {s}): serve at low cost",
    }


def _insufficient(cfg: TierConfig) -> str:
    return (f"Too little history to tier: fewer than {cfg.min_purchases} purchase days or known for fewer "
            f"than {cfg.min_tenure_days} days")


def composite_meanings(cfg: TierConfig) -> dict[str, str]:
    c, out, upper = cfg.composite, {}, None
    for band in c.bands:
        until = f" and below {upper:g}" if upper is not None else ""
        out[band.tier] = f"Priority score {band.min_score:g} or more{until}"
        upper = band.min_score
    out[c.rest] = f"Priority score below {upper:g}" if upper is not None else "Every account"
    out[INSUFFICIENT] = _insufficient(cfg)
    return out


def action_meanings(actions: ActionConfig) -> dict[str, str]:
    """Per action text: when it is recommended (overrides first, as recommended_action applies them)."""
    out: dict[str, list[str]] = {}
    for o in actions.overrides:
        when = "RFM segment " + " or ".join(f"'{s}'" for s in o.segments)
        if o.min_churn_probability is not None:
            when += f" and churn risk {_pct(o.min_churn_probability)} or more"
        out.setdefault(o.action, []).append(when + " (comes first)")
    out.setdefault(actions.insufficient_history, []).append("accounts with too little history (see Data warning)")
    if actions.develop_min_headroom_share is not None:
        out.setdefault(actions.develop, []).append(
            f"headroom at least {_pct(actions.develop_min_headroom_share)} of the potential and among the top "
            f"{_pct(1 - actions.develop_min_headroom_rank)} of accounts by headroom (only when a score uses the "
            f"peer potential)")
    for quadrant, action in actions.by_quadrant.items():
        out.setdefault(action, []).append(f"'{quadrant}' quadrant accounts")
    return {action: "When: " + "; ".join(whens) for action, whens in out.items()}


def lifecycle_meanings(cfg: LifecycleConfig) -> dict[str, str]:
    loyal = cfg.loyal_min_purchases
    return {
        "prospect": "Known account with no purchase yet",
        "first-time": "One purchase day so far",
        "repeat": f"2 to {loyal - 1} purchase days" if loyal > 2 else "2 purchase days",
        "loyal": f"{loyal} or more purchase days",
        "lapsed": f"No purchase in the last {cfg.lapsed_after_days} days (whatever the history)",
    }


def tier_meanings(tiers: TierConfig | None = None, lifecycle: LifecycleConfig | None = None, *,
                  horizon_days: int | None = None) -> dict[str, dict[str, str]]:
    """Tier column -> {value: plain-words meaning}, for every value the settings define."""
    cfg = tiers or TierConfig()
    return {
        "abc_history": abc_meanings(_history_basis(cfg), cfg),
        "abc_predicted": abc_meanings(f"expected spend in the {horizon_words(horizon_days)}", cfg),
        "pyramid": pyramid_meanings(cfg),
        "rfm_segment": rfm_meanings(cfg),
        "kaism_quadrant": kaism_meanings(cfg),
        "composite_tier": composite_meanings(cfg),
        "data_flag": {INSUFFICIENT: _insufficient(cfg)},
        "recommended_action": action_meanings(cfg.actions),
        "lifecycle_stage": lifecycle_meanings(lifecycle or LifecycleConfig()),
    }
