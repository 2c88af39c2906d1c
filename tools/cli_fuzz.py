"""Seeded, bounded CLI fuzzing (issue 19, criterion 7), not a benchmark.

Hypothesis draws a command (validate, features, forecast, score, report, run), the tables it
reads (small synthetic tables with hostile mutations: overflowing, NUL, formula and very long
cells, dropped columns, duplicated rows, truncated, empty, BOM, latin-1 lines, other
delimiters, unbalanced quotes) and its output options (formats, an output that is an input,
an existing folder, a path under a file, an unknown extension, a system location). Every case
runs in-process in a fresh folder and must end with:

- exit code 0 or 2, no traceback and no "internal error";
- its input files byte-identical (sha256 before and after);
- its outputs complete (exit 0: every file it names exists and reads back) or absent (exit 2:
  none of them, no temp file, an output that was a folder still a folder).

About half the score, report and forecast cases run on a trained model store (churn and value
champions trained once per fuzz session on clean synthetic transactions), with their options
drawn too (--top, --reasons, --rank-by, --by, --period, --periods, some of them invalid), so
that they also reach a full write; the others meet an empty store and end at its exit-2 paths.

    .venv/bin/python tools/cli_fuzz.py [--cases 200] [--seed 19]

Prints the outcome counts (cases, exit codes, commands, mutations) and the first failure;
exit 1 when a case failed. tests/test_cli_fuzz.py runs the same check with fewer cases.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.synth import synthesize

AS_OF = "2024-10-01"
HOSTILE = ["", " ", "1e308", "-1e308", "1e309", "inf", "NaN", "=HYPERLINK(\"x\")", "@SUM(A1)", "C1\x00",
           "2024-13-45", "9999-12-31", "0001-01-01", "１２３", "(12.50)", "1,2,3", "\"", "x" * 5000,
           "café", "-", "None", "null", "\t", "0x1F", "1_000"]
TABLE_FILES = {"transactions": "t.csv", "customers": "c.csv", "invoices": "i.csv", "opportunities": "o.csv",
               "stage_history": "s.csv"}
OPTION = {"transactions": "-t", "customers": "--customers", "invoices": "--invoices",
          "opportunities": "--opportunities", "stage_history": "--stage-history"}
COMMANDS = {  # command -> (tables it needs, tables it may also read)
    "validate": (("transactions",), ("customers", "invoices", "opportunities")),
    "features": (("transactions",), ("customers", "invoices", "opportunities")),
    "forecast": (("opportunities",), ("stage_history",)),
    "score": (("transactions",), ("customers", "opportunities")),
    "report": (("transactions",), ("customers",)),
    "run": (("transactions",), ("customers", "opportunities")),
}
MUTATIONS = ("none", "cell", "cell", "drop_column", "duplicate_rows", "truncate", "empty", "header_only", "bom",
             "latin1_line", "semicolons", "unbalanced_quote", "nul_id")
OUTPUTS = ("csv", "csv", "xlsx", "parquet", "csv.gz", "is_input", "existing_folder", "under_a_file", "bad_extension",
           "system")


def base_tables() -> dict[str, pd.DataFrame]:
    """Small synthetic tables, every cell as text (what a CSV reader sees)."""
    s = synthesize(n_customers=25, start="2023-01-01", end="2024-12-31", seed=19)
    return {n: getattr(s, n).head(400).astype("string").fillna("") for n in TABLE_FILES}


# Options drawn for the commands that can run on trained models (a few invalid on purpose).
MODEL_OPTIONS = {
    "score": [[], ["--top", "5"], ["--top", "1", "--by", "owner"], ["--by", "region"], ["--by", "colour"],
              ["--reasons", "none"], ["--reasons", "top:3"], ["--reasons", "top:x"], ["--rank-by", "value_at_risk"],
              ["--rank-by", "churn_probability"], ["--rank-by", "height"], ["--horizon-days", "30"]],
    "report": [[], ["--top", "3"], ["--psi-threshold", "0"], ["--horizon-days", "30"]],
    "forecast": [[], ["--period", "month"], ["--period", "week"], ["--periods", "2", "--by", "owner"],
                 ["--by", "product"], ["--target", "1000"], ["--periods", "30"]],
}


@dataclass
class Case:
    command: str
    tables: dict[str, list[tuple]]  # table -> mutations (kind, i, j, k)
    output: str
    deals_out: bool = False
    planned: list[str] = field(default_factory=list)
    trained: bool = False  # run on the session's trained store (score, report, forecast)
    options: list[str] = field(default_factory=list)


def _mutation():
    return st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 399), st.integers(0, 12),
                     st.integers(0, len(HOSTILE) - 1))


@st.composite
def cases(draw) -> Case:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    need, may = COMMANDS[command]
    trained = command in MODEL_OPTIONS and draw(st.booleans())
    chosen = list(need) + [t for t in may if draw(st.booleans())]
    # about half the tables clean (two thirds on the trained store), so that cases also reach
    # the writes (exit 0)
    clean = [st.just([])] * (2 if trained else 1)
    tables = {t: draw(st.one_of(*clean, st.lists(_mutation(), min_size=1, max_size=2))) for t in chosen}
    # on the trained store two thirds of the outputs are plain files, so that full writes are reached
    good = [st.sampled_from(("csv", "xlsx", "parquet"))] * (2 if trained else 0)
    case = Case(command, tables, draw(st.one_of(*good, st.sampled_from(OUTPUTS))), deals_out=draw(st.booleans()))
    if trained:
        case.trained, case.options = True, draw(st.sampled_from(MODEL_OPTIONS[command]))
    return case


def trained_store(folder: Path) -> str:
    """Churn and value champions trained on clean synthetic transactions (the fuzz tables'
    columns and dates) into `folder`; its tracking URI."""
    s = synthesize(n_customers=300, start="2023-01-01", end="2024-12-31", seed=19)
    s.transactions.to_csv(folder / "t.csv", index=False)
    uri = f"sqlite:///{folder}/mlflow.db"
    with _cwd(folder):
        res = CliRunner().invoke(app, ["train", "-t", "t.csv", "--as-of", AS_OF, "--tracking-uri", uri])
    if res.exit_code != 0:
        raise RuntimeError(f"training the fuzz store failed (exit {res.exit_code}):\n{res.output[-3000:]}")
    return uri


def mutate(df: pd.DataFrame, muts: list[tuple]) -> bytes:
    """The table as CSV bytes after the mutations."""
    df = df.copy()
    post = []
    for kind, i, j, k in muts:
        if kind == "cell" and len(df):
            df.iat[i % len(df), j % df.shape[1]] = HOSTILE[k]
        elif kind == "drop_column" and df.shape[1] > 1:
            df = df.drop(columns=df.columns[j % df.shape[1]])
        elif kind == "duplicate_rows" and len(df):
            df = pd.concat([df, df.iloc[: 1 + i % 20]])
        elif kind == "nul_id" and len(df):
            df.iat[i % len(df), 0] = str(df.iat[i % len(df), 0]) + "\x00x"
        else:
            post.append((kind, i, k))
    data = df.to_csv(index=False).encode("utf-8")
    for kind, i, _k in post:
        lines = data.split(b"\n")
        if kind == "truncate":
            data = data[: max(1, (i * 97) % max(1, len(data)))]
        elif kind == "empty":
            data = b""
        elif kind == "header_only":
            data = lines[0] + b"\n"
        elif kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif kind == "latin1_line" and len(lines) > 2:
            lines[1 + i % (len(lines) - 2)] += "é".encode("latin-1")
            data = b"\n".join(lines)
        elif kind == "semicolons":
            data = data.replace(b",", b";")
        elif kind == "unbalanced_quote" and len(lines) > 2:
            lines[1 + i % (len(lines) - 2)] = b'"' + lines[1 + i % (len(lines) - 2)]
            data = b"\n".join(lines)
    return data


def out_args(case: Case, root: Path) -> list[str]:
    """The output options of the case; fills case.planned with the files it would write."""
    ext = {"xlsx": "xlsx", "parquet": "parquet", "csv.gz": "csv.gz", "bad_extension": "json"}.get(case.output, "csv")
    out = f"out/result.{ext}"
    if case.command == "report":
        out = "out/report.html" if case.output != "bad_extension" else "out/report.csv"
    if case.output == "is_input":
        out = TABLE_FILES[next(iter(case.tables))]
    elif case.output == "existing_folder":
        (root / "out" / "result.csv").mkdir(parents=True)
        out = "out/result.csv"
    elif case.output == "under_a_file":
        out = TABLE_FILES[next(iter(case.tables))] + "/x.csv"
    elif case.output == "system":
        out = "/proc/keyaccounts-fuzz.csv"
    stem, _, suffix = out.partition(".")
    case.planned = [out]
    if case.command == "forecast":
        case.planned += [f"{stem}_funnel.{suffix}", f"{stem}_deals.{suffix}"]
    args = ["--out", out]
    if case.command == "features" and case.deals_out and "opportunities" in case.tables:
        args += ["--deals-out", f"out/deals.{suffix}"]
        case.planned.append(f"out/deals.{suffix}")
    return args


def command_args(case: Case, root: Path, store: str) -> list[str]:
    if case.command == "run":
        ext = "csv" if case.output == "csv" else "parquet"
        steps = [{"validate": {"out": "out/q.csv"}}, {"features": {"out": f"out/f.{ext}"}}]
        case.planned = [next(iter(s.values()))["out"] for s in steps]
        import yaml
        inputs = {t: {"path": TABLE_FILES[t]} for t in case.tables}
        (root / "p.yaml").write_text(yaml.safe_dump({"as_of": AS_OF, "inputs": inputs, "steps": steps}))
        return ["run", "p.yaml"]
    args = [case.command]
    for t in case.tables:
        args += [OPTION[t], TABLE_FILES[t]]
    args += ["--as-of", AS_OF]
    if case.command in ("score", "report"):
        args += ["--tracking-uri", store]
    if case.command == "forecast":
        args += ["--tracking-uri", store] if case.trained else ["--no-track"]
    return args + case.options + out_args(case, root)


def digest(root: Path, names) -> dict[str, str]:
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names if (root / n).is_file()}


def readable(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".html", ".png")):
        return path.stat().st_size > 0
    if name.endswith(".parquet"):
        pd.read_parquet(path)
    elif name.endswith(".xlsx"):
        pd.read_excel(path)
    else:
        pd.read_csv(path)
    return True


def check_case(case: Case, base: dict[str, pd.DataFrame], store: str, counts: Counter, trained: str | None = None) -> None:
    """Run one case in a fresh folder (on the `trained` store when the case says so);
    AssertionError naming what went wrong."""
    store = trained if case.trained and trained else store
    with tempfile.TemporaryDirectory(prefix="ka-fuzz-") as tmp, _cwd(Path(tmp)):
        root = Path(tmp)
        for t, muts in case.tables.items():
            (root / TABLE_FILES[t]).write_bytes(mutate(base[t], muts))
        args = command_args(case, root, store)
        inputs = [TABLE_FILES[t] for t in case.tables] + (["p.yaml"] if case.command == "run" else [])
        before = digest(root, inputs)
        folder_before = (root / "out" / "result.csv").is_dir()
        res = CliRunner().invoke(app, args)
        code = res.exit_code
        counts[f"exit {code}"] += 1
        counts[f"command {case.command}"] += 1
        counts[f"{case.command}{' (trained)' if case.trained else ''} exit {code}"] += 1
        for muts in case.tables.values():
            counts.update(f"mutation {m[0]}" for m in muts)
        where = f"{' '.join(args)} (mutations {case.tables})"
        assert code in (0, 2), f"exit {code}: {where}\n{res.output[-2000:]}\n{res.exception!r}"
        assert "Traceback" not in res.output and "internal error" not in res.output, f"{where}\n{res.output[-2000:]}"
        assert digest(root, inputs) == before, f"an input changed: {where}"
        assert not list(root.rglob(".*.tmp")), f"temp files left: {where}"
        files = [root / p for p in case.planned if not p.startswith("/")]
        if code == 0:
            for f in files:
                assert f.is_file() and readable(f), f"output {f.name} missing or unreadable: {where}"
        else:
            for f in files:
                if f.name == "result.csv" and folder_before:
                    assert f.is_dir(), f"the folder in the way was replaced: {where}"
                elif str(f.relative_to(root)) not in inputs:
                    assert not f.exists(), f"partial output {f.name} after exit 2: {where}"


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def fuzz(n_cases: int, seed_value: int, store: str, trained: str | None = None) -> Counter:
    """Run `n_cases` drawn cases, those drawn as trained on the `trained` store (a tracking URI
    from trained_store; None: the empty `store` for every case); returns the counts (raises on
    the first failing case, after hypothesis shrank it)."""
    base, counts = base_tables(), Counter()

    @seed(seed_value)
    @settings(max_examples=n_cases, deadline=None, database=None, derandomize=False, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def one(case: Case) -> None:
        counts["cases"] += 1
        check_case(case, base, store, counts, trained)

    one()
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=19)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ka-fuzz-store-") as store_dir, \
            tempfile.TemporaryDirectory(prefix="ka-fuzz-trained-") as trained_dir:
        trained = trained_store(Path(trained_dir))
        try:
            counts = fuzz(a.cases, a.seed, f"sqlite:///{store_dir}/mlflow.db", trained)
        except AssertionError as e:
            print(f"FAILED: {e}")
            return 1
    for k, v in sorted(counts.items()):
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
