"""Per-account explanations: exact additivity (linear and tree parts), TreeSHAP vs shap,
plain-words reasons with raw values, determinism, top:N selection."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from keyaccounts import explain as E
from keyaccounts.config import FeatureConfig, TrainConfig
from keyaccounts.features import Tables
from keyaccounts.models.churn import calibrate, make_churn_model
from keyaccounts.models.deal import train_deal_model
from keyaccounts.models.value import make_value_model
from keyaccounts.synth import STAGES_OPEN, synthesize
from keyaccounts.train import customer_split

CFG = TrainConfig(step_days=30, max_snapshots=6, min_history_days=60)


@pytest.fixture(scope="module")
def world():
    s = synthesize(n_customers=400, seed=3)
    sp = customer_split(Tables(s.transactions, s.customers, s.invoices), as_of=pd.Timestamp("2025-09-01").date(),
                        horizon_days=90, cfg=CFG, features=FeatureConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        churn = make_churn_model({"horizon_days": 90}).fit(sp.X_train, sp.y_train["churned"])
        cal = calibrate(churn, sp.X_val, sp.y_val["churned"])
        value = make_value_model({"horizon_days": 90}).fit(sp.X_train, sp.y_train["future_value"])
        deal = train_deal_model(Tables(s.transactions, s.customers, s.invoices, s.opportunities, s.stage_history),
                                as_of="2025-07-01", horizon_days=90, open_stages=list(STAGES_OPEN))
    assert deal.refused_reason is None
    E.fix_reference(cal, sp.X_train)
    E.fix_reference(value, sp.X_train)
    return {"X": sp.X_val, "churn": cal, "value": value, "deal": deal.model, "D": deal.X_val,
            "X_train": sp.X_train}


def test_churn_linear_contributions_add_up_to_the_margin(world):
    X, m = world["X"], world["churn"]
    C = E.contributions(m, X)
    assert list(C.columns)[-1] == "bias" and C.index.equals(X.index)
    assert "recency_over_tenure" in C.columns and "p_alive" in C.columns
    assert E.check_additivity(m, X, C) < 1e-9
    # the calibrated wrapper explains the frozen model's decision function
    inner = m.calibrated_classifiers_[0].estimator.estimator
    np.testing.assert_allclose(C.sum(axis=1), inner.decision_function(X), atol=1e-9)
    # the reference is the training population's mean: over those rows contributions average 0
    T = E.contributions(m, world["X_train"])
    np.testing.assert_allclose(T.drop(columns="bias").mean(), 0.0, atol=1e-9)
    assert set(E.reference_points(m)[""]) == set(C.columns[:-1])


@pytest.mark.parametrize("name", ["churn", "value", "deal"])
def test_contributions_do_not_depend_on_which_rows_are_explained(world, name):
    """Every row's contributions and reasons are the same explained alone, among a few rows or
    among all rows: the reference point is fixed at training, never the scored rows' mean."""
    m = world[name]
    X = world["D"] if name == "deal" else world["X"]
    full = E.contributions(m, X)
    for rows in (X.index[:1], X.index[::7], X.index[-25:]):
        part = E.contributions(m, X.loc[rows])
        np.testing.assert_array_equal(part.to_numpy(), full.loc[rows].to_numpy())
    R_all = E.explain_accounts(m, X, kind=name)
    R_top = E.explain_accounts(m, X, kind=name, reasons="top:10")
    some = R_top.index[R_top["reasons_up"] + R_top["reasons_down"] != ""]
    assert len(some) == 10
    assert R_top.loc[some].equals(R_all.loc[some])


def test_a_linear_model_without_a_reference_is_refused():
    from sklearn.linear_model import LogisticRegression
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    m = LogisticRegression().fit(X, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="fix_reference"):
        E.contributions(m, X)
    E.fix_reference(m, X)
    np.testing.assert_allclose(E.contributions(m, X).drop(columns="bias").mean(), 0.0, atol=1e-12)


@pytest.mark.parametrize("name", ["value", "deal"])
def test_tree_contributions_add_up_to_the_margin(world, name):
    m = world[name]
    X = world["X"] if name == "value" else world["D"]
    C = E.contributions(m, X)
    bound = E.float32_margin_error_bound(m)             # from T, depth and the leaf magnitudes
    assert 0 < bound < 1e-2
    exact = E.check_additivity(m, X, C, exact=True)     # float64 sum of the trees' leaf values
    f32 = E.check_additivity(m, X, C)                    # XGBoost's own float32 output_margin
    assert exact <= bound and f32 <= 2 * bound           # both sides round: twice the bound
    if name == "deal":
        assert any(c.startswith("stage_at_as_of_") for c in C.columns)


def test_tree_contributions_use_every_cpu_without_touching_the_model(world):
    """TreeSHAP runs on all CPUs, yet the fitted model keeps its own thread setting and every row's
    contributions are those of a single-threaded run, bit for bit (rows are independent)."""
    import xgboost as xgb
    X, m = world["X"], world["value"]
    reg = m.regressor_.steps[-1][1]
    before = reg.get_booster().save_config()
    C = E.contributions(m, X)
    assert reg.get_booster().save_config() == before
    one = reg.get_booster().copy()
    one.set_param({"nthread": 1})
    Z = m.regressor_[:-1].transform(X)
    ref = one.predict(xgb.DMatrix(Z, missing=np.nan, feature_names=one.feature_names), pred_contribs=True)
    np.testing.assert_array_equal(C.to_numpy(), np.asarray(ref, dtype="float64"))


def test_two_part_value_explains_either_part(world):
    X, m = world["X"], world["value"]
    buy = E.contributions(m, X, part="buy")
    assert E.check_additivity(m, X, buy, part="buy") < 1e-9
    spend = E.contributions(m, X)
    # |d exp(m)| / exp(m) = |dm|: the relative tolerance is the margins' float32 error bound
    # (contributions and predict() round independently: twice the bound)
    rtol = 2 * E.float32_margin_error_bound(m)
    assert rtol < 1e-2
    np.testing.assert_allclose(np.exp(spend.sum(axis=1)), m.regressor_.predict(X), rtol=rtol)


@pytest.mark.parametrize("name", ["value", "deal"])
def test_pred_contribs_agree_with_shap_tree_explainer(world, name):
    shap = pytest.importorskip("shap")
    m = world[name]
    X = world["X"] if name == "value" else world["D"]
    pipe = m.regressor_ if name == "value" else m.calibrated_classifiers_[0].estimator.estimator
    Z = pipe[:-1].transform(X)
    ex = shap.TreeExplainer(pipe.steps[-1][1])
    sv = np.asarray(ex.shap_values(Z), dtype="float64")
    C = E.contributions(m, X)
    bound = 2 * E.float32_margin_error_bound(m)        # two float32 TreeSHAP implementations
    assert np.abs(sv - C.drop(columns="bias").to_numpy()).max() <= bound
    assert abs(float(np.ravel(ex.expected_value)[0]) - C["bias"].iloc[0]) <= bound


def test_reasons_use_raw_values_and_direction(world):
    X = world["X"].copy()
    m = world["churn"]
    C = E.contributions(m, X)
    # pick a long-lapsed customer whose recency group pushes churn up and set a known raw value
    rec_cols = [c for c in C.columns if E.reason_key(c) == "recency_days"]
    push = C[rec_cols].sum(axis=1)
    row = push.idxmax()
    assert push[row] > 0
    raw = X.copy()
    raw.loc[row, "recency_days"] = 142.0
    R = E.top_reasons(C, raw, n=3, kind="churn")
    assert "no purchase for 142 days" in R.loc[row, "reasons_up"].split("; ")
    assert "no purchase for" not in R.loc[row, "reasons_down"]
    # the strongest pull down is read as a strength for churn, a risk for value
    low = push.idxmin()
    assert push[low] < 0 and "last purchase" in R.loc[low, "reasons_down"] or "yesterday" in R.loc[low, "reasons_down"]
    for txt in pd.concat([R["reasons_up"], R["reasons_down"]]):
        for phrase in filter(None, txt.split("; ")):
            assert "nan" not in phrase and "=" not in phrase and "_" not in phrase, phrase
    assert (R["reasons_up"].str.count("; ") <= 2).all()


def test_deal_reasons_phrases(world):
    D = world["D"]
    R = E.explain_accounts(world["deal"], D, D, kind="deal", n=6)
    allp = set("; ".join(R["reasons_up"] + "; " + R["reasons_down"]).split("; "))
    assert any(p.startswith("deal open ") and p.endswith(" days") for p in allp)
    assert any(p.startswith("owner wins ") and p.endswith(" % of deals") for p in allp)


def test_stage_one_hots_group_into_one_reason():
    # the tiny fixture's trees do not split on stage; check the grouping on a hand-made frame
    C = pd.DataFrame({"stage_at_as_of_negotiation": [0.4], "stage_at_as_of_proposal": [0.2], "stage_index": [-0.1],
                      "amount_vs_account_won_avg": [-0.3], "owner_win_rate": [0.05], "bias": [0.0]}, index=["o1"])
    raw = pd.DataFrame({"stage_at_as_of": ["negotiation"], "stage_index": [3.0], "amount_vs_account_won_avg": [3.14],
                        "owner_win_rate": [0.35]}, index=["o1"])
    R = E.top_reasons(C, raw, kind="deal")
    assert R.loc["o1", "reasons_up"] == "in stage negotiation; owner wins 35 % of deals"
    assert R.loc["o1", "reasons_down"] == "3.1x the account's usual deal"


def test_unknown_feature_falls_back_to_name_and_value():
    C = pd.DataFrame({"mystery": [0.5, -0.2], "bias": [0.0, 0.0]}, index=["a", "b"])
    raw = pd.DataFrame({"mystery": [3.0, 7.25]}, index=["a", "b"])
    R = E.top_reasons(C, raw, kind="churn")
    assert R.loc["a", "reasons_up"] == "mystery = 3" and R.loc["b", "reasons_down"] == "mystery = 7.25"
    assert R.loc["a", "reasons_down"] == "" and R.loc["b", "reasons_up"] == ""


def test_order_by_abs_contribution_then_name():
    C = pd.DataFrame({"monetary_avg": [0.3], "n_overdue_30d": [0.3], "recency_days": [0.9],
                      "frequency": [0.1], "bias": [1.0]}, index=["x"])
    raw = pd.DataFrame({"monetary_avg": [54.0], "n_overdue_30d": [2.0], "recency_days": [142.0],
                        "frequency": [5.0]}, index=["x"])
    R = E.top_reasons(C, raw, n=3, kind="churn")
    assert R.loc["x", "reasons_up"] == ("no purchase for 142 days; average order $54; "
                                        "2 invoices overdue > 30 days")
    g = E.global_importance(C)
    assert list(g.index) == ["recency_days", "monetary_avg", "n_overdue_30d", "frequency"]


def test_deterministic(world):
    X, m = world["X"], world["churn"]
    a = E.explain_accounts(m, X, X, kind="churn")
    b = E.explain_accounts(m, X.copy(), X.copy(), kind="churn")
    pd.testing.assert_frame_equal(a, b)
    v1 = E.explain_accounts(world["value"], X, X, kind="value")
    v2 = E.explain_accounts(world["value"], X, X, kind="value")
    pd.testing.assert_frame_equal(v1, v2)
    assert (v1["reasons_up"] != "").any()


def test_top_n_leaves_other_rows_blank(world):
    X, m = world["X"], world["churn"]
    p = pd.Series(m.predict_proba(X)[:, 1], index=X.index)
    sel = E.select_rows(p, "top:5")
    assert len(sel) == 5 and list(sel) == list(p.sort_values(ascending=False, kind="stable").index[:5])
    R = E.explain_accounts(m, X, X, kind="churn", reasons="top:5")
    has = (R["reasons_up"] != "") | (R["reasons_down"] != "")
    assert set(R.index[has]) <= set(sel) and has.sum() >= 4 and len(R) == len(X)
    full = E.explain_accounts(m, X, X, kind="churn")
    pd.testing.assert_frame_equal(R.loc[sel], full.loc[sel])   # background = all rows either way
    assert E.select_rows(p, "all").equals(p.index) and len(E.select_rows(p, "top:0")) == 0
    with pytest.raises(ValueError):
        E.select_rows(p, "top:x")
