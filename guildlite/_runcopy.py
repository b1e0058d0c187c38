"""What of a run dir travels with it (``runs export``, ``runs import``), and copying it safely.

One rule on both sides, so an export always imports:
- regular files and directories travel; a FIFO, socket or device never does (refused on import);
- a symlink travels only when it stays in its run dir *whatever the other links do*: a relative
  target without ``..`` parts (``last.pt -> ckpt/10.pt``). Any other link (a required dataset linked
  from outside, an upstream run's file, ``x -> ../y``) is left out of an export and refused on import;
- of ``.guildlite/``, only what describes the run (``KEPT_META``): locks, the space reserve, the
  owner and live-capture state are this machine's, and the launch file names a guildfile path and
  plugins to import, which a run from elsewhere must not choose (``--restart`` takes them here).

Copying never follows a link, never opens anything but a regular file (``O_NOFOLLOW``,
``O_NONBLOCK``, checked with ``fstat``) and creates every file new (``O_EXCL``).
"""

from __future__ import annotations

import errno
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ._errors import GuildliteError
from ._files import META_DIR

KEPT_META = frozenset({"env.json", "sourcecode.json", "requires.json", "supervisor.log"})
MAX_ENTRIES = 1_000_000  # per run: more is not a run dir guildlite made
MAX_DEPTH = 64
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


@dataclass(frozen=True)
class Entry:
    """One thing in a run dir: ``rel`` its path (``/``-separated), ``kind`` dir, file, link or
    other (a FIFO, socket, device), ``target`` a link's target."""

    rel: str
    kind: str
    target: str = ""


def link_problem(target: str) -> str | None:
    """Why a symlink to ``target`` may not travel with its run (see the module's rule), or None."""
    if not target or "\0" in target or "\\" in target:
        return f"is a link to {target!r}"
    if target.startswith("/"):
        return f"is a link out of its run dir (to {target!r})"
    if ".." in target.split("/"):
        return f"is a link with '..' in its target ({target!r}): it may lead out of its run dir"
    return None


def name_problem(rel: str) -> str | None:
    """Why ``rel`` cannot name something inside a run dir, or None."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\0" in rel or "\\" in rel:
        return "has an absolute or unusable path"
    if ".." in parts or "." in parts or "" in parts:
        return "has '..', '.' or an empty part in its path"
    if any(len(p.encode()) > 255 for p in parts):
        return "has a name over 255 bytes"
    return None


def travels(rel: str) -> bool:
    """Whether the path ``rel`` of a run dir travels at all (``.guildlite/``: only KEPT_META)."""
    top, _, rest = rel.partition("/")
    return top != META_DIR or not rest or rest in KEPT_META


def entries(run_dir: Path) -> Iterator[Entry]:
    """Everything below ``run_dir`` that travels, parents before children, no link followed."""
    stack: list[tuple[str, int]] = [("", 0)]
    seen = 0
    while stack:
        rel, depth = stack.pop()
        try:
            found = sorted(os.scandir(run_dir / rel if rel else run_dir), key=lambda e: e.name)
        except OSError as err:
            raise GuildliteError(f"{run_dir / rel}: cannot list ({err.strerror})") from None
        for e in found:
            seen += 1
            if seen > MAX_ENTRIES:
                raise GuildliteError(f"{run_dir}: more than {MAX_ENTRIES} entries")
            r = f"{rel}/{e.name}" if rel else e.name
            if not travels(r):
                continue
            mode = e.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                yield Entry(r, "link", os.readlink(e.path))
            elif stat.S_ISDIR(mode):
                if depth + 1 > MAX_DEPTH:
                    raise GuildliteError(f"{run_dir}: {r!r} is more than {MAX_DEPTH} levels deep")
                yield Entry(r, "dir")
                stack.append((r, depth + 1))
            elif stat.S_ISREG(mode):
                yield Entry(r, "file")
            else:
                yield Entry(r, "other")


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (no link followed, never blocking on a
    FIFO); GuildliteError otherwise."""
    try:
        fd = os.open(path, _OPEN)
    except OSError as e:
        raise GuildliteError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GuildliteError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def copy_into(src: BinaryIO, size: int, mode: int, target: Path, mtime_ns: int | None = None) -> None:
    """Write ``size`` bytes of ``src`` into a new file ``target`` (never through a link), with the
    permission bits of ``mode`` (no set-id bits; owner read/write always) and ``mtime_ns`` if given."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        # A sparse file (fewer blocks than its size) keeps its holes: a 1 TB one that holds 1 MB
        # must not become 1 TB on the disk it is copied to.
        spans = _data_spans(src, size)
        if spans is None:
            left = size  # what fstat said: a file that grows while copied is cut there
            while left > 0:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)
        else:
            for start, end in spans:  # read with pread: the extents are found by moving the fd's offset
                out.seek(start)
                while start < end and (chunk := os.pread(src.fileno(), min(end - start, 1 << 20), start)):
                    out.write(chunk)
                    start += len(chunk)
            out.truncate(size)  # a hole at the end is a length, not data
        os.fchmod(out.fileno(), stat.S_IMODE(mode) & 0o755 | 0o600)
    if mtime_ns is not None:
        os.utime(target, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def allocated(st: os.stat_result) -> int:
    """The bytes a file holds on disk, at most its size (a sparse file's holes take none)."""
    return min(st.st_size, st.st_blocks * 512)


def _data_spans(src: BinaryIO, size: int) -> Iterator[tuple[int, int]] | None:
    """The ``(start, end)`` spans up to ``size`` that hold data, of ``src`` a sparse regular file
    (its data extents: ``SEEK_DATA``); None for any other (read it through from where it is)."""
    try:
        st = os.fstat(src.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # a stream, not a file
        return None
    if not stat.S_ISREG(st.st_mode) or allocated(st) >= size or not hasattr(os, "SEEK_DATA"):
        return None
    return _extents(src.fileno(), size)


def _extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return  # a hole to the end
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def copy_run(src: Path, dest: Path, on_left_out: list[str] | None = None) -> None:
    """Copy run dir ``src`` into ``dest`` (a new empty dir): what travels, by the module's rule.

    A link that may not travel is left out, its path and why appended to ``on_left_out``; when
    that is None (an import: the source is untrusted) it is refused, as is a FIFO, socket or
    device (GuildliteError, naming it)."""
    for e in entries(src):
        why = link_problem(e.target) if e.kind == "link" else "is a FIFO, socket or device" if e.kind == "other" \
            else None
        if why:
            if on_left_out is None:
                raise GuildliteError(f"{src.name}/{e.rel} {why}")
            on_left_out.append(f"{src.name}/{e.rel} {why}")
            continue
        target = dest / e.rel
        if e.kind == "dir":
            os.mkdir(target, 0o755)
        elif e.kind == "link":
            os.symlink(e.target, target)
        else:
            with open_regular(src / e.rel) as f:
                st = os.fstat(f.fileno())
                copy_into(f, st.st_size, st.st_mode, target, st.st_mtime_ns)
