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


def _truncate(t, as_of):
    cut = pd.Timestamp(as_of)
    tx = t.transactions[t.transactions["timestamp"] < cut].copy()
    tx["customer_id"] = tx["customer_id"].cat.remove_unused_categories()
    opps = t.opportunities[t.opportunities["created_date"] < cut].copy()
    # What a file exported at as_of would say: deals closed later are still open then.
    later = opps["closed_date"] >= cut
    hist = t.stage_history[t.stage_history["changed_at"] < cut]
    last = hist.sort_values("changed_at").groupby("opportunity_id").tail(1).set_index("opportunity_id")["stage"]
    opps.loc[later, "stage"] = opps.loc[later, "opportunity_id"].map(last).fillna(STAGES_OPEN[0]).to_numpy()
    opps.loc[later, ["outcome"]] = pd.NA
    opps.loc[later, "closed_date"] = pd.NaT
    inv = t.invoices[t.invoices["issue_date"] < cut].copy()
    inv.loc[inv["paid_date"] >= cut, "paid_date"] = pd.NaT
    return Tables(tx, t.customers[t.customers["signup_date"] < cut], inv, opps, hist)


def test_snapshots_read_nothing_on_or_after_as_of():
    s = synthesize(n_customers=300, seed=5)
    full = Tables(s.transactions, s.customers, s.invoices, s.opportunities, s.stage_history)
    as_of = "2025-06-01"
    cuts = cutoffs(as_of=as_of, horizon_days=90, step_days=30, max_snapshots=4,
                   earliest=earliest_date(s.transactions), min_history_days=60)
    assert max(cuts) + pd.Timedelta(days=90) <= pd.Timestamp(as_of)
    a = customer_snapshots(full, cuts=cuts, horizon_days=90)
    b = customer_snapshots(_truncate(s, as_of), cuts=cuts, horizon_days=90)
    assert_frame_equal(a, b)
    assert set(a.index.get_level_values("cutoff")) == set(cuts)
    da = deal_snapshots(full, cuts=cuts, horizon_days=90, open_stages=list(STAGES_OPEN))
    db = deal_snapshots(_truncate(s, as_of), cuts=cuts, horizon_days=90, open_stages=list(STAGES_OPEN))
    assert_frame_equal(da, db)
    assert da["won_within_horizon"].sum() > 0
