"""The shared public datasets (../shared/data, or $KEYACCOUNTS_SHARED_DATA) through the
boundary, the feature code and the shipped pipelines. Skipped, with a reason, when absent.

Numbers asserted here are the datasets' documented shapes (SOURCE.txt in each folder).
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keyaccounts import datasets, io
from keyaccounts.cli import app
from keyaccounts.config import InputSpec, ReadOptions, load_pipeline
from keyaccounts.errors import InputError
from keyaccounts.features import Tables, build_features, credit
from keyaccounts.schemas import load_table, prepare_table

DATA = datasets.shared_data()
REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not found "
                       "(set KEYACCOUNTS_SHARED_DATA to its location)"),
]

CDNOW = DATA / "cdnow"
MAVEN = DATA / "maven_crm_sales_opportunities"
RECEIVABLES = DATA / "ibm_accounts_receivable" / "WA_Fn-UseC_-Accounts-Receivable.csv"
WIN_LOSS = DATA / "ibm_sales_win_loss" / "WA_Fn-UseC_-Sales-Win-Loss.csv.gz"
CDNOW_AS_OF = dt.date(1997, 10, 1)


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found")


def test_shared_data_constant_and_override(monkeypatch, tmp_path):
    assert datasets.SHARED_DATA == datasets.shared_data() or "KEYACCOUNTS_SHARED_DATA" in os.environ
    monkeypatch.setenv("KEYACCOUNTS_SHARED_DATA", str(tmp_path))
    assert datasets.shared_data() == tmp_path
    monkeypatch.delenv("KEYACCOUNTS_SHARED_DATA")
    assert datasets.shared_data() == REPO.parent / "shared" / "data"


# ---------------------------------------------------------------- CDNOW

@pytest.fixture(scope="module")
def cdnow_master():
    _need(CDNOW / "CDNOW_master.txt")
    spec = InputSpec(path=str(CDNOW / "CDNOW_master.txt"), columns=datasets.CDNOW_COLUMNS,
                     read=ReadOptions(date_format=datasets.CDNOW_DATE_FORMAT))
    return load_table("transactions", spec, as_of=CDNOW_AS_OF)


def test_cdnow_master_loads_with_255_exact_duplicates_dropped(cdnow_master):
    t, rep = cdnow_master
    assert rep.rows_read == 69_659
    assert rep.dropped == {"exact_duplicate": 255}
    assert rep.rows_kept == len(t) == 69_404
    assert t["customer_id"].nunique() == 23_570
    assert t["customer_id"].astype(str).str.fullmatch(r"\d{5}").all()  # zero padding kept
    assert t["timestamp"].min() == pd.Timestamp("1997-01-01")
    assert t["timestamp"].max() == pd.Timestamp("1998-06-30")
    assert (t["amount"] == 0).sum() == 80  # $0 orders are real rows: kept
    assert (t["amount"] >= 0).all() and (t["quantity"] >= 1).all()
    n_future = int((t["timestamp"] >= pd.Timestamp(CDNOW_AS_OF)).sum())
    assert rep.notes == [f"{n_future:,} rows on/after as_of (features ignore, labels use)"]


def test_cdnow_master_features_as_of_1997_10_01(cdnow_master):
    t, _ = cdnow_master
    f = build_features(Tables(t), as_of=CDNOW_AS_OF)
    before = t[t["timestamp"] < pd.Timestamp(CDNOW_AS_OF)]
    n_customers = before["customer_id"].astype(str).nunique()
    # a Q1-1997 cohort: every customer has bought before October 1997
    assert n_customers == 23_570
    assert len(f) == n_customers and f.index.is_unique
    first = before.groupby(before["customer_id"].astype(str), observed=True)["timestamp"].min()
    assert first.max() < pd.Timestamp("1997-04-01")
    spend = before.groupby(before["customer_id"].astype(str), observed=True)["amount"].sum()
    np.testing.assert_allclose(f["monetary_total"].to_numpy(), spend.reindex(f.index).to_numpy())
    # recency counts positive purchases: 70 customers bought only $0 orders before as_of
    positive = before[before["amount"] > 0]["customer_id"].astype(str).unique()
    no_positive = f.index.difference(positive)
    assert len(no_positive) == 70
    assert f.loc[no_positive, "recency_days"].isna().all() and (f.loc[no_positive, "frequency"] == 0).all()
    assert f.drop(no_positive)["recency_days"].between(1, 273).all()


def test_cdnow_sample_loads(tmp_path):
    _need(CDNOW / "CDNOW_sample.txt")
    raw = datasets.cdnow_sample(CDNOW / "CDNOW_sample.txt")
    assert len(raw) == 6_919 and list(raw.columns) == datasets.CDNOW_SAMPLE_NAMES
    t, rep = prepare_table(raw, "transactions", file="CDNOW_sample.txt", date_format=datasets.CDNOW_DATE_FORMAT,
                           header=False)
    assert t["customer_id"].nunique() == 2_357
    assert raw["sample_customer_id"].astype(int).nunique() == 2_357
    assert rep.dropped == {"exact_duplicate": 21}
    assert rep.rows_kept == 6_898
    # ids are the master file's: the sample is a subset
    master = io.read_frame(CDNOW / "CDNOW_master.txt")
    assert set(t["customer_id"].astype(str)) <= set(master["customer_id"])


# ---------------------------------------------------------------- Maven

MAVEN_RAW_COLUMNS = {"created_date": "engage_date", "stage": "deal_stage", "amount": "close_value",
                     "customer_id": "account", "owner": "sales_agent", "closed_date": "close_date"}


def test_maven_sales_pipeline_by_mapping_alone():
    _need(MAVEN / "sales_pipeline.csv")
    spec = InputSpec(path=str(MAVEN / "sales_pipeline.csv"), columns=MAVEN_RAW_COLUMNS,
                     read=ReadOptions(date_format="%Y-%m-%d"))
    o, rep = load_table("opportunities", spec, stages=datasets.MAVEN_STAGES)
    assert rep.rows_read == 8_800
    assert rep.dropped == {"blank_created_date": 500}  # every Prospecting deal
    assert rep.rows_kept == 8_300
    assert o["stage"].value_counts().to_dict() == {"won": 4_238, "lost": 2_473, "engaging": 1_589}
    assert o["amount"].isna().sum() == 1_589  # open deals have no value
    assert o["customer_id"].isna().sum() == 1_088
    assert o.loc[o["stage"] == "lost", "amount"].eq(0).all()  # why close_value leaks the outcome


@pytest.fixture(scope="module")
def maven():
    _need(MAVEN / "sales_pipeline.csv")
    raw = datasets.maven_tables(MAVEN)
    out = {}
    for name, frame in raw.items():
        out[name] = prepare_table(frame, name, file=f"maven:{name}", stages=datasets.MAVEN_STAGES,
                                  date_format="%Y-%m-%d")
    return raw, out


def test_maven_tables_validate(maven):
    raw, out = maven
    counts = {n: (r.rows_read, r.rows_kept, r.dropped) for n, (_, r) in out.items()}
    assert counts == {
        "opportunities": (8_800, 8_300, {"blank_created_date": 500}),
        "stage_history": (15_011, 15_011, {}),
        "customers": (85, 85, {}),
        "transactions": (4_238, 4_238, {}),
    }
    o = out["opportunities"][0]
    assert o["amount"].notna().all()  # list prices, also for open deals
    assert "GTXPro" not in set(raw["opportunities"]["product"])
    assert (o["product"] == "GTX Pro").sum() > 0
    assert set(o["stage"]) == {"won", "lost", "engaging"}
    t = out["transactions"][0]
    assert t["amount"].sum() == 10_005_534  # Won close_value total (SOURCE.txt)
    h = out["stage_history"][0]
    assert set(h["opportunity_id"]) == set(o["opportunity_id"])
    assert set(out["customers"][0]["customer_id"]) >= set(o["customer_id"].dropna())


def test_maven_close_value_amounts():
    _need(MAVEN / "sales_pipeline.csv")
    o = datasets.maven_tables(MAVEN, amount="close_value")["opportunities"]
    stage = o["stage"]
    assert o.loc[stage == "Lost", "amount"].astype(float).eq(0).all()
    assert o.loc[stage.isin(["Engaging", "Prospecting"]), "amount"].notna().all()
    with pytest.raises(ValueError, match="amount must be"):
        datasets.maven_tables(MAVEN, amount="guess")


# ---------------------------------------------------------------- IBM receivables

@pytest.fixture(scope="module")
def receivables():
    _need(RECEIVABLES)
    spec = InputSpec(path=str(RECEIVABLES), columns=datasets.IBM_RECEIVABLES_INVOICES,
                     read=ReadOptions(date_format=datasets.IBM_RECEIVABLES_DATE_FORMAT))
    return load_table("invoices", spec)


def test_ibm_receivables_validate(receivables):
    inv, rep = receivables
    assert rep.rows_read == rep.rows_kept == 2_466 and rep.dropped == {}
    assert inv["customer_id"].nunique() == 100
    assert inv["invoice_id"].is_unique
    assert inv["paid_date"].notna().all()
    assert inv["issue_date"].min() == pd.Timestamp("2012-01-03")
    assert set(inv.columns) == {"invoice_id", "customer_id", "issue_date", "due_date", "amount", "paid_date"}


def test_ibm_receivables_credit_features_match_the_files_own_days_late(receivables):
    inv, _ = receivables
    # after the last settlement every invoice is paid: days past due = the file's DaysLate
    c = credit(inv, as_of="2014-02-01")
    assert len(c) == 100 and c["n_invoices"].sum() == 2_466
    raw = io.read_frame(RECEIVABLES)
    days_late = raw["DaysLate"].astype(float).groupby(raw["customerID"]).mean()
    np.testing.assert_allclose(c["days_past_due_mean"].to_numpy(), days_late.reindex(c.index).to_numpy())
    late_share = (c["late_payment_share"] * c["n_invoices"]).sum() / c["n_invoices"].sum()
    assert late_share == pytest.approx((raw["DaysLate"].astype(int) > 0).mean())  # 35.6%
    assert (c["open_balance"] == 0).all()
    # mid-way, some invoices are open
    mid = credit(inv, as_of="2013-10-01")
    assert mid["open_balance"].sum() > 0 and len(mid) == 100


def test_ibm_receivables_as_transactions():
    _need(RECEIVABLES)
    spec = InputSpec(path=str(RECEIVABLES), columns=datasets.IBM_RECEIVABLES_TRANSACTIONS,
                     read=ReadOptions(date_format=datasets.IBM_RECEIVABLES_DATE_FORMAT))
    t, rep = load_table("transactions", spec)
    assert rep.rows_kept == 2_466 and rep.dropped == {}
    assert t["customer_id"].nunique() == 100


# ---------------------------------------------------------------- IBM win/loss

def test_ibm_win_loss_reads_but_is_not_a_canonical_table():
    _need(WIN_LOSS)
    raw = io.read_frame(WIN_LOSS)
    assert raw.shape == (78_025, 19)
    assert int(raw.duplicated().sum()) == 55
    assert raw["Opportunity Result"].value_counts().to_dict() == {"Loss": 60_398, "Won": 17_627}
    # the literal 'None' competitor is text, not a missing value
    assert (raw["Competitor Type"] == "None").sum() == 9_257
    # no dates at all: it cannot be an opportunities table, and the boundary says why
    with pytest.raises(InputError, match="required column 'created_date' is missing") as e:
        prepare_table(raw, "opportunities", file=str(WIN_LOSS),
                      mapping={"opportunity_id": "Opportunity Number", "stage": "Opportunity Result",
                               "amount": "Opportunity Amount USD"})
    assert WIN_LOSS.name in str(e.value)


# ---------------------------------------------------------------- the shipped pipelines via the CLI

@pytest.fixture
def repo_like(tmp_path, monkeypatch):
    """A working folder laid out like a checkout: the pipelines' relative paths
    (../shared/data/..., out/..., data/...) resolve inside tmp_path."""
    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA.resolve(), target_is_directory=True)
    monkeypatch.chdir(root)
    return root


def _run(pipeline: Path, root: Path):
    res = CliRunner().invoke(app, ["run", str(pipeline)])
    assert res.exit_code == 0, res.output
    p = load_pipeline(pipeline)
    outs = [Path(v) for step in p.steps for params in step.values() for k, v in (params or {}).items()
            if k.endswith("out")]
    for o in outs:
        assert (root / o).is_file(), o
    return p, res


def test_pipeline_cdnow_runs(repo_like):
    _need(CDNOW / "CDNOW_master.txt")
    p, res = _run(PIPELINES / "cdnow.yaml", repo_like)
    assert p.as_of == CDNOW_AS_OF
    f = pd.read_parquet(repo_like / "out/cdnow/features.parquet")
    assert len(f) == 23_570
    q = pd.read_csv(repo_like / "out/cdnow/quality.csv")
    assert q.loc[0, ["rows_read", "rows_kept"]].tolist() == [69_659, 69_404]
    assert q.loc[0, "dropped_by_reason"] == "exact_duplicate=255"


def test_pipeline_ibm_receivables_runs(repo_like):
    _need(RECEIVABLES)
    _run(PIPELINES / "ibm_receivables.yaml", repo_like)
    f = pd.read_parquet(repo_like / "out/ibm_receivables/features.parquet")
    assert len(f) == 100
    assert {"days_past_due_mean", "late_payment_share", "open_balance", "frequency"} <= set(f.columns)
    q = pd.read_csv(repo_like / "out/ibm_receivables/quality.csv").set_index("table")
    assert q.loc[["invoices", "transactions"], "rows_kept"].tolist() == [2_466, 2_466]


def test_pipeline_maven_runs(repo_like):
    _need(MAVEN / "sales_pipeline.csv")
    assert datasets.main(["maven", "--source", str(MAVEN), "--out", "data/maven"]) == 0
    assert sorted(p.name for p in (repo_like / "data/maven").iterdir()) == [
        "customers.csv", "opportunities.csv", "stage_history.csv", "transactions.csv"]
    _run(PIPELINES / "maven.yaml", repo_like)
    q = pd.read_csv(repo_like / "out/maven/quality.csv").set_index("table")
    assert q["rows_kept"].to_dict() == {"transactions": 4_238, "customers": 85, "opportunities": 8_300,
                                        "stage_history": 15_011}
    assert q.loc["opportunities", "dropped_by_reason"] == "blank_created_date=500"
    f = pd.read_parquet(repo_like / "out/maven/features.parquet")
    assert len(f) == 85
    d = pd.read_parquet(repo_like / "out/maven/deal_features.parquet")
    assert len(d) > 0 and d["amount"].notna().all()
    assert set(d["stage_at_as_of"]) <= {"prospecting", "engaging"}


@pytest.mark.slow
def test_pipeline_maven_forecast_runs(repo_like):
    _need(MAVEN / "sales_pipeline.csv")
    assert datasets.main(["maven", "--source", str(MAVEN), "--out", "data/maven"]) == 0
    _run(PIPELINES / "forecast.yaml", repo_like)
    per = pd.read_csv(repo_like / "out/maven/forecast.csv")
    assert per["period"].drop_duplicates().tolist() == ["2017Q4", "2018Q1"]
    tot = per[per["group"] == "(all)"].iloc[0]
    assert tot["p10"] <= tot["p50"] <= tot["p90"] and tot["expected"] > 0
    assert len(pd.read_csv(repo_like / "out/maven/forecast_deals.csv")) > 1000


def test_every_shipped_real_data_pipeline_is_tested():
    tested = {"cdnow.yaml", "ibm_receivables.yaml", "maven.yaml", "forecast.yaml"}
    # demo/train/score run on the synthetic demo tables: tests/test_cli.py runs them;
    # spark.yaml too: tests/test_spark.py::test_shipped_spark_pipeline_runs_features_train_score_on_spark
    shipped = {p.name for p in PIPELINES.glob("*.yaml")} - {"demo.yaml", "train.yaml", "score.yaml", "spark.yaml"}
    assert shipped <= tested, shipped - tested
