"""Report summary tables, formatting filters and the model-card metric table, on tiny frames."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyaccounts.report import tables
from keyaccounts.report.build import metrics_table
from keyaccounts.report.html import environment, money, pct


def test_pareto_curve_and_top_share():
    v = pd.Series([5.0, 50.0, 10.0, 30.0, 5.0, -3.0], index=["e", "a", "c", "b", "d", "f"])
    got = tables.pareto_curve(v)
    want = pd.DataFrame({"account_share": np.arange(7) / 6,
                         "value_share": [0.0, 0.5, 0.8, 0.9, 0.95, 1.0, 1.0]})
    pd.testing.assert_frame_equal(got, want)
    # top 20 % of 6 accounts = 1.2 accounts: interpolated between 0.5 (1 account) and 0.8 (2)
    assert tables.top_share(v, 0.2) == pytest.approx(0.5 + 0.2 * 0.3)
    assert math.isnan(tables.top_share(pd.Series([0.0, -1.0]), 0.2))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40))
def test_pareto_curve_is_a_concave_cdf(values):
    c = tables.pareto_curve(pd.Series(values, index=[f"c{i}" for i in range(len(values))]))
    s = c["value_share"].to_numpy()
    assert s[0] == 0 and np.all(np.diff(s) >= -1e-12)
    if s[-1] > 0:
        assert s[-1] == pytest.approx(1.0)
        # highest first: each step adds no more than the one before (concave)
        assert np.all(np.diff(np.diff(s)) <= 1e-9)
        # the top share never falls below the equal share
        assert np.all(s >= c["account_share"].to_numpy() - 1e-9)


def test_tier_summary_orders_known_tiers_and_counts_missing():
    acc = pd.DataFrame({"abc_history": ["C", "A", "B", "A", None],
                        "expected_value": [40.0, 10.0, 20.0, 30.0, np.nan]})
    got = tables.tier_summary(acc, "abc_history")
    want = pd.DataFrame({"tier": ["A", "B", "C", "(none)"], "accounts": [2, 1, 1, 1],
                         "account_share": [0.4, 0.2, 0.2, 0.2], "value": [40.0, 20.0, 40.0, 0.0],
                         "value_share": [0.4, 0.2, 0.4, 0.0]})
    pd.testing.assert_frame_equal(got, want)


def test_risk_value_matrix_has_every_cell():
    acc = pd.DataFrame({"abc_predicted": ["A", "A", "C"], "churn_probability": [0.1, 0.6, 0.2],
                        "expected_value": [100.0, 50.0, 5.0], "value_at_risk": [10.0, 30.0, 1.0]})
    got = tables.risk_value_matrix(acc, medium=0.2, high=0.5)
    assert len(got) == 9 and got["accounts"].sum() == 3
    cell = got.set_index(["value_tier", "risk_band"])
    assert cell.loc[("A", "low"), "accounts"] == 1 and cell.loc[("A", "high"), "value_at_risk"] == 30.0
    assert cell.loc[("C", "medium"), "accounts"] == 1  # 0.2 is the lower bound of 'medium'
    assert cell.loc[("B", "low"), "accounts"] == 0 and cell.loc[("B", "low"), "value_at_risk"] == 0.0


def test_cohort_retention_reads_only_before_as_of(make_txns):
    t = make_txns([("c1", "2024-01-05", 10), ("c1", "2024-04-10", 10), ("c2", "2024-02-01", 5),
                   ("c3", "2024-04-02", 7), ("c3", "2024-04-20", -7),
                   ("c1", "2024-07-01", 99), ("c4", "2024-07-02", 1)])  # on/after as_of: ignored
    got = tables.cohort_retention(t, as_of="2024-07-01", period="quarter")
    want = pd.DataFrame({"customers": [2, 1], 0: [1.0, 1.0], 1: [0.5, np.nan]},
                        index=pd.Index(["2024Q1", "2024Q2"], name="cohort"))
    pd.testing.assert_frame_equal(got, want, check_names=True)
    with pytest.raises(ValueError):
        tables.cohort_retention(t, as_of="2024-07-01", period="week")


def test_metrics_table_finds_baselines_and_best():
    metrics = {"roc_auc": 0.8, "brier": 0.10, "raw_roc_auc": 0.79, "logreg_roc_auc": 0.82, "logreg_brier": 0.12,
               "naive_recency_roc_auc": 0.7, "gate_challenger_score": 0.8, "shap_importance.x": 1.0}
    cols, rows = metrics_table("churn", metrics)
    assert cols == ["model", "logreg", "naive_recency"]
    by = {r["metric"]: r for r in rows}
    assert list(by) == ["roc_auc", "brier"]
    assert by["roc_auc"]["values"] == [0.8, 0.82, 0.7] and by["roc_auc"]["best"] == "logreg"
    assert by["brier"]["values"] == [0.10, 0.12, None] and by["brier"]["best"] == "model"
    _, rows = metrics_table("value", {"total_rel_error": -0.05, "btyd_total_rel_error": 0.02})
    assert rows[0]["best"] == "btyd"  # closest to zero


def test_filters_and_autoescape():
    assert money(1234567.8) == "1,234,568" and money(None) == "-" and money(float("nan")) == "-"
    assert pct(0.1234, 1) == "12.3 %"
    env = environment()
    assert env.from_string("{{ x }}").render(x="<script>alert(1)</script>") == \
        "&lt;script&gt;alert(1)&lt;/script&gt;"
