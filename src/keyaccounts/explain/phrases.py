"""Plain-words phrases of the reason groups, vectorised over the rows that carry them.

Each renderer takes (get, risk, get_str): get(col) gives the raw column as float64 for the selected
rows, get_str(col) as strings, and risk is True where the reason reads as a risk. Which model
input belongs to which group is declared once, in `keyaccounts.features.registry`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# ================================================================ phrase formatting (vectorised)

def _plural(n: np.ndarray, one: str, many: str) -> np.ndarray:
    return np.where(np.abs(n) == 1, one, many).astype(object)


def _int(v: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(np.asarray(v, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
    return np.round(v).astype(np.int64).astype(str).astype(object)


def _money(v: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(np.asarray(v, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
    return np.array([f"-${-x:,.0f}" if x < -0.5 else f"${x:,.0f}" for x in v.tolist()], dtype=object)


def _pct(v: np.ndarray) -> np.ndarray:
    return _int(np.asarray(v, dtype="float64") * 100.0)


def _num(v: np.ndarray) -> np.ndarray:
    """2 significant digits below 10 (0.23, 2.3), whole numbers above."""
    v = np.nan_to_num(np.asarray(v, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
    return np.array([f"{x:.0f}" if abs(x) >= 9.95 else f"{x:.2g}" for x in v.tolist()], dtype=object)


def _nan(v) -> np.ndarray:
    return ~np.isfinite(np.asarray(v, dtype="float64"))


def _months(get) -> np.ndarray:
    return np.maximum(get("first_purchase_days_ago"), 1.0) / 30.0 + 1.0


def _days_phrase(d: np.ndarray) -> np.ndarray:
    return _int(d) + " " + _plural(np.round(np.nan_to_num(d)), "day", "days")


# Each renderer: (get, risk) -> object array of phrases; get(col) gives the raw column as float64
# for the selected rows (get_str(col) as strings), risk is True where the reason reads as a risk.

def _r_recency(get, risk, get_str):
    d = get("recency_days")
    return np.where(_nan(d), "no purchase yet",
                    np.where(risk, "no purchase for " + _days_phrase(d),
                             np.where(np.round(d) == 1, "last purchase yesterday",
                                      "last purchase " + _days_phrase(d) + " ago")))


def _r_rate(get, risk, get_str):
    x = get("frequency") / _months(get)
    return "buys " + _num(x) + " times a month"


def _r_frequency(get, risk, get_str):
    n = get("frequency")
    return np.where(n <= 1, np.where(n <= 0, "no purchase yet", "bought once so far"),
                    _int(n) + " purchase days so far")


def _r_recent_count(days: int):
    col = f"n_purchases_{days}d"

    def render(get, risk, get_str):
        n = get(col)
        return np.where(n <= 0, f"no purchase in the last {days} days",
                        _int(n) + _plural(n, " purchase day", " purchase days")
                        + f" in the last {days} days")
    return render


def _r_spend_month(get, risk, get_str):
    x = get("monetary_total") / _months(get)
    return "spends " + _money(x) + " a month on average"


def _r_avg_order(get, risk, get_str):
    return "average order " + _money(get("monetary_avg"))


def _r_window_spend(days: int, label: str):
    col = f"spend_{days}d"

    def render(get, risk, get_str):
        x = get(col)
        return np.where(x <= 0, f"no spend in the {label}", "spent " + _money(x) + f" in the {label}")
    return render


def _r_growth(get, risk, get_str):
    r = get("spend_growth_ratio_90d")
    up, down = _pct(r - 1.0), _pct(1.0 - r)
    return np.where(_nan(r), "no spend in the prior quarter to compare",
                    np.where(up == "0", "spend flat vs prior quarter",
                             np.where(r > 1, "spend up " + up + " % vs prior quarter",
                                      "spend down " + down + " % vs prior quarter")))


def _r_interval(get, risk, get_str):
    d = get("interval_mean_days")
    return np.where(_nan(d), "no repeat purchase yet", "buys every " + _days_phrase(d) + " on average")


def _r_interval_trend(get, risk, get_str):
    x = get("interval_trend_ratio")
    return np.where(_nan(x), "too few purchases to see a trend",
                    "last gap between purchases " + _num(x) + "x the usual")


def _r_tenure(get, risk, get_str):
    d = get("tenure_days")
    mo = d / 30.0
    return np.where(_nan(d), "new customer",
                    np.where(mo < 2, "customer for " + _days_phrase(d),
                             "customer for " + _int(mo) + " months"))


def _r_returns(get, risk, get_str):
    x = get("return_ratio")
    return np.where(_nan(x) | (x <= 0), "no returns", "returns " + _pct(x) + " % of purchases")


def _r_margin(get, risk, get_str):
    x = get("margin_rate")
    return np.where(_nan(x), "margin unknown", "margin " + _pct(x) + " %")


def _r_past_due(get, risk, get_str):
    d = get("days_past_due_mean")
    return np.where(_nan(d), "no invoices yet", np.where(d <= 0.5, "pays invoices on time on average",
                                                         "invoices " + _days_phrase(d) + " past due on average"))


def _r_late_share(get, risk, get_str):
    x = get("late_payment_share")
    return np.where(_nan(x), "no paid invoices yet", _pct(x) + " % of invoices paid late")


def _r_overdue30(get, risk, get_str):
    n = np.nan_to_num(get("n_overdue_30d"))
    return np.where(n <= 0, "no invoice overdue > 30 days",
                    _int(n) + _plural(n, " invoice overdue > 30 days", " invoices overdue > 30 days"))


def _r_overdue_balance(get, risk, get_str):
    x = np.nan_to_num(get("overdue_balance"))
    return np.where(x <= 0, "nothing overdue", _money(x) + " overdue")


def _r_open_balance(get, risk, get_str):
    return "open balance " + _money(get("open_balance"))


def _r_credit(get, risk, get_str):
    x = get("credit_utilisation")
    return np.where(_nan(x), "no credit limit on file", "uses " + _pct(x) + " % of credit limit")


def _r_n_invoices(get, risk, get_str):
    n = np.nan_to_num(get("n_invoices"))
    return _int(n) + _plural(n, " invoice", " invoices") + " so far"


def _r_rfm(get, risk, get_str):
    return "RFM score " + _int(get("rfm_score")) + " of 15"


def _r_deal_age(get, risk, get_str):
    return "deal open " + _days_phrase(get("age_days"))


def _r_stage(get, risk, get_str):
    return "in stage " + get_str("stage_at_as_of")


def _r_stage_change(get, risk, get_str):
    d = get("days_since_stage_change")
    return np.where(_nan(d), "no stage history", np.where(
        risk, "no stage change for " + _days_phrase(d),
        np.where(np.round(d) <= 0, "stage changed today", "stage changed " + _days_phrase(d) + " ago")))


def _r_amount(get, risk, get_str):
    return "deal amount " + _money(get("amount"))


def _r_won(get, risk, get_str):
    n = get("account_won_deals")
    return np.where(_nan(n), "no account on the deal", np.where(
        n <= 0, "account has never won a deal", "account won " + _int(n) + _plural(n, " deal", " deals") + " before"))


def _r_lost(get, risk, get_str):
    n = get("account_lost_deals")
    return np.where(_nan(n), "no account on the deal", np.where(
        n <= 0, "account has never lost a deal", "account lost " + _int(n) + _plural(n, " deal", " deals") + " before"))


def _r_vs_won(get, risk, get_str):
    x = get("amount_vs_account_won_avg")
    return np.where(_nan(x), "no won deal on the account to compare", _num(x) + "x the account's usual deal")


def _r_account_spend(get, risk, get_str):
    x = get("account_spend_365d")
    return np.where(_nan(x) | (x <= 0), "no account spend in the last year",
                    "account spent " + _money(x) + " in the last year")


def _r_owner(get, risk, get_str):
    x = get("owner_win_rate")
    return np.where(_nan(x), "owner's win rate unknown", "owner wins " + _pct(x) + " % of deals")


def _r_expected_close(get, risk, get_str):
    d = get("days_to_expected_close")
    return np.where(_nan(d), "no expected close date", np.where(
        d >= 0, "expected to close in " + _days_phrase(d), "expected close date passed " + _days_phrase(-d) + " ago"))


@dataclass(frozen=True)
class Reason:
    """A reason group: the raw columns its phrase reads and the phrase renderer."""
    needs: tuple[str, ...]
    render: Callable


#: reason key -> phrase (keys double as the tie-break order).
REASON_PHRASES: dict[str, Reason] = {
    "recency_days": Reason(("recency_days",), _r_recency),
    "purchases_per_month": Reason(("frequency", "first_purchase_days_ago"), _r_rate),
    "frequency": Reason(("frequency",), _r_frequency),
    "n_purchases_30d": Reason(("n_purchases_30d",), _r_recent_count(30)),
    "n_purchases_90d": Reason(("n_purchases_90d",), _r_recent_count(90)),
    "n_purchases_365d": Reason(("n_purchases_365d",), _r_recent_count(365)),
    "spend_per_month": Reason(("monetary_total", "first_purchase_days_ago"), _r_spend_month),
    "monetary_avg": Reason(("monetary_avg",), _r_avg_order),
    "spend_30d": Reason(("spend_30d",), _r_window_spend(30, "last 30 days")),
    "spend_90d": Reason(("spend_90d",), _r_window_spend(90, "last 90 days")),
    "spend_365d": Reason(("spend_365d",), _r_window_spend(365, "last year")),
    "spend_growth_ratio_90d": Reason(("spend_growth_ratio_90d",), _r_growth),
    "interval_mean_days": Reason(("interval_mean_days",), _r_interval),
    "interval_trend_ratio": Reason(("interval_trend_ratio",), _r_interval_trend),
    "tenure_days": Reason(("tenure_days",), _r_tenure),
    "return_ratio": Reason(("return_ratio",), _r_returns),
    "margin_rate": Reason(("margin_rate",), _r_margin),
    "days_past_due_mean": Reason(("days_past_due_mean",), _r_past_due),
    "late_payment_share": Reason(("late_payment_share",), _r_late_share),
    "n_overdue_30d": Reason(("n_overdue_30d",), _r_overdue30),
    "overdue_balance": Reason(("overdue_balance",), _r_overdue_balance),
    "open_balance": Reason(("open_balance",), _r_open_balance),
    "credit_utilisation": Reason(("credit_utilisation",), _r_credit),
    "n_invoices": Reason(("n_invoices",), _r_n_invoices),
    "rfm_score": Reason(("rfm_score",), _r_rfm),
    # deals
    "age_days": Reason(("age_days",), _r_deal_age),
    "stage_at_as_of": Reason(("stage_at_as_of",), _r_stage),
    "days_since_stage_change": Reason(("days_since_stage_change",), _r_stage_change),
    "amount": Reason(("amount",), _r_amount),
    "account_won_deals": Reason(("account_won_deals",), _r_won),
    "account_lost_deals": Reason(("account_lost_deals",), _r_lost),
    "amount_vs_account_won_avg": Reason(("amount_vs_account_won_avg",), _r_vs_won),
    "account_spend_365d": Reason(("account_spend_365d",), _r_account_spend),
    "owner_win_rate": Reason(("owner_win_rate",), _r_owner),
    "days_to_expected_close": Reason(("days_to_expected_close",), _r_expected_close),
}

#: Which direction reads as a risk: for churn a push up is a risk, for value and deal a push down.
UP_IS_RISK = {"churn": True, "value": False, "deal": False}


def fallback_phrase(key: str):
    """Renderer for an undeclared reason key: '<key> = value' (or the bare key without the column)."""
    def render(get, risk, get_str, raw_has: bool):
        if not raw_has:
            return np.full(len(risk), key, dtype=object)
        v = get(key)
        vals = np.array(["n/a" if not np.isfinite(x) else f"{x:.4g}" for x in v.tolist()], dtype=object)
        return key + " = " + vals
    return render
