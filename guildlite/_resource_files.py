"""What a resolved file or directory puts into a run dir (``collect``), and putting it there
(``place``): links by default, copies for ``target-type: copy``.

A required directory is walked once (per invocation): its regular files are what it provides.
Symlinks inside it are followed only to a regular file inside that same directory; one that leads
out of it (or to a directory, a FIFO, nowhere) is left out and reported, because only a path
written in the guildfile may bring in something from outside (``file: /data/shared``). A directory
with nothing left out, no ``select`` and no ``rename`` is linked whole, which costs one symlink
however many files it holds; otherwise its files are linked (or copied) one by one.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from ._digests import cached_sha256, hash_limit
from ._errors import GuildliteError
from ._requires_schema import Requirement, target_problem
from ._tree import walk


@dataclass(frozen=True)
class Entry:
    """One path a requirement puts into the run dir: ``target`` (relative to it) from ``path``."""

    target: str
    path: Path
    copy: bool = False


@dataclass(frozen=True)
class Collected:
    """A source's entries, what it is (size, files, mtime, sha256) and what was left out."""

    entries: tuple[Entry, ...]
    record: dict[str, Any]
    skipped: tuple[dict[str, str], ...]


class RequirementError(GuildliteError):
    """A requirement cannot be resolved: missing, unreadable, a bad download, a hostile archive."""

    exit_code = 1


def collect(req: Requirement, root: Path, base: str, where: str, only: Callable[[str], bool] | None = None,
            runs_dir: Path | None = None) -> Collected:
    """The entries of ``root`` (a file or a dir) placed at ``base`` in the run dir, with
    ``req``'s select and rename applied to the paths relative to ``root``; ``only``: the paths of
    a dir that count (an upstream run's outputs, ``_upstream.is_output``). ``runs_dir``, when it is
    inside ``root`` (``- file: .``), is left out and reported: copied, each run would copy every
    earlier run into itself, and hashed, every run would change the digest of the next."""
    try:
        st = root.stat()
    except OSError as e:
        raise RequirementError(f"{where}: {req.label}: {root}: {e.strerror or e}", exit_code=2) from None
    if stat.S_ISREG(st.st_mode):
        parent, name = PurePosixPath(base).parent, _renamed(req, PurePosixPath(base).name, where)
        target = name if str(parent) == "." else f"{parent}/{name}"
        _check_target(req, target, where)
        digest = cached_sha256(root) if st.st_size <= hash_limit() else None
        one = {"size": st.st_size, "mtime": _iso(st.st_mtime), "sha256": digest}
        return Collected((Entry(target, root, req.target_type == "copy"),), one, ())
    if not stat.S_ISDIR(st.st_mode):
        raise RequirementError(f"{where}: {req.label}: {root} is neither a file nor a directory", exit_code=2)
    if runs_dir is not None and os.path.realpath(root) == os.path.realpath(runs_dir):
        raise RequirementError(f"{where}: {req.label}: {root} is the runs dir; require a run's files with"
                               " '- operation: OP' (or one run's dir: runs/RUN_ID)", exit_code=2)
    files, skipped = _walk(root, runs_dir)
    if only is not None:
        files, skipped = [f for f in files if only(f[0])], [s for s in skipped if only(s["path"])]
    rx = [re.compile(p) for p in req.select]
    chosen = [f for f in files if not rx or any(r.match(f[0]) for r in rx)]
    whole = bool(base) and not req.select and not req.rename and not skipped and req.target_type == "link" \
        and only is None
    if whole:
        _check_target(req, base, where)
        entries: tuple[Entry, ...] = (Entry(base, root),)
    else:
        made = []
        for rel, _st in chosen:
            target = f"{base}/{_renamed(req, rel, where)}" if base else _renamed(req, rel, where)
            _check_target(req, target, where)
            made.append(Entry(target, root / rel, req.target_type == "copy"))
        entries = tuple(made)
    size = sum(s.st_size for _rel, s in chosen)
    rec: dict[str, Any] = {"size": size, "files": len(chosen),
                           "mtime": _iso(max((s.st_mtime for _rel, s in chosen), default=st.st_mtime)), "sha256": None}
    if size <= hash_limit():  # a digest of the names and contents: the same for the same data
        import hashlib

        h = hashlib.sha256()
        for rel, _st in chosen:
            h.update(f"{rel}\0{cached_sha256(root / rel)}\n".encode())
        rec["sha256"] = h.hexdigest()
    return Collected(entries, rec, tuple(skipped))


def _walk(root: Path, runs_dir: Path | None = None) -> tuple[list[tuple[str, os.stat_result]], list[dict[str, str]]]:
    """The regular files under ``root`` (relative paths, sorted, with their stat) and the entries
    left out (``runs_dir`` among them), each with why."""
    real_root = os.path.realpath(root)
    real_runs = os.path.realpath(runs_dir) if runs_dir is not None else None
    files: list[tuple[str, os.stat_result]] = []
    skipped: list[dict[str, str]] = []

    def runs_dir_in(full: Path) -> str | None:
        return "runs-dir" if real_runs is not None and os.path.realpath(full) == real_runs else None

    for full, rel in walk(root, lambda rel, why: skipped.append({"path": rel, "reason": why}), leave_out=runs_dir_in):
        why = None
        try:
            st = os.stat(full)
        except OSError:
            why = "broken-symlink"
        else:
            if not stat.S_ISREG(st.st_mode):
                why = "not-a-regular-file"
            elif os.path.islink(full) and not Path(os.path.realpath(full)).is_relative_to(real_root):
                why = "symlink-outside-source"
            elif not os.access(full, os.R_OK):
                why = "unreadable"
        if why:
            skipped.append({"path": rel, "reason": why})
        else:
            files.append((rel, st))
    return sorted(files, key=lambda f: f[0]), sorted(skipped, key=lambda s: s["path"])


def _renamed(req: Requirement, rel: str, where: str) -> str:
    out = rel
    for pattern, repl in req.rename:
        try:
            out = re.sub(pattern, repl, out, count=1)  # once: '.*' also matches the empty end
        except (re.error, IndexError) as e:
            raise RequirementError(f"{where}: {req.label}: rename {pattern!r} -> {repl!r}: {e}", exit_code=2) from None
    if out != rel and any(p in ("", ".") for p in out.split("/")):  # 'data//' would be the folder itself
        raise RequirementError(f"{where}: {req.label}: rename makes {rel!r} {out!r}, which has an empty or '.'"
                               " part; rename it to a file name", exit_code=2)
    return out


def _check_target(req: Requirement, target: str, where: str) -> None:
    why = target_problem(target)
    if why is not None:
        raise RequirementError(f"{where}: {req.label}: its place in the run dir {target!r} {why}", exit_code=2)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def place(run_dir: Path, entry: Entry) -> None:
    """Put ``entry`` into ``run_dir``: a symlink to its absolute path, or a copy of the file.
    Folders on the way are made; one that is a symlink (another requirement's linked directory)
    or a file is refused: nothing is ever written outside the run dir or into a linked source."""
    node = run_dir
    parts = PurePosixPath(entry.target).parts
    for part in parts[:-1]:
        node = node / part
        if node.is_symlink() or (node.exists() and not node.is_dir()):
            raise RequirementError(f"cannot put {entry.target!r} into the run dir: {node.relative_to(run_dir)}"
                                   " is a link or a file there (another requirement's target?)", exit_code=2)
        node.mkdir(exist_ok=True)
    target = node / parts[-1]
    if os.path.lexists(target):
        raise RequirementError(f"cannot put {entry.target!r} into the run dir: something is already there "
                               "(another requirement, or a file guildlite wrote)", exit_code=2)
    if not entry.copy:
        os.symlink(entry.path.absolute(), target)
        return
    # Opened without blocking, checked on the descriptor: a source swapped for a FIFO is not read.
    fd = os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RequirementError(f"{entry.path} is no longer a regular file", exit_code=1)
        with os.fdopen(os.dup(fd), "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.chmod(target, stat.S_IMODE(st.st_mode) & 0o777)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)
