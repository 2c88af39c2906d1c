"""Peer potential (whitespace): hand-checked values, point in time, and recovery of a known latent
potential on synthetic data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scipy.stats import spearmanr

from keyaccounts.config import KaismConfig, PotentialConfig, TierConfig
from keyaccounts.features import Tables, build_features, potential, run_rate
from keyaccounts.synth import synthesize, true_headroom
from keyaccounts.tiers import assign_tiers

AS_OF = "2024-07-01"
OLD = "2023-01-02"  # before the 365-day window: makes an account old without adding window spend


def _index(ids):
    return pd.Index(ids, name="customer_id")


def test_peer_percentile_backoff_and_floor_at_own_rate(make_txns, make_customers):
    # window [2023-07-02, 2024-07-01); every buyer is older than the window -> rate = window spend
    t = make_txns([(c, OLD, 1.0) for c in "ABCDE"] + [
        ("A", "2024-03-01", 100.0), ("B", "2024-02-01", 300.0), ("D", "2024-05-01", 1000.0),
        ("E", "2024-06-01", 500.0),
        ("A", AS_OF, 9999.0),  # on as_of: not read
    ])
    c = make_customers([("A", OLD, "small"), ("B", OLD, "small"), ("C", OLD, "small"), ("D", OLD, "large"),
                        ("E", OLD, None), ("P", "2024-01-01", "small")],
                       columns=("customer_id", "signup_date", "size"))
    out = potential(t, c, as_of=AS_OF, segment_columns=["size", "region"], percentile=0.75, min_peers=2)
    # small: positive rates 100, 300 -> q75 = 100 + .75 x 200 = 250 (2 peers, level 1);
    # D (large, alone) and E (no size) fall back to everyone: 100, 300, 500, 1000 -> 500 + .25 x 500 = 625
    exp = pd.DataFrame({
        "run_rate_spend_annual": [100.0, 300.0, 0.0, 1000.0, 500.0, 0.0],
        "potential_spend_annual": [250.0, 300.0, 250.0, 1000.0, 625.0, 250.0],  # never below the own rate
        "headroom_spend_annual": [150.0, 0.0, 250.0, 0.0, 125.0, 250.0],
        "potential_peers": np.array([2, 2, 2, 4, 4, 2], dtype="int64"),
        "potential_segment_level": np.array([1, 1, 1, 0, 0, 1], dtype="int64"),
    }, index=_index(list("ABCDEP")))
    assert_frame_equal(out, exp)
    # without any segment column every account is compared with all the others
    flat = potential(t, None, as_of=AS_OF, percentile=0.75, min_peers=2)
    assert (flat["potential_spend_annual"] == np.maximum(625.0, flat["run_rate_spend_annual"])).all()
    assert (flat["potential_segment_level"] == 0).all() and "P" not in flat.index


def test_run_rate_annualises_young_accounts_with_a_floor(make_txns):
    t = make_txns([("Y", "2024-06-01", 100.0),                      # 30 days old: counted as 90
                   ("Z", "2024-01-01", 182.0),                      # 182 days old
                   ("N", OLD, 50.0), ("N", "2024-06-01", -80.0)])   # net negative in the window
    r = run_rate(t, as_of=AS_OF)
    assert r.loc["Y"] == pytest.approx(100 * 365 / 90)
    assert r.loc["Z"] == pytest.approx(182 * 365 / 182)
    assert r.loc["N"] == 0.0
    assert r.name == "run_rate_spend_annual" and r.index.name == "customer_id"


@pytest.fixture(scope="module")
def synth():
    return synthesize(n_customers=3000, seed=1)


def test_point_in_time_rows_after_as_of_and_row_order_change_nothing(synth):
    t, c = synth.transactions, synth.customers
    as_of = "2025-01-01"
    base = potential(t, c, as_of=as_of)
    before = t[t["timestamp"] < pd.Timestamp(as_of)]
    rng = np.random.default_rng(0)
    shuffled = t.iloc[rng.permutation(len(t))].reset_index(drop=True)
    assert_frame_equal(potential(before, c, as_of=as_of), base, check_exact=True)
    assert_frame_equal(potential(shuffled, c.iloc[::-1], as_of=as_of), base, check_exact=True)
    with pytest.raises(TypeError):
        potential(t, c, as_of=None)


def test_headroom_recovers_the_known_latent_gap_better_than_spend(synth, capsys):
    """The synthetic wallet (latent potential) is known: headroom ranks the true gap far better
    than current spend does (the usual 'biggest spenders have most potential' reading)."""
    figures = {}
    for as_of in ("2025-01-01", "2025-07-01"):
        p = potential(synth.transactions, synth.customers, as_of=as_of, **PotentialConfig().model_dump())
        gap = true_headroom(synth.latent, as_of=as_of).reindex(p.index)
        rho_headroom = spearmanr(p["headroom_spend_annual"], gap)[0]
        rho_spend = spearmanr(p["run_rate_spend_annual"], gap)[0]
        wallet = synth.latent.set_index("customer_id")["wallet_annual"].reindex(p.index)
        rho_potential = spearmanr(p["potential_spend_annual"], wallet)[0]
        figures[as_of] = (rho_headroom, rho_spend, rho_potential)
        assert rho_headroom > 0.7, figures
        assert rho_headroom > abs(rho_spend) + 0.4, figures
        assert rho_potential > 0.8, figures
    with capsys.disabled():
        for as_of, (h, s, pot) in figures.items():
            print(f"\n[potential] as_of {as_of}: spearman(headroom, true gap) = {h:.3f}; "
                  f"spearman(spend rate, true gap) = {s:.3f}; spearman(potential, latent wallet) = {pot:.3f}")


def test_develop_action_goes_to_accounts_with_a_large_true_gap(synth):
    as_of = "2025-07-01"
    tables = Tables(synth.transactions, synth.customers)
    f = build_features(tables, as_of=as_of)
    f = f[f["frequency"] > 0].join(potential(synth.transactions, synth.customers, as_of=as_of))
    cfg = TierConfig(kaism=KaismConfig(potential_weight=0.25))
    out = assign_tiers(f, None, cfg)
    develop = out["recommended_action"] == cfg.actions.develop
    assert 0.02 < develop.mean() < 0.3
    gap = true_headroom(synth.latent, as_of=as_of).reindex(out.index)
    assert gap[develop].median() > 2 * gap[~develop].median()
    # potential enters attractiveness: the same accounts without it are scored differently
    plain = assign_tiers(f, None, TierConfig())
    assert not np.allclose(plain["attractiveness"], out["attractiveness"])
    assert (plain["composite_score"] == out["composite_score"]).all()  # composite potential weight is 0
