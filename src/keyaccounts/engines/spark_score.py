"""Distributed scoring: the registered champions applied on Spark with mapInPandas.

    spark_score(spark, tables, p=pipeline, tracker=tracker, out="scores.parquet", by="owner")

1. customer features on Spark (engines.spark), accounts = customers with a purchase before as_of;
2. churn_probability / expected_value / value_at_risk per row in mapInPandas with the champion
   models (loaded once on the driver through tracking.py, shipped to the executors pickled);
3. tiers, composite score and ranks need the whole population (ABC/Pareto shares, percentile
   ranks), so they are computed exactly, with the local engine's code (tiers.assign_tiers,
   score._rank), on the driver from a narrow frame (the ~20 columns the tiers read);
4. reasons per row in mapInPandas (exact TreeSHAP for trees; linear parts measured from the
   reference fixed at training), so each account's reasons equal the local engine's;
5. Parquet written by the executors, partitioned by --by (else owner and region when known).

BG/NBD p_alive / expected_purchases / btyd_value: (x, t_x, T, m_x) aggregated per customer on
Spark (spark_btyd_summary), BG/NBD and Gamma-Gamma fitted and evaluated on the driver with the
local engine's code (train.btyd_from_summary) inside step 3's narrow frame. Not on Spark (say
so, use the local engine): the open-deal list. Workers need keyaccounts installed (the models' classes are unpickled there).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..config import Pipeline
from ..errors import InputError
from ..explain import contributions, top_reasons
from ..features.arrays import as_of_day
from ..score import CONTEXT, keep_top, load_champion, parse_reasons, rank_rows, reason_rows, tier_counts
from ..tiers import CREDIT_COLUMNS, assign_tiers, criteria_columns, uses_potential
from ..tracking import model_name
from ..train import btyd_from_summary
from .spark import SparkTables, as_feature_dtypes, day_number, quiet_spark_logs, spark_features, write_spark_output

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

REASON_COLUMNS = ("churn_reasons_up", "churn_reasons_down", "value_reasons_up", "value_reasons_down")


def tier_inputs(columns, p: Pipeline) -> list[str]:
    """Feature columns tiers.assign_tiers reads (those present)."""
    want = [p.tiers.history_column, *p.tiers.growth_columns, "margin_rate", "margin_total", *CREDIT_COLUMNS,
            "spend_90d", "spend_prior_90d", "spend_365d", "tenure_days", "frequency", "r_score", "f_score",
            "m_score", "lifecycle_stage"]
    return [c for c in dict.fromkeys(want) if c in columns]


def spark_fingerprint(tables: SparkTables) -> str:
    """sha256 over each table's name, row count, schema and the sum of 64-bit row hashes
    (order-insensitive). A Spark-side fingerprint: not comparable with tracking.data_fingerprint."""
    from pyspark.sql import functions as F
    h = hashlib.sha256()
    for name in ("transactions", "customers", "invoices"):
        df = getattr(tables, name)
        if df is None:
            continue
        cols = sorted(df.columns)
        r = df.agg(F.count(F.lit(1)).alias("n"),
                   F.sum(F.xxhash64(*[F.col(c) for c in cols]).cast("decimal(38,0)")).alias("s")).first()
        h.update(json.dumps([name, int(r["n"]), str(r["s"]), [(c, t) for c, t in sorted(df.dtypes)]]).encode())
    return h.hexdigest()


BTYD_COLUMNS = ("p_alive", "expected_purchases", "btyd_value")
_BTYD_SUMMARY = ("frequency", "recency", "T", "monetary_value")


def spark_btyd_summary(txns: DataFrame, *, as_of, time_unit_days: float = 7.0) -> DataFrame:
    """models.btyd.btyd_summary on Spark: per customer with a purchase day (a row with amount
    > 0) before as_of, frequency x = purchase days - 1, recency t_x = last - first purchase
    day, T = as_of - first purchase day (in time units), monetary_value = mean net spend of
    the later days with positive net spend (null when none). Only these four numbers per
    customer reach the driver, where BG/NBD and Gamma-Gamma are fitted."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    d0 = as_of_day(as_of)
    x = txns.select("customer_id", day_number(F.col("timestamp")).alias("day"), F.col("amount").cast("double").alias("a"))
    g = (x.where(F.col("day") < d0).groupBy("customer_id", "day")
         .agg(F.sum("a").alias("amt"), F.max((F.col("a") > 0).cast("long")).alias("pos")))
    buy = F.when(F.col("pos") == 1, F.col("day"))
    g = g.withColumn("first", F.min(buy).over(Window.partitionBy("customer_id")))
    rep = (F.col("day") > F.col("first")) & (F.col("amt") > 0)
    s = g.groupBy("customer_id").agg(
        F.sum("pos").alias("n"), F.min("first").alias("first"), F.max(buy).alias("last"),
        F.sum(F.when(rep, F.col("amt"))).alias("rep_sum"), F.sum(rep.cast("long")).alias("rep_n"))
    u = float(time_unit_days)
    return s.where(F.col("n") > 0).select(
        "customer_id", (F.col("n") - 1).cast("double").alias("frequency"),
        ((F.col("last") - F.col("first")) / u).alias("recency"), ((F.lit(d0) - F.col("first")) / u).alias("T"),
        F.when(F.col("rep_n") > 0, F.col("rep_sum") / F.col("rep_n")).alias("monetary_value"))


def _predict_fn(churn, value, churn_cols, value_cols, horizon_days: int):
    def predict(batches):
        for b in batches:
            ids = b["customer_id"].astype("str").to_numpy()
            X = as_feature_dtypes(b.drop(columns=["customer_id"]))
            cp = np.asarray(churn.predict_proba(X[churn_cols])[:, 1], "float64") if len(X) else np.zeros(0)
            ev = np.maximum(np.asarray(value.predict(X[value_cols]), "float64"), 0.0) if len(X) else np.zeros(0)
            run_rate = (X["spend_365d"].clip(lower=0).to_numpy("float64") * horizon_days / 365.0
                        if "spend_365d" in X.columns else ev)
            yield pd.DataFrame({"customer_id": ids, "churn_probability": cp, "expected_value": ev,
                                "value_at_risk": cp * run_rate})
    return predict


def _reasons_fn(models: dict, cols: dict, out_cols: list[str], fcols: list[str], explain_col: str):

    def reasons(batches):
        for b in batches:
            b = b.set_index(b["customer_id"].astype("str"))
            res = b[out_cols].copy()
            feats = as_feature_dtypes(b[fcols].copy())
            chosen = b[explain_col].to_numpy(bool)
            for fam in ("churn", "value"):
                up = np.full(len(b), "", dtype=object)
                down = np.full(len(b), "", dtype=object)
                if chosen.any():
                    X = feats.loc[chosen, cols[fam]]
                    C = contributions(models[fam], X)
                    R = top_reasons(C, feats.loc[chosen], n=3, kind=fam)
                    up[chosen] = R["reasons_up"].to_numpy(dtype=object)
                    down[chosen] = R["reasons_down"].to_numpy(dtype=object)
                res[f"{fam}_reasons_up"] = pd.array(up, dtype="str")
                res[f"{fam}_reasons_down"] = pd.array(down, dtype="str")
            yield res.reset_index(drop=True)
    return reasons


def spark_score(spark: SparkSession, tables: SparkTables, *, p: Pipeline, tracker, out, prefer: str = "registry",
                reasons: str = "all", rank_by: str = "composite_score", by: str | None = None,
                top: int | None = None, say=print) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """Score every account on Spark and write Parquet (see module docstring). Returns (written
    paths, model versions, row counts); the run is logged to MLflow like the local one."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    quiet_spark_logs()
    if p.as_of is None:
        raise InputError("as_of is required: pass --as-of YYYY-MM-DD or set as_of in the pipeline")
    as_of, H = p.as_of, p.horizon_days
    mode = parse_reasons(reasons)[0]
    if by not in (None, "owner", "region"):
        raise InputError(f"--by must be owner or region, got '{by}'")
    f = spark_features(tables, as_of=as_of, config=p.features).where(F.col("frequency") > 0)
    fcols = [c for c in f.columns if c != "customer_id"]
    models, cols, versions = {}, {}, {}
    for fam in ("churn", "value"):
        name = model_name(fam, H)
        model, card = load_champion(tracker, name, prefer)
        want = list(card.get("feature_names") or fcols)
        missing = [c for c in want if c not in fcols]
        if missing:
            raise InputError(f"model {name} v{card.get('version')} was trained on features that the data "
                             f"does not produce now: {missing[:10]}",
                             hint="pass the same kinds of tables (e.g. --invoices, cost column) as at training, or retrain")
        models[fam], cols[fam], versions[name] = model, want, str(card.get("version"))
    schema = T.StructType([T.StructField("customer_id", T.StringType())] +
                          [T.StructField(c, T.DoubleType()) for c in ("churn_probability", "expected_value",
                                                                       "value_at_risk")])
    preds = f.mapInPandas(_predict_fn(models["churn"], models["value"], cols["churn"], cols["value"], H), schema)
    # The narrow, population-wide part: exact tiers and ranks on the driver.
    tcols = tier_inputs(fcols, p)
    # BG/NBD needs (x, t_x, T, m_x) per customer: aggregated on Spark, fitted on the driver.
    bt = spark_btyd_summary(tables.transactions, as_of=as_of)
    bt = bt.select("customer_id", *[F.col(c).alias(f"_bt_{c}") for c in _BTYD_SUMMARY])
    narrow = f.select("customer_id", *tcols).join(preds, "customer_id").join(bt, "customer_id", "left").toPandas()
    if narrow.empty:
        raise InputError(f"no customer has a purchase before as_of {as_of}: nothing to score")
    narrow.index = pd.Index(narrow.pop("customer_id").astype("str"), name="customer_id")
    narrow = as_feature_dtypes(narrow.sort_index())
    summary = narrow[[f"_bt_{c}" for c in _BTYD_SUMMARY]].rename(columns=lambda c: c[len("_bt_"):])
    btyd = btyd_from_summary(summary, horizon_days=H, index=narrow.index)
    scores = narrow[["churn_probability", "expected_value", "value_at_risk"]].join(btyd[list(BTYD_COLUMNS)])
    acc = scores.join(assign_tiers(narrow[tcols], scores, p.tiers))
    if tables.customers is not None:
        ctx = [c for c in CONTEXT if c in tables.customers.columns]
        if ctx:
            cust = tables.customers.select("customer_id", *ctx).toPandas()
            cust = cust.set_index(cust["customer_id"].astype("str"))[ctx]
            acc = cust.reindex(acc.index).join(acc)
    for fam in ("churn", "value"):
        name = model_name(fam, H)
        acc[f"{fam}_model_version"] = f"{name}/v{versions[name]}"
    acc["as_of"] = pd.Timestamp(as_of)
    acc = keep_top(rank_rows(acc, rank_by, by), top, by)
    explain = pd.Series(False, index=acc.index)
    explain[reason_rows(acc, reasons, by)] = True
    acc["_explain"] = explain
    acc.index.name = "customer_id"
    out_cols = [c for c in acc.columns if c != "_explain"]
    part = [by] if by else [c for c in ("owner", "region") if c in acc.columns]
    dup = [c for c in acc.columns if c in fcols]  # lifecycle_stage: the feature itself
    acc_sdf = spark.createDataFrame(acc.drop(columns=dup).reset_index())
    joined = f.join(acc_sdf, "customer_id")
    keep_cols = ["customer_id"] + out_cols
    res_schema = T.StructType([joined.schema[c] for c in keep_cols] +
                              [T.StructField(c, T.StringType()) for c in REASON_COLUMNS])
    if mode == "none":
        result = joined.select(*keep_cols, *[F.lit("").alias(c) for c in REASON_COLUMNS])
    else:
        result = joined.mapInPandas(_reasons_fn(models, cols, keep_cols, fcols, "_explain"), res_schema)
    written = [write_spark_output(result, out, partition_by=part or None, meta={  # an Excel list's Read me
        "list": "accounts", "as_of": as_of, "horizon_days": H, "versions": versions, "rank_by": rank_by, "by": by,
        "top": top, "reasons": reasons, "inputs": {n: s.path for n, s in p.inputs.items()}, "tiers": p.tiers,
        "lifecycle": p.features.lifecycle, "risk_bands": (p.report.risk_medium, p.report.risk_high)})]
    counts = {"accounts": len(acc), "deals": 0}
    tracker.log_score_run(as_of=as_of, fingerprint=spark_fingerprint(tables), model_versions=versions,
                          row_counts=counts, extra_metrics=tier_counts(acc))
    say(f"scored {len(acc):,} accounts on Spark; partitioned by {'/'.join(part) or '-'}"
        + ("; open deals: use the local engine" if "opportunities" in p.inputs else ""))
    return written, versions, counts


def estimate_rows(path: str) -> int | None:
    """Rows of a local transactions file without Spark: Parquet metadata, or newlines of a CSV
    (gzip too). None for URIs and tables (assumed large)."""
    if "://" in path or path.startswith("table:"):
        return None
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", file=path)
    low = p.name.lower()
    if p.is_dir() or low.endswith((".parquet", ".pq")):
        import pyarrow.dataset as ds
        return int(ds.dataset(str(p), format="parquet").count_rows())
    if low.endswith((".xlsx", ".xlsm", ".xls")):
        return 0  # spreadsheets are small
    import gzip
    opener = gzip.open if low.endswith(".gz") else open
    n = 0
    with opener(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            n += chunk.count(b"\n")
    return max(n - 1, 0)


def choose_engine(p: Pipeline, what: str) -> tuple[str, str]:
    """('spark'|'local', why) for train/score: small inputs stay on the local engine."""
    if p.engine.name != "spark":
        return "local", "default engine"
    spec = p.inputs.get("transactions")
    if spec is None:
        raise InputError("a transactions file is required (--transactions or inputs.transactions)")
    if spec.sql is not None:
        return "local", "SQL inputs are read by the local engine"
    if what == "scoring" and (criteria_columns(p.tiers) or uses_potential(p.tiers)):
        return "local", "your tier criteria and the peer potential are scored by the local engine"
    n = estimate_rows(spec.path)
    limit = p.engine.spark_min_rows
    if n is not None and n < limit:
        return "local", (f"{n:,} transaction rows < engine.spark_min_rows {limit:,}: {what} is faster on the "
                         "local engine (Spark's start-up and shuffles cost more than they save)")
    return "spark", (f"{'unknown (URI/table)' if n is None else f'{n:,}'} transaction rows >= "
                     f"engine.spark_min_rows {limit:,}")


__all__ = ["spark_score", "choose_engine", "estimate_rows", "spark_fingerprint", "tier_inputs"]


def run_score(p: Pipeline, *, loose_columns: dict[str, str], params: dict, say=print, on_reports=None) -> list[str]:
    """The `score --engine spark` command (after choose_engine picked Spark)."""
    from .spark_steps import SparkInputs, spark_step_score
    si = SparkInputs(p, loose_columns=loose_columns, say=say, on_reports=on_reports)
    return spark_step_score(si, p, params, say=say)
