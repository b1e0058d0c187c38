"""The run store: run directories, ``run.json`` records, atomic writes, liveness, selection."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, overload

from ._errors import BadRecordError, GuildliteError, RunNotFoundError
from ._lock import NO_FLOCK, file_lock
from ._record import MAX_BYTES, Problem, is_run_id, parse, run_ids

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
    def owner(self) -> Path:
        """Locked (``flock``) by the guildlite process that owns the run, for as long as it does."""
        return self.meta / "owner"

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


def process_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks since boot) of live process ``pid``, or None if it
    is gone (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parens: split after its closing paren.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # exited, not yet reaped: gone all the same
        return None
    return int(fields[1]), int(fields[19])


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone."""
    st = process_stat(pid)
    return None if st is None else st[1]


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


def owner_holds(run_dir: Path, pid: Any) -> bool | None:
    """Whether process ``pid`` holds the run's owner lock (``RunPaths.owner``, see ``Run.claim``):
    True or False, or None where this filesystem has no ``flock`` (then only the pid and its start
    time tell). A record can name any live process with its real start time; only the owner holds
    the lock, and the kernel drops it when the owner dies. Meaningful on the owner's host only (a
    host-local flock on NFS/Lustre is still coherent there).

    Nothing is created or followed: a run dir, ``.guildlite`` or owner file that is a symlink, or an
    owner file that is not a regular file, means no owner.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(run_dir, flags | os.O_DIRECTORY))
        fds.append(os.open(META_DIR, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fds.append(os.open("owner", flags | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=fds[-1]))
        fd = fds[-1]
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            # Shared, so that checkers do not stand in each other's way; released when fd closes.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # nobody holds it exclusively: no owner
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno in NO_FLOCK:
                return None
            raise
        try:
            holder = json.loads(os.read(fd, 256))
        except ValueError:
            return False
        # The lock of this run, not one linked in from another live run's dir.
        return isinstance(holder, dict) and holder.get("pid") == pid and holder.get("run") == Path(run_dir).name
    except OSError:  # missing, a symlink (ELOOP), not a dir: no owner
        return False
    finally:
        for f in fds:
            os.close(f)


def owner_alive(rec: dict[str, Any], run_dir: Path | None) -> bool:
    """Whether the process that a record names as the run's owner still owns it: the pid runs with
    the recorded start time and, on this host, holds the run's owner lock."""
    pid = rec.get("pid")
    if not _alive(pid, rec.get("pid_start")):
        return False
    host = rec.get("host")
    if run_dir is None or (isinstance(host, str) and host != socket.gethostname()):
        return True
    held = owner_holds(run_dir, pid)
    return held is None or held  # None: no flock on this filesystem, the pid and start time decide


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
    _owner_fd: int | None = field(default=None, repr=False)  # holds the owner lock (``claim``)

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.run_dir)

    @property
    def parent(self) -> Run | None:
        """The batch run of a trial (None for other runs), looked up beside the trial only."""
        if self._parent is None and self.parent_id and is_run_id(self.parent_id):
            try:
                self._parent = load_run(self.run_dir.parent / self.parent_id)
            except BadRecordError as e:
                warn_bad(e)
                return None
            except RunNotFoundError:
                return None
        return self._parent

    @property
    def trials(self) -> list[Run]:
        """The trials of a batch, in launch order, read fresh from disk.

        Only runs beside the batch (in the runs dir, or in the trash with it) whose record names
        this batch as their parent: a batch's ``trials`` field alone never makes another run its
        trial (which ``runs delete`` or ``purge`` would take along).
        """
        out = []
        for tid in self.trial_ids:
            if not is_run_id(tid):
                continue
            try:
                trial = load_run(self.run_dir.parent / tid)
            except BadRecordError as e:
                warn_bad(e)
                continue
            except RunNotFoundError:
                continue
            if trial.parent_id == self.id:
                out.append(trial)
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
        return owner_alive({"pid": self.pid, "pid_start": self.pid_start, "host": self.host}, self.run_dir)

    def claim(self, wait: float = 5.0) -> None:
        """Make the current process the run's owner: hold its owner lock (``RunPaths.owner``) until
        ``release``, and record it (for liveness checks, and for ``stop``, which signals a pid only
        on its host and while it holds the lock: a restart may run on another host than the first).

        The lock file is opened close-on-exec: the job (torchrun, its ranks) never holds it, so a
        job left behind by a killed guildlite never keeps its run alive. GuildliteError if another
        live process owns the run (a concurrent restart) for ``wait`` seconds.
        """
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self.host = socket.gethostname()
        if self._owner_fd is not None:
            return
        paths = self.paths
        _meta_dir(paths)
        fd = os.open(paths.owner, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # a checker's moment (owner_holds), or another owner
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise GuildliteError(f"run {self.id} is owned by another running guildlite", exit_code=2) from None
                time.sleep(0.01)
            except OSError as e:
                os.close(fd)
                if e.errno not in NO_FLOCK:
                    raise
                return  # no flock on this filesystem: the pid and its start time are all there is
        self._owner_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": self.pid, "run": self.id, "start": self.pid_start}).encode())
        except OSError as e:  # a full disk: the record cannot be written either, and says so (the run ends)
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise

    def release(self) -> None:
        """Let go of the owner lock taken by ``claim`` (after the run's end is recorded)."""
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None


_FIELDS = set(Run.__dataclass_fields__) - {
    "run_dir", "_parent", "_synced_attrs", "_staged", "_owner_fd", "parent_id", "trial_ids"}

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
    try:
        paths.meta.mkdir(exist_ok=True)
    except FileExistsError:  # a file, FIFO or socket planted as .guildlite: guildlite never makes one
        raise BadRecordError(paths.dir, f"{paths.meta.name} is not a directory (not made by guildlite; "
                             "remove it)") from None


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


def run_from_record(run_dir: Path, rec: dict[str, Any]) -> Run:
    """A Run from a record ``read_record`` (or the index) validated, with liveness-derived status.

    Its id is its directory's name, whatever the record's ``id`` field says.
    """
    from ._status import as_it_stands

    rec = as_it_stands(rec, run_dir, read_record)
    kwargs = {k: v for k, v in rec.items() if k in _FIELDS}
    kwargs["id"] = run_dir.name
    if rec.get("is_batch") and isinstance(rec.get("flags"), dict):  # its dimensions as objects again
        from ._batchspec import decode

        batch = rec.get("batch")
        kwargs["flags"] = decode(rec["flags"], batch.get("dims") if isinstance(batch, dict) else None)
    run = Run(run_dir=run_dir, parent_id=rec.get("parent"), trial_ids=list(rec.get("trials") or []), **kwargs)
    run._synced_attrs = _snapshot(run.attrs)
    return run


def raw_run(run_dir: Path) -> Run:
    """The Run of a record as written (no liveness derivation): for its owner, which writes it."""
    rec = read_record(run_dir)
    kwargs = {k: v for k, v in rec.items() if k in _FIELDS}
    kwargs["id"] = run_dir.name
    run = Run(run_dir=run_dir, parent_id=rec.get("parent"), trial_ids=list(rec.get("trials") or []), **kwargs)
    run._synced_attrs = _snapshot(run.attrs)  # its save writes only the attrs keys its plugins change
    return run


def claim_end(run_dir: Path) -> bool:
    """Exactly one ``on_run_end`` per run: True for the first caller (its owner, or a backend's node)."""
    try:
        os.close(os.open(RunPaths(run_dir).end_claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False


def read_record(run_dir: Path, listed: bool = False) -> dict[str, Any]:
    """The validated record of ``run_dir`` (see ``_record``), as written (no liveness derivation).

    RunNotFoundError if the dir is gone; BadRecordError if it is there but its record cannot be
    trusted: run.json missing, not a regular file (a link, a FIFO), unreadable or of the wrong
    shape, the dir a link, or the dir's name not a run id. ``listed``: a RunList found ``run_dir``
    to be a directory, not a link (one lstat less per run when listing).
    """
    if not listed and os.path.islink(run_dir):  # a run dir is a directory here: a link would lead elsewhere
        raise BadRecordError(run_dir, "a symbolic link, not a run directory")
    rec = _record_of(run_dir)
    if not is_run_id(os.path.basename(run_dir)):
        raise BadRecordError(run_dir, _not_an_id(Path(run_dir), rec))
    return rec


def _record_of(run_dir: Path) -> dict[str, Any]:
    path = os.path.join(run_dir, "run.json")
    try:
        # No link followed, no FIFO waited on: a run dir from elsewhere names no file outside it.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.path.isdir(run_dir):
            raise RunNotFoundError(f"{run_dir}: no readable run.json (the run is gone)") from None
        raise BadRecordError(run_dir, "no readable run.json (none there)") from None
    except OSError as e:
        why = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise BadRecordError(run_dir, f"no readable run.json ({why})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadRecordError(run_dir, "no readable run.json (not a regular file)")
        return parse(_read(fd, st.st_size))
    except Problem as e:
        raise BadRecordError(run_dir, str(e)) from None
    except OSError as e:
        raise BadRecordError(run_dir, f"no readable run.json ({e.strerror})") from None
    finally:
        os.close(fd)


def _read(fd: int, size: int) -> bytes:
    """The file's bytes, at most MAX_BYTES + 1 of them (parse() refuses more)."""
    if size > MAX_BYTES:
        raise Problem(f"run.json is larger than {MAX_BYTES >> 20} MB")
    chunks, total, want = [], 0, size + 1
    while total <= MAX_BYTES:
        chunk = os.read(fd, want)
        chunks.append(chunk)
        total += len(chunk)
        if len(chunk) < want:  # the end of a regular file
            break
        want = 1 << 20  # it grew since fstat
    return b"".join(chunks)


def _not_an_id(run_dir: Path, rec: dict[str, Any] | None) -> str:
    """What is wrong with a run dir renamed by hand, and the id to rename it back to."""
    was = rec.get("id") if rec else None
    if isinstance(was, str) and is_run_id(was) and not (run_dir.parent / was).exists():
        from shlex import quote

        return f"the directory name is not a run id: rename it back to {was} (mv {quote(str(run_dir))} {quote(str(run_dir.parent / was))})"
    return "the directory name is not a run id: rename it to one (e.g. the id in its run.json) or move it out"


def load_run(run_dir: Path, listed: bool = False) -> Run:
    """Read one run directory; RunNotFoundError if it is gone, BadRecordError (a RunNotFoundError)
    if its record cannot be trusted (see ``read_record``)."""
    return run_from_record(run_dir, read_record(run_dir, listed))


_warned: set[str] = set()


def warn_bad(e: BadRecordError) -> None:
    """Say once per process, on stderr (the ``guildlite`` logger), that a bad record was skipped."""
    msg = str(e)
    if msg in _warned:
        return
    _warned.add(msg)
    import logging

    logging.getLogger("guildlite").warning("guildlite: warning: skipped %s", msg)


class RunList(Sequence[Run]):
    """The runs of a runs dir, newest first, each read from disk only when first touched.

    Ids sort in creation order, so ``runs[0]`` (the newest) costs one read whatever the number
    of runs; iterating reads them all. Runs are staged in hidden ``.staging-<id>`` dirs and renamed
    into place with their run.json, so every listed dir is a whole run.

    Only directories named by a run id are runs. Another directory holding a run.json (a run dir
    renamed by hand) or a link named like a run is a *stray*: never selectable, reported by
    listings (``runs[a:b]``, iteration) as a bad record, as is a run whose record is bad.
    """

    def __init__(self, runs_dir: Path) -> None:
        self.dir = runs_dir
        dirs: list[str] = []
        rest: list[str] = []
        try:
            for e in os.scandir(runs_dir):
                if not e.name.startswith("."):
                    (dirs if e.is_dir(follow_symlinks=False) else rest).append(e.name)
        except FileNotFoundError:
            pass
        ids = run_ids(dirs)
        self.ids = sorted(ids, reverse=True)
        # Another dir may be a renamed run; a link named like a run would lead outside the runs dir.
        others = set(dirs).difference(ids) if len(ids) < len(dirs) else set()
        self.strays = sorted([*others, *filter(is_run_id, rest)])
        self._loaded: dict[str, Run | RunNotFoundError] = {}
        self._reported = False

    def __len__(self) -> int:
        return len(self.ids)

    def _get(self, run_id: str) -> Run | RunNotFoundError:
        if run_id not in self._loaded:
            try:
                self._loaded[run_id] = load_run(self.dir / run_id, listed=True)
            except RunNotFoundError as e:
                self._loaded[run_id] = e  # removed since listing (skipped), or a bad record (reported)
        return self._loaded[run_id]

    def stray_error(self, name: str) -> BadRecordError | None:
        """Why ``name`` (a stray) is not a run; None if it holds no run.json (just some dir)."""
        d = self.dir / name
        if os.path.islink(d):
            return BadRecordError(d, "a symbolic link named like a run: a run dir must be a directory")
        if not os.path.lexists(d / "run.json"):
            return None
        try:
            rec: dict[str, Any] | None = _record_of(d)
        except RunNotFoundError:
            rec = None
        return BadRecordError(d, _not_an_id(d, rec))

    def report_strays(self) -> None:
        """Warn (once) about every stray that looks like a run."""
        if self._reported:
            return
        self._reported = True
        for name in self.strays:
            e = self.stray_error(name)
            if e is not None:
                warn_bad(e)

    @overload
    def __getitem__(self, i: int) -> Run: ...
    @overload
    def __getitem__(self, i: slice) -> list[Run]: ...
    def __getitem__(self, i: int | slice) -> Run | list[Run]:
        if isinstance(i, slice):
            self.report_strays()
            out = []
            for x in self.ids[i]:
                run = self._get(x)
                if isinstance(run, Run):
                    out.append(run)
                elif isinstance(run, BadRecordError):
                    warn_bad(run)
            return out
        run = self._get(self.ids[i])
        if not isinstance(run, Run):
            raise run
        return run

    def __iter__(self) -> Iterator[Run]:
        return iter(self[:])

    def bad_numbers(self, upto: int | None = None) -> list[int]:
        """The numbers (1 = newest: the selectors' numbering, which counts every run dir) of the
        bad records among the first ``upto`` runs, of those read so far (a listing reads them)."""
        return [i for i, x in enumerate(self.ids[:upto], 1) if isinstance(self._loaded.get(x), BadRecordError)]


def list_runs(runs_dir: Path, where: Callable[[Run], bool] | None = None) -> list[Run]:
    """Every readable run under ``runs_dir``, newest first (optionally only those ``where`` accepts);
    bad records are skipped with a warning."""
    runs = RunList(runs_dir)[:]
    return runs if where is None else [r for r in runs if where(r)]


def select_runs(runs: Sequence[Run], specs: Iterable[str]) -> list[Run]:
    """Runs chosen by selectors: ``1`` (newest), ``2:4`` (inclusive), or an id prefix.

    A run chosen by itself (index or id) whose record is bad is an error (BadRecordError); in a
    range it is skipped with a warning, as in a listing. A prefix of a stray (a run dir renamed
    by hand) says how to rename it back.
    """
    ids = runs.ids if isinstance(runs, RunList) else [r.id for r in runs]
    chosen: list[Run] = []
    for spec in specs:
        spec = spec.strip()
        try:
            picked = _select_one(ids, spec)
        except RunNotFoundError:
            stray = _stray_named(runs, spec)
            if stray is not None:
                raise stray from None
            raise
        for i in picked:
            try:
                run = runs[i]
            except RunNotFoundError as e:
                if ":" not in spec:
                    raise
                if isinstance(e, BadRecordError):
                    warn_bad(e)
                continue
            if run not in chosen:
                chosen.append(run)
    return chosen


def _stray_named(runs: Sequence[Run], spec: str) -> BadRecordError | None:
    if not isinstance(runs, RunList) or not spec or "/" in spec or spec.startswith(".") or ":" in spec:
        return None
    for name in runs.strays:
        if name.startswith(spec):
            return runs.stray_error(name)
    return None


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
