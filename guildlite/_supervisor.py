"""Owning a run away from the command that started it, on every backend.

``guildlite run --detach`` stages the run (or the batch and its trials) and hands it over
(``hand_over``) to a supervisor process of its own session (``python -m guildlite._detached``),
which starts it, forwards signals, records every end and fires ``on_run_end``, exactly as a
foreground ``guildlite run`` does: it *is* that foreground code, with nobody watching.

A backend whose jobs run on other machines records a job's end where it runs and, when no owner
takes the end in time (killed), fires ``on_run_end`` there: ``fire_end`` and ``end_batch``, with
the plugins built by the same function as a foreground run's, from the run's launch file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import RunPaths, now_iso, write_json
from ._process import process_start
from ._run import raw_run
from ._status import ACTIVE, end_of_batch
from ._store import claim_end, read_record

if TYPE_CHECKING:
    from ._plugins import Dispatcher
    from ._run import Run

LAUNCH_FILE = "launch.json"  # in .guildlite/: what a run was launched with (to rebuild its plan and plugins)
LOG_FILE = "supervisor.log"  # in the top run's .guildlite/: the detached supervisor's own messages


def write_launch(meta: Path, spec: dict[str, Any]) -> None:
    write_json(meta / LAUNCH_FILE, spec)


# The launch file's fields and their types: a run dir is input, so a field of another type is absent.
_LAUNCH_TYPES: dict[str, tuple[type, ...]] = {
    "guildfile": (str,), "op": (str,), "plugin_names": (list,), "backend": (str,), "backend_options": (dict,),
    "parallel": (int, type(None)), "gpus": (str, type(None)), "fail_fast": (bool,), "max_concurrent": (int, type(None))}


def read_launch(run_dir: Path) -> dict[str, Any]:
    """The launch file of a run, its fields of the wrong type left out; {} if it has none (staged by
    an older guildlite) or it is unreadable."""
    try:
        spec = json.loads((RunPaths(run_dir).meta / LAUNCH_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(spec, dict):
        return {}
    out = {k: v for k, v in spec.items() if k in _LAUNCH_TYPES and type(v) in _LAUNCH_TYPES[k]}
    if not all(type(n) is str for n in out.get("plugin_names", ())):
        del out["plugin_names"]
    return out


# --- handing a staged run over to a detached supervisor ----------------------------------------------

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Started in the caller's cwd, so that sys.path is the caller's (a relative PYTHONPATH entry is made
# absolute against the cwd at start-up), less the cwd itself; then into the run dir, as a job is.
_BOOT = ("import os, sys; sys.path[:] = [p for p in sys.path if p]; os.chdir(sys.argv[1]); import runpy; "
         "runpy.run_module('guildlite._detached', run_name='__main__', alter_sys=True)")


def hand_over(run: Run, others: list[Run]) -> int:
    """Start the detached supervisor of ``run`` (a run, or a batch whose staged trials are
    ``others``) and make it the run's owner; its pid.

    The owner lock's open file is passed to the supervisor, so the lock is never free in between;
    the record names the supervisor (pending) before it may do anything: it waits for its stdin
    to close, which happens once the record is written (or when this process dies).
    """
    fd = run._owner_fd
    # The supervisor starts with the stop signals blocked (a signal mask survives fork and exec):
    # a `guildlite stop` or a hangup that reaches it while Python starts up waits until its
    # handlers are in place (``_detached``), instead of killing it with the run recorded pending.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        with open(run.paths.meta / LOG_FILE, "ab") as log:
            # Not `-m`: the cwd would join sys.path; it holds nothing the supervisor should import.
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, os.path.abspath(run.run_dir), str(-1 if fd is None else fd)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=() if fd is None else (fd,),
            )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    run.pid, run.pid_start = proc.pid, process_start(proc.pid)
    if fd is not None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": run.pid, "run": run.id, "start": run.pid_start}).encode(), 0)
    from ._status import move

    move(run, "pending")
    run.save()
    for r in [run, *others]:  # the trials are claimed again by the supervisor as each begins
        r.release()
    assert proc.stdin is not None
    proc.stdin.close()  # go
    return proc.pid


# --- ends recorded away from the owner (a backend's node) --------------------------------------------


def hooks_for(run_dir: Path) -> Dispatcher:
    """The dispatcher of a run's plugins, built as its launch built them; the built-ins alone (said
    on stderr) when the guildfile changed or went away since."""
    from ._plugins import DEFAULT_HOOK_TIMEOUT, Dispatcher

    spec = read_launch(run_dir)
    try:
        from ._guildfile import load
        from ._plugin_loader import build_plugins

        gf = load(Path(spec["guildfile"]))
        op = gf.op(spec["op"])
        return Dispatcher(build_plugins(gf, op, spec.get("plugin_names") or ()), timeout=gf.hook_timeout)
    except Exception as e:
        from ._builtins import builtin_plugins

        print(f"guildlite: cannot load the run's plugins: {e}", file=sys.stderr)
        return Dispatcher(builtin_plugins(), timeout=DEFAULT_HOOK_TIMEOUT)


def fire_end(run_dir: Path) -> None:
    """``on_run_end`` of a run whose end is recorded, unless another process fired it."""
    if not claim_end(run_dir):
        return
    run = raw_run(run_dir)
    hooks_for(run_dir).call("on_run_end", run)
    run.save()


def end_batch(batch_dir: Path) -> None:
    """After a trial's end recorded away from the batch's owner: if that owner is gone and no
    trial is active any more, record the batch's end and fire its ``on_run_end``."""
    from ._lock import file_lock
    from ._record import is_run_id

    if not (batch_dir / "run.json").exists():
        return
    with file_lock(RunPaths(batch_dir).meta / "batch-end.lock"):
        batch = raw_run(batch_dir)
        if batch.status not in ("staged", *ACTIVE) or batch.alive:
            return  # ended, or its owner is alive and records the end itself
        for tid in filter(is_run_id, batch.trial_ids):
            try:
                if read_record(batch_dir.parent / tid).get("status") in ("staged", *ACTIVE):
                    return
            except Exception:
                continue
        status, error = end_of_batch(batch, stopped=False)
        batch.status, batch.exit_code, batch.stopped = status, None, now_iso()
        if error is not None:
            batch.error = error
        batch.save()
        if claim_end(batch_dir):
            hooks_for(batch_dir).call("on_run_end", batch)
            batch.save()
