"""The messy-input corpus (tests/data/bad/cases.yaml): one test per case, through the CLI.

Rejected cases: exit 2, the message names the file/column (and rows), no traceback, and
nothing is written. Fixed cases: exit 0 and the data-quality summary counts what was done.
Every case is also run twice to show that the same inputs give byte-identical outputs.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keyaccounts.cli import app

BAD = Path(__file__).parent / "data" / "bad"
CASES = yaml.safe_load((BAD / "cases.yaml").read_text(encoding="utf-8"))["cases"]
runner = CliRunner()


def _run(case: dict, out_dir: Path, monkeypatch, src: Path) -> tuple[object, Path]:
    out = out_dir / ("f.csv" if case["args"][0] == "features" else "q.csv")
    monkeypatch.chdir(src)
    args = [a.replace("{out}", str(out)) for a in case["args"]]
    return runner.invoke(app, args), out


@pytest.fixture
def src(tmp_path_factory, request) -> Path:
    """The corpus folder, or a copy with the generated (too big to commit) file added."""
    gen = request.param
    if not gen:
        return BAD
    folder = tmp_path_factory.mktemp("gen")
    for f in BAD.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / gen["file"]).write_text(gen["text"] + gen["repeat"] * gen["times"] + gen["after"], encoding="utf-8")
    return folder


@pytest.mark.parametrize(("case", "src"), [(c, c.get("generate")) for c in CASES],
                         ids=[c["id"] for c in CASES], indirect=["src"])
def test_case(case, src, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res, out = _run(case, out_dir, monkeypatch, src)
    assert res.exit_code == case["exit"], res.output
    assert "Traceback" not in res.output
    if case["exit"] != 0:
        assert "bad input" in res.output
        text = " ".join(res.output.split())  # the console wraps long lines
        for frag in case["expect"]:
            assert " ".join(frag.split()) in text, frag
        assert list(out_dir.iterdir()) == [], "a rejected input wrote something"
        return
    first = out.read_bytes()
    if "summary" in case:
        q = pd.read_csv(out, keep_default_na=False)
        exp = case["summary"]
        assert q.loc[0, "rows_read"] == exp["rows_read"] and q.loc[0, "rows_kept"] == exp["rows_kept"]
        assert q.loc[0, "dropped_by_reason"] == exp.get("dropped", "none")
        assert exp.get("notes", "none") in q.loc[0, "notes"]
    if "features" in case:
        f = pd.read_csv(out, index_col="customer_id", dtype={"customer_id": str}, keep_default_na=False)
        assert sorted(f.index) == sorted(case["features"]["ids"])
        for cid, values in case["features"].get("values", {}).items():
            for col, v in values.items():
                assert f.loc[cid, col] == pytest.approx(v), (cid, col)
    # idempotent: the same command again gives the same bytes (and leaves no temp files)
    res, out = _run(case, out_dir, monkeypatch, src)
    assert res.exit_code == 0 and out.read_bytes() == first
    assert [p.name for p in out_dir.iterdir()] == [out.name]


def test_every_policy_row_has_a_case():
    """The corpus covers the cases the robustness issue lists."""
    ids = {c["id"] for c in CASES}
    assert len(ids) == len(CASES)
    for needed in ("empty_file", "header_only", "wrong_delimiter_forced", "latin1_text", "utf8_bom",
                   "missing_required_column", "column_under_another_name", "mapping_to_absent_column",
                   "unparsable_dates_some_rows", "unparsable_dates_all_rows", "mixed_date_formats",
                   "dates_after_as_of", "currency_symbols_and_thousands", "nan_inf_amounts_few",
                   "nan_amounts_many", "blank_customer_ids", "duplicate_rows",
                   "duplicate_opportunity_ids_different_data", "closed_before_created", "unknown_stage",
                   "invoice_paid_before_issued", "huge_line_of_fields", "huge_garbage_line",
                   "ids_numeric_in_one_file_text_in_another"):
        assert needed in ids, needed
