"""A config-validation plugin: refuse bad flag combinations before the job starts.

Rules come from the guildfile as data (never as code to evaluate):

- ``not_greater``: pairs ``[a, b]``: flag ``a`` must be <= flag ``b``
  (e.g. ``[batch-size, dataset-size]``);
- ``split_across_ranks``: flags that must divide evenly by the run's number of processes
  (``nproc-per-node``: a global batch split over ranks);
- ``positive``: flags that must be > 0.

A broken rule raises ``StopRun``: the run ends with status ``error`` (``run.json`` ``error``
names this plugin, the hook and the reason), the job is never launched, and every plugin's
``on_run_end`` still fires. In a batch only the offending trials are refused; the others run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guildlite import Plugin, Run, StopRun, hook


class ValidateFlags(Plugin):
    def __init__(
        self,
        not_greater: Sequence[Sequence[str]] = (),
        split_across_ranks: Sequence[str] = (),
        positive: Sequence[str] = (),
    ) -> None:
        for pair in not_greater:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise ValueError(f"not_greater: each rule is a pair of flag names, got {pair!r}")
        self.not_greater = [tuple(p) for p in not_greater]
        self.split_across_ranks = list(split_across_ranks)
        self.positive = list(positive)

    # Priority 1: before the built-ins (10), so a refused run costs nothing (no source snapshot,
    # no environment capture). Staging is the earliest hook a run gets; batch runs get no
    # on_run_staged (only begin/end), so each trial is checked on its own values.
    @hook(priority=1)
    def on_run_staged(self, run: Run) -> None:
        problems = self.problems(run.flags, run.nproc_per_node)
        run.attrs["validate"] = {"ok": not problems, "problems": problems}
        if problems:
            raise StopRun("; ".join(problems))

    def problems(self, flags: Mapping[str, Any], nproc: int) -> list[str]:
        out = []
        for name in self.positive:
            v = flags.get(name)
            if isinstance(v, (int, float)) and v <= 0:
                out.append(f"{name} must be > 0 (got {v})")
        for a, b in self.not_greater:
            va, vb = flags.get(a), flags.get(b)
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va > vb:
                out.append(f"{a} ({va}) must not be larger than {b} ({vb})")
        for name in self.split_across_ranks:
            v = flags.get(name)
            if isinstance(v, int) and nproc > 1 and v % nproc:
                out.append(f"{name} ({v}) must split evenly across {nproc} processes")
        return out
