"""Robustness stress, not a speed benchmark: send SIGINT/SIGTERM to real `keyaccounts`
processes at random moments and check what a user would see.

    .venv/bin/python tools/signal_stress.py [--command train|score|demo] [--n 30] [--seed 0]
        [--after TEXT] [--max-delay S] [--signal both|INT|TERM] [--workdir /tmp/ka-signal-stress]

Each run is signalled after a random delay, counted from the first output line containing
--after (train: "training" by default; score and demo: from process start, so some signals
land while Python starts). E.g. `--after "of model 'value-90d'" --max-delay 1.5` aims at the
value model's logging, gating and bundle export. A run passes
when it exits 0 (it had finished), 130 (SIGINT) or 143 (SIGTERM), or was killed by SIGTERM's
default action before printing anything (the interpreter was still starting); printed no
traceback and no "Exception ignored"; left no temp file of an atomic write and no MLflow run
RUNNING; and, for train, every exported bundle equal to the registry's champion.
Prints one line per run and `failed=K of N`; exit 1 if K > 0.
"""
from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from robust_support import ENV, INPUTS, KA, aliases, bundle_consistent, temp_files, trained_workspace  # noqa: E402

DELAY = {"train": (0.0, 2.5), "score": (0.0, 3.0), "demo": (0.5, 28.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--command", choices=sorted(DELAY), default="train")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--after", default=None, help="count the delay from the first line containing this")
    ap.add_argument("--max-delay", type=float, default=None, help="upper end of the random delay (s)")
    ap.add_argument("--signal", choices=("both", "INT", "TERM"), default="both",
                    help="send SIGINT or SIGTERM at random (both, the default), or only one of them")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ka-signal-stress"))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    root = a.workdir.absolute()
    if not (root / "models").exists():
        root.mkdir(parents=True, exist_ok=True)
        trained_workspace(root)
    failed = 0
    for i in range(a.n):
        low, high = DELAY[a.command]
        delay = rng.uniform(low, high if a.max_delay is None else a.max_delay)
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])  # drawn either way: a seed gives the same delays
        if a.signal != "both":
            sig = signal.Signals[f"SIG{a.signal}"]
        out_file = root / "out" / "s.csv"
        earlier = out_file.read_bytes() if out_file.exists() else None
        after = a.after if a.after is not None else ("training" if a.command == "train" else None)
        rc, out = run(a.command, root, delay, sig, after)
        problems = []
        # -15 with no output: SIGTERM's default action, before Python ran any keyaccounts code
        if rc not in (0, 130, 143) and not (rc == -signal.SIGTERM and not out.strip()):
            problems.append(f"exit {rc}")
        if "Traceback" in out or "Exception ignored" in out:
            problems.append("traceback printed")
        if temp_files(root):
            problems.append(f"temp files {temp_files(root)}")
        if a.command == "score" and rc != 0 and earlier is not None and out_file.read_bytes() != earlier:
            problems.append("earlier output changed")
        for db in root.rglob("mlflow.db"):
            with sqlite3.connect(db) as c:
                running = c.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0]
            if running:
                problems.append(f"{running} MLflow run(s) left RUNNING in {db}")
        if a.command == "train":
            for name in ("churn-90d", "value-90d"):
                try:
                    if bundle_consistent(root, name)["version"] != aliases(root)[name]:
                        problems.append(f"{name} bundle is not the champion")
                except (AssertionError, KeyError, FileNotFoundError) as e:
                    problems.append(f"{name} bundle: {e}")
        failed += bool(problems)
        print(f"{i:3d} {a.command} {signal.Signals(sig).name:7s} after {delay:5.2f}s -> exit {rc:3d} "
              f"{'; '.join(problems) or 'ok'}", flush=True)
        if problems:
            print(out[-3000:])
    print(f"failed={failed} of {a.n}")
    return 1 if failed else 0


def run(command: str, root: Path, delay: float, sig: int, after: str | None) -> tuple[int, str]:
    """(exit code, whole output) of one signalled run."""
    args = {"train": ["train", *INPUTS], "score": ["score", *INPUTS, "--out", "out/s.csv"],
            "demo": ["demo", "--workdir", str(root / "demo")]}[command]
    p = subprocess.Popen([KA, *args], cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, bufsize=1)
    head = []
    if after:
        for line in p.stdout:
            head.append(line)
            if after in line:
                break
    time.sleep(delay)
    p.send_signal(sig)
    rest = p.communicate()[0]
    return p.returncode, "".join(head) + rest


if __name__ == "__main__":
    sys.exit(main())
