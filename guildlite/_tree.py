"""Walking a directory tree that someone else made (a project's source, a required directory):
one walk wherever guildlite copies or links the files of one.

A symlink to a directory is never followed: it could lead anywhere, or back up into the tree. A
directory that cannot be listed, or listed but not entered (read without search permission), is
passed over. Both are reported (``symlink-to-directory``,
``unreadable``), so that what was left out for what it is can be said; what each file is, the
caller judges (``_sourcecode``, ``_resource_files``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator


def walk(root: Path, report: Callable[[str, str], None], *, ignore: Callable[[str, str], bool] | None = None,
         leave_out: Callable[[Path], str | None] | None = None) -> Iterator[tuple[Path, str]]:
    """(path, path relative to ``root`` with ``/``) of each entry below ``root`` that is not a
    directory, directories in name order. ``report(rel, reason)`` hears of each directory left
    out for what it is. ``ignore(name, rel)``: a directory left out silently, before anything else
    is asked of it; ``leave_out(path)``: the reason to leave out a directory that is no symlink
    ("": silently; None: walk it)."""

    def unreadable(e: OSError) -> None:
        if e.filename:
            report(Path(e.filename).relative_to(root).as_posix(), "unreadable")

    for d, dirs, names in os.walk(root, onerror=unreadable):
        here = Path(d)
        if (dirs or names) and not _enterable(here, (dirs or names)[0]):
            report(here.relative_to(root).as_posix(), "unreadable")
            dirs[:] = []
            continue
        keep = []
        for name in dirs:
            full = here / name
            rel = full.relative_to(root).as_posix()
            if ignore is not None and ignore(name, rel):
                continue
            if full.is_symlink():
                report(rel, "symlink-to-directory")
                continue
            why = None if leave_out is None else leave_out(full)
            if why is None:
                keep.append(name)
            elif why:
                report(rel, why)
        dirs[:] = sorted(keep)
        for name in names:
            full = here / name
            yield full, full.relative_to(root).as_posix()


def _enterable(d: Path, name: str) -> bool:
    """Whether the entries of ``d`` (which could be listed) can be looked at: a directory with read
    but no search permission lists its names, and every lstat of one fails."""
    try:
        os.lstat(d / name)
    except PermissionError:
        return False
    except OSError:
        pass  # vanished since it was listed: the caller's own checks say so
    return True
