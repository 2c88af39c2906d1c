"""Reasons read as a salesperson expects: buying more often or spending more never turns
"buys N times a month" / "spends $X a month" into a churn risk (or a value weakness).

The churn GLM's coefficients are bounded to the stated directions (models.linear), the P(buy)
part of the value model likewise; the spend trees are checked behaviourally."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest

from keyaccounts import explain as E
from keyaccounts.config import FeatureConfig, TrainConfig
from keyaccounts.features import Tables
from keyaccounts.models.churn import CHURN_SIGNS, calibrate, make_churn_model
from keyaccounts.models.linear import SignedLogisticRegression
from keyaccounts.models.value import make_value_model
from keyaccounts.synth import synthesize
from keyaccounts.train import customer_split

FACTORS = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0)


@pytest.fixture(scope="module")
def world():
    s = synthesize(n_customers=500, seed=5)
    sp = customer_split(Tables(s.transactions, s.customers, s.invoices), as_of=pd.Timestamp("2025-09-01").date(),
                        horizon_days=90, cfg=TrainConfig(step_days=30, max_snapshots=6, min_history_days=60),
                        features=FeatureConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        churn = make_churn_model({"horizon_days": 90}).fit(sp.X_train, sp.y_train["churned"])
        churn = calibrate(churn, sp.X_val, sp.y_val["churned"])
        value = make_value_model({"horizon_days": 90}).fit(sp.X_train, sp.y_train["future_value"])
    E.fix_reference(churn, sp.X_train)
    E.fix_reference(value, sp.X_train)
    X = sp.X_val.reset_index(level="cutoff", drop=True)
    return churn, value, X[X["frequency"] > 0].head(120)


def _raised(X: pd.DataFrame, what: str, k: float) -> pd.DataFrame:
    Y = X.copy()
    if what == "frequency":            # more purchase days over the same tenure
        Y["frequency"] = Y["frequency"] * k
    else:                              # more spend, recent and total, per purchase
        for c in ("monetary_total", "monetary_avg", "spend_90d", "spend_365d"):
            if c in Y.columns:
                Y[c] = Y[c] * k
    return Y


def _group(C: pd.DataFrame, key: str) -> pd.Series:
    return C[[c for c in C.columns if c != "bias" and E.reason_key(c) == key]].sum(axis=1)


@pytest.mark.parametrize("what,key,phrase", [("frequency", "purchases_per_month", "times a month"),
                                             ("spend", "spend_per_month", "a month")])
def test_more_buying_never_reads_as_churn_risk(world, what, key, phrase):
    churn, _, X = world
    contrib = [_group(E.contributions(churn, _raised(X, what, k)), key) for k in FACTORS]
    steps = np.diff(np.column_stack(contrib), axis=1)
    assert (steps <= 1e-12).all()            # the reason's push on churn never grows with more buying
    was_strength = pd.Series(False, index=X.index)
    for k, c in zip(FACTORS, contrib, strict=False):
        Y = _raised(X, what, k)
        R = E.top_reasons(E.contributions(churn, Y), Y, n=3, kind="churn")
        risk = R["reasons_up"].str.split("; ").map(lambda ps: any(phrase in p and key_word(key) in p for p in ps))
        strength = R["reasons_down"].str.split("; ").map(lambda ps: any(phrase in p and key_word(key) in p for p in ps))
        assert not (was_strength & risk).any()  # once a strength, raising it never makes it a risk
        assert not (risk & (c < 0)).any()
        was_strength |= strength
    assert was_strength.any()                   # the test saw the phrase as a strength at all


def key_word(key: str) -> str:
    return "buys" if key == "purchases_per_month" else "spends"


def test_value_model_directions(world):
    """The value model's P(buy) part: purchase and spend rates never lower it (signed GLM); and in
    the value reasons of either part (risk = pulls the expected value down) buying more often or
    spending more never turns a strength into a weakness."""
    _, value, X = world
    buy_coef = dict(zip(value.classifier_[-1].feature_names_in_, value.classifier_[-1].coef_.ravel(), strict=False))
    for name, sign in CHURN_SIGNS.items():
        if name in buy_coef:
            assert buy_coef[name] * -sign >= 0, name
    for (what, key), part in itertools.product((("frequency", "purchases_per_month"), ("spend", "spend_per_month")),
                                               ("buy", "spend")):
        was_strength = pd.Series(False, index=X.index)
        for k in FACTORS:
            Y = _raised(X, what, k)
            if True:
                C = E.contributions(value, Y, part=part)
                R = E.top_reasons(C, Y, n=3, kind="value")
                weak = R["reasons_down"].str.contains(key_word(key), regex=False)
                assert not (was_strength & weak).any(), (what, part, k)
                was_strength |= R["reasons_up"].str.contains(key_word(key), regex=False)


def test_signed_logistic_regression_keeps_signs_and_matches_sklearn_when_free():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    a = rng.normal(size=2000)
    b = a + rng.normal(scale=0.05, size=2000)         # nearly collinear twin
    y = (rng.random(2000) < 1 / (1 + np.exp(-(2 * a)))).astype(int)
    X = pd.DataFrame({"a": a, "b": b})
    free = SignedLogisticRegression(C=1.0).fit(X, y)
    ref = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(free.coef_, ref.coef_, atol=1e-4)
    np.testing.assert_allclose(free.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    bound = SignedLogisticRegression(C=1.0, signs={"a": 1, "b": -1}).fit(X, y)
    assert bound.coef_[0, 0] >= 0 and bound.coef_[0, 1] <= 0
    with pytest.raises(ValueError, match="signs"):
        SignedLogisticRegression(signs={"a": 2}).fit(X, y)
