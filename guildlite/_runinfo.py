"""``guildlite.RunInfo``: a run as scripts and notebooks read it, a frozen snapshot of its record.

Built (``infos``, for ``guildlite.runs()`` in ``_api``) from the store's validated record and the
index's scalar summary. Everything in it is read-only all the way down: mappings are ``MappingProxyType``, lists
are tuples, so a notebook cannot change a record by accident (changing runs is the CLI's job:
``label``, ``tag``, ``note``). ``parent`` and ``trials`` read their runs from disk when asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from ._runview import RunFiles


@dataclass(frozen=True)
class Scalar:
    """One scalar key of a run: its ``last`` value (at the highest step logged last), ``min``,
    ``max``, the ``step`` of the last value and how many values were logged (``count``)."""

    last: float
    min: float
    max: float
    step: int
    count: int

    def __float__(self) -> float:  # float(run.scalars["loss"]): the last value, as a filter means it
        return self.last


@dataclass(frozen=True)
class Note:
    """One note (``guildlite note RUN TEXT``): when it was written and its text."""

    time: datetime | None
    text: str


@dataclass(frozen=True)
class RunInfo:
    """A run, read-only: what ``guildlite.runs()`` returns, one per run.

    ``flags``: the values the run got; ``scalars``: key -> ``Scalar`` (``run.scalars["loss"].min``);
    ``started`` / ``stopped``: aware datetimes (None until then); ``time``: seconds from start to
    stop (to when it was read, while running); ``status`` as it stands when read (a run whose
    owner is gone reads ``terminated``). ``parent`` (a trial's batch, a step's pipeline) and
    ``trials`` (a batch's, in launch order) are read from the runs dir when asked.
    """

    id: str
    op: str
    opspec: str = field(repr=False)
    status: str
    exit_code: int | None = field(repr=False)
    label: str
    tags: tuple[str, ...]
    notes: tuple[Note, ...] = field(repr=False)
    created: datetime | None = field(repr=False)
    started: datetime | None
    stopped: datetime | None = field(repr=False)
    time: float | None
    flags: Mapping[str, Any]
    scalars: Mapping[str, Scalar]
    attrs: Mapping[str, Any] = field(repr=False)
    error: Mapping[str, Any] | None = field(repr=False)
    host: str = field(repr=False)
    is_batch: bool
    is_trial: bool = field(repr=False)
    is_pipeline: bool = field(repr=False)
    parent_id: str | None
    trial_ids: tuple[str, ...] = field(repr=False)
    step_ids: tuple[str, ...] = field(repr=False)
    run_dir: Path = field(repr=False)

    def __hash__(self) -> int:  # the mappings are not hashable: a run is its directory
        return hash(self.run_dir)

    @property
    def paths(self) -> RunFiles:
        """The run's files: ``run_json``, ``output_log``, ``scalars``, ``meta``, ``env``, ``manifest``."""
        return RunFiles(self.run_dir)

    @property
    def parent(self) -> RunInfo | None:
        """A trial's batch or a step's pipeline, read now from beside the run (None for others)."""
        found = read_infos(self.run_dir.parent, [self.parent_id] if self.parent_id else [])
        return found[0] if found else None

    @property
    def trials(self) -> tuple[RunInfo, ...]:
        """A batch's trials in launch order, read now: the runs beside it that name it as their parent."""
        return tuple(t for t in read_infos(self.run_dir.parent, self.trial_ids) if t.parent_id == self.id)

    @property
    def steps(self) -> tuple[RunInfo, ...]:
        """A pipeline's steps' own runs in step order, read now (as ``trials``)."""
        return tuple(t for t in read_infos(self.run_dir.parent, self.step_ids) if t.parent_id == self.id)




def frozen(value: Any) -> Any:
    """``value`` read-only all the way down: dicts as MappingProxyType, lists as tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def _time(iso: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(iso) if isinstance(iso, str) and iso else None
    except ValueError:
        return None


def _scalar(s: Mapping[str, Any]) -> Scalar | None:
    values = [s.get(k) for k in ("last", "min", "max")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    last, low, high = (float(v) for v in values)  # type: ignore[arg-type]
    step, count = s.get("step"), s.get("count")
    return Scalar(last, low, high, step if isinstance(step, int) else 0, count if isinstance(count, int) else 0)


def _notes(raw: Any) -> tuple[Note, ...]:
    out = []
    for n in raw if isinstance(raw, list) else ():
        if isinstance(n, dict) and isinstance(n.get("text"), str):
            out.append(Note(_time(n.get("time")), n["text"]))
    return tuple(out)


def info_of(run_dir: Path, rec: dict[str, Any], summary: Mapping[str, Any]) -> RunInfo:
    """The ``RunInfo`` of the run in ``run_dir``: its whole record as the store read it (validated),
    its status derived as it stands now, and its scalar summary (``_scalars.summarize``'s shape)."""
    from ._inspect import seconds_between
    from ._run import run_from_record

    run = run_from_record(run_dir, rec)
    scalars = {k: s for k, s in ((k, _scalar(v)) for k, v in summary.items() if isinstance(v, Mapping)) if s}
    return RunInfo(
        id=run.id,
        op=run.op,
        opspec=run.opspec,
        status=run.status,
        exit_code=run.exit_code,
        label=run.label,
        tags=tuple(run.tags),
        notes=_notes(rec.get("notes")),
        created=_time(run.created),
        started=_time(run.started),
        stopped=_time(run.stopped),
        time=seconds_between(run.started, run.stopped) if run.started else None,
        flags=frozen(rec.get("flags") or {}),
        scalars=MappingProxyType(scalars),
        attrs=frozen(run.attrs),
        error=frozen(run.error) if run.error is not None else None,
        host=run.host,
        is_batch=run.is_batch,
        is_trial=run.is_trial,
        is_pipeline=run.is_pipeline,
        parent_id=run.parent_id,
        trial_ids=tuple(run.trial_ids),
        step_ids=tuple(run.step_ids),
        run_dir=run.run_dir,
    )


def read_infos(runs_dir: Path, ids: Sequence[str]) -> list[RunInfo]:
    """The ``RunInfo`` of each of ``ids`` in ``runs_dir`` that is there and readable, in order."""
    from ._index import load_records
    from ._selection import RunList

    return infos(runs_dir, [(name, s) for name, _, s in load_records(RunList(runs_dir), list(ids), scalars=True)])


def infos(runs_dir: Path, chosen: list[tuple[str, dict[str, Any]]]) -> list[RunInfo]:
    """Each chosen run's whole record (the index holds a slim one), read and validated now."""
    from ._errors import BadRecordError, RunNotFoundError
    from ._store import read_record, warn_bad

    out = []
    for name, summary in chosen:
        try:
            rec = read_record(runs_dir / name)
        except BadRecordError as e:
            warn_bad(e)
            continue
        except RunNotFoundError:  # deleted since it was listed
            continue
        out.append(info_of(runs_dir / name, rec, summary))
    return out
