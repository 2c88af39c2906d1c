"""Hypothesis-driven CLI fuzzing over every data command and table (issue 19, criterion 7):
bounded and seeded; each case exits 0 or 2 with no traceback, leaves its inputs byte-identical
and its outputs complete or absent. The engine is tools/cli_fuzz.py (run it for more cases)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TOOL = Path(__file__).resolve().parents[1] / "tools" / "cli_fuzz.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("cli_fuzz", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_fuzz"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The fuzz session's trained store (churn and value champions), trained once per module."""
    return load_tool().trained_store(tmp_path_factory.mktemp("fuzz-trained"))


def test_cli_fuzz_exit_codes_inputs_and_outputs(tmp_path, trained):
    counts = load_tool().fuzz(60, 19, f"sqlite:///{tmp_path}/mlflow.db", trained)
    assert counts["cases"] == 60
    assert counts["exit 0"] + counts["exit 2"] == 60
    assert counts["exit 0"] >= 10 and counts["exit 2"] >= 10  # both ways out were exercised
    assert sum(v for k, v in counts.items() if "(trained)" in k) >= 5  # a share ran on the trained store


@pytest.mark.parametrize(("command", "options"), [("score", ["--top", "5", "--reasons", "top:3"]), ("report", []),
                                                  ("forecast", ["--period", "month"])])
def test_clean_cases_on_the_trained_store_reach_a_full_write(tmp_path, trained, command, options):
    """The fuzz check on the trained store passes through a successful write, not only exit 2."""
    tool = load_tool()
    table = "opportunities" if command == "forecast" else "transactions"
    case = tool.Case(command, {table: []}, "csv", trained=True, options=options)
    counts = tool.Counter()
    tool.check_case(case, tool.base_tables(), f"sqlite:///{tmp_path}/empty.db", counts, trained)
    assert counts[f"{command} (trained) exit 0"] == 1, counts


def test_the_fuzz_check_catches_a_partial_output(tmp_path, monkeypatch):
    """The check can fail: a command that leaves a file behind on exit 2 is caught."""
    from keyaccounts import pipeline
    tool = load_tool()

    def leaky(loaded, p, params, say=print):
        Path(params["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(params["out"]).write_text("half")
        raise pipeline.InputError("injected after a direct write")
    monkeypatch.setattr(pipeline, "step_validate", leaky)
    monkeypatch.setitem(pipeline.STEPS, "validate", leaky)
    case = tool.Case("run", {"transactions": []}, "csv")
    with pytest.raises(AssertionError, match="partial output"):
        tool.check_case(case, tool.base_tables(), f"sqlite:///{tmp_path}/mlflow.db", tool.Counter())
