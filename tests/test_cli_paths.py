"""Paths on the command line follow the rule of a pipeline's paths (issue 19, criterion 3):
${VAR}, $VAR and ~ expand in every path option of every command; an unset ${VAR} is bad input
(exit 2) naming the option and the variable, with nothing written (no literal '${VAR}' folder)."""
from __future__ import annotations

import typing
from pathlib import Path

import pandas as pd
import pytest
import typer.main
from typer.testing import CliRunner

from keyaccounts.cli import app

runner = CliRunner()

# The options each command needs before it looks at its paths (a later repeat of an option wins).
BASE = {
    "synth": ["--out", "d"], "validate": [], "features": ["--out", "f.csv"], "run": ["p.yaml"],
    "train": [], "retrain": ["--pipeline", "p.yaml"], "score": ["--out", "s.csv"], "models": [],
    "report": ["--out", "r.html"], "demo": [], "forecast": ["--out", "fc.csv"],
}


def path_options() -> list[tuple[str, str]]:
    """(command, option as the user writes it) for every Path-valued option or argument of every
    command, plus --tracking-uri; names from the Click command Typer builds."""
    found = []
    for name, command in typer.main.get_command(app).commands.items():
        hints = typing.get_type_hints(command.callback.__wrapped__)
        for param in command.params:
            if Path in (typing.get_args(hints[param.name]) or (hints[param.name],)) or param.name == "tracking_uri":
                longs = [o for o in param.opts if o.startswith("--")]
                found.append((name, longs[0] if param.param_type_name == "option" else param.name.upper()))
    return found


def test_every_command_has_its_path_options_listed():
    cmds = {c for c, _ in path_options()}
    assert cmds == set(BASE), cmds ^ set(BASE)
    assert ("score", "--compare-to") in path_options() and ("run", "PIPELINE") in path_options()


@pytest.mark.parametrize(("command", "option"), path_options())
def test_unset_variable_in_any_path_option_is_named(tmp_path, monkeypatch, command, option):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KA_UNSET_19", raising=False)
    value = "sqlite:///${KA_UNSET_19}/m.db" if option == "--tracking-uri" else "${KA_UNSET_19}/x.csv"
    args = [command, *BASE[command]]
    args = [command, value] if option == "PIPELINE" else [*args, option, value]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (args, res.output)
    assert option in res.output and "${KA_UNSET_19} is not set" in res.output, res.output
    assert "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []  # nothing created, no '${KA_UNSET_19}' folder


def test_set_variables_and_home_expand_in_inputs_and_outputs(tmp_path, monkeypatch):
    data = tmp_path / "in"
    data.mkdir()
    pd.DataFrame({"customer_id": ["a", "b", "a"], "timestamp": ["2024-01-02", "2024-01-03", "2024-02-01"],
                  "amount": [10.0, 20.0, 5.0]}).to_csv(data / "t.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KA_IN_19", str(data))
    monkeypatch.setenv("KA_OUT_19", str(tmp_path / "o"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    res = runner.invoke(app, ["features", "-t", "${KA_IN_19}/t.csv", "--as-of", "2024-03-01",
                              "--out", "${KA_OUT_19}/f.csv"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "o" / "f.csv")) == 2
    res = runner.invoke(app, ["validate", "-t", "$KA_IN_19/t.csv", "--out", "~/q.csv"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "home" / "q.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "in", "o"]  # no literal '$'/'~' folders
