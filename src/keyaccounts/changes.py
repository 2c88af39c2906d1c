"""What changed since the last list: `keyaccounts score --compare-to previous_scores.csv`.

Compares the account list being written with a previous one (a CSV/Parquet list written by
`keyaccounts score`) and names, per account: new to / gone from the list, rank movers up and
down, newly at risk (churn probability crossing report.risk_high) and tier changes. Every row
carries both as_of dates. Pure pandas: reading the previous list is io's job, the caller's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

CHANGE_KINDS = ("new", "gone", "newly_at_risk", "moved_up", "moved_down", "tier_changed")
TIER_COLUMNS = ("composite_tier", "abc_predicted", "pyramid", "kaism_quadrant", "rfm_segment")
REQUIRED = ("customer_id", "rank", "as_of")
# A rank move counts when it is at least this share of the accounts on both lists (and >= 1
# place): on a list of thousands a few places is noise, on a list of ten it is not.
MOVE_SHARE = 0.05
COLUMNS = ["customer_id", "change", "detail", "rank_before", "rank_now", "rank_change",
           "churn_probability_before", "churn_probability_now", "composite_tier_before", "composite_tier_now",
           "as_of_before", "as_of_now"]


@dataclass
class Changes:
    """The change rows (COLUMNS) and their counts per kind, with both dates."""

    rows: pd.DataFrame
    counts: dict[str, int]
    as_of_before: str
    as_of_now: str
    min_move: int
    accounts_before: int
    accounts_now: int
    notes: list[str] = field(default_factory=list)


def previous_list(raw: pd.DataFrame, *, file: str) -> pd.DataFrame:
    """A previous score list (raw values as io.read_frame returns them) validated and typed:
    indexed by customer_id (str), rank (int), as_of (one date), churn_probability (float)
    and the tier columns when present. InputError naming the file, column and rows otherwise."""
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise InputError(f"not a list written by `keyaccounts score`: no column {', '.join(missing)}",
                         file=file, column=missing[0],
                         hint="--compare-to takes the .csv/.parquet account list of an earlier score run")
    df = raw.copy()
    df["customer_id"] = df["customer_id"].astype("string").str.strip()
    if df["customer_id"].isna().any() or df["customer_id"].duplicated().any():
        bad = df[df["customer_id"].isna() | df["customer_id"].duplicated(keep=False)].head(5)
        raise InputError("customer_id is blank or repeated", file=file, column="customer_id",
                         rows=bad.set_axis(bad.index + 2)[["customer_id", "rank"]])
    for col in ("rank", "churn_probability"):
        if col not in df.columns:
            continue
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() & df[col].notna() if col == "churn_probability" else num.isna()
        if bad.any():
            rows = df.loc[bad, ["customer_id", col]].head(5)
            raise InputError(f"{int(bad.sum())} value(s) are not numbers", file=file, column=col,
                             rows=rows.set_axis(rows.index + 2))
        df[col] = num.astype("float64")
    dates = pd.to_datetime(df["as_of"], errors="coerce").dt.normalize().dropna().unique()
    if len(dates) != 1:
        raise InputError(f"expected one as_of date, found {len(dates)}", file=file, column="as_of")
    df["as_of"] = dates[0]
    return df.set_index("customer_id")


def _as_of(df: pd.DataFrame) -> str:
    return pd.Timestamp(df["as_of"].iloc[0]).date().isoformat() if len(df) else ""


def _row(cid, change: str, detail: str, before: pd.Series | None, now: pd.Series | None) -> dict:
    def get(s, col):
        return None if s is None or col not in s.index or pd.isna(s[col]) else s[col]
    rb, rn = get(before, "rank"), get(now, "rank")
    return {"customer_id": cid, "change": change, "detail": detail,
            "rank_before": rb, "rank_now": rn,
            "rank_change": None if rb is None or rn is None else int(rb) - int(rn),
            "churn_probability_before": get(before, "churn_probability"),
            "churn_probability_now": get(now, "churn_probability"),
            "composite_tier_before": get(before, "composite_tier"),
            "composite_tier_now": get(now, "composite_tier")}


def compare_lists(now: pd.DataFrame, before: pd.DataFrame, *, risk_high: float = 0.5) -> Changes:
    """Change rows between the list `now` (as score_accounts returns it: customer_id index, rank,
    as_of) and the validated previous list `before` (previous_list). One row per account and
    kind of change; sorted by kind (CHANGE_KINDS order), then by size of the change, then id."""
    now = now.set_axis(now.index.astype("str"))
    common = now.index.intersection(before.index)
    min_move = max(1, math.ceil(MOVE_SHARE * len(common)))
    rows = [_row(c, "new", "new to the list", None, now.loc[c]) for c in now.index.difference(before.index)]
    rows += [_row(c, "gone", "no longer on the list", before.loc[c], None)
             for c in before.index.difference(now.index)]
    b, n = before.loc[common], now.loc[common]
    if "churn_probability" in b.columns and "churn_probability" in n.columns:
        hit = (n["churn_probability"] >= risk_high) & ~(b["churn_probability"] >= risk_high)
        rows += [_row(c, "newly_at_risk", f"churn probability {b.at[c, 'churn_probability']:.2f} -> "
                      f"{n.at[c, 'churn_probability']:.2f} (at risk from {risk_high:g})", b.loc[c], n.loc[c])
                 for c in common[hit.to_numpy()]]
    move = b["rank"].to_numpy(dtype="float64") - n["rank"].to_numpy(dtype="float64")
    for kind, mask in (("moved_up", move >= min_move), ("moved_down", move <= -min_move)):
        rows += [_row(c, kind, f"rank {int(b.at[c, 'rank'])} -> {int(n.at[c, 'rank'])}", b.loc[c], n.loc[c])
                 for c in common[mask]]
    for col in TIER_COLUMNS:
        if col in b.columns and col in n.columns:
            old, new = b[col].astype("string").fillna(""), n[col].astype("string").fillna("")
            rows += [_row(c, "tier_changed", f"{col}: {old[c] or '-'} -> {new[c] or '-'}", b.loc[c], n.loc[c])
                     for c in common[(old != new).to_numpy()]]
    out = pd.DataFrame(rows, columns=COLUMNS[:-2])
    out["as_of_before"], out["as_of_now"] = _as_of(before), _as_of(now)
    return Changes(rows=_sorted(out), counts={k: int((out["change"] == k).sum()) for k in CHANGE_KINDS},
                   as_of_before=_as_of(before), as_of_now=_as_of(now), min_move=min_move,
                   accounts_before=len(before), accounts_now=len(now))


def _sorted(out: pd.DataFrame) -> pd.DataFrame:
    """Kinds in CHANGE_KINDS order; inside a kind the biggest change first, then the id, so the
    file is the same bytes whatever order the lists came in."""
    kind = out["change"].map({k: i for i, k in enumerate(CHANGE_KINDS)})
    size = -out["rank_change"].astype("float64").abs().fillna(0.0)
    rank = out["rank_now"].astype("float64").fillna(out["rank_before"].astype("float64")).fillna(np.inf)
    key = pd.DataFrame({"k": kind, "s": size, "r": rank, "id": out["customer_id"].astype("str"),
                        "d": out["detail"].astype("str")})
    order = key.sort_values(["k", "s", "r", "id", "d"], kind="stable").index
    return out.loc[order].reset_index(drop=True)


def changes_path(out) -> str:
    """`<stem>_changes.csv` beside the account list `out` (its suffixes, .gz included, dropped)."""
    p = Path(out)
    stem = Path(p.stem).stem if p.suffix.lower() == ".gz" else p.stem
    return str(p.with_name(f"{stem}_changes.csv"))
