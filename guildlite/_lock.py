"""Locks for the writers of a run's record, on local and shared filesystems.

Two modes, chosen per filesystem at first use (and cached for the process):

- ``flock``: the kernel's lock, released when its holder dies. Right for local filesystems, NFS
  whose ``flock`` goes to the server (``local_lock=none|posix``), Lustre mounted with ``flock``.
- ``lockfile``: a file created with ``O_CREAT|O_EXCL`` that names its owner (host, boot, pid,
  process start time) and whose mtime the owner refreshes as a heartbeat while it holds it. For
  filesystems where ``flock`` is local to one host (NFS ``local_lock=flock|all``/``nolock``,
  Lustre ``localflock``) or fails (Lustre without ``flock``), and for network filesystems whose
  lock semantics guildlite does not know. A lock file whose owner is gone is taken over: same host,
  the owner's pid with that start time no longer runs (or the host rebooted); another host, its
  heartbeat is older than ``STALE_SECONDS`` (hosts' clocks must agree within seconds, as NTP keeps
  them); and any lock file that a waiter sees unchanged for ``STALE_SECONDS`` (a live holder's
  heartbeat changes it every ``BEAT_SECONDS``: this one was planted, or its holder is stopped).

``GUILDLITE_LOCK_MODE=flock|lockfile`` forces a mode. Every process that writes the same runs dir
must use the same mode: on a cluster whose hosts mount it differently, force one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ._disk import mount_entry
from ._errors import GuildliteError
from ._process import pid_alive, process_start

MODE_ENV = "GUILDLITE_LOCK_MODE"
MODES = ("flock", "lockfile")
STALE_SECONDS = 30.0  # another host's lock file whose heartbeat is older than this is abandoned
BEAT_SECONDS = 5.0  # how often a holder refreshes its lock file
HELD_SUFFIX = ".held"  # lockfile mode: ``<lock>.held`` exists while someone holds ``<lock>``

# flock(2) errors that mean "no flock here" (Lustre without -o flock: ENOSYS; some NFS: ENOLCK).
NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
# Network filesystems whose flock reaches every host (cluster filesystems with a lock manager).
_CLUSTER_FLOCK = {"gpfs", "ceph", "ocfs2", "gfs2"}
# Network filesystems where flock may be local to a host or missing: lock files are the safe side.
_UNSURE = {"cifs", "smb3", "smbfs", "9p", "afs", "beegfs", "glusterfs", "pvfs2", "orangefs", "virtiofs", "vboxsf"}


@dataclass(frozen=True)
class LockMode:
    """How records under a directory are locked, and why (the mount's type and options)."""

    mode: str  # flock | lockfile
    why: str


_detected: dict[int, LockMode] = {}  # by st_dev: one answer per filesystem, for this process


def lock_mode(directory: Path) -> LockMode:
    """The lock mode for files in ``directory``: forced by ``GUILDLITE_LOCK_MODE``, else detected
    from its filesystem at first use. A forced value that is not a mode is a clear error."""
    forced = os.environ.get(MODE_ENV, "")
    if forced:
        if forced not in MODES:
            raise GuildliteError(f"{MODE_ENV}={forced!r}: must be 'flock' or 'lockfile' (or unset: detected "
                                 "from the runs dir's filesystem)", exit_code=2)
        return LockMode(forced, f"{MODE_ENV}={forced}")
    dev = os.stat(directory).st_dev
    if dev not in _detected:
        _detected[dev] = detect(directory)
    return _detected[dev]


def detect(directory: Path) -> LockMode:
    """The lock mode that the filesystem holding ``directory`` supports, from its mount."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            mount = mount_of(f.read(), os.path.realpath(directory))
    except OSError:
        mount = None
    if mount is None:
        return LockMode("flock", "mount unknown (no /proc/self/mountinfo)")
    return mode_for(*mount)


def mount_of(mountinfo: str, path: str) -> tuple[str, list[str]] | None:
    """``(fstype, options)`` of the mount that holds absolute ``path``, from ``/proc/self/mountinfo``
    text (see ``_disk.mount_entry``)."""
    mount = mount_entry(mountinfo, path)
    return None if mount is None else (mount.fstype, mount.options)


def mode_for(fstype: str, options: list[str]) -> LockMode:
    """The lock mode for a mount of type ``fstype`` with ``options`` (mountinfo's spelling)."""
    opts = set(options)
    values = dict(o.split("=", 1) for o in options if "=" in o)
    where = f"{fstype} mount"
    if fstype in ("nfs", "nfs4"):
        local = values.get("local_lock", "none")
        if "nolock" in opts or local in ("all", "flock"):
            return LockMode("lockfile", f"{where} with local_lock={local}: flock is local to each host")
        return LockMode("flock", f"{where} with local_lock={local}: flock goes to the server")
    if fstype == "lustre":
        if "flock" in opts:
            return LockMode("flock", f"{where} with flock: coherent across clients")
        why = "localflock: flock is local to each client" if "localflock" in opts else "without flock"
        return LockMode("lockfile", f"{where} {why}")
    if fstype in _CLUSTER_FLOCK:
        return LockMode("flock", f"{where}: cluster-wide flock")
    if fstype in _UNSURE or fstype.startswith("fuse"):
        return LockMode("lockfile", f"{where}: flock may not reach other hosts")
    return LockMode("flock", where)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device")):
        if test(mode):
            return name
    return "special file"


def not_a_lock_file(path: Path, mode: int) -> GuildliteError:
    """The error for a lock path that is not a regular file: guildlite never makes one, so it was
    planted (a run dir from elsewhere) and no holder will ever release it; refused at once (exit 2,
    like a bad record) instead of waiting for a takeover."""
    return GuildliteError(f"bad run record {path.parent.parent}: {path.relative_to(path.parent.parent)} is a "
                          f"{_kind(mode)}, not a lock file (guildlite never makes one; remove it)", exit_code=2)


def _check_regular(path: Path) -> None:
    """Raise ``not_a_lock_file`` if ``path`` exists and is not a regular file (never follows it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise not_a_lock_file(path, st.st_mode)


def _flock(path: Path) -> int | None:
    """An fd holding ``flock`` on ``path``; None when this filesystem has no flock (then this
    process uses lock files on it from now on), unless flock was forced."""
    try:
        # O_NOFOLLOW: a run dir from elsewhere must not make us create or open a file outside it.
        # O_NONBLOCK: a FIFO planted there opens at once (and is then refused below).
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV):
            _check_regular(path)
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_a_lock_file(path, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd
    except OSError as e:
        os.close(fd)
        if e.errno not in NO_FLOCK:
            raise
        if os.environ.get(MODE_ENV):
            raise GuildliteError(f"{MODE_ENV}=flock, but flock fails on {path.parent}: {e.strerror}; "
                                 "use lockfile", exit_code=2) from None
        _detected[os.stat(path.parent).st_dev] = LockMode("lockfile", f"flock failed: {e.strerror}")
        return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock named ``path`` for the ``with`` block, in the mode of its filesystem.

    A killed holder never leaves it locked: ``flock`` locks die with their holder, and an abandoned
    lock file is taken over (see the module's docstring).
    """
    fd = _flock(path) if lock_mode(path.parent).mode == "flock" else None
    if fd is not None:
        try:
            yield
        finally:
            os.close(fd)
        return
    with SoftLock(path.with_name(path.name + HELD_SUFFIX)):
        yield


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


_me: dict[int, dict[str, Any]] = {}  # by pid: a forked child is another owner


def _identity() -> dict[str, Any]:
    """This process as a lock file names its owner: host, boot, pid and the pid's start time."""
    pid = os.getpid()
    if pid not in _me:
        _me[pid] = {"host": os.uname().nodename, "boot": _boot_id(), "pid": pid, "start": process_start(pid)}
    return _me[pid]


class SoftLock:
    """A lock file: held while ``path`` exists, created atomically (``O_CREAT|O_EXCL``), holding its
    owner as JSON, its mtime refreshed every ``beat`` seconds by a thread while held."""

    def __init__(self, path: Path, stale: float = STALE_SECONDS, beat: float = BEAT_SECONDS) -> None:
        self.path = path
        self.stale = stale
        self.beat = beat
        self.owner = {**_identity(), "token": os.urandom(8).hex()}
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        self._seen: tuple[str, int, int] | None = None  # the holder's file as last seen while waiting
        self._seen_at = 0.0

    def __enter__(self) -> SoftLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        text = json.dumps(self.owner)
        delay = 0.002
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                _check_regular(self.path)  # a planted directory, FIFO or symlink: refused, not waited on
                if not self._break_if_stale():
                    import random  # here: only a contended lock needs it, and every listing imports this module

                    time.sleep(delay * random.uniform(0.5, 1.5))  # jitter: waiters do not retry in step
                    delay = min(delay * 2, 0.05)
                continue
            try:
                os.write(fd, text.encode())
            except BaseException:  # a full disk: leave no nameless lock file for others to wait on
                os.close(fd)
                os.unlink(self.path)
                raise
            os.close(fd)
            self._heart = threading.Thread(target=self._beat, name=f"lock-heartbeat {self.path}", daemon=True)
            self._heart.start()
            return

    def release(self) -> None:
        self._stop.set()
        if self._heart is not None:
            self._heart.join()
        seen = self._read()
        # Only our own file: if we stalled past the stale limit, another writer took it over.
        if seen is not None and seen[0].get("token") == self.owner["token"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _beat(self) -> None:
        while not self._stop.wait(self.beat):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def _read(self) -> tuple[dict[str, Any], os.stat_result] | None:
        """The lock file's owner (``{}`` while unreadable: being written, or not a lock file) and
        stat; None if absent. Bounded, and never blocks on a FIFO or follows a symlink."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError:  # a symlink (ELOOP) or unreadable: judged by its own mtime
            try:
                return {}, os.lstat(self.path)
            except FileNotFoundError:
                return None
        try:
            st = os.fstat(fd)
            raw = os.read(fd, 4096) if stat.S_ISREG(st.st_mode) else b""
        finally:
            os.close(fd)
        try:
            owner = json.loads(raw)
        except ValueError:
            owner = {}
        return (owner if isinstance(owner, dict) else {}), st

    def abandoned(self, owner: dict[str, Any], st: os.stat_result) -> bool:
        """Whether the holder described by ``owner`` (the lock file's content) is gone."""
        me = self.owner
        if owner.get("host") == me["host"] and owner.get("boot") and owner.get("boot") != me["boot"]:
            return True  # this host rebooted since: every process of then is gone
        if owner.get("host") == me["host"] and isinstance(owner.get("pid"), int):
            return not pid_alive(owner["pid"], owner.get("start") if isinstance(owner.get("start"), int) else None)
        # Another host's lock, or a file still being written (or garbage): its heartbeat decides.
        return time.time() - st.st_mtime > self.stale

    def _break_if_stale(self) -> bool:
        """Remove the lock file if its holder is gone; True when the caller should retry at once.

        Two waiters may judge the same file stale: only the one that creates ``<path>.break``
        removes it, after checking that it is still the file it judged (not a new holder's).
        """
        seen = self._read()
        if seen is None:
            return True
        # Also abandoned: a file that has not changed at all for `stale` seconds of our own waiting,
        # whatever its mtime says (a clock far off, or a planted file dated in the future).
        key = (json.dumps(seen[0], sort_keys=True), seen[1].st_ino, seen[1].st_mtime_ns)
        if key != self._seen:
            self._seen, self._seen_at = key, time.monotonic()
        unchanged = time.monotonic() - self._seen_at > self.stale
        if not (unchanged or self.abandoned(*seen)):
            return False
        return self._remove_if_unchanged(seen) is not None

    def holder_gone(self) -> bool:
        """Whether the lock file exists and its holder is gone (``abandoned``)."""
        seen = self._read()
        return seen is not None and self.abandoned(*seen)

    def break_abandoned(self) -> bool:
        """Remove the lock file if its holder is gone (``abandoned``: never a live holder's, and
        with the same care as a waiter that breaks it); whether it was removed. For clean-ups."""
        seen = self._read()
        return seen is not None and self.abandoned(*seen) and bool(self._remove_if_unchanged(seen))

    def _remove_if_unchanged(self, seen: tuple[dict[str, Any], os.stat_result]) -> bool | None:
        """Remove the lock file if it is still the one ``seen``: whether it was; None while another
        process is breaking it."""
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            os.close(os.open(breaker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            _check_regular(breaker)
            # Breaking takes microseconds: an old breaker file is one whose writer died mid-break.
            with contextlib.suppress(FileNotFoundError):
                if time.time() - os.stat(breaker).st_mtime > self.stale:
                    os.unlink(breaker)
            return None
        try:
            now = self._read()
            if now is not None and (now[0], now[1].st_ino, now[1].st_mtime_ns) == \
                    (seen[0], seen[1].st_ino, seen[1].st_mtime_ns):
                os.unlink(self.path)
                return True
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(breaker)
