"""Rich progress for the CLI: one bar over a command's steps, the current sub-step beside it,
messages kept above it, and a summary table at the end.

    with StepProgress(console, total=3) as sp:
        with sp.step("train"):
            sp.say("training churn model")      # shown beside the bar and printed above it
            sp.wrote(path)                       # listed in the summary table
            build_features(..., progress=sp.families())   # a second bar: one tick per family
    console.print(sp.summary())

A quiet console (`Console.quiet`, the CLI's --quiet) shows nothing; on a non-terminal the bar is
not animated and only the messages are printed (CI logs stay readable).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


@dataclass
class StepRecord:
    name: str
    seconds: float = 0.0
    status: str = "running"
    outputs: list[str] = field(default_factory=list)
    detail: str = ""


class StepProgress:
    """See the module docstring. `total` = number of steps (the bar's length)."""

    def __init__(self, console: Console, total: int, title: str = "steps"):
        self.console = console
        self.records: list[StepRecord] = []
        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.fields[step]}[/]"), BarColumn(bar_width=24),
            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
            console=console, transient=False, disable=console.quiet or not console.is_terminal)
        self._task = self._progress.add_task("", total=total, step=title)
        self._sub = self._progress.add_task("", total=1, step="", visible=False)

    def __enter__(self) -> StepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def step(self, name: str):
        """Time one step; mark it failed if it raises (and re-raise)."""
        rec = StepRecord(name)
        self.records.append(rec)
        self._progress.update(self._task, step=name, description="")
        t0 = time.perf_counter()
        try:
            yield rec
        except BaseException:
            rec.status = "failed"
            raise
        finally:
            rec.seconds = time.perf_counter() - t0
        rec.status = "done"
        self._progress.advance(self._task)
        self.console.print(f"[green]{escape(name)}[/] done in {rec.seconds:.1f}s")

    def say(self, message: str) -> None:
        """A sub-step message (may hold Rich markup): beside the bar and printed above it."""
        self._progress.update(self._task, description=message)
        self.console.print(f"  {message}")

    def families(self, label: str = "features"):
        """A `progress(family, done, total)` callback (see features.build_features) driving a
        second bar under the steps bar, hidden again when done == total. Prints nothing: on a
        non-terminal the step's own lines are enough."""
        def tick(family: str, done: int, total: int) -> None:
            self._progress.update(self._sub, step=f"  {label}", description=escape(family), total=total,
                                  completed=done, visible=done < total)
        return tick

    def wrote(self, path: str | Path) -> None:
        if self.records:
            self.records[-1].outputs.append(str(path))
        self.console.print(f"  wrote {escape(str(path))}")

    def summary(self, title: str = "summary") -> Table:
        t = Table(title=title, title_justify="left")
        for col in ("step", "status", "seconds", "outputs"):
            t.add_column(col, justify="right" if col == "seconds" else "left", overflow="fold")
        for r in self.records:
            t.add_row(r.name, r.status, f"{r.seconds:.1f}", "\n".join(r.outputs) or r.detail or "-")
        return t
