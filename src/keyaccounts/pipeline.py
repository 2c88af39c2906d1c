"""Run a declarative pipeline: load inputs once, then execute its steps in order."""
from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from . import io
from .config import TABLES, Pipeline
from .errors import InputError
from .features import Tables, build_features, deals
from .quality import QualityReport
from .schemas import SPECS, prepare_table


@dataclass
class Loaded:
    tables: Tables
    reports: list[QualityReport] = field(default_factory=list)


def resolve_loose_columns(raws: dict[str, pd.DataFrame], files: dict[str, str],
                          loose: dict[str, str]) -> dict[str, dict[str, str]]:
    """Unprefixed --columns items apply to every table whose file has the source column;
    one that no file has is an error."""
    per: dict[str, dict[str, str]] = {n: {} for n in raws}
    for canon, src in loose.items():
        hits = [n for n, r in raws.items() if src in r.columns and canon in SPECS[n].all_columns]
        if not hits:
            cols = sorted({str(c) for r in raws.values() for c in r.columns})
            close = difflib.get_close_matches(src, cols, n=1, cutoff=0.6)
            raise InputError(f"--columns maps '{canon}' to '{src}', but no input file has a column '{src}'",
                             file=", ".join(files.values()), column=src,
                             hint=(f"did you mean '{close[0]}'? " if close else "")
                             + f"columns in the files: {', '.join(cols[:30])}")
        for n in hits:
            per[n][canon] = src
    return per


def load_inputs(p: Pipeline, *, loose_columns: dict[str, str] | None = None,
                on_table: Callable[[str], None] | None = None) -> Loaded:
    """Read, map, validate every input of the pipeline; transactions are required."""
    if "transactions" not in p.inputs:
        raise InputError("a transactions file is required (--transactions or inputs.transactions)")
    raws = {name: io.read_frame(spec.path, spec.read) for name, spec in p.inputs.items()}
    files = {n: s.path for n, s in p.inputs.items()}
    extra = resolve_loose_columns(raws, files, loose_columns or {})
    frames: dict[str, pd.DataFrame] = {}
    reports = []
    for name in TABLES:
        if name not in raws:
            continue
        if on_table:
            on_table(name)
        spec = p.inputs[name]
        frame, rep = prepare_table(
            raws[name], name, file=spec.path, mapping={**spec.columns, **extra[name]}, stages=p.stages,
            quality=p.quality, date_format=spec.read.date_format, dayfirst=spec.read.dayfirst,
            decimal=spec.read.decimal, header=spec.read.header, as_of=p.as_of)
        frames[name] = frame
        reports.append(rep)
    return Loaded(Tables(**frames), reports)


def require_as_of(p: Pipeline) -> dt.date:
    if p.as_of is None:
        raise InputError("as_of is required: pass --as-of YYYY-MM-DD or set as_of in the pipeline "
                         "(features never default to the data's last date)")
    return p.as_of


def customer_features(loaded: Loaded, p: Pipeline) -> pd.DataFrame:
    as_of = require_as_of(p)
    f = build_features(loaded.tables, as_of=as_of, config=p.features)
    f.insert(0, "as_of", pd.Timestamp(as_of))
    return f


def deal_features(loaded: Loaded, p: Pipeline) -> pd.DataFrame:
    as_of = require_as_of(p)
    t = loaded.tables
    if t.opportunities is None:
        raise InputError("deal features need an opportunities file (--opportunities or inputs.opportunities)")
    f = deals(t.opportunities, as_of=as_of, open_stages=p.stages.open, stage_history=t.stage_history,
              txns=t.transactions, owner_prior=p.features.owner_win_rate_prior)
    f.insert(0, "as_of", pd.Timestamp(as_of))
    return f


def step_features(loaded: Loaded, p: Pipeline, params: dict[str, Any]) -> list[Path]:
    """Write customer features to params['out'] and, when given, deal features to params['deals_out']."""
    if not params.get("out"):
        raise InputError("features step needs 'out: PATH'")
    written = [io.write_frame(customer_features(loaded, p), params["out"])]
    if params.get("deals_out"):
        written.append(io.write_frame(deal_features(loaded, p), params["deals_out"]))
    return written


def step_validate(loaded: Loaded, p: Pipeline, params: dict[str, Any]) -> list[Path]:
    """Inputs are validated on load; optionally write the quality summary."""
    from .quality import summary_frame
    if params.get("out"):
        return [io.write_frame(summary_frame(loaded.reports), params["out"], index=False)]
    return []


STEPS: dict[str, Callable[[Loaded, Pipeline, dict[str, Any]], list[Path]]] = {
    "validate": step_validate,
    "features": step_features,
}
