"""The deals family (features/deals.py) written once as SQL, executed by DuckDB.

    d = relational_deals(tables, as_of="2024-03-01", open_stages=cfg.stages.open)   # == deals(...)

numpy's `deals` is the oracle, column for column and bit for bit (tests/test_relational_features.py).
Every date passes through `relational.before_as_of`, the one point-in-time rule; the won
average and the account spend are money, summed exactly as integer micro-units.

Portability (Spark SQL, PostgreSQL): this text uses only CASE, COALESCE, CAST, GROUP BY, LEFT
JOIN and VALUES. DuckDB-only pieces come from relational.py: `round_even` (money_units; Spark
`bround`, PostgreSQL `round(numeric)` rounds half away from zero, so it needs its own
half-even expression) and date - date giving days (Spark: `datediff`).
Where the two cannot agree (invalid rows the loader refuses): a NULL created_date (numpy's NaT
counts as before as_of, here it does not) and a stage change tied with another on the same
opportunity and timestamp (numpy keeps the later row in input order, here the larger stage,
so that row order cannot matter).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..config import normalise_stage
from . import relational
from .arrays import as_of_day
from .build import Tables
from .deals import UNKNOWN_STAGE
from .relational import day_number, duckdb_connection, engine_transactions, inputs_of, money, money_units, ratio


@dataclass(frozen=True)
class DealInputs:
    """Which optional columns and tables exist: the query's shape (and columns) depend on them."""

    customer: bool = False
    owner: bool = False
    outcome: bool = False
    closed: bool = False
    expected: bool = False
    history: bool = False
    txns: bool = False
    keyed: bool = False  # transactions.customer_id holds integer keys into table customer_keys


def deal_inputs_of(tables: Tables, *, with_txns: bool = True) -> DealInputs:
    cols = set(tables.opportunities.columns)
    return DealInputs(customer="customer_id" in cols, owner="owner" in cols, outcome="outcome" in cols,
                      closed="closed_date" in cols, expected="expected_close_date" in cols,
                      history=tables.stage_history is not None, txns=with_txns and "customer_id" in cols,
                      keyed=with_txns and inputs_of(tables).keyed)


def literal(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def opps_sql(inp: DealInputs) -> str:
    """The opportunities with day numbers; absent optional columns are NULL."""
    def col(present: bool, expr: str, typ: str) -> str:
        return expr if present else f"CAST(NULL AS {typ})"
    return ("SELECT CAST(opportunity_id AS VARCHAR) AS oid, "
            f"{col(inp.customer, 'CAST(customer_id AS VARCHAR)', 'VARCHAR')} AS cid, "
            f"{col(inp.owner, 'CAST(owner AS VARCHAR)', 'VARCHAR')} AS owner, "
            f"{day_number('created_date')} AS created, CAST(stage AS VARCHAR) AS stage, "
            "CAST(amount AS DOUBLE) AS amount, "
            f"{col(inp.outcome, 'CAST(outcome AS VARCHAR)', 'VARCHAR')} AS outcome, "
            f"{col(inp.closed, day_number('closed_date'), 'BIGINT')} AS closed, "
            f"{col(inp.expected, day_number('expected_close_date'), 'BIGINT')} AS expected FROM opportunities")


def stage_at_sql(d0: int, inp: DealInputs, first_stage: str) -> tuple[str, str]:
    """(stage, days since the last change) of the open deal `o` as of d0, with `lc` the last
    change before as_of (history only). Without history: the current stage while still open,
    'unknown' once it has an outcome, and no days since a change."""
    if not inp.history:
        return (f"CASE WHEN o.outcome IS NULL THEN o.stage ELSE {literal(UNKNOWN_STAGE)} END",
                "CAST(NULL AS DOUBLE)")
    # whether a history table is given decides the rule, never how many rows it has
    return (f"CASE WHEN lc.oid IS NULL THEN {literal(first_stage)} ELSE lc.stage END",
            f"CAST({d0} - CASE WHEN lc.oid IS NULL THEN o.created ELSE lc.day END AS DOUBLE)")


def last_change_sql(d0: int) -> str:
    """The last stage entered before as_of per opportunity (ties: the larger stage name)."""
    day = day_number("changed_at")
    h = (f"SELECT CAST(opportunity_id AS VARCHAR) AS oid, CAST(stage AS VARCHAR) AS stage, changed_at, {day} AS day "
         f"FROM stage_history WHERE {relational.before_as_of(day, d0)}")
    return (f"SELECT h.oid, max(h.stage) AS stage, max(h.day) AS day FROM ({h}) h JOIN "
            f"(SELECT oid, max(changed_at) AS t FROM ({h}) x GROUP BY oid) m ON h.oid = m.oid AND h.changed_at = m.t "
            "GROUP BY h.oid")


def closed_stats_sql(key: str) -> str:
    """Deals closed before as_of (table `closed`) per `key`: won, all, won amount in micro-units."""
    return (f"SELECT {key} AS k, sum(CASE WHEN won THEN 1 ELSE 0 END) AS n_won, count(*) AS n, "
            f"sum(CASE WHEN won THEN {money_units('amount')} END) AS won_units, "
            f"count(CASE WHEN won THEN amount END) AS won_n FROM closed WHERE {key} IS NOT NULL GROUP BY {key}")


def spend_sql(d0: int, inp: DealInputs, days: int = 365) -> str:
    """Each account's net spend over [as_of - days, as_of), in micro-units, by customer id."""
    day = day_number("timestamp")
    rows = (f"SELECT customer_id AS cid, {money_units('amount')} AS u FROM transactions "
            f"WHERE customer_id IS NOT NULL AND {relational.before_as_of(day, d0)} AND {day} >= {d0 - days}")
    if inp.keyed:  # integer codes -> ids, once per customer
        return (f"SELECT k.customer_id AS k, sum(r.u) AS u FROM ({rows}) r JOIN customer_keys k ON r.cid = k.cid "
                "GROUP BY k.customer_id")
    return f"SELECT CAST(cid AS VARCHAR) AS k, sum(u) AS u FROM ({rows}) r GROUP BY 1"


def account_columns(inp: DealInputs) -> dict[str, str]:
    """The account's history over the open deal `o`, its closed-deal row `a` and spend `sp`:
    NULL (NaN) when the deal has no customer, as numpy (unknown, not "no history")."""
    def known(expr: str) -> str:
        return f"CASE WHEN o.cid IS NOT NULL THEN {expr} END"
    won_avg = f"CASE WHEN a.won_n > 0 THEN {money('a.won_units')} / CAST(a.won_n AS DOUBLE) END"
    cols = {}
    if inp.customer:
        cols |= {"account_won_deals": known("CAST(coalesce(a.n_won, 0) AS DOUBLE)"),
                 "account_lost_deals": known("CAST(coalesce(a.n - a.n_won, 0) AS DOUBLE)"),
                 "amount_vs_account_won_avg": ratio("o.amount", won_avg)}
    if inp.txns:
        cols["account_spend_365d"] = known(f"coalesce({money('sp.u')}, 0.0)")
    return cols


def owner_columns(owner_prior: float) -> dict[str, str]:
    """The owner's win rate over the owner's closed-deal row `w` and the overall rate `ov`,
    shrunk by `owner_prior` pseudo-deals (numpy's operations in numpy's order)."""
    w, n = "CAST(coalesce(w.n_won, 0) AS DOUBLE)", "CAST(coalesce(w.n, 0) AS DOUBLE)"
    rate = (f"(({w} + {float(owner_prior)!r} * ov.rate) / ({n} + {float(owner_prior)!r}))" if owner_prior > 0
            else ratio(w, n))
    return {"owner_win_rate": rate, "owner_closed_deals": "coalesce(w.n, 0)"}


def deal_sql(d0: int, inp: DealInputs, open_stages: Sequence[str], *, owner_prior: float = 10.0) -> str:
    """The deals query: one row per opportunity open at as_of, columns as `features.deals`."""
    stages = [normalise_stage(s) for s in open_stages]
    pos = {s: i for i, s in enumerate(stages)}  # a repeated stage keeps its last position, as numpy's dict
    index = (f"(VALUES {', '.join(f'({literal(s)}, {float(i)!r})' for s, i in pos.items())}) AS si(stage, idx)"
             if pos else "(SELECT CAST(NULL AS VARCHAR) AS stage, CAST(NULL AS DOUBLE) AS idx) si")
    before = relational.before_as_of
    # an outcome without a close date counts as closed before as_of: numpy's NaT sorts before every day
    closed_if = f"outcome IS NOT NULL AND coalesce({before('closed', d0)}, TRUE)" if inp.outcome and inp.closed else "FALSE"
    ctes = [f"o_all AS ({opps_sql(inp)})",
            f"o AS (SELECT * FROM o_all WHERE {before('created', d0)} AND NOT coalesce({before('closed', d0)}, FALSE))",
            f"closed AS (SELECT *, outcome = 'won' AS won FROM o_all WHERE {closed_if})"]
    stage, since = stage_at_sql(d0, inp, stages[0] if stages else "")
    joins = [f"LEFT JOIN {index} ON {stage} = si.stage"]
    if inp.history:
        ctes.append(f"lc AS ({last_change_sql(d0)})")
        joins.insert(0, "LEFT JOIN lc ON o.oid = lc.oid")
    cols = {"customer_id": "o.cid", "owner": "o.owner", "age_days": f"CAST({d0} - o.created AS DOUBLE)",
            "stage_at_as_of": stage, "stage_index": "si.idx", "days_since_stage_change": since, "amount": "o.amount"}
    cols |= account_columns(inp)
    if inp.customer:
        ctes.append(f"acc AS ({closed_stats_sql('cid')})")
        joins.append("LEFT JOIN acc a ON o.cid = a.k")
    if inp.txns:
        ctes.append(f"spend AS ({spend_sql(d0, inp)})")
        joins.append("LEFT JOIN spend sp ON o.cid = sp.k")
    if inp.owner:
        cols |= owner_columns(owner_prior)
        ctes += [f"own AS ({closed_stats_sql('owner')})",
                 "overall AS (SELECT CASE WHEN count(*) > 0 THEN CAST(sum(CASE WHEN won THEN 1 ELSE 0 END) AS DOUBLE)"
                 " / CAST(count(*) AS DOUBLE) ELSE 0.5 END AS rate FROM closed)"]
        joins += ["LEFT JOIN own w ON o.owner = w.k", "CROSS JOIN overall ov"]
    if inp.expected:
        cols["days_to_expected_close"] = "CAST(o.expected - " + str(d0) + " AS DOUBLE)"
    sel = ", ".join(f"{e} AS {c}" for c, e in cols.items())
    return "WITH " + ",\n".join(ctes) + f"\nSELECT o.oid AS opportunity_id, {sel} FROM o " + " ".join(joins)


def relational_deals(tables: Tables, *, as_of, open_stages: Sequence[str], owner_prior: float = 10.0,
                     with_txns: bool = True, con=None) -> pd.DataFrame:
    """`features.deals(tables.opportunities, stage_history=tables.stage_history, txns=tables.transactions
    if with_txns)` computed by DuckDB from `deal_sql`: the same frame (index, columns, dtypes, values)."""
    d0 = as_of_day(as_of)
    inp = deal_inputs_of(tables, with_txns=with_txns)
    names = {"opportunities": tables.opportunities, "stage_history": tables.stage_history}
    if inp.txns:
        names |= engine_transactions(tables, inputs_of(tables))
    out = run_sql(con or duckdb_connection(), deal_sql(d0, inp, open_stages, owner_prior=owner_prior), names)
    return as_deal_frame(out, has_owner=inp.owner)


def run_sql(con, sql: str, tables: dict[str, pd.DataFrame | None]) -> pd.DataFrame:
    """Run `sql` with the pandas `tables` scanned in place under their names."""
    present = {k: v for k, v in tables.items() if v is not None}
    for name, df in present.items():
        con.register(name, df)
    try:
        return con.sql(sql).df()
    finally:
        for name in present:
            con.unregister(name)


def as_deal_frame(out: pd.DataFrame, *, has_owner: bool) -> pd.DataFrame:
    """The engine's rows as `deals` returns them: str index sorted, ids and stages str, NaN for NULL."""
    out.index = pd.Index(out.pop("opportunity_id").astype("str"), name="opportunity_id")
    out = out.sort_index()
    for c in out.columns:
        out[c] = out[c].astype("str") if c in ("customer_id", "owner", "stage_at_as_of") else out[c].astype("float64")
    if has_owner:
        # numpy's dtype here follows its reindex: int64 when every deal's owner has closed deals
        # (nothing to fill), float64 otherwise; mirrored so the frames compare with dtypes
        found = out["owner"].notna() & (out["owner_closed_deals"] > 0)
        if found.all():
            out["owner_closed_deals"] = out["owner_closed_deals"].astype("int64")
    return out
