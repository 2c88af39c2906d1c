"""Console entry point: signals outside a command's own run.

- The CLI imports pandas, pydantic, Typer and Rich (about a second) and Typer parses the
  arguments before a command runs: a Ctrl-C or SIGTERM there ends the process with 130/143
  and one line, not a traceback, as a signal does while a command runs (``cli.guarded``).
- A command that was interrupted exits at once with 130/143: an interrupt can leave a library's
  non-daemon worker thread (MLflow's artifact thread pool) never told to stop, and the
  interpreter would wait for it forever.
- A command that ended otherwise has complete outputs and a decided exit code; a signal during
  the interpreter's teardown (about a second with XGBoost, MLflow and pandas loaded) ends the
  process at once with that code instead of -15 or a traceback; from the last atexit callback
  on (when Python puts handlers back to the default action) signals are ignored. "Decided" is
  kept in keyaccounts.errors as soon as the command returned or reported its failure, so a
  signal on the CLI's own return path does not turn a finished command into 130/143 either.
"""
from __future__ import annotations

import atexit
import os
import signal
import sys

INTERRUPTED = (130, 143)


class _Signalled(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _decided() -> int | None:
    """The exit code the command already decided (keyaccounts.errors), if it ran that far."""
    errors = sys.modules.get("keyaccounts.errors")
    return errors.decided_exit() if errors is not None else None


def _raise(signum, frame):
    code = _decided()
    if code is not None:  # the command is over: its own exit code, not 130/143
        _exit_now(code)
    if signum == signal.SIGTERM:  # one is enough: let the way out finish (a 2nd Ctrl-C may force it)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Signalled(signum)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def _block_signals() -> None:
    """Last atexit callback: after it the interpreter resets Python signal handlers to the
    default action (a SIGTERM would end a finished command with -15; any thread may take it),
    but leaves ignored ones ignored: the process exits with the command's code."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def main() -> None:
    """Run the ``keyaccounts`` CLI."""
    # registered before any library's callbacks, so it runs after all of them (LIFO)
    atexit.unregister(_block_signals)
    atexit.register(_block_signals)
    errors = sys.modules.get("keyaccounts.errors")
    if errors is not None:  # run in-process before (tests): no command has decided anything yet
        errors.decide_exit(None)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _raise)
    try:
        from keyaccounts.cli import app
        app()
        code = 0
    except KeyboardInterrupt as e:
        if _decided() is not None:  # landed after the command decided its code (its return path)
            _exit_now(_decided())
        terminated = getattr(e, "signum", signal.SIGINT) == signal.SIGTERM
        sys.stderr.write(f"{'terminated' if terminated else 'interrupted'} outside a command's run: "
                         "nothing half-written\n")
        code = 143 if terminated else 130
    except SystemExit as e:
        if not isinstance(e.code, (int, type(None))):
            raise
        code = e.code or 0
    if code in INTERRUPTED:
        _exit_now(code)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda signum, frame: _exit_now(code))
    sys.exit(code)
