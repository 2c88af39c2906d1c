"""Credit behaviour from receivables, and returns from transactions, as of a date."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .arrays import as_of_day, day_numbers, frame, money_sum, ratio, txn_arrays


def credit(invoices: pd.DataFrame, customers: pd.DataFrame | None = None, *, as_of,
           overdue_threshold_days: int = 30) -> pd.DataFrame:
    """Per customer with an invoice issued before `as_of`.

    An invoice is paid at as_of iff paid_date < as_of (paid later = unpaid then). Its days
    past due known at as_of: paid -> max(0, paid - due); unpaid -> max(0, as_of - due).
    - n_invoices; days_past_due_mean / days_past_due_max over those invoices
    - late_payment_share: share of invoices paid by as_of that were paid after due_date
    - open_balance: unpaid amount; overdue_balance: unpaid amount past due;
      n_overdue_{T}d: unpaid invoices more than T days past due
    - credit_utilisation: open_balance / customers.credit_limit (NaN when unknown or 0)
    """
    d0 = as_of_day(as_of)
    issue = day_numbers(invoices["issue_date"])
    inv = invoices.loc[issue < d0]
    issue = issue[issue < d0]
    due = day_numbers(inv["due_date"])
    paid_known = inv["paid_date"].notna().to_numpy() if "paid_date" in inv.columns else np.zeros(len(inv), bool)
    paid_day = day_numbers(inv["paid_date"]) if "paid_date" in inv.columns else np.zeros(len(inv), np.int64)
    paid = paid_known & (paid_day < d0)
    amount = inv["amount"].to_numpy(dtype="float64")
    dpd = np.where(paid, np.maximum(0, paid_day - due), np.maximum(0, d0 - due)).astype("float64")
    late = paid & (paid_day > due)
    overdue = ~paid & (due < d0)
    codes, ids = pd.factorize(inv["customer_id"].astype("str"), sort=True)
    ids = pd.Index(ids, name="customer_id")
    n = len(ids)

    def s(w, m=None):
        out = np.bincount(codes if m is None else codes[m], weights=None if w is None else (w if m is None else w[m]),
                          minlength=n)
        # bincount returns int64 when no row is selected, even with float weights
        return out if w is None else out.astype("float64", copy=False)

    n_inv = s(None)
    dpd_max = np.full(n, -np.inf)
    np.maximum.at(dpd_max, codes, dpd)
    open_bal = money_sum(codes[~paid], amount[~paid], n)
    cols = {
        "n_invoices": n_inv,
        "days_past_due_mean": ratio(s(dpd), n_inv),
        "days_past_due_max": dpd_max,
        "late_payment_share": ratio(s(late.astype("float64")), s(paid.astype("float64"))),
        "open_balance": open_bal,
        "overdue_balance": money_sum(codes[overdue], amount[overdue], n),
        f"n_overdue_{overdue_threshold_days}d": s(None, overdue & (d0 - due > overdue_threshold_days)),
    }
    out = frame(ids, n_inv > 0, cols)
    limit = pd.Series(np.nan, index=out.index)
    if customers is not None and "credit_limit" in customers.columns:
        limit = customers.set_index(customers["customer_id"].astype("str"))["credit_limit"].reindex(out.index)
    out["credit_utilisation"] = ratio(out["open_balance"].to_numpy(), limit.to_numpy(dtype="float64"))
    return out


def returns(txns: pd.DataFrame, *, as_of) -> pd.DataFrame:
    """Per customer with rows before `as_of`: return_ratio = |sum of negative amounts| /
    sum of positive amounts (NaN without purchases); n_returns = rows with amount < 0."""
    a = txn_arrays(txns, as_of=as_of)
    neg = a.amount < 0
    gross = a.sum_by(a.amount, ~neg)
    back = np.abs(a.sum_by(a.amount, neg))  # abs, not negation: no -0.0 without returns
    cols = {"return_ratio": ratio(back, gross), "n_returns": np.bincount(a.code[neg], minlength=a.n)}
    return frame(a.ids, a.seen(), cols)
