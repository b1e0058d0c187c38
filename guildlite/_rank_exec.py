"""Each rank's first step under torchrun: run ``python -u <main> <flags>`` and keep its exit code.

guildlite starts ``torchrun ... <this file>`` (a script path: no package import) and passes the
op's main and flags in ``GUILDLITE_ARGV``, so torchrun's own option parser never sees them: a
script flag such as ``--n=3`` would otherwise be taken (or rejected) as a torchrun option.

The script runs as this process's child. Its exit code goes to ``$GUILDLITE_EXIT_DIR/rank<RANK>``
(torchrun itself reports any failure as 1), signals from torchrun are passed on to it, and both
processes die with their parent (a parent-death signal), so no rank outlives its torchrun.
"""

import ctypes
import json
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int, parent: int) -> None:
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(128 + sig)


def main() -> None:
    _die_with_parent(signal.SIGTERM, os.getppid())
    argv = json.loads(os.environ.pop("GUILDLITE_ARGV"))
    exit_dir = os.environ.pop("GUILDLITE_EXIT_DIR", None)
    shim = os.getpid()
    child = os.fork()
    if child == 0:
        # This shim only dies before its script when it is SIGKILLed: the script goes with it.
        _die_with_parent(signal.SIGKILL, shim)
        os.execv(sys.executable, [sys.executable, "-u", *argv])

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if exit_dir:
        try:
            with open(os.path.join(exit_dir, f"rank{os.environ.get('RANK', '0')}"), "w") as f:
                f.write(str(code))
        except OSError:
            pass
    if code < 0:  # killed by a signal: end the same way, as torchrun expects
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
