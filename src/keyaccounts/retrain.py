"""Scheduled retraining: `keyaccounts retrain -p pipeline.yaml --as-of today`.

Retrains (the `train` step: log, register, gate) when any rule of the pipeline's `retrain:`
fires against the current churn champion of the horizon:

- age: the champion was trained as of at least `max_age_days` before the new as_of;
- drift: at least `drift_min_features` churn-model features have a PSI above `drift_psi`
  (training reference vs the accounts at the new as_of; keyaccounts.drift, above chance);
- growth: the transactions grew by at least `min_new_rows_pct` percent since its training;
- no champion yet.

First of all: a finished training run of the same horizon with the same data fingerprint and
the same settings (pipeline.training_settings) means that training again would register an
identical version, so it never does. With no rule fired it says why not, rule by rule.
The age is measured in data time (as_of dates), so a decision is the same whenever it is rerun.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .config import TABLES, Pipeline
from .drift import psi_table
from .errors import InputError
from .pipeline import Loaded, customer_features, require_as_of, step_train, training_settings
from .tracking import DRIFT_REFERENCE, Tracker, data_fingerprint, model_name


@dataclass
class Decision:
    """Whether to retrain, and why (one line per rule, fired or not)."""

    retrain: bool
    reasons: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)  # names of the rules that fired ('identical' blocks)
    champion: str | None = None


def parse_as_of(value: str | None, *, today: dt.date | None = None) -> dt.date:
    """--as-of for retrain: YYYY-MM-DD or the word 'today' (the machine's local date). Required:
    the cut-off never defaults to the data's last date."""
    if value is None:
        raise InputError("retrain needs --as-of YYYY-MM-DD or --as-of today (the cut-off is never taken from "
                         "the data's last date)")
    if value.strip().lower() == "today":
        return today or dt.date.today()
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"--as-of '{value}' is neither YYYY-MM-DD nor the word today") from None


def _tables(loaded: Loaded) -> dict[str, pd.DataFrame]:
    return {n: getattr(loaded.tables, n) for n in TABLES if getattr(loaded.tables, n) is not None}


def _same_training(tracker, horizon_days: int, fingerprint: str, settings: str) -> str | None:
    """'run <id> (as of <date>)' of a finished churn training with this data and these settings."""
    runs = tracker.runs("churn")
    need = {"params.horizon_days": str(horizon_days), "params.data_fingerprint": fingerprint,
            "params.settings_hash": settings, "status": "FINISHED"}
    if runs.empty or any(c not in runs.columns for c in need):
        return None
    hit = runs
    for col, value in need.items():
        hit = hit[hit[col] == value]
    if hit.empty:
        return None
    row = hit.iloc[0]
    return f"run {row['run_id'][:8]} (as of {row.get('params.as_of', '?')})"


def _age_rule(params: dict, as_of: dt.date, max_age: int) -> tuple[bool, str]:
    trained = params.get("as_of")
    if not trained:
        return True, "age: the champion's training as_of is not recorded"
    days = (as_of - dt.date.fromisoformat(str(trained)[:10])).days
    op = ">=" if days >= max_age else "<"
    return days >= max_age, f"age: trained as of {trained}, {days} days before {as_of} ({op} max_age_days {max_age})"


def _growth_rule(params: dict, rows_now: int, min_pct: float) -> tuple[bool, str]:
    then = params.get("input_rows.transactions")
    if not then or int(then) <= 0:
        return False, "growth: the champion's training row count is not recorded (trained before retrain existed)"
    pct = (rows_now - int(then)) / int(then) * 100.0
    op = ">=" if pct >= min_pct else "<"
    return pct >= min_pct, (f"growth: {int(then):,} -> {rows_now:,} transaction rows, {pct:+.1f} % "
                            f"({op} min_new_rows_pct {min_pct:g})")


def _drift_rule(tracker, card: dict, X: pd.DataFrame, p: Pipeline) -> tuple[bool, str]:
    ref = tracker.run_dict(card["run_id"], DRIFT_REFERENCE)
    if ref is None:
        return False, "drift: the champion has no drift reference (rule skipped)"
    if X.empty:
        return False, "drift: no account with a purchase before as_of (rule skipped)"
    t = psi_table(ref, X, threshold=p.retrain.drift_psi)
    drifted = t.loc[t["drifted"], "feature"].tolist()
    fired = len(drifted) >= p.retrain.drift_min_features
    top = t["psi"].max()
    what = f"{len(drifted)} feature(s) with PSI > {p.retrain.drift_psi:g}" + (
        f" ({', '.join(drifted[:5])})" if drifted else f", highest {top:.3f}" if pd.notna(top) else "")
    return fired, f"drift: {what} ({'>=' if fired else '<'} drift_min_features {p.retrain.drift_min_features})"


def decide(loaded: Loaded, p: Pipeline, tracker) -> Decision:
    """The retrain decision at p.as_of (see module docstring)."""
    as_of = require_as_of(p)
    name = model_name("churn", p.horizon_days)
    tracker.check()
    fp, settings = data_fingerprint(_tables(loaded)), training_settings(p)
    same = _same_training(tracker, p.horizon_days, fp, settings)
    if same:
        return Decision(False, [f"same data (fingerprint {fp[:12]}) and settings ({settings}) as {same}: "
                                "training again would register an identical version"], ["identical"])
    card = tracker.champion_card(name)
    if card is None:
        return Decision(True, [f"no champion for {name} yet"], ["no champion"])
    params = card.get("params") or {}
    f = customer_features(loaded, p)
    f = f[f["frequency"] > 0].drop(columns="as_of")
    checks = {"age": _age_rule(params, as_of, p.retrain.max_age_days),
              "drift": _drift_rule(tracker, card, f, p),
              "growth": _growth_rule(params, len(loaded.tables.transactions), p.retrain.min_new_rows_pct)}
    fired = [k for k, (hit, _) in checks.items() if hit]
    return Decision(bool(fired), [why for _, why in checks.values()], fired, f"{name} v{card['version']}")


def step_retrain(loaded: Loaded, p: Pipeline, params: dict[str, Any], say=print) -> list[Path]:
    """Decide, say why, and train when a rule fired (params: dry_run, tracking_uri, models_dir)."""
    tracker = Tracker(params.get("tracking_uri") or p.tracking_uri, models_dir=params.get("models_dir", "models"),
                      promote_tolerance=p.train.promote_tolerance)
    d = decide(loaded, p, tracker)
    head = f"champion {d.champion}" if d.champion else "no champion"
    for why in d.reasons:
        say(f"  {why}")
    if not d.retrain:
        say(f"not retraining ({head}): " + ("identical training" if d.fired else "no rule fired"))
        return []
    if params.get("dry_run"):
        say(f"would retrain ({head}; {', '.join(d.fired)}) - dry run, nothing trained")
        return []
    say(f"retraining ({head}; {', '.join(d.fired)})")
    return step_train(loaded, p, params, say=say)
