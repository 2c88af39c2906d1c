"""Runs killed midway (SIGINT / SIGTERM, real subprocesses): exit 130 / 143, no traceback,
no temp files, earlier outputs byte-identical, registry aliases and bundles as before (a step
that had finished before the signal may have completed, consistently), MLflow run KILLED."""
from __future__ import annotations

import pytest
from robust_support import INPUTS, SIGNALS, aliases, bundle, bundle_consistent, ka, run_statuses, signal_midway, temp_files

pytestmark = pytest.mark.slow


def value_challenger(ws):
    """A tracker on ws's store and a value-90d challenger (the champion's own model, logged with
    gini 1.0 and no validation data, so the gate promotes it)."""
    import joblib

    from keyaccounts.tracking import Tracker, TrainedModel
    card = bundle_consistent(ws, "value-90d")
    model = joblib.load(ws / "models" / "value-90d" / "model.joblib")
    tracker = Tracker("sqlite:///mlruns/mlflow.db", models_dir=ws / "models")
    tm = TrainedModel(family="value", horizon_days=90, model=model, feature_names=card["feature_names"],
                      params={"as_of": "2025-10-01"}, metrics={"gini": 1.0}, baseline_metrics={}, figures={},
                      input_example=None, data_fingerprint="test", validation=None, primary_metric="gini")
    return tracker, tm


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_train_killed_while_logging_the_value_model(ws, sig, code):
    before_alias, before_value = aliases(ws), bundle(ws, "value-90d")
    # The churn model is logged (and, being as good, promoted) first; the signal lands just
    # after MLflow registered the new value version, while the run is gated and tagged.
    rc, out = signal_midway(ws, ["train", *INPUTS], "of model 'value-90d'", sig)
    assert rc == code, out
    assert "Traceback" not in out and ("terminated" if code == 143 else "interrupted") in out
    assert temp_files(ws) == []
    assert aliases(ws)["value-90d"] == before_alias["value-90d"]
    assert bundle(ws, "value-90d") == before_value
    assert run_statuses(ws, "keyaccounts-value")[-1] == "KILLED", run_statuses(ws, "keyaccounts-value")
    # the finished churn step is whole: its bundle is the registry's champion
    assert bundle_consistent(ws, "churn-90d")["version"] == aliases(ws)["churn-90d"]


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_score_killed_midway_keeps_the_earlier_output(ws, sig, code):
    out_file = ws / "out" / "scores.csv"
    if not out_file.exists():
        res = ka(ws, "score", *INPUTS, "--out", "out/scores.csv", "--reasons", "none")
        assert res.returncode == 0, res.stdout
    earlier, before_alias = out_file.read_bytes(), aliases(ws)
    rc, out = signal_midway(ws, ["score", *INPUTS, "--out", "out/scores.csv", "--top", "3"], "data quality", sig)
    assert rc == code, out
    assert "Traceback" not in out
    assert out_file.read_bytes() == earlier
    assert temp_files(ws) == [] and aliases(ws) == before_alias


def test_forecast_and_report_killed_midway_keep_earlier_outputs(ws):
    for args, marker, outs in (
            (["forecast", "--opportunities", "d/opportunities.csv", "--stage-history", "d/stage_history.csv",
              "--as-of", "2025-10-01", "--tracking-uri", "sqlite:///mlruns/mlflow.db", "--out", "out/fc.csv"],
             "data quality", ["out/fc.csv", "out/fc_funnel.csv", "out/fc_deals.csv"]),
            (["report", *INPUTS, "--out", "out/report.html"], "scoring accounts", ["out/report.html"])):
        for o in outs:
            (ws / o).parent.mkdir(exist_ok=True)
            (ws / o).write_text("earlier output\n")
        for sig, code in SIGNALS:
            rc, out = signal_midway(ws, args, marker, sig)
            assert rc == code, out
            assert "Traceback" not in out
            for o in outs:
                assert (ws / o).read_text() == "earlier output\n", o
            assert temp_files(ws) == []


def test_interrupt_after_promotion_puts_the_champion_alias_back(ws, monkeypatch):
    """Deterministic version of the race above: the challenger has been promoted and the
    interrupt hits while its bundle is exported -> alias back on the old champion, run KILLED,
    old bundle untouched."""
    monkeypatch.chdir(ws)
    before_alias, before_bundle = aliases(ws), bundle(ws, "value-90d")
    tracker, tm = value_challenger(ws)

    promoted = []

    def interrupted(name, version):
        promoted.append(version)  # export comes after the alias moved to the new version
        assert aliases(ws)["value-90d"] == str(version) != before_alias["value-90d"]
        raise KeyboardInterrupt

    monkeypatch.setattr(tracker, "export_bundle", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tracker.log_training(tm)
    assert promoted
    assert aliases(ws)["value-90d"] == before_alias["value-90d"]
    assert run_statuses(ws, "keyaccounts-value")[-1] == "KILLED"
    assert bundle(ws, "value-90d") == before_bundle


def test_interrupt_inside_an_open_registry_query_still_ends_the_run_killed(ws, monkeypatch, capfd):
    """The CI race, made deterministic: the signal lands inside an SQLAlchemy query that has
    already stepped its SELECT (SQLite SHARED lock held by the cursor the traceback still
    references). Ending the run KILLED must not then wait on that lock and log a traceback."""
    import sqlalchemy.orm.context as ctx
    from mlflow.tracking.client import MlflowClient

    monkeypatch.chdir(ws)
    before_alias, before_bundle = aliases(ws), bundle(ws, "value-90d")
    tracker, tm = value_challenger(ws)

    armed = []
    real_init, real_tags = ctx.QueryContext.__init__, MlflowClient.set_logged_model_tags

    def init(self, *a, **k):
        if armed and armed.pop():
            raise KeyboardInterrupt  # after the cursor executed, as in the CI traceback
        return real_init(self, *a, **k)

    def tags(self, *a, **k):
        armed.append(True)
        return real_tags(self, *a, **k)

    monkeypatch.setattr(ctx.QueryContext, "__init__", init)
    monkeypatch.setattr(MlflowClient, "set_logged_model_tags", tags)
    with pytest.raises(KeyboardInterrupt):
        tracker.log_training(tm)
    out = capfd.readouterr()
    assert "Traceback" not in out.out + out.err and "locked" not in out.out + out.err, out.err[-3000:]
    assert run_statuses(ws, "keyaccounts-value")[-1] == "KILLED"
    assert aliases(ws)["value-90d"] == before_alias["value-90d"]
    assert bundle(ws, "value-90d") == before_bundle


def test_interrupt_after_the_bundle_was_exported_puts_the_old_bundle_back(ws, monkeypatch):
    """The signal lands after the new champion's bundle was written but before the run ended:
    alias and bundle both go back to the old champion (they never disagree)."""
    monkeypatch.chdir(ws)
    before_alias, before_bundle = aliases(ws), bundle(ws, "value-90d")
    tracker, tm = value_challenger(ws)
    real_export = tracker.export_bundle

    def exported_then_interrupted(name, version):
        real_export(name, version)
        assert bundle_consistent(ws, "value-90d")["version"] == str(version) != before_alias["value-90d"]
        raise KeyboardInterrupt

    monkeypatch.setattr(tracker, "export_bundle", exported_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        tracker.log_training(tm)
    assert aliases(ws)["value-90d"] == before_alias["value-90d"]
    assert bundle(ws, "value-90d") == before_bundle
    assert bundle_consistent(ws, "value-90d")["version"] == before_alias["value-90d"]
    assert run_statuses(ws, "keyaccounts-value")[-1] == "KILLED"
    assert temp_files(ws) == []


@pytest.mark.parametrize("where", ["body", "end_run"])
def test_a_run_interrupted_while_logged_or_ended_is_killed_not_left_running(ws, monkeypatch, where):
    """The process exits right after an interrupt (no MLflow atexit hook), so a run the signal
    caught in its body or while MLflow was ending it must be ended KILLED on the way out."""
    import mlflow
    from mlflow.tracking.client import MlflowClient

    from keyaccounts.tracking import FORECAST_EXPERIMENT, Tracker
    monkeypatch.chdir(ws)
    tracker = Tracker("sqlite:///mlruns/mlflow.db", models_dir=ws / "models")
    calls = []
    if where == "body":
        def interrupted(*a, **k):
            raise KeyboardInterrupt
        monkeypatch.setattr(mlflow, "log_metrics", interrupted)
    else:
        real = MlflowClient.set_terminated

        def set_terminated(self, run_id, status=None, *a, **k):
            calls.append(status)
            if len(calls) == 1:  # the signal lands inside end_run, after the run left the stack
                raise KeyboardInterrupt
            return real(self, run_id, status, *a, **k)
        monkeypatch.setattr(MlflowClient, "set_terminated", set_terminated)
    with pytest.raises(KeyboardInterrupt):
        tracker.log_forecast_run(kind="forecast", as_of="2025-10-01", params={"method": "x"}, metrics={"m": 1.0})
    assert run_statuses(ws, FORECAST_EXPERIMENT)[-1] == "KILLED"
    assert mlflow.active_run() is None
    if where == "end_run":
        assert calls == ["FINISHED", "KILLED"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_done_is_printed_keeps_exit_0(tmp_path, monkeypatch, sig):
    """The outputs are committed before "<command>: done" prints: a signal from that line on
    (seen on a loaded machine 0-0.5 s after "train: done") keeps exit code 0, not 130/143."""
    from typer.testing import CliRunner

    from keyaccounts import cli
    from keyaccounts.progress import StepProgress
    (tmp_path / "t.csv").write_text("customer_id,timestamp,amount\n1,2024-01-02,10\n2,2024-01-05,5\n")
    monkeypatch.chdir(tmp_path)

    def signalled(self, title="summary"):
        raise cli.Terminated() if sig == "SIGTERM" else KeyboardInterrupt()
    monkeypatch.setattr(StepProgress, "summary", signalled)
    res = CliRunner().invoke(cli.app, ["validate", "-t", "t.csv", "--out", "q.csv"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "q.csv").is_file() and "Traceback" not in res.output


def test_a_run_interrupted_while_mlflow_starts_it_is_killed_not_left_running(tmp_path, monkeypatch):
    """A signal inside mlflow.start_run, after the run was created RUNNING but before it became
    the active run: neither active_run() nor last_active_run() knows it (the `keyaccounts-churn`
    run once left RUNNING, without a warning, by a SIGTERM during train); it is found by the
    process's tag and ended KILLED."""
    import sqlite3

    import mlflow
    from mlflow.tracking.client import MlflowClient

    from keyaccounts.tracking import Tracker
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    real_create = MlflowClient.create_run

    def create_run(self, *a, **k):
        real_create(self, *a, **k)
        raise KeyboardInterrupt  # the run exists, RUNNING; start_run never returns it
    monkeypatch.setattr(MlflowClient, "create_run", create_run)
    with pytest.raises(KeyboardInterrupt):
        tracker.log_forecast_run(kind="forecast", as_of="2025-10-01", params={"method": "x"}, metrics={"m": 1.0})
    with sqlite3.connect(tmp_path / "mlflow.db") as c:
        assert c.execute("select status from runs").fetchall() == [("KILLED",)]
    assert mlflow.active_run() is None
