"""Collect everything the HTML report shows, as plain values for the template.

`build_report(loaded, p, tracker=...)` scores the accounts and open deals with the champion
models, reads the model cards and training drift references back from MLflow, runs the funnel
forecast and its backtest, draws the charts and returns a `Report` (context + rendered HTML).
Nothing here writes a file: the caller writes `Report.html` through `io.write_text`.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import Pipeline
from ..tiers import criteria_in_force
from . import charts, tables

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


def _forecast_api():
    """The forecast module, or the reason it cannot be used."""
    try:
        from .. import forecast
    except ImportError as e:
        return None, f"the forecast module is not available ({e})"
    return forecast, None


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
    from ..drift import psi_table
    from ..tracking import DRIFT_REFERENCE
    if card is None:
        return None
    ref = tracker.run_dict(card["run_id"], DRIFT_REFERENCE)
    if ref is None:
        return {"label": label, "model": f"{card['name']} v{card['version']}", "missing": True}
    t = psi_table(ref, X, threshold=threshold)
    return {"label": label, "model": f"{card['name']} v{card['version']}", "missing": False,
            "n_reference": ref.get("n"), "n_current": len(X), "drifted": t.loc[t["drifted"], "feature"].tolist(),
            "rows": _records(t), "chart": charts.drift_chart(t, threshold) if t["psi"].notna().any() else None}


def _forecast_section(loaded, p: Pipeline, as_of: dt.date, say) -> dict[str, Any]:
    t = loaded.tables
    if t.opportunities is None:
        return {"available": False, "reason": "no opportunities table was given"}
    fc, why = _forecast_api()
    if fc is None:
        return {"available": False, "reason": why}
    cfg = p.forecast.model_copy(update={"stage_order": p.forecast.stage_order or list(p.stages.open)})
    say("forecasting the funnel")
    try:
        res = fc.run_forecast(t.opportunities, as_of=as_of, stage_history=t.stage_history, customers=t.customers,
                              period=cfg.period, periods=cfg.periods, config=cfg)
    except fc.NotEnoughHistory as e:
        return {"available": False, "reason": str(e)}
    periods = res.periods[res.periods["group"] == fc.ALL] if "group" in res.periods.columns else res.periods
    deals = res.deals.assign(expected=res.deals["close_probability"] * res.deals["amount"].fillna(0.0))
    out: dict[str, Any] = {
        "available": True, "period": cfg.period,
        "periods": _records(periods), "funnel": _records(res.funnel.sort_values("order")),
        "funnel_chart": charts.funnel_chart(res.funnel) if len(res.funnel) else None,
        "chart": charts.forecast_chart(periods) if len(periods) else None,
        "categories": _records(deals.groupby("category", sort=True).agg(
            deals=("opportunity_id", "size"), amount=("amount", "sum"), expected=("expected", "sum")).reset_index()),
        "backtest": None, "recalibration": res.info.get("recalibration"), "trend": res.info.get("creation_trend")}
    days = p.report.backtest_days
    if days > 0:
        say("backtesting the forecast")
        # Snapshots before as_of, scored only on periods that ended before it: nothing on or
        # after as_of is read.
        start, end = as_of - dt.timedelta(days=days), as_of - dt.timedelta(days=1)
        bt = fc.run_backtest(t.opportunities, start=start, end=end, every_days=p.report.backtest_every_days,
                             period=cfg.period, stage_history=t.stage_history, config=cfg)
        ok = len(bt.rows) > 0
        out["backtest"] = {
            "available": ok, "start": start.isoformat(), "end": end.isoformat(),
            "every_days": p.report.backtest_every_days, "summary": _records(bt.summary), "notes": bt.notes,
            "reason": f"no {cfg.period} ended between {start} and {end} after a snapshot with closed deals "
                      f"(raise report.backtest_days)",
            "chart": charts.figure_uri(fc.backtest_chart(bt.rows, title="backtest: forecast vs actual won revenue"))
            if ok else None}
    return out


def _changes_section(accounts: pd.DataFrame, previous: pd.DataFrame, risk_high: float,
                     per_kind: int = 10) -> dict[str, Any]:
    """Counts per kind of change since the previous list and the first rows of each kind (the
    rows are those of <stem>_changes.csv: keyaccounts.changes computes both)."""
    from ..changes import compare_lists
    ch = compare_lists(accounts, previous, risk_high=risk_high)
    rows = ch.rows.groupby("change", sort=False, group_keys=False).head(per_kind)
    return {"as_of_before": ch.as_of_before, "as_of_now": ch.as_of_now, "counts": ch.counts,
            "min_move": ch.min_move, "accounts_before": ch.accounts_before, "accounts_now": ch.accounts_now,
            "rows": _records(rows), "per_kind": per_kind}


def build_report(loaded, p: Pipeline, *, tracker, prefer: str = "registry",
                 progress: Callable[[str], None] | None = None, previous: pd.DataFrame | None = None) -> Report:
    """Score, read the model cards, forecast and render (see module docstring). Needs champion
    churn and value models for p.horizon_days (InputError otherwise). With `previous` (a list
    validated by changes.previous_list) the report gets a "What changed" section."""
    from ..features import build_features
    from ..pipeline import require_as_of
    from ..score import score_accounts, score_deals
    from ..tracking import data_fingerprint, model_name
    from .html import render

    say = progress or (lambda msg: None)
    as_of = require_as_of(p)
    H, cfg = p.horizon_days, p.report
    t = loaded.tables
    warnings: list[str] = []

    say("scoring accounts")
    accounts, versions = score_accounts(t, as_of=as_of, horizon_days=H, p=p, tracker=tracker, prefer=prefer,
                                        reasons=f"top:{cfg.top_n}")
    deals = None
    if t.opportunities is not None:
        say("scoring open deals")
        deals, dv = score_deals(t, as_of=as_of, horizon_days=H, p=p, tracker=tracker, prefer=prefer, reasons="none")
        versions.update(dv)

    say("reading model cards")
    cards = {}
    for fam in FAMILIES:
        name = model_name(fam, H)
        if name in versions:
            cards[fam] = _model_card(tracker, name, fam) if prefer == "registry" else None

    say("measuring feature drift")
    f = build_features(t, as_of=as_of, config=p.features)
    f = f[f["frequency"] > 0]
    drift = []
    raw_cards = {fam: tracker.champion_card(model_name(fam, H)) for fam in ("churn", "deal")
                 if cards.get(fam) is not None}
    if "churn" in raw_cards:
        drift.append(_drift(tracker, raw_cards["churn"], f, cfg.psi_threshold, "customer features (churn and value models)"))
    if "deal" in raw_cards and t.opportunities is not None:
        from ..features import deals as deal_features
        d = deal_features(t.opportunities, as_of=as_of, open_stages=p.stages.open, stage_history=t.stage_history,
                          txns=t.transactions, owner_prior=p.features.owner_win_rate_prior)
        if len(d):
            drift.append(_drift(tracker, raw_cards["deal"], d, cfg.psi_threshold, "open-deal features (deal model)"))
    drift = [d for d in drift if d is not None]
    for d in drift:
        if not d["missing"] and d["drifted"]:
            warnings.append(f"{d['label']}: {len(d['drifted'])} feature(s) with PSI above {cfg.psi_threshold:g} "
                            f"({', '.join(d['drifted'][:5])}{', ...' if len(d['drifted']) > 5 else ''})")

    forecast = _forecast_section(loaded, p, as_of, say)

    say("drawing charts")
    value = accounts["expected_value"]
    top20 = tables.top_share(value, 0.2)
    tier_tables = [{"column": col, "title": title, "rows": _records(tables.tier_summary(accounts, col))}
                   for col, title in TIER_COLUMNS if col in accounts.columns]
    matrix = tables.risk_value_matrix(accounts, medium=cfg.risk_medium, high=cfg.risk_high)
    grid = {(r["value_tier"], r["risk_band"]): r for r in _records(matrix)}
    value_tiers = list(dict.fromkeys(matrix["value_tier"]))
    top = accounts.head(cfg.top_n).reset_index()
    high_risk = accounts["churn_probability"] >= cfg.risk_high
    key_tiers = accounts["composite_tier"].isin(["strategic", "key"])
    first = forecast["periods"][0] if forecast.get("available") and forecast["periods"] else None
    headline = {
        "accounts": len(accounts), "expected_value": float(value.sum()),
        "value_at_risk": float(accounts["value_at_risk"].sum()), "high_risk": int(high_risk.sum()),
        "high_risk_value_at_risk": float(accounts.loc[high_risk, "value_at_risk"].sum()),
        "key_accounts": int(key_tiers.sum()), "kaism_key": int((accounts["kaism_quadrant"] == "key").sum()),
        "top20_share": top20,
        "open_deals": None if deals is None else len(deals),
        "pipeline_amount": None if deals is None else float(deals["amount"].fillna(0).sum()),
        "deal_expected_revenue": None if deals is None else float(deals["expected_revenue"].sum()),
        "forecast_first": first, "drift_warnings": len(warnings),
    }
    quality = [{"table": r.table, "file": r.file, "read": r.rows_read, "kept": r.rows_kept,
                "dropped": r.rows_read - r.rows_kept, "reasons": sorted(r.dropped.items()), "notes": list(r.notes)}
               for r in loaded.reports]
    context = {
        "title": f"Key accounts and forecast as of {as_of.isoformat()}",
        "as_of": as_of.isoformat(), "horizon_days": H, "pipeline": p.name,
        "fingerprint": data_fingerprint({n: getattr(t, n) for n in ("transactions", "customers", "invoices",
                                                                      "opportunities", "stage_history")
                                         if getattr(t, n) is not None})[:12],
        "versions": dict(sorted(versions.items())), "sections": SECTIONS, "headline": headline,
        "warnings": warnings, "top_n": cfg.top_n, "key_accounts": _records(top),
        "tiers": tier_tables, "pareto_chart": charts.pareto_chart(tables.pareto_curve(value), top20),
        "kaism_chart": charts.kaism_chart(accounts, p.tiers.kaism.split),
        "kaism_counts": _records(tables.tier_summary(accounts, "kaism_quadrant")),
        "criteria": _records(criteria_in_force(p.tiers)),
        "risk": {"medium": cfg.risk_medium, "high": cfg.risk_high, "tiers": value_tiers, "bands": tables.RISK_BANDS,
                 "grid": {f"{k[0]}|{k[1]}": v for k, v in grid.items()},
                 "chart": charts.risk_value_chart(accounts, medium=cfg.risk_medium, high=cfg.risk_high),
                 "at_risk": _records(accounts.sort_values("value_at_risk", ascending=False, kind="stable")
                                     .head(10).reset_index())},
        "forecast": forecast, "cards": [c for c in (cards.get(f) for f in FAMILIES) if c is not None],
        "cards_note": None if prefer == "registry" else "models were loaded from exported bundles: "
                                                        "model cards need the MLflow registry",
        "quality": quality, "drift": drift, "psi_threshold": cfg.psi_threshold,
    }
    if previous is not None:
        context["changes"] = _changes_section(accounts, previous, cfg.risk_high)
        context["sections"] = SECTIONS[:2] + ("What changed",) + SECTIONS[2:]
    say("rendering HTML")
    return Report(html=render(context), context=context, warnings=warnings)
