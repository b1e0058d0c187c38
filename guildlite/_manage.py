"""Changing runs: delete to the trash, restore, purge, remove, label, tag, stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ._errors import GuildliteError, RunNotFoundError
from ._files import META_DIR, TRASH_DIR, RunPaths
from ._launch import descendants
from ._lock import HELD_SUFFIX, SoftLock
from ._owner import owner_holds
from ._process import process_stat
from ._record import is_run_id
from ._run import Run, load_run
from ._selection import list_runs
from ._status import ACTIVE
from ._store import update_record


def trash_dir(runs_dir: Path) -> Path:
    return runs_dir / TRASH_DIR


def delete(runs: Sequence[Run], force: bool = False) -> list[Run]:
    """Move runs into the runs dir's trash; running runs only with ``force``."""
    busy = [r for r in runs if r.status in ACTIVE]
    if busy and not force:
        ids = ", ".join(r.id for r in busy)
        raise GuildliteError(f"refusing to delete running runs ({ids}): stop them first, or pass --force", exit_code=2)
    for r in runs:
        name = _run_dir_name(r, in_trash=False)
        dest = trash_dir(r.run_dir.parent)
        dest.mkdir(exist_ok=True)
        os.replace(r.run_dir, dest / name)  # one rename: a run is either listed or in the trash
    return list(runs)


def restore(runs: Sequence[Run]) -> list[Run]:
    """Move runs from the trash back into the runs dir."""
    for r in runs:
        target = r.run_dir.parent.parent / _run_dir_name(r, in_trash=True)
        if target.exists():
            raise GuildliteError(f"cannot restore {r.id}: {target} exists", exit_code=2)
        os.replace(r.run_dir, target)
    return list(runs)


def purge(runs: Sequence[Run]) -> list[Run]:
    """Delete trashed runs for good."""
    for r in runs:
        _run_dir_name(r, in_trash=True)
        shutil.rmtree(r.run_dir)
    return list(runs)


def remove(runs: Sequence[Run]) -> list[Run]:
    """Delete runs from the runs dir for good, not to the trash (``runs export --move``, once the
    export holds them)."""
    for r in runs:
        _run_dir_name(r, in_trash=False)
    for r in runs:
        shutil.rmtree(r.run_dir)
    return list(runs)


def _run_dir_name(run: Run, in_trash: bool) -> str:
    """The name of ``run``'s dir, checked: a run id, directly in a runs dir (or its trash).

    Paths come from directory names, never from record fields: a Run built by hand with an id
    such as ``../x`` moves or deletes nothing outside the runs dir.
    """
    d = run.run_dir
    if not is_run_id(d.name) or d.name != run.id or (d.parent.name == TRASH_DIR) != in_trash or d.is_symlink():
        where = "the trash" if in_trash else "a runs dir"
        raise GuildliteError(f"{d} is not a run dir in {where} (run id {run.id!r})", exit_code=2)
    return d.name


_TMP_NAME = re.compile(r"\..+\.tmp-\d+-[0-9a-f]{6}")  # an atomic write's temp file (``_runs.atomic_write``)


def abandoned(runs_dir: Path, idle_seconds: float = 3600) -> list[Path]:
    """What a guildlite killed mid-write left behind, untouched for ``idle_seconds``: hidden
    ``.staging-<id>`` dirs (never published, never listed) and atomic writes' temp files in run
    dirs and their ``.guildlite`` (never read). Staging and writes take seconds at most.

    And, in the ``.guildlite`` of a run that is not active (its owner gone: SIGKILLed): the
    space reserve held while its job ran (``RunPaths.reserve``) and lock files (lockfile mode)
    whose holder is gone by the lock's own rule (``SoftLock.abandoned``); ``remove_leftover``
    checks a lock file again as it removes it."""
    now = time.time()

    def idle(e: os.DirEntry[str]) -> bool:
        try:
            return now - e.stat(follow_symlinks=False).st_mtime > idle_seconds
        except OSError:  # gone meanwhile
            return False

    out = []
    for e in _entries(runs_dir):
        if not e.is_dir(follow_symlinks=False):
            continue
        if e.name.startswith(".staging-"):
            out += [Path(e.path)] if idle(e) else []
        elif not e.name.startswith("."):
            for d in (e.path, os.path.join(e.path, META_DIR)):
                out += [Path(f.path) for f in _entries(d)
                        if _TMP_NAME.fullmatch(f.name) and f.is_file(follow_symlinks=False) and idle(f)]
            out += _owner_leftovers(Path(e.path))
    return sorted(out)


def _owner_leftovers(run_dir: Path) -> list[Path]:
    """The reserve and abandoned lock files in a run's ``.guildlite`` while the run is not active."""
    paths = RunPaths(run_dir)
    if paths.meta.is_symlink():  # not the run's own: nothing in it is ours to remove
        return []
    found = [Path(f.path) for f in _entries(paths.meta) if f.is_file(follow_symlinks=False)
             and (f.name == paths.reserve.name or (f.name.endswith(HELD_SUFFIX) and SoftLock(Path(f.path)).holder_gone()))]
    if not found:
        return []
    try:
        active = load_run(run_dir).status in ACTIVE
    except RunNotFoundError:  # not a readable run: left alone
        return []
    return [] if active else found


def remove_leftover(path: Path) -> bool:
    """Remove one of ``abandoned``'s finds; whether it was removed (a lock file taken up again
    since it was found is not)."""
    if path.name.endswith(HELD_SUFFIX):
        return SoftLock(path).break_abandoned()
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return True


def _entries(path: Path | str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def trashed(runs_dir: Path) -> list[Run]:
    return list_runs(trash_dir(runs_dir))


def set_label(runs: Sequence[Run], label: str) -> None:
    """Set the label of ``runs`` (only the label: see ``_runs.INSPECT_FIELDS``)."""
    for r in runs:
        r.update(label=label)


def set_tags(runs: Sequence[Run], changes: Sequence[str]) -> None:
    """Apply ``+tag`` / ``-tag`` changes to each run's tags as they are when written (under the
    run's lock), so concurrent taggers each add or remove their own tags."""
    for c in changes:
        if len(c) < 2 or c[0] not in "+-":
            raise GuildliteError(f"tag change {c!r} must be +TAG or -TAG", exit_code=2)

    def change(rec: dict[str, Any]) -> None:
        tags = rec.get("tags")
        tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        for c in changes:
            if c[0] == "+" and c[1:] not in tags:
                tags.append(c[1:])
            elif c[0] == "-" and c[1:] in tags:
                tags.remove(c[1:])
        rec["tags"] = tags

    for r in runs:
        r.tags = update_record(r.run_dir, change)["tags"]


def _waiting_trial(run: Run) -> bool:
    """A staged trial of a batch that is still going: ``stop`` keeps it from starting."""
    batch = run.parent if run.status == "staged" and run.is_trial else None
    return batch is not None and batch.status in ACTIVE


def _staging(run: Run) -> bool:
    """A run (not a trial, not a batch) in its on_run_staged hooks: its live owner ends it on a stop request."""
    return run.status == "staged" and not run.is_trial and not run.is_batch and run.alive


def _going(run: Run) -> bool:
    return run.status in ACTIVE or _staging(run)


@dataclass(frozen=True)
class Stopped:
    """What ``stop`` did: ``runs`` holds the marked trials (still ``staged``), then the stopped
    runs as finally read; ``refused`` one line per run whose process could not be confirmed, so
    that nothing was signalled for it."""

    runs: list[Run]
    refused: list[str]


def stop(
    runs: Sequence[Run],
    timeout: float = 30.0,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Stopped:
    """SIGTERM each run's owning guildlite process, which stops the job and records the end; a
    staged trial of a live batch is marked so that the batch ends it ``terminated`` unstarted, and
    so is a run in its on_run_staged hooks (its owner gives up on the hook and ends it).

    Waits up to ``timeout`` for every run to leave pending/running; then, with ``force``, SIGKILLs
    the job (torchrun and its ranks) and the owner. A pid comes from a record, which may be stale
    or made elsewhere: it is signalled only when it is confirmed (``_confirm``); a run whose
    process is not is logged, left alone and listed in ``refused``.
    """
    waiting = [r for r in runs if _waiting_trial(r)]
    for r in waiting:  # its batch skips it when its turn comes
        r.paths.stop_request.touch()
    live, refused = [], []
    for r in (r for r in runs if _going(r)):
        if r.status == "staged":  # its owner polls the request while the hooks run, and before launching
            r.paths.stop_request.touch()
        elif _cancel(r, force=False):  # a job away from its owner: its backend stops it, the owner records it
            pass
        else:
            if r.is_trial and r.status == "pending" and r.waiting:  # waiting its turn (_queue): its batch's
                r.paths.stop_request.touch()  # owner ends it; read again: its job may have started meanwhile,
                r = load_run(r.run_dir)  # and if not, its owner sees the request before it does (_lifecycle)
                if not r.job_pid or r.status != "running":
                    live.append(r)
                    continue
            trial_job = r.is_trial and bool(r.job_pid)  # stop one trial, not its whole batch: its job only
            held = _confirm(r, "job" if trial_job else "owner")
            if isinstance(held, str):
                refused.append(f"run {r.id}: {held}")
                log(f"guildlite: {refused[-1]}")
                continue
            if trial_job:  # the request first: the batch then records the trial's end as asked for
                r.paths.stop_request.touch()
            _send(held, signal.SIGTERM)
        live.append(r)
    deadline = time.monotonic() + timeout
    pending = list(live)
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        pending = [r for r in pending if _going(load_run(r.run_dir))]
    if pending and force:
        for r in pending:
            if _cancel(r, force=True):
                continue
            held = _confirm(r, "all")
            if not isinstance(held, str):
                _send(held, signal.SIGKILL)
            log(f"guildlite: {r.id} did not stop within {timeout:g} s: "
                + ("killed" if not isinstance(held, str) else f"not killed: {held}"))
        until = time.monotonic() + 5  # a SIGKILL takes a moment; then the record reads terminated
        while any(r.alive for r in pending) and time.monotonic() < until:
            time.sleep(0.05)
    elif pending:
        ids = ", ".join(r.id for r in pending)
        raise GuildliteError(f"still running after {timeout:g} s: {ids} (use --force to kill)")
    return Stopped([*waiting, *(load_run(r.run_dir) for r in live)], refused)


def _cancel(run: Run, force: bool) -> bool:
    """Stop a run's job through the backend it runs on away from its owner (``remote.backend``);
    False if it has none (its owner is signalled)."""
    from .backends import of_record

    backend = of_record({"remote": run.remote})
    return backend is not None and backend.cancel(run, force)


# --- signalling a process named by a record -------------------------------------------------------
# A record's pid may be stale (the pid reused by now) or made up (a run dir from elsewhere), so a
# pid is signalled only when it is confirmed: the owner by the host and start time the record
# holds and by the run's owner lock, which only the owner holds (a record may name any live process
# with its real start time; where the filesystem has no flock, host and start time decide), the job (and its processes) as the owner's child. Each is held by a pidfd while it is
# checked: the signal reaches that process only, even if it exits and its pid is reused meanwhile.


def _confirm(run: Run, to: str) -> list[_Held] | str:
    """Handles on the run's owning guildlite process (``to="owner"``), its job's main process
    (``"job"``), or all of them: the job, every process under it, then the owner (``"all"``); or
    why none may be signalled. A process that is gone (the run ending meanwhile) is left out."""
    pid, start = run.pid, run.pid_start
    if not pid:
        return []
    why = "cannot confirm its process ({}); not signalling pid " + str(pid)
    if run.host != socket.gethostname():
        return why.format(f"it runs on host {run.host!r}, not here")
    if start is None:
        return why.format("no start time recorded")
    held = _hold(pid, lambda ppid, now: now == start)
    if held is None:  # gone, or its pid taken by another process since: the run reads terminated
        return []
    # Checked while ``held``: a lock still held by ``pid`` means ``held`` is that very process.
    if owner_holds(run.run_dir, pid) is False:  # not the owner (or not any more): the run reads terminated
        _release([held])
        return []
    handles = []
    if to != "owner" and run.job_pid:
        # Every process is held before any is signalled: a killed parent's children are reparented.
        tree = {pid}  # the job is the owner's child, each process under it a child of one before it
        for p in [run.job_pid, *(descendants(run.job_pid) if to == "all" else [])]:
            h = _hold(p, lambda ppid, now: ppid in tree)
            if h is not None:
                tree.add(p)
                handles.append(h)
        if to == "job" and not handles and process_stat(run.job_pid) is not None:
            _release([held])
            return (f"its job (pid {run.job_pid}) is not a child of its guildlite process (pid {pid}); "
                    "not signalling it")
    if to == "job":
        _release([held])
    else:
        handles.append(held)
    return handles


_Held = tuple[int, int]  # (pid, pidfd or -1 where pidfds are missing)


def _hold(pid: int, want: Callable[[int, int], bool]) -> _Held | None:
    """A handle on ``pid`` if ``want(ppid, start time)`` holds for that process now, else None."""
    if pid == os.getpid():
        return None
    fd = -1
    if hasattr(os, "pidfd_open"):  # Linux 5.3+: a handle on this process, not on its pid
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError:  # no pidfds on this kernel: the pid then
            fd = -1
    st = process_stat(pid)
    if st is None or not want(*st):
        _release([(pid, fd)])
        return None
    return pid, fd


def _send(held: list[_Held], sig: int) -> None:
    """Signal each held process (those gone meanwhile are skipped), then let go of them."""
    for pid, fd in held:
        try:
            if fd >= 0:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    _release(held)


def _release(held: list[_Held]) -> None:
    for _, fd in held:
        if fd >= 0:
            os.close(fd)


