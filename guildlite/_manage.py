"""Changing runs: delete to the trash, restore, purge, label, tag, stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Sequence

from ._errors import GuildliteError
from ._launch import descendants
from ._runs import ACTIVE, TRASH_DIR, Run, list_runs, load_run


def trash_dir(runs_dir: Path) -> Path:
    return runs_dir / TRASH_DIR


def delete(runs: Sequence[Run], force: bool = False) -> list[Run]:
    """Move runs into the runs dir's trash; running runs only with ``force``."""
    busy = [r for r in runs if r.status in ACTIVE]
    if busy and not force:
        ids = ", ".join(r.id for r in busy)
        raise GuildliteError(f"refusing to delete running runs ({ids}): stop them first, or pass --force", exit_code=2)
    for r in runs:
        dest = trash_dir(r.run_dir.parent)
        dest.mkdir(exist_ok=True)
        os.replace(r.run_dir, dest / r.id)  # one rename: a run is either listed or in the trash
    return list(runs)


def restore(runs: Sequence[Run]) -> list[Run]:
    """Move runs from the trash back into the runs dir."""
    for r in runs:
        target = r.run_dir.parent.parent / r.id
        if target.exists():
            raise GuildliteError(f"cannot restore {r.id}: {target} exists", exit_code=2)
        os.replace(r.run_dir, target)
    return list(runs)


def purge(runs: Sequence[Run]) -> list[Run]:
    """Delete trashed runs for good."""
    for r in runs:
        shutil.rmtree(r.run_dir)
    return list(runs)


_TMP_NAME = re.compile(r"\..+\.tmp-\d+-[0-9a-f]{6}")  # an atomic write's temp file (``_runs.atomic_write``)


def abandoned(runs_dir: Path, idle_seconds: float = 3600) -> list[Path]:
    """What a guildlite killed mid-write left behind, untouched for ``idle_seconds``: hidden
    ``.staging-<id>`` dirs (never published, never listed) and atomic writes' temp files in run
    dirs and their ``.guildlite`` (never read). Staging and writes take seconds at most."""
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
            for d in (e.path, os.path.join(e.path, ".guildlite")):
                out += [Path(f.path) for f in _entries(d)
                        if _TMP_NAME.fullmatch(f.name) and f.is_file(follow_symlinks=False) and idle(f)]
    return sorted(out)


def _entries(path: Path | str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def trashed(runs_dir: Path) -> list[Run]:
    return list_runs(trash_dir(runs_dir))


def set_label(runs: Sequence[Run], label: str) -> None:
    for r in runs:
        r.update(label=label)


def set_tags(runs: Sequence[Run], changes: Sequence[str]) -> None:
    """Apply ``+tag`` / ``-tag`` changes."""
    for c in changes:
        if len(c) < 2 or c[0] not in "+-":
            raise GuildliteError(f"tag change {c!r} must be +TAG or -TAG", exit_code=2)
    for r in runs:
        tags = list(r.tags)
        for c in changes:
            if c[0] == "+" and c[1:] not in tags:
                tags.append(c[1:])
            elif c[0] == "-" and c[1:] in tags:
                tags.remove(c[1:])
        r.update(tags=tags)


def _waiting_trial(run: Run) -> bool:
    """A staged trial of a batch that is still going: ``stop`` keeps it from starting."""
    batch = run.parent if run.status == "staged" and run.is_trial else None
    return batch is not None and batch.status in ACTIVE


def _staging(run: Run) -> bool:
    """A run (not a trial, not a batch) in its on_run_staged hooks: its live owner ends it on a stop request."""
    return run.status == "staged" and not run.is_trial and not run.is_batch and run.alive


def _going(run: Run) -> bool:
    return run.status in ACTIVE or _staging(run)


def stop(
    runs: Sequence[Run],
    timeout: float = 30.0,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Run]:
    """SIGTERM each run's owning guildlite process, which stops the job and records the end; a
    staged trial of a live batch is marked so that the batch ends it ``terminated`` unstarted, and
    so is a run in its on_run_staged hooks (its owner gives up on the hook and ends it).

    Waits up to ``timeout`` for every run to leave pending/running; then, with ``force``, SIGKILLs
    the job (torchrun and its ranks) and the owner. Returns the marked trials (still ``staged``),
    then the stopped runs as finally read; [] if no run was running or waiting.
    """
    waiting = [r for r in runs if _waiting_trial(r)]
    for r in waiting:  # its batch skips it when its turn comes
        r.paths.stop_request.touch()
    live = [r for r in runs if _going(r)]
    for r in live:
        if r.status == "staged":  # its owner polls the request while the hooks run, and before launching
            r.paths.stop_request.touch()
        elif isinstance(r.remote, dict):  # a SLURM job: scancel (recorded terminated, not requeued)
            from ._slurm import cancel

            cancel(r)
        elif r.is_trial and r.job_pid:
            # Stop one trial, not its whole batch: mark the request, then signal its job only.
            r.paths.stop_request.touch()
            _kill(r.job_pid, signal.SIGTERM)
        else:
            _kill(r.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pending = list(live)
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        pending = [r for r in pending if _going(load_run(r.run_dir))]
    if pending and force:
        for r in pending:
            if isinstance(r.remote, dict):
                from ._slurm import scancel

                scancel([str(j) for j in r.remote.get("job_ids") or []], sig="KILL")
            if r.job_pid:
                for pid in [r.job_pid, *descendants(r.job_pid)]:
                    _kill(pid, signal.SIGKILL)
            _kill(r.pid, signal.SIGKILL)
            log(f"guildlite: {r.id} did not stop within {timeout:g} s: killed")
        until = time.monotonic() + 5  # a SIGKILL takes a moment; then the record reads terminated
        while any(r.alive for r in pending) and time.monotonic() < until:
            time.sleep(0.05)
    elif pending:
        ids = ", ".join(r.id for r in pending)
        raise GuildliteError(f"still running after {timeout:g} s: {ids} (use --force to kill)")
    return [*waiting, *(load_run(r.run_dir) for r in live)]


def _kill(pid: int | None, sig: int) -> None:
    if pid and pid != os.getpid():
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
