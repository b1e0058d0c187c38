"""The queue that starts jobs on slots (``_slots``) as they free up."""

from __future__ import annotations

import queue
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Generic, Sequence, TypeVar

from ._slots import Slot

if TYPE_CHECKING:
    from .backends import Launched

T = TypeVar("T")


class Scheduler(Generic[T]):
    """Start items as slots free up (a queue, not waves) and hand each exit back.

    ``start(item, slot, done)`` returns a started job (whose exit it reports through ``done``) or
    None when the item ended without launching. ``finish(item, exit_code, job)`` records the end.
    ``tick(running)`` (running: job -> item) is called every TICK seconds and after each exit, to
    follow the running items (their scalars). All are called from the calling (main) thread only,
    so plugins never run concurrently.
    """

    TICK = 0.1

    def __init__(
        self,
        slots: Sequence[Slot],
        start: Callable[[T, Slot, Callable[[Launched, int], None]], Launched | None],
        finish: Callable[[T, int, Launched], None],
        grace: float = 30.0,
        tick: Callable[[dict[Launched, T]], None] | None = None,
    ) -> None:
        self.slots = list(slots)
        self._tick = tick
        self._start = start
        self._finish = finish
        self.grace = grace
        self.running: dict[Launched, tuple[T, Slot]] = {}
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

    def run(self, items: Sequence[T]) -> list[T]:
        """Run ``items``; return those never started (after a stop or hold), in order."""
        todo = deque(items)
        free = deque(self.slots)
        while True:
            while todo and free and self.stopping is None and not self.hold:
                slot, item = free.popleft(), todo.popleft()
                job = self._start(item, slot, lambda j, code: self._events.put((j, code)))
                if job is None:
                    free.appendleft(slot)
                else:
                    self.running[job] = (item, slot)
            if not self.running:
                return list(todo)
            if self._tick is not None:
                self._tick({job: item for job, (item, _) in self.running.items()})
            try:
                job, code = self._events.get(timeout=self.TICK if self._tick is not None else 0.2)
            except queue.Empty:
                if self.stopping is not None and time.monotonic() - self._stop_time > self.grace:
                    self.kill()
                continue
            item, slot = self.running.pop(job)
            free.appendleft(slot)
            self._finish(item, code, job)
