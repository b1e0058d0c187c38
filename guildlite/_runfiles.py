"""Reading a file of a run dir (or a project dir) that someone else may have made.

A run dir from a shared runs dir or an archive is untrusted input: a file in it may be a symlink to
``/etc/shadow`` or ``/dev/zero``, a FIFO that blocks its reader forever, a symlink loop, or a
sparse file of terabytes, and a path taken from a record (the source manifest) may hold ``..``.
Every reader of such a file goes through here, with one rule:

- the path is relative, without ``..`` components or NUL characters;
- symlinks are followed only while they stay inside the dir: the file's fully resolved path
  must lie under the dir's own resolved path (a staged source tree may hold a symlink to a file
  beside it; one that leads out is refused, wherever it points);
- only a regular file is opened, and never in a way that can block: ``O_NONBLOCK`` (a FIFO opens
  at once and is then refused by ``fstat``), ``O_NOFOLLOW`` on the resolved path (a symlink
  planted after the check is refused, not followed), and on Linux ``/proc/self/fd`` confirms
  where the open landed;
- reads are bounded by a byte count given by the caller, and say when they were cut.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from ._errors import GuildliteError

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class RunFileError(GuildliteError):
    """A file of a run dir that may not be read: ``reason`` says why, ``missing`` when there is none."""

    exit_code = 2

    def __init__(self, rel: str, reason: str, missing: bool = False) -> None:
        super().__init__(f"{rel!r}: {reason}")
        self.rel = rel
        self.reason = reason
        self.missing = missing


def check_rel(rel: str, where: str = "run directory") -> None:
    """RunFileError unless ``rel`` is a relative path that names something below its dir."""
    if "\0" in rel:
        raise RunFileError(rel, "not a valid path (a NUL character)")
    if rel.startswith("/") or ".." in rel.split("/"):
        raise RunFileError(rel, f"outside the {where}")
    if rel.strip("/") in ("", "."):
        raise RunFileError(rel, "not a file", missing=True)


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_file(base: Path | str, rel: str, where: str = "run directory") -> BinaryIO:
    """``rel`` under ``base``, opened for binary reading; RunFileError unless it is a regular
    file inside ``base`` (see the module's rule). ``where`` names ``base`` in messages."""
    check_rel(rel, where)
    real_base = os.path.realpath(base)
    path = os.path.realpath(os.path.join(real_base, rel))  # a loop stays unresolved: open says ELOOP
    if not _inside(path, real_base):
        raise RunFileError(rel, f"outside the {where} (a symlink leads out)")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise RunFileError(rel, "no such file", missing=True) from None
        if e.errno == errno.ELOOP:
            raise RunFileError(rel, "a symlink loop") from None
        raise RunFileError(rel, f"cannot open: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RunFileError(rel, f"not a regular file ({_kind(mode)})", missing=stat.S_ISDIR(mode))
        landed = _fd_path(fd)
        if landed is not None and not _inside(landed, real_base):  # a dir on the way was swapped
            raise RunFileError(rel, f"outside the {where} (it changed while being opened)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _fd_path(fd: int) -> str | None:
    """Where an open file descriptor points (Linux); None where /proc cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def read_bytes(base: Path | str, rel: str, limit: int, where: str = "run directory") -> tuple[bytes, int]:
    """At most ``limit`` bytes of a regular file inside ``base`` and its size: the data was cut
    when the size is larger than the data."""
    with open_file(base, rel, where) as f:
        size = os.fstat(f.fileno()).st_size
        return f.read(limit), size


def sha256(base: Path | str, rel: str, where: str = "run directory") -> str:
    """The sha256 of a regular file inside ``base``, read in chunks (any size, bounded memory)."""
    import hashlib  # here: listings import this module, and only a requirement's digest needs it

    h = hashlib.sha256()
    with open_file(base, rel, where) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def listed_size(base_real: str, path: str) -> int:
    """The size ``ls`` shows for an entry under ``base_real`` (a resolved dir): a symlink's
    target's only when the target lies inside, else the link's own (nothing outside is looked at)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        if _inside(target, base_real):
            try:
                return os.stat(target).st_size
            except OSError:  # dangling, or a loop
                pass
    return st.st_size
