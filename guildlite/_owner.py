"""Who owns a run: the guildlite process that holds its owner lock (``RunPaths.owner``).

A record names its owner (``pid``, ``pid_start``, ``host``), but any live process can be named
with its real start time; only the owner holds the lock, and the kernel drops it when the owner
dies. The owner takes the lock (``take_owner_lock``) and writes which run and pid it holds it for;
readers (``owner_holds``, ``owner_alive``) check both, never creating or following anything.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from ._errors import GuildliteError
from ._files import META_DIR, RunPaths, make_meta_dir
from ._lock import NO_FLOCK
from ._process import pid_alive


def take_owner_lock(paths: RunPaths, run_id: str, pid: int, start: int | None, wait: float) -> int | None:
    """An fd holding the run's owner lock for process ``pid`` (started at ``start``), to keep open
    for as long as it owns the run; None where this filesystem has no ``flock`` (then only the pid
    and its start time tell). GuildliteError if another live process holds it for ``wait`` seconds.

    The fd is close-on-exec: a job (torchrun, its ranks) never holds it, so a job left behind by a
    killed guildlite never keeps its run alive.
    """
    make_meta_dir(paths)
    fd = os.open(paths.owner, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # a checker's moment (owner_holds), or another owner
            if time.monotonic() > deadline:
                os.close(fd)
                raise GuildliteError(f"run {run_id} is owned by another running guildlite", exit_code=2) from None
            time.sleep(0.01)
        except OSError as e:
            os.close(fd)
            if e.errno not in NO_FLOCK:
                raise
            return None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": pid, "run": run_id, "start": start}).encode())
    except OSError as e:  # a full disk: the record cannot be written either, and says so (the run ends)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            os.close(fd)
            raise
    return fd


def owner_holds(run_dir: Path, pid: Any) -> bool | None:
    """Whether process ``pid`` holds the run's owner lock (``RunPaths.owner``, see ``Run.claim``):
    True or False, or None where this filesystem has no ``flock`` (then only the pid and its start
    time tell). Meaningful on the owner's host only (a host-local flock on NFS/Lustre is still
    coherent there).

    Nothing is created or followed: a run dir, ``.guildlite`` or owner file that is a symlink, or an
    owner file that is not a regular file, means no owner.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(run_dir, flags | os.O_DIRECTORY))
        fds.append(os.open(META_DIR, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fds.append(os.open("owner", flags | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=fds[-1]))
        fd = fds[-1]
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            # Shared, so that checkers do not stand in each other's way; released when fd closes.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # nobody holds it exclusively: no owner
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno in NO_FLOCK:
                return None
            raise
        try:
            holder = json.loads(os.read(fd, 256))
        except ValueError:
            return False
        # The lock of this run, not one linked in from another live run's dir.
        return isinstance(holder, dict) and holder.get("pid") == pid and holder.get("run") == Path(run_dir).name
    except OSError:  # missing, a symlink (ELOOP), not a dir: no owner
        return False
    finally:
        for f in fds:
            os.close(f)


def owner_alive(rec: dict[str, Any], run_dir: Path | None) -> bool:
    """Whether the process that a record names as the run's owner still owns it: the pid runs with
    the recorded start time and, on this host, holds the run's owner lock."""
    pid = rec.get("pid")
    if not pid_alive(pid, rec.get("pid_start")):
        return False
    host = rec.get("host")
    if run_dir is None or (isinstance(host, str) and host != os.uname().nodename):
        return True
    held = owner_holds(run_dir, pid)
    return held is None or held  # None: no flock on this filesystem, the pid and start time decide
