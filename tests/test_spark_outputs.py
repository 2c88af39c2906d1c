"""Spark folder outputs are all or nothing with the command's other outputs (issue 19,
criterion 2): a Parquet folder is staged as a temp folder beside its target and renamed only
when the whole command succeeded; the Spark branches check their outputs before any work."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keyaccounts import outputs
from keyaccounts.cli import app
from keyaccounts.engines import spark_unavailable_reason

runner = CliRunner()
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning:pyspark.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")]


def tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (temp files included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def parts(text: str):
    def write(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "part-0.parquet").write_text(text)
    return write


def test_a_folder_output_waits_for_the_whole_command(tmp_path):
    (tmp_path / "f.parquet").mkdir()
    (tmp_path / "f.parquet" / "part-0.parquet").write_text("old parts")
    (tmp_path / "s.csv").write_text("old scores")
    before = tree(tmp_path)
    with pytest.raises(RuntimeError), outputs.transaction():
        outputs.write_folder_atomic(tmp_path / "f.parquet", parts("new parts"))
        assert tree(tmp_path)["f.parquet/part-0.parquet"] == before["f.parquet/part-0.parquet"]  # not yet renamed
        raise RuntimeError("a later step failed")
    assert tree(tmp_path) == before  # previous folder and file as they were, no temp folder
    with outputs.transaction():
        outputs.write_folder_atomic(tmp_path / "f.parquet", parts("new parts"))
        outputs.write_atomic(tmp_path / "s.csv", lambda t: t.write_text("new scores"))
    assert (tmp_path / "f.parquet" / "part-0.parquet").read_text() == "new parts"
    assert (tmp_path / "s.csv").read_text() == "new scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet", "s.csv"]


def test_a_failed_rename_puts_the_previous_folder_back(tmp_path, monkeypatch):
    (tmp_path / "f.parquet").write_text("an older single-file output")
    (tmp_path / "g.parquet").mkdir()
    (tmp_path / "g.parquet" / "part-0.parquet").write_text("old g")
    before = tree(tmp_path)
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if Path(dst).name == "g.parquet" and not Path(src).name.endswith(".bak.tmp"):
            raise OSError(28, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="No space"), outputs.transaction():
        outputs.write_folder_atomic(tmp_path / "f.parquet", parts("new f"))
        outputs.write_folder_atomic(tmp_path / "g.parquet", parts("new g"))
    monkeypatch.setattr(os, "replace", real)
    assert any(Path(c).name == "g.parquet" for c in calls)
    assert tree(tmp_path) == before and (tmp_path / "f.parquet").is_file()


def test_spark_branches_check_outputs_before_any_work(tmp_path):
    """An output that is an input, or in a system location: exit 2 before a Spark session starts."""
    t = tmp_path / "t.csv"
    t.write_text("customer_id,timestamp,amount\n1,2024-01-02,10\n")
    common = ["-t", str(t), "--as-of", "2024-03-01", "--engine", "spark"]
    for cmd, out in (("features", str(t)), ("features", "/proc/ka.parquet"), ("score", str(t))):
        r = runner.invoke(app, [cmd, *common, "--out", out])
        assert r.exit_code == 2, r.output
        assert "--out" in r.output and "spark session" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


@pytest.fixture(scope="module")
def spark():
    if spark_unavailable_reason():
        pytest.skip(spark_unavailable_reason())
    from keyaccounts.engines.spark import spark_session
    return spark_session("local[2]", shuffle_partitions=2, conf={"spark.driver.memory": "1g"})


@pytest.mark.slow
def test_a_failed_pipeline_leaves_the_previous_spark_folder(spark, tmp_path, monkeypatch):
    """`run` on Spark: a rerun replaces the Parquet folder (not refused as 'a folder'), and a
    run whose later step fails leaves the previous folder and files byte-identical."""
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"customer_id": ["1", "2", "1", "3"], "timestamp": ["2024-01-02", "2024-01-05", "2024-02-01", "2024-02-03"],
                  "amount": [10.0, 5.0, 7.0, 3.0]}).to_csv("t.csv", index=False)
    base = {"as_of": "2024-03-01", "engine": {"name": "spark", "spark_master": "local[2]"},
            "inputs": {"transactions": {"path": "t.csv"}}}
    steps = [{"validate": {"out": "out/q.csv"}}, {"features": {"out": "out/f.parquet"}}]
    Path("ok.yaml").write_text(yaml.safe_dump({**base, "steps": steps}))
    for _ in range(2):
        r = runner.invoke(app, ["run", "ok.yaml"])
        assert r.exit_code == 0, r.output
    assert len(pd.read_parquet("out/f.parquet")) == 3
    before = tree(tmp_path)
    # a score step without a trained champion fails after the Spark folder was written
    failing = [*steps, {"score": {"out": "out/s.csv", "tracking_uri": "sqlite:///empty.db"}}]
    Path("bad.yaml").write_text(yaml.safe_dump({**base, "steps": failing}))
    r = runner.invoke(app, ["run", "bad.yaml"])
    assert r.exit_code == 2, r.output
    after = {k: v for k, v in tree(tmp_path).items() if k not in ("bad.yaml", "empty.db")}
    assert after == before
