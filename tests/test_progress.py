"""CLI comfort (issue #6): progress per feature family, progress and a summary table on every
data command, --quiet silent on success (MLflow's own lines included), readable non-TTY logs,
exit codes and error messages unchanged."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from rich.console import Console
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.features import Tables, build_features
from keyaccounts.progress import StepProgress

runner = CliRunner()
KA = str(Path(sys.executable).parent / "keyaccounts")
AS_OF = "2024-04-01"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "t": _write(tmp_path / "txns.csv", """
            customer_id,timestamp,amount
            A,2024-01-05,100
            A,2024-02-01,50
            B,2024-01-20,30
            B,2024-03-01,-10
            C,2024-05-02,999
            """),
        "i": _write(tmp_path / "inv.csv", """
            invoice_id,customer_id,issue_date,due_date,amount,paid_date
            I1,A,2024-01-05,2024-02-04,100,2024-02-01
            I2,B,2024-01-20,2024-02-19,30,
            """),
    }


# -------------------------------------------------------------- build_features(progress=...)

def test_build_features_reports_each_family_and_changes_nothing(make_txns, make_invoices):
    t = make_txns([("A", "2024-01-05", 100.0), ("A", "2024-02-01", 50.0), ("B", "2024-01-20", 30.0)])
    inv = make_invoices([("I1", "A", "2024-01-05", "2024-02-04", 100.0, "2024-02-01"),
                         ("I2", "B", "2024-01-20", "2024-02-19", 30.0, None)])
    for tables, families in (
            (Tables(t), ["rfm", "tenure", "growth", "returns", "margin", "lifecycle"]),
            (Tables(t, invoices=inv), ["rfm", "tenure", "growth", "returns", "margin", "credit", "lifecycle"])):
        calls = []
        got = build_features(tables, as_of=AS_OF, progress=lambda *a, calls=calls: calls.append(a))
        n = len(families)
        # before each family with the number already done, then once at the end with done == total
        assert calls == [(f, i, n) for i, f in enumerate(families)] + [("lifecycle", n, n)]
        assert_frame_equal(got, build_features(tables, as_of=AS_OF))


# -------------------------------------------------------------- StepProgress

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["load", "features", "score", "write"]), st.booleans()), max_size=6))
def test_step_records_follow_the_steps_run(plan):
    """Every step is recorded in order, 'failed' iff it raised (and the error went through),
    with its outputs; a quiet console prints nothing whatever happens."""
    console = Console(record=True, quiet=True)
    with StepProgress(console, total=len(plan)) as sp:
        for i, (name, fails) in enumerate(plan):
            try:
                with sp.step(name):
                    sp.say(f"sub-step of {name}")
                    sp.wrote(f"out/{i}.csv")
                    if fails:
                        raise ValueError(name)
            except ValueError as e:
                assert fails and str(e) == name
    assert [(r.name, r.status, r.outputs) for r in sp.records] == [
        (name, "failed" if fails else "done", [f"out/{i}.csv"]) for i, (name, fails) in enumerate(plan)]
    assert all(r.seconds >= 0 for r in sp.records)
    assert console.export_text() == ""


def test_family_bar_shows_the_current_family_and_hides_when_done():
    console = Console(record=True, width=120, force_terminal=False)
    with StepProgress(console, total=1) as sp, sp.step("features"):
        tick = sp.families("features")

        def bar() -> str:
            view = Console(record=True, width=120, force_terminal=False)
            view.print(sp._progress.get_renderable())
            return view.export_text()

        assert "growth" not in bar()  # the family bar is hidden until features start
        tick("growth", 2, 7)
        text = bar()
        assert "growth" in text and "2/7" in text
        tick("credit", 5, 7)
        assert "credit" in bar() and "5/7" in bar()
        tick("lifecycle", 7, 7)
        assert "lifecycle" not in bar() and "7/7" not in bar()
    # the ticks print nothing of their own (non-terminal logs get the steps' lines only)
    assert "growth" not in console.export_text()


# -------------------------------------------------------------- CLI (in process)

def test_features_and_validate_show_steps_and_a_summary(files, tmp_path):
    out = tmp_path / "f.csv"
    res = runner.invoke(app, ["features", "-t", str(files["t"]), "--invoices", str(files["i"]),
                              "--as-of", AS_OF, "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = res.output
    for line in ("reading transactions", "reading invoices", "validating invoices", "load and validate done in",
                 "data quality", "building customer features", "writing 2 customers", "features done in",
                 "features: done in"):
        assert line in text, line
    # the summary table: one row per step, with the file written
    summary = text[text.index("features: done in"):]
    assert "load and validate" in summary and str(out) in summary.replace("\n", "").replace("│", "")
    assert len(pd.read_csv(out)) == 2

    res = runner.invoke(app, ["validate", "-t", str(files["t"]), "--out", str(tmp_path / "q.csv")])
    assert res.exit_code == 0, res.output
    assert "validate: done in" in res.output and "write" in res.output and (tmp_path / "q.csv").is_file()


def test_quiet_data_commands_print_nothing_and_errors_still_exit_2(files, tmp_path):
    out = tmp_path / "f.parquet"
    for args in (["features", "-t", str(files["t"]), "--as-of", AS_OF, "--out", str(out)],
                 ["validate", "-t", str(files["t"]), "--invoices", str(files["i"])]):
        res = runner.invoke(app, ["--quiet", *args])
        assert res.exit_code == 0 and res.output == "", res.output
    assert len(pd.read_parquet(out)) == 2
    # a bad column: the message names file and column, exit 2, nothing written
    bad = tmp_path / "bad.csv"
    res = runner.invoke(app, ["--quiet", "features", "-t", str(files["t"]), "--columns", "amount=Total",
                              "--as-of", AS_OF, "--out", str(bad)])
    assert res.exit_code == 2 and "bad input" in res.output and "Total" in res.output and "txns.csv" in res.output
    assert not bad.exists()


# -------------------------------------------------------------- CLI (subprocess: real stdout/stderr, no TTY)

def _ka(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "KEYACCOUNTS_DEBUG", "NO_COLOR",
                                                            "FORCE_COLOR", "TERM")}
    return subprocess.run([KA, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_piped_output_is_plain_lines(files, tmp_path):
    """Not a terminal (a CI log): no cursor movements, carriage returns or colour codes; each
    sub-step on its own line."""
    res = _ka(tmp_path, "features", "-t", str(files["t"]), "--as-of", AS_OF, "--out", "f.csv")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == ""
    assert "\x1b" not in res.stdout and "\r" not in res.stdout
    lines = res.stdout.splitlines()
    assert "  reading transactions (" + str(files["t"]) + ")" in lines
    assert "  building customer features" in lines


@pytest.mark.slow
def test_quiet_train_score_forecast_print_nothing(tmp_path):
    """`--quiet` on the MLflow commands: stdout and stderr both empty on success (MLflow's
    "Successfully registered model" / "Created version" lines included); errors still print."""
    assert _ka(tmp_path, "--quiet", "synth", "--out", "d", "--customers", "300", "--seed", "3").returncode == 0
    inputs = ["-t", "d/transactions.csv", "--customers", "d/customers.csv", "--opportunities", "d/opportunities.csv",
              "--stage-history", "d/stage_history.csv", "--as-of", "2025-10-01",
              "--tracking-uri", "sqlite:///mlruns/mlflow.db"]
    for args in (["train", *inputs], ["score", *inputs, "--out", "out/s.csv", "--reasons", "top:5"],
                 ["forecast", "--opportunities", "d/opportunities.csv", "--stage-history", "d/stage_history.csv",
                  "--as-of", "2025-10-01", "--tracking-uri", "sqlite:///mlruns/mlflow.db", "--out", "out/fc.csv"]):
        res = _ka(tmp_path, "--quiet", *args)
        assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), args[0]
    assert (tmp_path / "models" / "churn-90d" / "model.joblib").is_file()
    assert len(pd.read_csv(tmp_path / "out" / "s.csv")) > 50
    assert (tmp_path / "out" / "fc_funnel.csv").is_file()
    # the same score without --quiet says what it does and ends with the summary
    res = _ka(tmp_path, "score", *inputs, "--out", "out/s2.csv", "--reasons", "none")
    assert res.returncode == 0, res.stdout + res.stderr
    for line in ("predicting churn_probability", "predicting close_probability", "writing", "score: done in"):
        assert line in res.stdout, line
    # errors still print (stderr), exit 2, nothing written
    res = _ka(tmp_path, "--quiet", "score", *inputs, "--out", "out/s3.csv", "--reasons", "bogus")
    assert res.returncode == 2 and res.stdout == "" and "--reasons must be" in res.stderr
    assert not (tmp_path / "out" / "s3.csv").exists()
