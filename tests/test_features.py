"""Hand-computed tests of every feature family (lifetimes style: tiny frames typed by hand,
expected frames typed by hand, compared with assert_frame_equal).

as_of is 2024-03-01 throughout unless stated; 2024 is a leap year, so 2024-02-29 is "yesterday"
(recency 1) and 2024-02-01 is 29 days before as_of.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from keyaccounts.config import FeatureConfig, LifecycleConfig
from keyaccounts.features import (
    Tables,
    build_features,
    credit,
    deals,
    growth,
    lifecycle_stage,
    margin,
    open_at,
    quintile_score,
    returns,
    rfm,
    tenure,
)
from keyaccounts.features.lifecycle import STAGES
from keyaccounts.schemas import schema

AS_OF = "2024-03-01"
NAN = np.nan
OPEN_STAGES = ["prospecting", "qualification", "proposal", "negotiation"]


def ago(days: int, time: str = "") -> str:
    """The ISO date `days` calendar days before AS_OF (optionally with a time of day)."""
    d = (pd.Timestamp(AS_OF) - pd.Timedelta(days=days)).strftime("%Y-%m-%d")
    return f"{d} {time}" if time else d


def cust_index(ids) -> pd.Index:
    return pd.Index(list(ids), name="customer_id", dtype="str")


def expected(rows: dict, columns: list[str], dtypes: dict | None = None, index_name="customer_id") -> pd.DataFrame:
    """rows: id -> list of values in `columns` order."""
    df = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    df.index = pd.Index(list(rows), name=index_name, dtype="str")
    df = df.astype("float64")
    for c, t in (dtypes or {}).items():
        df[c] = df[c].astype(t)
    return df


# ------------------------------------------------------------------ fixtures are canonical


def test_builders_make_frames_that_satisfy_the_schemas(make_txns, make_customers, make_invoices,
                                                       make_opps, make_history):
    t = make_txns([("A", "2024-01-01 10:00", 5.0, 1.0), ("B", "2024-01-02", -1.0, NAN)], cost=True)
    assert isinstance(t["customer_id"].dtype, pd.CategoricalDtype)
    assert list(t["customer_id"].cat.categories) == ["A", "B"]
    assert t["timestamp"].dtype == "datetime64[ns]" and t["amount"].dtype == "float64"
    schema("transactions").validate(t)
    schema("customers").validate(make_customers([("A", "2023-01-01", 10.0), ("B", None, None)]))
    schema("invoices").validate(make_invoices([("i1", "A", "2024-01-01", "2024-01-31", 10.0, None)]))
    schema("opportunities").validate(make_opps([("o1", "A", "ann", "2024-01-01", "proposal", 1.0, None, None, None),
                                                ("o2", "A", "ann", "2024-01-01", "won", 1.0, None, "2024-01-02", "won")]))
    schema("stage_history").validate(make_history([("o1", "proposal", "2024-01-01")]))


# ------------------------------------------------------------------ rfm

RFM_COLS = ["recency_days", "frequency", "monetary_total", "monetary_avg",
            "spend_30d", "spend_90d", "spend_365d", "n_purchases_30d", "n_purchases_90d", "n_purchases_365d",
            "r_score", "f_score", "m_score", "rfm_score", "rfm_code"]
RFM_INTS = {c: "int64" for c in ["frequency", "n_purchases_30d", "n_purchases_90d", "n_purchases_365d",
                                 "r_score", "f_score", "m_score", "rfm_score", "rfm_code"]}


def test_rfm_by_hand(make_txns):
    t = make_txns([
        ("A", "2024-02-29 10:30", 100.0),   # yesterday with a time of day: read, recency 1
        ("A", "2024-02-29 08:00", 50.0),    # same day: one frequency day
        ("A", "2024-02-10", 30.0),          # 20 days ago
        ("A", "2024-02-15", -20.0),         # a return: reduces net spend, is not a purchase day
        ("A", "2024-03-01 00:00", 1000.0),  # exactly at as_of midnight: not read
        ("A", "2023-06-01", 40.0),          # 274 days ago
        ("B", "2023-12-01", 10.0),          # 91 days ago: outside the 90-day window
        ("B", "2023-12-02", 5.0),           # 90 days ago: inside [as_of - 90, as_of)
        ("C", "2022-01-01", 7.0),           # 790 days ago
        ("D", "2024-03-05", 100.0),         # only after as_of: not in the population
    ])
    out = rfm(t, as_of=AS_OF)
    # scores over 3 customers: 1 + (5 * n_strictly_worse) // 3 -> 0 worse: 1, 1 worse: 2, 2 worse: 4
    exp = expected({
        "A": [1, 3, 200, 200 / 3, 160, 160, 200, 2, 2, 3, 4, 4, 4, 12, 444],
        "B": [90, 2, 15, 7.5, 0, 5, 15, 0, 1, 2, 2, 2, 2, 6, 222],
        "C": [790, 1, 7, 7, 0, 0, 0, 0, 0, 0, 1, 1, 1, 3, 111],
    }, RFM_COLS, RFM_INTS)
    assert_frame_equal(out, exp)


def test_rfm_custom_window_edges(make_txns):
    t = make_txns([("A", ago(7), 1.0), ("A", ago(8), 2.0), ("A", ago(8, "23:59"), 4.0), ("A", ago(1), -0.5)])
    out = rfm(t, as_of=AS_OF, windows_days=(7,))
    assert list(out.columns) == ["recency_days", "frequency", "monetary_total", "monetary_avg", "spend_7d",
                                 "n_purchases_7d", "r_score", "f_score", "m_score", "rfm_score", "rfm_code"]
    # 7 days ago is inside [as_of - 7, as_of); 8 days ago (any time of day) is not
    assert out.loc["A", "spend_7d"] == 0.5
    assert out.loc["A", "n_purchases_7d"] == 1
    assert out.loc["A", "frequency"] == 2
    assert out.loc["A", "recency_days"] == 7  # the return yesterday is not a purchase
    assert out.loc["A", "monetary_total"] == 6.5


def test_rfm_returns_and_same_day_purchases(make_txns):
    t = make_txns([
        ("A", ago(3, "09:00"), 100.0), ("A", ago(3, "17:45"), 20.0), ("A", ago(3, "18:00"), -30.0),
        ("R", ago(2), -10.0),  # only a return: in the population, no purchase day, recency unknown
    ])
    out = rfm(t, as_of=AS_OF, windows_days=(30,))
    cols = ["recency_days", "frequency", "monetary_total", "monetary_avg", "spend_30d", "n_purchases_30d",
            "r_score", "f_score", "m_score", "rfm_score", "rfm_code"]
    exp = expected({
        "A": [3, 1, 90, 90, 90, 1, 3, 3, 3, 9, 333],
        "R": [NAN, 0, -10, NAN, -10, 0, 1, 1, 1, 3, 111],
    }, cols, {c: "int64" for c in cols if c in RFM_INTS or c == "n_purchases_30d"})
    assert_frame_equal(out, exp)


def test_rfm_adds_prospects_from_signup_before_as_of(make_txns, make_customers):
    t = make_txns([("A", ago(10), 100.0), ("B", ago(5), 50.0)])
    c = make_customers([
        ("A", "2023-01-01", NAN),
        ("P", ago(29), NAN),      # signed up, never bought: a prospect
        ("Q", AS_OF, NAN),        # signs up on as_of: not yet known
        ("S", "2024-05-01", NAN),  # signs up later
        ("U", None, NAN),          # no signup date: not a prospect
    ])
    out = rfm(t, as_of=AS_OF, windows_days=(30,), customers=c)
    cols = ["recency_days", "frequency", "monetary_total", "monetary_avg", "spend_30d", "n_purchases_30d",
            "r_score", "f_score", "m_score", "rfm_score", "rfm_code"]
    # recency: NaN is the worst (P: 1), A (10 days) beats 1 -> 1 + 5 // 3 = 2, B beats 2 -> 4
    # frequency: P 0 -> 1, A and B tie at 1 (one worse) -> 2; monetary 0 < 50 < 100 -> 1, 2, 4
    exp = expected({
        "A": [10, 1, 100, 100, 100, 1, 2, 2, 4, 8, 224],
        "B": [5, 1, 50, 50, 50, 1, 4, 2, 2, 8, 422],
        "P": [NAN, 0, 0, NAN, 0, 0, 1, 1, 1, 3, 111],
    }, cols, {c: "int64" for c in cols if c in RFM_INTS or c == "n_purchases_30d"})
    assert_frame_equal(out, exp)


def test_rfm_money_is_float_even_when_no_row_falls_in_a_window(make_txns):
    # Regression: np.bincount returns int64 when nothing is selected, so empty windows were int64.
    t = make_txns([("A", "2022-01-01", 5.0), ("B", "2022-06-01", 2.0)])
    out = rfm(t, as_of=AS_OF, windows_days=(30,))
    cols = ["recency_days", "frequency", "monetary_total", "monetary_avg", "spend_30d", "n_purchases_30d",
            "r_score", "f_score", "m_score", "rfm_score", "rfm_code"]
    exp = expected({"A": [790, 1, 5, 5, 0, 0, 1, 1, 3, 5, 113],  # 2 customers: 1 worse -> 1 + 5 // 2 = 3
                    "B": [639, 1, 2, 2, 0, 0, 3, 1, 1, 5, 311]},
                   cols, {c: "int64" for c in cols if c in RFM_INTS or c == "n_purchases_30d"})
    assert_frame_equal(out, exp)
    g = growth(t, as_of=AS_OF, window_days=30)
    assert (g.dtypes == "float64").all()
    assert g["spend_prior_30d"].tolist() == [0.0, 0.0]


def test_rfm_customers_without_signup_column_add_nobody(make_txns, make_customers):
    t = make_txns([("A", ago(10), 100.0)])
    c = make_customers([("A", 5.0), ("P", 7.0)], columns=("customer_id", "credit_limit"))
    assert list(rfm(t, as_of=AS_OF, customers=c).index) == ["A"]


def test_rfm_only_prospects_when_no_rows_before_as_of(make_txns, make_customers):
    t = make_txns([("A", "2024-04-01", 100.0)])
    c = make_customers([("P", ago(3), NAN)])
    out = rfm(t, as_of=AS_OF, windows_days=(30,), customers=c)
    assert list(out.index) == ["P"]
    assert out.loc["P", "frequency"] == 0 and np.isnan(out.loc["P", "recency_days"])
    assert out.loc["P", "rfm_code"] == 111


# ------------------------------------------------------------------ quintile_score


@pytest.mark.parametrize("values, higher, scores", [
    ([10, 20, 30, 40, 50], True, [1, 2, 3, 4, 5]),
    ([50, 40, 30, 20, 10], True, [5, 4, 3, 2, 1]),
    (list(range(1, 11)), True, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
    ([5, 5, 5, 1], True, [2, 2, 2, 1]),            # ties share a score: one customer strictly worse
    ([7, 7, 7], True, [1, 1, 1]),
    ([NAN, 3, 1], True, [1, 4, 2]),                # NaN is the worst
    ([NAN, 3, 1], False, [1, 2, 4]),               # ... also when lower is better
    ([1, 2, 3, 4, 5], False, [5, 4, 3, 2, 1]),
    ([NAN, NAN, 2], False, [1, 1, 4]),
    ([], True, []),
])
def test_quintile_score(values, higher, scores):
    got = quintile_score(np.array(values, dtype="float64"), higher_is_better=higher)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.array(scores, dtype="int64"))


def test_quintile_score_accepts_series():
    s = pd.Series([3.0, 1.0, 2.0], index=["x", "y", "z"])
    np.testing.assert_array_equal(quintile_score(s), [4, 1, 2])


# ------------------------------------------------------------------ tenure

TENURE_COLS = ["tenure_days", "first_purchase_days_ago", "age_at_first_purchase_days"]


def test_tenure_by_hand(make_txns, make_customers):
    t = make_txns([
        ("A", ago(60), -5.0), ("A", ago(29), 10.0),
        ("B", ago(10), 10.0),
        ("C", ago(20), -3.0),                    # only a return, no signup: first row of any kind
        ("D", ago(29), 10.0),
        ("F", ago(60), -5.0), ("F", ago(29), 1.0),  # no signup: first positive purchase wins
        ("Z", "2024-03-02", 10.0),               # after as_of
    ])
    c = make_customers([
        ("A", ago(90), NAN),          # signup before first purchase
        ("B", ago(5), NAN),           # signup after first purchase: the purchase starts tenure
        ("D", "2024-03-10", NAN),     # signup after as_of: ignored
        ("P", ago(29), NAN),          # prospect
        ("E", AS_OF, NAN),            # signs up on as_of: not known yet
        ("Z", ago(3), NAN),           # signed up, buys only after as_of: a prospect
    ])
    out = tenure(t, c, as_of=AS_OF)
    exp = expected({
        "A": [90, 29, 61],
        "B": [10, 10, -5],
        "C": [20, NAN, NAN],
        "D": [29, 29, NAN],
        "F": [29, 29, NAN],
        "P": [29, NAN, NAN],
        "Z": [3, NAN, NAN],
    }, TENURE_COLS)
    assert_frame_equal(out, exp)


def test_tenure_without_customers(make_txns):
    t = make_txns([("A", ago(60), -5.0), ("A", ago(29, "13:00"), 10.0), ("C", ago(20), -3.0)])
    exp = expected({"A": [29, 29, NAN], "C": [20, NAN, NAN]}, TENURE_COLS)
    assert_frame_equal(tenure(t, as_of=AS_OF), exp)


# ------------------------------------------------------------------ credit and returns

CREDIT_COLS = ["n_invoices", "days_past_due_mean", "days_past_due_max", "late_payment_share",
               "open_balance", "overdue_balance", "n_overdue_30d", "credit_utilisation"]


@pytest.fixture
def invoices(make_invoices):
    return make_invoices([
        # A: paid 10 days late; paid early; paid only after as_of (so unpaid then, 36 days past due);
        #    unpaid and not yet due; issued on as_of (not read)
        ("i1", "A", "2024-01-01", "2024-01-31", 100.0, "2024-02-10"),
        ("i2", "A", "2024-01-15", "2024-02-14", 200.0, "2024-02-01"),
        ("i3", "A", "2024-01-20", "2024-01-25", 50.0, "2024-03-05"),
        ("i4", "A", "2024-02-20", "2024-03-20", 80.0, None),
        ("i5", "A", "2024-03-01", "2024-03-31", 999.0, None),
        # B: unpaid, due yesterday (1 day); due 30 days ago (30, not > 30); due 31 days ago (31)
        ("i6", "B", "2024-02-01", "2024-02-29", 40.0, None),
        ("i7", "B", "2024-01-01", "2024-01-31", 60.0, None),
        ("i8", "B", "2024-01-01", "2024-01-30", 10.0, None),
        # C: paid on its due date: not late
        ("i9", "C", "2024-02-01", "2024-02-10", 25.0, "2024-02-10"),
        # Z: issued after as_of only
        ("i10", "Z", "2024-04-01", "2024-05-01", 5.0, None),
    ])


def test_credit_by_hand(invoices, make_customers):
    c = make_customers([("A", None, 1000.0), ("B", None, 0.0), ("C", None, None), ("E", None, 50.0)])
    out = credit(invoices, c, as_of=AS_OF)
    exp = expected({
        "A": [4, (10 + 0 + 36 + 0) / 4, 36, 1 / 2, 130, 50, 1, 130 / 1000],
        "B": [3, (1 + 30 + 31) / 3, 31, NAN, 110, 110, 1, NAN],   # limit 0: NaN
        "C": [1, 0, 0, 0, 0, 0, 0, NAN],                          # limit unknown: NaN
    }, CREDIT_COLS, {"n_invoices": "int64", "n_overdue_30d": "int64"})
    assert_frame_equal(out, exp)


def test_credit_without_customers_and_other_threshold(invoices, make_customers):
    only_b = make_customers([("B", None, 500.0)])  # A and C are not in the customers table
    out = credit(invoices, only_b, as_of=AS_OF, overdue_threshold_days=0)
    assert out["credit_utilisation"].tolist() == pytest.approx([NAN, 110 / 500, NAN], nan_ok=True)
    out = credit(invoices, as_of=AS_OF, overdue_threshold_days=0)
    assert list(out.columns) == CREDIT_COLS[:6] + ["n_overdue_0d", "credit_utilisation"]
    assert out["n_overdue_0d"].tolist() == [1, 3, 0]
    assert out["credit_utilisation"].isna().all()


def test_credit_without_paid_date_column_means_all_unpaid(invoices):
    out = credit(invoices.drop(columns="paid_date"), as_of=AS_OF)
    assert out.loc["A", "open_balance"] == 430
    # unpaid now: i1 due 2024-01-31 -> 30, i2 due 2024-02-14 -> 16, i3 -> 36, i4 not due -> 0
    assert out.loc["A", "days_past_due_max"] == 36
    assert out.loc["A", "days_past_due_mean"] == (30 + 16 + 36 + 0) / 4
    assert np.isnan(out.loc["A", "late_payment_share"])


def test_credit_money_is_float_when_everything_is_paid(make_invoices):
    inv = make_invoices([("i1", "A", ago(40), ago(30), 10.0, ago(20))])
    exp = expected({"A": [1, 10, 10, 1, 0, 0, 0, NAN]}, CREDIT_COLS, {"n_invoices": "int64", "n_overdue_30d": "int64"})
    assert_frame_equal(credit(inv, as_of=AS_OF), exp)


def test_credit_nothing_before_as_of(invoices):
    out = credit(invoices, as_of="2023-01-01")
    assert len(out) == 0 and list(out.columns) == CREDIT_COLS


def test_returns_by_hand(make_txns):
    t = make_txns([
        ("A", ago(10), 100.0), ("A", ago(9), -20.0), ("A", ago(1, "23:00"), -5.0), ("A", AS_OF, -50.0),
        ("B", ago(3), -10.0),     # only returns: ratio undefined
        ("C", ago(3), 50.0),
        ("D", ago(3), 0.0),       # a zero row: no purchases, no returns
    ])
    exp = expected({"A": [25 / 100, 2], "B": [NAN, 1], "C": [0, 0], "D": [NAN, 0]},
                   ["return_ratio", "n_returns"], {"n_returns": "int64"})
    out = returns(t, as_of=AS_OF)
    assert_frame_equal(out, exp)
    assert not np.signbit(out.loc["C", "return_ratio"])  # 0.0, not -0.0


# ------------------------------------------------------------------ growth

GROWTH_COLS = ["spend_prior_30d", "spend_growth_ratio_30d", "spend_growth_diff_30d", "spend_slope_monthly",
               "interval_mean_days", "interval_last_days", "interval_trend_ratio", "recency_to_interval_ratio"]


def test_growth_by_hand(make_txns):
    # window 30: recent = [as_of - 30, as_of), prior = [as_of - 60, as_of - 30)
    # month m = (as_of - 1 - day) // 30: 1..30 days ago -> 0, 31..60 -> 1, 61..90 -> 2, 91.. -> 3
    t = make_txns([
        ("A", ago(91), 1000.0),  # month 3: outside slope_months=3, outside both windows
        ("A", ago(77), 10.0),    # month 2
        ("A", ago(51), 20.0),    # month 1, prior
        ("A", ago(10), 60.0),    # month 0, recent
        ("A", ago(5), -15.0),    # month 0, recent, a return
        ("B", ago(56), 30.0), ("B", ago(55), -30.0),  # prior nets to 0 -> ratio NaN
        ("B", ago(29), 50.0),
        ("C", ago(5), 7.0),      # one month of history: slope NaN
        ("D", ago(80), 30.0), ("D", ago(1), 30.0),    # an empty month in between counts as 0
        ("E", ago(40), -10.0), ("E", ago(3), 5.0),    # prior negative -> ratio NaN
        ("F", ago(30), 8.0), ("F", ago(31), 2.0), ("F", ago(60), 3.0), ("F", ago(61), 100.0),  # window edges
        ("G", AS_OF, 5.0),       # only at as_of: not read
    ])
    out = growth(t, as_of=AS_OF, window_days=30, slope_months=3)

    def slope(y_by_month):  # y_by_month[0] = month 0 (latest); x = -month
        x = -np.arange(len(y_by_month), dtype="float64")
        return np.polyfit(x, np.asarray(y_by_month, dtype="float64"), 1)[0]

    assert slope([45, 20, 10]) == pytest.approx(17.5)
    exp = expected({
        "A": [20, 45 / 20, 25, slope([45, 20, 10]), (91 - 10) / 3, 41, 41 / ((91 - 51) / 2), 10 / 27],
        "B": [0, NAN, 50, slope([50, 0]), 27, 27, NAN, 29 / 27],
        "C": [0, NAN, 7, NAN, NAN, NAN, NAN, NAN],
        "D": [0, NAN, 30, slope([30, 0, 30]), 79, 79, NAN, 1 / 79],
        "E": [-10, NAN, 15, slope([5, -10]), NAN, NAN, NAN, NAN],
        # F: prior = 31 and 60 days ago (2 + 3); recent = 30 days ago (8); 61 days ago is in month 2
        "F": [5, 8 / 5, 3, slope([8, 5, 100]), 31 / 3, 1, 1 / ((61 - 31) / 2), 30 / (31 / 3)],
    }, GROWTH_COLS)
    assert_frame_equal(out, exp, check_exact=False, rtol=1e-12)
    assert exp.loc["D", "spend_slope_monthly"] == pytest.approx(0.0, abs=1e-12)
    assert exp.loc["B", "spend_slope_monthly"] == pytest.approx(50.0)


def test_growth_slope_caps_at_slope_months(make_txns):
    # 5 months of history, slope over the last 2 only
    t = make_txns([("A", ago(130), 500.0), ("A", ago(45), 10.0), ("A", ago(15), 40.0)])
    out = growth(t, as_of=AS_OF, window_days=90, slope_months=2)
    assert out.loc["A", "spend_slope_monthly"] == pytest.approx(np.polyfit([-1.0, 0.0], [10.0, 40.0], 1)[0])
    assert out.loc["A", "spend_prior_90d"] == 500.0
    assert out.loc["A", "spend_growth_ratio_90d"] == 50 / 500


# ------------------------------------------------------------------ margin


def test_margin_with_cost(make_txns):
    t = make_txns([
        ("A", ago(5), 100.0, 60.0), ("A", ago(4), 50.0, NAN), ("A", ago(3), -20.0, -12.0),
        ("A", AS_OF, 1000.0, 1.0),          # at as_of: not read
        ("B", ago(5), 10.0, NAN),           # cost never known
        ("C", ago(5), 30.0, 40.0),          # sold at a loss
        ("D", ago(5), -10.0, -5.0),         # only a return with cost: revenue <= 0
    ], cost=True)
    exp = expected({"A": [32, 32 / 80], "B": [NAN, NAN], "C": [-10, -10 / 30], "D": [-5, NAN]},
                   ["margin_total", "margin_rate"])
    assert_frame_equal(margin(t, as_of=AS_OF), exp)


def test_margin_without_cost_column_is_an_empty_frame_on_the_index(make_txns):
    t = make_txns([("B", ago(5), 10.0), ("A", ago(5), 1.0), ("C", AS_OF, 1.0)])
    assert_frame_equal(margin(t, as_of=AS_OF), pd.DataFrame(index=cust_index(["A", "B"])))


# ------------------------------------------------------------------ lifecycle


def _stage(values) -> pd.Series:
    return pd.Series(pd.Categorical(values, categories=STAGES), index=cust_index(
        [f"c{i}" for i in range(len(values))]), name="lifecycle_stage")


def test_lifecycle_rules_and_precedence():
    f = pd.DataFrame({
        "frequency":    [0,   0,   10,  1,   1,   2, 4, 5,  5],
        "recency_days": [NAN, 500, 181, 200, 180, 5, 5, 5, 180],
    }, index=cust_index([f"c{i}" for i in range(9)]))
    exp = _stage(["prospect", "prospect", "lapsed", "lapsed", "first-time", "repeat", "repeat", "loyal",
                  "loyal"])
    assert_series_equal(lifecycle_stage(f), exp)


def test_lifecycle_custom_thresholds():
    f = pd.DataFrame({"frequency": [3, 3, 2], "recency_days": [10, 31, 30]},
                     index=cust_index(["c0", "c1", "c2"]))
    exp = _stage(["loyal", "lapsed", "repeat"])
    assert_series_equal(lifecycle_stage(f, lapsed_after_days=30, loyal_min_purchases=3), exp)


def test_lifecycle_empty():
    f = pd.DataFrame({"frequency": np.zeros(0, "int64"), "recency_days": np.zeros(0)}, index=cust_index([]))
    assert len(lifecycle_stage(f)) == 0


# ------------------------------------------------------------------ deals

DEAL_COLS = ["customer_id", "owner", "age_days", "stage_at_as_of", "stage_index", "days_since_stage_change",
             "amount", "account_won_deals", "account_lost_deals", "amount_vs_account_won_avg",
             "account_spend_365d", "owner_win_rate", "owner_closed_deals", "days_to_expected_close"]


@pytest.fixture
def opps(make_opps):
    return make_opps([
        # id, customer, owner, created, stage, amount, expected close, closed, outcome
        ("o1", "A", "ann", ago(60), "proposal", 100.0, "2024-03-11", None, None),      # open
        ("o2", "A", "bob", ago(29), "won", 300.0, None, "2024-03-10", "won"),          # closes after as_of
        ("o3", "A", "ann", "2023-06-01", "won", 200.0, None, "2023-09-01", "won"),     # closed before
        ("o4", "A", "ann", "2023-07-01", "lost", 50.0, None, ago(1), "lost"),          # closed yesterday
        ("o5", "A", "bob", ago(213), "won", 400.0, None, AS_OF, "won"),                # closes on as_of: open
        ("o6", "B", "cat", AS_OF, "prospecting", 70.0, None, None, None),              # created on as_of
        ("o7", "B", "cat", ago(15), "qualification", 80.0, ago(10), None, None),       # past expected close
        ("o8", "B", "cat", "2023-01-01", "won", 1000.0, None, "2023-02-01", "won"),
        ("o9", "C", "bob", "2023-05-01", "lost", 10.0, None, "2023-06-01", "lost"),
        ("o10", "C", "dan", "2023-03-01", "lost", 20.0, None, "2023-04-01", "lost"),
        ("o11", "D", "dan", ago(10), "negotiation", 60.0, None, None, None),
    ])


def test_open_at(opps):
    got = open_at(opps, as_of=AS_OF)
    assert_frame_equal(got, opps.iloc[[0, 1, 4, 6, 10]])


def _deal_expected(stage, stage_index, since_change, *, prior=10.0, spend=True) -> pd.DataFrame:
    # closed before as_of: o3 won, o4 lost, o8 won, o9 lost, o10 lost -> overall 2/5
    overall = 2 / 5

    def shrunk(w, n):
        return (w + prior * overall) / (n + prior)
    ids = ["o1", "o11", "o2", "o5", "o7"]
    rows = {
        #      customer, owner, age, amount, won, lost, vs won avg, spend, owner rate, owner n, to close
        "o1": ["A", "ann", 60, 100, 1, 1, 100 / 200, 25, shrunk(1, 2), 2, 10],
        "o11": ["D", "dan", 10, 60, 0, 0, NAN, 0, shrunk(0, 1), 1, NAN],
        "o2": ["A", "bob", 29, 300, 1, 1, 300 / 200, 25, shrunk(0, 1), 1, NAN],
        "o5": ["A", "bob", 213, 400, 1, 1, 400 / 200, 25, shrunk(0, 1), 1, NAN],
        "o7": ["B", "cat", 15, 80, 1, 0, 80 / 1000, 0, shrunk(1, 1), 1, -10],
    }
    df = pd.DataFrame({
        "customer_id": pd.Series([rows[i][0] for i in ids], dtype="str"),
        "owner": pd.Series([rows[i][1] for i in ids], dtype="str"),
        "age_days": [float(rows[i][2]) for i in ids],
        "stage_at_as_of": pd.Series([stage[i] for i in ids], dtype="str"),
        "stage_index": [float(stage_index[i]) for i in ids],
        "days_since_stage_change": [float(since_change[i]) for i in ids],
        "amount": [float(rows[i][3]) for i in ids],
        "account_won_deals": [float(rows[i][4]) for i in ids],
        "account_lost_deals": [float(rows[i][5]) for i in ids],
        "amount_vs_account_won_avg": [float(rows[i][6]) for i in ids],
        "account_spend_365d": [float(rows[i][7]) for i in ids],
        "owner_win_rate": [float(rows[i][8]) for i in ids],
        "owner_closed_deals": [float(rows[i][9]) for i in ids],
        "days_to_expected_close": [float(rows[i][10]) for i in ids],
    })
    df.index = pd.Index(ids, name="opportunity_id", dtype="str")
    if not spend:
        df = df.drop(columns="account_spend_365d")
    return df


@pytest.fixture
def deal_txns(make_txns):
    return make_txns([
        ("A", ago(365), 10.0), ("A", ago(366), 1000.0), ("A", ago(1), 20.0), ("A", ago(1), -5.0),
        ("A", AS_OF, 500.0), ("D", "2024-03-02", 70.0),
    ])


def test_deals_without_history(opps, deal_txns):
    out = deals(opps, as_of=AS_OF, open_stages=OPEN_STAGES, txns=deal_txns)
    # without history: the current stage while still open; deals closed (after as_of) -> unknown
    stage = {"o1": "proposal", "o11": "negotiation", "o2": "unknown", "o5": "unknown", "o7": "qualification"}
    idx = {"o1": 2, "o11": 3, "o2": NAN, "o5": NAN, "o7": 1}
    since = dict.fromkeys(stage, NAN)
    exp = _deal_expected(stage, idx, since)
    assert list(out.columns) == DEAL_COLS
    assert_frame_equal(out, exp, check_dtype=False)
    assert_frame_equal(out.drop(columns=["owner_closed_deals"]), exp.drop(columns=["owner_closed_deals"]))


def test_deals_with_history(opps, deal_txns, make_history):
    h = make_history([
        ("o1", "proposal", ago(10, "14:00")), ("o1", "qualification", ago(50)),
        ("o1", "negotiation", AS_OF),                     # at as_of: not read
        ("o2", "won", "2024-03-10"), ("o2", "qualification", ago(25)),
        ("o5", "won", AS_OF),                             # only a change at as_of: still first stage
        ("o11", "negotiation", ago(5)),
        ("o3", "won", "2023-09-01"),                      # a closed deal: irrelevant
        # o7 has no history at all: the table records every change, so it never left the first stage
    ])
    out = deals(opps, as_of=AS_OF, open_stages=OPEN_STAGES, stage_history=h, txns=deal_txns)
    stage = {"o1": "proposal", "o11": "negotiation", "o2": "qualification", "o5": "prospecting",
             "o7": "prospecting"}
    idx = {"o1": 2, "o11": 3, "o2": 1, "o5": 0, "o7": 0}
    since = {"o1": 10, "o11": 5, "o2": 25, "o5": 213, "o7": 15}  # no change before as_of: since creation
    assert_frame_equal(out, _deal_expected(stage, idx, since), check_dtype=False)


def test_deals_history_rule_does_not_depend_on_rows_after_as_of(opps, make_history):
    # A history table whose rows all lie after as_of must give what an empty history table
    # gives (the snapshot at as_of): the history rule, not the no-history rule.
    # (Regression: the rule used to switch on len(stage_history).)
    empty = make_history([])
    later = make_history([("o1", "negotiation", "2024-03-05"), ("o7", "proposal", AS_OF)])
    a = deals(opps, as_of=AS_OF, open_stages=OPEN_STAGES, stage_history=empty)
    b = deals(opps, as_of=AS_OF, open_stages=OPEN_STAGES, stage_history=later)
    assert_frame_equal(a, b)
    assert a["stage_at_as_of"].tolist() == ["prospecting"] * 5
    assert a["days_since_stage_change"].tolist() == [60, 10, 29, 213, 15]  # since creation


def test_deals_open_stages_match_the_loaders_canonical_spelling(make_opps, make_history):
    # schemas stores open stages as config.normalise_stage(spelling): lower case, '_' -> ' ',
    # spaces collapsed. The funnel positions must use the same spelling.
    o = make_opps([("o1", "A", "ann", ago(5), "needs analysis", 1.0, None, None, None),
                   ("o2", "A", "ann", ago(5), "proposal sent", 1.0, None, None, None),
                   ("o3", "A", "ann", ago(5), "prospecting", 1.0, None, None, None)])
    out = deals(o, as_of=AS_OF, open_stages=["Prospecting", "Needs_Analysis", " Proposal  Sent"])
    assert out["stage_index"].tolist() == [1, 2, 0]
    h = make_history([("o1", "prospecting", ago(4))])
    out = deals(o, as_of=AS_OF, open_stages=["  PROSPECTING", "Needs_Analysis"], stage_history=h)
    assert out["stage_at_as_of"].tolist() == ["prospecting"] * 3   # the first open stage, canonical
    assert out["stage_index"].tolist() == [0, 0, 0]


def test_deals_owner_prior_and_no_txns(opps):
    out = deals(opps, as_of=AS_OF, open_stages=OPEN_STAGES, owner_prior=2.0)
    assert "account_spend_365d" not in out.columns
    # ann: 1 won of 2, overall 2/5: (1 + 2 * 0.4) / (2 + 2)
    assert out["owner_win_rate"].tolist() == pytest.approx([(1 + 0.8) / 4, 0.8 / 3, 0.8 / 3, 0.8 / 3, 1.8 / 3])
    raw = deals(opps, as_of=AS_OF, open_stages=OPEN_STAGES, owner_prior=0.0)
    assert raw["owner_win_rate"].tolist() == pytest.approx([1 / 2, 0.0, 0.0, 0.0, 1.0])


def test_deals_only_closed_before_as_of_count(opps):
    # a year earlier o3, o8, o9, o10 are all still to close -> no history of outcomes at all
    early = deals(opps, as_of="2023-06-15", open_stages=OPEN_STAGES)
    # open then: only o3 (o4 is created later; o8, o9, o10 closed before 2023-06-15)
    assert list(early.index) == ["o3"]
    # closed before: o8 2023-02-01 (won), o10 2023-04-01 (lost), o9 2023-06-01 (lost); A has none
    assert early.loc["o3", "account_won_deals"] == 0 and early.loc["o3", "account_lost_deals"] == 0
    assert np.isnan(early.loc["o3", "amount_vs_account_won_avg"])
    # owner ann: no closed deals; overall = 1/3 won
    assert early.loc["o3", "owner_win_rate"] == pytest.approx((0 + 10 / 3) / 10)
    assert early.loc["o3", "owner_closed_deals"] == 0


def test_deals_without_closed_date_column(make_opps):
    # a valid canonical table: every deal open, so the optional closed_date column is absent
    o = make_opps([("o1", "A", "ann", ago(5), "proposal", 10.0, None),
                   ("o2", "B", None, ago(3), "prospecting", NAN, None)],
                  columns=("opportunity_id", "customer_id", "owner", "created_date", "stage", "amount", "outcome"))
    out = deals(o, as_of=AS_OF, open_stages=OPEN_STAGES)
    assert list(out.index) == ["o1", "o2"]
    assert out["account_won_deals"].tolist() == [0, 0]
    assert out["owner_win_rate"].tolist() == [0.5, 0.5]  # no closed deals anywhere: 0.5
    assert out["stage_index"].tolist() == [2, 0]
    assert "days_to_expected_close" not in out.columns


# ------------------------------------------------------------------ build_features


def test_build_features_joins_fills_and_stages(make_txns, make_customers, make_invoices):
    t = make_txns([
        ("A", ago(200), 10.0, 4.0), ("A", ago(2), 30.0, NAN), ("A", ago(1), -5.0, -2.0),
        ("B", ago(3), 20.0, 5.0),
        ("Z", AS_OF, 5.0, NAN),  # only at as_of: not in the population
    ], cost=True)
    c = make_customers([("A", ago(300), 100.0), ("P", ago(7), 10.0), ("Q", "2024-03-02", 1.0)])
    inv = make_invoices([("i1", "A", ago(40), ago(35), 50.0, None),
                         ("i2", "X", ago(10), ago(5), 9.0, None)])  # X has no transactions
    cfg = FeatureConfig(windows_days=[30], growth_window_days=30, slope_months=2, overdue_threshold_days=30,
                        lifecycle=LifecycleConfig(lapsed_after_days=180, loyal_min_purchases=2))
    out = build_features(Tables(t, c, inv), as_of=AS_OF, config=cfg)
    assert list(out.index) == ["A", "B", "P"]
    assert out.index.name == "customer_id"
    fam = [rfm(t, as_of=AS_OF, windows_days=[30], customers=c), tenure(t, c, as_of=AS_OF),
           growth(t, as_of=AS_OF, window_days=30, slope_months=2), returns(t, as_of=AS_OF),
           margin(t, as_of=AS_OF), credit(inv, c, as_of=AS_OF)]
    assert list(out.columns) == [col for f in fam for col in f.columns] + ["lifecycle_stage"]
    # families join on customer_id; hand-checked values
    exp = expected({
        #    freq, total, tenure, n_returns, return_ratio, margin, n_inv, open, overdue, n_overdue, util
        "A": [2, 35, 300, 1, 5 / 40, (10 - 4) + (-5 + 2), 1, 50, 50, 1, 50 / 100],
        "B": [1, 20, 3, 0, 0, 15, 0, 0, 0, 0, NAN],
        "P": [0, 0, 7, 0, NAN, NAN, 0, 0, 0, 0, NAN],
    }, ["frequency", "monetary_total", "tenure_days", "n_returns", "return_ratio", "margin_total",
        "n_invoices", "open_balance", "overdue_balance", "n_overdue_30d", "credit_utilisation"],
        {"frequency": "int64"})
    assert_frame_equal(out[exp.columns], exp, check_dtype=False)
    for col in ["frequency", "monetary_total", "tenure_days", "return_ratio", "margin_total",
                "credit_utilisation"]:
        assert out[col].dtype == exp[col].dtype, col
    assert_series_equal(out["lifecycle_stage"],
                        pd.Series(pd.Categorical(["loyal", "first-time", "prospect"], categories=STAGES),
                                  index=cust_index(["A", "B", "P"]), name="lifecycle_stage"))
    # A: 2 purchase days, last 2 days ago: loyal under loyal_min_purchases=2 (the config is honoured)
    assert out.loc["A", "recency_days"] == 2


def test_build_features_without_optional_tables(make_txns):
    t = make_txns([("A", ago(2), 30.0), ("A", ago(40), 10.0), ("B", ago(400), 1.0)])
    out = build_features(Tables(t), as_of=AS_OF)
    assert list(out.index) == ["A", "B"]
    assert "n_invoices" not in out.columns and "margin_total" not in out.columns
    assert out["lifecycle_stage"].tolist() == ["repeat", "lapsed"]
    assert out["n_returns"].tolist() == [0, 0]


# ------------------------------------------------------------------ as_of validation

CALLS = {
    "rfm": lambda T, **k: rfm(T["t"], **k),
    "tenure": lambda T, **k: tenure(T["t"], **k),
    "growth": lambda T, **k: growth(T["t"], **k),
    "returns": lambda T, **k: returns(T["t"], **k),
    "margin": lambda T, **k: margin(T["t"], **k),
    "credit": lambda T, **k: credit(T["i"], **k),
    "open_at": lambda T, **k: open_at(T["o"], **k),
    "deals": lambda T, **k: deals(T["o"], open_stages=OPEN_STAGES, **k),
    "build_features": lambda T, **k: build_features(Tables(T["t"]), **k),
}


@pytest.fixture
def small(make_txns, make_invoices, make_opps):
    return {"t": make_txns([("A", ago(3), 1.0)]),
            "i": make_invoices([("i1", "A", ago(3), ago(1), 1.0, None)]),
            "o": make_opps([("o1", "A", "ann", ago(3), "proposal", 1.0, None, None, None)])}


@pytest.mark.parametrize("name", list(CALLS))
def test_as_of_is_required_keyword_only(name, small):
    fn = CALLS[name]
    with pytest.raises(TypeError):
        fn(small)                       # missing: keyword-only, no default
    with pytest.raises(TypeError):
        fn(small, as_of=None)           # never defaults to the data's max date


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("bad", ["2024-03-01 12:00", pd.Timestamp("2024-03-01 00:00:01"),
                                 dt.datetime(2024, 3, 1, 9, 30), pd.Timestamp("2024-03-01", tz="UTC")])
def test_as_of_with_time_of_day_is_rejected(name, bad, small):
    with pytest.raises(ValueError, match="calendar date"):
        CALLS[name](small, as_of=bad)


@pytest.mark.parametrize("name", list(CALLS))
def test_as_of_accepts_dates_in_any_form(name, small):
    ref = CALLS[name](small, as_of=AS_OF)
    for same in [dt.date(2024, 3, 1), dt.datetime(2024, 3, 1), pd.Timestamp("2024-03-01"), np.datetime64("2024-03-01")]:
        got = CALLS[name](small, as_of=same)
        if isinstance(ref, pd.DataFrame):
            assert_frame_equal(got, ref)


def test_as_of_is_keyword_only(make_txns):
    t = make_txns([("A", ago(3), 1.0)])
    with pytest.raises(TypeError):
        rfm(t, AS_OF)  # type: ignore[misc]


def test_deal_without_account_has_unknown_account_history(make_opps):
    # columns: opportunity_id, customer_id, owner, created_date, stage, amount, expected_close, closed, outcome
    o = make_opps([("o1", "A", "ann", "2024-01-01", "won", 10.0, None, "2024-01-20", "won"),
                   ("o2", "A", "ann", "2024-02-01", "proposal", 20.0, None, None, None),
                   ("o3", None, "ann", "2024-02-01", "proposal", 30.0, None, None, None)])
    got = deals(o, as_of="2024-03-01", open_stages=["proposal"])
    assert got.loc["o2", "account_won_deals"] == 1 and got.loc["o2", "amount_vs_account_won_avg"] == 2.0
    assert np.isnan(got.loc["o3", "account_won_deals"]) and np.isnan(got.loc["o3", "account_lost_deals"])
    assert np.isnan(got.loc["o3", "amount_vs_account_won_avg"])


def test_money_sums_are_exact_whatever_the_row_order():
    """Purchases and returns that cancel sum to exactly 0 (not 1.8e-14) in any row order, so
    spend_prior is 0 and the growth ratio over it is NaN, never a huge quotient."""
    from keyaccounts.features import growth, rfm
    amounts = [0.1, 0.2, -0.3, 19.99, 5.01, -25.0, 1e-7]
    rows = [("A", f"2024-0{1 + i % 2}-1{i}", a) for i, a in enumerate(amounts)]  # all in the prior window
    base = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    base["timestamp"] = pd.to_datetime(base["timestamp"])
    seen = set()
    for seed in range(20):
        t = base.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        r, g = rfm(t, as_of="2024-06-01"), growth(t, as_of="2024-06-01", window_days=90)
        assert r.loc["A", "monetary_total"] == 0.0
        assert g.loc["A", "spend_prior_90d"] == 0.0 and np.isnan(g.loc["A", "spend_growth_ratio_90d"])
        seen.add(tuple(g.loc["A"].fillna(-1).tolist()))
    assert len(seen) == 1
