"""A stationary synthetic pipeline with known close probabilities (interval calibration checks).

Deals are created as a Poisson process (`rate` per day) and walk two open stages:
'qualify' (1 + Gamma(2, 10) days, then on to 'propose' with probability `p_pass`, else lost)
and 'propose' (1 + Gamma(2, 15) days, then won with probability `p_win`, else lost), so
P(won) = p_pass * p_win for every new deal. Amounts are lognormal. Events after `end` are not
in the tables (those deals are still open). Canonical opportunities and stage_history frames.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

STAGES = ("qualify", "propose")


def known_pipeline(*, seed: int = 0, start: str = "2022-01-01", end: str = "2023-12-31", rate: float = 4.0,
                   p_pass: float = 0.6, p_win: float = 0.5, mean_amount: float = 10_000.0,
                   amount_sigma: float = 0.8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(opportunities, stage_history) of the process in the module docstring."""
    rng = np.random.default_rng(seed)
    s = pd.Timestamp(start)
    n_days = (pd.Timestamp(end) - s).days + 1
    per_day = rng.poisson(rate, n_days)
    created = np.repeat(np.arange(n_days), per_day)
    n = len(created)
    d1 = created + 1 + np.floor(rng.gamma(2.0, 10.0, n)).astype(np.int64)
    passed = rng.random(n) < p_pass
    d2 = d1 + 1 + np.floor(rng.gamma(2.0, 15.0, n)).astype(np.int64)
    won = passed & (rng.random(n) < p_win)
    close = np.where(passed, d2, d1)
    closed = close < n_days
    amount = np.round(rng.lognormal(np.log(mean_amount) - amount_sigma ** 2 / 2, amount_sigma, n), 2)
    ids = np.array([f"S{i:07d}" for i in range(n)])
    day = lambda d: s + pd.to_timedelta(d, unit="D")  # noqa: E731
    in_propose = passed & (d1 < n_days)
    outcome = np.where(closed, np.where(won, "won", "lost"), None)
    stage = np.where(closed, outcome, np.where(in_propose, "propose", "qualify"))
    opps = pd.DataFrame({
        "opportunity_id": pd.array(ids, dtype="str"),
        "created_date": day(created).astype("datetime64[ns]"),
        "stage": pd.array(stage, dtype="str"),
        "amount": amount.astype("float64"),
        "closed_date": pd.Series(day(np.where(closed, close, 0))).where(closed).astype("datetime64[ns]").to_numpy(),
        "outcome": pd.array(outcome, dtype="str"),
    })
    h = [pd.DataFrame({"opportunity_id": ids, "stage": "qualify", "day": created}),
         pd.DataFrame({"opportunity_id": ids[in_propose], "stage": "propose", "day": d1[in_propose]}),
         pd.DataFrame({"opportunity_id": ids[closed], "stage": outcome[closed].astype(str), "day": close[closed]})]
    hist = pd.concat(h, ignore_index=True).sort_values(["opportunity_id", "day"], kind="stable", ignore_index=True)
    history = pd.DataFrame({"opportunity_id": pd.array(hist["opportunity_id"], dtype="str"),
                            "stage": pd.array(hist["stage"], dtype="str"),
                            "changed_at": day(hist["day"].to_numpy()).astype("datetime64[ns]")})
    return opps, history
