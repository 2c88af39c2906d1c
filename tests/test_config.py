"""Pipeline YAML validation (config.load_pipeline) and --columns parsing."""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from keyaccounts.config import (
    ConfigError,
    FeatureConfig,
    InputSpec,
    Pipeline,
    StageConfig,
    load_pipeline,
    normalise_stage,
    parse_columns,
)
from keyaccounts.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return p


GOOD = """
    name: t
    as_of: 2024-03-01
    horizon_days: 30
    inputs:
      transactions:
        path: data/t.csv
        columns: {customer_id: CustomerID, timestamp: InvoiceDate}
        read: {date_format: "%d/%m/%Y", sep: ";"}
    stages:
      open: [Prospecting, Engaging]
      won: [Won]
      lost: [Lost]
    steps:
      - validate:
      - features:
          out: out/t/features.parquet
    """


def test_good_pipeline_parses(tmp_path):
    p = load_pipeline(_yaml(tmp_path, GOOD))
    assert p.name == "t" and p.as_of == dt.date(2024, 3, 1) and p.horizon_days == 30
    t = p.inputs["transactions"]
    assert t.columns == {"customer_id": "CustomerID", "timestamp": "InvoiceDate"}
    assert t.read.date_format == "%d/%m/%Y" and t.read.sep == ";" and t.read.header is True
    assert p.steps == [{"validate": None}, {"features": {"out": "out/t/features.parquet"}}]
    assert p.stages.canonical() == {"prospecting": "prospecting", "engaging": "engaging", "won": "won", "lost": "lost"}


def _error(tmp_path, text: str) -> str:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_pipeline(path)
    assert isinstance(e.value, InputError)  # the CLI turns it into exit code 2
    msg = str(e.value)
    assert str(path) in msg
    return msg


def test_unknown_top_level_key(tmp_path):
    msg = _error(tmp_path, GOOD.rstrip(" ") + "    asof: 2024-01-01\n")
    assert "asof" in msg and "Extra inputs are not permitted" in msg


def test_unknown_nested_key_names_its_path(tmp_path):
    msg = _error(tmp_path, GOOD.replace("date_format:", "dateformat:"))
    assert "inputs.transactions.read.dateformat" in msg


def test_unknown_table(tmp_path):
    msg = _error(tmp_path, GOOD.replace("  transactions:\n", "  sales:\n"))
    assert "inputs.sales" in msg


def test_unknown_step(tmp_path):
    msg = _error(tmp_path, GOOD.replace("- validate:", "- deploy:"))
    assert "unknown step 'deploy'" in msg and "validate, features" in msg


def test_step_with_two_names(tmp_path):
    msg = _error(tmp_path, GOOD.replace("      - validate:\n", "      - {validate: null, features: null}\n"))
    assert "exactly one name" in msg


@pytest.mark.parametrize("value", ["2024-13-01", "yesterday", "01/03/2024"])
def test_bad_as_of(tmp_path, value):
    msg = _error(tmp_path, GOOD.replace("as_of: 2024-03-01", f"as_of: '{value}'"))
    assert "as_of" in msg


def test_bad_horizon_and_windows(tmp_path):
    assert "horizon_days" in _error(tmp_path, GOOD.replace("horizon_days: 30", "horizon_days: 0"))
    msg = _error(tmp_path, GOOD.rstrip(" ") + "    features: {windows_days: [30, -1]}\n")
    assert "windows_days must be a non-empty list of positive day counts" in msg


def test_stage_in_two_groups(tmp_path):
    msg = _error(tmp_path, GOOD.replace("won: [Won]", "won: [Won, ' prospecting ']"))
    assert "stage ' prospecting ' listed in both 'open' and 'won'" in msg


def test_missing_pipeline_file(tmp_path):
    with pytest.raises(ConfigError, match="pipeline file not found") as e:
        load_pipeline(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(e.value)


def test_not_yaml_and_not_a_mapping(tmp_path):
    assert "not valid YAML" in _error(tmp_path, "inputs: [unclosed\n")
    assert "top level must be a mapping" in _error(tmp_path, "- a\n- b\n")


def test_empty_yaml_is_the_default_pipeline(tmp_path):
    p = load_pipeline(_yaml(tmp_path, "\n"))
    assert p == Pipeline()
    assert p.as_of is None and p.steps == []


def test_input_paths_expand_vars_and_user(monkeypatch):
    monkeypatch.setenv("KA_DATA", "/data/x")
    assert InputSpec(path="${KA_DATA}/t.csv").path == "/data/x/t.csv"
    assert not InputSpec(path="~/t.csv").path.startswith("~")


def test_missing_input_file_is_reported_when_loading(tmp_path, monkeypatch):
    # the YAML itself is valid; the missing input surfaces, with its path, when read
    from typer.testing import CliRunner

    from keyaccounts.cli import app
    monkeypatch.chdir(tmp_path)  # the steps' relative out paths
    p = _yaml(tmp_path, GOOD.replace("data/t.csv", str(tmp_path / "missing.csv")))
    res = CliRunner().invoke(app, ["run", str(p)])
    assert res.exit_code == 2
    assert not (tmp_path / "out").exists()
    assert "file not found" in res.output and "missing.csv" in res.output


def test_defaults():
    assert StageConfig().canonical()["closed won"] == "won"
    assert FeatureConfig(windows_days=[90, 30, 30]).windows_days == [30, 90]
    assert normalise_stage("  Closed_Won ") == "closed won"


def test_shipped_pipelines_validate():
    for path in sorted((REPO / "pipelines").glob("*.yaml")):
        p = load_pipeline(path)
        assert p.as_of is not None, path
        assert p.steps, path


# ---------------------------------------------------------------- --columns

def test_parse_columns():
    assert parse_columns(None) == {}
    assert parse_columns("") == {}
    assert parse_columns("customer_id=CustomerID, timestamp = Invoice Date,") == {
        "customer_id": "CustomerID", "timestamp": "Invoice Date"}
    assert parse_columns("invoices.amount=Total") == {"invoices.amount": "Total"}
    # only the first '=' splits
    assert parse_columns("amount=a=b") == {"amount": "a=b"}


@pytest.mark.parametrize("arg", ["customer_id", "customer_id=", "=CustomerID", "a=b,c"])
def test_parse_columns_errors(arg):
    with pytest.raises(ConfigError, match="must look like canonical=YourColumn"):
        parse_columns(arg)
