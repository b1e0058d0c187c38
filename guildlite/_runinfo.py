"""``guildlite.RunInfo``: a run as scripts and notebooks read it, a frozen snapshot of its record.

Built (``info_of``, for ``guildlite.runs()`` in ``_api``) from the records and scalar summaries of
the runs dir's index (schema-checked, status derived as it stands); ``attrs``, which the index
leaves out, is read from run.json when first asked. Everything in it is read-only all the way down: mappings are ``MappingProxyType``, lists
are tuples, so a notebook cannot change a record by accident (changing runs is the CLI's job:
``label``, ``tag``, ``note``). ``parent`` and ``trials`` read their runs from disk when asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
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

    # Read-only mappings do not pickle (nor deepcopy): they travel as plain dicts and lists.
    def __getstate__(self) -> dict[str, Any]:
        return {k: _thawed(v) for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, frozen(v))

    @cached_property
    def attrs(self) -> Mapping[str, Any]:
        """What plugins recorded (run.json's ``attrs``), read-only; read from run.json when first
        asked (the listing index leaves it out), {} if the run is gone or its record went bad."""
        from ._errors import RunNotFoundError
        from ._store import read_record

        try:
            return frozen(read_record(self.run_dir).get("attrs") or {})
        except RunNotFoundError:
            return MappingProxyType({})

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


def _thawed(value: Any) -> Any:
    """``frozen``'s inverse (for pickling)."""
    if isinstance(value, MappingProxyType):
        return {k: _thawed(v) for k, v in value.items()}
    if type(value) is tuple:
        return [_thawed(v) for v in value]
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


def info_of(run_dir: Path, rec: Mapping[str, Any], summary: Mapping[str, Any]) -> RunInfo:
    """The ``RunInfo`` of the run in ``run_dir`` from its record as a listing has it (validated by
    the schema, its status derived as it stands now: ``_index.load_records``) and its scalar
    summary (``_scalars.summarize``'s shape). Its id is its directory's name."""
    scalars = {k: s for k, s in ((k, _scalar(v)) for k, v in summary.items() if isinstance(v, Mapping)) if s}
    started, stopped = _time(rec.get("started")), _time(rec.get("stopped"))
    end = stopped or (datetime.now(timezone.utc) if started else None)  # to now while it runs, as compare says
    return RunInfo(
        id=run_dir.name,
        op=rec.get("op") or "",
        opspec=rec.get("opspec") or "",
        status=rec.get("status") or "staged",
        exit_code=rec.get("exit_code"),
        label=rec.get("label") or "",
        tags=tuple(rec.get("tags") or ()),
        notes=_notes(rec.get("notes")),
        created=_time(rec.get("created")),
        started=started,
        stopped=stopped,
        time=round((end - started).total_seconds(), 3) if started and end else None,
        flags=frozen(rec.get("flags") or {}),
        scalars=MappingProxyType(scalars),
        error=frozen(rec["error"]) if rec.get("error") is not None else None,
        host=rec.get("host") or "",
        is_batch=bool(rec.get("is_batch")),
        is_trial=bool(rec.get("is_trial")),
        is_pipeline=bool(rec.get("is_pipeline")),
        parent_id=rec.get("parent"),
        trial_ids=tuple(rec.get("trials") or ()),
        step_ids=tuple(rec.get("steps") or ()),
        run_dir=run_dir,
    )


def read_infos(runs_dir: Path, ids: Sequence[str] | None) -> list[RunInfo]:
    """The ``RunInfo`` of each of ``ids`` (None: every run, newest first) in ``runs_dir`` that is
    there and readable, in order: records and scalar summaries from the runs dir's index (bad
    records skipped with a warning, as a listing does)."""
    from ._index import load_records
    from ._selection import RunList

    return [info_of(runs_dir / name, rec, summary)
            for name, rec, summary in load_records(RunList(runs_dir), ids, scalars=True)]
