"""A derived cache of run summaries, so listing and comparing many runs stays fast.

The run directories stay the source of truth. Each entry is keyed by the ``stat`` of the file
it summarises (``run.json``, ``scalars.jsonl``): an entry whose file changed is read again, an
entry whose run is gone is dropped, and a missing, corrupt or unwritable index only costs speed
(delete ``runs/.index.sqlite`` any time). Liveness-derived status is applied after reading, as
for any record, so the index never holds a stale "running".

The index lives in the runs dir, so it is as untrusted as the run dirs. It only ever stores
records read through the schema (``_record``), and an entry counts only while the stamp of its
file matches: modification time, size, *change time and inode*, which the kernel sets, so an index
shipped in an archive beside its runs matches nothing and each run is read (and checked) again.
An index another user owns (a shared runs dir) may hold anything: its entries are checked with
the schema on every read (slower, never wrong). An index (or journal) that is not a regular file
is not used, so that SQLite never writes through a link planted there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Callable, Sequence

from ._errors import BadRecordError, RunNotFoundError
from ._record import Problem, check, is_run_id
from ._run import Run, load_run, run_from_record
from ._scalars import summarize
from ._selection import RunList
from ._status import as_it_stands
from ._store import read_record, warn_bad

INDEX_NAME = ".index.sqlite"
# What listing and compare need; the bulky parts of run.json (op_def, hook trace, attrs) stay out.
_SLIM = (
    "id", "op", "opspec", "flags", "status", "exit_code", "label", "tags", "created", "started", "stopped",
    "is_batch", "is_trial", "parent", "trials", "host", "remote", "pid", "pid_start", "job_pid",
    "nproc_per_node", "gpus", "waiting", "error", "batch", "guildlite_version", "requires",
    "is_pipeline", "steps", "pipeline", "notes", "attempts",
)


# v2: stamps with change time and inode; rows of schema-checked records only. v3: with attempts
# (a restarted run's time counts them): a v2 row lacks them, so the v2 table goes.
_TABLE = "runs_v3"


def _stamp(path: str) -> int | None:
    """The file's modification time, size, change time and inode, in one int (a tuple's hash:
    stable across processes, one column to store and compare)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return hash((st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino))


def _plain_or_absent(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _cached_record(text: Any, run_id: str, trusted: bool) -> dict[str, Any] | None:
    """A record from the index (checked unless ``trusted``); None if it is not one: read the file."""
    try:
        rec = json.loads(text)
        if not trusted:
            check(rec, text)
    except (Problem, ValueError, TypeError, RecursionError):
        return None
    if type(rec) is not dict:
        return None
    rec["id"] = run_id
    return rec


def _cached_summary(text: Any, trusted: bool) -> dict[str, Any] | None:
    """A scalar summary from the index (checked for ``summarize``'s shape unless ``trusted``)."""
    try:
        summary = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None
    if type(summary) is not dict:
        return None
    for s in () if trusted else summary.values():
        if type(s) is not dict or any(type(s.get(k)) not in (int, float) for k in ("last", "min", "max")):
            return None
    return summary


class _Index:
    def __init__(self, runs_dir: Path) -> None:
        self.db: sqlite3.Connection | None = None
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.updates: list[tuple[Any, ...]] = []
        self.trusted = False
        path = str(runs_dir / INDEX_NAME)
        if not all(_plain_or_absent(path + end) for end in ("", "-journal", "-wal", "-shm")):
            return  # SQLite would follow a link: no index here, then
        cols = "id, stamp, rec, s_stamp, scalars"
        try:
            self.db = sqlite3.connect(path, timeout=5, isolation_level=None)
            self.db.execute("PRAGMA synchronous=OFF")  # a cache: losing it on power loss is harmless
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} ({cols}, PRIMARY KEY (id))")
            self.db.execute("DROP TABLE IF EXISTS runs")  # v1: stamps that an archive could match
            self.db.execute("DROP TABLE IF EXISTS runs_v2")
            self.trusted = os.stat(path).st_uid == os.geteuid()
            try:
                self.rows = {r[0]: r[1:] for r in self.db.execute(f"SELECT {cols} FROM {_TABLE}")}
            except sqlite3.OperationalError:  # a table of another shape: a cache, so start again
                self.db.execute(f"DROP TABLE {_TABLE}")
                self.db.execute(f"CREATE TABLE {_TABLE} ({cols}, PRIMARY KEY (id))")
        except (sqlite3.Error, OSError):
            self.db, self.rows = None, {}

    def flush(self, keep: set[str]) -> None:
        if self.db is None:
            return
        gone = [(k,) for k in self.rows if k not in keep]
        try:
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?,?,?,?,?)", self.updates)
            self.db.executemany(f"DELETE FROM {_TABLE} WHERE id = ?", gone)
            self.db.execute("COMMIT")
        except sqlite3.Error:
            pass  # a busy or read-only index: next time, then
        finally:
            self.db.close()


def load_records(
    runs: RunList,
    ids: Sequence[str] | None = None,
    scalars: bool = False,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(run dir name, summary record, scalar summary)`` for ``ids`` (default: all of ``runs``), in order.

    The records hold the summary fields of ``run.json`` only (no op_def, hook trace or attrs),
    validated, with liveness-derived status; ``where`` filters on them. The scalar summary is {}
    unless ``scalars``. Runs whose run.json vanished are skipped; bad records are skipped with a
    warning.
    """
    root = str(runs.dir)
    index = _Index(runs.dir)
    if ids is None:
        runs.report_strays()
    out = []
    for run_id in runs.ids if ids is None else filter(is_run_id, ids):
        base = f"{root}/{run_id}"
        stamp = _stamp(f"{base}/run.json")
        row = index.rows.get(run_id)
        rec = _cached_record(row[1], run_id, index.trusted) if row is not None and row[0] == stamp else None
        changed = rec is None
        if rec is None:
            try:
                full = load_run(Path(base), listed=ids is None)
            except BadRecordError as e:
                warn_bad(e)
                continue
            except RunNotFoundError:
                continue
            rec = {k: v for k, v in full.to_record().items() if k in _SLIM}
        s_stamp, summary_text = (row[2], row[3]) if row is not None else (None, None)
        now = as_it_stands(rec, Path(base), read_record)
        shown = where is None or where(now)
        summary = None
        if scalars and shown:
            s_now = _stamp(f"{base}/scalars.jsonl") or 0
            summary = _cached_summary(summary_text, index.trusted) if s_stamp == s_now else None
            if summary is None:
                summary = summarize(Path(base, "scalars.jsonl"))
                summary_text, s_stamp, changed = json.dumps(summary), s_now, True
        if changed and stamp is not None:
            index.updates.append((run_id, stamp, json.dumps(rec, default=str), s_stamp, summary_text))
        if shown:
            out.append((run_id, now, summary or {}))
    index.flush(keep=set(runs.ids))
    return out


def load_summaries(
    runs: RunList,
    ids: Sequence[str] | None = None,
    scalars: bool = False,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> list[tuple[Run, dict[str, Any]]]:
    """As ``load_records``, with each record as a Run (summary fields only: use ``load_run`` for a
    whole record)."""
    return [(run_from_record(runs.dir / name, rec), summary)
            for name, rec, summary in load_records(runs, ids, scalars, where)]
