"""The `forecast` pipeline step and CLI command body: loaded tables -> files (+ MLflow run).

params: out (required), by, period, periods, target, backtest (bool), from, to, every_days,
track (bool, default True), tracking_uri. Forecast: the periods table at `out`, and
`<stem>_funnel`, `<stem>_deals` beside it in the same format; grouped by owner (--by owner, or
targets or rep calls given) also `<stem>_owners` (`owner_outputs`), with rep calls
`<stem>_disagreements`, with the opportunity_snapshots table `<stem>_reps`. Backtest: the rows
at `out`, `<stem>.png` chart beside it, `<stem>_summary` table and `<stem>_calibration`
(reliability table of the per-deal probabilities); with opportunity_snapshots `<stem>_reps`
(each rep's calls scored beside the model's on the same deal-snapshots).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from .. import io
from ..config import check_date
from ..errors import InputError
from ..outputs import sibling
from .api import run_forecast
from .backtest import BacktestResult, backtest_chart, run_backtest
from .core import ForecastResult, period_table
from .owners import owner_table, resolve_targets
from .repcall import attach_rep_calls, calls_as_of, disagreements, has_rep_calls, rep_accuracy, rep_call_table


def _date(v, what: str) -> dt.date:
    if isinstance(v, dt.date):
        return v
    try:
        day = dt.date.fromisoformat(str(v))
    except ValueError:
        raise InputError(f"{what} '{v}' is not a date in the form YYYY-MM-DD") from None
    return check_date(day, what)


def _every(v) -> int:
    s = str(v).strip().lower()
    s = s[:-1] if s.endswith("d") else s
    if not s.isdigit() or int(s) < 1:
        raise InputError(f"--every '{v}' must be a number of days such as 7d")
    return int(s)


DEFAULT_MAX_SNAPSHOTS = 260  # five years of weekly snapshots


def backtest_snapshots(params: dict[str, Any]) -> int:
    """How many snapshots the backtest in `params` replays (from, to, every_days); InputError,
    before any work, when a bound is missing or the count exceeds params['max_snapshots']."""
    if params.get("from") is None or params.get("to") is None:
        raise InputError("--backtest needs --from DATE and --to DATE")
    start, end = _date(params["from"], "--from"), _date(params["to"], "--to")
    every = _every(params.get("every_days", 7))
    n = max(0, (end - start).days // every + 1)
    limit = int(params.get("max_snapshots") or DEFAULT_MAX_SNAPSHOTS)
    if n > limit:
        raise InputError(f"the backtest would replay {n:,} snapshots ({start} .. {end} every {every} d), more "
                         f"than --max-snapshots {limit:,}",
                         hint="use a larger --every or a shorter --from .. --to, or raise --max-snapshots")
    return n


def backtest_window(params: dict[str, Any]) -> tuple[dt.date, dt.date, int]:
    """(from, to, every_days) of the backtest in `params`, parsed as the backtest step parses them."""
    return _date(params["from"], "--from"), _date(params["to"], "--to"), _every(params.get("every_days", 7))

def forecast_config(p, params: dict[str, Any]):
    """The pipeline's forecast config with the stage order defaulted to stages.open and
    command-line overrides (period, periods, target) applied."""
    cfg = p.forecast
    upd: dict[str, Any] = {}
    if cfg.stage_order is None:
        upd["stage_order"] = list(p.stages.open)
    for k in ("period", "periods", "target"):
        if params.get(k) is not None:
            upd[k] = params[k]
    if upd:
        try:
            cfg = cfg.model_validate({**cfg.model_dump(), **upd})
        except ValidationError as e:  # e.g. --period week: bad input, not an internal error
            err = e.errors()[0]
            raise InputError(f"--{err['loc'][0]} {upd.get(err['loc'][0])!r}: {err['msg']}") from None
    return cfg


def step_forecast(loaded, p, params: dict[str, Any], say=print) -> list[Path]:
    """Forecast as of p.as_of (or a backtest with params['backtest']); see the module docstring."""
    t = loaded.tables
    if t.opportunities is None:
        raise InputError("the forecast needs an opportunities file (--opportunities or inputs.opportunities)")
    if not params.get("out"):
        raise InputError("forecast step needs 'out: PATH'")
    out = Path(params["out"])
    cfg = forecast_config(p, params)
    if params.get("backtest"):
        n_snaps = backtest_snapshots(params)
        say(f"backtest: {n_snaps:,} snapshots")
        step = max(1, n_snaps // 10)

        def progress(i, n, snap):  # about ten lines, however long the backtest
            if i % step == 0:
                say(f"snapshot {i + 1:,}/{n:,} ({snap.date()})")
        bt = run_backtest(t.opportunities, start=_date(params["from"], "--from"), end=_date(params["to"], "--to"),
                          every_days=_every(params.get("every_days", 7)), period=cfg.period,
                          stage_history=t.stage_history, config=cfg, periods=params.get("periods"),
                          progress=progress)
        if not len(bt.rows):
            raise InputError("the backtest scored nothing: no snapshot had closed deals before it and a "
                             "period ending on or before --to")
        from ..plots import close
        fig = backtest_chart(bt.rows, title=f"forecast backtest ({cfg.period}, every {_every(params.get('every_days', 7))} d)")
        written = [io.write_frame(bt.rows, out, index=False),
                   io.write_frame(bt.summary, sibling(out, "_summary"), index=False),
                   io.write_frame(bt.calibration, sibling(out, "_calibration"), index=False),
                   io.write_figure(fig, sibling(out, "", ".png"))]
        if t.opportunity_snapshots is not None:   # whose calls to trust, beside the model's
            written.append(io.write_frame(_backtest_reps(t, bt, cfg, params), sibling(out, "_reps"), index=False))
        close({"chart": fig})
        for n in bt.notes:
            say(n)
        _track(p, params, kind="backtest", metrics=_bt_metrics(bt), info={"from": str(params["from"]),
                                                                          "to": str(params["to"])}, say=say)
        params["_result"] = bt
        return written
    from ..pipeline import require_as_of
    as_of = require_as_of(p)
    by = owner_grouping(t, params.get("by"))
    res = run_forecast(t.opportunities, as_of=as_of, stage_history=t.stage_history, customers=t.customers,
                       period=cfg.period, periods=cfg.periods, by=by, config=cfg)
    extra = owner_outputs(res, t, cfg, as_of=as_of, by=by, targets_file=_source(p, "targets"))
    res = ForecastResult(res.periods, res.funnel, extra.pop("deals", res.deals), {**res.info, "by": by})
    written = [io.write_frame(res.periods, out, index=False),
               io.write_frame(res.funnel, sibling(out, "_funnel"), index=False),
               io.write_frame(res.deals, sibling(out, "_deals"), index=False)]
    written += [io.write_frame(frame, sibling(out, f"_{name}"), index=False) for name, frame in extra.items()]
    for key in ("creation_trend", "recalibration", "probability_note"):
        if res.info.get(key):
            say(f"{key.replace('_', ' ')}: {res.info[key]}")
    _track(p, params, kind="forecast", metrics=_fc_metrics(res), info=res.info, say=say)
    params["_result"] = res
    return written


def _backtest_reps(t, bt: BacktestResult, cfg, params: dict[str, Any]) -> pd.DataFrame:
    """The reps' calls scored beside the backtest's per-deal probabilities: only what was known
    the day after --to (the backtest scores periods ending by then)."""
    return rep_accuracy(t.opportunity_snapshots, t.opportunities, period=cfg.period,
                        as_of=_date(params["to"], "--to") + dt.timedelta(days=1),
                        periods=params.get("periods") or cfg.backtest_periods, model_probabilities=bt.deal_probabilities,
                        tolerance_days=_every(params.get("every_days", 7)) - 1)


def _source(p, table: str) -> str:
    spec = p.inputs.get(table)
    return spec.source if spec is not None else table


def owner_grouping(tables, by: str | None) -> str | None:
    """The forecast's grouping: 'owner' when targets or rep calls are given and no --by was
    (they are per owner); InputError when --by names another grouping beside targets."""
    if tables.targets is not None and by not in (None, "owner"):
        raise InputError(f"targets are per owner, but --by is '{by}': use --by owner (or leave --by out)")
    if by is None and (tables.targets is not None or has_rep_calls(tables.opportunities)
                       or tables.opportunity_snapshots is not None):
        return "owner"
    return by


def owner_outputs(res: ForecastResult, tables, cfg, *, as_of, by: str | None,
                  targets_file: str = "targets") -> dict[str, pd.DataFrame]:
    """The extra forecast outputs, by name (written as <stem>_<name>): 'owners' (per owner and
    period with targets and the rep call) when grouped by owner; with rep calls (the latest
    snapshot before as_of, else the opportunities' columns: `calls_as_of`) 'deals' (the deals
    with the rep's call beside the model's) and 'disagreements'; with a snapshot history
    'reps' (each rep's past calls scored, no model beside them: the backtest adds it)."""
    if by != "owner":
        return {}
    targets = None
    if tables.targets is not None:
        owners = set(tables.opportunities["owner"].dropna().astype("str")) if "owner" in tables.opportunities else set()
        targets = resolve_targets(tables.targets, owners=owners, period=cfg.period, file=targets_file)
    owners_t = owner_table(res.periods, targets=targets)
    out: dict[str, pd.DataFrame] = {}
    calls_now = calls_as_of(tables.opportunities, tables.opportunity_snapshots, as_of=as_of)
    if has_rep_calls(calls_now):
        deals = attach_rep_calls(res.deals, calls_now, commit=cfg.commit_threshold, best_case=cfg.best_case_threshold)
        pt = period_table(as_of, cfg.period, cfg.periods)
        calls = rep_call_table(deals, pt, as_of=as_of)
        owners_t = owners_t.merge(calls, on=["owner", "period"], how="left")
        for c in ("rep_deals", "rep_commit", "rep_best_case", "rep_expected"):
            owners_t[c] = owners_t[c].fillna(0).astype(calls[c].dtype)
        out.update(deals=deals, disagreements=disagreements(deals))
    out["owners"] = owners_t
    if tables.opportunity_snapshots is not None:
        out["reps"] = rep_accuracy(tables.opportunity_snapshots, tables.opportunities, as_of=as_of, period=cfg.period)
    return out


def _fc_metrics(res: ForecastResult) -> dict[str, float]:
    tot = res.periods[res.periods["group"] == "(all)"]
    m = {}
    for _, r in tot.iterrows():
        for c in ("expected", "p10", "p90", "stage_weighted", "naive", "closed_won"):
            m[f"{c}.{r['period']}"] = float(r[c])
    m["open_deals"] = float(res.info.get("n_open_deals", 0))
    for per, q in res.info.get("recalibration_widen", {}).items():
        m[f"recalibration_widen.{per}"] = float(q)     # P10-P90 widening per side, in widths
    for per, n in res.info.get("recalibration_replays", {}).items():
        m[f"recalibration_replays.{per}"] = float(n)
    if pd.notna(res.info.get("deal_model_val_auc")):
        m["deal_model_val_auc"] = float(res.info["deal_model_val_auc"])
    return m


def _bt_metrics(bt: BacktestResult) -> dict[str, float]:
    m = {}
    for _, r in bt.summary.iterrows():
        for c in ("n", "mape", "bias", "coverage", "wape", "brier", "ece"):
            if pd.notna(r[c]):
                m[f"{r['method']}.{c}"] = float(r[c])
    if len(bt.recalibration):
        m["recalibration_widen_mean"] = float(bt.recalibration["widen"].astype(float).mean())
    return m


def _track(p, params: dict[str, Any], *, kind: str, metrics: dict[str, float], info: dict, say) -> None:
    if not params.get("track", True):
        return
    from ..tracking import Tracker
    tracker = Tracker(params.get("tracking_uri") or p.tracking_uri)
    flat = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in info.items()}
    run_id = tracker.log_forecast_run(kind=kind, as_of=p.as_of, params=flat, metrics=metrics)
    say(f"logged {kind} run {run_id[:12]} to {tracker.tracking_uri}")
