"""Slots (disjoint GPU sets or CPU places) and the queue that starts jobs as slots free up."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

from ._errors import GuildliteError
from ._launch import Launched

T = TypeVar("T")


@dataclass(frozen=True)
class Slot:
    """A place to run one job: an index, and the GPUs it owns (None: leave CUDA_VISIBLE_DEVICES alone)."""

    index: int
    gpus: tuple[str, ...] | None = None


def visible_gpus(explicit: str | None = None) -> list[str]:
    """GPU ids from ``--gpus``, else CUDA_VISIBLE_DEVICES, else nvidia-smi; [] when there are none."""
    if explicit is not None:
        return [g.strip() for g in explicit.split(",") if g.strip()]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def make_slots(parallel: int, gpus_per_trial: int, gpus: Sequence[str]) -> list[Slot]:
    """``parallel`` slots; with ``gpus_per_trial`` > 0 each owns a disjoint set of that many GPUs."""
    if parallel < 1:
        raise GuildliteError("--parallel must be at least 1", exit_code=2)
    if gpus_per_trial <= 0:
        return [Slot(i) for i in range(parallel)]
    groups = len(gpus) // gpus_per_trial
    if groups == 0:
        have = f"{len(gpus)} visible ({','.join(gpus)})" if gpus else "none visible"
        raise GuildliteError(
            f"the operation needs {gpus_per_trial} GPU(s) per trial but there are {have}; "
            "pass --gpus IDS or set gpus-per-trial: 0",
            exit_code=2,
        )
    n = min(parallel, groups)
    return [Slot(i, tuple(gpus[i * gpus_per_trial : (i + 1) * gpus_per_trial])) for i in range(n)]


class Scheduler(Generic[T]):
    """Start items as slots free up (a queue, not waves) and hand each exit back.

    ``start(item, slot, done)`` returns a started job (whose exit it reports through ``done``) or
    None when the item ended without launching. ``finish(item, exit_code, job)`` records the end.
    Both are called from the calling (main) thread only, so plugins never run concurrently.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        start: Callable[[T, Slot, Callable[[Launched, int], None]], Launched | None],
        finish: Callable[[T, int, Launched], None],
        grace: float = 30.0,
    ) -> None:
        self.slots = list(slots)
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
            try:
                job, code = self._events.get(timeout=0.2)
            except queue.Empty:
                if self.stopping is not None and time.monotonic() - self._stop_time > self.grace:
                    self.kill()
                continue
            item, slot = self.running.pop(job)
            free.appendleft(slot)
            self._finish(item, code, job)
