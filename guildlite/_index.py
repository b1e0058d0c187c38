"""A derived cache of run summaries, so listing and comparing many runs stays fast.

The run directories stay the source of truth. Each entry is keyed by the ``stat`` of the file
it summarises (``run.json``, ``scalars.jsonl``): an entry whose file changed is read again, an
entry whose run is gone is dropped, and a missing, corrupt or unwritable index only costs speed
(delete ``runs/.index.sqlite`` any time). Liveness-derived status is applied after reading, as
for any record, so the index never holds a stale "running".
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Sequence

from ._runs import Run, RunList, RunNotFoundError, derive_status, load_run, run_from_record
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
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class _Index:
    def __init__(self, runs_dir: Path) -> None:
        self.db: sqlite3.Connection | None = None
        try:
            self.db = sqlite3.connect(runs_dir / INDEX_NAME, timeout=5, isolation_level=None)
            self.db.execute("PRAGMA synchronous=OFF")  # a cache: losing it on power loss is harmless
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, mtime INTEGER, size INTEGER, rec TEXT,"
                " s_mtime INTEGER, s_size INTEGER, scalars TEXT)"
            )
            self.rows = {r[0]: r[1:] for r in self.db.execute("SELECT * FROM runs")}
        except sqlite3.Error:
            self.db, self.rows = None, {}
        self.updates: list[tuple[Any, ...]] = []

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
    with liveness-derived status; ``where`` filters on them. The scalar summary is {} unless
    ``scalars``. Runs whose run.json vanished are skipped.
    """
    root = str(runs.dir)
    index = _Index(runs.dir)
    out = []
    for run_id in runs.ids if ids is None else ids:
        base = f"{root}/{run_id}"
        stamp = _stamp(f"{base}/run.json")
        if stamp is None:
            continue
        row = index.rows.get(run_id)
        if row is not None and (row[0], row[1]) == stamp:
            rec, changed = json.loads(row[2]), False
        else:
            try:
                full = load_run(Path(base))
            except RunNotFoundError:
                continue
            rec, changed = {k: v for k, v in full.to_record().items() if k in _SLIM}, True
        s_stamp, summary_text = ((row[3], row[4]), row[5]) if row is not None else (None, None)
        if scalars:
            now = _stamp(f"{base}/scalars.jsonl") or (0, 0)
            if summary_text is None or s_stamp != now:
                summary_text = json.dumps(summarize(Path(base, "scalars.jsonl")))
                s_stamp, changed = now, True
        if changed:
            index.updates.append((run_id, *stamp, json.dumps(rec), *(s_stamp or (None, None)), summary_text))
        rec = derive_status(rec, Path(base))
        if where is not None and not where(rec):
            continue
        out.append((run_id, rec, json.loads(summary_text) if scalars and summary_text else {}))
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
