"""Run a declarative pipeline: load inputs once, then execute its steps in order."""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import io, plots
from .changes import changes_path, compare_lists, previous_list
from .config import TABLES, Pipeline
from .engines.spark_score import choose_engine  # does not import pyspark
from .engines.spark_steps import SPARK_STEPS
from .errors import InputError
from .features import Tables, build_features, deals
from .forecast import BacktestResult, ForecastResult
from .forecast.step import backtest_window, forecast_config
from .forecast.step import step_forecast as run_forecast_step
from .outputs import score_deals_path
from .quality import QualityReport, as_of_problem, id_match_warning, summary_frame
from .report import build_report
from .results import ForecastOutcome, ScoreResult, StepResults, read_forecast_files, read_score_files
from .schemas import SPECS, prepare_table
from .score import parse_reasons, score_accounts_and_features, score_deals_and_features, tier_counts
from .tiers import criteria_columns
from .tracking import TrackingUnavailable, data_fingerprint, tracker_for
from .train import train_customer_models, train_deal


@dataclass
class Loaded:
    tables: Tables
    reports: list[QualityReport] = field(default_factory=list)


def resolve_loose_columns(raws: dict[str, pd.DataFrame], files: dict[str, str],
                          loose: dict[str, str]) -> dict[str, dict[str, str]]:
    """Unprefixed --columns items apply to every table whose file has the source column;
    one that no file has is an error."""
    per: dict[str, dict[str, str]] = {n: {} for n in raws}
    for canon, src in loose.items():
        hits = [n for n, r in raws.items() if src in r.columns and canon in SPECS[n].all_columns]
        if not hits:
            cols = sorted({str(c) for r in raws.values() for c in r.columns})
            close = difflib.get_close_matches(src, cols, n=1, cutoff=0.6)
            raise InputError(f"--columns maps '{canon}' to '{src}', but no input file has a column '{src}'",
                             file=", ".join(files.values()), column=src,
                             hint=(f"did you mean '{close[0]}'? " if close else "")
                             + f"columns in the files: {', '.join(cols[:30])}")
        for n in hits:
            per[n][canon] = src
    return per


def load_inputs(p: Pipeline, *, loose_columns: dict[str, str] | None = None,
                on_table: Callable[[str], None] | None = None, require: tuple[str, ...] = ("transactions",),
                on_read: Callable[[str, str], None] | None = None) -> Loaded:
    """Read, map, validate every input of the pipeline; the `require`d tables must be given.
    `on_read(table, path)` is called before each file is read, `on_table(table)` before each
    table is validated."""
    for name in require:
        if name not in p.inputs:
            raise InputError(f"a {name} file is required (--{name.replace('_', '-')} or inputs.{name})")
    raws = {}
    for name, spec in p.inputs.items():
        if on_read:
            on_read(name, spec.source)
        raws[name] = io.read_input(spec)
    files = {n: s.source for n, s in p.inputs.items()}
    extra = resolve_loose_columns(raws, files, loose_columns or {})
    frames: dict[str, pd.DataFrame] = {}
    reports = []
    for name in TABLES:
        if name not in raws:
            continue
        if on_table:
            on_table(name)
        spec = p.inputs[name]
        frame, rep = prepare_table(
            raws[name], name, file=spec.source, mapping={**spec.columns, **extra[name]}, stages=p.stages,
            quality=p.quality, date_format=spec.read.date_format, dayfirst=spec.read.dayfirst,
            decimal=spec.read.decimal, header=spec.read.header, as_of=p.as_of,
            keep=criteria_columns(p.tiers) if name == "customers" else ())
        frames[name] = frame
        reports.append(rep)
    check_joins(frames, reports, files, p.as_of)
    # transactions may be absent when not required (the forecast reads opportunities only)
    return Loaded(Tables(**{"transactions": None, **frames}), reports)


def check_joins(frames: dict[str, pd.DataFrame], reports: list[QualityReport], files: dict[str, str],
                as_of: dt.date | None) -> None:
    """Across tables: as_of within the transactions' dates (else InputError, option named), and
    a warning in the quality notes of a customers/invoices table whose ids match too few of the
    transactions' customers."""
    tx = frames.get("transactions")
    if tx is None or not len(tx):
        return
    if as_of is not None:
        problem = as_of_problem(as_of, tx["timestamp"].min(), tx["timestamp"].max(), files["transactions"])
        if problem:
            raise InputError(problem, file=files["transactions"], column="timestamp")
    for rep in reports:
        if rep.table in ("customers", "invoices") and "customer_id" in frames[rep.table].columns:
            warning = id_match_warning(tx["customer_id"], frames[rep.table]["customer_id"],
                                       file=files["transactions"], other_file=files[rep.table])
            if warning:
                rep.notes.append(warning)


def require_as_of(p: Pipeline) -> dt.date:
    if p.as_of is None:
        raise InputError("as_of is required: pass --as-of YYYY-MM-DD or set as_of in the pipeline "
                         "(features never default to the data's last date)")
    return p.as_of


def customer_features(loaded: Loaded, p: Pipeline, *, on_family=None) -> pd.DataFrame:
    """build_features at p.as_of with an as_of column first; `on_family`: its progress callback."""
    as_of = require_as_of(p)
    f = build_features(loaded.tables, as_of=as_of, config=p.features, progress=on_family)
    f.insert(0, "as_of", pd.Timestamp(as_of))
    return f


def deal_features(loaded: Loaded, p: Pipeline) -> pd.DataFrame:
    as_of = require_as_of(p)
    t = loaded.tables
    if t.opportunities is None:
        raise InputError("deal features need an opportunities file (--opportunities or inputs.opportunities)")
    f = deals(t.opportunities, as_of=as_of, open_stages=p.stages.open, stage_history=t.stage_history,
              txns=t.transactions, owner_prior=p.features.owner_win_rate_prior)
    f.insert(0, "as_of", pd.Timestamp(as_of))
    return f


def step_features(loaded: Loaded, p: Pipeline, params: dict[str, Any], say=print, on_family=None) -> list[Path]:
    """Write customer features to params['out'] and, when given, deal features to params['deals_out']."""
    if not params.get("out"):
        raise InputError("features step needs 'out: PATH'")
    say("building customer features")
    f = customer_features(loaded, p, on_family=on_family)
    say(f"writing {len(f):,} customers to {params['out']}")
    written = [io.write_frame(f, params["out"])]
    if params.get("deals_out"):
        say("building deal features")
        d = deal_features(loaded, p)
        say(f"writing {len(d):,} open deals to {params['deals_out']}")
        written.append(io.write_frame(d, params["deals_out"]))
    return written


def step_validate(loaded: Loaded, p: Pipeline, params: dict[str, Any], say=print) -> list[Path]:
    """Inputs are validated on load; optionally write the quality summary."""
    if params.get("out"):
        return [io.write_frame(summary_frame(loaded.reports), params["out"], index=False)]
    return []


def _tables_dict(t: Tables) -> dict[str, pd.DataFrame]:
    return {n: getattr(t, n) for n in TABLES if getattr(t, n) is not None}


def step_train(loaded: Loaded, p: Pipeline, params: dict[str, Any], say=print) -> list[Path]:
    """Train churn, value (and deal, with opportunities) as of p.as_of; log, register, gate."""
    as_of = require_as_of(p)
    tracker = tracker_for(p, params)
    tracker.check()  # before minutes of training, not after
    fp = data_fingerprint(_tables_dict(loaded.tables))
    say(f"tracking: {tracker.tracking_uri}   data fingerprint {fp[:12]}")
    try:
        tms = train_customer_models(loaded.tables, as_of=as_of, horizon_days=p.horizon_days, cfg=p.train,
                                    features=p.features, fingerprint=fp, progress=say)
    except ValueError as e:
        from xgboost.core import XGBoostError
        if isinstance(e, XGBoostError):  # a ValueError, but a library failure, not the user's data
            raise
        raise InputError(str(e)) from None
    if loaded.tables.opportunities is not None:
        say("training deal model")
        tm, r = train_deal(loaded.tables, as_of=as_of, horizon_days=p.horizon_days, cfg=p.train, stages=p.stages,
                           owner_prior=p.features.owner_win_rate_prior, fingerprint=fp)
        if r.refused_reason:
            say(f"[yellow]deal model refused[/]: {r.refused_reason} -> stage-rate baseline registered instead")
        if tm is not None:
            tms.append(tm)
    for tm in tms:  # where the data came from (a query's connection without its password) and what
        # `keyaccounts retrain` compares with: the settings and the row counts at training
        tm.params.update(inputs={n: s.source for n, s in p.inputs.items()}, settings_hash=training_settings(p),
                         input_rows={n: len(df) for n, df in _tables_dict(loaded.tables).items()})
    written = log_trained(tracker, tms, say=say)
    register_scorer(tracker, p, say=say)
    return written


def register_scorer(tracker, p: Pipeline, say=print) -> None:
    """Register `keyaccounts-scorer` (keyaccounts.serving) around the horizon's champions. The
    models are registered and gated already: a failure here is said, not raised."""
    try:
        res = tracker.log_scorer(p, horizon_days=p.horizon_days)
    except Exception as e:  # noqa: BLE001 - the champions stand; only the servable wrapper is missing
        say(f"[yellow]warning[/]: keyaccounts-scorer not registered ({type(e).__name__}: {str(e)[:300]})")
        return
    models = ", ".join(f"{n} v{v}" for n, v in res["models"].items())
    say(f"keyaccounts-scorer: v{res['version']} ({models}) "
        + ("registered" if res["registered"] else "unchanged, not registered again"))


def training_settings(p: Pipeline) -> str:
    """A short hash of what shapes a trained model besides the data and as_of: horizon, train:,
    features: and stages: of the pipeline. Same data fingerprint + same hash = the same training."""
    blob = {"horizon_days": p.horizon_days, **{k: getattr(p, k).model_dump(mode="json")
                                               for k in ("train", "features", "stages")}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def log_trained(tracker, tms: list, *, say=print) -> list[Path]:
    """Log, register and gate each TrainedModel (either engine); say the metric against the
    baselines and the gate's verdict; returns the exported champion bundles."""
    written = []
    for tm in tms:
        res = tracker.log_training(tm)
        plots.close(tm.figures)
        key = tm.primary_metric
        base = {b: m.get(key) for b, m in tm.baseline_metrics.items() if m.get(key) is not None}
        say(f"{tm.name}: v{res['version']} {key}={tm.metrics.get(key, float('nan')):.4f} "
            f"(baselines: {', '.join(f'{b} {v:.4f}' for b, v in base.items()) or '-'}) -> "
            f"{'champion' if res['promoted'] else 'not promoted'}: {res['reason']}")
        if res["promoted"]:
            written.append(Path(tracker.models_dir) / tm.name / "model.joblib")
    return written


def check_score_params(params: dict[str, Any]) -> None:
    """Every option of the score step checked before any data is read or scored: output paths
    and formats, --by, --reasons."""
    if not params.get("out"):
        raise InputError("score step needs 'out: PATH'")
    for key in ("out", "deals_out"):
        if params.get(key):
            io.check_output_format(params[key])
    if params.get("by") not in (None, "owner", "region"):
        raise InputError(f"--by must be owner or region, got '{params.get('by')}'")
    parse_reasons(str(params.get("reasons", "all")))
    if params.get("compare_to"):
        check_compare_to(params["compare_to"], params["out"])


def check_compare_to(previous, out) -> None:
    """--compare-to names an existing CSV/Parquet list that is not the output itself (no input
    is ever overwritten)."""
    prev = Path(previous)
    if not prev.is_file():
        raise InputError("previous list not found", file=str(prev), hint="--compare-to takes an earlier score output")
    if io.check_output_format(prev) == "excel":
        raise InputError("--compare-to reads the .csv or .parquet list of an earlier score run, not the Excel "
                         "workbook (its columns are labelled for people)", file=str(prev))
    if prev.resolve() == Path(out).resolve():
        raise InputError("--compare-to is the file --out would overwrite", file=str(prev),
                         hint="write the new list to another name (e.g. one per as_of date)")


def read_previous_list(path) -> pd.DataFrame:
    """The validated previous account list for --compare-to (see changes.previous_list)."""
    return previous_list(io.read_frame(path), file=str(path))


def step_score(loaded: Loaded, p: Pipeline, params: dict[str, Any], say=print, on_family=None,
               results: StepResults | None = None) -> list[Path]:
    """Ranked account (and open-deal) lists with the champions, tiers and reasons; written
    atomically; the run is logged to MLflow. params: out, deals_out, prefer, reasons, rank_by,
    by (owner|region), top, compare_to (a previous list: <stem>_changes.csv, keyaccounts.changes).
    With `results`, leaves a ScoreResult there for the steps after it (the report)."""
    as_of = require_as_of(p)
    check_score_params(params)
    previous = read_previous_list(params["compare_to"]) if params.get("compare_to") else None  # bad: exit 2 first
    by = params.get("by")
    opts = {"prefer": params.get("prefer", "registry"), "reasons": str(params.get("reasons", "all")),
            "by": by, "top": params.get("top")}
    tracker = tracker_for(p, params)
    try:
        tracker.check()
    except TrackingUnavailable as e:  # the sha256-checked bundles still serve
        say(f"[yellow]warning[/]: {e.message}; scoring from the models/ bundles, the run is not logged")
        opts["prefer"] = "bundle"
    rank_by = params.get("rank_by", "composite_score")
    accounts, versions, features = score_accounts_and_features(
        loaded.tables, as_of=as_of, horizon_days=p.horizon_days, p=p, tracker=tracker, rank_by=rank_by,
        say=say, on_family=on_family, **opts)
    deals_df = deal_feats = None
    if loaded.tables.opportunities is not None:
        deals_df, dv, deal_feats = score_deals_and_features(loaded.tables, as_of=as_of, horizon_days=p.horizon_days,
                                                            p=p, tracker=tracker, say=say, **opts)
        versions.update(dv)
    if results is not None:
        results.score = ScoreResult(accounts=accounts, deals=deals_df, versions=dict(versions), features=features,
                                    deal_features=deal_feats, reasons=opts["reasons"],
                                    complete=rank_by == "composite_score" and not by and not opts["top"])
    say(f"writing {len(accounts):,} accounts to {params['out']}")
    # What the Excel "Read me" sheet tells the reader (CSV/Parquet ignore it).
    meta = {"as_of": as_of, "horizon_days": p.horizon_days, "versions": versions, "by": by, "top": opts["top"],
            "reasons": opts["reasons"], "inputs": {n: s.source for n, s in p.inputs.items()}, "tiers": p.tiers,
            "lifecycle": p.features.lifecycle, "risk_bands": (p.report.risk_medium, p.report.risk_high)}
    written = [io.write_frame(accounts, params["out"], sheets_by=by, meta={
        **meta, "list": "accounts", "rank_by": params.get("rank_by", "composite_score")})]
    if deals_df is not None:
        out = Path(params["out"])
        deals_out = params.get("deals_out") or score_deals_path(out)
        say(f"writing {len(deals_df):,} open deals to {deals_out}")
        written.append(io.write_frame(deals_df, deals_out, sheets_by=by if by in deals_df.columns else None,
                                      meta={**meta, "list": "deals", "rank_by": "expected_revenue"}))
    if previous is not None:
        written.append(write_changes(accounts, previous, params["out"], p, say=say))
    counts = {"accounts": len(accounts), "deals": 0 if deals_df is None else len(deals_df)}
    if tracker.unavailable is None:
        say(f"logging the score run to {tracker.tracking_uri}")
        try:
            tracker.log_score_run(as_of=as_of, fingerprint=data_fingerprint(_tables_dict(loaded.tables)),
                                  model_versions=versions, row_counts=counts, extra_metrics=tier_counts(accounts),
                                  inputs={n: s.source for n, s in p.inputs.items()})
        except Exception as e:  # noqa: BLE001 - the lists are written and correct; only the log is missing
            say(f"[yellow]warning[/]: score run not logged to MLflow ({type(e).__name__}: {str(e)[:200]})")
    return written


def write_changes(accounts: pd.DataFrame, previous: pd.DataFrame, out, p: Pipeline, say=print) -> Path:
    """<stem>_changes.csv beside `out`: what changed against the previous list (keyaccounts.changes)."""
    ch = compare_lists(accounts, previous, risk_high=p.report.risk_high)
    target = changes_path(out)
    say(f"changes since {ch.as_of_before}: " + ", ".join(f"{k} {v:,}" for k, v in ch.counts.items())
        + f" -> {target}")
    return io.write_frame(ch.rows, target, index=False)


def step_report(loaded: Loaded, p: Pipeline, params: dict[str, Any], say=print,
                results: StepResults | None = None) -> list[Path]:
    """The self-contained HTML report (keyaccounts.report) to params['out'], written
    atomically. params: out, prefer (registry|bundle), tracking_uri, models_dir, compare_to
    (a previous score list: the "What changed" section), scores / deal_scores / forecast (files
    of earlier score / forecast runs to render). `results`: the score and forecast steps' results of this
    run, rendered rather than recomputed; what is neither given nor in `results` is computed (said)."""
    require_as_of(p)
    if not params.get("out"):
        raise InputError("report step needs 'out: PATH'")
    previous = None
    if params.get("compare_to"):
        check_compare_to(params["compare_to"], params["out"])
        previous = read_previous_list(params["compare_to"])
    given = results or StepResults()
    scores, fc = given.score, given.forecast
    if params.get("scores"):
        scores = read_score_files(params["scores"], as_of=p.as_of, deals_path=params.get("deal_scores"))
    if params.get("forecast"):
        fc = read_forecast_files(params["forecast"], config=forecast_config(p, {}))
    for what, res in (("scores", scores), ("forecast", fc)):
        if res is not None:
            say(f"{what}: rendering the results of {res.source}")
    rep = build_report(loaded, p, tracker=tracker_for(p, params), prefer=params.get("prefer", "registry"),
                       progress=say, previous=previous, scores=scores, forecast=fc)
    for w in rep.warnings:
        say(f"[yellow]drift warning[/]: {w}")
    return [io.write_text(rep.html, params["out"])]


def step_forecast(loaded: Loaded, p: Pipeline, params: dict[str, Any], say=print,
                  results: StepResults | None = None) -> list[Path]:
    """Funnel forecast (or backtest) from the opportunities; see keyaccounts.forecast.step. With
    `results`, the forecast (or backtest) is left there for the report."""
    own = dict(params)  # forecast.step leaves its result under '_result' of the dict it is given
    written = run_forecast_step(loaded, p, own, say=say)
    if results is not None:
        done = own.get("_result")
        prev = results.forecast or ForecastOutcome()
        if isinstance(done, BacktestResult):
            results.forecast = replace(prev, backtest=done, backtest_window=backtest_window(own))
        elif isinstance(done, ForecastResult):
            results.forecast = replace(prev, forecast=done, config=forecast_config(p, own))
    return written


@dataclass
class PlannedStep:
    """One step of a pipeline with the engine it runs on and why ('' = the default engine)."""

    name: str
    params: dict[str, Any]
    engine: str = "local"
    why: str = ""

    def run(self, inputs, p: Pipeline, say=print, **kw) -> list:
        """inputs: a Loaded for the local engine (`kw` passed to its step), an
        engines.spark_steps.SparkInputs for Spark."""
        if self.engine == "spark":
            return SPARK_STEPS[self.name](inputs, p, self.params, say=say)
        return STEPS[self.name](inputs, p, self.params, say=say, **kw)


SPARK_STEP_NAMES = ("features", "train", "score")


def plan_steps(p: Pipeline) -> list[PlannedStep]:
    """p.steps with their engine. engine.name spark: features run on Spark (as `features
    --engine spark`), train/score on Spark only from engine.spark_min_rows transaction rows
    (engines.spark_score.choose_engine, counted without Spark), every other step locally."""
    plan = [PlannedStep(name, dict(params or {})) for step in p.steps for name, params in step.items()]
    if p.engine.name != "spark":
        return plan
    chosen: dict[str, tuple[str, str]] = {}
    for s in plan:
        if s.name == "features":
            if s.params.get("deals_out"):
                raise InputError("features step: deals_out runs on the local engine only (deal tables are "
                                 "small); drop it or set engine.name local")
            s.engine, s.why = "spark", "engine.name spark"
        elif s.name in SPARK_STEP_NAMES:
            what = "training" if s.name == "train" else "scoring"
            if what not in chosen:
                chosen[what] = choose_engine(p, what)
            s.engine, s.why = chosen[what]
        else:
            s.why = f"the {s.name} step runs on the local engine only"
    return plan


STEPS: dict[str, Callable[..., list[Path]]] = {
    "validate": step_validate,
    "features": step_features,
    "train": step_train,
    "score": step_score,
    "report": step_report,
    "forecast": step_forecast,
}
