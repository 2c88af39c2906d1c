"""Criteria a company sets itself: user components of the composite score and the KAISM axes,
their validation (exit 2), the criteria in force, and the develop action on large headroom."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal, assert_series_equal
from pydantic import ValidationError
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import ActionConfig, CompositeConfig, Criterion, KaismConfig, Pipeline, TierConfig
from keyaccounts.features import Tables
from keyaccounts.score import tier_inputs
from keyaccounts.tiers import (
    assign_tiers,
    check_criteria,
    composite_score,
    criteria_in_force,
    criterion_score,
    kaism,
    large_headroom,
    recommended_action,
    uses_potential,
)

runner = CliRunner()
ONLY_ORDER = dict(profit_weight=0, credit_weight=0, growth_weight=0, predicted_value_weight=0, churn_risk_weight=0)


def _idx(ids) -> pd.Index:
    return pd.Index(ids, name="customer_id")


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "monetary_total": [100.0, 200.0, 300.0, 400.0],
        "industry_influence": ["high", "low", None, "medium"],
        "days_past_due_mean": [0.0, 30.0, 10.0, np.nan],
    }, index=_idx(list("abcd")))


# ---------------------------------------------------------------- one criterion

def test_criterion_numeric_direction_and_missing_policies():
    d = _frame()
    # due days 0, 30, 10 -> ranks 0, 1, .5; lower is better -> 1, 0, .5; d missing
    base = dict(column="days_past_due_mean", weight=1, direction="lower_is_better")
    for missing, fill in (("neutral", 0.5), ("worst", 0.0), ("drop", np.nan)):
        got = criterion_score(d, Criterion(**base, missing=missing))
        assert_series_equal(got, pd.Series([1.0, 0.0, 0.5, fill], index=d.index, name="days_past_due_mean"))
    up = criterion_score(d, Criterion(column="monetary_total", weight=1))
    assert up.tolist() == [0.0, 1 / 3, 2 / 3, 1.0]


def test_criterion_categorical_value_map():
    d = _frame()
    c = Criterion(column="industry_influence", weight=1, values={"high": 1, "medium": 0.5, "low": 0}, missing="worst")
    assert criterion_score(d, c).tolist() == [1.0, 0.0, 0.0, 0.5]
    flipped = c.model_copy(update={"direction": "lower_is_better", "missing": "neutral"})
    assert criterion_score(d, flipped).tolist() == [0.0, 1.0, 0.5, 0.5]


def test_criterion_errors_are_clear():
    d = _frame()
    with pytest.raises(ValueError, match="'nope' is in neither the customers table nor the features"):
        criterion_score(d, Criterion(column="nope", weight=1))
    with pytest.raises(ValueError, match="text column: give it a value map"):
        criterion_score(d, Criterion(column="industry_influence", weight=1))
    with pytest.raises(ValueError, match=r"values \['medium'\] are not in its value map"):
        criterion_score(d, Criterion(column="industry_influence", weight=1, values={"high": 1, "low": 0}))


def test_config_rejects_bad_maps_zero_weights_and_duplicates():
    with pytest.raises(ValidationError, match="at least one category"):
        Criterion(column="x", weight=1, values={})
    with pytest.raises(ValidationError, match="between 0 and 1"):
        Criterion(column="x", weight=1, values={"high": 5})
    with pytest.raises(ValidationError):
        Criterion(column="x", weight=1, missing="zero")
    with pytest.raises(ValidationError):
        Criterion(column="x", weight=1, colour="red")  # strict at every depth
    with pytest.raises(ValidationError, match="composite score: the weights sum to 0"):
        CompositeConfig(order_amount_weight=0, **ONLY_ORDER, criteria=[Criterion(column="x", weight=0)])
    with pytest.raises(ValidationError, match="kaism position: the weights sum to 0"):
        KaismConfig(retention_weight=0, tenure_weight=0, credit_weight=0)
    with pytest.raises(ValidationError, match="listed more than once"):
        KaismConfig(attractiveness_criteria=[Criterion(column="x", weight=1), Criterion(column="x", weight=2)])
    # a criterion alone is enough weight
    CompositeConfig(order_amount_weight=0, **ONLY_ORDER, criteria=[Criterion(column="x", weight=1)])


# ---------------------------------------------------------------- scores with criteria

def test_composite_with_a_customer_criterion_by_hand():
    d = _frame()
    cfg = TierConfig(composite=CompositeConfig(**ONLY_ORDER, criteria=[
        Criterion(column="industry_influence", weight=0.75, values={"high": 1, "medium": 0.5, "low": 0})]))
    # order .25 x ranks 0, 1/3, 2/3, 1 + influence .75 x 1, 0, .5 (neutral), .5
    exp = [100 * (0.25 * r + 0.75 * v) for r, v in zip([0, 1 / 3, 2 / 3, 1], [1, 0, 0.5, 0.5], strict=False)]
    np.testing.assert_allclose(composite_score(d, None, cfg)["composite_score"], np.round(exp, 6), atol=1e-9)


def test_missing_drop_renormalises_per_account():
    d = _frame()
    cfg = TierConfig(composite=CompositeConfig(**ONLY_ORDER, criteria=[
        Criterion(column="days_past_due_mean", weight=0.75, direction="lower_is_better", missing="drop")]))
    # a, b, c: .25 x order rank + .75 x due score; d has no due days: its order rank alone (1.0)
    exp = [0.25 * 0 + 0.75 * 1, 0.25 / 3 + 0, 0.25 * 2 / 3 + 0.75 * 0.5, 1.0]
    np.testing.assert_allclose(composite_score(d, None, cfg)["composite_score"], np.round(100 * np.array(exp), 6))


def test_kaism_axes_take_criteria_and_potential():
    d = _frame().assign(potential_spend_annual=[40.0, 30.0, 20.0, 10.0], tenure_days=[1.0, 2.0, 3.0, 4.0])
    k = KaismConfig(value_weight=0, growth_weight=0, margin_weight=0, potential_weight=1,
                    retention_weight=0, tenure_weight=1, credit_weight=0,
                    position_criteria=[Criterion(column="industry_influence", weight=1,
                                                 values={"high": 1, "medium": 0.5, "low": 0})])
    out = kaism(d, None, TierConfig(kaism=k))
    np.testing.assert_allclose(out["attractiveness"], [1.0, 2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(out["position"], [(0 + 1) / 2, (1 / 3 + 0) / 2, (2 / 3 + 0.5) / 2, (1 + 0.5) / 2])
    assert out["kaism_quadrant"].tolist() == ["key", "develop", "maintain", "maintain"]


def test_defaults_stay_the_published_ones():
    d = _frame().assign(potential_spend_annual=[40.0, 30.0, 20.0, 10.0])
    assert not uses_potential(TierConfig())
    # the potential column is ignored at weight 0: same scores as without it
    assert_frame_equal(assign_tiers(d.assign(frequency=3, tenure_days=400, r_score=3, f_score=3, m_score=3)),
                       assign_tiers(d.drop(columns="potential_spend_annual")
                                    .assign(frequency=3, tenure_days=400, r_score=3, f_score=3, m_score=3)))
    table = criteria_in_force(TierConfig())
    comp = table[table["score"] == "composite score"].set_index("component")["weight_share"]
    assert comp.to_dict() == pytest.approx({"order amount": 0.25, "profit": 0.20, "credit": 0.15, "growth": 0.15,
                                            "predicted value": 0.15, "churn risk": 0.10})
    assert table.groupby("score")["weight_share"].sum().tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_criteria_in_force_lists_user_criteria():
    cfg = TierConfig(composite=CompositeConfig(potential_weight=0.25, criteria=[
        Criterion(column="industry_influence", weight=0.25, values={"high": 1, "low": 0}, missing="worst")]))
    t = criteria_in_force(cfg)
    mine = t[t["component"] == "your criterion: industry_influence"].iloc[0]
    assert mine["reads"] == "industry_influence via high=1, low=0" and mine["missing"] == "worst"
    assert mine["weight_share"] == pytest.approx(0.25 / 1.5)
    assert "potential" in set(t.loc[t["score"] == "composite score", "component"])
    assert uses_potential(cfg)


# ---------------------------------------------------------------- develop on large headroom

def test_large_headroom_needs_share_and_rank():
    ids = _idx(list("abcde"))
    head = pd.Series([0.0, 10.0, 60.0, 90.0, 80.0], index=ids)
    pot = pd.Series([100.0, 100.0, 100.0, 100.0, 1000.0], index=ids)
    # ranks 0 .25 .5 .75 1; share >= .5: c, d (e: 8 %)
    big = large_headroom(head, pot, ActionConfig(develop_min_headroom_rank=0.5))
    assert big.tolist() == [False, False, True, True, False]
    assert not large_headroom(head, pot, ActionConfig(develop_min_headroom_share=None)).any()
    quad = pd.Series(["harvest"] * 5, index=ids)
    seg = pd.Series(["at risk", "lost", "lost", "lost", "lost"], index=ids)
    act = recommended_action(quad, seg, develop=pd.Series(True, index=ids))
    assert act.tolist()[0] == "retention call this week"  # overrides still come first
    assert act.tolist()[1:] == [ActionConfig().develop] * 4 and "develop" in ActionConfig().develop


# ---------------------------------------------------------------- scoring inputs and the CLI

def test_tier_inputs_join_customer_columns_and_potential(make_txns, make_customers):
    t = make_txns([("a", "2024-01-05", 10.0), ("b", "2024-02-05", 30.0), ("c", "2024-03-05", 20.0)])
    c = make_customers([("a", "2023-01-01", "high"), ("b", "2023-01-01", "low"), ("c", "2023-01-01", "medium")],
                       columns=("customer_id", "signup_date", "industry_influence"))
    f = pd.DataFrame({"monetary_total": [10.0, 30.0, 20.0]}, index=_idx(list("abc")))
    crit = Criterion(column="industry_influence", weight=1, values={"high": 1, "medium": 0.5, "low": 0})
    p = Pipeline(tiers=TierConfig(composite=CompositeConfig(potential_weight=0.1, criteria=[crit])))
    out = tier_inputs(Tables(t, c), f, as_of=pd.Timestamp("2024-07-01").date(), p=p)
    assert out["industry_influence"].tolist() == ["high", "low", "medium"]
    assert {"potential_spend_annual", "headroom_spend_annual"} <= set(out.columns)
    check_criteria(out, p.tiers)
    plain = tier_inputs(Tables(t, c), f, as_of=pd.Timestamp("2024-07-01").date(), p=Pipeline())
    assert_frame_equal(plain, f)  # defaults: nothing joined


def _write(path, tiers: dict) -> str:
    path.write_text(yaml.safe_dump({"as_of": "2025-10-01", "tiers": tiers}))
    return str(path)


@pytest.mark.parametrize("tiers, words", [
    ({"composite": {"criteria": [{"column": "industry", "weight": 1, "values": {"a": 3}}]}}, "between 0 and 1"),
    ({"composite": {"criteria": [{"column": "industry", "weight": 1, "values": {}}]}}, "at least one category"),
    ({"kaism": {"value_weight": 0, "growth_weight": 0, "margin_weight": 0}}, "the weights sum to 0"),
    ({"composite": {"criteria": [{"column": "industry", "weight": 1, "direction": "up"}]}}, "direction"),
])
def test_cli_bad_criteria_config_exits_2(tmp_path, tiers, words):
    txns = tmp_path / "t.csv"
    txns.write_text("customer_id,timestamp,amount\na,2025-01-02,10\n")
    res = runner.invoke(app, ["validate", "-t", str(txns), "-p", _write(tmp_path / "p.yaml", tiers)])
    assert res.exit_code == 2, res.output
    assert words in res.output


@pytest.mark.slow  # ~10 s each: the score command sets up its MLflow store before the check
@pytest.mark.parametrize("criterion, words", [
    ({"column": "influence_score", "weight": 1}, "'influence_score' is in neither"),
    ({"column": "industry", "weight": 1}, "text column: give it a value map"),
    ({"column": "industry", "weight": 1, "values": {"retail": 1}}, "are not in its value map"),
])
def test_cli_score_unknown_column_or_bad_map_exits_2_before_any_model(tmp_path, criterion, words):
    txns, cust = tmp_path / "t.csv", tmp_path / "c.csv"
    txns.write_text("customer_id,timestamp,amount\na,2025-01-02,10\nb,2025-02-03,20\na,2025-03-04,5\n")
    cust.write_text("customer_id,industry\na,retail\nb,finance\n")
    pipe = _write(tmp_path / "p.yaml", {"composite": {"criteria": [criterion]}})
    out = tmp_path / "scores.csv"
    res = runner.invoke(app, ["score", "-t", str(txns), "--customers", str(cust), "-p", pipe, "--out", str(out),
                              "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert res.exit_code == 2, res.output
    assert words in res.output and not out.exists()


def test_customers_keep_the_columns_criteria_name(tmp_path):
    from keyaccounts.config import InputSpec
    from keyaccounts.pipeline import load_inputs
    txns, cust = tmp_path / "t.csv", tmp_path / "c.csv"
    txns.write_text("customer_id,timestamp,amount\na,2025-01-02,10\nb,2025-02-03,20\n")
    cust.write_text("customer_id,industry_influence,wallet_note,credit_score\na,high,x,700\nb,low,y,\n")
    crit = [Criterion(column="industry_influence", weight=1, values={"high": 1, "low": 0}),
            Criterion(column="credit_score", weight=1, missing="worst")]
    p = Pipeline(inputs={"transactions": InputSpec(path=str(txns)), "customers": InputSpec(path=str(cust))},
                 tiers=TierConfig(kaism=KaismConfig(position_criteria=crit)))
    c = load_inputs(p).tables.customers
    assert c["industry_influence"].tolist() == ["high", "low"] and "wallet_note" not in c.columns
    # read as text, scored as numbers: 700 ranks above the missing score (worst)
    assert criterion_score(c, crit[1]).tolist() == [0.5, 0.0]
    plain = load_inputs(p.model_copy(update={"tiers": TierConfig()})).tables.customers
    assert "industry_influence" not in plain.columns  # nothing kept unless a criterion reads it


def test_readme_example_is_a_valid_pipeline():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Setting your own criteria", 1)[1]
    block = section.split("```yaml", 1)[1].split("```", 1)[0]
    p = Pipeline.model_validate(yaml.safe_load(block))
    assert uses_potential(p.tiers) and [c.column for c in p.tiers.composite.criteria] == ["industry_influence"]
    assert p.tiers.kaism.position_criteria[0].direction == "lower_is_better"


def test_spark_hands_criteria_scoring_to_the_local_engine(tmp_path):
    from keyaccounts.config import EngineConfig, InputSpec
    from keyaccounts.engines.spark_score import choose_engine
    (tmp_path / "t.csv").write_text("customer_id,timestamp,amount\na,2025-01-02,10\n")
    p = Pipeline(engine=EngineConfig(name="spark", spark_min_rows=0),
                 inputs={"transactions": InputSpec(path=str(tmp_path / "t.csv"))},
                 tiers=TierConfig(composite=CompositeConfig(potential_weight=0.1)))
    assert choose_engine(p, "scoring")[0] == "local"
    assert choose_engine(p.model_copy(update={"tiers": TierConfig()}), "scoring")[0] == "spark"


def test_excel_read_me_states_the_criteria_in_force():
    from io import BytesIO

    import openpyxl

    from keyaccounts.xlsx import workbook_bytes
    cfg = TierConfig(composite=CompositeConfig(criteria=[
        Criterion(column="industry_influence", weight=0.2, values={"high": 1, "low": 0})]))
    df = pd.DataFrame({"rank": [1], "customer_id": ["a"], "composite_score": [50.0]})
    wb = openpyxl.load_workbook(BytesIO(workbook_bytes({"Accounts": df}, {"list": "accounts", "tiers": cfg})))
    cells = [c.value for row in wb["Read me"].iter_rows() for c in row if c.value is not None]
    assert "Criteria in force" in cells and "your criterion: industry_influence" in cells
    mine = cells.index("your criterion: industry_influence")
    assert cells[mine + 1].startswith("industry_influence via high=1, low=0; higher is better; missing: neutral")
    assert cells[mine + 2] == f"{0.2 / 1.2:.0%}"
    deals = openpyxl.load_workbook(BytesIO(workbook_bytes({"Deals": df}, {"list": "deals", "tiers": cfg})))
    assert "Criteria in force" not in [c.value for row in deals["Read me"].iter_rows() for c in row]
