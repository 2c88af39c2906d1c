"""Pipeline YAML models: parsed once, validated, passed down. No import-time side effects."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

TABLES = ("transactions", "customers", "invoices", "opportunities", "stage_history")
TableName = Literal["transactions", "customers", "invoices", "opportunities", "stage_history"]


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
    """One input table: its file, the mapping canonical_name -> user's column, read options."""

    path: str
    columns: dict[str, str] = Field(default_factory=dict)
    read: ReadOptions = Field(default_factory=ReadOptions)

    @field_validator("path")
    @classmethod
    def _expand(cls, v: str) -> str:
        return os.path.expanduser(os.path.expandvars(v))


class StageConfig(_Strict):
    """Stage vocabulary. Open stages in funnel order; comparisons ignore case and spaces."""

    open: list[str] = Field(default_factory=lambda: ["prospecting", "qualification", "proposal", "negotiation"])
    won: list[str] = Field(default_factory=lambda: ["won", "closed won"])
    lost: list[str] = Field(default_factory=lambda: ["lost", "closed lost"])

    @model_validator(mode="after")
    def _disjoint(self) -> "StageConfig":
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


class FeatureConfig(_Strict):
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 365])
    growth_window_days: int = Field(90, gt=0)
    slope_months: int = Field(12, ge=2)
    overdue_threshold_days: int = Field(30, ge=0)
    owner_win_rate_prior: float = Field(10.0, ge=0, description="pseudo-deals shrinking owner win rates")
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)

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


STEP_NAMES = ("validate", "features", "train", "score")


class Pipeline(_Strict):
    """A declarative pipeline: inputs, as_of, horizon and steps. Config only, no logic."""

    name: str = "pipeline"
    as_of: dt.date | None = None
    horizon_days: int = Field(90, gt=0)
    inputs: dict[TableName, InputSpec] = Field(default_factory=dict)
    stages: StageConfig = Field(default_factory=StageConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking_uri: str | None = None
    steps: list[dict[str, dict[str, Any] | None]] = Field(default_factory=list)

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, step in enumerate(v):
            if len(step) != 1:
                raise ValueError(f"step {i + 1} must have exactly one name, got {list(step)}")
            (name,) = step
            if name not in STEP_NAMES:
                raise ValueError(f"step {i + 1}: unknown step '{name}' (known: {', '.join(STEP_NAMES)})")
        return v


def load_pipeline(path: str | Path) -> Pipeline:
    """Parse and validate a pipeline YAML; raise ConfigError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("pipeline file not found", file=str(p))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", file=str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", file=str(p))
    try:
        return Pipeline.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors()[:8]:
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
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
