"""Each rank's first step under torchrun: run the op's main, as ``python -u`` would, and keep its exit code.

guildlite starts ``torchrun ... <this file>`` (a script path: no package import) and passes the
op's main and flags in ``GUILDLITE_ARGV``, so torchrun's own option parser never sees them: a
script flag such as ``--n=3`` would otherwise be taken (or rejected) as a torchrun option.

The main runs in this same process (no second interpreter), with ``sys.argv``, ``sys.path[0]``
and ``__main__`` set as ``python <script>`` or ``python -m <module>`` would set them. Its exit
code goes to ``$GUILDLITE_EXIT_DIR/rank<RANK>`` (torchrun itself reports any failure as 1), and
the rank dies with torchrun (a parent-death signal), so no rank outlives it.
"""

import json
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # torchrun died before the signal was armed
        os._exit(128 + signal.SIGTERM)


def _record(code: object) -> None:
    exit_dir = os.environ.get("GUILDLITE_EXIT_DIR")
    if not exit_dir:
        return
    if code is None:
        code = 0
    elif not isinstance(code, int):
        code = 1  # sys.exit("message") exits 1
    try:
        with open(os.path.join(exit_dir, f"rank{os.environ.get('RANK', '0')}"), "w") as f:
            f.write(str(code))
    except OSError:
        pass


def main() -> None:
    _die_with_parent()
    argv = json.loads(os.environ.pop("GUILDLITE_ARGV"))
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        _record(e.code)
        raise
    except BaseException:
        _record(1)
        raise  # the interpreter prints the traceback and exits as it would have
    _record(0)


if __name__ == "__main__":
    main()
