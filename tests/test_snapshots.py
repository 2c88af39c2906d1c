"""Training snapshots: cutoffs by hand; nothing on/after as_of is read."""
from __future__ import annotations

import pandas as pd
from pandas.testing import assert_frame_equal

from keyaccounts.features import Tables
from keyaccounts.snapshots import customer_snapshots, cutoffs, deal_snapshots, earliest_date
from keyaccounts.synth import STAGES_OPEN, synthesize


def test_cutoffs_by_hand():
    got = cutoffs(as_of="2024-12-31", horizon_days=90, step_days=30, max_snapshots=5,
                  earliest="2024-01-01", min_history_days=200)
    # 2024-12-31 - 90 d = 2024-10-02; then -30 d steps; floor = 2024-07-19
    assert got == [pd.Timestamp(d) for d in ("2024-10-02", "2024-09-02", "2024-08-03")]


def test_snapshots_read_nothing_on_or_after_as_of(truncate):
    s = synthesize(n_customers=300, seed=5)
    full = Tables(s.transactions, s.customers, s.invoices, s.opportunities, s.stage_history)
    as_of = "2025-06-01"
    cuts = cutoffs(as_of=as_of, horizon_days=90, step_days=30, max_snapshots=4,
                   earliest=earliest_date(s.transactions), min_history_days=60)
    assert max(cuts) + pd.Timedelta(days=90) <= pd.Timestamp(as_of)
    a = customer_snapshots(full, cuts=cuts, horizon_days=90)
    b = customer_snapshots(truncate(s, as_of), cuts=cuts, horizon_days=90)
    assert_frame_equal(a, b)
    assert set(a.index.get_level_values("cutoff")) == set(cuts)
    da = deal_snapshots(full, cuts=cuts, horizon_days=90, open_stages=list(STAGES_OPEN))
    db = deal_snapshots(truncate(s, as_of), cuts=cuts, horizon_days=90, open_stages=list(STAGES_OPEN))
    assert_frame_equal(da, db)
    assert da["won_within_horizon"].sum() > 0
