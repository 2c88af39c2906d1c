"""Value and classification metrics: hand-computed cases and invariants."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyaccounts.models.metrics import normalized_gini, value_metrics


def test_gini_hand_computed_with_a_tie():
    # descending by pred: 30 first, then {0, 10} tied, then 0. The two tie orders give
    # Gini 0.25 and 0.3125 (cumulative shares .75,.75,1,1 and .75,1,1,1); their mean over the
    # perfect ordering's 0.3125 is 0.9.
    assert normalized_gini([0, 10, 0, 30], [1, 1, 0, 2]) == pytest.approx(0.9)


def test_gini_perfect_constant_and_reversed():
    a = np.array([5.0, 0.0, 1.0, 3.0])
    assert normalized_gini(a, a) == pytest.approx(1.0)
    assert normalized_gini(a, np.zeros(4)) == pytest.approx(0.0)
    assert normalized_gini(a, -a) < 0
    assert np.isnan(normalized_gini(np.zeros(3), [1, 2, 3]))


values = st.lists(st.floats(0, 1e4, allow_nan=False), min_size=2, max_size=40)


@settings(max_examples=200, deadline=None)
@given(values, st.data())
def test_gini_does_not_depend_on_row_order(actual, data):
    """Ties in the prediction are averaged, so permuting rows never changes the score (up to
    float summation order)."""
    a = np.asarray(actual)
    p = np.asarray(data.draw(st.lists(st.integers(0, 3), min_size=len(a), max_size=len(a))), float)
    perm = np.asarray(data.draw(st.permutations(range(len(a)))))
    g1, g2 = normalized_gini(a, p), normalized_gini(a[perm], p[perm])
    assert (np.isnan(g1) and np.isnan(g2)) or g1 == pytest.approx(g2, rel=1e-9, abs=1e-12)
    if not np.isnan(g1):
        assert -1 - 1e-12 <= g1 <= 1 + 1e-12


def test_value_metrics_totals():
    m = value_metrics([0, 10, 0, 30], [5, 5, 0, 20])
    assert m["total_rel_error"] == pytest.approx(-10 / 40)
    assert m["mae"] == pytest.approx((5 + 5 + 0 + 10) / 4)
