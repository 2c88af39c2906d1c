"""Typed results one pipeline step hands to the next, and the same results read back from files.

In a pipeline run the score and forecast steps leave a `ScoreResult` / `ForecastOutcome` in the
run's `StepResults`; the report step renders them instead of recomputing them. A standalone
`keyaccounts report --scores FILE --forecast FILE` reads them back from those steps' files
(`read_score_files`, `read_forecast_files`), validated here at the boundary: a file without a
column the report needs exits 2 naming the file and the column.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import io
from .config import ForecastConfig
from .errors import InputError
from .forecast import ALL, BacktestResult, ForecastResult
from .forecast.core import PERIOD_COLUMNS
from .outputs import score_deals_path, sibling


@dataclass
class ScoreResult:
    """What the score step computed: the ranked accounts (and open deals) with their model
    versions, and the feature frames they were scored from (None when read from files).
    `complete`: every account, ranked by composite_score, neither cut (top) nor grouped (by),
    i.e. the list the report itself would score. `reasons`: the --reasons spec it was run with."""

    accounts: pd.DataFrame
    deals: pd.DataFrame | None
    versions: dict[str, str]
    features: pd.DataFrame | None = None
    deal_features: pd.DataFrame | None = None
    complete: bool = True
    reasons: str = "all"
    source: str = "the score step"


@dataclass
class ForecastOutcome:
    """What the forecast step(s) computed: the forecast with the config it ran with, and the
    backtest (start, end, every_days) when a backtest step ran."""

    forecast: ForecastResult | None = None
    config: ForecastConfig | None = None
    backtest: BacktestResult | None = None
    backtest_window: tuple[dt.date, dt.date, int] | None = None
    source: str = "the forecast step"


@dataclass
class StepResults:
    """The typed results of the steps run so far in one pipeline run."""

    score: ScoreResult | None = None
    forecast: ForecastOutcome | None = None


ACCOUNT_COLUMNS = ("customer_id", "rank", "as_of", "churn_probability", "expected_value", "value_at_risk",
                   "abc_predicted", "composite_tier", "kaism_quadrant", "position", "attractiveness",
                   "churn_model_version", "value_model_version")
DEAL_COLUMNS = ("amount", "expected_revenue", "deal_model_version")
FUNNEL_COLUMNS = ("stage", "order", "count", "amount", "conversion_rate", "win_rate", "avg_days_in_stage")
FORECAST_DEAL_COLUMNS = ("opportunity_id", "category", "amount", "close_probability")
ID_COLUMNS = frozenset({"customer_id", "opportunity_id", "group", "period", "stage", "owner", "region", "name"})


def _typed(df: pd.DataFrame, *, dates: tuple[str, ...] = ()) -> pd.DataFrame:
    """Raw text values (io.read_frame) back to numbers where every non-blank value of a column
    is a number, dates for `dates`; ids and labels stay text."""
    out = df.copy()
    for col in out.columns:
        if col in dates:
            out[col] = pd.to_datetime(out[col], errors="coerce")
        elif col not in ID_COLUMNS and not pd.api.types.is_numeric_dtype(out[col]) \
                and not pd.api.types.is_datetime64_any_dtype(out[col]):
            blank = out[col].isna() | (out[col].astype("str").str.strip() == "")
            num = pd.to_numeric(out[col].where(~blank), errors="coerce")
            if num.notna().sum() == (~blank).sum() and (~blank).any():
                out[col] = num.astype("float64")
            elif col.endswith("_reasons_up") or col.endswith("_reasons_down") or col.startswith("reasons_"):
                out[col] = out[col].where(~blank, "").astype("str")
    return out


def _read(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{what} not found", file=str(path))
    if io.check_output_format(path) == "excel":
        raise InputError(f"the report reads the .csv or .parquet {what}, not the Excel workbook (its columns "
                         "are labelled for people)", file=str(path))
    df = io.read_frame(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"not a {what}: no column {', '.join(missing)}", file=str(path), column=missing[0])
    return df


def read_score_files(path, *, as_of: dt.date, deals_path=None) -> ScoreResult:
    """The account list written by `keyaccounts score --out PATH` (and its open-deals list:
    `deals_path`, else `<stem>_deals` beside it when present), in rank order; its as_of must be `as_of`."""
    path = Path(path)
    raw = _read(path, ACCOUNT_COLUMNS, "score account list")
    acc = _typed(raw, dates=("as_of",))
    acc["customer_id"] = acc["customer_id"].astype("str").str.strip()
    if acc["customer_id"].duplicated().any():
        raise InputError("customer_id is repeated", file=str(path), column="customer_id")
    days = acc["as_of"].dropna().dt.date.unique()
    if len(days) != 1 or days[0] != as_of:
        raise InputError(f"the list is as of {', '.join(map(str, days)) or 'no date'}, the report as of {as_of}",
                         file=str(path), column="as_of", hint="score again as of the report's date")
    for col in ("rank", "churn_probability", "expected_value", "value_at_risk"):
        if not pd.api.types.is_numeric_dtype(acc[col]):
            raise InputError("values are not numbers", file=str(path), column=col)
    acc = acc.sort_values("rank", kind="stable").drop(columns=["group_rank"], errors="ignore").set_index("customer_id")
    versions = {}
    for col in ("churn_model_version", "value_model_version"):
        name, _, v = str(acc[col].iloc[0]).partition("/v")
        versions[name] = v
    deals, sources = None, [str(path)]
    deals_path = Path(deals_path) if deals_path is not None else score_deals_path(path)
    if deals_path.is_file() or deals_path != score_deals_path(path):  # a named one must exist
        deals = _typed(_read(deals_path, DEAL_COLUMNS, "score open-deals list"), dates=("as_of",))
        if len(deals):
            name, _, v = str(deals["deal_model_version"].iloc[0]).partition("/v")
            versions[name] = v
        sources.append(str(deals_path))
    # complete: re-sorted by rank, so a list grouped with --by reads as the global ranking; a list cut
    # with --top cannot be told from a full one and is rendered as given (the user chose the file)
    return ScoreResult(accounts=acc, deals=deals, versions=versions, complete=True, source=", ".join(sources))


def read_forecast_files(path, *, config: ForecastConfig) -> ForecastOutcome:
    """The forecast written by `keyaccounts forecast --out PATH`: the periods table and its
    `<stem>_funnel`, `<stem>_deals` beside it (all three needed). The run's notes (interval
    recalibration, creation trend) are not in the files and are left out."""
    path = Path(path)
    periods = _typed(_read(path, tuple(c for c in PERIOD_COLUMNS if c not in ("target", "coverage")),
                           "forecast periods table"), dates=("period_start", "period_end"))
    funnel = _typed(_read(sibling(path, "_funnel"), FUNNEL_COLUMNS, "forecast funnel table"))
    deals = _typed(_read(sibling(path, "_deals"), FORECAST_DEAL_COLUMNS, "forecast deals table"))
    if not (periods["group"] == ALL).any():
        raise InputError(f"no '{ALL}' rows: not the periods table of a forecast", file=str(path), column="group")
    files = [str(path), str(sibling(path, "_funnel")), str(sibling(path, "_deals"))]
    # the period of the file, not of the pipeline: '2025Q4' is a quarter, '2025-10' a month
    period = "quarter" if periods["period"].astype("str").str.contains("Q").all() else "month"
    return ForecastOutcome(forecast=ForecastResult(periods=periods, funnel=funnel, deals=deals),
                           config=config.model_copy(update={"period": period}), source=", ".join(files))
