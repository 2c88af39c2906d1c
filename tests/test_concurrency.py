"""Two writers, one output path: the file is always one writer's whole output, never a mix."""
from __future__ import annotations

import multiprocessing as mp
import shutil
import subprocess

import pandas as pd
import pytest
from robust_support import ENV, INPUTS, KA, ka, temp_files

from keyaccounts import io


def _writer(path: str, value: int, times: int) -> None:
    df = pd.DataFrame({"writer": [value] * 20_000, "x": range(20_000)})
    for _ in range(times):
        io.write_frame(df, path, index=False)


@pytest.mark.slow
def test_concurrent_atomic_writes_never_mix(tmp_path):
    path = tmp_path / "same.csv"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), v, 60)) for v in (1, 2)]
    for p in procs:
        p.start()
    seen = set()
    while any(p.is_alive() for p in procs):
        if path.exists():
            df = pd.read_csv(path)  # a reader at any moment sees one writer's whole file
            assert len(df) == 20_000 and df["writer"].nunique() == 1 and df["x"].iloc[-1] == 19_999
            seen.add(int(df["writer"].iloc[0]))
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert len(pd.read_csv(path)) == 20_000
    assert seen and [q.name for q in tmp_path.iterdir()] == ["same.csv"]


@pytest.mark.slow
def test_two_score_runs_into_one_path(ws, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(ws / "d", root / "d")
    shutil.copytree(ws / "models", root / "models")
    shutil.copytree(ws / "mlruns", root / "mlruns")
    runs = {top: subprocess.Popen([KA, "score", *INPUTS, "--out", "out/s.csv", "--top", top, "--reasons", "none"],
                                  cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for top in ("5", "40")}
    for _top, p in runs.items():
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0, out
    got = (root / "out" / "s.csv").read_bytes()
    n = len(pd.read_csv(root / "out" / "s.csv"))
    assert n in (5, 40)
    # whole: byte-identical to what that run writes alone
    res = ka(root, "score", *INPUTS, "--out", "out/alone.csv", "--top", str(n), "--reasons", "none")
    assert res.returncode == 0, res.stdout
    assert got == (root / "out" / "alone.csv").read_bytes()
    assert temp_files(root) == []
