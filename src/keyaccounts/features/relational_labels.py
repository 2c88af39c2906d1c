"""The labels (labels.py) written once as SQL, executed by DuckDB: what happens in
[as_of, as_of + horizon).

    y = relational_customer_labels(tables, as_of="2024-03-01", horizon_days=90, index=feats.index)
    y = relational_deal_labels(tables, as_of=..., horizon_days=90, index=deal_feats.index)

labels.py is the oracle, bit for bit (tests/test_relational_features.py). The window is
`in_horizon`: known at as_of + horizon and not known at as_of, both sides written with
`relational.before_as_of`, so the point-in-time rule still lives in one place. future_value is
money, summed as integer micro-units (exact, order-free), as labels.py does with money_sum.
Portability: CASE, COALESCE, LEFT JOIN, GROUP BY, count(DISTINCT) only; the DuckDB-only
pieces are those of relational.py (`round_even`, date - date).
"""
from __future__ import annotations

import pandas as pd

from . import relational
from .arrays import as_of_day
from .build import Tables
from .relational import day_number, duckdb_connection, engine_transactions, inputs_of, money, money_units
from .relational_deals import run_sql


def in_horizon(day_expr: str, d0: int, horizon_days: int) -> str:
    """A row dated `day` falls in [as_of, as_of + horizon): not known at as_of, known at the end."""
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    b = relational.before_as_of
    return f"(NOT {b(day_expr, d0)} AND {b(day_expr, d0 + horizon_days)})"


def population_frame(index: pd.Index) -> pd.DataFrame:
    """The rows to label, in order (position kept, so repeated or unsorted ids come back as given)."""
    return pd.DataFrame({"id": pd.Series(index, dtype="str").to_numpy(dtype=object), "pos": range(len(index))})


def customer_label_sql(d0: int, horizon_days: int, *, keyed: bool) -> str:
    """Per population row (`population`): churned, future_value, future_purchase_days."""
    day = day_number("timestamp")
    rows = (f"SELECT customer_id AS cid, {day} AS day, amount FROM transactions "
            f"WHERE customer_id IS NOT NULL AND {in_horizon(day, d0, horizon_days)}")
    key, src = (("k.customer_id", f"({rows}) r JOIN customer_keys k ON r.cid = k.cid") if keyed
                else ("CAST(r.cid AS VARCHAR)", f"({rows}) r"))
    agg = (f"SELECT {key} AS id, sum({money_units('r.amount')}) AS u, "
           f"count(DISTINCT CASE WHEN r.amount > 0 THEN r.day END) AS n_days FROM {src} GROUP BY {key}")
    return (f"SELECT p.pos, CAST(coalesce(y.n_days, 0) = 0 AS BIGINT) AS churned, "
            f"coalesce({money('y.u')}, 0.0) AS future_value, CAST(coalesce(y.n_days, 0) AS BIGINT) AS future_purchase_days "
            f"FROM population p LEFT JOIN ({agg}) y ON p.id = y.id ORDER BY p.pos")


def deal_label_sql(d0: int, horizon_days: int, *, has_closed: bool, has_outcome: bool) -> str:
    """Per population row: won_within_horizon, closed_within_horizon (closed_date in the window)."""
    in_win = in_horizon(day_number("o.closed_date"), d0, horizon_days) if has_closed else "FALSE"
    won = "o.outcome = 'won'" if has_outcome else "FALSE"
    return (f"SELECT p.pos, CAST(coalesce({in_win} AND {won}, FALSE) AS BIGINT) AS won_within_horizon, "
            f"CAST(coalesce({in_win}, FALSE) AS BIGINT) AS closed_within_horizon FROM population p "
            "LEFT JOIN opportunities o ON p.id = CAST(o.opportunity_id AS VARCHAR) ORDER BY p.pos")


def relational_customer_labels(tables: Tables, *, as_of, horizon_days: int, index: pd.Index, con=None) -> pd.DataFrame:
    """`labels.customer_labels(tables.transactions, ...)` computed by DuckDB: the same frame."""
    d0 = as_of_day(as_of)
    inp = inputs_of(tables)
    sql = customer_label_sql(d0, horizon_days, keyed=inp.keyed)
    names = {"population": population_frame(index), **engine_transactions(tables, inp)}
    out = run_sql(con or duckdb_connection(), sql, names)
    out.index = pd.Index(index, name="customer_id")
    return out[["churned", "future_value", "future_purchase_days"]].astype(
        {"churned": "int64", "future_value": "float64", "future_purchase_days": "int64"})


def relational_deal_labels(tables: Tables, *, as_of, horizon_days: int, index: pd.Index, con=None) -> pd.DataFrame:
    """`labels.deal_labels(tables.opportunities, ...)` computed by DuckDB: the same frame."""
    d0 = as_of_day(as_of)
    o = tables.opportunities
    sql = deal_label_sql(d0, horizon_days, has_closed="closed_date" in o.columns, has_outcome="outcome" in o.columns)
    out = run_sql(con or duckdb_connection(), sql, {"population": population_frame(index), "opportunities": o})
    out.index = pd.Index(index, name="opportunity_id")
    return out[["won_within_horizon", "closed_within_horizon"]].astype("int64")
