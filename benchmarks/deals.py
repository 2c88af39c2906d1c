"""Deal-model backtest: the calibrated deal model vs the stage-rate baseline, out of time.

    python benchmarks/deals.py [--horizon 90] [--customers 3000] [--seeds 1 2] [--no-maven]

For each dataset and as_of date: the tables are cut to what was known at as_of
(`models.deal.known_at`: deals created before as_of, outcomes/stages/history/transactions
dated on or after as_of removed), the model is trained on those (`train_deal_model`), and
it is scored on the deals open at as_of, labelled won_within_horizon over [as_of, as_of + H)
from the full tables. Prints per as_of: training rows, test deals, base rate, AUC and Brier
of the model and of the baseline side by side, and the validation (cross-fitted) AUC.

Maven CRM (fictitious; ../shared/data/maven_crm_sales_opportunities, skipped when absent):
as_of 2017-07-01 .. 2017-10-01; amount = list price (close_value would leak the outcome).
Three variants: 'maven' as the files are; 'maven-noacct' with the blank-account deals
removed from training and test; 'maven-nofeat' all deals, no account features. Why: the
account is blank on 1,088 deals, all of them still open at the end of the data, so a
blank-account deal is never won in any window. A blank account makes every account feature
0 (no won/lost deals, no spend), and once the accounts have history (from mid-2017) that
alone separates "never closes" deals: AUC ~0.8 as the files are. The blank is an end-of-data
fact (closed deals all have their account), not something known about a deal at as_of, so
'maven' overstates; 'maven-noacct' and 'maven-nofeat' are the honest figures.
Synthetic (`synth.synthesize`, owner skill drives win rates): as_of 2024-10-01 .. 2025-07-01.
The last line is `deal_auc_vs_baseline=X`: mean (model AUC - baseline AUC) over all rows.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import pandas as pd

from keyaccounts import datasets, synth
from keyaccounts.features import Tables
from keyaccounts.labels import deal_labels
from keyaccounts.models.deal import NUMERIC_FEATURES, deal_frame, known_at, train_deal_model
from keyaccounts.models.metrics import classification_metrics
from keyaccounts.schemas import prepare_table

MAVEN_AS_OF = ("2017-07-01", "2017-08-01", "2017-09-01", "2017-10-01")
NO_ACCOUNT_FEATURES = tuple(f for f in NUMERIC_FEATURES if not f.startswith(("account_", "amount_vs_account")))
SYNTH_AS_OF = ("2024-10-01", "2025-01-01", "2025-04-01", "2025-07-01")


def maven_tables() -> Tables | None:
    folder = datasets.shared_data() / "maven_crm_sales_opportunities"
    if not (folder / "sales_pipeline.csv").is_file():
        return None
    raw = datasets.maven_tables(folder)
    t = {n: prepare_table(f, n, file=f"maven:{n}", stages=datasets.MAVEN_STAGES, date_format="%Y-%m-%d")[0]
         for n, f in raw.items()}
    return Tables(transactions=t["transactions"], customers=t["customers"],
                  opportunities=t["opportunities"], stage_history=t["stage_history"])


def without_blank_accounts(tables: Tables) -> Tables:
    o = tables.opportunities
    keep = o["customer_id"].notna()
    h = tables.stage_history
    return dataclasses.replace(tables, opportunities=o[keep],
                               stage_history=h[h["opportunity_id"].isin(o.loc[keep, "opportunity_id"])])


def backtest(name: str, tables: Tables, as_ofs, *, horizon: int, open_stages, step: int,
             max_snapshots: int, n_val: int, params=None, features=NUMERIC_FEATURES) -> list[dict]:
    rows = []
    for as_of in as_ofs:
        t0 = time.perf_counter()
        past = known_at(tables, as_of=as_of, open_stages=open_stages)
        res = train_deal_model(past, as_of=as_of, horizon_days=horizon, open_stages=open_stages,
                               step_days=step, max_snapshots=max_snapshots, n_val_cutoffs=n_val,
                               params=params, features=features)
        X = deal_frame(tables, as_of=as_of, open_stages=open_stages)
        y = deal_labels(tables.opportunities, as_of=as_of, horizon_days=horizon, index=X.index)["won_within_horizon"]
        m = classification_metrics(y, res.model.predict_proba(X)[:, 1])
        b = classification_metrics(y, res.baseline.predict_proba(X)[:, 1])
        row = {"data": name, "as_of": as_of, "n_train": res.n_train, "n_test": len(X),
               "base_rate": m["base_rate"], "model_auc": m["roc_auc"], "base_auc": b["roc_auc"],
               "model_brier": m["brier"], "base_brier": b["brier"], "model_ece": m["ece"],
               "val_auc": res.metrics.get("roc_auc", np.nan), "refused": res.refused_reason,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"{name:12s} {as_of}  train {row['n_train']:6d}  test {row['n_test']:5d}  rate {row['base_rate']:.3f}  "
              f"AUC model {row['model_auc']:.3f} base {row['base_auc']:.3f}  "
              f"Brier model {row['model_brier']:.4f} base {row['base_brier']:.4f}  "
              f"ECE {row['model_ece']:.3f}  val AUC {row['val_auc']:.3f}  ({row['seconds']:.1f}s)"
              + (f"  REFUSED: {res.refused_reason}" if res.refused_reason else ""), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument("--step", type=int, default=30)
    ap.add_argument("--max-snapshots", type=int, default=12)
    ap.add_argument("--n-val-cutoffs", type=int, default=1)
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--deals-per-customer", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-maven", action="store_true")
    ap.add_argument("--params", type=json.loads, default=None, help="XGBoost overrides as JSON")
    args = ap.parse_args(argv)
    kw = dict(horizon=args.horizon, step=args.step, max_snapshots=args.max_snapshots, n_val=args.n_val_cutoffs,
              params=args.params)
    print(f"H = {args.horizon} days, cutoffs every {args.step} days (at most {args.max_snapshots}), "
          f"{args.n_val_cutoffs} validation cutoff(s); AUC/Brier on deals open at as_of, labelled by [as_of, as_of+H)")
    rows = []
    maven = None if args.no_maven else maven_tables()
    if maven is None:
        print("maven: skipped (" + ("--no-maven" if args.no_maven else
              f"{datasets.shared_data() / 'maven_crm_sales_opportunities'} not found") + ")")
    else:
        rows += backtest("maven", maven, MAVEN_AS_OF, open_stages=list(datasets.MAVEN_OPEN), **kw)
        rows += backtest("maven-noacct", without_blank_accounts(maven), MAVEN_AS_OF,
                         open_stages=list(datasets.MAVEN_OPEN), **kw)
        rows += backtest("maven-nofeat", maven, MAVEN_AS_OF, open_stages=list(datasets.MAVEN_OPEN),
                         features=NO_ACCOUNT_FEATURES, **kw)
    for seed in args.seeds:
        s = synth.synthesize(n_customers=args.customers, seed=seed, deals_per_customer=args.deals_per_customer)
        tables = Tables(transactions=s.transactions, customers=s.customers, opportunities=s.opportunities,
                        stage_history=s.stage_history)
        rows += backtest(f"synth-{seed}", tables, SYNTH_AS_OF, open_stages=list(synth.STAGES_OPEN), **kw)
    df = pd.DataFrame(rows)
    df["auc_diff"] = df["model_auc"] - df["base_auc"]
    df["group"] = df["data"].str.replace(r"-\d+$", "", regex=True)
    for g, part in df.groupby("group", sort=False):
        print(f"mean {g:12s} AUC model {part['model_auc'].mean():.3f} base {part['base_auc'].mean():.3f}  "
              f"Brier model {part['model_brier'].mean():.4f} base {part['base_brier'].mean():.4f}  "
              f"AUC diff {part['auc_diff'].mean():+.3f}")
    print(f"deal_auc_vs_baseline={df['auc_diff'].mean():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
