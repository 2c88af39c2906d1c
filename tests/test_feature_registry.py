"""The feature registry is the one list of names: the families, the Spark engine's column order,
the models' inputs and the reasons all agree with it."""
from __future__ import annotations

import pytest

from keyaccounts.config import FeatureConfig
from keyaccounts.explain import REASON_PHRASES
from keyaccounts.features import Tables, build_features, potential
from keyaccounts.features.deals import deals
from keyaccounts.features.registry import FAMILIES, FEATURES, UNITS, feature_columns, names, reason_key, spec
from keyaccounts.models.churn import GLM_FEATURES, XGB_FEATURES
from keyaccounts.models.transformers import BTYD_COLUMNS, RATIO_COLUMNS
from keyaccounts.models.value import SPEND_FEATURES
from keyaccounts.synth import STAGES_OPEN, synthesize
from keyaccounts.tiers import HEADROOM_COLUMN, POTENTIAL_COLUMN, POTENTIAL_COLUMNS


@pytest.fixture(scope="module")
def world():
    return synthesize(n_customers=150, seed=2)


@pytest.mark.parametrize("cfg", [FeatureConfig(),
                                 FeatureConfig(windows_days=[14, 60], growth_window_days=30,
                                               overdue_threshold_days=45)])
@pytest.mark.parametrize("with_invoices", [True, False])
def test_build_features_writes_exactly_the_declared_columns_in_order(world, cfg, with_invoices):
    t = Tables(world.transactions, world.customers, world.invoices if with_invoices else None)
    f = build_features(t, as_of="2025-07-01", config=cfg)
    has_cost = "cost" in world.transactions.columns
    assert list(f.columns) == feature_columns(cfg, has_cost=has_cost, has_invoices=with_invoices)
    for c in f.columns:
        s = spec(c)
        assert s is not None and s.name == c and s.family in FAMILIES and s.unit in UNITS


def test_deal_features_are_declared_in_order(world):
    d = deals(world.opportunities, as_of="2025-07-01", open_stages=list(STAGES_OPEN),
              txns=world.transactions, stage_history=world.stage_history)
    made = [c for c in d.columns if c not in ("customer_id", "owner")]
    assert made and made == [c for c in names("deals") if c in made]


def test_potential_writes_exactly_the_declared_columns(world):
    pot = potential(world.transactions, world.customers, as_of="2025-07-01")
    assert list(pot.columns) == names("potential") == list(POTENTIAL_COLUMNS)
    assert {POTENTIAL_COLUMN, HEADROOM_COLUMN} <= set(POTENTIAL_COLUMNS)
    assert all(spec(c).family == "potential" for c in pot.columns)


def test_every_model_input_is_declared():
    model_inputs = set(GLM_FEATURES) | set(XGB_FEATURES) | set(SPEND_FEATURES) | set(RATIO_COLUMNS) \
        | set(BTYD_COLUMNS)
    undeclared = sorted(c for c in model_inputs if spec(c) is None)
    assert not undeclared


def test_every_numeric_feature_has_a_phrase_and_every_phrase_a_feature():
    # potential feeds the tiers, never a model, so it is never a reason
    groups = {reason_key(c) for f in FAMILIES if f != "potential" for c in names(f)
              if spec(c).unit not in ("code", "category")} | {"stage_at_as_of"}
    assert groups - set(REASON_PHRASES) == set()        # no feature falls back to "name = value"
    assert set(REASON_PHRASES) - groups == set()        # no phrase without a feature


def test_templates_resolve_for_any_window():
    s = spec("spend_prior_30d")
    assert (s.family, s.unit, s.reason) == ("growth", "currency", "spend_growth_ratio_30d")
    assert "30 days" in s.words
    assert spec("spend_x") is None and reason_key("spend_x") == "spend_x"
    assert reason_key("stage_at_as_of_Qualify") == "stage_at_as_of"
    assert len({s.name for s in FEATURES}) == len(FEATURES)
    with pytest.raises(ValueError, match="unknown feature family"):
        names("rmf")


def test_the_spark_engine_reads_the_same_list():
    spark = pytest.importorskip("keyaccounts.engines.spark")
    cfg = FeatureConfig(windows_days=[7])
    assert spark.feature_columns(cfg, has_cost=True, has_invoices=True) == \
        feature_columns(cfg, has_cost=True, has_invoices=True)
