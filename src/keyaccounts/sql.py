"""SQL sources: an input table given as the rows of a query.

`inputs.<table>: {sql: "SELECT ...", connection: URL}` in a pipeline (or `--sql TABLE=QUERY
--connection URL` on the command line). URLs are SQLAlchemy's: ``sqlite:///f.db``,
``postgresql://user@host/db`` (driver psycopg), any other dialect whose driver is installed;
``duckdb:///f.duckdb`` runs through DuckDB's own Python driver (no SQLAlchemy dialect needed).
``${VAR}`` in the URL is expanded when connecting, so a password can stay in the environment
(PostgreSQL also reads PGPASSWORD itself). Passwords are never printed: every message and
label goes through `redact_url`, and driver messages have any password replaced.

The query runs in a transaction that is rolled back; files are opened read-only, and a missing
database file is an error instead of a new empty database. The rows keep the driver's types
(like Parquet) and go through the same mapping, validation and quality summary as a file.
SQLAlchemy and DuckDB are imported only when a query runs.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .errors import InputError

REDACTED = "***"
LABEL_PREFIX = "sql ["  # how a query input's name (source_label) starts
CONNECT_TIMEOUT_S = 10
# scheme://user:PASSWORD@host and ?password=... (libpq, ODBC-style spellings)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
_PARAM_PASSWORD = re.compile(r"(?i)(?P<head>[?&;](?:password|passwd|pwd)=)(?P<pw>[^&;\s]*)")
_HINT = ("check the URL (sqlite:///f.db, duckdb:///f.duckdb, postgresql://user@host:5432/db), that the server "
         "is up and the password is set (in the URL or e.g. PGPASSWORD)")


def redact_url(text: str) -> str:
    """`text` with every password of a URL (user:PASSWORD@, ?password=) replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + (REDACTED if m["pw"] else ""), str(text))
    return _PARAM_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)


def _secrets(url: str) -> list[str]:
    """The passwords that a message about `url` must not show (also PGPASSWORD)."""
    found = [m["pw"] for m in _URL_PASSWORD.finditer(url)] + [m["pw"] for m in _PARAM_PASSWORD.finditer(url)]
    found.append(os.environ.get("PGPASSWORD", ""))
    return sorted({s for s in found if s}, key=len, reverse=True)


def _scrub(message: str, secrets: list[str]) -> str:
    """A driver's message, first meaningful line, URLs and known passwords hidden."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    text = redact_url(lines[0] if lines else "")
    for s in secrets:
        text = text.replace(s, REDACTED)
    return text[:400]


def source_label(sql: str, connection: str) -> str:
    """How messages and logs name a query input: the connection with its password hidden."""
    one_line = " ".join(str(sql).split())
    return f"{LABEL_PREFIX}{one_line[:60]}{'...' if len(one_line) > 60 else ''}] on {redact_url(connection)}"


def read_query(sql: str, connection: str, *, label: str | None = None) -> pd.DataFrame:
    """The rows of `sql` on `connection` as a frame (column names stripped). InputError (exit 2)
    naming the redacted connection when the database cannot be reached, the file is missing, the
    driver is not installed, the query fails or returns no column."""
    url = os.path.expandvars(connection)
    label = label or source_label(sql, connection)
    secrets = _secrets(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        raise InputError(f"connection '{redact_url(connection)}' is not a database URL", file=label, hint=_HINT)
    if scheme == "duckdb":
        df = _duckdb(sql, url, label, secrets)
    else:
        df = _sqlalchemy(sql, url, label, secrets)
    if df.shape[1] == 0:
        raise InputError("the query returned no columns", file=label)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _database_file(url: str, scheme: str) -> Path | None:
    """The database file of a sqlite:/// or duckdb:/// URL (None: in memory or a server)."""
    if not url.lower().startswith(f"{scheme}:///"):
        return None
    path = url[len(scheme) + 4:].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).expanduser()


def _check_file(path: Path | None, label: str) -> None:
    if path is not None and not path.is_file():
        raise InputError(f"database file {path} not found", file=label, hint=_HINT)


def _duckdb(sql: str, url: str, label: str, secrets: list[str]) -> pd.DataFrame:
    try:
        import duckdb
    except ImportError:
        raise InputError("duckdb:/// needs the duckdb package (pip install duckdb)", file=label) from None
    path = _database_file(url, "duckdb")
    _check_file(path, label)
    try:
        con = duckdb.connect(str(path) if path else ":memory:", read_only=path is not None)
    except duckdb.Error as e:
        raise InputError(f"cannot open the database: {_scrub(e, secrets)}", file=label, hint=_HINT) from None
    try:
        return con.execute(sql).df()
    except duckdb.Error as e:
        raise InputError(f"the query failed: {_scrub(e, secrets)}", file=label) from None
    finally:
        con.close()


def _engine(url: str, label: str, secrets: list[str]):
    """A SQLAlchemy engine for `url`; postgresql:// picks psycopg (3) and a connect timeout, so an
    unreachable server is an error after seconds, not minutes."""
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    try:
        u = sa.engine.make_url(url)
    except ArgumentError as e:
        raise InputError(f"connection is not a valid URL ({_scrub(e, secrets)})", file=label, hint=_HINT) from None
    kwargs = {}
    if u.get_backend_name() == "postgresql":
        u = u.set(drivername="postgresql+psycopg") if u.drivername == "postgresql" else u
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if u.get_backend_name() == "sqlite":
        _check_file(_database_file(url, "sqlite"), label)
    try:
        return sa.create_engine(u, **kwargs)
    except (NoSuchModuleError, ImportError) as e:
        raise InputError(f"no driver for {u.drivername} ({_scrub(e, secrets)})", file=label,
                         hint="install the driver, e.g. pip install 'psycopg[binary]' for PostgreSQL") from None


def _sqlalchemy(sql: str, url: str, label: str, secrets: list[str]) -> pd.DataFrame:
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    engine = _engine(url, label, secrets)
    try:
        try:
            conn = engine.connect()
        except (SQLAlchemyError, OSError) as e:
            why = _scrub(getattr(e, "orig", None) or e, secrets)
            raise InputError(f"cannot connect to the database: {why}", file=label, hint=_HINT) from None
        with conn:
            try:
                # a plain string runs as the driver's SQL (no ':name' bind parsing of text())
                return pd.read_sql_query(sql, conn)
            except (DBAPIError, SQLAlchemyError, pd.errors.DatabaseError) as e:
                cause = e.__cause__ if isinstance(e, pd.errors.DatabaseError) and e.__cause__ else e
                why = _scrub(getattr(cause, "orig", None) or cause, secrets)
                raise InputError(f"the query failed: {why}", file=label) from None
            finally:
                conn.rollback()  # read only: nothing the query did is kept
    finally:
        engine.dispose()
