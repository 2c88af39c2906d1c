"""The relational feature definition (features/relational.py) run on DuckDB against the numpy
oracle (build_features): same index, columns, dtypes and values, bit for bit.

Why exact, ratios included: money is summed as integer micro-units on both sides (exact, so
order-free) and divided once; every ratio repeats numpy's IEEE double operations in the same
order, and each such operation is correctly rounded, so the results cannot differ in a bit.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from test_point_in_time import CFG as PIT_CFG
from test_point_in_time import OPEN as PIT_OPEN
from test_point_in_time import materialise, worlds

from keyaccounts import datasets
from keyaccounts.config import InputSpec, ReadOptions
from keyaccounts.features import Tables, build_features, deals
from keyaccounts.features.relational import (
    SCORE_MODES,
    SHAPES,
    duckdb_connection,
    inputs_of,
    late_ids,
    relational_features,
)
from keyaccounts.features.relational_deals import relational_deals
from keyaccounts.features.relational_labels import relational_customer_labels, relational_deal_labels
from keyaccounts.labels import customer_labels, deal_labels
from keyaccounts.synth import STAGES_OPEN, synth_transactions, synthesize

duckdb = pytest.importorskip("duckdb")
AS_OF = "2024-03-01"
EXAMPLES = int(os.environ.get("KEYACCOUNTS_PIT_EXAMPLES", "60"))


def assert_same(oracle: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == list(oracle.columns)
    assert got.dtypes.to_dict() == oracle.dtypes.to_dict()
    assert_frame_equal(got, oracle, check_exact=True)


def tables_of(tb: dict) -> Tables:
    return Tables(tb["txns"], tb["customers"], tb["invoices"])


@pytest.mark.parametrize("scores", SCORE_MODES)
@pytest.mark.parametrize("shape", SHAPES)
def test_hand_made_edge_cases_equal_the_oracle(edge_tables, shape, scores):
    got = relational_features(edge_tables, as_of=AS_OF, shape=shape, scores=scores)
    assert_same(build_features(edge_tables, as_of=AS_OF), got)
    # hand-computed anchors, so a mistake shared with the oracle cannot pass
    assert got.loc["a", "frequency"] == 2 and got.loc["a", "recency_days"] == 10
    assert got.loc["a", "monetary_total"] == 160.0 and got.loc["a", "return_ratio"] == 20 / 180
    assert got.loc["a", "margin_total"] == (100 - 60) + (30 - 10) + (-20 + 12)
    assert got.loc["a", "open_balance"] == 150.0 and got.loc["a", "credit_utilisation"] == 0.15
    assert got.loc["b", "interval_last_days"] == 183 and got.loc["b", "interval_trend_ratio"] == 183 / 151
    assert got.loc["c", "frequency"] == 0 and np.isnan(got.loc["c", "recency_days"])
    assert got.loc["e", "lifecycle_stage"] == "prospect" and got.loc["e", "tenure_days"] == 46
    assert "d" not in got.index and "f" not in got.index


def test_without_optional_tables_and_with_string_ids(edge_tables):
    t = edge_tables.transactions.drop(columns="cost")
    t["customer_id"] = t["customer_id"].astype("str")  # not categorical: grouped on the strings
    tables = Tables(t)
    assert not inputs_of(tables).keyed and inputs_of(edge_tables).keyed
    assert_same(build_features(tables, as_of=AS_OF), relational_features(tables, as_of=AS_OF))


@pytest.mark.parametrize("categories", ["sorted", "reversed"])
def test_transactions_alone_keep_integer_keys_to_the_end(edge_tables, categories):
    """Transactions only: the query returns the integer keys (late_ids), mapped to the ids and
    ordered after it; categories not in id order (not what the loader makes) still sort right."""
    t = edge_tables.transactions.copy()
    if categories == "reversed":
        t["customer_id"] = t["customer_id"].cat.reorder_categories(t["customer_id"].cat.categories[::-1])
    tables = Tables(t)
    assert late_ids(inputs_of(tables)) and not late_ids(inputs_of(edge_tables))
    got = relational_features(tables, as_of=AS_OF)
    assert_same(build_features(tables, as_of=AS_OF), got)
    assert list(got.index) == ["a", "b", "c"]


def test_unknown_query_shapes_are_refused(edge_tables):
    with pytest.raises(ValueError, match="shape must be one of"):
        relational_features(edge_tables, as_of=AS_OF, shape="hash")
    with pytest.raises(ValueError, match="scores must be one of"):
        relational_features(edge_tables, as_of=AS_OF, scores="approx")


def test_as_of_is_keyword_only_and_a_date(edge_tables):
    with pytest.raises(TypeError):
        relational_features(edge_tables, AS_OF)
    with pytest.raises(ValueError, match="calendar date"):
        relational_features(edge_tables, as_of="2024-03-01 12:00")


def test_the_point_in_time_cutoff_lives_in_one_function(edge_tables, monkeypatch):
    """With before_as_of disabled, every table leaks (the row on the as_of day, the customer
    first seen later, the later sign-up, the later payment): no other cutoff exists."""
    from keyaccounts.features import relational
    monkeypatch.setattr(relational, "before_as_of", lambda day_expr, d0: "TRUE")
    leaky = relational_features(edge_tables, as_of=AS_OF)
    assert leaky.loc["a", "monetary_total"] == 160.0 + 999.0
    assert "d" in leaky.index and "f" in leaky.index
    assert leaky.loc["a", "open_balance"] == 0.0  # i1, paid 2024-03-10, counted as paid


@pytest.mark.parametrize("shape", SHAPES)
def test_synthetic_tables_equal_the_oracle_at_two_dates(shape, synthetic_cost_tables):
    tables, cfg, dates = synthetic_cost_tables
    for as_of in dates:
        got = relational_features(tables, as_of=as_of, config=cfg, shape=shape, scores="rank")
        assert_same(build_features(tables, as_of=as_of, config=cfg), got)
        assert got["r_score"].nunique() > 1 and got["lifecycle_stage"].nunique() > 2  # not a trivial frame


@pytest.mark.slow
@pytest.mark.data
def test_cdnow_equals_the_oracle():
    from keyaccounts.schemas import load_table
    path = datasets.shared_data() / "cdnow" / "CDNOW_master.txt"
    if not path.exists():
        pytest.skip(f"{path} not found")
    spec = InputSpec(path=str(path), columns=datasets.CDNOW_COLUMNS,
                     read=ReadOptions(date_format=datasets.CDNOW_DATE_FORMAT))
    t, _ = load_table("transactions", spec, as_of=pd.Timestamp("1997-10-01").date())
    for as_of in ("1997-04-01", "1997-10-01", "1998-07-01"):
        got = relational_features(Tables(t), as_of=as_of)
        assert_same(build_features(Tables(t), as_of=as_of), got)
        assert len(got) > 1000
        for horizon in (90, 365):  # the labels of that population, as training snapshots take them
            y = relational_customer_labels(Tables(t), as_of=as_of, horizon_days=horizon, index=got.index)
            assert_same(customer_labels(t, as_of=as_of, horizon_days=horizon, index=got.index), y)
            # CDNOW ends on 1998-06-30: the last window is empty, everyone churned
            assert (0 < y["churned"].mean() < 1) == (as_of != "1998-07-01")


@pytest.mark.slow
def test_spilling_under_a_memory_limit_gives_the_same_frame(tmp_path):
    """Under a 40 MB memory limit the query needs to offload to disk: with no spill space
    DuckDB runs out of memory, with a temp directory it completes and changes no number."""
    tx = synth_transactions(n_rows=300_000, n_customers=60_000, seed=3)
    tables = Tables(tx)

    def con(spill_space: str | None):
        c = duckdb_connection(threads=2, memory_limit="40MB", temp_directory=str(tmp_path / "spill"))
        if spill_space is not None:
            c.execute(f"SET max_temp_directory_size = '{spill_space}'").fetchall()
        return c
    with pytest.raises(duckdb.OutOfMemoryException):
        relational_features(tables, as_of="2025-07-01", con=con("0KB"))
    got = relational_features(tables, as_of="2025-07-01", con=con(None))
    assert_same(build_features(tables, as_of="2025-07-01"), got)


# ------------------------------------------------------------------ deals family and labels

def day(n: int, hhmm: str = "00:00") -> str:
    """A timestamp n days from AS_OF."""
    return f"{(pd.Timestamp(AS_OF) + pd.Timedelta(days=n)).date()} {hhmm}"


def deals_oracle(t: Tables, as_of, stages=PIT_OPEN, owner_prior: float = 10.0) -> pd.DataFrame:
    return deals(t.opportunities, as_of=as_of, open_stages=stages, stage_history=t.stage_history,
                 txns=t.transactions, owner_prior=owner_prior)


def assert_deals_and_labels_equal(t: Tables, as_of, *, stages=PIT_OPEN, horizon_days: int = 30,
                                  index: pd.Index | None = None) -> dict[str, pd.DataFrame]:
    """Relational deals, customer labels (for `index`, default the feature population) and deal
    labels equal numpy's bit for bit, dtypes included; returns the relational frames."""
    got = {"deals": relational_deals(t, as_of=as_of, open_stages=stages)}
    assert_same(deals_oracle(t, as_of, stages), got["deals"])
    cust = build_features(Tables(t.transactions), as_of=as_of).index if index is None else index
    got["labels"] = relational_customer_labels(t, as_of=as_of, horizon_days=horizon_days, index=cust)
    assert_same(customer_labels(t.transactions, as_of=as_of, horizon_days=horizon_days, index=cust), got["labels"])
    got["deal_labels"] = relational_deal_labels(t, as_of=as_of, horizon_days=horizon_days, index=got["deals"].index)
    assert_same(deal_labels(t.opportunities, as_of=as_of, horizon_days=horizon_days, index=got["deals"].index),
                got["deal_labels"])
    return got


@pytest.fixture(scope="module")
def deal_tables(make_txns, make_opps, make_history):
    """Won amounts 0.1 + 0.2 + 0.7 (exact money: their mean is 1/3, not float noise), a deal
    without account or owner, one closed after as_of (open then), one created on the as_of day,
    spend rows outside the 365 days and on the as_of day."""
    t = make_txns([("a", day(-400), 70.0), ("a", day(-100), 50.25), ("a", day(-1, "23:59"), -10.5),
                   ("a", day(0), 999.0), ("b", day(-5), 10.0), ("b", day(10), 20.0), ("a", day(29), 0.1),
                   ("b", day(30), 5.0), ("c", day(12), -3.0)])
    opps = make_opps([
        ("o1", "a", "ann", day(-100), "won", 0.1, None, day(-50), "won"),
        ("o2", "a", "ann", day(-90), "won", 0.2, None, day(-40), "won"),
        ("o3", "a", "bob", day(-80), "won", 0.7, None, day(-30), "won"),
        ("o4", "a", "bob", day(-70), "lost", 5.0, None, day(-20), "lost"),
        ("o5", "a", "ann", day(-10), "proposal", 1.0, day(15), None, None),
        ("o6", None, None, day(-5), "qualification", 2.0, None, None, None),
        ("o7", "b", "ann", day(-60), "won", 3.0, day(-2), day(5), "won"),
        ("o8", "a", "cat", day(0), "prospecting", 4.0, None, None, None)])
    hist = make_history([("o5", "qualification", day(-9, "14:00")), ("o5", "proposal", day(-3)),
                         ("o5", "negotiation", day(1)), ("o7", "negotiation", day(-1, "23:59"))])
    return Tables(t, opportunities=opps), hist


def test_deals_and_labels_hand_made_equal_the_oracle(deal_tables):
    t, hist = deal_tables
    got = assert_deals_and_labels_equal(t, AS_OF, index=pd.Index(["a", "b", "c", "zz"], dtype="str"))
    d = got["deals"]
    assert list(d.index) == ["o5", "o6", "o7"]
    assert d.loc["o5", "stage_at_as_of"] == "proposal" and d.loc["o5", "stage_index"] == 2
    assert d.loc["o5", "amount_vs_account_won_avg"] == 1.0 / (1.0 / 3)  # the exact won average
    assert d.loc["o5", "account_spend_365d"] == 50.25 - 10.5 and d.loc["o5", "account_lost_deals"] == 1
    assert d.loc["o5", "owner_win_rate"] == (2 + 10 * 0.75) / (2 + 10) and d.loc["o5", "days_to_expected_close"] == 15
    assert np.isnan(d.loc["o6", "account_won_deals"]) and d.loc["o6", "owner_win_rate"] == 0.75
    assert d.loc["o7", "stage_at_as_of"] == "unknown" and np.isnan(d.loc["o7", "stage_index"])
    assert d["owner_closed_deals"].dtype == "float64"  # o6 has no owner: numpy's reindex fills
    y = got["labels"]
    assert list(y["churned"]) == [0, 0, 1, 1] and list(y["future_value"]) == [999.1, 20.0, -3.0, 0.0]
    assert list(got["deal_labels"]["won_within_horizon"]) == [0, 0, 1]
    with_hist = assert_deals_and_labels_equal(Tables(t.transactions, opportunities=t.opportunities,
                                                     stage_history=hist), AS_OF)["deals"]
    assert with_hist.loc["o5", "stage_at_as_of"] == "proposal" and with_hist.loc["o5", "days_since_stage_change"] == 3
    assert with_hist.loc["o6", "stage_at_as_of"] == "prospecting" and with_hist.loc["o6", "days_since_stage_change"] == 5
    assert with_hist.loc["o7", "stage_at_as_of"] == "negotiation"


def test_deals_and_labels_cutoffs_live_in_one_function(deal_tables, monkeypatch):
    """Moving before_as_of's cutoff a day later moves every deal and label cutoff with it: the
    deal created on the as_of day opens, the spend on that day counts, and the label window
    becomes [as_of + 1, as_of + 31) (its two ends are that rule too)."""
    from keyaccounts.features import relational
    t, _ = deal_tables
    monkeypatch.setattr(relational, "before_as_of", lambda day_expr, d0: f"({day_expr} < {int(d0) + 1})")
    d = relational_deals(t, as_of=AS_OF, open_stages=PIT_OPEN)
    assert "o8" in d.index and d.loc["o5", "account_spend_365d"] == 50.25 - 10.5 + 999.0
    y = relational_customer_labels(t, as_of=AS_OF, horizon_days=30, index=pd.Index(["a", "b"], dtype="str"))
    assert list(y["future_value"]) == [0.1, 25.0]


def test_label_horizon_must_be_positive(deal_tables):
    t, _ = deal_tables
    with pytest.raises(ValueError, match="positive"):
        relational_customer_labels(t, as_of=AS_OF, horizon_days=0, index=pd.Index(["a"]))
    with pytest.raises(TypeError):
        relational_deals(t, AS_OF, open_stages=PIT_OPEN)


@pytest.fixture(scope="module")
def synthetic_deal_tables():
    s = synthesize(n_customers=400, seed=5, start="2023-01-01", end="2025-06-30")
    return Tables(s.transactions, s.customers, s.invoices, s.opportunities, s.stage_history)


@pytest.mark.parametrize("history", [True, False])
def test_synthetic_deals_and_labels_equal_the_oracle(synthetic_deal_tables, history):
    t = synthetic_deal_tables if history else Tables(
        synthetic_deal_tables.transactions, opportunities=synthetic_deal_tables.opportunities)
    n_open = 0
    for as_of, horizon in (("2023-09-01", 90), ("2024-05-17", 30), ("2025-03-01", 120)):
        got = assert_deals_and_labels_equal(t, as_of, stages=STAGES_OPEN, horizon_days=horizon)
        n_open += len(got["deals"])
        assert got["labels"]["churned"].nunique() == 2 and got["deal_labels"]["closed_within_horizon"].any()
    assert n_open > 40 and got["deals"]["owner_win_rate"].nunique() > 2  # not a trivial frame
    # without history, deals closed later are of unknown stage then (the generator's open deals end later)
    assert got["deals"]["stage_index"].nunique() > 2 if history else set(got["deals"]["stage_at_as_of"]) == {"unknown"}
    for prior in (0.0, 3.5):
        want = deals_oracle(t, "2024-05-17", STAGES_OPEN, owner_prior=prior)
        assert_same(want, relational_deals(t, as_of="2024-05-17", open_stages=STAGES_OPEN, owner_prior=prior))


# ------------------------------------------------------------------ hypothesis: oracle and leakage

@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=worlds())
def test_hypothesis_worlds_equal_the_oracle_and_do_not_leak(w, f):
    base = tables_of(materialise(w, with_future=False, f=f))
    full = tables_of(materialise(w, with_future=True, f=f))
    got_base = relational_features(base, as_of=w["as_of"], config=PIT_CFG)
    got_full = relational_features(full, as_of=w["as_of"], config=PIT_CFG)
    assert_same(build_features(full, as_of=w["as_of"], config=PIT_CFG), got_full)
    # rows on/after as_of (new customers, later payments, later rows) change nothing
    assert_same(got_base, got_full)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=worlds(), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_row_order_changes_nothing(w, seed, f):
    tb = materialise(w, with_future=True, f=f)
    rng = np.random.default_rng(seed)
    shuffled = {k: (v.iloc[rng.permutation(len(v))].reset_index(drop=True) if isinstance(v, pd.DataFrame) else v)
                for k, v in tb.items()}
    a = relational_features(tables_of(tb), as_of=w["as_of"], config=PIT_CFG)
    b = relational_features(tables_of(shuffled), as_of=w["as_of"], config=PIT_CFG)
    assert_same(a, b)  # bit for bit


@pytest.fixture(scope="module")
def f(make_txns, make_customers, make_invoices, make_opps, make_history):
    return {"txns": make_txns, "customers": make_customers, "invoices": make_invoices, "opps": make_opps,
            "history": make_history}


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=worlds(), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_deals_and_labels_equal_the_oracle_do_not_leak_and_ignore_order(w, seed, f):
    def tables(tb: dict) -> Tables:
        return Tables(tb["txns"], tb["customers"], tb["invoices"], tb["opps"], tb["history"])
    as_of, full = w["as_of"], materialise(w, with_future=True, f=f)
    index = build_features(tables(full), as_of=as_of).index.append(pd.Index(["n0", "n1", "zz"], dtype="str"))
    got = assert_deals_and_labels_equal(tables(full), as_of, index=index)
    # deals: rows on/after as_of (later deals, closes, stage changes, spend) change nothing
    base = tables(materialise(w, with_future=False, f=f))
    assert_same(got["deals"], relational_deals(base, as_of=as_of, open_stages=PIT_OPEN))
    # labels read only [as_of, as_of + 30 days): the rows outside it change nothing
    t = full["txns"]
    day = (t["timestamp"] - pd.Timestamp(as_of)).dt.floor("D").dt.days
    window = Tables(t[(day >= 0) & (day < 30)].reset_index(drop=True))
    assert_same(got["labels"], relational_customer_labels(window, as_of=as_of, horizon_days=30, index=index))
    # row order changes nothing, bit for bit
    rng = np.random.default_rng(seed)
    sh = {k: (v.iloc[rng.permutation(len(v))].reset_index(drop=True) if isinstance(v, pd.DataFrame) else v)
          for k, v in full.items()}
    assert_same(got["deals"], relational_deals(tables(sh), as_of=as_of, open_stages=PIT_OPEN))
    assert_same(got["labels"], relational_customer_labels(tables(sh), as_of=as_of, horizon_days=30, index=index))
    assert_same(got["deal_labels"], relational_deal_labels(tables(sh), as_of=as_of, horizon_days=30,
                                                           index=got["deals"].index))
