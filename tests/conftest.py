"""Shared fixtures: builders of tiny canonical tables (the forms schemas.load_table returns).

Each fixture returns a function, so tests type their rows by hand. Session-scoped so that
hypothesis tests can use them too.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keyaccounts.config import FeatureConfig
from keyaccounts.features import Tables
from keyaccounts.synth import STAGES_OPEN, synthesize

_TXN = ["customer_id", "timestamp", "amount"]


def _dates(values) -> pd.Series:
    return pd.Series(pd.to_datetime(pd.Series(values, dtype="object"), format="ISO8601")).astype("datetime64[ns]")


def _ids(values) -> pd.Series:
    return pd.Series([None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
                      for v in values], dtype="str")


def _canonical(df: pd.DataFrame, *, ids=(), dates=(), numbers=()) -> pd.DataFrame:
    df = df.reset_index(drop=True)
    for c in ids:
        if c in df.columns:
            df[c] = _ids(df[c].tolist())
    for c in dates:
        if c in df.columns:
            df[c] = _dates(df[c].tolist())
    for c in numbers:
        if c in df.columns:
            df[c] = df[c].astype("float64")
    return df


def txns_frame(rows, *, cost: bool = False) -> pd.DataFrame:
    """rows: (customer_id, timestamp, amount[, cost]). customer_id becomes a categorical with
    sorted string categories, as the loader makes it."""
    cols = _TXN + (["cost"] if cost else [])
    df = _canonical(pd.DataFrame(list(rows), columns=cols), dates=("timestamp",), numbers=("amount", "cost"))
    return recategorise(df)


def recategorise(txns: pd.DataFrame) -> pd.DataFrame:
    """Re-create transactions.customer_id as the loader would, from all ids now present."""
    df = txns.copy()
    ids = df["customer_id"].astype("str")
    df["customer_id"] = pd.Categorical(ids, categories=np.sort(ids.unique()))
    return df


def customers_frame(rows, columns=("customer_id", "signup_date", "credit_limit")) -> pd.DataFrame:
    return _canonical(pd.DataFrame(list(rows), columns=list(columns)), ids=("customer_id", "owner"),
                      dates=("signup_date",), numbers=("credit_limit",))


def invoices_frame(rows) -> pd.DataFrame:
    """rows: (invoice_id, customer_id, issue_date, due_date, amount, paid_date or None)."""
    cols = ["invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date"]
    return _canonical(pd.DataFrame(list(rows), columns=cols), ids=("invoice_id", "customer_id"),
                      dates=("issue_date", "due_date", "paid_date"), numbers=("amount",))


OPP_COLUMNS = ("opportunity_id", "customer_id", "owner", "created_date", "stage", "amount",
               "expected_close_date", "closed_date", "outcome")


def opps_frame(rows, columns=OPP_COLUMNS) -> pd.DataFrame:
    return _canonical(pd.DataFrame(list(rows), columns=list(columns)),
                      ids=("opportunity_id", "customer_id", "owner", "stage", "outcome"),
                      dates=("created_date", "expected_close_date", "closed_date"), numbers=("amount",))


def history_frame(rows) -> pd.DataFrame:
    """rows: (opportunity_id, stage, changed_at)."""
    return _canonical(pd.DataFrame(list(rows), columns=["opportunity_id", "stage", "changed_at"]),
                      ids=("opportunity_id", "stage"), dates=("changed_at",))


@pytest.fixture(scope="session")
def make_txns():
    return txns_frame


@pytest.fixture(scope="session")
def make_customers():
    return customers_frame


@pytest.fixture(scope="session")
def make_invoices():
    return invoices_frame


@pytest.fixture(scope="session")
def make_opps():
    return opps_frame


@pytest.fixture(scope="session")
def make_history():
    return history_frame


@pytest.fixture(scope="session")
def recat():
    return recategorise


def truncate_tables(t, as_of):
    """What an export taken at as_of would hold, from synthetic tables `t` (SynthTables)."""
    cut = pd.Timestamp(as_of)
    tx = t.transactions[t.transactions["timestamp"] < cut].copy()
    tx["customer_id"] = tx["customer_id"].cat.remove_unused_categories()
    opps = t.opportunities[t.opportunities["created_date"] < cut].copy()
    # What a file exported at as_of would say: deals closed later are still open then.
    later = opps["closed_date"] >= cut
    hist = t.stage_history[t.stage_history["changed_at"] < cut]
    last = hist.sort_values("changed_at").groupby("opportunity_id").tail(1).set_index("opportunity_id")["stage"]
    opps.loc[later, "stage"] = opps.loc[later, "opportunity_id"].map(last).fillna(STAGES_OPEN[0]).to_numpy()
    opps.loc[later, ["outcome"]] = pd.NA
    opps.loc[later, "closed_date"] = pd.NaT
    inv = t.invoices[t.invoices["issue_date"] < cut].copy()
    inv.loc[inv["paid_date"] >= cut, "paid_date"] = pd.NaT
    return Tables(tx, t.customers[t.customers["signup_date"] < cut], inv, opps, hist)


@pytest.fixture(scope="session")
def truncate():
    """Cut synthetic tables off at as_of, as a file exported on that day would be."""
    return truncate_tables


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`keyaccounts demo` on 300 synthetic customers, run once per test session through the CLI
    from an empty folder (shared by the xdist workers through a lock): namespace with workdir,
    cwd, output text, exit code, report path and tracking URI. Used by the report, browser, demo
    and notebook tests."""
    import fcntl
    import json
    import os
    from pathlib import Path
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from keyaccounts.cli import app

    repo = Path(__file__).resolve().parents[1]
    # Under xdist each worker's basetemp sits in the session's own folder: share the run there.
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    with open(root / "demo_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = root / "demo_run.json"
        if record.is_file():
            info = json.loads(record.read_text())
        else:
            cwd, workdir = root / "demo_cwd", root / "demo_work"
            cwd.mkdir()
            old = os.getcwd()
            os.chdir(cwd)
            try:
                res = CliRunner().invoke(app, ["demo", "--workdir", str(workdir), "--customers", "300", "--seed", "3",
                                               "--pipeline", str(repo / "pipelines" / "demo.yaml")])
            finally:
                os.chdir(old)
            info = {"workdir": str(workdir), "cwd": str(cwd), "output": res.output, "exit_code": res.exit_code}
            record.write_text(json.dumps(info))
    workdir = Path(info["workdir"])
    return SimpleNamespace(workdir=workdir, cwd=Path(info["cwd"]), output=info["output"], exit_code=info["exit_code"],
                           repo=repo, report=workdir / "out" / "demo" / "report.html",
                           tracking_uri=f"sqlite:///{(workdir / 'mlruns' / 'mlflow.db').as_posix()}")


# The trained workspace of the robustness tests (interrupt, concurrency, model mismatch),
# defined once here so that their modules share one training per session.
@pytest.fixture()
def edge_tables(make_txns, make_customers, make_invoices):
    """Same-day purchases, a return-only customer, a zero-amount row, a row on the as_of day
    (not read), a prospect, an invoice paid after as_of (unpaid then), costs partly unknown."""
    t = make_txns([
        ("a", "2024-01-10 09:00", 100.0, 60.0), ("a", "2024-01-10 17:00", 50.0, None),
        ("a", "2024-02-20", 30.0, 10.0), ("a", "2024-02-29 23:59", -20.0, -12.0),
        ("a", "2024-03-01 00:00", 999.0, 1.0),
        ("b", "2023-01-05", 10.0, None), ("b", "2023-06-05", 10.0, None), ("b", "2023-12-05", 40.0, None),
        ("c", "2024-02-01", -5.0, None), ("c", "2024-02-02", 0.0, None),
        ("d", "2024-03-05", 70.0, 7.0),
    ], cost=True)
    cust = make_customers([("a", "2023-12-01", 1000.0), ("e", "2024-01-15", 500.0), ("f", "2024-05-01", 0.0),
                           ("b", None, 0.0)])
    inv = make_invoices([("i1", "a", "2024-01-11", "2024-02-10", 150.0, "2024-03-10"),
                         ("i2", "b", "2023-12-06", "2024-01-05", 40.0, "2024-01-20"),
                         ("i3", "b", "2024-02-01", "2024-02-15", 10.0, None)])
    return Tables(t, cust, inv)


@pytest.fixture(scope="session")
def synthetic_cost_tables():
    """Synthetic tables over 2.5 years with a cost column (20 % unknown) and the non-default
    windows the engine comparisons use: (tables, FeatureConfig, the two as_of dates)."""
    s = synthesize(n_customers=250, seed=11, start="2023-01-01", end="2025-06-30")
    tx = s.transactions.copy()
    rng = np.random.default_rng(0)
    tx["cost"] = np.where(rng.random(len(tx)) < 0.2, np.nan, tx["amount"] * rng.uniform(0.3, 0.9, len(tx)))
    cfg = FeatureConfig(windows_days=[14, 180], growth_window_days=60, slope_months=6, overdue_threshold_days=45)
    return Tables(tx, s.customers, s.invoices), cfg, ("2024-02-01", "2025-05-17")


from robust_support import ws  # noqa: E402,F401
