"""keyaccounts.io: reading (sniffed delimiter/encoding, gzip, Parquet, Excel) and atomic,
formula-safe writing."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keyaccounts import io
from keyaccounts.config import InputSpec, ReadOptions
from keyaccounts.errors import InputError
from keyaccounts.schemas import load_table

ROWS = [["A1", "2024-01-05", "10.5"], ["B2", "2024-02-01", "20"], ["C3", "2024-03-01", "7"]]
HEADER = ["customer_id", "timestamp", "amount"]


def _text(sep: str, rows=ROWS, header=HEADER) -> str:
    return "".join(sep.join(r) + "\n" for r in ([header] if header else []) + rows)


def _expected(rows=ROWS, columns=HEADER) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns, dtype="str")


def _same(df: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(df.astype("str"), expected.astype("str"), check_dtype=False)


# ---------------------------------------------------------------- delimiters

@pytest.mark.parametrize("sep", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_delimiter_is_sniffed(tmp_path, sep):
    p = tmp_path / "t.csv"
    p.write_text(_text(sep), encoding="utf-8")
    df = io.read_frame(p)
    _same(df, _expected())
    # every cell of a text file comes back as a string (ids keep leading zeros etc.)
    assert all(pd.api.types.is_string_dtype(df[c]) for c in df.columns)


def test_whitespace_aligned_file_like_cdnow(tmp_path):
    p = tmp_path / "cdnow.txt"
    # CDNOW_master.txt: leading blank, runs of spaces, CRLF line ends, zero-padded ids
    p.write_bytes(b" customer_id  date number_of_cds  dollar_value\r\n"
                  b" 00001 19970101  1   11.77\r\n"
                  b" 00002 19970112  1   12.00\r\n"
                  b" 00002 19970112  5   77.00\r\n")
    df = io.read_frame(p)
    assert list(df.columns) == ["customer_id", "date", "number_of_cds", "dollar_value"]
    assert df["customer_id"].tolist() == ["00001", "00002", "00002"]
    assert df["dollar_value"].tolist() == ["11.77", "12.00", "77.00"]


def test_quoted_delimiter_inside_a_field(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('customer_id,name,amount\n1,"Smith, J",2\n2,Lee,3\n', encoding="utf-8")
    df = io.read_frame(p)
    assert df["name"].tolist() == ["Smith, J", "Lee"]


def test_explicit_separator_wins(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a;b\n1,5;2\n", encoding="utf-8")
    assert io.read_frame(p, ReadOptions(sep=";")).to_dict("list") == {"a": ["1,5"], "b": ["2"]}


# ---------------------------------------------------------------- compression and encodings

def test_gzip_csv(tmp_path):
    p = tmp_path / "t.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write(_text(";"))
    _same(io.read_frame(p), _expected())


def test_latin1_file_falls_back(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("customer_id,name\n1,Müller\n2,Ærø\n".encode("latin-1"))
    assert io.read_frame(p)["name"].tolist() == ["Müller", "Ærø"]


def test_latin1_bytes_after_the_sniffed_sample(tmp_path):
    # the first 256 KiB are plain ASCII; the only non-UTF-8 byte comes later
    p = tmp_path / "big.csv"
    p.write_bytes(b"customer_id,amount\n" + b"A,1\n" * 80_000 + "Müller,2\n".encode("latin-1"))
    df = io.read_frame(p)
    assert len(df) == 80_001
    assert df["customer_id"].iloc[-1] == "Müller"


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + _text(",").encode("utf-8"))
    df = io.read_frame(p)
    assert list(df.columns) == HEADER
    _same(df, _expected())


def test_utf16_with_bom(tmp_path):
    # Excel's "Unicode Text" export: UTF-16 with BOM, tab separated
    p = tmp_path / "u16.txt"
    p.write_text(_text("\t"), encoding="utf-16")
    df = io.read_frame(p)
    assert list(df.columns) == HEADER
    _same(df, _expected())


def test_utf8_multibyte_characters(tmp_path):
    p = tmp_path / "u8.csv"
    p.write_text("customer_id,name\n1,Zoë\n2,東京\n", encoding="utf-8")
    assert io.read_frame(p)["name"].tolist() == ["Zoë", "東京"]


# ---------------------------------------------------------------- headers

def test_headerless_file_with_read_names(tmp_path):
    p = tmp_path / "nohdr.txt"
    p.write_text(_text(" ", header=None), encoding="utf-8")
    df = io.read_frame(p, ReadOptions(header=False, names=HEADER))
    _same(df, _expected())


def test_headerless_file_without_names_gets_numbered_columns(tmp_path):
    p = tmp_path / "nohdr.csv"
    p.write_text(_text(",", header=None), encoding="utf-8")
    df = io.read_frame(p, ReadOptions(header=False))
    assert list(df.columns) == ["col1", "col2", "col3"]
    assert len(df) == 3  # the first row is data, not a header


def test_read_names_of_the_wrong_length(tmp_path):
    p = tmp_path / "nohdr.csv"
    p.write_text(_text(",", header=None), encoding="utf-8")
    with pytest.raises(InputError, match="read.names lists 2 columns but the file has 3") as e:
        io.read_frame(p, ReadOptions(header=False, names=["a", "b"]))
    assert "nohdr.csv" in str(e.value)


def test_header_names_are_stripped(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(" customer_id , amount \nA,1\n", encoding="utf-8")
    assert list(io.read_frame(p).columns) == ["customer_id", "amount"]


# ---------------------------------------------------------------- empty / missing files

@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["zero-bytes", "blank-lines"])
def test_empty_file_is_an_error(tmp_path, content):
    p = tmp_path / "empty.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match="file is empty") as e:
        io.read_frame(p)
    assert str(p) in str(e.value)


def test_empty_gzip_is_an_error(tmp_path):
    p = tmp_path / "empty.csv.gz"
    with gzip.open(p, "wb"):
        pass
    with pytest.raises(InputError, match="file is empty"):
        io.read_frame(p)


def test_header_only_file_reads_empty_and_fails_at_the_boundary(tmp_path):
    p = tmp_path / "hdr.csv"
    p.write_text("customer_id,timestamp,amount\n", encoding="utf-8")
    df = io.read_frame(p)
    assert df.shape == (0, 3)
    with pytest.raises(InputError, match="table is empty") as e:
        load_table("transactions", InputSpec(path=str(p)))
    assert "hdr.csv" in str(e.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        io.read_frame(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="expected a file"):
        io.read_frame(tmp_path)


def test_broken_parquet_is_an_input_error(tmp_path):
    p = tmp_path / "broken.parquet"
    p.write_bytes(b"this is not parquet")
    with pytest.raises(InputError, match="cannot parse as parquet") as e:
        io.read_frame(p)
    assert "broken.parquet" in str(e.value)


# ---------------------------------------------------------------- round trips

def _typed() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["007", "B", "C"],
        "timestamp": pd.to_datetime(["2024-01-05", "2024-02-01", "2024-03-01"]).astype("datetime64[ns]"),
        "amount": [10.5, -20.0, 7.25],
        "n": [1, 2, 3],
    })


def test_parquet_round_trip_keeps_types_and_index(tmp_path):
    df = _typed().set_index("customer_id")
    p = io.write_frame(df, tmp_path / "x.parquet")
    back = io.read_frame(p)
    pd.testing.assert_frame_equal(back, df, check_index_type=False)


def test_excel_round_trip(tmp_path):
    df = _typed()
    p = io.write_frame(df, tmp_path / "x.xlsx", index=False)
    back = io.read_frame(p)
    assert list(back.columns) == list(df.columns)
    assert back["customer_id"].tolist() == ["007", "B", "C"]
    assert back["amount"].tolist() == [10.5, -20.0, 7.25]
    assert pd.to_datetime(back["timestamp"]).tolist() == df["timestamp"].tolist()


def test_excel_sheet_and_headerless(tmp_path):
    p = tmp_path / "two.xlsx"
    with pd.ExcelWriter(p, engine="openpyxl") as xw:
        pd.DataFrame({"x": [1]}).to_excel(xw, sheet_name="first", index=False)
        pd.DataFrame([["A", "2024-01-01", 5]]).to_excel(xw, sheet_name="txns", index=False, header=False)
    df = io.read_frame(p, ReadOptions(sheet="txns", header=False, names=HEADER))
    assert df.iloc[0].tolist() == ["A", "2024-01-01", 5]


def test_csv_and_gzip_csv_round_trip(tmp_path):
    df = _typed()
    for name in ("x.csv", "x.csv.gz"):
        p = io.write_frame(df, tmp_path / name, index=False)
        back = io.read_frame(p)
        assert back["customer_id"].tolist() == ["007", "B", "C"]
        assert back["amount"].astype(float).tolist() == [10.5, -20.0, 7.25]
    with gzip.open(tmp_path / "x.csv.gz", "rt") as fh:
        assert fh.readline().startswith("customer_id,")


def test_unknown_output_format(tmp_path):
    with pytest.raises(InputError, match="unknown output format"):
        io.write_frame(_typed(), tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_write_tables(tmp_path):
    paths = io.write_tables({"a": _typed(), "b": _typed().head(1)}, tmp_path / "sub", "parquet")
    assert sorted(p.name for p in paths.values()) == ["a.parquet", "b.parquet"]
    assert len(io.read_frame(paths["b"])) == 1


def test_written_file_has_the_mode_of_a_plain_write(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    p = io.write_frame(_typed(), tmp_path / "x.csv")
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(p, 0o640)
    io.write_frame(_typed(), p)
    assert p.stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- atomicity

def _partial_then_fail(original):
    """A writer that leaves partial output behind, then fails."""
    def writer(self, path, *args, **kwargs):
        if isinstance(path, pd.ExcelWriter):  # a half-built workbook
            original(self.head(1), path, *args, **kwargs)
        else:
            Path(path).write_bytes(b"partial garbage")
        raise OSError("disk full")
    return writer


@pytest.mark.parametrize("name,method", [
    ("out.csv", "to_csv"), ("out.csv.gz", "to_csv"), ("out.parquet", "to_parquet"), ("out.xlsx", "to_excel"),
])
def test_failed_write_keeps_earlier_file_and_leaves_no_temp(tmp_path, monkeypatch, name, method):
    target = tmp_path / name
    io.write_frame(_typed(), target)
    before = target.read_bytes()
    listing = sorted(os.listdir(tmp_path))
    monkeypatch.setattr(pd.DataFrame, method, _partial_then_fail(getattr(pd.DataFrame, method)))
    with pytest.raises(OSError, match="disk full"):
        io.write_frame(_typed().assign(amount=0.0), target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == listing


def test_failed_first_write_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(pd.DataFrame, "to_csv", _partial_then_fail(pd.DataFrame.to_csv))
    with pytest.raises(OSError):
        io.write_frame(_typed(), tmp_path / "new.csv")
    assert os.listdir(tmp_path) == []


def test_interrupted_write_is_cleaned_up(tmp_path, monkeypatch):
    target = tmp_path / "out.parquet"
    io.write_frame(_typed(), target)
    before = target.read_bytes()

    def interrupted(self, path, *a, **k):
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(pd.DataFrame, "to_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.write_frame(_typed(), target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.parquet"]


def test_write_text_is_atomic(tmp_path, monkeypatch):
    p = io.write_text("hello\n", tmp_path / "r.txt")
    assert p.read_text() == "hello\n"
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        io.write_text("other\n", p)
    assert os.listdir(tmp_path) == ["r.txt"]
    assert p.read_bytes() == b"hello\n"


# ---------------------------------------------------------------- formula injection

DANGEROUS = ["=1+1", "+SUM(A1)", "-2+3+cmd|' /C calc'!A0", "@SUM(1)", "=HYPERLINK(\"http://x\")"]
HARMLESS = ["plain", "a=b", "", "1-2 weeks"]


def _injection_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "text": DANGEROUS + HARMLESS[:1],
        "number": [-5.0, 3.0, -0.5, 0.0, -1e6, 2.0],
        "int": [-1, 2, -3, 4, -5, 6],
        "numeric_text": ["-5", "+3", "-0.5", "1e3", "-1E-2", "7"],
    })


def test_neutralise_formulas_quotes_text_only():
    df = _injection_frame()
    safe = io.neutralise_formulas(df)
    assert safe["text"].tolist() == ["'" + s for s in DANGEROUS] + ["plain"]
    pd.testing.assert_series_equal(safe["number"], df["number"])
    pd.testing.assert_series_equal(safe["int"], df["int"])
    # text that is just a (signed) number is data, not a formula
    assert safe["numeric_text"].tolist() == df["numeric_text"].tolist()
    assert df["text"].tolist()[0] == "=1+1"  # the caller's frame is not changed


def test_neutralise_mixed_object_categorical_and_index():
    df = pd.DataFrame({
        "mixed": np.array([-5, "=cmd", None, 2.5], dtype=object),
        "cat": pd.Categorical(["=x", "ok", "=x", "-7"]),
    }, index=pd.Index(["=idx", "a", "b", "c"], name="customer_id"))
    safe = io.neutralise_formulas(df)
    assert safe["mixed"].tolist()[:2] == [-5, "'=cmd"]
    assert safe["mixed"].tolist()[3] == 2.5 and pd.isna(safe["mixed"].tolist()[2])
    assert safe["cat"].tolist() == ["'=x", "ok", "'=x", "-7"]
    assert safe.index.tolist() == ["'=idx", "a", "b", "c"] and safe.index.name == "customer_id"


def test_csv_output_is_neutralised(tmp_path):
    df = _injection_frame()
    p = io.write_frame(df, tmp_path / "x.csv", index=False)
    back = pd.read_csv(p, dtype=str, keep_default_na=False)
    assert back["text"].tolist() == ["'" + s for s in DANGEROUS] + ["plain"]
    assert back["number"].astype(float).tolist() == df["number"].tolist()
    assert back["int"].tolist() == ["-1", "2", "-3", "4", "-5", "6"]
    assert back["numeric_text"].tolist() == df["numeric_text"].tolist()


def test_csv_index_is_neutralised(tmp_path):
    # features come out indexed by customer_id, which is the user's text
    df = pd.DataFrame({"amount": [-1.0, 2.0]}, index=pd.Index(["=evil()", "ok"], name="customer_id"))
    p = io.write_frame(df, tmp_path / "f.csv")
    back = pd.read_csv(p, dtype=str)
    assert back["customer_id"].tolist() == ["'=evil()", "ok"]
    assert back["amount"].tolist() == ["-1", "2"]


def test_excel_output_is_neutralised(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    df = _injection_frame()
    p = io.write_frame(df.set_index(pd.Index(["=i", "b", "c", "d", "e", "f"], name="customer_id")), tmp_path / "x.xlsx")
    ws = openpyxl.load_workbook(p)["data"]
    rows = list(ws.iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    assert [r[col["customer_id"]] for r in body][0] == "'=i"
    assert [r[col["text"]] for r in body] == ["'" + s for s in DANGEROUS] + ["plain"]
    assert [r[col["number"]] for r in body] == df["number"].tolist()  # stored as numbers
    assert [r[col["int"]] for r in body] == df["int"].tolist()
    assert [r[col["numeric_text"]] for r in body] == df["numeric_text"].tolist()
    # no cell is a formula
    assert not any(c.data_type == "f" for r in ws.iter_rows() for c in r)


def test_parquet_is_not_neutralised(tmp_path):
    df = pd.DataFrame({"text": ["=1+1"]})
    p = io.write_frame(df, tmp_path / "x.parquet", index=False)
    assert io.read_frame(p)["text"].tolist() == ["=1+1"]


def test_write_frame_with_categorical_customer_ids(tmp_path):
    # canonical transactions carry customer_id as a categorical
    df = pd.DataFrame({"customer_id": pd.Categorical(["=a", "b"]), "amount": np.array([1.0, -2.0])})
    for name in ("t.csv", "t.xlsx"):
        p = io.write_frame(df, tmp_path / name, index=False)
        assert io.read_frame(p)["customer_id"].tolist() == ["'=a", "b"]


def test_excel_error_before_any_sheet_is_reported_as_itself(tmp_path, monkeypatch):
    # with `with ExcelWriter(...)` the writer's exit used to replace it by openpyxl's
    # "IndexError: At least one sheet must be visible"
    def fail(self, *a, **k):
        raise ValueError("cannot write this cell")
    monkeypatch.setattr(pd.DataFrame, "to_excel", fail)
    with pytest.raises(ValueError, match="cannot write this cell"):
        io.write_frame(_typed(), tmp_path / "x.xlsx")
    assert os.listdir(tmp_path) == []
