"""Churn and value models: sklearn contracts, calibration, two-part identity, pickling, signal.

Fast tests run on `synth.synthesize(n_customers=400)` snapshots; the CDNOW check is marked
data + slow and skipped when ../shared/data is absent.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from keyaccounts.features import Tables, build_features
from keyaccounts.labels import customer_labels
from keyaccounts.models.churn import calibrate, make_churn_baseline, make_churn_model
from keyaccounts.models.metrics import value_metrics
from keyaccounts.models.transformers import BTYD_COLUMNS, BTYDFeatures, ColumnSubset, NumericSelector, RatioFeatures, SignedLog1p
from keyaccounts.models.value import TwoPartValue, make_value_baseline, make_value_model
from keyaccounts.snapshots import customer_snapshots, cutoffs, earliest_date
from keyaccounts.synth import synthesize

H = 90
AS_OF = pd.Timestamp("2025-07-01")
LABELS = ["churned", "future_value", "future_purchase_days"]
FAST = {"n_estimators": 60}  # small XGBoost parts keep the tests fast


@pytest.fixture(scope="module")
def data():
    s = synthesize(n_customers=400, seed=11)
    t = Tables(s.transactions, s.customers, s.invoices)
    cuts = cutoffs(as_of=AS_OF, horizon_days=H, step_days=30, max_snapshots=6,
                   earliest=earliest_date(s.transactions), min_history_days=60)
    snaps = customer_snapshots(t, cuts=cuts, horizon_days=H)
    test = build_features(t, as_of=AS_OF.date())
    test = test[test["frequency"] > 0]
    y = customer_labels(s.transactions, as_of=AS_OF.date(), horizon_days=H, index=test.index)
    is_val = snaps.index.get_level_values("cutoff") == max(cuts)
    X, Y = snaps.drop(columns=LABELS), snaps[LABELS]
    return {"X": X[~is_val], "Y": Y[~is_val], "X_val": X[is_val], "Y_val": Y[is_val], "test": test, "y": y}


@pytest.fixture(scope="module")
def churn(data):
    return make_churn_model({"horizon_days": H}).fit(data["X"], data["Y"]["churned"])


@pytest.fixture(scope="module")
def value(data):
    return make_value_model({"horizon_days": H, "xgb": FAST}).fit(data["X"], data["Y"]["future_value"])


# ---------------------------------------------------------------- churn

@pytest.mark.parametrize("params", [{"estimator": "glm"}, {"estimator": "xgb", "xgb": FAST},
                                    {"estimator": "blend", "xgb": FAST, "xgb_weight": 0.3}])
def test_churn_pipelines_fit_and_predict_probabilities(data, params):
    m = make_churn_model({"horizon_days": H, **params})
    assert is_classifier(m)
    m.fit(data["X"], data["Y"]["churned"])
    p = m.predict_proba(data["test"])
    assert p.shape == (len(data["test"]), 2)
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert list(m.classes_) == [0, 1]  # column 1 = P(churned)


def test_churn_baseline_fits_and_ignores_context_columns(data):
    m = make_churn_baseline().fit(data["X"], data["Y"]["churned"])
    used = set(m.named_steps["select"].get_feature_names_out())
    assert not used & {"lifecycle_stage", "rfm_code", *LABELS}
    p = m.predict_proba(data["test"])[:, 1]
    assert ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibrate_returns_a_classifier_without_refitting(data, churn, method):
    before = churn.predict_proba(data["test"])
    cal = calibrate(churn, data["X_val"], data["Y_val"]["churned"], method=method)
    assert is_classifier(cal)
    p = cal.predict_proba(data["test"])[:, 1]
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_array_equal(churn.predict_proba(data["test"]), before)  # frozen, not refitted
    if method == "sigmoid":  # monotone map: the ranking (AUC) is unchanged
        y = data["y"]["churned"]
        assert roc_auc_score(y, p) == pytest.approx(roc_auc_score(y, before[:, 1]), abs=1e-9)
    with pytest.raises(ValueError):
        calibrate(churn, data["X_val"], data["Y_val"]["churned"], method="beta")


def test_unknown_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown"):
        make_churn_model({"max_depth": 3})
    with pytest.raises(ValueError, match="unknown"):
        make_value_model({"n_trees": 3})
    with pytest.raises(ValueError):
        make_churn_model({"estimator": "forest"})


# ---------------------------------------------------------------- value

def test_value_is_two_part_and_non_negative(data, value):
    X = data["test"]
    pb, spend, ev = value.predict_buy_proba(X), value.predict_spend(X), value.predict(X)
    assert is_regressor(value) and isinstance(value, TwoPartValue)
    assert ((pb >= 0) & (pb <= 1)).all()
    assert (spend >= 0).all() and (ev >= 0).all()
    np.testing.assert_allclose(ev, pb * spend, rtol=1e-12)


def test_two_part_by_hand():
    """Tiny exact case: P(buy) and E[spend | buy] from constant models."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    X = pd.DataFrame({"a": np.arange(8.0)})
    y = np.array([0, 0, 0, 10, 0, 30, 0, -5.0])  # a net return counts as no buy
    m = TwoPartValue(DummyClassifier(strategy="prior"), DummyRegressor(strategy="mean")).fit(X, y)
    np.testing.assert_allclose(m.predict_buy_proba(X), 2 / 8)
    np.testing.assert_allclose(m.predict_spend(X), 20.0)
    np.testing.assert_allclose(m.predict(X), 5.0)
    with pytest.raises(ValueError):
        TwoPartValue(DummyClassifier(), DummyRegressor()).fit(X, np.zeros(8))


def test_value_baseline_fits(data):
    m = make_value_baseline().fit(data["X"], data["Y"]["future_value"])
    v = m.predict(data["test"])
    assert np.isfinite(v).all() and (v >= 0).all()


# ---------------------------------------------------------------- signal

def test_models_beat_trivial_baselines_on_synthetic_signal(data, churn, value):
    """The synthetic generator has real purchase-rate and spend heterogeneity: the models must
    rank churners and value far better than chance / a constant forecast."""
    y, X = data["y"], data["test"]
    auc = roc_auc_score(y["churned"], churn.predict_proba(X)[:, 1])
    assert auc > 0.8
    assert auc > roc_auc_score(y["churned"], make_churn_baseline().fit(data["X"], data["Y"]["churned"])
                               .predict_proba(X)[:, 1]) - 0.02
    ev = value.predict(X)
    vm = value_metrics(y["future_value"], ev)
    const_mae = np.abs(y["future_value"] - data["Y"]["future_value"].mean()).mean()
    assert vm["gini"] > 0.6 and vm["spearman"] > 0.5
    assert vm["mae"] < const_mae


# ---------------------------------------------------------------- transformers

TRANSFORMERS = [NumericSelector(), RatioFeatures(), BTYDFeatures(horizon_days=H),
                ColumnSubset(["recency_days", "frequency"]), SignedLog1p()]


@pytest.mark.parametrize("tr", TRANSFORMERS, ids=lambda t: type(t).__name__)
def test_transformers_follow_the_sklearn_contract(data, tr):
    X = NumericSelector().fit_transform(data["X"]) if not isinstance(tr, NumericSelector) else data["X"]
    c = clone(tr)
    assert c.get_params() == tr.get_params()
    assert not [k for k in vars(c) if k.endswith("_")]  # nothing learned before fit
    with pytest.raises(NotFittedError):
        c.transform(X)
    out = c.fit(X).transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(c.get_feature_names_out())
    assert out.index.equals(X.index)
    pd.testing.assert_frame_equal(clone(tr).fit_transform(X), out)
    assert list(c.feature_names_in_) == list(X.columns) and c.n_features_in_ == X.shape[1]
    with pytest.raises(TypeError):
        c.transform(X.to_numpy())


def test_numeric_selector_drops_context_labels_and_empty_columns():
    X = pd.DataFrame({"recency_days": [1, 2], "lifecycle_stage": ["a", "b"], "rfm_code": [111, 545],
                      "churned": [0, 1], "empty": [np.nan, np.nan], "flag": [True, False]})
    sel = NumericSelector().fit(X)
    assert list(sel.get_feature_names_out()) == ["recency_days", "flag"]
    assert (sel.transform(X).dtypes == "float64").all()
    with pytest.raises(ValueError, match="missing"):
        sel.transform(X.drop(columns="flag"))


def test_ratio_features_by_hand():
    X = pd.DataFrame({"recency_days": [30.0, 90.0], "frequency": [4.0, 1.0], "first_purchase_days_ago": [90.0, 90.0],
                      "monetary_total": [400.0, 50.0], "interval_mean_days": [20.0, np.nan],
                      "spend_90d": [100.0, 50.0]})
    out = RatioFeatures().fit_transform(X)
    np.testing.assert_allclose(out["recency_over_tenure"], [1 / 3, 1.0])
    np.testing.assert_allclose(out["purchases_per_month"], [4 / 4, 1 / 4])   # 90 d = 3 months, + 1
    np.testing.assert_allclose(out["repeat_purchases_per_month"], [3 / 4, 0.0])
    np.testing.assert_allclose(out["spend_per_month"], [100.0, 12.5])
    np.testing.assert_allclose(out["active_span_share"], [2 / 3, 0.0])
    np.testing.assert_allclose(out["recency_over_interval"], [1.5, np.nan])
    np.testing.assert_allclose(out["recent_spend_share"], [0.25, 1.0])
    with pytest.raises(ValueError, match="missing"):
        RatioFeatures().fit(X.drop(columns="frequency"))


def test_btyd_features_match_the_bgnbd_model(data):
    from keyaccounts.models.btyd import BGNBD
    X = NumericSelector().fit_transform(data["X"])
    tr = BTYDFeatures(horizon_days=H, time_unit_days=7).fit(X)
    x = X["frequency"] - 1
    T = X["first_purchase_days_ago"] / 7
    t_x = (X["first_purchase_days_ago"] - X["recency_days"]) / 7
    ref = BGNBD().fit(x, t_x, T)
    for k in ("r", "alpha", "a", "b"):
        assert tr.params_[k] == pytest.approx(ref.params_[k], rel=1e-6)
    out = tr.transform(data["test"].pipe(NumericSelector().fit(data["test"]).transform))
    assert set(BTYD_COLUMNS) <= set(out.columns)
    for c in ("p_alive", "p_no_purchase"):
        assert out[c].between(0, 1).all()
    assert (out["expected_purchases"] >= 0).all()
    # more recent last purchase (same x, T) -> more expected purchases, less chance of none
    cols = ["frequency", "recency_days", "first_purchase_days_ago"]
    one = pd.DataFrame({"frequency": [5.0, 5.0], "recency_days": [5.0, 200.0], "first_purchase_days_ago": [300.0, 300.0]})
    o = BTYDFeatures(horizon_days=H).fit(X[cols]).transform(one)
    assert o["expected_purchases"].iloc[0] > o["expected_purchases"].iloc[1]
    assert o["p_no_purchase"].iloc[0] < o["p_no_purchase"].iloc[1]


# ---------------------------------------------------------------- persistence

def test_models_pickle_and_predict_identically(data, churn, value):
    cal = calibrate(churn, data["X_val"], data["Y_val"]["churned"], method="isotonic")
    X = data["test"]
    for m, f in [(churn, "predict_proba"), (cal, "predict_proba"), (value, "predict"),
                 (value, "predict_buy_proba")]:
        buf = io.BytesIO()
        joblib.dump(m, buf)
        buf.seek(0)
        m2 = joblib.load(buf)
        np.testing.assert_array_equal(getattr(m2, f)(X), getattr(m, f)(X))
    cloudpickle = pytest.importorskip("cloudpickle")
    for m, f in [(cal, "predict_proba"), (value, "predict")]:
        m2 = cloudpickle.loads(cloudpickle.dumps(m))
        np.testing.assert_array_equal(getattr(m2, f)(X), getattr(m, f)(X))


def test_models_clone_unfitted():
    for m in (make_churn_model({"estimator": "blend"}), make_value_model(), make_churn_baseline(), make_value_baseline()):
        c = clone(m)
        assert c.get_params(deep=False).keys() == m.get_params(deep=False).keys()


# ---------------------------------------------------------------- CDNOW (real data)

CDNOW = Path(os.environ.get("KEYACCOUNTS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) \
    / "cdnow" / "CDNOW_master.txt"


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not CDNOW.exists(), reason="shared CDNOW data not present")
def test_cdnow_accuracy_benchmark_runs():
    """benchmarks/accuracy.py end to end. Asserts what the models achieve at the README's as_of
    (protocol, churn AUC and Gini +0.01 over both baselines, |total| within max(15 %, best
    baseline's + 2 pp), P10-P90 coverage within 80 +- 5 %)."""
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "accuracy.py"), "--transactions", str(CDNOW),
                        "--columns", "timestamp=date,amount=dollar_value,quantity=number_of_cds",
                        "--date-format", "%Y%m%d"],
                       capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("accuracy_pass=")
    status = {line[6:].split(":")[0]: line[:4] for line in lines if line[:4] in ("PASS", "FAIL")}
    assert status["training label windows end on/before as_of"] == "PASS"
    assert status["value Gini >= best baseline + 0.01"] == "PASS"
    assert status["churn AUC >= best baseline + 0.01"] == "PASS"
    assert status["|total error| <= max(15%, best baseline's + 2%)"] == "PASS"
    assert status["P10-P90 coverage within 80% +- 5%"] == "PASS"
    table = {ln.split()[0]: ln.split()[1:] for ln in lines if ln.split() and ln.split()[0] in ("naive", "btyd", "ours")}
    auc = {k: float(v[0]) for k, v in table.items()}
    assert auc["ours"] > max(auc["naive"], auc["btyd"])


def test_calibrate_uses_fewer_folds_for_a_rare_class_and_refuses_below_two():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from keyaccounts.errors import InputError
    from keyaccounts.models.common import calibrate
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    y_val = np.zeros(60, dtype=int)
    y_val[:3] = 1                                   # 3 positives: 3 folds (5 would raise in sklearn)
    cal = calibrate(model, X, y_val)
    assert cal.cv == 3
    assert np.all((cal.predict_proba(X)[:, 1] >= 0) & (cal.predict_proba(X)[:, 1] <= 1))
    y_val[1:3] = 0                                  # 1 positive: refused with a clear message
    with pytest.raises(InputError, match="1 positive and 59 negative"):
        calibrate(model, X, y_val)
