"""Signals in the CLI wrapper: one that Python would drop (raised inside a finalizer) still
stops the command with its exit code, and nothing is printed about it."""
from __future__ import annotations

import sys
import time

import pytest
import typer

from keyaccounts.cli import Terminated, guarded


@pytest.mark.parametrize(("exc", "code"), [(KeyboardInterrupt, 130), (Terminated, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_swallowed_by_a_finalizer_is_delivered_again(exc, code, capfd):
    class LandsInDel:  # as when the signal arrives while the GC runs a weakref callback
        def __del__(self):
            raise exc()

    hook = sys.unraisablehook

    @guarded
    def command():
        LandsInDel()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.005)
        return "ran on"

    start = time.monotonic()
    with pytest.raises(typer.Exit) as e:
        command()
    assert e.value.exit_code == code and time.monotonic() - start < 5
    err = capfd.readouterr().err
    assert "Exception ignored" not in err and "Traceback" not in err, err
    assert sys.unraisablehook is hook  # restored


def test_other_unraisable_errors_still_reach_the_previous_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    class Broken:
        def __del__(self):
            raise ValueError("x")

    @guarded
    def command():
        Broken()
        return 1

    assert command() == 1 and seen == [ValueError]


def test_failure_right_after_a_swallowed_interrupt_counts_as_the_interrupt(capfd):
    """A signal inside XGBoost's ctypes data callback is dropped by ctypes, and XGBoost then
    fails with its own error: the user pressed Ctrl-C, so say 'interrupted' (130), not
    'internal error' or 'bad input'."""
    class LandsInDel:
        def __del__(self):
            raise KeyboardInterrupt

    @guarded
    def command():
        LandsInDel()
        raise ValueError("Check failed: accumulated_rows == this->info_.num_row_")

    with pytest.raises(typer.Exit) as e:
        command()
    time.sleep(0.2)  # the redelivery was cancelled: nothing arrives later
    assert e.value.exit_code == 130
    err = capfd.readouterr().err
    assert "interrupted" in err and "internal error" not in err, err


@pytest.mark.parametrize(("signum", "code", "word"), [(2, 130, "interrupted"), (15, 143, "terminated")])
def test_signal_while_the_cli_imports_is_one_line_and_its_exit_code(signum, code, word, monkeypatch, capsys):
    import builtins
    import signal

    from keyaccounts import _entry
    real_import = builtins.__import__

    def importing(name, *a, **k):
        if name == "keyaccounts.cli":  # the signal lands while pandas & co. load
            _entry._raise(signum, None)
        return real_import(name, *a, **k)

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(builtins, "__import__", importing)
    with pytest.raises(SystemExit) as e:
        _entry.main()
    assert e.value.code == code
    assert capsys.readouterr().err == f"{word} while starting: nothing was read or written\n"
    assert {s: signal.getsignal(s) for s in handlers} == handlers
