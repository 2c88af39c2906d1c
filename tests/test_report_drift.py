"""PSI per feature (keyaccounts.drift): hand-computed values and invariants."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyaccounts.drift import psi, psi_table, reference_summary


def test_reference_summary_hand_computed():
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "seg": pd.Categorical(["a", "a", "b", None])})
    ref = reference_summary(X, bins=2)
    assert ref["n"] == 4
    # median 2.5 is the only interior edge; x <= 2.5 is bin 0; no missing values
    assert ref["features"]["x"] == {"kind": "numeric", "edges": [2.5], "shares": [0.5, 0.5, 0.0]}
    assert ref["features"]["seg"] == {"kind": "categorical", "shares": {"(missing)": 0.25, "a": 0.5, "b": 0.25}}
    json.dumps(ref)  # stored as an MLflow JSON artifact


def test_psi_hand_computed():
    ref = reference_summary(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), bins=2)
    got = psi_table(ref, pd.DataFrame({"x": [1.0, 1.0, 1.0, 4.0]}), threshold=0.2)
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2.0)  # (0.75-0.5)ln(0.75/0.5) + (0.25-0.5)ln(0.25/0.5)
    # 4 rows against 4 cross 0.2 by chance alone: no warning, and the note says why
    want = pd.DataFrame({"feature": ["x"], "psi": [expected], "drifted": [False], "kind": ["numeric"],
                         "note": ["above 0.2 but within chance for 4 and 4 rows"]})
    pd.testing.assert_frame_equal(got, want)
    # the threshold alone (no chance guard)
    assert psi_table(ref, pd.DataFrame({"x": [1.0, 1.0, 1.0, 4.0]}), threshold=0.2, significance=None)["drifted"].item()


def test_missing_values_and_new_categories_are_bins():
    ref = reference_summary(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "a", "b", "b"]}), bins=2)
    cur = pd.DataFrame({"x": [1.0, np.nan, np.inf, 4.0], "c": ["a", "b", "z", "z"]})
    got = psi_table(ref, cur).set_index("feature")["psi"]
    # x: ref (0.5, 0.5, 0) vs cur (0.25, 0.25, 0.5); the empty reference bin is floored at 1e-4
    ex = 2 * (-0.25 * math.log(0.5)) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    # c: ref a .5 b .5 z 0 -> cur .25 .25 .5
    assert got["x"] == pytest.approx(ex)
    assert got["c"] == pytest.approx(ex)


def test_absent_feature_and_order():
    ref = reference_summary(pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0), "gone": np.ones(100)}))
    cur = pd.DataFrame({"a": np.arange(100.0) + 50, "b": np.arange(100.0)})
    t = psi_table(ref, cur, threshold=0.2)
    assert t["feature"].tolist() == ["a", "b", "gone"]
    assert t.loc[0, "drifted"] and t.loc[0, "psi"] > 1
    assert t.loc[1, "psi"] == pytest.approx(0.0) and not t.loc[1, "drifted"]
    assert math.isnan(t.loc[2, "psi"]) and t.loc[2, "note"] == "absent from the scoring data"


def test_empty_population_is_refused():
    ref = reference_summary(pd.DataFrame({"a": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="empty"):
        psi_table(ref, pd.DataFrame({"a": []}))


def test_psi_needs_same_bins():
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1.0])


values = st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(float("nan"))), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(ref=values, cur=values, bins=st.integers(2, 12), seed=st.integers(0, 1000))
def test_psi_invariants(ref, cur, bins, seed):
    summary = reference_summary(pd.DataFrame({"x": ref}), bins=bins)
    shares = summary["features"]["x"]["shares"]
    assert sum(shares) == pytest.approx(1.0)
    # the reference against itself: zero drift
    assert psi_table(summary, pd.DataFrame({"x": ref}))["psi"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    a = psi_table(summary, pd.DataFrame({"x": cur}))["psi"].iloc[0]
    assert a >= 0.0
    # row order does not matter
    shuffled = list(np.random.default_rng(seed).permutation(np.array(cur, dtype="float64")))
    assert psi_table(summary, pd.DataFrame({"x": shuffled}))["psi"].iloc[0] == pytest.approx(a)
