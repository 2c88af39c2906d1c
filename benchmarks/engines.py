"""Engine benchmark: the numpy families vs the relational definition on DuckDB (issue 20).

    python benchmarks/engines.py [--sizes 2M/200k,10M/200k,10M/1M] [--repeat K] [--threads T]

For each size (rows / customers) of synthetic transactions (with cost): wall time and rows/s of
- numpy:   build_features (all transaction families; the oracle) and rfm alone,
- duckdb:  relational_features (all transaction families, one query, exact money), in each
           query shape of features.relational.SHAPES,
- how the query is written: the RFM aggregates as the issue's reference query
  (count(distinct day)) vs the same aggregates over customer-days first, and (--ibis) that
  customer-days query written as an Ibis expression instead of SQL text;
and checks that the relational frame equals the numpy one exactly. The last lines print the
per-row cost ratio largest/smallest size for each engine (1.0 = linear growth), and for sizes
with the same rows and more customers (10M/200k -> 10M/1M) rows/s of each and their per-row
cost ratio (issue 20, criterion 3: <= 1.5). Under load compare ratios measured in one run.
"""
from __future__ import annotations

import argparse

import pandas as pd
from features import (
    best_of,
    reference_sql,  # benchmarks/features.py: the count(distinct) query
)

from keyaccounts.features import Tables, build_features, rfm
from keyaccounts.features.relational import duckdb_connection, relational_features
from keyaccounts.synth import synth_transactions

AS_OF = "2025-07-01"
WINDOWS = (30, 90, 365)
#: (shape, scores) of the relational query; the first is relational_features' default.
VARIANTS = (("split", "counts"), ("split", "rank"), ("topn", "counts"), ("window", "counts"))


def customer_days_sql(as_of: str) -> str:
    """The reference query's columns, written as customer-days first (no count(distinct))."""
    win = ",\n".join(f"sum(amt) filter (where d >= DATE '{as_of}' - INTERVAL {w} DAY) as spend_{w}d,\n"
                     f"count(*) filter (where pos and d >= DATE '{as_of}' - INTERVAL {w} DAY) as n_purchases_{w}d"
                     for w in WINDOWS)
    return f"""
        with t as (select customer_id, cast(timestamp as date) as d, sum(amount) as amt, bool_or(amount > 0) as pos
                   from txns where timestamp < TIMESTAMP '{as_of}' group by 1, 2)
        select customer_id, DATE '{as_of}' - max(d) filter (where pos) as recency_days,
               count(*) filter (where pos) as frequency, sum(amt) as monetary_total, {win}
        from t group by customer_id"""


def parse_size(s: str) -> tuple[int, int]:
    def n(x: str) -> int:
        x = x.strip().lower()
        mult = {"k": 1_000, "m": 1_000_000}.get(x[-1], 1)
        return int(float(x[:-1] if x[-1] in "km" else x) * mult)
    rows, customers = s.split("/")
    return n(rows), n(customers)


def ibis_rfm_seconds(con, repeat: int) -> float:
    """The customer-days RFM query written as an Ibis expression on the same DuckDB connection
    (the Ibis-vs-SQL prototype): compile + execute, best of `repeat`; checked equal to the SQL."""
    import ibis
    from ibis import _
    t = ibis.duckdb.from_connection(con).table("txns")
    as_of = ibis.date(AS_OF)
    d = (t.filter(t.timestamp < ibis.timestamp(f"{AS_OF} 00:00:00"))
         .group_by("customer_id", d=t.timestamp.cast("date"))
         .aggregate(amt=_.amount.sum(), pos=(_.amount > 0).any()))
    aggs = {"last": d.d.max(where=d.pos), "frequency": d.count(where=d.pos), "monetary_total": d.amt.sum()}
    for w in WINDOWS:
        since = as_of - ibis.interval(days=w)
        aggs[f"spend_{w}d"] = d.amt.sum(where=d.d >= since)
        aggs[f"n_purchases_{w}d"] = d.count(where=d.pos & (d.d >= since))
    expr = d.group_by("customer_id").aggregate(**aggs)
    secs, got = best_of(repeat, lambda: expr.to_pyarrow())
    want = con.sql(customer_days_sql(AS_OF)).df().set_index("customer_id").sort_index()
    got = got.to_pandas().set_index("customer_id").sort_index()
    assert (got["frequency"].to_numpy() == want["frequency"].to_numpy()).all()
    return secs


def run_size(rows: int, customers: int, *, repeat: int, threads: int | None,
             with_ibis: bool = False, variants=VARIANTS) -> dict[str, float]:
    """Seconds per engine/variant at one size; asserts the relational frame equals numpy's."""
    tx = synth_transactions(n_rows=rows, n_customers=customers, seed=1)[["customer_id", "timestamp", "amount", "cost"]]
    tables = Tables(tx)
    con = duckdb_connection(threads=threads)
    con.register("txns", tx.assign(customer_id=tx["customer_id"].astype("str")))
    t = {}
    t["numpy all"], want = best_of(repeat, lambda: build_features(tables, as_of=AS_OF))
    t["numpy rfm"], _ = best_of(repeat, lambda: rfm(tx, as_of=AS_OF))
    for shape, scores in variants:
        t[f"duckdb all ({shape}, {scores})"], got = best_of(
            repeat, lambda s=shape, m=scores: relational_features(tables, as_of=AS_OF, con=con, shape=s, scores=m))
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    for name, sql in (("rfm sql count(distinct)", reference_sql(AS_OF)), ("rfm sql customer-days", customer_days_sql(AS_OF))):
        t[f"duckdb {name}"], _ = best_of(repeat, lambda q=sql: con.sql(q).to_arrow_table())
    if with_ibis:
        t["ibis rfm customer-days"] = ibis_rfm_seconds(con, repeat)
    print(f"{rows:,} rows / {customers:,} customers ({len(tx):,} rows generated):")
    for k, v in t.items():
        print(f"  {k:34s} {v:7.2f} s  {len(tx) / v / 1e6:6.2f}M rows/s")
    default = f"duckdb all ({VARIANTS[0][0]}, {VARIANTS[0][1]})"
    if default in t:
        print(f"  duckdb all (default) / numpy all = {t[default] / t['numpy all']:.2f}", flush=True)
    return {k: v / len(tx) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2M/200k,10M/200k,10M/1M", help="rows/customers, comma separated")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    ap.add_argument("--ibis", action="store_true", help="also time the RFM query written in Ibis (.[bench])")
    ap.add_argument("--variants", default=",".join(f"{a}:{b}" for a, b in VARIANTS),
                    help="relational query variants shape:scores, comma separated (first listed in VARIANTS is the default)")
    args = ap.parse_args()
    labels = args.sizes.split(",")
    sizes = [parse_size(s) for s in labels]
    variants = [tuple(v.split(":")) for v in args.variants.split(",")]
    per_row = [run_size(r, c, repeat=args.repeat, threads=args.threads, with_ibis=args.ibis, variants=variants)
               for r, c in sizes]
    print(f"per-row cost ratio {labels[-1]} / {labels[0]}:")
    for k in per_row[0]:
        print(f"  {k:34s} {per_row[-1][k] / per_row[0][k]:.2f}")
    print_customer_growth(labels, sizes, per_row)


def print_customer_growth(labels: list[str], sizes: list[tuple[int, int]], per_row: list[dict[str, float]]) -> None:
    """Same rows, more customers: rows/s at the fewest and the most customers and the per-row
    cost ratio (the issue's criterion 3 reads <= 1.5 as linear growth)."""
    for rows in sorted({r for r, _ in sizes}):
        at = [i for i, (r, _) in enumerate(sizes) if r == rows]
        lo, hi = min(at, key=lambda i: sizes[i][1]), max(at, key=lambda i: sizes[i][1])
        if lo == hi:
            continue
        print(f"same rows, more customers: {labels[lo]} -> {labels[hi]} (rows/s, per-row cost ratio):")
        for k in per_row[lo]:
            a, b = per_row[lo][k], per_row[hi][k]
            print(f"  {k:34s} {1 / a / 1e6:6.2f}M -> {1 / b / 1e6:6.2f}M rows/s  ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
