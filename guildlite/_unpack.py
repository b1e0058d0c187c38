"""Unpacking a tar or zip archive into guildlite's resource cache, refusing hostile members.

Every member is checked before anything is written: an absolute name, a ``..`` part, a symlink
or hardlink whose target leads out of the unpack dir, a device or FIFO member make the whole
archive refused, naming the member (a "zip slip" would otherwise write anywhere the user can), and
so does a name no filesystem takes (a part over 255 bytes).
An archive is unpacked once, keyed by its sha256, into a temp dir renamed into place when done:
concurrent runs never see a half-unpacked tree.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import zipfile
from pathlib import Path

from ._downloads import _locked, cache_root, check_room
from ._resource_files import RequirementError
from ._tarsafe import open_tar

_NAME_MAX = 255  # bytes in one path component, on every common filesystem


def unpacked(archive: Path, sha256: str, where: str) -> Path:
    """The dir ``archive`` (of digest ``sha256``) unpacks to, unpacking it now if needed."""
    dest = cache_root() / "unpacked" / sha256[:32]
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.with_suffix(".lock"), str(archive)):
        if dest.is_dir():  # another run unpacked it while this one waited
            return dest
        tmp = dest.parent / f".part-{sha256[:32]}-{os.getpid()}-{os.urandom(3).hex()}"
        tmp.mkdir()
        try:
            _extract(archive, tmp, where)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _extract(archive: Path, dest: Path, where: str) -> None:
    name = archive.name.lower()
    try:
        if name.endswith(".zip") or zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    mode = info.external_attr >> 16
                    if (mode & 0o170000) == 0o120000:
                        _refuse(archive, info.filename, "is a symlink", where)
                    _check_name(archive, info.filename, where)
                check_room(dest, sum(i.file_size for i in z.infolist()), f"{where}: unpacking {archive.name}")
                z.extractall(dest)
            return
        with open_tar(archive) as t:
            members = t.getmembers()
            for m in members:
                _check_name(archive, m.name, where)
                if m.issym() or m.islnk():
                    base = posixpath.dirname(m.name) if m.issym() else ""
                    _check_name(archive, posixpath.join(base, m.linkname), where, f"links to {m.linkname!r}",
                                member=m.name)
                elif not (m.isfile() or m.isdir()):
                    _refuse(archive, m.name, "is a device, FIFO or other special file", where)
            check_room(dest, sum(m.size for m in members if m.isfile()), f"{where}: unpacking {archive.name}")
            t.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise RequirementError(f"{where}: cannot unpack {archive.name}: {e}") from None
    except OSError as e:  # a full disk, a name this filesystem refuses: the temp dir is removed
        raise RequirementError(f"{where}: cannot unpack {archive.name}: {e.strerror or e}"
                               f"{f' ({e.filename})' if e.filename else ''}; nothing was staged") from None


def _check_name(archive: Path, name: str, where: str, what: str = "", member: str | None = None) -> None:
    """Refuse a member path that is absolute or leaves the unpack dir once normalised."""
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        _refuse(archive, member or name, what or "has an absolute path", where)
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        _refuse(archive, member or name, what or "leaves the unpack dir ('..')", where)
    if not what and any(len(part.encode()) > _NAME_MAX for part in norm.split("/")):
        _refuse(archive, name, f"has a name over {_NAME_MAX} bytes (no filesystem takes it)", where, escapes=False)


def _refuse(archive: Path, member: str, why: str, where: str, escapes: bool = True) -> None:
    escape = " (it would escape the unpack dir)" if escapes else ""
    raise RequirementError(f"{where}: refusing to unpack {archive.name}: member {member!r} {why}"
                           f"{escape}; nothing was staged", exit_code=2)
