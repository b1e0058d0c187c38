"""The detached supervisor: ``guildlite run --detach`` hands a staged run over to this process
(``_supervisor.hand_over``), which owns it from then on, in a session of its own.

``python -c <boot> RUN_DIR OWNER_FD``: waits until its stdin closes (the record names it as the
owner by then), takes over the owner lock's open file, rebuilds the run's plan from its launch
file, then starts the run, or the batch and its staged trials, as a foreground ``guildlite run``
would, with nobody watching: output to ``output.log``, its own messages to ``.guildlite/
supervisor.log``. SIGHUP is ignored; SIGTERM (``guildlite stop``) and SIGINT stop the run.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m guildlite._detached RUN_DIR OWNER_FD", file=sys.stderr)
        return 2
    caught = _catch_stops()
    run_dir, fd = Path(argv[0]), int(argv[1])
    sys.stdin.buffer.read()  # until the owner that handed the run over has written the record
    from ._files import now_iso
    from ._run import raw_run
    from ._status import exit_status, move
    from ._supervisor import LAUNCH_FILE, fire_end, read_launch

    run = raw_run(run_dir)
    if run.status != "pending" or run.pid != os.getpid():  # the hand-over never completed: its
        print(f"guildlite: run {run.id} was not handed over to this process ({run.status}, pid {run.pid}): "
              "not starting it", file=sys.stderr)  # caller died or failed before recording it
        return 1
    if fd >= 0:
        os.set_inheritable(fd, False)  # the job must never hold the owner lock
        run._owner_fd = fd
    try:
        from ._operation import resume
        from ._pipeline import resume as resume_pipeline

        launch = read_launch(run_dir)
        if not launch.get("guildfile"):
            raise LookupError(f"{run.paths.meta / LAUNCH_FILE} is missing or unreadable")
        session, slots, fail_fast = (resume_pipeline if run.is_pipeline else resume)(run, launch)
    except Exception as e:  # the guildfile changed or went away since the run was staged
        why = f"cannot start: {type(e).__name__}: {e}"
        print(f"guildlite: run {run.id}: {why}", file=sys.stderr)
        ended = [*[t for t in run.trials if t.status == "staged"], run]
        for r in ended:
            move(r, "error")
            r.error, r.stopped = {"message": why}, now_iso()
            r.save()
        for r in ended:  # staged runs all get their on_run_end (the built-ins', if the plugins are gone too)
            fire_end(r.run_dir)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):  # the session's from here on; a stop that came
        signal.signal(sig, session._on_signal)  # while starting up stops the run before it starts
    if caught:
        session._on_signal(caught[0], None)
    run = session.start(run, slots, fail_fast)
    return exit_status(run.status, run.exit_code)


def _catch_stops() -> list[int]:
    """Ignore SIGHUP, note SIGTERM and SIGINT (returned list) until the session handles them, then
    let through the signals ``hand_over`` started this process with blocked: one sent meanwhile
    (``guildlite stop`` at once) arrives now, and the job, started later, inherits no blocked signal."""
    caught: list[int] = []
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _frame: caught.append(s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    return caught


if __name__ == "__main__":
    from ._hookcall import exit_if_hooks_hang

    code = main(sys.argv[1:])
    exit_if_hooks_hang(code)
    sys.exit(code)
