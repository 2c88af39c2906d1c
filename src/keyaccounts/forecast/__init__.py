"""Funnel-based sales forecast: funnel statistics, Monte Carlo forecast, baselines, backtest.

    from keyaccounts.forecast import run_forecast, run_backtest
    res = run_forecast(opportunities, as_of="2017-07-01", stage_history=history, period="quarter")
    res.periods, res.funnel, res.deals
    bt = run_backtest(opportunities, start="2017-01-01", end="2017-12-31", every_days=7)
    bt.rows, bt.summary
"""
from ..config import ForecastConfig
from .api import run_forecast
from .backtest import BacktestResult, backtest_chart, run_backtest
from .core import ALL, ForecastResult, NotEnoughHistory, period_table
from .repcall import rep_accuracy
from .step import owner_grouping, owner_outputs

__all__ = ["ForecastConfig", "ForecastResult", "BacktestResult", "NotEnoughHistory", "run_forecast",
           "run_backtest", "backtest_chart", "period_table", "ALL", "rep_accuracy", "owner_grouping", "owner_outputs"]
