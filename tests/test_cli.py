"""End-to-end CLI tests into tmp_path: exit codes, messages, atomic outputs."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app

runner = CliRunner()


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def txn_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "txns.csv", """
        CustomerID;InvoiceDate;Total
        A;2024-01-05;100
        A;2024-02-01;50
        B;2024-01-20;30
        B;2024-03-01;-10
        C;2024-03-02;999
        """)


def test_help_lists_commands_and_explains_options():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("synth", "validate", "features", "run"):
        assert cmd in res.output
    res = runner.invoke(app, ["features", "--help"])
    assert res.exit_code == 0
    for opt in ("--transactions", "--customers", "--invoices", "--columns", "--as-of", "--out", "--pipeline"):
        assert opt in res.output


def test_features_with_mapping_writes_one_row_per_customer(tmp_path, txn_file):
    out = tmp_path / "f.csv"
    res = runner.invoke(app, ["features", "-t", str(txn_file), "--columns",
                              "customer_id=CustomerID,timestamp=InvoiceDate,amount=Total",
                              "--as-of", "2024-03-02", "--out", str(out)])
    assert res.exit_code == 0, res.output
    f = pd.read_csv(out, index_col="customer_id")
    # C's purchase is on as_of itself: not read.
    assert list(f.index) == ["A", "B"]
    assert f.loc["A", "recency_days"] == 30  # 2024 is a leap year and f.loc["A", "frequency"] == 2
    assert f.loc["B", "monetary_total"] == 20
    assert (f["as_of"] == "2024-03-02").all()


def test_missing_as_of_is_refused_and_nothing_written(tmp_path, txn_file):
    out = tmp_path / "f.csv"
    res = runner.invoke(app, ["features", "-t", str(txn_file), "--columns",
                              "customer_id=CustomerID,timestamp=InvoiceDate,amount=Total", "--out", str(out)])
    assert res.exit_code == 2
    assert "as_of is required" in res.output
    assert not out.exists()


def test_missing_column_names_file_column_and_suggests_mapping(tmp_path, txn_file):
    out = tmp_path / "f.csv"
    res = runner.invoke(app, ["features", "-t", str(txn_file), "--as-of", "2024-03-02", "--out", str(out)])
    assert res.exit_code == 2
    assert "customer_id" in res.output and "txns.csv" in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_unparsable_dates_fail_with_rows_and_keep_earlier_output(tmp_path):
    bad = _write(tmp_path / "bad.csv", "customer_id,timestamp,amount\n" + "".join(
        f"X{i},not-a-date-{i},10\n" for i in range(8)))
    out = tmp_path / "f.csv"
    out.write_text("earlier output\n")
    res = runner.invoke(app, ["features", "-t", str(bad), "--as-of", "2024-01-01", "--out", str(out)])
    assert res.exit_code == 2
    assert "timestamp" in res.output and "not-a-date-0" in res.output
    assert out.read_text() == "earlier output\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_as_of_and_unknown_pipeline_key(tmp_path, txn_file):
    res = runner.invoke(app, ["features", "-t", str(txn_file), "--as-of", "01/02/2024", "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "YYYY-MM-DD" in res.output
    y = _write(tmp_path / "p.yaml", "as_of: 2024-01-01\nbogus: 1\n")
    res = runner.invoke(app, ["run", str(y)])
    assert res.exit_code == 2 and "bogus" in res.output


def test_run_pipeline_yaml(tmp_path, txn_file):
    y = _write(tmp_path / "p.yaml", f"""
        name: t
        as_of: 2024-03-01
        inputs:
          transactions:
            path: {txn_file}
            columns: {{customer_id: CustomerID, timestamp: InvoiceDate, amount: Total}}
        steps:
          - validate: {{out: {tmp_path / 'q.csv'}}}
          - features: {{out: {tmp_path / 'f.parquet'}}}
        """)
    res = runner.invoke(app, ["run", str(y)])
    assert res.exit_code == 0, res.output
    q = pd.read_csv(tmp_path / "q.csv")
    assert q.loc[0, "rows_read"] == 5 and q.loc[0, "rows_kept"] == 5
    f = pd.read_parquet(tmp_path / "f.parquet")
    assert list(f.index) == ["A", "B"]
    # --as-of on the command line overrides the pipeline's
    res = runner.invoke(app, ["run", str(y), "--as-of", "2024-01-10"])
    assert res.exit_code == 0, res.output
    assert list(pd.read_parquet(tmp_path / "f.parquet").index) == ["A"]


@pytest.mark.slow
def test_demo_flow_synth_then_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["synth", "--out", "data/demo", "--customers", "300", "--seed", "3"])
    assert res.exit_code == 0, res.output
    repo = Path(__file__).resolve().parents[1]
    res = runner.invoke(app, ["run", str(repo / "pipelines" / "demo.yaml")])
    assert res.exit_code == 0, res.output
    f = pd.read_parquet("out/demo/features.parquet")
    d = pd.read_parquet("out/demo/deal_features.parquet")
    assert len(f) > 250 and f["lifecycle_stage"].notna().all()
    assert {"days_past_due_mean", "margin_rate", "spend_slope_monthly", "tenure_days"} <= set(f.columns)
    assert len(d) > 0 and d["stage_at_as_of"].notna().all()
    scores = pd.read_csv("out/demo/scores.csv")
    assert scores["churn_probability"].between(0, 1).all() and len(scores) > 200
    # retraining on the same data: version 2, gated against v1 on the same validation data
    res = runner.invoke(app, ["train", "--config", str(repo / "pipelines" / "train.yaml")])
    assert res.exit_code == 0, res.output
    assert "churn-90d: v2" in res.output and "champion" in res.output
    res = runner.invoke(app, ["run", str(repo / "pipelines" / "score.yaml")])
    assert res.exit_code == 0, res.output
    # same data, same (or equally good) models: same scores
    again = pd.read_csv("out/demo/scores.csv")
    assert len(again) == len(scores)
