"""Deal features per opportunity open at a date."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..config import normalise_stage
from .arrays import MONEY_UNITS_PER_CURRENCY, as_of_day, day_numbers, ratio, txn_arrays

UNKNOWN_STAGE = "unknown"


def open_at(opps: pd.DataFrame, *, as_of) -> pd.DataFrame:
    """Opportunities created before as_of and not closed before it."""
    d0 = as_of_day(as_of)
    created = day_numbers(opps["created_date"]) < d0
    closed_before = opps["closed_date"].notna().to_numpy() & (day_numbers(opps["closed_date"]) < d0) \
        if "closed_date" in opps.columns else np.zeros(len(opps), bool)
    return opps.loc[created & ~closed_before]


def _stage_at(op: pd.DataFrame, stages: list[str], *, d0: int,
              stage_history: pd.DataFrame | None) -> tuple[pd.Series, pd.Series]:
    """(stage at as_of, days since the last stage change) per open deal (see `deals`)."""
    still_open = op["outcome"].isna() if "outcome" in op.columns else pd.Series(True, index=op.index)
    stage = op["stage"].where(still_open, UNKNOWN_STAGE).astype("str")
    since_change = pd.Series(np.nan, index=op.index)
    # Whether a history table is given, never how many rows it has: rows dated after as_of
    # must not switch a deal from the no-history rule to the history rule.
    if stage_history is not None:
        h = stage_history.loc[day_numbers(stage_history["changed_at"]) < d0]
        h = h[h["opportunity_id"].astype("str").isin(op.index)]
        h = h.sort_values(["opportunity_id", "changed_at"], kind="stable")
        last = h.groupby(h["opportunity_id"].astype("str"), sort=False).tail(1)
        last = last.set_index(last["opportunity_id"].astype("str"))
        # A deal with history but no change before as_of sits in the first open stage.
        stage = pd.Series(stages[0], index=op.index, dtype="str")
        stage.loc[last.index] = last["stage"].astype("str")
        since_change = pd.Series(d0 - day_numbers(op["created_date"]), index=op.index, dtype="float64")
        since_change.loc[last.index] = (d0 - day_numbers(last["changed_at"])).astype("float64")
    return stage, since_change


def _account_history(out: pd.DataFrame, closed: pd.DataFrame, won: pd.Series) -> None:
    """account_won_deals, account_lost_deals and amount_vs_account_won_avg into `out`, from the
    deals closed before as_of."""
    # The won average is money: summed exactly in micro-units (integer-valued floats), so
    # it is the same under any row order and on every engine (features/relational_deals.py).
    won_amount = closed["amount"].where(won)
    acc = closed.assign(won=won.astype("float64"), won_n=won_amount.notna().astype("float64"),
                        won_units=np.rint(won_amount.to_numpy("float64") * MONEY_UNITS_PER_CURRENCY))
    acc = acc.groupby(acc["customer_id"].astype("str")).agg(
        account_won_deals=("won", "sum"), n=("won", "size"), won_units=("won_units", "sum"), won_n=("won_n", "sum"))
    acc["won_avg"] = (acc["won_units"] / MONEY_UNITS_PER_CURRENCY) / acc["won_n"].where(acc["won_n"] > 0)
    acc["account_lost_deals"] = acc["n"] - acc["account_won_deals"]
    acc = acc.reindex(out["customer_id"])
    # No account on the deal: its history is unknown (NaN), not "no history" (0).
    known = out["customer_id"].notna().to_numpy()
    out["account_won_deals"] = np.where(known, acc["account_won_deals"].fillna(0).to_numpy(), np.nan)
    out["account_lost_deals"] = np.where(known, acc["account_lost_deals"].fillna(0).to_numpy(), np.nan)
    out["amount_vs_account_won_avg"] = ratio(out["amount"].to_numpy(), acc["won_avg"].to_numpy())


def _owner_record(out: pd.DataFrame, closed: pd.DataFrame, won: pd.Series, owner_prior: float) -> None:
    """owner_win_rate (shrunk toward the overall rate by `owner_prior` pseudo-deals) and
    owner_closed_deals into `out`."""
    overall = float(won.mean()) if len(closed) else 0.5
    by_owner = closed.assign(won=won.astype("float64")).groupby(closed["owner"].astype("str"))["won"]
    stats = pd.DataFrame({"w": by_owner.sum(), "n": by_owner.size()}).reindex(out["owner"]).fillna(0)
    out["owner_win_rate"] = ((stats["w"] + owner_prior * overall) / (stats["n"] + owner_prior)).to_numpy() \
        if owner_prior > 0 else ratio(stats["w"].to_numpy(), stats["n"].to_numpy())
    out["owner_closed_deals"] = stats["n"].to_numpy()


def deals(opps: pd.DataFrame, *, as_of, open_stages: Sequence[str],
          stage_history: pd.DataFrame | None = None, txns: pd.DataFrame | None = None,
          owner_prior: float = 10.0) -> pd.DataFrame:
    """Per opportunity open at `as_of` (see `open_at`), indexed by opportunity_id.

    - age_days: as_of - created_date
    - stage_at_as_of: last stage entered before as_of from `stage_history`; without history,
      the current stage if the deal is still open, else 'unknown' (its stage then is not known)
    - stage_index: position of stage_at_as_of in the funnel (0 = first open stage; NaN unknown)
    - days_since_stage_change: as_of - last change before as_of (history only; else NaN)
    - amount; account_won_deals / account_lost_deals: the account's deals closed before as_of
      (NaN, like the other account features, when the deal has no customer_id);
      amount_vs_account_won_avg: amount / mean amount of those won deals
    - account_spend_365d: the account's net spend in the last 365 days (with `txns`)
    - owner_win_rate: owner's won / closed before as_of, shrunk toward the overall rate by
      `owner_prior` pseudo-deals; owner_closed_deals
    - days_to_expected_close: expected_close_date - as_of (NaN when unknown)
    Context columns customer_id and owner are carried through.
    """
    d0 = as_of_day(as_of)
    stages = [normalise_stage(s) for s in open_stages]  # the loader's canonical spelling
    op = open_at(opps, as_of=as_of).copy()
    op.index = pd.Index(op["opportunity_id"].astype("str"), name="opportunity_id")
    out = pd.DataFrame(index=op.index)
    out["customer_id"] = op.get("customer_id", pd.Series(np.nan, index=op.index)).astype("str")
    out["owner"] = op.get("owner", pd.Series(np.nan, index=op.index)).astype("str")
    out["age_days"] = (d0 - day_numbers(op["created_date"])).astype("float64")

    stage, since_change = _stage_at(op, stages, d0=d0, stage_history=stage_history)
    out["stage_at_as_of"] = stage
    pos = {s: i for i, s in enumerate(stages)}
    out["stage_index"] = stage.map(pos).astype("float64")
    out["days_since_stage_change"] = since_change.astype("float64")
    out["amount"] = op["amount"].astype("float64")

    # closed_date is optional in the canonical table (absent when every deal is open).
    closed = opps.loc[opps["outcome"].notna().to_numpy() & (day_numbers(opps["closed_date"]) < d0)] \
        if "outcome" in opps.columns and "closed_date" in opps.columns else opps.iloc[0:0]
    won = closed["outcome"] == "won"
    if "customer_id" in closed.columns:
        _account_history(out, closed, won)
    if txns is not None and "customer_id" in op.columns:
        a = txn_arrays(txns, as_of=as_of)
        spend = pd.Series(a.sum_by(a.amount, a.day >= d0 - 365), index=a.ids)
        out["account_spend_365d"] = np.where(out["customer_id"].notna().to_numpy(),
                                             spend.reindex(out["customer_id"]).fillna(0.0).to_numpy(), np.nan)

    if "owner" in closed.columns:
        _owner_record(out, closed, won, owner_prior)
    if "expected_close_date" in op.columns:
        exp = op["expected_close_date"]
        out["days_to_expected_close"] = np.where(exp.notna(), day_numbers(exp) - d0, np.nan)
    return out.sort_index()
