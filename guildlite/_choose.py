"""What a command chooses: the runs dir it works on, runs chosen by selectors (in the runs dir or
in its trash), exactly one run, filters on run records, and the newest run that has yet to end.

Built over the store's listing and selectors (``_selection``) and the summary index (``_index``),
which it sits above; commands and scripts share these, so a selector or a filter means the same
everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Container, Mapping, Sequence

from ._errors import GuildliteError, RunNotFoundError

if TYPE_CHECKING:
    from ._run import Run
    from ._selection import RunList


def runs_dir_for(runs_dir: Path | None = None, guildfile: Path | None = None) -> Path:
    """The runs dir: ``runs_dir`` when given, else ``GUILDLITE_RUNS_DIR``, else the one the guildfile
    (``guildfile``, or the one found here or above) names, else ``runs/`` beside it."""
    from ._runs_dir import default_runs_dir, option_runs_dir

    if runs_dir:
        return option_runs_dir(runs_dir)
    if os.environ.get("GUILDLITE_RUNS_DIR"):
        return default_runs_dir(None)
    # Only now: the guildfile's modules are most of a listing's imports, and need not be loaded
    # where the runs dir is given.
    from ._guildfile import find_guildfile, load

    found = guildfile or find_guildfile()
    return default_runs_dir(load(found) if found is not None else None)


def select(runs_dir: Path, specs: Sequence[str], trash: bool = False, filter: str | None = None) -> list[Run]:
    """The runs that ``specs`` select (``1`` newest, ``2:4``, an id prefix; none: every run), in the
    runs dir or, with ``trash``, in its trash (where the numbers count the trashed runs), and that
    the expression ``filter`` matches (``_filter``; the selection every command's ``--filter`` goes
    through)."""
    from ._files import TRASH_DIR
    from ._selection import RunList, select_runs

    pool = RunList(runs_dir / TRASH_DIR if trash else runs_dir)
    if not filter:
        return select_runs(pool, specs) if specs else pool[:]
    from ._filter import filtered_records, select_filtered

    if specs:
        return select_filtered(select_runs(pool, specs), filter)
    from ._run import load_run

    out = []
    for name, _, _ in filtered_records(pool, filter):  # from the index: only the matches are read whole
        try:
            out.append(load_run(pool.dir / name))
        except RunNotFoundError:  # gone since listed, or a bad record (warned about)
            continue
    return out


def select_with_trials(
    runs_dir: Path, specs: Sequence[str], trash: bool = False, filter: str | None = None
) -> list[Run]:
    """As ``select``, with the trials of every selected batch (a batch goes with its trials)."""
    from ._selection import with_trials

    return with_trials(select(runs_dir, specs, trash, filter))


def select_one(runs_dir: Path, spec: str) -> Run:
    """The one run ``spec`` selects; an error (exit 2) when it selects several (a range)."""
    chosen = select(runs_dir, [spec])
    if len(chosen) != 1:
        raise GuildliteError(f"{spec!r} selects {len(chosen)} runs; give one", exit_code=2)
    return chosen[0]


def where(
    op: str | None = None,
    status: str | None = None,
    batch_id: str | None = None,
    label: str | None = None,
    batches: bool = True,
    among: Container[str] | None = None,
) -> Callable[[Mapping[str, Any]], bool]:
    """A filter on run records (op, status, batch and its trials, label text, batch runs or not,
    ids ``among`` a set: a lineage's)."""

    def match(rec: Mapping[str, Any]) -> bool:
        return (
            (op is None or rec.get("op") == op)
            and (status is None or rec.get("status") == status)
            and (batch_id is None or rec.get("parent") == batch_id or rec.get("id") == batch_id)
            and (label is None or label in (rec.get("label") or ""))
            and (batches or not rec.get("is_batch"))
            and (among is None or rec.get("id") in among)
        )

    return match


def batch_id(runs: Sequence[Run], spec: str | None) -> str | None:
    """The id of the run that a ``--batch`` selector names (the first, for a range): a batch or a
    pipeline; any other run is an error (exit 2) saying what it is, never an empty selection."""
    from ._selection import select_runs, short_id

    if not spec:
        return None
    run = select_runs(runs, [spec])[0]
    if run.virtual:
        return run.id
    if run.parent_id:
        parent = "pipeline" if run.parent is not None and run.parent.is_pipeline else "batch"
        raise GuildliteError(f"--batch {spec}: run {run.id} ({run.op}) is a {'trial' if run.is_trial else 'step'} "
                             f"of {parent} {run.parent_id}, not a batch (--batch {short_id(run.parent_id)})",
                             exit_code=2)
    raise GuildliteError(f"--batch {spec}: run {run.id} ({run.op}) is a single run, not a batch or a pipeline",
                         exit_code=2)


def filtered_runs(
    runs: RunList, op: str | None, status: str | None, batch: str | None, limit: int | None, whole: bool = False,
    among: Container[str] | None = None, filter: str | None = None,
) -> list[Run]:
    """The newest ``limit`` runs (None: all) of ``op``, with ``status``, in ``batch`` (a selector: the
    batch and its trials), with an id ``among`` those given, matching the expression ``filter``,
    found from the index's summaries (thousands of runs without reading every run.json); ``whole``:
    each run's whole record, read from its dir."""
    from ._index import load_summaries
    from ._run import load_run, run_from_record

    match = where(op, status, batch_id(runs, batch), among=among)
    if filter:
        from ._filter import filtered_records

        shown = [run_from_record(runs.dir / name, rec)
                 for name, rec, _ in filtered_records(runs, filter, where=match, limit=limit)]
    else:
        shown = [r for r, _ in load_summaries(runs, where=match, limit=limit)]
    shown = shown if limit is None else shown[:limit]
    return [load_run(r.run_dir) for r in shown] if whole else shown


def still_going(run: Run) -> bool:
    """Whether ``run`` has yet to end: pending or running; or staged while its owner lives (a run
    handed to a detached owner is staged for a moment) or while its batch runs (a trial waiting
    for its turn)."""
    from ._status import ACTIVE

    if run.status in ACTIVE:
        return True
    if run.status != "staged":
        return False
    if run.alive:
        return True
    parent = run.parent
    return parent is not None and parent.status in ACTIVE


def newest_going(runs_dir: Path) -> Run | None:
    """The newest run that has yet to end (``still_going``); a trial of a batch (a step of a
    pipeline) that is itself going stands for it."""
    from ._index import load_summaries
    from ._run import load_run
    from ._selection import RunList
    from ._status import ACTIVE

    candidates = load_summaries(RunList(runs_dir), where=lambda rec: rec.get("status") in (*ACTIVE, "staged"))
    for summary, _ in candidates:
        try:
            run = load_run(summary.run_dir)  # the whole record, its status derived now
        except RunNotFoundError:  # gone since listed, or a bad record (warned about)
            continue
        if not still_going(run):
            continue
        parent = run.parent  # a trial stands for its batch, a step for its pipeline, while they go
        while parent is not None and still_going(parent):
            run, parent = parent, parent.parent
        return run
    return None
