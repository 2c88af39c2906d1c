"""Hand-computed tests of the labels: what happens in [as_of, as_of + horizon)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from keyaccounts.labels import customer_labels, deal_labels

AS_OF = "2024-03-01"


def _customer_expected(rows: dict) -> pd.DataFrame:
    df = pd.DataFrame.from_dict(rows, orient="index", columns=["churned", "future_value", "future_purchase_days"])
    df.index = pd.Index(list(rows), name="customer_id", dtype="str")
    return df.astype({"churned": "int64", "future_value": "float64", "future_purchase_days": "int64"})


@pytest.fixture
def future_txns(make_txns):
    return make_txns([
        ("A", "2024-02-29 23:59", 100.0),  # before as_of: not a label
        ("A", "2024-03-01 00:00", 50.0),   # as_of midnight: first instant of the window
        ("A", "2024-03-01 15:00", 20.0),   # same day: one purchase day
        ("A", "2024-03-05", -30.0),        # a return in the window: reduces value
        ("A", "2024-03-10 23:59", 5.0),    # last day of a 10-day window
        ("A", "2024-03-11 00:00", 1000.0),  # as_of + 10: outside
        ("B", "2024-03-02", -10.0),        # only a return: churned, negative value
        ("C", "2024-03-11", 7.0),          # only after the window
        ("D", "2024-02-01", 9.0),          # only before as_of
    ])


def test_customer_labels_window_edges(future_txns):
    out = customer_labels(future_txns, as_of=AS_OF, horizon_days=10, index=pd.Index(["A", "B", "C", "D", "N"]))
    exp = _customer_expected({
        "A": [0, 50 + 20 - 30 + 5, 2],
        "B": [1, -10, 0],
        "C": [1, 0, 0],
        "D": [1, 0, 0],
        "N": [1, 0, 0],   # no rows at all
    })
    assert_frame_equal(out, exp)


def test_customer_labels_longer_horizon_and_index_order(future_txns):
    out = customer_labels(future_txns, as_of=AS_OF, horizon_days=11, index=pd.Index(["C", "A"]))
    exp = _customer_expected({"C": [0, 7, 1], "A": [0, 1045, 3]})
    assert_frame_equal(out, exp)


def test_customer_labels_one_day_horizon(future_txns):
    out = customer_labels(future_txns, as_of=AS_OF, horizon_days=1, index=pd.Index(["A", "B"]))
    assert_frame_equal(out, _customer_expected({"A": [0, 70, 1], "B": [1, 0, 0]}))


def test_customer_labels_empty_index(future_txns):
    out = customer_labels(future_txns, as_of=AS_OF, horizon_days=10, index=pd.Index([], dtype="str"))
    assert len(out) == 0 and list(out.columns) == ["churned", "future_value", "future_purchase_days"]


@pytest.mark.parametrize("h", [0, -5])
def test_customer_labels_reject_non_positive_horizon(future_txns, h):
    with pytest.raises(ValueError, match="horizon_days"):
        customer_labels(future_txns, as_of=AS_OF, horizon_days=h, index=pd.Index(["A"]))


def test_labels_reject_time_of_day_as_of(future_txns, make_opps):
    with pytest.raises(ValueError, match="calendar date"):
        customer_labels(future_txns, as_of="2024-03-01 06:00", horizon_days=10, index=pd.Index(["A"]))
    o = make_opps([("d1", "A", "ann", "2024-01-01", "won", 1.0, None, "2024-03-01", "won")])
    with pytest.raises(ValueError, match="calendar date"):
        deal_labels(o, as_of="2024-03-01 06:00", horizon_days=10, index=pd.Index(["d1"]))
    with pytest.raises(TypeError):
        deal_labels(o, horizon_days=10, index=pd.Index(["d1"]))  # as_of is keyword-only and required


@pytest.fixture
def deal_outcomes(make_opps):
    return make_opps([
        ("d1", "A", "ann", "2024-01-01", "won", 10.0, None, "2024-03-01", "won"),    # closes on as_of
        ("d2", "A", "ann", "2024-01-01", "lost", 10.0, None, "2024-03-30", "lost"),  # last day of 30
        ("d3", "B", "bob", "2024-02-01", "won", 10.0, None, "2024-03-31", "won"),    # as_of + 30: outside
        ("d4", "B", "bob", "2024-02-01", "proposal", 10.0, "2024-03-15", None, None),  # still open
        ("d5", "C", "bob", "2023-12-01", "won", 10.0, None, "2024-02-29", "won"),    # closed before as_of
        ("d6", "C", "cat", "2024-02-20", "won", 10.0, None, "2024-03-10 16:30", "won"),  # with a time
    ])


def test_deal_labels(deal_outcomes):
    idx = pd.Index(["d1", "d2", "d3", "d4", "d5", "d6", "d7"])  # d7: not in the table
    out = deal_labels(deal_outcomes, as_of=AS_OF, horizon_days=30, index=idx)
    exp = pd.DataFrame({"won_within_horizon": [1, 0, 0, 0, 0, 1, 0],
                        "closed_within_horizon": [1, 1, 0, 0, 0, 1, 0]},
                       index=pd.Index(list(idx), name="opportunity_id", dtype="str")).astype("int64")
    assert_frame_equal(out, exp)


def test_deal_labels_longer_horizon(deal_outcomes):
    out = deal_labels(deal_outcomes, as_of=AS_OF, horizon_days=31, index=pd.Index(["d3", "d2"]))
    exp = pd.DataFrame({"won_within_horizon": [1, 0], "closed_within_horizon": [1, 1]},
                       index=pd.Index(["d3", "d2"], name="opportunity_id", dtype="str")).astype("int64")
    assert_frame_equal(out, exp)


def test_deal_labels_without_closed_date_column(make_opps):
    o = make_opps([("d1", "A", "ann", "2024-01-01", "proposal", 1.0, None)],
                  columns=("opportunity_id", "customer_id", "owner", "created_date", "stage", "amount", "outcome"))
    out = deal_labels(o, as_of=AS_OF, horizon_days=30, index=pd.Index(["d1"]))
    assert out.to_dict("list") == {"won_within_horizon": [0], "closed_within_horizon": [0]}
    assert np.all(out.dtypes == "int64")
