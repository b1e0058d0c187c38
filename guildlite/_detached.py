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
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m guildlite._detached RUN_DIR OWNER_FD", file=sys.stderr)
        return 2
    run_dir, fd = Path(argv[0]), int(argv[1])
    sys.stdin.buffer.read()  # until the owner that handed the run over has written the record
    from ._files import now_iso
    from ._run import raw_run
    from ._status import move
    from ._supervisor import read_launch

    run = raw_run(run_dir)
    if fd >= 0:
        os.set_inheritable(fd, False)  # the job must never hold the owner lock
        run._owner_fd = fd
    try:
        from ._operation import resume

        session, slots, fail_fast = resume(run, read_launch(run_dir))
    except Exception as e:  # the guildfile changed or went away since the run was staged
        why = f"cannot start: {type(e).__name__}: {e}"
        print(f"guildlite: run {run.id}: {why}", file=sys.stderr)
        for r in [*[t for t in run.trials if t.status == "staged"], run]:
            move(r, "error")
            r.error, r.stopped = {"message": why}, now_iso()
            r.save()
        return 1
    run = session.start(run, slots, fail_fast)
    return 0 if run.status == "completed" else run.exit_code or 1


if __name__ == "__main__":
    from ._hookcall import exit_if_hooks_hang

    code = main(sys.argv[1:])
    exit_if_hooks_hang(code)
    sys.exit(code)
