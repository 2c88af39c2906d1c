"""Every bad input named, with exit 2 (issue 19, criteria 3 and 5): pipes, overflowing numbers,
NUL bytes, mixed encodings, ids that do not join, out-of-range dates and horizons, config typos
at any depth, ${VAR} in every path, unbounded backtests, unusable tracking stores."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts import io
from keyaccounts.cli import app
from keyaccounts.errors import InputError
from keyaccounts.tracking import Tracker, TrackingUnavailable

runner = CliRunner()
HEAD = "customer_id,timestamp,amount\n"
ROWS = "".join(f"C{i},2024-0{1 + i % 6}-1{i % 9},{10 + i}\n" for i in range(40))


def run(*args: str):
    return runner.invoke(app, list(args))


def words(res) -> str:
    return " ".join(res.output.split())


def bad(res, *expected: str) -> str:
    text = words(res)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in text and "internal error" not in text
    for w in expected:
        assert w in text, (w, res.output)
    return text


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_named_pipe_is_named_not_called_empty(here):
    import os
    os.mkfifo("pipe.csv")
    bad(run("validate", "-t", "pipe.csv"), "pipe.csv", "named pipe (FIFO)", "not supported")


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1e309", "inf", "9e15"])
def test_an_overflowing_amount_is_dropped_and_counted(here, value):
    Path("t.csv").write_text(HEAD + ROWS + f"C1,2024-03-03,{value}\nC1,2024-03-04,{value}\n")
    res = run("features", "-t", "t.csv", "--as-of", "2024-08-01", "--out", "f.csv")
    assert res.exit_code == 0, res.output
    assert "bad_amount 2" in words(res)
    f = pd.read_csv("f.csv")
    assert not np.isinf(f.select_dtypes("number").to_numpy()).any()  # NaN is "no data", inf is overflow


def test_many_overflowing_amounts_are_refused_with_rows(here):
    Path("t.csv").write_text(HEAD + ROWS + "".join(f"C{i},2024-03-03,1e308\n" for i in range(9)))
    bad(run("validate", "-t", "t.csv"), "t.csv", "'amount'", "not finite numbers within ±1e+15", "1e308")


def test_overflowing_invoice_and_deal_amounts_are_counted(here):
    Path("t.csv").write_text(HEAD + ROWS)
    Path("inv.csv").write_text("invoice_id,customer_id,issue_date,due_date,amount\n"
                               "I1,C1,2024-01-01,2024-02-01,1e308\nI2,C2,2024-01-01,2024-02-01,5\n")
    Path("o.csv").write_text("opportunity_id,created_date,stage,amount,closed_date\n"
                             "O1,2024-01-01,won,1e308,2024-02-01\nO2,2024-01-02,lost,10,2024-02-01\n"
                             "O3,2024-01-03,proposal,7,\n")
    res = run("validate", "-t", "t.csv", "--invoices", "inv.csv", "--opportunities", "o.csv")
    assert res.exit_code == 0, res.output
    assert words(res).count("bad_amount 1") == 2


def test_nul_bytes_in_ids_do_not_make_phantom_customers(here):
    Path("t.csv").write_text(HEAD + ROWS + "C1\x00x,2024-03-03,5\n")
    res = run("features", "-t", "t.csv", "--as-of", "2024-08-01", "--out", "f.csv")
    assert res.exit_code == 0, res.output
    assert "bad_customer_id 1" in words(res)
    assert "\x00" not in Path("f.csv").read_text() and len(pd.read_csv("f.csv")) == 40


def test_mixed_encodings_are_read_line_by_line_and_noted(here):
    Path("t.csv").write_text(HEAD + ROWS)
    Path("c.csv").write_bytes("customer_id,name\nC1,Café Ünal\n".encode() + "C2,Café Ünal\n".encode("latin-1"))
    res = run("validate", "-t", "t.csv", "--customers", "c.csv", "--out", "q.csv")
    assert res.exit_code == 0, res.output
    assert "mixed encodings" in pd.read_csv("q.csv").set_index("table").loc["customers", "notes"]
    names = io.read_frame("c.csv")["name"].tolist()
    assert names == ["Café Ünal", "Café Ünal"]


def test_a_customers_table_that_does_not_join_is_a_warning_naming_both_files(here):
    Path("t.csv").write_text(HEAD + ROWS)
    Path("c.csv").write_text("customer_id,name\n" + "".join(f"000{i},n{i}\n" for i in range(40)))
    res = run("validate", "-t", "t.csv", "--customers", "c.csv", "--out", "q.csv")
    assert res.exit_code == 0, res.output
    note = pd.read_csv("q.csv").set_index("table").loc["customers", "notes"]
    assert "warning: only 0% of the 40 customer ids in t.csv appear in c.csv" in note
    assert "'C0' in t.csv" in note and "'0000' in c.csv" in note
    Path("c.csv").write_text("customer_id,name\n" + "".join(f"C{i},n{i}\n" for i in range(40)))
    res = run("validate", "-t", "t.csv", "--customers", "c.csv", "--out", "q.csv")
    assert "warning" not in str(pd.read_csv("q.csv").set_index("table").loc["customers", "notes"])


@pytest.mark.parametrize(("args", "expected"), [
    (["--as-of", "1990-01-01"], "--as-of 1990-01-01 is on or before the first transaction"),
    (["--as-of", "9999-01-01"], "--as-of 9999-01-01 is out of range"),
    (["--as-of", "2200-01-01"], "days after the last transaction"),
])
def test_an_as_of_outside_the_data_is_refused_named(here, args, expected):
    Path("t.csv").write_text(HEAD + ROWS)
    bad(run("features", "-t", "t.csv", *args, "--out", "f.csv"), expected)
    assert not Path("f.csv").exists()


def test_a_huge_horizon_is_refused_naming_the_option(here):
    Path("t.csv").write_text(HEAD + ROWS)
    bad(run("train", "-t", "t.csv", "--as-of", "2024-08-01", "--horizon-days", "999999999"), "--horizon-days")
    Path("p.yaml").write_text("horizon_days: 999999999\n")
    bad(run("train", "-t", "t.csv", "--as-of", "2024-08-01", "-p", "p.yaml"), "horizon_days", "3660")


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("steps:\n  - validate: {outt: q.csv}\n", ["unknown key 'outt' (did you mean 'out'?)"]),
    ("steps:\n  - forecast: {out: f.csv, every: 7d}\n", ["unknown key 'every' (did you mean 'every_days'?)"]),
    ("inputs:\n  transactions: {path: t.csv, read: {sepp: ','}}\n", ["read.sepp", "(did you mean 'sep'?)"]),
    ("features:\n  lifecycle: {lapsed_after_dayz: 3}\n", ["(did you mean 'lapsed_after_days'?)"]),
    ("tiers:\n  composite:\n    wieghts: {}\n", ["tiers.composite.wieghts"]),
    ("a: " + "[" * 3000 + "]" * 3000 + "\n", ["nested too deeply"]),
])
def test_config_typos_at_any_depth_are_refused_with_the_nearest_key(here, yaml_text, expected):
    Path("p.yaml").write_text(yaml_text)
    Path("t.csv").write_text(HEAD + ROWS)
    res = run("validate", "-t", "t.csv", "-p", "p.yaml")
    bad(res, "p.yaml")
    for e in expected:
        assert e in words(res), res.output


def test_variables_expand_in_every_path_of_a_pipeline(here, monkeypatch):
    monkeypatch.setenv("KA_DATA", str(here / "data"))
    monkeypatch.setenv("KA_OUT", str(here / "results"))
    (here / "data").mkdir()
    Path("data/t.csv").write_text(HEAD + ROWS)
    Path("p.yaml").write_text("as_of: 2024-08-01\ninputs:\n  transactions: {path: '${KA_DATA}/t.csv'}\n"
                              "steps:\n  - validate: {out: '${KA_OUT}/q.csv'}\n"
                              "  - features: {out: '$KA_OUT/f.csv'}\n")
    res = run("run", "p.yaml")
    assert res.exit_code == 0, res.output
    assert (here / "results" / "q.csv").is_file() and (here / "results" / "f.csv").is_file()
    assert not list(here.glob("$*"))
    Path("p.yaml").write_text("inputs:\n  transactions: {path: t.csv}\n"
                              "steps:\n  - validate: {out: '${KA_UNSET_X}/q.csv'}\n")
    bad(run("run", "p.yaml"), "${KA_UNSET_X} is not set")


def test_a_backtest_says_its_size_and_is_bounded(here):
    Path("o.csv").write_text("opportunity_id,created_date,stage,amount\nO1,2024-01-01,won,1\n")
    t0 = time.perf_counter()
    bad(run("forecast", "--opportunities", "o.csv", "--backtest", "--from", "1990-01-01", "--to", "2025-06-01",
            "--every", "1d", "--no-track", "--out", "bt.csv"), "12,936 snapshots", "--max-snapshots 260")
    assert time.perf_counter() - t0 < 5
    bad(run("forecast", "--opportunities", "o.csv", "--backtest", "--from", "2024-01-01", "--to", "2024-12-31",
            "--every", "7d", "--max-snapshots", "10", "--no-track", "--out", "bt.csv"), "53 snapshots")


@pytest.mark.parametrize("uri", ["sqlite:////proc/keyaccounts-x.db", "sqlite:///{here}/junk.db",
                                 "sqlite:///{here}/dir.db"])
def test_an_unusable_tracking_store_is_named_within_5_seconds(here, uri):
    Path("junk.db").write_bytes(b"not sqlite at all " * 200)
    Path("dir.db").mkdir()
    uri = uri.format(here=here)
    t0 = time.perf_counter()
    with pytest.raises(TrackingUnavailable) as e:
        Tracker(uri).check(timeout_s=5)
    assert time.perf_counter() - t0 < 5
    assert uri in str(e.value) and isinstance(e.value, InputError)
