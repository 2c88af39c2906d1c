"""Registry and bundle never disagree (issue 19, criterion 4): a write error injected at each
write `train` makes after the champion alias may have moved (the bundle's model and card, the
run's tags and metrics) puts alias and bundle back together; the error is reported, not hidden."""
from __future__ import annotations

import errno

import pytest
from robust_support import (  # noqa: F401 - ws: fixture
    INPUTS,
    aliases,
    bundle,
    bundle_consistent,
    ka,
    temp_files,
    ws,
)

pytestmark = pytest.mark.slow
DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


def challenger(root):
    """A tracker on root's store and a value-90d challenger that the gate promotes (the
    champion's own model, logged with gini 1.0 and no validation data)."""
    import joblib

    from keyaccounts.tracking import Tracker, TrainedModel
    card = bundle_consistent(root, "value-90d")
    model = joblib.load(root / "models" / "value-90d" / "model.joblib")
    tracker = Tracker("sqlite:///mlruns/mlflow.db", models_dir=root / "models")
    tm = TrainedModel(family="value", horizon_days=90, model=model, feature_names=card["feature_names"],
                      params={"as_of": "2025-10-01"}, metrics={"gini": 1.0}, baseline_metrics={}, figures={},
                      input_example=None, data_fingerprint="test", validation=None, primary_metric="gini")
    return tracker, tm


def failing_at(n: int, real):
    """`real`, raising a disk-full error on its n-th call (1-based)."""
    calls = []

    def wrapped(*a, **k):
        calls.append(1)
        if len(calls) == n:
            raise DISK_FULL
        return real(*a, **k)
    return wrapped


# (what fails, how many calls of it come before the one after promotion that fails)
WRITES = [("tracking._write_atomic", 1), ("tracking._write_atomic", 2), ("mlflow.set_tags", 2),
          ("mlflow.log_metric", 1)]


@pytest.mark.parametrize(("where", "nth"), WRITES, ids=["model.joblib", "card.json", "decision tags", "gate metric"])
def test_a_write_error_after_promotion_puts_alias_and_bundle_back(ws, monkeypatch, where, nth):  # noqa: F811
    import mlflow

    from keyaccounts import tracking
    monkeypatch.chdir(ws)
    before_alias, before_bundle = aliases(ws), bundle(ws, "value-90d")
    tracker, tm = challenger(ws)
    module, attr = (tracking, "_write_atomic") if where.startswith("tracking") else (mlflow, where.split(".")[1])
    monkeypatch.setattr(module, attr, failing_at(nth, getattr(module, attr)))
    with pytest.raises(OSError, match="No space left"):
        tracker.log_training(tm)
    monkeypatch.undo()
    assert aliases(ws)["value-90d"] == before_alias["value-90d"]
    assert bundle(ws, "value-90d") == before_bundle
    assert bundle_consistent(ws, "value-90d")["version"] == aliases(ws)["value-90d"]
    assert temp_files(ws) == []


def test_train_with_a_bundle_write_failing_keeps_every_model_consistent(ws, monkeypatch):  # noqa: F811
    """The whole command: the 3rd bundle write (the value model, after churn finished) fails."""
    from typer.testing import CliRunner

    from keyaccounts import tracking
    from keyaccounts.cli import app
    monkeypatch.chdir(ws)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking, "_write_atomic", failing_at(3, tracking._write_atomic))
    before = aliases(ws)
    res = CliRunner().invoke(app, ["train", *INPUTS])
    assert res.exit_code == 1 and "No space left" in res.output, res.output
    monkeypatch.undo()
    now = aliases(ws)
    for name in ("churn-90d", "value-90d"):
        assert bundle_consistent(ws, name)["version"] == now[name], name
    assert now["value-90d"] == before["value-90d"]
    assert temp_files(ws) == []
