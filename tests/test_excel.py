"""The Excel ranked lists for people: Read me sheet, human headers, number formats, widths,
churn colours, one sheet per owner; CSV/Parquet keep the machine names."""
from __future__ import annotations

import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts import io, xlsx
from keyaccounts.cli import app
from keyaccounts.columns import REGISTRY, column_info, tier_meanings
from keyaccounts.config import TierConfig
from keyaccounts.tiers import OUTPUT_COLUMNS

runner = CliRunner()
META = {"list": "accounts", "as_of": "2025-10-01", "horizon_days": 90, "rank_by": "composite_score", "by": "owner",
        "top": None, "reasons": "all", "versions": {"churn-90d": "3", "value-90d": "2", "deal-90d": "1"},
        "inputs": {"transactions": "data/t.csv"}, "fingerprint": "abc123"}


def scored() -> pd.DataFrame:
    """A small account list shaped like `score_accounts` output (index customer_id)."""
    n = 6
    df = pd.DataFrame({
        "rank": np.arange(1, n + 1),
        "name": ['=HYPERLINK("http://evil","x")', "Beta Ltd", "Gamma Co", "Delta AG", "Eps Inc", "Zeta"],
        "owner": ["Ann", "Bo", "Ann", None, "Read me", "Bo"],
        "churn_probability": [0.007287414384435222, 0.35, 0.62, 0.1, np.nan, 0.9],
        "expected_value": [19463.87222, 95301.75, 0.0, 12.5, 3000.0, -5.0],
        "value_at_risk": [299.07, 693.09, 0.0, 1.0, 2.0, 3.0],
        "p_alive": [0.99, 0.9, 0.5, 0.8, 0.7, 0.2],
        "abc_history": ["A", "A", "B", "C", "C", "C"],
        "pyramid": ["VIP", "major", "medium", "small", "small", "small"],
        "rfm_segment": ["champions", "at risk", "lost", "my own segment", "new", "loyal"],
        "kaism_quadrant": ["key", "develop", "maintain", "harvest", "key", "key"],
        "composite_score": [92.88, 70.1, 50.0, 30.2, 10.0, 5.0],
        "composite_tier": ["strategic", "key", "standard", "transactional", "insufficient history", "transactional"],
        "recommended_action": ["assign key-account manager; protect and grow", "retention call this week",
                               "keep service level, automate", "serve efficiently, low-touch",
                               "nurture; re-tier once history builds", "assign key-account manager; protect and grow"],
        "churn_reasons_up": ["no purchase for 142 days; buys 0.1 times a month " * 2, "", "", "", "", ""],
        "churn_model_version": ["churn-90d/v3"] * n,
        "value_model_version": ["value-90d/v2"] * n,
        "as_of": pd.Timestamp("2025-10-01"),
        "credit_limit": [100, 200, 300, 400, 500, 600],
        "discount_rate": [0.1] * n,
    }, index=pd.Index([f"C{i:03d}" for i in range(n)], name="customer_id"))
    df.insert(1, "group_rank", [1, 1, 2, 1, 1, 2])
    return df


def _header(ws) -> list:
    return [c.value for c in ws[1]]


def _column(ws, label: str) -> list:
    j = _header(ws).index(label)
    return [row[j] for row in ws.iter_rows(min_row=2)]


def _read_me_rows(wb) -> list[tuple]:
    return [tuple(c.value for c in row) for row in wb[xlsx.READ_ME].iter_rows()]


@pytest.fixture
def book(tmp_path):
    p = io.write_frame(scored(), tmp_path / "list.xlsx", sheets_by="owner", meta=META)
    return openpyxl.load_workbook(p)


def test_read_me_is_first_and_explains_every_column_and_tier_value(book):
    assert book.sheetnames[0] == "Read me"
    rows = _read_me_rows(book)
    listed = {r[1]: r for r in rows if r[1] is not None}
    for name in ["customer_id", *scored().columns]:
        info = column_info(name, horizon_days=90, group="owner")
        assert name in listed and listed[name][0] == info.label and listed[name][2], name
    meanings = tier_meanings(horizon_days=90)
    tier_table = {(r[0], r[1]): r for r in rows if isinstance(r[3], int)}
    data = scored()
    for col in ("abc_history", "pyramid", "rfm_segment", "kaism_quadrant", "composite_tier", "recommended_action"):
        label = column_info(col).label
        for value, count in data[col].value_counts().items():
            assert tier_table[(label, value)][3] == count, (col, value)
        for value in meanings[col]:  # defined values are listed too, present or not
            assert (label, value) in tier_table, (col, value)
    assert tier_table[("RFM segment", "my own segment")][2].startswith("A value not defined")
    assert tier_table[("Tier", "strategic")][2] == "Priority score 80 or more"
    text = " ".join(str(v) for r in rows for v in r if v is not None)
    for fact in ("churn-90d version 3", "value-90d version 2", "transactions: data/t.csv", "abc123",
                 "Priority score (0-100), highest first", "one sheet per owner", "next 90 days",
                 "Given for every account"):
        assert fact in text, fact
    assert "deal-90d" not in text  # no column of this list comes from the deal model


def test_one_sheet_per_owner_with_human_headers_and_formats(book):
    assert book.sheetnames == ["Read me", "Ann", "Bo", "(none)", "Read me (2)"]
    ws = book["Ann"]
    header = _header(ws)
    assert header[:4] == ["Rank within owner", "Rank", "Customer ID", "Account name"]
    assert "Churn risk" in header and "Expected spend (next 90 days)" in header and "churn_probability" not in header
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(len(header))}3"
    churn = _column(ws, "Churn risk")
    assert churn[0].value == pytest.approx(0.007287414384435222) and churn[0].number_format == "0.0%"
    assert {c.number_format for c in _column(ws, "Expected spend (next 90 days)")} == {"#,##0.00"}
    assert {c.number_format for c in _column(ws, "Rank")} == {"#,##0"}
    assert {c.number_format for c in _column(ws, "Still active (BG/NBD)")} == {"0.0%"}
    dates = _column(ws, "Data as of")
    assert dates[0].is_date and dates[0].number_format == "yyyy-mm-dd"
    # unknown columns: prettified label, kind from the dtype (and a name hint for rates)
    assert {c.number_format for c in _column(ws, "Credit limit")} == {"#,##0"}
    assert {c.number_format for c in _column(ws, "Discount rate")} == {"0.0%"}
    assert all(c.font.bold for c in ws[1])
    assert len(book["Bo"]["A"]) == 3 and book["(none)"]["D"][1].value == "Delta AG"


def test_widths_fit_the_content_and_reasons_wrap(book):
    ws = book["Ann"]
    j = _header(ws).index("Why at risk")
    letter = openpyxl.utils.get_column_letter(j + 1)
    assert ws.column_dimensions[letter].width <= 60
    assert ws[f"{letter}2"].alignment.wrap_text
    assert ws.row_dimensions[2].height and ws.row_dimensions[2].height > 15  # the long reason wraps
    name = openpyxl.utils.get_column_letter(_header(ws).index("Account name") + 1)
    assert 30 <= ws.column_dimensions[name].width <= 40  # the widest name, not a default 8.43


def test_churn_risk_is_coloured(book):
    ws = book["Ann"]
    letter = openpyxl.utils.get_column_letter(_header(ws).index("Churn risk") + 1)
    rules = {str(rng.sqref): rs for rng, rs in ((cf, cf.rules) for cf in ws.conditional_formatting)}
    assert f"{letter}2:{letter}3" in rules
    high = rules[f"{letter}2:{letter}3"][0]
    assert high.operator == "greaterThanOrEqual" and high.formula == ["0.5"]
    assert high.dxf.fill.fgColor.rgb.endswith("F4B6B0")  # red-ish
    assert "red: 50% or more" in " ".join(str(v) for r in _read_me_rows(book) for v in r if v)


def test_no_formula_cells_and_text_stays_neutralised(tmp_path):
    df = scored().rename(columns={"credit_limit": "=cmd|' /C calc'!A0"})
    p = io.write_frame(df, tmp_path / "x.xlsx", meta={**META, "by": None})
    wb = openpyxl.load_workbook(p)
    assert wb.sheetnames == ["Read me", "Accounts"]
    ws = wb["Accounts"]
    assert _column(ws, "Account name")[0].value == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert "=cmd|' /C calc'!A0" in _header(ws)  # a user's header, kept as text
    assert not any(c.data_type == "f" for s in wb.worksheets for r in s.iter_rows() for c in r)


def test_currency_symbol_and_whole_money(tmp_path):
    df = pd.DataFrame({"opportunity_id": ["O1", "O2"], "amount": [125810, 70420],
                       "close_probability": [0.17, 0.25], "expected_revenue": [21545.6, 17629.3]})
    p = io.write_frame(df, tmp_path / "d.xlsx", index=False, meta={"list": "deals", "currency": "€"})
    ws = openpyxl.load_workbook(p)["Deals"]
    assert _header(ws) == ["Deal ID", "Deal amount", "Chance to win (forecast horizon)", "Expected revenue"]
    assert _column(ws, "Deal amount")[0].number_format == '"€"#,##0'
    assert _column(ws, "Expected revenue")[0].number_format == '"€"#,##0.00'


def test_csv_parquet_and_excel_without_meta_keep_machine_names(tmp_path):
    df = scored()
    for name in ("a.csv", "a.parquet"):
        plain = io.write_frame(df, tmp_path / f"plain_{name}").read_bytes()
        assert io.write_frame(df, tmp_path / name, meta=META).read_bytes() == plain, name
    assert list(io.read_frame(tmp_path / "a.csv").columns) == ["customer_id", *df.columns]
    assert list(pd.read_parquet(tmp_path / "a.parquet").columns) == list(df.columns)
    wb = openpyxl.load_workbook(io.write_frame(df, tmp_path / "a.xlsx"))
    assert wb.sheetnames == ["data"] and _header(wb["data"])[:2] == ["customer_id", "rank"]


def test_empty_list_still_has_read_me_and_headers(tmp_path):
    p = io.write_frame(scored().iloc[:0], tmp_path / "e.xlsx", sheets_by="owner", meta=META)
    wb = openpyxl.load_workbook(p)
    assert wb.sheetnames == ["Read me", "Accounts"] and _header(wb["Accounts"])[1] == "Rank"


def test_registry_covers_every_tier_column():
    for col in OUTPUT_COLUMNS:
        assert col in REGISTRY, col
    assert column_info("expected_value", horizon_days=30).label == "Expected spend (next 30 days)"
    assert column_info("churn_reasons_up").label == "Why at risk"
    assert column_info("value_reasons_up").label == "What raises expected spend"  # up = strength


def test_tier_meanings_follow_the_settings():
    cfg = TierConfig(abc_a_share=0.7, abc_b_share=0.2,
                     composite={"bands": [{"min_score": 75, "tier": "gold"}], "rest": "other"})
    m = tier_meanings(cfg)
    assert "first 70%" in m["abc_history"]["A"] and "last 10%" in m["abc_history"]["C"]
    assert m["composite_tier"] == {"gold": "Priority score 75 or more", "other": "Priority score below 75",
                                   "insufficient history": m["data_flag"]["insufficient history"]}


@pytest.mark.slow
def test_score_cli_writes_the_workbook_by_owner(demo_run, tmp_path, monkeypatch):
    assert demo_run.exit_code == 0, demo_run.output
    d = demo_run.workdir / "data" / "demo"
    monkeypatch.chdir(demo_run.workdir)  # the models/ bundles
    args = ["score", "-t", str(d / "transactions.csv"), "--customers", str(d / "customers.csv"),
            "--invoices", str(d / "invoices.csv"), "--opportunities", str(d / "opportunities.csv"),
            "--stage-history", str(d / "stage_history.csv"), "--as-of", "2025-10-01", "--horizon-days", "90",
            "--tracking-uri", demo_run.tracking_uri, "--by", "owner", "--top", "3"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "acc.xlsx")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "acc.csv")])
    assert res.exit_code == 0, res.output
    for name, label in (("acc", "Churn risk"), ("acc_deals", "Chance to win (next 90 days)")):
        wb = openpyxl.load_workbook(tmp_path / f"{name}.xlsx")
        csv = pd.read_csv(tmp_path / f"{name}.csv")
        owners = sorted(csv["owner"].dropna().unique())
        assert wb.sheetnames[0] == "Read me" and sorted(wb.sheetnames[1:]) == owners
        listed = {r[1] for r in _read_me_rows(wb)}
        assert set(csv.columns) <= listed  # every CSV column is explained
        ws = wb[owners[0]]
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref and 1 < ws.max_row <= 4
        assert not set(csv.columns) & set(_header(ws))  # labels, not machine names
        assert {c.number_format for c in _column(ws, label)} == {"0.0%"}
        assert sum(s.max_row - 1 for s in wb.worksheets[1:]) == len(csv)
