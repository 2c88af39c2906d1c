"""Summary tables behind the report and the notebooks: pure pandas, no I/O, no plotting.

Every function takes frames the package already produces (ranked accounts from
`score.score_accounts`, canonical transactions) and returns a small frame.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

TIER_ORDER = {
    "abc_history": ["A", "B", "C"],
    "abc_predicted": ["A", "B", "C"],
    "pyramid": ["VIP", "major", "medium", "small"],
    "composite_tier": ["strategic", "key", "standard", "transactional", "insufficient history"],
    "kaism_quadrant": ["key", "develop", "maintain", "harvest"],
}
RISK_BANDS = ("low", "medium", "high")


def pareto_curve(values: pd.Series) -> pd.DataFrame:
    """Cumulative share of value against share of accounts, accounts sorted by value (highest
    first, ties by index). Starts at (0, 0); negative values count as 0. Columns
    account_share, value_share; len(values) + 1 rows."""
    v = pd.Series(np.clip(values.to_numpy(dtype="float64", na_value=0.0), 0, None), index=values.index.astype("str"))
    v = v.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    total = v.sum()
    cum = np.concatenate([[0.0], np.cumsum(v.to_numpy()) / total if total > 0 else np.zeros(len(v))])
    return pd.DataFrame({"account_share": np.arange(len(v) + 1) / max(len(v), 1), "value_share": cum})


def top_share(values: pd.Series, share: float = 0.2) -> float:
    """Share of total (non-negative) value held by the top `share` of accounts (the 80/20
    figure), interpolated between accounts; NaN when there is no positive value."""
    curve = pareto_curve(values)
    if curve["value_share"].iloc[-1] <= 0:
        return float("nan")
    return float(np.interp(share, curve["account_share"], curve["value_share"]))


def tier_summary(accounts: pd.DataFrame, column: str, value: str = "expected_value") -> pd.DataFrame:
    """Per tier value of `column`: accounts, account_share, value (sum of `value`), value_share.
    Known tiers come in their natural order (A, B, C; VIP ... small), others alphabetically;
    missing tiers are '(none)'."""
    tiers = accounts[column].astype("object").where(accounts[column].notna(), "(none)").astype("str")
    v = accounts[value].astype("float64").fillna(0.0) if value in accounts.columns else pd.Series(0.0, accounts.index)
    g = pd.DataFrame({"tier": tiers.to_numpy(), "v": v.to_numpy()}).groupby("tier", sort=False)["v"]
    out = pd.DataFrame({"accounts": g.size(), "value": g.sum()})
    known = TIER_ORDER.get(column, [])
    order = [t for t in known if t in out.index] + sorted(t for t in out.index if t not in known)
    out = out.loc[order]
    total = out["value"].sum()
    out.insert(1, "account_share", out["accounts"] / max(out["accounts"].sum(), 1))
    out["value_share"] = out["value"] / total if total else 0.0
    out["accounts"] = out["accounts"].astype("int64")
    return out.rename_axis(None).reset_index(names="tier")


def risk_band(p: pd.Series, *, medium: float = 0.2, high: float = 0.5) -> pd.Series:
    """'low' below `medium`, 'medium' below `high`, else 'high' (churn probability bands)."""
    x = p.astype("float64").to_numpy()
    return pd.Series(np.where(x >= high, "high", np.where(x >= medium, "medium", "low")), index=p.index)


def risk_value_matrix(accounts: pd.DataFrame, *, medium: float = 0.2, high: float = 0.5,
                      value_tier: str = "abc_predicted") -> pd.DataFrame:
    """Churn risk x value: one row per (value tier, risk band) with accounts, expected_value and
    value_at_risk sums. All 3 x 3 cells are present (zeros when empty)."""
    tiers = TIER_ORDER.get(value_tier) or sorted(accounts[value_tier].dropna().astype("str").unique())
    d = pd.DataFrame({"value_tier": accounts[value_tier].astype("str").to_numpy(),
                      "risk_band": risk_band(accounts["churn_probability"], medium=medium, high=high).to_numpy(),
                      "expected_value": accounts["expected_value"].astype("float64").to_numpy(),
                      "value_at_risk": accounts["value_at_risk"].astype("float64").to_numpy()})
    g = d.groupby(["value_tier", "risk_band"])
    out = pd.DataFrame({"accounts": g.size(), "expected_value": g["expected_value"].sum(),
                        "value_at_risk": g["value_at_risk"].sum()})
    full = pd.MultiIndex.from_product([tiers, list(RISK_BANDS)], names=["value_tier", "risk_band"])
    out = out.reindex(full, fill_value=0)
    out["accounts"] = out["accounts"].astype("int64")
    return out.reset_index()


def cohort_retention(txns: pd.DataFrame, *, as_of, period: str = "quarter") -> pd.DataFrame:
    """Share of each acquisition cohort buying again, per period since the first purchase.

    Reads positive purchases strictly before as_of. A customer's cohort is the period (month or
    quarter) of its first purchase; cell (cohort, k) = share of the cohort with a purchase in
    the k-th period after it (k = 0 is the cohort period itself, so 1.0). Periods not yet
    complete at as_of are included as observed so far; later cells are NaN. Index: cohort label ('2024Q1' or
    '2024-01'); columns: 'customers' (cohort size) then 0, 1, 2, ...
    """
    freq = {"quarter": "Q", "month": "M"}.get(period)
    if freq is None:
        raise ValueError("period must be 'month' or 'quarter'")
    t = txns[(txns["timestamp"] < pd.Timestamp(as_of)) & (txns["amount"] > 0)]
    if t.empty:
        return pd.DataFrame(columns=["customers"])
    ids = t["customer_id"].astype("str").to_numpy()
    per = t["timestamp"].dt.to_period(freq)
    d = pd.DataFrame({"id": ids, "p": per.to_numpy()}).drop_duplicates()
    first = d.groupby("id")["p"].min()
    d["cohort"] = d["id"].map(first)
    d["k"] = [(a - b).n for a, b in zip(d["p"], d["cohort"], strict=False)]
    counts = d.groupby(["cohort", "k"])["id"].nunique().unstack(fill_value=0).sort_index()
    size = first.value_counts().sort_index()
    out = counts.div(size.reindex(counts.index), axis=0)
    out.columns = out.columns.astype("int64")
    out.insert(0, "customers", size.reindex(counts.index).astype("int64"))
    # Cells after the last period before as_of have not happened yet: NaN, not 0.
    last = (pd.Timestamp(as_of) - pd.Timedelta(1, "ns")).to_period(freq)
    for cohort in out.index:
        horizon = (last - cohort).n
        for k in out.columns[1:]:
            if k > horizon:
                out.loc[cohort, k] = np.nan
    out.index = out.index.astype("str")
    out.index.name, out.columns.name = "cohort", None
    return out


def open_pipeline_summary(periods: pd.DataFrame, deals: pd.DataFrame) -> dict:
    """The open pipeline as every place of the report names it: the deals open at as_of, their
    amount, and their expected won revenue over the forecast's periods ('open pipeline
    (expected)': the sum of the periods' existing_pipeline, which is also the sum of the
    deals' close_probability x amount). `periods`: the team's rows of a forecast."""
    labels = periods["period"].astype("str").tolist()
    return {"deals": int(len(deals)), "amount": float(deals["amount"].astype("float64").fillna(0.0).sum()),
            "expected": float(periods["existing_pipeline"].sum()),
            "horizon": f"{labels[0]}–{labels[-1]}" if len(labels) > 1 else (labels[0] if labels else "")}


def owner_rollup(owners: pd.DataFrame, period: str) -> pd.DataFrame:
    """The owners table (forecast.owners.owner_table, with the rep call when there is one) for
    one period, owners by expected revenue (highest first), the team last."""
    t = owners[owners["period"].astype("str") == str(period)]
    team = t[t["owner"] == "(all)"]
    rest = t[t["owner"] != "(all)"].sort_values(["expected", "owner"], ascending=[False, True], kind="stable")
    return pd.concat([rest, team], ignore_index=True)
