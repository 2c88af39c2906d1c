"""The customer feature families on Apache Spark, with the pandas engine's semantics.

    spark = spark_session()                                    # local[*] or $SPARK_MASTER
    t = load_spark_tables(spark, pipeline)                     # Parquet/CSV paths, URIs, table:NAME
    sdf = spark_features(t, as_of=date, config=pipeline.features)   # a Spark DataFrame
    pdf = to_feature_frame(sdf)                                # == features.build_features(...)

Semantics are those of `keyaccounts.features` (see its docstrings): rows strictly before
as_of, calendar days since 1970-01-01 (session time zone UTC), purchases = rows with amount
> 0, the same population (buyers plus prospects signed up before as_of) and the same columns.
RFM quintile scores use **exact** percentiles: score = 1 + floor(5 x customers strictly
worse / n), counted over the distinct values (a cumulative count over the sorted distinct
values), so ties share a score exactly as in pandas; only the distinct values (not the
customers) pass through one partition.

Sums are in double precision in a different order than numpy's, so money columns agree to
~1e-12 relative, counts exactly.
"""
from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .. import io
from ..config import FeatureConfig, InputSpec, Pipeline, QualityConfig
from ..errors import InputError
from ..features.arrays import as_of_day
from ..features.lifecycle import STAGES
from ..features.registry import feature_columns as registry_columns
from ..quality import QualityReport
from ..schemas import SPECS, suggest_column
from . import spark_unavailable_reason

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

_PANDAS3_WARNING = "PySpark does not yet fully support"
SPARK_TABLES = ("transactions", "customers", "invoices")


def quiet_spark_logs() -> None:
    # pyspark 4.x warns on every pandas conversion under pandas 3; the conversions we use work.
    warnings.filterwarnings("ignore", message=_PANDAS3_WARNING, category=FutureWarning)


def spark_session(master: str | None = None, *, shuffle_partitions: int | None = None,
                  conf: dict[str, str] | None = None, app_name: str = "keyaccounts") -> SparkSession:
    """Get or create the SparkSession: master = `master` > $SPARK_MASTER > local[*].

    Sets PYSPARK_PYTHON (workers run this interpreter) and, for local masters,
    SPARK_LOCAL_IP=127.0.0.1 unless already set, and 4 shuffle partitions per core unless
    `shuffle_partitions` is given; session time zone UTC (day numbers match the
    pandas engine); Arrow for pandas conversion; UI off. Raises InputError when pyspark or Java
    is missing. Starting the JVM takes ~6-13 s; reuse the session.
    """
    why = spark_unavailable_reason()
    if why:
        raise InputError(f"the Spark engine is not available: {why}")
    master = master or os.environ.get("SPARK_MASTER") or "local[*]"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers inherit this: the pandas-3 notice would repeat on every task otherwise.
    os.environ.setdefault("PYTHONWARNINGS", f"ignore:{_PANDAS3_WARNING}:FutureWarning")
    quiet_spark_logs()
    from pyspark.sql import SparkSession

    b = (SparkSession.builder.master(master).appName(app_name)
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.sql.adaptive.enabled", "true")
         # pandas writes nanosecond timestamps, which Spark otherwise refuses (see _read_parquet)
         .config("spark.sql.legacy.parquet.nanosAsLong", "true"))
    if not shuffle_partitions and master.startswith("local"):
        # Spark's default of 200 shuffle partitions costs seconds per stage on one machine.
        m = re.fullmatch(r"local\[(\d+)\]", master)
        shuffle_partitions = 4 * (int(m.group(1)) if m else (os.cpu_count() or 2))
    if shuffle_partitions:
        b = b.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    for k, v in (conf or {}).items():
        b = b.config(k, str(v))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def session_for(p: Pipeline, master: str | None = None) -> SparkSession:
    """spark_session from the pipeline's engine settings (`master` overrides them)."""
    e = p.engine
    return spark_session(master or e.spark_master, shuffle_partitions=e.shuffle_partitions, conf=e.spark_conf)


def spark_cores(spark: SparkSession) -> int:
    """Task slots Spark has (defaultParallelism): the cap for xgboost.spark num_workers."""
    return max(int(spark.sparkContext.defaultParallelism), 1)


# --------------------------------------------------------------------------- reading


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def read_source(spark: SparkSession, path: str, spec: InputSpec | None = None) -> DataFrame:
    """A raw Spark DataFrame from a path or URI (Parquet file/folder, CSV/TSV/TXT[.gz]) or
    `table:NAME` (a catalog table). Excel is not read by Spark: convert it to Parquet/CSV."""
    read = spec.read if spec else None
    if path.startswith("table:"):
        try:
            return spark.table(path[len("table:"):])
        except Exception as e:  # noqa: BLE001 - AnalysisException: unknown table
            raise InputError(f"Spark cannot read table '{path[6:]}': {type(e).__name__}", file=path) from None
    p = path[len("file://"):] if path.startswith("file://") else path
    low = re.sub(r"\.gz$", "", p.lower().rstrip("/"))
    if not _is_uri(path):
        if not Path(p).exists():
            raise InputError("file not found", file=path)
        p = str(Path(p).resolve())  # the JVM resolves relative paths against its own start folder
    if low.endswith((".xlsx", ".xlsm", ".xls")):
        raise InputError("the Spark engine reads Parquet or CSV, not Excel", file=path,
                         hint="convert the sheet to CSV/Parquet, or run without --engine spark")
    try:
        if low.endswith((".csv", ".tsv", ".txt", ".dat")):
            sep = (read.sep if read and read.sep else ("\t" if low.endswith(".tsv") else ","))
            r = spark.read.option("header", str(read.header if read else True).lower()).option("sep", sep)
            if read and read.encoding:
                r = r.option("encoding", read.encoding)
            return r.csv(p)
        return _read_parquet(spark, p)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable file: say which
        raise InputError(f"Spark cannot read this input ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                         file=path) from None


def _read_parquet(spark: SparkSession, path: str) -> DataFrame:
    """Parquet; nanosecond timestamps (pandas' default) arrive as longs (the session sets
    spark.sql.legacy.parquet.nanosAsLong) and are converted to timestamps here, the columns
    found from the Parquet schema via pyarrow (when pyarrow can open the path)."""
    from pyspark.sql import functions as F
    df = spark.read.parquet(path)
    try:
        import pyarrow as pa
        import pyarrow.dataset as ds
        schema = ds.dataset(path, format="parquet").schema
        nanos = {f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"}
    except Exception:  # noqa: BLE001 - e.g. an object store pyarrow has no credentials for
        nanos = set()
    if not nanos:
        return df
    return df.select(*[F.timestamp_micros(F.floor(F.col(f"`{c}`") / 1000)).alias(c) if c in nanos
                       else F.col(f"`{c}`") for c in df.columns])


def _strftime_to_spark(fmt: str) -> str:
    out = fmt
    for a, b in (("%Y", "yyyy"), ("%y", "yy"), ("%m", "MM"), ("%d", "dd"), ("%H", "HH"), ("%M", "mm"),
                 ("%S", "ss"), ("%b", "MMM"), ("%B", "MMMM"), ("%f", "SSSSSS")):
        out = out.replace(a, b)
    return out


def _id_col(c: Column) -> Column:
    from pyspark.sql import functions as F
    s = F.trim(c.cast("string"))
    s = F.regexp_replace(s, r"^(-?\d+)\.0+$", "$1")  # 12.0 -> 12, as the pandas loader does
    return F.when(s == "", None).otherwise(s)


def _date_col(c: Column, dtype: str, fmt: str | None) -> Column:
    from pyspark.sql import functions as F
    if dtype.startswith(("timestamp", "date")):
        return c.cast("timestamp")
    s = F.trim(c.cast("string"))
    if fmt and fmt not in ("ISO8601", "mixed"):
        return F.try_to_timestamp(s, F.lit(_strftime_to_spark(fmt)))
    return s.try_cast("timestamp")


def _number_col(c: Column, dtype: str) -> Column:
    from pyspark.sql import functions as F
    if dtype in ("double", "float", "int", "bigint", "smallint", "tinyint") or dtype.startswith("decimal"):
        return c.cast("double")
    s = F.regexp_replace(F.trim(c.cast("string")), r"[\s$€£¥₹,]", "")
    neg = s.rlike(r"^\(.*\)$")
    v = F.regexp_replace(s, r"[()]", "").try_cast("double")
    return F.when(neg, -v).otherwise(v)


def _blank(c: Column) -> Column:
    from pyspark.sql import functions as F
    return c.isNull() | (F.trim(c.cast("string")) == "")


def _bad_rows(df: DataFrame, cond: Column, cols: list[str]) -> pd.DataFrame:
    return df.where(cond).select(*cols).limit(5).toPandas()


def canonical_table(raw: DataFrame, name: str, *, file: str, mapping: dict[str, str] | None = None,
                    quality: QualityConfig | None = None, date_format: str | None = None
                    ) -> tuple[DataFrame, QualityReport]:
    """The Spark counterpart of schemas.prepare_table for transactions, customers and invoices:
    rename mapped columns, normalise ids to strings, parse dates and numbers, then the
    messy-data policy: blank required id/date/amount rows and a few unparsable values
    (<= quality.max_bad_values) are dropped and counted, more are rejected; exact duplicate
    rows dropped and counted; duplicate ids with different data, negative amounts with a
    positive quantity and invoices due/paid before issue are rejected (InputError naming the
    file, the column and up to 5 rows). Not done here (local engine only): encoding/delimiter
    sniffing, Excel, mixed-date-format detection."""
    if name not in SPARK_TABLES:
        raise InputError(f"the Spark engine reads transactions, customers and invoices, not {name}",
                         file=file, hint="deal features and scores run on the local engine (deal tables are small)")
    spec, q = SPECS[name], quality or QualityConfig()
    df = _parsed(_mapped(raw, spec, name, mapping or {}, file), spec, name, date_format)
    checked = [c for c in df.columns if not c.startswith("_raw_") and (c in spec.dates or c in spec.numbers)]
    required_blank = [c for c in spec.required if c in df.columns and c not in spec.nullable]
    stats = _column_stats(df, name, checked, required_blank)
    rep = QualityReport(table=name, file=file, rows_read=int(stats["_rows"]))
    _refuse_bad_values(df, stats, spec, checked, q, file)
    df = _drop_bad_rows(df, stats, checked, required_blank, rep).dropDuplicates()
    _refuse_inconsistent(df, spec, name, file)
    rep.rows_kept = int(df.count())
    rep.drop("exact duplicate rows", rep.rows_read - rep.rows_kept - sum(rep.dropped.values()))
    return df, rep


def _mapped(raw: DataFrame, spec, name: str, mapping: dict[str, str], file: str) -> DataFrame:
    """The canonical columns the file has (mapped names renamed); InputError naming a mapping to
    a missing column or a missing required column (with a suggested mapping)."""
    from pyspark.sql import functions as F

    cols = list(raw.columns)
    for canon, src in mapping.items():
        if src not in cols:
            raise InputError(f"the mapping {canon}={src} names a column that the file does not have",
                             file=file, column=src, hint=f"columns in the file: {', '.join(cols[:30])}")
    df = raw.select(*[F.col(f"`{mapping[c]}`").alias(c) if c in mapping else F.col(f"`{c}`")
                      for c in spec.all_columns if c in mapping or c in cols])
    have = set(df.columns)
    need = [c for c in spec.required if c not in have]
    if name == "transactions" and "amount" in need and {"quantity", "unit_price"} <= have:
        need.remove("amount")
    if need:
        sugg = {c: suggest_column(c, cols) for c in need}
        hint = ", ".join(f"{c}={s}" for c, s in sugg.items() if s)
        raise InputError(f"missing required column(s) {', '.join(need)}", file=file, column=need[0],
                         hint=f"map them: --columns {hint}" if hint else f"columns in the file: {', '.join(cols[:30])}")
    return df


def _parsed(df: DataFrame, spec, name: str, date_format: str | None) -> DataFrame:
    """Ids as strings, dates and numbers parsed, each parsed column's file value kept as `_raw_<c>`
    (to tell a blank cell from an unparsable one); amount = quantity x unit_price when absent."""
    from pyspark.sql import functions as F

    types = dict(df.dtypes)
    parsed = {}
    for c in df.columns:
        if c in spec.ids:
            parsed[c] = _id_col(F.col(c))
        elif c in spec.dates:
            parsed[c] = _date_col(F.col(c), types[c], date_format)
        elif c in spec.numbers:
            parsed[c] = _number_col(F.col(c), types[c])
        else:
            parsed[c] = F.col(c)
    raw_cols = {f"_raw_{c}": F.col(c) for c in df.columns if c in spec.dates or c in spec.numbers}
    df = df.select(*[e.alias(c) for c, e in parsed.items()], *[e.alias(k) for k, e in raw_cols.items()])
    if name == "transactions" and "amount" not in df.columns:
        df = df.withColumn("amount", F.col("quantity") * F.col("unit_price")).withColumn("_raw_amount", F.lit("x"))
    return df


def _column_stats(df: DataFrame, name: str, checked: list[str], required_blank: list[str]) -> dict:
    """One pass over the table: rows, unparsable values per checked column, blank required
    cells, and (transactions) negative amounts with a positive quantity."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("_rows")]
    for c in checked:  # non-blank in the file, unparsable (or not finite) after parsing
        bad = ~_blank(F.col(f"_raw_{c}")) & (F.col(c).isNull() | F.col(c).isin(float("inf"), float("-inf"))
                                             if c in SPECS[name].numbers else F.col(c).isNull())
        aggs.append(F.sum(bad.cast("long")).alias(f"_bad_{c}"))
    for c in required_blank:
        src = F.col(f"_raw_{c}") if f"_raw_{c}" in df.columns else F.col(c)
        aggs.append(F.sum(_blank(src).cast("long")).alias(f"_blank_{c}"))
    if name == "transactions" and "quantity" in df.columns:
        aggs.append(F.sum(((F.col("amount") < 0) & (F.col("quantity") > 0)).cast("long")).alias("_negqty"))
    return df.agg(*aggs).first().asDict()


def _refuse_bad_values(df: DataFrame, stats: dict, spec, checked: list[str], q: QualityConfig, file: str) -> None:
    """InputError for more unparsable values than quality.max_bad_values, or a negative amount
    with a positive quantity (not a return)."""
    from pyspark.sql import functions as F

    for c in checked:
        n_bad = int(stats[f"_bad_{c}"] or 0)
        if n_bad > q.max_bad_values:
            cond = ~_blank(F.col(f"_raw_{c}")) & F.col(c).isNull()
            raise InputError(f"{n_bad} values could not be read as {'dates' if c in spec.dates else 'numbers'} "
                             f"(more than quality.max_bad_values = {q.max_bad_values})", file=file, column=c,
                             rows=_bad_rows(df, cond, [f"_raw_{c}"]))
    if int(stats.get("_negqty") or 0):
        raise InputError(f"{stats['_negqty']} rows have a negative amount with a positive quantity (not a return)",
                         file=file, column="amount",
                         rows=_bad_rows(df, (F.col("amount") < 0) & (F.col("quantity") > 0), ["quantity", "amount"]))


def _drop_bad_rows(df: DataFrame, stats: dict, checked: list[str], required_blank: list[str],
                   rep: QualityReport) -> DataFrame:
    """Rows with an unparsable value or a blank required cell dropped and counted in `rep`."""
    from pyspark.sql import functions as F

    keep = F.lit(True)
    for c in checked:
        cond = ~_blank(F.col(f"_raw_{c}")) & F.col(c).isNull()
        rep.drop(f"unparsable {c}", int(stats[f"_bad_{c}"] or 0))
        keep &= ~cond
    for c in required_blank:
        rep.drop(f"blank {c}", int(stats[f"_blank_{c}"] or 0))
        keep &= F.col(c).isNotNull()
    return df.where(keep).drop(*[c for c in df.columns if c.startswith("_raw_")])


def _refuse_inconsistent(df: DataFrame, spec, name: str, file: str) -> None:
    """InputError for one key with different data, or invoices due/paid before they were issued."""
    from pyspark.sql import functions as F

    if spec.key:
        dup = df.groupBy(spec.key).count().where(F.col("count") > 1)
        if dup.limit(1).count():
            rows = dup.limit(5).toPandas()
            raise InputError(f"duplicate {spec.key} values with different data", file=file, column=spec.key, rows=rows)
    if name == "invoices":
        for col, what in (("due_date", "due"), ("paid_date", "paid")):
            if col in df.columns:
                cond = F.col(col) < F.col("issue_date")
                if df.where(cond).limit(1).count():
                    raise InputError(f"invoices {what} before they were issued", file=file, column=col,
                                     rows=_bad_rows(df, cond, ["invoice_id", "issue_date", col]))


@dataclass
class SparkTables:
    """Canonical Spark DataFrames (see canonical_table). Only transactions is required."""

    transactions: DataFrame
    customers: DataFrame | None = None
    invoices: DataFrame | None = None
    reports: list[QualityReport] = field(default_factory=list)


def load_spark_tables(spark: SparkSession, p: Pipeline, *, loose_columns: dict[str, str] | None = None
                      ) -> SparkTables:
    """Read and canonicalise the pipeline's transactions/customers/invoices with Spark
    (opportunities and stage history are refused: deal work stays on the local engine)."""
    if "transactions" not in p.inputs:
        raise InputError("a transactions file is required (--transactions or inputs.transactions)")
    frames, reports, used = {}, [], set()
    for name in SPARK_TABLES:
        spec = p.inputs.get(name)
        if spec is None:
            continue
        if spec.sql is not None:
            raise InputError("SQL inputs are read by the local engine only", file=spec.source,
                             hint="drop --engine spark / engine.name spark, or give Spark a table (table:NAME) or files")
        raw = read_source(spark, spec.path, spec)
        loose = {k: v for k, v in (loose_columns or {}).items() if v in raw.columns and k in SPECS[name].all_columns}
        used |= set(loose)
        df, rep = canonical_table(raw, name, file=spec.path, mapping={**spec.columns, **loose},
                                  quality=p.quality, date_format=spec.read.date_format)
        frames[name] = df
        reports.append(rep)
    unused = [k for k in (loose_columns or {}) if k not in used]
    if unused:
        k = unused[0]
        raise InputError(f"--columns maps '{k}' to '{loose_columns[k]}', but no input file has a column "
                         f"'{loose_columns[k]}'", column=loose_columns[k])
    return SparkTables(reports=reports, **frames)


# --------------------------------------------------------------------------- features


def day_number(c: Column) -> Column:
    from pyspark.sql import functions as F
    return F.datediff(F.to_date(c), F.lit("1970-01-01").cast("date")).cast("long")


def _ratio(num: Column, den: Column) -> Column:
    """num / den, null where den <= 0 or undefined (ANSI-safe: no division by zero)."""
    from pyspark.sql import functions as F
    return F.when(den > 0, num.cast("double") / den.cast("double"))


def _quintile(df: DataFrame, col: str, out: str, *, higher_is_better: bool) -> DataFrame:
    """Exact 1 + floor(5 * (# strictly worse) / n); null counts as the worst value."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    key = F.coalesce((F.col(col) if higher_is_better else -F.col(col)).cast("double"), F.lit(float("-inf")))
    counts = df.select(key.alias("_k")).groupBy("_k").count()
    whole = Window.orderBy("_k").rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    before = Window.orderBy("_k").rowsBetween(Window.unboundedPreceding, -1)
    counts = counts.select(
        "_k", (1 + F.floor(5 * F.coalesce(F.sum("count").over(before), F.lit(0)) / F.sum("count").over(whole)))
        .cast("long").alias(out))
    return df.withColumn("_k", key).join(counts, "_k", "left").drop("_k")


def _txn_features(t: DataFrame, *, d0: int, cfg: FeatureConfig, has_cost: bool) -> DataFrame:
    """Per customer with any row before as_of: the aggregates of rfm, tenure, growth, returns,
    margin (two passes: per customer-day, then per customer)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    x = t.select("customer_id", day_number(F.col("timestamp")).alias("day"), F.col("amount").cast("double").alias("amount"),
                 *([F.col("cost").cast("double").alias("cost")] if has_cost else []))
    x = x.where(F.col("day") < d0)
    a = F.col("amount")
    day_aggs = [F.sum(a).alias("amt"), F.max((a > 0).cast("int")).alias("pos"),
                F.sum(F.when(a >= 0, a).otherwise(0.0)).alias("gross"),
                F.sum(F.when(a < 0, a).otherwise(0.0)).alias("neg"), F.sum((a < 0).cast("long")).alias("n_neg")]
    if has_cost:
        known = F.col("cost").isNotNull()
        day_aggs += [F.sum(F.when(known, a - F.col("cost")).otherwise(0.0)).alias("m"),
                     F.sum(F.when(known, a).otherwise(0.0)).alias("rev"), F.sum(known.cast("long")).alias("n_cost")]
    g = x.groupBy("customer_id", "day").agg(*day_aggs)
    # The previous purchase day on each row; on the last purchase day it is the second-last one.
    w = Window.partitionBy("customer_id").orderBy("day").rowsBetween(Window.unboundedPreceding, -1)
    g = g.withColumn("prev_pos", F.max(F.when(F.col("pos") == 1, F.col("day"))).over(w))
    day, amt, pos = F.col("day"), F.col("amt"), F.col("pos") == 1
    gw, sm = cfg.growth_window_days, cfg.slope_months
    month = F.floor((F.lit(d0 - 1) - day) / 30).cast("long")
    aggs = [
        F.sum(amt).alias("monetary_total"), F.sum(F.col("pos")).cast("long").alias("frequency"),
        F.max(F.when(pos, day)).alias("last"), F.min(F.when(pos, day)).alias("first_buy"),
        F.min(day).alias("first_any"), F.max_by(F.col("prev_pos"), F.when(pos, day)).alias("second_last"),
        F.sum("gross").alias("gross"), F.sum("neg").alias("neg"), F.sum("n_neg").cast("long").alias("n_returns"),
        F.sum(F.when(day >= d0 - gw, amt).otherwise(0.0)).alias("_recent"),
        F.sum(F.when((day >= d0 - 2 * gw) & (day < d0 - gw), amt).otherwise(0.0)).alias("_prior"),
        F.sum(F.when(month < sm, amt).otherwise(0.0)).alias("_sy"),
        F.sum(F.when(month < sm, amt * month).otherwise(0.0)).alias("_smx"),
    ]
    for wd in cfg.windows_days:
        aggs.append(F.sum(F.when(day >= d0 - wd, amt).otherwise(0.0)).alias(f"spend_{wd}d"))
    for wd in cfg.windows_days:
        aggs.append(F.sum(F.when((day >= d0 - wd) & pos, 1).otherwise(0)).cast("long").alias(f"n_purchases_{wd}d"))
    if has_cost:
        aggs += [F.sum("m").alias("_m"), F.sum("rev").alias("_rev"), F.sum("n_cost").alias("_n_cost")]
    return g.groupBy("customer_id").agg(*aggs).withColumn("_seen", F.lit(True))


def _credit(inv: DataFrame, customers: DataFrame | None, *, d0: int, threshold: int) -> DataFrame:
    from pyspark.sql import functions as F
    i = inv.select("customer_id", day_number(F.col("issue_date")).alias("issue"), day_number(F.col("due_date")).alias("due"),
                   F.col("amount").cast("double").alias("amount"),
                   (day_number(F.col("paid_date")) if "paid_date" in inv.columns else F.lit(None).cast("long")).alias("paid_day"))
    i = i.where(F.col("issue") < d0)
    paid = F.col("paid_day").isNotNull() & (F.col("paid_day") < d0)
    due = F.col("due")
    i = i.select("customer_id", "amount", due.alias("due"), paid.alias("paid"),
                 F.when(paid, F.greatest(F.lit(0), F.col("paid_day") - due))
                 .otherwise(F.greatest(F.lit(0), F.lit(d0) - due)).cast("double").alias("dpd"),
                 (paid & (F.col("paid_day") > due)).alias("late"), (~paid & (due < d0)).alias("overdue"))
    c = i.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("n_invoices"), F.sum("dpd").alias("_dpd_sum"), F.max("dpd").alias("days_past_due_max"),
        F.sum(F.col("late").cast("double")).alias("_late"), F.sum(F.col("paid").cast("double")).alias("_paid"),
        F.sum(F.when(~F.col("paid"), F.col("amount")).otherwise(0.0)).alias("open_balance"),
        F.sum(F.when(F.col("overdue"), F.col("amount")).otherwise(0.0)).alias("overdue_balance"),
        F.sum(F.when(F.col("overdue") & (F.lit(d0) - due > threshold), 1).otherwise(0)).cast("long")
        .alias(f"n_overdue_{threshold}d"))
    c = c.select("customer_id", "n_invoices", _ratio(F.col("_dpd_sum"), F.col("n_invoices")).alias("days_past_due_mean"),
                 "days_past_due_max", _ratio(F.col("_late"), F.col("_paid")).alias("late_payment_share"),
                 "open_balance", "overdue_balance", f"n_overdue_{threshold}d")
    if customers is not None and "credit_limit" in customers.columns:
        lim = customers.select("customer_id", F.col("credit_limit").cast("double").alias("_limit"))
        c = c.join(lim, "customer_id", "left")
        c = c.withColumn("credit_utilisation", _ratio(F.col("open_balance"), F.col("_limit"))).drop("_limit")
    else:
        c = c.withColumn("credit_utilisation", F.lit(None).cast("double"))
    return c


def feature_columns(cfg: FeatureConfig, *, has_cost: bool, has_invoices: bool) -> list[str]:
    """Output columns in build_features' order (declared once, in the feature registry)."""
    return registry_columns(cfg, has_cost=has_cost, has_invoices=has_invoices)


def spark_features(tables: SparkTables, *, as_of, config: FeatureConfig | None = None) -> DataFrame:
    """build_features on Spark: one row per customer (customer_id + feature_columns), same
    population and semantics (see module docstring). The per-customer aggregates are computed
and cached (persisted) here; the rest is lazy."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    cfg = config or FeatureConfig()
    d0 = as_of_day(as_of)
    t, cust = tables.transactions, tables.customers
    has_cost = "cost" in t.columns
    agg = _txn_features(t, d0=d0, cfg=cfg, has_cost=has_cost)
    if cust is not None and "signup_date" in cust.columns:
        sd = day_number(F.col("signup_date"))
        signup = (cust.where(F.col("signup_date").isNotNull() & (sd < d0))
                  .groupBy("customer_id").agg(F.min(sd).alias("_signup")))
        f = agg.join(signup, "customer_id", "full_outer")
    else:
        f = agg.withColumn("_signup", F.lit(None).cast("long"))
    seen = F.coalesce(F.col("_seen"), F.lit(False))
    last, first_buy, second = F.col("last"), F.col("first_buy"), F.col("second_last")
    freq = F.coalesce(F.col("frequency"), F.lit(0)).cast("long")
    d = F.lit(d0)
    gw = cfg.growth_window_days
    k = F.least(F.lit(cfg.slope_months), F.floor((F.lit(d0 - 1) - F.col("first_any")) / 30) + 1).cast("double")
    sx, sxx = -k * (k - 1) / 2, (k - 1) * k * (2 * k - 1) / 6
    sy, sxy = F.col("_sy"), -F.col("_smx")
    slope_den = k * sxx - sx * sx
    mean_iv = _ratio(last - F.col("first_buy"), freq - 1)
    earlier = _ratio(second - first_buy, freq - 2)
    start = F.coalesce(F.least(F.col("_signup"), first_buy), F.col("first_any"))
    grown = {  # NaN (null) for prospects: growth/returns/margin families only know seen customers
        f"spend_prior_{gw}d": F.col("_prior"),
        f"spend_growth_ratio_{gw}d": _ratio(F.col("_recent"), F.col("_prior")),
        f"spend_growth_diff_{gw}d": F.col("_recent") - F.col("_prior"),
        "spend_slope_monthly": F.when((k >= 2) & (slope_den != 0), (k * sxy - sx * sy) / slope_den),
        "interval_mean_days": mean_iv,
        "interval_last_days": F.when(freq >= 2, (last - second).cast("double")),
        "interval_trend_ratio": F.when(freq >= 3, _ratio(last - second, earlier)),
        "recency_to_interval_ratio": _ratio(d - last, mean_iv),
        "return_ratio": _ratio(F.abs(F.col("neg")), F.col("gross")),
    }
    sel = [F.col("customer_id"),
           (d - last).cast("double").alias("recency_days"), freq.alias("frequency"),
           F.coalesce(F.col("monetary_total"), F.lit(0.0)).alias("monetary_total"),
           _ratio(F.col("monetary_total"), freq).alias("monetary_avg")]
    sel += [F.coalesce(F.col(f"spend_{w}d"), F.lit(0.0)).alias(f"spend_{w}d") for w in cfg.windows_days]
    sel += [F.coalesce(F.col(f"n_purchases_{w}d"), F.lit(0)).cast("long").alias(f"n_purchases_{w}d")
            for w in cfg.windows_days]
    sel += [(d - start).cast("double").alias("tenure_days"),
            (d - first_buy).cast("double").alias("first_purchase_days_ago"),
            (first_buy - F.col("_signup")).cast("double").alias("age_at_first_purchase_days")]
    sel += [F.when(seen, e).cast("double").alias(n) for n, e in grown.items()]
    sel.append(F.coalesce(F.col("n_returns"), F.lit(0)).cast("long").alias("n_returns"))
    if has_cost:
        sel += [F.when(seen & (F.col("_n_cost") > 0), F.col("_m")).alias("margin_total"),
                F.when(seen, _ratio(F.col("_m"), F.col("_rev"))).alias("margin_rate")]
    # Materialised once: the quintile scores read the sums three more times, and a recomputed
    # floating sum may differ in its last bit (summation order), breaking the join on values.
    out = f.select(*sel).persist(StorageLevel.MEMORY_AND_DISK)
    out.count()
    out = _quintile(out, "recency_days", "r_score", higher_is_better=False)
    out = _quintile(out, "frequency", "f_score", higher_is_better=True)
    out = _quintile(out, "monetary_total", "m_score", higher_is_better=True)
    out = out.withColumn("rfm_score", F.col("r_score") + F.col("f_score") + F.col("m_score"))
    out = out.withColumn("rfm_code", 100 * F.col("r_score") + 10 * F.col("f_score") + F.col("m_score"))
    has_inv = tables.invoices is not None
    if has_inv:
        thr = cfg.overdue_threshold_days
        c = _credit(tables.invoices, cust, d0=d0, threshold=thr)
        out = out.join(c, "customer_id", "left")
        for col in ("n_invoices", f"n_overdue_{thr}d"):
            out = out.withColumn(col, F.coalesce(F.col(col), F.lit(0)).cast("long"))
        for col in ("open_balance", "overdue_balance"):
            out = out.withColumn(col, F.coalesce(F.col(col), F.lit(0.0)))
    lc = cfg.lifecycle
    r = F.col("recency_days")
    out = out.withColumn("lifecycle_stage",
                         F.when(F.col("frequency") == 0, "prospect").when(r > lc.lapsed_after_days, "lapsed")
                         .when(F.col("frequency") == 1, "first-time")
                         .when(F.col("frequency") >= lc.loyal_min_purchases, "loyal").otherwise("repeat"))
    return out.select("customer_id", *feature_columns(cfg, has_cost=has_cost, has_invoices=has_inv))


def to_feature_frame(sdf: DataFrame) -> pd.DataFrame:
    """Collect a spark_features frame as build_features returns it: indexed by customer_id
    (sorted, str), integer counts int64, NaN for missing, lifecycle_stage categorical."""
    quiet_spark_logs()
    pdf = sdf.toPandas()
    pdf.index = pd.Index(pdf.pop("customer_id").astype("str"), name="customer_id")
    pdf = pdf.sort_index()
    return as_feature_dtypes(pdf)


def as_feature_dtypes(pdf: pd.DataFrame) -> pd.DataFrame:
    """Spark's column types as the pandas engine's: counts int64, the rest float64, the
    lifecycle stage categorical (for frames read back from the engine's Parquet output too)."""
    for c in pdf.columns:
        if c == "lifecycle_stage":
            pdf[c] = pd.Categorical(pdf[c].astype("str"), categories=STAGES)
        elif c in ("frequency", "n_returns", "n_invoices", "r_score", "f_score", "m_score", "rfm_score",
                   "rfm_code") or re.fullmatch(r"n_(purchases|overdue)_\d+d", c):
            pdf[c] = pdf[c].astype("int64")
        elif c != "as_of" and pd.api.types.is_numeric_dtype(pdf[c]):
            pdf[c] = pdf[c].astype("float64")
    return pdf


def write_spark_output(sdf: DataFrame, path: str | Path, *, partition_by: list[str] | None = None,
                       meta: dict | None = None) -> str:
    """Write a Spark frame: `.parquet` (or no suffix, or a URI) -> a Parquet folder written by
    the executors (partitioned by `partition_by`), local folders atomically (temp folder, then
    rename via io); anything else (.csv, .xlsx) is collected and written by io.write_frame
    (`meta`: what an Excel list's Read me sheet says, see keyaccounts.xlsx)."""
    quiet_spark_logs()
    p = str(path)
    low = p.lower()
    if _is_uri(p):
        w = sdf.write.mode("overwrite")
        (w.partitionBy(*partition_by) if partition_by else w).parquet(p)
        return p
    if low.endswith((".parquet", ".pq")) or not Path(p).suffix:
        def write(tmp: Path) -> None:
            w = sdf.write.mode("overwrite")
            (w.partitionBy(*partition_by) if partition_by else w).parquet(str(Path(tmp).resolve()))
        return str(io.write_directory(p, write))
    pdf = sdf.toPandas()
    key = next((c for c in ("rank", "customer_id") if c in pdf.columns), None)
    if key:  # Spark returns rows in no particular order
        pdf = pdf.sort_values(key, kind="stable", ignore_index=True)
    return str(io.write_frame(pdf, p, index=False, meta=meta))


__all__ = ["spark_session", "session_for", "spark_cores", "read_source", "canonical_table", "SparkTables",
           "load_spark_tables", "spark_features", "feature_columns", "to_feature_frame", "as_feature_dtypes",
           "write_spark_output"]


def run_features(p: Pipeline, *, loose_columns: dict[str, str], out, master: str | None = None,
                 say=print, on_reports=None) -> list[str]:
    """The `features --engine spark` command: read with Spark, build the customer features as
    of p.as_of, write `out` (Parquet folder by the executors, or collected for CSV/Excel)."""
    from .spark_steps import SparkInputs, spark_step_features
    if p.as_of is None:
        raise InputError("as_of is required: pass --as-of YYYY-MM-DD or set as_of in the pipeline")
    if master:
        p = p.model_copy(update={"engine": p.engine.model_copy(update={"spark_master": master})})
    say("engine: spark")
    si = SparkInputs(p, loose_columns=loose_columns, say=say, on_reports=on_reports)
    return spark_step_features(si, p, {"out": out}, say=say)
