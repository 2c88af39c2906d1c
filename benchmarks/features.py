"""Feature benchmark: our RFM family vs a plain DuckDB GROUP BY on the same in-memory data.

    python benchmarks/features.py [--rows N] [--customers M] [--repeat K]

Prints wall time and peak memory of the RFM family, of the full feature set (transactions +
customers + invoices), and of the reference; the last line is `ratio_vs_reference=X` =
our RFM time / DuckDB time (best of K runs each, same process, same frame).
Targets (issue 2): ratio <= 2 at 2M and 10M rows; full set on 10M rows < 60 s, < 6 GB.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _memory import PeakRSS, rss_bytes  # benchmarks/_memory.py

from keyaccounts.features import Tables, build_features, rfm
from keyaccounts.synth import synth_transactions

WINDOWS = (30, 90, 365)


def reference_sql(as_of: str) -> str:
    win = ",\n".join(
        f"sum(amount) filter (where d >= DATE '{as_of}' - INTERVAL {w} DAY) as spend_{w}d,\n"
        f"count(distinct d) filter (where amount > 0 and d >= DATE '{as_of}' - INTERVAL {w} DAY) as n_purchases_{w}d"
        for w in WINDOWS)
    return f"""
        with t as (select customer_id, cast(timestamp as date) as d, amount from txns
                   where timestamp < TIMESTAMP '{as_of}')
        select customer_id,
               DATE '{as_of}' - max(d) filter (where amount > 0) as recency_days,
               count(distinct d) filter (where amount > 0) as frequency,
               sum(amount) as monetary_total,
               {win}
        from t group by customer_id"""


def best_of(k: int, fn):
    times, out = [], None
    for _ in range(k):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def synth_invoices(txns: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Monthly invoices of positive spend, 30-day terms, ~30 % paid late, recent ones unpaid."""
    rng = np.random.default_rng(seed)
    pos = txns[txns["amount"] > 0]
    month = pos["timestamp"].dt.to_period("M")
    inv = pos.groupby([pos["customer_id"], month], observed=True)["amount"].sum().reset_index()
    inv.columns = ["customer_id", "month", "amount"]
    issue = (inv["month"] + 1).dt.to_timestamp()
    delay = np.where(rng.random(len(inv)) < 0.3, rng.integers(1, 90, len(inv)), -rng.integers(0, 20, len(inv)))
    paid = issue + pd.Timedelta(days=30) + pd.to_timedelta(delay, unit="D")
    return pd.DataFrame({
        "invoice_id": np.arange(len(inv)).astype(str), "customer_id": inv["customer_id"].astype("str"),
        "issue_date": issue.astype("datetime64[ns]"), "due_date": (issue + pd.Timedelta(days=30)).astype("datetime64[ns]"),
        "amount": inv["amount"], "paid_date": paid.where(rng.random(len(inv)) > 0.03).astype("datetime64[ns]")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--as-of", default="2025-07-01")
    ap.add_argument("--skip-full", action="store_true", help="only the RFM-vs-reference comparison")
    args = ap.parse_args()
    import duckdb

    t0 = time.perf_counter()
    txns = synth_transactions(n_rows=args.rows, n_customers=args.customers, seed=1)
    print(f"data: {len(txns):,} rows, {txns['customer_id'].nunique():,} customers, "
          f"generated in {time.perf_counter() - t0:.1f}s; as_of {args.as_of}")
    con = duckdb.connect()
    con.register("txns", txns)
    sql = reference_sql(args.as_of)

    rss0 = rss_bytes()
    with PeakRSS() as pk_ref:
        t_ref, ref = best_of(args.repeat, lambda: con.execute(sql).df())
    with PeakRSS() as pk_rfm:
        t_rfm, ours = best_of(args.repeat, lambda: rfm(txns, as_of=args.as_of, windows_days=WINDOWS))

    # Same numbers, or the comparison means nothing.
    ref = ref.set_index(ref["customer_id"].astype("str")).sort_index()
    assert len(ref) == len(ours), (len(ref), len(ours))
    for col in ("frequency", "monetary_total", "spend_90d", "n_purchases_90d"):
        np.testing.assert_allclose(ours[col].to_numpy(float), ref[col].fillna(0).to_numpy(float), rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(ours["recency_days"].to_numpy(float), ref["recency_days"].to_numpy(float))

    threads = con.execute("select current_setting('threads')").fetchone()[0]
    print(f"reference (duckdb GROUP BY, {threads} threads): "
          f"{t_ref:.3f}s  peak +{(pk_ref.peak - rss0) / 2**20:,.0f} MiB")
    print(f"ours: rfm family: {t_rfm:.3f}s  ({len(txns) / t_rfm / 1e6:.1f}M rows/s)  "
          f"peak +{(pk_rfm.peak - rss0) / 2**20:,.0f} MiB")
    if not args.skip_full:
        customers = pd.DataFrame({"customer_id": txns["customer_id"].cat.categories.astype("str")})
        customers["signup_date"] = pd.Timestamp("2020-06-01")
        customers["credit_limit"] = 5000.0
        invoices = synth_invoices(txns, seed=2)
        tables = Tables(txns, customers, invoices)
        rss1 = rss_bytes()
        with PeakRSS() as pk_full:
            t_full, feats = best_of(1, lambda: build_features(tables, as_of=args.as_of))
        print(f"ours: full feature set ({feats.shape[1]} columns, {len(feats):,} customers, "
              f"{len(invoices):,} invoices): {t_full:.2f}s  peak RSS {pk_full.peak / 2**30:.2f} GiB "
              f"(+{(pk_full.peak - rss1) / 2**30:.2f} GiB over the loaded data)")
    print(f"ratio_vs_reference={t_rfm / t_ref:.2f}")


if __name__ == "__main__":
    main()
