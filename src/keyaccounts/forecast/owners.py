"""The per-owner roll-up a sales manager reads: per owner and forecast period, what is closed,
what the open pipeline and the deals not yet created are expected to add (with P10/P90), the
owner's target and the attainment, and, when the opportunities carry the reps' own calls, the
rep call beside the model (`repcall.rep_call_table`).

Targets come as a table (owner, period, target): period is a label of the forecast's period
kind ('2017Q3' for quarters, '2017-07' for months) or any date inside the period; owner
'(all)' is the whole team's target. Pure functions: no I/O.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .core import ALL

OWNER_COLUMNS = ["owner", "period", "period_start", "period_end", "closed_won", "existing_pipeline", "new_pipeline",
                 "expected", "p10", "p90", "target", "attainment", "gap"]


def _period_of(label: str, freq: str) -> pd.Period | None:
    """The period of `label` ('2017Q3', '2017-07', '2017-07-15'), None when it is not one."""
    text = str(label).strip()
    try:
        if freq == "M" and "Q" in text.upper():
            return None     # a quarter cannot be a month's target
        return pd.Period(text, freq=freq) if "Q" not in text.upper() else pd.Period(text, freq="Q")
    except (ValueError, TypeError):
        return None


def resolve_targets(targets: pd.DataFrame, *, owners: set[str], period: str, file: str = "targets") -> pd.DataFrame:
    """Targets as (owner, period label, target), one row per owner and period. InputError
    naming the file and the values when an owner is not an owner of any opportunity, a period
    is not a date or a label of the forecast's period kind, or an owner and period repeat."""
    freq = "Q" if period == "quarter" else "M"
    t = targets.copy()
    t["owner"] = t["owner"].astype("str")
    unknown = sorted(set(t["owner"]) - set(owners) - {ALL})
    if unknown:
        raise InputError(f"{len(unknown)} owner(s) in the targets are not an owner of any opportunity: "
                         + ", ".join(repr(o) for o in unknown[:8]), file=file, column="owner",
                         hint=f"owners in the opportunities: {', '.join(sorted(owners)[:12])}; "
                              f"'{ALL}' sets the team's target")
    per = [_period_of(v, freq) for v in t["period"]]
    bad = sorted({str(v) for v, p in zip(t["period"], per, strict=True) if p is None})
    if bad:
        example = "'2017Q3' or a date inside the quarter" if freq == "Q" else "'2017-07' or a date inside the month"
        raise InputError(f"{len(bad)} period value(s) in the targets are not a {period}: "
                         + ", ".join(repr(v) for v in bad[:8]), file=file, column="period",
                         hint=f"write the period as {example} (forecast.period is {period})")
    t["period"] = [str(p) for p in per]
    dup = t.duplicated(["owner", "period"], keep=False)
    if dup.any():
        pairs = sorted(set(zip(t.loc[dup, "owner"], t.loc[dup, "period"], strict=True)))
        raise InputError(f"{len(pairs)} owner and period pair(s) have more than one target: "
                         + ", ".join(f"{o} {p}" for o, p in pairs[:8]), file=file, column="period")
    return t[["owner", "period", "target"]].reset_index(drop=True)


def owner_table(periods: pd.DataFrame, *, targets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per owner (and '(all)', the team) and period: closed_won, existing_pipeline,
    new_pipeline, expected, p10, p90 from a forecast made `by='owner'`, then target,
    attainment = expected / target and gap = target - expected (positive: short of target).
    `targets` from `resolve_targets`; without it target, attainment and gap are NaN."""
    t = periods.rename(columns={"group": "owner"})
    t = pd.concat([t[t["owner"] != ALL], t[t["owner"] == ALL]], ignore_index=True)   # the team last
    if targets is not None and len(targets):
        key = targets.set_index(["owner", "period"])["target"]
        t["target"] = [key.get((o, p), np.nan) for o, p in zip(t["owner"], t["period"], strict=True)]
    else:
        t["target"] = np.nan
    t["target"] = t["target"].astype("float64")
    t["attainment"] = t["expected"] / t["target"]
    t["gap"] = t["target"] - t["expected"]
    return t[OWNER_COLUMNS].reset_index(drop=True)

