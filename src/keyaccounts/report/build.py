"""Collect everything the HTML report shows, as plain values for the template.

`build_report(loaded, p, tracker=..., scores=..., forecast=...)` renders the score and forecast
results it is given (results.ScoreResult / ForecastOutcome: the steps of the same pipeline run, or
their files read back), reads the model cards and training drift references back from MLflow,
draws the charts and returns a `Report` (context + rendered HTML). Only what it is not given is
computed here (scoring, the forecast, its backtest), and each time that is said in the progress.
Nothing here writes a file: the caller writes `Report.html` through `io.write_text`.
"""
from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import forecast as fc
from ..changes import compare_lists
from ..config import Pipeline
from ..drift import psi_table
from ..errors import InputError
from ..features import build_features
from ..features import deals as deal_features
from ..results import ForecastOutcome, ScoreResult
from ..score import parse_reasons, score_accounts_and_features, score_deals_and_features
from ..tiers import criteria_in_force
from ..tracking import DRIFT_REFERENCE, data_fingerprint, model_name
from . import charts, tables
from .html import render

SECTIONS = ("Headline numbers", "Key accounts", "Tier distribution", "KAISM matrix", "Criteria in force",
            "Value at risk",
            "Sales funnel", "Forecast", "Model cards", "Data quality", "Drift")
FAMILIES = ("churn", "value", "deal")
MODEL_METRICS = {"churn": ("roc_auc", "pr_auc", "brier", "ece", "log_loss"),
                 "deal": ("roc_auc", "pr_auc", "brier", "ece", "log_loss"),
                 "value": ("gini", "spearman", "mae", "total_rel_error", "top_decile_capture")}
LOWER_IS_BETTER = {"brier", "ece", "log_loss", "mae"}
CLOSEST_TO_ZERO = {"total_rel_error"}
MODEL_FIGURES = (("calibration", "Calibration"), ("shap_summary", "SHAP summary"), ("lift", "Decile lift"))
TIER_COLUMNS = (("abc_history", "ABC (history)"), ("abc_predicted", "ABC (predicted)"), ("pyramid", "Pyramid"),
                ("rfm_segment", "RFM segment"), ("composite_tier", "Composite tier"))


@dataclass
class Report:
    """The rendered report and what went into it."""

    html: str
    context: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NaN/NA turned into None (the template prints '-')."""
    out = []
    for row in df.to_dict("records"):
        out.append({k: (None if (v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                                 or v is pd.NaT) else v) for k, v in row.items()})
    return out


def metrics_table(family: str, metrics: dict[str, float]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) comparing the model with its baselines on the validation fold: one row per
    metric of MODEL_METRICS[family] the run logged; columns 'model' then each baseline that
    logged `<baseline>_<metric>`; 'best' names the winning column."""
    wanted = [m for m in MODEL_METRICS.get(family, ()) if m in metrics]
    baselines: list[str] = []
    for key in sorted(metrics):
        for m in wanted:
            prefix = key[: -len(m) - 1]
            if key.endswith("_" + m) and prefix and "." not in prefix and prefix not in ("raw", "gate") \
                    and not prefix.startswith("gate_") and prefix not in baselines:
                baselines.append(prefix)
    rows = []
    for m in wanted:
        vals = {"model": metrics.get(m)} | {b: metrics.get(f"{b}_{m}") for b in baselines}
        finite = {k: v for k, v in vals.items() if v is not None and np.isfinite(v)}
        if m in CLOSEST_TO_ZERO:
            finite = {k: abs(v) for k, v in finite.items()}
        best = (min(finite, key=finite.get) if m in LOWER_IS_BETTER | CLOSEST_TO_ZERO
                else max(finite, key=finite.get)) if finite else None
        rows.append({"metric": m, "values": [vals[c] for c in ["model", *baselines]], "best": best,
                     "lower_is_better": m in LOWER_IS_BETTER, "closest_to_zero": m in CLOSEST_TO_ZERO})
    return ["model", *baselines], rows


def _model_card(tracker, name: str, family: str) -> dict[str, Any] | None:
    card = tracker.champion_card(name)
    if card is None:
        return None
    columns, rows = metrics_table(family, card.get("metrics") or {})
    figures = []
    for fig, title in MODEL_FIGURES:
        raw = tracker.run_artifact(card["run_id"], f"figures/{fig}.png")
        if raw is not None:
            figures.append({"title": title, "uri": charts.png_uri(raw)})
    params, tags = card.get("params", {}), card.get("tags", {})
    return {"name": name, "family": family, "version": card["version"], "run_id": card["run_id"],
            "as_of": params.get("as_of"), "trained": card["started"].strftime("%Y-%m-%d %H:%M UTC"),
            "fingerprint": (card.get("data_fingerprint") or "")[:12], "n_features": len(card.get("feature_names") or []),
            "kind": params.get("model_kind") or "", "refused_reason": params.get("refused_reason") or "",
            "promotion": tags.get("promotion_reason", ""), "metric_columns": columns, "metrics": rows,
            "figures": figures, "metrics_note": params.get("metrics_note") or ""}


def _drift(tracker, card: dict | None, X: pd.DataFrame, threshold: float, label: str) -> dict[str, Any] | None:
    if card is None:
        return None
    ref = tracker.run_dict(card["run_id"], DRIFT_REFERENCE)
    if ref is None:
        return {"label": label, "model": f"{card['name']} v{card['version']}", "missing": True}
    t = psi_table(ref, X, threshold=threshold)
    return {"label": label, "model": f"{card['name']} v{card['version']}", "missing": False,
            "n_reference": ref.get("n"), "n_current": len(X), "drifted": t.loc[t["drifted"], "feature"].tolist(),
            "rows": _records(t), "chart": charts.drift_chart(t, threshold) if t["psi"].notna().any() else None}


def _forecast_section(loaded, p: Pipeline, as_of: dt.date, say, given: ForecastOutcome | None = None) -> dict[str, Any]:
    """The funnel and forecast section: the forecast step's result when `given` holds one, else
    the forecast run here (said); the backtest likewise (see _backtest)."""
    t = loaded.tables
    if t.opportunities is None and (given is None or given.forecast is None):
        return {"available": False, "reason": "no opportunities table was given"}
    if given is not None and given.forecast is not None:
        res, cfg = given.forecast, given.config
        by = res.info.get("by")
    else:
        cfg = p.forecast.model_copy(update={"stage_order": p.forecast.stage_order or list(p.stages.open)})
        by = fc.owner_grouping(t, None)   # per owner with targets or rep calls: the team rows are the same
        say("forecasting the funnel (no forecast results were given: computing them)")
        try:
            res = fc.run_forecast(t.opportunities, as_of=as_of, stage_history=t.stage_history, customers=t.customers,
                                  period=cfg.period, periods=cfg.periods, by=by, config=cfg)
        except fc.NotEnoughHistory as e:
            return {"available": False, "reason": str(e)}
    periods = res.periods[res.periods["group"] == fc.ALL] if "group" in res.periods.columns else res.periods
    deals = res.deals.assign(expected=res.deals["close_probability"] * res.deals["amount"].fillna(0.0))
    # per owner: targets, the reps' call beside the model, the deals they disagree on, whose calls to trust
    extra = fc.owner_outputs(res, t, cfg, as_of=as_of, by=by) if t.opportunities is not None else {}
    out: dict[str, Any] = {
        "available": True, "period": cfg.period, "open_pipeline": tables.open_pipeline_summary(periods, res.deals),
        "periods": _records(periods), "funnel": _records(res.funnel.sort_values("order")),
        "funnel_chart": charts.funnel_chart(res.funnel) if len(res.funnel) else None,
        "chart": charts.forecast_chart(periods) if len(periods) else None,
        "categories": _records(deals.groupby("category", sort=True).agg(
            deals=("opportunity_id", "size"), amount=("amount", "sum"), expected=("expected", "sum")).reset_index()),
        "owners": _records(tables.owner_rollup(extra["owners"], periods["period"].iloc[0]))
        if "owners" in extra and len(periods) else None,
        "rep_call": "rep_commit" in extra.get("owners", {}), "targets": t.targets is not None,
        "disagreements": _records(extra["disagreements"].head(10)) if "disagreements" in extra else None,
        "reps": _records(extra["reps"]) if "reps" in extra else None,
        "backtest": None, "recalibration": res.info.get("recalibration"), "trend": res.info.get("creation_trend")}
    out["backtest"] = _backtest(t, p, as_of, cfg, say, given)
    return out


def _backtest(t, p: Pipeline, as_of: dt.date, cfg, say, given: ForecastOutcome | None) -> dict[str, Any] | None:
    """The backtest a backtest step of the run replayed, else report.backtest_days of snapshots
    replayed here (the report's most expensive part: its time is said)."""
    if given is not None and given.backtest is not None:
        bt, (start, end, every) = given.backtest, given.backtest_window
    elif p.report.backtest_days > 0 and t.opportunities is not None:
        # Snapshots before as_of, scored only on periods that ended before it: nothing on or
        # after as_of is read.
        start, end = as_of - dt.timedelta(days=p.report.backtest_days), as_of - dt.timedelta(days=1)
        every = p.report.backtest_every_days
        say(f"backtesting the forecast (no backtest step ran): snapshots {start} .. {end} every {every} d")
        t0 = time.perf_counter()
        bt = fc.run_backtest(t.opportunities, start=start, end=end, every_days=every,
                             period=cfg.period, stage_history=t.stage_history, config=cfg)
        say(f"backtest: {time.perf_counter() - t0:.1f}s (report.backtest_days 0 leaves it out)")
    else:
        return None
    ok = len(bt.rows) > 0
    # the reps' past calls scored beside the backtest's own deal probabilities, on the same deal-snapshots
    reps = fc.rep_accuracy(t.opportunity_snapshots, t.opportunities, as_of=end + dt.timedelta(days=1),
                           period=cfg.period, periods=cfg.backtest_periods, model_probabilities=bt.deal_probabilities,
                           tolerance_days=every - 1) if t.opportunity_snapshots is not None and ok else None
    return {
        "available": ok, "start": start.isoformat(), "end": end.isoformat(), "reps": _records(reps) if reps is not None else None,
        "every_days": every, "summary": _records(bt.summary), "notes": bt.notes,
        "reason": f"no {cfg.period} ended between {start} and {end} after a snapshot with closed deals "
                  f"(raise report.backtest_days)",
        "chart": charts.figure_uri(fc.backtest_chart(bt.rows, title="backtest: forecast vs actual won revenue"))
        if ok else None}


def _changes_section(accounts: pd.DataFrame, previous: pd.DataFrame, risk_high: float,
                     per_kind: int = 10) -> dict[str, Any]:
    """Counts per kind of change since the previous list and the first rows of each kind (the
    rows are those of <stem>_changes.csv: keyaccounts.changes computes both)."""
    ch = compare_lists(accounts, previous, risk_high=risk_high)
    rows = ch.rows.groupby("change", sort=False, group_keys=False).head(per_kind)
    return {"as_of_before": ch.as_of_before, "as_of_now": ch.as_of_now, "counts": ch.counts,
            "min_move": ch.min_move, "accounts_before": ch.accounts_before, "accounts_now": ch.accounts_now,
            "rows": _records(rows), "per_kind": per_kind}


def _scores(loaded, p: Pipeline, as_of: dt.date, *, tracker, prefer: str, given: ScoreResult | None,
            say) -> ScoreResult:
    """The score step's result when it is the list the report shows (every account, ranked by
    composite_score, reasons for at least the top report.top_n), else the accounts and open deals
    scored here (said). Reasons are kept for the first top_n accounts only, as the report itself
    scores them, so the same inputs give the same report either way."""
    top_n, t = p.report.top_n, loaded.tables
    why = _unusable(given, top_n)
    if why is None:
        return given
    if given is not None:
        say(f"scores of {given.source} not used ({why})")
    say("scoring accounts (no usable score results were given: computing them)")
    accounts, versions, f = score_accounts_and_features(t, as_of=as_of, horizon_days=p.horizon_days, p=p,
                                                        tracker=tracker, prefer=prefer, reasons=f"top:{top_n}")
    deals = d = None
    if t.opportunities is not None:
        say("scoring open deals")
        deals, dv, d = score_deals_and_features(t, as_of=as_of, horizon_days=p.horizon_days, p=p, tracker=tracker,
                                                prefer=prefer, reasons="none")
        versions.update(dv)
    return ScoreResult(accounts=accounts, deals=deals, versions=versions, features=f, deal_features=d,
                       reasons=f"top:{top_n}", source="the report")


def _unusable(given: ScoreResult | None, top_n: int) -> str | None:
    """Why the given score result is not the list the report shows; None when it is."""
    if given is None:
        return "none given"
    if not given.complete:
        return "it is cut (top) or ranked otherwise (by, rank_by)"
    mode, k = parse_reasons(given.reasons)
    if mode == "none" or (mode == "top" and k < top_n):
        return f"reasons {given.reasons}: the report lists reasons for the top {top_n}"
    return None


def _key_account_reasons(accounts: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """Reasons on the first top_n accounts only (a list scored with more reasons blanked below)."""
    cols = [c for c in accounts.columns if "_reasons_" in c]
    if not cols or len(accounts) <= top_n:
        return accounts
    out = accounts.copy()
    out.iloc[top_n:, [out.columns.get_loc(c) for c in cols]] = ""
    return out


def _drift_section(tracker, raw_cards: dict[str, dict], scores: ScoreResult, loaded, p: Pipeline,
                   as_of: dt.date, say) -> tuple[list[dict[str, Any]], list[str]]:
    """PSI of the scored features against each champion's training reference, on the feature
    frames the accounts and deals were scored from (built here only when scores came from files)."""
    t, threshold = loaded.tables, p.report.psi_threshold
    say("measuring feature drift")
    drift = []
    if "churn" in raw_cards:
        f = scores.features
        if f is None:
            say("building customer features for the drift check (the score files do not hold them)")
            f = build_features(t, as_of=as_of, config=p.features)
            f = f[f["frequency"] > 0]
        drift.append(_drift(tracker, raw_cards["churn"], f, threshold, "customer features (churn and value models)"))
    if "deal" in raw_cards and t.opportunities is not None:
        d = scores.deal_features
        if d is None:
            d = deal_features(t.opportunities, as_of=as_of, open_stages=p.stages.open, stage_history=t.stage_history,
                              txns=t.transactions, owner_prior=p.features.owner_win_rate_prior)
        if len(d):
            drift.append(_drift(tracker, raw_cards["deal"], d, threshold, "open-deal features (deal model)"))
    drift = [d for d in drift if d is not None]
    warnings = [f"{d['label']}: {len(d['drifted'])} feature(s) with PSI above {threshold:g} "
                f"({', '.join(d['drifted'][:5])}{', ...' if len(d['drifted']) > 5 else ''})"
                for d in drift if not d["missing"] and d["drifted"]]
    return drift, warnings


def _headline(accounts: pd.DataFrame, deals: pd.DataFrame | None, forecast: dict[str, Any], risk_high: float,
              n_warnings: int) -> dict[str, Any]:
    value = accounts["expected_value"]
    high_risk = accounts["churn_probability"] >= risk_high
    key_tiers = accounts["composite_tier"].isin(["strategic", "key"])
    first = forecast["periods"][0] if forecast.get("available") and forecast["periods"] else None
    return {
        "accounts": len(accounts), "expected_value": float(value.sum()),
        "value_at_risk": float(accounts["value_at_risk"].sum()), "high_risk": int(high_risk.sum()),
        "high_risk_value_at_risk": float(accounts.loc[high_risk, "value_at_risk"].sum()),
        "key_accounts": int(key_tiers.sum()), "kaism_key": int((accounts["kaism_quadrant"] == "key").sum()),
        "top20_share": tables.top_share(value, 0.2),
        "open_deals": None if deals is None else len(deals),
        "pipeline_amount": None if deals is None else float(deals["amount"].fillna(0).sum()),
        "deal_expected_revenue": None if deals is None else float(deals["expected_revenue"].sum()),
        "forecast_first": first, "drift_warnings": n_warnings,
    }


def _account_sections(accounts: pd.DataFrame, p: Pipeline) -> dict[str, Any]:
    """Key accounts, tiers, 80/20 curve, KAISM and the value-at-risk matrix."""
    cfg, value = p.report, accounts["expected_value"]
    matrix = tables.risk_value_matrix(accounts, medium=cfg.risk_medium, high=cfg.risk_high)
    grid = {(r["value_tier"], r["risk_band"]): r for r in _records(matrix)}
    return {
        "top_n": cfg.top_n, "key_accounts": _records(accounts.head(cfg.top_n).reset_index()),
        "tiers": [{"column": col, "title": title, "rows": _records(tables.tier_summary(accounts, col))}
                  for col, title in TIER_COLUMNS if col in accounts.columns],
        "pareto_chart": charts.pareto_chart(tables.pareto_curve(value), tables.top_share(value, 0.2)),
        "kaism_chart": charts.kaism_chart(accounts, p.tiers.kaism.split),
        "kaism_counts": _records(tables.tier_summary(accounts, "kaism_quadrant")),
        "risk": {"medium": cfg.risk_medium, "high": cfg.risk_high, "tiers": list(dict.fromkeys(matrix["value_tier"])),
                 "bands": tables.RISK_BANDS, "grid": {f"{k[0]}|{k[1]}": v for k, v in grid.items()},
                 "chart": charts.risk_value_chart(accounts, medium=cfg.risk_medium, high=cfg.risk_high),
                 "at_risk": _records(accounts.sort_values("value_at_risk", ascending=False, kind="stable")
                                     .head(10).reset_index())},
    }


def _cards(tracker, versions: dict[str, str], horizon_days: int, prefer: str,
           warnings: list[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(report card, raw champion card) per family scored; a champion that is not the version
    the accounts were scored with is warned about (scores read from older files)."""
    cards, raw = {}, {}
    for fam in FAMILIES:
        name = model_name(fam, horizon_days)
        if name not in versions or prefer != "registry":
            continue
        cards[fam] = _model_card(tracker, name, fam)
        if cards[fam] is None:
            continue
        raw[fam] = tracker.champion_card(name)
        if str(cards[fam]["version"]) != str(versions[name]):
            warnings.append(f"{name}: the scores are from v{versions[name]}, the champion (its card below) "
                            f"is v{cards[fam]['version']}")
    return cards, raw


def build_report(loaded, p: Pipeline, *, tracker, prefer: str = "registry",
                 progress: Callable[[str], None] | None = None, previous: pd.DataFrame | None = None,
                 scores: ScoreResult | None = None, forecast: ForecastOutcome | None = None) -> Report:
    """Render the given score and forecast results (computing only what is missing, see module
    docstring), with the model cards. Needs champion churn and value models for p.horizon_days
    (InputError otherwise). With `previous` (a list validated by changes.previous_list) the
    report gets a "What changed" section."""
    say = progress or (lambda msg: None)
    if p.as_of is None:
        raise InputError("as_of is required: pass --as-of YYYY-MM-DD or set as_of in the pipeline")
    as_of, H, t = p.as_of, p.horizon_days, loaded.tables
    sc = _scores(loaded, p, as_of, tracker=tracker, prefer=prefer, given=scores, say=say)
    accounts = _key_account_reasons(sc.accounts, p.report.top_n)
    say("reading model cards")
    warnings: list[str] = []
    cards, raw_cards = _cards(tracker, sc.versions, H, prefer, warnings)
    drift, drift_warnings = _drift_section(tracker, {f: raw_cards[f] for f in ("churn", "deal") if f in raw_cards},
                                           sc, loaded, p, as_of, say)
    warnings = drift_warnings + warnings
    fc_section = _forecast_section(loaded, p, as_of, say, forecast)
    say("drawing charts")
    quality = [{"table": r.table, "file": r.file, "read": r.rows_read, "kept": r.rows_kept,
                "dropped": r.rows_read - r.rows_kept, "reasons": sorted(r.dropped.items()), "notes": list(r.notes)}
               for r in loaded.reports]
    context = {
        "title": f"Key accounts and forecast as of {as_of.isoformat()}",
        "as_of": as_of.isoformat(), "horizon_days": H, "pipeline": p.name,
        "fingerprint": data_fingerprint({n: getattr(t, n) for n in ("transactions", "customers", "invoices",
                                                                      "opportunities", "stage_history")
                                         if getattr(t, n) is not None})[:12],
        "versions": dict(sorted(sc.versions.items())), "sections": SECTIONS,
        "headline": _headline(accounts, sc.deals, fc_section, p.report.risk_high, len(drift_warnings)),
        "warnings": warnings, **_account_sections(accounts, p),
        "criteria": _records(criteria_in_force(p.tiers)),
        "forecast": fc_section, "cards": [c for c in (cards.get(f) for f in FAMILIES) if c is not None],
        "cards_note": None if prefer == "registry" else "models were loaded from exported bundles: "
                                                        "model cards need the MLflow registry",
        "quality": quality, "drift": drift, "psi_threshold": p.report.psi_threshold,
    }
    if previous is not None:
        context["changes"] = _changes_section(accounts, previous, p.report.risk_high)
        context["sections"] = SECTIONS[:2] + ("What changed",) + SECTIONS[2:]
    say("rendering HTML")
    return Report(html=render(context), context=context, warnings=warnings)
