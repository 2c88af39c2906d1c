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
from test_point_in_time import materialise, worlds

from keyaccounts import datasets
from keyaccounts.config import InputSpec, ReadOptions
from keyaccounts.features import Tables, build_features
from keyaccounts.features.relational import (
    SCORE_MODES,
    SHAPES,
    duckdb_connection,
    inputs_of,
    relational_features,
)
from keyaccounts.synth import synth_transactions

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
