"""A derived cache of run summaries, so listing and comparing many runs stays fast.

The run directories stay the source of truth. Each entry is keyed by the ``stat`` of the file
it summarises (``run.json``, ``scalars.jsonl``): an entry whose file changed is read again, an
entry whose run is gone is dropped, and a missing, corrupt or unwritable index only costs speed
(delete ``runs/.index.sqlite`` any time). Liveness-derived status is applied after reading, as
for any record, so the index never holds a stale "running".

The index lives in the runs dir, so it is as untrusted as the run dirs: a cached record is checked
with the same schema as a run.json (``_record.check``) and a cached scalar summary for its shape;
one that fails is read again from its file. An index (or journal) that is not a regular file is
not used, so that SQLite never writes through a link planted there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Callable, Sequence

from ._errors import BadRecordError
from ._record import Problem, check
from ._runs import Run, RunList, RunNotFoundError, derive_status, load_run, run_from_record, warn_bad
from ._scalars import summarize

INDEX_NAME = ".index.sqlite"
# What listing and compare need; the bulky parts of run.json (op_def, hook trace, attrs) stay out.
_SLIM = (
    "id", "op", "opspec", "flags", "status", "exit_code", "label", "tags", "created", "started", "stopped",
    "is_batch", "is_trial", "parent", "trials", "host", "remote", "pid", "pid_start", "job_pid",
    "nproc_per_node", "gpus", "error", "batch", "guildlite_version",
)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _plain_or_absent(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _cached_record(text: Any, run_id: str) -> dict[str, Any] | None:
    """A record from the index, if it has a record's shape (else None: read the file again)."""
    try:
        rec = json.loads(text)
        check(rec, text)
    except (Problem, ValueError, TypeError, RecursionError):
        return None
    rec["id"] = run_id
    return rec


def _cached_summary(text: Any) -> dict[str, Any] | None:
    """A scalar summary from the index, if it has ``summarize``'s shape (else None)."""
    try:
        summary = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None
    if type(summary) is not dict:
        return None
    for s in summary.values():
        if type(s) is not dict or any(type(s.get(k)) not in (int, float) for k in ("last", "min", "max")):
            return None
    return summary


class _Index:
    def __init__(self, runs_dir: Path) -> None:
        self.db: sqlite3.Connection | None = None
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.updates: list[tuple[Any, ...]] = []
        path = str(runs_dir / INDEX_NAME)
        if not all(_plain_or_absent(path + end) for end in ("", "-journal", "-wal", "-shm")):
            return  # SQLite would follow a link: no index here, then
        try:
            self.db = sqlite3.connect(path, timeout=5, isolation_level=None)
            self.db.execute("PRAGMA synchronous=OFF")  # a cache: losing it on power loss is harmless
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, mtime INTEGER, size INTEGER, rec TEXT,"
                " s_mtime INTEGER, s_size INTEGER, scalars TEXT)"
            )
            self.rows = {r[0]: r[1:] for r in self.db.execute(
                "SELECT id, mtime, size, rec, s_mtime, s_size, scalars FROM runs")}
        except sqlite3.Error:
            self.db, self.rows = None, {}

    def flush(self, keep: set[str]) -> None:
        if self.db is None:
            return
        gone = [(k,) for k in self.rows if k not in keep]
        try:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?)", self.updates)
            self.db.executemany("DELETE FROM runs WHERE id = ?", gone)
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
    for run_id in runs.ids if ids is None else ids:
        base = f"{root}/{run_id}"
        stamp = _stamp(f"{base}/run.json")
        row = index.rows.get(run_id)
        rec = _cached_record(row[2], run_id) if row is not None and (row[0], row[1]) == stamp else None
        changed = rec is None
        if rec is None:
            try:
                full = load_run(Path(base))
            except BadRecordError as e:
                warn_bad(e)
                continue
            except RunNotFoundError:
                continue
            rec = {k: v for k, v in full.to_record().items() if k in _SLIM}
        s_stamp, summary_text = ((row[3], row[4]), row[5]) if row is not None else (None, None)
        summary = None
        if scalars:
            now = _stamp(f"{base}/scalars.jsonl") or (0, 0)
            summary = _cached_summary(summary_text) if s_stamp == now else None
            if summary is None:
                summary = summarize(Path(base, "scalars.jsonl"))
                summary_text, s_stamp, changed = json.dumps(summary), now, True
        if changed and stamp is not None:
            index.updates.append((run_id, *stamp, json.dumps(rec), *(s_stamp or (None, None)), summary_text))
        rec = derive_status(rec, Path(base))
        if where is not None and not where(rec):
            continue
        out.append((run_id, rec, summary or {}))
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
