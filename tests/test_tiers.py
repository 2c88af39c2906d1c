"""Rule-based tiers (keyaccounts.tiers): tiny hand-made frames, expected values typed by hand."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal

from keyaccounts.config import ActionConfig, CompositeConfig, Criterion, KaismConfig, Pipeline, RfmRule, TierConfig
from keyaccounts.features import Tables, build_features
from keyaccounts.tiers import (
    INSUFFICIENT,
    OUTPUT_COLUMNS,
    abc_tier,
    assign_tiers,
    composite_score,
    data_flag,
    kaism,
    percentile_rank,
    pyramid_tier,
    recommended_action,
    rfm_segment,
)


def _s(values, index, name=None, dtype="str") -> pd.Series:
    return pd.Series(values, index=pd.Index(index, name="customer_id"), name=name, dtype=dtype)


def _idx(ids) -> pd.Index:
    return pd.Index(ids, name="customer_id")


# ---------------------------------------------------------------- ABC

def test_abc_cut_exactly_at_80_percent():
    # shares before each account: 0, .50, .80, .90, .95 -> A A | B (.80 is not < .80) B | C (.95 not < .95)
    v = _s([50.0, 30.0, 10.0, 5.0, 5.0], list("abcde"), dtype="float64")
    assert_series_equal(abc_tier(v), _s(list("AABBC"), list("abcde")))


def test_abc_account_crossing_the_boundary_is_a():
    # before: 0, .70 (this one crosses 80 %: still A), .90 -> B
    v = _s([70.0, 20.0, 10.0], list("xyz"), dtype="float64")
    assert_series_equal(abc_tier(v), _s(list("AAB"), list("xyz")))


def test_abc_ties_broken_by_index_whatever_the_row_order():
    # c 85 (before 0) A; ties at 5 in index order a (.85) B, b (.90) B, d (.95) C
    v = _s([5.0, 85.0, 5.0, 5.0], list("dcba"), dtype="float64")
    expected = _s(["C", "A", "B", "B"], list("dcba"))
    assert_series_equal(abc_tier(v), expected)
    assert_series_equal(abc_tier(v.iloc[::-1]), expected.iloc[::-1])


def test_abc_non_positive_and_missing_are_c():
    v = _s([100.0, 0.0, -5.0, np.nan], list("abcd"), dtype="float64")
    assert_series_equal(abc_tier(v), _s(list("ACCC"), list("abcd")))
    assert_series_equal(abc_tier(_s([0.0, -1.0], list("ab"), dtype="float64")), _s(list("CC"), list("ab")))


def test_abc_shares_from_arguments():
    v = _s([50.0, 30.0, 10.0, 5.0, 5.0], list("abcde"), dtype="float64")
    # a_share .5: before 0 -> A, .5 -> B (< .5 + .45), .8 -> B, .9 -> B, .95 -> C (not < .95)
    assert_series_equal(abc_tier(v, a_share=0.5, b_share=0.45), _s(list("ABBBC"), list("abcde")))


# ---------------------------------------------------------------- pyramid

def test_pyramid_default_bands_on_100_accounts():
    ids = [f"c{i:03d}" for i in range(100)]
    v = _s(np.arange(100, 0, -1, dtype="float64"), ids, dtype="float64")
    expected = _s(["VIP"] + ["major"] * 4 + ["medium"] * 15 + ["small"] * 80, ids)
    assert_series_equal(pyramid_tier(v), expected)


def test_pyramid_small_base_ties_and_non_positive():
    # 10 accounts: before = 0 (VIP), .1 (< .20: medium), >= .2 small; b and c tie at 5 -> index order
    v = _s([9.0, 5.0, 5.0, 8.0, 1.0, 1.0, 1.0, 1.0, 0.0, -3.0], list("abcdefghij"), dtype="float64")
    expected = _s(["VIP", "small", "small", "medium"] + ["small"] * 6, list("abcdefghij"))
    assert_series_equal(pyramid_tier(v), expected)
    ties = _s([5.0, 5.0, 5.0, 5.0], list("dcba"), dtype="float64")
    bands = [("top", 0.25), ("mid", 0.5)]
    assert_series_equal(pyramid_tier(ties, bands=bands, rest="low"), _s(["low", "mid", "mid", "top"], list("dcba")))
    assert_series_equal(pyramid_tier(_s([0.0], ["a"], dtype="float64")), _s(["small"], ["a"]))


# ---------------------------------------------------------------- RFM

RFM_CASES = [  # (r, f, m) -> segment, one or more per rule of the default table
    ((5, 5, 5), "champions"), ((4, 4, 1), "champions"),
    ((3, 4, 1), "loyal"), ((3, 5, 5), "loyal"),
    ((5, 2, 1), "potential loyalist"), ((4, 3, 5), "potential loyalist"),
    ((4, 1, 1), "new"), ((5, 1, 5), "new"),
    ((3, 1, 3), "promising"),
    ((1, 4, 1), "can't lose"), ((1, 5, 5), "can't lose"),
    ((2, 3, 3), "at risk"), ((1, 3, 5), "at risk"), ((2, 5, 4), "at risk"),
    ((2, 1, 5), "hibernating"), ((2, 2, 1), "hibernating"),
    ((1, 1, 1), "lost"), ((1, 2, 5), "lost"),
    ((3, 2, 2), "need attention"), ((3, 3, 5), "need attention"), ((2, 4, 2), "need attention"),
    ((1, 3, 2), "need attention"),
]


def test_rfm_segment_each_rule():
    ids = [f"c{i:02d}" for i in range(len(RFM_CASES))]
    r, f, m = (_s([c[0][k] for c in RFM_CASES], ids, dtype="int64") for k in range(3))
    assert_series_equal(rfm_segment(r, f, m), _s([c[1] for c in RFM_CASES], ids, name="rfm_segment"))


def test_rfm_rules_from_config_first_match_wins():
    rules = [RfmRule(segment="top", r=(5, 5)), RfmRule(segment="frequent", f=(4, 5))]
    r, f, m = (_s(v, list("abc"), dtype="int64") for v in ([5, 3, 2], [5, 4, 1], [1, 1, 1]))
    out = rfm_segment(r, f, m, rules=rules, default="other")
    assert_series_equal(out, _s(["top", "frequent", "other"], list("abc"), name="rfm_segment"))
    with pytest.raises(ValueError, match="lo <= hi"):
        RfmRule(segment="bad", r=(4, 2))


# ---------------------------------------------------------------- percentile rank

def test_percentile_rank_ties_missing_and_single():
    assert_series_equal(percentile_rank(_s([10.0, 30.0, 20.0, 20.0, np.nan], list("abcde"), dtype="float64")),
                        _s([0.0, 1.0, 0.5, 0.5, 0.5], list("abcde"), dtype="float64"))
    assert_series_equal(percentile_rank(_s([7.0], ["a"], dtype="float64")), _s([0.5], ["a"], dtype="float64"))


# ---------------------------------------------------------------- KAISM

def test_kaism_quadrant_per_corner():
    ids = ["k", "d", "m", "h"]
    f = pd.DataFrame({
        "monetary_total": [1.0, 1.0, 1.0, 1.0],
        "spend_growth_ratio_90d": [4.0, 3.0, 2.0, 1.0],
        "margin_rate": [0.4, 0.3, 0.2, 0.1],
        "tenure_days": [400, 100, 300, 50],
        "days_past_due_mean": [0.0, 5.0, 1.0, 10.0],
    }, index=_idx(ids))
    scores = pd.DataFrame({"expected_value": [40.0, 30.0, 20.0, 10.0],
                           "churn_probability": [0.1, 0.8, 0.2, 0.9]}, index=_idx(ids))
    expected = pd.DataFrame({"attractiveness": [1.0, 2 / 3, 1 / 3, 0.0], "position": [1.0, 1 / 3, 2 / 3, 0.0],
                             "kaism_quadrant": pd.Series(["key", "develop", "maintain", "harvest"],
                                                         index=_idx(ids), dtype="str")}, index=_idx(ids))
    assert_frame_equal(kaism(f, scores, TierConfig()), expected)


def test_kaism_weights_renormalise_without_margin_credit_and_churn_model():
    # value = monetary_total -> pct 0, .5, 1; growth 3, 1, 2 -> 1, 0, .5
    # attractiveness = (.5 value + .25 growth) / .75: x 1/3, y 1/3, z (.5 + .125) / .75 = 5/6
    # retention = spend_90d / prior capped at 1: x .5, y 1, z NaN (no prior) -> pct 0, 1, .5 (neutral)
    # tenure 100, 300, 200 -> 0, 1, .5; position = (.4 ret + .3 tenure) / .7: x 0, y 1, z .5 (= split: strong)
    f = pd.DataFrame({"monetary_total": [10.0, 20.0, 30.0], "spend_growth_ratio_90d": [3.0, 1.0, 2.0],
                      "spend_90d": [50.0, 200.0, 0.0], "spend_prior_90d": [100.0, 100.0, 0.0],
                      "tenure_days": [100, 300, 200]}, index=_idx(list("xyz")))
    out = kaism(f, None, TierConfig())
    assert_series_equal(out["attractiveness"], _s([1 / 3, 1 / 3, 5 / 6], list("xyz"), "attractiveness", "float64"))
    assert_series_equal(out["position"], _s([0.0, 1.0, 0.5], list("xyz"), "position", "float64"))
    assert_series_equal(out["kaism_quadrant"], _s(["harvest", "maintain", "key"], list("xyz"), "kaism_quadrant"))
    # an all-NaN margin_rate column counts as absent: same result
    assert_frame_equal(kaism(f.assign(margin_rate=np.nan), None, TierConfig()), out)


# ---------------------------------------------------------------- composite

def _three():
    ids = _idx(list("ABC"))
    f = pd.DataFrame({"monetary_total": [100.0, 200.0, 300.0], "margin_total": [30.0, 10.0, 20.0],
                      "spend_growth_ratio_90d": [1.0, 2.0, 0.5]}, index=ids)
    s = pd.DataFrame({"expected_value": [50.0, 40.0, 10.0], "churn_probability": [0.1, 0.2, 0.9]}, index=ids)
    return f, s


def test_composite_score_by_hand_for_three_accounts():
    # ranks: order 0/.5/1, profit 1/0/.5, growth .5/1/0, predicted 1/.5/0, 1 - churn 1/.5/0; no credit:
    # weights .25 .20 .15 .15 .10 renormalised by .85
    f, s = _three()
    a = (0.25 * 0 + 0.20 * 1 + 0.15 * 0.5 + 0.15 * 1 + 0.10 * 1) / 0.85
    b = (0.25 * 0.5 + 0.20 * 0 + 0.15 * 1 + 0.15 * 0.5 + 0.10 * 0.5) / 0.85
    c = (0.25 * 1 + 0.20 * 0.5 + 0.15 * 0 + 0.15 * 0 + 0.10 * 0) / 0.85
    out = composite_score(f, s, TierConfig())
    assert_series_equal(out["composite_score"], _s([100 * a, 100 * b, 100 * c], list("ABC"), "composite_score",
                                                   "float64"))
    assert out["composite_tier"].tolist() == ["key", "standard", "standard"]  # 61.76, 47.06, 41.18


def test_composite_band_boundaries_are_inclusive():
    # order amount alone (other weights 0): ranks 0, .2, .4, .6, .8, 1 -> scores 0 ... 100
    f = pd.DataFrame({"monetary_total": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}, index=_idx(list("abcdef")))
    cfg = TierConfig(composite=CompositeConfig(profit_weight=0, credit_weight=0, growth_weight=0,
                                               predicted_value_weight=0, churn_risk_weight=0))
    out = composite_score(f, None, cfg)
    assert out["composite_score"].tolist() == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert out["composite_tier"].tolist() == ["transactional", "transactional", "standard", "key", "strategic",
                                              "strategic"]


def test_composite_credit_health_from_invoice_columns():
    # only credit (weight .15, alone after renormalising with order amount weight 0):
    # late share .0, .5, 1 -> health 1, .5, 0; overdue 0, 0, 10 -> ranks .25, .25, 1 -> health .75, .75, 0
    f = pd.DataFrame({"monetary_total": [1.0, 1.0, 1.0], "late_payment_share": [0.0, 0.5, 1.0],
                      "overdue_balance": [0.0, 0.0, 10.0]}, index=_idx(list("abc")))
    cfg = TierConfig(composite=CompositeConfig(order_amount_weight=0))
    out = composite_score(f, None, cfg)
    assert out["composite_score"].tolist() == [87.5, 62.5, 0.0]


# ---------------------------------------------------------------- minimum data and actions

def test_data_flag_minimum_history():
    f = pd.DataFrame({"frequency": [1, 2, 5, 0], "tenure_days": [400.0, 89.0, 90.0, np.nan]},
                     index=_idx(list("abcd")))
    assert_series_equal(data_flag(f), _s([INSUFFICIENT, INSUFFICIENT, "", INSUFFICIENT], list("abcd"), "data_flag"))
    assert_series_equal(data_flag(f, min_purchases=1, min_tenure_days=0),
                        _s(["", "", "", INSUFFICIENT], list("abcd"), "data_flag"))


def test_recommended_action_override():
    ids = list("abcdef")
    quad = _s(["key", "key", "harvest", "develop", "maintain", "develop"], ids)
    seg = _s(["champions", "at risk", "can't lose", "can't lose", "at risk", "lost"], ids)
    churn = _s([0.9, 0.7, 0.3, np.nan, 0.5, 0.9], ids, dtype="float64")
    flag = _s(["", "", "", "", "", INSUFFICIENT], ids)
    out = recommended_action(quad, seg, churn_probability=churn, flag=flag)
    assert_series_equal(out, _s([
        "assign key-account manager; protect and grow",  # champions are not overridden
        "retention call this week",                      # at risk and churn .7 >= .5
        "serve efficiently, low-touch",                  # can't lose but churn .3 is low
        "retention call this week",                      # not scored by the churn model: segment alone
        "retention call this week",                      # churn exactly .5
        "nurture; re-tier once history builds",          # insufficient history
    ], ids, "recommended_action"))
    no_churn = recommended_action(quad, seg)
    assert no_churn.tolist()[2] == "retention call this week"
    custom = ActionConfig(overrides=[])
    assert recommended_action(quad, seg, churn_probability=churn, actions=custom).tolist()[1] == \
        "assign key-account manager; protect and grow"


# ---------------------------------------------------------------- assign_tiers

def test_assign_tiers_without_invoices_cost_or_scores(make_txns):
    t = make_txns([
        ("a", "2024-01-02", 1000.0), ("a", "2024-03-01", 2000.0), ("a", "2024-06-01", 500.0),
        ("b", "2024-02-01", 300.0), ("b", "2024-05-01", 200.0),
        ("c", "2024-06-20", 400.0),
        ("d", "2024-04-01", 50.0), ("d", "2024-04-15", 50.0),
    ])
    f = build_features(Tables(t), as_of=dt.date(2024, 7, 1))
    assert not {"margin_total", "late_payment_share"} & set(f.columns)
    out = assign_tiers(f, None, TierConfig())
    ids = list("abcd")
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    # net spend 3500, 500, 400, 100 of 4500: before 0, .78, .89, .98 -> A A B C
    assert_series_equal(out["abc_history"], _s(list("AABC"), ids, "abc_history"))
    assert out["abc_predicted"].isna().all()  # no value model
    assert out["pyramid"].tolist() == ["VIP", "small", "small", "small"]
    # c: one purchase day; d: 2 purchase days and tenure 91 days
    assert_series_equal(out["data_flag"], _s(["", "", INSUFFICIENT, ""], ids, "data_flag"))
    assert out.loc["c", "composite_tier"] == INSUFFICIENT
    assert out.loc["c", "rfm_segment"] == "new"  # r 4 (most recent), f 1
    assert out.loc["c", "recommended_action"] == "nurture; re-tier once history builds"
    assert out[["attractiveness", "position", "composite_score"]].notna().all().all()
    assert_series_equal(out["lifecycle_stage"], f["lifecycle_stage"])
    # scores without the columns used: same answer
    assert_frame_equal(assign_tiers(f, pd.DataFrame({"p_alive": 0.5}, index=f.index), TierConfig()), out)
    assert_frame_equal(assign_tiers(f), out)


def test_pipeline_carries_tier_config():
    p = Pipeline.model_validate({"tiers": {"abc_a_share": 0.7, "composite": {"rest": "tail"}}})
    assert p.tiers.abc_a_share == 0.7 and p.tiers.composite.rest == "tail"
    with pytest.raises(ValueError):
        TierConfig(abc_a_share=0.9, abc_b_share=0.2)
    with pytest.raises(ValueError):
        TierConfig(unknown=1)


# ---------------------------------------------------------------- properties

MONEY = ["monetary_total", "spend_365d", "spend_90d", "spend_prior_90d", "margin_total", "overdue_balance"]
TIER_COLUMNS = ["abc_history", "abc_predicted", "pyramid", "rfm_segment", "kaism_quadrant", "composite_tier",
                "data_flag", "recommended_action"]


@st.composite
def frames(draw):
    n = draw(st.integers(1, 25))
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))  # noqa: E731
    ids = _idx([f"c{i:02d}" for i in range(n)])
    f = pd.DataFrame({
        "monetary_total": np.array(ints(-50, 2000), "float64"), "spend_365d": np.array(ints(-10, 900), "float64"),
        "spend_90d": np.array(ints(0, 300), "float64"), "spend_prior_90d": np.array(ints(0, 300), "float64"),
        "margin_total": np.array(ints(-20, 500), "float64"), "overdue_balance": np.array(ints(0, 50), "float64"),
        "spend_growth_ratio_90d": [np.nan if v < 0 else v / 4 for v in ints(-2, 12)],
        "margin_rate": np.array(ints(0, 10), "float64") / 10,
        "late_payment_share": np.array(ints(0, 4), "float64") / 4,
        "frequency": ints(0, 8), "tenure_days": ints(0, 400),
        "r_score": ints(1, 5), "f_score": ints(1, 5), "m_score": ints(1, 5),
    }, index=ids)
    f["lifecycle_stage"] = pd.Categorical(np.where(f["frequency"] == 0, "prospect", "repeat"))
    scores = None
    if draw(st.booleans()):
        scores = pd.DataFrame({"expected_value": np.array(ints(0, 1000), "float64"),
                               "churn_probability": np.array(ints(0, 20), "float64") / 20}, index=ids)
    drop = draw(st.sets(st.sampled_from(["margin_total", "margin_rate", "late_payment_share", "overdue_balance",
                                         "spend_growth_ratio_90d"])))
    return f.drop(columns=sorted(drop)), scores, draw(st.permutations(range(n)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.sampled_from([0.001, 0.37, 3.0, 1e6]))
def test_tiers_invariant_to_row_order_and_positive_scaling(data, k):
    f, scores, perm = data
    base = assign_tiers(f, scores, TierConfig())
    shuffled = assign_tiers(f.iloc[perm], None if scores is None else scores.iloc[perm[::-1]], TierConfig())
    assert_frame_equal(shuffled.loc[base.index], base)
    fs = f.copy()
    for c in MONEY:
        if c in fs.columns:
            fs[c] = fs[c] * k
    ss = None if scores is None else scores.assign(expected_value=scores["expected_value"] * k)
    scaled = assign_tiers(fs, ss, TierConfig())
    assert_frame_equal(scaled[TIER_COLUMNS], base[TIER_COLUMNS])
    assert_frame_equal(scaled, base)


CRITERIA_CFG = TierConfig(
    kaism=KaismConfig(potential_weight=0.2, position_criteria=[
        Criterion(column="influence", weight=0.3, values={"high": 1, "medium": 0.5, "low": 0}, missing="drop")]),
    composite=CompositeConfig(potential_weight=0.1, criteria=[
        Criterion(column="spend_prior_90d", weight=0.2, direction="lower_is_better", missing="worst")]))


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.sampled_from([0.001, 3.0, 1e6]))
def test_tiers_with_criteria_and_potential_invariant_to_row_order_and_scaling(data, k):
    f, scores, perm = data
    n = len(f)
    f = f.assign(influence=[(None, "high", "medium", "low")[i % 4] for i in range(n)],
                 potential_spend_annual=f["spend_365d"].clip(lower=0) * 2 + 10,
                 headroom_spend_annual=f["spend_365d"].clip(lower=0) + 10)
    base = assign_tiers(f, scores, CRITERIA_CFG)
    shuffled = assign_tiers(f.iloc[perm], None if scores is None else scores.iloc[perm[::-1]], CRITERIA_CFG)
    assert_frame_equal(shuffled.loc[base.index], base)
    fs = f.copy()
    for c in [*MONEY, "potential_spend_annual", "headroom_spend_annual"]:
        if c in fs.columns:
            fs[c] = fs[c] * k
    ss = None if scores is None else scores.assign(expected_value=scores["expected_value"] * k)
    assert_frame_equal(assign_tiers(fs, ss, CRITERIA_CFG), base)
