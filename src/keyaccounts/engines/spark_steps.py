"""Pipeline steps on Spark: the `features`, `train` and `score` steps of `keyaccounts run`
(and the `--engine spark` commands) with the tables read and validated once per run.

    si = SparkInputs(pipeline)                                  # session + validated tables
    SPARK_STEPS["features"](si, pipeline, {"out": "f.parquet"})  # same params as pipeline.STEPS

Which steps run here is decided by pipeline.plan_steps (small inputs stay on the local engine).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Pipeline
from ..errors import InputError
from ..tracking import tracker_for


class SparkInputs:
    """The SparkSession (from p.engine) and the pipeline's transactions/customers/invoices read
    and canonicalised by Spark (engines.spark.load_spark_tables); quality reports handed to
    `on_reports`."""

    def __init__(self, p: Pipeline, *, loose_columns: dict[str, str] | None = None, say=print, on_reports=None):
        from .spark import load_spark_tables, session_for, spark_cores
        self.spark = session_for(p)
        say(f"spark session: {self.spark.sparkContext.master}, {spark_cores(self.spark)} cores")
        self.tables = load_spark_tables(self.spark, p, loose_columns=loose_columns)
        if on_reports:
            on_reports(self.tables.reports)


def _as_of(p: Pipeline):
    if p.as_of is None:
        raise InputError("as_of is required: pass --as-of YYYY-MM-DD or set as_of in the pipeline")
    return p.as_of


def spark_step_features(si: SparkInputs, p: Pipeline, params: dict[str, Any], say=print) -> list[str]:
    """Customer features as of p.as_of to params['out'] (Parquet folder by the executors, or
    collected for CSV/Excel). Deal features (deals_out) are local-engine only: refused."""
    from pyspark.sql import functions as F

    from .spark import spark_features, write_spark_output
    as_of = _as_of(p)
    if not params.get("out"):
        raise InputError("features step needs 'out: PATH'")
    if params.get("deals_out"):
        raise InputError("deal features (deals_out) run on the local engine only (deal tables are small): "
                         "drop deals_out or use engine.name local")
    f = spark_features(si.tables, as_of=as_of, config=p.features)
    f = f.select("customer_id", F.lit(pd.Timestamp(as_of)).alias("as_of"), *[c for c in f.columns if c != "customer_id"])
    return [write_spark_output(f, params["out"])]


def spark_step_train(si: SparkInputs, p: Pipeline, params: dict[str, Any], say=print) -> list[Path]:
    """Churn and value with xgboost.spark (engines.spark_train), logged/registered/gated like
    the local step; the deal model is not trained here (said)."""
    from .spark_train import spark_train
    _as_of(p)
    if "opportunities" in p.inputs:
        say("[yellow]deal model[/]: trained on the local engine only (deal tables are small); not retrained here")
    tracker = tracker_for(p, params)
    tracker.check()  # before minutes of training, not after
    say(f"tracking: {tracker.tracking_uri}")
    return spark_train(si.spark, si.tables, p=p, tracker=tracker, say=say)


def spark_step_score(si: SparkInputs, p: Pipeline, params: dict[str, Any], say=print) -> list[str]:
    """Ranked accounts with the champions on Spark (engines.spark_score): Parquet partitioned
    by params['by'] (else owner/region). params as pipeline.step_score; no open-deal list."""
    from .spark_score import spark_score
    _as_of(p)
    if not params.get("out"):
        raise InputError("score step needs 'out: PATH'")
    written, _, _ = spark_score(si.spark, si.tables, p=p, tracker=tracker_for(p, params), out=params["out"],
                                prefer=params.get("prefer", "registry"), reasons=str(params.get("reasons", "all")),
                                rank_by=params.get("rank_by", "composite_score"), by=params.get("by"),
                                top=params.get("top"), say=say)
    return written


SPARK_STEPS: dict[str, Callable[..., list]] = {
    "features": spark_step_features,
    "train": spark_step_train,
    "score": spark_step_score,
}
