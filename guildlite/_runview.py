"""``guildlite.Run``: a run as plugins see it, a typed view of the run store's record.

A hook gets this view, never the store's ``_run.Run``: it shows what a plugin should read, typed
and documented; a plugin writes ``attrs`` (and, before the launch, ``cmd``); it has no way to save,
claim or release the run, nor to see the owner's pid. Every attribute reads the record the
dispatcher holds, live, so what a hook changes the dispatcher still sees: a hook that assigns one
of the read-only fields (the types forbid it, Python does not) has it restored and fails, as it
did before the view (``_hookcall``).
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypedDict, cast

from ._files import RunPaths
from ._run import Run as _StoredRun
from ._status import Status

# Names of the store's Run that are not record fields (``save``, ``claim``, ``paths``...): never
# reached through the view, never set through it.
_RECORD_FIELDS = frozenset(f.name for f in fields(_StoredRun) if not f.name.startswith("_"))
_STORE_ONLY = frozenset(n for n in dir(_StoredRun) if not n.startswith("_")) - _RECORD_FIELDS
_WRITABLE = ("attrs", "cmd")
_LIVE = ("scalars", "new_scalars")  # views of what the owner captured, never record fields


class _HookCall(TypedDict):
    plugin: str
    hook: str
    priority: int
    start: float  # epoch seconds
    seconds: float
    error: str | None


class HookTrace(_HookCall, total=False):
    """One hook call in ``run.plugins``; ``on_run_progress``'s calls are one entry per plugin, with
    ``calls`` and ``failed`` calls counted, ``seconds`` summed and ``error`` the last failure's."""

    calls: int
    failed: int


@dataclass(frozen=True)
class Remote:
    """Where the job of a run runs when not in this process's host: ``run.remote``."""

    backend: str  # the name of the backend that owns the job (its entry point in guildlite.backends)
    job_id: str | None  # its latest job (a restart submits another)
    job_ids: tuple[str, ...]  # every job of the run, oldest first
    hosts: tuple[str, ...]  # the hosts the job runs on, once they are known
    is_batch: bool  # a detached batch's own record (each trial has its jobs)
    info: Mapping[str, Any]  # all the backend recorded (partition, nodes, submitted...), a copy

    @classmethod
    def of(cls, remote: object) -> Remote | None:
        """The record's ``remote`` field as a ``Remote``; None for a local run."""
        if remote is True:  # an old record that only says the job ran elsewhere
            return cls("", None, (), (), False, MappingProxyType({}))
        if not isinstance(remote, dict):
            return None
        ids = remote.get("job_ids") or ([remote["job_id"]] if remote.get("job_id") is not None else [])
        job = remote.get("job_id")
        return cls(
            backend=str(remote.get("backend") or ""),
            job_id=None if job is None else str(job),
            job_ids=tuple(str(j) for j in ids),
            hosts=tuple(str(h) for h in remote.get("hosts") or ()),
            is_batch=bool(remote.get("batch")),
            info=MappingProxyType(copy.deepcopy(remote)),
        )


@dataclass(frozen=True)
class RunFiles:
    """The files of a run dir that plugins read or add to: ``run.paths`` (named by the store)."""

    dir: Path

    @property
    def run_json(self) -> Path:
        """The record (read it; the run's owner writes it)."""
        return RunPaths(self.dir).run_json

    @property
    def output_log(self) -> Path:
        """The job's output, every rank's (rank-prefixed with torchrun)."""
        return RunPaths(self.dir).output_log

    @property
    def scalars(self) -> Path:
        """``scalars.jsonl``: one ``{"step", "key", "value"}`` object a line."""
        return RunPaths(self.dir).scalars

    @property
    def meta(self) -> Path:
        """``.guildlite/``: guildlite's own files of the run."""
        return RunPaths(self.dir).meta

    @property
    def env(self) -> Path:
        """``.guildlite/env.json``: the environment the run started in (``EnvCapture``)."""
        return RunPaths(self.dir).env

    @property
    def manifest(self) -> Path:
        """``.guildlite/sourcecode.json``: the staged source files, and those staging skipped."""
        return RunPaths(self.dir).manifest


class Run:
    """A run as a plugin's hook sees it (``guildlite.Run``): every hook gets this one object.

    Writable: ``attrs`` (a plugin's JSON data, saved with the run: use your plugin's name as the
    key) and ``cmd`` (in ``on_run_staged``/``on_run_begin``: the command that is launched). Every
    other attribute is read-only; assigning one fails that hook (the value is restored). New
    information reaches hooks as new attributes here, never as new hook arguments.
    ``parent`` and ``trials`` are views of other runs, read-only whole.
    """

    __slots__ = ("_store", "_related", "__weakref__")
    _store: _StoredRun
    _related: bool

    def __init__(self, store: _StoredRun, related: bool = False) -> None:
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_related", related)

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle: slots plus a guarded __setattr__
        return (Run, (self._store, self._related))

    def __repr__(self) -> str:
        s = self._store
        return f"guildlite.Run(id={s.id!r}, op={s.op!r}, status={s.status!r})"

    # --- identity and request -------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._store.id

    @property
    def run_dir(self) -> Path:
        return self._store.run_dir

    @property
    def paths(self) -> RunFiles:
        return RunFiles(self._store.run_dir)

    @property
    def op(self) -> str:
        """The operation's name."""
        return self._store.op

    @property
    def opspec(self) -> str:
        """The request as given: ``train lr=0.1``."""
        return self._store.opspec

    @property
    def op_def(self) -> Mapping[str, Any]:
        """The operation as the guildfile declares it (its YAML mapping) when the run was staged."""
        return self._store.op_def

    @property
    def flags(self) -> Mapping[str, Any]:
        """Flag values; a batch's hold its dimensions (``BatchValues``, ``BatchDistribution``)."""
        return self._store.flags

    @property
    def label(self) -> str:
        return self._store.label

    @property
    def tags(self) -> Sequence[str]:
        return self._store.tags

    # --- outcome ----------------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return cast(Status, self._store.status)

    @property
    def exit_code(self) -> int | None:
        return self._store.exit_code

    @property
    def error(self) -> Mapping[str, Any] | None:
        """Why the run failed: ``message``, and ``plugin``/``hook``/``veto`` when a hook ended it."""
        return self._store.error

    @property
    def created(self) -> str:
        """ISO 8601 times with a UTC offset; ``started``/``stopped`` None until then."""
        return self._store.created

    @property
    def started(self) -> str | None:
        return self._store.started

    @property
    def stopped(self) -> str | None:
        return self._store.stopped

    @property
    def attempts(self) -> Sequence[Mapping[str, Any]]:
        """Earlier attempts of a restarted run: status, exit_code, started, stopped, flags, error."""
        return self._store.attempts

    @property
    def scalars(self) -> Mapping[str, float | None]:
        """The latest value of each scalar key captured while the job ran (None: NaN or inf); set
        from ``on_run_progress`` on, and still there in ``on_run_end``; empty before."""
        return MappingProxyType(dict(self._store._latest_scalars))

    @property
    def new_scalars(self) -> Sequence[Mapping[str, Any]]:
        """In ``on_run_progress``: the scalar rows (``step``, ``key``, ``value``, ``time``) that arrived
        since the last call, in order; empty in other hooks."""
        return tuple(MappingProxyType(dict(r)) for r in self._store._new_scalars)

    @property
    def plugins(self) -> Sequence[HookTrace]:
        """Every hook call so far, in call order."""
        return cast("list[HookTrace]", self._store.plugins)

    # --- where and how it runs --------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._store.host

    @property
    def remote(self) -> Remote | None:
        return Remote.of(self._store.remote)

    @property
    def nproc_per_node(self) -> int:
        return self._store.nproc_per_node

    @property
    def gpus(self) -> Sequence[str] | None:
        """The GPU ids the run's slot holds (None: no GPU assignment)."""
        return self._store.gpus

    @property
    def cmd(self) -> list[str]:
        return self._store.cmd

    @cmd.setter
    def cmd(self, value: list[str]) -> None:
        self._store.cmd = value

    @property
    def attrs(self) -> dict[str, Any]:
        return self._store.attrs

    @attrs.setter
    def attrs(self, value: dict[str, Any]) -> None:
        self._store.attrs = value

    # --- batches ---------------------------------------------------------------------------------

    @property
    def is_batch(self) -> bool:
        return self._store.is_batch

    @property
    def is_trial(self) -> bool:
        return self._store.is_trial

    @property
    def batch(self) -> Mapping[str, Any] | None:
        """A batch's plan: ``trials``, ``max_trials``, ``seed``, ``parallel``, ``dims``, and at its end
        ``summary`` (trials per status). None for other runs."""
        return self._store.batch

    @property
    def is_pipeline(self) -> bool:
        return self._store.is_pipeline

    @property
    def pipeline(self) -> Mapping[str, Any] | None:
        """A pipeline's plan: ``steps`` (each ``op``, ``given``, ``continue_on_error``, and its ``run``
        once started), and at its end ``summary`` (steps per status). None for other runs."""
        return self._store.pipeline

    @property
    def steps(self) -> list[Run]:
        """A pipeline's steps' runs in step order, read fresh from disk ([] for other runs)."""
        return [Run(t, related=True) for t in self._store.steps]

    @property
    def parent(self) -> Run | None:
        """A trial's batch, a step's pipeline (None for other runs)."""
        parent = self._store.parent
        return None if parent is None else Run(parent, related=True)

    @property
    def trials(self) -> list[Run]:
        """A batch's trials in launch order, read fresh from disk ([] for other runs)."""
        return [Run(t, related=True) for t in self._store.trials]

    # At run time (hidden from type checkers, which see read-only properties): an assignment
    # reaches the record, where the dispatcher judges it, except to the store's own names.
    if not TYPE_CHECKING:

        def __setattr__(self, name, value):
            target = self._target(name)
            if name in _WRITABLE:
                object.__setattr__(self, name, value)  # the property's setter
            else:
                setattr(target, name, value)

        def __delattr__(self, name):
            delattr(self._target(name), name)

        def __getattr__(self, name):
            store = object.__getattribute__(self, "_store")
            if not name.startswith("_") and name not in _RECORD_FIELDS and name in vars(store):
                return vars(store)[name]  # one a hook added (saved with the record, as before the view)
            raise AttributeError(f"guildlite.Run has no attribute {name!r}")

    def _target(self, name: str) -> _StoredRun:
        if self._related:
            raise AttributeError(f"cannot set {name!r} of run.parent, run.trials or run.steps: a hook changes its own run only")
        if name.startswith("_") or name in _STORE_ONLY or name in _LIVE:
            raise AttributeError(f"cannot set run.{name}")
        return self._store


_VIEWS: weakref.WeakValueDictionary[int, Run] = weakref.WeakValueDictionary()


def view_of(run: _StoredRun) -> Run:
    """The view that hooks get of ``run``: the same object for as long as anyone holds it."""
    view = _VIEWS.get(id(run))
    if view is None or view._store is not run:
        view = _VIEWS[id(run)] = Run(run)
    return view
