"""Funnel state at a date: stage episodes, censoring-aware stage-exit tables, funnel statistics.

A deal walks the open stages (code 0..K-1, funnel order) and ends won (code K) or lost (K+1).
An *episode* is one stay in one open stage: entered on `start` (day number), left after
`dwell` days to `dest`, or still there at as_of (`dest` = CENSORED, `dwell` = days known
without an exit). Everything is read strictly before as_of:

- deals created before as_of; a deal's outcome only if closed before as_of;
- with a stage history, its rows changed before as_of (a deal with no row on or before its
  creation day starts in the first open stage on its created date); without one, each deal
  is one episode in a single pooled pseudo-stage from creation to close (stages of past deals
  are then unknown, so nothing per stage can be learned).

`exit_table` turns the episodes of one stage into an Aalen-Johansen (competing risks
Kaplan-Meier) distribution of (dwell, destination): deals still open count as at risk until
as_of, so slow deals are not forgotten (closed-only durations would be biased short), and
mass left after the longest observed exit is "no exit seen" (the deal stays open).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import normalise_stage
from ..errors import InputError
from ..features.arrays import as_of_day, day_numbers

CENSORED = -1


@dataclass
class FunnelState:
    """Episodes and open deals at as_of.

    stages: open stage names in funnel order (["(open)"] when pooled without history);
    pooled: True without a stage history; episodes: DataFrame deal (int code into
    `deal_ids`), stage, start, dwell, dest; open_deals: DataFrame indexed by opportunity_id with
    stage_code, entered (day), dwell (days in stage at as_of, >= 1), stage (name shown),
    amount, created (day) and the context columns present (owner, product, customer_id,
    expected_close_date); closed: deals closed before as_of (opportunity_id, outcome,
    closed day, amount, created day, passed: set of open stage codes entered);
    entries: first-stage codes of deals (for new deals)."""
    as_of_day: int
    stages: list[str]
    pooled: bool
    deal_ids: np.ndarray
    episodes: pd.DataFrame
    open_deals: pd.DataFrame
    closed: pd.DataFrame
    entry_stage: np.ndarray   # per deal code: first open stage entered
    funnel_stages: list[str]  # the configured open stages in funnel order (shown)
    known: pd.DataFrame       # the deals created before as_of, in deal-code order

    @property
    def won_code(self) -> int:
        return len(self.stages)

    @property
    def lost_code(self) -> int:
        return len(self.stages) + 1


def _stage_codes(names: pd.Series, stages: list[str], what: str) -> np.ndarray:
    pos = {normalise_stage(s): i for i, s in enumerate(stages)}
    k = len(stages)
    pos.update({"won": k, "lost": k + 1})
    norm = names.astype("str").map(normalise_stage)
    codes = norm.map(pos)
    bad = codes.isna() & names.notna()
    if bad.any():
        vals = sorted(set(names[bad].astype(str)))[:8]
        raise InputError(f"{int(bad.sum())} rows have a stage that is not in the funnel order {stages} "
                         f"(nor won/lost): {vals}", column="stage", file=what,
                         hint="list every open stage, in funnel order, under stages.open (or forecast.stage_order)")
    return codes.fillna(-2).to_numpy(np.int64)


def funnel_state(opps: pd.DataFrame, *, as_of, stages: list[str],
                 stage_history: pd.DataFrame | None = None) -> FunnelState:
    """The funnel as known at the start of `as_of` (see the module docstring)."""
    d0 = as_of_day(as_of)
    if not stages:
        raise InputError("the funnel needs at least one open stage")
    created = day_numbers(opps["created_date"])
    # Sorted by id: the input's row order must not change any draw.
    o = opps.loc[created < d0].sort_values("opportunity_id", kind="stable").reset_index(drop=True)
    created = day_numbers(o["created_date"])
    ids = o["opportunity_id"].astype("str").to_numpy()
    n = len(o)
    has_close = "closed_date" in o.columns and "outcome" in o.columns
    closed_day = day_numbers(o["closed_date"]) if has_close else np.full(n, np.iinfo(np.int64).min)
    closed_known = (o["outcome"].notna().to_numpy() & (closed_day < d0)) if has_close else np.zeros(n, bool)
    won = (o["outcome"] == "won").to_numpy() & closed_known if has_close else np.zeros(n, bool)
    amount = o["amount"].astype("float64").to_numpy()

    pooled = stage_history is None
    k = 1 if pooled else len(stages)
    if pooled:
        e_deal, e_code, e_day = np.arange(n), np.zeros(n, np.int64), created
    else:
        h = stage_history.loc[day_numbers(stage_history["changed_at"]) < d0]
        code_of = pd.Series(np.arange(n), index=pd.Index(ids))
        hd = code_of.reindex(h["opportunity_id"].astype("str")).to_numpy()
        keep = ~np.isnan(hd)
        h = h.loc[keep]
        hd = hd[keep].astype(np.int64)
        hc = _stage_codes(h["stage"].reset_index(drop=True), stages, "stage history")
        hday = day_numbers(h["changed_at"])
        first_row = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first_row, hd, hday)
        implicit = first_row > created   # no row on/before creation: starts in the first stage
        e_deal = np.concatenate([np.flatnonzero(implicit), hd])
        e_code = np.concatenate([np.zeros(int(implicit.sum()), np.int64), hc])
        e_day = np.concatenate([created[implicit], hday])
    # Close from the opportunities table when the history lacks a terminal row before as_of.
    e = pd.DataFrame({"deal": e_deal, "code": e_code, "day": e_day, "seq": np.arange(len(e_deal))})
    term_seen = np.zeros(n, bool)
    term_seen[e.loc[e["code"] >= k, "deal"].to_numpy()] = True
    add = closed_known & ~term_seen
    if add.any():
        idx = np.flatnonzero(add)
        e = pd.concat([e, pd.DataFrame({"deal": idx, "code": np.where(won[idx], k, k + 1),
                                        "day": closed_day[idx], "seq": len(e) + np.arange(len(idx))})],
                      ignore_index=True)
    e = e.sort_values(["deal", "day", "seq"], kind="stable", ignore_index=True)
    # Drop everything after a deal's first terminal row.
    term = (e["code"] >= k).astype("int64")
    after = term.groupby(e["deal"]).cumsum() - term
    e = e.loc[after.to_numpy() == 0].reset_index(drop=True)

    ne = len(e)
    nxt_same = np.r_[e["deal"].to_numpy()[1:] == e["deal"].to_numpy()[:-1], False][:ne]
    nxt_code = np.r_[e["code"].to_numpy()[1:], CENSORED][:ne]
    nxt_day = np.r_[e["day"].to_numpy()[1:], d0][:ne]
    is_open = e["code"].to_numpy() < k
    ep_deal = e["deal"].to_numpy()
    ep = pd.DataFrame({
        "deal": ep_deal, "stage": e["code"].to_numpy(), "start": e["day"].to_numpy(),
        "dwell": np.where(nxt_same, nxt_day, d0) - e["day"].to_numpy(),
        "dest": np.where(nxt_same, nxt_code, CENSORED),
    }).loc[is_open]
    # Censored episodes only for deals still open at as_of (their last episode).
    ep = ep.loc[(ep["dest"] != CENSORED) | ~closed_known[ep["deal"].to_numpy()]].reset_index(drop=True)
    ep["dwell"] = ep["dwell"].clip(lower=0)

    entry = np.zeros(n, np.int64)
    first = e.loc[e["code"] < k].drop_duplicates("deal")
    entry[first["deal"].to_numpy()] = first["code"].to_numpy()

    cens = ep.loc[ep["dest"] == CENSORED].drop_duplicates("deal", keep="last")
    od = o.iloc[cens["deal"].to_numpy()]
    open_deals = pd.DataFrame({
        "stage_code": cens["stage"].to_numpy(), "entered": cens["start"].to_numpy(),
        "dwell": np.maximum(cens["dwell"].to_numpy(), 1), "created": created[cens["deal"].to_numpy()],
        "amount": amount[cens["deal"].to_numpy()],
    }, index=pd.Index(ids[cens["deal"].to_numpy()], name="opportunity_id"))
    if pooled:
        # Stage names shown: the deal's current stage when still open, else unknown.
        still = od["outcome"].isna().to_numpy() if "outcome" in od.columns else np.ones(len(od), bool)
        open_deals["stage"] = np.where(still, od["stage"].astype("str").to_numpy(), "unknown")
    else:
        open_deals["stage"] = np.asarray(stages, dtype=object)[open_deals["stage_code"].to_numpy()]
    for c in ("owner", "product", "customer_id", "expected_close_date"):
        if c in od.columns:
            open_deals[c] = od[c].to_numpy()

    passed = ep.loc[ep["stage"] < k].groupby("deal")["stage"].agg(lambda s: frozenset(s.tolist()))
    cl = np.flatnonzero(closed_known)
    closed = pd.DataFrame({
        "opportunity_id": ids[cl], "won": won[cl], "closed": closed_day[cl], "created": created[cl],
        "amount": amount[cl], "passed": passed.reindex(cl).to_numpy(),
    })
    for c in ("owner", "product", "customer_id"):
        if c in o.columns:
            closed[c] = o[c].to_numpy()[cl]
    return FunnelState(as_of_day=d0, stages=["(open)"] if pooled else list(stages), pooled=pooled,
                       deal_ids=ids, episodes=ep, open_deals=open_deals, closed=closed, entry_stage=entry,
                       funnel_stages=list(stages), known=o)


@dataclass
class ExitTable:
    """Distribution of (dwell, dest) for one stage, flattened in dwell order: P(exit after
    exactly dwell[j] days to dest[j]) = mass[j]; cum = cumulative mass; 1 - cum[-1] is the
    mass of "no exit seen" (stays open)."""
    dwell: np.ndarray
    dest: np.ndarray
    mass: np.ndarray
    cum: np.ndarray

    def before(self, c: np.ndarray) -> np.ndarray:
        """Mass of exits with dwell < c (already ruled out for a deal c days in the stage)."""
        i = np.searchsorted(self.dwell, c, side="left")
        return np.where(i > 0, self.cum[np.maximum(i - 1, 0)], 0.0) if len(self.cum) else np.zeros(len(c))


def exit_table(dwell: np.ndarray, dest: np.ndarray, weight: np.ndarray | None = None) -> ExitTable:
    """Aalen-Johansen estimate from one stage's episodes (dest = CENSORED for deals still in it).

    At dwell u the deals at risk are those that exited at dwell >= u or were seen in the stage
    for more than u days; hazard(u, k) = exits(u, k) / at_risk(u); mass = S(u-) * hazard."""
    dwell = np.asarray(dwell, np.int64)
    dest = np.asarray(dest, np.int64)
    w = np.ones(len(dwell)) if weight is None else np.asarray(weight, np.float64)
    ev = dest != CENSORED
    if not ev.any():
        z = np.zeros(0)
        return ExitTable(z.astype(np.int64), z.astype(np.int64), z, z)
    # Weighted exits per (dwell, dest).
    keys = pd.DataFrame({"u": dwell[ev], "k": dest[ev], "w": w[ev]}).groupby(["u", "k"], sort=True)["w"].sum()
    u_k = keys.index.get_level_values(0).to_numpy()
    k_k = keys.index.get_level_values(1).to_numpy()
    e_k = keys.to_numpy()
    uniq = np.unique(u_k)
    # at_risk(u) = w(exits with dwell >= u) + w(censored with dwell > u)
    o_ev = np.argsort(dwell[ev], kind="stable")
    d_ev, w_ev = dwell[ev][o_ev], w[ev][o_ev]
    tail_ev = np.r_[np.cumsum(w_ev[::-1])[::-1], 0.0]
    o_c = np.argsort(dwell[~ev], kind="stable")
    d_c, w_c = dwell[~ev][o_c], w[~ev][o_c]
    tail_c = np.r_[np.cumsum(w_c[::-1])[::-1], 0.0]
    risk = tail_ev[np.searchsorted(d_ev, uniq, side="left")] + tail_c[np.searchsorted(d_c, uniq, side="right")]
    tot = pd.Series(e_k).groupby(u_k).sum().reindex(uniq).to_numpy()
    h_all = np.divide(tot, risk, out=np.zeros_like(tot), where=risk > 0)
    s_before = np.r_[1.0, np.cumprod(1.0 - np.clip(h_all, 0, 1))[:-1]]
    pos = np.searchsorted(uniq, u_k)
    mass = s_before[pos] * np.divide(e_k, risk[pos], out=np.zeros_like(e_k), where=risk[pos] > 0)
    return ExitTable(u_k.astype(np.int64), k_k.astype(np.int64), mass, np.cumsum(mass))


def exit_tables(state: FunnelState, weight_per_deal: np.ndarray | None = None) -> list[ExitTable]:
    """One ExitTable per open stage from the state's episodes (optionally re-weighted per deal)."""
    ep = state.episodes
    w = None if weight_per_deal is None else weight_per_deal[ep["deal"].to_numpy()]
    out = []
    for s in range(len(state.stages)):
        m = (ep["stage"] == s).to_numpy()
        out.append(exit_table(ep["dwell"].to_numpy()[m], ep["dest"].to_numpy()[m], None if w is None else w[m]))
    return out


def stage_win_rates(state: FunnelState) -> pd.Series:
    """Historical win rate per open stage: among deals closed before as_of that entered the
    stage, the share won (stage-weighted pipeline). Stages no closed deal went through get
    the overall rate; NaN when nothing closed before as_of."""
    cl = state.closed
    overall = float(cl["won"].mean()) if len(cl) else np.nan
    rates = {}
    for s, name in enumerate(state.stages):
        if state.pooled:
            rates[name] = overall
            continue
        went = cl["passed"].map(lambda p, s=s: isinstance(p, frozenset) and s in p).to_numpy(bool)
        rates[name] = float(cl.loc[went, "won"].mean()) if went.any() else overall
    return pd.Series(rates, dtype="float64")


def funnel_table(state: FunnelState) -> pd.DataFrame:
    """stage, order, count, amount (open at as_of), conversion_rate (share of exits from the
    stage that moved forward: a later stage or won), avg_days_in_stage (mean days of the exits
    seen), win_rate (`stage_win_rates`), all from what was known before as_of. Without a stage
    history only count, amount and the overall win rate are known (the rest is NaN)."""
    ep = state.episodes
    od = state.open_deals
    rows = []
    rates = stage_win_rates(state)
    k = len(state.stages)
    shown = od["stage"].astype("str").map(normalise_stage).to_numpy()
    for s, name in enumerate(state.funnel_stages):
        in_s = shown == normalise_stage(name)
        row = {"stage": name, "order": s + 1, "count": int(in_s.sum()),
               "amount": float(od.loc[in_s, "amount"].sum()),
               "conversion_rate": np.nan, "avg_days_in_stage": np.nan, "win_rate": float(rates.iloc[0])}
        if not state.pooled:
            m = ep.loc[(ep["stage"] == s) & (ep["dest"] != CENSORED)]
            fwd = ((m["dest"] > s) & (m["dest"] <= k)).to_numpy()
            row.update(conversion_rate=float(fwd.mean()) if len(m) else np.nan,
                       avg_days_in_stage=float(m["dwell"].mean()) if len(m) else np.nan,
                       win_rate=float(rates.iloc[s]))
        rows.append(row)
    return pd.DataFrame(rows, columns=["stage", "order", "count", "amount", "conversion_rate",
                                       "avg_days_in_stage", "win_rate"])
