"""Naming the disk behind a path, for the errors of a full disk (or an exceeded quota).

A full disk is a property of a filesystem, not of the file being written when it filled up:
the messages name the filesystem (its mount point, device and type) and how much is free.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

FULL = (errno.ENOSPC, errno.EDQUOT)


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
        point, source, fstype = mount
        parts.append(f"filesystem {source} ({fstype}) mounted at {point}")
    try:
        st = os.statvfs(where)
        parts.append(f"{_size(st.f_bavail * st.f_frsize)} free of {_size(st.f_blocks * st.f_frsize)}")
    except OSError:
        pass
    return ", ".join(parts) or f"the filesystem of {where}"


def full_message(e: OSError, what: str, path: Path) -> str:
    """``no space left on device: <what> (<the filesystem of path>)``."""
    return f"{full_reason(e)}: {what} ({describe(path)})"


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _mount_of(path: Path) -> tuple[str, str, str] | None:
    """(mount point, source, fs type) of the deepest mount holding ``path`` (Linux mountinfo)."""
    real = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # later mounts shadow earlier ones
            best = (point, _unescape(tail[1]), tail[0])
    return best


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...)
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
