"""The servable scorer `keyaccounts-scorer`: an MLflow pyfunc around `score.score_accounts`.

Training registers it (tracking.Tracker.log_scorer) with the churn and value champions of the
horizon, their cards and the pipeline's settings (features, tiers, stages, quality; never the
inputs or their connections) as one artifact folder, and keyaccounts itself as `code_paths`, so
a fresh virtualenv with the logged requirements loads it (`mlflow models serve`).

Request: raw rows in canonical column names, one frame. A `table` column says which table a
row belongs to (transactions, the default when the column is absent; customers; invoices).
Params: `as_of` (YYYY-MM-DD, required: never the data's last date; also accepted as an `as_of`
column with one value), `reasons` (all | none | top:K), `rank_by`, `top`. Response: the ranked
account list of `keyaccounts score` (same code, same models: same numbers), customer_id as a
column and as_of as YYYY-MM-DD. Bad rows or params: InputError's message (HTTP 400 when served).

This module is the pyfunc's entry point: MLflow imports it when loading the model, the tracker
when logging it. The scoring itself (`ScorerBundle.score`) needs no MLflow.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from .config import TABLES, Pipeline
from .errors import InputError
from .features import Tables
from .schemas import prepare_table
from .score import score_accounts

try:  # MLflow is a core dependency; the bundle alone (tests, batch use) does not need it
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object

SCORER_NAME = "keyaccounts-scorer"
REQUEST_TABLES = ("transactions", "customers", "invoices")
PARAMS = {"as_of": "", "reasons": "all", "rank_by": "composite_score", "top": 0}
_SETTINGS = ("horizon_days", "stages", "features", "quality", "tiers", "report")


@dataclass
class ScorerBundle:
    """The champions (name -> (model, card)) and the pipeline settings that scoring needs."""

    models: dict[str, tuple[Any, dict]]
    pipeline: Pipeline

    def load_champion(self, name: str, *, prefer: str = "registry") -> tuple[Any, dict]:
        """What score_accounts asks a tracker for: the packaged champion of `name`."""
        if name not in self.models:
            raise InputError(f"the scorer has no model '{name}' (packaged: {', '.join(sorted(self.models))})")
        return self.models[name]

    def save(self, folder: Path) -> Path:
        """folder/<name>.joblib per model, cards.json, pipeline.json (settings only)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, (model, _) in self.models.items():
            joblib.dump(model, folder / f"{name}.joblib")
        cards = {n: c for n, (_, c) in self.models.items()}
        (folder / "cards.json").write_text(json.dumps(cards, indent=2, default=str), encoding="utf-8")
        settings = self.pipeline.model_dump(mode="json", include=set(_SETTINGS))
        (folder / "pipeline.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ScorerBundle:
        cards = json.loads((folder / "cards.json").read_text(encoding="utf-8"))
        models = {n: (joblib.load(folder / f"{n}.joblib"), card) for n, card in cards.items()}
        p = Pipeline.model_validate(json.loads((folder / "pipeline.json").read_text(encoding="utf-8")))
        return cls(models, p)

    def score(self, frame: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """The ranked account list for the raw rows in `frame` (see module docstring)."""
        opts = {**PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}
        as_of = request_as_of(frame, opts["as_of"])
        tables = request_tables(frame, self.pipeline, as_of)
        out, _ = score_accounts(tables, as_of=as_of, horizon_days=self.pipeline.horizon_days, p=self.pipeline,
                                tracker=self, reasons=str(opts["reasons"]), rank_by=str(opts["rank_by"]),
                                top=int(opts["top"]) or None)
        out = out.reset_index()
        out["as_of"] = as_of.isoformat()
        return out


def scorer_settings(p: Pipeline) -> str:
    """A short hash of the settings a scorer packages (so an unchanged scorer is not registered twice)."""
    blob = json.dumps(p.model_dump(mode="json", include=set(_SETTINGS)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def request_as_of(frame: pd.DataFrame, param: Any) -> dt.date:
    """The cut-off: the `as_of` param, else the one value of an `as_of` column."""
    value = str(param or "").strip()
    if not value and "as_of" in frame.columns:
        values = frame["as_of"].dropna().astype("str").str.strip().unique()
        if len(values) > 1:
            raise InputError(f"the as_of column holds {len(values)} different dates; send one")
        value = values[0] if len(values) else ""
    if not value:
        raise InputError("as_of is required (param as_of=YYYY-MM-DD or an as_of column): the scorer never "
                         "takes the data's last date")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise InputError(f"as_of '{value}' is not a date in the form YYYY-MM-DD") from None


def request_tables(frame: pd.DataFrame, p: Pipeline, as_of: dt.date) -> Tables:
    """Split the request rows by their `table` column and run each table through the same
    mapping, validation and cleaning as an input file (schemas.prepare_table)."""
    frame = frame.drop(columns=[c for c in ("as_of",) if c in frame.columns])
    which = frame.pop("table").fillna("transactions").astype("str") if "table" in frame.columns else \
        pd.Series("transactions", index=frame.index)
    unknown = sorted(set(which) - set(REQUEST_TABLES))
    if unknown:
        raise InputError(f"table {unknown[0]!r} is not one the scorer reads ({', '.join(REQUEST_TABLES)})",
                         column="table")
    found = {}
    for name in REQUEST_TABLES:
        rows = frame[which == name].dropna(axis=1, how="all").reset_index(drop=True)
        if name == "transactions" or len(rows):
            found[name], _ = prepare_table(rows, name, file=f"request ({name} rows)", stages=p.stages,
                                           quality=p.quality, as_of=as_of)
    return Tables(**{n: found.get(n) for n in TABLES if n in REQUEST_TABLES})


class KeyaccountsScorer(PythonModel):
    """The pyfunc: artifacts {'bundle': ScorerBundle folder}; predict = ScorerBundle.score, with an
    InputError turned into MLflow's 'invalid parameter' error (HTTP 400 from `mlflow models serve`)."""

    def load_context(self, context) -> None:
        self.bundle = ScorerBundle.load(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            return self.bundle.score(pd.DataFrame(model_input), params)
        except InputError as e:
            from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None
