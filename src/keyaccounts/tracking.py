"""MLflow layer: experiment runs, the model registry, champion gating and exported bundles.

This is the only module of the package that imports mlflow, and it does so lazily inside
functions, so `import keyaccounts` (and `import keyaccounts.tracking`) stays fast and has no
side effects.

Layout (defaults, relative to the working directory)::

    mlruns/mlflow.db                  tracking + registry (SQLite; the file store is deprecated)
    mlruns/keyaccounts-<family>/      artifacts of that experiment's runs and logged models
    models/<name>/model.joblib        exported champion, loadable without MLflow
    models/<name>/card.json           what it is: version, run, metrics, features, sha256

Registered models are named `<family>-<horizon>d` (e.g. `churn-90d`); the version serving
production carries the alias `champion`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import traceback
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keyaccounts.errors import InputError
from keyaccounts.explain import reference_points
from keyaccounts.sql import redact_url

log = logging.getLogger(__name__)

DEFAULT_DB = "mlruns/mlflow.db"  # relative to the current working directory
CHAMPION = "champion"
SCORE_EXPERIMENT = "keyaccounts-score"
FORECAST_EXPERIMENT = "keyaccounts-forecast"
DRIFT_REFERENCE = "drift_reference.json"  # training feature distributions (keyaccounts.drift)
_PARAM_MAX = 6000  # MLflow's limit on a param value
_TAG_MAX = 8000
# Always pinned in a logged model's requirements (top-level module names).
_CORE_MODULES = ("mlflow", "sklearn", "numpy", "pandas", "scipy", "cloudpickle")


# --------------------------------------------------------------------------- URIs / data

_UNAVAILABLE_HINT = ("check --tracking-uri / MLFLOW_TRACKING_URI (is the server up? is the SQLite file locked by "
                     "another process or on a read-only disk?); `keyaccounts score --from-bundle` works without it")


class TrackingUnavailable(InputError):
    """The tracking store cannot be created, reached or read (exit 2: a setting to fix)."""


_QUIET = False
# Every run this process starts carries this tag. A signal that lands inside mlflow.start_run,
# after the run was created RUNNING but before it became the active run, leaves a run that
# neither active_run() nor last_active_run() knows (seen as a `keyaccounts-churn` run left
# RUNNING by a SIGTERM during `train`); after an interrupt such runs are found by this tag.
_PROCESS_TAG = ("keyaccounts.process", uuid.uuid4().hex)


def set_quiet(quiet: bool) -> None:
    """Silence MLflow's own console lines ("Successfully registered model ...", "Created
    version ...", its INFO/WARNING log records) inside every Tracker call from now on (the
    CLI's --quiet). Errors still surface as exceptions. Does not import mlflow."""
    global _QUIET
    _QUIET = bool(quiet)



def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: explicit `uri` > env MLFLOW_TRACKING_URI >
    ``sqlite:////<abs cwd>/mlruns/mlflow.db``.

    SQLite URIs with a relative path (three slashes) are made absolute against the cwd, and a
    bare path is read as a SQLite file (``x.db``) or a folder that holds ``mlflow.db``. For
    SQLite the folder of the database is created. Other URIs (http, databricks, ...) are
    returned unchanged.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_DB
    uri = str(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])  # '/abs/x.db' for four slashes, 'rel/x.db' for three
    elif "://" in uri or uri.startswith("file:") or uri in ("databricks", "databricks-uc"):
        return uri
    else:
        db = Path(uri).expanduser()
        if db.suffix != ".db":
            db = db / "mlflow.db"
    db = db if db.is_absolute() else Path.cwd() / db
    db = Path(os.path.abspath(db))
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrackingUnavailable(f"tracking store {uri} unavailable: cannot create the folder of its database "
                                  f"({type(e).__name__}: {e})", hint=_UNAVAILABLE_HINT) from None
    return f"sqlite:///{db.as_posix()}"  # an absolute POSIX path: four slashes


def data_fingerprint(frames: dict[str, pd.DataFrame]) -> str:
    """sha256 (hex) of canonical tables; identical data gives the identical fingerprint.

    Covers, per table in sorted name order: the name, the column names with their dtypes and
    the hash of every row (`pd.util.hash_pandas_object`, index ignored). Row hashes are
    sorted, so the fingerprint is insensitive to row order (and to column order, as columns
    are taken by sorted name) but changes when any value, dtype, column or row count changes.
    """
    h = hashlib.sha256()
    for name in sorted(frames):
        df = frames[name]
        cols = sorted(map(str, df.columns))
        df = df.set_axis(list(map(str, df.columns)), axis=1)[cols]
        header = [name, len(df), [(c, str(df[c].dtype)) for c in cols]]
        h.update(json.dumps(header).encode())
        if len(df) and cols:
            rows = pd.util.hash_pandas_object(df, index=False).to_numpy(np.uint64)
            h.update(np.sort(rows).tobytes())
    return h.hexdigest()


def model_name(family: str, horizon_days: int) -> str:
    """Registered model name: ``model_name('churn', 90) == 'churn-90d'``."""
    return f"{family}-{int(horizon_days)}d"


@dataclass
class TrainedModel:
    """What a training run hands to the tracker (see `Tracker.log_training`)."""

    family: str  # 'churn' | 'value' | 'deal'
    horizon_days: int
    model: Any  # fitted sklearn estimator/pipeline: predict_proba (classifier) or predict
    feature_names: list[str]
    params: dict  # as_of, horizon, cutoffs, features ...; nested/long values are flattened
    metrics: dict[str, float]  # on the time-validation fold
    baseline_metrics: dict[str, dict[str, float]]  # logged as f"{baseline}_{metric}"
    figures: dict[str, Any]  # name -> matplotlib Figure, logged as figures/<name>.png
    input_example: pd.DataFrame
    data_fingerprint: str
    validation: tuple[pd.DataFrame, pd.Series] | None = None  # X_val, y_val for gating
    primary_metric: str = "roc_auc"
    greater_is_better: bool = True
    # (promote, reason) decided by training itself, e.g. a challenger that lost to its own
    # baseline on the validation fold (held back), or the baseline registered in its place
    gate_decision: tuple[bool, str] | None = None

    @property
    def name(self) -> str:
        return model_name(self.family, self.horizon_days)


# --------------------------------------------------------------------------- helpers


def _flatten(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> dotted keys; values -> str (lists as JSON, dates ISO), cut to 6000."""
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
            continue
        if isinstance(v, (dt.date, pd.Timestamp)):
            s = v.isoformat()
        elif isinstance(v, (list, tuple, set)):
            s = json.dumps([x.isoformat() if isinstance(x, (dt.date, pd.Timestamp)) else x
                            for x in (sorted(v, key=str) if isinstance(v, set) else v)], default=str)
        else:
            s = str(v)
        s = redact_url(s)  # a database URL among the params keeps its password out of MLflow
        if len(s) > _PARAM_MAX:
            s = s[: _PARAM_MAX - 20] + f"...(+{len(s) - _PARAM_MAX + 20} chars)"
        out[key[:250]] = s
    return out


def _float_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric and boolean columns as float64 (MLflow's schema rejects int64 for doubles)."""
    df = df.copy()
    for c in df.columns:
        if pd.api.types.is_bool_dtype(df[c]) or pd.api.types.is_numeric_dtype(df[c]):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def _is_classifier(model: Any) -> bool:
    return hasattr(model, "predict_proba")


def _predict(model: Any, X: pd.DataFrame) -> np.ndarray:
    """Positive-class probability for classifiers, prediction for regressors."""
    if _is_classifier(model):
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.predict(X), float)


def _score(model: Any, X: pd.DataFrame, y: Any, metric: str) -> float:
    """`metric` of `model` on (X, y): classification_metrics for classifiers, value_metrics
    for regressors (keyaccounts.models.metrics)."""
    from keyaccounts.models.metrics import classification_metrics, value_metrics

    p = _predict(model, X)
    m = classification_metrics(y, p) if _is_classifier(model) else value_metrics(y, p)
    if metric not in m:
        raise ValueError(f"primary metric '{metric}' is not one of {sorted(m)}")
    return float(m[metric])


def _model_modules(model: Any) -> set[str]:
    """Top-level modules whose classes/functions make up a (nested) sklearn estimator."""
    objs = [model]
    if hasattr(model, "get_params"):
        with contextlib.suppress(Exception):
            objs += list(model.get_params(deep=True).values())
    mods = set()
    for o in objs:
        if hasattr(o, "get_params") or hasattr(o, "fit"):
            mods.add(type(o).__module__.split(".")[0])
        elif callable(o) and getattr(o, "__module__", None):
            mods.add(o.__module__.split(".")[0])
    return mods - {"builtins", "__main__"}


def _pip_requirements(model: Any) -> list[str]:
    """Pinned requirements from the installed versions (saves MLflow ~5 s of inference)."""
    import importlib.metadata as md

    dists = md.packages_distributions()
    reqs = set()
    for mod in set(_CORE_MODULES) | _model_modules(model):
        names = dists.get(mod, [])  # e.g. mlflow -> [mlflow-skinny, mlflow, ...]: prefer 'mlflow'
        for dist in sorted(names, key=lambda d: d.lower().replace("_", "-") != mod)[:1]:
            with contextlib.suppress(md.PackageNotFoundError):
                reqs.add(f"{dist}=={md.version(dist)}")
    return sorted(reqs)


def sqlite_store_problem(uri: str, timeout_s: float = 2.0) -> str | None:
    """Why a SQLite tracking store cannot serve (None when it can, or the URI is not SQLite),
    found in well under a second with the sqlite3 module: MLflow retries a file it cannot open
    for about 100 s before it says so, and dumps SQL for one that is not a database."""
    if not uri.startswith("sqlite:///"):
        return None
    import sqlite3

    db = Path(uri[len("sqlite:///"):])
    if db.exists() and not db.is_file():
        return "the database path is not a regular file"
    try:
        con = sqlite3.connect(f"file:{db.as_posix()}?mode=rwc", uri=True, timeout=timeout_s)
        try:
            con.execute("PRAGMA schema_version").fetchone()
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"cannot open it as an SQLite database ({type(e).__name__}: {e})"
    return None


def _package_requirements() -> list[str]:
    """keyaccounts' own core requirements (no extras), pinned to the installed versions, plus
    cloudpickle: what the scorer's fresh virtualenv installs (keyaccounts itself travels as
    code_paths)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    try:
        declared = md.requires("keyaccounts") or []
    except md.PackageNotFoundError:  # run from a source tree: the model modules' pins only
        return _pip_requirements(None)
    reqs = set()
    for line in declared:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra, or another platform's spelling (xgboost vs xgboost-cpu)
        with contextlib.suppress(md.PackageNotFoundError):
            reqs.add(f"{req.name}=={md.version(req.name)}")
    reqs.add(f"cloudpickle=={md.version('cloudpickle')}")
    return sorted(reqs)


def _scorer_signature():
    """The scorer's params (keyaccounts.serving.PARAMS); its input is free-form raw rows."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    from keyaccounts.serving import PARAMS

    specs = [ParamSpec(k, "long" if isinstance(v, int) else "string", v) for k, v in PARAMS.items()]
    return ModelSignature(params=ParamSchema(specs))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, write) -> None:
    """write(tmp_path) then os.replace onto `path` (same folder, so the rename is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _BundleBackup:
    """Hard links to the files of a bundle folder, taken on creation. O(1): an export
    os.replace's new files, and the old ones live on through the links, so `restore()` can put
    the old bundle back (or remove a bundle that did not exist). Temp-file names (.NAME.*.tmp)."""

    FILES = ("model.joblib", "card.json")  # model first, as export_bundle writes them

    def __init__(self, folder: Path):
        self.folder = folder
        self.saved: dict[str, Path] = {}
        try:
            for f in self.FILES:
                if (folder / f).is_file():
                    tmp = folder / f".{f}.{uuid.uuid4().hex}.bak.tmp"
                    try:
                        os.link(folder / f, tmp)
                    except OSError:  # a file system without hard links
                        shutil.copy2(folder / f, tmp)
                    self.saved[f] = tmp
        except BaseException:
            self.discard()
            raise

    def restore(self) -> None:
        for f in self.FILES:
            if f in self.saved:
                saved, target = self.saved.pop(f), self.folder / f
                if target.exists() and os.path.samefile(saved, target):
                    saved.unlink()  # unchanged; and rename() between two links of one file is a no-op
                else:
                    os.replace(saved, target)
            else:
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / f).unlink()

    def discard(self) -> None:
        for tmp in self.saved.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self.saved.clear()


def _numeric(d: dict) -> dict[str, float]:
    """The entries of d that are numbers (NaN kept: MLflow stores it), as floats."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, np.bool_)) or v is None:
            continue
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            log.warning("metric %s=%r is not a number: not logged", k, v)
    return out


def _fmt(x: float | None) -> str:
    return "none" if x is None else ("nan" if math.isnan(x) else f"{x:.6g}")


def _iso(d) -> str:
    return d.isoformat() if hasattr(d, "isoformat") else str(d)


def _drift_reference(tm: TrainedModel) -> dict | None:
    """Feature distributions of the validation fold (the latest training snapshot, the one
    nearest the scoring population in time) for drift checks; None without one."""
    from keyaccounts.drift import reference_summary

    if tm.validation is None or not isinstance(tm.validation[0], pd.DataFrame) or not len(tm.validation[0]):
        return None
    X = tm.validation[0]
    names = set(tm.feature_names)
    derived = [f for f in names if f not in X.columns]  # e.g. one-hot 'stage_at_as_of_proposal'
    cols = [c for c in X.columns if c in names or any(f.startswith(f"{c}_") for f in derived)]
    return reference_summary(X[cols])


def _release_db_locks() -> None:
    """Only after an interrupt: close the pooled connections of every SQLAlchemy engine in the
    process (MLflow's tracking and registry stores) and every SQLite connection left. A
    connection a signal tore out of its session can still hold an SQLite lock (a stepped
    statement, an open transaction); closing it releases the lock, and the cleanup writes open
    fresh connections."""
    gc.collect()  # connection records sit in reference cycles: collected, they go back to the pool
    engine_type = getattr(sys.modules.get("sqlalchemy.engine"), "Engine", None)
    sqlite_type = getattr(sys.modules.get("sqlite3"), "Connection", None)
    for obj in gc.get_objects():
        if engine_type is not None and isinstance(obj, engine_type):
            with contextlib.suppress(Exception):
                obj.dispose()
        elif sqlite_type is not None and isinstance(obj, sqlite_type):
            # one torn out of its pool entirely; the process is on its way out anyway
            with contextlib.suppress(Exception):
                obj.close()


@contextlib.contextmanager
def _after_interrupt(e: BaseException):
    """Context for registry writes that clean up after a Ctrl-C/SIGTERM.

    A signal landing inside a query leaves its stepped SQLite cursor alive in the traceback's
    frames, holding a read lock that would make the cleanup write wait and fail; MLflow would
    also log that failure with a traceback. Clearing the finished frames releases the cursor."""
    traceback.clear_frames(e.__traceback__)
    if not getattr(e, "_db_locks_released", False):  # once, though each nested cleanup layer calls this
        _release_db_locks()
        e._db_locks_released = True
    quiet = logging.getLogger("mlflow.store.db.utils")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(level)


@contextlib.contextmanager
def _killed_on_interrupt(mlflow):
    """End the active run as KILLED (not FAILED) on Ctrl-C/SIGTERM."""
    try:
        yield
    except KeyboardInterrupt as e:
        with _after_interrupt(e):
            try:
                mlflow.end_run("KILLED")
            except Exception as err:  # noqa: BLE001 - reported, the interrupt goes on
                _cleanup_failed("end the MLflow run as KILLED", err)
        raise


def _cleanup_failed(what: str, err: Exception) -> None:
    log.warning("after the interrupt, could not %s: %s", what, str(err).splitlines()[0][:200])


def _end_running_killed(mlflow) -> None:
    """After a signal that landed while a run was being started or ended (outside
    `_killed_on_interrupt`): the active run, or the one MLflow was ending when the signal came
    (already off its stack), is ended KILLED if it is still RUNNING. The process exits right
    after an interrupt, without MLflow's atexit hook, so nothing else would end it."""
    with contextlib.suppress(Exception):
        while mlflow.active_run() is not None:
            mlflow.end_run("KILLED")
    with contextlib.suppress(Exception):
        last = mlflow.last_active_run()
        if last is not None and last.info.status == "RUNNING":
            mlflow.MlflowClient().set_terminated(last.info.run_id, "KILLED")
    try:
        client = mlflow.MlflowClient()
        ids = [e.experiment_id for e in client.search_experiments()]
        key, value = _PROCESS_TAG
        for run in client.search_runs(ids, filter_string=f"tags.`{key}` = '{value}' and attributes.status = 'RUNNING'"):
            client.set_terminated(run.info.run_id, "KILLED")
    except Exception as err:  # noqa: BLE001 - reported, the interrupt goes on
        _cleanup_failed("end this command's RUNNING MLflow runs as KILLED", err)


def _own_run_tags() -> dict[str, str]:
    """Tags for mlflow.start_run: the process tag that _end_running_killed searches by."""
    return dict([_PROCESS_TAG])


def check_card_features(model: Any, card: dict, where: str) -> None:
    """InputError when the card's feature list is not the one the model was fitted on (a card
    edited by hand or paired with another model): scoring would feed columns in the wrong order."""
    fitted = getattr(model, "feature_names_in_", None)
    listed = card.get("feature_names")
    if fitted is None or not listed or list(map(str, fitted)) == list(map(str, listed)):
        return
    fitted, listed = list(map(str, fitted)), list(map(str, listed))
    only_model = [c for c in fitted if c not in listed][:10]
    only_card = [c for c in listed if c not in fitted][:10]
    diff = (f"fitted on but not in the card: {only_model}; in the card but not fitted on: {only_card}"
            if only_model or only_card else "same features in a different order")
    raise InputError(f"the card's feature list does not match the model ({diff}); not used", file=where,
                     column="feature_names", hint="re-export the champion or retrain")


# What a card says a model is: covered, with the model's sha256, by the card's `verify` digest.
CARD_IDENTITY = ("name", "version", "run_id", "family", "horizon_days", "feature_names", "sha256")


def card_digest(card: dict) -> str:
    """sha256 over the card's identity fields (canonical JSON): an edited version, family,
    horizon or feature list no longer matches it."""
    body = json.dumps({k: card.get(k) for k in CARD_IDENTITY}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def check_card_identity(card: dict, name: str, where: str) -> None:
    """InputError unless the card describes the model that was asked for (`name`, i.e. family
    and horizon) and its identity fields are those it was exported with (`verify`)."""
    horizon = card.get("horizon_days")
    stated = model_name(str(card.get("family")), int(horizon)) if isinstance(horizon, int) else None
    if card.get("name") != name or stated != name:
        raise InputError(f"the card describes '{card.get('name')}' (family {card.get('family')!r}, horizon "
                         f"{horizon!r} days), not the requested '{name}'; not used", file=where,
                         column="family/horizon_days", hint="re-export the champion or retrain")
    if card.get("verify") != card_digest(card):
        what = "has no 'verify' digest" if "verify" not in card else "was edited after export"
        raise InputError(f"the card {what} (its version, run, family, horizon or features are not the ones "
                         "exported with the model); not used", file=where, column="verify",
                         hint="re-export the champion (keyaccounts train) rather than editing card.json")


# --------------------------------------------------------------------------- tracker


class Tracker:
    """Runs, registry, gating and bundles against one tracking URI (see module docstring).

    Each method points MLflow at this tracker's URI only for its duration and restores the
    previous global MLflow URIs (and MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI) afterwards.
    """

    def __init__(self, tracking_uri: str | None = None, models_dir: str | Path = "models",
                 promote_tolerance: float = 0.0):
        self.unavailable: TrackingUnavailable | None = None
        try:
            self.tracking_uri = resolve_tracking_uri(tracking_uri)
        except TrackingUnavailable as e:  # reported by check(); bundles still load
            self.tracking_uri = str(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_DB)
            self.unavailable = e
        self.models_dir = Path(models_dir).absolute()
        self.promote_tolerance = float(promote_tolerance)
        self._client = None
        self._depth = 0  # nesting of _mlflow() contexts

    # -- mlflow plumbing

    @contextlib.contextmanager
    def _mlflow(self):
        """Yield the mlflow module pointed at this tracker; restore global URIs and the
        environment on exit (mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI)."""
        import mlflow

        if self._depth:
            self._depth += 1
            try:
                yield mlflow
            finally:
                self._depth -= 1
            return
        keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        saved = {k: os.environ.get(k) for k in keys}
        # local artifact copies: no progress bars in the CLI output (unless asked for)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        # The pickle-format warning repeats on every log_model; the README states the trust
        # boundary once. DB-migration INFO lines are noise in the CLI output.
        for logger in ("mlflow.sklearn", "mlflow.store.db.utils", "alembic"):
            logging.getLogger(logger).setLevel(logging.ERROR)
        # --quiet: MLflow's counted switch for its event lines (eprint, its log handler) and its
        # warnings; toggling the stream directly is undone by MLflow's own nested uses of it
        from mlflow.utils.autologging_utils.logging_and_warnings import MlflowEventsAndWarningsBehaviorGlobally
        muted = MlflowEventsAndWarningsBehaviorGlobally(disable_event_logs=True, disable_warnings=True,
                                                        reroute_warnings=False) if _QUIET else contextlib.nullcontext()
        self._depth = 1
        try:
            with muted:
                yield mlflow
        except KeyboardInterrupt as e:
            with _after_interrupt(e):
                _end_running_killed(mlflow)
            raise
        finally:
            self._depth = 0
            mlflow.set_tracking_uri(None)  # back to "not set": MLflow reads the env again
            mlflow.set_registry_uri(None)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def check(self, timeout_s: int = 10) -> None:
        """Raise TrackingUnavailable unless the store answers one query within about `timeout_s`
        seconds, without MLflow's retries (minutes against a server that is down)."""
        if self.unavailable is not None:
            raise self.unavailable
        problem = sqlite_store_problem(self.tracking_uri)
        if problem is not None:
            self.unavailable = TrackingUnavailable(f"tracking store {self.tracking_uri} unavailable: {problem}",
                                                   file=self.tracking_uri[len("sqlite:///"):], hint=_UNAVAILABLE_HINT)
            raise self.unavailable
        quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s))}
        saved = {k: os.environ.get(k) for k in quick}
        os.environ.update(quick)
        try:
            with self._mlflow():
                self.client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - whatever the store says, it is unusable now
            detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            self.unavailable = TrackingUnavailable(
                f"tracking store {self.tracking_uri} unavailable ({type(e).__name__}: {detail})",
                hint=_UNAVAILABLE_HINT)
            raise self.unavailable from None
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    @contextlib.contextmanager
    def _champion_kept_on_interrupt(self, name: str):
        """On Ctrl-C/SIGTERM or any failure (a full disk or an I/O error while the bundle is
        exported, a registry write refused), put the `champion` alias of `name` and its exported
        bundle back where they were (the two cannot change atomically together, so both are
        restored)."""
        before = self._champion_version(name)
        backup = _BundleBackup(self.models_dir / name)
        try:
            yield
        except BaseException as e:
            cleanup = _after_interrupt(e) if isinstance(e, KeyboardInterrupt) else contextlib.nullcontext()
            with cleanup:
                try:
                    now = self._champion_version(name)
                    if (now and now.version) != (before and before.version):
                        if before is None:
                            self.client.delete_registered_model_alias(name, CHAMPION)
                        else:
                            self.client.set_registered_model_alias(name, CHAMPION, before.version)
                except Exception as err:  # noqa: BLE001 - reported, the interrupt goes on
                    where = f"v{before.version}" if before is not None else "none"
                    _cleanup_failed(f"put the '{CHAMPION}' alias of {name} back ({where})", err)
                finally:
                    backup.restore()
            raise
        finally:
            backup.discard()

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _artifact_root(self) -> Path | None:
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri[len("sqlite:///"):]).parent
        return None

    def _experiment_id(self, name: str) -> str:
        """Get or create the experiment; SQLite experiments keep artifacts in mlruns/<name>/."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        root = self._artifact_root()
        location = (root / name).as_uri() if root else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created concurrently by another process
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _champion_version(self, name: str):
        """The ModelVersion behind the `champion` alias, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    # -- training

    def log_training(self, tm: TrainedModel) -> dict:
        """Log one training run to experiment f"keyaccounts-{family}", register the model as
        `model_name(family, horizon)` and gate it against the current champion.

        Logged: params (flattened, plus family/horizon/fingerprint/primary metric; the full
        dict also as params.json), metrics, baseline metrics as f"{baseline}_{metric}",
        figures/<name>.png, feature_names.json, tag+param data_fingerprint, and the model
        (sklearn flavor, cloudpickle, pyfunc = predict_proba for classifiers, signature from
        the float64 input example and the model output, pinned pip requirements).

        Gate: the `champion` alias moves to the new version iff there is no champion, or the
        challenger's primary metric on `tm.validation` is >= the champion's primary metric
        recomputed on the same data minus `promote_tolerance` (<= plus, when lower is better).
        A champion that cannot score that data (e.g. different features) loses. Without
        `tm.validation` the logged metrics of both runs are compared instead. The decision is
        logged as tags promoted/champion_version/challenger_score/champion_score/
        promotion_reason; when promoted the champion bundle is exported to models/<name>/.

        Returns {'run_id', 'version', 'promoted', 'reason', 'champion_score', 'challenger_score'}.
        """
        name = tm.name
        with self._mlflow() as mlflow, self._champion_kept_on_interrupt(name):
            exp_id = self._experiment_id(f"keyaccounts-{tm.family}")
            as_of = tm.params.get("as_of")
            with mlflow.start_run(experiment_id=exp_id, run_name=f"{name}" + (f"@{as_of}" if as_of else ""),
                                  tags=_own_run_tags()) as run, _killed_on_interrupt(mlflow):
                run_id = run.info.run_id
                params = _flatten(tm.params)
                params.update(family=tm.family, horizon_days=str(tm.horizon_days),
                              data_fingerprint=tm.data_fingerprint, n_features=str(len(tm.feature_names)),
                              primary_metric=tm.primary_metric)
                mlflow.log_params(params)
                mlflow.log_dict(json.loads(json.dumps(tm.params, default=str)), "params.json")
                mlflow.log_dict({"feature_names": list(tm.feature_names)}, "feature_names.json")
                reference = _drift_reference(tm)
                if reference is not None:
                    mlflow.log_dict(reference, DRIFT_REFERENCE)
                mlflow.set_tags({"family": tm.family, "horizon_days": str(tm.horizon_days),
                                 "model_name": name, "data_fingerprint": tm.data_fingerprint,
                                 "primary_metric": tm.primary_metric})
                metrics = _numeric(tm.metrics)
                for base, ms in (tm.baseline_metrics or {}).items():
                    metrics.update({f"{base}_{k}": v for k, v in _numeric(ms or {}).items()})
                if metrics:
                    mlflow.log_metrics(metrics)
                for fig_name, fig in tm.figures.items():
                    mlflow.log_figure(fig, f"figures/{fig_name}.png")

                version = self._log_model(mlflow, tm)
                decision = self._gate(mlflow, tm, version)
                mlflow.set_tags({
                    "promoted": str(decision["promoted"]).lower(),
                    "champion_version": decision.pop("champion_version"),
                    "challenger_score": _fmt(decision["challenger_score"]),
                    "champion_score": _fmt(decision["champion_score"]),
                    "promotion_reason": decision["reason"][:_TAG_MAX],
                })
                for k, v in (("gate_challenger_score", decision["challenger_score"]),
                             ("gate_champion_score", decision["champion_score"])):
                    if v is not None:
                        mlflow.log_metric(k, v)
                if decision["promoted"]:  # inside the run: interrupted here, the run is KILLED
                    self.export_bundle(name, version)
        return {"run_id": run_id, "version": version, **decision}

    def _log_model(self, mlflow, tm: TrainedModel) -> str:
        """Log + register the model; tag the version; return the version (str)."""
        from mlflow.models import infer_signature

        classifier = _is_classifier(tm.model)
        example = signature = None
        if tm.input_example is not None and len(tm.input_example):
            example = _float_frame(tm.input_example.head(5))
            out = tm.model.predict_proba(example) if classifier else tm.model.predict(example)
            signature = infer_signature(example, np.asarray(out, float))
        info = mlflow.sklearn.log_model(
            tm.model,
            name="model",
            serialization_format="cloudpickle",
            pyfunc_predict_fn="predict_proba" if classifier else "predict",
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(tm.model),
            registered_model_name=tm.name,
        )
        version = str(info.registered_model_version)
        primary = tm.metrics.get(tm.primary_metric)
        for k, v in {"family": tm.family, "horizon_days": str(tm.horizon_days),
                     "data_fingerprint": tm.data_fingerprint, "primary_metric": tm.primary_metric,
                     "primary_metric_value": _fmt(None if primary is None else float(primary)),
                     "greater_is_better": str(tm.greater_is_better).lower()}.items():
            self.client.set_model_version_tag(tm.name, version, k, v)
        return version

    def _gate(self, mlflow, tm: TrainedModel, version: str) -> dict:
        name = tm.name
        champ = self._champion_version(name)
        if tm.validation is not None:
            X_val, y_val = tm.validation
            challenger = _score(tm.model, X_val, y_val, tm.primary_metric)
        else:
            challenger = tm.metrics.get(tm.primary_metric)
            challenger = None if challenger is None else float(challenger)

        def decide(promoted: bool, reason: str, champion: float | None) -> dict:
            if promoted:
                self.client.set_registered_model_alias(name, CHAMPION, version)
            return {"promoted": promoted, "reason": reason, "champion_score": champion,
                    "challenger_score": challenger,
                    "champion_version": version if promoted else (champ.version if champ else "none")}

        if tm.gate_decision is not None:
            return decide(bool(tm.gate_decision[0]), str(tm.gate_decision[1]), None)
        if champ is None:
            return decide(True, "no champion yet", None)
        label = f"{tm.primary_metric} challenger v{version} vs champion v{champ.version}"
        if tm.validation is not None:
            try:
                model = mlflow.sklearn.load_model(f"models:/{name}/{champ.version}")
                # the champion's recorded features, in its order (a missing one: it cannot score)
                cols = self._card(name, champ)["feature_names"] or getattr(model, "feature_names_in_", None)
                X = X_val[list(cols)] if cols is not None and isinstance(X_val, pd.DataFrame) else X_val
                champion = _score(model, X, y_val, tm.primary_metric)
                where = "recomputed on the challenger's validation data"
            except Exception as e:  # noqa: BLE001 - any failure means it cannot serve this data
                return decide(True, f"champion v{champ.version} cannot score the validation data "
                                    f"({type(e).__name__}: {e})", float("nan"))
        else:
            champion = self.client.get_run(champ.run_id).data.metrics.get(tm.primary_metric)
            champion = None if champion is None else float(champion)
            where = "logged metrics (no validation data given)"
        if challenger is None or math.isnan(challenger):
            return decide(False, f"{label}: challenger score is undefined ({where})", champion)
        if champion is None or math.isnan(champion):
            return decide(True, f"{label}: champion score is undefined ({where})", champion)
        tol = self.promote_tolerance
        ok = challenger >= champion - tol if tm.greater_is_better else challenger <= champion + tol
        op = (">=" if ok else "<") if tm.greater_is_better else ("<=" if ok else ">")
        sign = "-" if tm.greater_is_better else "+"
        return decide(ok, f"{label}: {challenger:.4f} {op} {champion:.4f} {sign} {tol:g} ({where})", champion)

    # -- bundles

    def _card(self, name: str, mv) -> dict:
        import mlflow

        run = self.client.get_run(mv.run_id)
        try:
            features = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/feature_names.json")["feature_names"]
        except Exception:  # noqa: BLE001 - older runs: fall back to the run's tags
            features = None
        tags = run.data.tags
        return {
            "name": name,
            "version": str(mv.version),
            "run_id": mv.run_id,
            "metrics": dict(sorted(run.data.metrics.items())),
            "primary_metric": tags.get("primary_metric"),
            "feature_names": features,
            "data_fingerprint": tags.get("data_fingerprint"),
            "horizon_days": int(tags["horizon_days"]) if "horizon_days" in tags else None,
            "family": tags.get("family"),
        }

    def export_bundle(self, name: str, version: str | int) -> Path:
        """Write models/<name>/model.joblib and card.json for a registered version; return the
        folder. card.json: name, version, run_id, metrics, feature_names, data_fingerprint,
        horizon_days, family, sha256 (of model.joblib), created. Each file is written to a temp
        file and os.replace'd; the model goes first, so a reader never sees a card whose sha256
        matches a half-written model."""
        import joblib

        with self._mlflow() as mlflow:
            mv = self.client.get_model_version(name, str(version))
            model = mlflow.sklearn.load_model(f"models:/{name}/{mv.version}")
            card = self._card(name, mv)
        folder = self.models_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        digest = {}

        def dump(tmp: Path) -> None:
            joblib.dump(model, tmp)
            digest["sha256"] = _sha256(tmp)

        _write_atomic(folder / "model.joblib", dump)
        # the point linear reasons are measured from, fixed at training (explain.fix_reference)
        card["explain_reference"] = reference_points(model)
        card.update(sha256=digest["sha256"],
                    created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        card["verify"] = card_digest(card)
        _write_atomic(folder / "card.json",
                      lambda tmp: tmp.write_text(json.dumps(card, indent=2, default=str), encoding="utf-8"))
        return folder

    def _load_bundle(self, name: str) -> tuple[Any, dict]:
        import joblib

        folder = self.models_dir / name
        card_path, model_path = folder / "card.json", folder / "model.joblib"
        if not card_path.is_file() or not model_path.is_file():
            raise InputError(f"no exported bundle for model '{name}' (need card.json and model.joblib)",
                             file=str(folder), hint="train the model first (keyaccounts train)")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"card.json is not valid JSON: {e}", file=str(card_path)) from None
        got = _sha256(model_path)
        if got != card.get("sha256"):
            raise InputError(
                f"model.joblib does not match its card: sha256 {got[:12]}... != {str(card.get('sha256'))[:12]}...; "
                "the file was modified or only partly written, so it is not loaded",
                file=str(model_path), hint=f"re-export the champion (Tracker.export_bundle('{name}', version)) or retrain")
        model = joblib.load(model_path)
        check_card_features(model, card, str(card_path))
        check_card_identity(card, name, str(card_path))
        return model, card

    def load_champion(self, name: str, *, prefer: str = "registry") -> tuple[Any, dict]:
        """(model, card) of the champion of `name`. prefer='registry': the version behind the
        `champion` alias (card without sha256); when the registry is unreachable or has no
        champion, falls back to the bundle. prefer='bundle': models/<name>/ only. Bundles are
        loaded only after their sha256 matches card.json, else InputError."""
        if prefer not in ("registry", "bundle"):
            raise ValueError("prefer must be 'registry' or 'bundle'")
        if prefer == "registry":
            try:
                with self._mlflow() as mlflow:
                    mv = self._champion_version(name)
                    if mv is not None:
                        model = mlflow.sklearn.load_model(f"models:/{name}/{mv.version}")
                        return model, {**self._card(name, mv), "sha256": None, "source": "registry"}
                    why = f"registry has no '{CHAMPION}' alias for '{name}'"
            except Exception as e:  # noqa: BLE001 - unreachable registry: use the bundle
                why = f"registry unavailable ({type(e).__name__}: {e})"
            log.warning("%s; loading the exported bundle instead", why)
        model, card = self._load_bundle(name)
        return model, {**card, "source": "bundle"}

    # -- listing / scoring

    def list_models(self) -> pd.DataFrame:
        """One row per registered model version: name, version, aliases, run_id,
        primary_metric, primary_metric_value (validation fold, as logged), created (UTC)."""
        cols = ["name", "version", "aliases", "run_id", "primary_metric", "primary_metric_value", "created"]
        rows = []
        with self._mlflow():
            for rm in self.client.search_registered_models():
                by_version: dict[str, list[str]] = {}
                for alias, v in (rm.aliases or {}).items():
                    by_version.setdefault(str(v), []).append(alias)
                for mv in self.client.search_model_versions(f"name='{rm.name}'"):
                    tags = mv.tags or {}
                    val = tags.get("primary_metric_value")
                    rows.append({
                        "name": rm.name, "version": int(mv.version),
                        "aliases": ",".join(sorted(by_version.get(str(mv.version), []))),
                        "run_id": mv.run_id, "primary_metric": tags.get("primary_metric"),
                        "primary_metric_value": float(val) if val not in (None, "none") else float("nan"),
                        "created": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
                    })
        df = pd.DataFrame(rows, columns=cols)
        return df.sort_values(["name", "version"], ignore_index=True) if len(df) else df

    # -- reading runs back (report, notebooks)

    def champion_card(self, name: str) -> dict | None:
        """The champion's card (as in `card.json`, without sha256) plus its run's params, tags
        and start time; None when `name` has no champion."""
        with self._mlflow():
            mv = self._champion_version(name)
            if mv is None:
                return None
            card = self._card(name, mv)
            run = self.client.get_run(mv.run_id)
        return {**card, "params": dict(run.data.params), "tags": dict(run.data.tags),
                "started": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")}

    def run_artifact(self, run_id: str, path: str) -> bytes | None:
        """Bytes of one artifact of a run (e.g. 'figures/calibration.png'); None if absent."""
        import mlflow

        with self._mlflow():
            uri = self.client.get_run(run_id).info.artifact_uri
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    local = mlflow.artifacts.download_artifacts(f"{uri}/{path}", dst_path=tmp)
                except Exception:  # noqa: BLE001 - absent artifact (older run, model without figure)
                    return None
                return Path(local).read_bytes()

    def run_dict(self, run_id: str, path: str) -> dict | None:
        """A JSON artifact of a run (e.g. DRIFT_REFERENCE) as a dict; None if absent."""
        raw = self.run_artifact(run_id, path)
        return None if raw is None else json.loads(raw.decode("utf-8"))

    def runs(self, family: str) -> pd.DataFrame:
        """Training runs of one family (experiment keyaccounts-<family>), newest first: run_id,
        run_name, start_time, status, then metrics.* (model and baseline_metric), params.*
        and tags.* columns as MLflow's search_runs gives them. Empty when none."""
        with self._mlflow() as mlflow:
            exp = self.client.get_experiment_by_name(f"keyaccounts-{family}")
            if exp is None:
                return pd.DataFrame(columns=["run_id", "run_name", "start_time", "status"])
            df = mlflow.search_runs(experiment_ids=[exp.experiment_id], order_by=["attributes.start_time DESC"])
        if "tags.mlflow.runName" in df.columns:
            df.insert(1, "run_name", df.pop("tags.mlflow.runName"))
        return df.drop(columns=[c for c in ("experiment_id", "artifact_uri", "end_time") if c in df.columns])

    def log_scorer(self, p, *, horizon_days: int) -> dict:
        """Register the servable scorer (keyaccounts.serving, MLflow pyfunc `keyaccounts-scorer`)
        around the churn and value champions of `horizon_days` and the settings of pipeline `p`,
        with keyaccounts as code_paths and pinned requirements (loadable in a fresh virtualenv).
        Aliases `champion` and `champion-<H>d` move to it. When the version behind
        `champion-<H>d` already packages these champion versions and settings, nothing is
        registered. Returns {'version', 'registered': bool, 'models': {name: version}}."""
        # serving subclasses mlflow's PythonModel: imported here, like mlflow, to keep this module light
        import keyaccounts
        from keyaccounts.serving import SCORER_NAME, KeyaccountsScorer, ScorerBundle, scorer_settings

        models = {n: self.load_champion(n, prefer="registry") for n in
                  (model_name("churn", horizon_days), model_name("value", horizon_days))}
        tags = {**{f"model.{n}": str(c.get("version")) for n, (_, c) in models.items()},
                "horizon_days": str(horizon_days), "settings": scorer_settings(p)}
        alias = f"{CHAMPION}-{int(horizon_days)}d"
        with self._mlflow() as mlflow, tempfile.TemporaryDirectory() as tmp:
            current = self._alias_version(SCORER_NAME, alias)
            if current is not None and all((current.tags or {}).get(k) == v for k, v in tags.items()):
                return {"version": str(current.version), "registered": False,
                        "models": {n: str(c.get("version")) for n, (_, c) in models.items()}}
            bundle = ScorerBundle(models, p).save(Path(tmp) / "bundle")
            # the pickle-trust and input-example notes repeat on every training; the README says it once
            logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
            with warnings.catch_warnings(), mlflow.start_run(experiment_id=self._experiment_id(SCORER_NAME),
                                  run_name=f"scorer-{horizon_days}d", tags=_own_run_tags()) as run, \
                    _killed_on_interrupt(mlflow):
                warnings.simplefilter("ignore", UserWarning)
                mlflow.log_params(tags)
                info = mlflow.pyfunc.log_model(
                    name="scorer", python_model=KeyaccountsScorer(), artifacts={"bundle": str(bundle)},
                    code_paths=[str(Path(keyaccounts.__file__).parent)], pip_requirements=_package_requirements(),
                    signature=_scorer_signature(), registered_model_name=SCORER_NAME)
                version = str(info.registered_model_version)
                for k, v in {**tags, "run_id": run.info.run_id}.items():
                    self.client.set_model_version_tag(SCORER_NAME, version, k, v)
                for a in (CHAMPION, alias):
                    self.client.set_registered_model_alias(SCORER_NAME, a, version)
        return {"version": version, "registered": True,
                "models": {n: str(c.get("version")) for n, (_, c) in models.items()}}

    def _alias_version(self, name: str, alias: str):
        """The ModelVersion of `name` behind `alias`, or None (no such model or alias)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def log_score_run(self, *, as_of, fingerprint: str, model_versions: dict[str, str],
                      row_counts: dict[str, int], extra_metrics: dict | None = None,
                      inputs: dict[str, str] | None = None) -> str:
        """Record a scoring run in experiment 'keyaccounts-score': params as_of,
        data_fingerprint, model.<name> = version and input.<table> = its file or query
        (passwords redacted); metrics rows.<table> and extra_metrics. Returns the run id."""
        as_of_s = _iso(as_of)
        metrics = {f"rows.{k}": float(v) for k, v in row_counts.items()}
        metrics.update({k: float(v) for k, v in (extra_metrics or {}).items() if v is not None})
        return self._log_run(SCORE_EXPERIMENT, f"score@{as_of_s}",
                             params={"as_of": as_of_s, "data_fingerprint": fingerprint,
                                     **{f"model.{k}": str(v) for k, v in model_versions.items()},
                                     **{f"input.{k}": str(v)[:500] for k, v in (inputs or {}).items()}},
                             metrics=metrics, tags={"data_fingerprint": fingerprint, "as_of": as_of_s})

    def log_forecast_run(self, *, kind: str, as_of, params: dict, metrics: dict[str, float]) -> str:
        """Record a forecast or backtest run in experiment 'keyaccounts-forecast': params (as_of,
        method, counts...) and metrics (per-period expected/P10/P90, or backtest MAPE/coverage).
        Returns the run id."""
        as_of_s = _iso(as_of)
        clean = {k.replace("(", "").replace(")", ""): float(v) for k, v in metrics.items()
                 if v is not None and v == v}
        return self._log_run(FORECAST_EXPERIMENT, f"{kind}@{as_of_s}",
                             params={"kind": kind, "as_of": as_of_s, **{k: str(v)[:500] for k, v in params.items()}},
                             metrics=clean)

    def _log_run(self, experiment: str, run_name: str, *, params: dict[str, str], metrics: dict[str, float],
                 tags: dict[str, str] | None = None) -> str:
        """One finished run in `experiment` with these params, tags and metrics; its id."""
        with self._mlflow() as mlflow:
            exp_id = self._experiment_id(experiment)
            with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=_own_run_tags()) as run, \
                    _killed_on_interrupt(mlflow):
                mlflow.log_params({k: redact_url(v) for k, v in params.items()})
                if tags:
                    mlflow.set_tags(tags)
                if metrics:
                    mlflow.log_metrics(metrics)
                return run.info.run_id


def tracker_for(p, params: dict[str, Any]) -> Tracker:
    """The Tracker of a pipeline step: the step's tracking_uri/models_dir over the pipeline's."""
    return Tracker(params.get("tracking_uri") or p.tracking_uri, models_dir=params.get("models_dir", "models"),
                   promote_tolerance=p.train.promote_tolerance)
