"""The shim every torchrun job runs through: torchrun itself (the agent) and each of its ranks.

guildlite starts ``python <this file> -m torch.distributed.run <torchrun options> <this file>``
(script paths: no package import) and passes the op's main and flags in ``GUILDLITE_ARGV``, so
torchrun's own option parser never sees them: a script flag such as ``--n=3`` would otherwise be
taken (or rejected) as a torchrun option.

**The agent** (command-line arguments given) runs torchrun in this process, with two repairs:

- Parent death reaches it as exactly one SIGTERM. The kernel sends the parent-death signal each
  time the child is reparented, and a SIGKILLed multi-threaded guildlite reparents it once per
  exiting thread (a 50-thread parent: 13 to 28 SIGTERMs). torchrun takes each SIGTERM as a new
  shutdown and, interrupted mid-shutdown, never stops its log-tailing threads; the interpreter
  then waits for them forever. The parent-death signal is re-armed as a private
  real-time signal whose handler disarms it and sends one SIGTERM.
- When torchrun's main returns or raises, the process exits at once (after atexit handlers and a
  flush) rather than join leftover non-daemon threads, so a torchrun whose shutdown a second
  signal did interrupt (a user's own ``kill``) still ends.

**A rank** (no arguments) runs the op's main as ``python -u`` would: ``sys.argv``,
``sys.path[0]`` and a lasting ``__main__`` module set as for ``python <script>`` or ``python -m
<module>``. Its exit code goes to ``$GUILDLITE_EXIT_DIR/rank<RANK>`` (torchrun itself reports any
failure as 1), and the rank dies with torchrun (a parent-death SIGTERM). When the main ends
cleanly but leaves torch's default process group open, it is destroyed here, while the
interpreter is still whole: torch documents that scripts should, and a gloo group left to
interpreter finalization aborts the rank (SIGABRT, "terminate called without an active
exception") about half the time with 4 ranks, failing a run whose work was done.
"""

import atexit
import builtins
import itertools
import json
import os
import runpy
import signal
import sys
import traceback
import types

_PR_SET_PDEATHSIG = 1
_PARENT_DIED = signal.SIGRTMIN + 7  # private: nothing else sends it to a job


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return True


def _die_with_parent() -> None:
    """A rank: SIGTERM when torchrun dies (armed here, not before exec: torchrun forks it)."""
    parent = os.getppid()
    if _prctl_pdeathsig(signal.SIGTERM) and os.getppid() != parent:  # torchrun died before it was armed
        os._exit(128 + signal.SIGTERM)


def _one_sigterm_on_parent_death() -> None:
    """The agent: guildlite armed a parent-death SIGTERM before exec; from here on its death
    arrives as ``_PARENT_DIED``, turned into a single SIGTERM. Had guildlite died before the
    re-arm, that first SIGTERM (no handler installed yet) would already have ended this process."""

    calls = itertools.count()

    def parent_died(signum: int, frame: object) -> None:
        # Python signal handlers nest: one interrupted at its first line runs again inside
        # itself. Each call takes a number in one C call; only the first sends the SIGTERM.
        if next(calls):
            return
        _prctl_pdeathsig(0)
        signal.signal(_PARENT_DIED, signal.SIG_IGN)  # drops the later reparents' signals, queued
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(_PARENT_DIED, parent_died)
    _prctl_pdeathsig(_PARENT_DIED)


def _record(code: object) -> None:
    exit_dir = os.environ.get("GUILDLITE_EXIT_DIR")
    if not exit_dir:
        return
    try:
        with open(os.path.join(exit_dir, f"rank{os.environ.get('RANK', '0')}"), "w") as f:
            f.write(str(_exit_status(code)))
    except OSError:
        pass


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1  # sys.exit("message") exits 1


def _close_process_group() -> None:
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception as e:  # the run's result stands; say what went wrong
        print(f"[guildlite] destroying the process group the script left open failed: {e}", file=sys.stderr)


def _run_as_main(argv: list, cwd_first: bool = True) -> None:
    """Run ``argv`` (``[script, args...]`` or ``[-m, module, args...]``) the way ``python`` would:
    its ``__main__`` module stays in ``sys.modules`` until interpreter exit, so its objects (a
    process group, its threads) live exactly as long as under ``python script.py``. Without
    ``cwd_first`` a module runs as an installed command would, the cwd not on ``sys.path``."""
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        if cwd_first:
            sys.path[0] = os.getcwd()
        else:
            del sys.path[0]  # this file's dir
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


def _user_frames(tb: object, shim: str = __file__) -> object:
    """``tb`` without its leading frames of this shim and of runpy: a traceback that starts at
    the user's script, as under ``python script.py``. (``shim`` is bound now: ``python -m`` runs
    the main module in this module's globals, ``__file__`` included.)"""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename  # type: ignore[attr-defined]
        if name != shim and not name.endswith(("runpy.py", "<frozen runpy>")):
            break
        tb = tb.tb_next  # type: ignore[attr-defined]
    return tb


def _to_run_log(text: str) -> bool:
    """Append ``text`` to the run's output.log only (not the console); False if there is none."""
    run_dir = os.environ.get("GUILDLITE_RUN_DIR")
    if not run_dir:
        return False
    try:
        with open(os.path.join(run_dir, "output.log"), "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        return False
    return True


class _FailureToLog:
    """A logging filter for torchrun's lines about a failed rank ("failed (exitcode: N) local_rank:
    ...", and "Sending process N closing signal SIGTERM" to the ranks still running): into
    output.log only, so that the console ends with the failing rank's own error."""

    def filter(self, record: object) -> bool:
        msg = record.getMessage()  # type: ignore[attr-defined]
        ours = "failed (exitcode" in msg or ("Sending process" in msg and "closing signal" in msg)
        return not (ours and _to_run_log(msg + "\n"))


def _agent(argv: list) -> None:
    import logging

    _one_sigterm_on_parent_death()
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").addFilter(_FailureToLog())
    status = 0
    try:
        # As the `torchrun` command: the cwd is the run dir, whose staged logging.py or
        # dataclasses.py must not replace the stdlib module for torchrun's own imports.
        _run_as_main(argv, cwd_first=False)
    except SystemExit as e:
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        status = _exit_status(e.code)
    except BaseException as e:
        # torchrun's report of a failed rank (tens of lines naming this shim) goes to output.log;
        # the console already shows the rank's own traceback, and ends with it.
        report = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        if type(e).__name__ != "ChildFailedError" or not _to_run_log(report):
            sys.stderr.write(report)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _rank() -> None:
    _die_with_parent()
    argv = json.loads(os.environ.pop("GUILDLITE_ARGV"))
    try:
        _run_as_main(argv)
    except SystemExit as e:
        _record(e.code)
        if not e.code:
            _close_process_group()
        raise
    except KeyboardInterrupt:
        _record(1)
        raise  # the interpreter reports it and exits as it would have
    except BaseException as e:
        _record(1)
        # Printed as the interpreter would (through sys.excepthook, the script's own if it set
        # one), minus this shim's frames: the traceback starts at the user's script.
        tb = _user_frames(e.__traceback__)
        sys.excepthook(type(e), e.with_traceback(tb), tb)  # type: ignore[arg-type]
        sys.exit(1)
    _record(0)
    _close_process_group()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        _agent(sys.argv[1:])
    else:
        _rank()
