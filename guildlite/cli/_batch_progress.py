"""What ``run`` and ``watch`` print of a run's end and of a batch's trials as they go."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._status import DONE
from ._common import _fmt, _say

if TYPE_CHECKING:
    from .._run import Run


def _summary(run: Run) -> str:
    if run.is_batch:
        counts = (run.batch or {}).get("summary") or {"staged": len(run.trial_ids)}
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"guildlite: batch {run.id} {run.status} ({parts})"
    if run.is_pipeline:
        counts = (run.pipeline or {}).get("summary") or {}
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no step run"
        why = f": {run.error.get('message')}" if run.error else ""
        return f"guildlite: pipeline {run.id} {run.status} ({len(run.step_ids)} of {len((run.pipeline or {}).get('steps') or [])} steps: {parts}){why}"
    msg = f"guildlite: run {run.id} {run.status}"
    if run.error and run.error.get("plugin"):  # the hook's failure or veto was said as it happened: once
        msg += f" in {run.error['plugin']}.{run.error['hook']} (see above)"
    elif run.error:
        msg += f": {run.error.get('message')}"
    return msg


class _BatchProgress:
    """One line per trial start and end, with done/running/failed counts and an ETA; a running
    trial's own progress (percent, ETA) every PROGRESS_EVERY seconds at most."""

    PROGRESS_EVERY = 10.0

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self.t0 = time.monotonic()
        self.index: dict[str, int] = {}
        self.said: dict[str, float] = {}  # trial id -> when its progress was last printed
        self.flag_sets: dict[str, Any] = {}  # trial id -> its flags, for the ones that vary

    def _flags(self, run: Run) -> str:
        """The trial's flags, the batch's dimensions and the flags that varied so far first."""
        from .._varying import flag_order, ordered

        self.flag_sets.setdefault(run.id, run.flags)
        parent = run.parent
        dims = (parent.batch or {}).get("dims") if parent is not None else None
        first = [d for d in dims if isinstance(d, str)] if isinstance(dims, list) else []
        order = flag_order(self.flag_sets.values(), first=first)
        return " ".join(f"{k}={_fmt(v)}" for k, v in ordered(run.flags, order))

    def event(self, event: str, run: Run) -> None:
        if run.is_batch:
            return
        n = self.index.setdefault(run.id, len(self.index) + 1)
        if event == "progress":
            from .._progress import shown

            now = time.monotonic()
            text = shown(run.run_dir, run.status)
            if text and now - self.said.get(run.id, -self.PROGRESS_EVERY) >= self.PROGRESS_EVERY:
                self.said[run.id] = now
                _say(f"guildlite: trial {n}/{self.total} {run.id} {text}", err=True)
            return
        flags = self._flags(run)
        if event == "wait":
            _say(f"guildlite: trial {n}/{self.total} {run.id} pending: {(run.waiting or {}).get('reason')}", err=True)
        elif event == "start":
            self.running += 1
            gpus = f" [gpus {','.join(run.gpus)}]" if run.gpus else ""
            _say(f"guildlite: trial {n}/{self.total} {run.id} started{gpus}: {flags}", err=True)
        elif event == "end":
            if run.started:
                self.running -= 1
            self.done += 1
            self.failed += run.status not in DONE
            elapsed = time.monotonic() - self.t0
            eta = elapsed / self.done * (self.total - self.done)
            _say(
                f"guildlite: trial {n}/{self.total} {run.id} {run.status} | done {self.done}/{self.total}, "
                f"running {self.running}, failed {self.failed} | {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
                err=True,
            )
