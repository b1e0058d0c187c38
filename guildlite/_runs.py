"""The run store: run directories, ``run.json`` records, atomic writes, liveness, selection."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, overload

from ._errors import GuildliteError, RunNotFoundError
from ._lock import file_lock

STATUSES = ("staged", "pending", "running", "completed", "error", "terminated")
ACTIVE = ("pending", "running")
META_DIR = ".guildlite"
TRASH_DIR = ".trash"


@dataclass(frozen=True)
class RunPaths:
    """Every file guildlite keeps in a run directory, named in one place."""

    dir: Path

    @property
    def run_json(self) -> Path:
        return self.dir / "run.json"

    @property
    def output_log(self) -> Path:
        return self.dir / "output.log"

    @property
    def scalars(self) -> Path:
        return self.dir / "scalars.jsonl"

    @property
    def meta(self) -> Path:
        return self.dir / META_DIR

    @property
    def lock(self) -> Path:
        return self.meta / "lock"

    @property
    def rank_exits(self) -> Path:
        return self.meta / "exit"

    @property
    def stop_request(self) -> Path:
        return self.meta / "stop"

    @property
    def end_claim(self) -> Path:
        """Created by whoever fires a remote run's ``on_run_end``: the submitter or the node."""
        return self.meta / "end-hook"

    @property
    def env(self) -> Path:
        return self.meta / "env.json"

    @property
    def manifest(self) -> Path:
        return self.meta / "sourcecode.json"

    @property
    def reserve(self) -> Path:
        """Space held while the job runs, so that its end can be recorded on a disk it filled."""
        return self.meta / "reserve"


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``path`` so a reader sees the old file or the new one, never half of either."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def cache_dir(name: str) -> Path:
    """guildlite's cache folder ``name`` under ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guildlite" / name


def now_iso() -> str:
    """The current time, ISO 8601 in UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """A unique id that sorts in creation order, such as ``20261123T101500-1f43a9``.

    After the UTC second come three hex digits of milliseconds, then three random ones: sorting
    ids as strings is sorting runs by creation, so listing needs no record to order runs.
    """
    now = time.time()
    ms = int(now * 1000) % 1000
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{ms:03x}{os.urandom(2).hex()[:3]}"


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parens: split after its closing paren.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # exited, not yet reaped: gone all the same
        return None
    return int(fields[19])


def _alive(pid: int | None, start: int | None) -> bool:
    if not pid:
        return False
    if Path("/proc/self/stat").exists():
        now = process_start(pid)
        # A live pid with another start time is a different process that reused the pid.
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _version() -> str:
    from . import __version__

    return __version__


@dataclass(eq=False)
class Run:
    """A run, as plugins, scripts and inspect commands see it; ``run.json`` is its record.

    ``status`` is one of staged, pending, running, completed, error, terminated. A run whose
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
    host: str = field(default_factory=socket.gethostname)
    remote: bool | dict[str, Any] = False  # where the job runs when not here: {"backend": "slurm", "job_id", ...}
    op_def: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    cmd: list[str] = field(default_factory=list)
    nproc_per_node: int = 1
    gpus: list[str] | None = None
    pid: int | None = None
    pid_start: int | None = None
    job_pid: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    plugins: list[dict[str, Any]] = field(default_factory=list)
    batch: dict[str, Any] | None = None
    guildlite_version: str = field(default_factory=_version)
    _parent: Run | None = field(default=None, repr=False)
    _staged: list[str] | None = field(default=None, repr=False)  # the source files this process staged
    _synced_attrs: dict[str, Any] | None = field(default=None, repr=False)  # attrs as last read/written

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.run_dir)

    @property
    def parent(self) -> Run | None:
        """The batch run of a trial (None for other runs)."""
        if self._parent is None and self.parent_id:
            try:
                self._parent = load_run(self.run_dir.parent / self.parent_id)
            except RunNotFoundError:
                return None
        return self._parent

    @property
    def trials(self) -> list[Run]:
        """The trials of a batch, in launch order, read fresh from disk."""
        out = []
        for tid in self.trial_ids:
            try:
                out.append(load_run(self.run_dir.parent / tid))
            except RunNotFoundError:
                continue
        return out

    def to_record(self) -> dict[str, Any]:
        """The JSON object stored in ``run.json``."""
        rec = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        rec.pop("run_dir")
        rec["parent"] = rec.pop("parent_id")
        rec["trials"] = rec.pop("trial_ids")
        return rec

    def create(self) -> None:
        """Write the first ``run.json`` of a new run dir (staging); see ``create_record``."""
        create_record(self.run_dir, self.to_record())
        self._synced_attrs = _snapshot(self.attrs)

    def save(self) -> None:
        """Write this Run's fields as the run's owner, through ``update_record``.

        Everything but ``label`` and ``tags`` (the inspect commands' fields, taken from disk here
        and never written) is the owner's; ``attrs`` are merged per plugin key: only the keys this
        Run changed since it was read or saved are written, so a plugin's data recorded by another
        process (a SLURM node) is not reverted. A record that is missing or unreadable is written
        whole from this Run.
        """
        mine, base = self.to_record(), self._synced_attrs or {}

        def change(rec: dict[str, Any]) -> None:
            attrs = merge_attrs(rec.get("attrs"), mine["attrs"], base)
            rec.update({k: v for k, v in mine.items() if k not in INSPECT_FIELDS or k not in rec})
            rec["attrs"] = attrs

        rec = update_record(self.run_dir, change, missing_ok=True)
        self.label, self.tags = rec["label"], rec["tags"]
        self.attrs.clear()  # in place: a plugin may hold a reference to the dict
        self.attrs.update(rec["attrs"])
        self._synced_attrs = _snapshot(self.attrs)

    def update(self, **changes: Any) -> None:
        """Set and write ``label`` and/or ``tags`` (only those: the owner's fields are not written)."""
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
        return _alive(self.pid, self.pid_start)

    def claim(self) -> None:
        """Record the current process as the run's owner (for liveness checks, and for ``stop``,
        which signals a pid only on its host: a restart may run on another host than the first)."""
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self.host = socket.gethostname()


_FIELDS = set(Run.__dataclass_fields__) - {"run_dir", "_parent", "_synced_attrs", "_staged", "parent_id", "trial_ids"}

# --- writing records ---------------------------------------------------------------------------------
#
# Who writes which field of run.json. Writers run in different processes at any time (the run's
# owner, `guildlite label` / `tag`, a SLURM node), so every change is a read-modify-write under the
# run's lock (``update_record``) that changes only the writer's own fields:
# - INSPECT_FIELDS belong to the inspect commands, which never write anything else;
# - every other field belongs to the process that owns the run (the guildlite that staged and
#   launches it, or restarts it; on SLURM the node's supervisor for status, exit_code, stopped,
#   started, attempts, host, remote, error): status, exit_code, started, stopped, pid, pid_start,
#   job_pid, attempts, error, cmd, gpus, remote, flags, trials, batch, plugins...;
# - ``attrs`` is the plugins', merged per plugin key (``merge_attrs``).
INSPECT_FIELDS = ("label", "tags")


def create_record(run_dir: Path, rec: dict[str, Any]) -> None:
    """Write the first record of a new run dir; a dir that already has one is refused."""
    paths = RunPaths(Path(run_dir))
    _meta_dir(paths)
    with file_lock(paths.lock):
        if paths.run_json.exists():
            raise GuildliteError(f"{run_dir}: already has a run.json")
        write_json(paths.run_json, rec)


def _meta_dir(paths: RunPaths) -> None:
    """Make the run's ``.guildlite`` dir for its lock. A run dir or ``.guildlite`` that is a symlink
    (a run dir from elsewhere) is refused: a write must never land outside the runs dir."""
    for p in (paths.dir, paths.meta):
        if p.is_symlink():
            raise RunNotFoundError(f"{p}: a symlink, not a run's own dir: refusing to write there")
    paths.meta.mkdir(exist_ok=True)


def update_record(run_dir: Path, change: Callable[[dict[str, Any]], Any], *, missing_ok: bool = False) -> dict[str, Any]:
    """Change a run's record: under the run's lock, read ``run.json`` afresh, let ``change`` edit
    the dict in place, write it atomically; returns the record written.

    The only way anything changes an existing record. RunNotFoundError if the run dir holds no
    readable record, unless ``missing_ok`` (the owner, which holds the whole record: ``change``
    gets ``{}``).
    """
    paths = RunPaths(Path(run_dir))
    if not paths.dir.is_dir():
        raise RunNotFoundError(f"{run_dir}: no such run dir (deleted or moved?)")
    _meta_dir(paths)
    with file_lock(paths.lock):
        try:
            with open(paths.run_json, "rb") as f:
                rec = json.loads(f.read())
            if not isinstance(rec, dict):
                raise ValueError(f"a JSON {type(rec).__name__}, not an object")
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: absurdly deep JSON
            if not missing_ok:
                raise RunNotFoundError(f"{run_dir}: no readable run.json ({e})") from None
            rec = {}
        change(rec)
        write_json(paths.run_json, rec)
    return rec


def _snapshot(attrs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``attrs`` as written to run.json, to tell later which keys a plugin changed."""
    return dict(json.loads(json.dumps(attrs, default=str)))


def merge_attrs(disk: Any, mine: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` on disk with the plugin keys that ``mine`` changed since ``base`` (its value when
    last read or written): a key set or changed is written, a key removed is removed, and every
    other key keeps its value on disk (another process's plugin may have written it)."""
    out = dict(disk) if isinstance(disk, dict) else {}
    for k in set(mine) | set(base):
        if k in mine and (k not in base or mine[k] != base[k]):
            out[k] = mine[k]
        elif k not in mine:
            out.pop(k, None)
    return out


def derive_status(rec: dict[str, Any]) -> dict[str, Any]:
    """The record as it stands: pending/running with its owner gone reads ``terminated``.

    A run whose job runs elsewhere (``remote``: a SLURM job) is alive while its job is.
    """
    if rec.get("status") in ACTIVE and isinstance(rec.get("remote"), dict):
        from ._slurm import remote_status

        return remote_status(rec)
    if rec.get("status") in ACTIVE and not _alive(rec.get("pid"), rec.get("pid_start")):
        msg = f"guildlite process {rec.get('pid')} ended without recording the run's end"
        rec = {**rec, "status": "terminated", "error": rec.get("error") or {"message": msg}}
    return rec


def run_from_record(run_dir: Path, rec: dict[str, Any]) -> Run:
    """A Run from a ``run.json`` object, with liveness-derived status."""
    rec = derive_status(rec)
    kwargs = {k: v for k, v in rec.items() if k in _FIELDS}
    if rec.get("is_batch") and isinstance(rec.get("flags"), dict):  # its dimensions as objects again
        from ._batchspec import decode

        batch = rec.get("batch")
        kwargs["flags"] = decode(rec["flags"], batch.get("dims") if isinstance(batch, dict) else None)
    run = Run(run_dir=run_dir, parent_id=rec.get("parent"), trial_ids=list(rec.get("trials") or []), **kwargs)
    run._synced_attrs = _snapshot(run.attrs)
    return run


def load_run(run_dir: Path) -> Run:
    """Read one run directory; RunNotFoundError if it holds no readable run.json."""
    try:
        with open(os.path.join(run_dir, "run.json"), "rb") as f:  # bytes: no text-decoding layer
            rec = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise RunNotFoundError(f"{run_dir}: no readable run.json ({e})") from None
    return run_from_record(run_dir, rec)


class RunList(Sequence[Run]):
    """The runs of a runs dir, newest first, each read from disk only when first touched.

    Ids sort in creation order, so ``runs[0]`` (the newest) costs one read whatever the number
    of runs; iterating reads them all. Runs are staged in hidden ``.staging-<id>`` dirs and renamed
    into place with their run.json, so every listed dir is a whole run.
    """

    def __init__(self, runs_dir: Path) -> None:
        self.dir = runs_dir
        try:
            names = [e.name for e in os.scandir(runs_dir) if not e.name.startswith(".") and e.is_dir()]
        except FileNotFoundError:
            names = []
        self.ids = sorted(names, reverse=True)
        self._loaded: dict[str, Run | None] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def _get(self, run_id: str) -> Run | None:
        if run_id not in self._loaded:
            try:
                self._loaded[run_id] = load_run(self.dir / run_id)
            except RunNotFoundError:
                self._loaded[run_id] = None  # removed or torn since listing: skipped
        return self._loaded[run_id]

    @overload
    def __getitem__(self, i: int) -> Run: ...
    @overload
    def __getitem__(self, i: slice) -> list[Run]: ...
    def __getitem__(self, i: int | slice) -> Run | list[Run]:
        if isinstance(i, slice):
            return [r for r in (self._get(x) for x in self.ids[i]) if r is not None]
        run = self._get(self.ids[i])
        if run is None:
            raise RunNotFoundError(f"run {self.ids[i]} has no readable run.json")
        return run

    def __iter__(self) -> Iterator[Run]:
        return iter(self[:])


def list_runs(runs_dir: Path, where: Callable[[Run], bool] | None = None) -> list[Run]:
    """Every readable run under ``runs_dir``, newest first (optionally only those ``where`` accepts)."""
    runs = RunList(runs_dir)[:]
    return runs if where is None else [r for r in runs if where(r)]


def select_runs(runs: Sequence[Run], specs: Iterable[str]) -> list[Run]:
    """Runs chosen by selectors: ``1`` (newest), ``2:4`` (inclusive), or an id prefix."""
    ids = runs.ids if isinstance(runs, RunList) else [r.id for r in runs]
    chosen: list[Run] = []
    for spec in specs:
        for i in _select_one(ids, spec.strip()):
            run = runs[i]
            if run not in chosen:
                chosen.append(run)
    return chosen


def with_trials(runs: Sequence[Run]) -> list[Run]:
    """``runs`` plus the trials of each batch among them (a batch goes with its trials)."""
    out = list(runs)
    seen = {r.id for r in out}
    for r in runs:
        if r.is_batch:
            for t in r.trials:
                if t.id not in seen:
                    out.append(t)
                    seen.add(t.id)
    return out


def _select_one(ids: list[str], spec: str) -> list[int]:
    if not spec or "/" in spec or spec.startswith("."):
        raise RunNotFoundError(f"invalid run selector {spec!r}")
    if spec.isascii() and spec.isdigit() and len(spec) < 8:
        i = int(spec)
        if not 1 <= i <= len(ids):
            raise RunNotFoundError(f"no run at index {i} ({len(ids)} runs)")
        return [i - 1]
    if ":" in spec:
        lo, _, hi = spec.partition(":")
        if not spec.isascii() or (lo and not lo.isdigit()) or (hi and not hi.isdigit()):
            raise RunNotFoundError(f"invalid run range {spec!r} (expected N:M, e.g. 2:4)")
        a, b = int(lo or 1), int(hi or len(ids))
        if a < 1 or b < a:
            raise RunNotFoundError(f"invalid run range {spec!r}")
        if a > len(ids):
            raise RunNotFoundError(f"no runs in range {spec!r} ({len(ids)} runs)")
        return list(range(a - 1, min(b, len(ids))))
    hits = [i for i, run_id in enumerate(ids) if run_id.startswith(spec)]
    if not hits:
        raise RunNotFoundError(f"no run matches {spec!r}")
    if len(hits) > 1:
        shown = ", ".join(ids[i] for i in hits[:10]) + (" ..." if len(hits) > 10 else "")
        raise RunNotFoundError(f"{spec!r} matches {len(hits)} runs: {shown}; give more of the id")
    return hits
