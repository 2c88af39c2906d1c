"""The `keyaccounts` command line (Typer + Rich). Exit codes: 0 ok, 2 bad input, 1 internal
error, 130 interrupted."""
from __future__ import annotations

import _thread
import datetime as dt
import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, get_type_hints

import typer
import typer.models
from rich.console import Console
from rich.table import Table

from .config import MAX_HORIZON_DAYS, TABLES, InputSpec, Pipeline, check_date, expand_option, load_pipeline, parse_columns
from .errors import InputError, decide_exit, decided_exit
from .quality import QualityReport
from .sql import LABEL_PREFIX as SQL_LABEL

app = typer.Typer(
    name="keyaccounts", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Key-account identification and funnel-based sales forecasting.\n\n"
         "Tables in (transactions, customers, invoices, opportunities), point-in-time features out.\n\n"
         "Exit codes: 0 ok, 2 bad input (file, column and rows named; nothing written), 1 internal error, "
         "130 interrupted, 143 terminated.")
# Piped output (CI logs, files) gets a wide fixed width instead of Rich's 80-column default.
out_console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


@app.callback()
def _global_options(
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print nothing but errors (for scripts): no progress, tables or summaries. "
        "Exit codes: 0 ok, 2 bad input, 1 internal error, 130 interrupted.")] = False,
) -> None:
    out_console.quiet = quiet
    from .tracking import set_quiet  # cheap (no mlflow import); also undoes a previous --quiet in-process
    set_quiet(quiet)

Transactions = Annotated[Path | None, typer.Option(
    "--transactions", "-t", help="Transactions file (CSV/TSV/TXT[.gz], Parquet, Excel): customer_id, timestamp, "
    "amount [invoice_id, quantity, unit_price, cost, product].")]
Customers = Annotated[Path | None, typer.Option(
    help="Customers file: customer_id [name, owner, region, industry, size, credit_limit, signup_date].")]
Invoices = Annotated[Path | None, typer.Option(
    help="Invoices (receivables) file: invoice_id, customer_id, issue_date, due_date, amount [paid_date].")]
Opportunities = Annotated[Path | None, typer.Option(
    help="Opportunities file: opportunity_id, created_date, stage, amount [customer_id, owner, product, "
    "expected_close_date, closed_date, outcome].")]
StageHistory = Annotated[Path | None, typer.Option(
    "--stage-history", help="Stage history file: opportunity_id, stage, changed_at.")]
Columns = Annotated[str | None, typer.Option(
    help="Column mapping canonical=YourColumn, comma separated, e.g. "
    "'customer_id=CustomerID,timestamp=InvoiceDate'. Prefix with a table to be specific: "
    "'invoices.amount=Total'. Unprefixed items apply to every file that has that column.")]
AsOf = Annotated[str | None, typer.Option(
    "--as-of", help="Cutoff date YYYY-MM-DD: features read only rows strictly before it. Required "
    "(here or in the pipeline); never defaults to the data's last date.")]
PipelineOpt = Annotated[Path | None, typer.Option(
    "--pipeline", "-p", help="Pipeline YAML giving inputs, column mappings, read options and settings; "
    "command-line options override it.")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", help="local (pandas, default) or spark (needs the spark extra and Java 17+); "
    "default: the pipeline's engine.name.")]
SparkMaster = Annotated[str | None, typer.Option(
    "--spark-master", help="Spark master URL with --engine spark (default $SPARK_MASTER, else local[*]).")]


def _with_engine(p: Pipeline, engine: str | None, spark_master: str | None) -> Pipeline:
    """Pipeline with --engine / --spark-master applied (the engine settings live in p.engine)."""
    from .engines import ENGINES
    if engine is not None and engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got '{engine}'")
    upd = {k: v for k, v in (("name", engine), ("spark_master", spark_master)) if v}
    return p.model_copy(update={"engine": p.engine.model_copy(update=upd)}) if upd else p


SqlOpt = Annotated[list[str] | None, typer.Option(
    "--sql", help="An input table as the rows of a query, TABLE=QUERY (e.g. 'transactions=SELECT * FROM sales'); "
    "repeat per table; needs --connection. Same mapping and checks as a file.")]
ConnectionOpt = Annotated[str | None, typer.Option(
    "--connection", help="Database of --sql: sqlite:///f.db, duckdb:///f.duckdb, postgresql://user@host/db. Keep "
    "the password out of the command line: PGPASSWORD, or '${VAR}' in single quotes (expanded when connecting); "
    "it is never printed or logged.")]
DateFormat = Annotated[str | None, typer.Option(
    "--date-format", help="strftime format of the dates in all given files (e.g. '%Y%m%d', '%d/%m/%Y'), "
    "'ISO8601' or 'mixed'. Default: inferred.")]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup runs (temp files removed, MLflow
    runs ended as killed); exit code 143."""


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: let the cleanup finish
    raise Terminated()


class _Redelivery:
    """sys.unraisablehook while a command runs. A signal that lands inside a finalizer
    (``__del__``, a weakref callback run by the garbage collector) or a ctypes callback (an
    XGBoost data iterator) raises there, and Python only prints and drops it, so the command
    would run on. Remember it, and deliver it again to the main thread."""

    def __init__(self, previous):
        self.previous = previous
        self.signal: int | None = None
        self._timer: threading.Timer | None = None

    def __call__(self, unraisable) -> None:
        exc_type = unraisable.exc_type
        if not (isinstance(exc_type, type) and issubclass(exc_type, KeyboardInterrupt)):
            self.previous(unraisable)
            return
        self.signal = signal.SIGTERM if issubclass(exc_type, Terminated) else signal.SIGINT
        if self.signal == signal.SIGTERM and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_terminated)  # it was set to ignore further ones
        # later and from another thread: raised now, it would land in this hook and be dropped
        self._timer = threading.Timer(0.05, _thread.interrupt_main, args=(self.signal,))
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _stop(terminated: bool):
    err_console.print(f"[yellow]{'terminated' if terminated else 'interrupted'}[/]: "
                      "no half-written files; outputs completed before were kept")
    return typer.Exit(143 if terminated else 130)


def _exit_for(e: BaseException, swallowed: int | None):
    """The typer.Exit (after its message) for an exception that ended a command."""
    if isinstance(e, KeyboardInterrupt):
        return _stop(isinstance(e, Terminated))
    if swallowed is not None:  # e.g. XGBoost failing because its callback was interrupted
        return _stop(swallowed == signal.SIGTERM)
    if isinstance(e, InputError):
        # soft_wrap: long paths and rows stay intact and copy-pasteable
        err_console.print("[bold red]bad input[/]")
        err_console.print(str(e), soft_wrap=True, markup=False, highlight=False)
        return typer.Exit(2)
    err_console.print(f"[bold red]internal error[/]: {type(e).__name__}: {e}\n"
                      "(set KEYACCOUNTS_DEBUG=1 for the traceback)")
    return typer.Exit(1)


def _option_names(fn) -> dict[str, str]:
    """parameter -> how the user writes it: the option's first long name, an argument in capitals."""
    names = {}
    for name, hint in get_type_hints(fn, include_extras=True).items():
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, typer.models.ArgumentInfo):
                names[name] = name.upper()
            elif isinstance(meta, typer.models.OptionInfo):
                # with Annotated, typer takes a leading '--name' passed as the default for a name
                first = (meta.default,) if isinstance(meta.default, str) else ()
                decls = [d for d in (*first, *(meta.param_decls or ())) if d.startswith("--")]
                names[name] = decls[0] if decls else "--" + name.replace("_", "-")
    return names


def _expanded_paths(fn, kwargs: dict) -> dict:
    """The command's path options (and --tracking-uri) expanded by the rule of a pipeline's paths:
    ${VAR}, $VAR and ~; an unset ${VAR} is bad input naming the option, never a literal '${VAR}'
    folder (outputs) or an internal error (inputs)."""
    todo = {k: v for k, v in kwargs.items() if isinstance(v, Path) or (k == "tracking_uri" and isinstance(v, str))}
    names = _option_names(fn) if todo else {}
    out = dict(kwargs)
    for k, v in todo.items():
        text = expand_option(str(v), names.get(k, "--" + k.replace("_", "-")))
        out[k] = Path(text) if isinstance(v, Path) else text
    return out


def guarded(fn):
    """Turn known failures into a message and an exit code, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGTERM, _raise_terminated) if main else None
        old_hook = sys.unraisablehook
        hook = _Redelivery(old_hook)
        if main:
            sys.unraisablehook = hook
        decide_exit(None)
        try:
            try:
                result = fn(*args, **_expanded_paths(fn, kwargs))
                decide_exit(0)  # outputs committed: a signal from here on keeps exit code 0
                return result
            except typer.Exit as e:
                decide_exit(e.exit_code)
                raise
            except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 - one line for users
                hook.cancel()
                if isinstance(e, KeyboardInterrupt) and decided_exit() is not None:
                    raise typer.Exit(decided_exit()) from None  # the command had finished
                if (os.environ.get("KEYACCOUNTS_DEBUG") and not isinstance(e, (InputError, KeyboardInterrupt))
                        and hook.signal is None):
                    raise
                stop = _exit_for(e, hook.signal)
                decide_exit(stop.exit_code)
                raise stop from None
        except KeyboardInterrupt as e:  # a redelivered signal landing while the above ran
            if decided_exit() is not None:
                raise typer.Exit(decided_exit()) from None
            raise _stop(isinstance(e, Terminated) or hook.signal == signal.SIGTERM) from None
        finally:
            hook.cancel()
            if main:
                signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)
                sys.unraisablehook = old_hook
    return wrapper


def _parse_date(value: str | None, what: str = "--as-of") -> dt.date | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{what} '{value}' is not a date in the form YYYY-MM-DD") from None
    return check_date(day, what)


def build_pipeline(pipeline: Path | None, *, transactions=None, customers=None, invoices=None,
                   opportunities=None, stage_history=None, columns: str | None = None,
                   as_of: str | None = None, date_format: str | None = None, sql: list[str] | None = None,
                   connection: str | None = None) -> tuple[Pipeline, dict[str, str]]:
    """Pipeline from YAML (if any) overridden by CLI options; returns it and the loose mapping."""
    p = load_pipeline(pipeline) if pipeline else Pipeline()
    given = {"transactions": transactions, "customers": customers, "invoices": invoices,
             "opportunities": opportunities, "stage_history": stage_history}
    inputs = dict(p.inputs)
    for name, path in given.items():
        if path is None:
            continue
        old = inputs.get(name)  # a file given here replaces a query of the YAML (keeping its mapping)
        inputs[name] = (InputSpec(path=str(path), columns=old.columns, read=old.read) if old
                        else InputSpec(path=str(path)))
    inputs.update(sql_inputs(sql, connection, inputs))
    loose: dict[str, str] = {}
    for key, src in parse_columns(columns).items():
        if "." in key:
            table, canon = key.split(".", 1)
            if table not in inputs:
                raise InputError(f"--columns item '{key}={src}' names table '{table}', which is not an input")
            spec = inputs[table]
            inputs[table] = spec.model_copy(update={"columns": {**spec.columns, canon: src}})
        else:
            loose[key] = src
    if date_format:
        inputs = {n: s.model_copy(update={"read": s.read.model_copy(update={"date_format": date_format})})
                  for n, s in inputs.items()}
    update = {"inputs": inputs}
    if as_of:
        update["as_of"] = _parse_date(as_of)
    return p.model_copy(update=update), loose


def sql_inputs(items: list[str] | None, connection: str | None, inputs: dict[str, InputSpec]) -> dict[str, InputSpec]:
    """--sql TABLE=QUERY (repeatable) with --connection URL -> input specs (a table's mapping in
    the YAML is kept)."""
    if not items:
        if connection:
            raise InputError("--connection goes with --sql TABLE=QUERY (e.g. --sql 'transactions=SELECT * FROM sales')")
        return {}
    if not connection:
        raise InputError("--sql needs --connection URL (e.g. sqlite:///sales.db, duckdb:///sales.duckdb, "
                         "postgresql://user@host/db)")
    out = {}
    for item in items:
        table, _, query = item.partition("=")
        table = table.strip().replace("-", "_")
        if table not in TABLES or not query.strip():
            raise InputError(f"--sql item '{item[:80]}' must look like TABLE=QUERY with TABLE one of {', '.join(TABLES)}")
        old = inputs.get(table)
        out[table] = InputSpec(sql=query.strip(), connection=connection, columns=old.columns if old else {})
    return out


_INPUT_OPTIONS = ("transactions", "customers", "invoices", "opportunities", "stage_history", "columns",
                  "as_of", "date_format", "sql", "connection")


def _pipeline_from(options: dict) -> tuple[Pipeline, dict[str, str]]:
    """build_pipeline from a command's input options (its locals())."""
    return build_pipeline(options.get("pipeline"), **{k: options.get(k) for k in _INPUT_OPTIONS})


def print_quality(reports: list[QualityReport]) -> None:
    t = Table(title="data quality", title_justify="left")
    for col in ("table", "file", "read", "kept", "dropped (by reason)", "notes"):
        t.add_column(col, overflow="fold", no_wrap=col in ("table", "file", "read", "kept"))
    for r in reports:
        source = r.file if r.file.startswith(SQL_LABEL) else Path(r.file).name  # a query: its redacted source
        t.add_row(r.table, source, f"{r.rows_read:,}", f"{r.rows_kept:,}",
                  ", ".join(f"{k} {v:,}" for k, v in sorted(r.dropped.items())) or "-",
                  "; ".join(r.notes) or "-")
    out_console.print(t)


def _load(sp, p: Pipeline, loose: dict[str, str], *, require: tuple[str, ...] = ("transactions",)):
    """Read and validate the inputs as the step 'load and validate' of `sp` (a StepProgress),
    then print the data-quality table."""
    from rich.markup import escape

    from .pipeline import load_inputs
    with sp.step("load and validate") as rec:
        loaded = load_inputs(p, loose_columns=loose, require=require,
                             on_read=lambda n, path: sp.say(f"reading {n} ({escape(str(path))})"),
                             on_table=lambda n: sp.say(f"validating {n}"))
        rec.detail = ", ".join(f"{r.table} {r.rows_kept:,}" for r in loaded.reports) + " rows kept"
    print_quality(loaded.reports)
    return loaded


def _progress(title: str, steps: int):
    """The command's StepProgress over `steps` steps, on the CLI's console."""
    from .progress import StepProgress
    return StepProgress(out_console, total=steps, title=title)


def _load_and_run(title: str, p: Pipeline, loose: dict[str, str], step: str = "", fn=None, *,
                  require: tuple[str, ...] = ("transactions",), params: dict | None = None):
    """The shape of a local data command: the step 'load and validate' (and the quality table),
    then `fn(loaded, sp)` as the step `step`, listing each file it returns; ends with the summary
    table. Returns the loaded inputs. Every output in `params` (out, deals_out, ...) is checked
    before any file is read, and all of them are renamed into place only when the whole command
    succeeded (outputs.transaction)."""
    from . import io, outputs
    inputs = [s.path for s in p.inputs.values()] + [(params or {}).get("compare_to")]
    io.check_outputs([(title, params or {}, "")], [i for i in inputs if i])
    t0 = time.perf_counter()
    with outputs.transaction(i for i in inputs if i), _progress(title, 2 if fn else 1) as sp:
        loaded = _load(sp, p, loose, require=require)
        if fn:
            with sp.step(step):
                for w in fn(loaded, sp):
                    sp.wrote(w)
    decide_exit(0)  # outputs committed: a signal while "done" prints (or after) keeps exit code 0
    out_console.print(sp.summary(f"{title}: done in {time.perf_counter() - t0:.1f}s"))
    return loaded


def _spark_outputs(title: str, p: Pipeline, params: dict):
    """For a command's Spark branch: its outputs checked as a local command's are, before any
    work (a Parquet folder may replace a previous run's folder), and the output set that renames
    them into place only when the whole command succeeded."""
    from . import io, outputs
    inputs = [s.path for s in p.inputs.values() if s.path]
    io.check_outputs([(title, params, "")], inputs, spark_steps=("",))
    return outputs.transaction(inputs)


@app.command()
@guarded
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the tables into.")],
    customers: Annotated[int, typer.Option(help="Number of customers.", min=10)] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same tables.")] = 0,
    start: Annotated[str, typer.Option(help="First date of the history.")] = "2023-01-01",
    end: Annotated[str, typer.Option(help="Last date of the history.")] = "2025-12-31",
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    replace: Annotated[bool, typer.Option(
        "--replace", help="Write into a folder that already holds files (the tables of the same "
        "names are replaced; other files stay).")] = False,
    ramping: Annotated[bool, typer.Option(
        "--ramping-funnel", help="Opportunities = a lead funnel with no loss records and a sales team ramping "
        "up (synth.ramping_funnel: one open stage 'lead'); no stage history is written.")] = False,
    rep_calls: Annotated[bool, typer.Option(
        "--rep-calls", help="Also the reps' weekly forecast calls (synth.rep_calls: reps of different optimism): "
        "rep_probability and rep_category on the opportunities and an opportunity_snapshots table.")] = False,
) -> None:
    """Generate synthetic tables (transactions, customers, invoices, opportunities, stage
    history, and the latent truth) with known behaviour: churners, growers, late payers, deals."""
    from . import io, outputs
    from .synth import ramping_funnel, synthesize
    from .synth import rep_calls as weekly_calls
    if fmt not in ("csv", "parquet"):
        raise InputError("--format must be csv or parquet")
    if ramping and rep_calls:
        raise InputError("--rep-calls needs the stage history that --ramping-funnel does not write: use one of them")
    outputs.check_generator_folder(out, replace=replace)
    s, e = _parse_date(start, "--start"), _parse_date(end, "--end")
    if s >= e:
        raise InputError("--start must be before --end")
    t0 = time.perf_counter()
    tables = synthesize(n_customers=customers, start=str(s), end=str(e), seed=seed)
    frames = {n: getattr(tables, n) for n in
              ("transactions", "customers", "invoices", "opportunities", "stage_history", "latent")}
    if ramping:
        frames["opportunities"] = ramping_funnel(seed=seed, start=str(s), end=str(e))
        del frames["stage_history"]   # the funnel records only created and won dates
    if rep_calls:
        frames["opportunities"], frames["opportunity_snapshots"] = weekly_calls(tables, seed=seed)
    with outputs.transaction():  # all the tables or none
        paths = io.write_tables(frames, out, fmt)
    for n, pth in paths.items():
        out_console.print(f"wrote {pth}  ({len(frames[n]):,} rows)")
    out_console.print(f"[green]done[/] in {time.perf_counter() - t0:.1f}s")


@app.command()
@guarded
def validate(
    transactions: Transactions = None, customers: Customers = None, invoices: Invoices = None,
    opportunities: Opportunities = None, stage_history: StageHistory = None, columns: Columns = None,
    as_of: AsOf = None, pipeline: PipelineOpt = None, date_format: DateFormat = None, sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write the quality summary (CSV/Parquet/Excel).")] = None,
) -> None:
    """Read and validate input tables; print the data-quality summary (read, kept, dropped by reason)."""
    from . import io
    from .quality import summary_frame
    p, loose = _pipeline_from(locals())
    _load_and_run("validate", p, loose, "write",
                  (lambda loaded, sp: [io.write_frame(summary_frame(loaded.reports), out, index=False)]) if out else None,
                  params={"out": out})


@app.command()
@guarded
def features(
    out: Annotated[Path, typer.Option(help="Output file, one row per customer; format by extension "
                                           "(.csv, .csv.gz, .parquet, .xlsx). Written atomically.")],
    transactions: Transactions = None, customers: Customers = None, invoices: Invoices = None,
    opportunities: Opportunities = None, stage_history: StageHistory = None, columns: Columns = None,
    as_of: AsOf = None, pipeline: PipelineOpt = None, date_format: DateFormat = None, sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    deals_out: Annotated[Path | None, typer.Option(
        "--deals-out", help="Also write deal features, one row per opportunity open at as_of.")] = None,
    engine: EngineOpt = None, spark_master: SparkMaster = None,
) -> None:
    """Build point-in-time features per customer as of a date (and per open deal with --deals-out)."""
    from .pipeline import step_features
    p, loose = _pipeline_from(locals())
    from .pipeline import require_as_of
    require_as_of(p)
    p = _with_engine(p, engine, spark_master)
    if p.engine.name == "spark":
        if deals_out:
            raise InputError("--deals-out runs on the local engine only (deal tables are small): drop --engine spark")
        from .engines.spark import run_features
        t0 = time.perf_counter()
        with _spark_outputs("features", p, {"out": out}):
            for w in run_features(p, loose_columns=loose, out=out, master=p.engine.spark_master,
                                  say=out_console.print, on_reports=print_quality):
                out_console.print(f"wrote {w}")
        decide_exit(0)  # outputs committed
        out_console.print(f"[green]done[/] in {time.perf_counter() - t0:.1f}s")
        return
    _load_and_run("features", p, loose, "features", lambda loaded, sp: step_features(
        loaded, p, {"out": out, "deals_out": deals_out}, say=sp.say, on_family=sp.families()),
        params={"out": out, "deals_out": deals_out})


@app.command()
@guarded
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML (see pipelines/).")],
    as_of: AsOf = None, engine: EngineOpt = None, spark_master: SparkMaster = None,
) -> None:
    """Run a pipeline YAML: load and validate its inputs once, then run its steps in order
    (features/train/score on Spark with engine.name spark, small inputs staying local)."""
    from .pipeline import STEPS, plan_steps
    from .results import StepResults
    p, _ = build_pipeline(pipeline, as_of=as_of)
    p = _with_engine(p, engine, spark_master)
    if not p.steps:
        raise InputError("the pipeline has no steps", file=str(pipeline))
    plan = plan_steps(p)
    on = {s.engine for s in plan}
    import inspect

    from . import io, outputs
    inputs = [s.path for s in p.inputs.values()] + [s.params.get("compare_to") for s in plan]
    inputs = [i for i in inputs if i]
    io.check_outputs([(s.name, s.params, f"steps[{i}].{s.name}.") for i, s in enumerate(plan, 1)], inputs,
                     spark_steps=[f"steps[{i}].{s.name}." for i, s in enumerate(plan, 1) if s.engine == "spark"])
    from .forecast.step import backtest_snapshots
    for s in plan:
        if s.name == "forecast" and s.params.get("backtest"):
            backtest_snapshots(s.params)  # a backtest too long to run is named before the data is read
    for uri in {s.params.get("tracking_uri") or p.tracking_uri for s in plan
                if s.name == "train" or (s.name == "forecast" and s.params.get("track", True))}:
        _check_tracking(uri)
    with outputs.transaction(inputs), _progress(p.name, len(on) + len(plan)) as sp:
        loaded = _load(sp, p, {}) if "local" in on else None
        spark_in = None
        if "spark" in on:
            from .engines.spark_steps import SparkInputs
            with sp.step("load and validate on Spark"):
                spark_in = SparkInputs(p, say=sp.say, on_reports=print_quality)
        results = StepResults()
        for i, s in enumerate(plan, 1):
            fn = STEPS[s.name]
            # the local steps that build customer features also take build_features' progress callback
            kw = ({"on_family": sp.families()}
                  if s.engine == "local" and "on_family" in inspect.signature(fn).parameters else {})
            if s.engine == "local" and "results" in inspect.signature(fn).parameters:
                kw["results"] = results  # the score/forecast results the report renders
            with sp.step(f"step {i}/{len(plan)} {s.name}"):
                if s.why:
                    sp.say(f"engine: {s.engine} ({s.why})")
                for w in s.run(spark_in if s.engine == "spark" else loaded, p, say=sp.say, **kw):
                    sp.wrote(w)
    decide_exit(0)  # outputs committed: a signal while the summary prints keeps exit code 0
    out_console.print(sp.summary(f"{p.name}: summary"))


Horizon = Annotated[int | None, typer.Option(
    "--horizon-days", help="Forecast horizon H in days (default: the pipeline's, else 90). Models are "
    "registered per family and horizon, e.g. churn-90d.", min=1, max=MAX_HORIZON_DAYS)]
TrackingUri = Annotated[str | None, typer.Option(
    "--tracking-uri", help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else "
    "sqlite:///mlruns/mlflow.db in the current folder.")]


def _check_tracking(uri: str | None) -> None:
    """A tracking store that cannot serve is named (exit 2) before any data is read, not after
    minutes of work (a SQLite file is opened directly: no MLflow retries)."""
    from .tracking import Tracker
    Tracker(uri).check(timeout_s=5)


def _with_horizon(p: Pipeline, horizon_days: int | None, tracking_uri: str | None) -> Pipeline:
    upd = {}
    if horizon_days:
        upd["horizon_days"] = horizon_days
    if tracking_uri:
        upd["tracking_uri"] = tracking_uri
    return p.model_copy(update=upd)


@app.command()
@guarded
def train(
    transactions: Transactions = None, customers: Customers = None, invoices: Invoices = None,
    opportunities: Opportunities = None, stage_history: StageHistory = None, columns: Columns = None,
    as_of: AsOf = None, horizon_days: Horizon = None, tracking_uri: TrackingUri = None,
    pipeline: Annotated[Path | None, typer.Option(
        "--config", "--pipeline", "-p", help="Pipeline YAML (e.g. pipelines/train.yaml): inputs, train: settings.")] = None,
    date_format: DateFormat = None, engine: EngineOpt = None, spark_master: SparkMaster = None,
    sql: SqlOpt = None, connection: ConnectionOpt = None,
) -> None:
    """Retrain churn, value and deal models as of a date (snapshot protocol, time split), log every
    run to MLflow and move the 'champion' alias only when the challenger is at least as good on
    the same validation data."""
    from .pipeline import require_as_of, step_train
    p, loose = _pipeline_from(locals())
    p = _with_horizon(p, horizon_days, tracking_uri)
    require_as_of(p)
    p = _with_engine(p, engine, spark_master)
    _check_tracking(p.tracking_uri)
    t0 = time.perf_counter()
    if p.engine.name == "spark":
        from .engines.spark_score import choose_engine
        chosen, why = choose_engine(p, "training")
        out_console.print(f"engine: {chosen} ({why})")
        if chosen == "spark":
            from .engines.spark_train import run_train
            with _spark_outputs("train", p, {}):  # the exported bundles: all or none
                for w in run_train(p, loose_columns=loose, say=out_console.print, on_reports=print_quality):
                    out_console.print(f"exported {w}")
            decide_exit(0)  # bundles committed
            out_console.print(f"[green]done[/] in {time.perf_counter() - t0:.1f}s")
            return
    _load_and_run("train", p, loose, "train", lambda loaded, sp: step_train(loaded, p, {}, say=sp.say))


@app.command()
@guarded
def retrain(
    pipeline: Annotated[Path, typer.Option(
        "--pipeline", "-p", help="Pipeline YAML: inputs (files or SQL), train: settings and retrain: rules "
        "(max_age_days, drift_psi, drift_min_features, min_new_rows_pct).")],
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Cut-off YYYY-MM-DD, or the word today (this machine's date), e.g. from cron. Required: "
        "never the data's last date.")] = None,
    horizon_days: Horizon = None, tracking_uri: TrackingUri = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say whether and why it would retrain; train nothing.")]
    = False,
) -> None:
    """Retrain when the champion is too old, its features drifted or the data grew (the pipeline's
    retrain: rules), else say why not. The same data and settings as an earlier training never
    register a new version. Runs unattended: exit 0 either way, 2 on bad input."""
    from .retrain import parse_as_of, step_retrain
    p, loose = build_pipeline(pipeline)
    p = _with_horizon(p, horizon_days, tracking_uri)
    p = p.model_copy(update={"as_of": p.as_of if as_of is None and p.as_of else parse_as_of(as_of)})
    out_console.print(f"retrain as of {p.as_of}")
    _load_and_run("retrain", p, loose, "retrain",
                  lambda loaded, sp: step_retrain(loaded, p, {"dry_run": dry_run}, say=sp.say))


CompareTo = Annotated[Path | None, typer.Option(
    "--compare-to", help="A previous account list (.csv/.parquet from `keyaccounts score`): writes "
    "<stem>_changes.csv beside --out (new and gone accounts, rank movers up/down, newly at risk, tier "
    "changes, each with both as_of dates); the report gets a 'What changed' section.")]


@app.command()
@guarded
def score(
    out: Annotated[Path, typer.Option(help="Per-customer scores (.csv, .parquet, .xlsx); written atomically.")],
    transactions: Transactions = None, customers: Customers = None, invoices: Invoices = None,
    opportunities: Opportunities = None, stage_history: StageHistory = None, columns: Columns = None,
    as_of: AsOf = None, horizon_days: Horizon = None, tracking_uri: TrackingUri = None,
    pipeline: PipelineOpt = None, date_format: DateFormat = None, sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    deals_out: Annotated[Path | None, typer.Option(
        "--deals-out", help="Per-open-deal scores (default: OUT with '_deals' added to the name).")] = None,
    from_bundle: Annotated[bool, typer.Option(
        "--from-bundle", help="Load champions from models/ (sha256-checked) instead of the MLflow registry.")] = False,
    by: Annotated[str | None, typer.Option(
        "--by", help="Group the ranked lists by owner or region (Excel: one sheet per group).")] = None,
    top: Annotated[int | None, typer.Option(
        "--top", help="Keep the top N accounts (per group with --by).", min=1)] = None,
    reasons: Annotated[str, typer.Option(
        "--reasons", help="Plain-words SHAP reasons for 'all' written rows (default), the 'top:K' by "
        "priority (per group with --by), or 'none'.")] = "all",
    rank_by: Annotated[str, typer.Option(
        "--rank-by", help="Priority: composite_score (default), value_at_risk, expected_value or churn_probability.")]
    = "composite_score",
    engine: EngineOpt = None, spark_master: SparkMaster = None, compare_to: CompareTo = None,
) -> None:
    """Ranked key-account list at as_of: churn_probability, expected_value, value_at_risk, p_alive,
    expected_purchases, every tier, composite score, reasons and recommended action per account;
    close_probability and expected revenue per open deal."""
    from .pipeline import check_score_params, require_as_of, step_score
    params = {"out": out, "deals_out": deals_out, "prefer": "bundle" if from_bundle else "registry",
              "by": by, "top": top, "reasons": reasons, "rank_by": rank_by, "compare_to": compare_to}
    check_score_params(params)  # bad options exit 2 before any file is read
    p, loose = _pipeline_from(locals())
    p = _with_horizon(p, horizon_days, tracking_uri)
    require_as_of(p)
    p = _with_engine(p, engine, spark_master)
    if p.engine.name == "spark":
        from .engines.spark_score import choose_engine
        with _spark_outputs("score", p, params):  # checked before the rows are counted
            chosen, why = choose_engine(p, "scoring")
            out_console.print(f"engine: {chosen} ({why})")
            if chosen == "spark":
                if compare_to:  # never silently dropped: the comparison is written by the local step only
                    raise InputError("--compare-to works with the local engine only: drop it or use --engine local")
                from .engines.spark_score import run_score
                for w in run_score(p, loose_columns=loose, params=params, say=out_console.print,
                                   on_reports=print_quality):
                    out_console.print(f"wrote {w}")
        if chosen == "spark":
            return
    _load_and_run("score", p, loose, "score",
                  lambda loaded, sp: step_score(loaded, p, params, say=sp.say, on_family=sp.families()), params=params)


@app.command()
@guarded
def models(tracking_uri: TrackingUri = None) -> None:
    """List registered models: versions, aliases (champion), primary metric, run."""
    from .tracking import Tracker
    tracker = Tracker(tracking_uri)
    tracker.check(timeout_s=5)  # a corrupt or unopenable store: exit 2, named
    df = tracker.list_models()
    if df.empty:
        out_console.print("no registered models yet: run `keyaccounts train`")
        return
    t = Table(title="registered models", title_justify="left")
    for c in df.columns:
        t.add_column(str(c))
    # missing cells (a model without the primary metric, e.g. a BG/NBD fallback) print as '-'
    for row in df.astype(object).where(df.notna(), "-").astype(str).itertuples(index=False):
        t.add_row(*(str(v) for v in row))
    out_console.print(t)


@app.command()
@guarded
def report(
    out: Annotated[Path, typer.Option(help="The HTML file to write (self-contained: open it in any browser, "
                                           "offline, or print it). Written atomically.")],
    transactions: Transactions = None, customers: Customers = None, invoices: Invoices = None,
    opportunities: Opportunities = None, stage_history: StageHistory = None, columns: Columns = None,
    as_of: AsOf = None, horizon_days: Horizon = None, tracking_uri: TrackingUri = None,
    pipeline: PipelineOpt = None, date_format: DateFormat = None, sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    top: Annotated[int | None, typer.Option("--top", help="Key accounts listed (default: report.top_n, 25).",
                                               min=1)] = None,
    psi_threshold: Annotated[float | None, typer.Option(
        "--psi-threshold", help="Drift warning above this PSI (default: report.psi_threshold, 0.2).", min=0)] = None,
    from_bundle: Annotated[bool, typer.Option(
        "--from-bundle", help="Score with the models/ bundles (no model cards) instead of the MLflow registry.")] = False,
    compare_to: CompareTo = None,
    scores: Annotated[Path | None, typer.Option(
        "--scores", help="Render this account list of `keyaccounts score` (.csv/.parquet, same as_of; its "
        "<stem>_deals beside it when present) instead of scoring again.")] = None,
    deal_scores: Annotated[Path | None, typer.Option(
        "--deal-scores", help="The open-deals list of that score run, when not <stem>_deals beside --scores.")] = None,
    forecast_file: Annotated[Path | None, typer.Option(
        "--forecast", help="Render this periods table of `keyaccounts forecast` (with its <stem>_funnel and "
        "<stem>_deals beside it) instead of forecasting again.")] = None,
) -> None:
    """HTML report for managers and sales ops as of a date: headline numbers, key accounts with tiers
    and reasons, tier distribution and the 80/20 curve, KAISM matrix, value at risk, funnel,
    forecast with P10-P90 and backtest accuracy, model cards, data quality and drift warnings.
    Needs trained champions (keyaccounts train) for the horizon. Renders the --scores / --forecast
    files when given (and says so); what is not given is computed (and said)."""
    from .pipeline import require_as_of, step_report
    p, loose = _pipeline_from(locals())
    p = _with_horizon(p, horizon_days, tracking_uri)
    upd = {k: v for k, v in (("top_n", top), ("psi_threshold", psi_threshold)) if v is not None}
    if upd:
        p = p.model_copy(update={"report": p.report.model_copy(update=upd)})
    require_as_of(p)
    _load_and_run("report", p, loose, "report", lambda loaded, sp: step_report(
        loaded, p, {"out": out, "prefer": "bundle" if from_bundle else "registry", "compare_to": compare_to,
                    "scores": scores, "deal_scores": deal_scores, "forecast": forecast_file}, say=sp.say),
        params={"out": out, "compare_to": compare_to})
    out_console.print(f"open it: file://{Path(out).absolute().as_posix()}")


@app.command()
@guarded
def demo(
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", help="Folder for the demo's data, outputs, MLflow store (mlruns/mlflow.db) and models/. "
        "Default: the current folder (in the repo these are git-ignored; MLflow as configured).")] = None,
    customers: Annotated[int, typer.Option(help="Synthetic customers.", min=50)] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic data.")] = 7,
    pipeline: Annotated[Path | None, typer.Option(
        "--pipeline", "-p", help="Demo pipeline YAML (default pipelines/demo.yaml).")] = None,
) -> None:
    """End to end on synthetic data: data, validation, features, training with MLflow, scoring,
    forecast and the HTML report; prints where each output is and how to open the MLflow UI."""
    from .config import load_pipeline
    from .demo import find_pipeline, run_demo
    from .progress import StepProgress
    n_steps = 2 + len(load_pipeline(find_pipeline(pipeline)).steps)
    with StepProgress(out_console, total=n_steps, title="demo") as sp:
        res = run_demo(workdir=workdir, pipeline=pipeline, customers=customers, seed=seed, steps=sp)
    out_console.print(sp.summary(f"demo: done in {res.seconds:.0f}s"))
    t = Table(title="where things are", title_justify="left", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("where", overflow="fold")
    if res.report:
        t.add_row("HTML report", f"file://{res.report.as_posix()}")
    for name, label in (("score", "ranked accounts / deals"), ("forecast", "funnel forecast (periods, funnel)"),
                        ("backtest", "forecast backtest (rows, summary)"),
                        ("features", "features"), ("validate", "data quality"), ("synthetic data", "input tables")):
        if res.outputs.get(name):
            t.add_row(label, ", ".join(str(f) for f in res.outputs[name][:2]) + (" ..." if len(res.outputs[name]) > 2 else ""))
    t.add_row("MLflow store", res.tracking_uri)
    t.add_row("exported models", str(res.workdir / "models"))
    t.add_row("MLflow UI", res.mlflow_ui_command() + "   (then open http://127.0.0.1:5000)")
    out_console.print(t)


@app.command()
@guarded
def forecast(
    out: Annotated[Path, typer.Option(help="Periods table (.csv, .parquet, .xlsx); <stem>_funnel and <stem>_deals "
                                           "are written beside it. With --backtest: the backtest rows, a PNG chart "
                                           "and <stem>_summary. Written atomically.")],
    opportunities: Opportunities = None,
    stage_history: Annotated[Path | None, typer.Option(
        "--history", "--stage-history", help="Stage history file: opportunity_id, stage, changed_at.")] = None,
    customers: Customers = None, columns: Columns = None, as_of: AsOf = None, pipeline: PipelineOpt = None,
    date_format: DateFormat = None, tracking_uri: TrackingUri = None,
    period: Annotated[str | None, typer.Option(help="month or quarter (default: forecast.period, quarter).")] = None,
    periods: Annotated[int | None, typer.Option(
        help="Periods forecast from the one holding as_of (default: forecast.periods, 4; backtest: "
             "forecast.backtest_periods, 1).", min=1, max=24)] = None,
    by: Annotated[str | None, typer.Option(help="Also per owner, region (needs --customers) or product.")] = None,
    target: Annotated[float | None, typer.Option(help="Revenue target per period: pipeline coverage.")] = None,
    targets: Annotated[Path | None, typer.Option(
        help="Targets file: owner, period ('2017Q3', '2017-07' or a date in it), target; writes <stem>_owners "
             "with attainment (or inputs.targets).")] = None,
    snapshots: Annotated[Path | None, typer.Option(
        help="The reps' call history: opportunity_id, snapshot_date, rep_probability (owner, stage, amount, "
             "expected_close_date, rep_category); writes <stem>_reps (or inputs.opportunity_snapshots).")] = None,
    backtest: Annotated[bool, typer.Option("--backtest", help="Replay snapshots --from..--to instead.")] = False,
    from_: Annotated[str | None, typer.Option("--from", help="First backtest snapshot YYYY-MM-DD.")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Last backtest snapshot; periods are scored when they end on or before it.")] = None,
    every: Annotated[str, typer.Option(help="Days between backtest snapshots, e.g. 7d.")] = "7d",
    max_snapshots: Annotated[int | None, typer.Option(
        "--max-snapshots", help="Refuse a backtest of more snapshots than this, before any work "
        "(default 260: five years weekly).", min=1)] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow.")] = True,
) -> None:
    """Funnel forecast as of a date: expected won revenue per period (closed won so far, existing
    and new pipeline) with P10/P50/P90, commit/best case/pipeline, funnel statistics, and the
    stage-weighted and naive baselines beside it; or, with --backtest, its accuracy at past snapshots.
    With targets or the reps' calls (rep_probability / rep_category on the opportunities) also per
    owner: target attainment and the rep call beside the model (the weekly forecast call)."""
    from .forecast.step import step_forecast
    p, loose = build_pipeline(pipeline, customers=customers, opportunities=opportunities,
                              stage_history=stage_history, columns=columns, as_of=as_of, date_format=date_format)
    if tracking_uri:
        p = p.model_copy(update={"tracking_uri": tracking_uri})
    for name, path in (("targets", targets), ("opportunity_snapshots", snapshots)):
        if path is not None:   # a file given here replaces the YAML's, keeping its mapping and read options
            old = p.inputs.get(name) or InputSpec(path=str(path))
            read = old.read.model_copy(update={"date_format": date_format}) if date_format else old.read
            p = p.model_copy(update={"inputs": {**p.inputs, name: InputSpec(path=str(path), columns=old.columns,
                                                                             read=read)}})
    if not backtest:
        from .pipeline import require_as_of
        require_as_of(p)
    params = {"out": out, "by": by, "period": period, "periods": periods, "target": target, "backtest": backtest,
              "from": from_, "to": to, "every_days": every, "track": track, "max_snapshots": max_snapshots}
    what = "backtest" if backtest else "forecast"
    if backtest:
        from .forecast.step import backtest_snapshots
        backtest_snapshots(params)  # bounds and size named before the data is read
    if track:
        _check_tracking(p.tracking_uri)

    def run_step(loaded, sp):
        sp.say(f"backtesting {from_} .. {to} every {every}" if backtest else f"forecasting as of {p.as_of}")
        written = step_forecast(loaded, p, params, say=sp.say)
        out_console.print(_forecast_table(params["_result"], backtest, p.as_of))
        return written
    _load_and_run(what, p, loose, what, run_step, require=("opportunities",), params=params)


def _forecast_table(res, backtest: bool, as_of) -> Table:
    """The forecast totals per period (or, with backtest, the accuracy summary) as a table."""
    if backtest:
        tab = res.summary
        title = "backtest: forecast vs actual won revenue"
    else:
        tab = res.periods[res.periods["group"] == "(all)"][
            ["period", "closed_won", "existing_pipeline", "new_pipeline", "expected", "p10", "p50", "p90",
             "stage_weighted", "naive"]]
        title = f"forecast as of {as_of} ({res.info['method']})"
    t = Table(title=title, title_justify="left")
    for c in tab.columns:
        t.add_column(str(c), justify="right" if c not in ("method", "period") else "left")
    for row in tab.itertuples(index=False):
        t.add_row(*[f"{v:,.3f}" if isinstance(v, float) and abs(v) < 10 else
                    f"{v:,.0f}" if isinstance(v, float) else str(v) for v in row])
    return t


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
