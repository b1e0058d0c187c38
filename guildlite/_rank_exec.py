"""Each rank's first step under torchrun: run the op's main, as ``python -u`` would, and keep its exit code.

guildlite starts ``torchrun ... <this file>`` (a script path: no package import) and passes the
op's main and flags in ``GUILDLITE_ARGV``, so torchrun's own option parser never sees them: a
script flag such as ``--n=3`` would otherwise be taken (or rejected) as a torchrun option.

The main runs in this same process (no second interpreter), with ``sys.argv``, ``sys.path[0]``
and a lasting ``__main__`` module set as ``python <script>`` or ``python -m <module>`` would set
them. Its exit code goes to ``$GUILDLITE_EXIT_DIR/rank<RANK>`` (torchrun itself reports any
failure as 1), and the rank dies with torchrun (a parent-death signal), so no rank outlives it.

When the main ends cleanly but leaves torch's default process group open, it is destroyed here,
while the interpreter is still whole: torch documents that scripts should, and a gloo group left
to interpreter finalization aborts the rank (SIGABRT, "terminate called without an active
exception") about half the time with 4 ranks, failing a run whose work was done.
"""

import builtins
import json
import os
import runpy
import signal
import sys
import types

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


def _close_process_group() -> None:
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception as e:  # the run's result stands; say what went wrong
        print(f"[guildlite] destroying the process group the script left open failed: {e}", file=sys.stderr)


def _run_as_main(argv: list) -> None:
    """Run ``argv`` (``[script, args...]`` or ``[-m, module, args...]``) the way ``python`` would:
    its ``__main__`` module stays in ``sys.modules`` until interpreter exit, so its objects (a
    process group, its threads) live exactly as long as under ``python script.py``."""
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[0] = os.getcwd()
        runpy._run_module_as_main(argv[1], alter_argv=True)  # type: ignore[attr-defined]  # as `python -m`
        return
    path = argv[0]
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __cached__=None, __builtins__=builtins)
    sys.modules["__main__"] = main
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    exec(code, main.__dict__)


def main() -> None:
    _die_with_parent()
    argv = json.loads(os.environ.pop("GUILDLITE_ARGV"))
    try:
        _run_as_main(argv)
    except SystemExit as e:
        _record(e.code)
        if not e.code:
            _close_process_group()
        raise
    except BaseException:
        _record(1)
        raise  # the interpreter prints the traceback and exits as it would have
    _record(0)
    _close_process_group()


if __name__ == "__main__":
    main()
