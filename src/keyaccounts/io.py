"""The only module that reads or writes files.

Reading: format by extension (CSV/TSV/TXT, optionally .gz; Parquet; Excel), delimiter and
encoding sniffed. Writing: by extension, atomically (temp file in the same folder, then
rename), with spreadsheet formula injection neutralised in CSV/Excel.
"""
from __future__ import annotations

import csv
import gzip
import re
import stat
import warnings
from collections.abc import Callable
from io import BytesIO, StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from . import outputs, sql, xlsx
from .config import InputSpec, ReadOptions
from .errors import InputError

CSV_SUFFIXES = {".csv", ".txt", ".tsv", ".dat"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
_MISSING = ["", " "]


def _kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in PARQUET_SUFFIXES:
        return "parquet"
    if last in EXCEL_SUFFIXES:
        return "excel"
    return "csv"


def _open_bytes(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _sniff(path: Path, opts: ReadOptions) -> tuple[str, str]:
    """Return (encoding, separator) for a text file."""
    with _open_bytes(path) as fh:
        try:
            sample = fh.read(256 * 1024)
        except (OSError, EOFError) as e:
            raise InputError(f"cannot read file: {e}", file=str(path)) from None
    encoding = opts.encoding
    if encoding is None and sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"  # e.g. Excel's "Unicode Text"; the codec reads the BOM
    elif encoding is None:
        try:
            sample.decode("utf-8")
            encoding = "utf-8-sig"
        except UnicodeDecodeError as e:
            # A multi-byte char cut at the sample's end is still UTF-8.
            encoding = "utf-8-sig" if e.start >= len(sample) - 4 else "latin-1"
    text = sample.decode(encoding, errors="replace")
    if not text.strip():
        raise InputError("file is empty", file=str(path))
    if opts.sep is not None:
        return encoding, opts.sep
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may cut the last line short
    return encoding, _guess_sep(lines)


def _guess_sep(lines: list[str]) -> str:
    """The delimiter that splits every sampled line into the same number (>1) of fields."""
    for sep in (",", "\t", ";", "|"):
        counts = {ln.count(sep) for ln in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return sep
    widths = {len(ln.split()) for ln in lines}
    if len(widths) == 1 and widths.pop() > 1:
        return r"\s+"
    try:
        sep = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    return sep


def _first_row_sane(path: Path, sep: str, encoding: str, opts: ReadOptions) -> None:
    """Refuse a first data line with thousands more fields than the header up front: pandas
    spends minutes and gigabytes on it (e.g. one 10 MB line of 'a,b,c,' repeated)."""
    if not opts.header or len(sep) != 1:
        return
    with _open_bytes(path) as fh:
        text = fh.read(1 << 20).decode(encoding, errors="replace")
    lines = text.split("\n", 2)
    if len(lines) < 2:
        return
    n_header, n_first = lines[0].count(sep) + 1, lines[1].count(sep) + 1
    if n_first > n_header + 1000:
        more = "+" if len(lines) == 2 else ""
        raise InputError(f"line 2 has {n_first:,}{more} fields but the header has {n_header}; "
                         "the line is not a record of this table", file=str(path),
                         hint="fix the export (lost line breaks?), or set read.sep")


READ_NOTES = "read_notes"  # df.attrs key: what reading changed that the user should know


def _not_regular(p: Path) -> str:
    mode = p.stat().st_mode
    return ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")


def _decode_lines(path: Path) -> tuple[str, str]:
    """The file's text with each line decoded as UTF-8, or as latin-1 where it is not UTF-8,
    and a note for the quality summary saying how many lines were which."""
    with _open_bytes(path) as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    parts, n_latin, n_utf8 = [], 0, 0
    for line in data.splitlines(keepends=True):
        try:
            parts.append(line.decode("utf-8"))
            n_utf8 += not line.isascii()
        except UnicodeDecodeError:
            parts.append(line.decode("latin-1"))
            n_latin += 1
    if n_utf8:
        note = (f"mixed encodings: {n_latin:,} lines not UTF-8 were read as latin-1, {n_utf8:,} as UTF-8; "
                "check names with accents")
    else:
        note = f"not UTF-8: {n_latin:,} lines read as latin-1 (set read.encoding if it is another one)"
    return "".join(parts), note


def _check_readable(p: Path) -> None:
    """InputError unless `p` is a non-empty regular file."""
    if not p.exists():
        raise InputError("file not found", file=str(p))
    if p.is_dir():
        raise InputError("expected a file, got a folder", file=str(p))
    if not p.is_file():  # a FIFO, <(cat f) or a device: read twice (sniff, parse), a pipe would be lost
        raise InputError(f"{_not_regular(p)}, not a regular file: pipes and devices are not supported as inputs",
                         file=str(p), hint="save the data to a file first (e.g. `cat ... > data.csv`)")
    if p.stat().st_size == 0:
        raise InputError("file is empty", file=str(p))


def _read_csv(p: Path, opts: ReadOptions, notes: list[str]) -> pd.DataFrame:
    """A text table, every column as string; what reading changed goes to `notes`."""
    encoding, sep = _sniff(p, opts)

    def _csv(enc: str | None, source=p) -> pd.DataFrame:
        # index_col=False: pandas would otherwise turn the extra fields of a first data
        # row that is longer than the header (or trailing delimiters) into an index and
        # shift every column silently; now such a row is an error, trailing ones blanks.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            df = pd.read_csv(
                source, sep=sep, encoding=enc, dtype=str, keep_default_na=False,
                na_values=_MISSING, header=0 if opts.header else None, index_col=False,
                engine="c" if sep in (",", ";", "\t", "|", r"\s+") else "python",
                skipinitialspace=True,
            )
        if any("does not match length of data" in str(w.message) for w in caught):
            raise InputError(f"the first data line has more fields than the header ({df.shape[1]} columns, "
                             f"delimiter {sep!r}); the columns would shift", file=str(p),
                             hint="fix the export (a stray delimiter or an unquoted text with one), "
                                  "or set read.sep")
        return df
    _first_row_sane(p, sep, encoding, opts)
    try:
        if opts.encoding is None and encoding == "latin-1":
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "sniffed sample is not UTF-8")
        return _csv(encoding)
    except UnicodeDecodeError:
        # Not UTF-8 somewhere (maybe only past the sniffed 256 KiB): each line in its own
        # encoding, so UTF-8 lines mixed with latin-1 ones do not become mojibake.
        if opts.encoding is not None or encoding not in ("utf-8-sig", "latin-1"):
            raise
        text, note = _decode_lines(p)
        notes.append(note)
        return _csv(None, StringIO(text))


def read_frame(path: str | Path, opts: ReadOptions | None = None) -> pd.DataFrame:
    """Read a file into a frame of raw values (text files: every column as string)."""
    opts = opts or ReadOptions()
    p = Path(path)
    tx = outputs.current()
    if tx is not None:  # no output of this command may replace a file it reads
        tx.add_input(p)
    _check_readable(p)
    kind = _kind(p)
    notes: list[str] = []
    try:
        if kind == "parquet":
            df = pd.read_parquet(p)
        elif kind == "excel":
            df = pd.read_excel(p, sheet_name=opts.sheet if opts.sheet is not None else 0,
                               header=0 if opts.header else None)
        else:
            df = _read_csv(p, opts, notes)
    except InputError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError, OSError) as e:
        raise InputError(f"cannot parse as {kind}: {str(e).splitlines()[0]}", file=str(p)) from None
    if opts.names is not None:
        if len(opts.names) != df.shape[1]:
            raise InputError(f"read.names lists {len(opts.names)} columns but the file has {df.shape[1]}",
                             file=str(p))
        df.columns = opts.names
    elif not opts.header:
        df.columns = [f"col{i + 1}" for i in range(df.shape[1])]
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs[READ_NOTES] = notes  # for the quality summary (schemas.prepare_table)
    return df


def read_input(spec: InputSpec) -> pd.DataFrame:
    """The raw rows of one input: its file (read_frame) or the rows of its SQL query
    (keyaccounts.sql, named by the connection with the password hidden)."""
    if spec.sql is not None:
        return sql.read_query(spec.sql, spec.connection, label=spec.source)
    return read_frame(spec.path, spec.read)


# ---------------------------------------------------------------- writing

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _neutralised(values: pd.Series | pd.Index) -> pd.Series | pd.Index | None:
    """`values` with dangerous text cells quoted, or None when nothing needs quoting.

    Only str cells count: numbers (also inside object or categorical columns) and text that
    is just a number such as '-5' are data a spreadsheet does not run, and stay as they are.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = np.dtype(object)
    elif not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
        return None
    arr = np.asarray(values, dtype=object)
    try:
        hit = pd.Series(arr, dtype=object).str.startswith(_FORMULA_START).eq(True).to_numpy(copy=True)
    except AttributeError:  # no text at all
        return None
    if hit.any():
        hit[hit] = [not _PLAIN_NUMBER.fullmatch(v) for v in arr[hit]]
    if not hit.any():
        return None
    arr = arr.copy()
    arr[hit] = ["'" + v for v in arr[hit]]
    if isinstance(values, pd.Index):
        return pd.Index(arr, dtype=dtype, name=values.name)
    return pd.Series(arr, index=values.index, dtype=dtype, name=values.name)


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with a quote.

    Looks at text in object, string and categorical columns and in a single-level index.
    """
    out = None
    for i in range(df.shape[1]):
        safe = _neutralised(df.iloc[:, i])
        if safe is not None:
            out = df.copy() if out is None else out
            out.isetitem(i, safe)
    if df.index.nlevels == 1:
        safe = _neutralised(df.index)
        if safe is not None:
            out = df.copy() if out is None else out
            out.index = safe
    return df if out is None else out


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Every file output goes through here: path-checked, temp file then rename, staged until
    the command's end inside an `outputs.transaction()` (all or nothing)."""
    outputs.write_atomic(path, write)


_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def sheet_names(keys, reserved: tuple[str, ...] = ()) -> dict:
    """Excel-safe, unique sheet names (<= 31 chars, no []:*?/\\) for the given group keys, none
    equal to a `reserved` name (e.g. the "Read me" sheet)."""
    out, used = {}, {r.lower() for r in reserved}
    for k in keys:
        base = _SHEET_BAD.sub("_", "(none)" if k is None or k != k else str(k)).strip("'")[:31] or "sheet"
        name, i = base, 2
        while name.lower() in used:
            suffix = f" ({i})"
            name, i = base[:31 - len(suffix)] + suffix, i + 1
        used.add(name.lower())
        out[k] = name
    return out


def _excel_bytes(sheets: dict[str, pd.DataFrame]) -> bytes:
    """Workbook bytes: each sheet with a frozen header row and filters on every column."""
    from openpyxl.utils import get_column_letter
    buf = BytesIO()
    # Not `with ExcelWriter(...)`: on an error that would still save the half-built workbook.
    xw = pd.ExcelWriter(buf, engine="openpyxl")
    for name, frame in sheets.items():
        frame.to_excel(xw, index=False, sheet_name=name, freeze_panes=(1, 0))
        ws = xw.sheets[name]
        ws.auto_filter.ref = f"A1:{get_column_letter(max(frame.shape[1], 1))}{len(frame) + 1}"
    xw.close()
    return buf.getvalue()


def split_sheets(df: pd.DataFrame, sheets_by: str | None, single: str = "data",
                 reserved: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Sheet name -> rows: one sheet per value of column `sheets_by` (missing values together)
    when given and present, else (or when there are no rows) one sheet `single`."""
    if not (sheets_by and sheets_by in df.columns) or df.empty:
        return {single: df}
    keys = list(dict.fromkeys(df[sheets_by].tolist()))
    names = sheet_names(keys, reserved)
    return {names[k]: df[(df[sheets_by] == k) | (df[sheets_by].isna() & (k is None or k != k))] for k in keys}


def write_frame(df: pd.DataFrame, path: str | Path, *, index: bool = True, sheets_by: str | None = None,
                meta: dict | None = None) -> Path:
    """Write by extension (.csv[.gz], .parquet, .xlsx) atomically; returns the path.
    Excel: one sheet per value of column `sheets_by` when given (else one sheet), frozen header
    and filters. With `meta` (a dict, see keyaccounts.xlsx: as_of, versions, rank_by, ...) the
    workbook is for people: a "Read me" sheet first, human column labels and number formats;
    without it (features, forecasts) the sheets keep the machine column names. CSV/Parquet
    always keep the machine names. CSV/Excel text cells that a spreadsheet would run as a
    formula are neutralised."""
    p = Path(path)
    kind = check_output_format(p)
    if kind == "parquet":
        _atomic(p, lambda t: df.to_parquet(t, index=index))
    elif kind == "excel" and meta is not None:
        safe = neutralise_formulas(df.reset_index() if index else df)
        sheets = split_sheets(safe, sheets_by, xlsx.list_sheet_name(meta), reserved=(xlsx.READ_ME,))
        _atomic(p, lambda t: t.write_bytes(xlsx.workbook_bytes(sheets, meta)))
    elif kind == "excel":
        sheets = split_sheets(neutralise_formulas(df.reset_index() if index else df), sheets_by)
        _atomic(p, lambda t: t.write_bytes(_excel_bytes(sheets)))
    else:
        safe = neutralise_formulas(df)
        compression = "gzip" if p.suffix.lower() == ".gz" else None
        _atomic(p, lambda t: safe.to_csv(t, index=index, compression=compression,
                                         lineterminator="\n", float_format="%.10g"))
    return p


def write_text(text: str, path: str | Path) -> Path:
    p = Path(path)
    _atomic(p, lambda t: t.write_text(text, encoding="utf-8"))
    return p


def write_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically; the format follows the extension (e.g. .png)."""
    p = Path(path)
    fmt = p.suffix.lstrip(".").lower() or "png"
    _atomic(p, lambda t: fig.savefig(t, format=fmt, dpi=dpi))
    return p


def write_directory(path: str | Path, write: Callable[[Path], None]) -> Path:
    """A folder output (e.g. Spark's Parquet part files): write(tmp) fills a temp folder beside
    `path`, which replaces `path` (rename) with the command's other outputs when all succeeded
    (outputs.write_folder_atomic), so readers never see a half-written folder."""
    return outputs.write_folder_atomic(path, write)


def write_tables(tables: dict[str, pd.DataFrame], folder: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write several tables as folder/NAME.fmt (each atomically)."""
    folder = Path(folder)
    return {name: write_frame(df, folder / f"{name}.{fmt}", index=False) for name, df in tables.items()}




def check_output_format(path: str | Path) -> str:
    """The writer `write_frame` would use for `path` ('csv', 'parquet' or 'excel'); InputError
    for any other extension, so a command can refuse a bad --out before it does any work."""
    p = Path(path)
    kind = _kind(p)
    if kind == "csv" and p.suffix.lower() not in CSV_SUFFIXES | {".gz"}:
        raise InputError("unknown output format; use .csv, .csv.gz, .parquet or .xlsx", file=str(p))
    return kind


def check_outputs(steps: list[tuple[str, dict, str]], inputs=(), spark_steps=()) -> list[Path]:
    """Every file the given steps (step name, params, label prefix) will write, checked before
    any work starts: the format by extension, and the path (outputs.check_output_set: not an
    input, not a folder or device, not a system location, a writable folder, no two the same).
    `spark_steps`: the label prefixes of steps on Spark, whose Parquet outputs are folders."""
    files: dict[str, Path] = {}
    for step, params, where in steps:
        files.update(outputs.planned_outputs(step, params, where))
    for label, f in files.items():
        if f.suffix.lower() in (".png", *outputs.REPORT_SUFFIXES):
            continue
        try:
            check_output_format(f)
        except InputError as e:
            raise InputError(f"{label}: {e.message}", file=e.file) from None
    folders = [label for label in files if any(label.startswith(w) for w in spark_steps)]
    return outputs.check_output_set(files, inputs, folders)
