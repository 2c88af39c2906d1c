"""`run_forecast`: the simulated forecast (`core.forecast_once`) with its P10-P90
recalibrated from its own replays before as_of (`recalibrate`), on by default."""
from __future__ import annotations

import logging

import pandas as pd

from ..config import ForecastConfig, StageConfig
from .core import ForecastResult, forecast_once, period_table
from .probability import DealModel
from .recalibrate import apply_recalibration, recalibrate

log = logging.getLogger(__name__)


def run_forecast(opportunities: pd.DataFrame, *, as_of, stage_history: pd.DataFrame | None = None,
                 customers: pd.DataFrame | None = None, period: str | None = None, periods: int | None = None,
                 by: str | None = None, config: ForecastConfig | None = None,
                 deal_model: DealModel | None = None) -> ForecastResult:
    """Expected won revenue per period (and group) as of `as_of`, with P10/P50/P90,
    categories, funnel statistics and the stage-weighted and naive baselines (see
    `core.forecast_once`). Pure: no I/O; reads only rows dated strictly before as_of. With
    config.recalibrate (default) P10/P90 are recalibrated from replays before as_of and
    `info` holds the widening per period (`recalibration*`)."""
    cfg = config or ForecastConfig()
    res = forecast_once(opportunities, as_of=as_of, stage_history=stage_history, customers=customers,
                        period=period, periods=periods, by=by, config=cfg, deal_model=deal_model)
    if not cfg.recalibrate:
        return ForecastResult(res.periods, res.funnel, res.deals,
                              {**res.info, "recalibration": "off (forecast.recalibrate: false): raw simulated P10-P90"})
    # the same default stage order as forecast_once, for the replays' deal model
    rcfg = cfg if cfg.stage_order else cfg.model_copy(update={"stage_order": list(StageConfig().open)})
    pt = period_table(as_of, period or cfg.period, periods or cfg.periods)
    rec = recalibrate(opportunities, as_of=as_of, stage_history=stage_history, config=rcfg, pt=pt)
    for note in rec.notes:
        log.info("forecast as of %s: %s", as_of, note)
    return ForecastResult(apply_recalibration(res.periods, rec), res.funnel, res.deals, {**res.info, **rec.info()})
