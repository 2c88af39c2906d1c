"""MLflow layer: runs, registry, champion gating, bundles, URIs and fingerprints.

Every tracking test gets its own SQLite database under tmp_path. Creating one runs MLflow's
migrations (~6 s), so a freshly migrated empty database is made once per session and copied.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin, clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from keyaccounts.errors import InputError  # noqa: E402
from keyaccounts.models.metrics import classification_metrics  # noqa: E402
from keyaccounts.tracking import DEFAULT_DB, Tracker, TrainedModel, data_fingerprint, model_name, resolve_tracking_uri  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
NAME = "churn-90d"


class Clip(BaseEstimator, TransformerMixin):
    """A custom step: skops would refuse it as an untrusted type, cloudpickle must not."""

    def __init__(self, limit: float = 4.0):
        self.limit = limit

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.clip(np.asarray(X, float), -self.limit, self.limit)


def make_data(n: int, seed: int, coef=(2.5, 0.0)) -> tuple[pd.DataFrame, pd.Series]:
    """x1, x2 ~ N(0,1) and an int64 column; churn depends on coef . (x1, x2)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "n_orders": rng.integers(0, 20, n)})
    logit = coef[0] * X["x1"] + coef[1] * X["x2"]
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int), name="churned")
    return X, y


def fit(X, y):
    return make_pipeline(Clip(), StandardScaler(), LogisticRegression()).fit(X, y)


def trained(model, X, y, val, *, metrics=None, validation=True) -> TrainedModel:
    Xv, yv = val
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    plt.close(fig)
    return TrainedModel(
        family="churn", horizon_days=90, model=model, feature_names=list(X.columns),
        params={"as_of": dt.date(2024, 1, 1), "horizon": 90,
                "cutoffs": [dt.date(2023, 10, 1), dt.date(2023, 11, 1)],
                "features": list(X.columns), "model": {"C": 1.0}},
        metrics=metrics or classification_metrics(yv, model.predict_proba(Xv)[:, 1]),
        baseline_metrics={"recency": {"roc_auc": 0.61, "brier": 0.2}},
        figures={"calibration": fig},
        input_example=X.head(5),
        data_fingerprint=data_fingerprint({"train": X.assign(y=y)}),
        validation=(Xv, yv) if validation else None,
    )


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # runs the migrations
    return db


@pytest.fixture
def new_uri(tmp_path, empty_db):
    """new_uri(folder) -> sqlite URI of a fresh, empty database at tmp_path/folder/mlflow.db."""

    def make(folder: str = "mlruns") -> str:
        db = tmp_path / folder / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_db, db)
        return f"sqlite:///{db}"

    return make


@pytest.fixture
def tracker(tmp_path, new_uri, monkeypatch) -> Tracker:
    uri = new_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for the plain mlflow.* calls of the test
    return Tracker(uri, models_dir=tmp_path / "models")


# --------------------------------------------------------------------------- no MLflow needed


def test_model_name():
    assert model_name("churn", 90) == "churn-90d"


def test_resolve_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = resolve_tracking_uri()
    assert default == f"sqlite:////{tmp_path.as_posix().lstrip('/')}/{DEFAULT_DB}"
    assert (tmp_path / "mlruns").is_dir()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env/runs.db")  # relative: made absolute
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/env/runs.db"
    assert (tmp_path / "env").is_dir()
    explicit = f"sqlite:///{tmp_path}/explicit/mlflow.db"
    assert resolve_tracking_uri(explicit) == explicit  # explicit beats the environment
    assert resolve_tracking_uri("http://localhost:5000") == "http://localhost:5000"
    assert resolve_tracking_uri("store") == f"sqlite:///{tmp_path}/store/mlflow.db"
    assert resolve_tracking_uri("a/b.db") == f"sqlite:///{tmp_path}/a/b.db"


def test_data_fingerprint_stable_and_sensitive():
    X, y = make_data(50, 0)
    tables = {"customers": X, "labels": y.to_frame()}
    fp = data_fingerprint(tables)
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    shuffled = X.sample(frac=1, random_state=1)
    assert data_fingerprint({"labels": y.to_frame(), "customers": shuffled}) == fp  # order-insensitive
    assert data_fingerprint({"customers": X[X.columns[::-1]], "labels": y.to_frame()}) == fp
    changed = X.copy()
    changed.loc[7, "x1"] += 1e-9
    assert data_fingerprint({"customers": changed, "labels": y.to_frame()}) != fp
    retyped = X.astype({"n_orders": "float64"})
    assert data_fingerprint({"customers": retyped, "labels": y.to_frame()}) != fp
    assert data_fingerprint({"customers": X.iloc[:-1], "labels": y.to_frame()}) != fp
    assert data_fingerprint({"renamed": X, "labels": y.to_frame()}) != fp
    assert data_fingerprint({"customers": X.iloc[:0]}) == data_fingerprint({"customers": X.iloc[:0]})


def test_importing_keyaccounts_does_not_import_mlflow():
    code = ("import sys, keyaccounts, keyaccounts.tracking; "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SRC.parent)


def test_only_tracking_module_mentions_mlflow_imports():
    # serving.py is the pyfunc model class MLflow loads (it must subclass mlflow.pyfunc.PythonModel)
    pattern = re.compile(r"^\s*(import mlflow|from mlflow)", re.M)
    offenders = [str(p.relative_to(SRC)) for p in (SRC / "keyaccounts").rglob("*.py")
                 if p.name not in ("tracking.py", "serving.py") and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# --------------------------------------------------------------------------- MLflow


@pytest.mark.slow
def test_first_run_is_logged_registered_and_champion(tracker, tmp_path):
    import mlflow

    X, y = make_data(600, 1)
    model = fit(X[:400], y[:400])
    val = (X[400:], y[400:])
    tm = trained(model, X[:400], y[:400], val)
    out = tracker.log_training(tm)
    assert out["version"] == "1" and out["promoted"] is True and out["reason"] == "no champion yet"
    assert out["champion_score"] is None and out["challenger_score"] > 0.75

    runs = mlflow.search_runs(experiment_names=["keyaccounts-churn"])
    assert list(runs["run_id"]) == [out["run_id"]]
    run = runs.iloc[0]
    assert run["metrics.roc_auc"] == pytest.approx(tm.metrics["roc_auc"])
    assert run["metrics.recency_roc_auc"] == pytest.approx(0.61)
    assert run["params.as_of"] == "2024-01-01" and run["params.model.C"] == "1.0"
    assert run["params.data_fingerprint"] == run["tags.data_fingerprint"] == tm.data_fingerprint
    assert json.loads(run["params.features"]) == ["x1", "x2", "n_orders"]
    assert run["tags.promoted"] == "true" and run["tags.champion_version"] == "1"

    client = mlflow.MlflowClient()
    top = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"figures", "params.json", "feature_names.json"} <= top
    assert [a.path for a in client.list_artifacts(out["run_id"], "figures")] == ["figures/calibration.png"]
    exp = client.get_experiment_by_name("keyaccounts-churn")
    assert exp.artifact_location == (tmp_path / "mlruns" / "keyaccounts-churn").as_uri()
    assert list((tmp_path / "mlruns" / "keyaccounts-churn").rglob("calibration.png"))
    assert list((tmp_path / "mlruns" / "keyaccounts-churn").rglob("MLmodel"))

    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    loaded, card = tracker.load_champion(NAME)
    np.testing.assert_array_equal(loaded.predict_proba(val[0]), model.predict_proba(val[0]))
    assert card["version"] == "1" and card["feature_names"] == ["x1", "x2", "n_orders"]

    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")  # probabilities, not labels
    assert pyfunc.metadata.get_input_schema().input_types()[2].name == "double"
    np.testing.assert_allclose(np.asarray(pyfunc.predict(val[0].astype(float))),
                               model.predict_proba(val[0]))

    listing = tracker.list_models()
    assert listing[["name", "version", "aliases"]].values.tolist() == [[NAME, 1, "champion"]]
    assert listing["primary_metric"].tolist() == ["roc_auc"]
    assert {e.name for e in mlflow.search_experiments()} >= {"keyaccounts-churn"}  # what `mlflow ui` lists


@pytest.mark.slow
def test_worse_challenger_is_not_promoted_equal_one_is(tracker, tmp_path):
    import mlflow

    X, y = make_data(600, 2)
    val = (X[400:], y[400:])
    good = fit(X[:400], y[:400])
    assert tracker.log_training(trained(good, X[:400], y[:400], val))["promoted"]

    y_noise = pd.Series(np.random.default_rng(3).permutation(y[:400].to_numpy()), index=y[:400].index)
    bad = fit(X[:400], y_noise)
    out = tracker.log_training(trained(bad, X[:400], y_noise, val))
    assert out["version"] == "2" and out["promoted"] is False
    assert out["challenger_score"] < out["champion_score"]
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    tags = client.get_run(out["run_id"]).data.tags
    assert tags["promoted"] == "false" and tags["champion_version"] == "1"
    assert float(tags["champion_score"]) == pytest.approx(out["champion_score"], rel=1e-5)

    same = clone(good).fit(X[:400], y[:400])  # identical score: >= wins
    out = tracker.log_training(trained(same, X[:400], y[:400], val))
    assert out["promoted"] and out["challenger_score"] == out["champion_score"]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "3"
    assert json.loads((tmp_path / "models" / NAME / "card.json").read_text())["version"] == "3"

    lenient = Tracker(tracker.tracking_uri, models_dir=tmp_path / "models", promote_tolerance=1.0)
    assert lenient.log_training(trained(bad, X[:400], y_noise, val))["promoted"]
    assert tracker.list_models()["aliases"].tolist() == ["", "", "", "champion"]


@pytest.mark.slow
def test_champion_is_rescored_on_the_challengers_validation_data(tracker):
    # The old world: churn follows x1. The champion's logged metrics look great.
    X_old, y_old = make_data(500, 4, coef=(3.0, 0.0))
    champion = fit(X_old, y_old)
    tracker.log_training(trained(champion, X_old, y_old, make_data(200, 5, coef=(3.0, 0.0)),
                                 metrics={"roc_auc": 0.99}))
    # The world changed: churn follows x2. The challenger logs a lower number, but on the new
    # validation fold it beats the champion, which is recomputed there.
    X_new, y_new = make_data(500, 6, coef=(0.0, 3.0))
    val_new = make_data(200, 7, coef=(0.0, 3.0))
    challenger = fit(X_new, y_new)
    out = tracker.log_training(trained(challenger, X_new, y_new, val_new, metrics={"roc_auc": 0.70}))
    assert out["promoted"] is True and "recomputed" in out["reason"]
    assert out["champion_score"] < 0.65 < 0.8 < out["challenger_score"]

    # Without validation data only the logged metrics can be compared.
    out = tracker.log_training(trained(champion, X_old, y_old, val_new, metrics={"roc_auc": 0.5},
                                       validation=False))
    assert out["promoted"] is False and "logged metrics" in out["reason"]
    assert out["champion_score"] == pytest.approx(0.70)


@pytest.mark.slow
def test_bundle_sha256_fallback_and_tampering(tracker, tmp_path, new_uri):
    X, y = make_data(400, 8)
    model = fit(X[:300], y[:300])
    tracker.log_training(trained(model, X[:300], y[:300], (X[300:], y[300:])))
    folder = tmp_path / "models" / NAME
    card = json.loads((folder / "card.json").read_text())
    assert card["sha256"] == hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    assert {k: card[k] for k in ("name", "version", "family", "horizon_days")} == \
        {"name": NAME, "version": "1", "family": "churn", "horizon_days": 90}
    assert card["data_fingerprint"] and card["run_id"] and card["created"] and card["metrics"]["roc_auc"]
    assert not list(folder.glob("*.tmp"))

    loaded, card2 = tracker.load_champion(NAME, prefer="bundle")
    np.testing.assert_array_equal(loaded.predict_proba(X[300:]), model.predict_proba(X[300:]))
    assert card2["source"] == "bundle"
    # A registry without that champion (a deployment that ships models/ only) uses the bundle.
    elsewhere = Tracker(new_uri("other"), models_dir=tmp_path / "models")
    assert elsewhere.load_champion(NAME)[1]["source"] == "bundle"

    with open(folder / "model.joblib", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(InputError, match="sha256"):
        tracker.load_champion(NAME, prefer="bundle")
    with pytest.raises(InputError, match="no exported bundle"):
        tracker.load_champion("value-90d", prefer="bundle")


@pytest.mark.slow
def test_score_run_and_experiment_listing(tracker):
    import mlflow

    run_id = tracker.log_score_run(as_of=dt.date(2024, 3, 31), fingerprint="f" * 64,
                                   model_versions={NAME: "3"}, row_counts={"customers": 120},
                                   extra_metrics={"mean_churn": 0.12})
    run = mlflow.get_run(run_id)
    assert run.data.params == {"as_of": "2024-03-31", "data_fingerprint": "f" * 64, f"model.{NAME}": "3"}
    assert run.data.metrics == {"rows.customers": 120.0, "mean_churn": 0.12}
    assert "keyaccounts-score" in {e.name for e in mlflow.search_experiments()}
    assert tracker.list_models().empty


@pytest.mark.slow
def test_no_example_no_validation_and_a_champion_that_cannot_score(tracker):
    import mlflow

    X, y = make_data(300, 9)
    tm = trained(fit(X, y), X, y, (X, y), metrics={"roc_auc": float("nan"), "note": "thin data"},
                 validation=False)
    tm.family, tm.input_example = "deal", None
    out = tracker.log_training(tm)
    assert out["promoted"] and out["challenger_score"] != out["challenger_score"]  # NaN
    run = mlflow.get_run(out["run_id"])
    assert "note" not in run.data.metrics and np.isnan(run.data.metrics["roc_auc"])

    # New feature set: the champion cannot score the new validation data, so it cannot win.
    X2 = X.drop(columns="n_orders").assign(tenure=X["n_orders"] * 1.0)
    tm2 = trained(fit(X2, y), X2, y, (X2, y))
    tm2.family = "deal"
    out = tracker.log_training(tm2)
    assert out["promoted"] and "cannot score" in out["reason"] and np.isnan(out["champion_score"])
    assert mlflow.get_run(out["run_id"]).data.tags["champion_score"] == "nan"
