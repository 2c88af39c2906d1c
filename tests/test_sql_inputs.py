"""Input tables from SQL (keyaccounts.sql): SQLite and DuckDB files always, a real PostgreSQL
server when one is reachable (.ci/run starts one: tools/ci_postgres.sh). The rows go through the
same mapping, validation and quality summary as files, so the features equal those of the CSV."""
from __future__ import annotations

import os
import sqlite3
import uuid

import pandas as pd
import pytest
from deploy_support import deployed, ka  # noqa: F401 - deployed: the session's trained workspace
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import InputSpec, Pipeline, load_pipeline
from keyaccounts.errors import ConfigError, InputError
from keyaccounts.pipeline import customer_features, load_inputs
from keyaccounts.sql import read_query, redact_url
from keyaccounts.synth import synthesize

runner = CliRunner()
AS_OF = "2025-10-01"
PG_DEFAULT = "postgresql://keyaccounts_test:ka-test-secret@127.0.0.1:5432/keyaccounts_test"


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    """Synthetic transactions and customers as CSV files, and the same rows typed (dates as
    datetimes, amounts as floats) as a database would hold them."""
    root = tmp_path_factory.mktemp("sqlin")
    t = synthesize(n_customers=60, start="2023-01-01", end="2025-12-31", seed=5)
    files, typed = {}, {}
    for name in ("transactions", "customers"):
        df = getattr(t, name)
        files[name] = root / f"{name}.csv"
        df.to_csv(files[name], index=False)
        typed[name] = pd.read_csv(files[name], parse_dates=["timestamp"] if name == "transactions" else ["signup_date"])
    return root, files, typed


def _features(inputs: dict[str, InputSpec]) -> pd.DataFrame:
    p = Pipeline(as_of=AS_OF, inputs=inputs)
    return customer_features(load_inputs(p), p)


def _csv_features(files) -> pd.DataFrame:
    return _features({n: InputSpec(path=str(f)) for n, f in files.items()})


@pytest.mark.slow
def test_sqlite_and_duckdb_features_equal_the_csv_features(csvs):
    import duckdb
    root, files, typed = csvs
    lite, duck = root / "sales.db", root / "sales.duckdb"
    with sqlite3.connect(lite) as con:
        for name, df in typed.items():
            df.to_sql(name, con, index=False, if_exists="replace")
    con = duckdb.connect(str(duck))
    for name, df in typed.items():
        con.register("frame", df)
        con.execute(f"create or replace table {name} as select * from frame")
        con.unregister("frame")
    con.close()
    want = _csv_features(files)
    for url in (f"sqlite:///{lite}", f"duckdb:///{duck}"):
        got = _features({n: InputSpec(sql=f"select * from {n}", connection=url) for n in typed})
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_mapping_validation_and_quality_as_for_files(csvs, tmp_path):
    root, files, typed = csvs
    db = tmp_path / "erp.db"
    tx = typed["transactions"].rename(columns={"customer_id": "KUNDE", "amount": "Betrag"})
    tx["timestamp"] = tx["timestamp"].astype(str)
    tx.loc[[3, 7], "timestamp"] = "not a date"  # two unparsable dates: dropped and counted
    with sqlite3.connect(db) as con:
        tx.to_sql("buchungen", con, index=False)
    spec = InputSpec(sql="SELECT * FROM buchungen", connection=f"sqlite:///{db}",
                     columns={"customer_id": "KUNDE", "amount": "Betrag"})
    loaded = load_inputs(Pipeline(as_of=AS_OF, inputs={"transactions": spec}))
    rep = loaded.reports[0]
    assert rep.rows_read == len(tx) and rep.rows_kept == len(tx) - 2 and sum(rep.dropped.values()) == 2
    assert rep.file == spec.source and "sqlite:///" in rep.file
    # a missing mapped column: the same message as for a file, naming the query's source
    bad = InputSpec(sql="SELECT KUNDE, timestamp FROM buchungen", connection=f"sqlite:///{db}",
                    columns={"customer_id": "KUNDE", "amount": "Betrag"})
    with pytest.raises(InputError) as e:
        load_inputs(Pipeline(as_of=AS_OF, inputs={"transactions": bad}))
    assert "Betrag" in str(e.value) and "SELECT KUNDE" in str(e.value)


def test_config_needs_exactly_one_source():
    with pytest.raises(ValueError, match="either path"):
        InputSpec(path="a.csv", sql="select 1", connection="sqlite:///x.db")
    with pytest.raises(ValueError, match="go together"):
        InputSpec(sql="select 1")
    with pytest.raises(ValueError, match="either path"):
        InputSpec()


def test_redaction():
    assert redact_url("postgresql://ann:s3cr%40t@db:5432/x") == "postgresql://ann:***@db:5432/x"
    assert redact_url("postgresql://ann@db/x?password=s3cr&sslmode=require") == \
        "postgresql://ann@db/x?password=***&sslmode=require"
    assert redact_url("sqlite:///a.db") == "sqlite:///a.db"
    spec = InputSpec(sql="select * from t", connection="postgresql://ann:hunter2@db/x")
    assert "hunter2" not in spec.source and "***" in spec.source


@pytest.mark.slow
def test_cli_sql_input_bad_query_and_missing_database_exit_2(csvs, tmp_path):
    root, files, typed = csvs
    db = tmp_path / "s.db"
    with sqlite3.connect(db) as con:
        typed["transactions"].to_sql("tx", con, index=False)
    out_csv, out_sql = tmp_path / "f_csv.csv", tmp_path / "f_sql.csv"
    res = runner.invoke(app, ["features", "-t", str(files["transactions"]), "--as-of", AS_OF, "--out", str(out_csv)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["features", "--sql", "transactions=SELECT * FROM tx", "--connection", f"sqlite:///{db}",
                              "--as-of", AS_OF, "--out", str(out_sql)])
    assert res.exit_code == 0, res.output
    assert out_sql.read_bytes() == out_csv.read_bytes()
    for args, says in ((["--sql", "transactions=SELECT * FROM nope", "--connection", f"sqlite:///{db}"],
                        "no such table: nope"),
                       (["--sql", "transactions=SELECT 1", "--connection", f"sqlite:///{tmp_path}/absent.db"],
                        "absent.db not found"),
                       (["--sql", "transactions=SELECT 1"], "--sql needs --connection"),
                       (["--sql", "deals=SELECT 1", "--connection", f"sqlite:///{db}"], "TABLE=QUERY")):
        out = tmp_path / "never.csv"
        res = runner.invoke(app, ["features", *args, "--as-of", AS_OF, "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert says in res.output and "Traceback" not in res.output
        assert not out.exists()


# ------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def postgres():
    """(url, engine) of the test server: $KEYACCOUNTS_TEST_POSTGRES, else tools/ci_postgres.sh's
    default. Skipped, with one line, when no server answers."""
    import sqlalchemy as sa
    url = os.environ.get("KEYACCOUNTS_TEST_POSTGRES") or PG_DEFAULT
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: PostgreSQL input tests skipped")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                              connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL server at {redact_url(url)} ({type(e).__name__}); run .ci/run or "
                    "tools/ci_postgres.sh, or set KEYACCOUNTS_TEST_POSTGRES")
    yield url, engine
    engine.dispose()


def test_postgres_features_equal_csv_and_password_never_shown(csvs, postgres, tmp_path):
    root, files, typed = csvs
    url, engine = postgres
    password = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    assert password, "the test URL carries a password, to check that it is never shown"
    suffix = uuid.uuid4().hex[:8]  # xdist workers and reruns share the server
    names = {n: f"{n}_{suffix}" for n in typed}
    try:
        for name, df in typed.items():
            df.to_sql(names[name], engine, index=False)
        want = _csv_features(files)
        got = _features({n: InputSpec(sql=f'select * from "{t}"', connection=url) for n, t in names.items()})
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        # the CLI: quality table and progress name the source without the password
        out = tmp_path / "f.csv"
        res = runner.invoke(app, ["validate", "--sql", f"transactions=select * from {names['transactions']}",
                                  "--connection", url, "--as-of", AS_OF])
        assert res.exit_code == 0, res.output
        assert password not in res.output and "***" in res.output
        # a failing query and a wrong password: exit 2, clear, no password
        for conn, says in ((url, "does not exist"), (url.replace(password, "wrong-" + password), "password")):
            res = runner.invoke(app, ["features", "--sql", "transactions=select * from absent_table",
                                      "--connection", conn, "--as-of", AS_OF, "--out", str(out)])
            assert res.exit_code == 2, res.output
            assert says in res.output and password not in res.output and "Traceback" not in res.output
        # the password from the environment: '${VAR}' expanded when connecting only
        os.environ["KA_TEST_PG_PASSWORD"] = password
        try:
            spec = InputSpec(sql=f"select count(*) as n from {names['transactions']}",
                             connection=url.replace(password, "${KA_TEST_PG_PASSWORD}"))
            assert read_query(spec.sql, spec.connection)["n"].iloc[0] == len(typed["transactions"])
            assert password not in spec.source
        finally:
            del os.environ["KA_TEST_PG_PASSWORD"]
    finally:
        import sqlalchemy as sa
        with engine.begin() as con:
            for t in names.values():
                con.execute(sa.text(f'drop table if exists "{t}"'))


def test_unreachable_server_is_exit_2_quickly(tmp_path):
    res = runner.invoke(app, ["features", "--sql", "transactions=select 1", "--connection",
                              "postgresql://ann:hunter2@127.0.0.1:1/x", "--as-of", AS_OF,
                              "--out", str(tmp_path / "f.csv")])
    assert res.exit_code == 2, res.output
    assert "cannot connect" in res.output and "hunter2" not in res.output and "***" in res.output


def test_input_error_type_for_library_use(tmp_path):
    with pytest.raises(InputError, match="not a database URL"):
        read_query("select 1", "just-a-file.db")
    with pytest.raises(ConfigError):

        y = tmp_path / "p.yaml"
        y.write_text("inputs:\n  transactions: {sql: 'select 1'}\n")
        load_pipeline(y)


@pytest.mark.slow
def test_score_from_postgres_equals_csv_and_mlflow_gets_no_password(deployed, postgres):
    """The trained workspace scores from PostgreSQL: the same list as from the CSV, and the score
    run's MLflow params name the source with the password replaced."""
    import sqlite3
    root = deployed
    url, engine = postgres
    password = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    table = f"tx_{uuid.uuid4().hex[:8]}"
    pd.read_csv(root / "d" / "tx.csv", parse_dates=["timestamp"]).to_sql(table, engine, index=False)
    try:
        common = ["--as-of", "2025-09-01", "--reasons", "none"]
        res = ka(root, "score", "--sql", f"transactions=select * from {table}", "--connection", url, *common,
                 "--out", "pg_scores.csv")
        assert res.returncode == 0, res.stdout
        assert password not in res.stdout
        res = ka(root, "score", "-t", "d/tx.csv", *common, "--out", "csv_scores.csv")
        assert res.returncode == 0, res.stdout
        # the models' columns, tiers and ranks exactly; the BG/NBD baseline beside them is a numerical
        # optimizer's fit that stops within its tolerance (measured: up to ~1e-6 relative apart)
        btyd = ["btyd_value", "p_alive", "expected_purchases"]
        pg, csv = pd.read_csv(root / "pg_scores.csv"), pd.read_csv(root / "csv_scores.csv")
        pd.testing.assert_frame_equal(pg.drop(columns=btyd), csv.drop(columns=btyd))
        pd.testing.assert_frame_equal(pg[btyd], csv[btyd], check_exact=False, rtol=1e-4)
        with sqlite3.connect(root / "mlruns" / "mlflow.db") as c:
            logged = [v for (v,) in c.execute("select value from params where key = 'input.transactions'")]
            leaked = c.execute("select count(*) from params where value like ?", (f"%{password}%",)).fetchone()[0]
        assert any("***" in v and table in v for v in logged), logged
        assert leaked == 0
    finally:
        import sqlalchemy as sa
        with engine.begin() as con:
            con.execute(sa.text(f'drop table if exists "{table}"'))
