"""Per-account P10/P90 of next-horizon spend: the zero-inflated gamma and its recalibration.

    from keyaccounts.models.intervals import pit_bounds, recalibrated_levels
    lo, hi = pit_bounds(y, p_buy, mean_spend, dispersion)        # F(y) and F(y-) per row
    grid_lo, grid_hi = pit_quantiles(lo, hi)                     # learned on held-out rows
    levels = recalibrated_levels((0.1, 0.9), grid_lo, grid_hi)   # nominal -> model levels

Spend is a mixed variable: no purchase (a point mass at 0) with probability 1 - p, else gamma.
An interval [Q(a), Q(b)] of the model's quantile function Q misses below when y < Q(a), i.e.
when a > F(y), and misses above when y > Q(b), i.e. when b < F(y-) (F(y-) = P(Y < y), which is 0
at y = 0: a zero is never above an interval). So on held-out rows the level a whose share of
F(y) < a is 10 % gives an interval end that 10 % of accounts fall below, whatever the model's
own dispersion or the point mass: the empirical quantiles of F(y) (lower ends) and F(y-)
(upper ends) map nominal levels to the model's levels. A correct model maps 0.9 to 0.9; its
lower ends move up where the point mass would otherwise cover every non-buyer (with P10 = 0
whenever P(no purchase) > 10 %, a calibrated model's P10-P90 holds 90 % of accounts, not 80 %).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["PIT_GRID", "pit_bounds", "pit_quantiles", "recalibrated_levels", "zero_inflated_gamma_quantiles"]

#: Levels at which the held-out PIT distribution is stored (every percent): nominal levels in
#: between are interpolated.
PIT_GRID = np.linspace(0.0, 1.0, 101)


def _arrays(p_buy, mean_spend, dispersion: float) -> tuple[np.ndarray, np.ndarray, float]:
    p = np.clip(np.asarray(p_buy, dtype="float64"), 0.0, 1.0)
    m = np.maximum(np.asarray(mean_spend, dtype="float64"), 0.0)
    return p, m, 1.0 / max(float(dispersion), 1e-9)


def zero_inflated_gamma_quantiles(p_buy, mean_spend, dispersion: float, quantiles) -> np.ndarray:
    """Quantiles of Y = 0 w.p. 1 - p, Y ~ Gamma(shape 1/dispersion, mean mean_spend) w.p. p:
    q <= 1 - p gives 0, above it the gamma quantile at (q - (1 - p)) / p."""
    p, m, shape = _arrays(p_buy, mean_spend, dispersion)
    out = np.zeros((len(p), len(quantiles)))
    for j, q in enumerate(quantiles):
        inner = np.where(p > 0, (q - (1.0 - p)) / np.where(p > 0, p, 1.0), 0.0)
        pos = inner > 0
        out[pos, j] = stats.gamma.ppf(np.minimum(inner[pos], 1.0 - 1e-12), shape, scale=m[pos] / shape)
    return out


def pit_bounds(y, p_buy, mean_spend, dispersion: float) -> tuple[np.ndarray, np.ndarray]:
    """(F(y), F(y-)) of the zero-inflated gamma per row: the ends of the randomized PIT's range.
    y <= 0 counts as no purchase (as TwoPartValue's fit does)."""
    p, m, shape = _arrays(p_buy, mean_spend, dispersion)
    y = np.asarray(y, dtype="float64")
    buy = y > 0
    g = np.zeros_like(y)
    ok = buy & (m > 0)
    g[ok] = stats.gamma.cdf(y[ok], shape, scale=m[ok] / shape)
    g[buy & (m <= 0)] = 1.0  # a positive spend where the model expects none: above every quantile
    upper = np.where(buy, (1.0 - p) + p * g, 1.0 - p)
    lower = np.where(buy, upper, 0.0)  # gamma is continuous: F(y-) = F(y) for y > 0
    return upper, lower


def pit_quantiles(f_at, f_below) -> tuple[np.ndarray, np.ndarray]:
    """Held-out F(y) and F(y-) summarised at PIT_GRID: what recalibrated_levels reads."""
    return (np.quantile(np.asarray(f_at, dtype="float64"), PIT_GRID),
            np.quantile(np.asarray(f_below, dtype="float64"), PIT_GRID))


def recalibrated_levels(quantiles, grid_at, grid_below) -> np.ndarray:
    """Model levels for nominal `quantiles`: q <= 0.5 is a lower end (a share q of held-out rows
    had F(y) below it), q > 0.5 an upper end (a share 1 - q had F(y-) above it)."""
    q = np.asarray(quantiles, dtype="float64")
    return np.where(q <= 0.5, np.interp(q, PIT_GRID, grid_at), np.interp(q, PIT_GRID, grid_below))
