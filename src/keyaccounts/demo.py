"""`keyaccounts demo`: synthetic data -> validate -> features -> train (MLflow) -> score ->
forecast + report, end to end, from the demo pipeline YAML.

Every relative path of the pipeline (inputs, step outputs) is taken relative to the work
folder; with an explicit work folder the MLflow store (`mlruns/mlflow.db`, SQLite) and the
exported models (`models/`) live inside it too, so a demo never touches another store.
Without one the work folder is the current one (the repo, whose data/, out/, mlruns/ and
models/ contents are git-ignored) and the pipeline's own tracking setting applies.
"""
from __future__ import annotations

import contextlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import io
from .config import Pipeline, load_pipeline
from .errors import InputError
from .pipeline import STEPS, load_inputs
from .results import StepResults
from .synth import synthesize
from .tracking import resolve_tracking_uri

DEMO_PIPELINE = Path("pipelines") / "demo.yaml"
TABLES = ("transactions", "customers", "invoices", "opportunities", "stage_history", "latent")


class Steps(Protocol):
    """What the demo reports progress to (the CLI passes a progress.StepProgress)."""

    def step(self, name: str) -> contextlib.AbstractContextManager: ...

    def say(self, message: str) -> None: ...

    def wrote(self, path: str | Path) -> None: ...


class Quiet:
    """A Steps that records outputs and says nothing."""

    def __init__(self) -> None:
        self.outputs: list[str] = []

    @contextlib.contextmanager
    def step(self, name: str):
        yield

    def say(self, message: str) -> None:
        pass

    def wrote(self, path: str | Path) -> None:
        self.outputs.append(str(path))


@dataclass
class DemoResult:
    workdir: Path
    tracking_uri: str
    outputs: dict[str, list[Path]] = field(default_factory=dict)  # step name -> files written
    seconds: float = 0.0

    @property
    def report(self) -> Path | None:
        files = self.outputs.get("report") or []
        return files[0] if files else None

    def mlflow_ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"


def find_pipeline(path: str | Path | None = None) -> Path:
    """The demo pipeline: `path`, else pipelines/demo.yaml in the current folder, else in the
    source checkout this package runs from."""
    if path is not None:
        return Path(path)
    for candidate in (Path.cwd() / DEMO_PIPELINE, Path(__file__).resolve().parents[2] / DEMO_PIPELINE):
        if candidate.is_file():
            return candidate
    raise InputError("cannot find pipelines/demo.yaml: run from the repository or pass --pipeline")


def _rebase(value: Any, base: Path) -> Any:
    p = Path(str(value))
    return str(p if p.is_absolute() else base / p)


def rebase_pipeline(p: Pipeline, base: Path) -> tuple[Pipeline, list[dict[str, dict[str, Any]]]]:
    """The pipeline with relative input paths under `base`, and its steps with relative
    'out' / '*_out' parameters under `base`."""
    inputs = {n: s.model_copy(update={"path": _rebase(s.path, base)}) if s.path is not None else s
              for n, s in p.inputs.items()}
    steps = []
    for step in p.steps:
        (name, params), = step.items()
        params = {k: (_rebase(v, base) if (k == "out" or k.endswith("_out")) and v else v)
                  for k, v in (params or {}).items()}
        steps.append({name: params})
    return p.model_copy(update={"inputs": inputs, "steps": steps}), steps


def run_demo(*, workdir: str | Path | None = None, pipeline: str | Path | None = None, customers: int = 2000,
             seed: int = 7, steps: Steps | None = None) -> DemoResult:
    """Run the demo end to end (see module docstring); return where everything went."""
    t0 = time.perf_counter()
    ui = steps or Quiet()
    base = Path(workdir).absolute() if workdir is not None else Path.cwd()
    p = load_pipeline(find_pipeline(pipeline))
    if p.as_of is None or "transactions" not in p.inputs:
        raise InputError("the demo pipeline needs as_of and a transactions input", file=str(pipeline or DEMO_PIPELINE))
    p, plan = rebase_pipeline(p, base)
    if workdir is not None:
        p = p.model_copy(update={"tracking_uri": f"sqlite:///{(base / 'mlruns' / 'mlflow.db').as_posix()}"})
    tracking = resolve_tracking_uri(p.tracking_uri)
    common = {"tracking_uri": tracking, "models_dir": str(base / "models")}
    result = DemoResult(workdir=base, tracking_uri=tracking)

    with ui.step("synthetic data"):
        folder = Path(p.inputs["transactions"].path).parent
        ui.say(f"generating {customers:,} customers (seed {seed})")
        tables = synthesize(n_customers=customers, seed=seed)
        frames = {n: getattr(tables, n) for n in TABLES}
        written = []
        for name in TABLES:
            target = Path(p.inputs[name].path) if name in p.inputs else folder / f"{name}.csv"
            written.append(io.write_frame(frames[name], target, index=False))
            ui.wrote(written[-1])
        result.outputs["synthetic data"] = written

    with ui.step("load and validate"):
        loaded = load_inputs(p, on_table=lambda n: ui.say(f"validating {n}"))
        for r in loaded.reports:
            ui.say(f"{r.table}: {r.rows_read:,} rows read, {r.rows_kept:,} kept")

    results = StepResults()  # each step's typed result, for the steps after it (the report renders them)
    for step in plan:
        (name, params), = step.items()
        with ui.step(name):
            fn = STEPS[name]
            kw = {"results": results} if "results" in inspect.signature(fn).parameters else {}
            files = fn(loaded, p, {**common, **params}, say=ui.say, **kw)
            for f in files:
                ui.wrote(f)
            # a backtest is its own entry: the forecast's files stay what "forecast" lists
            key = "backtest" if name == "forecast" and params.get("backtest") else name
            result.outputs[key] = [Path(f) for f in files]
    result.seconds = time.perf_counter() - t0
    return result
