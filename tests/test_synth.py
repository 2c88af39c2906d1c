"""Synthetic generator: determinism, canonical forms, invariants, and visible latent behaviour."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_
from scipy.stats import spearmanr

from keyaccounts.synth import STAGE_LOST, STAGE_WON, STAGES_OPEN, SynthTables, synth_transactions, synthesize

START, END = pd.Timestamp("2023-01-01"), pd.Timestamp("2025-12-31")
TABLES = ("transactions", "customers", "invoices", "opportunities", "stage_history", "latent")
COLUMNS = {
    "transactions": ["customer_id", "timestamp", "amount", "invoice_id", "quantity", "unit_price", "cost",
                     "product"],
    "customers": ["customer_id", "name", "owner", "region", "industry", "size", "credit_limit", "signup_date"],
    "invoices": ["invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date"],
    "opportunities": ["opportunity_id", "customer_id", "owner", "product", "created_date",
                      "expected_close_date", "closed_date", "outcome", "stage", "amount"],
    "stage_history": ["opportunity_id", "stage", "changed_at"],
}
DATES = {"timestamp", "signup_date", "issue_date", "due_date", "paid_date", "created_date",
         "expected_close_date", "closed_date", "changed_at"}
NUMBERS = {"amount", "quantity", "unit_price", "cost", "credit_limit"}


@pytest.fixture(scope="module")
def st() -> SynthTables:
    return synthesize(n_customers=1500, seed=11)


def _is_str(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.StringDtype) or pd.api.types.is_string_dtype(s.dtype) and s.dtype != object


# ------------------------------------------------------------------ determinism and forms

def test_same_seed_same_frames_different_seed_differs():
    a, b = synthesize(n_customers=300, seed=5), synthesize(n_customers=300, seed=5)
    for name in TABLES:
        pdt.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = synthesize(n_customers=300, seed=6)
    assert not a.transactions.equals(c.transactions)
    assert not a.opportunities.equals(c.opportunities)
    pdt.assert_frame_equal(synth_transactions(n_rows=5000, n_customers=200, seed=2),
                           synth_transactions(n_rows=5000, n_customers=200, seed=2))
    assert not synth_transactions(n_rows=5000, n_customers=200, seed=2).equals(
        synth_transactions(n_rows=5000, n_customers=200, seed=3))


def test_columns_dtypes_and_index(st):
    for name, cols in COLUMNS.items():
        df = getattr(st, name)
        assert list(df.columns) == cols, name
        assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0, name
        for c in cols:
            if c in DATES:
                assert df[c].dtype == "datetime64[ns]", (name, c)
            elif c in NUMBERS:
                assert df[c].dtype == "float64", (name, c)
            elif name == "transactions" and c == "customer_id":
                assert isinstance(df[c].dtype, pd.CategoricalDtype)
                cats = df[c].cat.categories
                assert _is_str(pd.Series(cats)) and cats.is_monotonic_increasing
                assert set(cats) == set(df[c].astype("str"))      # only the customers present
            else:
                assert _is_str(df[c]), (name, c, df[c].dtype)
    # normalised dates (all but transaction timestamps)
    for name, cols in COLUMNS.items():
        for c in set(cols) & (DATES - {"timestamp"}):
            v = getattr(st, name)[c].dropna()
            assert (v == v.dt.normalize()).all(), (name, c)
    assert st.customers["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert st.opportunities["opportunity_id"].str.fullmatch(r"O\d{7}").all()
    assert st.invoices["invoice_id"].str.fullmatch(r"INV\d{7}").all()
    lat = st.latent
    assert list(lat["customer_id"]) == list(st.customers["customer_id"])
    assert {"segment", "churner", "grower", "steady", "prospect", "late_payer", "churn_date", "purchase_rate",
            "growth", "mean_spend", "owner_skill"} <= set(lat.columns)
    assert lat["churn_date"].dtype == "datetime64[ns]"
    assert lat.loc[~lat["churner"], "churn_date"].isna().all() and lat.loc[lat["churner"], "churn_date"].notna().all()


def test_sorted_and_unique_ids(st):
    t = st.transactions
    key = pd.DataFrame({"c": t["customer_id"].astype("str"), "t": t["timestamp"]})
    assert key.equals(key.sort_values(["c", "t"], kind="stable").reset_index(drop=True))
    assert st.customers["customer_id"].is_unique and st.customers["customer_id"].is_monotonic_increasing
    assert st.invoices["invoice_id"].is_unique and st.opportunities["opportunity_id"].is_unique
    assert st.opportunities["opportunity_id"].is_monotonic_increasing
    inv = st.invoices
    assert inv[["customer_id", "issue_date"]].equals(
        inv[["customer_id", "issue_date"]].sort_values(["customer_id", "issue_date"]).reset_index(drop=True))
    assert not inv[["customer_id", "issue_date"]].duplicated().any()
    assert not t.duplicated().any()      # no exact duplicate rows (the loader would drop them)


# ------------------------------------------------------------------ invariants

def test_transactions_invariants(st):
    t = st.transactions
    assert (t["timestamp"] >= START).all() and (t["timestamp"] <= END).all()
    np.testing.assert_allclose(t["amount"], np.round(t["quantity"] * t["unit_price"], 2), atol=1e-9)
    assert (t["unit_price"] > 0).all() and (t["quantity"] != 0).all()
    assert (np.sign(t["cost"]) == np.sign(t["amount"])).all()
    pos = t[t["amount"] > 0]
    rate = 1 - pos["cost"] / pos["amount"]
    assert rate.between(0.04, 0.61).all() and 0.15 < rate.mean() < 0.4
    ret = t[t["amount"] < 0]
    assert 0.015 < len(ret) / len(t) < 0.035
    assert (ret["quantity"] < 0).all() and (t.loc[t["amount"] > 0, "quantity"] > 0).all()
    # every return comes after an earlier purchase by the same customer
    first_buy = pos.groupby("customer_id", observed=True)["timestamp"].min()
    assert (ret["timestamp"].to_numpy() > first_buy.reindex(ret["customer_id"]).to_numpy()).all()
    # heavy-tailed spend across customers
    spend = pos.groupby("customer_id", observed=True)["amount"].sum()
    assert spend.mean() > 1.5 * spend.median() and spend.quantile(0.99) > 10 * spend.median()


def test_customers_invariants(st):
    c, t = st.customers, st.transactions
    first = t.groupby("customer_id", observed=True)["timestamp"].min()
    signup = c.set_index("customer_id")["signup_date"]
    assert (signup.reindex(first.index.astype("str")).to_numpy() <= first.to_numpy()).all()
    never = ~c["customer_id"].isin(first.index.astype("str"))
    assert 0.02 < never.mean() < 0.09
    assert st.latent.loc[never.to_numpy(), "prospect"].mean() > 0.9
    assert 8 <= c["owner"].nunique() <= 20 and c["region"].nunique() in (4, 5)
    assert set(c["size"]) == {"small", "medium", "large", "enterprise"}
    assert (c["credit_limit"] > 0).all() and (c["signup_date"] <= END).all()


def test_invoices_invariants(st):
    inv, t = st.invoices, st.transactions
    assert (inv["amount"] > 0).all()
    assert (inv["due_date"] - inv["issue_date"] == pd.Timedelta(days=30)).all()
    assert (inv["issue_date"] == inv["issue_date"].dt.to_period("M").dt.to_timestamp()).all()
    assert (inv["issue_date"] <= END).all() and (inv["issue_date"] > START).all()
    paid = inv["paid_date"].notna()
    assert (inv.loc[paid, "paid_date"] >= inv.loc[paid, "issue_date"]).all()
    assert (inv.loc[paid, "paid_date"] <= END).all()
    assert 0 < (~paid).mean() < 0.2
    # amount = the month's positive spend, billed on the 1st of the next month
    pos = t[t["amount"] > 0]
    month = (pos["timestamp"].dt.to_period("M") + 1).dt.to_timestamp()
    billed = pos.groupby([pos["customer_id"].astype("str"), month])["amount"].sum().round(2)
    got = inv.set_index(["customer_id", "issue_date"])["amount"]
    np.testing.assert_allclose(got.to_numpy(), billed.reindex(got.index).to_numpy(), atol=0.011)
    # every month with positive net purchases is billed (issue_date <= end), and only those
    month_all = (t["timestamp"].dt.to_period("M") + 1).dt.to_timestamp()
    net = t.groupby([t["customer_id"].astype("str"), month_all])["amount"].sum()
    should = net[(net.round(2) > 0) & (net.index.get_level_values(1) <= END)].index
    assert set(should) == set(got.index)


def test_opportunities_and_history_invariants(st):
    o, h = st.opportunities, st.stage_history
    assert set(o["stage"]) <= set(STAGES_OPEN) | {STAGE_WON, STAGE_LOST}
    closed = o["outcome"].notna()
    assert set(o.loc[closed, "outcome"]) == {STAGE_WON, STAGE_LOST}
    assert (o.loc[closed, "stage"] == o.loc[closed, "outcome"]).all()
    assert o.loc[~closed, "stage"].isin(STAGES_OPEN).all() and o.loc[~closed, "closed_date"].isna().all()
    assert o.loc[closed, "closed_date"].notna().all()
    assert (o.loc[closed, "closed_date"] >= o.loc[closed, "created_date"]).all()
    assert (o.loc[closed, "closed_date"] <= END).all() and (o["created_date"] <= END).all()
    assert (o["expected_close_date"] > o["created_date"]).all() and (o["amount"] > 0).all()
    assert o["customer_id"].isin(st.customers["customer_id"]).all()
    # the deal owner is the account owner
    owners = st.customers.set_index("customer_id")["owner"]
    assert (o["owner"].to_numpy() == owners.reindex(o["customer_id"]).to_numpy()).all()
    # deals created near the end are still open; older ones mostly closed
    recent = o["created_date"] > END - pd.Timedelta(days=20)
    assert (~closed[recent]).mean() > 0.8 and closed[~recent].mean() > 0.9
    win = (o.loc[closed, "outcome"] == STAGE_WON).mean()
    assert 0.1 < win < 0.4

    # history: starts at the first open stage on created_date, strictly increasing time,
    # funnel order, last stage == current stage, closed_date == last change of closed deals
    assert h["opportunity_id"].is_monotonic_increasing
    assert set(h["opportunity_id"]) == set(o["opportunity_id"])
    g = h.groupby("opportunity_id", sort=True)
    first, last = g.head(1).set_index("opportunity_id"), g.tail(1).set_index("opportunity_id")
    oi = o.set_index("opportunity_id")
    assert (first["stage"] == STAGES_OPEN[0]).all()
    assert (first["changed_at"] == oi.loc[first.index, "created_date"]).all()
    assert (last["stage"] == oi.loc[last.index, "stage"]).all()
    cl = oi.index[oi["outcome"].notna()]
    assert (last.loc[cl, "changed_at"] == oi.loc[cl, "closed_date"]).all()
    same = h["opportunity_id"].eq(h["opportunity_id"].shift())
    assert (h["changed_at"].diff()[same] > pd.Timedelta(0)).all()
    order = {s: i for i, s in enumerate(STAGES_OPEN)}
    idx = h["stage"].map(order)
    prev = idx.shift()
    step = same & idx.notna()
    assert (idx[step] == prev[step] + 1).all()            # open stages in funnel order, none skipped
    assert h.loc[~same, "stage"].eq(STAGES_OPEN[0]).all()
    lost_at = h.loc[h["stage"].eq(STAGE_LOST)].index - 1
    assert h.loc[lost_at, "stage"].isin(STAGES_OPEN).all()
    assert set(h.loc[lost_at, "stage"]) == set(STAGES_OPEN)   # lost at any stage


# ------------------------------------------------------------------ latent behaviour is visible

def test_churners_stop_buying(st):
    t, lat = st.transactions, st.latent.set_index("customer_id")
    pos = t[t["amount"] > 0]
    cid = pos["customer_id"].astype("str")
    churn = cid.map(lat["churn_date"])
    assert not (pos["timestamp"] >= churn).any()           # no purchase on/after the churn date
    recent = pos[pos["timestamp"] >= END - pd.DateOffset(months=6)]
    n6 = recent.groupby(recent["customer_id"].astype("str"))["invoice_id"].nunique().reindex(lat.index, fill_value=0)
    buyers = ~lat["prospect"]
    assert n6[lat["churner"]].mean() < 0.2 * n6[buyers & ~lat["churner"]].mean()


def test_growers_grow(st):
    t, lat = st.transactions, st.latent.set_index("customer_id")
    pos = t[t["amount"] > 0]
    mid = START + (END - START) / 2
    early = lat.index[lat["activation_date"] == START]          # active over the whole window

    def second_over_first(ids):
        x = pos[pos["customer_id"].astype("str").isin(ids)]
        h1 = x[x["timestamp"] < mid].groupby("customer_id", observed=True)["amount"].sum()
        h2 = x[x["timestamp"] >= mid].groupby("customer_id", observed=True)["amount"].sum().reindex(h1.index,
                                                                                                     fill_value=0)
        return (h2 > h1).mean(), h2.sum() / h1.sum()

    g_share, g_ratio = second_over_first(early.intersection(lat.index[lat["grower"]]))
    s_share, s_ratio = second_over_first(early.intersection(lat.index[lat["steady"]]))
    assert g_share > 0.8 and g_ratio > 1.4
    assert g_share > s_share + 0.2 and 0.8 < s_ratio < 1.25


def test_late_payers_pay_late(st):
    inv, lat = st.invoices, st.latent.set_index("customer_id")
    late = inv["customer_id"].map(lat["late_payer"]).astype(bool)
    dpd = (inv["paid_date"] - inv["due_date"]).dt.days
    assert dpd[late].mean() > 20 and dpd[~late].mean() < 3
    assert dpd[late].dropna().between(10, 90).all()
    assert inv.loc[late, "paid_date"].isna().mean() > 2 * inv.loc[~late, "paid_date"].isna().mean()


def test_owner_skill_drives_win_rate(st):
    o, lat = st.opportunities, st.latent
    closed = o[o["outcome"].notna()]
    win = closed.groupby("owner")["outcome"].apply(lambda s: (s == STAGE_WON).mean())
    skill = lat.groupby("owner")["owner_skill"].first().reindex(win.index)
    assert spearmanr(win, skill).statistic > 0.6


def test_deal_amount_follows_account_spend(st):
    o, lat = st.opportunities, st.latent.set_index("customer_id")
    assert spearmanr(o["amount"], o["customer_id"].map(lat["mean_spend"])).statistic > 0.5


# ------------------------------------------------------------------ fast path and edge cases

def test_synth_transactions_fast_path():
    t = synth_transactions(n_rows=60_000, n_customers=3_000, seed=4)
    assert list(t.columns) == COLUMNS["transactions"]
    assert abs(len(t) - 60_000) < 0.02 * 60_000
    assert isinstance(t["customer_id"].dtype, pd.CategoricalDtype)
    assert t["customer_id"].nunique() == 3_000
    assert t["customer_id"].cat.categories.is_monotonic_increasing
    assert t["timestamp"].dtype == "datetime64[ns]"
    assert (t["timestamp"] >= pd.Timestamp("2021-01-01")).all() and (t["timestamp"] <= END).all()
    codes = t["customer_id"].cat.codes.to_numpy()
    assert (np.diff(codes) >= 0).all()
    same = np.diff(codes) == 0
    assert (np.diff(t["timestamp"].to_numpy())[same] >= np.timedelta64(0)).all()
    ret = t["amount"] < 0
    assert 0.015 < ret.mean() < 0.035 and (t.loc[ret, "quantity"] < 0).all()
    assert isinstance(t.index, pd.RangeIndex)


@pytest.mark.parametrize("kw", [dict(n_customers=1, seed=0), dict(n_customers=12, seed=3, deals_per_customer=0.0),
                                dict(n_customers=40, start="2025-12-01", end="2025-12-31", seed=1)])
def test_edge_cases_run_and_hold_invariants(kw):
    s = synthesize(**kw)
    for name in TABLES:
        df = getattr(s, name)
        assert isinstance(df, pd.DataFrame)
    assert len(s.customers) == kw["n_customers"]
    t = s.transactions
    lo, hi = pd.Timestamp(kw.get("start", START)), pd.Timestamp(kw.get("end", END))
    assert (t["timestamp"] >= lo).all() and (t["timestamp"] <= hi).all()
    assert (s.invoices["issue_date"] <= hi).all()
    if kw.get("deals_per_customer") == 0.0:
        assert s.opportunities.empty and s.stage_history.empty
        assert list(s.opportunities.columns) == COLUMNS["opportunities"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st_.integers(1, 60), seed=st_.integers(0, 2**32 - 1), days=st_.integers(1, 900),
       dpc=st_.floats(0.0, 4.0))
def test_invariants_hold_for_any_arguments(n, seed, days, dpc):
    lo = pd.Timestamp("2024-03-15")
    hi = lo + pd.Timedelta(days=days)
    s = synthesize(n_customers=n, start=str(lo.date()), end=str(hi.date()), seed=seed, deals_per_customer=dpc)
    t, inv, o, h = s.transactions, s.invoices, s.opportunities, s.stage_history
    assert ((t["timestamp"] >= lo) & (t["timestamp"] <= hi)).all()
    pos = t[t["amount"] > 0]
    first = pos.groupby("customer_id", observed=True)["timestamp"].min()
    ret = t[t["amount"] < 0]
    assert (ret["quantity"] < 0).all()
    assert (ret["timestamp"].to_numpy() > first.reindex(ret["customer_id"]).to_numpy()).all()
    signup = s.customers.set_index("customer_id")["signup_date"]
    assert (signup.reindex(first.index.astype("str")).to_numpy() <= first.to_numpy()).all()
    assert inv["invoice_id"].is_unique and (inv["issue_date"] <= hi).all()
    assert (inv["paid_date"].isna() | (inv["paid_date"] >= inv["issue_date"])).all()
    assert o["opportunity_id"].is_unique and (o["created_date"] <= hi).all()
    cd = o["closed_date"]
    assert (cd.isna() | ((cd >= o["created_date"]) & (cd <= hi))).all()
    assert (cd.notna() == o["outcome"].notna()).all()
    if len(o):
        last = h.groupby("opportunity_id").tail(1).set_index("opportunity_id")["stage"]
        assert (last.reindex(o["opportunity_id"]).to_numpy() == o["stage"].to_numpy()).all()
        same = h["opportunity_id"].eq(h["opportunity_id"].shift())
        assert (h["changed_at"].diff()[same] > pd.Timedelta(0)).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        synthesize(n_customers=0)
    with pytest.raises(ValueError):
        synthesize(start="2025-01-01", end="2024-01-01")
