"""The queue that starts jobs on slots (``_slots``) as they free up, each once what it waits for
(machine-wide GPU leases, a user's run tokens: a backend's ``Ticket``) is granted."""

from __future__ import annotations

import queue
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Generic, Iterable, Sequence, TypeVar

from ._slots import Slot

if TYPE_CHECKING:
    from .backends import Launched, Ticket

T = TypeVar("T")

_TICK = 0.2  # seconds between looks at the queue and a stop's grace when nothing waits
_WAIT_TICK = 0.05  # ... while items wait for a grant: a freed GPU is taken within a tick
_LIVE_TICK = 0.1  # ... while jobs run and their scalars are followed (``tick``)


class Scheduler(Generic[T]):
    """Start items as slots free up (a queue, not waves) and hand each exit back.

    ``start(item, slot, done)`` returns a started job (whose exit it reports through ``done``) or
    None when the item ended without launching. ``finish(item, exit_code, job)`` records the end.
    ``queue_up(item, slot)`` (optional) returns the ticket an item waits on before it may start on
    ``slot`` (None: it starts at once): the ticket is polled each tick, never blocking, and its
    grant (the slot with what was leased) is where the item starts; ``waiting(item, ticket)`` is
    called while it waits and returns False when the item left the queue (it ended: a stop asked
    for it). ``tick(running)`` (running: job -> item) is called each tick (at most _LIVE_TICK
    apart while jobs run) to follow the running items (their scalars). All are called from the
    calling (main) thread only, so plugins never run concurrently, and the main thread is always
    free for exits and signals.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        start: Callable[[T, Slot, Callable[[Launched, int], None]], Launched | None],
        finish: Callable[[T, int, Launched], None],
        grace: float = 30.0,
        queue_up: Callable[[T, Slot], Ticket | None] | None = None,
        waiting: Callable[[T, Ticket], bool] | None = None,
        tick: Callable[[dict[Launched, T]], None] | None = None,
    ) -> None:
        self.slots = list(slots)
        self._tick = tick
        self._start = start
        self._finish = finish
        self._queue = queue_up
        self._waiting = waiting or (lambda item, ticket: True)
        self.grace = grace
        self.running: dict[Launched, tuple[T, Slot]] = {}
        self.waiters: list[tuple[T, Slot, Ticket]] = []  # in the order they queued
        self.stopping: int | None = None
        self.hold = False  # set to stop launching new items (fail fast)
        self._stop_time = 0.0
        self._events: queue.Queue[tuple[Launched, int]] = queue.Queue()

    def stop(self, sig: int) -> None:
        """Stop launching and forward ``sig`` to every running job; a second SIGINT kills them."""
        if self.stopping is not None and sig == signal.SIGINT:
            self.kill()
            return
        if self.stopping is None:
            self.stopping, self._stop_time = sig, time.monotonic()
        for job in list(self.running):
            job.send(sig)

    def kill(self) -> None:
        for job in list(self.running):
            job.kill()

    def run(self, items: Iterable[T]) -> list[T]:
        """Run ``items``; return those never started (after a stop or hold), in order: the ones
        that were waiting for a grant first (their tickets cancelled), then the rest of ``items``.

        ``items`` is drawn from one at a time, only when a slot is free and after the exits seen
        so far were handed to ``finish``: an item may be made as it is drawn (a search's next
        trial, proposed knowing how the ones before it ended). The rest of it is drawn after a
        stop or hold (to be returned): a source that makes items makes none then."""
        todo = iter(items)
        drained = False
        free = deque(self.slots)
        left: list[T] = []
        while True:
            while not drained and free and self.stopping is None and not self.hold:
                try:
                    item = next(todo)
                except StopIteration:
                    drained = True
                    break
                slot = free.popleft()
                ticket = self._queue(item, slot) if self._queue is not None else None
                if ticket is None:
                    self._launch(item, slot, slot, None, free)
                else:
                    self.waiters.append((item, slot, ticket))
            if self.stopping is not None or self.hold:
                left.extend(self._give_up(free))
            self._grant(free)
            if not self.running and not self.waiters:
                if not drained and free and self.stopping is None and not self.hold:
                    continue  # a waiting item left the queue: its slot is free for the next
                return [*left, *todo]
            if self._tick is not None and self.running:
                self._tick({job: item for job, (item, _) in self.running.items()})
            wait = _WAIT_TICK if self.waiters else _LIVE_TICK if self._tick is not None and self.running else _TICK
            try:
                job, code = self._events.get(timeout=wait)
            except queue.Empty:
                if self.stopping is not None and time.monotonic() - self._stop_time > self.grace:
                    self.kill()
                continue
            item, slot = self.running.pop(job)
            free.appendleft(slot)
            self._finish(item, code, job)

    def _grant(self, free: deque[Slot]) -> None:
        """Start each waiting item whose ticket is granted now, in queue order. The tickets of one
        scheduler are one queue (its slots want alike): those behind one that must wait wait too,
        and are not asked."""
        blocked = False
        for entry in list(self.waiters):
            item, slot, ticket = entry
            granted = None if blocked else ticket.try_take()
            if granted is not None:
                self.waiters.remove(entry)
                self._launch(item, slot, granted, ticket, free)
                continue
            blocked = True
            if not self._waiting(item, ticket):  # it ended while it waited
                self.waiters.remove(entry)
                ticket.cancel()
                free.appendleft(slot)

    def _give_up(self, free: deque[Slot]) -> list[T]:
        """Cancel every waiting item's ticket (a stop, or a hold): their items never started."""
        gone = [item for item, _, _ in self.waiters]
        for _, slot, ticket in self.waiters:
            ticket.cancel()
            free.appendleft(slot)
        self.waiters.clear()
        return gone

    def _launch(self, item: T, slot: Slot, granted: Slot, ticket: Ticket | None, free: deque[Slot]) -> None:
        job = self._start(item, granted, lambda j, code: self._events.put((j, code)))
        if job is None:
            if ticket is not None:  # what was granted and never reached a job goes back
                ticket.cancel()
            free.appendleft(slot)
        else:
            self.running[job] = (item, slot)
