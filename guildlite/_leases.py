"""Machine-wide leases on GPUs (and other tokens), taken in arrival order across processes and users.

A lease is a ``flock`` on one file per token in the lease directory (``_lease_dir``): the kernel
lets go of it when the last process holding it is gone, SIGKILL included, so a dead holder's GPU
is free at once. GPU tokens are keyed by the GPU's UUID (``_gpu_uuids``), so two invocations that
name a GPU differently still never share it.

``flock`` alone is not fair, so waiters queue: ``queue_up`` writes a ticket file numbered in
arrival order and holds a flock on it while it lives (a dead waiter's ticket is seen unlocked and
swept). A ticket never takes a token that an earlier live ticket still waiting could use: a big
request is never starved by small ones, and requests for disjoint GPUs never wait on each other;
a token no earlier waiter wants is taken at once (a run on GPU 0 or 1 does not wait behind one
that waits for GPU 1 while GPU 0 is free). One exception (``_lease_state.in_the_way``): an earlier ticket that also waits for non-GPU
tokens it cannot have now (its user's run tokens, ``--max-concurrent``), none of ours, lets us by.
Every check-and-take runs under the directory's short take lock, so takes are atomic.

Usage::

    ticket = queue_up(run_id, [Want(("0", "1"), 1)])
    lease = ticket.take()                 # or poll ticket.try_take(), showing ticket.reason()
    subprocess.Popen(argv, env={..., "CUDA_VISIBLE_DEVICES": ",".join(lease.gpus)}, pass_fds=lease.fds)
    lease.release()                       # the job's inherited fds keep the GPUs leased until it ends

``Lease.release`` closes this process's fds only: a job that inherited them (``pass_fds``) keeps
the lease until its last process exits. Never ``flock(LOCK_UN)`` a lease fd: that would end the
lock for the job too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Any, Iterator, Sequence

from ._errors import GuildliteError
from ._files import now_iso
from ._lease_dir import LeaseDir, LeaseError, lease_dir, write_record
from ._lease_state import (
    SEQ_DIGITS,
    TICKET_PREFIX,
    Holder,
    Probe,
    Waiter,
    Want,
    behind,
    file_name,
    holders,
    in_the_way,
    live_tickets,
    rec_keys,
    seq_of,
    user_name,
    waiters,
    why_held,
)

__all__ = ["Holder", "Lease", "LeaseError", "Ticket", "Waiter", "Want", "holders", "lease_dir", "queue_up",
           "waiters"]

_TMP_PREFIX = ".ticket-tmp."


class Lease:
    """Tokens held until ``release`` (and while any process that inherited ``fds`` lives)."""

    def __init__(self, run_id: str, wants: tuple[Want, ...], taken: tuple[tuple[str, ...], ...],
                 fds: tuple[int, ...]) -> None:
        self.run_id = run_id
        self.wants = wants
        self.taken = taken  # per want, the ids taken (as given)
        self.fds = fds  # pass to the job with pass_fds: the lease lives as long as its last process
        self._released = False

    @property
    def gpus(self) -> tuple[str, ...]:
        """The GPU ids taken, as given (for CUDA_VISIBLE_DEVICES)."""
        return tuple(i for want, ids in zip(self.wants, self.taken) if want.kind == "gpu" for i in ids)

    def release(self) -> None:
        """Let go of this process's hold (idempotent). A job given ``fds`` keeps it until it ends."""
        if not self._released:
            self._released = True
            for fd in self.fds:
                os.close(fd)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease({self.run_id!r}, taken={self.taken!r}, released={self._released})"


class Ticket:
    """A place in the queue for ``wants``; alive (and in everyone's way) until it takes or is
    cancelled, or its process dies."""

    def __init__(self, directory: LeaseDir, run_id: str, wants: tuple[Want, ...], name: str, fd: int) -> None:
        self.run_id = run_id
        self.wants = wants
        self.name = name
        self.seq = seq_of(name) or 0
        self._dir = directory
        self._fd: int | None = fd
        self._pid = os.getpid()
        self._keys = tuple(w.keys() for w in wants)
        self._all_keys = frozenset(k for keys in self._keys for k in keys)

    @property
    def open(self) -> bool:
        """Whether the ticket still waits (not taken, not cancelled)."""
        return self._fd is not None

    def try_take(self) -> Lease | None:
        """Take every want now, or nothing (None): from the tokens that are free and that no earlier
        live ticket still waiting wants (``_lease_state.in_the_way``). Never blocks (but for the
        take lock, held for well under a millisecond)."""
        if self._fd is None:
            raise RuntimeError(f"ticket {self.name} was already taken or cancelled")
        with self._dir.locked():
            # Tokens an earlier waiter in our way could use stay its: never taken from under it. A
            # token none of them can use is ours, or it would sit idle while we wait (a run on
            # --gpus 1 waiting for GPU 1 held back a run on --gpus 0,1 with GPU 0 free).
            got = self._grab(self._reserved())
            if got is None:
                return None
            taken, fds = got
            self._close_ticket()
        return Lease(self.run_id, self.wants, taken, fds)

    def take(self, timeout: float | None = None, poll: float = 0.05) -> Lease | None:
        """``try_take`` until it succeeds (the lease) or ``timeout`` seconds pass (None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lease = self.try_take()
            if lease is not None or (deadline is not None and time.monotonic() >= deadline):
                return lease
            time.sleep(poll)

    def position(self) -> int:
        """1 + how many live tickets queued earlier overlap this one (1: next for its tokens)."""
        with self._dir.locked(shared=True):
            return 1 + sum(1 for _ in self._earlier_live())

    def reason(self) -> str:
        """Why this ticket waits, naming runs and users, such as "waiting for GPU 1, held by run X
        of user Y"; "" when it could take now."""
        with self._dir.locked(shared=True):
            blocker = self._blocker()
            if blocker is not None:
                return behind(blocker[1], self.wants, self._keys)
            return why_held(self._dir, self.wants, self._keys)

    def cancel(self) -> None:
        """Leave the queue (idempotent)."""
        if self._fd is not None:
            self._close_ticket()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        # A ticket nobody holds any more can never take: leave the queue rather than block it.
        if self._pid == os.getpid():  # not in a forked child: the ticket is its parent's
            with contextlib.suppress(Exception):
                self.cancel()

    def _close_ticket(self) -> None:
        # Unlink before close: a reader between the two still sees a live ticket, never a dead one
        # that is ours.
        self._dir.unlink(self.name)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _earlier_live(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(name, record) of each live earlier ticket in our way (``in_the_way``), oldest first."""
        probe = Probe(self._dir)
        for name, rec in live_tickets(self._dir, before=(self.seq, self.name), overlapping=self._all_keys):
            if in_the_way(name, rec, self._all_keys, probe):
                yield name, rec

    def _reserved(self) -> frozenset[str]:
        """Our keys that earlier waiters in our way want (read no further once that is all of them)."""
        reserved: set[str] = set()
        for _name, rec in self._earlier_live():
            reserved.update(self._all_keys.intersection(rec_keys(rec)))
            if reserved == self._all_keys:
                break
        return frozenset(reserved)

    def _blocker(self) -> tuple[str, dict[str, Any]] | None:
        return next(iter(self._earlier_live()), None)

    def _grab(self, reserved: frozenset[str]) -> tuple[tuple[tuple[str, ...], ...], tuple[int, ...]] | None:
        held: dict[str, int] = {}
        taken: list[tuple[str, ...]] = []
        try:
            for want, keys in zip(self.wants, self._keys):
                ids: list[str] = []
                for token_id, key in zip(want.pool, keys):
                    if len(ids) == want.count:
                        break
                    if key in held or key in reserved:
                        continue
                    fd = _try_lock(self._dir, key)
                    if fd is not None:
                        held[key] = fd
                        ids.append(token_id)
                if len(ids) < want.count:
                    raise _NotNow
                taken.append(tuple(ids))
        except BaseException as e:
            for fd in held.values():
                os.close(fd)
            if isinstance(e, _NotNow):
                return None
            raise
        self._describe(held)
        return tuple(taken), tuple(held.values())

    def _describe(self, held: dict[str, int]) -> None:
        """Name this run in each lease file taken, for ``guildlite gpus`` and others' reasons."""
        since, user = now_iso(), user_name()
        for want, keys in zip(self.wants, self._keys):
            for token_id, key in zip(want.pool, keys):
                if key not in held:
                    continue
                record = {"v": 1, "key": key, "kind": want.kind, "id": token_id, "run": self.run_id, "user": user,
                          "uid": os.geteuid(), "pid": os.getpid(), "since": since}
                try:
                    write_record(held[key], record)
                except OSError:  # a full disk: the lease holds all the same, but must not name the last holder
                    with contextlib.suppress(OSError):
                        os.ftruncate(held[key], 0)

    def __repr__(self) -> str:
        return f"Ticket({self.run_id!r}, {self.name!r}, open={self.open})"


class _NotNow(Exception):
    pass


def _try_lock(directory: LeaseDir, key: str) -> int | None:
    """An fd holding the lease on ``key``, or None when someone holds it (or its file is unusable)."""
    name = file_name(key)
    try:
        fd = directory.open(name)
    except LeaseError:
        return None  # planted or not ours to open: never takeable; reason() says why
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:  # removed while we opened it: a lock on it would guard nothing
        os.close(fd)
        return None
    return fd


def queue_up(run_id: str, wants: Sequence[Want]) -> Ticket:
    """Join the machine-wide queue for ``wants`` (all or nothing, taken together); the ticket
    waits behind every earlier live ticket whose pools overlap."""
    wants = tuple(wants)
    if not wants:
        raise GuildliteError("a lease needs at least one Want", exit_code=2)
    for w in wants:
        if len(set(w.keys())) < w.count:  # "0" and its UUID are one GPU
            raise GuildliteError(f"cannot lease {w.count} {w.kind}(s) out of {','.join(w.pool)}: "
                                 f"they are {len(set(w.keys()))} distinct", exit_code=2)
    directory = lease_dir()
    record = {"v": 1, "run": run_id, "user": user_name(), "uid": os.geteuid(), "pid": os.getpid(), "since": now_iso(),
              "wants": [{"kind": w.kind, "pool": list(w.pool), "count": w.count, "keys": list(w.keys())}
                        for w in wants]}
    tag = f"{os.getpid()}.{os.urandom(4).hex()}"
    tmp = f"{_TMP_PREFIX}{tag}"
    with directory.locked():
        names = directory.names()
        _sweep_tmp(directory, [n for n in names if n.startswith(_TMP_PREFIX)])
        top = _top_seq(directory, names)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                     dir_fd=directory.fd)
        try:
            os.fchmod(fd, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)  # alive from the moment it is visible under its name
            write_record(fd, record)
            name = f"{TICKET_PREFIX}{top + 1:0{SEQ_DIGITS}d}.{tag}"
            directory.rename(tmp, name)
        except BaseException:
            directory.unlink(tmp)
            os.close(fd)
            raise
    return Ticket(directory, run_id, wants, name, fd)



def _top_seq(directory: LeaseDir, names: list[str]) -> int:
    """The highest ticket number in the directory (0: none), a new ticket's being one more. A dead
    ticket numbered so high that no number is left after it (planted: no queue counts that far) is
    passed over; a live one is an error."""
    for seq, name in sorted(((s, n) for n in names if (s := seq_of(n)) is not None), reverse=True):
        if seq + 1 < 10**SEQ_DIGITS:
            return seq
        seen = directory.look(name)
        if seen is not None and seen.locked:
            raise LeaseError(f"{directory.path / name} holds the last ticket number there is (not made by "
                             "guildlite; remove it)")
    return 0


def _sweep_tmp(directory: LeaseDir, names: list[str]) -> None:
    """Remove tickets that were never published: their process died while making one (under the
    take lock, which we hold, so none is being made now)."""
    for name in names:
        seen = directory.look(name)
        if seen is not None and not seen.locked:
            directory.unlink(name)
