"""``select-best: min loss``: of a set of runs (a batch's trials), the one whose last value of a
scalar is the lowest (``max``: highest). In a pipeline the set is the trials of the step before
(``_pipeline``); otherwise the completed trials of the op's newest batch (``_upstream``)."""

from __future__ import annotations

import math
from pathlib import Path
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


def best_of_newest_batch(op: str, how: str, key: str, runs_dir: Path, name: str) -> Run:
    """The best (``best_by``) of the completed trials of ``op``'s newest batch that has one."""
    from ._index import load_summaries
    from ._selection import RunList

    batches = load_summaries(RunList(runs_dir), where=lambda rec: rec.get("op") == op and rec.get("is_batch") is True)
    for batch, _ in batches:
        trials = [t for t in batch.trials if t.status == "completed"]
        if trials:
            return best_by(trials, how, key)[0]
    raise GuildliteError(f"select-best {how} {key}: operation '{op}' has no batch with a completed trial in {runs_dir}:"
                         f" run a batch first (guildlite run {op} NAME=[A,B]), or pick a run with {name}=RUN",
                         exit_code=2)


def best_in(runs_dir: Path, specs: Sequence[str], how: str, key: str, filter: str | None = None) -> tuple[str, float]:
    """The id of the run, among those ``specs`` select (default: all) that ``filter`` matches,
    whose ``key`` is the lowest (``how`` "min") or highest ("max"), with that value. ``key`` is a
    scalar as a filter names it: ``loss`` (its last value), ``min(loss)``, ``max(acc)``. The newest
    wins a tie. GuildliteError when no run has a value of ``key``."""
    from ._filter import FilterError, filtered_records, parse
    from ._filter_syntax import parse_term
    from ._index import load_records
    from ._selection import RunList, select_runs

    term = parse_term(key)
    if term.kind not in ("name", "scalar"):
        raise FilterError(key, term.pos, f"--{how} ranks runs by a scalar, not {str(term)!r}")
    runs = RunList(runs_dir)
    ids = [r.id for r in select_runs(runs, specs)] if specs else None
    filt = parse(filter) if filter else None
    rows = filtered_records(runs, filt, ids) if filt else load_records(runs, ids, scalars=True)
    if filt and not filt.uses_scalars():  # the scalars of the matches, then
        rows = load_records(runs, [name for name, _, _ in rows], scalars=True)
    scored = []
    for name, _, summary in rows:
        s = summary.get(term.name)
        v = s.get(term.agg) if isinstance(s, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            scored.append((float(v), name))
    if not scored:
        among = f"{len(rows)} run(s)" + (" matching the filter" if filter else "")
        raise GuildliteError(f"select --{how} {key}: no run has a value of scalar '{term.name}' ({among})",
                             exit_code=1)
    value = (min if how == "min" else max)(v for v, _ in scored)
    return next(name for v, name in scored if v == value), value
