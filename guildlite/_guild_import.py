"""``guildlite runs import --from-guild``: Guild AI runs brought into a runs dir as guildlite runs.

Each Guild run (read as untrusted input by ``_guild_runs``) becomes an ordinary run dir, staged
hidden and published whole through the store: ``run.json`` (op, flags, status, exit code, times,
label, tags, Guild's command; ``attrs["guild"]`` names the Guild run), the source snapshot
(``.guild/sourcecode/``) and the files the job wrote, copied to the run dir's top (as guildlite
stages them), ``.guild/output`` as ``output.log``, and the scalars of every TensorBoard event file
in the run (Guild's output scalars live in ``.guild/``) as ``scalars.jsonl``.

Idempotent: a Guild run already imported into the runs dir (``attrs.guild.id``) is skipped, under
a lock so two imports at once do not both import it. The run id is made from the Guild run's
start time, so imported runs list among the others in the order they ran.

Copying never follows a symlink (a link in a Guild run, e.g. a resolved dependency, is listed as
skipped), never opens anything but a regular file, and never blocks on a FIFO; files over
``max_file_size`` are skipped; nothing is written outside the new run's staging dir.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from ._errors import BadRecordError, GuildliteError, RunNotFoundError
from ._files import META_DIR, RunPaths, atomic_write, now_iso, write_json
from ._guild_runs import GuildRun, NotImportable, guild_runs_dir, read_run, run_dirs, source_paths
from ._lock import file_lock
from ._record import run_ids
from ._run import Run
from ._runcopy import copy_into
from ._runfiles import RunFileError, open_file
from ._store import STAGING_PREFIX, publish, read_record
from ._tfevents import read_all

MAX_FILE_SIZE = 1 << 30  # default: a bigger file (a sparse file of terabytes, a checkpoint) is skipped
MAX_ENTRIES = 200_000  # dir entries looked at per Guild run
MAX_DEPTH = 32
MAX_EVENT_BYTES = 256 << 20
MAX_ROWS = 1_000_000  # per event file: a scalar row is ~100 bytes in scalars.jsonl
_RESERVED = frozenset({"run.json", "output.log", "scalars.jsonl", META_DIR, ".guild"})  # guildlite's names at the top


@dataclass(frozen=True)
class Outcome:
    """What happened to one Guild run: ``action`` is imported, would-import, skipped or failed."""

    guild_id: str
    action: str
    run_id: str = ""
    status: str = ""
    op: str = ""
    reason: str = ""
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in ("", ())}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def default_home() -> Path:
    """``$GUILD_HOME``, else ``~/.guild`` (Guild's own default)."""
    return Path(os.environ.get("GUILD_HOME") or Path.home() / ".guild")


def imported_ids(runs_dir: Path) -> dict[str, str]:
    """Guild run id -> guildlite run id of the runs already imported into ``runs_dir``."""
    out: dict[str, str] = {}
    try:
        names = run_ids(sorted(os.listdir(runs_dir)))
    except FileNotFoundError:
        return out
    for name in names:
        try:
            rec = read_record(runs_dir / name)
        except (BadRecordError, RunNotFoundError):
            continue
        guild = (rec.get("attrs") or {}).get("guild")
        if isinstance(guild, dict) and isinstance(guild.get("id"), str):
            out[guild["id"]] = name
    return out


def import_runs(
    home: Path,
    runs_dir: Path,
    *,
    dry_run: bool = False,
    max_file_size: int = MAX_FILE_SIZE,
    progress: Callable[[Outcome, int, int], None] | None = None,
) -> list[Outcome]:
    """Import every finished Guild run of ``home`` into ``runs_dir``; one Outcome per entry of
    ``home/runs`` (refused entries included). GuildliteError if there is no Guild runs dir."""
    source = guild_runs_dir(home)
    if not source.is_dir():
        raise GuildliteError(f"{home}: no Guild runs here ({source} is not a directory); "
                             "pass GUILD_HOME or set $GUILD_HOME", exit_code=2)
    inside = os.path.relpath(os.path.realpath(runs_dir), os.path.realpath(source))
    if inside != "." and not inside.startswith(".."):  # copying that Guild run would copy what is being written
        raise GuildliteError(f"{runs_dir}: inside a Guild run dir of {source}; choose a runs dir outside it",
                             exit_code=2)
    found, refused = run_dirs(source)
    total = len(found) + len(refused)
    outcomes = [Outcome(name, "skipped", reason=why) for name, why in refused]
    if progress is not None:
        for i, outcome in enumerate(outcomes, 1):
            progress(outcome, i, total)
    if not dry_run:
        runs_dir.mkdir(parents=True, exist_ok=True)
    with _import_lock(runs_dir, dry_run):
        done = imported_ids(runs_dir)
        for i, d in enumerate(found, len(refused) + 1):
            outcome = _one(d, runs_dir, done, dry_run, max_file_size)
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome, i, total)
    return outcomes


def _import_lock(runs_dir: Path, dry_run: bool) -> Any:
    import contextlib

    return contextlib.nullcontext() if dry_run else file_lock(runs_dir / ".guild-import.lock")


def _one(d: Path, runs_dir: Path, done: dict[str, str], dry_run: bool, max_file_size: int) -> Outcome:
    if d.name in done:
        return Outcome(d.name, "skipped", run_id=done[d.name], reason=f"already imported as {done[d.name]}")
    try:
        g = read_run(d)
    except NotImportable as e:
        return Outcome(d.name, "skipped", reason=str(e))
    action = "would-import" if dry_run else "imported"
    notes = list(g.notes)
    if dry_run:
        return Outcome(g.id, action, status=g.status, op=g.opspec, reason=g.undecided, notes=tuple(notes))
    staging = _staging_dir(runs_dir, g)
    try:
        run = _stage(g, staging, max_file_size, notes)
        final = publish(staging, runs_dir)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, (OSError, GuildliteError)):
            return Outcome(g.id, "failed", op=g.opspec, reason=str(e))
        raise
    done[g.id] = final.name
    return Outcome(g.id, action, run_id=run.id, status=g.status, op=g.opspec, reason=g.undecided, notes=tuple(notes))


def _staging_dir(runs_dir: Path, g: GuildRun) -> Path:
    """A new hidden staging dir whose id sorts at the Guild run's start."""
    when = g.started or g.created
    t = datetime.fromisoformat(when).timestamp() if when else time.time()
    while True:
        ms = int(t * 1000) % 1000
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f"-{ms:03x}{os.urandom(2).hex()[:3]}"
        hidden = runs_dir / f"{STAGING_PREFIX}{run_id}"
        if (runs_dir / run_id).exists():
            continue
        try:
            hidden.mkdir()
            return hidden
        except FileExistsError:
            continue


def _stage(g: GuildRun, staging: Path, max_file_size: int, notes: list[str]) -> Run:
    run_id = staging.name.removeprefix(STAGING_PREFIX)
    paths = RunPaths(staging)
    paths.meta.mkdir()
    # Guild before 0.9 kept the source snapshot in .guild/sourcecode; 0.9 copies it to the run
    # dir's top, beside what the job writes, and lists it in .guild/manifest.
    copied, skipped = _copy_tree(g.path, ".guild/sourcecode", staging, max_file_size)
    files, more = _copy_tree(g.path, "", staging, max_file_size)
    skipped += more
    listed = source_paths(g.path)
    copied += [f for f in files if f in listed]
    if not _copy_file(g.path, ".guild/output", paths.output_log, max_file_size, skipped):
        atomic_write(paths.output_log, b"")
    write_json(paths.manifest, {"root": str(g.path), "files": [{"path": f} for f in sorted(copied)],
                                "skipped": skipped})
    rows = _scalars(g.path, notes)
    if rows:
        atomic_write(paths.scalars, "".join(json.dumps(r) + "\n" for r in rows))
    if skipped:
        notes.append(f"{len(skipped)} file(s) not copied (see .guildlite/sourcecode.json)")
    run = Run(
        id=run_id, run_dir=staging, op=g.op, opspec=g.opspec, flags=g.flags, status=g.status,
        exit_code=g.exit_status, label=g.label, tags=list(g.tags), created=g.created or now_iso(),
        started=g.started, stopped=g.stopped, cmd=list(g.cmd),
        error={"message": g.undecided} if g.undecided else None,
        attrs={"guild": {"id": g.id, "home_run": str(g.path), "op": g.opspec, "user": g.user, "imported": now_iso(),
                         "exit_status": g.exit_status, "files": len(files), "notes": list(notes)},
               "sourcecode": {"root": str(g.path), "files": len(copied),
                              "skipped": len(skipped)}},
    )
    if g.host:
        run.host = g.host
    run.create()
    return run


def _walk(base: Path, top: str) -> Iterator[tuple[str, os.DirEntry[str] | None, str]]:
    """(relative path under ``top``, entry, why it is skipped or "") for each file below
    ``base/top``; no symlink followed, at most MAX_ENTRIES entries and MAX_DEPTH levels."""
    start = base / top if top else base
    if not start.is_dir() or start.is_symlink():
        return
    stack: list[tuple[Path, str, int]] = [(start, "", 0)]
    seen = 0
    while stack:
        d, rel, depth = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as err:
            yield rel or ".", None, f"cannot list: {err.strerror}"
            continue
        for e in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                yield rel or ".", None, f"more than {MAX_ENTRIES} entries: the rest not copied"
                return
            r = f"{rel}/{e.name}" if rel else e.name
            if not rel and e.name in _RESERVED:  # the run's own .guild is read, not copied
                if top or e.name != ".guild":
                    yield r, None, "a name guildlite keeps for itself"
                continue
            if not e.name.isprintable():
                yield repr(r), None, "a name with control characters"
            elif e.is_symlink():
                yield r, None, "a symbolic link (not followed)"
            elif e.is_dir(follow_symlinks=False):
                if depth + 1 >= MAX_DEPTH:
                    yield r, None, f"more than {MAX_DEPTH} levels deep"
                else:
                    stack.append((Path(e.path), r, depth + 1))
            else:
                yield r, e, ""


def _copy_tree(base: Path, top: str, dest: Path, max_size: int) -> tuple[list[str], list[dict[str, str]]]:
    """Copy the regular files below ``base/top`` into ``dest`` (same relative paths); returns the
    paths copied and the entries skipped ({"path", "reason"}). A path already taken in ``dest``
    (the source snapshot's file where the job wrote one of the same name) keeps the first copy."""
    copied, skipped = [], []
    for rel, entry, why in _walk(base, top):
        if entry is None:
            skipped.append({"path": rel, "reason": why})
            continue
        target = dest / rel
        if os.path.lexists(target):
            skipped.append({"path": rel, "reason": "a source file of that name was copied"})
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if _copy_file(base, f"{top}/{rel}" if top else rel, target, max_size, skipped):
                copied.append(rel)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk, not this file: the run is not imported
                raise
            # A folder where the source snapshot put a file of that name (or the like): this file only.
            skipped.append({"path": rel, "reason": f"cannot copy: {e.strerror}"})
    return copied, skipped


def _copy_file(base: Path, rel: str, target: Path, max_size: int, skipped: list[dict[str, str]]) -> bool:
    """Copy ``base/rel`` (a regular file inside ``base``, at most ``max_size`` bytes) to a new
    file ``target``; False (with a ``skipped`` entry unless there is no such file) otherwise."""
    try:
        f = open_file(base, rel, "Guild run")
    except RunFileError as e:
        if not e.missing:
            skipped.append({"path": rel, "reason": e.reason})
        return False
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > max_size:
            skipped.append({"path": rel, "reason": f"{size} bytes, over the limit of {max_size} (--max-file-size)"})
            return False
        copy_into(f, size, os.fstat(f.fileno()).st_mode, target)
    return True


def _scalars(base: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The scalar rows of every event file in the Guild run (``.guild/`` included, the source
    snapshot not); keys from files in a sub-dir other than ``.guild`` are prefixed with it."""
    rows: list[dict[str, Any]] = []
    for rel, entry, _why in _event_files(base):
        if entry is None:
            continue
        if len(rows) >= MAX_ROWS:
            notes.append(f"{rel}: not read, the run has {MAX_ROWS} scalars already")
            continue
        try:
            f = open_file(base, rel, "Guild run")
        except RunFileError as e:
            notes.append(f"{rel}: {e.reason}")
            continue
        with f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_EVENT_BYTES:
                notes.append(f"{rel}: event file over {MAX_EVENT_BYTES >> 20} MB, scalars not read")
                continue
            got, problem = read_all(f, size, MAX_ROWS)
        if problem:
            notes.append(f"{rel}: {problem}")
        prefix = os.path.dirname(rel).removeprefix(".guild").strip("/")
        for r in got:
            key = f"{prefix}/{r['key']}" if prefix else r["key"]
            if key.isprintable() and len(key) <= 256:
                rows.append({**r, "key": key})
    rows.sort(key=lambda r: (r.get("time") or 0, r["step"]))
    return rows


def _event_files(base: Path) -> Iterator[tuple[str, os.DirEntry[str] | None, str]]:
    for top in ("", ".guild"):
        for rel, entry, why in _walk(base, top):
            if entry is not None and "tfevents" in entry.name and not rel.startswith("sourcecode/"):
                yield (f"{top}/{rel}" if top else rel), entry, why
