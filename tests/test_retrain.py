"""`keyaccounts retrain`: retrain on age, drift or data growth, else say why not; the same data
and settings never register a new version."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from deploy_support import export_until, ka, trained, versions, write_pipeline
from typer.testing import CliRunner

from keyaccounts.cli import app
from keyaccounts.config import InputSpec, Pipeline, RetrainConfig
from keyaccounts.drift import reference_summary
from keyaccounts.errors import InputError
from keyaccounts.pipeline import customer_features, load_inputs, training_settings
from keyaccounts.retrain import decide, parse_as_of
from keyaccounts.synth import synthesize
from keyaccounts.tracking import data_fingerprint


def test_as_of_is_explicit_today_or_a_date():
    assert parse_as_of("today", today=dt.date(2026, 3, 4)) == dt.date(2026, 3, 4)
    assert parse_as_of(" 2025-10-01 ") == dt.date(2025, 10, 1)
    with pytest.raises(InputError, match="today"):
        parse_as_of(None)
    with pytest.raises(InputError, match="neither"):
        parse_as_of("yesterday")


class StubTracker:
    """The tracker reads `decide` makes: a champion card, its drift reference, earlier runs."""

    def __init__(self, card=None, reference=None, runs=None):
        self.card, self.reference = card, reference
        self.runs_frame = runs if runs is not None else pd.DataFrame()

    def check(self):
        pass

    def runs(self, family):
        return self.runs_frame

    def champion_card(self, name):
        return self.card

    def run_dict(self, run_id, path):
        return self.reference


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("rules")
    t = synthesize(n_customers=150, start="2023-01-01", end="2025-12-31", seed=2)
    t.transactions.to_csv(root / "tx.csv", index=False)
    p = Pipeline(inputs={"transactions": InputSpec(path=str(root / "tx.csv"))})
    loaded = load_inputs(p)
    then = p.model_copy(update={"as_of": dt.date(2024, 3, 1)})
    f = customer_features(loaded, then)
    reference = reference_summary(f[f["frequency"] > 0].drop(columns="as_of"))
    return p, loaded, reference


def test_each_rule_fires_alone_and_identical_training_blocks_all(tables):
    p, loaded, reference = tables
    n = len(loaded.tables.transactions)
    card = {"run_id": "r1", "version": "3", "params": {"as_of": "2024-03-01", "input_rows.transactions": str(n)}}

    def decision(rows=n, **rules):
        q = p.model_copy(update={"as_of": dt.date(2025, 10, 1), "retrain": RetrainConfig(**{
            "max_age_days": 1000, "drift_psi": 50.0, "min_new_rows_pct": 90.0, **rules})})
        c = {**card, "params": {**card["params"], "input_rows.transactions": str(rows)}}
        return decide(loaded, q, StubTracker(c, reference))

    quiet = decision()
    assert not quiet.retrain and quiet.fired == [] and quiet.champion == "churn-90d v3"
    assert [r.split(":")[0] for r in quiet.reasons] == ["age", "drift", "growth"]
    assert decision(max_age_days=500).fired == ["age"]  # 579 days
    assert decision(drift_psi=0.01).fired == ["drift"]  # 19 months on: e.g. the lifecycle stages moved
    assert decision(rows=int(n / 1.5), min_new_rows_pct=40.0).fired == ["growth"]  # +50 % rows
    assert decide(loaded, p.model_copy(update={"as_of": dt.date(2025, 10, 1)}), StubTracker(None)).fired == \
        ["no champion"]
    # an earlier finished training on this data with these settings: never again
    same = pd.DataFrame([{"run_id": "abc12345", "status": "FINISHED", "params.horizon_days": "90",
                          "params.as_of": "2024-03-01", "params.settings_hash": training_settings(p),
                          "params.data_fingerprint": data_fingerprint({"transactions": loaded.tables.transactions})}])
    blocked = decide(loaded, p.model_copy(update={"as_of": dt.date(2025, 10, 1), "retrain": RetrainConfig(
        max_age_days=1)}), StubTracker(card, reference, same))
    assert not blocked.retrain and blocked.fired == ["identical"] and "abc12345" in blocked.reasons[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Trained as of 2025-09-01 on the transactions exported that day."""
    return trained(tmp_path_factory.mktemp("retrain"))


@pytest.mark.slow
def test_rules_decide_and_identical_data_never_registers(ws):
    # same data, same settings: nothing to do, whatever the date
    v0 = versions(ws, "churn-90d")  # (a training may register the model and a baseline in its place)
    assert v0
    for as_of in ("2025-09-01", "2025-12-01"):
        res = ka(ws, "retrain", "-p", "p.yaml", "--as-of", as_of)
        assert res.returncode == 0, res.stdout
        assert "not retraining" in res.stdout and "identical version" in res.stdout, res.stdout
    assert versions(ws, "churn-90d") == v0
    # a month of new rows: each rule on its own, decided and said (dry run: nothing trained)
    before, after = export_until(ws, "2025-09-01"), export_until(ws, "2025-10-01")
    assert after > before
    lenient = '{max_age_days: 365, drift_psi: 50, min_new_rows_pct: 90}'
    write_pipeline(ws, "quiet.yaml", lenient)
    res = ka(ws, "retrain", "-p", "quiet.yaml", "--as-of", "2025-10-01")
    assert res.returncode == 0, res.stdout
    assert "not retraining" in res.stdout and "no rule fired" in res.stdout, res.stdout
    for rule in ("age: trained as of 2025-09-01, 30 days", "drift: ", f"growth: {before:,} -> {after:,}"):
        assert rule in res.stdout, (rule, res.stdout)
    write_pipeline(ws, "growth.yaml", '{max_age_days: 365, drift_psi: 50, min_new_rows_pct: 1}')
    res = ka(ws, "retrain", "-p", "growth.yaml", "--as-of", "2025-10-01", "--dry-run")
    assert res.returncode == 0 and "would retrain" in res.stdout and "growth" in res.stdout, res.stdout
    write_pipeline(ws, "age.yaml", '{max_age_days: 30, drift_psi: 50, min_new_rows_pct: 90}')
    res = ka(ws, "retrain", "-p", "age.yaml", "--as-of", "2025-10-01", "--dry-run")
    assert res.returncode == 0 and "would retrain" in res.stdout and "; age)" in res.stdout, res.stdout
    assert versions(ws, "churn-90d") == v0
    # the age rule for real: a new version; run again, the same data and settings: none
    res = ka(ws, "retrain", "-p", "age.yaml", "--as-of", "2025-10-01")
    assert res.returncode == 0 and "retraining" in res.stdout, res.stdout
    v1 = versions(ws, "churn-90d")
    assert len(v1) > len(v0)
    res = ka(ws, "retrain", "-p", "age.yaml", "--as-of", "2025-10-01")
    assert res.returncode == 0 and "identical version" in res.stdout, res.stdout
    assert versions(ws, "churn-90d") == v1


def test_missing_as_of_is_exit_2(tmp_path):
    res = CliRunner().invoke(app, ["retrain", "-p", str(write_pipeline(tmp_path))])
    assert res.exit_code == 2 and "--as-of today" in res.output and "Traceback" not in res.output, res.output
