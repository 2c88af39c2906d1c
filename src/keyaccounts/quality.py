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
