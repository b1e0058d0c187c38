"""A logging/timing plugin: wall time per phase of a run, kept in ``run.attrs["timing"]``.

Phases (seconds):
- ``setup``:  run created -> ``on_run_staged`` (source copied, run.json written)
- ``queued``: ``on_run_staged`` -> ``on_run_begin`` (a batch trial waits here for a free slot)
- ``job``:    ``on_run_begin`` -> ``on_run_end`` (torchrun start, the script, its exit)
- ``total``:  run created -> ``on_run_end``

Timestamps go into ``run.attrs`` as they are taken, not onto the plugin object: guildlite saves
attrs with the run, so the numbers survive whichever process fires ``on_run_end`` (with SLURM
``--detach`` that is not the process that fired ``on_run_begin``), and one plugin instance serves
every trial of a batch.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from guildlite import Plugin, Run, hook


class Timing(Plugin):
    """Times the phases of each run into ``run.attrs["timing"]`` and prints one line at its end."""

    def __init__(self, precision: int = 2, stderr: bool = False) -> None:
        if not isinstance(precision, int) or not 0 <= precision <= 6:
            raise ValueError("precision must be an integer from 0 to 6")
        self.precision = precision
        self.stream = sys.stderr if stderr else sys.stdout

    # Built-ins run at priority 10 and user plugins at 100 by default. Take the start stamps
    # early and the end stamp late, so the phases include the other plugins' work.
    @hook(priority=0)
    def on_run_staged(self, run: Run) -> None:
        run.attrs["timing"] = {"staged_at": time.time()}

    @hook(priority=0)
    def on_run_begin(self, run: Run) -> None:
        run.attrs.setdefault("timing", {})["begin_at"] = time.time()

    @hook(priority=1000)
    def on_run_end(self, run: Run) -> None:
        now = time.time()
        t = run.attrs.setdefault("timing", {})
        created = datetime.fromisoformat(run.created).timestamp() if run.created else None
        staged, begin = t.get("staged_at"), t.get("begin_at")
        phases = {
            "setup": _span(created, staged),
            "queued": _span(staged, begin),
            "job": _span(begin, now),
            "total": _span(created, now),
        }
        t["end_at"] = now
        t["seconds"] = {k: v for k, v in phases.items() if v is not None}
        what = "batch" if run.is_batch else "trial" if run.is_trial else "run"
        shown = " ".join(f"{k} {v:.{self.precision}f}s" for k, v in t["seconds"].items())
        print(f"[timing] {what} {run.id} {run.status}: {shown}", file=self.stream, flush=True)


def _span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(max(b - a, 0.0), 6)
