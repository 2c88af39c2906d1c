"""Console entry point. The CLI imports pandas, pydantic, Typer and Rich (about a second): a
Ctrl-C or SIGTERM in that window ends the process with 130/143 and one line, not a traceback,
as a signal does later on (handled by ``cli.guarded``)."""
from __future__ import annotations

import signal
import sys


class _Signalled(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Signalled(signum)


def main() -> None:
    """Run the ``keyaccounts`` CLI."""
    old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        from keyaccounts.cli import app
    except KeyboardInterrupt as e:
        terminated = getattr(e, "signum", signal.SIGINT) == signal.SIGTERM
        sys.stderr.write(f"{'terminated' if terminated else 'interrupted'} while starting: nothing was read or written\n")
        sys.exit(143 if terminated else 130)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    app()
