"""The weekly forecast call: the reps' own calls beside the model, and how well each rep calls.

Opportunities may carry the rep's probability (`rep_probability`, 0..1) and forecast category
(`rep_category`: commit, best_case, pipeline, omitted); the `opportunity_snapshots` table holds
the history of those calls (one row per deal and snapshot date). From them:

- `attach_rep_calls`: the forecast's open deals with the rep's call beside the model's;
- `rep_call_table`: per owner and period the rep call (commit, best case = commit + best_case
  amounts, and the rep's probability-weighted pipeline), to sit beside the model's expected
  value and interval in the owners table;
- `disagreements`: the open deals whose rep probability and model probability differ most;
- `rep_accuracy`: per rep, from the snapshot history, how the calls compared with what closed
  (bias, weighted absolute % error, per-deal Brier), beside the model's probabilities for the same deal-snapshots.

Point in time: `rep_accuracy(..., as_of)` reads snapshots dated strictly before as_of and
scores a call only when its window (the snapshot's period, `periods` periods long) ended
before as_of, so every outcome it reads was known then. Pure functions: no I/O.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

REP_COLUMNS = ("rep_probability", "rep_category")
CALL_COLUMNS = ["owner", "period", "rep_deals", "rep_commit", "rep_best_case", "rep_expected"]
DISAGREEMENT_COLUMNS = ["opportunity_id", "owner", "stage", "amount", "rep_category", "rep_probability", "category",
                        "close_probability", "difference"]
ACCURACY_COLUMNS = ["owner", "snapshots", "calls", "actual", "rep_called", "rep_bias", "rep_wape", "rep_brier",
                    "rep_prob_bias", "model_called", "model_bias", "model_wape", "model_brier", "model_prob_bias"]
NONE = "(none)"


def has_rep_calls(opportunities: pd.DataFrame | None) -> bool:
    """True when the opportunities carry a rep probability or category on at least one row."""
    return opportunities is not None and any(
        c in opportunities.columns and opportunities[c].notna().any() for c in REP_COLUMNS)


def calls_as_of(opportunities: pd.DataFrame, snapshots: pd.DataFrame | None, *, as_of) -> pd.DataFrame:
    """The reps' calls as they stood at as_of, one row per deal (opportunity_id and those of
    rep_probability, rep_category, expected_close_date it has): from the latest snapshot dated
    before as_of when a snapshot history is given (the opportunities' own columns hold today's
    call, which a forecast as of an earlier date must not read), else the opportunities'."""
    if snapshots is None:
        return opportunities
    s = snapshots[snapshots["snapshot_date"] < pd.Timestamp(as_of)]
    s = s.sort_values(["snapshot_date"], kind="stable").drop_duplicates("opportunity_id", keep="last")
    s = s.drop(columns=[c for c in ("owner", "stage", "amount") if c in s.columns])
    if "expected_close_date" not in s.columns and "expected_close_date" in opportunities.columns:
        s["expected_close_date"] = s["opportunity_id"].astype("str").map(
            opportunities.drop_duplicates("opportunity_id").set_index("opportunity_id")["expected_close_date"])
    return s


def rep_category_of(p: pd.Series, *, commit: float, best_case: float) -> pd.Series:
    """A category from a rep probability, with the model's thresholds (for reps who give only a
    probability)."""
    x = p.to_numpy(dtype="float64", na_value=np.nan)
    cat = np.where(x >= commit, "commit", np.where(x >= best_case, "best_case", "pipeline"))
    return pd.Series(np.where(np.isnan(x), None, cat), index=p.index, dtype="str")


def attach_rep_calls(deals: pd.DataFrame, opportunities: pd.DataFrame, *, commit: float,
                     best_case: float) -> pd.DataFrame:
    """The forecast's deals with rep_probability, rep_category (from the probability with the
    forecast thresholds where the rep gave none) and expected_close_date of each deal."""
    o = opportunities.drop_duplicates("opportunity_id").set_index(
        opportunities.drop_duplicates("opportunity_id")["opportunity_id"].astype("str"))
    ids = deals["opportunity_id"].astype("str")
    out = deals.copy()
    p = ids.map(o["rep_probability"]) if "rep_probability" in o.columns else pd.Series(np.nan, index=deals.index)
    out["rep_probability"] = p.astype("float64").to_numpy()
    given = ids.map(o["rep_category"]) if "rep_category" in o.columns else pd.Series(None, index=deals.index)
    derived = rep_category_of(out["rep_probability"], commit=commit, best_case=best_case)
    out["rep_category"] = given.astype("object").where(given.notna(), derived).astype("str").to_numpy()
    out["expected_close_date"] = (ids.map(o["expected_close_date"]) if "expected_close_date" in o.columns
                                  else pd.Series(pd.NaT, index=deals.index)).to_numpy()
    return out


def _call_period(deals: pd.DataFrame, pt: pd.DataFrame, as_of) -> pd.Series:
    """The period label each call is for: the period of its expected close date (past due or
    none: the current period; after the last period: none)."""
    when = pd.to_datetime(deals["expected_close_date"])
    when = when.where(when.notna() & (when >= pd.Timestamp(as_of)), pd.Timestamp(as_of))
    starts = pt["period_start"].to_numpy(dtype="datetime64[ns]")
    ends = pt["period_end"].to_numpy(dtype="datetime64[ns]") + np.timedelta64(1, "D")
    pos = np.searchsorted(starts, when.to_numpy(dtype="datetime64[ns]"), side="right") - 1
    ok = (pos >= 0) & (when.to_numpy(dtype="datetime64[ns]") < ends[np.maximum(pos, 0)])
    labels = pt["period"].to_numpy(dtype=object)
    return pd.Series(np.where(ok, labels[np.maximum(pos, 0)], None), index=deals.index, dtype="object")


def rep_call_table(deals: pd.DataFrame, pt: pd.DataFrame, *, as_of) -> pd.DataFrame:
    """Per owner (and '(all)') and period of `pt` (a `core.period_table`): rep_deals (open deals
    with a rep call), rep_commit (their amounts called commit), rep_best_case (commit +
    best_case amounts) and rep_expected (rep probability x amount). `deals` from
    `attach_rep_calls`; a deal the rep left out ('omitted') counts in none of them."""
    d = deals[deals["rep_probability"].notna() | deals["rep_category"].notna()].copy()
    d["owner"] = d["owner"].astype("object").where(d["owner"].notna(), NONE).astype("str") \
        if "owner" in d.columns else NONE
    d["period"] = _call_period(d, pt, as_of)
    d = d[d["period"].notna() & (d["rep_category"] != "omitted")]
    amt = d["amount"].astype("float64").fillna(0.0)
    d = d.assign(rep_deals=1, rep_commit=amt.where(d["rep_category"] == "commit", 0.0),
                 rep_best_case=amt.where(d["rep_category"].isin(["commit", "best_case"]), 0.0),
                 rep_expected=amt * d["rep_probability"].astype("float64").fillna(0.0))
    sums = ["rep_deals", "rep_commit", "rep_best_case", "rep_expected"]
    per = d.groupby(["owner", "period"], sort=True)[sums].sum().reset_index()
    team = d.groupby("period", sort=True)[sums].sum().reset_index().assign(owner="(all)")
    out = pd.concat([per, team], ignore_index=True)[CALL_COLUMNS]
    out["rep_deals"] = out["rep_deals"].astype("int64")
    return out


def disagreements(deals: pd.DataFrame, *, top: int = 20) -> pd.DataFrame:
    """The `top` open deals whose rep probability and model probability (close_probability:
    P(won within the forecast periods)) differ most, largest |difference| first (then amount);
    difference = rep - model, positive where the rep is the more optimistic."""
    d = deals[deals["rep_probability"].notna()].copy()
    d["difference"] = d["rep_probability"] - d["close_probability"]
    d = d.assign(_abs=d["difference"].abs()).sort_values(["_abs", "amount", "opportunity_id"],
                                                         ascending=[False, False, True], kind="stable")
    return d.head(top)[DISAGREEMENT_COLUMNS].reset_index(drop=True)


def _scored_calls(snapshots: pd.DataFrame, opportunities: pd.DataFrame, *, as_of, period: str,
                  periods: int) -> pd.DataFrame:
    """One row per call (deal x snapshot) that can be scored at as_of: snapshot before as_of,
    deal open at the snapshot and expected to close within the window (the snapshot's period,
    `periods` long; past due counts), the window ended before as_of; with owner, amount, p (rep
    probability), won (in the window) and window (label)."""
    freq = "Q" if period == "quarter" else "M"
    s = snapshots[(snapshots["snapshot_date"] < pd.Timestamp(as_of)) & snapshots["rep_probability"].notna()].copy()
    s["opportunity_id"] = s["opportunity_id"].astype("str")
    o = opportunities.drop_duplicates("opportunity_id")
    o = o.set_index(o["opportunity_id"].astype("str"))
    first = pd.PeriodIndex(s["snapshot_date"], freq=freq)
    # the call is for the period of the expected close date (past due or none: the snapshot's)
    exp = pd.to_datetime(s["expected_close_date"]) if "expected_close_date" in s.columns else s["snapshot_date"]
    ahead = (pd.PeriodIndex(exp.where(exp > s["snapshot_date"], s["snapshot_date"]), freq=freq) - first)
    s = s[np.array([a.n for a in ahead]) < periods]
    first = pd.PeriodIndex(s["snapshot_date"], freq=freq)
    s["window"] = first.astype("str")
    s["window_end"] = (first + (periods - 1)).end_time.normalize().to_numpy()
    closed = s["opportunity_id"].map(o["closed_date"]) if "closed_date" in o.columns else pd.Series(pd.NaT, s.index)
    closed = pd.to_datetime(closed)
    outcome = s["opportunity_id"].map(o["outcome"]) if "outcome" in o.columns else pd.Series(None, s.index)
    still_open = closed.isna() | (closed >= s["snapshot_date"])
    s = s[still_open & (s["window_end"] < pd.Timestamp(as_of))]
    closed, outcome = closed[s.index], outcome[s.index]
    s["won"] = ((outcome == "won") & closed.notna() & (closed <= s["window_end"])).astype("int64")
    if "owner" not in s.columns:
        s["owner"] = s["opportunity_id"].map(o["owner"]) if "owner" in o.columns else None
    s["owner"] = s["owner"].astype("object").where(s["owner"].notna(), NONE).astype("str")
    amt = s["amount"] if "amount" in s.columns else pd.Series(np.nan, s.index)
    s["amount"] = amt.astype("float64").fillna(s["opportunity_id"].map(o["amount"]).astype("float64")).fillna(0.0)
    s["p"] = s["rep_probability"].astype("float64")
    return s[["owner", "opportunity_id", "snapshot_date", "window", "amount", "p", "won"]].reset_index(drop=True)


def _score(calls: pd.DataFrame, p: str) -> dict[str, float]:
    """Called revenue, bias and WAPE of the per-snapshot totals and the per-deal Brier score.
    Weighted, not a mean of per-snapshot ratios: late in a window a rep's remaining open calls
    win little, and the ratio of those weeks would swamp the rest (on the synthetic funnel the
    team's mean ratio was 13.2 where the weighted bias is 0.46)."""
    g = calls.assign(called=calls[p] * calls["amount"], actual=calls["won"] * calls["amount"]) \
        .groupby("snapshot_date")[["called", "actual"]].sum()
    act = float(g["actual"].sum())
    return {"called": float(g["called"].sum()),
            "bias": float((g["called"] - g["actual"]).sum() / act) if act > 0 else np.nan,
            "wape": float((g["called"] - g["actual"]).abs().sum() / act) if act > 0 else np.nan,
            "brier": float(np.mean((calls[p] - calls["won"]) ** 2)) if len(calls) else np.nan,
            "prob_bias": float(np.mean(calls[p] - calls["won"])) if len(calls) else np.nan}


def rep_accuracy(snapshots: pd.DataFrame, opportunities: pd.DataFrame, *, as_of, period: str = "quarter",
                 periods: int = 1, model_probabilities: pd.DataFrame | None = None,
                 tolerance_days: int = 0) -> pd.DataFrame:
    """Per rep (owner, and '(all)'), how the calls of the snapshot history compared with what
    closed in their window (see `_scored_calls`): calls scored, actual won revenue, rep_called
    (sum of rep probability x amount), rep_bias = sum(called - actual) / sum(actual) and
    rep_wape = sum|called - actual| / sum(actual) over the snapshots (the weekly calls' absolute
    percentage error, weighted by what closed; see `_score`), rep_brier per deal and
    rep_prob_bias = mean(probability - won) per deal (probability points; deal sizes do not
    weigh in, so it names the optimist even when a few large deals decide the revenue). With
    `model_probabilities` (a backtest's `deal_probabilities`: snapshot_date, opportunity_id,
    probability of being won in the same window) only the calls
    the model also scored are kept, so model_* sit on the same deal-snapshots: a model
    snapshot matches a call on the same deal up to `tolerance_days` earlier, in the same window."""
    calls = _scored_calls(snapshots, opportunities, as_of=as_of, period=period, periods=periods)
    if model_probabilities is not None:
        freq = "Q" if period == "quarter" else "M"
        m = model_probabilities[["snapshot_date", "opportunity_id", "probability"]].copy()
        m["opportunity_id"] = m["opportunity_id"].astype("str")
        m["snapshot_date"] = pd.to_datetime(m["snapshot_date"]).astype("datetime64[ns]")
        m["model_window"] = pd.PeriodIndex(m["snapshot_date"], freq=freq).astype("str")
        calls = pd.merge_asof(calls.assign(snapshot_date=calls["snapshot_date"].astype("datetime64[ns]"))
                              .sort_values("snapshot_date", kind="stable"),
                              m.sort_values("snapshot_date", kind="stable"), on="snapshot_date", by="opportunity_id",
                              tolerance=pd.Timedelta(days=tolerance_days), direction="backward")
        calls = calls[calls["probability"].notna() & (calls["model_window"] == calls["window"])]
    rows = []
    for owner, c in [*calls.groupby("owner", sort=True), ("(all)", calls)]:
        if not len(c):
            continue
        r = _score(c, "p")
        mdl = _score(c, "probability") if model_probabilities is not None else dict.fromkeys(r, np.nan)
        rows.append({"owner": owner, "snapshots": int(c["snapshot_date"].nunique()), "calls": len(c),
                     "actual": float((c["won"] * c["amount"]).sum()), "rep_called": r["called"],
                     "rep_bias": r["bias"], "rep_wape": r["wape"], "rep_brier": r["brier"],
                     "rep_prob_bias": r["prob_bias"], "model_called": mdl["called"], "model_bias": mdl["bias"],
                     "model_wape": mdl["wape"], "model_brier": mdl["brier"], "model_prob_bias": mdl["prob_bias"]})
    return pd.DataFrame(rows, columns=ACCURACY_COLUMNS)
