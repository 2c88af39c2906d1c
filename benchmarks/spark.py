"""Spark vs local engine: featurize N synthetic transaction rows from Parquet on disk.

    python benchmarks/spark.py [--rows 10000000 50000000] [--master local[2]] [--data-dir /tmp/...]
    python benchmarks/spark.py --models 3000      # churn AUC / value Gini: Spark-trained vs local models

For each size: synthetic transactions (50 rows per customer, chunks of <= 10M rows with
disjoint customers) are written once to Parquet under --data-dir (not in git). Each engine then
runs in a fresh subprocess: read the Parquet, build the customer feature families as of
--as-of, write the feature Parquet. Printed per size: wall time of each engine (Spark's
session start reported apart and excluded), peak RSS of the process tree (Python + JVM), and
the ratio spark/local (< 1 = Spark faster). Results are checked equal on a sample of columns.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

CHUNK = 10_000_000
ROWS_PER_CUSTOMER = 50


def tree_rss(pid: int) -> int:
    """RSS (bytes) of pid and all its descendants (the Spark JVM is a child process)."""
    total, todo = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * page
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return total


class TreePeak:
    def __enter__(self):
        self.peak, self._stop = tree_rss(os.getpid()), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss(os.getpid()))

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def make_data(rows: int, folder: Path) -> Path:
    """Parquet folder of ~rows transactions (customer_id string, timestamp, amount)."""
    from keyaccounts.synth import synth_transactions
    out = folder / f"txns_{rows // 1_000_000}M"
    if (out / "_DONE").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    k, left = 0, rows
    while left > 0:
        n = min(CHUNK, left)
        t = synth_transactions(n_rows=n, n_customers=max(n // ROWS_PER_CUSTOMER, 1), seed=100 + k)
        t["customer_id"] = (f"K{k}-" + t["customer_id"].astype("str")).astype("str")
        t[["customer_id", "timestamp", "amount"]].to_parquet(out / f"part-{k:03d}.parquet", index=False)
        left -= n
        k += 1
        del t
    (out / "_DONE").write_text("ok")
    return out


def run_one(engine: str, data: Path, out: Path, as_of: str, master: str, driver_memory: str) -> dict:
    res = {"engine": engine}
    if engine == "local":
        from keyaccounts.features import Tables, build_features
        with TreePeak() as pk:
            t0 = time.perf_counter()
            txns = pd.read_parquet(data)
            txns["customer_id"] = txns["customer_id"].astype("category")  # as the loader makes it
            res["read_s"] = time.perf_counter() - t0
            f = build_features(Tables(txns), as_of=as_of)
            f.to_parquet(out)
            res["total_s"] = time.perf_counter() - t0
        res["rows"], res["customers"] = len(txns), len(f)
    else:
        from keyaccounts.engines.spark import SparkTables, read_source, spark_features, spark_session, write_spark_output
        with TreePeak() as pk:
            t0 = time.perf_counter()
            spark = spark_session(master, conf={"spark.driver.memory": driver_memory})
            res["session_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            txns = read_source(spark, str(data))
            f = spark_features(SparkTables(txns), as_of=as_of)
            write_spark_output(f, out)
            res["total_s"] = time.perf_counter() - t1
            res["customers"] = spark.read.parquet(str(out)).count()
            spark.stop()
    res["peak_rss_gib"] = pk.peak / 2**30
    return res


def check_equal(local_out: Path, spark_out: Path) -> str:
    a = pd.read_parquet(local_out)
    b = pd.read_parquet(spark_out).set_index("customer_id").sort_index()
    a.index = a.index.astype("str")
    b.index = b.index.astype("str")
    assert a.index.equals(b.index), "different customers"
    for c in ("frequency", "n_purchases_90d", "r_score", "f_score", "m_score"):
        assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
    for c in ("monetary_total", "spend_365d", "spend_slope_monthly", "tenure_days", "interval_trend_ratio"):
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=1e-9, atol=1e-6, err_msg=c)
    return "equal (counts exact, sums rtol 1e-9)"


def compare_models(customers: int, folder: Path, master: str, driver_memory: str, engines: list[str],
                   conf: list[str], seed: int = 0) -> None:
    """Train churn and value on the same synthetic tables with both engines (CLI, fresh
    processes, one registry each) and print the validation metrics each run logged: churn
    ROC AUC and value Gini on the same validation cutoff, with the runs' baselines."""
    import re

    import yaml
    folder.mkdir(parents=True, exist_ok=True)
    ka = [str(Path(sys.executable).with_name("keyaccounts"))]
    data = folder / f"synth_{customers}"
    if not (data / "transactions.csv").exists():
        subprocess.run([*ka, "synth", "--out", str(data), "--customers", str(customers), "--seed", str(seed)],
                       check=True, capture_output=True)
    as_of = "2025-10-01"
    (folder / "models.yaml").write_text(yaml.safe_dump({"engine": {
        "spark_min_rows": 0, "spark_master": master,
        "spark_conf": {"spark.driver.memory": driver_memory, **dict(kv.split("=", 1) for kv in conf)}}}))
    tables = ["-t", str(data / "transactions.csv"), "--customers", str(data / "customers.csv"),
              "--invoices", str(data / "invoices.csv")]
    print(f"models on {customers:,} synthetic customers, as_of {as_of}, H 90 d, default train settings")
    for eng in engines:
        uri = f"sqlite:///{folder}/models_{eng}_{customers}.db"
        Path(uri[len("sqlite:///"):]).unlink(missing_ok=True)
        t0 = time.perf_counter()
        p = subprocess.run([*ka, "train", *tables, "-p", str(folder / "models.yaml"), "--as-of", as_of,
                            "--tracking-uri", uri, "--engine", eng], capture_output=True, text=True,
                           cwd=folder, env={**os.environ, "COLUMNS": "200"})
        log = folder / f"models_{eng}_{customers}.log"
        log.write_text(p.stdout + p.stderr)
        if p.returncode:
            print(f"  {eng}: FAILED (log: {log})\n{p.stdout[-1500:]}")
            continue
        lines = [ln.strip() for ln in p.stdout.splitlines() if re.match(r"\s*(churn|value)-90d: v\d+ ", ln)]
        print(f"  {eng} ({time.perf_counter() - t0:.0f}s):")
        for ln in lines:
            print(f"    {ln}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 50_000_000])
    ap.add_argument("--data-dir", default="/tmp/keyaccounts_spark_bench")
    ap.add_argument("--as-of", default="2025-07-01")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="8g")
    ap.add_argument("--engines", nargs="+", default=["local", "spark"])
    ap.add_argument("--one", nargs=3, metavar=("ENGINE", "DATA", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--conf", nargs="*", default=[], metavar="KEY=VALUE", help="extra Spark settings (--models)")
    ap.add_argument("--models", type=int, metavar="CUSTOMERS",
                    help="instead: compare the churn/value models both engines train on CUSTOMERS synthetic customers")
    args = ap.parse_args()
    if args.models:
        compare_models(args.models, Path(args.data_dir), args.master, args.driver_memory, args.engines, args.conf)
        return
    if args.one:
        eng, data, out = args.one
        print(json.dumps(run_one(eng, Path(data), Path(out), args.as_of, args.master, args.driver_memory)))
        return
    folder = Path(args.data_dir)
    print(f"machine: {os.cpu_count()} cores; spark master {args.master}, driver memory {args.driver_memory}")
    for rows in args.rows:
        t0 = time.perf_counter()
        data = make_data(rows, folder)
        print(f"\n{rows:,} rows: data {data} ({sum(f.stat().st_size for f in data.glob('*.parquet')) / 2**20:,.0f} MiB, "
              f"ready in {time.perf_counter() - t0:.0f}s)")
        results, outs = {}, {}
        for eng in args.engines:
            out = folder / f"features_{eng}_{rows // 1_000_000}M.parquet"
            outs[eng] = out
            cmd = [sys.executable, __file__, "--one", eng, str(data), str(out), "--as-of", args.as_of,
                   "--master", args.master, "--driver-memory", args.driver_memory]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                print(f"  {eng}: FAILED\n{p.stderr[-3000:]}")
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            results[eng] = r
            extra = (f", session start {r['session_s']:.1f}s not included" if "session_s" in r
                     else f", of which reading {r['read_s']:.1f}s")
            print(f"  {eng:5s}: {r['total_s']:7.1f}s  ({rows / r['total_s'] / 1e6:.2f}M rows/s{extra})  "
                  f"peak RSS {r['peak_rss_gib']:.2f} GiB  customers {r['customers']:,}")
        if len(results) == 2:
            print(f"  results: {check_equal(outs['local'], outs['spark'])}")
            print(f"  ratio spark/local = {results['spark']['total_s'] / results['local']['total_s']:.2f}")


if __name__ == "__main__":
    main()
