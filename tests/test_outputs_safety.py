"""No command damages a file it was not asked to write, and a failing command leaves the
previous outputs exactly as they were (issue 19, criteria 1, 2 and 5). In-process CLI runs on a
small synthetic data set; the output transaction itself is tested directly."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyaccounts import io, outputs
from keyaccounts.cli import app
from keyaccounts.errors import InputError

runner = CliRunner()
AS_OF = ["--as-of", "2025-06-01"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outs")
    res = runner.invoke(app, ["synth", "--out", str(root / "d"), "--customers", "60", "--seed", "1"])
    assert res.exit_code == 0, res.output
    return root / "d"


@pytest.fixture
def ws(data, tmp_path, monkeypatch) -> Path:
    """tmp_path as the working folder, the tables in ./d."""
    (tmp_path / "d").mkdir()
    for f in data.iterdir():
        (tmp_path / "d" / f.name).write_bytes(f.read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def digest(root: Path) -> dict[str, str]:
    """path -> sha256 of every regular file under root (what a command must not change)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def bad(res, *words: str) -> str:
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "Traceback" not in text
    for w in words:
        assert w in text, (w, res.output)
    return text


# ---------------------------------------------------------------- criterion 1: never damage a file


@pytest.mark.parametrize("args", [
    ["features", "-t", "d/transactions.csv", *AS_OF, "--out", "d/transactions.csv"],
    ["features", "-t", "d/transactions.csv", *AS_OF, "--out", "./d/../d/transactions.csv"],
    ["features", "-t", "d/transactions.csv", "--customers", "d/customers.csv", *AS_OF,
     "--out", "f.csv", "--deals-out", "d/customers.csv"],
    ["validate", "-t", "d/transactions.csv", "--customers", "d/customers.csv", "--out", "d/customers.csv"],
    ["forecast", "--opportunities", "d/opportunities.csv", *AS_OF, "--no-track", "--out", "d/opportunities.csv"],
    ["score", "-t", "d/transactions.csv", "--invoices", "d/invoices.csv", *AS_OF, "--out", "d/invoices.csv"],
    ["report", "-t", "d/transactions.csv", *AS_OF, "--out", "d/link.html"],
], ids=["features", "features-dotdot", "features-deals", "validate", "forecast", "score", "report-symlink"])
def test_an_output_that_is_an_input_is_refused(ws, args):
    (ws / "d" / "link.html").symlink_to("transactions.csv")
    if args[0] == "report":
        args = [a if a != "d/transactions.csv" else "d/link.html" for a in args]
    before = digest(ws)
    bad(runner.invoke(app, args), "also an input of this command")
    assert digest(ws) == before
    assert (ws / "d" / "link.html").is_symlink()


def test_a_symlinked_folder_does_not_hide_an_input(ws):
    (ws / "alias").symlink_to(ws / "d")
    before = digest(ws / "d")
    bad(runner.invoke(app, ["features", "-t", "d/transactions.csv", *AS_OF, "--out", "alias/transactions.csv"]),
        "also an input")
    assert digest(ws / "d") == before


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_an_output_that_exists_as_anything_but_a_file_is_refused(ws, kind):
    target = ws / "out.csv"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        try:
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root")
    text = bad(runner.invoke(app, ["features", "-t", "d/transactions.csv", *AS_OF, "--out", "out.csv"]),
               "out.csv", "--out", "exists as")
    assert {"folder": "a folder", "fifo": "FIFO", "device": "character device"}[kind] in text
    mode = os.lstat(target).st_mode
    assert not stat.S_ISREG(mode)  # untouched


@pytest.mark.parametrize("where", ["/dev/null.csv", "/etc/keyaccounts-test.csv", "/proc/self/x.csv",
                                   "/usr/keyaccounts-test.csv"])
def test_system_locations_are_refused(ws, where):
    bad(runner.invoke(app, ["validate", "-t", "d/transactions.csv", "--out", where]), "system location")
    assert not Path(where).exists()


def test_report_refuses_a_device_and_a_non_html_name(ws):
    bad(runner.invoke(app, ["report", "-t", "d/transactions.csv", *AS_OF, "--out", "/dev/null"]), "HTML")
    bad(runner.invoke(app, ["report", "-t", "d/transactions.csv", *AS_OF, "--out", "r.csv"]), "HTML", "r.csv")
    assert not (ws / "r.csv").exists()


def test_an_output_under_a_file_is_refused(ws):
    bad(runner.invoke(app, ["features", "-t", "d/transactions.csv", *AS_OF, "--out", "d/transactions.csv/f.csv"]),
        "is not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_bad_input(ws):
    (ws / "ro").mkdir(mode=0o555)
    bad(runner.invoke(app, ["features", "-t", "d/transactions.csv", *AS_OF, "--out", "ro/f.csv"]), "read-only")


def test_synth_refuses_a_folder_with_files_unless_replace(ws):
    before = digest(ws)
    text = bad(runner.invoke(app, ["synth", "--out", "d", "--customers", "20", "--seed", "9"]),
               "not empty", "--replace")
    assert "customers.csv" in text
    assert digest(ws) == before
    (ws / "d" / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["synth", "--out", "d", "--customers", "20", "--seed", "9", "--replace"])
    assert res.exit_code == 0, res.output
    assert digest(ws)["d/transactions.csv"] != before["d/transactions.csv"]
    assert (ws / "d" / "notes.txt").read_text() == "mine"
    bad(runner.invoke(app, ["synth", "--out", "d/notes.txt", "--customers", "20"]), "not a folder")
    assert runner.invoke(app, ["synth", "--out", "empty", "--customers", "20"]).exit_code == 0


def test_two_options_naming_one_file_are_refused(ws):
    bad(runner.invoke(app, ["features", "-t", "d/transactions.csv", "--opportunities", "d/opportunities.csv",
                            *AS_OF, "--out", "a.csv", "--deals-out", "./a.csv"]), "name the same output file")
    assert not (ws / "a.csv").exists()


# ---------------------------------------------------------------- criterion 2: all or nothing


def earlier(ws: Path, *names: str) -> dict[str, str]:
    """Previous outputs, each with its own content."""
    for n in names:
        (ws / n).parent.mkdir(parents=True, exist_ok=True)
        (ws / n).write_text(f"earlier {n}\n")
    return digest(ws)


def no_temp_files(ws: Path) -> bool:
    return not [p for p in ws.rglob(".*.tmp")]


def test_score_with_a_bad_second_format_writes_nothing(ws):
    bad(runner.invoke(app, ["score", "-t", "d/transactions.csv", *AS_OF, "--out", "p/s.csv",
                            "--deals-out", "p/d.json"]), "d.json", "unknown output format")
    assert not (ws / "p").exists()


@pytest.mark.slow
def test_score_failing_after_work_keeps_the_previous_lists(ws):
    before = earlier(ws, "p/s.csv", "p/s_deals.csv")
    res = runner.invoke(app, ["score", "-t", "d/transactions.csv", "--opportunities", "d/opportunities.csv",
                              *AS_OF, "--tracking-uri", "sqlite:///mlruns/mlflow.db", "--out", "p/s.csv"])
    assert res.exit_code == 2, res.output  # no champions trained here
    assert {k: v for k, v in digest(ws).items() if k.startswith("p/")} == \
        {k: v for k, v in before.items() if k.startswith("p/")}
    assert no_temp_files(ws)


@pytest.mark.parametrize("blocked", ["p/fc_deals.csv", "p/fc_funnel.csv"])
def test_forecast_with_one_output_blocked_writes_none(ws, blocked):
    (ws / blocked).mkdir(parents=True)
    bad(runner.invoke(app, ["forecast", "--opportunities", "d/opportunities.csv", *AS_OF, "--no-track",
                            "--out", "p/fc.csv"]), Path(blocked).name, "exists as a folder")
    assert sorted(p.name for p in (ws / "p").iterdir()) == [Path(blocked).name]


def test_forecast_with_a_corrupt_tracking_store_is_refused_before_work(ws):
    before = earlier(ws, "p/fc.csv")
    (ws / "bad.db").write_bytes(b"this is not a database" * 100)
    text = bad(runner.invoke(app, ["forecast", "--opportunities", "d/opportunities.csv", *AS_OF,
                                   "--tracking-uri", "sqlite:///bad.db", "--out", "p/fc.csv"]),
               "bad.db", "unavailable", "not a database")
    assert "data quality" not in text  # before the inputs were read
    assert digest(ws) == {**before, "bad.db": digest(ws)["bad.db"]}


def test_models_with_a_corrupt_store_is_bad_input(ws):
    (ws / "bad.db").write_bytes(b"\x00garbage" * 500)
    bad(runner.invoke(app, ["models", "--tracking-uri", "sqlite:///bad.db"]), "bad.db", "unavailable")


def test_features_failing_after_the_first_output_keeps_both_previous_files(ws, monkeypatch):
    before = earlier(ws, "o/f.csv", "o/deals.csv")

    def broken(*a, **k):
        raise RuntimeError("injected failure after the customer features were written")
    monkeypatch.setattr("keyaccounts.pipeline.deal_features", broken)
    res = runner.invoke(app, ["features", "-t", "d/transactions.csv", "--opportunities", "d/opportunities.csv",
                              *AS_OF, "--out", "o/f.csv", "--deals-out", "o/deals.csv"])
    assert res.exit_code == 1 and "injected failure" in res.output, res.output
    assert digest(ws) == before
    assert no_temp_files(ws)


def test_a_new_output_folder_is_not_left_behind_on_failure(ws, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("injected")
    monkeypatch.setattr("keyaccounts.pipeline.deal_features", broken)
    res = runner.invoke(app, ["features", "-t", "d/transactions.csv", "--opportunities", "d/opportunities.csv",
                              *AS_OF, "--out", "new/deep/f.csv", "--deals-out", "new/deep/deals.csv"])
    assert res.exit_code == 1
    assert not (ws / "new").exists()


def test_run_failing_in_a_later_step_writes_no_output_of_any_step(ws, monkeypatch):
    (ws / "p.yaml").write_text(
        "as_of: 2025-06-01\ninputs:\n  transactions: {path: d/transactions.csv}\n"
        "  opportunities: {path: d/opportunities.csv}\n"
        "steps:\n  - validate: {out: o/quality.csv}\n  - features: {out: o/f.csv, deals_out: o/deals.csv}\n")
    before = earlier(ws, "o/quality.csv")

    def broken(*a, **k):
        raise RuntimeError("injected")
    monkeypatch.setattr("keyaccounts.pipeline.deal_features", broken)
    assert runner.invoke(app, ["run", "p.yaml"]).exit_code == 1
    assert digest(ws) == {**before, "p.yaml": digest(ws)["p.yaml"]}
    monkeypatch.undo()
    monkeypatch.chdir(ws)
    res = runner.invoke(app, ["run", "p.yaml"])
    assert res.exit_code == 0, res.output
    assert {"o/quality.csv", "o/f.csv", "o/deals.csv"} <= set(digest(ws))


def test_run_checks_every_step_output_before_reading_data(ws):
    (ws / "o" / "deals.csv").mkdir(parents=True)
    (ws / "p.yaml").write_text(
        "as_of: 2025-06-01\ninputs:\n  transactions: {path: d/transactions.csv}\n"
        "steps:\n  - validate: {out: o/quality.csv}\n  - features: {out: o/f.csv, deals_out: o/deals.csv}\n")
    text = bad(runner.invoke(app, ["run", "p.yaml"]), "steps[2].features.deals_out", "exists as a folder")
    assert "data quality" not in text and not (ws / "o" / "quality.csv").exists()


@pytest.mark.slow
def test_report_failing_keeps_the_previous_report(ws):
    before = earlier(ws, "r/report.html")
    res = runner.invoke(app, ["report", "-t", "d/transactions.csv", *AS_OF,
                              "--tracking-uri", "sqlite:///mlruns/mlflow.db", "--out", "r/report.html"])
    assert res.exit_code == 2, res.output  # no champions trained here
    assert digest(ws)["r/report.html"] == before["r/report.html"]
    assert no_temp_files(ws)


# ---------------------------------------------------------------- the transaction itself


def test_a_failed_rename_in_commit_puts_the_earlier_targets_back(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write_text("old a")
    b.write_text("old b")
    real_replace, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 2 and str(dst).endswith("b.csv"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)
    with pytest.raises(OSError, match="No space"), outputs.transaction():
        for f in (a, b, c):
            io.write_text(f"new {f.name}", f)
        monkeypatch.setattr(os, "replace", failing)
    monkeypatch.undo()
    assert (a.read_text(), b.read_text(), c.exists()) == ("old a", "old b", False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_nothing_is_renamed_before_the_transaction_ends(tmp_path):
    with outputs.transaction() as tx:
        io.write_text("x", tmp_path / "a.html")
        assert not (tmp_path / "a.html").exists() and len(tx.staged) == 1
    assert (tmp_path / "a.html").read_text() == "x"


def test_a_file_read_in_a_transaction_cannot_be_written_in_it(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("customer_id,amount\n1,2\n")
    with pytest.raises(InputError, match="also an input"), outputs.transaction():
        io.read_frame(src)
        io.write_frame(io.read_frame(src), src, index=False)
    assert src.read_text() == "customer_id,amount\n1,2\n"


def test_a_symlinked_output_is_replaced_not_followed(tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("keep me")
    (tmp_path / "link.csv").symlink_to(target)
    io.write_text("new", tmp_path / "link.csv")
    assert target.read_text() == "keep me" and not (tmp_path / "link.csv").is_symlink()


def test_a_signal_after_the_command_finished_keeps_its_exit_code(monkeypatch):
    """SIGTERM just after "train: done" (the CLI's return path, the teardown) exits with the
    command's own code, not 143."""
    from keyaccounts import _entry, errors

    def exit_now(code):
        raise SystemExit(f"exit {code}")
    monkeypatch.setattr(_entry, "_exit_now", exit_now)
    errors.decide_exit(0)
    with pytest.raises(SystemExit, match="exit 0"):
        _entry._raise(2, None)
    errors.decide_exit(None)
    with pytest.raises(KeyboardInterrupt):
        _entry._raise(2, None)


def test_every_command_decides_its_exit_code(ws):
    from keyaccounts import errors
    assert runner.invoke(app, ["validate", "-t", "d/transactions.csv"]).exit_code == 0
    assert errors.decided_exit() == 0
    assert runner.invoke(app, ["validate", "-t", "d/missing.csv"]).exit_code == 2
    assert errors.decided_exit() == 2
