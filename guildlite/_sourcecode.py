"""Selecting and copying a project's source files into a run directory.

Only regular files are copied. A FIFO, socket or device file (or a symlink to one, a broken
symlink, a symlink loop) is never opened: opening a FIFO blocks and reading /dev/zero never
ends. Each file left out for what it is rather than by the globs is reported as skipped, with
its reason, and recorded in the run's ``.guildlite/sourcecode.json``.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ._errors import GuildfileError
from ._guildfile import SourceSpec
from ._requires_schema import RESERVED
from ._tree import walk

# Never copied, whatever the globs say: VCS data, caches, virtualenvs, run stores.
_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
              ".tox", ".nox", ".venv", "venv", "env", "node_modules", ".ipynb_checkpoints", ".guildlite",
              "build", "dist", ".eggs"}
_SKIP_FILES = ("*.pyc", "*.pyo", "*.egg-info", ".DS_Store")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Skipped:
    """A project file that was not copied, and why (one of the ``reason`` words below)."""

    path: str
    # fifo, socket, char-device, block-device, special-file, broken-symlink, symlink-loop,
    # symlink-outside-project, symlink-to-directory, unreadable, too-large, vanished,
    # required (a requirement is put at its place in the run dir instead),
    # guildlite-own (named like run.json, output.log, scalars.jsonl at the top: the run's own)
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Selection:
    """The files to copy (relative paths, sorted) and those left out for what they are."""

    files: list[str]
    skipped: list[Skipped]


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if fnmatch.fnmatchcase(rel, pat) or ("/" not in pat and fnmatch.fnmatchcase(name, pat)):
            return True
        # 'dir/**' and 'dir/' select everything under dir
        base = pat.rstrip("/").removesuffix("/**")
        if base != pat and (rel == base or rel.startswith(base + "/")):
            return True
    return False


def _kind(mode: int) -> str | None:
    """None for a regular file, else the skip reason for what ``mode`` is."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "char-device"
    if stat.S_ISBLK(mode):
        return "block-device"
    return "special-file"


def _check(full: Path, project: Path, max_size: int) -> str | None:
    """Why the file at ``full`` must not be copied, from its metadata only (never opened)."""
    try:
        st = full.lstat()
    except FileNotFoundError:
        return "vanished"
    except OSError:
        return "unreadable"
    link = stat.S_ISLNK(st.st_mode)
    if link:  # followed only to a regular file inside the project
        try:
            st = full.stat()
        except OSError as e:
            return "symlink-loop" if e.errno == errno.ELOOP else "broken-symlink"
    kind = _kind(st.st_mode)
    if kind is not None:
        return kind
    if link and not Path(os.path.realpath(full)).is_relative_to(project):
        return "symlink-outside-project"
    if not os.access(full, os.R_OK, effective_ids=os.access in os.supports_effective_ids):
        return "unreadable"
    if st.st_size > max_size:
        return "too-large"
    return None


def select_files(project: Path, spec: SourceSpec, skip: tuple[Path, ...] = ()) -> Selection:
    """The files to copy and the ones skipped for what they are. ``skip`` holds dirs to leave out
    (the runs dir). Files left out by the globs or the built-in skip lists are not reported."""
    project = project.resolve()
    skip_real = {p.resolve() for p in skip}
    out: list[str] = []
    skipped: list[Skipped] = []

    def ignored(name: str, rel: str) -> bool:
        return name in _SKIP_DIRS or bool(spec.exclude and _matches(rel, spec.exclude))

    def left_out(full: Path) -> str | None:
        keep = full.resolve() not in skip_real and not os.path.exists(full / "pyvenv.cfg") \
            and not full.name.endswith(".egg-info")
        return None if keep else ""

    for full, rel in walk(project, lambda rel, why: skipped.append(Skipped(rel, why)), ignore=ignored,
                          leave_out=left_out):
        name = full.name
        if any(fnmatch.fnmatchcase(name, p) for p in _SKIP_FILES):
            continue
        if spec.include and not _matches(rel, spec.include):
            continue
        if spec.exclude and _matches(rel, spec.exclude):
            continue
        # A project file named like one of guildlite's own would become the run's record, log or
        # scalars (or fail the staging): never copied, always said.
        why = "guildlite-own" if "/" not in rel and name.casefold() in RESERVED else \
            _check(full, project, spec.max_size)
        if why is None:
            out.append(rel)
        else:
            skipped.append(Skipped(rel, why))
    return Selection(sorted(out), sorted(skipped, key=lambda s: s.path))


def copy_files(project: Path, files: list[str], dest: Path) -> list[Skipped]:
    """Copy ``files`` (relative to ``project``) into ``dest``, keeping modes and times; return the
    files that turned out not to be regular files (or readable) when opened, which are not copied.

    Errors writing into ``dest`` (a full disk) are raised.
    """
    made: set[Path] = set()
    skipped = []
    for rel in files:
        why = _copy_one(project / rel, dest / rel, made)
        if why is not None:
            skipped.append(Skipped(rel, why))
    return skipped


def _copy_one(src: Path, target: Path, made: set[Path]) -> str | None:
    # Opened non-blocking and checked on the open descriptor: a file swapped for a FIFO or a
    # device after it was selected is neither waited on nor read.
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "vanished"
    except OSError as e:
        return "symlink-loop" if e.errno == errno.ELOOP else "unreadable"
    try:
        st = os.fstat(fd)
        kind = _kind(st.st_mode)
        if kind is not None:
            return kind
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, stat.S_IMODE(st.st_mode) | 0o200)
        try:
            while True:
                try:
                    chunk = os.read(fd, _CHUNK)
                except OSError:
                    return _unlink_partial(target, "unreadable")
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return None


def _unlink_partial(target: Path, why: str) -> str:
    target.unlink(missing_ok=True)
    return why


def include_report(project: Path, spec: SourceSpec, selection: Selection, keep: Callable[[str], bool]) -> list[str]:
    """What to tell the user before launch about the files their ``include`` patterns matched and
    guildlite does not copy (one line each; ``keep(path)`` False: a requirement provides it).

    A file named in ``include`` literally (not by a glob) and over ``max-size`` is a GuildfileError:
    the user asked for that very file, and a run without it would fail later, less clearly."""
    if not spec.include:
        return []  # the default selection leaves big files out by design (sourcecode.json lists them)
    out = []
    for s in selection.skipped:
        if not keep(s.path) or not _matches(s.path, spec.include):
            continue
        if s.reason == "too-large" and s.path in spec.include:
            size = (project / s.path).stat().st_size
            raise GuildfileError(
                f"sourcecode include {s.path!r} is {size / 1e6:.1f} MB, over sourcecode max-size"
                f" ({spec.max_size / 1e6:.1f} MB): declare it under the op's requires (- file: {s.path})"
                " to link it into the run dir, or raise sourcecode max-size")
        why = {"too-large": f"over max-size {spec.max_size / 1e6:.1f} MB: use requires (- file: ...) for data"}
        out.append(f"{s.path} ({why.get(s.reason, s.reason)})")
    for pat in spec.include:  # `include: [data]` is a glob for a file named data, not the folder's files
        if (project / pat).is_dir() and not any(_matches(f, (pat,)) for f in selection.files):
            out.append(f"{pat!r} is a directory and matches no file (write '{pat.rstrip('/')}/**' for its files,"
                       " or declare it under requires)")
    return out
