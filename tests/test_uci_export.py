"""The raw UCI "Online Retail" export shape through `--columns`: invoice lines with blank
CustomerIDs, float-looking ids, exact duplicates, "C" cancellations and negative quantities."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from keyaccounts.cli import app

SAMPLE = Path(__file__).parent / "data" / "uci" / "online_retail_sample.csv"
COLUMNS = ("customer_id=CustomerID,timestamp=InvoiceDate,quantity=Quantity,unit_price=UnitPrice,"
           "invoice_id=InvoiceNo,product=StockCode")
runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [*args, "-t", str(SAMPLE), "--columns", COLUMNS, "--as-of", "2011-01-01"])


def test_without_a_mapping_the_whole_mapping_is_suggested(tmp_path):
    res = runner.invoke(app, ["validate", "-t", str(SAMPLE), "--out", str(tmp_path / "q.csv")])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "required columns 'customer_id', 'timestamp' are missing" in text
    assert ("--columns customer_id=CustomerID,timestamp=InvoiceDate,quantity=Quantity,unit_price=UnitPrice,"
            "invoice_id=InvoiceNo") in text
    assert not (tmp_path / "q.csv").exists()


def test_quality_summary_counts_what_was_dropped(tmp_path):
    out = tmp_path / "q.csv"
    res = _invoke("validate", "--out", str(out))
    assert res.exit_code == 0, res.output
    q = pd.read_csv(out).iloc[0]
    # 16 lines: 5 without a CustomerID (incl. the bad-debt adjustment with a negative price and
    # the stock adjustments), 1 exact duplicate line; the 2 cancellations are kept as returns.
    assert (q["rows_read"], q["rows_kept"], q["rows_dropped"]) == (16, 10, 6)
    assert q["dropped_by_reason"] == "blank_customer_id=5; exact_duplicate=1"
    assert "2 returns/cancellations (negative amounts) kept" in q["notes"]
    assert "1 rows on/after as_of" in q["notes"]


def test_features_from_the_invoice_lines(tmp_path):
    out = tmp_path / "f.csv"
    res = _invoke("features", "--out", str(out))
    assert res.exit_code == 0, res.output
    f = pd.read_csv(out, dtype={"customer_id": str}).set_index("customer_id")
    got = f[["frequency", "monetary_total", "recency_days", "n_returns"]].sort_index()
    # by hand: 17850: 6*2.55 + 6*3.39 + 6*1.85 on 2010-12-01 (the duplicate line once; '17850.0'
    # and '17850' are one customer); 13047: 32*1.69 (12-01), 0 (damaged, 12-02), 6*4.25 (12-05),
    # the 2011 line is after as_of; 14527: only a cancellation; 15311: 2*1.25 - 4.65.
    want = pd.DataFrame({
        "frequency": [2, 0, 1, 1],
        "monetary_total": [79.58, -27.5, -2.15, 46.74],
        "recency_days": [27.0, float("nan"), 31.0, 31.0],
        "n_returns": [0, 1, 1, 0],
    }, index=pd.Index(["13047", "14527", "15311", "17850"], name="customer_id"))
    pd.testing.assert_frame_equal(got, want, check_dtype=False, atol=1e-9)
