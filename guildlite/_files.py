"""guildlite's files: the layout of a run directory (``RunPaths``), the one way they are written
(``atomic_write``), the ids that name run dirs and the times recorded in them, the cache dir."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._errors import BadRecordError, RunNotFoundError

META_DIR = ".guildlite"
TRASH_DIR = ".trash"


@dataclass(frozen=True)
class RunPaths:
    """Every file guildlite keeps in a run directory, named in one place."""

    dir: Path

    @property
    def run_json(self) -> Path:
        return self.dir / "run.json"

    @property
    def output_log(self) -> Path:
        return self.dir / "output.log"

    @property
    def scalars(self) -> Path:
        return self.dir / "scalars.jsonl"

    @property
    def meta(self) -> Path:
        return self.dir / META_DIR

    @property
    def lock(self) -> Path:
        return self.meta / "lock"

    @property
    def owner(self) -> Path:
        """Locked (``flock``) by the guildlite process that owns the run, for as long as it does."""
        return self.meta / "owner"

    @property
    def rank_exits(self) -> Path:
        return self.meta / "exit"

    @property
    def stop_request(self) -> Path:
        return self.meta / "stop"

    @property
    def end_claim(self) -> Path:
        """Created by whoever fires the run's ``on_run_end`` when two processes may (``claim_end``)."""
        return self.meta / "end-hook"

    @property
    def env(self) -> Path:
        return self.meta / "env.json"

    @property
    def manifest(self) -> Path:
        return self.meta / "sourcecode.json"

    @property
    def reserve(self) -> Path:
        """Space held while the job runs, so that its end can be recorded on a disk it filled."""
        return self.meta / "reserve"


def make_meta_dir(paths: RunPaths) -> None:
    """Make the run's ``.guildlite`` dir (for its locks). A run dir or ``.guildlite`` that is a
    symlink (a run dir from elsewhere) is refused: a write must never land outside the runs dir."""
    for p in (paths.dir, paths.meta):
        if p.is_symlink():
            raise RunNotFoundError(f"{p}: a symlink, not a run's own dir: refusing to write there")
    try:
        paths.meta.mkdir(exist_ok=True)
    except FileExistsError:  # a file, FIFO or socket planted as .guildlite: guildlite never makes one
        raise BadRecordError(paths.dir, f"{paths.meta.name} is not a directory (not made by guildlite; "
                             "remove it)") from None


def atomic_write(path: Path, data: str | bytes, sync: bool = True) -> None:
    """Write ``path`` so a reader sees the old file or the new one, never half of either (and, with
    ``sync``, on disk before it replaces the old one; a cache written often may skip that)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_meta_cache(run_dir: Path, name: str, data: Any) -> None:
    """Rewrite ``.guildlite/<name>`` with ``data`` as JSON: a cache, rewritten often, that a crash
    may lose (no fsync). Nothing is written where a ``.guildlite`` that the job replaced with a
    symlink leads, and a run dir gone or full is not reported here (the run's end says so)."""
    meta = RunPaths(run_dir).meta
    if meta.is_symlink():
        return
    try:
        atomic_write(meta / name, json.dumps(data), sync=False)
    except OSError:
        pass


def cache_dir(name: str) -> Path:
    """guildlite's cache folder ``name`` under ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guildlite" / name


def now_iso() -> str:
    """The current time, ISO 8601 in UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """A unique id that sorts in creation order, such as ``20261123T101500-1f43a9``.

    After the UTC second come three hex digits of milliseconds, then three random ones: sorting
    ids as strings is sorting runs by creation, so listing needs no record to order runs.
    """
    now = time.time()
    ms = int(now * 1000) % 1000
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{ms:03x}{os.urandom(2).hex()[:3]}"
