"""SHA-256 digests of files, computed once and cached by path, size, mtime, inode and ctime.

A required 200 MB file is read once, not at every run: the cache entry is one small JSON file
per (real path, size, mtime_ns, inode, ctime_ns), written atomically, so concurrent runs never
see half an entry and never need a lock (two writers of one entry write the same thing). A file
changed in place gets a new mtime (or size) and ctime, one replaced by another a new inode, so a
new entry. The cache lives under guildlite's cache dir (``$XDG_CACHE_HOME/guildlite/digests``, or
``GUILDLITE_DIGEST_CACHE``); deleting it costs only time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ._files import atomic_write, cache_dir

DEFAULT_HASH_LIMIT = 256 * 1024 * 1024
_CHUNK = 1 << 20


def hash_limit() -> int:
    """Files (and dirs, in total) up to this many bytes get a sha256 in run.json ``requires``
    (``GUILDLITE_HASH_LIMIT``, bytes; default 256 MiB): bigger ones record size and mtime only."""
    raw = os.environ.get("GUILDLITE_HASH_LIMIT", "")
    try:
        return int(raw) if raw.strip() else DEFAULT_HASH_LIMIT
    except ValueError:
        from ._errors import GuildliteError

        raise GuildliteError(f"GUILDLITE_HASH_LIMIT={raw!r} is not a number of bytes", exit_code=2) from None


def _cache_root() -> Path:
    env = os.environ.get("GUILDLITE_DIGEST_CACHE")
    return Path(env) if env else cache_dir("digests")


def file_sha256(path: Path) -> str:
    """The sha256 of the regular file at ``path``, read in full."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cached_sha256(path: Path) -> str:
    """The sha256 of the file at ``path``, from the cache when its size, mtime, inode and ctime match."""
    real = os.path.realpath(path)
    st = os.stat(real)
    # The inode and ctime too: a file swapped (``mv``) for one of the same size and mtime (``cp -p``,
    # ``rsync -t`` and ``tar x`` keep mtimes) is another file, and no one can set a ctime back.
    ident = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    key = hashlib.sha256(f"{real}\0{ident}".encode()).hexdigest()[:40]
    entry = _cache_root() / key[:2] / f"{key}.json"
    try:
        data = json.loads(entry.read_text())
        if data.get("path") == real and data.get("ident") == ident:
            return str(data["sha256"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # no entry yet, or a damaged one: computed again and rewritten
    digest = file_sha256(Path(real))
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(entry, json.dumps({"path": real, "ident": ident, "sha256": digest}))
    except OSError:
        pass  # a read-only or full cache dir costs time on the next run, nothing else
    return digest
