"""BG/NBD + Gamma-Gamma: published CDNOW estimates, parameter recovery, summary by hand."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from keyaccounts.models.btyd import BGNBD, GammaGamma, btyd_summary

SHARED = Path(os.environ.get("KEYACCOUNTS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CDNOW = SHARED / "cdnow"
needs_cdnow = pytest.mark.skipif(not (CDNOW / "cdnow_customers_summary.csv").exists(),
                                 reason="shared CDNOW data not present")


@pytest.mark.data
@needs_cdnow
def test_bgnbd_matches_published_cdnow_estimates():
    s = pd.read_csv(CDNOW / "cdnow_customers_summary.csv")
    m = BGNBD().fit(s["frequency"], s["recency"], s["T"])
    # Fader, Hardie & Lee (2005): r=0.243, alpha=4.414, a=0.793, b=2.426, LL=-9582.4
    assert m.params_["r"] == pytest.approx(0.243, abs=0.002)
    assert m.params_["alpha"] == pytest.approx(4.414, abs=0.02)
    assert m.params_["a"] == pytest.approx(0.793, abs=0.005)
    assert m.params_["b"] == pytest.approx(2.426, abs=0.02)
    assert m.log_likelihood_ == pytest.approx(-9582.4, abs=0.5)
    # Their figure: 39-week holdout, expected repeat purchases close to the 1,788 observed.
    assert m.expected_purchases(39.0, s["frequency"], s["recency"], s["T"]).sum() == pytest.approx(1653, rel=0.02)


@pytest.mark.data
@needs_cdnow
def test_gamma_gamma_matches_published_cdnow_estimates():
    s = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    g = GammaGamma().fit(s["x"], s["zbar"])
    # Fader, Hardie & Lee (2005b): p=6.25, q=3.74, gamma=15.44
    assert g.params_["p"] == pytest.approx(6.25, abs=0.05)
    assert g.params_["q"] == pytest.approx(3.74, abs=0.05)
    assert g.params_["v"] == pytest.approx(15.44, abs=0.1)


def _simulate_bgnbd(n, r, alpha, a, b, T, rng):
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    tx = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i] += 1
            tx[i] = t
            if rng.random() < p[i]:
                break
    return x, tx, np.full(n, T)


def test_bgnbd_recovers_simulated_parameters():
    rng = np.random.default_rng(3)
    x, tx, T = _simulate_bgnbd(4000, 0.5, 5.0, 0.8, 2.5, 52.0, rng)
    m = BGNBD().fit(x, tx, T)
    assert m.params_["r"] == pytest.approx(0.5, rel=0.2)
    assert m.params_["alpha"] == pytest.approx(5.0, rel=0.3)
    assert m.converged_


def test_p_alive_and_expected_purchases_behave():
    m = BGNBD()
    m.params_ = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.4}
    # No repeat purchase: alive by assumption of the model.
    assert m.p_alive([0], [0], [30])[0] == 1.0
    # The longer the silence since the last purchase, the less likely alive.
    pa = m.p_alive([3, 3, 3], [29, 20, 5], [30, 30, 30])
    assert pa[0] > pa[1] > pa[2]
    e = m.expected_purchases(np.array([1.0, 10.0, 52.0]), 3, 29, 30)
    assert np.all(np.diff(e) > 0) and e[0] > 0


def test_btyd_summary_by_hand():
    tx = pd.DataFrame({
        "customer_id": pd.Categorical(["a", "a", "a", "a", "b", "c"]),
        "timestamp": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-15", "2024-01-29",
                                     "2024-01-08", "2024-02-01"]),
        "amount": [10.0, 5.0, 20.0, 40.0, 7.0, 99.0],
    })
    got = btyd_summary(tx, as_of="2024-02-01", time_unit_days=7)
    # a: purchase days Jan 1, 15, 29 -> x=2, t_x=4 weeks, T=31 days; repeat days spend 20 and 40
    # b: one purchase -> x=0; c: only on as_of -> not seen
    exp = pd.DataFrame({"frequency": [2.0, 0.0], "recency": [4.0, 0.0], "T": [31 / 7, 24 / 7],
                        "monetary_value": [30.0, np.nan]},
                       index=pd.Index(["a", "b"], name="customer_id"))
    assert_frame_equal(got, exp)


def test_p_no_purchase_by_hand():
    m = BGNBD()
    m.params_ = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.4}
    # x = 0: alive for sure, so only the gamma-Poisson silence remains: ((alpha+T)/(alpha+T+t))^r
    assert m.p_no_purchase(10.0, [0], [0], [30])[0] == pytest.approx((34 / 44) ** 0.25)
    # t = 0: nothing can happen
    assert m.p_no_purchase(0.0, [3], [10], [30])[0] == pytest.approx(1.0)
    pa = m.p_alive([3], [10], [30])[0]
    assert m.p_no_purchase(10.0, [3], [10], [30])[0] == pytest.approx(1 - pa * (1 - (34 / 44) ** 3.25))
