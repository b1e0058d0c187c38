"""A run's status: the states, the moves between them, and every decision of a status, in one place.

::

    staged ──> pending ──> running ──> completed | error | terminated | pruned
       │          │  ^──────┘ (requeued)                            │
       └──────────┴──> error | terminated                            └──> staged (restart)

``staged``: its dir and record exist, nothing launched. ``pending``: being started, or its job waits
in a queue. ``running``: its job runs. ``pruned``: stopped on purpose mid-run because its scalars
said it would not do well (a search's pruner, or any ``on_run_progress`` hook's
``StopRun(..., pruned=True)``): a decision, not a failure. The four ends are final until a restart
stages it again.
Who decides: the owning process records each move (``move``) and the end of a job (``job_end``);
a virtual parent (a batch, a pipeline) ends by its children (``parent_end``); a reader sees a
record as it stands (``as_it_stands``):
an active record whose owner or job is gone is never reported active.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

if TYPE_CHECKING:
    from .backends import JobState

Status = Literal["staged", "pending", "running", "completed", "error", "terminated", "pruned"]
STATES: tuple[Status, ...] = ("staged", "pending", "running", "completed", "error", "terminated", "pruned")
ACTIVE: tuple[Status, ...] = ("pending", "running")
ENDED: tuple[Status, ...] = ("completed", "error", "terminated", "pruned")
# The ends a batch counts as done: it completes when every trial did one of them, and a restart of
# it leaves them alone (a pruned trial was judged, not cut short by accident: ``--restart TRIAL``
# runs one again on purpose).
DONE: tuple[Status, ...] = ("completed", "pruned")

MOVES: Mapping[str, tuple[str, ...]] = {
    "staged": ("staged", "pending", "error", "terminated"),  # staged again: a restart before it started
    # pruned from pending too: a job on a cluster may run while its owner still reads it queued
    "pending": ("pending", "running", *ENDED),
    "running": ("pending", "running", *ENDED),  # pending again: requeued in its own dir
    **{s: ("staged",) for s in ENDED},  # a restart
}


class BadMove(RuntimeError):
    """guildlite itself tried a move the table does not have (a bug, never the user's doing)."""


def move(run: Any, new: str) -> None:
    """Set ``run.status`` to ``new``, checked against ``MOVES``."""
    try:
        run.status = moved(run.status, new)
    except BadMove as e:
        raise BadMove(f"run {run.id}: {e}") from None


def moved(old: Any, new: str) -> Status:
    """``new``, checked as a move from ``old`` (a record's status, as read)."""
    if new not in MOVES.get(old, ()):
        raise BadMove(f"no move from {old} to {new}")
    return new  # type: ignore[return-value]  # checked: every move leads to a state


def job_end(code: int, *, stopped: bool, failure: str | None = None) -> tuple[Status, int, dict[str, Any] | None]:
    """(status, exit code, error) of a job that exited with ``code`` (negative: killed by that
    signal): ``error`` with ``failure`` when the launcher knows why it failed; ``terminated`` when
    it was stopped (a signal sent, a stop requested); else completed on 0, error otherwise."""
    exit_code = code if code >= 0 else 128 - code
    if failure is not None:
        return "error", exit_code, {"message": failure}
    if stopped:
        return "terminated", exit_code, None
    if code == 0:
        return "completed", 0, None
    return "error", exit_code, {"message": f"the job exited with code {exit_code}"}


# A stop request (``RunPaths.stop_request``, the file a stop leaves for whoever records the run's
# end: its owner, or a backend's node) is empty for a plain stop; a pruner's holds this word, so
# that a node records ``pruned`` as the owner does.
PRUNE_REQUEST = b"pruned"


def request_prune(request: Path) -> None:
    """Leave the stop request of a pruned run (before its job is sent its stop)."""
    from ._files import atomic_write

    atomic_write(request, PRUNE_REQUEST)


def stopped_as(request: Path) -> Status:
    """How a run stopped on request ends: ``pruned`` when its stop request says so, else
    ``terminated``. The file is read as untrusted (no link followed, no FIFO waited on, a few
    bytes at most)."""
    try:
        fd = os.open(request, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "terminated"
    try:
        st = os.fstat(fd)
        asked = stat.S_ISREG(st.st_mode) and st.st_size <= 64 and os.read(fd, 64).strip() == PRUNE_REQUEST
        return "pruned" if asked else "terminated"
    except OSError:
        return "terminated"
    finally:
        os.close(fd)


def exit_status(status: str, exit_code: int | None, stop_signal: int | None = None) -> int:
    """guildlite's own exit status for a run that ended: 0 when it completed or was pruned (what
    was asked for happened: the job's own exit code, 143 from the SIGTERM that pruned it, stays in
    its record), else its job's exit code, else 1 (error, or never started) or 143 (terminated).
    ``run``, ``watch`` and the detached supervisor exit with it.

    A run terminated because this process got ``stop_signal`` (Ctrl-C: SIGINT) gives 128 + that
    signal, the shell's convention, whatever its job made of it: torchrun exits 1 on SIGINT,
    python 130, a script that catches it anything."""
    if status in DONE:
        return 0
    if status == "terminated" and stop_signal is not None:
        return 128 + stop_signal
    if exit_code:
        return exit_code
    return 1 if status != "terminated" else 143


def parent_end(stopped: bool, failure: str | None, what: str) -> tuple[Status, dict[str, Any] | None]:
    """The one rule for a virtual parent (a batch, a pipeline: no job, only children): its status
    follows its children. ``terminated`` when it was stopped; ``error`` when a child that had to
    complete did not (``failure`` says which: a batch's every trial, a pipeline's every step but
    those with ``continue-on-error``, and a step never reached); else ``completed``."""
    if stopped:
        return "terminated", {"message": f"the {what} was stopped" + (f": {failure}" if failure else "")}
    if failure:
        return "error", {"message": failure}
    return "completed", None


def batch_end(counts: Mapping[str, int], n_trials: int, stopped: bool) -> tuple[Status, dict[str, Any] | None]:
    """A batch's status from its trials' (``counts`` by status), by ``parent_end``: every trial
    has to complete or be pruned (``DONE``)."""
    failed = sum(n for s, n in counts.items() if s in ENDED and s not in DONE)
    failure = f"{failed} of {n_trials} trials did not complete" if failed else None
    return parent_end(stopped, None if stopped else failure, "batch")


def end_of_batch(batch: Any, stopped: bool) -> tuple[Status, dict[str, Any] | None]:
    """A batch's end from its trials as they are now (their counts kept in ``batch.batch``)."""
    counts: dict[str, int] = {}
    for t in batch.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    batch.batch = {**(batch.batch or {}), "summary": counts}
    return batch_end(counts, len(batch.trial_ids), stopped)


def as_it_stands(rec: dict[str, Any], run_dir: Path | None,
                 reread: Callable[[Path], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The record as it stands: an active run whose job runs on a backend away from its owner
    (``remote.backend``) is as that job is (an ended job's end is its live owner's to record);
    any other active run is alive while its owning guildlite process is (``owner_alive``). Never
    reported active when it is not. ``reread`` reads the record of ``run_dir`` again (the store's
    reader), to see an end recorded meanwhile. A staged trial whose batch has ended will never
    start (the batch's owner died first): terminated, saying so."""
    if rec.get("status") == "staged":
        return _unstarted(rec, run_dir, reread)
    if rec.get("status") not in ACTIVE:
        return rec
    import socket

    from . import backends
    from ._owner import owner_alive

    backend = backends.of_record(rec)
    state = None if backend is None else backend.job_state(rec, run_dir)
    if state is None:
        if owner_alive(rec, run_dir):
            return rec
        msg = f"guildlite process {rec.get('pid')} ended without recording the run's end"
        return {**rec, "status": "terminated", "error": rec.get("error") or {"message": msg}}
    if state.phase == "queued":
        return {**rec, "status": "pending"} if rec.get("status") == "running" else rec
    if state.phase == "running":
        return rec
    if run_dir is not None and reread is not None:  # its end may have been recorded since it was read
        from ._errors import RunNotFoundError

        try:
            fresh = reread(run_dir)
            if fresh.get("status") not in ACTIVE:
                return fresh
        except RunNotFoundError:
            pass
    # A live owner records the end it is about to see (its job handle polls the same engine); read
    # as gone meanwhile, a completed run would flash `error` to every reader (watch, runs).
    if rec.get("host") == socket.gethostname() and owner_alive(rec, run_dir):  # (elsewhere: not known)
        return rec
    return gone(rec, state)


def _unstarted(rec: dict[str, Any], run_dir: Path | None,
               reread: Callable[[Path], dict[str, Any]] | None) -> dict[str, Any]:
    """A staged record as it stands: a trial under a batch that has ended reads terminated (a live
    batch ends its unstarted trials itself; only a batch whose owner died leaves them staged)."""
    batch_id = rec.get("parent")
    if not rec.get("is_trial") or not isinstance(batch_id, str) or run_dir is None or reread is None:
        return rec
    from ._errors import RunNotFoundError
    from ._record import is_run_id

    if not is_run_id(batch_id):
        return rec
    batch_dir = run_dir.parent / batch_id
    try:
        batch = as_it_stands(reread(batch_dir), batch_dir, reread)
    except RunNotFoundError:  # (a bad record too) no batch to tell by
        return rec
    if batch.get("status") not in ENDED:
        return rec
    return {**rec, "status": "terminated",
            "error": rec.get("error") or {"message": f"not started: its batch {batch_id} ended before it did"}}


def gone(rec: dict[str, Any], state: JobState) -> dict[str, Any]:
    """An active record whose job ended (``state``) without its end recorded: terminated when it
    was cancelled, else error, saying so."""
    status = "terminated" if state.how == "cancelled" else "error"
    return {**rec, "status": status,
            "error": rec.get("error") or {"message": f"{state.detail} without recording the run's end"}}
