"""Data contracts of the canonical tables, and the boundary that enforces them.

`load_table` reads a file (via io), renames the user's columns to canonical names, coerces
types, applies the messy-data policy (drop-and-count what cannot be attributed; fail with
file/column/rows on structural problems) and finally validates the pandera schema.

Canonical forms: ids are strings (whitespace stripped, `12.0` -> `12`); transactions'
customer_id is a pandas categorical of those strings; dates are datetime64[ns]; money and
counts float64. Frames come back with a fresh RangeIndex.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@contextlib.contextmanager
def _quiet_pyspark():
    # pandera imports pyspark.pandas (on import and on first validate) when pyspark is
    # installed (the spark extra); its pandas-3 warning says nothing about the user's data.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support", category=FutureWarning)
        yield


@contextlib.contextmanager
def _without_pyspark():
    # pandera probes for pyspark on import; hiding it keeps the local engine free of pyspark
    # (and its JVM-side modules) when the spark extra is installed. The Spark engine imports it itself.
    import sys
    if "pyspark" in sys.modules:
        yield
        return
    sys.modules["pyspark"] = None  # `import pyspark` raises ImportError while pandera loads
    try:
        yield
    finally:
        if "pyspark" in sys.modules and sys.modules["pyspark"] is None:
            del sys.modules["pyspark"]


with _quiet_pyspark(), _without_pyspark():
    import pandera.pandas as pa

from . import io  # noqa: E402 (after pandera loads with pyspark hidden)
from .config import InputSpec, QualityConfig, StageConfig, normalise_stage  # noqa: E402 (after pandera loads with pyspark hidden)
from .errors import InputError  # noqa: E402 (after pandera loads with pyspark hidden)
from .quality import QualityReport  # noqa: E402 (after pandera loads with pyspark hidden)


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()          # string-normalised columns
    dates: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    key: str | None = None             # unique id
    attributable_by: str | None = None  # blank here -> row dropped and counted
    nullable: tuple[str, ...] = ()      # required columns that may hold blanks

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.required + self.optional


SPECS: dict[str, TableSpec] = {
    "transactions": TableSpec(
        "transactions", ("customer_id", "timestamp", "amount"),
        ("invoice_id", "quantity", "unit_price", "cost", "product"),
        ids=("customer_id", "invoice_id", "product"), dates=("timestamp",),
        numbers=("amount", "quantity", "unit_price", "cost"), attributable_by="customer_id"),
    "customers": TableSpec(
        "customers", ("customer_id",),
        ("name", "owner", "region", "industry", "size", "credit_limit", "signup_date"),
        ids=("customer_id", "name", "owner", "region", "industry", "size"), dates=("signup_date",),
        numbers=("credit_limit",), key="customer_id", attributable_by="customer_id"),
    "invoices": TableSpec(
        "invoices", ("invoice_id", "customer_id", "issue_date", "due_date", "amount"), ("paid_date",),
        ids=("invoice_id", "customer_id"), dates=("issue_date", "due_date", "paid_date"),
        numbers=("amount",), key="invoice_id", attributable_by="customer_id"),
    "opportunities": TableSpec(
        "opportunities", ("opportunity_id", "created_date", "stage", "amount"),
        ("customer_id", "owner", "product", "expected_close_date", "closed_date", "outcome", "rep_probability",
         "rep_category"),
        ids=("opportunity_id", "customer_id", "owner", "product", "stage", "outcome", "rep_category"),
        dates=("created_date", "expected_close_date", "closed_date"), numbers=("amount", "rep_probability"),
        key="opportunity_id", attributable_by="opportunity_id", nullable=("amount",)),
    "stage_history": TableSpec(
        "stage_history", ("opportunity_id", "stage", "changed_at"), (),
        ids=("opportunity_id", "stage"), dates=("changed_at",), attributable_by="opportunity_id"),
    # the rep's weekly calls: one row per open deal and snapshot (the forecast call's history)
    "opportunity_snapshots": TableSpec(
        "opportunity_snapshots", ("opportunity_id", "snapshot_date", "rep_probability"),
        ("owner", "stage", "amount", "expected_close_date", "rep_category"),
        ids=("opportunity_id", "owner", "stage", "rep_category"), dates=("snapshot_date", "expected_close_date"),
        numbers=("amount", "rep_probability"), attributable_by="opportunity_id"),
    # revenue target per owner and period ('2017Q3', '2017-07' or a date inside the period)
    "targets": TableSpec(
        "targets", ("owner", "period", "target"), (), ids=("owner", "period"), numbers=("target",),
        attributable_by="owner"),
}
# the rep's forecast categories (rep_category), spelled as the forecast's own categories
REP_CATEGORIES = ("commit", "best_case", "pipeline", "omitted")

_OUTCOMES = {"won": "won", "win": "won", "closed won": "won", "lost": "lost", "loss": "lost",
             "lose": "lost", "closed lost": "lost"}
_NUM_JUNK = re.compile(r"[\s$€£¥₹]|(?<=\d)'(?=\d)")
_INT_FLOAT = re.compile(r"^-?\d+\.0+$")


# ------------------------------------------------------------------ pandera contracts

def _ordered(later: str, earlier: str) -> pa.Check:
    def check(df: pd.DataFrame) -> pd.Series:
        if later not in df.columns or earlier not in df.columns:  # optional column absent
            return pd.Series(True, index=df.index)
        return df[later].isna() | df[earlier].isna() | (df[later] >= df[earlier])
    return pa.Check(check, name=f"{later} on or after {earlier}")


def schema(name: str, stages: StageConfig | None = None) -> pa.DataFrameSchema:
    """The pandera schema a canonical table satisfies after `load_table`."""
    spec = SPECS[name]
    cols: dict[str, pa.Column] = {}
    for c in spec.all_columns:
        required = c in spec.required
        nullable = not required or c in spec.nullable or c == "customer_id" and name == "opportunities"
        checks: list[pa.Check] = []
        dtype = None
        if c in spec.dates:
            dtype = "datetime64[ns]"
        elif c in spec.numbers:
            dtype = "float64"
            checks.append(pa.Check(lambda s: np.isfinite(s) | s.isna(), name="finite"))
            if name in ("invoices", "opportunities", "opportunity_snapshots", "targets") or c in ("credit_limit",):
                # a plain Check: pandera's Check.ge ignores `name`, and the name is the message
                checks.append(pa.Check(lambda s: s >= 0, name=f"{c} not negative"))
            if c == "rep_probability":
                checks.append(pa.Check(lambda s: s <= 1, name="rep_probability between 0 and 1"))
        if c == "stage" and stages is not None:
            allowed = sorted(set(stages.canonical().values()))
            checks.append(pa.Check.isin(allowed, name="known stage"))
        if c == "outcome":
            checks.append(pa.Check.isin(["won", "lost"], name="outcome is won/lost/blank"))
        if c == "rep_category":
            checks.append(pa.Check.isin(list(REP_CATEGORIES)))   # named by its values in the message
        cols[c] = pa.Column(dtype, checks=checks, nullable=nullable, required=required)
    df_checks = []
    if name == "invoices":
        df_checks += [_ordered("due_date", "issue_date"), _ordered("paid_date", "issue_date")]
    if name == "opportunities":
        df_checks += [_ordered("closed_date", "created_date")]
    return pa.DataFrameSchema(cols, checks=df_checks, strict=False, unique=[spec.key] if spec.key else None)


# ------------------------------------------------------------------ coercion helpers

def _line_numbers(df: pd.DataFrame, header: bool) -> pd.Index:
    return pd.RangeIndex(len(df)) + (2 if header else 1)


def _offending(df: pd.DataFrame, mask: pd.Series | np.ndarray, cols: Iterable[str]) -> pd.DataFrame:
    cols = [c for c in cols if c in df.columns]
    out = df.loc[np.asarray(mask), cols].head(5)
    out.index.name = "line"
    return out


def normalise_ids(s: pd.Series) -> pd.Series:
    """Ids as strings: numbers without '.0', whitespace stripped, blanks -> NA."""
    if pd.api.types.is_float_dtype(s):
        ok = s.notna() & np.isfinite(s)
        out = pd.Series(pd.NA, index=s.index, dtype="str")
        whole = ok & (s == np.floor(s.where(ok, 0)))
        out[whole] = s[whole].astype("int64").astype("str")
        out[ok & ~whole] = s[ok & ~whole].astype("str")
        return out
    if pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.astype("str")
    t = s.astype("str").str.strip()
    t = t.where(~t.str.match(_INT_FLOAT), t.str.replace(r"\.0+$", "", regex=True))
    return t.where(s.notna() & (t != ""))


# Beyond this no amount, quantity or price is real, and sums of such values overflow to inf.
NUMBER_LIMIT = 1e15


def _to_number(s: pd.Series, decimal: str) -> tuple[pd.Series, pd.Series]:
    """Return (values, bad) where bad marks non-blank cells that are not finite numbers."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = s.astype("float64")
        return v, v.notna() & ~(np.abs(v) <= NUMBER_LIMIT)
    t = s.astype("str").str.strip()
    blank = s.isna() | (t == "")
    t = t.str.replace(_NUM_JUNK, "", regex=True)
    neg = t.str.match(r"^\(.*\)$")  # accounting negatives: (12.50)
    t = t.str.strip("()")
    thousands = "." if decimal == "," else ","
    # A thousands separator only between groups of three digits: '1,50' is not 150.
    grouped = t.str.fullmatch(rf"[+-]?\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+(?:{re.escape(decimal)}\d*)?")
    misgrouped = t.str.contains(thousands, regex=False).fillna(False) & ~grouped.fillna(False).astype(bool)
    if decimal == ",":
        t = t.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        t = t.str.replace(",", "", regex=False)
    v = pd.to_numeric(t.where(~blank & ~misgrouped), errors="coerce").astype("float64")
    v = v.where(~neg, -v)
    bad = ~blank & (v.isna() | ~(np.abs(v) <= NUMBER_LIMIT))  # also inf and 1e308 (sums overflow)
    return v.where(~bad), bad


def _to_datetime(s: pd.Series, fmt: str | None, dayfirst: bool) -> tuple[pd.Series, pd.Series]:
    """Return (datetime64[ns] naive, bad) where bad marks non-blank unparsable cells."""
    if pd.api.types.is_datetime64_any_dtype(s):
        v = s.dt.tz_convert(None) if getattr(s.dt, "tz", None) is not None else s
        return v.astype("datetime64[ns]"), pd.Series(False, index=s.index)
    t = s.astype("str").str.strip()
    blank = s.isna() | (t == "")
    vals = t.where(~blank)
    # utc=True: mixed UTC offsets parse too; naive values stay as they are (see below).
    kwargs = {"errors": "coerce", "dayfirst": dayfirst, "utc": True}
    if fmt:
        kwargs["format"] = fmt
    with warnings.catch_warnings():
        # "could not infer format": unparsable cells are counted and reported by us instead
        warnings.simplefilter("ignore", UserWarning)
        v = pd.to_datetime(vals, **kwargs)
        if not fmt and (v.isna() & ~blank).any():
            # The format is inferred from the first value; ISO dates with and without a
            # time of day ('2024-01-05', '2024-01-05 13:10') still belong together.
            iso = pd.to_datetime(vals, **{**kwargs, "format": "ISO8601"})
            if (iso.isna() & ~blank).sum() < (v.isna() & ~blank).sum():
                v = iso
    if getattr(v.dt, "tz", None) is not None:
        v = v.dt.tz_convert(None)
    # Outside 1900..2200 is a typo, and would not fit nanoseconds anyway.
    years = v.dt.year
    v = v.where((years >= 1900) & (years <= 2200))
    bad = ~blank & v.isna()
    return v.astype("datetime64[ns]"), bad


# ------------------------------------------------------------------ the boundary

def _apply_mapping(raw: pd.DataFrame, spec: TableSpec, mapping: dict[str, str], file: str,
                   strict: bool) -> pd.DataFrame:
    unknown = [k for k in mapping if k not in spec.all_columns]
    if unknown and strict:
        raise InputError(f"--columns/columns: '{unknown[0]}' is not a {spec.name} column "
                         f"(canonical columns: {', '.join(spec.all_columns)})", file=file)
    rename: dict[str, str] = {}
    copies: dict[str, str] = {}  # a second canonical name mapped to an already mapped column
    for canon, src in mapping.items():
        if canon not in spec.all_columns:
            continue
        if src not in raw.columns:
            if not strict:
                continue
            close = difflib.get_close_matches(src, list(map(str, raw.columns)), n=1, cutoff=0.6)
            raise InputError(f"the column mapping names '{src}' for '{canon}', but the file has no such column",
                             file=file, column=src,
                             hint=(f"did you mean '{close[0]}'? " if close else "")
                             + f"columns in the file: {', '.join(map(str, raw.columns[:30]))}")
        if src in rename:
            copies[canon] = rename[src]
        else:
            rename[src] = canon
    # A canonical name may already exist in the file *and* be mapped from elsewhere: the
    # mapping wins, the file's own column is set aside (whatever its position).
    targets = [*rename.values(), *copies]
    shadowed = {c: f"{c} (not mapped)" for c in targets if c in raw.columns and c not in rename}
    df = raw.rename(columns=shadowed).rename(columns=rename)
    df = df.loc[:, ~df.columns.duplicated(keep="last")]
    for canon, first in copies.items():
        df[canon] = df[first]
    return df


# Common export names of the canonical columns (compared lower case, letters and digits only).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "customer_id": ("customerid", "customer", "custid", "customerno", "customernumber", "clientid", "client",
                    "accountid", "account", "accountnumber", "buyerid"),
    "timestamp": ("invoicedate", "date", "orderdate", "transactiondate", "txndate", "purchasedate", "saledate",
                  "datetime", "time", "createdat"),
    "amount": ("total", "sales", "revenue", "value", "linetotal", "netamount", "amounttotal", "totalamount",
               "sum", "price", "salesamount", "invoiceamount", "closevalue", "dealvalue"),
    "invoice_id": ("invoiceno", "invoice", "invoicenumber", "invoicenum", "orderid", "orderno", "billid"),
    "quantity": ("qty", "units", "quantityordered"),
    "unit_price": ("unitprice", "price", "priceeach"),
    "issue_date": ("invoicedate", "issuedate", "dateissued", "billdate", "date"),
    "due_date": ("duedate", "paymentdue", "dueon"),
    "paid_date": ("paiddate", "paymentdate", "settleddate", "cleareddate", "datepaid"),
    "opportunity_id": ("opportunityid", "oppid", "opportunity", "dealid", "deal"),
    "created_date": ("createddate", "created", "createdat", "engagedate", "opendate", "createdon"),
    "stage": ("dealstage", "status", "salesstage", "pipelinestage"),
    "changed_at": ("changedate", "changed", "date", "timestamp", "modifiedat"),
}


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def suggest_column(canon: str, columns: Iterable[str], taken: Iterable[str] = (), *,
                   fuzzy: bool = True) -> str | None:
    """The file column that most likely holds canonical column `canon`, or None: the same name
    up to case and punctuation, else a known synonym, else (`fuzzy`) a close spelling."""
    cols = [str(c) for c in columns if str(c) not in set(taken)]
    by_key: dict[str, str] = {}
    for c in cols:
        by_key.setdefault(_key(c), c)
    for k in (_key(canon), *SYNONYMS.get(canon, ())):
        if k in by_key:
            return by_key[k]
    if not fuzzy:
        return None
    close = difflib.get_close_matches(_key(canon), list(by_key), n=1, cutoff=0.75)
    return by_key[close[0]] if close else None


def _check_required(df: pd.DataFrame, spec: TableSpec, file: str) -> None:
    cols = list(map(str, df.columns))
    need = [c for c in spec.required if c not in df.columns]
    if spec.name == "transactions" and "amount" in need and {"quantity", "unit_price"} <= set(cols):
        need.remove("amount")
    if not need:
        return
    suggested: dict[str, str] = {}
    taken = set(spec.all_columns) & set(cols)
    wanted = list(need)
    if spec.name == "transactions" and "amount" in need and not suggest_column("amount", cols, taken):
        # no amount column: quantity x unit_price will do, if the file has them
        wanted += [c for c in ("quantity", "unit_price") if c not in cols]
    for c in wanted:
        guess = suggest_column(c, cols, [*taken, *suggested.values()])
        if guess:
            suggested[c] = guess
    for c in spec.optional:  # obvious optional ones too, so the suggested mapping is complete
        guess = None if c in cols or c in suggested else suggest_column(
            c, cols, [*taken, *suggested.values()], fuzzy=False)
        if guess and suggested:
            suggested[c] = guess
    if spec.name == "transactions" and "amount" in need and {"quantity", "unit_price"} <= set(suggested) | set(cols):
        need.remove("amount")  # amount is then computed: do not also ask for it
        if not need:
            need = [c for c in ("quantity", "unit_price") if c in suggested]
    names = ", ".join(f"'{c}'" for c in need)
    what = f"required column {names} is" if len(need) == 1 else f"required columns {names} are"
    hint = (f"map {'it' if len(suggested) == 1 else 'them'}: --columns "
            + ",".join(f"{k}={v}" for k, v in suggested.items()) if suggested
            else f"map your column: --columns {need[0]}=YourColumn")
    raise InputError(f"{what} missing from {spec.name}", file=file, column=need[0],
                     hint=f"{hint}; columns in the file: {', '.join(cols[:30])}" + _delimiter_hint(cols))


def _delimiter_hint(cols: list[str]) -> str:
    """When the header was not split, say which delimiter it seems to use."""
    if len(cols) != 1:
        return ""
    for sep in (";", ",", "\t", "|", ":"):
        if sep in cols[0]:
            shown = "\\t" if sep == "\t" else sep
            return (f"\nthe header was read as one column; the file looks delimited by '{shown}' "
                    "(drop read.sep to sniff it, or set read.sep)")
    return ""


def prepare_table(raw: pd.DataFrame, name: str, *, file: str, mapping: dict[str, str] | None = None,
                  stages: StageConfig | None = None, quality: QualityConfig | None = None,
                  date_format: str | None = None, dayfirst: bool = False, decimal: str = ".",
                  header: bool = True, strict_mapping: bool = True,
                  as_of: dt.date | None = None, keep: Sequence[str] = ()) -> tuple[pd.DataFrame, QualityReport]:
    """Map, coerce, clean and validate one raw table; see the module docstring for the policy.
    `keep`: columns of the user's that are not canonical but are read later (tier criteria on
    customers), kept as read on the rows that survive cleaning."""
    spec = SPECS[name]
    stages = stages or StageConfig()
    quality = quality or QualityConfig()
    report = QualityReport(table=name, file=file, rows_read=len(raw))
    report.notes.extend(raw.attrs.get(io.READ_NOTES, ()))  # e.g. lines read as latin-1
    if len(raw) == 0:
        raise InputError(f"{name} table is empty (no data rows)", file=file)
    df = _apply_mapping(raw, spec, mapping or {}, file, strict_mapping)
    _check_required(df, spec, file)
    df.index = _line_numbers(df, header)
    unmapped = df[[c for c in df.columns if c not in spec.all_columns]]
    kept = unmapped[[c for c in dict.fromkeys(keep) if c in unmapped.columns]]
    df = df[[c for c in spec.all_columns if c in df.columns]].copy()
    raw_view = df.copy()  # for messages: the user's values, not ours

    for c in spec.ids:
        if c in df.columns:
            df[c] = normalise_ids(df[c])
    # Exact duplicates are judged on the user's values after id normalisation. Events
    # (tables without a key) over the whole row: two orders that differ only in a column we
    # do not read are two orders. Keyed tables over what we read: same id, same data.
    judged = df if spec.key else pd.concat([df, unmapped], axis=1)
    dup = judged.astype("str").duplicated(keep="first")
    report.drop("exact_duplicate", int(dup.sum()))
    df = df[~dup]

    if spec.attributable_by:
        blank = df[spec.attributable_by].isna()
        report.drop(f"blank_{spec.attributable_by}", int(blank.sum()))
        df = df[~blank]

    def _bad(col: str, bad: pd.Series, what: str, hint: str) -> None:
        nonlocal df
        n = int(bad.sum())
        if n == 0:
            return
        if n > quality.max_bad_values:
            raise InputError(f"{n} of {len(df)} rows have {what}", file=file, column=col,
                             rows=_offending(raw_view, bad.reindex(raw_view.index, fill_value=False), [col]),
                             hint=hint)
        report.drop(f"bad_{col}", n)
        df = df[~bad]

    for c in spec.ids:  # a NUL byte would split one id into phantoms that reach the outputs
        if c in df.columns:
            nul = df[c].str.contains("\x00", regex=False).fillna(False).astype(bool)
            _bad(c, nul, "NUL bytes (\\0) inside the id",
                 "the export is damaged (binary data in a text column): re-export the file")

    for c in spec.dates:
        if c not in df.columns:
            continue
        v, bad = _to_datetime(df[c], date_format, dayfirst)
        if date_format != "mixed" and bad.any():
            _refuse_mixed_dates(df[c], bad, c, dayfirst, file, raw_view)
        _bad(c, bad, "unparsable dates",
             "set read.date_format in the pipeline (e.g. '%d/%m/%Y', 'ISO8601' or 'mixed') or read.dayfirst")
        df[c] = v[df.index]
        if c in spec.required:
            blank = df[c].isna()
            report.drop(f"blank_{c}", int(blank.sum()))
            df = df[~blank]
    for c in spec.numbers:
        if c not in df.columns:
            continue
        v, bad = _to_number(df[c], decimal)
        _bad(c, bad, f"values that are not finite numbers within ±{NUMBER_LIMIT:.0e}",
             "remove text from the column, or set read.decimal for ',' decimals")
        if pd.api.types.is_object_dtype(df[c]) or pd.api.types.is_string_dtype(df[c]):
            plain = pd.to_numeric(df[c].astype("str").str.strip(), errors="coerce").notna()
            n_fixed = int((~plain & v[df.index].notna()).sum())
            if n_fixed:
                report.notes.append(f"{c}: {n_fixed:,} values with currency symbols, thousands separators "
                                    "or (negatives) parsed")
        df[c] = v[df.index]
        if c in spec.required and c not in spec.nullable:
            blank = df[c].isna()
            report.drop(f"blank_{c}", int(blank.sum()))
            df = df[~blank]

    if name == "transactions":
        if "amount" not in df.columns:
            df["amount"] = (df["quantity"] * df["unit_price"]).round(10)
            blank = df["amount"].isna()
            report.drop("blank_amount", int(blank.sum()))
            df = df[~blank]
        df = _transactions_amounts(df, raw_view, file)
        n_returns = int((df["amount"] < 0).sum())
        if n_returns:
            report.notes.append(f"{n_returns:,} returns/cancellations (negative amounts) kept: they reduce net spend")
    if name in ("opportunities", "stage_history"):
        df = _stages(df, raw_view, file, stages)
    if name == "opportunities":
        df = _outcomes(df, raw_view, file)
    if "rep_category" in df.columns:
        df["rep_category"] = rep_categories(df["rep_category"])

    if spec.key:
        dupkey = df[spec.key].duplicated(keep=False)
        if dupkey.any():
            raise InputError(f"{int(dupkey.sum())} rows share an id with different data", file=file,
                             column=spec.key, rows=_offending(raw_view, dupkey.reindex(raw_view.index, fill_value=False),
                                                              raw_view.columns),
                             hint="each id must appear once; exact duplicate rows are dropped automatically")
    _validate(df, name, stages, file, raw_view)
    if len(df) == 0:
        raise InputError(f"no usable rows left in {name} after cleaning "
                         f"(dropped: {report.dropped})", file=file)
    if name == "transactions":
        cats = np.sort(df["customer_id"].unique())
        df["customer_id"] = pd.Categorical(df["customer_id"], categories=cats)
    if as_of is not None and spec.dates:   # targets carry no date
        date_col = spec.dates[0]
        n_future = int((df[date_col] >= pd.Timestamp(as_of)).sum()) if date_col in df.columns else 0
        if n_future:
            report.notes.append(f"{n_future:,} rows on/after as_of (features ignore, labels use)")
    report.rows_kept = len(df)
    if len(kept.columns):
        df = df.join(kept)
    return df.reset_index(drop=True), report


def _refuse_mixed_dates(s: pd.Series, bad: pd.Series, col: str, dayfirst: bool, file: str,
                        raw_view: pd.DataFrame) -> None:
    """Unparsable cells that are dates in another format are not typos: refuse rather than drop."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        other = pd.to_datetime(s[bad].astype("str").str.strip(), format="mixed", dayfirst=dayfirst,
                               errors="coerce", utc=True)
    # a plausible year, and two number groups: a bare '12' is not a date in another format
    plausible = other.dt.year.between(1900, 2200) & s[bad].astype("str").str.contains(r"\d+\D+\d+")
    mixed = (other.notna() & plausible).reindex(s.index, fill_value=False)
    if not mixed.any():
        return
    first = s[~bad & s.notna()]
    example = f" (e.g. '{s[mixed].iloc[0]}' next to '{first.iloc[0]}')" if len(first) else ""
    raise InputError(f"{int(mixed.sum())} rows have dates in a different format than the rest{example}; "
                     "they are not dropped because each one may be a valid date", file=file, column=col,
                     rows=_offending(raw_view, mixed.reindex(raw_view.index, fill_value=False), [col]),
                     hint="pass --date-format mixed (read.date_format: mixed) to parse each date on its own, "
                          "with read.dayfirst: true if 05/01/2024 means 5 January; or fix the export")


def _transactions_amounts(df: pd.DataFrame, raw_view: pd.DataFrame, file: str) -> pd.DataFrame:
    if "amount" not in df.columns:
        df["amount"] = (df["quantity"] * df["unit_price"]).round(10)
    if "quantity" in df.columns:
        # A negative amount is a return only when the quantity says so too.
        clash = df["quantity"].notna() & (((df["amount"] < 0) & (df["quantity"] > 0))
                                          | ((df["amount"] > 0) & (df["quantity"] < 0)))
        if clash.any():
            raise InputError(f"{int(clash.sum())} rows have an amount whose sign disagrees with quantity "
                             "(a negative amount must be a return with negative quantity)", file=file,
                             column="amount",
                             rows=_offending(raw_view, clash.reindex(raw_view.index, fill_value=False),
                                             ["customer_id", "timestamp", "amount", "quantity", "unit_price"]))
    return df


def _stages(df: pd.DataFrame, raw_view: pd.DataFrame, file: str, stages: StageConfig) -> pd.DataFrame:
    canon = stages.canonical()
    norm = df["stage"].map(lambda s: canon.get(normalise_stage(s)) if isinstance(s, str) else None)
    unknown = norm.isna()
    if unknown.any():
        vals = sorted(set(df.loc[unknown, "stage"].dropna().astype(str)))[:8]
        raise InputError(f"{int(unknown.sum())} rows have an unknown or blank stage {vals}", file=file,
                         column="stage", rows=_offending(raw_view, unknown.reindex(raw_view.index, fill_value=False),
                                                         raw_view.columns),
                         hint="declare the stage vocabulary under 'stages:' (open/won/lost) in the pipeline YAML; "
                              f"known: {sorted(set(canon))}")
    df["stage"] = norm.astype("str")
    return df


def rep_categories(s: pd.Series) -> pd.Series:
    """rep_category spellings ('Best Case', 'best-case', 'omit') as REP_CATEGORIES; anything
    else is kept as written, for the schema check to name."""
    def one(v):
        if not isinstance(v, str):
            return v
        k = re.sub(r"[\s_-]+", "_", v.strip().lower())
        return {"omit": "omitted", "bestcase": "best_case", "best": "best_case"}.get(k, k)
    return s.map(one).astype("str")


def _outcomes(df: pd.DataFrame, raw_view: pd.DataFrame, file: str) -> pd.DataFrame:
    from_stage = df["stage"].where(df["stage"].isin(["won", "lost"]))
    if "outcome" in df.columns:
        o = df["outcome"].map(lambda s: _OUTCOMES.get(normalise_stage(s), "?") if isinstance(s, str) else None)
        bad = o == "?"
        if bad.any():
            raise InputError("outcome must be won, lost or blank (open)", file=file, column="outcome",
                             rows=_offending(raw_view, bad.reindex(raw_view.index, fill_value=False),
                                             ["opportunity_id", "stage", "outcome"]))
        clash = from_stage.notna() & o.notna() & (from_stage != o)
        if clash.any():
            raise InputError("stage and outcome disagree", file=file, column="outcome",
                             rows=_offending(raw_view, clash.reindex(raw_view.index, fill_value=False),
                                             ["opportunity_id", "stage", "outcome"]))
        df["outcome"] = o.fillna(from_stage).astype("str")
    else:
        df["outcome"] = from_stage.astype("str")
    if "closed_date" in df.columns:
        open_with_close = df["outcome"].isna() & df["closed_date"].notna()
        if open_with_close.any():
            raise InputError(f"{int(open_with_close.sum())} open deals (no won/lost outcome) have a closed_date",
                             file=file, column="closed_date",
                             rows=_offending(raw_view, open_with_close.reindex(raw_view.index, fill_value=False),
                                             ["opportunity_id", "stage", "closed_date"]),
                             hint="if it is a planned date, map it to expected_close_date")
    closed = df["outcome"].notna()
    no_date = closed if "closed_date" not in df.columns else closed & df["closed_date"].isna()
    if no_date.any():
        raise InputError(f"{int(no_date.sum())} won/lost deals have no closed_date, so they cannot be placed in time",
                         file=file, column="closed_date",
                         rows=_offending(raw_view, no_date.reindex(raw_view.index, fill_value=False),
                                         ["opportunity_id", "stage", "closed_date"]),
                         hint="map the close date column: --columns closed_date=YourCloseDate")
    return df


def _validate(df: pd.DataFrame, name: str, stages: StageConfig, file: str, raw_view: pd.DataFrame) -> None:
    try:
        with _quiet_pyspark():
            schema(name, stages).validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases
        first = fc.iloc[0]
        sel = fc[(fc["column"].astype(str) == str(first["column"])) & (fc["check"].astype(str) == str(first["check"]))]
        idx = pd.Index(sel["index"].dropna().unique())
        rows = raw_view.loc[raw_view.index.intersection(idx)].head(5)
        rows.index.name = "line"
        column = None if pd.isna(first["column"]) or first["column"] == name else str(first["column"])
        if first["schema_context"] == "DataFrameSchema":
            # e.g. 'closed_date on or after created_date' is about closed_date
            head = str(first["check"]).split(" ")[0]
            column = head if head in df.columns else column
        raise InputError(f"check '{first['check']}' failed on {len(idx) or len(sel)} rows", file=file,
                         column=column, rows=rows) from None


def load_table(name: str, spec: InputSpec, *, stages: StageConfig | None = None,
               quality: QualityConfig | None = None, strict_mapping: bool = True,
               as_of: dt.date | None = None) -> tuple[pd.DataFrame, QualityReport]:
    """Read one input file and return its canonical frame and quality report."""
    raw = io.read_input(spec)
    return prepare_table(raw, name, file=spec.source, mapping=spec.columns, stages=stages, quality=quality,
                         date_format=spec.read.date_format, dayfirst=spec.read.dayfirst,
                         decimal=spec.read.decimal, header=spec.read.header,
                         strict_mapping=strict_mapping, as_of=as_of)
