"""``guildlite runs export``: runs copied out of the runs dir into a directory or a ``.tar.gz``.

The export holds one ``<run id>/`` dir per run, as in a runs dir, so ``runs import`` (or
``--runs-dir`` on the export dir) reads it back. What of a run dir travels is ``_runcopy``'s rule.
Only ended runs are exported (a running one would be copied half written). A batch or pipeline
goes with its children (the command adds them); the runs it used files of (upstream) do not.

A run appears in a directory export whole (copied into a hidden dir, then renamed), and an
archive appears whole (written to a hidden temp file beside it, then renamed): an export that
fails midway leaves nothing that looks like a finished one. Before anything is written, what it
will take is checked against the free space of DEST's disk (``_disk.check_room``): a directory
export keeps a sparse file's holes, so it takes what the files hold on disk; a ``.tar`` holds every
byte of each file's size; a ``.tar.gz`` compresses a hole ~1000:1 (deflate's best), data not at all.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ._errors import GuildliteError
from ._run import Run
from ._runcopy import allocated, copy_run, entries, link_problem, open_regular

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")  # a plain .tar is not compressed
# Archives it does not write: a DEST named so is a mistake, not a directory to make.
_OTHER_ARCHIVES = (".zip", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tbz", ".tbz2", ".txz")


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the run ids, where, and what it left out (``path why``)."""

    ids: tuple[str, ...]
    dest: Path
    left_out: tuple[str, ...] = field(default_factory=tuple)


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def check_exportable(runs: Sequence[Run], runs_dir: Path, dest: Path) -> None:
    """GuildliteError (exit 2) unless every run has ended and ``dest`` lies outside the runs dir."""
    from ._status import ENDED

    going = [r for r in runs if r.status not in ENDED]
    if going:
        shown = ", ".join(f"{r.id} ({r.status})" for r in going[:10]) + (" ..." if len(going) > 10 else "")
        raise GuildliteError(f"only runs that have ended can be exported; not these: {shown}", exit_code=2)
    if not is_archive(dest) and not dest.is_dir() and dest.name.lower().endswith(_OTHER_ARCHIVES):
        raise GuildliteError(f"{dest}: runs export writes a directory or a {', '.join(ARCHIVE_SUFFIXES)} "
                             "archive, not this kind of file", exit_code=2)
    real_runs, real_dest = os.path.realpath(runs_dir), os.path.realpath(dest)
    if os.path.commonpath([real_runs, real_dest]) == real_runs:
        raise GuildliteError(f"{dest}: inside the runs dir {runs_dir}; export to a place outside it", exit_code=2)


def export_runs(runs: Sequence[Run], dest: Path, runs_dir: Path) -> Exported:
    """Copy ``runs`` (ended, each a run dir of ``runs_dir``) into ``dest``: a ``.tar.gz`` / ``.tgz`` /
    ``.tar`` file (which must not exist yet) or a directory (made if needed; a run id already there is an
    error, nothing written)."""
    check_exportable(runs, runs_dir, dest)
    _check_room(runs, dest)
    left_out: list[str] = []
    if is_archive(dest):
        _to_archive(runs, dest, left_out)
    else:
        _to_dir(runs, dest, left_out)
    return Exported(tuple(r.id for r in runs), dest, tuple(left_out))


def _check_room(runs: Sequence[Run], dest: Path) -> None:
    """GuildliteError (exit 2), before anything is written, unless the export fits on DEST's disk."""
    from ._disk import check_room

    name = dest.name.lower()
    kind = "dir" if not is_archive(dest) else "tar" if name.endswith(".tar") else "gz"
    need = 0
    for r in runs:
        for e in entries(r.run_dir):
            need += 1024  # a directory entry, an inode, a tar header (and its PAX record)
            if e.kind != "file":
                continue
            st = os.lstat(r.run_dir / e.rel)
            held = allocated(st)
            need += {"dir": held, "tar": st.st_size + 511, "gz": held + (st.st_size - held) // 1000}[kind]
    check_room(dest if kind == "dir" else dest.parent, need, f"the export of {len(runs)} run(s)",
               "nothing was exported (free some space, or export elsewhere)")


def _to_dir(runs: Sequence[Run], dest: Path, left_out: list[str]) -> None:
    if os.path.lexists(dest) and not dest.is_dir():
        raise GuildliteError(f"{dest}: exists and is not a directory", exit_code=2)
    taken = [r.id for r in runs if os.path.lexists(dest / r.id)]
    if taken:
        raise GuildliteError(f"{dest} already holds run(s) {', '.join(taken[:10])}: nothing exported; "
                             "choose another destination, or remove them there", exit_code=2)
    dest.mkdir(parents=True, exist_ok=True)
    for r in runs:
        part = dest / f".{r.id}.part-{os.getpid()}-{os.urandom(3).hex()}"
        part.mkdir()
        try:
            copy_run(r.run_dir, part, left_out)
            os.rename(part, dest / r.id)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise


def _to_archive(runs: Sequence[Run], dest: Path, left_out: list[str]) -> None:
    if os.path.lexists(dest):
        raise GuildliteError(f"{dest}: already exists; choose another name (or remove it)", exit_code=2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}")
    try:
        plain = dest.name.lower().endswith(".tar")
        with (tarfile.open(tmp, "x", format=tarfile.PAX_FORMAT) if plain
              else tarfile.open(tmp, "x:gz", format=tarfile.PAX_FORMAT)) as tar:
            for r in runs:
                _add_run(tar, r, left_out)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _add_run(tar: tarfile.TarFile, run: Run, left_out: list[str]) -> None:
    tar.addfile(_info(run.id, tarfile.DIRTYPE, 0o755, os.lstat(run.run_dir).st_mtime))
    for e in entries(run.run_dir):
        name = f"{run.id}/{e.rel}"
        if e.kind == "dir":
            tar.addfile(_info(name, tarfile.DIRTYPE, 0o755, os.lstat(run.run_dir / e.rel).st_mtime))
        elif e.kind == "link":
            why = link_problem(e.target)
            if why:
                left_out.append(f"{name} {why}")
                continue
            info = _info(name, tarfile.SYMTYPE, 0o777, os.lstat(run.run_dir / e.rel).st_mtime)
            info.linkname = e.target
            tar.addfile(info)
        elif e.kind == "file":
            with open_regular(run.run_dir / e.rel) as f:
                st = os.fstat(f.fileno())
                info = _info(name, tarfile.REGTYPE, st.st_mode & 0o755 | 0o600, st.st_mtime)
                info.size = st.st_size
                tar.addfile(info, f)
        else:
            left_out.append(f"{name} is a FIFO, socket or device")


def _info(name: str, kind: bytes, mode: int, mtime: float) -> tarfile.TarInfo:
    """A member owned by nobody in particular (no user or group names leave the machine)."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
