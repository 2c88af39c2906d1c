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


@pytest.fixture
def entry(monkeypatch):
    """keyaccounts._entry with os._exit replaced by SystemExit, and this process's own signal
    handlers put back afterwards (main leaves its teardown handlers installed)."""
    import signal

    from keyaccounts import _entry
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def exit_now(code):
        raise SystemExit(f"os._exit({code})")

    monkeypatch.setattr(_entry, "_exit_now", exit_now)
    yield _entry
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize(("where", "signum", "code", "word"), [
    ("keyaccounts.cli", 2, 130, "interrupted"), ("keyaccounts.cli", 15, 143, "terminated"),
    ("typer.main", 2, 130, "interrupted"), ("typer.main", 15, 143, "terminated")])
def test_signal_outside_a_command_is_one_line_and_its_exit_code_at_once(where, signum, code, word, entry,
                                                                        monkeypatch, capsys):
    """While the CLI imports (pandas & co.) or Typer works around the command; the process
    then exits at once (os._exit), without waiting for threads."""
    import builtins
    real_import = builtins.__import__

    def importing(name, *a, **k):
        if name == where:
            entry._raise(signum, None)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", importing)
    if where == "typer.main":  # cli is imported already: the signal lands in app()
        import keyaccounts.cli as cli
        monkeypatch.setattr(cli, "app", lambda: importing("typer.main"))
    with pytest.raises(SystemExit) as e:
        entry.main()
    assert e.value.code == f"os._exit({code})"
    assert capsys.readouterr().err == f"{word} outside a command's run: nothing half-written\n"


@pytest.mark.parametrize("code", [0, 1, 2, 130, 143])
def test_exit_codes_and_the_teardown(code, entry, monkeypatch):
    """An interrupted command (130/143) exits at once; any other keeps its code, and a signal
    during the teardown ends the process at once with that code."""
    import signal

    import keyaccounts.cli as cli

    def app():
        assert signal.getsignal(signal.SIGTERM) is entry._raise  # around the command
        raise SystemExit(code)

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as e:
        entry.main()
    if code in (130, 143):
        assert e.value.code == f"os._exit({code})"
        return
    assert e.value.code == code
    for s in (signal.SIGINT, signal.SIGTERM):
        with pytest.raises(SystemExit) as late:
            signal.getsignal(s)(s, None)
        assert late.value.code == f"os._exit({code})"


@pytest.mark.slow
def test_an_interrupted_command_does_not_wait_for_a_stuck_worker_thread(tmp_path):
    """What an interrupt inside MLflow's artifact thread pool left behind: a non-daemon worker
    nobody tells to stop. The interpreter would join it forever; the process exits with 130."""
    import subprocess
    code = """if True:
        import threading
        import keyaccounts.cli as cli
        from keyaccounts import _entry

        def app():
            threading.Thread(target=threading.Event().wait, daemon=False).start()
            raise SystemExit(130)

        cli.app = app
        _entry.main()
    """
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 130, res.stderr
