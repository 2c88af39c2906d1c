"""Buy-till-you-die baseline: BG/NBD (Fader, Hardie & Lee 2005) + Gamma-Gamma spend model.

Closed-form likelihoods maximised with scipy on a log-parameter scale (so parameters stay
positive and the optimiser is well conditioned). Inputs are the usual summary per customer,
in `time_unit_days` units (default weeks):
  x   = repeat purchases (distinct purchase days - 1), t_x = time of last purchase since the
  first, T = time from first purchase to as_of, m_x = mean spend of the repeat purchase days.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from ..features.arrays import purchase_days, txn_arrays


def btyd_summary(txns: pd.DataFrame, *, as_of, time_unit_days: float = 7.0) -> pd.DataFrame:
    """Per customer with a positive purchase before as_of: frequency (x), recency (t_x), T,
    monetary_value (m_x: mean net spend per repeat purchase day; NaN when x = 0).
    Spend per day is the day's net amount; the first purchase day is excluded from m_x."""
    a = txn_arrays(txns, as_of=as_of)
    p = purchase_days(a)
    freq = p.count()
    first, last = p.first(), p.nth_from_end(0)
    day_spend = pd.Series(a.amount).groupby([a.code, a.day]).sum()
    codes = day_spend.index.get_level_values(0).to_numpy()
    days = day_spend.index.get_level_values(1).to_numpy()
    repeat = (days > first[codes]) & (day_spend.to_numpy() > 0)
    rep_sum = np.bincount(codes[repeat], weights=day_spend.to_numpy()[repeat], minlength=a.n)
    rep_n = np.bincount(codes[repeat], minlength=a.n)
    keep = freq > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame({
            "frequency": (freq - 1).astype("float64"),
            "recency": (last - first) / time_unit_days,
            "T": (a.as_of - first) / time_unit_days,
            "monetary_value": np.where(rep_n > 0, rep_sum / np.maximum(rep_n, 1), np.nan),
        }, index=a.ids)[keep]
    out.index.name = "customer_id"
    return out


def _compress(*cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows and their counts: the likelihood only depends on (x, t_x, T)."""
    stacked = np.column_stack(cols)
    uniq, counts = np.unique(stacked, axis=0, return_counts=True)
    return uniq, counts.astype("float64")


@dataclass
class BGNBD:
    """BG/NBD model. `fit(x, t_x, T)` sets params_ = {r, alpha, a, b}."""

    penalizer: float = 0.0

    def _nll(self, logp: np.ndarray, x, tx, T, w) -> float:
        r, alpha, a, b = np.exp(logp)
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = special.betaln(a, b + x) - special.betaln(a, b)
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(x > 0, special.betaln(a + 1, b + x - 1) - special.betaln(a, b + x)
                          - (r + x) * np.log(alpha + tx), -np.inf)
        ll = a1 + a2 + np.logaddexp(a3, a4)
        return -(w * ll).sum() / w.sum() + self.penalizer * (np.exp(logp) ** 2).sum()

    def fit(self, frequency, recency, T) -> BGNBD:
        x, tx, TT = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
        uniq, w = _compress(x, tx, TT)
        args = (uniq[:, 0], uniq[:, 1], uniq[:, 2], w)
        best = None
        for start in (np.zeros(4), np.log([0.5, 5.0, 1.0, 2.0])):
            res = optimize.minimize(self._nll, start, args=args, method="L-BFGS-B")
            if best is None or res.fun < best.fun:
                best = res
        if not np.isfinite(best.fun):
            raise RuntimeError("BG/NBD fit did not converge")
        self.params_ = dict(zip(("r", "alpha", "a", "b"), np.exp(best.x), strict=False))
        self.log_likelihood_ = -best.fun * w.sum()
        self.converged_ = bool(best.success)
        return self

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        r, alpha, a, b = (self.params_[k] for k in ("r", "alpha", "a", "b"))
        x, tx, TT = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_ratio = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + TT) - np.log(alpha + tx))
            return np.where(x > 0, 1.0 / (1.0 + np.exp(log_ratio)), 1.0)

    def p_no_purchase(self, t: float, frequency, recency, T) -> np.ndarray:
        """P(no purchase in (T, T + t]) given the history: dead, or alive and silent —
        1 - p_alive * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)). Exact under BG/NBD
        (dropout happens only right after a purchase)."""
        r, alpha = self.params_["r"], self.params_["alpha"]
        x, TT = np.asarray(frequency, dtype="float64"), np.asarray(T, dtype="float64")
        pa = self.p_alive(frequency, recency, T)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.clip(1.0 - pa * (1.0 - ((alpha + TT) / (alpha + TT + t)) ** (r + x)), 0.0, 1.0)

    def expected_purchases(self, t: float, frequency, recency, T) -> np.ndarray:
        """E[repeat purchases in (T, T + t]] given the customer's history."""
        r, alpha, a, b = (self.params_[k] for k in ("r", "alpha", "a", "b"))
        x, tx, TT = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
        z = t / (alpha + TT + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        first = (a + b + x - 1) / (a - 1)
        second = 1 - ((alpha + TT) / (alpha + TT + t)) ** (r + x) * hyp
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            denom = 1 + np.where(x > 0, a / (b + x - 1) * ((alpha + TT) / (alpha + tx)) ** (r + x), 0.0)
        return np.maximum(first * second / denom, 0.0)


@dataclass
class GammaGamma:
    """Gamma-Gamma spend model on customers with repeat purchases (x > 0, m_x > 0)."""

    penalizer: float = 0.0

    def _nll(self, logp, x, m) -> float:
        p, q, g = np.exp(logp)
        ll = (special.gammaln(p * x + q) - special.gammaln(p * x) - special.gammaln(q) + q * np.log(g)
              + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + g))
        return -ll.mean() + self.penalizer * (np.exp(logp) ** 2).sum()

    def fit(self, frequency, monetary_value) -> GammaGamma:
        x, m = np.asarray(frequency, float), np.asarray(monetary_value, float)
        ok = (x > 0) & (m > 0) & np.isfinite(m)
        if ok.sum() < 10:
            raise ValueError("Gamma-Gamma needs at least 10 customers with repeat purchases")
        best = None
        for start in (np.zeros(3), np.log([2.0, 3.0, max(float(np.median(m[ok])), 1.0)])):
            res = optimize.minimize(self._nll, start, args=(x[ok], m[ok]), method="L-BFGS-B")
            if best is None or res.fun < best.fun:
                best = res
        self.params_ = dict(zip(("p", "q", "v"), np.exp(best.x), strict=False))
        self.converged_ = bool(best.success)
        self.population_mean_ = float(np.nanmean(m[ok]))
        return self

    def expected_spend(self, frequency, monetary_value) -> np.ndarray:
        """E[spend per purchase | x, m_x]; the population mean p*v/(q-1) where x = 0."""
        p, q, v = (self.params_[k] for k in ("p", "q", "v"))
        x = np.asarray(frequency, float)
        m = np.nan_to_num(np.asarray(monetary_value, float), nan=0.0)
        prior_mean = p * v / (q - 1) if q > 1 else self.population_mean_
        with np.errstate(invalid="ignore", divide="ignore"):
            post = (p * (v + x * m)) / (p * x + q - 1)
        return np.where((x > 0) & (m > 0), post, prior_mean)
