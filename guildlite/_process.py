"""Whether a process still runs: a pid together with its start time, so a reused pid is not it."""

from __future__ import annotations

import os
from pathlib import Path


def process_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks since boot) of live process ``pid``, or None if it
    is gone (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parens: split after its closing paren.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # exited, not yet reaped: gone all the same
        return None
    return int(fields[1]), int(fields[19])


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone."""
    st = process_stat(pid)
    return None if st is None else st[1]


def pid_alive(pid: int | None, start: int | None) -> bool:
    """Whether process ``pid`` runs and, where ``start`` is given and /proc tells, started then."""
    if not pid:
        return False
    if Path("/proc/self/stat").exists():
        now = process_start(pid)
        # A live pid with another start time is a different process that reused the pid.
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
