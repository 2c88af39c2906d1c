"""The ranked account / deal list as a workbook a sales rep reads without help.

Pure: frames and a `meta` dict in, .xlsx bytes out (`workbook_bytes`); `io.write_frame` quotes
formula-like text, splits the list into sheets and writes the file atomically. The first sheet,
"Read me", says what the list is (as_of, horizon, ranking, grouping, models, inputs) and
explains every column present and every tier value; then one sheet per group (or one list):
human headers (bold, frozen, filtered), % for probabilities, thousands separators for money
and counts, dates as yyyy-mm-dd, widths fitted to the content, reasons wrapped, churn risk
coloured (amber from the medium band, red from the high band).

meta (all optional): list ('accounts' | 'deals'), title, as_of, horizon_days, rank_by, by,
top, reasons ('all' | 'none' | 'top:N'), versions {model name: version}, inputs {table: path},
fingerprint, currency (a symbol put before money, default none), tiers (config.TierConfig),
lifecycle (config.LifecycleConfig), risk_bands ((medium, high) churn probabilities).
"""
from __future__ import annotations

import datetime as dt
import math
from io import BytesIO

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from .columns import TIER_COLUMNS, ColumnInfo, column_info, horizon_words, is_reason_column, tier_meanings
from .config import ReportConfig
from .tiers import criteria_in_force

READ_ME = "Read me"
LIST_SHEETS = {"accounts": "Accounts", "deals": "Deals"}
TITLES = {"accounts": "Key accounts - ranked list", "deals": "Open deals - ranked list"}
FORMATS = {"pct": "0.0%", "int": "#,##0", "number": "#,##0.00", "date": "yyyy-mm-dd"}
MAX_WIDTH_CHARS = 60
REASON_WIDTH_CHARS = 50   # reasons wrap: a narrower column keeps the row on one screen
ROW_HEIGHT_PT = 15.0      # one line of 11 pt Calibri
TEXT_CHARS_PER_UNIT = 1.2  # Calibri (and its metric twin Carlito) text against its digit width
CHURN_COLUMN = "churn_probability"
LEADING_COLUMNS = ("group_rank", "rank")
NUMERIC_KINDS = ("pct", "money", "int", "number")

# Fonts name Calibri: a font without a name renders in the viewer's default (often a serif).
BOLD = Font(name="Calibri", size=11, bold=True)
TITLE_FONT = Font(name="Calibri", size=14, bold=True)
SECTION_FONT = Font(name="Calibri", size=12, bold=True)
HEADER_FILL = PatternFill("solid", start_color="DDE5F0", end_color="DDE5F0")
HEADER_BORDER = Border(bottom=Side(style="thin", color="7F8FA6"))
TOP = Alignment(vertical="top")
LEFT_TOP = Alignment(horizontal="left", vertical="top")  # Read me values: dates and counts too
WRAP_TOP = Alignment(vertical="top", wrap_text=True)
# Numbers keep a little room on the right, so they do not run into the text of the next column.
NUMBER_TOP = Alignment(horizontal="right", vertical="top", indent=1)
HIGH_RISK = (PatternFill("solid", start_color="F4B6B0", end_color="F4B6B0"), Font(name="Calibri", color="8B0000"))
MEDIUM_RISK = (PatternFill("solid", start_color="FCE4B6", end_color="FCE4B6"), Font(name="Calibri", color="7A4F00"))


def list_sheet_name(meta: dict | None) -> str:
    """Name of the single list sheet when the list is not split by a column."""
    return LIST_SHEETS.get((meta or {}).get("list"), "List")


def money_format(currency: str | None, cents: bool = True) -> str:
    symbol = (currency or "").replace('"', "")
    digits = "#,##0.00" if cents else "#,##0"
    return f'"{symbol}"{digits}' if symbol else digits


def number_format(kind: str, currency: str | None = None, values: pd.Series | None = None) -> str | None:
    """Excel format of a column kind; money held as whole numbers (integer dtype) shows no cents."""
    if kind == "money":
        return money_format(currency, cents=values is None or not pd.api.types.is_integer_dtype(values.dtype))
    return FORMATS.get(kind)


def workbook_bytes(sheets: dict[str, pd.DataFrame], meta: dict | None = None) -> bytes:
    """The workbook: "Read me", then one sheet per entry of `sheets` (names already Excel-safe,
    text already neutralised)."""
    meta = dict(meta or {})
    sheets = {name: frame.iloc[:, reading_order(frame.columns)] for name, frame in sheets.items()}
    infos = column_infos(sheets, meta)
    wb = Workbook()
    read_me = wb.active
    read_me.title = READ_ME
    write_read_me(read_me, sheets, infos, meta)
    for name, frame in sheets.items():
        write_list(wb.create_sheet(name), frame, [infos[c] for c in frame.columns], meta)
    buf = BytesIO()
    wb.save(buf)
    return buf.getvalue()


def reading_order(columns) -> list[int]:
    """Column positions with the ranks first (the CSV keeps the ID first, as the index)."""
    first = [j for name in LEADING_COLUMNS for j, c in enumerate(columns) if c == name]
    return first + [j for j in range(len(columns)) if j not in first]


def column_infos(sheets: dict[str, pd.DataFrame], meta: dict) -> dict:
    """Every column of the sheets, in order of first appearance -> ColumnInfo."""
    out: dict = {}
    for frame in sheets.values():
        for j, name in enumerate(frame.columns):
            if name not in out:
                out[name] = column_info(name, frame.iloc[:, j], horizon_days=meta.get("horizon_days"),
                                        group=meta.get("by"))
    return out


# ---------------------------------------------------------------- cells

def put(ws: Worksheet, row: int, col: int, value, *, font: Font | None = None, fmt: str | None = None,
        align: Alignment | None = None):
    """One cell. Text is stored as text, never as a formula whatever it starts with (the data is
    neutralised by io already; labels and Read me lines may come from the user's names), and
    without the control characters XML cannot hold."""
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    cell = ws.cell(row=row, column=col, value=value)
    if cell.data_type == "f":
        cell.data_type = "s"
    if font is not None:
        cell.font = font
    if fmt is not None:
        cell.number_format = fmt
    if align is not None:
        cell.alignment = align
    return cell


def excel_values(values: pd.Series, kind: str) -> list:
    """Python values openpyxl can store: None for missing and infinite, naive datetimes,
    anything unusual as its text."""
    s = values
    if kind == "date" and not pd.api.types.is_datetime64_any_dtype(s.dtype):
        parsed = pd.to_datetime(s, errors="coerce", format="ISO8601")
        s = parsed if parsed.notna().sum() == s.notna().sum() else s  # not all dates: keep the text
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_localize(None)  # Excel has no time zones
    bad = s.isna().to_numpy(copy=True)
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        bad |= np.isinf(s.to_numpy(dtype="float64", na_value=np.nan))
    out = s.astype(object).to_numpy(copy=True)
    out[bad] = None
    return [plain_value(v) for v in out]


def plain_value(v):
    """A value of a type openpyxl stores (numbers stay numbers, the unknown become text)."""
    if v is None or isinstance(v, (str, bool, int, float, dt.date, dt.time)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def display_chars(values: pd.Series, kind: str, currency: str | None = None) -> int:
    """Widest value as shown (characters), to fit the column width."""
    s = values.dropna()
    if s.empty:
        return 0
    if kind in ("money", "number", "int") and pd.api.types.is_numeric_dtype(s.dtype) \
            and not pd.api.types.is_bool_dtype(s.dtype):
        f = s.astype("float64")
        f = f[np.isfinite(f)]
        if f.empty:
            return 0
        big = float(f.abs().max())
        decimals = 0 if kind == "int" else 2
        symbol = len(currency or "") if kind == "money" else 0
        return len(f"{big:,.{decimals}f}") + int(bool((f < 0).any())) + symbol
    if kind == "pct":
        return 6
    if kind == "date":
        return 10
    return int(s.astype("str").str.len().max())


def wrapped_lines(text, width_chars: float) -> int:
    """Lines a text takes in a wrapping cell of this width (greedy, by words). A width unit is
    one digit; average text is narrower, about TEXT_CHARS_PER_UNIT characters a unit."""
    if text is None or text != text:
        return 1
    usable, lines, used = max(int(width_chars * TEXT_CHARS_PER_UNIT) - 1, 1), 1, 0
    for word in str(text).split():
        need = len(word) if used == 0 else used + 1 + len(word)
        if need <= usable:
            used = need
            continue
        lines += 1 if used else 0  # the word starts a new line
        full, used = divmod(len(word), usable)  # a word wider than the cell breaks inside it
        lines += full - (used == 0)
        used = used or usable
    return lines


def fit_width(info: ColumnInfo, data_chars: int) -> float:
    """Column width (characters): the data, and the header wrapped to at most three lines."""
    longest_word = max((len(w) for w in info.label.split()), default=0)
    header = max(longest_word, math.ceil(len(info.label) / 3), min(len(info.label), 12))
    cap = REASON_WIDTH_CHARS if is_reason_column(info.name) else MAX_WIDTH_CHARS
    indent = 2 if info.kind in NUMERIC_KINDS else 0
    return float(min(max(data_chars + indent, header, 6) + 2, cap))


# ---------------------------------------------------------------- list sheets

def write_list(ws: Worksheet, frame: pd.DataFrame, infos: list[ColumnInfo], meta: dict) -> None:
    """One list sheet: labels, values, formats, widths, frozen filtered header, risk colours."""
    currency = meta.get("currency")
    n_rows, widths = len(frame), []
    for j, info in enumerate(infos, start=1):
        values = frame.iloc[:, j - 1]
        widths.append(fit_width(info, display_chars(values, info.kind, currency)))
        ws.column_dimensions[get_column_letter(j)].width = widths[-1]
        header_cell(ws, j, 1, info.label)
        fmt = number_format(info.kind, currency, values)
        align = WRAP_TOP if is_reason_column(info.name) else NUMBER_TOP if info.kind in NUMERIC_KINDS else TOP
        for i, v in enumerate(excel_values(values, info.kind), start=2):
            put(ws, i, j, v, fmt=fmt, align=align)
    if infos:
        ws.row_dimensions[1].height = lines_height([i.label for i in infos], widths)
        ws.freeze_panes = "A2"
        ws.auto_filter.ref = f"A1:{get_column_letter(len(infos))}{n_rows + 1}"
    fit_row_heights(ws, frame, infos, widths)
    colour_churn_risk(ws, infos, n_rows, meta)
    ws.page_setup.orientation = "landscape"
    ws.print_title_rows = "1:1"


def fit_row_heights(ws: Worksheet, frame: pd.DataFrame, infos: list[ColumnInfo], widths: list[float]) -> None:
    """Rows as tall as their longest wrapped reason: Excel does not grow rows on opening."""
    wrap = [j for j, info in enumerate(infos) if is_reason_column(info.name)]
    if not wrap:
        return
    texts = [frame.iloc[:, j].tolist() for j in wrap]
    for i in range(len(frame)):
        lines = max(wrapped_lines(t[i], widths[j]) for t, j in zip(texts, wrap, strict=False))
        if lines > 1:
            ws.row_dimensions[i + 2].height = ROW_HEIGHT_PT * lines


def risk_bands(meta: dict) -> tuple[float, float]:
    defaults = ReportConfig()
    medium, high = meta.get("risk_bands") or (defaults.risk_medium, defaults.risk_high)
    return float(medium), float(high)


def colour_churn_risk(ws: Worksheet, infos: list[ColumnInfo], n_rows: int, meta: dict) -> None:
    """Amber from the medium risk band, red from the high one (conditional formatting, so a
    value edited in Excel recolours)."""
    cols = [j for j, info in enumerate(infos, start=1) if info.name == CHURN_COLUMN]
    if not cols or n_rows == 0:
        return
    medium, high = risk_bands(meta)
    letter = get_column_letter(cols[0])
    cells = f"{letter}2:{letter}{n_rows + 1}"
    fill, font = HIGH_RISK
    ws.conditional_formatting.add(cells, CellIsRule(operator="greaterThanOrEqual", formula=[repr(high)],
                                                    fill=fill, font=font, stopIfTrue=True))
    fill, font = MEDIUM_RISK
    ws.conditional_formatting.add(cells, CellIsRule(operator="between", formula=[repr(medium), repr(high)],
                                                    fill=fill, font=font))


# ---------------------------------------------------------------- Read me

READ_ME_WIDTHS = {"A": 34.0, "B": 46.0, "C": 100.0, "D": 10.0}
HOW_TO = ("One row per {noun}, most important first. Filter and sort with the arrows in the header row; the "
          "header stays visible when you scroll. Every column and every tier value is explained below.")


def noun(meta: dict) -> str:
    return {"accounts": "account", "deals": "deal"}.get(meta.get("list"), "row")


def reasons_words(meta: dict) -> str | None:
    """Which rows have reasons (`--reasons`: all, none, or the first K by rank, per group)."""
    reasons, by = meta.get("reasons"), meta.get("by")
    if reasons is None:
        return None
    if reasons == "none":
        return "Not computed for this list (score with --reasons all or top:K)"
    if str(reasons).startswith("top:"):
        first = f"the first {reasons[4:]} {noun(meta)}s"
        where = f"{first} of each {by} (by 'Rank within {by}')" if by else f"{first} by rank"
        return f"Given for {where}; empty for the others"
    return f"Given for every {noun(meta)}"


def list_rows(sheets: dict[str, pd.DataFrame], meta: dict) -> list[tuple[str, object]]:
    """What the list is: date, horizon, ranking, grouping, rows, reasons."""
    h, by, top = meta.get("horizon_days"), meta.get("by"), meta.get("top")
    rows: list[tuple[str, object]] = []
    as_of = pd.Timestamp(meta["as_of"]) if meta.get("as_of") is not None else None
    if as_of is not None:
        rows.append(("Data as of", as_of.to_pydatetime()))
    if h:
        until = f" ({as_of:%Y-%m-%d} to {as_of + pd.Timedelta(days=int(h) - 1):%Y-%m-%d})" if as_of is not None else ""
        rows.append(("Predictions cover", f"the {horizon_words(h)}{until}"))
    rank_label = column_info(meta["rank_by"], horizon_days=h).label if meta.get("rank_by") else None
    if rank_label:
        rows.append(("Ranked by", f"{rank_label}, highest first (ties by ID)"))
    grouped = bool(by) and list_sheet_name(meta) not in sheets  # split by io, not just ranked by group
    if grouped:
        rows.append(("Grouped by", f"{by}: one sheet per {by} ({len(sheets)} sheets); 'Rank' counts over the "
                                   f"whole list, 'Rank within {by}' within the sheet"))
    n_rows = sum(len(f) for f in sheets.values())
    shown = f"the top {top} per {by}" if top and by else f"the top {top}" if top else f"all {noun(meta)}s"
    rows.append(("Rows shown", shown))
    rows.append((f"{noun(meta).capitalize()}s in this file", n_rows))
    words = reasons_words(meta)
    if words:
        rows.append(("Reasons", words))
    return rows


def models_used(sheets: dict[str, pd.DataFrame], meta: dict) -> list[tuple[str, str]]:
    """(model, version) of meta['versions'] that this list's *_model_version columns name
    ('churn-90d/v3'); all of them when the list has no such column."""
    versions = sorted((meta.get("versions") or {}).items())
    named = {str(v).rsplit("/v", 1)[0] for f in sheets.values() for c in f.columns
             if str(c).endswith("_model_version") for v in f[c].dropna().unique()}
    return [(n, v) for n, v in versions if n in named] if named else versions


def provenance_rows(sheets: dict[str, pd.DataFrame], infos: dict, meta: dict) -> list[tuple[str, object]]:
    """Where the list comes from (models, input files, fingerprint) and the colour legend."""
    rows: list[tuple[str, object]] = []
    for i, (name, version) in enumerate(models_used(sheets, meta)):
        rows.append(("Models" if i == 0 else "", f"{name} version {version}"))
    for i, (table, path) in enumerate((meta.get("inputs") or {}).items()):
        rows.append(("Input files" if i == 0 else "", f"{table}: {path}"))
    if meta.get("fingerprint"):
        rows.append(("Data fingerprint", str(meta["fingerprint"])))
    if CHURN_COLUMN in infos:
        medium, high = risk_bands(meta)
        rows.append((f"{infos[CHURN_COLUMN].label} colours",
                     f"red: {high:.0%} or more; amber: {medium:.0%} to under {high:.0%}"))
    return rows


def tier_rows(sheets: dict[str, pd.DataFrame], infos: dict, meta: dict) -> list[tuple[str, str, str, int]]:
    """(column label, value, meaning, rows in this file) for every value the tier settings
    define and every other value present in the data."""
    meanings = tier_meanings(meta.get("tiers"), meta.get("lifecycle"), horizon_days=meta.get("horizon_days"))
    rows = []
    for col in TIER_COLUMNS:
        if col not in infos:
            continue
        parts = [f[col].astype(object) for f in sheets.values() if col in f.columns]
        present = pd.concat(parts).dropna().astype(str) if parts else pd.Series([], dtype=object)
        counts = present[present != ""].value_counts()
        defined = meanings.get(col, {})
        extra = sorted(v for v in counts.index if v not in defined)
        for value in [*defined, *extra]:
            meaning = defined.get(value, "A value not defined by the tier settings in force")
            rows.append((infos[col].label, value, meaning, int(counts.get(value, 0))))
    return rows


def criteria_rows(meta: dict) -> list[tuple[str, str, str, str]]:
    """(score, component, what it reads with direction and missing policy, share of the score's
    weight) for every component of the tier settings in force (tiers.criteria_in_force)."""
    way = {"higher_is_better": "higher is better", "lower_is_better": "lower is better"}
    return [(r.score, r.component, f"{r.reads}; {way[r.direction]}; missing: {r.missing}", f"{r.weight_share:.0%}")
            for r in criteria_in_force(meta.get("tiers")).itertuples(index=False)]


def lines_height(values, widths) -> float:
    """Row height (points) for the tallest wrapped text of a row."""
    return ROW_HEIGHT_PT * max((wrapped_lines(v, w) for v, w in zip(values, widths, strict=False) if isinstance(v, str)),
                               default=1)


def header_cell(ws: Worksheet, col: int, row: int, text: str) -> None:
    """A bold, shaded, wrapping header cell."""
    cell = put(ws, row, col, text, font=BOLD, align=WRAP_TOP)
    cell.fill, cell.border = HEADER_FILL, HEADER_BORDER


def table(ws: Worksheet, row: int, title: str, header: tuple[str, ...], body: list[tuple]) -> int:
    """A titled table from `row`; returns the next free row."""
    widths = list(READ_ME_WIDTHS.values())
    put(ws, row, 1, title, font=SECTION_FONT)
    row += 1
    for j, text in enumerate(header, start=1):
        header_cell(ws, j, row, text)
    ws.row_dimensions[row].height = lines_height(header, widths)
    for values in body:
        row += 1
        for j, v in enumerate(values, start=1):
            put(ws, row, j, v, align=WRAP_TOP, fmt=FORMATS["int"] if isinstance(v, int) else None)
        if lines_height(values, widths) > ROW_HEIGHT_PT:
            ws.row_dimensions[row].height = lines_height(values, widths)
    return row + 2


def write_read_me(ws: Worksheet, sheets: dict[str, pd.DataFrame], infos: dict, meta: dict) -> None:
    """Title, how to read, what the list is and where it comes from, then the column and
    tier-value tables."""
    for letter, width in READ_ME_WIDTHS.items():
        ws.column_dimensions[letter].width = width
    list_kind = meta.get("list")
    put(ws, 1, 1, meta.get("title") or TITLES.get(list_kind, "Ranked list"), font=TITLE_FONT)
    put(ws, 2, 1, HOW_TO.format(noun=noun(meta)), align=WRAP_TOP)
    ws.merge_cells("A2:C2")  # one wrapped paragraph across the page, not one long overflowing line
    ws.row_dimensions[2].height = ROW_HEIGHT_PT * wrapped_lines(HOW_TO, sum(list(READ_ME_WIDTHS.values())[:3]))
    row = 4
    for label, value in [*list_rows(sheets, meta), *provenance_rows(sheets, infos, meta)]:
        put(ws, row, 1, label, font=BOLD, align=TOP)
        fmt = FORMATS["date"] if isinstance(value, dt.datetime) else FORMATS["int"] if isinstance(value, int) else None
        put(ws, row, 2, value, fmt=fmt, align=LEFT_TOP)
        row += 1
    columns = [(i.label, str(i.name), i.description) for i in infos.values()]
    row = table(ws, row + 1, "Columns", ("Column", "Name in CSV / Parquet", "What it means"), columns)
    tiers = tier_rows(sheets, infos, meta)
    if tiers:
        row = table(ws, row, "Tier values", ("Column", "Value", "What it means", "Rows in this file"), tiers)
    if list_kind == "accounts":
        table(ws, row, "Criteria in force", ("Score", "Component", "What it reads; direction; missing values",
                                             "Share of weight"), criteria_rows(meta))
    ws.sheet_view.showGridLines = False
