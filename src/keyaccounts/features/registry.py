"""The one list of feature names: family, unit, reason group and plain words.

Every column the feature families produce (`build_features`, `deals`) and every input the models
derive from them (`models/transformers.py`) is declared here once. Readers:
- the reasons (`keyaccounts.explain`): which reason group a model input speaks for (e.g.
  `p_alive` and `recency_over_tenure` both speak of the time since the last purchase);
- the feature families and the Spark engine: the column order of their output;
- the tests: the families produce exactly the declared columns, in this order, with these units.

Windowed names are templates: `spend_{days}d` stands for spend_30d, spend_90d, ... for the
windows in force (`FeatureConfig.windows_days`). Adding a feature is one entry here plus its
family's code and test.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ..config import FeatureConfig

#: Units a feature may carry (the name says it too: `_days`, `_d` windows, `_ratio`, `_share`).
UNITS = ("days", "count", "currency", "currency/month", "ratio", "share", "score", "code", "category",
         "per month", "probability", "purchases")

#: Families in the order `build_features` joins them; `potential` = the peer potential the tiers
#: read (features/potential.py; not a model input); `model` = derived inside the models'
#: pipelines; `deals` = per open deal.
FAMILIES = ("rfm", "tenure", "growth", "returns", "margin", "credit", "lifecycle", "potential", "model", "deals")


@dataclass(frozen=True)
class FeatureSpec:
    name: str      # exact column name, or a template with {days}
    family: str    # one of FAMILIES
    unit: str      # one of UNITS
    reason: str    # reason group (a phrase key of keyaccounts.explain); may hold {days}
    words: str     # one line, plain words

    @property
    def windowed(self) -> bool:
        return "{days}" in self.name


def _f(name: str, family: str, unit: str, words: str, reason: str | None = None) -> FeatureSpec:
    return FeatureSpec(name, family, unit, reason or name, words)


FEATURES: tuple[FeatureSpec, ...] = (
    # --- rfm (features/rfm.py)
    _f("recency_days", "rfm", "days", "days since the last purchase day (yesterday = 1)"),
    _f("frequency", "rfm", "purchases", "distinct purchase days so far"),
    _f("monetary_total", "rfm", "currency", "net spend so far", "spend_per_month"),
    _f("monetary_avg", "rfm", "currency", "average spend per purchase day"),
    _f("spend_{days}d", "rfm", "currency", "net spend in the last {days} days"),
    _f("n_purchases_{days}d", "rfm", "count", "purchase days in the last {days} days"),
    _f("r_score", "rfm", "score", "recency quintile, 5 = most recent", "recency_days"),
    _f("f_score", "rfm", "score", "frequency quintile, 5 = most often", "frequency"),
    _f("m_score", "rfm", "score", "spend quintile, 5 = most spend", "spend_per_month"),
    _f("rfm_score", "rfm", "score", "r + f + m scores (3-15)"),
    _f("rfm_code", "rfm", "code", "the three scores as a code such as 545"),
    # --- tenure (features/tenure.py)
    _f("tenure_days", "tenure", "days", "days since sign-up (or the first purchase)"),
    _f("first_purchase_days_ago", "tenure", "days", "days since the first purchase", "tenure_days"),
    _f("age_at_first_purchase_days", "tenure", "days", "days from sign-up to the first purchase", "tenure_days"),
    # --- growth (features/growth.py)
    _f("spend_prior_{days}d", "growth", "currency", "net spend in the {days} days before the last {days}",
       "spend_growth_ratio_{days}d"),
    _f("spend_growth_ratio_{days}d", "growth", "ratio", "last {days} days' spend / the {days} days before"),
    _f("spend_growth_diff_{days}d", "growth", "currency", "last {days} days' spend - the {days} days before",
       "spend_growth_ratio_{days}d"),
    _f("spend_slope_monthly", "growth", "currency/month", "trend of monthly spend (least squares)",
       "spend_growth_ratio_90d"),
    _f("interval_mean_days", "growth", "days", "average days between purchase days"),
    _f("interval_last_days", "growth", "days", "days between the last two purchase days", "interval_trend_ratio"),
    _f("interval_trend_ratio", "growth", "ratio", "last gap / average gap between purchase days"),
    _f("recency_to_interval_ratio", "growth", "ratio", "days since the last purchase / average gap",
       "recency_days"),
    # --- returns and margin
    _f("return_ratio", "returns", "share", "returned amount / purchased amount"),
    _f("n_returns", "returns", "count", "return rows so far", "return_ratio"),
    _f("margin_total", "margin", "currency", "gross margin so far (needs cost)", "margin_rate"),
    _f("margin_rate", "margin", "share", "gross margin / net spend"),
    # --- credit (features/credit.py; needs invoices)
    _f("n_invoices", "credit", "count", "invoices issued so far"),
    _f("days_past_due_mean", "credit", "days", "average days paid after the due date"),
    _f("days_past_due_max", "credit", "days", "most days paid after the due date", "days_past_due_mean"),
    _f("late_payment_share", "credit", "share", "share of paid invoices paid late"),
    _f("open_balance", "credit", "currency", "invoiced and not yet paid"),
    _f("overdue_balance", "credit", "currency", "unpaid past the due date"),
    _f("n_overdue_{days}d", "credit", "count", "invoices unpaid more than {days} days past due"),
    _f("credit_utilisation", "credit", "share", "open balance / credit limit"),
    # --- lifecycle
    _f("lifecycle_stage", "lifecycle", "category", "prospect, first-time, repeat, loyal or lapsed"),
    # --- potential (features/potential.py; read by the tiers, never by a model, so never a reason)
    _f("run_rate_spend_annual", "potential", "currency", "net spend of the last year, annualised"),
    _f("potential_spend_annual", "potential", "currency", "a high percentile of the segment peers' yearly run-rate"),
    _f("headroom_spend_annual", "potential", "currency", "potential - run-rate per year"),
    _f("potential_peers", "potential", "count", "peers with spend in the segment used"),
    _f("potential_segment_level", "potential", "count", "segment columns used (0 = all accounts)"),
    # --- derived inside the models (models/transformers.py, models/btyd.py)
    _f("recency_over_tenure", "model", "ratio", "days since the last purchase / days since the first",
       "recency_days"),
    _f("active_span_share", "model", "share", "share of the customer's life spent buying", "recency_days"),
    _f("recency_over_interval", "model", "ratio", "days since the last purchase / average gap", "recency_days"),
    _f("purchases_per_month", "model", "per month", "purchase days per month of life"),
    _f("repeat_purchases_per_month", "model", "per month", "repeat purchase days per month of life",
       "purchases_per_month"),
    _f("spend_per_month", "model", "currency/month", "net spend per month of life"),
    _f("recent_spend_share", "model", "share", "share of all spend so far made in the last 90 days",
       "spend_growth_ratio_90d"),
    _f("p_alive", "model", "probability", "BG/NBD chance the customer is still active", "recency_days"),
    _f("p_no_purchase", "model", "probability", "BG/NBD chance of no purchase in the horizon", "recency_days"),
    _f("expected_purchases", "model", "purchases", "BG/NBD expected purchase days in the horizon",
       "recency_days"),
    # --- deals (features/deals.py)
    _f("age_days", "deals", "days", "days the deal has been open"),
    _f("stage_at_as_of", "deals", "category", "the deal's stage on the day"),
    _f("stage_index", "deals", "count", "position of the stage in the funnel", "stage_at_as_of"),
    _f("days_since_stage_change", "deals", "days", "days since the deal last changed stage"),
    _f("amount", "deals", "currency", "the deal's amount"),
    _f("account_won_deals", "deals", "count", "deals the account won before"),
    _f("account_lost_deals", "deals", "count", "deals the account lost before"),
    _f("amount_vs_account_won_avg", "deals", "ratio", "amount / the account's average won deal"),
    _f("account_spend_365d", "deals", "currency", "the account's net spend in the last 365 days"),
    _f("owner_win_rate", "deals", "share", "share of the owner's closed deals that were won"),
    _f("owner_closed_deals", "deals", "count", "deals the owner closed before", "owner_win_rate"),
    _f("days_to_expected_close", "deals", "days", "days until the expected close date (negative: passed)"),
)

_STAGE_ONEHOT = re.compile(r"^stage_at_as_of_.+")


def _pattern(spec: FeatureSpec) -> re.Pattern:
    return re.compile("^" + re.escape(spec.name).replace(re.escape("{days}"), r"(?P<days>\d+)") + "$")


@cache
def _exact() -> dict[str, FeatureSpec]:
    return {s.name: s for s in FEATURES if not s.windowed}


def spec(name: str) -> FeatureSpec | None:
    """The declaration of a concrete column name (templates resolved: spend_180d -> spend_{days}d
    with its texts filled in); None when the name is not a declared feature."""
    s = _exact().get(name)
    if s is not None:
        return s
    for t in FEATURES:
        if t.windowed and (m := _pattern(t).match(name)):
            d = m.group("days")
            return FeatureSpec(name, t.family, t.unit, t.reason.format(days=d), t.words.format(days=d))
    return None


def reason_key(feature: str) -> str:
    """The reason group of a model input (itself when undeclared; stage one-hots -> the stage)."""
    s = spec(feature)
    if s is not None:
        return s.reason
    if _STAGE_ONEHOT.match(feature):
        return "stage_at_as_of"
    return feature


#: FeatureConfig field that gives the windows of each template.
_WINDOW_OF = {"spend_{days}d": "windows_days", "n_purchases_{days}d": "windows_days",
              "spend_prior_{days}d": "growth_window_days", "spend_growth_ratio_{days}d": "growth_window_days",
              "spend_growth_diff_{days}d": "growth_window_days", "n_overdue_{days}d": "overdue_threshold_days"}


def names(family: str, config: FeatureConfig | None = None) -> list[str]:
    """The columns of one family in declaration order, each template expanded over the windows of
    `config` (default FeatureConfig()), its columns kept together as the families write them."""
    if family not in FAMILIES:
        raise ValueError(f"unknown feature family {family!r}; families: {', '.join(FAMILIES)}")
    cfg = config or FeatureConfig()
    out: list[str] = []
    for s in FEATURES:
        if s.family != family:
            continue
        if s.windowed:
            days = getattr(cfg, _WINDOW_OF[s.name])
            out.extend(s.name.format(days=d) for d in (days if isinstance(days, (list, tuple)) else [days]))
        else:
            out.append(s.name)
    return out


def feature_columns(config: FeatureConfig | None = None, *, has_cost: bool, has_invoices: bool) -> list[str]:
    """The columns of `build_features` (either engine), in order: margin only with a cost column,
    credit only with invoices, the lifecycle stage last."""
    fams = ["rfm", "tenure", "growth", "returns"] + (["margin"] if has_cost else []) \
        + (["credit"] if has_invoices else []) + ["lifecycle"]
    return [c for f in fams for c in names(f, config)]
