"""Point-in-time properties of the features.

(a) Data dated on/after as_of never changes a feature: appending such rows (new customers,
    returns, invoices issued or paid later, deals created or closed later, later stage changes)
    leaves build_features, credit and deals unchanged.
(b) Row order never changes a feature.
Plus a deterministic check that truncating every table at as_of changes nothing.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from keyaccounts.config import FeatureConfig
from keyaccounts.features import Tables, build_features, credit, deals

OLD = ["c0", "c1", "c2", "c3", "c4"]   # customers that may have history before as_of
NEW = ["n0", "n1"]                      # customers that only appear on/after as_of
OWNERS = ["ann", "bob", "cat", None]
OPEN = ["prospecting", "qualification", "proposal", "negotiation"]
CFG = FeatureConfig(windows_days=[7, 30, 365], growth_window_days=30, slope_months=4)
EXAMPLES = int(os.environ.get("KEYACCOUNTS_PIT_EXAMPLES", "60"))  # raise it for a deeper local hunt

secs = st.one_of(st.just(0), st.just(86399), st.integers(0, 86399))
amounts = st.integers(-50, 200).map(float)
maybe = st.none().__or__


def at(as_of: str, days: int, seconds: int = 0) -> str:
    return (pd.Timestamp(as_of) + pd.Timedelta(days=days, seconds=seconds)).isoformat()


@st.composite
def worlds(draw):
    """Rows of a base world (everything known before as_of) and of the future (on/after as_of)."""
    as_of = draw(st.sampled_from(["2024-03-01", "2023-07-15", "1970-02-01"]))  # 1970: days < 0 too
    w = {"as_of": as_of, "cost": draw(st.booleans()), "history": draw(st.booleans()),
         "history_before": draw(st.booleans()),  # False: no stage change recorded before as_of
         "customers": draw(st.booleans()), "invoices": draw(st.booleans())}
    base = {k: [] for k in ("txns", "customers", "invoices", "opps", "history")}
    fut = {k: [] for k in base}

    def txn(ids, lo, hi):
        return st.tuples(st.sampled_from(ids), st.integers(lo, hi), secs, amounts,
                         st.one_of(st.just(np.nan), st.integers(0, 150).map(float)))
    for cid, d, s, amt, cost in draw(st.lists(txn(OLD, -400, -1), min_size=1, max_size=25)):
        base["txns"].append((cid, at(as_of, d, s), amt, cost))
    for cid, d, s, amt, cost in draw(st.lists(txn(OLD + NEW, 0, 60), max_size=10)):
        fut["txns"].append((cid, at(as_of, d, s), amt, cost))

    if w["customers"]:
        limits = maybe(st.sampled_from([0.0, 100.0, 250.0, 1000.0]))
        rows = draw(st.lists(st.tuples(st.sampled_from(OLD), maybe(st.integers(-500, 30)), limits),
                             unique_by=lambda r: r[0]))
        base["customers"] = [(c, None if d is None else at(as_of, d), lim) for c, d, lim in rows]
        rows = draw(st.lists(st.tuples(st.sampled_from(NEW), maybe(st.integers(0, 30)), limits),
                             unique_by=lambda r: r[0]))
        fut["customers"] = [(c, None if d is None else at(as_of, d), lim) for c, d, lim in rows]

    if w["invoices"]:
        def inv(ids, lo, hi):
            return st.tuples(st.sampled_from(ids), st.integers(lo, hi), st.integers(0, 60),
                             st.integers(0, 500).map(float), maybe(st.integers(0, 90)))
        for k, (cid, d, due, amt, paid) in enumerate(draw(st.lists(inv(OLD + ["x"], -200, -1), max_size=12))):
            paid_day = None if paid is None else d + paid
            # paid on/after as_of: unpaid in the base world, paid in the future
            known = paid_day is not None and paid_day < 0
            base["invoices"].append((f"i{k}", cid, at(as_of, d), at(as_of, d + due), amt,
                                     at(as_of, paid_day) if known else None))
            if paid_day is not None and not known:
                fut.setdefault("paid", []).append((f"i{k}", at(as_of, paid_day)))
        for k, (cid, d, due, amt, paid) in enumerate(draw(st.lists(inv(OLD + NEW, 0, 30), max_size=4))):
            fut["invoices"].append((f"f{k}", cid, at(as_of, d), at(as_of, d + due), amt,
                                    None if paid is None else at(as_of, d + paid)))

    opp = st.tuples(maybe(st.sampled_from(OLD)), st.sampled_from(OWNERS), st.integers(-400, -1),
                    st.sampled_from(["open", "won", "lost"]), st.integers(0, 200), st.sampled_from(OPEN),
                    maybe(st.integers(0, 100).map(float)), maybe(st.integers(-30, 90)))
    for k, (cid, owner, d, state, close, stage, amt, exp) in enumerate(draw(st.lists(opp, max_size=10))):
        oid = f"o{k}"
        closed = None if state == "open" else d + close
        row = [oid, cid, owner, at(as_of, d), stage, amt, None if exp is None else at(as_of, exp), None, None]
        if closed is not None and (closed < 0 or not w["history"]):
            # closed before as_of; or (without history) a deal already closed later in the base data
            row[4], row[7], row[8] = state, at(as_of, closed), state
        elif closed is not None:
            # with history: open in the base world, closed (on/after as_of) in the future
            fut.setdefault("close", []).append((oid, state, at(as_of, closed)))
            fut["history"].append((oid, state, at(as_of, closed)))
        base["opps"].append(tuple(row))
        if w["history"]:
            days = draw(st.lists(st.integers(d, -1), max_size=3, unique=True)) if w["history_before"] else []
            for day in days:
                base["history"].append((oid, draw(st.sampled_from(OPEN)), at(as_of, day, draw(secs))))
            for day in draw(st.lists(st.integers(0, 40), max_size=2)):  # later stage changes
                fut["history"].append((oid, draw(st.sampled_from(OPEN)), at(as_of, day, draw(secs))))
    new_opp = st.tuples(maybe(st.sampled_from(OLD + NEW)), st.sampled_from(OWNERS), st.integers(0, 30),
                        st.sampled_from(["open", "won", "lost"]), st.integers(0, 30), maybe(st.integers(0, 60)))
    for k, (cid, owner, d, state, close, amt) in enumerate(draw(st.lists(new_opp, max_size=3))):
        oid = f"p{k}"
        done = state != "open"
        fut["opps"].append((oid, cid, owner, at(as_of, d), state if done else "proposal",
                            None if amt is None else float(amt), None,
                            at(as_of, d + close) if done else None, state if done else None))
        if w["history"]:
            fut["history"].append((oid, "qualification", at(as_of, d)))
    w["base"], w["future"] = base, fut
    return w


def materialise(w, *, with_future: bool, f) -> dict:
    """Canonical tables of the base world, optionally with the future appended/applied."""
    def rows(name):
        return w["base"][name] + (w["future"][name] if with_future else [])
    out = {"as_of": w["as_of"]}
    t_rows = rows("txns")
    if not w["cost"]:
        t_rows = [r[:3] for r in t_rows]
    out["txns"] = f["txns"](t_rows, cost=w["cost"])
    out["customers"] = f["customers"](rows("customers")) if w["customers"] else None
    if w["invoices"]:
        inv = f["invoices"](rows("invoices"))
        if with_future:
            for iid, paid in w["future"].get("paid", []):
                inv.loc[inv["invoice_id"] == iid, "paid_date"] = pd.Timestamp(paid)
        out["invoices"] = inv
    else:
        out["invoices"] = None
    opps = f["opps"](rows("opps"))
    if with_future:
        for oid, state, closed in w["future"].get("close", []):
            m = opps["opportunity_id"] == oid
            opps.loc[m, "stage"] = state
            opps.loc[m, "outcome"] = state
            opps.loc[m, "closed_date"] = pd.Timestamp(closed)
    out["opps"] = opps
    out["history"] = f["history"](rows("history")) if w["history"] else None
    return out


def compute(tb: dict) -> dict:
    as_of = tb["as_of"]
    res = {"build": build_features(Tables(tb["txns"], tb["customers"], tb["invoices"]), as_of=as_of, config=CFG),
           "deals": deals(tb["opps"], as_of=as_of, open_stages=OPEN, stage_history=tb["history"],
                          txns=tb["txns"])}
    if tb["invoices"] is not None:
        res["credit"] = credit(tb["invoices"], tb["customers"], as_of=as_of)
    return res


@pytest.fixture(scope="module")
def f(make_txns, make_customers, make_invoices, make_opps, make_history):
    return {"txns": make_txns, "customers": make_customers, "invoices": make_invoices, "opps": make_opps,
            "history": make_history}


@settings(max_examples=EXAMPLES, deadline=None)
@given(w=worlds())
def test_rows_on_or_after_as_of_change_nothing(w, f):
    base = compute(materialise(w, with_future=False, f=f))
    full = compute(materialise(w, with_future=True, f=f))
    assert base.keys() == full.keys()
    for k in base:
        assert_frame_equal(full[k], base[k], check_exact=True, obj=k)
    # customers first seen on/after as_of are not in the population
    assert not set(full["build"].index) & set(NEW)


def _shuffled(df: pd.DataFrame | None, rng: np.random.Generator) -> pd.DataFrame | None:
    if df is None:
        return None
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


@settings(max_examples=EXAMPLES, deadline=None)
@given(w=worlds(), seed=st.integers(0, 2**32 - 1))
def test_row_order_changes_nothing(w, seed, f):
    tb = materialise(w, with_future=True, f=f)
    rng = np.random.default_rng(seed)
    sh = {k: (v if k == "as_of" else _shuffled(v, rng)) for k, v in tb.items()}
    a, b = compute(tb), compute(sh)
    for k in a:
        assert_frame_equal(b[k], a[k], check_exact=True, obj=k)  # bit for bit: money sums are exact


# ------------------------------------------------------------------ truncation (deterministic)

AS_OF = "2024-03-01"


def truncate(tb: dict, as_of: str, recat) -> dict:
    """What a snapshot taken at as_of would have held."""
    cut = pd.Timestamp(as_of)
    t = recat(tb["txns"][tb["txns"]["timestamp"] < cut])
    c = tb["customers"].copy()
    c["signup_date"] = c["signup_date"].where(c["signup_date"] < cut)
    c = c[c["customer_id"].isin(t["customer_id"].astype("str")) | c["signup_date"].notna()]
    i = tb["invoices"][tb["invoices"]["issue_date"] < cut].copy()
    i["paid_date"] = i["paid_date"].where(i["paid_date"] < cut)
    o = tb["opps"][tb["opps"]["created_date"] < cut].copy()
    later = o["closed_date"] >= cut
    o.loc[later, ["outcome", "closed_date"]] = [None, pd.NaT]
    o.loc[later, "stage"] = "proposal"  # the stage column is superseded by the history
    h = tb["history"][tb["history"]["changed_at"] < cut]
    return {"txns": t, "customers": c.reset_index(drop=True), "invoices": i.reset_index(drop=True),
            "opps": o.reset_index(drop=True), "history": h.reset_index(drop=True), "as_of": as_of}


def test_truncated_data_gives_the_same_features(make_txns, make_customers, make_invoices, make_opps,
                                                make_history, recat):
    full = {
        "as_of": AS_OF,
        "txns": make_txns([
            ("A", "2023-03-02", 10.0, 4.0), ("A", "2024-02-29 23:59:59", 30.0, np.nan),
            ("A", "2024-02-10", -5.0, -2.0), ("A", "2024-03-01", 99.0, 1.0), ("A", "2024-06-01", -9.0, np.nan),
            ("B", "2023-11-20", 20.0, 5.0), ("B", "2024-03-20", 20.0, 5.0),
            ("N", "2024-03-01", 50.0, 10.0), ("N", "2024-03-05", -50.0, -10.0),
        ], cost=True),
        "customers": make_customers([("A", "2022-01-01", 500.0), ("P", "2024-02-01", 50.0),
                                     ("B", "2024-03-15", 80.0),    # signs up after buying
                                     ("N", "2024-03-01", 10.0), ("Q", "2024-04-01", np.nan)]),
        "invoices": make_invoices([
            ("i1", "A", "2024-01-01", "2024-01-31", 100.0, "2024-03-10"),  # paid after as_of
            ("i2", "A", "2024-02-01", "2024-03-02", 40.0, "2024-02-20"),
            ("i3", "B", "2023-12-01", "2023-12-31", 70.0, None),
            ("i4", "N", "2024-03-01", "2024-03-31", 70.0, None),
            ("i5", "A", "2024-03-04", "2024-04-04", 70.0, "2024-03-05"),
        ]),
        "opps": make_opps([
            ("o1", "A", "ann", "2024-01-01", "won", 100.0, "2024-03-15", "2024-03-10", "won"),
            ("o2", "A", "ann", "2023-05-01", "lost", 10.0, None, "2023-06-01", "lost"),
            ("o3", "B", "bob", "2024-02-01", "negotiation", 70.0, None, None, None),
            ("o4", "B", "bob", "2023-01-01", "won", 30.0, None, "2024-02-28", "won"),
            ("o5", "N", "ann", "2024-03-01", "won", 5.0, None, "2024-03-02", "won"),
        ]),
        "history": make_history([
            ("o1", "qualification", "2024-01-15"), ("o1", "proposal", "2024-03-02"), ("o1", "won", "2024-03-10"),
            ("o3", "qualification", "2024-02-05 09:00"), ("o3", "negotiation", "2024-03-01 00:00"),
            ("o4", "won", "2024-02-28"), ("o5", "won", "2024-03-02"),
        ]),
    }
    cut = truncate(full, AS_OF, recat)
    assert list(cut["txns"]["customer_id"].cat.categories) == ["A", "B"]
    a, b = compute(full), compute(cut)
    for k in a:
        assert_frame_equal(a[k], b[k], check_exact=True, obj=k)
    assert list(a["build"].index) == ["A", "B", "P"]
    assert list(a["deals"].index) == ["o1", "o3"]
    assert a["deals"]["stage_at_as_of"].tolist() == ["qualification", "qualification"]


def test_customer_id_representation_changes_nothing(make_txns, make_customers):
    """Sorted categories (the loader's form), other category orders, unused categories and
    plain strings all give the same features."""
    t = make_txns([("B", "2024-01-05", 5.0), ("A", "2024-02-01", 3.0), ("C", "2023-12-01", -1.0),
                   ("A", "2024-02-10 08:00", 4.0), ("D", AS_OF, 4.0)])
    c = make_customers([("P", "2024-01-01", 1.0), ("A", "2023-01-01", 10.0)])
    ref = build_features(Tables(t, c), as_of=AS_OF)
    assert list(ref.index) == ["A", "B", "C", "P"]
    ids = t["customer_id"]
    for other in (ids.cat.reorder_categories(["D", "C", "A", "B"]), ids.cat.add_categories(["Z", "0"]),
                  ids.astype("str")):
        assert_frame_equal(build_features(Tables(t.assign(customer_id=other), c), as_of=AS_OF), ref)
