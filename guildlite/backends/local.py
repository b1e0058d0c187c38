"""The local backend: a run's job is a process here (torchrun and its ranks, or python), child of
the guildlite process that owns the run (in the foreground, or the detached supervisor).

GPUs are shared machine-wide: a run leases its ``gpus-per-trial`` GPUs (out of ``--gpus``, else
the visible ones) through ``_leases`` just before its job starts, in arrival order across every
invocation and user, and with ``--max-concurrent N`` one of the user's N run tokens too. The
lease's fds go to the job (``pass_fds``), so the lease lasts exactly as long as the job's process,
whatever becomes of the guildlite process that started it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from . import Backend, CheckLine

if TYPE_CHECKING:
    from .._guildfile import OpDef
    from .._leases import Lease, Want
    from .._leases import Ticket as LeaseTicket
    from .._run import Run
    from .._slots import Slot
    from . import Launched

# What the end of a run needs to be recorded (run.json, twice, and a few scalars) when the job
# filled the disk: held from the start, freed just before the end is written.
_RESERVE_BYTES = 256 * 1024


class LocalBackend(Backend):
    """Jobs as child processes of the owning guildlite; ``guildlite stop`` signals that owner."""

    name = "local"
    machine_queue = True

    def __init__(self, options: object) -> None:
        super().__init__(options)
        self._granted: dict[str, Lease] = {}  # run id -> its lease, until its job holds it

    def check(self) -> Sequence[str | CheckLine]:
        """The GPU lease directory every local run with GPUs (or a --max-concurrent) goes through."""
        from .._errors import GuildliteError
        from .._leases import lease_dir

        try:
            found = lease_dir()
        except (GuildliteError, OSError) as e:
            return [CheckLine(f"local: GPU lease dir: {e}", ok=False)]
        caveat = found.caveat()
        return [CheckLine(f"local: GPU lease dir {found.path}" + (f" ({caveat})" if caveat else ""))]

    def plan_slots(self, op: OpDef, parallel: int | None, n_trials: int, gpus: str | None) -> list[Slot]:
        """``parallel`` (default 1) slots, each leasing ``gpus-per-trial`` GPUs from the pool; the
        lease dir is checked here, before anything is staged."""
        from .._slots import lease_slots, visible_gpus

        n = 1 if parallel is None else parallel
        slots = lease_slots(n, op.gpus_per_trial, visible_gpus(gpus) if op.gpus_per_trial else [])
        if op.gpus_per_trial:
            from .._leases import lease_dir

            lease_dir()
        return slots

    def queue_up(self, run: Run, slot: Slot, max_concurrent: int | None) -> _LeaseTicket | None:
        """A ticket for the slot's GPUs and, with ``max_concurrent``, one of the user's run tokens."""
        from .._leases import Want, queue_up

        wants = []
        if slot.need:
            wants.append(Want(slot.pool, slot.need))
        if max_concurrent is not None:
            wants.append(run_tokens(max_concurrent))
        if not wants:
            return None
        return _LeaseTicket(self, run.id, slot, queue_up(run.id, wants))

    def submit(self, run: Run, argv: Sequence[str], env: Mapping[str, str],
               on_exit: Callable[[Launched, int], None], *, echo: bool, grace: float) -> Launched:
        from .._launch import Job

        lease = self._granted.pop(run.id, None)
        try:
            _reserve(run.paths.reserve)
            job = Job(argv, run.run_dir, env, run.paths.output_log, echo=echo, on_exit=on_exit, grace=grace,
                      pass_fds=lease.fds if lease is not None else ())
            job.start()
        finally:
            if lease is not None:  # the job holds the lease now (its copies of the fds), until it ends
                lease.release()
        return job


def run_tokens(n: int) -> Want:
    """One of this user's ``n`` run tokens (``run:<user>:<k>``, k < n): with ``--max-concurrent N``
    at most N of a user's runs hold one at once, machine-wide, queued with the GPU leases."""
    from .._lease_state import user_name
    from .._leases import Want

    user = user_name()
    return Want(tuple(f"{user}:{k}" for k in range(n)), 1, kind="run")


def _reserve(path: Path) -> None:
    """Create ``path`` with _RESERVE_BYTES of allocated blocks (not a sparse file: glibc writes
    zeros where the filesystem cannot allocate)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, _RESERVE_BYTES)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


class _LeaseTicket:
    """A run's ticket in the machine-wide queue (``_leases``), as the scheduler polls it
    (``backends.Ticket``): its grant is the slot with the leased GPUs, and the lease is kept for
    ``submit`` to hand to the job."""

    def __init__(self, backend: LocalBackend, run_id: str, slot: Slot, ticket: LeaseTicket) -> None:
        self._backend, self._run_id, self._slot, self._ticket = backend, run_id, slot, ticket

    def try_take(self) -> Slot | None:
        import dataclasses

        lease = self._ticket.try_take()
        if lease is None:
            return None
        self._backend._granted[self._run_id] = lease
        return dataclasses.replace(self._slot, gpus=lease.gpus if self._slot.need else None, pool=(), need=0)

    def reason(self) -> str:
        return self._ticket.reason()

    def position(self) -> int:
        return self._ticket.position()

    def cancel(self) -> None:
        if self._ticket.open:
            self._ticket.cancel()
        lease = self._backend._granted.pop(self._run_id, None)
        if lease is not None:  # granted, and the run ended before its job started
            lease.release()
