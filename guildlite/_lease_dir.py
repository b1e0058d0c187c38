"""The machine-wide lease directory: where every guildlite process on a host meets to share GPUs.

``GUILDLITE_GPU_LEASE_DIR`` (default ``/tmp/guildlite-gpu-leases``) holds a lease file per token
ever leased, a ticket file per waiter, and ``.lock``, the short lock around every check-and-take.
It is shared by every user of the machine, so it is created mode 1777 (sticky: a user can remove
only their own files) whatever the umask, and its files mode 0666.

Anyone can write into it, so nothing in it is trusted. The directory itself is opened once with
``O_NOFOLLOW`` and every file is opened relative to that fd, never by a path: a symlink planted as
the directory or as a file in it cannot send a write elsewhere, and a FIFO or device planted there
is refused without blocking. A directory that others could write without the sticky bit (anyone
could swap our files) or that is not a directory is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ._errors import GuildliteError

DIR_ENV = "GUILDLITE_GPU_LEASE_DIR"
DEFAULT_DIR = "/tmp/guildlite-gpu-leases"
LOCK_NAME = ".lock"
_FILE_MODE = 0o666
_DIR_MODE = 0o1777
_MAX_RECORD = 64 * 1024
_LOCK_PATIENCE = 30.0  # the take lock is held for microseconds; this long means someone sits on it


class LeaseError(GuildliteError):
    """The lease directory or a file in it cannot be used (planted, unreadable, not ours to share)."""

    exit_code = 2


@dataclass(frozen=True)
class Seen:
    """A lease or ticket file at one look (``LeaseDir.look``)."""

    locked: bool  # someone holds a flock on it: a live lease or ticket
    uid: int  # who made it
    record: dict[str, Any] | None = None  # what it says, when read and locked (None: not a record)


@dataclass(frozen=True)
class LeaseDir:
    """The lease directory, pinned by an fd opened without following symlinks."""

    path: Path
    fd: int

    def caveat(self) -> str:
        """A warning about who else controls the directory ('' when only root and we do)."""
        owner = os.fstat(self.fd).st_uid
        if owner in (os.geteuid(), 0):
            return ""
        import pwd

        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        return (f"the lease directory belongs to user {name}, who can remove anyone's lease files in it; "
                "on a shared machine have root create it (mode 1777)")

    def names(self) -> list[str]:
        """The names in the directory (os.listdir of a dup: listing consumes the fd's position)."""
        return os.listdir(self.fd)

    def open(self, name: str, *, create: bool = True, write: bool | None = None) -> int:
        """An fd (close-on-exec; read-write if ``write``, by default if ``create``) on the regular
        file ``name``, created mode 0666 if ``create`` and missing. LeaseError when ``name`` is not
        a regular file or cannot be opened; FileNotFoundError when it is missing and not ``create``.
        (A flock needs no write access: readers and the take lock open files read-only.)"""
        writable = create if write is None else write
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        while True:
            try:
                # Not O_CREAT first: with fs.protected_regular, O_CREAT on another user's file in a
                # sticky world-writable directory is refused even though the file is 0666.
                fd = os.open(name, flags, dir_fd=self.fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, _FILE_MODE, dir_fd=self.fd)
                except FileExistsError:
                    continue  # another process made it in between: open theirs
                except OSError as e:  # (ENOENT: the directory itself was removed)
                    raise self._refusal(name, e) from None
                os.fchmod(fd, _FILE_MODE)  # the umask narrowed it; others must open it too
            except OSError as e:
                raise self._refusal(name, e) from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                os.close(fd)
                # A hard link is another file's name: writing a record into it would write there.
                what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "a hard link to another file"
                raise LeaseError(f"{self.path / name} is {what} (guildlite never makes one; remove it)")
            return fd

    def look(self, name: str, *, read: bool = False) -> Seen | None:
        """The file ``name`` as it stands: whether someone holds a flock on it, its owner and (if
        ``read`` and held) its record; None when it is missing or unusable (planted: never a
        live lease or ticket). Its fd is closed before this returns."""
        try:
            fd = self.open(name, create=False)
        except (FileNotFoundError, LeaseError):
            return None
        try:
            locked = is_locked(fd)
            return Seen(locked, os.fstat(fd).st_uid, read_record(fd) if read and locked else None)
        finally:
            os.close(fd)

    def _refusal(self, name: str, e: OSError) -> LeaseError:
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            what = f"owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)}"
        except OSError:
            what = "gone"
        hint = "a symlink: planted, remove it" if e.errno == errno.ELOOP else e.strerror
        return LeaseError(f"cannot open {self.path / name} ({what}): {hint}")

    def unlink(self, name: str) -> None:
        """Remove ``name`` if we may (the sticky bit lets us remove only our own files)."""
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=self.fd)

    def rename(self, old: str, new: str) -> None:
        os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    @contextlib.contextmanager
    def locked(self, shared: bool = False) -> Iterator[None]:
        """Hold the directory's take lock: exclusive for a check-and-take, shared for a reader that
        must see no take half done. Polled (not a blocking flock) so that a process sitting on it
        is reported instead of hanging everyone."""
        fd = self.open(LOCK_NAME, write=False)
        try:
            op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            deadline, pause = time.monotonic() + _LOCK_PATIENCE, 0.0002
            while True:
                try:
                    fcntl.flock(fd, op)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LeaseError(f"{self.path / LOCK_NAME} has been locked for {_LOCK_PATIENCE:.0f} s "
                                         "(a process holds it and does not let go)") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.005)
                except OSError as e:  # a filesystem without flock (some NFS): no lease can work here
                    raise LeaseError(f"flock fails in {self.path}: {e.strerror} (set {DIR_ENV} to a directory "
                                     "on a local filesystem)") from None
            yield
        finally:
            os.close(fd)


def is_locked(fd: int) -> bool:
    """Whether another open file holds a flock on ``fd``'s file (probed with a shared lock that is
    let go at once; call under the take lock so that no taker sees the probe as a holder)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def write_record(fd: int, record: dict[str, Any]) -> None:
    """Put ``record`` in the file ``fd`` (in place: in a sticky directory another user's file cannot
    be replaced by a rename). Written under the take lock, which readers hold shared: none sees it
    half written."""
    raw = (json.dumps(record, sort_keys=True) + "\n").encode()
    os.pwrite(fd, raw, 0)
    os.ftruncate(fd, len(raw))


def read_record(fd: int) -> dict[str, Any] | None:
    """The record in file ``fd``; None when it is empty or not one (planted, cut short)."""
    try:
        raw = os.pread(fd, _MAX_RECORD + 1, 0)
        rec = json.loads(raw) if 0 < len(raw) <= _MAX_RECORD else None
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


_opened: dict[str, LeaseDir] = {}


def lease_dir() -> LeaseDir:
    """The lease directory of this machine (``GUILDLITE_GPU_LEASE_DIR``), created mode 1777 if
    missing, checked and pinned by an fd (reopened if the path now names another directory)."""
    given = os.path.expanduser(os.environ.get(DIR_ENV) or DEFAULT_DIR)
    if not os.path.isabs(given):  # relative to each invocation's cwd, it would be a different dir for each
        raise LeaseError(f"{DIR_ENV}={given!r}: must be an absolute path (every guildlite on the machine "
                         "must find the same directory)")
    path = os.path.normpath(given)
    known = _opened.get(path)
    if known is not None:
        try:
            now, pinned = os.stat(path, follow_symlinks=False), os.fstat(known.fd)
            if (now.st_dev, now.st_ino) == (pinned.st_dev, pinned.st_ino):
                return known
        except OSError:
            pass
        # The path names another directory now (removed and made again). The old fd stays open:
        # tickets and leases made there still use it, and a closed number could be reused.
        del _opened[path]
    _opened[path] = _open_dir(Path(path))
    return _opened[path]


def _open_dir(path: Path) -> LeaseDir:
    made = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)  # opened up below, once it is pinned and known to be ours
        made = True
    except FileExistsError:
        pass
    except OSError as e:
        raise LeaseError(f"cannot make the GPU lease directory {path}: {e.strerror} (set {DIR_ENV})") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        kind = "a symlink" if os.path.islink(path) else "not a directory" if e.errno == errno.ENOTDIR else e.strerror
        raise LeaseError(f"the GPU lease directory {path} is {kind}: refused (remove it, or set {DIR_ENV})") from None
    fstype = _network_fstype(path)
    if fstype:
        os.close(fd)
        raise LeaseError(f"the GPU lease directory {path} is on a {fstype} filesystem: refused (a lease is a "
                         f"flock, which there may be emulated with locks that one close drops; set {DIR_ENV} to "
                         "a directory on a local filesystem, such as /tmp)")
    st = os.fstat(fd)
    if made and st.st_uid == os.geteuid():
        os.fchmod(fd, _DIR_MODE)
        st = os.fstat(fd)
    problem = _unsafe(st)
    if problem:
        os.close(fd)
        raise LeaseError(f"the GPU lease directory {path} {problem}: refused (set {DIR_ENV} to a directory "
                         "of mode 1777, or remove it)")
    return LeaseDir(path, fd)


# Filesystems shared between hosts: their flock may be a POSIX lock underneath (NFS), which a
# process drops on any close of the file, or reach other hosts, whose GPUs are not ours.
_NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "ocfs2", "gfs2", "9p", "afs",
               "beegfs", "glusterfs", "pvfs2", "orangefs", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph"}


def _network_fstype(path: Path) -> str:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            return network_fstype(f.read(), os.path.realpath(path))
    except OSError:
        return ""


def network_fstype(mountinfo: str, path: str) -> str:
    """The type of the network filesystem holding absolute ``path``, from ``/proc/self/mountinfo``
    text ('' for a local one, or an unknown one)."""
    from ._disk import mount_entry

    mount = mount_entry(mountinfo, path)
    return mount.fstype if mount is not None and mount.fstype in _NETWORK_FS else ""


def _unsafe(st: os.stat_result) -> str:
    """Why a directory cannot hold leases safely ('' when it can)."""
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        return f"is writable by others without the sticky bit (mode {stat.filemode(st.st_mode)})"
    if st.st_uid not in (os.geteuid(), 0) and not sticky:
        return f"belongs to uid {st.st_uid} and is not sticky (mode {stat.filemode(st.st_mode)})"
    return ""
