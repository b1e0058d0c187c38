"""Naming the disk behind a path, for the errors of a full disk (or an exceeded quota).

A full disk is a property of a filesystem, not of the file being written when it filled up:
the messages name the filesystem (its mount point, device and type) and how much is free.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NamedTuple

from ._errors import GuildliteError

FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_MARGIN = 256 << 20  # left free by what guildlite writes in bulk: a full disk breaks every run's record writes


def is_full(e: OSError) -> bool:
    """Whether ``e`` says a disk is full or a quota is exceeded."""
    return e.errno in FULL


def full_reason(e: OSError) -> str:
    return "disk quota exceeded" if e.errno == errno.EDQUOT else "no space left on device"


def describe(path: Path) -> str:
    """``filesystem tmpfs (tmpfs) mounted at /mnt/x, 0 B free of 2.0 MB``, as far as it can be found."""
    where = _existing(Path(os.path.abspath(path)))
    parts = []
    mount = _mount_of(where)
    if mount is not None:
        point, source, fstype, _ = mount
        parts.append(f"filesystem {source} ({fstype}) mounted at {point}")
    try:
        st = os.statvfs(where)
        parts.append(f"{size_text(st.f_bavail * st.f_frsize)} free of {size_text(st.f_blocks * st.f_frsize)}")
    except OSError:
        pass
    return ", ".join(parts) or f"the filesystem of {where}"


def full_message(e: OSError, what: str, path: Path) -> str:
    """``no space left on device: <what> (<the filesystem of path>)``."""
    return f"{full_reason(e)}: {what} ({describe(path)})"


def check_room(folder: Path, need: int, what: str, advice: str,
               error: type[GuildliteError] = GuildliteError) -> None:
    """``error`` (exit 2) naming ``what`` unless ``need`` more bytes fit on the disk of ``folder``
    (made or not yet) with ``DISK_MARGIN`` left free; ``advice`` ends the message."""
    import shutil

    room = shutil.disk_usage(_existing(Path(os.path.abspath(folder)))).free - DISK_MARGIN
    if need > room:
        raise error(f"{what} would not fit: {size_text(max(room, 0))} free (less {size_text(DISK_MARGIN)} kept) "
                    f"on the disk of {folder}; {advice}", exit_code=2)


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


class Mount(NamedTuple):
    """One line of ``/proc/self/mountinfo``: where, what and how a filesystem is mounted."""

    point: str
    source: str
    fstype: str
    options: list[str]  # the mount's and the superblock's together


def mount_entry(mountinfo: str, path: str) -> Mount | None:
    """The deepest mount holding absolute ``path``, from ``/proc/self/mountinfo`` text."""
    best: Mount | None = None
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        # The last of equally long mount points is the one on top (mounted later).
        if inside and (best is None or len(point) >= len(best.point)):
            opts = fields[5].split(",") + (tail[2].split(",") if len(tail) > 2 else [])
            best = Mount(point, _unescape(tail[1]), tail[0], opts)
    return best


def _mount_of(path: Path) -> Mount | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return mount_entry(f.read(), os.path.realpath(path))
    except OSError:
        return None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, ch)
    return field


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
