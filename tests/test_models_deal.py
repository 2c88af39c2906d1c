"""Deal win model: stage-rate baseline, refusal rule, the calibrated XGBoost pipeline,
persistence, lift over the baseline on synthetic data, and point-in-time training."""
from __future__ import annotations

import dataclasses

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from keyaccounts import datasets, synth
from keyaccounts.features import Tables
from keyaccounts.features.arrays import day_numbers
from keyaccounts.labels import deal_labels
from keyaccounts.models.deal import (
    LABEL,
    MIN_LOST,
    MIN_WON,
    StageRateBaseline,
    calibrate,
    deal_frame,
    enough_labels,
    known_at,
    make_deal_model,
    train_deal_model,
)
from keyaccounts.snapshots import cutoffs, deal_snapshots

STAGES = list(synth.STAGES_OPEN)
H = 90


@pytest.fixture(scope="module")
def world():
    s = synth.synthesize(n_customers=3000, seed=0, deals_per_customer=3.0)
    return s, Tables(transactions=s.transactions, customers=s.customers,
                     opportunities=s.opportunities, stage_history=s.stage_history)


@pytest.fixture(scope="module")
def trained(world):
    _, tables = world
    return train_deal_model(tables, as_of="2025-07-01", horizon_days=H, open_stages=STAGES)


@pytest.fixture(scope="module")
def snapshot_frame(world):
    _, tables = world
    cuts = cutoffs(as_of="2025-07-01", horizon_days=H, step_days=30, max_snapshots=4, earliest="2023-01-01")
    snaps = deal_snapshots(tables, cuts=cuts, horizon_days=H, open_stages=STAGES)
    return snaps.drop(columns=["won_within_horizon", "closed_within_horizon"]), snaps["won_within_horizon"]


# ---------------------------------------------------------------- baseline

def test_stage_rate_baseline_by_hand():
    X = pd.DataFrame({"stage_at_as_of": ["a", "a", "a", "b", "b"], "age_days": [1.0, 2, 3, 4, 5]})
    y = [1, 1, 0, 0, 0]
    m = StageRateBaseline(prior=2.0).fit(X, y)
    overall = 2 / 5
    assert m.overall_rate_ == pytest.approx(overall)
    # (wins + prior * overall) / (n + prior)
    assert m.stage_rates_["a"] == pytest.approx((2 + 2 * overall) / (3 + 2))   # 0.56
    assert m.stage_rates_["b"] == pytest.approx((0 + 2 * overall) / (2 + 2))   # 0.20
    assert m.stage_counts_.to_dict() == {"a": 3, "b": 2}
    new = pd.DataFrame({"stage_at_as_of": ["b", "c", "a"]})
    p = m.predict_proba(new)
    np.testing.assert_allclose(p[:, 1], [0.2, overall, 0.56])   # unseen stage -> overall rate
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert list(m.classes_) == [0, 1] and list(m.predict(new)) == [0, 0, 1]
    # prior 0 = raw stage rates
    raw = StageRateBaseline(prior=0.0).fit(X, y)
    assert raw.stage_rates_.to_dict() == pytest.approx({"a": 2 / 3, "b": 0.0})


def test_stage_rate_baseline_contract():
    with pytest.raises(NotFittedError):
        StageRateBaseline().predict_proba(pd.DataFrame({"stage_at_as_of": ["a"]}))
    with pytest.raises(ValueError, match="stage_at_as_of"):
        StageRateBaseline().fit(pd.DataFrame({"x": [1]}), [1])
    with pytest.raises(ValueError, match="0/1"):
        StageRateBaseline().fit(pd.DataFrame({"stage_at_as_of": ["a"]}), [2])
    m = StageRateBaseline(prior=3.0)
    assert m.get_params() == {"prior": 3.0, "stage_col": "stage_at_as_of"}
    assert not any(k.endswith("_") for k in vars(m))   # nothing learned before fit


# ---------------------------------------------------------------- refusal

def test_enough_labels_counts_deals_won_and_not_won_within_the_horizon():
    """The rule counts training snapshots, not recorded losses: a funnel that never records a
    loss still has deals not won within the horizon."""
    assert MIN_WON == MIN_LOST == 40

    def snaps(won: int, other: int) -> pd.DataFrame:
        return pd.DataFrame({LABEL: [1] * won + [0] * other})
    assert enough_labels(snaps(40, 40), as_of="2024-06-02", horizon_days=90) == (True, "")
    ok, why = enough_labels(snaps(39, 120), as_of="2024-06-02", horizon_days=90)
    assert not ok and "only 39 deal snapshot(s) won within 90 days and 120 not" in why
    assert "before 2024-06-02" in why and "at least 40 of each" in why and "stage-rate baseline" in why
    ok, why = enough_labels(None, as_of="2024-06-02", horizon_days=90)
    assert not ok and "only 0 deal snapshot(s) won within 90 days and 0 not" in why


def test_train_refuses_with_short_history(world):
    _, tables = world
    res = train_deal_model(tables, as_of="2023-04-01", horizon_days=30, open_stages=STAGES)
    assert res.refused_reason.startswith("only ") and "stage-rate baseline" in res.refused_reason
    assert isinstance(res.model, StageRateBaseline) and res.model is res.baseline
    assert res.metrics == {} and res.X_val is None
    X = deal_frame(tables, as_of="2023-04-01", open_stages=STAGES)
    p = res.model.predict_proba(X)[:, 1]
    assert ((p >= 0) & (p <= 1)).all()


# ---------------------------------------------------------------- model

def test_model_fits_and_predicts_probabilities_with_nans(snapshot_frame):
    X, y = snapshot_frame
    X = X.copy()
    X.iloc[::7, X.columns.get_loc("amount")] = np.nan           # NaN-tolerant
    m = make_deal_model().fit(X, y)
    p = m.predict_proba(X)[:, 1]
    assert p.shape == (len(X),) and ((p > 0) & (p < 1)).all()
    names = list(m.named_steps["features"].get_feature_names_out())
    assert "owner_win_rate" in names and "stage_at_as_of_proposal" in names
    assert not {"customer_id", "owner", "stage_at_as_of"} & set(names)   # context columns never read
    unseen = X.head(3).assign(stage_at_as_of="brand new stage")
    assert np.isfinite(m.predict_proba(unseen)).all()
    with pytest.raises(ValueError, match="shallow"):
        make_deal_model({"max_depth": 6})
    with pytest.raises(ValueError, match="unknown deal features"):
        make_deal_model(features=["close_value"])


def test_calibrated_model_roundtrips_through_joblib(snapshot_frame, tmp_path):
    X, y = snapshot_frame
    cut = X.index.get_level_values("cutoff")
    val = cut == cut.max()
    model = make_deal_model({"n_estimators": 30}).fit(X[~val], y[~val])
    cal = calibrate(model, X[val], y[val], "sigmoid")
    p = cal.predict_proba(X)[:, 1]
    path = tmp_path / "deal.joblib"
    joblib.dump(cal, path)
    again = joblib.load(path)
    np.testing.assert_array_equal(again.predict_proba(X)[:, 1], p)
    assert ((p > 0) & (p < 1)).all()


def test_training_result(trained):
    r = trained
    assert r.refused_reason is None
    assert r.cutoffs == sorted(r.cutoffs, reverse=True)
    assert r.val_cutoffs == r.cutoffs[:1] == [pd.Timestamp("2025-04-02")]   # as_of - H
    assert max(r.cutoffs) + pd.Timedelta(days=H) <= pd.Timestamp("2025-07-01")
    assert len(r.X_val) == len(r.y_val) == r.n_val > 0 and r.n_train > r.n_val
    assert set(r.X_val.index.get_level_values("cutoff")) == set(r.val_cutoffs)
    assert {"roc_auc", "brier", "ece"} <= set(r.metrics) and {"roc_auc"} <= set(r.baseline_metrics)
    assert "cross-fitted" in r.metrics_note
    assert r.metrics["roc_auc"] > 0.6 and 0 < r.metrics["brier"] < 0.25
    assert "owner_win_rate" in r.feature_names


def test_model_beats_stage_rate_baseline_out_of_time(world):
    # Owner skill shifts every stage's pass probability in the generator: the owner's past
    # win rate carries signal the stage alone does not. Scored on deals open at as_of,
    # labelled by what happens after it, pooled over two as_of dates.
    s, tables = world
    ys, pm, pb = [], [], []
    for as_of in ("2025-04-01", "2025-07-01"):
        r = train_deal_model(tables, as_of=as_of, horizon_days=H, open_stages=STAGES)
        X = deal_frame(tables, as_of=as_of, open_stages=STAGES)
        ys.append(deal_labels(s.opportunities, as_of=as_of, horizon_days=H, index=X.index)["won_within_horizon"])
        pm.append(r.model.predict_proba(X)[:, 1])
        pb.append(r.baseline.predict_proba(X)[:, 1])
    y = np.concatenate(ys)
    auc_model, auc_base = roc_auc_score(y, np.concatenate(pm)), roc_auc_score(y, np.concatenate(pb))
    assert auc_base > 0.6            # the stage alone is informative
    assert auc_model > auc_base + 0.02, (auc_model, auc_base)


# ---------------------------------------------------------------- point in time

def test_known_at_keeps_only_what_was_known(world):
    _, tables = world
    D = pd.Timestamp("2025-04-01")
    past = known_at(tables, as_of=D, open_stages=STAGES)
    o, h = past.opportunities, past.stage_history
    d0 = day_numbers(pd.Series([D]))[0]
    assert (day_numbers(o["created_date"]) < d0).all()
    closed = o["closed_date"].notna()
    assert (day_numbers(o.loc[closed, "closed_date"]) < d0).all()
    assert o.loc[~closed, "outcome"].isna().all() and o.loc[closed, "outcome"].notna().all()
    assert o.loc[~closed, "stage"].isin(STAGES).all()
    assert (day_numbers(h["changed_at"]) < d0).all()
    assert (day_numbers(past.transactions["timestamp"]) < d0).all()
    # a deal won after D is open at D in the stage it had reached
    full = tables.opportunities.set_index("opportunity_id")
    later = full.index[(full["closed_date"] >= D) & (full["created_date"] < D - pd.Timedelta(days=60))]
    assert len(later) > 0
    hist = tables.stage_history
    for oid in later[:5]:
        before = hist[(hist["opportunity_id"] == oid) & (hist["changed_at"] < D)]
        assert o.set_index("opportunity_id").loc[oid, "stage"] == before["stage"].iloc[-1]


def test_training_as_of_d_reads_nothing_from_d_on(world):
    # Train as of D on the full tables and on the tables cut to what was known at D:
    # identical cutoffs, features, labels, model and predictions.
    _, tables = world
    D = "2025-04-01"
    past = known_at(tables, as_of=D, open_stages=STAGES)
    full_res = train_deal_model(tables, as_of=D, horizon_days=H, open_stages=STAGES)
    past_res = train_deal_model(past, as_of=D, horizon_days=H, open_stages=STAGES)
    assert full_res.refused_reason is None and full_res.cutoffs == past_res.cutoffs
    pd.testing.assert_frame_equal(full_res.X_val, past_res.X_val)
    pd.testing.assert_series_equal(full_res.y_val, past_res.y_val)
    assert full_res.metrics == past_res.metrics
    X_full = deal_frame(tables, as_of=D, open_stages=STAGES)
    X_past = deal_frame(past, as_of=D, open_stages=STAGES)
    pd.testing.assert_frame_equal(X_full, X_past)
    np.testing.assert_array_equal(full_res.model.predict_proba(X_full), past_res.model.predict_proba(X_past))


# ---------------------------------------------------------------- Maven CRM (fictitious)

MAVEN = datasets.shared_data() / "maven_crm_sales_opportunities"


@pytest.fixture(scope="module")
def maven():
    if not (MAVEN / "sales_pipeline.csv").is_file():
        pytest.skip(f"{MAVEN} not found (set KEYACCOUNTS_SHARED_DATA to the shared data folder)")
    from keyaccounts.schemas import prepare_table
    raw = datasets.maven_tables(MAVEN)
    t = {n: prepare_table(f, n, file=f"maven:{n}", stages=datasets.MAVEN_STAGES, date_format="%Y-%m-%d")[0]
         for n, f in raw.items()}
    return Tables(transactions=t["transactions"], customers=t["customers"],
                  opportunities=t["opportunities"], stage_history=t["stage_history"])


@pytest.mark.data
@pytest.mark.slow
def test_maven_point_in_time_training(maven):
    D, open_stages = "2017-09-01", list(datasets.MAVEN_OPEN)
    full = train_deal_model(maven, as_of=D, horizon_days=H, open_stages=open_stages)
    past = train_deal_model(known_at(maven, as_of=D, open_stages=open_stages), as_of=D, horizon_days=H,
                            open_stages=open_stages)
    assert full.refused_reason is None
    X = deal_frame(maven, as_of=D, open_stages=open_stages)
    assert set(X["stage_at_as_of"]) == {"engaging"}   # Maven dates no other open stage
    np.testing.assert_array_equal(full.model.predict_proba(X), past.model.predict_proba(X))
    # one stage: the baseline is a constant
    assert np.unique(full.baseline.predict_proba(X)[:, 1]).size == 1


@pytest.mark.data
@pytest.mark.slow
def test_maven_blank_accounts_are_an_end_of_data_leak(maven):
    # The account is blank exactly on deals still open at the end of the data, so those
    # deals are never won; their account features read 0 (no history). That alone gives
    # AUC ~0.75 as of 2017-09-01. Without them the model is modest (fictitious data).
    o = maven.opportunities
    assert o.loc[o["customer_id"].isna(), "outcome"].isna().all()
    D, open_stages = "2017-09-01", list(datasets.MAVEN_OPEN)
    X = deal_frame(maven, as_of=D, open_stages=open_stages)
    y = deal_labels(o, as_of=D, horizon_days=H, index=X.index)["won_within_horizon"]
    assert roc_auc_score(y, X["customer_id"].notna()) > 0.7
    keep = o["customer_id"].notna()
    h = maven.stage_history
    clean = dataclasses.replace(maven, opportunities=o[keep],
                                stage_history=h[h["opportunity_id"].isin(o.loc[keep, "opportunity_id"])])
    res = train_deal_model(clean, as_of=D, horizon_days=H, open_stages=open_stages)
    Xc = deal_frame(clean, as_of=D, open_stages=open_stages)
    yc = deal_labels(clean.opportunities, as_of=D, horizon_days=H, index=Xc.index)["won_within_horizon"]
    assert 0.5 < roc_auc_score(yc, res.model.predict_proba(Xc)[:, 1]) < 0.75
