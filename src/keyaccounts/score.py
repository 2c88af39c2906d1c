"""Apply the champion models to features as of a date."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .config import Pipeline
from .errors import InputError
from .features import Tables, build_features
from .train import btyd_baseline


def _check_features(name: str, card: dict, X: pd.DataFrame) -> pd.DataFrame:
    want = list(card.get("feature_names") or [])
    missing = [c for c in want if c not in X.columns]
    if missing:
        raise InputError(f"model {name} v{card.get('version')} was trained on features that the data "
                         f"does not produce now: {missing[:10]}",
                         hint="pass the same kinds of tables (e.g. --invoices, cost column) as at training, "
                              "or retrain")
    return X[want] if want else X


def _load(tracker, name: str, prefer: str):
    try:
        return tracker.load_champion(name, prefer=prefer)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - registry/bundle absent: say what to do
        raise InputError(f"no usable champion model '{name}' ({type(e).__name__}: {e})",
                         hint="run `keyaccounts train` for this horizon first") from None


def score_customers(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                    prefer: str = "registry") -> tuple[pd.DataFrame, dict[str, str]]:
    """Per customer with a positive purchase before as_of: churn_probability, expected_value
    (net spend over [as_of, as_of + H)), p_alive, expected_purchases, btyd_value, context."""
    from .tracking import model_name
    f = build_features(tables, as_of=as_of, config=p.features)
    f = f[f["frequency"] > 0]
    if f.empty:
        raise InputError(f"no customer has a purchase before as_of {as_of}: nothing to score")
    versions = {}
    out = pd.DataFrame(index=f.index)
    for fam, col in (("churn", "churn_probability"), ("value", "expected_value")):
        name = model_name(fam, horizon_days)
        model, card = _load(tracker, name, prefer)
        X = _check_features(name, card, f)
        out[col] = model.predict_proba(X)[:, 1] if fam == "churn" else np.maximum(model.predict(X), 0.0)
        versions[name] = str(card.get("version"))
        out[f"{fam}_model_version"] = f"{name}/v{card.get('version')}"
    b = btyd_baseline(tables.transactions, as_of=as_of, horizon_days=horizon_days, index=f.index)
    out = out.join(b[["p_alive", "expected_purchases", "btyd_value"]])
    out["recency_days"] = f["recency_days"]
    out["lifecycle_stage"] = f["lifecycle_stage"].astype("str")
    if tables.customers is not None:
        ctx = [c for c in ("name", "owner", "region") if c in tables.customers.columns]
        if ctx:
            cust = tables.customers.set_index(tables.customers["customer_id"].astype("str"))[ctx]
            out = out.join(cust)
    out.insert(0, "as_of", pd.Timestamp(as_of))
    return out, versions


def score_deals(tables: Tables, *, as_of: dt.date, horizon_days: int, p: Pipeline, tracker,
                prefer: str = "registry") -> tuple[pd.DataFrame, dict[str, str]]:
    """Per opportunity open at as_of: close_probability (won within the horizon)."""
    from .features import deals
    from .tracking import model_name
    d = deals(tables.opportunities, as_of=as_of, open_stages=p.stages.open, stage_history=tables.stage_history,
              txns=tables.transactions, owner_prior=p.features.owner_win_rate_prior)
    name = model_name("deal", horizon_days)
    model, card = _load(tracker, name, prefer)
    out = d[["customer_id", "owner", "stage_at_as_of", "amount"]].copy()
    out["close_probability"] = model.predict_proba(d)[:, 1] if len(d) else np.zeros(0)
    out["deal_model_version"] = f"{name}/v{card.get('version')}"
    out.insert(0, "as_of", pd.Timestamp(as_of))
    return out, {name: str(card.get("version"))}
