"""The weekly forecast call: rep calls per owner and period, disagreements with the model, the
reps' accuracy from their snapshot history (point in time), the synthetic reps of known
optimism, and the boundary checks of the new columns and table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.errors import InputError
from keyaccounts.forecast.core import period_table
from keyaccounts.forecast.repcall import attach_rep_calls, calls_as_of, disagreements, has_rep_calls, rep_accuracy, rep_call_table
from keyaccounts.schemas import prepare_table
from keyaccounts.synth import default_optimism, rep_calls, synthesize

AS_OF = "2025-06-01"


@pytest.fixture(scope="module")
def reps():
    t = synthesize(n_customers=800, start="2023-01-01", end="2025-06-30", seed=5)
    opps, snaps = rep_calls(t)
    return t, opps, snaps


def test_rep_accuracy_names_the_optimist(reps):
    t, opps, snaps = reps
    known = default_optimism(opps["owner"].dropna().unique())
    optimist = max(known, key=known.get)
    acc = rep_accuracy(snaps, opps, as_of=AS_OF, period="quarter").set_index("owner")
    per_rep = acc.drop(index="(all)")
    assert per_rep["rep_prob_bias"].idxmax() == optimist
    assert per_rep["rep_bias"].loc[optimist] > acc.loc["(all)", "rep_bias"]
    # the same funnel with an honest optimist: the bias is the optimism, not the rep's book
    _, opps0, snaps0 = (t, *rep_calls(t, optimism={k: 0.0 for k in known}))
    honest = rep_accuracy(snaps0, opps0, as_of=AS_OF, period="quarter").set_index("owner")
    assert per_rep.loc[optimist, "rep_prob_bias"] - honest.loc[optimist, "rep_prob_bias"] > 0.2
    assert (acc["calls"] > 0).all() and acc["model_brier"].isna().all()   # no model given: none beside


def test_rep_accuracy_reads_nothing_on_or_after_as_of(reps):
    _, opps, snaps = reps
    base = rep_accuracy(snaps, opps, as_of=AS_OF, period="month")
    cut = pd.Timestamp(AS_OF)
    later = snaps["snapshot_date"] >= cut
    s2 = snaps.copy()
    s2.loc[later, "rep_probability"] = 1.0 - s2.loc[later, "rep_probability"]   # later calls rewritten
    o2 = opps.copy()
    flip = o2["closed_date"] >= cut                                            # later outcomes flipped
    o2.loc[flip, "outcome"] = np.where(o2.loc[flip, "outcome"] == "won", "lost", "won")
    assert_frame_equal(rep_accuracy(s2, o2, as_of=AS_OF, period="month"), base)
    assert_frame_equal(rep_accuracy(s2.sample(frac=1.0, random_state=1), o2, as_of=AS_OF, period="month"), base)


def test_rep_accuracy_beside_the_model_on_the_same_calls():
    opps = pd.DataFrame({"opportunity_id": ["A", "B"], "owner": ["ann", "ann"], "amount": [100.0, 300.0],
                         "closed_date": pd.to_datetime(["2024-02-10", "2024-03-05"]), "outcome": ["won", "lost"]})
    snaps = pd.DataFrame({"opportunity_id": ["A", "B", "A"], "snapshot_date": pd.to_datetime(["2024-01-08"] * 2 + ["2024-02-20"]),
                          "rep_probability": [0.8, 0.5, 0.9], "expected_close_date": pd.to_datetime(["2024-02-01"] * 3)})
    model = pd.DataFrame({"snapshot_date": pd.to_datetime(["2024-01-05", "2024-01-05"]), "opportunity_id": ["A", "B"],
                          "probability": [0.6, 0.1]})
    acc = rep_accuracy(snaps, opps, as_of="2024-04-01", period="quarter", model_probabilities=model,
                       tolerance_days=6).set_index("owner")
    # A closed before the 02-20 snapshot: that call is not scored; both January calls are, beside the model
    row = acc.loc["ann"]
    assert row["calls"] == 2 and row["actual"] == 100.0
    assert row["rep_called"] == pytest.approx(0.8 * 100 + 0.5 * 300)
    assert row["rep_bias"] == pytest.approx((230.0 - 100.0) / 100.0)
    assert row["rep_brier"] == pytest.approx(((0.8 - 1) ** 2 + 0.5 ** 2) / 2)
    assert row["model_called"] == pytest.approx(0.6 * 100 + 0.1 * 300)
    assert row["model_brier"] == pytest.approx(((0.6 - 1) ** 2 + 0.1 ** 2) / 2)
    # a window not yet over at as_of is not scored
    assert rep_accuracy(snaps, opps, as_of="2024-03-15", period="quarter").empty


def _deals():
    return pd.DataFrame({"opportunity_id": ["D1", "D2", "D3", "D4"], "owner": ["ann", "ann", "bob", "bob"],
                         "stage": ["propose"] * 4, "amount": [100.0, 200.0, 400.0, 800.0],
                         "close_probability": [0.5, 0.5, 0.9, 0.2], "category": ["best_case"] * 2 + ["commit", "pipeline"]})


def test_rep_call_table_and_disagreements_by_hand():
    opps = pd.DataFrame({"opportunity_id": ["D1", "D2", "D3", "D4"], "rep_probability": [0.9, 0.3, np.nan, 0.65],
                         "rep_category": ["commit", None, "omitted", None],
                         "expected_close_date": pd.to_datetime(["2024-02-01", "2024-05-01", None, "2023-12-01"])})
    d = attach_rep_calls(_deals(), opps, commit=0.7, best_case=0.4)
    assert d["rep_category"].tolist() == ["commit", "pipeline", "omitted", "best_case"]   # derived where none given
    pt = period_table("2024-01-15", "quarter", 2)
    t = rep_call_table(d, pt, as_of="2024-01-15").set_index(["owner", "period"])
    assert t.loc[("ann", "2024Q1")].tolist() == [1, 100.0, 100.0, 90.0]
    assert t.loc[("ann", "2024Q2")].tolist() == [1, 0.0, 0.0, pytest.approx(60.0)]
    assert t.loc[("bob", "2024Q1")].tolist() == [1, 0.0, 800.0, pytest.approx(520.0)]   # past due: now; D3 omitted
    assert t.loc[("(all)", "2024Q1"), "rep_best_case"] == 900.0
    dis = disagreements(d)
    assert dis["opportunity_id"].tolist() == ["D4", "D1", "D2"]                # largest |rep - model| first
    assert dis["difference"].tolist() == pytest.approx([0.45, 0.4, -0.2])


def test_calls_as_of_reads_the_latest_snapshot_before_as_of():
    opps = pd.DataFrame({"opportunity_id": ["A"], "rep_probability": [0.99],
                         "expected_close_date": pd.to_datetime(["2024-06-01"])})
    snaps = pd.DataFrame({"opportunity_id": ["A", "A", "A"], "snapshot_date": pd.to_datetime(["2024-01-01", "2024-02-01",
                                                                                              "2024-03-01"]),
                          "rep_probability": [0.1, 0.2, 0.3]})
    now = calls_as_of(opps, snaps, as_of="2024-03-01")
    assert now["rep_probability"].tolist() == [0.2]
    assert now["expected_close_date"].tolist() == [pd.Timestamp("2024-06-01")]
    assert calls_as_of(opps, None, as_of="2024-03-01") is opps
    assert has_rep_calls(now) and not has_rep_calls(opps.drop(columns="rep_probability"))


def test_synthetic_snapshots_load_through_the_boundary(reps):
    _, opps, snaps = reps
    frame, rep = prepare_table(snaps.astype({"snapshot_date": "str"}), "opportunity_snapshots", file="snaps.csv")
    assert len(frame) == len(snaps) and rep.rows_kept == len(snaps)
    assert set(frame["rep_category"].dropna()) <= {"commit", "best_case", "pipeline", "omitted"}
    o, _ = prepare_table(opps, "opportunities", file="opps.csv")
    assert o["rep_probability"].notna().sum() == opps["rep_probability"].notna().sum() > 0
    # only deals open at the end carry today's call
    assert o.loc[o["rep_probability"].notna(), "outcome"].isna().all()


@pytest.mark.parametrize("column, value, words", [
    ("rep_probability", "1.5", "between 0 and 1"), ("rep_probability", "-0.1", "not negative"),
    ("rep_category", "maybe", "'commit', 'best_case', 'pipeline', 'omitted'")])
def test_bad_rep_columns_are_named(column, value, words):
    raw = pd.DataFrame({"opportunity_id": ["A", "B"], "created_date": ["2024-01-01"] * 2, "stage": ["prospecting"] * 2,
                        "amount": [1.0, 2.0], "rep_probability": ["0.5", "0.5"], "rep_category": ["commit", "Best Case"]})
    raw.loc[1, column] = value
    with pytest.raises(InputError) as e:
        prepare_table(raw, "opportunities", file="o.csv")
    assert e.value.column == column and words in str(e.value)


def test_synth_rep_calls_then_forecast_the_call(tmp_path):
    """`synth --rep-calls` writes the reps' calls and their snapshot history; `forecast
    --snapshots` reads them back through the boundary and writes the per-rep tables."""
    runner = CliRunner()
    data = tmp_path / "data"
    res = runner.invoke(app, ["synth", "--out", str(data), "--customers", "300", "--seed", "3", "--rep-calls"])
    assert res.exit_code == 0, res.output
    assert (data / "opportunity_snapshots.csv").is_file()
    assert "rep_probability" in pd.read_csv(data / "opportunities.csv", nrows=1).columns
    both = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--rep-calls", "--ramping-funnel"])
    assert both.exit_code == 2 and "--rep-calls" in both.output and not (tmp_path / "x").exists()
    out = tmp_path / "out" / "fc.csv"
    res = runner.invoke(app, ["forecast", "--opportunities", str(data / "opportunities.csv"),
                              "--history", str(data / "stage_history.csv"),
                              "--snapshots", str(data / "opportunity_snapshots.csv"),
                              "--as-of", "2025-06-01", "--out", str(out), "--no-track"])
    assert res.exit_code == 0, res.output
    reps = pd.read_csv(tmp_path / "out" / "fc_reps.csv")
    assert "(all)" in set(reps["owner"]) and reps["rep_brier"].between(0, 1).all()
    assert (tmp_path / "out" / "fc_owners.csv").is_file() and (tmp_path / "out" / "fc_disagreements.csv").is_file()
