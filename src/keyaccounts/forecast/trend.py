"""Creation-rate trend: a local linear trend on the deals created per window before as_of.

A team ramping up (or winding down) creates more (or fewer) deals every month; a flat rate
from the last `creation_lookback_days` then under- (over-) states the deals still to come, and
more so the further ahead the period. The trend is an ordinary least-squares line through the
per-day creation rate of the last `n_windows` complete windows of `window_days` before as_of,
rate(t) = level + slope * (t - as_of). Its parameter uncertainty (the OLS covariance, with the
residual variance never below the Poisson variance of a window's rate) is drawn per parameter
draw, so a slope the data barely support widens the forecast instead of steering it. The
excess of the residual variance over the Poisson variance sizes the shared creation-rate shock
(variation around the trend, not the trend itself).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Fewest windows a line (2 parameters) is fitted on: with 3 the residual variance has one degree of freedom.
MIN_WINDOWS = 3


@dataclass(frozen=True)
class CreationTrend:
    """level: deals per day at as_of; slope: change of that rate per day; cov: 2x2 covariance
    of (level, slope); n_windows: windows fitted (0 = none: the flat lookback rate is used);
    shock_sd: sd of the lognormal creation-rate shock around the line; note: said in `info`."""
    level: float
    slope: float
    cov: np.ndarray
    n_windows: int
    shock_sd: float
    note: str

    @property
    def fitted(self) -> bool:
        return self.n_windows >= MIN_WINDOWS


def creation_trend(created_days: np.ndarray, *, d0: int, window_days: int, n_windows: int) -> CreationTrend:
    """The trend of the module docstring from the creation days (day numbers, all < d0) of the
    deals known at as_of; only complete windows after the first deal was created count."""
    created_days = np.asarray(created_days, np.int64)
    k = min(n_windows, (d0 - int(created_days.min())) // window_days) if len(created_days) else 0
    if k < MIN_WINDOWS:
        return CreationTrend(np.nan, 0.0, np.zeros((2, 2)), 0, 0.0,
                             f"flat creation rate: {k} complete {window_days}-day window(s) before as_of, "
                             f"a trend needs {MIN_WINDOWS}")
    edges = d0 - window_days * np.arange(k, -1, -1)
    rate = np.histogram(created_days, bins=edges)[0].astype(float) / window_days
    x = (edges[:-1] + edges[1:]) / 2.0 - d0          # window centres, days before as_of (< 0)
    X = np.column_stack([np.ones(k), x])
    xtx_inv = np.linalg.inv(X.T @ X)
    beta = xtx_inv @ X.T @ rate
    resid = rate - X @ beta
    # a window's rate has Poisson variance rate / window_days; floored at one deal over all
    # windows so a funnel that created nothing still gets a nonzero spread
    poisson_var = max(rate.mean(), 1.0 / (k * window_days)) / window_days
    resid_var = float(resid @ resid) / (k - 2)
    cov = max(resid_var, poisson_var) * xtx_inv
    excess = resid_var - poisson_var
    mean = max(rate.mean(), 1e-12)
    shock = float(np.sqrt(np.log1p(excess / mean ** 2))) if excess > 0 else 0.0
    per_month = 30.0 * beta[1] * 30.0
    return CreationTrend(float(beta[0]), float(beta[1]), cov, k, shock,
                         f"linear creation trend over the last {k} windows of {window_days} days: "
                         f"{30 * beta[0]:.1f} deals per 30 days at as_of, {per_month:+.1f} per 30 days "
                         f"each 30 days (slope sd {30 * 30 * np.sqrt(cov[1, 1]):.1f})")


def flat_trend(note: str) -> CreationTrend:
    """No trend: the flat lookback rate is used; `note` says why."""
    return CreationTrend(np.nan, 0.0, np.zeros((2, 2)), 0, 0.0, note)


def daily_rates(trend: CreationTrend, *, h_days: int, rng, flat_rate: float) -> np.ndarray:
    """Deals per day for the days d0 .. d0 + h_days - 1 under one draw of the trend's
    parameters (never negative); the flat rate when no trend was fitted."""
    if not trend.fitted:
        return np.full(h_days, flat_rate)
    level, slope = rng.multivariate_normal([trend.level, trend.slope], trend.cov)
    return np.clip(level + slope * (np.arange(h_days) + 0.5), 0.0, None)


@dataclass(frozen=True)
class ConversionTrend:
    """log_odds: the win log-odds at as_of minus that of all deals closed before it (what the
    stage-exit tables average over), sd its standard error; 0 and 0 when not estimable."""
    log_odds: float
    sd: float
    note: str


def conversion_trend(closed_days: np.ndarray, won: np.ndarray, *, d0: int, window_days: int,
                     n_windows: int) -> ConversionTrend:
    """Drift of the win rate among the deals closed per window: a weighted least-squares line
    through the windows' empirical log-odds (weights n p (1 - p), the inverse of their
    variance; windows with fewer than 10 closes or no win / no loss are left out), evaluated
    at as_of, minus the log-odds of all deals closed before as_of. A funnel without recorded
    losses has no win rate among closed deals: no conversion trend (said)."""
    closed_days, won = np.asarray(closed_days, np.int64), np.asarray(won, bool)
    if won.all() or not won.any():
        return ConversionTrend(0.0, 0.0, "no conversion trend: closed deals are all won or all lost")
    k = min(n_windows, (d0 - int(closed_days.min())) // window_days)
    edges = d0 - window_days * np.arange(max(k, 0), -1, -1)
    n = np.histogram(closed_days, bins=edges)[0].astype(float) if k > 0 else np.zeros(0)
    w = np.histogram(closed_days[won], bins=edges)[0].astype(float) if k > 0 else np.zeros(0)
    ok = (n >= 10) & (w > 0) & (w < n)
    if ok.sum() < MIN_WINDOWS:
        return ConversionTrend(0.0, 0.0, f"no conversion trend: {int(ok.sum())} window(s) with 10+ closes "
                                         f"and both outcomes, {MIN_WINDOWS} needed")
    p = w[ok] / n[ok]
    x = ((edges[:-1] + edges[1:]) / 2.0 - d0)[ok]
    wt = n[ok] * p * (1 - p)
    X = np.column_stack([np.ones(len(x)), x])
    cov = np.linalg.inv(X.T @ (wt[:, None] * X))
    beta = cov @ X.T @ (wt * np.log(p / (1 - p)))
    pooled = won.mean()
    shift = float(beta[0] - np.log(pooled / (1 - pooled)))
    return ConversionTrend(shift, float(np.sqrt(cov[0, 0])),
                           f"conversion trend over {int(ok.sum())} windows of {window_days} days: win odds at "
                           f"as_of x{np.exp(shift):.2f} of the history's (log-odds sd {np.sqrt(cov[0, 0]):.2f})")
