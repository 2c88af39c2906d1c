"""Pipeline YAML models: parsed once, validated, passed down. No import-time side effects."""
from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .sql import source_label

TABLES = ("transactions", "customers", "invoices", "opportunities", "stage_history", "opportunity_snapshots",
          "targets")
TableName = Literal["transactions", "customers", "invoices", "opportunities", "stage_history", "opportunity_snapshots",
                    "targets"]


# Dates a command accepts (as_of, backtest bounds): pandas' nanosecond timestamps end in 2262.
EARLIEST_DATE, LATEST_DATE = dt.date(1900, 1, 1), dt.date(2200, 12, 31)
MAX_HORIZON_DAYS = 3660  # ten years; beyond it as_of + horizon overflows or means nothing


def check_date(value: dt.date, what: str) -> dt.date:
    """`value` when within EARLIEST_DATE..LATEST_DATE, else ConfigError naming `what`."""
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ConfigError(f"{what} {value} is out of range ({EARLIEST_DATE} .. {LATEST_DATE})")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadOptions(_Strict):
    """How to read one file. Everything is optional: delimiter and encoding are sniffed."""

    sep: str | None = None
    encoding: str | None = None
    header: bool = True
    names: list[str] | None = None
    sheet: str | int | None = None
    date_format: str | None = Field(
        default=None, description="strftime format, 'ISO8601', 'mixed', or None to infer")
    dayfirst: bool = False
    decimal: str = "."


class InputSpec(_Strict):
    """One input table: its file (or a SQL query and its connection), the mapping
    canonical_name -> user's column, read options (files only)."""

    path: str | None = Field(None, description="the file; or give sql + connection instead")
    sql: str | None = Field(None, description="a query whose rows are the table (see keyaccounts.sql)")
    connection: str | None = Field(
        None, description="SQLAlchemy URL of the query's database: sqlite:///f.db, duckdb:///f.duckdb, "
                          "postgresql://user@host/db; ${VAR} expanded when connecting; never printed with its password")
    columns: dict[str, str] = Field(default_factory=dict)
    read: ReadOptions = Field(default_factory=ReadOptions)

    @field_validator("path")
    @classmethod
    def _expand(cls, v: str | None) -> str | None:
        return None if v is None else expand_path(v)

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give either path (a file) or sql with connection, not both")
        if (self.sql is None) != (self.connection is None):
            raise ValueError("sql and connection go together (connection: e.g. sqlite:///f.db)")
        return self

    @property
    def source(self) -> str:
        """What messages, the quality table and MLflow name: the path, or the query's connection
        with its password hidden."""
        return self.path if self.path is not None else source_label(self.sql, self.connection)


class StageConfig(_Strict):
    """Stage vocabulary. Open stages in funnel order; comparisons ignore case and spaces."""

    open: list[str] = Field(default_factory=lambda: ["prospecting", "qualification", "proposal", "negotiation"])
    won: list[str] = Field(default_factory=lambda: ["won", "closed won"])
    lost: list[str] = Field(default_factory=lambda: ["lost", "closed lost"])

    @model_validator(mode="after")
    def _disjoint(self) -> StageConfig:
        seen: dict[str, str] = {}
        for group in ("open", "won", "lost"):
            for s in getattr(self, group):
                key = normalise_stage(s)
                if key in seen:
                    raise ValueError(f"stage '{s}' listed in both '{seen[key]}' and '{group}'")
                seen[key] = group
        if not self.open or not self.won or not self.lost:
            raise ValueError("open, won and lost each need at least one stage")
        return self

    def canonical(self) -> dict[str, str]:
        """normalised spelling -> canonical stage name (first spelling in config, lower case)."""
        out = {}
        for group in ("open", "won", "lost"):
            for s in getattr(self, group):
                out[normalise_stage(s)] = normalise_stage(s) if group == "open" else group
        return out


def normalise_stage(s: str) -> str:
    return " ".join(str(s).strip().lower().replace("_", " ").split())


class LifecycleConfig(_Strict):
    """Rule thresholds for lifecycle stages (see features.lifecycle)."""

    lapsed_after_days: int = Field(180, gt=0)
    loyal_min_purchases: int = Field(5, ge=2)


class PotentialConfig(_Strict):
    """Peer potential (features.potential): what an account could spend, judged from the accounts of
    its segment that already spend the most."""

    segment_columns: list[str] = Field(
        default_factory=lambda: ["size", "industry", "region"],
        description="customers columns that define a segment (those present are used); the finest segment "
                    "with at least min_peers spending accounts is used, dropping columns from the end")
    percentile: float = Field(0.9, gt=0.5, lt=1, description="potential = this quantile of peers' run-rate spend")
    min_peers: int = Field(20, ge=2, description="fewest accounts with positive run-rate for a segment to count")
    window_days: int = Field(365, ge=30, description="run-rate window: spend in [as_of - window, as_of), annualised")
    min_active_days: int = Field(90, ge=1, description="younger accounts are annualised over this many days at "
                                                       "least, so a first big order does not look like a rate")


class FeatureConfig(_Strict):
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 365])
    growth_window_days: int = Field(90, gt=0)
    slope_months: int = Field(12, ge=2)
    overdue_threshold_days: int = Field(30, ge=0)
    owner_win_rate_prior: float = Field(10.0, ge=0, description="pseudo-deals shrinking owner win rates")
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    potential: PotentialConfig = Field(default_factory=PotentialConfig)

    @field_validator("windows_days")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        return sorted(set(v))


class QualityConfig(_Strict):
    max_bad_values: int = Field(
        5, ge=0, description="a few unparsable dates/amounts are dropped and counted; more fail")


class TrainConfig(_Strict):
    """Snapshot protocol and model settings for `keyaccounts train`."""

    step_days: int = Field(14, gt=0, description="days between training cutoffs")
    max_snapshots: int = Field(20, gt=0)
    min_history_days: int = Field(28, ge=0, description="first cutoff at least this long after the data starts")
    n_val_cutoffs: int = Field(1, gt=0, description="latest cutoffs held out as the time-validation fold")
    calibration: Literal["isotonic", "sigmoid"] = "sigmoid"  # sigmoid keeps the ranking (AUC)
    promote_tolerance: float = Field(0.0, ge=0, description="challenger may be this much worse and still win")
    churn_params: dict[str, Any] = Field(default_factory=dict)
    value_params: dict[str, Any] = Field(default_factory=dict)
    deal_params: dict[str, Any] = Field(default_factory=dict)
    deal_step_days: int = Field(30, gt=0)
    deal_max_snapshots: int = Field(12, gt=0)


class EngineConfig(_Strict):
    """Where features/train/score run: 'local' (pandas, the default) or 'spark' (optional extra
    `keyaccounts[spark]`; see keyaccounts.engines.spark)."""

    name: Literal["local", "spark"] = "local"
    spark_master: str | None = Field(None, description="Spark master URL; default $SPARK_MASTER, else local[*]")
    shuffle_partitions: int | None = Field(None, gt=0, description="spark.sql.shuffle.partitions (default: 4 x cores)")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings, e.g. driver memory")
    spark_min_rows: int = Field(
        20_000_000, ge=0, description="train/score: with fewer transaction rows the local engine is used (it is faster)")
    num_workers: int | None = Field(None, gt=0, description="xgboost.spark workers; default and cap: Spark's cores")


# The parameters each pipeline step reads (a new parameter of a step must be listed here: an
# unknown key is refused as a typo, with the nearest valid one). PATH_KEYS get ${VAR} and ~ expanded.
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "validate": ("out",),
    "features": ("out", "deals_out"),
    "train": ("tracking_uri", "models_dir"),
    "retrain": ("dry_run", "tracking_uri", "models_dir"),
    "score": ("out", "deals_out", "prefer", "by", "top", "reasons", "rank_by", "compare_to", "tracking_uri",
              "models_dir"),
    "report": ("out", "prefer", "compare_to", "tracking_uri", "models_dir"),
    "forecast": ("out", "by", "period", "periods", "target", "backtest", "from", "to", "every_days", "track",
                 "tracking_uri", "max_snapshots"),
}
PATH_KEYS = ("out", "deals_out", "compare_to", "models_dir", "tracking_uri")


def expand_path(value: str) -> str:
    """${VAR}/$VAR and ~ expanded, as for every path of a pipeline (inputs, outputs, stores); a
    variable that is not set is an error, not a literal '${VAR}' folder."""
    out = os.path.expanduser(os.path.expandvars(value))
    unset = re.search(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", out)  # $NAME alone may be part of a file name
    if unset:
        raise ValueError(f"'{value}': environment variable {unset.group(0)} is not set")
    return out


def expand_option(value: str, option: str) -> str:
    """A path given on the command line, expanded by the same rule as a pipeline's paths
    (expand_path), so a path means the same in a YAML and on the command line; an unset ${VAR}
    is bad input naming the option."""
    try:
        return expand_path(value)
    except ValueError as e:
        raise ConfigError(f"{option} {e}") from None


def _step_params(i: int, name: str, params: Any) -> dict[str, Any] | None:
    """A step's parameters: a mapping of known keys, path values expanded."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise ValueError(f"step {i} ({name}): parameters must be a mapping, got {type(params).__name__}")
    known = STEP_KEYS.get(name)
    for key in params:
        if known is not None and key not in known:
            raise ValueError(f"step {i} ({name}): unknown key '{key}'" + nearest_key(str(key), known))
    return {k: expand_path(v) if k in PATH_KEYS and isinstance(v, str) else v for k, v in params.items()}


STEP_NAMES = ("validate", "features", "train", "score", "report", "forecast")


class RfmRule(_Strict):
    """One row of the RFM segment table: inclusive [lo, hi] ranges on the 1-5 quintile scores."""

    segment: str
    r: tuple[int, int] = Field((1, 5), description="inclusive range of r_score (5 = most recent)")
    f: tuple[int, int] = Field((1, 5), description="inclusive range of f_score (5 = most frequent)")
    m: tuple[int, int] = Field((1, 5), description="inclusive range of m_score (5 = highest net spend)")

    @model_validator(mode="after")
    def _ranges(self) -> RfmRule:
        for name in ("r", "f", "m"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi <= 5:
                raise ValueError(f"rule '{self.segment}': {name} range must satisfy 1 <= lo <= hi <= 5")
        return self


def _default_rfm_rules() -> list[RfmRule]:
    # The widely published 10-segment RFM map on R and F (M only separates 'at risk'). First match wins.
    return [
        RfmRule(segment="champions", r=(4, 5), f=(4, 5)),
        RfmRule(segment="loyal", r=(3, 5), f=(4, 5)),
        RfmRule(segment="potential loyalist", r=(4, 5), f=(2, 3)),
        RfmRule(segment="new", r=(4, 5), f=(1, 1)),
        RfmRule(segment="promising", r=(3, 3), f=(1, 1)),
        RfmRule(segment="can't lose", r=(1, 1), f=(4, 5)),
        RfmRule(segment="at risk", r=(1, 2), f=(3, 5), m=(3, 5)),
        RfmRule(segment="hibernating", r=(2, 2), f=(1, 2)),
        RfmRule(segment="lost", r=(1, 1), f=(1, 2)),
    ]


class PyramidBand(_Strict):
    name: str
    share: float = Field(gt=0, le=1, description="share of accounts (by count) in this band")


class ScoreBand(_Strict):
    min_score: float = Field(ge=0, le=100, description="composite score (0-100) at or above which the tier applies")
    tier: str


class Criterion(_Strict):
    """A user-defined scoring component: any column of the customers table or of the features.
    Numeric columns enter as percentile ranks (0-1); text columns need `values`, a map from each
    category to its score on 0-1 (1 = best), e.g. {high: 1, medium: 0.5, low: 0}."""

    column: str = Field(min_length=1, description="column of the customers table or of the features")
    weight: float = Field(ge=0, description="relative weight beside the other components of the same score")
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    values: dict[str, float] | None = Field(
        None, description="category -> score 0-1 (1 = best); required for text columns; other categories fail")
    missing: Literal["neutral", "worst", "drop"] = Field(
        "neutral", description="account without a value: neutral = 0.5, worst = 0, drop = scored on the "
                               "other components only (their weights renormalised for that account)")

    @field_validator("values")
    @classmethod
    def _map(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("values must map at least one category to a score")
        bad = {k: x for k, x in v.items() if not 0 <= x <= 1}
        if bad:
            raise ValueError(f"values must be scores between 0 and 1 (1 = best), got {bad}")
        return v


def check_weights(what: str, weights: dict[str, float], criteria: list[Criterion]) -> None:
    """A score needs some weight: built-in weights plus criteria must not all be 0; a column may
    appear once per score (a second entry would silently double its weight)."""
    if sum(weights.values()) + sum(c.weight for c in criteria) <= 0:
        raise ValueError(f"{what}: the weights sum to 0; give at least one component a positive weight")
    cols = [c.column for c in criteria]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise ValueError(f"{what}: column(s) {dup} listed more than once")


class KaismConfig(_Strict):
    """Key Account Identification and Selection Matrix. Each axis is the weighted mean of percentile
    ranks (0-1) of its families; families whose columns are absent (or all NaN) drop out and the
    remaining weights are renormalised to sum to 1."""

    value_weight: float = Field(0.50, ge=0, description="attractiveness: expected_value, else the history value column")
    growth_weight: float = Field(0.25, ge=0, description="attractiveness: first present of growth_columns")
    margin_weight: float = Field(0.25, ge=0, description="attractiveness: margin_rate (needs a cost column)")
    retention_weight: float = Field(
        0.40, ge=0, description="position: 1 - churn_probability, else spend_90d / spend_prior_90d capped")
    tenure_weight: float = Field(0.30, ge=0, description="position: tenure_days")
    credit_weight: float = Field(0.30, ge=0, description="position: credit health (needs invoices)")
    retention_ratio_cap: float = Field(
        1.0, gt=0, description="cap on spend_90d / spend_prior_90d when no churn model (share of spend retained)")
    split: float = Field(0.5, gt=0, lt=1, description="both axes split high/low (strong/weak) at this value")
    potential_weight: float = Field(
        0.0, ge=0, description="attractiveness: potential_spend_annual (peer potential; needs a segment column)")
    attractiveness_criteria: list[Criterion] = Field(
        default_factory=list, description="your own attractiveness components, beside the weights above")
    position_criteria: list[Criterion] = Field(
        default_factory=list, description="your own position components, beside the weights above")

    @model_validator(mode="after")
    def _some_weight(self) -> KaismConfig:
        check_weights("kaism attractiveness", {"value": self.value_weight, "growth": self.growth_weight,
                      "margin": self.margin_weight, "potential": self.potential_weight}, self.attractiveness_criteria)
        check_weights("kaism position", {"retention": self.retention_weight, "tenure": self.tenure_weight,
                      "credit": self.credit_weight}, self.position_criteria)
        return self


class CompositeConfig(_Strict):
    """Weighted composite score 0-100 from percentile ranks of its components; absent components
    drop out and the weights are renormalised."""

    order_amount_weight: float = Field(0.25, ge=0, description="history value column (monetary_total or spend_365d)")
    profit_weight: float = Field(0.20, ge=0, description="margin_total (needs a cost column)")
    credit_weight: float = Field(0.15, ge=0, description="credit health: 1 - percentile of overdue/late (needs invoices)")
    growth_weight: float = Field(0.15, ge=0, description="first present of growth_columns")
    predicted_value_weight: float = Field(0.15, ge=0, description="expected_value (needs scores)")
    churn_risk_weight: float = Field(
        0.10, ge=0, description="enters negatively: 1 - percentile of churn_probability (needs scores)")
    potential_weight: float = Field(
        0.0, ge=0, description="potential_spend_annual (peer potential; needs a segment column)")
    criteria: list[Criterion] = Field(default_factory=list,
                                      description="your own components, beside the weights above")
    bands: list[ScoreBand] = Field(
        default_factory=lambda: [ScoreBand(min_score=80, tier="strategic"), ScoreBand(min_score=60, tier="key"),
                                 ScoreBand(min_score=40, tier="standard")],
        description="checked in order, first band whose min_score the score reaches wins")
    rest: str = Field("transactional", description="tier below every band")

    @field_validator("bands")
    @classmethod
    def _descending(cls, v: list[ScoreBand]) -> list[ScoreBand]:
        if any(a.min_score <= b.min_score for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("bands must be listed with strictly decreasing min_score")
        return v

    @model_validator(mode="after")
    def _some_weight(self) -> CompositeConfig:
        check_weights("composite score", {
            "order_amount": self.order_amount_weight, "profit": self.profit_weight, "credit": self.credit_weight,
            "growth": self.growth_weight, "predicted_value": self.predicted_value_weight,
            "churn_risk": self.churn_risk_weight, "potential": self.potential_weight}, self.criteria)
        return self


class ActionOverride(_Strict):
    segments: list[str] = Field(description="RFM segments that trigger the override")
    min_churn_probability: float | None = Field(
        0.5, ge=0, le=1, description="also require churn_probability >= this when a churn model scored the "
                                     "account; without churn scores the segment alone triggers; None = segment alone")
    action: str


class ActionConfig(_Strict):
    """Recommended action: the first matching override, else (for flagged accounts) the
    insufficient-history action, else the action of the KAISM quadrant."""

    by_quadrant: dict[str, str] = Field(default_factory=lambda: {
        "key": "assign key-account manager; protect and grow",
        "develop": "invest: cross-sell and raise share of wallet",
        "maintain": "keep service level, automate",
        "harvest": "serve efficiently, low-touch",
    })
    overrides: list[ActionOverride] = Field(default_factory=lambda: [
        ActionOverride(segments=["at risk", "can't lose"], min_churn_probability=0.5,
                       action="retention call this week")])
    insufficient_history: str = Field(
        "nurture; re-tier once history builds", description="action for accounts flagged 'insufficient history'")
    develop: str = Field("develop: large headroom vs peers; cross-sell and raise share of wallet",
                         description="action where headroom_spend_annual is large (after overrides and "
                                     "insufficient history, before the quadrant's action)")
    develop_min_headroom_share: float | None = Field(
        0.5, gt=0, le=1, description="large headroom: headroom >= this share of potential_spend_annual "
                                     "(None = never recommend develop) and ...")
    develop_min_headroom_rank: float = Field(
        0.8, ge=0, le=1, description="... headroom's percentile rank among the accounts >= this")

    @field_validator("by_quadrant")
    @classmethod
    def _all_quadrants(cls, v: dict[str, str]) -> dict[str, str]:
        missing = {"key", "develop", "maintain", "harvest"} - set(v)
        if missing:
            raise ValueError(f"by_quadrant needs an action for {sorted(missing)}")
        return v


class TierConfig(_Strict):
    """Rule-based key-account tiers (see keyaccounts.tiers). Defaults are the usual published values."""

    history_column: Literal["monetary_total", "spend_365d"] = Field(
        "monetary_total", description="historical net spend for abc_history, pyramid and composite order amount")
    growth_columns: list[str] = Field(
        default_factory=lambda: ["spend_growth_ratio_90d", "spend_slope_monthly"],
        description="growth family: the first column present (and not all NaN) is used")
    abc_a_share: float = Field(0.80, gt=0, lt=1, description="A = accounts making up the top 80 % of value (Pareto)")
    abc_b_share: float = Field(0.15, gt=0, lt=1, description="B = the next 15 %; C = the rest (last 5 %)")
    pyramid: list[PyramidBand] = Field(
        default_factory=lambda: [PyramidBand(name="VIP", share=0.01), PyramidBand(name="major", share=0.04),
                                 PyramidBand(name="medium", share=0.15)],
        description="customer pyramid bands from the top by value: top 1 % VIP, next 4 % major, next 15 % medium")
    pyramid_rest: str = Field("small", description="pyramid tier below every band")
    rfm_rules: list[RfmRule] = Field(default_factory=_default_rfm_rules,
                                     description="RFM segment table, first matching rule wins")
    rfm_default: str = Field("need attention", description="segment when no rule matches")
    kaism: KaismConfig = Field(default_factory=KaismConfig)
    composite: CompositeConfig = Field(default_factory=CompositeConfig)
    min_purchases: int = Field(2, ge=0, description="fewer purchase days than this = insufficient history")
    min_tenure_days: int = Field(90, ge=0, description="tenure below this many days = insufficient history")
    actions: ActionConfig = Field(default_factory=ActionConfig)

    @model_validator(mode="after")
    def _shares(self) -> TierConfig:
        if self.abc_a_share + self.abc_b_share > 1 + 1e-9:
            raise ValueError("abc_a_share + abc_b_share must not exceed 1")
        if sum(b.share for b in self.pyramid) > 1 + 1e-9:
            raise ValueError("pyramid band shares must not sum to more than 1")
        return self


class ForecastConfig(_Strict):
    """Funnel forecast settings (see keyaccounts.forecast). Thresholds are on a deal's
    probability of being won within the forecast horizon."""

    period: Literal["month", "quarter"] = "quarter"
    periods: int = Field(4, ge=1, le=24, description="periods forecast, starting with the one holding as_of")
    stage_order: list[str] | None = Field(
        None, description="open stages in funnel order; None = the pipeline's stages.open")
    n_simulations: int = Field(2000, ge=100, description="Monte Carlo draws of deal outcomes and timing")
    parameter_draws: int = Field(
        20, ge=0, description="Bayesian-bootstrap redraws of the duration tables and creation rate "
                              "(parameter uncertainty); 0 = point estimates only")
    seed: int = 0
    commit_threshold: float = Field(0.7, gt=0, le=1, description="P(won in horizon) >= this: commit")
    best_case_threshold: float = Field(0.4, gt=0, le=1, description=">= this (and < commit): best case")
    new_pipeline: bool = Field(True, description="add deals not yet created (historical creation rate)")
    creation_lookback_days: int = Field(90, gt=0, description="window before as_of for creation rate and amounts")
    max_transitions: int = Field(12, ge=1, description="stage moves simulated per deal at most")
    target: float | None = Field(None, gt=0, description="revenue target per period (pipeline coverage)")
    backtest_periods: int = Field(1, ge=1, le=8, description="periods scored per backtest snapshot")
    shocks: bool = Field(True, description="shared per-simulation shocks to the creation rate and win odds, "
                                           "sized by their window-to-window variation before as_of")
    shock_window_days: int = Field(30, gt=0, description="window length for the shock sizes")
    shock_windows: int = Field(12, ge=3, description="windows (before as_of) the shock sizes are measured on")
    probability: Literal["stage", "model", "auto"] = Field(
        "stage", description="P(won) per open deal: stage = empirical stage exits; model = the calibrated deal-close "
                            "model trained as of as_of (a forecast refuses when it cannot be trained); auto = model "
                            "when trainable, else stage (said in info). Default stage: needs no feature choice and "
                            "ages open deals by the censoring-aware exits (README backtest table)")
    model_horizon_days: int = Field(90, gt=0, description="deal model label window: P(won within this many days)")
    model_features: list[str] | None = Field(
        None, description="deal-model features (models.deal.NUMERIC_FEATURES names); None = all")
    model_retrain_days: int = Field(28, ge=1, description="backtest: reuse a deal model trained at most this many "
                                                          "days before the snapshot (never one trained after it)")
    trend: bool = Field(True, description="creation rate from a local linear trend (with its uncertainty) over the "
                                          "last trend_windows windows of shock_window_days, instead of a flat rate")
    trend_windows: int = Field(6, ge=3, description="windows before as_of the creation trend is fitted on")
    recalibrate: bool = Field(True, description="recalibrate P10-P90 from replays of the forecast on snapshots before "
                                                "as_of (conformal, scored on outcomes known before as_of)")
    recalibration_replays: int = Field(8, ge=1, description="replay snapshots at most, every "
                                                             "recalibration_every_days back from as_of")
    recalibration_every_days: int = Field(7, ge=1, description="days between replay snapshots")

    @model_validator(mode="after")
    def _thresholds(self) -> ForecastConfig:
        if self.best_case_threshold > self.commit_threshold:
            raise ValueError("best_case_threshold must not exceed commit_threshold")
        return self


class ReportConfig(_Strict):
    """The HTML report (keyaccounts.report): what it shows and when it warns."""

    top_n: int = Field(25, ge=1, le=1000, description="key accounts listed (ranked by the score step's priority)")
    psi_threshold: float = Field(0.2, gt=0, description="warn when a feature's PSI (training vs scoring) exceeds this")
    risk_medium: float = Field(0.2, gt=0, lt=1, description="churn probability from which risk is 'medium'")
    risk_high: float = Field(0.5, gt=0, lt=1, description="churn probability from which risk is 'high'")
    backtest_days: int = Field(365, ge=0, description="forecast backtest over snapshots in [as_of - this, as_of); 0 = none")
    backtest_every_days: int = Field(14, gt=0, description="days between backtest snapshots")

    @model_validator(mode="after")
    def _bands(self) -> ReportConfig:
        if self.risk_medium >= self.risk_high:
            raise ValueError("risk_medium must be below risk_high")
        return self


class RetrainConfig(_Strict):
    """`keyaccounts retrain` (keyaccounts.retrain): retrain when any rule fires, else say why not.
    The same data fingerprint and settings as an earlier training never train again."""

    max_age_days: int = Field(30, gt=0, description="retrain when the champion's training as_of is at least "
                                                    "this many days before the new as_of")
    drift_psi: float = Field(0.2, gt=0, description="retrain when a churn-model feature's PSI (training vs now) "
                                                    "exceeds this (drift.psi_table: also above chance)")
    drift_min_features: int = Field(1, ge=1, description="...in at least this many features")
    min_new_rows_pct: float = Field(10.0, gt=0, description="retrain when the transactions grew by at least this "
                                                            "many percent since the champion's training")


class Pipeline(_Strict):
    """A declarative pipeline: inputs, as_of, horizon and steps. Config only, no logic."""

    name: str = "pipeline"
    as_of: dt.date | None = None
    horizon_days: int = Field(90, gt=0, le=MAX_HORIZON_DAYS)
    inputs: dict[TableName, InputSpec] = Field(default_factory=dict)
    stages: StageConfig = Field(default_factory=StageConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tiers: TierConfig = Field(default_factory=TierConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    tracking_uri: str | None = None
    steps: list[dict[str, dict[str, Any] | None]] = Field(default_factory=list)

    @field_validator("as_of")
    @classmethod
    def _as_of_in_range(cls, v: dt.date | None) -> dt.date | None:
        if v is not None and not EARLIEST_DATE <= v <= LATEST_DATE:
            raise ValueError(f"as_of {v} is out of range ({EARLIEST_DATE} .. {LATEST_DATE})")
        return v

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, step in enumerate(v):
            if len(step) != 1:
                raise ValueError(f"step {i + 1} must have exactly one name, got {list(step)}")
            (name,) = step
            if name not in STEP_NAMES:
                raise ValueError(f"step {i + 1}: unknown step '{name}' (known: {', '.join(STEP_NAMES)})")
            step[name] = _step_params(i + 1, name, step[name])
        return v

    @field_validator("tracking_uri")
    @classmethod
    def _expand_uri(cls, v: str | None) -> str | None:
        return None if v is None else expand_path(v)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc` (a ValidationError location
    without its last part) inside Pipeline, or None."""
    t: Any = Pipeline
    for part in loc:
        t = _unwrap_optional(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            field = t.model_fields.get(str(part))
            if field is None:
                return None
            t = field.annotation
        elif get_origin(t) in (list, dict):
            t = get_args(t)[-1]
        else:
            return None
    t = _unwrap_optional(t)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _unwrap_optional(t: Any) -> Any:
    args = [a for a in get_args(t) if a is not type(None)]
    return args[0] if get_origin(t) in (Union, UnionType) and len(args) == 1 else t


def nearest_key(key: str, valid) -> str:
    """' (did you mean 'x'?)' for the valid key closest to `key`, else the valid keys."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(valid)})"


def _nearest_key_hint(err: dict) -> str:
    if err.get("type") != "extra_forbidden" or not err.get("loc"):
        return ""
    model = _model_at(tuple(err["loc"][:-1]))
    return nearest_key(str(err["loc"][-1]), model.model_fields) if model is not None else ""


def load_pipeline(path: str | Path) -> Pipeline:
    """Parse and validate a pipeline YAML; raise ConfigError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("pipeline file not found", file=str(p))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", file=str(p)) from None
    except RecursionError:
        raise ConfigError("not a pipeline: nested too deeply to read", file=str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", file=str(p))
    try:
        return Pipeline.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors()[:8]:
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  {loc}: {err['msg']}" + _nearest_key_hint(err))
        raise ConfigError("invalid pipeline:\n" + "\n".join(lines), file=str(p)) from None


def parse_columns(arg: str | None) -> dict[str, str]:
    """'customer_id=CustomerID,timestamp=InvoiceDate' -> {'customer_id': 'CustomerID', ...}."""
    if not arg:
        return {}
    out: dict[str, str] = {}
    for part in arg.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"--columns item '{part}' must look like canonical=YourColumn")
        k, v = (s.strip() for s in part.split("=", 1))
        if not k or not v:
            raise ConfigError(f"--columns item '{part}' must look like canonical=YourColumn")
        out[k] = v
    return out
