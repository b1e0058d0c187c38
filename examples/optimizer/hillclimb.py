"""A third-party guildlite optimizer: a seeded hill climber, in one module, with no Optuna.

Installed as a distribution that names it in the entry-point group ``guildlite.optimizers``
(``hillclimb = hillclimb:HillClimb``), it is ``guildlite run train lr=loguniform[1e-4:1e-1]
--optimizer hillclimb --minimize loss``. Its first trial is the middle of the space; each next one
is the best trial so far with every dimension moved by a random step, a step that shrinks each time
a trial is no better. It keeps nothing on disk: when a search starts again (a restart, a detached
supervisor) guildlite makes a new one and tells it every trial that ended before.
"""

from __future__ import annotations

import math
import random
from typing import Any


class HillClimb:
    """``ask(batch) -> flags | None`` and ``tell(trial, outcome)``: the whole interface."""

    max_trials = 12  # the trials of a search without --max-trials

    def __init__(self, space: dict[str, Any], spec: Any) -> None:
        # Refused here (ValueError: the user sees it, exit 2, before anything is staged).
        if not space:
            raise ValueError("hillclimb needs a flag with a range or a list")
        self.space = space
        self.sign = 1.0 if spec.direction == "minimize" else -1.0
        self.rng = random.Random(spec.seed)
        self.best: tuple[float, dict[str, Any]] | None = None
        self.step = 0.5  # of each dimension's span

    def ask(self, batch: Any) -> dict[str, Any] | None:
        if self.best is None:
            return {name: self._middle(dim) for name, dim in self.space.items()}
        return {name: self._near(dim, self.best[1][name]) for name, dim in self.space.items()}

    def tell(self, trial: Any, outcome: float | str) -> None:
        if isinstance(outcome, str):  # "failed" or "pruned": worse than anything that completed
            self.step *= 0.7
            return
        value = self.sign * outcome
        if self.best is None or value < self.best[0]:
            self.best = (value, {name: trial.flags[name] for name in self.space})
        else:
            self.step *= 0.7

    # --- one dimension: kind "grid"/"choice" (values), "uniform"/"loguniform"/"randint" (bounds) ---

    def _middle(self, dim: Any) -> Any:
        if dim.values is not None and dim.kind != "randint":
            return dim.values[len(dim.values) // 2]
        lo, hi = dim.args
        if dim.kind == "loguniform":
            return math.exp((math.log(lo) + math.log(hi)) / 2)
        return (lo + hi) // 2 if dim.kind == "randint" else (lo + hi) / 2

    def _near(self, dim: Any, value: Any) -> Any:
        if dim.values is not None and dim.kind != "randint":
            i = dim.values.index(value) if value in dim.values else 0
            reach = max(1, round(self.step * len(dim.values)))
            return dim.values[min(len(dim.values) - 1, max(0, i + self.rng.randint(-reach, reach)))]
        lo, hi = dim.args
        if dim.kind == "loguniform":
            span = math.log(hi) - math.log(lo)
            moved = math.log(value) + self.rng.uniform(-1, 1) * self.step * span
            return math.exp(min(math.log(hi), max(math.log(lo), moved)))
        moved = value + self.rng.uniform(-1, 1) * self.step * (hi - lo)
        if dim.kind == "randint":
            return int(min(hi, max(lo, round(moved))))
        return min(hi, max(lo, moved))
