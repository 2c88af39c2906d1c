"""Which columns enter drift and how (keyaccounts.drift.treatment): ids, names and dates left
out, calendar-time features compared as rates or left out, balances compared where nonzero,
the reason in the PSI table; no false alarm on a stable synthetic population, real shifts
flagged; older references still read."""
from __future__ import annotations

import datetime as dt
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from keyaccounts.drift import (
    AS_IS,
    DAYS_PER_MONTH,
    LEFT_OUT,
    NONZERO,
    RATE,
    VERSION,
    chance_psi,
    psi,
    psi_table,
    reference_summary,
    treatment,
)
from keyaccounts.features import Tables, build_features, deals
from keyaccounts.synth import STAGES_OPEN, synthesize

AS_OF = dt.date(2025, 10, 1)
WITH_TENURE = ("tenure_days",)


@pytest.mark.parametrize("name, columns, action, note", [
    ("customer_id", (), LEFT_OUT, "left out: identifier"),
    ("opportunity_id", (), LEFT_OUT, "left out: identifier"),
    ("id", (), LEFT_OUT, "left out: identifier"),
    ("name", (), LEFT_OUT, "left out: name"),
    ("account_name", (), LEFT_OUT, "left out: name"),
    ("owner", (), LEFT_OUT, "left out: name"),
    ("as_of", (), LEFT_OUT, "left out: date"),
    ("created_date", (), LEFT_OUT, "left out: date"),
    ("changed_at", (), LEFT_OUT, "left out: date"),
    ("tenure_days", WITH_TENURE, LEFT_OUT, "left out: grows with calendar time"),
    ("first_purchase_days_ago", WITH_TENURE, LEFT_OUT, "left out: grows with calendar time"),
    ("monetary_total", WITH_TENURE, RATE, "compared as rate per month of tenure"),
    ("margin_total", WITH_TENURE, RATE, "compared as rate per month of tenure"),
    ("frequency", WITH_TENURE, RATE, "compared as rate per month of tenure"),
    ("n_invoices", WITH_TENURE, RATE, "compared as rate per month of tenure"),
    ("n_returns", WITH_TENURE, RATE, "compared as rate per month of tenure"),
    ("monetary_total", (), LEFT_OUT, "left out: grows with calendar time (no tenure_days to make it a rate)"),
    ("owner_closed_deals", (), LEFT_OUT, "left out: grows with calendar time (no tenure_days to make it a rate)"),
    ("account_won_deals", (), LEFT_OUT, "left out: grows with calendar time (no tenure_days to make it a rate)"),
    ("open_balance", WITH_TENURE, NONZERO, "compared where nonzero: whether a balance is open swings with the "
                                           "billing cycle"),
    ("credit_utilisation", (), NONZERO, "compared where nonzero: whether a balance is open swings with the "
                                        "billing cycle"),
    # windows, thresholds, averages, time since a recurring event, an open deal's age: as is
    ("n_purchases_30d", WITH_TENURE, AS_IS, ""),
    ("n_overdue_30d", WITH_TENURE, AS_IS, ""),
    ("spend_365d", WITH_TENURE, AS_IS, ""),
    ("monetary_avg", WITH_TENURE, AS_IS, ""),
    ("recency_days", WITH_TENURE, AS_IS, ""),
    ("age_at_first_purchase_days", WITH_TENURE, AS_IS, ""),
    ("age_days", (), AS_IS, ""),
    ("owner_win_rate", (), AS_IS, ""),
    ("rfm_code", WITH_TENURE, AS_IS, ""),
    ("stage_at_as_of", (), AS_IS, ""),
])
def test_rule_by_name(name, columns, action, note):
    assert treatment(name, None, columns) == (action, note)


def test_rule_by_dtype_and_cardinality():
    n = 200
    days = pd.Series(pd.date_range("2025-01-01", periods=n))
    assert treatment("signed", days).note == "left out: date"
    assert treatment("signed", days.dt.date.astype("object")).note == "left out: date"  # dates in object columns
    assert treatment("waited", days - days.min()).note == "left out: date"
    assert treatment("ref", pd.Series([f"R{i}" for i in range(n)])).note == \
        "left out: identifier-like text (200 distinct values)"
    assert treatment("ref", pd.Series([f"R{i}" for i in range(30)])).action == LEFT_OUT  # all distinct
    assert treatment("segment", pd.Series(["a", "b", "c"] * 50)) == (AS_IS, "")
    # a text column whose name says cumulative is still text: compared as categories
    assert treatment("n_tier", pd.Series(["gold", "silver"] * 10)) == (AS_IS, "")


def _synth_features(n_customers: int = 400, seed: int = 2):
    t = synthesize(n_customers=n_customers, seed=seed)

    def feats(txns: pd.DataFrame, as_of) -> pd.DataFrame:
        f = build_features(Tables(txns, t.customers, t.invoices), as_of=as_of)
        return f[f["frequency"] > 0]

    return t, feats


def test_real_feature_names_follow_the_rule():
    t, feats = _synth_features(150, 1)
    f = feats(t.transactions, AS_OF)
    d = deals(t.opportunities, as_of=AS_OF, open_stages=STAGES_OPEN, stage_history=t.stage_history,
              txns=t.transactions)
    by_action: dict[str, set[str]] = {}
    for X in (f.reset_index(), d.reset_index()):
        for col in X.columns:
            by_action.setdefault(treatment(col, X[col], X.columns).action, set()).add(col)
    assert by_action[RATE] == {"monetary_total", "margin_total", "frequency", "n_invoices", "n_returns"}
    assert by_action[NONZERO] == {"open_balance", "overdue_balance", "credit_utilisation"}
    assert by_action[LEFT_OUT] == {"customer_id", "opportunity_id", "owner", "tenure_days", "first_purchase_days_ago",
                                   "account_won_deals", "account_lost_deals", "owner_closed_deals"}


def test_reference_is_json_and_says_why():
    n = 120
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"customer_id": [f"C{i:04d}" for i in range(n)], "as_of": pd.Timestamp("2025-07-01"),
                      "tenure_days": rng.integers(10, 900, n).astype(float), "monetary_total": rng.gamma(2, 500, n),
                      "open_balance": np.where(np.arange(n) % 2, rng.gamma(2, 100, n), 0.0),
                      "spend_90d": rng.gamma(2, 50, n)})
    ref = json.loads(json.dumps(reference_summary(X)))  # stored as an MLflow JSON artifact
    f = ref["features"]
    assert ref["version"] == VERSION == 2 and ref["n"] == n
    assert f["customer_id"] == {"kind": "left out", "note": "left out: identifier"}
    assert f["as_of"] == {"kind": "left out", "note": "left out: date"}
    assert f["tenure_days"] == {"kind": "left out", "note": "left out: grows with calendar time"}
    assert f["monetary_total"]["transform"] == RATE and f["monetary_total"]["n"] == n
    assert f["open_balance"]["transform"] == NONZERO and f["open_balance"]["n"] == n // 2
    assert set(f["spend_90d"]) == {"kind", "edges", "shares"}  # as is: the version-1 layout
    # 120 rows: 3 bins of at least 40 reference rows
    assert len(f["spend_90d"]["edges"]) == 2 and sum(f["spend_90d"]["shares"]) == pytest.approx(1.0)

    t = psi_table(ref, X).set_index("feature")
    assert t.loc[["spend_90d", "monetary_total", "open_balance"], "psi"].tolist() == pytest.approx([0, 0, 0])
    assert t.loc["monetary_total", "note"] == "compared as rate per month of tenure"
    assert t.loc["customer_id", "note"] == "left out: identifier" and math.isnan(t.loc["customer_id", "psi"])
    # compared features first (highest PSI first), then the left-out ones by name
    assert t.index[-3:].tolist() == ["as_of", "customer_id", "tenure_days"] and t["psi"].iloc[:3].notna().all()


def test_rate_is_per_month_of_tenure_hand_computed():
    # two customers of 1 and 10 months, a third of 10 days (counted as one month)
    X = pd.DataFrame({"tenure_days": [DAYS_PER_MONTH, 10 * DAYS_PER_MONTH, 10.0],
                      "monetary_total": [100.0, 1000.0, 300.0]})
    ref = reference_summary(X, bins=2)
    spec = ref["features"]["monetary_total"]
    # rates 100, 100, 300: the median edge 100 moves halfway to 300
    assert spec["edges"] == [200.0] and spec["shares"] == pytest.approx([2 / 3, 1 / 3, 0.0])
    # a year later the same customers buy at the same monthly rates: no drift, although totals grew
    tenure = X["tenure_days"] + 12 * DAYS_PER_MONTH
    later = X.assign(tenure_days=tenure, monetary_total=np.array([100.0, 100.0, 300.0]) * tenure / DAYS_PER_MONTH)
    got = psi_table(ref, later, significance=None).iloc[0]
    assert got["feature"] == "monetary_total" and got["psi"] == pytest.approx(0.0)
    # without tenure_days in the scoring data the rate cannot be formed
    t = psi_table(ref, X[["monetary_total"]])
    assert math.isnan(t.loc[0, "psi"])
    assert t.loc[0, "note"] == "absent from the scoring data (tenure_days, needed for the rate)"


def test_balances_compared_where_nonzero():
    rng = np.random.default_rng(1)
    bal = rng.gamma(2, 500, 1000)
    ref = reference_summary(pd.DataFrame({"open_balance": np.where(rng.random(1000) < 0.6, bal, 0.0)}))
    # just before invoicing most balances are paid: the share of zeros moves, their sizes do not
    fewer = pd.DataFrame({"open_balance": np.where(rng.random(1000) < 0.3, rng.gamma(2, 500, 1000), 0.0)})
    assert psi_table(ref, fewer)["psi"].iloc[0] < 0.1
    tripled = fewer.assign(open_balance=fewer["open_balance"] * 3)
    row = psi_table(ref, tripled).iloc[0]
    assert row["drifted"] and row["note"].startswith("compared where nonzero")
    none_open = psi_table(ref, pd.DataFrame({"open_balance": np.zeros(10)})).iloc[0]
    assert math.isnan(none_open["psi"]) and not none_open["drifted"] and "no nonzero values" in none_open["note"]


def test_tied_values_do_not_flip_bins_on_a_wobble():
    # a rate shared by every deal of one owner: 8 owners, each rate a little different later
    rates = np.repeat(np.linspace(0.1, 0.45, 8), 50)
    ref = reference_summary(pd.DataFrame({"owner_win_rate": rates}))
    t = psi_table(ref, pd.DataFrame({"owner_win_rate": rates + 0.01}))
    assert t["psi"].iloc[0] == pytest.approx(0.0)
    assert psi_table(ref, pd.DataFrame({"owner_win_rate": rates + 0.1}))["drifted"].iloc[0]


def test_chance_guard():
    # 30 vs 30 rows over 2 bins: sampling alone reaches ~0.72 one time in a thousand
    assert chance_psi(2, 30, 30) == pytest.approx(10.8276 * (2 / 30), rel=1e-4)
    assert chance_psi(1, 30, 30) == 0.0
    ref = reference_summary(pd.DataFrame({"amount": np.arange(30.0)}))
    cur = pd.DataFrame({"amount": np.r_[np.arange(5.0), np.arange(20.0, 45.0)]})
    row = psi_table(ref, cur).iloc[0]
    assert row["psi"] > 0.2 and not row["drifted"] and row["note"] == "above 0.2 but within chance for 30 and 30 rows"
    assert psi_table(ref, cur, significance=None)["drifted"].iloc[0]


def test_version1_reference_still_reads():
    # the layout stored before these rules: every column as is, customer ids as categories
    old = {"version": 1, "n": 4, "bins": 2, "features": {
        "customer_id": {"kind": "categorical", "shares": {"C1": 0.25, "C2": 0.25, "C3": 0.25, "C4": 0.25}},
        "code": {"kind": "categorical", "shares": {f"K{i}": 1 / 60 for i in range(60)}},
        "monetary_total": {"kind": "numeric", "edges": [150.0], "shares": [0.5, 0.5, 0.0]},
        "spend_90d": {"kind": "numeric", "edges": [2.5], "shares": [0.5, 0.5, 0.0]}}}
    X = pd.DataFrame({"customer_id": ["C7", "C8", "C9", "C9"], "code": ["K1"] * 4, "tenure_days": [30.0] * 4,
                      "monetary_total": [900.0] * 4, "spend_90d": [1.0, 2.0, 3.0, 4.0]})
    t = psi_table(old, X).set_index("feature")
    assert t.loc["spend_90d", "psi"] == pytest.approx(0.0)
    assert t.loc["customer_id", "note"] == "left out: identifier"
    assert t.loc["code", "note"] == "left out: identifier-like text (60 categories)"
    assert t.loc["monetary_total", "note"] == ("left out: an older reference stores it as is; retrain to have it "
                                               "compared as rate per month of tenure")
    assert not t["drifted"].any() and t["psi"].isna().sum() == 3


def test_stable_population_no_false_alarm_real_shifts_flagged():
    t, feats = _synth_features()
    # reference: the training validation snapshot, one horizon before the scoring date
    summary = reference_summary(feats(t.transactions, AS_OF - dt.timedelta(days=90)))
    same = psi_table(summary, feats(t.transactions, AS_OF))
    assert not same["drifted"].any(), same.head()
    assert same["psi"].max() < 0.15

    tripled = psi_table(summary, feats(t.transactions.assign(amount=t.transactions["amount"] * 3), AS_OF))
    flagged = set(tripled.loc[tripled["drifted"], "feature"])
    assert {"spend_90d", "spend_365d", "monetary_avg", "monetary_total"} <= flagged
    assert tripled.set_index("feature").loc["monetary_total", "note"] == "compared as rate per month of tenure"

    # buying twice as often: every purchase repeated a week later
    tx = t.transactions
    twice = pd.concat([tx, tx.assign(timestamp=tx["timestamp"] + pd.Timedelta(days=7))], ignore_index=True)
    twice["customer_id"] = pd.Categorical(twice["customer_id"].astype("str"),
                                          categories=tx["customer_id"].cat.categories)
    often = psi_table(summary, feats(twice.sort_values(["customer_id", "timestamp"], ignore_index=True), AS_OF))
    assert {"frequency", "n_purchases_365d", "interval_mean_days"} <= set(often.loc[often["drifted"], "feature"])


def test_open_deals_leave_out_ids_and_history_counts():
    t = synthesize(n_customers=400, seed=2)
    kw = {"open_stages": STAGES_OPEN, "stage_history": t.stage_history, "txns": t.transactions}
    ref = reference_summary(deals(t.opportunities, as_of=AS_OF - dt.timedelta(days=90), **kw))
    tab = psi_table(ref, deals(t.opportunities, as_of=AS_OF, **kw)).set_index("feature")
    assert not tab["drifted"].any()
    assert tab.loc["customer_id", "note"] == "left out: identifier" and tab.loc["owner", "note"] == "left out: name"
    assert tab.loc["owner_closed_deals", "note"].startswith("left out: grows with calendar time")
    assert tab.loc[["amount", "age_days", "owner_win_rate"], "psi"].notna().all()


def test_psi_is_unchanged():
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2.0))


@pytest.mark.slow
def test_demo_report_has_no_drift_warning(demo_run):
    from keyaccounts.tracking import DRIFT_REFERENCE, Tracker

    assert demo_run.exit_code == 0, demo_run.output
    html = demo_run.report.read_text(encoding="utf-8")
    tile = re.search(r'<div class="v">(\d+)</div><div class="l">drift warnings', html)
    assert tile and tile.group(1) == "0"
    assert "Drift warning" not in html and "feature(s) drifted" not in html
    tracker = Tracker(demo_run.tracking_uri)
    ref = tracker.run_dict(tracker.champion_card("deal-90d")["run_id"], DRIFT_REFERENCE)
    assert ref["version"] == VERSION and ref["features"]["customer_id"]["kind"] == "left out"
