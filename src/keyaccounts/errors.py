"""Errors that carry enough context for a one-screen message to the user."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class InputError(Exception):
    """Bad user input: names the file, the column and a few offending rows.

    The CLI turns it into a message and exit code 2; nothing is written.
    """

    message: str
    file: str | None = None
    column: str | None = None
    rows: pd.DataFrame | None = field(default=None, repr=False)
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.column:
            where.append(f"column '{self.column}'")
        head = f"{' / '.join(where)}: " if where else ""
        text = f"{head}{self.message}"
        if self.rows is not None and len(self.rows):
            text += "\noffending rows (line numbers in the file):\n" + self.rows.head(5).to_string()
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


class ConfigError(InputError):
    """A pipeline YAML or option that does not validate."""


# The exit code of the command that ran in this process, once it is decided: its outputs are
# committed (0) or its failure reported (2, 1, 130, 143). A signal after that point (the
# interpreter's teardown, the CLI's own return path) must not turn a finished command into
# 143: the console entry point reads this and exits with the decided code instead.
_DECIDED: list[int] = []


def decide_exit(code: int | None) -> None:
    """Record (or with None, forget) the decided exit code of the running command."""
    _DECIDED[:] = [] if code is None else [int(code)]


def decided_exit() -> int | None:
    return _DECIDED[0] if _DECIDED else None
