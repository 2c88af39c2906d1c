"""Spark engine: same features as the pandas engine, CLI --engine spark, and pyspark never
imported on the default path. Spark tests share one local[2] session and skip (with the
reason) only where pyspark or Java is missing."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import FeatureConfig
from keyaccounts.engines import spark_unavailable_reason
from keyaccounts.features import Tables, build_features

runner = CliRunner()
# pyspark 4 under pandas 3: deprecation chatter from inside pyspark's pandas conversion
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning:pyspark.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")]
AS_OF = "2024-03-01"


def test_default_path_never_imports_pyspark(tmp_path):
    """import keyaccounts, the CLI, the local engine and a local `features` run: no pyspark."""
    code = f"""
import sys, json
import keyaccounts, keyaccounts.cli, keyaccounts.pipeline, keyaccounts.score, keyaccounts.train
import keyaccounts.engines
from keyaccounts.features import build_features
from typer.testing import CliRunner
p = {str(tmp_path)!r}
open(p + '/t.csv', 'w').write('customer_id,timestamp,amount\\n1,2024-01-02,10\\n2,2024-01-05,5\\n1,2024-02-01,-2\\n')
r = CliRunner().invoke(keyaccounts.cli.app, ['features', '-t', p + '/t.csv', '--as-of', '2024-03-01',
                                             '--out', p + '/f.csv'])
print(json.dumps({{"exit": r.exit_code, "spark": sorted(m for m in sys.modules if m.startswith(('pyspark', 'py4j')))}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {"exit": 0, "spark": []}


def test_unknown_engine_is_bad_input(tmp_path):
    (tmp_path / "t.csv").write_text("customer_id,timestamp,amount\n1,2024-01-02,10\n")
    r = runner.invoke(app, ["features", "-t", str(tmp_path / "t.csv"), "--as-of", AS_OF,
                            "--out", str(tmp_path / "f.csv"), "--engine", "dask"])
    assert r.exit_code == 2
    assert "--engine must be one of local, spark" in r.output
    assert not (tmp_path / "f.csv").exists()


# --------------------------------------------------------------------------- Spark

needs_spark = pytest.mark.skipif(spark_unavailable_reason() is not None,
                                 reason=f"Spark engine unavailable: {spark_unavailable_reason()}")


@pytest.fixture(scope="session")
def spark():
    if spark_unavailable_reason():
        pytest.skip(spark_unavailable_reason())
    from keyaccounts.engines.spark import spark_session
    return spark_session("local[2]", shuffle_partitions=2, conf={"spark.driver.memory": "1g"})


def _sdf(spark, df: pd.DataFrame | None):
    if df is None:
        return None
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype("str")
    return spark.createDataFrame(df)


def _spark_features(spark, tables: Tables, as_of, cfg=None) -> pd.DataFrame:
    from keyaccounts.engines.spark import SparkTables, spark_features, to_feature_frame
    st = SparkTables(_sdf(spark, tables.transactions), _sdf(spark, tables.customers), _sdf(spark, tables.invoices))
    return to_feature_frame(spark_features(st, as_of=as_of, config=cfg))


def assert_same_features(local: pd.DataFrame, other: pd.DataFrame) -> None:
    """Counts, scores and categories exactly; money/ratio columns to 1e-9 relative (the
    engines add floating numbers in a different order)."""
    assert list(other.columns) == list(local.columns)
    exact = [c for c in local.columns if not pd.api.types.is_float_dtype(local[c])]
    pd.testing.assert_frame_equal(other[exact], local[exact], check_exact=True)
    floats = [c for c in local.columns if c not in exact]
    pd.testing.assert_frame_equal(other[floats], local[floats], check_exact=False, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_hand_made_edge_cases_match_the_local_engine(spark, make_txns, make_customers, make_invoices):
    """Same-day purchases, a return-only customer, a zero-amount row, a row on the as_of day
    (not read), a prospect, an invoice paid after as_of (unpaid then), costs partly unknown."""
    t = make_txns([
        ("a", "2024-01-10 09:00", 100.0, 60.0), ("a", "2024-01-10 17:00", 50.0, None),
        ("a", "2024-02-20", 30.0, 10.0), ("a", "2024-02-29 23:59", -20.0, -12.0),
        ("a", "2024-03-01 00:00", 999.0, 1.0),
        ("b", "2023-01-05", 10.0, None), ("b", "2023-06-05", 10.0, None), ("b", "2023-12-05", 40.0, None),
        ("c", "2024-02-01", -5.0, None), ("c", "2024-02-02", 0.0, None),
        ("d", "2024-03-05", 70.0, 7.0),
    ], cost=True)
    cust = make_customers([("a", "2023-12-01", 1000.0), ("e", "2024-01-15", 500.0), ("f", "2024-05-01", 0.0),
                           ("b", None, 0.0)])
    inv = make_invoices([("i1", "a", "2024-01-11", "2024-02-10", 150.0, "2024-03-10"),
                         ("i2", "b", "2023-12-06", "2024-01-05", 40.0, "2024-01-20"),
                         ("i3", "b", "2024-02-01", "2024-02-15", 10.0, None)])
    tables = Tables(t, cust, inv)
    local = build_features(tables, as_of=AS_OF)
    other = _spark_features(spark, tables, AS_OF)
    assert_same_features(local, other)
    # hand-computed anchors, so a shared mistake cannot pass
    assert other.loc["a", "frequency"] == 2 and other.loc["a", "recency_days"] == 10
    assert other.loc["a", "monetary_total"] == pytest.approx(160.0)
    assert other.loc["a", "return_ratio"] == pytest.approx(20 / 180)
    assert other.loc["a", "margin_total"] == pytest.approx((100 - 60) + (30 - 10) + (-20 + 12))
    assert other.loc["a", "open_balance"] == 150.0 and other.loc["a", "credit_utilisation"] == pytest.approx(0.15)
    assert other.loc["b", "interval_last_days"] == 183 and other.loc["b", "interval_trend_ratio"] == pytest.approx(183 / 151)
    assert other.loc["c", "frequency"] == 0 and np.isnan(other.loc["c", "recency_days"])
    assert other.loc["e", "lifecycle_stage"] == "prospect" and other.loc["e", "tenure_days"] == 46
    assert "d" not in other.index and "f" not in other.index


@pytest.mark.slow
def test_synthetic_tables_match_the_local_engine_at_two_dates(spark):
    from keyaccounts.synth import synthesize
    s = synthesize(n_customers=250, seed=11, start="2023-01-01", end="2025-06-30")
    tx = s.transactions.copy()
    rng = np.random.default_rng(0)
    tx["cost"] = np.where(rng.random(len(tx)) < 0.2, np.nan, tx["amount"] * rng.uniform(0.3, 0.9, len(tx)))
    tables = Tables(tx, s.customers, s.invoices)
    cfg = FeatureConfig(windows_days=[14, 180], growth_window_days=60, slope_months=6, overdue_threshold_days=45)
    for as_of in ("2024-02-01", "2025-05-17"):
        local = build_features(tables, as_of=as_of, config=cfg)
        assert_same_features(local, _spark_features(spark, tables, as_of, cfg))


@pytest.mark.slow
def test_cli_engine_spark_writes_the_local_features(spark, tmp_path):
    from keyaccounts.engines.spark import as_feature_dtypes
    r = runner.invoke(app, ["synth", "--out", str(tmp_path / "d"), "--customers", "120", "--seed", "3"])
    assert r.exit_code == 0, r.output
    d = tmp_path / "d"
    # the Spark input is Parquet written by pandas (nanosecond timestamps), the local one CSV
    pd.read_csv(d / "transactions.csv", parse_dates=["timestamp"]).to_parquet(d / "t.parquet")
    common = ["--customers", str(d / "customers.csv"), "--invoices", str(d / "invoices.csv"), "--as-of", "2025-03-01"]
    r = runner.invoke(app, ["features", "-t", str(d / "transactions.csv"), *common, "--out", str(tmp_path / "l.parquet")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["features", "-t", str(d / "t.parquet"), *common, "--out", str(tmp_path / "s.parquet"),
                            "--engine", "spark"])
    assert r.exit_code == 0, r.output
    assert "engine: spark" in r.output
    local = pd.read_parquet(tmp_path / "l.parquet")
    other = pd.read_parquet(tmp_path / "s.parquet")  # a folder of part files
    other = as_feature_dtypes(other.set_index(other["customer_id"].astype("str")).drop(columns="customer_id"))
    local.index = local.index.astype("str")
    other = other.sort_index().rename_axis("customer_id")
    for f in (local, other):
        f["as_of"] = f["as_of"].astype("datetime64[ns]")
    assert_same_features(local, other)


@pytest.mark.slow
def test_spark_bad_input_exits_2_naming_file_and_column(spark, tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("cust,timestamp,amount\n1,2024-01-02,10\n")
    r = runner.invoke(app, ["features", "-t", str(bad), "--as-of", AS_OF, "--out", str(tmp_path / "f.parquet"),
                            "--engine", "spark"])
    assert r.exit_code == 2, r.output
    assert "t.csv" in r.output and "customer_id" in r.output
    assert not (tmp_path / "f.parquet").exists()
    bad.write_text("customer_id,timestamp,amount\n" + "".join(f"{i},2024-01-0{i % 9 + 1},x{i}\n" for i in range(7)))
    r = runner.invoke(app, ["features", "-t", str(bad), "--as-of", AS_OF, "--out", str(tmp_path / "f.parquet"),
                            "--engine", "spark"])
    assert r.exit_code == 2, r.output
    assert "amount" in r.output and "could not be read as numbers" in r.output
    assert not (tmp_path / "f.parquet").exists()
