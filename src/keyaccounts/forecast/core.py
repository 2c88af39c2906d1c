"""Funnel forecast as of a date: Monte Carlo over deal outcomes and timing.

Per open deal, the path through the funnel is drawn from the censoring-aware stage-exit
tables (`funnel.exit_table`): from its current stage, given the days it has already spent
there, the next exit (days, destination) is drawn; a move to another open stage starts a new
stay there; won or lost ends the path. Deals not yet created arrive as a Poisson process at
the rate of the creation trend (`trend.creation_trend`; the flat rate of the
`creation_lookback_days` before as_of when no trend can be fitted), enter the funnel in the stage new
deals entered, with amounts (and group) resampled from those recent deals, and walk the same
tables. Parameter uncertainty: the tables and the creation rate are re-estimated under
Bayesian-bootstrap weights of the deals (`parameter_draws` times), each draw driving an equal
share of the simulations. The conversion trend (`trend.conversion_trend`) shifts the
stage-exit win odds. Everything is read strictly before as_of. The intervals here are raw:
`api.run_forecast` recalibrates them from replays (`recalibrate`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import ForecastConfig, StageConfig
from ..errors import InputError
from ..features.arrays import as_of_day, day_numbers
from .funnel import FunnelState, exit_tables, funnel_state, funnel_table, stage_win_rates
from .probability import DealModel, couple, prepare_probabilities
from .trend import ConversionTrend, conversion_trend, creation_trend, daily_rates, flat_trend

ALL = "(all)"
BY_CHOICES = ("owner", "region", "product")
QUANTILES = (0.10, 0.50, 0.90)
CATEGORIES = ("commit", "best_case", "pipeline")
# the open-pipeline expectation split by the deals' category: existing_from_* sum to existing_pipeline
EXISTING_BY_CATEGORY = tuple(f"existing_from_{c}" for c in CATEGORIES)
PERIOD_COLUMNS = ["group", "period", "period_start", "period_end", "closed_won", "existing_pipeline",
                  *EXISTING_BY_CATEGORY, "new_pipeline", "expected", "p10", "p50", "p90", "commit", "best_case", "pipeline",
                  "stage_weighted", "stage_weighted_p10", "stage_weighted_p90", "naive", "target", "coverage"]


class NotEnoughHistory(InputError):
    """Nothing closed before as_of: no win rate or timing can be learned."""


@dataclass
class ForecastResult:
    """periods: one row per (group, period), group '(all)' = the whole pipeline (see
    PERIOD_COLUMNS); funnel: per open stage; deals: per deal open at as_of; info: how the
    forecast was made (method, counts, creation rate, slip rate, notes)."""
    periods: pd.DataFrame
    funnel: pd.DataFrame
    deals: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def period_table(as_of, period: str, n: int) -> pd.DataFrame:
    """The n periods starting with the one holding as_of: period label ('2017Q3', '2017-07'),
    period_start, period_end (last day, inclusive), start_day, end_day (exclusive day number)."""
    if period not in ("month", "quarter"):
        raise InputError(f"period must be month or quarter, got '{period}'")
    first = pd.Period(pd.Timestamp(as_of), freq="Q" if period == "quarter" else "M")
    ps = [first + i for i in range(n)]
    start = pd.to_datetime([p.start_time.normalize() for p in ps])
    end = pd.to_datetime([p.end_time.normalize() for p in ps])
    return pd.DataFrame({"period": [str(p) for p in ps], "period_start": start, "period_end": end,
                         "start_day": day_numbers(pd.Series(start)),
                         "end_day": day_numbers(pd.Series(end)) + 1})


def _groups(frame: pd.DataFrame, by: str | None, region_of: pd.Series | None) -> np.ndarray:
    if by is None:
        return np.full(len(frame), ALL, dtype=object)
    if by == "region":
        if region_of is None or "customer_id" not in frame.columns:
            raise InputError("--by region needs a customers file with a region column and deals with a customer_id")
        vals = frame["customer_id"].astype("str").map(region_of)
    else:
        if by not in frame.columns:
            raise InputError(f"--by {by} needs a '{by}' column in the opportunities", column=by)
        vals = frame[by]
    return vals.astype("object").where(vals.notna(), "(none)").astype(str).to_numpy(dtype=object)


def _period_index(day: np.ndarray, pt: pd.DataFrame) -> np.ndarray:
    """Period position of each day (float; inf = none), -1 when outside the horizon."""
    starts = pt["start_day"].to_numpy()
    end = int(pt["end_day"].iloc[-1])
    ok = np.isfinite(day) & (day >= starts[0]) & (day < end)
    out = np.full(len(day), -1, np.int64)
    out[ok] = np.searchsorted(starts, day[ok].astype(np.int64), side="right") - 1
    return out


def _walk(tables, stage: np.ndarray, t0: np.ndarray, c: np.ndarray, end_day: int, rng, won_code: int,
          max_transitions: int, odds: np.ndarray | None = None, speed: np.ndarray | None = None) -> np.ndarray:
    """Won day per path (inf when lost, still open or won on/after end_day). Paths start in
    `stage`, entered on day t0, and are known not to have left it in the first c days.
    `odds` (per path) multiplies the odds of won vs lost at a closing exit and `speed` divides
    the time still to wait in a stage (shared shocks)."""
    n = len(stage)
    share = []
    for tab in tables:   # P(won | the stay ends won or lost), per stage
        pw, pl = tab.mass[tab.dest == won_code].sum(), tab.mass[tab.dest == won_code + 1].sum()
        share.append(pw / (pw + pl) if pw + pl > 0 else 0.0)
    won = np.full(n, np.inf)
    active = np.ones(n, bool)
    stage, t0, c = stage.copy(), t0.astype(np.int64).copy(), c.astype(np.int64).copy()
    for _ in range(max_transitions):
        if not active.any():
            break
        for s, tab in enumerate(tables):
            idx = np.flatnonzero(active & (stage == s))
            if not len(idx):
                continue
            if not len(tab.cum):       # no exit from this stage ever seen: it stays open
                active[idx] = False
                continue
            lo = tab.before(c[idx])
            v = lo + rng.random(len(idx)) * (1.0 - lo)
            j = np.searchsorted(tab.cum, v, side="right")
            never = j >= len(tab.cum)
            j = np.minimum(j, len(tab.cum) - 1)
            exit_day = t0[idx] + tab.dwell[j]
            if speed is not None:
                start = t0[idx] + c[idx]
                exit_day = start + np.floor((exit_day - start) / speed[idx]).astype(np.int64)
            dest = tab.dest[j].copy()
            if odds is not None and 0.0 < share[s] < 1.0:
                p = share[s]
                th = odds[idx]
                p2 = th * p / (1.0 - p + th * p)
                u = rng.random(len(idx))
                flip_up = (dest == won_code + 1) & (th > 1) & (u < (p2 - p) / (1.0 - p))
                flip_dn = (dest == won_code) & (th < 1) & (u < (p - p2) / p)
                dest[flip_up], dest[flip_dn] = won_code, won_code + 1
            done = never | (exit_day >= end_day) | (dest >= won_code)
            w = ~never & (dest == won_code) & (exit_day < end_day)
            won[idx[w]] = exit_day[w]
            active[idx[done]] = False
            mv = ~done
            stage[idx[mv]], t0[idx[mv]], c[idx[mv]] = dest[mv], exit_day[mv], 0
    return won


def _quantiles(sims: np.ndarray) -> np.ndarray:
    """(3, ...) P10/P50/P90 over axis 0, values taken from the draws (inverted CDF)."""
    return np.quantile(sims, QUANTILES, axis=0, method="inverted_cdf")


def forecast_once(opportunities: pd.DataFrame, *, as_of, stage_history: pd.DataFrame | None = None,
                  customers: pd.DataFrame | None = None, period: str | None = None, periods: int | None = None,
                  by: str | None = None, config: ForecastConfig | None = None,
                  deal_model: DealModel | None = None, windows: pd.DataFrame | None = None) -> ForecastResult:
    """The simulated forecast, before any recalibration of its intervals (`run_forecast` adds
    that). `windows` (a `period_table`-shaped frame of day windows, the first starting at
    as_of) replaces the calendar periods: the replays of `recalibrate` forecast the same
    horizon from earlier dates; the naive baseline is then NaN.
    Expected won revenue per period (and group) as of `as_of`, with P10/P50/P90, categories,
    funnel statistics and the stage-weighted and naive baselines. Pure: no I/O. Reads only rows
    dated strictly before as_of (deals created before it; outcomes closed before it; stage
    history changed before it). Raises NotEnoughHistory when no deal closed before as_of.
    With config.probability model/auto, P(won within model_horizon_days) of each open deal
    comes from the deal model (`deal_model` if given, trained as of a date <= as_of; else
    trained here as of as_of), timing from the stage exits (`probability.couple`)."""
    cfg = config or ForecastConfig()
    period = period or cfg.period
    periods = periods or cfg.periods
    if by not in (None, *BY_CHOICES):
        raise InputError(f"--by must be one of {', '.join(BY_CHOICES)}, got '{by}'")
    stages = list(cfg.stage_order or StageConfig().open)
    d0 = as_of_day(as_of)
    pt = period_table(as_of, period, periods) if windows is None else windows
    end_day = int(pt["end_day"].iloc[-1])
    n_per = len(pt)

    state = funnel_state(opportunities, as_of=as_of, stages=stages, stage_history=stage_history)
    if not len(state.closed):
        raise NotEnoughHistory(f"no deal closed before {pd.Timestamp(as_of).date()}: win rates and "
                               "close timing cannot be learned from history before as_of")
    if not state.closed["won"].any():
        raise NotEnoughHistory(f"no deal won before {pd.Timestamp(as_of).date()} ({len(state.closed)} closed, all "
                               "lost): no win can be simulated, so the forecast would be a silent zero; "
                               "forecast from a later date")
    od = state.open_deals
    p_model, p_info = prepare_probabilities(opportunities, as_of=as_of, stage_history=stage_history, stages=stages,
                                            config=cfg, index=od.index, deal_model=deal_model)
    t_h = d0 + cfg.model_horizon_days
    region_of = None
    if by == "region" and customers is not None and "region" in customers.columns:
        region_of = customers.drop_duplicates("customer_id").set_index(
            customers.drop_duplicates("customer_id")["customer_id"].astype("str"))["region"]
    g_open = _groups(od, by, region_of)
    g_closed = _groups(state.closed, by, region_of)
    names = sorted(set(g_open) | set(g_closed)) if by else [ALL]
    gpos = {g: i for i, g in enumerate(names)}
    n_g = len(names)
    go = np.array([gpos[g] for g in g_open], np.int64)
    gc = np.array([gpos[g] for g in g_closed], np.int64)

    # Recent deals: the creation rate and the pool new deals are drawn from.
    lookback = cfg.creation_lookback_days
    ids_all = state.deal_ids
    o_known = state.known
    c_known = day_numbers(o_known["created_date"])
    recent = np.flatnonzero(c_known >= d0 - lookback)
    g_known = _groups(o_known, by, region_of)
    for g in set(g_known[recent]) - set(gpos):
        gpos[g] = len(names)
        names.append(g)
    n_g = len(names)
    g_recent = np.array([gpos[g] for g in g_known[recent]], np.int64)
    amt_recent = o_known["amount"].astype("float64").to_numpy()[recent]
    entry_recent = state.entry_stage[recent]

    sig_rate, sig_win, sig_speed = shock_scales(c_known, state, d0=d0, window_days=cfg.shock_window_days,
                                                n_windows=cfg.shock_windows) if cfg.shocks else (0.0, 0.0, 0.0)
    trend = creation_trend(c_known, d0=d0, window_days=cfg.shock_window_days, n_windows=cfg.trend_windows) \
        if cfg.trend and cfg.new_pipeline else flat_trend("flat creation rate (forecast.trend: false)")
    cl0 = state.closed
    conv = conversion_trend(cl0["closed"].to_numpy(), cl0["won"].to_numpy(bool), d0=d0,
                            window_days=cfg.shock_window_days, n_windows=cfg.trend_windows) if cfg.trend else \
        ConversionTrend(0.0, 0.0, "no conversion trend (forecast.trend: false)")
    if trend.fitted and cfg.shocks:
        sig_rate = trend.shock_sd   # variation around the trend, not the trend itself
    rng = np.random.default_rng(cfg.seed)
    n_draws = max(cfg.parameter_draws, 1)
    per_draw = int(np.ceil(cfg.n_simulations / n_draws))
    n_sims = per_draw * n_draws
    n_open = len(od)
    amount = od["amount"].to_numpy(np.float64)
    cell = n_g * n_per
    existing = np.zeros((n_sims, cell))
    new = np.zeros((n_sims, cell))
    deal_period_wins = np.zeros(n_open * n_per)
    h_days = end_day - d0
    for b in range(n_draws):
        w = rng.standard_exponential(len(ids_all)) if cfg.parameter_draws else None
        tables = exit_tables(state, w)
        sl = slice(b * per_draw, (b + 1) * per_draw)
        odds_sim = np.exp(sig_win * rng.standard_normal(per_draw)) if sig_win > 0 else None
        # the deal model already reads recent outcomes: the conversion trend moves only the stage-exit odds
        odds_walk = odds_sim if not (conv.log_odds or conv.sd) else \
            np.exp(conv.log_odds + conv.sd * rng.standard_normal()) * (1.0 if odds_sim is None else odds_sim) \
            * np.ones(per_draw)
        speed_sim = np.exp(sig_speed * rng.standard_normal(per_draw) - sig_speed ** 2 / 2) if sig_speed > 0 else None
        rate_sim = np.exp(sig_rate * rng.standard_normal(per_draw) - sig_rate ** 2 / 2)
        # existing deals: (sim, deal) flattened sim-major
        stage = np.tile(od["stage_code"].to_numpy(np.int64), per_draw)
        won = _walk(tables, stage, np.tile(od["entered"].to_numpy(np.int64), per_draw),
                    np.tile(od["dwell"].to_numpy(np.int64), per_draw),
                    end_day if p_model is None else max(end_day, t_h), rng, state.won_code,
                    cfg.max_transitions, None if odds_walk is None or p_model is not None else np.repeat(odds_walk, n_open),
                    None if speed_sim is None else np.repeat(speed_sim, n_open))
        if p_model is not None and n_open:
            # the model sets P(won before t_h); the walk keeps the timing (and later wins)
            won = couple(won.reshape(per_draw, n_open), p_model, t_h=t_h, d0=d0, rng=rng, odds=odds_sim,
                         group=od["stage_code"].to_numpy(np.int64)).ravel()
        p_idx = _period_index(won, pt)
        hit = p_idx >= 0
        sim = np.repeat(np.arange(per_draw), n_open)
        deal = np.tile(np.arange(n_open), per_draw)
        existing[sl] = np.bincount(sim[hit] * cell + go[deal[hit]] * n_per + p_idx[hit],
                                   weights=amount[deal[hit]], minlength=per_draw * cell).reshape(per_draw, cell)
        deal_period_wins += np.bincount(deal[hit] * n_per + p_idx[hit], minlength=n_open * n_per)
        # deals not yet created
        if cfg.new_pipeline and len(recent):
            wr = w[recent] if w is not None else np.ones(len(recent))
            lam = daily_rates(trend, h_days=h_days, rng=rng, flat_rate=wr.sum() / lookback)
            counts = rng.poisson(lam.sum() * rate_sim) if lam.sum() > 0 else np.zeros(per_draw, np.int64)
            m = int(counts.sum())
            if m:
                nsim = np.repeat(np.arange(per_draw), counts)
                pick = rng.choice(len(recent), m, p=wr / wr.sum())
                born = d0 + rng.choice(h_days, m, p=lam / lam.sum()).astype(np.int64)
                nwon = _walk(tables, entry_recent[pick], born, np.zeros(m, np.int64), end_day, rng,
                             state.won_code, cfg.max_transitions, None if odds_walk is None else odds_walk[nsim],
                             None if speed_sim is None else speed_sim[nsim])
                np_idx = _period_index(nwon, pt)
                nh = np_idx >= 0
                new[sl] = np.bincount(nsim[nh] * cell + g_recent[pick[nh]] * n_per + np_idx[nh],
                                      weights=amt_recent[pick[nh]], minlength=per_draw * cell).reshape(per_draw, cell)

    # known won revenue in the current period, before as_of; last complete period (naive)
    cl = state.closed
    won_cl = cl["won"].to_numpy(bool)
    amt_cl = cl["amount"].to_numpy(np.float64)
    cur_start = int(pt["start_day"].iloc[0])
    in_cur = won_cl & (cl["closed"].to_numpy() >= cur_start)
    closed_won = np.zeros(cell)
    np.add.at(closed_won, gc[in_cur] * n_per, amt_cl[in_cur])
    if windows is None:
        prev = pd.Period(pt["period"].iloc[0], freq="Q" if period == "quarter" else "M") - 1
        prev_s = day_numbers(pd.Series([prev.start_time.normalize()]))[0]
        in_prev = won_cl & (cl["closed"].to_numpy() >= prev_s) & (cl["closed"].to_numpy() < cur_start)
        naive_g = np.bincount(gc[in_prev], weights=amt_cl[in_prev], minlength=n_g)
    else:
        naive_g = np.full(n_g, np.nan)

    # stage-weighted pipeline: historical win rate per stage x amount, in the period of the
    # expected close date (past-due or unknown: the current period); Bernoulli draws for P10/P90
    rates = stage_win_rates(state).to_numpy()
    r = rates[od["stage_code"].to_numpy(np.int64)]
    if "expected_close_date" in od.columns:
        exp_day = day_numbers(pd.Series(od["expected_close_date"])).astype(np.float64)
        exp_day[pd.isna(od["expected_close_date"]).to_numpy()] = np.nan
        exp_day = np.where(np.isnan(exp_day) | (exp_day < d0), d0, exp_day)
    else:
        exp_day = np.full(n_open, float(d0))
    sw_p = _period_index(exp_day, pt)
    sw_in = sw_p >= 0
    sw_cell = go * n_per + sw_p
    sw_exp = np.bincount(sw_cell[sw_in], weights=(r * amount)[sw_in], minlength=cell)
    sw_sims = np.zeros((n_sims, cell))
    for s0 in range(0, n_sims, per_draw):
        k = min(per_draw, n_sims - s0)
        hit = (rng.random((k, n_open)) < r) & sw_in
        si, di = np.nonzero(hit)
        sw_sims[s0:s0 + k] = np.bincount(si * cell + sw_cell[di], weights=amount[di],
                                         minlength=k * cell).reshape(k, cell)

    # per-deal probability and category
    pw = deal_period_wins.reshape(n_open, n_per) / n_sims
    p_close = pw.sum(axis=1)
    cat = np.where(p_close >= cfg.commit_threshold, "commit",
                   np.where(p_close >= cfg.best_case_threshold, "best_case", "pipeline"))
    exp_per = np.where(p_close > 0, pw.argmax(axis=1), -1) if n_per else np.full(n_open, -1)
    labels = pt["period"].to_numpy(dtype=object)
    deals = pd.DataFrame({
        "opportunity_id": od.index.to_numpy(),
        "owner": od["owner"].to_numpy() if "owner" in od.columns else np.nan,
        "product": od["product"].to_numpy() if "product" in od.columns else np.nan,
        "customer_id": od["customer_id"].to_numpy() if "customer_id" in od.columns else np.nan,
        "group": g_open,
        "stage": od["stage"].to_numpy(),
        "days_in_stage": od["dwell"].to_numpy(),
        "age_days": d0 - od["created"].to_numpy(),
        "amount": amount,
        "close_probability": p_close,
        "expected_revenue": p_close * amount,
        "category": cat,
        "expected_close_period": np.where(exp_per >= 0, labels[np.maximum(exp_per, 0)], None),
        "stage_win_rate": r,
        "model_probability": p_model if p_model is not None else np.full(n_open, np.nan),
    }).sort_values(["expected_revenue", "opportunity_id"], ascending=[False, True], ignore_index=True)
    if by is None:
        deals = deals.drop(columns="group")

    cats = category_sums(cat, exp_per, pw, amount, go, n_g, n_per)

    rows = []

    def add_rows(gname: str, ex: np.ndarray, nw: np.ndarray, cw: np.ndarray, sw_e: np.ndarray,
                 sw_s: np.ndarray, nv: float, cat_v: dict[str, np.ndarray]) -> None:
        tot = cw[None, :] + ex + nw
        q = _quantiles(tot)
        swq = _quantiles(cw[None, :] + sw_s)
        for p in range(n_per):
            rows.append({
                "group": gname, "period": pt["period"].iloc[p], "period_start": pt["period_start"].iloc[p],
                "period_end": pt["period_end"].iloc[p], "closed_won": cw[p],
                "existing_pipeline": ex[:, p].mean(), "new_pipeline": nw[:, p].mean(),
                "expected": tot[:, p].mean(), "p10": q[0, p], "p50": q[1, p], "p90": q[2, p],
                **{k: v[p] for k, v in cat_v.items()},
                "stage_weighted": cw[p] + sw_e[p], "stage_weighted_p10": swq[0, p], "stage_weighted_p90": swq[2, p],
                "naive": nv,
            })

    shape = (n_sims, n_g, n_per)
    ex3, nw3, sw3 = existing.reshape(shape), new.reshape(shape), sw_sims.reshape(shape)
    cw2, swe2 = closed_won.reshape(n_g, n_per), sw_exp.reshape(n_g, n_per)
    cat2 = {k: v.reshape(n_g, n_per) for k, v in cats.items()}
    add_rows(ALL, ex3.sum(1), nw3.sum(1), cw2.sum(0), swe2.sum(0), sw3.sum(1), float(naive_g.sum()),
             {k: v.sum(0) for k, v in cat2.items()})
    if by is not None:
        for gi, gname in enumerate(names):
            add_rows(gname, ex3[:, gi], nw3[:, gi], cw2[gi], swe2[gi], sw3[:, gi], float(naive_g[gi]),
                     {k: v[gi] for k, v in cat2.items()})
    per = pd.DataFrame(rows)
    per["target"] = np.where(per["group"] == ALL, cfg.target if cfg.target else np.nan, np.nan)
    per["coverage"] = per["existing_pipeline"] / per["target"]
    per = per[PERIOD_COLUMNS]

    info = {
        "as_of": str(pd.Timestamp(as_of).date()), "period": period, "periods": n_per,
        "method": "history" if not state.pooled else "history (pooled: no stage history)",
        "timing": ("empirical stage exits per stage (Aalen-Johansen, open deals censored at as_of), "
                   "semi-Markov walk through the funnel" if not state.pooled else
                   "empirical created-to-close exits (Aalen-Johansen, open deals censored), one pooled stage"),
        "n_open_deals": n_open, "n_closed_before_as_of": int(len(cl)), "n_won_before_as_of": int(won_cl.sum()),
        "creation_rate_per_day": float(len(recent) / lookback) if not trend.fitted else trend.level,
        "creation_trend": trend.note if cfg.new_pipeline else "no new deals (forecast.new_pipeline: false)",
        "creation_trend_slope_per_day2": trend.slope,
        "conversion_trend": conv.note, "conversion_trend_log_odds": conv.log_odds,
        "n_simulations": n_sims, "parameter_draws": cfg.parameter_draws,
        "shock_sd_creation_rate": sig_rate, "shock_sd_win_log_odds": sig_win, "shock_sd_close_speed": sig_speed,
        "slip_rate": slip_rate(opportunities, as_of=as_of, period=period),
        "stage_win_rates": {k: float(v) for k, v in stage_win_rates(state).items()},
        "funnel_note": ("one open stage: timing is created-to-close, the stage-weighted baseline is the "
                        "overall win rate" if len(state.stages) == 1 else f"{len(state.stages)} open stages"),
        **p_info,
    }
    return ForecastResult(periods=per, funnel=funnel_table(state), deals=deals, info=info)


def category_sums(cat: np.ndarray, exp_per: np.ndarray, pw: np.ndarray, amount: np.ndarray, go: np.ndarray,
                  n_g: int, n_per: int) -> dict[str, np.ndarray]:
    """Per (group x period) cell: the amounts of the open deals of each category in their most
    likely close period (commit, best_case, pipeline: the classic category view) and their
    probability-weighted expectation per period (existing_from_*: P(won in that period) x amount,
    the same quantity as existing_pipeline, so the three add up to it)."""
    cell = n_g * n_per
    out = {}
    for name in CATEGORIES:
        m = (cat == name) & (exp_per >= 0)
        out[name] = np.bincount(go[m] * n_per + exp_per[m], weights=amount[m], minlength=cell)
    for name, col in zip(CATEGORIES, EXISTING_BY_CATEGORY, strict=True):
        m = cat == name
        cells = (go[m][:, None] * n_per + np.arange(n_per)[None, :]).ravel()
        out[col] = np.bincount(cells, weights=(pw[m] * amount[m][:, None]).ravel(), minlength=cell)
    return out


def slip_rate(opps: pd.DataFrame, *, as_of, period: str, lookback_periods: int = 4) -> float:
    """Share of deals whose expected_close_date fell in one of the last `lookback_periods`
    complete periods before as_of but that were not closed by that period's end (closed later
    or still open at as_of). NaN without expected close dates. Caveat: the table holds each
    deal's latest expected_close_date, which may have been edited after as_of."""
    if "expected_close_date" not in opps.columns:
        return float("nan")
    d0 = as_of_day(as_of)
    cur = pd.Period(pd.Timestamp(as_of), freq="Q" if period == "quarter" else "M")
    first = cur - lookback_periods
    lo = day_numbers(pd.Series([first.start_time.normalize()]))[0]
    hi = day_numbers(pd.Series([cur.start_time.normalize()]))[0]
    exp = opps["expected_close_date"]
    ed = day_numbers(exp)
    m = exp.notna().to_numpy() & (ed >= lo) & (ed < hi) & (day_numbers(opps["created_date"]) < d0)
    if not m.any():
        return float("nan")
    nxt = pd.PeriodIndex(pd.to_datetime(exp[m]), freq=cur.freq) + 1
    per_end = day_numbers(pd.Series(nxt.start_time.normalize()))
    if "closed_date" in opps.columns:
        cd = day_numbers(opps["closed_date"])[m].astype(np.float64)
        cd[opps["closed_date"].isna().to_numpy()[m]] = np.inf
        cd[cd >= d0] = np.inf     # closes on/after as_of are not known yet
    else:
        cd = np.full(int(m.sum()), np.inf)
    return float((cd >= per_end).mean())


def shock_scales(created_days: np.ndarray, state: FunnelState, *, d0: int, window_days: int = 30,
                 n_windows: int = 12) -> tuple[float, float, float]:
    """Sizes of the shared shocks, from the variation between the last `n_windows` windows of
    `window_days` before as_of (only complete windows after the first deal was created):

    - creation rate: sd of a lognormal multiplier, from the variance of deals created per
      window beyond the Poisson variance (method of moments): log(1 + excess / mean^2);
    - win odds: sd of a log-odds shock, from the variance of the win rate of the deals closed
      per window beyond the binomial variance, over p(1-p) (delta method);
    - close speed: sd of a lognormal multiplier of the close hazard, from the variance of
      closes per open deal-day per window beyond the Poisson variance.

    0 with fewer than 3 windows (or no excess variation): no shared shock."""
    if not len(created_days):
        return 0.0, 0.0, 0.0
    first = int(created_days.min())
    k = min(n_windows, (d0 - first) // window_days)
    if k < 3:
        return 0.0, 0.0, 0.0
    edges = d0 - window_days * np.arange(k, -1, -1)
    cnt = np.histogram(created_days, bins=edges)[0].astype(float)
    m = cnt.mean()
    sig_rate = float(np.sqrt(np.log1p(max(cnt.var(ddof=1) - m, 0.0) / m ** 2))) if m > 0 else 0.0
    cl = state.closed
    cd = cl["closed"].to_numpy()
    n = np.histogram(cd, bins=edges)[0].astype(float)
    w = np.histogram(cd[cl["won"].to_numpy(bool)], bins=edges)[0].astype(float)
    ok = n >= 10
    sig_win = 0.0
    if ok.sum() >= 3:
        p = w[ok] / n[ok]
        pbar = w[ok].sum() / n[ok].sum()
        excess = p.var(ddof=1) - np.mean(pbar * (1 - pbar) / n[ok])
        if 0 < pbar < 1 and excess > 0:
            sig_win = float(np.sqrt(excess) / (pbar * (1 - pbar)))
    # closes per open deal-day in each window
    ep = state.episodes
    life = ep.groupby("deal").agg(start=("start", "min"), end=("start", "max"), last=("dwell", "last"))
    d_start = life["start"].to_numpy()
    d_end = np.minimum(life["end"].to_numpy() + life["last"].to_numpy(), d0)
    ws, we = edges[:-1], edges[1:]
    exposure = np.clip(np.minimum(d_end[:, None], we[None, :]) - np.maximum(d_start[:, None], ws[None, :]),
                       0, None).sum(axis=0).astype(float)
    ok = (exposure > 0) & (n >= 10)
    sig_speed = 0.0
    if ok.sum() >= 3:
        r = n[ok] / exposure[ok]
        excess = r.var(ddof=1) - np.mean(r / exposure[ok])
        if excess > 0:
            sig_speed = float(np.sqrt(np.log1p(excess / r.mean() ** 2)))
    return sig_rate, sig_win, sig_speed
