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
from keyaccounts.engines import spark_unavailable_reason
from keyaccounts.features import Tables, build_features
from keyaccounts.features.arrays import MONEY_UNITS_PER_CURRENCY

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
    engines add floating numbers in a different order). Money sums: the local engine rounds
    each summand to a micro-unit (features.arrays.money_sum) and Spark does not yet, so a sum
    over k rows may differ by k x 0.5e-6 (+ 12x for the month-weighted slope sum); the bound
    uses k = the largest count of rows per customer the features show."""
    assert list(other.columns) == list(local.columns)
    exact = [c for c in local.columns if not pd.api.types.is_float_dtype(local[c])]
    pd.testing.assert_frame_equal(other[exact], local[exact], check_exact=True)
    floats = [c for c in local.columns if c not in exact]
    k = float(local[[c for c in ("frequency", "n_invoices", "n_returns") if c in local.columns]].sum(axis=1).max())
    rows = max(k, 1.0) * 50  # purchase days x rows per day in these tables (synthetic: a few per day)
    money = [c for c in floats if c.startswith(("monetary", "spend_", "margin", "open_", "overdue_"))]
    rest = [c for c in floats if c not in money]
    pd.testing.assert_frame_equal(other[rest], local[rest], check_exact=False, rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(other[money], local[money], check_exact=False, rtol=1e-9,
                                  atol=12 * rows * 0.5 / MONEY_UNITS_PER_CURRENCY)


@pytest.mark.slow
def test_hand_made_edge_cases_match_the_local_engine(spark, edge_tables):
    """The shared edge cases (conftest.edge_tables): same-day purchases, a return-only customer,
    a zero-amount row, a row on the as_of day, a prospect, an invoice paid after as_of."""
    tables = edge_tables
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
    # the BG/NBD summary (x, t_x, T, m_x) the Spark scorer fits on the driver
    from keyaccounts.engines.spark_score import spark_btyd_summary
    from keyaccounts.models.btyd import btyd_summary
    st = _sdf(spark, edge_tables.transactions)
    got = spark_btyd_summary(st, as_of=AS_OF).toPandas()
    got = got.set_index(got.pop("customer_id").astype("str")).sort_index().rename_axis("customer_id")
    want = btyd_summary(edge_tables.transactions, as_of=AS_OF)
    want.index = want.index.astype("str")
    pd.testing.assert_frame_equal(got, want.sort_index(), check_exact=False, rtol=1e-12)
    # a: purchase days 01-10 (net 150), 02-20 (net 30); the 02-29 return day is not a purchase
    assert got.loc["a"].tolist() == pytest.approx([1.0, 41 / 7, 51 / 7, 30.0])
    assert got.loc["b", "monetary_value"] == 25.0  # repeat days 10 and 40
    assert "c" not in got.index


@pytest.mark.slow
def test_synthetic_tables_match_the_local_engine_at_two_dates(spark, synthetic_cost_tables):
    tables, cfg, dates = synthetic_cost_tables
    for as_of in dates:
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


def test_small_inputs_stay_on_the_local_engine(tmp_path):
    """train/score --engine spark: below engine.spark_min_rows the local engine runs (no JVM)."""
    from keyaccounts.config import EngineConfig, InputSpec, Pipeline
    from keyaccounts.engines.spark_score import choose_engine, estimate_rows
    t = pd.DataFrame({"customer_id": ["1", "2", "3"], "timestamp": pd.to_datetime(["2024-01-01"] * 3),
                      "amount": [1.0, 2.0, 3.0]})
    t.to_csv(tmp_path / "t.csv", index=False)
    t.to_csv(tmp_path / "t.csv.gz", index=False)
    t.to_parquet(tmp_path / "t.parquet")
    assert [estimate_rows(str(tmp_path / n)) for n in ("t.csv", "t.csv.gz", "t.parquet")] == [3, 3, 3]
    assert estimate_rows("s3://bucket/txns/") is None
    p = Pipeline(inputs={"transactions": InputSpec(path=str(tmp_path / "t.parquet"))},
                 engine=EngineConfig(name="spark", spark_min_rows=4))
    engine, why = choose_engine(p, "training")
    assert engine == "local" and "3 transaction rows < engine.spark_min_rows 4" in why
    assert choose_engine(p.model_copy(update={"engine": EngineConfig(name="spark", spark_min_rows=3)}), "x")[0] == "spark"
    assert choose_engine(p.model_copy(update={"engine": EngineConfig()}), "x") == ("local", "default engine")


def _register(tracker, family: str, model, X: pd.DataFrame, y: pd.Series):
    from keyaccounts.tracking import TrainedModel
    tm = TrainedModel(family=family, horizon_days=90, model=model, feature_names=list(X.columns), params={},
                      metrics={}, baseline_metrics={}, figures={}, input_example=X.head(3), data_fingerprint="test",
                      validation=None, primary_metric="roc_auc" if family == "churn" else "gini")
    return tracker.log_training(tm)


@pytest.mark.slow
def test_spark_scores_equal_local_scores(spark, tmp_path, monkeypatch):
    """Champions applied with mapInPandas: same probabilities, values, tiers, ranks and reasons
    as the local batch predictor; Parquet partitioned by owner."""
    import xgboost as xgb

    from keyaccounts.config import EngineConfig, InputSpec, Pipeline
    from keyaccounts.pipeline import load_inputs
    from keyaccounts.score import score_accounts
    from keyaccounts.synth import synthesize
    from keyaccounts.tracking import Tracker
    monkeypatch.chdir(tmp_path)
    s = synthesize(n_customers=200, seed=4, start="2023-01-01", end="2025-06-30")
    for n in ("transactions", "customers", "invoices"):
        getattr(s, n).to_parquet(tmp_path / f"{n}.parquet")
    as_of = "2025-03-01"
    p = Pipeline(as_of=as_of, horizon_days=90, engine=EngineConfig(name="spark", spark_min_rows=0),
                 inputs={n: InputSpec(path=str(tmp_path / f"{n}.parquet")) for n in ("transactions", "customers", "invoices")})
    loaded = load_inputs(p)
    f = build_features(loaded.tables, as_of=as_of)
    f = f[f["frequency"] > 0]
    X = f.select_dtypes("number")
    tracker = Tracker(f"sqlite:///{tmp_path}/mlruns/mlflow.db", models_dir=tmp_path / "models")
    y = (X["recency_days"] > 60).astype(int)
    _register(tracker, "churn", xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(X, y), X, y)
    v = X["spend_90d"].clip(lower=0)
    _register(tracker, "value", xgb.XGBRegressor(n_estimators=15, max_depth=3).fit(X, v), X, v)
    local, _ = score_accounts(loaded.tables, as_of=p.as_of, horizon_days=90, p=p, tracker=tracker, by="owner")
    (tmp_path / "p.yaml").write_text("engine:\n  spark_min_rows: 0\n")
    r = runner.invoke(app, ["score", "-p", str(tmp_path / "p.yaml"), "--engine", "spark", "--by", "owner",
                            "--as-of", as_of, "--horizon-days", "90", "--tracking-uri", tracker.tracking_uri,
                            "--out", str(tmp_path / "scores.parquet"),
                            *[a for n in ("transactions", "customers", "invoices")
                              for a in ((f"--{n}" if n != "transactions" else "-t"), str(tmp_path / f"{n}.parquet"))]])
    assert r.exit_code == 0, r.output
    assert "engine: spark (" in r.output and "partitioned by owner" in r.output
    assert (tmp_path / "scores.parquet").is_dir() and any((tmp_path / "scores.parquet").glob("owner=*"))
    other = pd.read_parquet(tmp_path / "scores.parquet")
    other = other.set_index(other["customer_id"].astype("str")).loc[local.index.astype("str")]
    assert len(other) == len(local)
    assert {"p_alive", "expected_purchases", "btyd_value"} <= set(other.columns)
    for c in local.columns:
        a, b = local[c], other[c]
        if pd.api.types.is_numeric_dtype(a):
            # btyd_value: m_x sums differ by ~1e-13 (summation order), which moves where
            # Gamma-Gamma's L-BFGS-B stops by ~5e-6 relative; the BG/NBD columns fit x, t_x, T (exact)
            rtol = 1e-4 if c == "btyd_value" else 1e-9
            np.testing.assert_allclose(b.to_numpy(float), a.to_numpy(float), rtol=rtol, atol=1e-12, err_msg=c)
        elif c != "as_of":
            x, y = a.astype("str").fillna(""), b.astype("str").fillna("")
            if c.endswith(("reasons_up", "reasons_down")):
                # same reasons in the same order; a rounded amount may differ by its last digit when
                # the value sits on a .5 boundary (sums differ by ~1e-12 between the engines)
                assert (x == y).mean() > 0.98, c
                x, y = x.str.replace(r"[\d,.]+", "#", regex=True), y.str.replace(r"[\d,.]+", "#", regex=True)
            bad = x.to_numpy() != y.to_numpy()
            assert not bad.any(), (c, list(zip(x[bad][:3], y[bad][:3], strict=False)), bad.sum())
    assert ((other["churn_reasons_up"] != "") | (other["churn_reasons_down"] != "")).all()


@pytest.mark.slow
def test_spark_training_registers_champions_the_local_scorer_can_use(spark, tmp_path, monkeypatch):
    """train --engine spark: xgboost.spark on Spark snapshots, num_workers capped at the cores,
    logged, promoted and exported through tracking.py as models the local scorer loads."""
    from keyaccounts.synth import synthesize
    from keyaccounts.tracking import Tracker
    monkeypatch.chdir(tmp_path)
    s = synthesize(n_customers=200, seed=6, start="2023-01-01", end="2025-06-30")
    s.transactions.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "p.yaml").write_text(
        "engine: {spark_min_rows: 0, num_workers: 8}\n"
        "train: {max_snapshots: 3, step_days: 30, churn_params: {n_estimators: 10, max_depth: 3},"
        " value_params: {n_estimators: 10, max_depth: 3}}\n")
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    r = runner.invoke(app, ["train", "-p", str(tmp_path / "p.yaml"), "-t", str(tmp_path / "t.parquet"),
                            "--as-of", "2025-06-01", "--horizon-days", "60", "--tracking-uri", uri, "--engine", "spark"])
    assert r.exit_code == 0, r.output
    assert "engine: spark (" in r.output
    assert "xgboost.spark with 2 workers (2 cores)" in r.output  # num_workers capped at the cores
    assert "churn-60d: v1 roc_auc=" in r.output and "value-60d: v1 gini=" in r.output
    # training's sort-merge joins are scoped to training: the session's setting is back
    assert spark.conf.get("spark.sql.autoBroadcastJoinThreshold") != "-1"
    model, card = Tracker(uri, models_dir=tmp_path / "models").load_champion("churn-60d", prefer="bundle")
    assert card["feature_names"] and "recency_days" in card["feature_names"]
    X = build_features(Tables(s.transactions), as_of="2025-06-01")
    X = X[X["frequency"] > 0][card["feature_names"]].astype("float64")
    prob = model.predict_proba(X)[:, 1]
    assert prob.shape == (len(X),) and ((prob >= 0) & (prob <= 1)).all() and prob.std() > 0
    # value: the zero-inflation-aware two-part model, P(buy) x gamma E[spend | buy]
    from keyaccounts.models.value import TwoPartValue
    value, vcard = Tracker(uri, models_dir=tmp_path / "models").load_champion("value-60d", prefer="bundle")
    assert isinstance(value, TwoPartValue) and value.regressor_.get_params()["objective"] == "reg:gamma"
    Xv = X[vcard["feature_names"]]
    buy, spend = value.predict_buy_proba(Xv), value.predict_spend(Xv)
    assert ((buy >= 0) & (buy <= 1)).all() and (spend >= 0).all() and buy.std() > 0
    np.testing.assert_allclose(value.predict(Xv), buy * spend)
    assert 0 < value.buy_rate_ < 1 and value.mean_spend_ > 0


@pytest.mark.slow
def test_spark_booster_becomes_the_same_local_estimator(spark):
    """The model registered after Spark training predicts what the Spark model predicts."""
    from xgboost.spark import SparkXGBRegressor

    from keyaccounts.engines.spark_train import _local_estimator
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    df.loc[::7, "b"] = np.nan
    df["y"] = 2 * df["a"] - df["b"].fillna(0) + rng.normal(scale=0.1, size=300)
    sdf = spark.createDataFrame(df)
    m = SparkXGBRegressor(features_col=["a", "b"], label_col="y", num_workers=1, n_estimators=8,
                          missing=float("nan")).fit(sdf)
    spark_pred = m.transform(sdf).select("prediction").toPandas()["prediction"].to_numpy()
    local = _local_estimator(m, ["a", "b"], classifier=False)
    np.testing.assert_allclose(local.predict(df[["a", "b"]]), spark_pred, rtol=1e-6, atol=1e-6)


def test_folder_outputs_replace_atomically(tmp_path):
    """io.write_directory (Spark's Parquet part files): replaces a file or folder of that name;
    an interrupted write leaves the previous output and no temp folder."""
    from keyaccounts.io import write_directory
    out = tmp_path / "f.parquet"
    out.write_text("an older single-file output")

    def write(tmp):
        tmp.mkdir()
        (tmp / "part-0.parquet").write_text("new")

    write_directory(out, write)
    assert [p.name for p in out.iterdir()] == ["part-0.parquet"]

    def broken(tmp):
        tmp.mkdir()
        (tmp / "part-0.parquet").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_directory(out, broken)
    assert (out / "part-0.parquet").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]


def test_run_plans_spark_steps_and_keeps_small_data_local(tmp_path):
    """keyaccounts run with engine.name spark: features on Spark, train/score by the row count
    (said why), steps without a Spark version local; no JVM is started to decide."""
    from keyaccounts.config import EngineConfig, InputSpec, Pipeline
    from keyaccounts.errors import InputError
    from keyaccounts.pipeline import plan_steps
    pd.DataFrame({"customer_id": ["1", "2"], "timestamp": ["2024-01-01", "2024-01-02"],
                  "amount": [1.0, 2.0]}).to_csv(tmp_path / "t.csv", index=False)
    steps = [{"validate": None}, {"features": {"out": "f.parquet"}}, {"train": {}}, {"score": {"out": "s.csv"}},
             {"report": {"out": "r.html"}}]
    p = Pipeline(as_of=AS_OF, inputs={"transactions": InputSpec(path=str(tmp_path / "t.csv"))}, steps=steps)
    assert [(s.name, s.engine, s.why) for s in plan_steps(p)] == [
        (n, "local", "") for n in ("validate", "features", "train", "score", "report")]
    sp = p.model_copy(update={"engine": EngineConfig(name="spark", spark_min_rows=3)})
    plan = plan_steps(sp)
    assert [(s.name, s.engine) for s in plan] == [("validate", "local"), ("features", "spark"), ("train", "local"),
                                                  ("score", "local"), ("report", "local")]
    assert "2 transaction rows < engine.spark_min_rows 3: training is faster on the local engine" in plan[2].why
    assert plan[4].why == "the report step runs on the local engine only"
    assert plan[3].params == {"out": "s.csv"}
    big = sp.model_copy(update={"engine": EngineConfig(name="spark", spark_min_rows=2)})
    assert [s.engine for s in plan_steps(big)][1:4] == ["spark", "spark", "spark"]
    deals = big.model_copy(update={"steps": [{"features": {"out": "f.parquet", "deals_out": "d.parquet"}}]})
    with pytest.raises(InputError, match="deals_out runs on the local engine only"):
        plan_steps(deals)


@pytest.mark.slow
def test_shipped_spark_pipeline_runs_features_train_score_on_spark(spark, tmp_path, monkeypatch):
    """pipelines/spark.yaml on small demo tables: every step on Spark; the features equal the
    local engine's, the champions are registered in its own registry, and the scores carry the
    score contract's columns (BG/NBD included), partitioned by owner."""
    from pathlib import Path

    from keyaccounts.config import load_pipeline
    from keyaccounts.engines.spark import as_feature_dtypes
    from keyaccounts.pipeline import customer_features, load_inputs
    from keyaccounts.tracking import Tracker
    monkeypatch.chdir(tmp_path)
    import yaml
    cfg = yaml.safe_load((Path(__file__).parents[1] / "pipelines" / "spark.yaml").read_text())
    # the shipped settings, with fewer snapshots and trees to keep the test short
    cfg["train"].update(max_snapshots=3, churn_params={"n_estimators": 20}, value_params={"n_estimators": 20})
    (tmp_path / "spark.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["synth", "--out", "data/demo", "--customers", "150", "--seed", "5",
                            "--start", "2023-06-01", "--end", "2025-12-31"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["run", "spark.yaml", "--spark-master", "local[2]"])
    assert r.exit_code == 0, r.output
    # all three steps on Spark, each saying why
    assert r.output.count("engine: spark (") == 3, r.output
    assert "xgboost.spark with 2 workers" in r.output and "partitioned by owner" in r.output
    p = load_pipeline("spark.yaml")
    local = customer_features(load_inputs(p), p)
    other = pd.read_parquet("out/spark/features.parquet")
    other = as_feature_dtypes(other.set_index(other["customer_id"].astype("str")).drop(columns="customer_id"))
    other = other.sort_index().rename_axis("customer_id")
    local.index = local.index.astype("str")
    for f in (local, other):
        f["as_of"] = f["as_of"].astype("datetime64[ns]")
    assert_same_features(local, other)
    tracker = Tracker("sqlite:///mlruns/spark/mlflow.db", models_dir="models/spark")
    for name in ("churn-90d", "value-90d"):
        _, card = tracker.load_champion(name, prefer="bundle")
        assert card["version"] and card["feature_names"]
    scores = pd.read_parquet("out/spark/scores.parquet")
    want = {"customer_id", "churn_probability", "expected_value", "value_at_risk", "p_alive", "expected_purchases",
            "composite_score", "rank", "churn_reasons_up", "value_reasons_up", "owner"}
    assert want <= set(scores.columns), want - set(scores.columns)
    assert len(scores) == (local["frequency"] > 0).sum()
    assert scores["p_alive"].between(0, 1).all() and (scores["expected_purchases"] >= 0).all()
    assert any(Path("out/spark/scores.parquet").glob("owner=*"))
