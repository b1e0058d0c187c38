"""Runs waiting their turn on this machine: a run whose GPUs (or run token, ``--max-concurrent``)
are not free yet is ``pending`` with why (its record's ``waiting``), its ticket polled by the
scheduler (``_scheduler``); readers see its place in the queue (``places``).

The queue itself is the lease engine's (``_leases``): machine-wide, in arrival order across
invocations and users. A backend says what a run waits for (``Backend.queue_up``); a backend whose
engine queues its jobs itself (a cluster's) gives no ticket and none of this applies.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterable

from ._errors import GuildliteError
from ._files import now_iso
from ._status import move

if TYPE_CHECKING:
    from ._run import Run
    from ._slots import Slot
    from .backends import Backend, Ticket

_REASON_EVERY = 1.0  # seconds between looks at why a run waits (each look reads the lease dir) ...
_LOOK_GAP = 0.05  # ... and at least this long between two looks of one invocation, whatever the runs


class RunQueue:
    """The scheduler's ``queue`` and ``waiting`` for one invocation's runs (see ``Scheduler``).

    ``end(run, status, error=...)`` records the end of a run that leaves the queue (a stop asked
    for it); ``progress("wait", run)`` is told once when a run starts waiting (a batch's progress
    says it for a trial; for another run, it is logged).
    """

    def __init__(self, backend: Backend, max_concurrent: int | None, end: Callable[..., None],
                 log: Callable[[str], None], progress: Callable[[str, Run], None]) -> None:
        self.backend = backend
        self.max_concurrent = max_concurrent
        self._end, self._log, self._progress = end, log, progress
        self._next_look: dict[str, float] = {}
        self._last_look = 0.0

    def queue_up(self, run: Run, slot: Slot) -> Ticket | None:
        """The ticket ``run`` waits on before it starts on ``slot``; None when it starts at once,
        or will not start (ended, or a stop asked for it: ``Session.begin`` sees to that)."""
        if run.status not in ("staged", "pending") or run.paths.stop_request.exists():
            return None
        try:
            return self.backend.queue_up(run, slot, self.max_concurrent)
        except GuildliteError as e:  # the queue cannot be joined (an unusable lease dir): this run cannot start
            self._end(run, "error", error={"message": f"cannot wait for its turn: {e}"})
            return None

    def waiting(self, run: Run, ticket: Ticket) -> bool:
        """Called each tick while ``run`` waits: records it ``pending`` and why (again when the
        reason changes); False when it left the queue: a stop asked for it (``guildlite stop`` of a
        trial), and it ended ``terminated``."""
        if run.paths.stop_request.exists():
            self._end(run, "terminated", error={"message": "stopped while it waited for its turn"})
            return False
        now = time.monotonic()
        if now < self._next_look.get(run.id, 0.0) or (run.waiting is not None and now - self._last_look < _LOOK_GAP):
            return True  # (a run not yet shown waiting is shown at once)
        self._last_look = now
        reason = ticket.reason()
        if not reason:  # free a moment ago: it takes its turn at the next look
            return True
        self._next_look[run.id] = now + _REASON_EVERY
        if run.waiting is not None and run.waiting.get("reason") == reason:
            return True
        first = run.waiting is None
        try:
            run.claim()  # a detached supervisor's trial is claimed as it leaves staged
        except GuildliteError:  # another live guildlite owns it: ``Session.begin`` says so when it is granted
            return True
        if run.status == "staged":
            move(run, "pending")
        run.waiting = {"reason": reason, "since": (run.waiting or {}).get("since") or now_iso()}
        run.job_pid = None  # no job yet (a restarted run's record still names its last one)
        try:
            run.save()
        except OSError as e:  # (a full disk) only the reason is lost: the run still waits its turn
            self._log(f"guildlite: cannot record that run {run.id} waits: {e.strerror or e}")
        if first:
            self._progress("wait", run)
            if not run.is_trial:
                self._log(f"guildlite: run {run.id} is pending: {reason}")
        return True


def places(runs: Iterable[Run]) -> dict[str, int]:
    """The place in this machine's queue (1: next) of each waiting run among ``runs``, by id.

    A ticket is anyone's to write (the lease dir is shared by every user): it counts for a run only
    when it names the run and the run's owning process, as the run's record does."""
    owners = {r.id: r.pid for r in runs if r.status == "pending" and r.waiting}
    if not owners:
        return {}
    from ._leases import waiters

    try:
        found = waiters()
    except (GuildliteError, OSError):  # no lease dir we may read: no place to tell
        return {}
    return {w.run: w.position for w in found if w.run in owners and w.pid == owners[w.run]}
