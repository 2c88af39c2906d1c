"""The customer feature families written once as SQL, executed by an existing engine (DuckDB).

    feats = relational_features(tables, as_of="2024-03-01", config=cfg)   # == build_features(...)
    sql = feature_sql(d0, cfg, inputs_of(tables))                         # the definition itself

The numpy families (rfm.py, tenure.py, growth.py, credit.py, margin.py, lifecycle.py) are the
oracle: every column here is the same number, bit for bit (tests/test_relational_features.py).
How that holds:
- Point in time: every table passes through `before_as_of` (day < as_of day) and nowhere else.
- Money: each amount is rounded to integer micro-units (`money_units`, half-to-even like
  numpy's rint) and summed as integers, so the engine's parallel summation order cannot change
  a bit; the sum is divided by MONEY_UNITS_PER_CURRENCY once, as `arrays.money_sum` does.
- Ratios repeat the numpy expression in the same floating operation order (IEEE double
  arithmetic is deterministic per operation), NULL standing for NaN.
- Quintile scores: 1 + (5 x customers strictly worse) // n, "strictly worse" counted per
  distinct value (or as rank() - 1), so ties share a score as in `quintile_score`.

How the query is written (SHAPES, SCORE_MODES) changes its speed, never its numbers: every
window and filter depends on the day only, so sums per row, per customer-day or per customer
see the same sets, and distinct purchase days come from distinct (customer, day) pairs rather
than count(distinct ...) (measured: benchmarks/engines.py). Numpy's fallback for sums beyond
2**53 micro-units (math.fsum of the raw amounts) is not mirrored: the integer sum here is exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..config import FeatureConfig
from .arrays import MONEY_UNITS_PER_CURRENCY, as_of_day
from .build import Tables
from .lifecycle import STAGES
from .registry import feature_columns

#: How the query is written (same numbers): "topn" = rows -> customer-days -> customers, the
#: second-last purchase day by DuckDB's max(day, 2); "window" = the same with a lag window
#: (portable SQL, but a sort); "split" = money sums straight from rows to customers, and the
#: purchase-day statistics from the distinct (customer, day) pairs (two narrow aggregations).
SHAPES = ("topn", "window", "split")
SCORE_MODES = ("counts", "rank")
_EPOCH = "DATE '1970-01-01'"
_MAX_DOUBLE = "1.7976931348623157e308"


@dataclass(frozen=True)
class Inputs:
    """Which optional tables and columns exist: the query's shape depends on them."""

    has_cost: bool = False
    has_signup: bool = False
    has_invoices: bool = False
    has_paid: bool = False
    has_limit: bool = False
    keyed: bool = False  # transactions.customer_id holds integer keys into table customer_keys


def day_number(col: str) -> str:
    """Calendar days since 1970-01-01 (a timestamp's date: floor, also before 1970)."""
    return f"(CAST({col} AS DATE) - {_EPOCH})"


def before_as_of(day_expr: str, d0: int) -> str:
    """The point-in-time rule, the only place it is written: a row dated `day` is known at
    as_of iff day < as_of day (timestamps: strictly before as_of's midnight)."""
    return f"({day_expr} < {int(d0)})"


def money_units(expr: str) -> str:
    """An amount in integer micro-units, rounded half to even (numpy's rint)."""
    return f"CAST(round_even(({expr}) * {float(MONEY_UNITS_PER_CURRENCY)!r}, 0) AS BIGINT)"


def money(units_sum: str) -> str:
    """A sum of micro-units back to currency, the same single division as money_sum."""
    return f"(CAST({units_sum} AS DOUBLE) / {float(MONEY_UNITS_PER_CURRENCY)!r})"


def ratio(num: str, den: str) -> str:
    """num / den in double; NULL (NaN) where den <= 0 or undefined or the quotient is not
    finite, as `arrays.ratio`."""
    q = f"(CAST({num} AS DOUBLE) / CAST({den} AS DOUBLE))"
    return f"(CASE WHEN {den} > 0 AND abs({q}) <= {_MAX_DOUBLE} THEN {q} END)"


def txn_days_sql(d0: int, cfg: FeatureConfig, inp: Inputs) -> str:
    """Rows before as_of -> one row per (customer, day) with everything the families sum."""
    month = f"(({d0 - 1} - day) // 30)"  # day < as_of, so non-negative: // is floor here
    u = money_units("amount")
    cols = [
        f"sum({u}) AS u", "bool_or(amount > 0) AS pos",
        f"sum(CASE WHEN NOT amount < 0 THEN {u} ELSE 0 END) AS u_gross",
        f"sum(CASE WHEN amount < 0 THEN {u} ELSE 0 END) AS u_neg",
        "count(*) FILTER (WHERE amount < 0) AS n_neg",
        # the slope's x-weighted sum rounds amount x month per row, as numpy does
        (f"sum(CASE WHEN {month} < {cfg.slope_months} THEN {money_units(f'amount * CAST({month} AS DOUBLE)')}"
         " ELSE 0 END) AS u_xy"),
    ]
    if inp.has_cost:
        cols += [f"sum(CASE WHEN cost IS NOT NULL THEN {money_units('amount - cost')} ELSE 0 END) AS u_m",
                 f"sum(CASE WHEN cost IS NOT NULL THEN {u} ELSE 0 END) AS u_rev",
                 "count(cost) AS n_cost"]
    return f"SELECT cid, day, {', '.join(cols)} FROM rows GROUP BY cid, day"


def rows_sql(d0: int, inp: Inputs) -> str:
    """The transaction rows known at as_of, with their day numbers."""
    cost = ", cost" if inp.has_cost else ""
    return (f"SELECT cid, day, amount{cost} FROM (SELECT customer_id AS cid, {day_number('timestamp')} AS day, "
            f"amount{cost} FROM transactions WHERE customer_id IS NOT NULL) WHERE {before_as_of('day', d0)}")


def customer_aggs_sql(d0: int, cfg: FeatureConfig, inp: Inputs, shape: str) -> str:
    """Customer-days -> one row per customer with any row before as_of."""
    pos_day = "CASE WHEN pos THEN day END"
    gw, sm = cfg.growth_window_days, cfg.slope_months
    cols = [
        "sum(u) AS u_total", "count(*) FILTER (WHERE pos) AS frequency",
        f"max({pos_day}) AS last", f"min({pos_day}) AS first_buy", "min(day) AS first_any",
        "sum(u_gross) AS u_gross", "sum(u_neg) AS u_neg", "sum(n_neg) AS n_returns",
        f"sum(CASE WHEN day >= {d0 - gw} THEN u ELSE 0 END) AS u_recent",
        f"sum(CASE WHEN day >= {d0 - 2 * gw} AND day < {d0 - gw} THEN u ELSE 0 END) AS u_prior",
        f"sum(CASE WHEN ({d0 - 1} - day) // 30 < {sm} THEN u ELSE 0 END) AS u_y", "sum(u_xy) AS u_xy",
    ]
    cols += [f"sum(CASE WHEN day >= {d0 - w} THEN u ELSE 0 END) AS u_spend_{w}" for w in cfg.windows_days]
    cols += [f"count(*) FILTER (WHERE pos AND day >= {d0 - w}) AS n_purchases_{w}d" for w in cfg.windows_days]
    if inp.has_cost:
        cols += ["sum(u_m) AS u_m", "sum(u_rev) AS u_rev", "sum(n_cost) AS n_cost"]
    if shape == "topn":
        cols.append("(max(day, 2) FILTER (WHERE pos))[2] AS second_last")
        src = "days"
    elif shape == "window":
        # previous purchase day of each purchase day; that of the last one is the second-last
        cols.append("max(CASE WHEN pos THEN prev END) FILTER (WHERE day = last_pos) AS second_last")
        src = ("(SELECT *, lag(day) OVER (PARTITION BY cid, pos ORDER BY day) AS prev, "
               f"max({pos_day}) OVER (PARTITION BY cid) AS last_pos FROM days)")
    else:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    return f"SELECT cid, {', '.join(cols)}, true AS seen FROM {src} GROUP BY cid"


def split_aggs_sql(d0: int, cfg: FeatureConfig, inp: Inputs) -> str:
    """Shape "split": the columns of customer_aggs_sql, sums per row, purchase days distinct."""
    gw, sm = cfg.growth_window_days, cfg.slope_months
    u, month = money_units("amount"), f"(({d0 - 1} - day) // 30)"
    sums = [
        f"sum({u}) AS u_total", f"sum(CASE WHEN NOT amount < 0 THEN {u} ELSE 0 END) AS u_gross",
        f"sum(CASE WHEN amount < 0 THEN {u} ELSE 0 END) AS u_neg", "count(*) FILTER (WHERE amount < 0) AS n_returns",
        "min(day) AS first_any", f"sum(CASE WHEN day >= {d0 - gw} THEN {u} ELSE 0 END) AS u_recent",
        f"sum(CASE WHEN day >= {d0 - 2 * gw} AND day < {d0 - gw} THEN {u} ELSE 0 END) AS u_prior",
        f"sum(CASE WHEN {month} < {sm} THEN {u} ELSE 0 END) AS u_y",
        f"sum(CASE WHEN {month} < {sm} THEN {money_units(f'amount * CAST({month} AS DOUBLE)')} ELSE 0 END) AS u_xy",
    ]
    sums += [f"sum(CASE WHEN day >= {d0 - w} THEN {u} ELSE 0 END) AS u_spend_{w}" for w in cfg.windows_days]
    if inp.has_cost:
        sums += [f"sum(CASE WHEN cost IS NOT NULL THEN {money_units('amount - cost')} ELSE 0 END) AS u_m",
                 f"sum(CASE WHEN cost IS NOT NULL THEN {u} ELSE 0 END) AS u_rev", "count(cost) AS n_cost"]
    stats = ["count(*) AS frequency", "max(day) AS last", "min(day) AS first_buy", "max(day, 2)[2] AS second_last"]
    stats += [f"count(*) FILTER (WHERE day >= {d0 - w}) AS n_purchases_{w}d" for w in cfg.windows_days]
    n_zero = ", ".join(f"coalesce(p.n_purchases_{w}d, 0) AS n_purchases_{w}d" for w in cfg.windows_days)
    return (f"SELECT s.*, coalesce(p.frequency, 0) AS frequency, p.last, p.first_buy, p.second_last, {n_zero}, "
            f"true AS seen FROM (SELECT cid, {', '.join(sums)} FROM rows GROUP BY cid) s LEFT JOIN "
            f"(SELECT cid, {', '.join(stats)} FROM (SELECT DISTINCT cid, day FROM rows WHERE amount > 0) "
            "GROUP BY cid) p ON s.cid = p.cid")


def signup_sql(d0: int) -> str:
    """Earliest sign-up before as_of per customer: the prospects and the tenure start."""
    day = day_number("signup_date")
    return (f"SELECT CAST(customer_id AS VARCHAR) AS cid, min({day}) AS signup FROM customers "
            f"WHERE signup_date IS NOT NULL AND customer_id IS NOT NULL AND {before_as_of(day, d0)} GROUP BY 1")


def credit_sql(d0: int, cfg: FeatureConfig, inp: Inputs) -> str:
    """Invoices issued before as_of -> the credit family per customer (paid = paid before as_of)."""
    paid_day = day_number("paid_date") if inp.has_paid else "CAST(NULL AS BIGINT)"
    thr = cfg.overdue_threshold_days
    inv = (f"SELECT CAST(customer_id AS VARCHAR) AS cid, {day_number('due_date')} AS due, amount, "
           f"coalesce({before_as_of('paid_day', d0)}, false) AS paid, paid_day FROM "
           f"(SELECT *, {paid_day} AS paid_day FROM invoices) WHERE {before_as_of(day_number('issue_date'), d0)}")
    dpd = f"CASE WHEN paid THEN greatest(0, paid_day - due) ELSE greatest(0, {d0} - due) END"
    overdue = f"(NOT paid AND due < {d0})"
    agg = (f"SELECT cid, count(*) AS n_invoices, sum({dpd}) AS dpd_sum, max({dpd}) AS dpd_max, "
           "count(*) FILTER (WHERE paid AND paid_day > due) AS n_late, count(*) FILTER (WHERE paid) AS n_paid, "
           f"sum(CASE WHEN NOT paid THEN {money_units('amount')} ELSE 0 END) AS u_open, "
           f"sum(CASE WHEN {overdue} THEN {money_units('amount')} ELSE 0 END) AS u_overdue, "
           f"count(*) FILTER (WHERE {overdue} AND {d0} - due > {thr}) AS n_overdue FROM ({inv}) GROUP BY cid")
    limit = ("(SELECT CAST(customer_id AS VARCHAR) AS cid, max(credit_limit) AS credit_limit FROM customers "
             "GROUP BY 1)" if inp.has_limit else "(SELECT NULL AS cid, CAST(NULL AS DOUBLE) AS credit_limit)")
    return (f"SELECT c.*, l.credit_limit FROM ({agg}) c LEFT JOIN {limit} l ON c.cid = l.cid")


def derived_columns(d0: int, cfg: FeatureConfig) -> dict[str, str]:
    """Terms that several features share, over the population row `p`: computed once per
    customer in a layer of their own. Nested in each use they were expanded up to 4 times: at
    1M customers the slope, trend and recency/interval columns took 1.0 of the 2.2 s of all
    feature expressions. Same operations, so the same bits."""
    k = f"CAST(least({cfg.slope_months}, ({d0 - 1} - p.first_any) // 30 + 1) AS DOUBLE)"
    return {"mean_iv": ratio("(p.last - p.first_buy)", "(CAST(p.frequency AS DOUBLE) - 1.0)"),
            "earlier_iv": ratio("(p.second_last - p.first_buy)", "(CAST(p.frequency AS DOUBLE) - 2.0)"),
            "k_months": k}


def family_columns(d0: int, cfg: FeatureConfig, inp: Inputs) -> dict[str, str]:
    """Each feature column as an expression over the joined customer row `f` (NULL = NaN),
    which carries the `derived_columns` too."""
    gw = cfg.growth_window_days
    freq, last, first_buy, second = "f.frequency", "f.last", "f.first_buy", "f.second_last"
    recent, prior = money("f.u_recent"), money("f.u_prior")
    mean_iv, earlier, k = "f.mean_iv", "f.earlier_iv", "f.k_months"
    sx, sxx = f"((-{k}) * ({k} - 1) / 2)", f"(({k} - 1) * {k} * (2 * {k} - 1) / 6)"
    sy, sxy = money("f.u_y"), f"(-{money('f.u_xy')})"
    start = f"coalesce(least(f.signup, {first_buy}), f.first_any)"  # least() skips NULL like np.fmin
    cols = {"recency_days": f"CAST({d0} - {last} AS DOUBLE)", "frequency": freq,
            "monetary_total": money("f.u_total"), "monetary_avg": ratio(money("f.u_total"), freq)}
    cols |= {f"spend_{w}d": money(f"f.u_spend_{w}") for w in cfg.windows_days}
    cols |= {f"n_purchases_{w}d": f"f.n_purchases_{w}d" for w in cfg.windows_days}
    cols |= {"tenure_days": f"CAST({d0} - {start} AS DOUBLE)",
             "first_purchase_days_ago": f"CAST({d0} - {first_buy} AS DOUBLE)",
             "age_at_first_purchase_days": f"CAST({first_buy} - f.signup AS DOUBLE)"}
    seen = {  # families that only know customers with a row before as_of: NULL for prospects
        f"spend_prior_{gw}d": prior, f"spend_growth_ratio_{gw}d": ratio(recent, prior),
        f"spend_growth_diff_{gw}d": f"({recent} - {prior})",
        "spend_slope_monthly": f"CASE WHEN {k} >= 2 THEN ({k} * {sxy} - {sx} * {sy}) / ({k} * {sxx} - {sx} * {sx}) END",
        "interval_mean_days": mean_iv,
        "interval_last_days": f"CASE WHEN {freq} >= 2 THEN CAST({last} - {second} AS DOUBLE) END",
        "interval_trend_ratio": f"CASE WHEN {freq} >= 3 THEN {ratio(f'({last} - {second})', earlier)} END",
        "recency_to_interval_ratio": ratio(f"({d0} - {last})", mean_iv),
        "return_ratio": ratio(f"abs({money('f.u_neg')})", money("f.u_gross")),
    }
    cols |= {n: f"CASE WHEN f.seen THEN {e} END" for n, e in seen.items()}
    cols["n_returns"] = "f.n_returns"
    if inp.has_cost:
        cols["margin_total"] = f"CASE WHEN f.seen AND f.n_cost > 0 THEN {money('f.u_m')} END"
        cols["margin_rate"] = f"CASE WHEN f.seen THEN {ratio(money('f.u_m'), money('f.u_rev'))} END"
    return cols


def credit_columns(cfg: FeatureConfig) -> dict[str, str]:
    """The credit family over the left-joined credit row `c` (no invoice: counts and balances 0)."""
    return {"n_invoices": "coalesce(c.n_invoices, 0)",
            "days_past_due_mean": ratio("c.dpd_sum", "c.n_invoices"),
            "days_past_due_max": "CAST(c.dpd_max AS DOUBLE)",
            "late_payment_share": ratio("c.n_late", "c.n_paid"),
            "open_balance": f"coalesce({money('c.u_open')}, 0.0)",
            "overdue_balance": f"coalesce({money('c.u_overdue')}, 0.0)",
            f"n_overdue_{cfg.overdue_threshold_days}d": "coalesce(c.n_overdue, 0)",
            "credit_utilisation": ratio(money("c.u_open"), "c.credit_limit")}


def score_columns(cfg: FeatureConfig) -> dict[str, str]:
    """RFM quintiles over the whole per-customer frame `x` (prospects included, as numpy)."""
    def score(key: str) -> str:  # NULL (NaN) is the worst value: -inf, as quintile_score does
        worse = f"(rank() OVER (ORDER BY coalesce({key}, CAST('-inf' AS DOUBLE))) - 1)"
        return f"CAST(1 + (5 * {worse}) // count(*) OVER () AS BIGINT)"
    return {"r_score": score("-x.recency_days"), "f_score": score("CAST(x.frequency AS DOUBLE)"),
            "m_score": score("x.monetary_total")}


SCORE_KEYS = {"r_score": "-{x}.recency_days", "f_score": "CAST({x}.frequency AS DOUBLE)",
              "m_score": "{x}.monetary_total"}


def scored_by_counts_sql() -> str:
    """The quintile scores without a window over all customers: count the customers per
    distinct value, cumulate those counts over the (few) sorted distinct values, join back."""
    def key(name: str, x: str) -> str:
        return f"coalesce({SCORE_KEYS[name].format(x=x)}, CAST('-inf' AS DOUBLE))"
    joins, cols = [], []
    for i, name in enumerate(SCORE_KEYS):
        cum = (f"(SELECT k, coalesce(sum(c) OVER (ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) "
               f"AS worse FROM (SELECT {key(name, 'y')} AS k, count(*) AS c FROM feats y GROUP BY 1))")
        joins.append(f"JOIN {cum} v{i} ON {key(name, 'x')} = v{i}.k")
        cols.append(f"CAST(1 + (5 * v{i}.worse) // t.n AS BIGINT) AS {name}")
    return (f"SELECT x.*, {', '.join(cols)} FROM feats x {' '.join(joins)} "
            "CROSS JOIN (SELECT count(*) AS n FROM feats) t")


def final_columns(cfg: FeatureConfig) -> dict[str, str]:
    """Columns derived from the scored row `s`: the score sums and the lifecycle stage."""
    lc = cfg.lifecycle
    return {"rfm_score": "s.r_score + s.f_score + s.m_score",
            "rfm_code": "100 * s.r_score + 10 * s.f_score + s.m_score",
            "lifecycle_stage": (f"CASE WHEN s.frequency = 0 THEN 'prospect' WHEN s.recency_days > "
                                f"{lc.lapsed_after_days} THEN 'lapsed' WHEN s.frequency = 1 THEN 'first-time' "
                                f"WHEN s.frequency >= {lc.loyal_min_purchases} THEN 'loyal' ELSE 'repeat' END")}


def late_ids(inp: Inputs) -> bool:
    """Whether the query keeps the integer keys to the end (the caller maps them to ids and
    sorts by them): only without customers or invoices, whose string ids must be joined.
    At 1M customers (10M rows) the per-customer part of the query took 3.9 instead of 4.6 CPU-s
    (no join to the keys, no transfer of 1M strings), and sorting integer codes in numpy
    replaces pandas' sort of the string index (~5 s on the loaded 2-core machine)."""
    return inp.keyed and not inp.has_signup and not inp.has_invoices


def population_sql(inp: Inputs) -> str:
    """Customers with any row before as_of plus prospects signed up before as_of; sums and
    counts of customers without rows are 0 (NULL stays NULL for days)."""
    key = "k.customer_id" if inp.keyed else "CAST(a.cid AS VARCHAR)"
    src = "agg a JOIN customer_keys k ON a.cid = k.cid" if inp.keyed else "agg a"
    if late_ids(inp):
        key, src = "a.cid", "agg a"
    zero = ["u_total", "frequency", "u_gross", "u_neg", "n_returns", "u_recent", "u_prior", "u_y", "u_xy"]
    if not inp.has_signup:
        return f"SELECT {key} AS customer_id, a.*, CAST(NULL AS BIGINT) AS signup FROM {src}"
    return ("SELECT coalesce(b.customer_id, s.cid) AS customer_id, "
            + ", ".join(f"coalesce(b.{c}, 0) AS {c}" for c in zero)
            + ", b.* EXCLUDE (customer_id, cid, " + ", ".join(zero) + "), s.signup FROM "
            f"(SELECT {key} AS customer_id, a.* FROM {src}) b FULL OUTER JOIN signup s ON b.customer_id = s.cid")


def feature_sql(d0: int, cfg: FeatureConfig, inp: Inputs, *, shape: str = "split", scores: str = "counts") -> str:
    """The whole feature query: one row per customer, columns as `registry.feature_columns`.
    `shape` (SHAPES) and `scores` ("counts": per distinct value, "rank": a rank() window over
    all customers) choose how it is written; the numbers are the same."""
    if scores not in SCORE_MODES:
        raise ValueError(f"scores must be one of {', '.join(SCORE_MODES)}, got {scores!r}")
    fam = family_columns(d0, cfg, inp)
    for w in cfg.windows_days:  # prospects: no rows in any window
        fam[f"spend_{w}d"] = f"coalesce({fam[f'spend_{w}d']}, 0.0)"
        fam[f"n_purchases_{w}d"] = f"coalesce({fam[f'n_purchases_{w}d']}, 0)"
    if inp.has_invoices:
        fam |= credit_columns(cfg)
    counts = {c for c in fam if c.startswith("n_") or c == "frequency"}
    fam = {c: (f"CAST({e} AS BIGINT)" if c in counts else e) for c, e in fam.items()}
    ctes = [f"rows AS NOT MATERIALIZED ({rows_sql(d0, inp)})"]  # cheap to rescan, costly to store
    if shape == "split":
        ctes.append(f"agg AS ({split_aggs_sql(d0, cfg, inp)})")
    else:
        ctes += [f"days AS ({txn_days_sql(d0, cfg, inp)})", f"agg AS ({customer_aggs_sql(d0, cfg, inp, shape)})"]
    if inp.has_signup:
        ctes.append(f"signup AS ({signup_sql(d0)})")
    ctes.append(f"pop AS ({population_sql(inp)})")
    join = ""
    if inp.has_invoices:
        ctes.append(f"credit AS ({credit_sql(d0, cfg, inp)})")
        join = " LEFT JOIN credit c ON f.customer_id = c.cid"
    derived = ", ".join(f"{e} AS {c}" for c, e in derived_columns(d0, cfg).items())
    ctes.append("feats AS (SELECT f.customer_id, " + ", ".join(f"{e} AS {c}" for c, e in fam.items())
                + f" FROM (SELECT p.*, {derived} FROM pop p) f{join})")
    if scores == "counts":
        ctes.append(f"scored AS ({scored_by_counts_sql()})")
    else:
        ctes.append("scored AS (SELECT x.*, " + ", ".join(f"{e} AS {c}" for c, e in score_columns(cfg).items())
                    + " FROM feats x)")
    fin = final_columns(cfg)
    cols = feature_columns(cfg, has_cost=inp.has_cost, has_invoices=inp.has_invoices)
    sel = ", ".join(f"{fin[c]} AS {c}" if c in fin else f"s.{c}" for c in cols)
    # String ids are sorted here (as the frame's index sorts them: UTF-8 byte order = code
    # points), since pandas' sort_index of 1M string ids took ~5 s (the string-key speed-up is
    # not measured separately here).
    order = "" if late_ids(inp) else " ORDER BY s.customer_id"
    return "WITH " + ",\n".join(ctes) + f"\nSELECT s.customer_id, {sel} FROM scored s{order}"


def inputs_of(tables: Tables) -> Inputs:
    c, i, t = tables.customers, tables.invoices, tables.transactions
    return Inputs(keyed=isinstance(t["customer_id"].dtype, pd.CategoricalDtype),
                  has_cost="cost" in tables.transactions.columns,
                  has_signup=c is not None and "signup_date" in c.columns,
                  has_invoices=i is not None, has_paid=i is not None and "paid_date" in i.columns,
                  has_limit=c is not None and "credit_limit" in c.columns)


def duckdb_connection(*, threads: int | None = None, memory_limit: str | None = None,
                      temp_directory: str | None = None):
    """A fresh in-memory DuckDB; `memory_limit` (e.g. "200MB") makes it spill to `temp_directory`."""
    import duckdb
    con = duckdb.connect()
    for k, v in (("threads", threads), ("memory_limit", memory_limit), ("temp_directory", temp_directory)):
        if v is not None:
            con.execute(f"SET {k} = '{v}'").fetchall()  # duckdb 2: finish each result
    return con


def relational_features(tables: Tables, *, as_of, config: FeatureConfig | None = None, con=None,
                        shape: str = "split", scores: str = "counts") -> pd.DataFrame:
    """build_features computed by DuckDB from the one SQL definition (`feature_sql`): the same
    frame (index customer_id sorted, columns, dtypes, values). `con`: a DuckDB connection to run
    on (default: a fresh in-memory one); the pandas tables are scanned in place."""
    cfg = config or FeatureConfig()
    d0 = as_of_day(as_of)
    inp = inputs_of(tables)
    con = con or duckdb_connection()
    names = {"customers": tables.customers, "invoices": tables.invoices, **engine_transactions(tables, inp)}
    for name, df in names.items():
        if df is not None:
            con.register(name, df)
    try:
        out = con.sql(feature_sql(d0, cfg, inp, shape=shape, scores=scores)).df()
        if late_ids(inp):
            out = ids_of_keys(out, names["customer_keys"])
    finally:
        for name, df in names.items():
            if df is not None:
                con.unregister(name)
    return as_feature_frame(out)


def engine_transactions(tables: Tables, inp: Inputs) -> dict[str, pd.DataFrame]:
    """The transactions as the engine scans them. A categorical customer_id (what the loader
    makes) goes in as its integer codes plus a small code -> id table: grouping on integers is
    ~2x faster than on the enum DuckDB would make of it, and the ids are joined back once per
    customer. Code -1 (a missing id) matches no key, so those rows are dropped as numpy does."""
    t = tables.transactions
    if not inp.keyed:
        return {"transactions": t}
    cols = ["timestamp", "amount"] + (["cost"] if inp.has_cost else [])
    codes = t["customer_id"].cat.codes
    frame = pd.DataFrame({"customer_id": codes.to_numpy(), **{c: t[c].to_numpy() for c in cols}})
    cats = t["customer_id"].cat.categories
    keys = pd.DataFrame({"cid": range(len(cats)), "customer_id": cats.astype("str")})
    keys["cid"] = keys["cid"].astype(codes.dtype)
    return {"transactions": frame, "customer_keys": keys}


def ids_of_keys(out: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Rows keyed by integer codes (`late_ids`) -> ordered by code, with the string ids: the
    codes of sorted categories (what the loader makes) sort as the ids do."""
    codes = out["customer_id"].to_numpy()
    out = out.take(codes.argsort(kind="stable")).reset_index(drop=True)
    out["customer_id"] = keys["customer_id"].to_numpy()[out["customer_id"].to_numpy()]
    return out


def as_feature_frame(out: pd.DataFrame) -> pd.DataFrame:
    """The engine's rows as build_features returns them: str index sorted, NaN for NULL,
    counts int64, the lifecycle stage categorical."""
    out.index = pd.Index(out.pop("customer_id").astype("str"), name="customer_id")
    if not out.index.is_monotonic_increasing:  # the query sorts; a collation that differs is still sorted here
        out = out.sort_index()
    out["lifecycle_stage"] = pd.Categorical(out["lifecycle_stage"].astype("str"), categories=STAGES)
    for c in out.columns:
        if c != "lifecycle_stage" and not pd.api.types.is_integer_dtype(out[c]):
            out[c] = out[c].astype("float64")
    return out
