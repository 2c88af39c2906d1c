"""Accuracy benchmark: our churn and value models vs the naive and BG/NBD + Gamma-Gamma baselines.

    python benchmarks/accuracy.py [--transactions FILE --columns canonical=yours,...]
                                  [--date-format FMT] [--as-of 1997-10-01] [--horizon-days 180]

Default data: CDNOW_master.txt from the shared data folder (skipped with a message if absent).

Protocol (nothing here is specific to CDNOW)
- Test: customers with a positive purchase before as_of; labels from [as_of, as_of + H).
- Baselines, recomputed in this run on the test population:
  naive: churn score = recency_days, value = net spend of the last H days before as_of;
  btyd:  BG/NBD + Gamma-Gamma fitted on the history before as_of; churn score = its
         P(no purchase in H) (the model's probability of the label; AUC 0.752 as in the issue),
         value = E[purchases] x E[spend per purchase]. A stricter line also ranks BG/NBD by
         -E[purchases in H], which happens to score a higher AUC on CDNOW.
- Ours: trained only on snapshots at cutoffs as_of - H - k*step, built from the transactions
  *truncated at as_of* (the training code never receives a row on/after as_of), so every
  label window ends on or before as_of. The latest cutoff is the validation fold; the others
  are the inner training set. Hyper-parameters are chosen on the validation fold (churn: C by
  log loss; value: spend model by Gini), churn probabilities are calibrated (sigmoid) on it,
  and the value model is then refitted on all training snapshots. The test window is only
  used for the final table.

Output: a table (rows naive, btyd, ours), PASS/FAIL per acceptance criterion, and last line
`accuracy_pass=True|False`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from keyaccounts.config import parse_columns
from keyaccounts.datasets import CDNOW_COLUMNS, CDNOW_DATE_FORMAT, SHARED_DATA
from keyaccounts.features import Tables, build_features
from keyaccounts.io import read_frame
from keyaccounts.labels import customer_labels
from keyaccounts.models import metrics as M
from keyaccounts.models.churn import calibrate, make_churn_model
from keyaccounts.models.value import make_value_model
from keyaccounts.schemas import prepare_table
from keyaccounts.train import btyd_baseline, naive_value
from keyaccounts.snapshots import customer_snapshots, cutoffs, earliest_date

LABELS = ["churned", "future_value", "future_purchase_days"]
DEFAULT_FILE = SHARED_DATA / "cdnow" / "CDNOW_master.txt"

# Acceptance criteria (product issue).
MIN_AUC_GAIN = 0.01
MIN_GINI_GAIN = 0.01
MAX_ABS_TOTAL_ERROR = 0.15


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(args) -> pd.DataFrame:
    path = Path(args.transactions) if args.transactions else DEFAULT_FILE
    default = args.transactions is None
    mapping = parse_columns(args.columns) if args.columns else (dict(CDNOW_COLUMNS) if default else {})
    date_format = args.date_format or (CDNOW_DATE_FORMAT if default else None)
    raw = read_frame(path)
    tx, report = prepare_table(raw, "transactions", file=str(path), mapping=mapping, date_format=date_format)
    return tx


def truncate(tx: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Rows strictly before as_of, ids re-categorised: what a file exported at as_of holds."""
    t = tx[tx["timestamp"] < as_of].copy()
    if isinstance(t["customer_id"].dtype, pd.CategoricalDtype):
        t["customer_id"] = t["customer_id"].cat.remove_unused_categories()
    return t.reset_index(drop=True)


def baselines(tx: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int, index: pd.Index, recency) -> dict:
    """The same baselines `keyaccounts train` logs: naive (recency; last H days repeat) and
    BG/NBD + Gamma-Gamma fitted on the history before as_of."""
    naive = {"churn_score": np.asarray(recency, float), "churn_proba": None,
             "value": naive_value(tx, as_of=as_of.date(), horizon_days=horizon_days, index=index)}
    b = btyd_baseline(tx, as_of=as_of.date(), horizon_days=horizon_days, index=index)
    btyd = {"churn_score": b["p_no_purchase"].to_numpy(), "churn_proba": b["p_no_purchase"].to_numpy(),
            "value": b["btyd_value"].to_numpy(), "rank_score": -b["expected_purchases"].to_numpy()}
    return {"naive": naive, "btyd": btyd}


def train_ours(train_tx: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int, step_days: int,
               max_snapshots: int, min_history_days: int, n_jobs: int):
    cuts = cutoffs(as_of=as_of, horizon_days=horizon_days, step_days=step_days, max_snapshots=max_snapshots,
                   earliest=earliest_date(train_tx), min_history_days=min_history_days)
    if len(cuts) < 2:
        raise SystemExit(f"history too short: {len(cuts)} training cutoff(s) for H = {horizon_days} d")
    assert max(cuts) + pd.Timedelta(days=horizon_days) <= as_of, "a label window ends after as_of"
    t0 = time.time()
    snaps = customer_snapshots(Tables(train_tx), cuts=cuts, horizon_days=horizon_days)
    log(f"snapshots: {len(snaps):,} rows at {len(cuts)} cutoffs {min(cuts).date()}..{max(cuts).date()} "
        f"({time.time() - t0:.1f}s)")
    is_val = snaps.index.get_level_values("cutoff") == max(cuts)
    X, Y = snaps.drop(columns=LABELS), snaps[LABELS]
    X_in, Y_in, X_val, Y_val = X[~is_val], Y[~is_val], X[is_val], Y[is_val]
    base = {"horizon_days": horizon_days}
    xgb = {"n_jobs": n_jobs}

    # churn: C chosen on the validation fold (log loss), then sigmoid calibration on that fold
    t0 = time.time()
    best = None
    for C in (0.1, 1.0):
        m = make_churn_model({**base, "C": C, "xgb": xgb}).fit(X_in, Y_in["churned"])
        p = m.predict_proba(X_val)[:, 1]
        ll = log_loss(Y_val["churned"], p)
        log(f"  churn glm C={C}: val log loss {ll:.4f} AUC {roc_auc_score(Y_val['churned'], p):.4f}")
        if best is None or ll < best[0]:
            best = (ll, C, m)
    churn = calibrate(best[2], X_val, Y_val["churned"], method="sigmoid")
    churn_params = {**base, "C": best[1]}
    log(f"churn: chose C={best[1]} ({time.time() - t0:.1f}s)")

    # value: spend model chosen on the validation fold (Gini), then refit on all snapshots
    t0 = time.time()
    best = None
    for sm in ("xgb", "glm"):
        params = {**base, "spend_model": sm, "xgb": xgb}
        m = make_value_model(params).fit(X_in, Y_in["future_value"])
        vm = M.value_metrics(Y_val["future_value"], m.predict(X_val))
        log(f"  value spend={sm}: val gini {vm['gini']:.4f} spearman {vm['spearman']:.4f} "
            f"total {vm['total_rel_error']:+.3f}")
        if best is None or vm["gini"] > best[0]:
            best = (vm["gini"], params, vm)
    value = make_value_model(best[1]).fit(X, Y["future_value"])
    log(f"value: chose spend_model={best[1]['spend_model']}, refitted on all snapshots ({time.time() - t0:.1f}s)")
    ids = X_val.index.get_level_values("customer_id")
    nv = naive_value(train_tx, as_of=max(cuts).date(), horizon_days=horizon_days, index=ids)
    nm = M.value_metrics(Y_val["future_value"], nv)
    validation = {"cutoff": str(max(cuts).date()), "naive_zero_share": float((nv <= 0).mean()),
                  "spearman_naive": nm["spearman"], "gini_naive": nm["gini"],
                  "spearman_ours": best[2]["spearman"], "gini_ours": best[2]["gini"]}
    info = {"cutoffs": cuts, "n_rows": len(snaps), "churn_params": churn_params, "value_params": best[1],
            "validation": validation}
    return churn, value, info


def row(y_churn, churn_score, churn_proba, actual, value) -> dict:
    y = np.asarray(y_churn, float)
    out = {"auc": roc_auc_score(y, churn_score), "pr_auc": average_precision_score(y, churn_score)}
    if churn_proba is not None:
        c = M.classification_metrics(y, churn_proba)
        out.update(brier=c["brier"], ece=c["ece"])
    else:
        out.update(brier=np.nan, ece=np.nan)
    v = M.value_metrics(actual, value)
    out.update(gini=v["gini"], spearman=v["spearman"], mae=v["mae"], total=v["total_rel_error"],
               top10=v["top_decile_capture"])
    return out


def print_table(rows: dict[str, dict]) -> None:
    cols = [("auc", "churn AUC", "{:.4f}"), ("pr_auc", "PR AUC", "{:.4f}"), ("brier", "Brier", "{:.4f}"),
            ("ece", "ECE", "{:.4f}"), ("gini", "value Gini", "{:.4f}"), ("spearman", "Spearman", "{:.4f}"),
            ("mae", "MAE", "{:.2f}"), ("total", "total rel.err", "{:+.1%}"), ("top10", "top-10% capture", "{:.3f}")]
    head = f"{'model':8s} " + " ".join(f"{h:>15s}" for _, h, _ in cols)
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        cells = []
        for k, _, fmt in cols:
            v = r.get(k, np.nan)
            cells.append(f"{'n/a' if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v):>15s}")
        print(f"{name:8s} " + " ".join(cells))


def pooled_frontier(actual, ev, p_buy, best_sp, best_gini) -> tuple[float, float, float, float]:
    """Diagnostic: tie every customer with P(buy) < t below the rest and scan t. Returns the t
    with the largest min(Spearman - best_sp, Gini - best_gini - MIN_GINI_GAIN) and its
    (margin, Spearman, Gini). t is chosen on the test answers, so this is a bound, not a model."""
    best = (np.nan, -np.inf, np.nan, np.nan)
    for t in np.arange(0.10, 0.40, 0.005):
        low = p_buy < t
        if not low.any() or low.all():
            continue
        v = np.where(low, -1.0, ev)
        m = M.value_metrics(actual, v)
        margin = min(m["spearman"] - best_sp, m["gini"] - best_gini - MIN_GINI_GAIN)
        if margin > best[1]:
            best = (float(t), float(margin), m["spearman"], m["gini"])
    return best


def oracle(test: pd.DataFrame, y: pd.DataFrame, *, horizon_days: int, n_jobs: int, seed: int = 0):
    """What the features hold at as_of: 5-fold cross-validated XGBoost fitted on the TEST
    window's own labels (churn classifier; two-part value: P(buy) x gamma E[spend | buy]) on
    every numeric feature + the pipeline's ratios and BG/NBD features. Not a model anyone can
    have at as_of; an upper reference for ours."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier, XGBRegressor

    from keyaccounts.models.churn import DEFAULT_PARAMS, feature_steps
    from keyaccounts.models.value import TwoPartValue

    F = Pipeline(feature_steps(horizon_days)).fit(test)
    T = F.transform(test).select_dtypes("number").to_numpy("float64")
    churned = y["churned"].to_numpy().astype(int)
    a = y["future_value"].to_numpy(float)
    kw = {**DEFAULT_PARAMS["xgb"], "n_jobs": n_jobs, "random_state": seed}  # the churn model's XGBoost settings
    p_churn, p_buy, ev = (np.zeros(len(a)) for _ in range(3))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(T, churned):
        p_churn[te] = XGBClassifier(**kw).fit(T[tr], churned[tr]).predict_proba(T[te])[:, 1]
        value = TwoPartValue(XGBClassifier(**kw), XGBRegressor(objective="reg:gamma", **kw)).fit(T[tr], a[tr])
        p_buy[te], ev[te] = value.predict_buy_proba(T[te]), value.predict(T[te])
    return p_churn, p_buy, ev


def print_diagnostics(y, rows, naive_value, ev, p_buy, *, best_sp, best_gini, test, horizon_days, n_jobs,
                      info) -> None:
    """Why the Spearman criterion fails at this as_of (diagnostic only: nothing here feeds
    the PASS/FAIL lines)."""
    from scipy.stats import spearmanr
    actual = y["future_value"].to_numpy(float)
    active = np.asarray(naive_value) > 0
    sp = lambda a, b: spearmanr(a, b).statistic  # noqa: E731
    print("Diagnostics (not models; nothing below feeds PASS/FAIL)")
    print(f"- The naive forecast ties {1 - active.mean():.0%} of customers at exactly 0 (no purchase in the "
          f"last H days); {(actual <= 0).mean():.0%} of targets are 0. Spearman rewards matching that tie.")
    print(f"  Among the {active.sum():,} who bought in the last H days: Spearman naive "
          f"{sp(naive_value[active], actual[active]):.4f}, ours {sp(ev[active], actual[active]):.4f}; "
          f"among the other {(~active).sum():,}: ours {sp(ev[~active], actual[~active]):.4f} (naive: all tied).")
    v = info.get("validation")
    if v:
        why = " (every customer bought within H: tenures are shorter)" if v["naive_zero_share"] < 0.01 else ""
        print(f"- At the validation cutoff {v['cutoff']} the naive forecast ties {v['naive_zero_share']:.0%} at 0{why}; "
              f"there, unpooled: Spearman ours {v['spearman_ours']:.4f} vs naive {v['spearman_naive']:.4f}, "
              f"Gini {v['gini_ours']:.4f} vs {v['gini_naive']:.4f}.")
    p_churn_o, p_buy_o, ev_o = oracle(test, y, horizon_days=horizon_days, n_jobs=n_jobs)
    mo = M.value_metrics(actual, ev_o)
    print(f"- Oracle (5-fold CV fitted on the test window's own labels): churn AUC "
          f"{roc_auc_score(y['churned'], p_churn_o):.4f}, value Gini {mo['gini']:.4f}, Spearman {mo['spearman']:.4f} "
          f"(ours {rows['ours']['auc']:.4f}, {rows['ours']['gini']:.4f}, {rows['ours']['spearman']:.4f}).")
    for name, e, pb in (("ours", ev, p_buy), ("oracle", ev_o, p_buy_o)):
        t, margin, s_, g_ = pooled_frontier(actual, e, pb, best_sp, best_gini)
        print(f"  tie P(buy) < t at the bottom for {name}, t chosen on the test answers = {t:.3f}: Spearman "
              f"{s_:.4f}, Gini {g_:.4f}; smaller margin to the two value targets {margin:+.4f}")
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--transactions", help=f"transactions file (default {DEFAULT_FILE})")
    ap.add_argument("--columns", help="column mapping canonical=yours,... (default: CDNOW's for the default file)")
    ap.add_argument("--date-format", help="strftime format of the timestamp column (default: CDNOW's for the default file)")
    ap.add_argument("--as-of", default="1997-10-01")
    ap.add_argument("--horizon-days", type=int, default=180)
    ap.add_argument("--step-days", type=int, default=7, help="days between training cutoffs")
    ap.add_argument("--max-snapshots", type=int, default=52)
    ap.add_argument("--min-history-days", type=int, default=14, help="first cutoff this long after the data starts")
    ap.add_argument("--n-jobs", type=int, default=2, help="XGBoost threads")
    args = ap.parse_args(argv)

    if args.transactions is None and not DEFAULT_FILE.exists():
        print(f"SKIP: {DEFAULT_FILE} not found (shared data absent); pass --transactions FILE")
        print("accuracy_pass=False")
        return 0
    t_start = time.time()
    as_of, H = pd.Timestamp(args.as_of), args.horizon_days
    tx = load(args)
    log(f"loaded {len(tx):,} transactions, {tx['timestamp'].min().date()}..{tx['timestamp'].max().date()}")
    if tx["timestamp"].max() < as_of + pd.Timedelta(days=H - 1):
        log("warning: the data end before as_of + H; the test labels are truncated")

    # test population and labels (the only place rows on/after as_of are read)
    test = build_features(Tables(truncate(tx, as_of)), as_of=as_of.date())
    test = test[test["frequency"] > 0]
    y = customer_labels(tx, as_of=as_of.date(), horizon_days=H, index=test.index)
    log(f"test: {len(test):,} customers, churn rate {y['churned'].mean():.3f}, "
        f"zero future value {(y['future_value'] <= 0).mean():.1%}")

    base = baselines(truncate(tx, as_of), as_of=as_of, horizon_days=H, index=test.index, recency=test["recency_days"])
    t0 = time.time()
    churn, value, info = train_ours(truncate(tx, as_of), as_of=as_of, horizon_days=H, step_days=args.step_days,
                                    max_snapshots=args.max_snapshots, min_history_days=args.min_history_days,
                                    n_jobs=args.n_jobs)
    train_s = time.time() - t0
    p = churn.predict_proba(test)[:, 1]
    ev = value.predict(test)

    actual = y["future_value"].to_numpy()
    rows = {name: row(y["churned"], b["churn_score"], b["churn_proba"], actual, b["value"]) for name, b in base.items()}
    rows["ours"] = row(y["churned"], p, p, actual, ev)

    cuts = info["cutoffs"]
    print(f"as_of {as_of.date()}  H = {H} d  test customers {len(test):,}  "
          f"training: {info['n_rows']:,} snapshot rows at {len(cuts)} cutoffs {min(cuts).date()}..{max(cuts).date()} "
          f"(validation fold {max(cuts).date()}; last label window ends {(max(cuts) + pd.Timedelta(days=H)).date()})")
    print(f"ours: churn {info['churn_params']}  value {info['value_params']}  training {train_s:.0f}s")
    print()
    print_table(rows)
    print("Churn scores: naive = recency, btyd = its P(no purchase in H); PR AUC: churn = positive class")
    print()

    best_auc = max(rows["naive"]["auc"], rows["btyd"]["auc"])
    best_gini = max(rows["naive"]["gini"], rows["btyd"]["gini"])
    best_sp = max(rows["naive"]["spearman"], rows["btyd"]["spearman"])
    strict_auc = float(roc_auc_score(y["churned"], base["btyd"]["rank_score"]))
    o = rows["ours"]
    checks = [
        ("training label windows end on/before as_of", max(cuts) + pd.Timedelta(days=H) <= as_of,
         f"last window ends {(max(cuts) + pd.Timedelta(days=H)).date()}"),
        (f"churn AUC >= best baseline + {MIN_AUC_GAIN}", o["auc"] >= best_auc + MIN_AUC_GAIN,
         f"{o['auc']:.4f} vs {best_auc:.4f} + {MIN_AUC_GAIN} (margin {o['auc'] - best_auc - MIN_AUC_GAIN:+.4f})"),
        (f"value Gini >= best baseline + {MIN_GINI_GAIN}", o["gini"] >= best_gini + MIN_GINI_GAIN,
         f"{o['gini']:.4f} vs {best_gini:.4f} + {MIN_GINI_GAIN} (margin {o['gini'] - best_gini - MIN_GINI_GAIN:+.4f})"),
        ("value Spearman >= best baseline", o["spearman"] >= best_sp,
         f"{o['spearman']:.4f} vs {best_sp:.4f} (margin {o['spearman'] - best_sp:+.4f})"),
        (f"|total relative error| <= {MAX_ABS_TOTAL_ERROR:.0%}", abs(o["total"]) <= MAX_ABS_TOTAL_ERROR,
         f"{o['total']:+.1%}"),
    ]
    print_diagnostics(y, rows, base["naive"]["value"], ev, value.predict_buy_proba(test), best_sp=best_sp,
                      best_gini=best_gini, test=test, horizon_days=H, n_jobs=args.n_jobs, info=info)
    ok = True
    for name, passed, detail in checks:
        ok &= bool(passed)
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
    strict = o["auc"] - strict_auc - MIN_AUC_GAIN
    print(f"INFO  stricter than the issue, churn AUC >= BG/NBD ranked by -E[purchases] + {MIN_AUC_GAIN}: "
          f"{'met' if strict >= 0 else 'not met'}, {o['auc']:.4f} vs {strict_auc:.4f} + {MIN_AUC_GAIN} (margin {strict:+.4f})")
    print(f"runtime {time.time() - t_start:.0f}s")
    print(f"accuracy_pass={ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
