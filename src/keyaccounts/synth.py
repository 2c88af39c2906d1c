"""Seeded, vectorised synthetic generator of the canonical tables with known latent behaviour.

`synthesize(...)` returns a `SynthTables` of transactions, customers, invoices, opportunities
and stage_history in their canonical forms (the forms `schemas.load_table` returns), plus
`latent`: the per-customer ground truth the data was drawn from, so models can be checked
against the truth. `synth_transactions(...)` is the fast path used by the benchmarks: only
the transactions table, about `n_rows` rows.

The generative story (per customer):

* A segment: ``prospect`` (signed up, never buys, ~5 %), ``churner`` (~25 % of buyers: stops
  buying at a latent ``churn_date``, buying less and less before it), ``grower`` (~20 %:
  purchase intensity rises linearly, ``rate * (1 + growth * years since activation)``) or
  ``steady``. Independently a ``late_payer`` flag (more common among churners).
* Orders are an inhomogeneous Poisson process with intensity ``rate * (1 + g * s)`` on the
  active interval ``[activation, churn_date or end)``; order times are drawn by inverse CDF.
  Each order has 1 + Poisson(0.5) lines (products) sharing its timestamp and ``invoice_id``.
* Spend is heavy-tailed: a lognormal per-customer mean order value scaled by company size,
  gamma-distributed around it per line. ``amount = quantity * unit_price`` (cents), margin
  rate per customer (10-45 %) shifted per product; ``cost`` is the row cost (same sign).
* A latent wallet (potential) per account, ``latent.wallet_annual``: what a top-decile account
  of its size spends per year (see ``_WALLET_PROPENSITY``), or its own drawn rate when higher;
  ``true_headroom(latent, as_of=...)`` is the wallet minus the rate the account buys at then.
* ~2.5 % of purchase lines are partly returned 1+ days later (a negative row: negative
  quantity, same product and price, ``invoice_id`` ``R...`` echoing the order ``T...``).
* Invoices: one per customer and calendar month with positive purchases, issued the first of
  the next month, due 30 days later; late payers pay 10-90 days after due (recent ones
  sometimes never), the rest around the due date.
* Deals: created over the account's life, owned by the account owner, walk the funnel
  `STAGES_OPEN` in order with gamma-distributed stage durations and may be lost at any
  stage; each step's pass probability rises with the owner's latent skill. Deals whose next
  step would fall after ``end`` are still open.

All randomness comes from ``numpy.random.default_rng``-style generators seeded by ``seed``
(one independent child stream per table), so the same arguments give identical frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["SynthTables", "synthesize", "synth_transactions", "true_headroom", "STAGES_OPEN", "STAGE_WON",
           "STAGE_LOST", "SEGMENTS", "SIZES", "PRODUCTS", "ramping_funnel", "RAMP_STAGE"]

STAGES_OPEN = ("prospecting", "qualification", "proposal", "negotiation")   # funnel order
STAGE_WON, STAGE_LOST = "won", "lost"
_STAGE_NAMES = STAGES_OPEN + (STAGE_WON, STAGE_LOST)   # stage codes 0..5

SEGMENTS = ("prospect", "churner", "grower", "steady")
SIZES = ("small", "medium", "large", "enterprise")
_SIZE_P = np.array([0.45, 0.30, 0.18, 0.07])
_SIZE_SPEND = np.array([1.0, 2.0, 5.0, 12.0])      # x mean order value
_SIZE_RATE = np.array([0.8, 1.0, 1.3, 1.6])        # x purchase rate
_SIZE_DEALS = np.array([0.6, 1.0, 1.6, 2.5])       # x deal count
_BASE_RATE, _BASE_SPEND = 1.2 / 30, 120.0          # orders per day and order value of a typical small account
# An account's wallet (latent potential): what a top-decile account of its size spends, i.e. its
# size's base spend rate x this propensity (about the 90th percentile of gamma(1.5) x lognormal(0,
# 0.9), the spread of rate x order value around the base); a higher own propensity is its own wallet.
_WALLET_PROPENSITY = 3.5
REGIONS = ("North", "South", "East", "West", "Central")
INDUSTRIES = ("manufacturing", "retail", "healthcare", "technology", "logistics",
              "construction", "finance", "hospitality")
_OWNER_NAMES = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Goran", "Hana", "Ivan",
                "Julia", "Kenji", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa",
                "Sven", "Tara")
# product, list price, popularity, margin shift
_PRODUCT_TABLE = (
    ("bolts", 0.80, 10, 0.05), ("gaskets", 3.20, 8, 0.04), ("cables", 12.50, 12, 0.00),
    ("bearings", 15.00, 9, 0.02), ("hoses", 18.40, 7, 0.01), ("filters", 24.90, 11, 0.03),
    ("sensors", 45.00, 10, -0.02), ("valves", 62.00, 9, 0.00), ("panels", 149.00, 6, -0.03),
    ("pumps", 320.00, 7, -0.04), ("motors", 480.00, 6, -0.05), ("controllers", 910.00, 5, 0.02),
)
PRODUCTS = tuple(p[0] for p in _PRODUCT_TABLE)
_PRICE = np.array([p[1] for p in _PRODUCT_TABLE])
_POP = np.array([p[2] for p in _PRODUCT_TABLE], float) / sum(p[2] for p in _PRODUCT_TABLE)
_MARGIN_SHIFT = np.array([p[3] for p in _PRODUCT_TABLE])
_NAME_A = ("Apex", "Blue", "Cedar", "Delta", "Echo", "Falcon", "Granite", "Harbor", "Iron", "Juniper",
           "Keystone", "Lumen", "Maple", "Nova", "Orion", "Pioneer", "Quartz", "River", "Summit", "Titan",
           "Union", "Vertex", "Willow", "Zenith")
_NAME_B = ("Logistics", "Foods", "Health", "Systems", "Builders", "Retail", "Capital", "Motors", "Labs",
           "Energy", "Textiles", "Hotels", "Plastics", "Metals", "Media", "Supply")
_NAME_C = ("Ltd", "Inc", "GmbH", "Co", "Group", "LLC")

_DAY_S = 86_400
_NS = 1_000_000_000
_LINES_EXTRA = 0.5          # lines per order = 1 + Poisson(this)
_RETURN_P = 0.025           # share of purchase lines partly returned
_OPEN_HOUR, _SHOP_HOURS = 8, 10   # purchases between 08:00 and 18:00


@dataclass(frozen=True)
class SynthTables:
    """The canonical tables of one synthetic company, plus `latent`: per customer_id (one row
    per customer, same order as `customers`) the ground truth they were drawn from."""
    transactions: pd.DataFrame
    customers: pd.DataFrame
    invoices: pd.DataFrame
    opportunities: pd.DataFrame
    stage_history: pd.DataFrame
    latent: pd.DataFrame


# ------------------------------------------------------------------ small helpers

def _window(start: str, end: str) -> tuple[pd.Timestamp, int]:
    s, e = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    n_days = int((e - s).days)
    if n_days < 1:
        raise ValueError(f"start ({start}) must be before end ({end})")
    return s.as_unit("ns"), n_days


def _id_strings(prefix: str | np.ndarray, numbers: np.ndarray, width: int) -> pd.api.extensions.ExtensionArray:
    """Fixed-width ids ``prefix + zero-padded number`` as a pandas 'str' array, built as bytes
    (fast: ~0.1 s per 10M). `prefix` is a string, or a (n, k) uint8 array of per-row prefixes."""
    numbers = np.asarray(numbers, dtype=np.int64)
    n = len(numbers)
    if isinstance(prefix, str):
        pre = np.frombuffer(prefix.encode("ascii"), np.uint8)[None, :]
    else:
        pre = prefix
    k = pre.shape[1]
    buf = np.empty((n, k + width), np.uint8)
    buf[:, :k] = pre
    x = numbers.astype(np.uint32) if numbers.size == 0 or numbers.max() < 2**32 else numbers.copy()
    for j in range(width - 1, -1, -1):
        x, d = np.divmod(x, 10)
        buf[:, k + j] = d
    buf[:, k:] += 48
    row = k + width
    big = n * row >= 2**31 - 1
    offsets = np.arange(n + 1, dtype=np.int64 if big else np.int32) * row
    cls = pa.LargeStringArray if big else pa.StringArray
    arr = cls.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(buf)))
    return pd.array(arr, dtype="str")


def _vocab(values: tuple[str, ...], idx: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """values[idx] as a pandas 'str' array (vectorised take)."""
    return pd.array(pa.array(values, pa.string()).take(pa.array(np.asarray(idx, np.int32))), dtype="str")


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(int(n), 1))))


def _dates(start: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """start + integer days (NaN -> NaT) as datetime64[ns]."""
    days = np.asarray(days, dtype=float)
    out = np.full(days.shape, np.datetime64("NaT", "ns"))
    ok = np.isfinite(days)
    out[ok] = np.datetime64(start.value, "ns") + (days[ok].astype(np.int64) * _DAY_S * _NS).astype("timedelta64[ns]")
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------ latent population

@dataclass
class _Population:
    segment: np.ndarray       # index into SEGMENTS
    size: np.ndarray
    act: np.ndarray           # activation, days since start (float; NaN for prospects)
    stop: np.ndarray          # end of buying (churn day or window length)
    churn: np.ndarray         # churn day (NaN if never)
    rate: np.ndarray          # orders per day at activation
    growth: np.ndarray        # relative intensity change per day
    mean_spend: np.ndarray    # expected order value
    margin: np.ndarray
    price_factor: np.ndarray
    fav: np.ndarray           # favourite product
    late: np.ndarray
    late_mean: np.ndarray     # late payers' typical days past due
    signup: np.ndarray        # signup day since start (may be negative)

    @property
    def buyer(self) -> np.ndarray:
        return self.segment != 0


def _population(rng: np.random.Generator, n: int, n_days: int, prospect_share: float) -> _Population:
    size = rng.choice(4, n, p=_SIZE_P)
    prospect = rng.random(n) < prospect_share
    v = rng.random(n)
    segment = np.where(prospect, 0, np.where(v < 0.25, 1, np.where(v < 0.45, 2, 3)))
    churner, grower = segment == 1, segment == 2
    existing = rng.random(n) < 0.45
    act = np.where(existing, 0.0, rng.random(n) * 0.85 * n_days)
    churn = np.ceil(act + rng.uniform(0.2, 0.9, n) * (n_days - act))
    churn = np.where(churner, np.minimum(churn, n_days), np.nan)
    stop = np.where(churner, churn, float(n_days))
    span = np.maximum(stop - act, 1e-9)
    rate = rng.gamma(1.5, 1 / 1.5, n) * _BASE_RATE * _SIZE_RATE[size]
    g_year = np.where(grower, rng.uniform(0.5, 1.5, n), np.clip(rng.normal(0, 0.05, n), -0.1, 0.1))
    keep = rng.uniform(0.3, 0.9, n)       # churners' intensity at churn relative to activation
    growth = np.where(churner, -(1 - keep) / span, g_year / 365.0)
    mean_spend = rng.lognormal(np.log(_BASE_SPEND), 0.9, n) * _SIZE_SPEND[size]
    margin = rng.uniform(0.10, 0.45, n)
    price_factor = rng.uniform(0.85, 1.10, n)
    fav = rng.choice(len(PRODUCTS), n, p=_POP)
    late = ~prospect & (rng.random(n) < np.where(churner, 0.35, 0.2))
    late_mean = np.where(late, rng.uniform(15, 60, n), 0.0)
    signup = np.floor(np.where(existing, -rng.uniform(0, 3 * 365, n), act - rng.uniform(0, 60, n)))
    signup = np.where(prospect, np.floor(rng.random(n) * n_days), signup)
    act = np.where(prospect, np.nan, act)
    stop = np.where(prospect, np.nan, stop)
    return _Population(segment, size, act, stop, churn, rate, growth, mean_spend, margin,
                       price_factor, fav, late, late_mean, signup)


# ------------------------------------------------------------------ transactions

def _expected_orders(pop: _Population) -> tuple[np.ndarray, np.ndarray]:
    """(integrated relative intensity A in days, expected order count rate * A)."""
    span = np.where(pop.buyer, np.maximum(pop.stop - pop.act, 0.0), 0.0)
    span = np.nan_to_num(span)
    integ = span + 0.5 * pop.growth * span * span
    return integ, pop.rate * integ


def _order_counts(rng, pop: _Population, n_orders: int | None) -> np.ndarray:
    integ, lam = _expected_orders(pop)
    active = pop.buyer & (integ > 0)
    if n_orders is None:
        return np.where(active, np.maximum(rng.poisson(lam), 1), 0)
    n_active = int(active.sum())
    if n_active == 0:
        return np.zeros(len(lam), np.int64)
    p = np.where(active, lam, 0.0)
    extra = rng.multinomial(max(n_orders - n_active, 0), p / p.sum())
    return extra + active


def _transactions(rng: np.random.Generator, pop: _Population, start: pd.Timestamp, n_days: int,
                  customer_ids: pd.Index, n_orders: int | None = None) -> pd.DataFrame:
    n_cust = len(pop.segment)
    counts = _order_counts(rng, pop, n_orders)
    integ, _ = _expected_orders(pop)
    cust = np.repeat(np.arange(n_cust, dtype=np.int64), counts)
    # Inverse CDF of intensity (1 + g s) on [0, span]; sorting u within customers sorts times.
    key = cust.astype(np.float64) + rng.random(len(cust))
    key.sort()
    u = np.clip(key - cust, 0.0, 1.0 - 1e-12)
    del key
    ua = u * integ[cust]
    g = pop.growth[cust]
    s = 2.0 * ua / (1.0 + np.sqrt(np.maximum(1.0 + 2.0 * g * ua, 0.0)))
    t = np.nan_to_num(pop.act)[cust] + s
    del u, ua, g, s
    day = np.clip(np.floor(t), 0, n_days - 1)
    sec = (day.astype(np.int64) * _DAY_S + _OPEN_HOUR * 3600
           + np.floor((t - np.floor(t)) * _SHOP_HOURS * 3600).astype(np.int64))
    del t, day
    n_ord = len(cust)

    # Order lines.
    # Order lines: distinct products per order (first: favourite or by popularity; line j:
    # first + j * step mod P with step coprime to P, so no two lines of an order repeat).
    n_prod = len(PRODUCTS)
    n_lines = np.minimum(1 + rng.poisson(_LINES_EXTRA, n_ord), n_prod)
    first = np.where(rng.random(n_ord) < 0.5, pop.fav[cust], rng.choice(n_prod, n_ord, p=_POP))
    steps = np.array([d for d in range(1, n_prod) if np.gcd(d, n_prod) == 1])
    step = steps[rng.integers(0, len(steps), n_ord)]
    order = np.repeat(np.arange(n_ord, dtype=np.int64), n_lines)
    line_no = np.arange(len(order)) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
    prod = (first[order] + line_no * step[order]) % n_prod
    del first, step, line_no
    lc = cust[order]
    sec = sec[order]
    n = len(order)
    price = np.round(_PRICE[prod] * pop.price_factor[lc] * rng.uniform(0.97, 1.03, n), 2)
    target = rng.gamma(2.0, 1.0, n) * (pop.mean_spend[lc] / (2.0 * (1 + _LINES_EXTRA)))
    qty = np.maximum(np.rint(target / price), 1.0)
    del target
    margin = np.clip(pop.margin[lc] + _MARGIN_SHIFT[prod], 0.05, 0.6)

    # Returns: a later, partial return of ~2.5 % of purchase lines.
    src = np.flatnonzero(rng.random(n) < _RETURN_P)
    gap = 1 + np.floor(rng.exponential(10.0, len(src))).astype(np.int64)
    rday = sec[src] // _DAY_S + gap
    ok = rday < n_days
    src, rday = src[ok], rday[ok]
    rsec = rday * _DAY_S + _OPEN_HOUR * 3600 + rng.integers(0, _SHOP_HOURS * 3600, len(src))
    rqty = -rng.integers(1, qty[src].astype(np.int64) + 1).astype(np.float64)
    rcust = lc[src]
    span_s = (n_days + 2) * _DAY_S
    rkey = rcust * span_s + rsec
    o = np.argsort(rkey, kind="stable")
    src, rsec, rqty, rcust, rkey = src[o], rsec[o], rqty[o], rcust[o], rkey[o]
    pos = np.searchsorted(lc * span_s + sec, rkey, side="right") + np.arange(len(src))
    is_ret = np.zeros(n + len(src), bool)
    is_ret[pos] = True
    main_pos = np.flatnonzero(~is_ret)

    def merge(main, ret):
        out = np.empty(n + len(src), np.result_type(main, ret))
        out[main_pos] = main
        out[pos] = ret
        return out

    c_all = merge(lc, rcust)
    q_all = merge(qty, rqty)
    p_all = merge(price, price[src])
    amount = np.round(q_all * p_all, 2)
    cost = np.round(amount * (1.0 - merge(margin, margin[src])), 2)
    prod_all = merge(prod, prod[src])
    ord_all = merge(order, order[src])
    ts = np.datetime64(start.value, "ns") + (merge(sec, rsec) * _NS).astype("timedelta64[ns]")
    del lc, qty, price, margin, prod, order, sec

    # Categorical customer ids over the customers present (as the loader builds them).
    present = np.bincount(c_all, minlength=n_cust) > 0
    remap = np.cumsum(present) - 1
    cats = customer_ids[present]
    prefix = np.where(is_ret, ord("R"), ord("T")).astype(np.uint8)[:, None]
    return pd.DataFrame({
        "customer_id": pd.Categorical.from_codes(remap[c_all].astype(np.int32), categories=cats),
        "timestamp": ts,
        "amount": amount,
        "invoice_id": _id_strings(prefix, ord_all + 1, _width(n_ord, 7)),
        "quantity": q_all,
        "unit_price": p_all,
        "cost": cost,
        "product": _vocab(PRODUCTS, prod_all),
    })


# ------------------------------------------------------------------ invoices

def _invoices(rng: np.random.Generator, txns: pd.DataFrame, pop: _Population, start: pd.Timestamp,
              end: pd.Timestamp, customer_ids: pd.Index) -> pd.DataFrame:
    n_cust = len(pop.segment)
    codes = txns["customer_id"].cat.codes.to_numpy()
    cust = customer_ids.get_indexer(txns["customer_id"].cat.categories)[codes]
    months = txns["timestamp"].to_numpy().astype("datetime64[M]").astype(np.int64)
    m0 = start.to_datetime64().astype("datetime64[M]").astype(np.int64)
    n_m = int(end.to_datetime64().astype("datetime64[M]").astype(np.int64) - m0 + 1)
    amt = txns["amount"].to_numpy()
    key = cust * n_m + (months - m0)
    pos = np.bincount(key, weights=np.maximum(amt, 0), minlength=n_cust * n_m)
    net = np.bincount(key, weights=amt, minlength=n_cust * n_m)
    sel = np.flatnonzero((pos > 0.005) & (net > 0.005))
    c, m = sel // n_m, sel % n_m
    issue = (np.asarray(m0 + m + 1).astype("datetime64[M]").astype("datetime64[D]")).astype("datetime64[ns]")
    keep = issue <= end.to_datetime64()
    sel, c, issue = sel[keep], c[keep], issue[keep]
    k = len(sel)
    due = issue + np.timedelta64(30, "D")
    late = pop.late[c]
    late_days = np.clip(np.rint(pop.late_mean[c] * rng.gamma(4.0, 0.25, k)), 10, 90)
    ontime_days = np.where(rng.random(k) < 0.07, rng.integers(1, 10, k),
                           np.clip(np.rint(rng.normal(-3, 4, k)), -25, 5))
    delay = np.where(late, late_days, ontime_days).astype(np.int64)
    paid = np.maximum(due + delay.astype("timedelta64[D]"), issue)
    recent = issue >= (end - pd.Timedelta(days=180)).to_datetime64()
    never = rng.random(k) < np.where(late, np.where(recent, 0.15, 0.02), 0.0)
    paid = np.where(never | (paid > end.to_datetime64()), np.datetime64("NaT"), paid).astype("datetime64[ns]")
    return pd.DataFrame({
        "invoice_id": _id_strings("INV", np.arange(1, k + 1), _width(k, 7)),
        "customer_id": customer_ids[c].to_numpy(),
        "issue_date": issue,
        "due_date": due.astype("datetime64[ns]"),
        "amount": np.round(pos[sel], 2),
        "paid_date": paid,
    })


# ------------------------------------------------------------------ opportunities

_STEP_P = np.array([0.75, 0.62, 0.68, 0.58])       # base pass probability per open stage
_STEP_DAYS = np.array([12.0, 20.0, 18.0, 14.0])     # mean days spent in each open stage


def _opportunities(rng: np.random.Generator, pop: _Population, n_days: int, start: pd.Timestamp,
                   owner: np.ndarray, skill: np.ndarray, customer_ids: pd.Index, owner_names: tuple,
                   deals_per_customer: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_cust = len(pop.segment)
    w = _SIZE_DEALS[pop.size] * np.where(pop.segment == 2, 1.3, 1.0)
    counts = rng.poisson(deals_per_customer * w / w.mean()) if n_cust else np.zeros(0, np.int64)
    cust = np.repeat(np.arange(n_cust), counts)
    k = len(cust)
    lo = np.maximum(pop.signup[cust], 0.0)
    hi = np.where(pop.segment[cust] == 1, pop.churn[cust], float(n_days))
    hi = np.maximum(hi, lo)
    created = np.minimum(np.floor(lo + rng.random(k) * (hi - lo + 1)), n_days).astype(np.int64)
    o = np.lexsort((created, cust))
    cust, created = cust[o], created[o]
    amount = np.maximum(np.round(pop.mean_spend[cust] * rng.lognormal(np.log(5.0), 0.6, k), -1), 50.0)
    product = rng.choice(len(PRODUCTS), k, p=_POP)
    expected = created + rng.integers(30, 121, k)
    own = owner[cust]
    seg = pop.segment[cust]
    shift = skill[own] + np.where(seg == 2, 0.3, 0.0) - np.where(seg == 1, 0.4, 0.0)
    size_slow = 1.0 + 0.15 * pop.size[cust]

    stage = np.zeros(k, np.int64)
    t = created.copy()
    closed = np.full(k, -1, np.int64)
    active = np.ones(k, bool)
    h_opp, h_stage, h_day = [np.arange(k)], [np.zeros(k, np.int64)], [created]
    for j in range(len(STAGES_OPEN)):
        dur = 1 + np.floor(rng.gamma(2.0, _STEP_DAYS[j] / 2.0, k) * size_slow).astype(np.int64)
        p_pass = _sigmoid(np.log(_STEP_P[j] / (1 - _STEP_P[j])) + shift)
        if j == len(STAGES_OPEN) - 1:
            p_pass = np.where(seg == 0, 0.0, p_pass)   # prospects never buy, so never win
        passed = rng.random(k) < p_pass
        nxt = t + dur
        moving = active & (nxt <= n_days)
        new_stage = np.where(passed, j + 1 if j + 1 < len(STAGES_OPEN) else 4, 5)
        idx = np.flatnonzero(moving)
        h_opp.append(idx)
        h_stage.append(new_stage[idx])
        h_day.append(nxt[idx])
        stage[idx] = new_stage[idx]
        t[idx] = nxt[idx]
        done = moving & (new_stage >= 4)
        closed[done] = nxt[done]
        active = moving & ~done

    is_closed = stage >= 4
    opp_ids = _id_strings("O", np.arange(1, k + 1), _width(k, 7))
    outcome = np.where(stage == 4, STAGE_WON, np.where(stage == 5, STAGE_LOST, None))
    opps = pd.DataFrame({
        "opportunity_id": opp_ids,
        "customer_id": customer_ids[cust].to_numpy(),
        "owner": _vocab(owner_names, own),
        "product": _vocab(PRODUCTS, product),
        "created_date": _dates(start, created),
        "expected_close_date": _dates(start, expected),
        "closed_date": _dates(start, np.where(is_closed, closed, np.nan)),
        "outcome": pd.array(outcome, dtype="str"),
        "stage": _vocab(_STAGE_NAMES, stage),
        "amount": amount.astype(np.float64),
    })
    h_opp_a, h_stage_a, h_day_a = map(np.concatenate, (h_opp, h_stage, h_day))
    seq = np.concatenate([np.full(len(x), i) for i, x in enumerate(h_opp)])
    o = np.lexsort((seq, h_opp_a))
    hist = pd.DataFrame({
        "opportunity_id": opp_ids.take(h_opp_a[o]),
        "stage": _vocab(_STAGE_NAMES, h_stage_a[o]),
        "changed_at": _dates(start, h_day_a[o]),
    })
    return opps, hist


# ------------------------------------------------------------------ public API

def synthesize(*, n_customers: int = 2000, start: str = "2023-01-01", end: str = "2025-12-31",
               seed: int = 0, deals_per_customer: float = 1.5) -> SynthTables:
    """Generate all canonical tables for `n_customers` customers over [start, end].

    Contracts: same arguments => identical frames. Transaction timestamps lie in
    [start, end) (business hours; nothing on the `end` date itself); all other dates are
    midnight and <= end except due/expected-close dates. Frames are sorted (customers and
    latent by customer_id; transactions by customer_id, timestamp; invoices by customer_id,
    issue_date; opportunities by customer_id, created_date; stage_history by
    opportunity_id, changed_at) with a fresh RangeIndex. See the module docstring for the
    generative story and `latent` for the truth per customer.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    if deals_per_customer < 0:
        raise ValueError("deals_per_customer must not be negative")
    s, n_days = _window(start, end)
    e = s + pd.Timedelta(days=n_days)
    r_pop, r_txn, r_inv, r_opp, r_cust = (np.random.default_rng(c)
                                          for c in np.random.SeedSequence(seed).spawn(5))
    pop = _population(r_pop, n_customers, n_days, prospect_share=0.05)
    ids = pd.Index(_id_strings("C", np.arange(1, n_customers + 1), _width(n_customers, 6)), name=None)

    # Sales reps: 8-20 owners with uneven books and a latent skill (logit shift per stage).
    n_owners = int(np.clip(round(n_customers / 150), 8, 20))
    owner_names = _OWNER_NAMES[:n_owners]
    skill = r_cust.normal(0.0, 0.5, n_owners)
    owner = r_cust.choice(n_owners, n_customers, p=r_cust.dirichlet(np.full(n_owners, 4.0)))
    region = r_cust.choice(len(REGIONS), n_customers)
    industry = r_cust.choice(len(INDUSTRIES), n_customers)
    names = (pd.Series(_vocab(_NAME_A, r_cust.choice(len(_NAME_A), n_customers))) + " "
             + pd.Series(_vocab(_NAME_B, r_cust.choice(len(_NAME_B), n_customers))) + " "
             + pd.Series(_vocab(_NAME_C, r_cust.choice(len(_NAME_C), n_customers))))
    monthly = pop.rate * 30.0 * pop.mean_spend
    credit = np.maximum(np.round(monthly * r_cust.uniform(1.5, 3.0, n_customers) / 500.0) * 500.0, 1000.0)

    txns = _transactions(r_txn, pop, s, n_days, ids)
    invoices = _invoices(r_inv, txns, pop, s, e, ids)
    opps, hist = _opportunities(r_opp, pop, n_days, s, owner, skill, ids, owner_names, deals_per_customer)

    customers = pd.DataFrame({
        "customer_id": ids.to_numpy(),
        "name": names.to_numpy(),
        "owner": _vocab(owner_names, owner),
        "region": _vocab(REGIONS, region),
        "industry": _vocab(INDUSTRIES, industry),
        "size": _vocab(SIZES, pop.size),
        "credit_limit": credit.astype(np.float64),
        "signup_date": _dates(s, pop.signup),
    })
    n_orders = np.zeros(n_customers, np.int64)
    if len(txns):
        first_lines = txns["invoice_id"].str.startswith("T") & ~txns["invoice_id"].duplicated()
        per = txns.loc[first_lines, "customer_id"].value_counts(sort=False)
        n_orders[ids.get_indexer(per.index.astype("str"))] = per.to_numpy()
    _, lam = _expected_orders(pop)
    seg = pop.segment
    latent = pd.DataFrame({
        "customer_id": ids.to_numpy(),
        "segment": _vocab(SEGMENTS, seg),
        "prospect": seg == 0,
        "churner": seg == 1,
        "grower": seg == 2,
        "steady": seg == 3,
        "late_payer": pop.late,
        "late_mean_days": pop.late_mean,
        "signup_date": _dates(s, pop.signup),
        "activation_date": _dates(s, np.floor(pop.act)),
        "churn_date": _dates(s, pop.churn),
        "purchase_rate": pop.rate * 30.0,
        "growth": np.where(pop.buyer, pop.growth * 365.0, 0.0),
        "mean_spend": pop.mean_spend,
        "margin_rate": pop.margin,
        "expected_orders": lam,
        "n_orders": n_orders.astype(np.int64),
        "size": _vocab(SIZES, pop.size),
        "owner": _vocab(owner_names, owner),
        "owner_skill": skill[owner],
        "wallet_annual": _wallet_annual(pop),
    })
    return SynthTables(transactions=txns, customers=customers, invoices=invoices,
                       opportunities=opps, stage_history=hist, latent=latent)


def _wallet_annual(pop: _Population) -> np.ndarray:
    """Latent potential per year: the size's base spend rate x max(own propensity, _WALLET_PROPENSITY)."""
    base = 365.0 * _BASE_RATE * _SIZE_RATE[pop.size] * _BASE_SPEND * _SIZE_SPEND[pop.size]
    own = pop.rate * pop.mean_spend * 365.0
    return np.maximum(own, base * _WALLET_PROPENSITY)


def true_headroom(latent: pd.DataFrame, *, as_of) -> pd.Series:
    """The true gap per customer_id at `as_of`: latent wallet_annual minus the spend rate per year
    the account was drawn with on that day (rate x (1 + growth x years since activation) x order
    value while active, 0 before activation and after churn). Negative for growers past their wallet."""
    t = pd.Timestamp(as_of)
    years = (t - latent["activation_date"]).dt.days.to_numpy(dtype="float64") / 365.0
    active = (latent["activation_date"] <= t) & ~(latent["churn_date"] <= t)
    intensity = np.maximum(1.0 + latent["growth"].to_numpy() * np.nan_to_num(years), 0.0)
    now = np.where(active.to_numpy(), latent["purchase_rate"].to_numpy() / 30.0 * 365.0 * intensity
                   * latent["mean_spend"].to_numpy(), 0.0)
    return pd.Series(latent["wallet_annual"].to_numpy() - now, index=latent["customer_id"].astype("str"),
                     name="true_headroom_annual")


def synth_transactions(*, n_rows: int, n_customers: int, start: str = "2021-01-01",
                       end: str = "2025-12-31", seed: int = 0) -> pd.DataFrame:
    """Fast path (benchmarks): only a transactions table of about `n_rows` rows (within a
    fraction of a percent) over `n_customers` buyers, same generative story as `synthesize`
    (no prospects). customer_id is a categorical of the string ids present (sorted);
    timestamps in [start, end); sorted by customer_id, timestamp; fresh RangeIndex.
    10M rows x 200k customers: ~3-6 s, < 2 GB peak RSS."""
    if n_customers < 1 or n_rows < 1:
        raise ValueError("n_rows and n_customers must be at least 1")
    s, n_days = _window(start, end)
    r_pop, r_txn = (np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(2))
    pop = _population(r_pop, n_customers, n_days, prospect_share=0.0)
    ids = pd.Index(_id_strings("C", np.arange(1, n_customers + 1), _width(n_customers, 6)))
    n_orders = max(int(round(n_rows / ((1 + _LINES_EXTRA) * (1 + _RETURN_P)))), 1)
    return _transactions(r_txn, pop, s, n_days, ids, n_orders=n_orders)


# ------------------------------------------------------------------ ramping lead funnel

#: The open stage of `ramping_funnel` (its only one): stage order ``[RAMP_STAGE]``.
RAMP_STAGE = "lead"


def ramping_funnel(*, seed: int = 0, start: str = "2023-01-01", end: str = "2023-12-31",
                   leads_per_day_start: float = 0.5, leads_per_day_end: float = 20.0, ramp_days: int = 150,
                   p_win: float = 0.35, mean_days_to_win: float = 30.0, mean_amount: float = 5_000.0,
                   n_owners: int = 8) -> pd.DataFrame:
    """Opportunities of a lead funnel that records wins and no losses, with a sales team
    ramping up: leads are created as a Poisson process whose daily rate rises linearly from
    `leads_per_day_start` to `leads_per_day_end` over the first `ramp_days` (about 5 to 200
    wins a month with the defaults), then stays there. A lead is won with probability `p_win`
    after 1 + Gamma(2, mean_days_to_win / 2) days; otherwise it is never closed: it stays
    open ('lead', no closed_date, no outcome), as in CRMs where unconverted leads are never
    marked lost. Wins after `end` are not in the table (those leads are open too). Columns:
    opportunity_id, owner, created_date, stage, amount (lognormal), closed_date, outcome.
    The `synth --ramping-funnel` command writes this as the opportunities table."""
    rng = np.random.default_rng(seed)
    s, n_days = _window(start, end)
    t = np.arange(n_days)
    rate = leads_per_day_start + (leads_per_day_end - leads_per_day_start) * np.minimum(t / max(ramp_days, 1), 1.0)
    created = np.repeat(t, rng.poisson(rate))
    n = len(created)
    won_day = created + 1 + np.floor(rng.gamma(2.0, mean_days_to_win / 2.0, n)).astype(np.int64)
    won = (rng.random(n) < p_win) & (won_day < n_days)
    sigma = 0.8
    amount = np.round(rng.lognormal(np.log(mean_amount) - sigma ** 2 / 2, sigma, n), 2)
    owners = tuple(f"rep{i + 1:02d}" for i in range(n_owners))
    return pd.DataFrame({
        "opportunity_id": _id_strings("L", np.arange(1, n + 1), _width(n, 6)),
        "owner": _vocab(owners, rng.integers(0, n_owners, n)),
        "created_date": _dates(s, created),
        "stage": _vocab((RAMP_STAGE, STAGE_WON), won.astype(np.int64)),
        "amount": amount.astype(np.float64),
        "closed_date": _dates(s, np.where(won, won_day, np.nan)),
        "outcome": pd.array(np.where(won, STAGE_WON, None), dtype="str"),
    })


# ------------------------------------------------------------------ the reps' forecast calls

_REP_SIGNAL = 0.8    # logit shift a rep's private knowledge of the eventual outcome adds
_REP_NOISE = 0.4     # sd of the rep's per-call logit noise
_REP_CUTS = ((0.7, "commit"), (0.4, "best_case"), (0.15, "pipeline"))   # else omitted


def default_optimism(owner_names) -> dict[str, float]:
    """The reps' known optimism for `rep_calls`: the first owner calls 0.3 higher than an honest
    rep (an optimist), the second 0.2 lower (a sandbagger), the others honest."""
    names = sorted(set(map(str, owner_names)))
    return {n: (0.3 if i == 0 else -0.2 if i == 1 else 0.0) for i, n in enumerate(names)}


def _stage_win_share(opps: pd.DataFrame, hist: pd.DataFrame) -> dict[str, float]:
    """Per open stage: share of the closed deals that passed through it and were won."""
    won = opps.set_index("opportunity_id")["outcome"]
    h = hist[hist["stage"].isin(STAGES_OPEN)].assign(outcome=lambda d: d["opportunity_id"].map(won))
    h = h[h["outcome"].notna()]
    return (h["outcome"] == STAGE_WON).groupby(h["stage"]).mean().to_dict()


def _rep_category(p: np.ndarray) -> np.ndarray:
    out = np.full(len(p), "omitted", dtype=object)
    for cut, name in reversed(_REP_CUTS):
        out[p >= cut] = name
    return out


def rep_calls(tables: SynthTables, *, every_days: int = 7, optimism: dict[str, float] | None = None,
              seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reps' weekly forecast calls on the synthetic funnel: (opportunities with
    rep_probability and rep_category on the deals open at the last snapshot, the
    opportunity_snapshots table). At each snapshot (every `every_days` from the first deal's
    creation) each open deal gets a call: an honest rep's probability is the stage's win share
    moved by what the rep knows (logit +-0.8: whether the deal will be won by the end of the
    quarter of its expected close date, the snapshot's when past due; noise sd 0.4); the rep's
    `optimism` (default `default_optimism`: an optimist +0.3, a sandbagger -0.2) is added, clipped
    to 0.01..0.99; the category follows the probability (commit >= 0.7, best_case >= 0.4,
    pipeline >= 0.15, else omitted). Same arguments, same frames."""
    opps, hist = tables.opportunities, tables.stage_history
    optimism = default_optimism(opps["owner"].dropna().unique()) if optimism is None else optimism
    rng = np.random.default_rng(seed)
    first, last = opps["created_date"].min(), hist["changed_at"].max()
    dates = pd.date_range(first + pd.Timedelta(days=every_days), last, freq=f"{every_days}D")
    grid = pd.DataFrame({"snapshot_date": np.repeat(dates.to_numpy(), len(opps)),
                         "opportunity_id": np.tile(opps["opportunity_id"].to_numpy(dtype=object), len(dates))})
    o = opps.set_index("opportunity_id")
    created = grid["opportunity_id"].map(o["created_date"])
    closed = grid["opportunity_id"].map(o["closed_date"])
    grid = grid[(created < grid["snapshot_date"]) & (closed.isna() | (closed >= grid["snapshot_date"]))]
    h = hist.sort_values("changed_at", kind="stable").rename(columns={"changed_at": "snapshot_date"})
    grid = pd.merge_asof(grid.sort_values("snapshot_date", kind="stable"), h,
                         on="snapshot_date", by="opportunity_id", direction="backward", allow_exact_matches=False)
    grid = grid[grid["stage"].isin(STAGES_OPEN)].sort_values(["snapshot_date", "opportunity_id"], ignore_index=True)
    share = _stage_win_share(opps, hist)
    base = np.clip(grid["stage"].map(share).astype(float).fillna(0.5).to_numpy(), 0.02, 0.98)
    # what the rep knows: whether the deal will be won by the end of the quarter it is called for
    exp = grid["opportunity_id"].map(o["expected_close_date"])
    called_for = pd.PeriodIndex(exp.where(exp > grid["snapshot_date"], grid["snapshot_date"]), freq="Q")
    won_by = (grid["opportunity_id"].map(o["outcome"]) == STAGE_WON) \
        & (grid["opportunity_id"].map(o["closed_date"]) <= called_for.end_time.normalize())
    know = np.where(won_by, 1.0, -1.0)
    honest = _sigmoid(np.log(base / (1 - base)) + _REP_SIGNAL * know + rng.normal(0.0, _REP_NOISE, len(grid)))
    owner = grid["opportunity_id"].map(o["owner"]).astype("str")
    p = np.clip(honest + owner.map(optimism).fillna(0.0).to_numpy(float), 0.01, 0.99).round(3)
    snaps = pd.DataFrame({"opportunity_id": grid["opportunity_id"].astype("str"), "snapshot_date": grid["snapshot_date"],
                          "owner": owner.to_numpy(), "stage": grid["stage"].astype("str"),
                          "amount": grid["opportunity_id"].map(o["amount"]).astype("float64"),
                          "expected_close_date": grid["opportunity_id"].map(o["expected_close_date"]),
                          "rep_probability": p, "rep_category": pd.array(_rep_category(p), dtype="str")})
    latest = snaps[snaps["snapshot_date"] == snaps["snapshot_date"].max()].set_index("opportunity_id")
    out = opps.copy()
    out["rep_probability"] = out["opportunity_id"].map(latest["rep_probability"]).where(out["outcome"].isna())
    out["rep_category"] = out["opportunity_id"].map(latest["rep_category"]).where(out["outcome"].isna()).astype("str")
    return out, snaps
