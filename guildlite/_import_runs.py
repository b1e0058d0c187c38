"""``guildlite runs import SRC``: runs from an export (a directory or a ``.tar.gz``) into the runs dir.

An export is untrusted input. Before anything is written, every archive member is checked: a
member must lie inside a ``<run id>/`` dir (no absolute path, no ``..``, no name twice), be a
file, a directory or a link that ``_runcopy`` lets travel (a relative target without ``..``; a
hard link only to a file of the same run), never a device or FIFO, never below a link; and the
files must fit on the disk. A directory source is copied by ``_runcopy`` (no link followed, only
regular files opened). Either way the runs land in a hidden ``.staging-import-*`` dir *inside
the runs dir*, so nothing is ever written outside it, and each is then checked as a run:

- its record reads through the schema (``_store.read_record``); a record whose ``id`` is not its
  directory's name, whose status is not an ended one (a staged run would be started from a
  command it brought), or whose file lists (``requires`` targets, the source manifest) name a
  path outside the run dir, is refused;
- its id must be free in the runs dir (and its trash): else the import is refused, or with
  ``rename`` the run gets a new id, and every reference to it among the imported runs (a trial's
  ``parent``, a batch's ``trials``, a pipeline's ``steps``, an upstream ``requires`` run) follows.

Only then are the runs published through the store (children first, then their batch), the
index told about them, and the staging dir removed. One refusal refuses the whole import.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ._errors import BadRecordError, GuildliteError, RunNotFoundError
from ._files import META_DIR, TRASH_DIR, new_run_id
from ._record import is_run_id
from ._runcopy import MAX_ENTRIES, Entry, copy_run, entries, link_problem, name_problem, open_regular, travels
from ._store import STAGING_PREFIX, publish, read_record, update_record
from ._tarsafe import HeaderTooBig, open_tar

_DISK_MARGIN = 64 << 20  # left free after unpacking: a full disk breaks every run's record writes
_MANIFEST_BYTES = 64 << 20


class ImportRefused(GuildliteError):
    """An import source that is not a guildlite export, or does something an export never does."""

    exit_code = 2


@dataclass(frozen=True)
class Imported:
    """One run imported: its id in the runs dir, and the id it had in the source."""

    run_id: str
    source_id: str


def import_runs(src: Path, runs_dir: Path, rename: bool = False, dry_run: bool = False) -> list[Imported]:
    """Import every run of ``src`` (an export dir, one run dir, or a ``.tar.gz``) into ``runs_dir``,
    all or nothing (see the module's rules); children before their batch. ImportRefused (exit 2)
    names what was refused. ``dry_run``: every check, then nothing published."""
    _check_places(src, runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    work = runs_dir / f"{STAGING_PREFIX}import-{os.getpid()}-{os.urandom(3).hex()}"
    work.mkdir()
    try:
        return _import(src, work, runs_dir, rename, dry_run)
    except OSError as e:  # the disk, permissions: not the source's fault
        raise GuildliteError(f"cannot import {src}: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}; "
                             "nothing was imported") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _import(src: Path, work: Path, runs_dir: Path, rename: bool, dry_run: bool) -> list[Imported]:
    from ._lock import file_lock

    # A run whose id is taken is refused before any file is copied (a directory's run ids are all
    # known at once) or at its first member (an archive of 200k members would otherwise be unpacked
    # first); the check that counts is the one under the lock below.
    def early(names: list[str]) -> None:
        if not rename:
            _refuse_clashes([n for n in names if _taken(runs_dir, n)], runs_dir)

    if src.is_dir():
        _copy_dir(src, work, early)
    else:
        _unpack(src, work, early)
    records = {name: _checked(work / name) for name in sorted(os.listdir(work))}
    if not records:
        raise ImportRefused(f"{src}: no runs in it to import")
    # Children first (a pipeline's batch step's trials, then that batch, then the pipeline): a
    # parent is listed only once its children are there.
    order = sorted(records, key=lambda n: -_depth(n, records))
    with file_lock(runs_dir / ".import.lock"):
        new_ids = _new_ids(records, runs_dir, rename)
        if dry_run:
            return [Imported(new_ids[name], name) for name in order]
        if any(new != old for old, new in new_ids.items()):
            for name in records:
                update_record(work / name, _renamer(new_ids))
        done: list[str] = []
        for name in order:
            staged = runs_dir / f"{STAGING_PREFIX}{new_ids[name]}"
            os.rename(work / name, staged)  # its id was checked free, under the lock
            try:
                publish(staged, runs_dir)
            except BaseException as e:
                shutil.rmtree(staged, ignore_errors=True)
                if done and isinstance(e, (OSError, GuildliteError)):  # the disk filled up midway, say
                    raise GuildliteError(f"cannot import run {name}: {e}; imported before it: {', '.join(done)}") \
                        from None
                raise
            done.append(new_ids[name])
    _index(runs_dir, list(new_ids.values()))
    return [Imported(new_ids[name], name) for name in order]


def _depth(name: str, records: dict[str, dict[str, Any]]) -> int:
    """How many of ``name``'s ancestors are among ``records`` (a loop of parents counts once)."""
    seen = {name}
    parent = records[name].get("parent")
    while parent in records and parent not in seen:
        seen.add(parent)
        parent = records[parent].get("parent")
    return len(seen) - 1


def _check_places(src: Path, runs_dir: Path) -> None:
    if not os.path.lexists(src):
        raise ImportRefused(f"{src}: no such file or directory")
    if not (os.path.isdir(src) or stat.S_ISREG(os.stat(src).st_mode)):  # a FIFO or /dev/zero would never end
        raise ImportRefused(f"{src}: not a directory or an archive file")
    a, b = os.path.realpath(src), os.path.realpath(runs_dir)
    if os.path.isdir(src) and os.path.commonpath([a, b]) in (a, b):  # it would copy what it writes
        raise ImportRefused(f"{src}: the runs dir {runs_dir} is in it, or it is in the runs dir")


# --- bringing the source into the staging dir ----------------------------------------------------------


def _copy_dir(src: Path, work: Path, check_ids: Callable[[list[str]], None]) -> None:
    """The run dirs of an export dir (hidden entries skipped), or ``src`` itself if it is one;
    ``check_ids`` sees their ids before any is copied."""
    if os.path.lexists(src / "run.json"):
        names, base = [src.name], src.parent
    else:
        names, base = sorted(n for n in os.listdir(src) if not n.startswith(".")), src
    check_ids([n for n in names if is_run_id(n)])
    for name in names:
        d = base / name
        if not is_run_id(name) or d.is_symlink() or not d.is_dir():
            guild = (src / "runs").is_dir() or (d / ".guild").is_dir()  # Guild's home, or its runs dir
            raise ImportRefused(f"{base}: {name!r} is not a run dir (a directory named by a run id); nothing was imported"
                                + ("; to import Guild AI runs: guildlite runs import --from-guild GUILD_HOME"
                                   if guild else ""))
        (work / name).mkdir()
        try:
            copy_run(d, work / name)
        except ImportRefused:
            raise
        except GuildliteError as e:
            raise ImportRefused(f"{src}: refusing to import: {e}; nothing was imported") from None


def _unpack(archive: Path, work: Path, check_ids: Callable[[list[str]], None]) -> None:
    try:
        with open_tar(archive) as tar:
            members = _checked_members(archive, tar, shutil.disk_usage(work).free - _DISK_MARGIN, check_ids)
            tar.extractall(work, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        why = (e.strerror if isinstance(e, OSError) and e.strerror else str(e) if isinstance(e, HeaderTooBig)
               else "not a tar archive, compressed or not" if isinstance(e, tarfile.ReadError) else (str(e).splitlines() or [type(e).__name__])[0])
        raise ImportRefused(f"{archive}: cannot import: not a readable .tar.gz export ({why}); "
                            "nothing was imported") from None


def _checked_members(archive: Path, tar: tarfile.TarFile, free: int,
                     check_ids: Callable[[list[str]], None]) -> list[tarfile.TarInfo]:
    """The members to extract (what travels), each checked; ImportRefused at the first bad one, as
    soon as the files need more than ``free`` bytes (a gzip bomb is refused at its first huge
    member's header, not once it has been read through), and at the first member of a run whose
    id ``check_ids`` refuses."""
    out: list[tarfile.TarInfo] = []
    seen: dict[str, tarfile.TarInfo] = {}
    runs: set[str] = set()
    need = 0
    for count, m in enumerate(tar, 1):
        if count > MAX_ENTRIES:
            raise ImportRefused(f"{archive.name}: more than {MAX_ENTRIES} members; nothing was imported")
        name = m.name.removeprefix("./").rstrip("/") if m.name not in (".", "./") else ""
        if not name and m.isdir():
            continue  # the archive's own top dir (``tar -C export .``)
        why = _member_problem(m, name, seen)
        if why:
            raise ImportRefused(f"{archive.name}: refusing to import: member {m.name!r} {why}; nothing was imported")
        seen[name] = m
        top = name.partition("/")[0]
        if top not in runs:
            check_ids([top])
        runs.add(top)
        if travels(name.partition("/")[2]):
            m.name = name
            # Readable and removable by the importer whatever the archive says (a dir of mode 000
            # would be a run no one reads, and a staging dir that cannot be cleaned up).
            m.mode = (m.mode or 0) & 0o755 | (0o700 if m.isdir() else 0o600)
            if m.islnk():
                m.linkname = m.linkname.removeprefix("./")
            need += m.size if m.isfile() else 0
            if need > free:
                raise ImportRefused(f"{archive.name}: its files need over {need >> 20} MB, more than the disk "
                                    "holding the runs dir has free; nothing was imported")
            out.append(m)
    return out


def _member_problem(m: tarfile.TarInfo, name: str, seen: dict[str, tarfile.TarInfo]) -> str | None:
    why = name_problem(name)
    if why:
        return why
    top, _, rest = name.partition("/")
    if not is_run_id(top):
        return "is not inside a run dir (<run id>/...)"
    if name in seen:
        return "appears twice"
    parts = name.split("/")
    for i in range(1, len(parts)):
        above = seen.get("/".join(parts[:i]))
        if above is not None and not above.isdir():
            return "lies below a link or a file"
    if not rest and not m.isdir():
        return "is a run dir that is not a directory"
    if m.issym():
        return link_problem(m.linkname)
    if m.islnk():
        target = m.linkname.removeprefix("./")
        if name_problem(target) or target.partition("/")[0] != top:
            return f"is a hard link to {m.linkname!r}, outside its run dir"
        linked = seen.get(target)
        if linked is None or not linked.isfile() or not travels(target.partition("/")[2]):
            return f"is a hard link to {m.linkname!r}, which is not a file of the export before it"
        return None
    if not (m.isfile() or m.isdir()):
        return "is a device, FIFO or other special file"
    return None


# --- each run, as a run ----------------------------------------------------------------------------------


def _checked(run_dir: Path) -> dict[str, Any]:
    """The record of a staged run dir, refused unless it is a run guildlite could have exported."""
    from ._status import ENDED

    name = run_dir.name
    if not is_run_id(name) or run_dir.is_symlink() or not run_dir.is_dir():
        raise ImportRefused(f"{name!r}: not a run dir (a directory named by a run id); nothing was imported")
    try:
        rec = read_record(run_dir)
    except (BadRecordError, RunNotFoundError) as e:
        raise ImportRefused(f"run {name}: {getattr(e, 'problem', e)}; nothing was imported") from None
    problem = ""
    if rec.get("id", name) != name:
        problem = f"its run.json says it is run {str(rec.get('id'))[:40]!r}, but its directory is {name}"
    elif name == rec.get("parent") or name in (rec.get("trials") or ()) or name in (rec.get("steps") or ()):
        problem = "its record names the run itself as its own parent, trial or step"
    elif rec.get("status") not in ENDED:
        problem = f"its status is {rec.get('status')!r}: only runs that have ended are imported"
    for entry in rec.get("requires") or ():
        target = entry.get("target")
        if not problem and target is not None and _leads_out(target):
            problem = f"its record names a required file at {str(target)[:60]!r}, outside the run dir"
    problem = problem or _manifest_problem(run_dir)
    if not problem:
        try:
            bad = next((e for e in entries(run_dir) if e.kind == "other" or (e.kind == "link" and link_problem(e.target))
                        or (e.rel == META_DIR and e.kind != "dir")), None)
        except GuildliteError as e:  # too deep, too many entries
            raise ImportRefused(f"run {name}: {e}; nothing was imported") from None
        problem = f"{bad.rel!r} {_entry_problem(bad)}" if bad else ""
    if problem:
        raise ImportRefused(f"run {name}: {problem}; nothing was imported")
    return rec


def _leads_out(rel: Any) -> bool:
    """Whether a path a record or manifest gives, relative to the run dir, may name something
    outside it (``.`` is the run dir itself: a requirement's target folder)."""
    return type(rel) is not str or not rel or rel.startswith("/") or "\0" in rel or "\\" in rel \
        or ".." in rel.split("/")


def _entry_problem(e: Entry) -> str:
    if e.kind == "link":
        return link_problem(e.target) or ""
    return "is a FIFO, socket or device" if e.kind == "other" else "is not a directory"


def _manifest_problem(run_dir: Path) -> str:
    """What is wrong with the paths the run's own file lists name (a restart acts on them)."""
    for manifest, key, where in (("sourcecode.json", "path", "files"), ("requires.json", "target", None)):
        path = run_dir / META_DIR / manifest
        if not os.path.lexists(path):
            continue
        try:
            with open_regular(path) as f:
                data = json.loads(f.read(_MANIFEST_BYTES + 1)[:_MANIFEST_BYTES])
        except (GuildliteError, ValueError, RecursionError):
            return f"{META_DIR}/{manifest} is not a readable JSON file"
        items = data.get(where) if where and isinstance(data, dict) else data
        for item in items if isinstance(items, list) else ():
            rel = item.get(key) if isinstance(item, dict) else None
            if rel is not None and _leads_out(rel):
                return f"{META_DIR}/{manifest} names {str(rel)[:60]!r}, outside the run dir"
    return ""


def _new_ids(records: dict[str, dict[str, Any]], runs_dir: Path, rename: bool) -> dict[str, str]:
    """Each imported run's id in the runs dir: its own, or a new one (``rename``) where that is taken."""
    def taken(run_id: str) -> bool:
        return _taken(runs_dir, run_id)

    clashes = [name for name in records if taken(name)]
    if not rename:
        _refuse_clashes(clashes, runs_dir)
    out = {name: name for name in records}
    for name in clashes:
        new = _fresh_id(name, lambda i: taken(i) or i in records or i in out.values())
        out[name] = new
    return out


def _taken(runs_dir: Path, run_id: str) -> bool:
    return any(os.path.lexists(p) for p in (runs_dir / run_id, runs_dir / TRASH_DIR / run_id,
                                            runs_dir / f"{STAGING_PREFIX}{run_id}"))


def _refuse_clashes(clashes: list[str], runs_dir: Path) -> None:
    if clashes:
        shown = ", ".join(clashes[:10]) + (f" and {len(clashes) - 10} more" if len(clashes) > 10 else "")
        raise ImportRefused(f"run id(s) already in {runs_dir} (or its trash): {shown}; nothing was imported. "
                            "Import them under new ids with --rename, or delete and purge the runs here first")


def _fresh_id(old: str, taken: Callable[[str], bool]) -> str:
    """A new id that sorts where ``old`` does (the same UTC second and millisecond: its first 19
    characters, then 3 random hex digits), else a brand new one."""
    for _ in range(100):
        candidate = old[:19] + os.urandom(2).hex()[:3]
        if candidate != old and is_run_id(candidate) and not taken(candidate):
            return candidate
    while taken(candidate := new_run_id()):
        pass
    return candidate


def _renamer(new_ids: dict[str, str]) -> Callable[[dict[str, Any]], None]:
    """A record change that makes every run id it names (its own, parent, trials, steps, upstream
    runs, a pipeline plan's step runs) the new id of that run."""
    def new(x: Any) -> Any:
        return new_ids.get(x, x) if isinstance(x, str) else x

    def change(rec: dict[str, Any]) -> None:
        for key in ("id", "parent"):
            if key in rec:
                rec[key] = new(rec[key])
        for key in ("trials", "steps"):
            if isinstance(rec.get(key), list):
                rec[key] = [new(x) for x in rec[key]]
        for entry in rec.get("requires") or ():
            if isinstance(entry, dict) and "run" in entry:
                entry["run"] = new(entry["run"])
        plan = rec.get("pipeline")
        for step in (plan.get("steps") or []) if isinstance(plan, dict) else ():
            if isinstance(step, dict) and "run" in step:
                step["run"] = new(step["run"])

    return change


def _index(runs_dir: Path, ids: list[str]) -> None:
    """Let the runs dir's index read the new runs now (a listing would, later)."""
    from ._index import load_records
    from ._selection import RunList

    load_records(RunList(runs_dir), ids, scalars=True)
