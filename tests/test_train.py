"""Training protocol: time split, no leakage, MLflow runs, champion gating, scoring end to end."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import FeatureConfig, TrainConfig
from keyaccounts.features import Tables
from keyaccounts.synth import synthesize
from keyaccounts.train import customer_split, train_customer_models

runner = CliRunner()
CFG = TrainConfig(step_days=30, max_snapshots=6, min_history_days=60)


@pytest.fixture(scope="module")
def synth():
    return synthesize(n_customers=500, seed=21)


def test_time_split_validates_on_later_cutoffs(synth):
    t = Tables(synth.transactions, synth.customers, synth.invoices)
    sp = customer_split(t, as_of=pd.Timestamp("2025-09-01").date(), horizon_days=90, cfg=CFG,
                        features=FeatureConfig())
    train_cuts = set(sp.X_train.index.get_level_values("cutoff"))
    assert sp.val_cuts == [max(sp.cuts)] and max(train_cuts) < min(sp.val_cuts)
    assert max(sp.cuts) + pd.Timedelta(days=90) <= pd.Timestamp("2025-09-01")


@pytest.mark.slow
def test_training_on_truncated_data_gives_identical_models(synth, truncate):
    as_of = pd.Timestamp("2025-09-01")
    full = Tables(synth.transactions, synth.customers, synth.invoices)
    cut = truncate(synth, as_of)
    cut = Tables(cut.transactions, cut.customers, cut.invoices)
    a = train_customer_models(full, as_of=as_of.date(), horizon_days=90, cfg=CFG, features=FeatureConfig(),
                              fingerprint="x")
    b = train_customer_models(cut, as_of=as_of.date(), horizon_days=90, cfg=CFG, features=FeatureConfig(),
                              fingerprint="x")
    X = a[0].validation[0]
    for ma, mb in zip(a, b, strict=False):
        assert ma.family == mb.family
        if ma.family == "churn":
            np.testing.assert_array_equal(ma.model.predict_proba(X), mb.model.predict_proba(X))
        else:
            np.testing.assert_array_equal(ma.model.predict(X), mb.model.predict(X))
        assert ma.metrics == mb.metrics


@pytest.mark.slow
def test_cli_synth_train_score_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert runner.invoke(app, ["synth", "--out", "d", "--customers", "600", "--seed", "4"]).exit_code == 0
    args = ["-t", "d/transactions.csv", "--customers", "d/customers.csv", "--invoices", "d/invoices.csv",
            "--opportunities", "d/opportunities.csv", "--stage-history", "d/stage_history.csv",
            "--as-of", "2025-10-01", "--horizon-days", "90"]
    res = runner.invoke(app, ["train", *args])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mlruns" / "mlflow.db").exists()
    for name in ("churn-90d", "value-90d", "deal-90d"):
        assert (tmp_path / "models" / name / "model.joblib").exists(), res.output
        assert (tmp_path / "models" / name / "card.json").exists()
    res = runner.invoke(app, ["score", *args, "--out", "out/scores.csv"])
    assert res.exit_code == 0, res.output
    s = pd.read_csv("out/scores.csv")
    for col in ("customer_id", "churn_probability", "expected_value", "p_alive", "expected_purchases"):
        assert col in s.columns
    assert s["churn_probability"].between(0, 1).all() and (s["expected_value"] >= 0).all()
    d = pd.read_csv("out/scores_deals.csv")
    assert {"opportunity_id", "close_probability"} <= set(d.columns) and d["close_probability"].between(0, 1).all()
    # scoring from the sha256-checked bundles gives the same numbers without the registry
    res = runner.invoke(app, ["score", *args, "--out", "out/scores2.csv", "--from-bundle"])
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(s, pd.read_csv("out/scores2.csv"))
    # the deal model too (its card lists the columns it takes, not its one-hot names)
    card = json.loads((tmp_path / "models" / "deal-90d" / "card.json").read_text())
    assert "stage_at_as_of" in card["feature_names"], card["feature_names"]
    pd.testing.assert_frame_equal(d, pd.read_csv("out/scores2_deals.csv"))
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0 and "churn-90d" in res.output and "champion" in res.output
    # a different horizon coexists
    res = runner.invoke(app, ["score", *args[:-1], "30", "--out", "out/s30.csv"])
    assert res.exit_code == 2 and "churn-30d" in res.output


def test_shap_importance_is_exact_for_linear_and_tree_parts(synth):
    from keyaccounts import plots
    from keyaccounts.models.churn import make_churn_model
    from keyaccounts.models.value import make_value_model
    t = Tables(synth.transactions)
    sp = customer_split(t, as_of=pd.Timestamp("2025-09-01").date(), horizon_days=90, cfg=CFG,
                        features=FeatureConfig())
    churn = make_churn_model({"horizon_days": 90}).fit(sp.X_train, sp.y_train["churned"])
    imp = plots.shap_importance(churn, sp.X_val)
    # linear SHAP: contributions + mean margin = margin, row by row
    pipe = plots.find_pipeline(churn, lambda e: getattr(e, "coef_", None) is not None)
    A = np.asarray(pipe[:-1].transform(sp.X_val), float)
    lr = pipe.steps[-1][1]
    contrib = (A - A.mean(axis=0)) * lr.coef_.ravel()
    base = (A.mean(axis=0) * lr.coef_.ravel()).sum() + lr.intercept_[0]
    np.testing.assert_allclose(contrib.sum(axis=1) + base, lr.decision_function(A), rtol=1e-9, atol=1e-9)
    assert imp is not None and (imp >= 0).all() and len(imp) == A.shape[1]
    value = make_value_model({"horizon_days": 90}).fit(sp.X_train, sp.y_train["future_value"])
    vimp = plots.shap_importance(value, sp.X_val)
    assert vimp is not None and vimp.iloc[0] > 0
