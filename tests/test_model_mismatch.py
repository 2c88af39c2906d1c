"""Models applied to data they were not made for are refused, naming the difference; score
runs from the sha256-checked models/ bundles when the tracking store is unreachable."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from robust_support import INPUTS, ka

pytestmark = pytest.mark.slow
# a tracking "database" under a regular file: unreachable at once, no MLflow server needed
DOWN = ["--tracking-uri", "sqlite:///d/transactions.csv/mlflow.db"]


def _inputs(*drop: str) -> list[str]:
    args = [a for a in INPUTS]
    i = args.index("--tracking-uri")
    del args[i:i + 2]
    for opt in drop:
        j = args.index(opt)
        del args[j:j + 2]
    return args + DOWN


@pytest.fixture
def copy(ws, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(ws / "d", root / "d")
    shutil.copytree(ws / "models", root / "models")
    return root


def test_score_without_mlflow_uses_the_checked_bundles(copy):
    res = ka(copy, "score", *_inputs(), "--out", "out/s.csv", "--reasons", "none")
    assert res.returncode == 0, res.stdout
    text = " ".join(res.stdout.split())
    assert "tracking store" in text and "unavailable" in text and "scoring from the models/ bundles" in text
    s = pd.read_csv(copy / "out" / "s.csv")
    card = json.loads((copy / "models" / "churn-90d" / "card.json").read_text())
    assert len(s) > 100 and (s["churn_model_version"] == f"churn-90d/v{card['version']}").all()


def test_train_with_the_store_unreachable_is_refused_before_training(copy):
    res = ka(copy, "train", *_inputs())
    assert res.returncode == 2, res.stdout
    assert "unavailable" in res.stdout and "building training snapshots" not in res.stdout
    assert "Traceback" not in res.stdout


def test_tampered_bundle_is_refused(copy):
    model = copy / "models" / "churn-90d" / "model.joblib"
    model.write_bytes(model.read_bytes() + b"\0")
    res = ka(copy, "score", *_inputs(), "--out", "out/s.csv", "--from-bundle")
    assert res.returncode == 2, res.stdout
    text = " ".join(res.stdout.split())
    assert "model.joblib does not match its card: sha256" in text and "not loaded" in text
    assert not (copy / "out").exists()


def test_card_listing_other_features_is_refused(copy):
    card_path = copy / "models" / "value-90d" / "card.json"
    card = json.loads(card_path.read_text())
    card["feature_names"] = [c for c in card["feature_names"] if c != "recency_days"] + ["bogus"]
    card_path.write_text(json.dumps(card))
    res = ka(copy, "score", *_inputs(), "--out", "out/s.csv", "--from-bundle")
    assert res.returncode == 2, res.stdout
    text = " ".join(res.stdout.split())
    assert "feature list does not match the model" in text
    assert "['recency_days']" in text and "['bogus']" in text
    assert not (copy / "out").exists()


def test_features_the_model_needs_but_the_data_lacks_are_named(copy):
    res = ka(copy, "score", *_inputs("--invoices"), "--out", "out/s.csv", "--from-bundle")
    assert res.returncode == 2, res.stdout
    text = " ".join(res.stdout.split())
    assert "was trained on features that the data does not produce now" in text
    assert "days_past_due_mean" in text or "open_balance" in text
    assert not (copy / "out").exists()
