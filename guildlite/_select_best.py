"""``select-best: min loss``: of a set of runs (a batch's trials), the one whose last value of a
scalar is the lowest (``max``: highest)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from ._errors import GuildliteError
from ._scalars import summarize

if TYPE_CHECKING:
    from ._run import Run


def best_by(runs: Sequence[Run], how: str, key: str) -> tuple[Run, float]:
    """The run of ``runs`` whose last ``key`` value is the lowest (``how`` "min") or highest
    ("max"), with that value; the first in order on a tie. A run that logged no finite ``key`` is
    not a candidate; GuildliteError when none did."""
    scored = []
    for run in runs:
        last = (summarize(run.paths.scalars).get(key) or {}).get("last")
        if isinstance(last, (int, float)) and not isinstance(last, bool) and math.isfinite(last):
            scored.append((float(last), run))
    if not scored:
        ids = ", ".join(r.id for r in runs)
        raise GuildliteError(f"select-best {how} {key}: no run logged a value of '{key}' ({ids})", exit_code=2)
    pick = min if how == "min" else max
    value = pick(v for v, _ in scored)
    return next(r for v, r in scored if v == value), value
