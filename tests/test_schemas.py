"""The input boundary (schemas.prepare_table / load_table): one test per policy case.

Policy: rows that cannot be attributed and exact duplicate rows are dropped and counted;
structural problems fail with InputError naming the file, the column and up to 5 offending
rows by their line number in the file (header = line 1, first data row = line 2).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keyaccounts import io
from keyaccounts.config import InputSpec, QualityConfig, ReadOptions, StageConfig
from keyaccounts.errors import InputError
from keyaccounts.schemas import SPECS, load_table, normalise_ids, prepare_table, schema

FILE = "in/data.csv"


def raw(rows, columns) -> pd.DataFrame:
    """A raw frame as io.read_frame returns text files: every cell a string or missing."""
    return pd.DataFrame([[None if v is None else str(v) for v in r] for r in rows], columns=list(columns),
                        dtype="str")


def txns(rows, columns=("customer_id", "timestamp", "amount")) -> pd.DataFrame:
    return raw(rows, columns)


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def points_at(err: InputError, *, file: str, column: str, lines: list[int]) -> None:
    """The error names the file and column and shows exactly these line numbers."""
    text = str(err)
    assert file in text
    assert f"column '{column}'" in text
    assert err.rows is not None
    assert err.rows.index.name == "line"
    assert err.rows.index.tolist() == lines
    assert "offending rows (line numbers in the file)" in text
    for n in lines:
        assert f"\n{n} " in text


# ---------------------------------------------------------------- columns and mapping

def test_missing_required_column_hints_the_mapping():
    df = txns([["A", "2024-01-01", "1"]], ["CustomerID", "InvoiceDate", "amount"])
    with pytest.raises(InputError) as e:
        prepare_table(df, "transactions", file=FILE)
    text = str(e.value)
    assert FILE in text and "column 'customer_id'" in text
    assert "required columns 'customer_id', 'timestamp' are missing" in text
    assert "--columns customer_id=CustomerID,timestamp=InvoiceDate" in text  # all of them, by synonym
    assert "CustomerID, InvoiceDate, amount" in text  # what the file does have


def test_mapping_renames_user_columns():
    df = txns([["A", "2024-01-01", "10"]], ["CustomerID", "InvoiceDate", "Total"])
    out, rep = prepare_table(df, "transactions", file=FILE,
                             mapping={"customer_id": "CustomerID", "timestamp": "InvoiceDate", "amount": "Total"})
    assert list(out.columns) == ["customer_id", "timestamp", "amount"]
    assert out["amount"].tolist() == [10.0]
    assert rep.rows_read == rep.rows_kept == 1 and rep.dropped == {}


def test_mapping_to_a_nonexistent_column_suggests_the_close_one():
    df = txns([["A", "2024-01-01", "1"]], ["CustomerID", "timestamp", "amount"])
    with pytest.raises(InputError) as e:
        prepare_table(df, "transactions", file=FILE, mapping={"customer_id": "CustomerId"})
    text = str(e.value)
    assert FILE in text and "column 'CustomerId'" in text
    assert "has no such column" in text
    assert "did you mean 'CustomerID'?" in text


def test_mapping_an_unknown_canonical_name():
    df = txns([["A", "2024-01-01", "1"]])
    with pytest.raises(InputError, match="'revenue' is not a transactions column") as e:
        prepare_table(df, "transactions", file=FILE, mapping={"revenue": "amount"})
    assert "customer_id, timestamp, amount" in str(e.value)
    # non-strict (loose CLI mappings): ignored
    out, _ = prepare_table(df, "transactions", file=FILE, mapping={"revenue": "amount"}, strict_mapping=False)
    assert len(out) == 1


@pytest.mark.parametrize("order", [["Code", "customer_id"], ["customer_id", "Code"]])
def test_mapping_wins_over_a_file_column_of_the_canonical_name(order):
    # the file has its own (internal) customer_id, but the user maps customer_id=Code
    df = raw([["X", "1", "2024-01-01", "5"], ["Y", "2", "2024-01-02", "6"]],
             ["Code", "customer_id", "timestamp", "amount"])[order + ["timestamp", "amount"]]
    out, _ = prepare_table(df, "transactions", file=FILE, mapping={"customer_id": "Code"})
    assert out["customer_id"].astype(str).tolist() == ["X", "Y"]


def test_mapping_may_swap_two_columns():
    df = txns([["A", "2024-01-01", "5", "3"]], ["customer_id", "timestamp", "cost", "amount"])
    out, _ = prepare_table(df, "transactions", file=FILE, mapping={"amount": "cost", "cost": "amount"})
    assert out[["amount", "cost"]].iloc[0].tolist() == [5.0, 3.0]


def test_extra_columns_are_not_carried():
    df = txns([["A", "2024-01-01", "5", "note"]], ["customer_id", "timestamp", "amount", "comment"])
    out, _ = prepare_table(df, "transactions", file=FILE)
    assert list(out.columns) == ["customer_id", "timestamp", "amount"]


# ---------------------------------------------------------------- amounts

def test_amount_is_computed_from_quantity_and_unit_price():
    df = txns([["A", "2024-01-01", "3", "2.50"], ["B", "2024-01-02", "-1", "4"], ["C", "2024-01-03", "", "4"]],
              ["customer_id", "timestamp", "quantity", "unit_price"])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert out["amount"].tolist() == [7.5, -4.0]  # B is a return: both negative
    # a blank quantity leaves no amount: dropped and counted like a blank amount
    assert rep.dropped == {"blank_amount": 1}
    assert out["amount"].dtype == "float64"


def test_currency_symbols_and_thousands_separators_are_parsed():
    vals = ["$1,234.50", "€ 12", "£7", "(3.50)", "1'234", " 42 ", "-1,000", "1e3", "USD"]
    df = txns([["A", f"2024-01-{i + 1:02d}", v] for i, v in enumerate(vals[:-1])])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert out["amount"].tolist() == [1234.5, 12.0, 7.0, -3.5, 1234.0, 42.0, -1000.0, 1000.0]
    assert rep.dropped == {}


def test_decimal_comma():
    df = txns([["A", "2024-01-01", "1.234,50"], ["B", "2024-01-02", "0,99"], ["C", "2024-01-03", "€ 3"]])
    out, _ = prepare_table(df, "transactions", file=FILE, decimal=",")
    assert out["amount"].tolist() == [1234.5, 0.99, 3.0]


def test_decimal_comma_without_read_decimal_is_not_silently_misread(tmp_path):
    # '12,50' is 12.5 in much of Europe; read with decimal '.' it must not become 1250
    p = write_csv(tmp_path / "eu.csv", "customer_id;timestamp;amount",
                  [f"C{i};2024-01-0{i + 1};{i + 1}2,50" for i in range(7)])
    with pytest.raises(InputError, match="not finite numbers") as e:
        load_table("transactions", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column="amount", lines=[2, 3, 4, 5, 6])
    assert "read.decimal" in str(e.value)
    out, _ = load_table("transactions", InputSpec(path=str(p), read=ReadOptions(decimal=",")))
    assert out["amount"].tolist() == [12.5, 22.5, 32.5, 42.5, 52.5, 62.5, 72.5]


def test_misgrouped_thousands_separator_is_a_bad_value():
    df = txns([["A", "2024-01-01", "1,50"], ["B", "2024-01-02", "1,2345"], ["C", "2024-01-03", "1,234,567"]])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert out["amount"].tolist() == [1234567.0]
    assert rep.dropped == {"bad_amount": 2}


@pytest.mark.parametrize("values", [["nan", "1"], ["inf", "1"], ["-Infinity", "1"], ["abc", "1"]])
def test_nan_and_inf_text_amounts_are_bad_values(values):
    df = txns([["A", "2024-01-01", values[0]], ["B", "2024-01-02", values[1]]])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert rep.dropped == {"bad_amount": 1}
    assert out["customer_id"].astype(str).tolist() == ["B"]


def test_numeric_nan_is_blank_and_inf_is_bad():
    df = pd.DataFrame({"customer_id": ["A", "B", "C"], "timestamp": ["2024-01-01"] * 3,
                       "amount": [np.nan, np.inf, 5.0]})
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert rep.dropped == {"bad_amount": 1, "blank_amount": 1}
    assert out["amount"].tolist() == [5.0]


def test_many_inf_amounts_fail():
    df = txns([[f"C{i}", "2024-01-01", "inf"] for i in range(6)] + [["Z", "2024-01-01", "1"]])
    with pytest.raises(InputError, match="6 of 7 rows have values that are not finite numbers") as e:
        prepare_table(df, "transactions", file=FILE)
    points_at(e.value, file=FILE, column="amount", lines=[2, 3, 4, 5, 6])


def test_negative_amount_with_positive_quantity_fails(tmp_path):
    p = write_csv(tmp_path / "t.csv", "customer_id,timestamp,amount,quantity",
                  ["A,2024-01-01,10,1", "A,2024-01-02,-10,1", "B,2024-01-03,-5,-1", "C,2024-01-04,5,-2"])
    with pytest.raises(InputError, match="sign disagrees with quantity") as e:
        load_table("transactions", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column="amount", lines=[3, 5])


def test_returns_are_kept():
    df = txns([["A", "2024-01-01", "10", "2"], ["A", "2024-01-05", "-5", "-1"], ["B", "2024-01-06", "-3", ""]],
              ["customer_id", "timestamp", "amount", "quantity"])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert out["amount"].tolist() == [10.0, -5.0, -3.0]  # no quantity: cannot tell, kept
    assert rep.dropped == {}


def test_negative_invoice_amount_fails():
    df = raw([["1", "A", "2024-01-01", "2024-01-31", "-10", None], ["2", "A", "2024-01-01", "2024-01-31", "5", None]],
             SPECS["invoices"].all_columns)
    with pytest.raises(InputError, match="amount not negative") as e:
        prepare_table(df, "invoices", file=FILE)
    points_at(e.value, file=FILE, column="amount", lines=[2])


# ---------------------------------------------------------------- dropped and counted

def test_blank_customer_ids_are_dropped_and_counted():
    df = txns([["A", "2024-01-01", "1"], ["", "2024-01-02", "2"], [None, "2024-01-03", "3"], ["  ", "2024-01-04", "4"]])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert out["customer_id"].astype(str).tolist() == ["A"]
    assert rep.rows_read == 4 and rep.rows_kept == 1
    assert rep.dropped == {"blank_customer_id": 3}


def test_exact_duplicates_are_dropped_and_counted():
    df = txns([["A", "2024-01-01", "1"], ["A", "2024-01-01", "1"], ["A", "2024-01-01", "2"],
               ["12", "2024-01-02", "3"], ["12.0", "2024-01-02", "3"], [" 12 ", "2024-01-02", "3"]])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert rep.dropped == {"exact_duplicate": 3}  # '12', '12.0' and ' 12 ' are one id
    assert rep.rows_read == 6 and rep.rows_kept == 3
    assert out["amount"].tolist() == [1.0, 2.0, 3.0]


def test_rows_differing_only_in_an_unread_column_are_not_duplicates():
    # two orders of the same amount on the same day: the order number tells them apart
    df = txns([["A", "2024-01-01", "9.99", "order-1"], ["A", "2024-01-01", "9.99", "order-2"],
               ["A", "2024-01-01", "9.99", "order-2"]], ["customer_id", "timestamp", "amount", "order_no"])
    out, rep = prepare_table(df, "transactions", file=FILE)
    assert len(out) == 2
    assert rep.dropped == {"exact_duplicate": 1}


def test_a_few_unparsable_dates_are_dropped_and_counted():
    df = txns([["A", "2024-01-01", "1"], ["B", "not a date", "2"], ["C", "2024-13-45", "3"], ["D", "", "4"]])
    out, rep = prepare_table(df, "transactions", file=FILE, date_format="ISO8601")
    assert out["customer_id"].astype(str).tolist() == ["A"]
    assert rep.dropped == {"bad_timestamp": 2, "blank_timestamp": 1}
    assert rep.rows_read == 4 and rep.rows_kept == 1


def test_many_unparsable_dates_fail_with_line_numbers(tmp_path):
    rows = ["A,2024-01-01,1"] + [f"B{i},31/02/2024x,1" for i in range(7)]
    p = write_csv(tmp_path / "dates.csv", "customer_id,timestamp,amount", rows)
    with pytest.raises(InputError, match="7 of 8 rows have unparsable dates") as e:
        load_table("transactions", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column="timestamp", lines=[3, 4, 5, 6, 7])
    assert "read.date_format" in str(e.value)


def test_max_bad_values_is_configurable():
    df = txns([["A", "2024-01-01", "1"], ["B", "x", "2"], ["C", "y", "3"]])
    with pytest.raises(InputError, match="2 of 3 rows have unparsable dates"):
        prepare_table(df, "transactions", file=FILE, quality=QualityConfig(max_bad_values=1))
    _, rep = prepare_table(df, "transactions", file=FILE, quality=QualityConfig(max_bad_values=2))
    assert rep.dropped == {"bad_timestamp": 2}


def test_line_numbers_count_the_header_and_dropped_rows(tmp_path):
    # a duplicate and a blank id before the bad rows do not shift the reported lines
    rows = ["A,2024-01-01,1", "A,2024-01-01,1", ",2024-01-01,1"] + [f"B{i},bad,1" for i in range(6)]
    p = write_csv(tmp_path / "t.csv", "customer_id,timestamp,amount", rows)
    with pytest.raises(InputError) as e:
        load_table("transactions", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column="timestamp", lines=[5, 6, 7, 8, 9])


def test_headerless_file_line_numbers_start_at_one(tmp_path):
    p = tmp_path / "nohdr.txt"
    p.write_text("A 2024-01-01 1\n" + "".join(f"B{i} bad 1\n" for i in range(6)), encoding="utf-8")
    spec = InputSpec(path=str(p), read=ReadOptions(header=False, names=["customer_id", "timestamp", "amount"]))
    with pytest.raises(InputError) as e:
        load_table("transactions", spec)
    points_at(e.value, file=str(p), column="timestamp", lines=[2, 3, 4, 5, 6])


def test_date_format_and_dayfirst():
    df = txns([["A", "19970101", "1"], ["B", "19971231", "2"]])
    out, _ = prepare_table(df, "transactions", file=FILE, date_format="%Y%m%d")
    assert out["timestamp"].tolist() == [pd.Timestamp("1997-01-01"), pd.Timestamp("1997-12-31")]
    df = txns([["A", "02/03/2024", "1"], ["B", "13/03/2024", "2"]])
    out, _ = prepare_table(df, "transactions", file=FILE, dayfirst=True)
    assert out["timestamp"].tolist() == [pd.Timestamp("2024-03-02"), pd.Timestamp("2024-03-13")]


def test_mixed_utc_offsets_are_converted_to_utc():
    df = txns([["A", "2024-01-01T00:30:00+01:00", "1"], ["B", "2024-01-01T00:30:00-05:00", "2"],
               ["C", "2024-01-01 12:00", "3"]])
    out, _ = prepare_table(df, "transactions", file=FILE, date_format="ISO8601")
    assert out["timestamp"].tolist() == [pd.Timestamp("2023-12-31 23:30"), pd.Timestamp("2024-01-01 05:30"),
                                         pd.Timestamp("2024-01-01 12:00")]
    assert out["timestamp"].dtype == "datetime64[ns]"


def test_implausible_years_are_bad_dates():
    df = txns([["A", "2024-01-01", "1"], ["B", "0024-01-01", "2"], ["C", "9999-01-01", "3"]])
    _, rep = prepare_table(df, "transactions", file=FILE, date_format="ISO8601")
    assert rep.dropped == {"bad_timestamp": 2}


# ---------------------------------------------------------------- duplicate ids, date order

INV_COLS = ("invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date")


def test_duplicate_invoice_ids_with_different_data_fail(tmp_path):
    p = write_csv(tmp_path / "inv.csv", ",".join(INV_COLS), [
        "1,A,2024-01-01,2024-01-31,10,", "2,A,2024-01-01,2024-01-31,10,", "1,A,2024-01-01,2024-01-31,11,",
        "2,A,2024-01-01,2024-01-31,10,"])  # the second '2' is an exact duplicate: dropped
    with pytest.raises(InputError, match="2 rows share an id with different data") as e:
        load_table("invoices", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column="invoice_id", lines=[2, 4])


def test_exact_duplicate_invoices_are_dropped_not_an_error():
    df = raw([["1", "A", "2024-01-01", "2024-01-31", "10", None]] * 2, INV_COLS)
    out, rep = prepare_table(df, "invoices", file=FILE)
    assert len(out) == 1 and rep.dropped == {"exact_duplicate": 1}


def test_duplicate_opportunity_ids_with_different_data_fail():
    df = raw([["o1", "2024-01-01", "prospecting", "100"], ["o1", "2024-01-02", "prospecting", "100"],
              ["o2", "2024-01-01", "proposal", "5"]], ["opportunity_id", "created_date", "stage", "amount"])
    with pytest.raises(InputError, match="share an id") as e:
        prepare_table(df, "opportunities", file=FILE)
    points_at(e.value, file=FILE, column="opportunity_id", lines=[2, 3])


@pytest.mark.parametrize("column,due,paid", [("due_date", "2023-12-31", ""), ("paid_date", "2024-02-01", "2023-12-15")])
def test_invoice_due_or_paid_before_issue_fails(tmp_path, column, due, paid):
    p = write_csv(tmp_path / "inv.csv", ",".join(INV_COLS), [
        "1,A,2024-01-01,2024-01-31,10,2024-01-20", f"2,B,2024-01-01,{due},10,{paid}"])
    with pytest.raises(InputError, match=f"{column} on or after issue_date") as e:
        load_table("invoices", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column=column, lines=[3])


def test_closed_before_created_fails(tmp_path):
    p = write_csv(tmp_path / "opps.csv", "opportunity_id,created_date,stage,amount,closed_date", [
        "o1,2024-01-01,won,100,2024-02-01", "o2,2024-03-01,lost,50,2024-02-01", "o3,2024-03-01,proposal,5,"])
    with pytest.raises(InputError, match="closed_date on or after created_date") as e:
        load_table("opportunities", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column="closed_date", lines=[3])


# ---------------------------------------------------------------- stages and outcomes

OPP_COLS = ("opportunity_id", "created_date", "stage", "amount", "closed_date")


def test_unknown_stage_fails_with_a_hint(tmp_path):
    p = write_csv(tmp_path / "opps.csv", ",".join(OPP_COLS), [
        "o1,2024-01-01,prospecting,100,", "o2,2024-01-01,Discovery,100,", "o3,2024-01-01,won,1,2024-02-01"])
    with pytest.raises(InputError, match=r"1 rows have an unknown or blank stage \['Discovery'\]") as e:
        load_table("opportunities", InputSpec(path=str(p)))
    points_at(e.value, file=str(p), column="stage", lines=[3])
    assert "stages:" in str(e.value) and "'prospecting'" in str(e.value)


def test_stage_vocabulary_from_config_ignores_case_and_spaces():
    stages = StageConfig(open=["Prospecting", "Engaging"], won=["Won"], lost=["Lost"])
    df = raw([["o1", "2024-01-01", "  ENGAGING ", "1", None], ["o2", "2024-01-01", "won", "2", "2024-02-01"],
              ["o3", "2024-01-01", "LOST", "0", "2024-02-01"], ["o4", "2024-01-01", "prospecting", None, None]],
             OPP_COLS)
    out, _ = prepare_table(df, "opportunities", file=FILE, stages=stages)
    assert out["stage"].tolist() == ["engaging", "won", "lost", "prospecting"]
    assert out["outcome"].tolist()[1:3] == ["won", "lost"]
    assert out["outcome"].isna().tolist() == [True, False, False, True]
    assert np.isnan(out["amount"].iloc[3])  # opportunities may lack an amount
    # the default vocabulary does not know 'Engaging'
    with pytest.raises(InputError, match="unknown or blank stage"):
        prepare_table(df, "opportunities", file=FILE)


def test_stage_spellings_map_to_won_and_lost():
    df = raw([["o1", "2024-01-01", "Closed_Won", "2", "2024-02-01"], ["o2", "2024-01-01", "closed   lost", "0",
                                                                       "2024-02-01"]], OPP_COLS)
    out, _ = prepare_table(df, "opportunities", file=FILE)
    assert out["stage"].tolist() == ["won", "lost"]
    assert out["outcome"].tolist() == ["won", "lost"]


def test_stage_history_stages_are_checked():
    df = raw([["o1", "Qualification", "2024-01-01"], ["o1", "negotiation", "2024-01-05"]],
             ["opportunity_id", "stage", "changed_at"])
    out, _ = prepare_table(df, "stage_history", file=FILE)
    assert out["stage"].tolist() == ["qualification", "negotiation"]
    df.loc[1, "stage"] = "signed"
    with pytest.raises(InputError, match="unknown or blank stage"):
        prepare_table(df, "stage_history", file=FILE)


def test_outcome_column_is_normalised_and_checked():
    cols = OPP_COLS + ("outcome",)
    df = raw([["o1", "2024-01-01", "proposal", "1", "2024-02-01", "Win"],
              ["o2", "2024-01-01", "proposal", "1", "2024-02-01", "LOSS"],
              ["o3", "2024-01-01", "won", "1", "2024-02-01", None]], cols)
    out, _ = prepare_table(df, "opportunities", file=FILE)
    assert out["outcome"].tolist() == ["won", "lost", "won"]
    df.loc[2, "outcome"] = "lost"
    with pytest.raises(InputError, match="stage and outcome disagree") as e:
        prepare_table(df, "opportunities", file=FILE)
    points_at(e.value, file=FILE, column="outcome", lines=[4])
    df.loc[2, "outcome"] = "maybe"
    with pytest.raises(InputError, match="outcome must be won, lost or blank"):
        prepare_table(df, "opportunities", file=FILE)


def test_open_deal_with_closed_date_and_closed_deal_without_fail():
    df = raw([["o1", "2024-01-01", "proposal", "1", "2024-02-01"]], OPP_COLS)
    with pytest.raises(InputError, match="open deals .* have a closed_date") as e:
        prepare_table(df, "opportunities", file=FILE)
    assert "expected_close_date" in str(e.value)
    df = raw([["o1", "2024-01-01", "won", "1", None]], OPP_COLS)
    with pytest.raises(InputError, match="won/lost deals have no closed_date") as e:
        prepare_table(df, "opportunities", file=FILE)
    points_at(e.value, file=FILE, column="closed_date", lines=[2])


# ---------------------------------------------------------------- ids

def test_ids_normalise_equal_across_types():
    assert normalise_ids(pd.Series([12.0, 7.5, np.nan])).tolist()[:2] == ["12", "7.5"]
    assert normalise_ids(pd.Series([12, 7])).tolist() == ["12", "7"]
    assert normalise_ids(pd.Series(["12.0", " 12 ", "012", "12.50", "", None], dtype="str")).tolist()[:4] == [
        "12", "12", "012", "12.50"]
    assert normalise_ids(pd.Series([12, None], dtype="Int64")).tolist()[0] == "12"


def test_numeric_ids_in_one_file_and_text_in_another_match(tmp_path):
    # customers in Parquet with integer ids, invoices in CSV where a spreadsheet wrote '12.0'
    cust = io.write_frame(pd.DataFrame({"customer_id": [12, 13], "credit_limit": [100.0, 50.0]}),
                          tmp_path / "customers.parquet", index=False)
    inv = write_csv(tmp_path / "inv.csv", ",".join(INV_COLS), [
        "1001.0,12.0,2024-01-01,2024-01-31,10,", "1002,13,2024-01-01,2024-01-31,10,"])
    c, _ = load_table("customers", InputSpec(path=str(cust)))
    i, _ = load_table("invoices", InputSpec(path=str(inv)))
    assert c["customer_id"].tolist() == ["12", "13"]
    assert i["customer_id"].tolist() == ["12", "13"]
    assert i["invoice_id"].tolist() == ["1001", "1002"]
    assert set(i["customer_id"]) <= set(c["customer_id"])


def test_transactions_customer_id_is_a_sorted_categorical_of_strings():
    df = txns([["b", "2024-01-01", "1"], ["a", "2024-01-02", "2"], ["10", "2024-01-03", "3"]])
    out, _ = prepare_table(df, "transactions", file=FILE)
    assert isinstance(out["customer_id"].dtype, pd.CategoricalDtype)
    assert list(out["customer_id"].cat.categories) == ["10", "a", "b"]
    assert out["timestamp"].dtype == "datetime64[ns]"
    assert out["amount"].dtype == "float64"
    assert out.index.equals(pd.RangeIndex(3))
    schema("transactions").validate(out)


# ---------------------------------------------------------------- as_of and empty tables

def test_future_dated_rows_are_a_note_not_an_error():
    df = txns([["A", "2024-01-01", "1"], ["A", "2024-06-01", "2"], ["B", "2024-03-01", "3"]])
    out, rep = prepare_table(df, "transactions", file=FILE, as_of=dt.date(2024, 3, 1))
    assert len(out) == 3 and rep.dropped == {}
    assert len(rep.notes) == 1
    assert rep.notes == ["2 rows on/after as_of (features ignore, labels use)"]


def test_as_of_with_a_table_lacking_its_date_column():
    # customers' date column (signup_date) is optional
    df = raw([["A", "Ann"], ["B", "Bob"]], ["customer_id", "owner"])
    out, rep = prepare_table(df, "customers", file=FILE, as_of=dt.date(2024, 1, 1))
    assert out["customer_id"].tolist() == ["A", "B"] and rep.notes == []


def test_empty_table_fails():
    with pytest.raises(InputError, match="transactions table is empty") as e:
        prepare_table(txns([]), "transactions", file=FILE)
    assert FILE in str(e.value)


def test_nothing_left_after_cleaning_fails():
    df = txns([["", "2024-01-01", "1"], ["", "2024-01-02", "2"]])
    with pytest.raises(InputError, match="no usable rows left") as e:
        prepare_table(df, "transactions", file=FILE)
    assert "blank_customer_id" in str(e.value)


def test_quality_report_dict():
    df = txns([["A", "2024-01-01", "1"], ["A", "2024-01-01", "1"], ["", "2024-01-01", "1"]])
    _, rep = prepare_table(df, "transactions", file=FILE)
    assert rep.as_dict() == {"table": "transactions", "file": FILE, "rows_read": 3, "rows_kept": 1,
                             "dropped": {"exact_duplicate": 1, "blank_customer_id": 1}, "notes": []}


def test_one_column_may_feed_two_canonical_names():
    # Maven's accounts.csv: the account name is both the id and the name
    df = raw([["Acme", "tech"], ["Initech", "software"]], ["account", "sector"])
    out, _ = prepare_table(df, "customers", file=FILE,
                           mapping={"customer_id": "account", "name": "account", "industry": "sector"})
    assert out["customer_id"].tolist() == out["name"].tolist() == ["Acme", "Initech"]
    assert out["industry"].tolist() == ["tech", "software"]


def test_keyed_tables_judge_duplicates_on_the_columns_read():
    # a customers table taken from a wide invoice file: one row per invoice, same customer data
    df = raw([["C1", "391", "inv1"], ["C1", "391", "inv2"], ["C2", "406", "inv3"]],
             ["customerID", "countryCode", "invoiceNumber"])
    out, rep = prepare_table(df, "customers", file=FILE, mapping={"customer_id": "customerID", "region": "countryCode"})
    assert out["customer_id"].tolist() == ["C1", "C2"]
    assert rep.dropped == {"exact_duplicate": 1}
