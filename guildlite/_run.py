"""``Run``: a run as plugins, scripts and the inspect commands see it, read from its record and
saved back through the store (``_store``), its status as it stands when read (``_status``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import BadRecordError, RunNotFoundError
from ._files import RunPaths
from ._owner import owner_alive, take_owner_lock
from ._process import process_start
from ._record import is_run_id
from ._store import INSPECT_FIELDS, create_record, owner_save, read_record, snapshot_attrs, update_record, warn_bad


def _version() -> str:
    from . import __version__

    return __version__


@dataclass(eq=False)
class Run:
    """A run, as plugins, scripts and inspect commands see it; ``run.json`` is its record.

    ``status`` is one of staged, pending, running, completed, error, terminated, pruned. A run whose
    owning guildlite process is gone while the record still says pending/running is reported
    ``terminated`` on read, with ``error`` saying so: the record is never trusted blindly.
    Plugins may keep small JSON-serialisable data in ``attrs[<plugin name>]``; it is saved with
    the run.
    """

    id: str
    run_dir: Path
    op: str
    opspec: str = ""
    flags: dict[str, Any] = field(default_factory=dict)
    status: str = "staged"
    exit_code: int | None = None
    label: str = ""
    tags: list[str] = field(default_factory=list)
    created: str = ""
    started: str | None = None
    stopped: str | None = None
    is_batch: bool = False
    is_trial: bool = False
    parent_id: str | None = None
    trial_ids: list[str] = field(default_factory=list)
    # os.uname().nodename is what socket.gethostname() returns, without importing socket (every command reads runs)
    host: str = field(default_factory=lambda: os.uname().nodename)
    remote: bool | dict[str, Any] = False  # where the job runs when not here: {"backend": NAME, "job_id", ...}
    op_def: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    nproc_per_node: int = 1
    gpus: list[str] | None = None
    waiting: dict[str, Any] | None = None  # pending in this machine's queue: {"reason", "since"} (``_queue``)
    pid: int | None = None
    pid_start: int | None = None
    job_pid: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    plugins: list[dict[str, Any]] = field(default_factory=list)
    batch: dict[str, Any] | None = None
    is_pipeline: bool = False
    step_ids: list[str] = field(default_factory=list)  # a pipeline's steps' runs, in step order
    pipeline: dict[str, Any] | None = None  # a pipeline's plan: its steps as planned, and how it ended
    requires: list[dict[str, Any]] = field(default_factory=list)  # what ``_requires`` put into the run dir
    notes: list[dict[str, Any]] = field(default_factory=list)  # ``guildlite note``: [{"time": ISO, "text"}]
    guildlite_version: str = field(default_factory=_version)
    _parent: Run | None = field(default=None, repr=False)
    _staged: list[str] | None = field(default=None, repr=False)  # the source files this process staged
    _synced_attrs: dict[str, Any] | None = field(default=None, repr=False)  # attrs as last read/written
    _owner_fd: int | None = field(default=None, repr=False)  # holds the owner lock (``claim``)
    # While its job runs, in its owner (``_runlive``): the scalar rows since the last on_run_progress
    # call, and the latest value of each key. Not part of the record.
    _new_scalars: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _latest_scalars: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.run_dir)

    @property
    def virtual(self) -> bool:
        """A virtual parent run (a batch, a pipeline): no job of its own, only children."""
        return self.is_batch or self.is_pipeline

    @property
    def parent(self) -> Run | None:
        """The virtual parent of a run (a trial's batch, a step's pipeline), looked up beside it only."""
        if self._parent is None and self.parent_id:
            self._parent = self._beside(self.parent_id)
        return self._parent

    @property
    def trials(self) -> list[Run]:
        """The trials of a batch, in launch order, read fresh from disk.

        Only runs beside the batch (in the runs dir, or in the trash with it) whose record names
        this batch as their parent: a batch's ``trials`` field alone never makes another run its
        trial (which ``runs delete`` or ``purge`` would take along).
        """
        return self._children(self.trial_ids)

    @property
    def steps(self) -> list[Run]:
        """A pipeline's steps' own runs in step order, read fresh from disk, as ``trials`` (a step
        reused from elsewhere by ``needed`` is not the pipeline's: left out)."""
        return self._children(self.step_ids)

    def child(self, run_id: str) -> Run | None:
        """The trial or step ``run_id`` of this run, read now; None if it is gone or is not this
        run's (see ``trials``)."""
        run = self._beside(run_id)
        return run if run is not None and run.parent_id == self.id else None

    def _children(self, ids: list[str]) -> list[Run]:
        return [run for run in map(self.child, ids) if run is not None]

    def _beside(self, run_id: str) -> Run | None:
        """The run ``run_id`` beside this one; None if the id is not a run's, or the run is gone or
        its record is bad (then warned of, ``warn_bad``)."""
        if not is_run_id(run_id):
            return None
        try:
            return load_run(self.run_dir.parent / run_id)
        except BadRecordError as e:
            warn_bad(e)
            return None
        except RunNotFoundError:
            return None

    def to_record(self) -> dict[str, Any]:
        """The JSON object stored in ``run.json``."""
        rec = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        rec.pop("run_dir")
        rec["parent"] = rec.pop("parent_id")
        rec["trials"] = rec.pop("trial_ids")
        rec["steps"] = rec.pop("step_ids")
        return rec

    def create(self) -> None:
        """Write the first ``run.json`` of a new run dir (staging); see ``create_record``."""
        create_record(self.run_dir, self.to_record())
        self._synced_attrs = snapshot_attrs(self.attrs)


    def save(self, only: tuple[str, ...] | None = None) -> None:
        """Write this Run's fields as the run's owner (``_store.owner_save``); ``only``: just
        those and ``attrs`` (while a job runs away from its owner, its node writes the others).

        Everything but ``label``, ``tags`` and ``notes`` (the inspect commands' fields, taken from disk here
        and never written) is the owner's; ``attrs`` are merged per plugin key: only the keys this
        Run changed since it was read or saved are written, so a plugin's data recorded by another
        process (a backend's node) is not reverted. A record that is missing or unreadable is written
        whole from this Run.
        """
        rec = owner_save(self.run_dir, self.to_record(), self._synced_attrs or {}, only)
        self.label, self.tags, self.notes = rec["label"], rec["tags"], rec.get("notes", [])
        self.attrs.clear()  # in place: a plugin may hold a reference to the dict
        self.attrs.update(rec["attrs"])
        self._synced_attrs = snapshot_attrs(self.attrs)

    def update(self, **changes: Any) -> None:
        """Set and write ``label``, ``tags`` and/or ``notes`` (only those: the owner's fields are not written)."""
        wrong = sorted(set(changes) - set(INSPECT_FIELDS))
        if wrong:
            raise ValueError(f"Run.update sets only {', '.join(INSPECT_FIELDS)}, not {', '.join(wrong)}: "
                             "the owner's fields are written by save()")
        rec = update_record(self.run_dir, lambda rec: rec.update(changes))
        for k in INSPECT_FIELDS:
            setattr(self, k, rec.get(k, getattr(self, k)))

    @property
    def alive(self) -> bool:
        """Whether the guildlite process that owns this run still runs."""
        return owner_alive({"pid": self.pid, "pid_start": self.pid_start, "host": self.host}, self.run_dir)

    def claim(self, wait: float = 5.0) -> None:
        """Make the current process the run's owner: hold its owner lock (``RunPaths.owner``) until
        ``release``, and record it (for liveness checks, and for ``stop``, which signals a pid only
        on its host and while it holds the lock: a restart may run on another host than the first).
        GuildliteError if another live process owns the run (a concurrent restart) for ``wait``
        seconds (see ``_owner.take_owner_lock``).
        """
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self.host = os.uname().nodename
        if self._owner_fd is None:
            self._owner_fd = take_owner_lock(self.paths, self.id, self.pid, self.pid_start, wait)

    def release(self) -> None:
        """Let go of the owner lock taken by ``claim`` (after the run's end is recorded)."""
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None


# The record fields that are Run fields of the same name.
_FIELDS = set(Run.__dataclass_fields__) - {
    "run_dir", "_parent", "_synced_attrs", "_staged", "_owner_fd", "parent_id", "trial_ids", "step_ids"}


def run_from_record(run_dir: Path, rec: dict[str, Any]) -> Run:
    """A Run from a record ``read_record`` (or the index) validated, with liveness-derived status.

    Its id is its directory's name, whatever the record's ``id`` field says.
    """
    from ._status import as_it_stands

    return _run_of(run_dir, as_it_stands(rec, run_dir, read_record))


def load_run(run_dir: Path, listed: bool = False) -> Run:
    """Read one run directory; RunNotFoundError if it is gone, BadRecordError (a RunNotFoundError)
    if its record cannot be trusted (see ``_store.read_record``)."""
    return run_from_record(run_dir, read_record(run_dir, listed))


def raw_run(run_dir: Path) -> Run:
    """The Run of ``run_dir``'s record as written, its status not derived from liveness: for the
    process that owns the run, or that records its end (a supervisor). Errors as ``load_run``."""
    return _run_of(Path(run_dir), read_record(Path(run_dir)))


def _run_of(run_dir: Path, rec: dict[str, Any]) -> Run:
    kwargs = {k: v for k, v in rec.items() if k in _FIELDS}
    kwargs["id"] = run_dir.name
    if rec.get("is_batch") and isinstance(rec.get("flags"), dict):  # its dimensions as objects again
        from ._batchspec import decode

        batch = rec.get("batch")
        kwargs["flags"] = decode(rec["flags"], batch.get("dims") if isinstance(batch, dict) else None)
    run = Run(run_dir=run_dir, parent_id=rec.get("parent"), trial_ids=list(rec.get("trials") or []),
              step_ids=list(rec.get("steps") or []), **kwargs)
    run._synced_attrs = snapshot_attrs(run.attrs)  # its save writes only the attrs keys its plugins change
    return run
