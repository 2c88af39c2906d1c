"""Batch predictor end to end: ranked lists, tiers, reasons, formats, determinism, safety."""
from __future__ import annotations

import os

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic tables with a formula-looking customer name, and trained champions."""
    root = tmp_path_factory.mktemp("score")
    res = runner.invoke(app, ["synth", "--out", str(root / "d"), "--customers", "500", "--seed", "8"])
    assert res.exit_code == 0, res.output
    cust = pd.read_csv(root / "d" / "customers.csv")
    cust.loc[0, "name"] = '=HYPERLINK("http://evil","click")'
    cust.loc[1, "name"] = "@SUM(A1:A9)"
    cust.to_csv(root / "d" / "customers.csv", index=False)
    args = ["-t", str(root / "d/transactions.csv"), "--customers", str(root / "d/customers.csv"),
            "--invoices", str(root / "d/invoices.csv"), "--opportunities", str(root / "d/opportunities.csv"),
            "--stage-history", str(root / "d/stage_history.csv"), "--as-of", "2025-10-01", "--horizon-days", "90",
            "--tracking-uri", f"sqlite:///{root}/mlruns/mlflow.db"]
    old = os.getcwd()
    os.chdir(root)  # models/ bundles are written relative to the working folder
    try:
        res = runner.invoke(app, ["train", *args])
    finally:
        os.chdir(old)
    assert res.exit_code == 0, res.output
    return root, args, cust


@pytest.mark.slow
def test_ranked_list_has_tiers_reasons_and_is_deterministic(trained, tmp_path, monkeypatch):
    root, args, cust = trained
    monkeypatch.chdir(root)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        res = runner.invoke(app, ["score", *args, "--out", str(out)])
        assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()  # same inputs + same model versions => same bytes
    s = pd.read_csv(a, keep_default_na=False)
    for col in ("rank", "customer_id", "name", "owner", "region", "churn_probability", "expected_value",
                "value_at_risk", "abc_history", "abc_predicted", "pyramid", "rfm_segment", "kaism_quadrant",
                "composite_score", "composite_tier", "lifecycle_stage", "recommended_action",
                "churn_reasons_up", "churn_reasons_down", "churn_model_version", "value_model_version", "as_of"):
        assert col in s.columns, col
    assert list(s["rank"]) == list(range(1, len(s) + 1))
    assert s["composite_score"].is_monotonic_decreasing
    # every written row has reasons (risks and/or strengths, measured from the training mean)
    assert ((s["churn_reasons_up"] + s["churn_reasons_down"]) != "").all()
    # formula injection neutralised: the text is kept, with a leading quote
    names = set(s["name"])
    assert "'=HYPERLINK(\"http://evil\",\"click\")" in names and "'@SUM(A1:A9)" in names
    d = pd.read_csv(tmp_path / "a_deals.csv")
    assert d["expected_revenue"].is_monotonic_decreasing and d["close_probability"].between(0, 1).all()


@pytest.mark.slow
def test_by_owner_top_and_excel_sheets(trained, tmp_path, monkeypatch):
    root, args, cust = trained
    monkeypatch.chdir(root)
    out = tmp_path / "lists.xlsx"
    res = runner.invoke(app, ["score", *args, "--out", str(out), "--by", "owner", "--top", "5",
                              "--reasons", "top:20"])
    assert res.exit_code == 0, res.output
    wb = openpyxl.load_workbook(out)
    owners = sorted(cust["owner"].dropna().unique())
    assert wb.sheetnames[0] == "Read me" and sorted(wb.sheetnames[1:]) == sorted(owners)
    ws = wb[wb.sheetnames[1]]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref.startswith("A1:")
    assert 1 < ws.max_row <= 6  # header + top 5
    res = runner.invoke(app, ["score", *args, "--out", str(tmp_path / "x.csv"), "--by", "colour"])
    assert res.exit_code == 2 and "owner or region" in res.output
    res = runner.invoke(app, ["score", *args, "--out", str(tmp_path / "x.csv"), "--reasons", "some"])
    assert res.exit_code == 2 and "top:K" in res.output
