"""Data-quality summary: rows read, kept, dropped by reason, and notes."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class QualityReport:
    """What happened to one input table on its way in."""

    table: str
    file: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def as_dict(self) -> dict:
        return {"table": self.table, "file": self.file, "rows_read": self.rows_read,
                "rows_kept": self.rows_kept, "dropped": dict(self.dropped), "notes": list(self.notes)}


def summary_frame(reports: list[QualityReport]) -> pd.DataFrame:
    """One row per table: read, kept, dropped (total and by reason)."""
    rows = []
    for r in reports:
        rows.append({
            "table": r.table, "file": r.file, "rows_read": r.rows_read, "rows_kept": r.rows_kept,
            "rows_dropped": r.rows_read - r.rows_kept,
            "dropped_by_reason": "; ".join(f"{k}={v}" for k, v in sorted(r.dropped.items())) or "none",
            "notes": "; ".join(r.notes) or "none",  # not "-": a spreadsheet-safe export would quote it
        })
    return pd.DataFrame(rows)


# Below this share of the transactions' customers found in another table, the join is
# probably wrong (ids written differently: '1' vs '0001', 'C-1' vs 'c1'), not just incomplete.
ID_MATCH_THRESHOLD = 0.5
# as_of this long after the last transaction gives absurd recencies, not a forecast.
AS_OF_MAX_DAYS_AFTER_DATA = 3660


def id_match_warning(ids: pd.Series, other_ids: pd.Series, *, file: str, other_file: str,
                     threshold: float = ID_MATCH_THRESHOLD) -> str | None:
    """A warning (for the other table's quality notes) when fewer than `threshold` of the
    distinct `ids` (the transactions' customers) appear in `other_ids`, with an example of each
    id form; None when the join looks right."""
    mine = pd.Index(pd.unique(ids.dropna().astype("str")))
    theirs = pd.Index(pd.unique(other_ids.dropna().astype("str")))
    if not len(mine) or not len(theirs):
        return None
    share = float(mine.isin(theirs).mean())
    if share >= threshold:
        return None
    return (f"warning: only {share:.0%} of the {len(mine):,} customer ids in {file} appear in {other_file} "
            f"(e.g. {mine[0]!r} in {file}, {theirs[0]!r} in {other_file}): are the ids written the same way "
            "in both files?")


def as_of_problem(as_of, first: pd.Timestamp, last: pd.Timestamp, file: str) -> str | None:
    """Why `as_of` cannot give features from this data (before its first row, or years after
    its last), or None."""
    t = pd.Timestamp(as_of)
    if t <= first:
        return (f"--as-of {as_of} is on or before the first transaction in {file} ({first.date()}): "
                "features read only rows before as_of, so every customer would be empty")
    if (t - last).days > AS_OF_MAX_DAYS_AFTER_DATA:
        return (f"--as-of {as_of} is {(t - last).days:,} days after the last transaction in {file} "
                f"({last.date()}; at most {AS_OF_MAX_DAYS_AFTER_DATA:,}): recencies and forecasts would be absurd")
    return None
