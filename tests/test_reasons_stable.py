"""Reasons hold still: an account's reasons (and the contributions behind them) are the same
whoever else is scored with it, in every output format, and every written row has them."""
from __future__ import annotations

import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app

runner = CliRunner()
REASONS = ["churn_reasons_up", "churn_reasons_down", "value_reasons_up", "value_reasons_down"]
DEAL_REASONS = ["reasons_up", "reasons_down"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("reasons")
    res = runner.invoke(app, ["synth", "--out", str(root / "d"), "--customers", "600", "--seed", "11"])
    assert res.exit_code == 0, res.output
    common = ["--as-of", "2025-10-01", "--horizon-days", "90", "--tracking-uri", f"sqlite:///{root}/mlruns/mlflow.db"]
    old = os.getcwd()
    os.chdir(root)
    try:
        res = runner.invoke(app, ["train", *_tables(root / "d"), *common])
    finally:
        os.chdir(old)
    assert res.exit_code == 0, res.output
    return root, common


def _tables(d) -> list[str]:
    return ["-t", str(d / "transactions.csv"), "--customers", str(d / "customers.csv"),
            "--invoices", str(d / "invoices.csv"), "--opportunities", str(d / "opportunities.csv"),
            "--stage-history", str(d / "stage_history.csv")]


def _subset(src, dst, keep_customers) -> None:
    """The same tables restricted to some customers (their deals and invoices too)."""
    dst.mkdir()
    keep = set(map(str, keep_customers))
    for name in ("transactions", "customers", "invoices", "opportunities"):
        t = pd.read_csv(src / f"{name}.csv", dtype={"customer_id": str})
        t[t["customer_id"].isin(keep)].to_csv(dst / f"{name}.csv", index=False)
    opps = set(pd.read_csv(dst / "opportunities.csv", dtype=str)["opportunity_id"])
    h = pd.read_csv(src / "stage_history.csv", dtype={"opportunity_id": str})
    h[h["opportunity_id"].isin(opps)].to_csv(dst / "stage_history.csv", index=False)


def _score(root, common, d, out, *extra) -> pd.DataFrame:
    res = runner.invoke(app, ["score", *_tables(d), *common, "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    if out.suffix == ".parquet":
        t = pd.read_parquet(out)
        return t.set_index("customer_id") if "customer_id" in t.columns else t
    return pd.read_csv(out, dtype={"customer_id": str}, keep_default_na=False).set_index("customer_id")


@pytest.mark.slow
def test_reasons_do_not_depend_on_who_else_is_scored(world, tmp_path, monkeypatch):
    root, common = world
    monkeypatch.chdir(root)
    d = root / "d"
    everyone = _score(root, common, d, tmp_path / "all.csv")
    top = _score(root, common, d, tmp_path / "top.parquet", "--reasons", "top:40")
    owner = pd.read_csv(d / "customers.csv", dtype={"customer_id": str})
    first_owner = sorted(owner["owner"].dropna().unique())[0]
    _subset(d, tmp_path / "one_owner", owner.loc[owner["owner"] == first_owner, "customer_id"])
    mine = _score(root, common, tmp_path / "one_owner", tmp_path / "owner.csv")
    single_id = everyone.index[len(everyone) // 2]
    _subset(d, tmp_path / "single", [single_id])
    single = _score(root, common, tmp_path / "single", tmp_path / "single.csv")
    deals_all = pd.read_csv(tmp_path / "all_deals.csv", dtype=str, keep_default_na=False).set_index("opportunity_id")
    deals_top = pd.read_parquet(tmp_path / "top_deals.parquet")
    deals_top = deals_top.set_index("opportunity_id") if "opportunity_id" in deals_top.columns else deals_top
    shown = deals_top.index[deals_top["reasons_up"] + deals_top["reasons_down"] != ""]
    assert 0 < len(shown) <= 40
    assert deals_top.loc[shown, DEAL_REASONS].astype(str).equals(deals_all.loc[shown, DEAL_REASONS])
    explained = top.index[top["churn_reasons_up"] + top["churn_reasons_down"] != ""]
    assert len(explained) == 40
    for other in (top.loc[explained], mine, single):
        assert len(other) and other.index.isin(everyone.index).all()
        got = other[REASONS].astype(str)
        want = everyone.loc[other.index, REASONS].astype(str)
        assert got.equals(want), (got[got.ne(want).any(axis=1)].head(3), want[got.ne(want).any(axis=1)].head(3))
        # the models' own outputs are the same too (same features, same champions)
        pd.testing.assert_series_equal(other["churn_probability"], everyone.loc[other.index, "churn_probability"])


@pytest.mark.slow
def test_every_written_row_has_reasons_per_group(world, tmp_path, monkeypatch):
    root, common = world
    monkeypatch.chdir(root)
    s = _score(root, common, root / "d", tmp_path / "g.csv", "--by", "owner", "--top", "7", "--reasons", "top:5")
    assert s.groupby("owner").size().max() == 7
    has = (s["churn_reasons_up"] + s["churn_reasons_down"]) != ""
    assert (has == (s["group_rank"] <= 5)).all()          # top:K counts per group with --by
    s = _score(root, common, root / "d", tmp_path / "h.csv", "--by", "owner", "--top", "7")
    assert ((s["churn_reasons_up"] + s["churn_reasons_down"]) != "").all()
    d = pd.read_csv(tmp_path / "h_deals.csv", keep_default_na=False)
    assert ((d["reasons_up"] + d["reasons_down"]) != "").all()


@pytest.mark.parametrize("bad", ["top:0", "top:-3", "top:", "top:x", "some", "top:1.5"])
def test_bad_reasons_refused_before_any_work(bad, tmp_path):
    res = runner.invoke(app, ["score", "-t", str(tmp_path / "missing.csv"), "--as-of", "2025-10-01",
                              "--out", str(tmp_path / "x.csv"), "--reasons", bad])
    assert res.exit_code == 2 and "--reasons" in res.output and "missing.csv" not in res.output
    assert not (tmp_path / "x.csv").exists()


def test_bad_output_extension_refused_before_any_work(tmp_path):
    res = runner.invoke(app, ["score", "-t", str(tmp_path / "missing.csv"), "--as-of", "2025-10-01",
                              "--out", str(tmp_path / "x.docx")])
    assert res.exit_code == 2 and "output format" in res.output and "missing.csv" not in res.output


@pytest.mark.slow
def test_same_reasons_in_excel_and_the_html_report(world, tmp_path, monkeypatch):
    """The Excel list (human labels) and the HTML report show each account's reasons exactly as
    the CSV of all accounts does."""
    import html

    import openpyxl

    from keyaccounts.columns import column_info
    root, common = world
    monkeypatch.chdir(root)
    d = root / "d"
    everyone = _score(root, common, d, tmp_path / "all.csv")
    res = runner.invoke(app, ["score", *_tables(d), *common, "--out", str(tmp_path / "x.xlsx"), "--by", "owner",
                              "--top", "6"])
    assert res.exit_code == 0, res.output
    wb = openpyxl.load_workbook(tmp_path / "x.xlsx")
    labels = {column_info(c).label: c for c in ["customer_id", *REASONS]}
    seen = 0
    for ws in wb.worksheets[1:]:
        head = [c.value for c in ws[1]]
        col = {labels[h]: i for i, h in enumerate(head) if h in labels}
        for row in ws.iter_rows(min_row=2, values_only=True):
            cid = str(row[col["customer_id"]])
            for c in REASONS:
                assert (row[col[c]] or "") == everyone.loc[cid, c], (cid, c)
            seen += 1
    assert seen >= 6
    res = runner.invoke(app, ["report", *_tables(d), *common, "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    page = html.unescape((tmp_path / "r.html").read_text(encoding="utf-8"))
    top = everyone.sort_values("rank").head(5)
    shown = [t for t in top["churn_reasons_up"].tolist() + top["value_reasons_up"].tolist() if t]
    assert shown and all(f"up: {t}" in page for t in shown)  # the report's "risk up: ..." / "value up: ..."
