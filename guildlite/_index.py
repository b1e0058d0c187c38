"""A derived cache of run summaries, so listing and comparing many runs stays fast.

The run directories stay the source of truth. Each entry is keyed by the ``stat`` of the file
it summarises (``run.json``, ``scalars.jsonl``): an entry whose file changed is read again, an
entry whose run is gone is dropped, and a missing, corrupt or unwritable index only costs speed
(delete ``runs/.index.sqlite`` any time). Liveness-derived status is applied after reading, as
for any record, so the index never holds a stale "running".

Once the index is warm, a listing pays one ``lstat`` per run (its run.json's stamp) and little
more: the fields most filters read (``COLUMNS``) are columns of their own, so ``runs --status
error`` decodes no record it does not show; a record is stored slim (the fields listings need,
those at their default left out) and decoded only when its run is shown.

The index lives in the runs dir, so it is as untrusted as the run dirs. It only ever stores
records read through the schema (``_record``), and an entry counts only while the stamp of its
file matches: modification time, size, *change time and inode*, which the kernel sets, so an index
shipped in an archive beside its runs matches nothing and each run is read (and checked) again.
An index another user owns (a shared runs dir) may hold anything: its columns are not used and
its entries are checked with the schema on every read (slower, never wrong). An index (or
journal) that is not a regular file is not used, so that SQLite never writes through a link
planted there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ._errors import BadRecordError, RunNotFoundError
from ._record import Problem, check, is_run_id
from ._run import Run, run_from_record
from ._scalars import summarize
from ._selection import RunList
from ._status import ENDED, as_it_stands
from ._store import read_record, warn_bad

INDEX_NAME = ".index.sqlite"
# What listing and compare need; the bulky parts of run.json (op_def, hook trace, attrs) stay out.
_SLIM = (
    "id", "op", "opspec", "flags", "status", "exit_code", "label", "tags", "created", "started", "stopped",
    "is_batch", "is_trial", "parent", "trials", "host", "remote", "pid", "pid_start", "job_pid",
    "nproc_per_node", "gpus", "waiting", "error", "batch", "guildlite_version", "requires",
    "is_pipeline", "steps", "pipeline", "notes", "attempts",
)
# The fields most filters read, each a column: a filter on these (and the id) reads no record.
COLUMNS = ("status", "op", "parent", "label", "is_batch")

_TABLE = "runs_v4"  # v4: COLUMNS, slim records; the scalar summary keyed by its own file's stamp
# v1: stamps that an archive could match; v2: no attempts (a restarted run's time counts them); v3: no columns
_OLD_TABLES = ("runs", "runs_v2", "runs_v3")
_NARROW = "id, stamp, " + ", ".join(COLUMNS)  # read for every run, up front
_SCHEMA = f"{_NARROW}, rec, s_stamp, scalars"
_PUT_RECORD = (f"INSERT INTO {_TABLE} ({_NARROW}, rec) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in ("stamp", *COLUMNS, "rec")))
_PUT_SUMMARY = f"UPDATE {_TABLE} SET s_stamp = ?, scalars = ? WHERE id = ?"
_NOTHING = (None, None, None, None)
_raw_decode = json.JSONDecoder().raw_decode  # json.loads less its wrapper: ~100k calls a listing


def _decoded(text: Any) -> Any:
    """The JSON value that is the whole of ``text`` (ValueError or TypeError if there is none)."""
    value, end = _raw_decode(text)
    if end != len(text):
        raise ValueError("extra data")
    return value


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


_defaults: dict[str, Any] = {}


def _default_fields() -> dict[str, Any]:
    """The value of each slim field that a record leaves out, as a ``Run`` reads it."""
    if not _defaults:
        made = Run(id="", run_dir=Path(), op="").to_record()
        _defaults.update((k, made[k]) for k in _SLIM if k not in ("id", "op"))
    return _defaults


def _slim(rec: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The slim fields of a validated record, each there (at its default when the record lacks it)."""
    out = {**_default_fields(), **{k: rec[k] for k in _SLIM if k in rec}}
    out["id"] = run_id
    return out


def _stored(rec: dict[str, Any]) -> str:
    """A slim record as the index keeps it: the id (its key) and the fields at their default left
    out (less to decode)."""
    defaults = _default_fields()
    return json.dumps({k: v for k, v in rec.items() if k != "id" and (
                       k not in defaults or type(v) is not type(defaults[k]) or v != defaults[k])},
                      separators=(",", ":"))


def _cached_record(text: Any, run_id: str, trusted: bool) -> dict[str, Any] | None:
    """A record from the index (checked unless ``trusted``); None if it is not one: read the file."""
    try:
        rec = _decoded(text)
        if not trusted:
            check(rec, text)
    except (Problem, ValueError, TypeError, RecursionError):
        return None
    if type(rec) is not dict:
        return None
    if not trusted:
        return _slim(rec, run_id)
    rec = {**_default_fields(), **rec}  # written by _stored: slim already
    rec["id"] = run_id
    return rec


def _cached_summary(text: Any, trusted: bool) -> dict[str, Any] | None:
    """A scalar summary from the index (checked for ``summarize``'s shape unless ``trusted``)."""
    try:
        summary = _decoded(text)
    except (ValueError, TypeError, RecursionError):
        return None
    if type(summary) is not dict:
        return None
    for s in () if trusted else summary.values():
        if type(s) is not dict or any(type(s.get(k)) not in (int, float) for k in ("last", "min", "max")):
            return None
    return summary


class _Index:
    """The index of one runs dir for one listing: the narrow columns of every entry read up front,
    an entry's record and summary when its run is shown (``texts``), the changes written at the end."""

    def __init__(self, runs_dir: Path) -> None:
        self.db: sqlite3.Connection | None = None
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.records: list[tuple[Any, ...]] = []  # entries to write: read from run.json this time
        self.summaries: list[tuple[Any, ...]] = []  # and scalar summaries computed this time
        self.trusted = False
        self._texts: dict[str, tuple[Any, ...]] | None = None
        self._asked = 0
        path = str(runs_dir / INDEX_NAME)
        if not all(_plain_or_absent(path + end) for end in ("", "-journal", "-wal", "-shm")):
            return  # SQLite would follow a link: no index here, then
        create = f"CREATE TABLE IF NOT EXISTS {_TABLE} ({_SCHEMA}, PRIMARY KEY (id))"
        try:
            self.db = sqlite3.connect(path, timeout=5, isolation_level=None)
            self.db.execute("PRAGMA synchronous=OFF")  # a cache: losing it on power loss is harmless
            self.db.execute(create)
            for old in _OLD_TABLES:
                self.db.execute(f"DROP TABLE IF EXISTS {old}")
            self.trusted = os.stat(path).st_uid == os.geteuid()
            try:
                self.rows = {r[0]: r[1:] for r in self.db.execute(f"SELECT {_NARROW} FROM {_TABLE}")}
            except sqlite3.OperationalError:  # a table of another shape: a cache, so start again
                self.db.execute(f"DROP TABLE {_TABLE}")
                self.db.execute(create)
        except (sqlite3.Error, OSError):
            self.db, self.rows = None, {}

    def texts(self, run_id: str) -> tuple[Any, ...]:
        """``(stamp, record, s_stamp, summary)`` of an entry as the index holds it now (another
        process may have written it since the narrow columns were read: callers check the stamps)."""
        if self.db is None:
            return _NOTHING
        try:
            if self._texts is None and self._asked < max(100, len(self.rows) // 8):  # a few shown: a query each
                self._asked += 1
                got = self.db.execute(f"SELECT stamp, rec, s_stamp, scalars FROM {_TABLE} WHERE id = ?",
                                      (run_id,)).fetchone()
                return got or _NOTHING
            if self._texts is None:  # most runs shown: one query for all
                query = f"SELECT id, stamp, rec, s_stamp, scalars FROM {_TABLE}"
                self._texts = {r[0]: r[1:] for r in self.db.execute(query)}
        except sqlite3.Error:
            return _NOTHING
        return self._texts.get(run_id, _NOTHING)

    def flush(self, keep: set[str]) -> None:
        if self.db is None:
            return
        gone = [(k,) for k in self.rows if k not in keep]
        try:
            if self.records or self.summaries or gone:
                self.db.execute("BEGIN")
                self.db.executemany(_PUT_RECORD, self.records)
                self.db.executemany(_PUT_SUMMARY, self.summaries)
                self.db.executemany(f"DELETE FROM {_TABLE} WHERE id = ?", gone)
                self.db.execute("COMMIT")
        except sqlite3.Error:
            pass  # a busy or read-only index: next time, then
        finally:
            self.db.close()


class _Gone(Exception):
    """The run's record could not be read: gone since listed, or bad (warned about)."""


class _Entry(Mapping[str, Any]):
    """One run of a listing: its record as the index holds it while the stamp of its run.json
    matches, else as read from the file (then queued to be written to the index).

    As a mapping it is the record a filter sees: the ``COLUMNS`` (and the id) of a matching entry
    without decoding anything, any other field from the whole record (``record``).
    """

    __slots__ = ("_index", "_id", "_dir", "_stamp", "_row", "_listed", "_rec", "_texts", "from_index")
    _AT = {name: i for i, name in enumerate(COLUMNS, 1)}  # a column's place in an index row

    def __init__(self, index: _Index, run_id: str, run_dir: str, listed: bool) -> None:
        self._index, self._id, self._dir, self._listed = index, run_id, run_dir, listed
        self._stamp = _stamp(f"{run_dir}/run.json")
        row = index.rows.get(run_id)
        self._row = row if row is not None and self._stamp is not None and row[0] == self._stamp else None
        self._rec: dict[str, Any] | None = None
        self._texts: tuple[Any, ...] | None = None
        self.from_index = False  # whether ``record`` came from the index (else from run.json)

    def as_indexed(self) -> bool:
        """Whether the columns tell this run as it stands: its entry matches, is trusted, and
        says it ended (an ended run's status needs no liveness derived)."""
        return self._row is not None and self._index.trusted and self._row[1] in ENDED

    def _indexed(self) -> tuple[Any, ...]:
        if self._texts is None:
            self._texts = self._index.texts(self._id)
        return self._texts

    def record(self) -> dict[str, Any]:
        """The slim record (as written: no liveness derived); _Gone if it cannot be read."""
        if self._rec is not None:
            return self._rec
        if self._row is not None and self._indexed()[0] == self._stamp:
            self._rec = _cached_record(self._indexed()[1], self._id, self._index.trusted)
        self.from_index = self._rec is not None
        if self._rec is None:
            try:
                self._rec = _slim(read_record(Path(self._dir), self._listed), self._id)
            except BadRecordError as e:
                warn_bad(e)
                raise _Gone from None
            except RunNotFoundError:
                raise _Gone from None
            if self._stamp is not None:
                rec = self._rec
                self._index.records.append((self._id, self._stamp, *(rec[c] for c in COLUMNS), _stored(rec)))
        return self._rec

    def summary(self) -> dict[str, Any]:
        """The run's scalar summary (``_scalars.summarize``), from the index while the stamp of
        its scalars.jsonl matches."""
        s_stamp = _stamp(f"{self._dir}/scalars.jsonl") or 0
        indexed = self._indexed() if self._index.rows.get(self._id) is not None else _NOTHING
        summary = _cached_summary(indexed[3], self._index.trusted) if indexed[2] == s_stamp else None
        if summary is None:
            summary = summarize(Path(self._dir, "scalars.jsonl"))
            self._index.summaries.append((s_stamp, json.dumps(summary), self._id))
        return summary

    def get(self, key: str, default: Any = None) -> Any:
        at = self._AT.get(key)
        if at is not None and self.as_indexed():
            return bool(self._row[at]) if key == "is_batch" else self._row[at]  # type: ignore[index]
        if key == "id":
            return self._id
        return self.record().get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key in self._AT or key == "id":
            return self.get(key)
        return self.record()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.record())

    def __len__(self) -> int:
        return len(self.record())


def load_records(
    runs: RunList,
    ids: Sequence[str] | None = None,
    scalars: bool = False,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(run dir name, summary record, scalar summary)`` for ``ids`` (default: all of ``runs``), in order.

    The records hold the summary fields of ``run.json`` only (no op_def, hook trace or attrs),
    validated, with liveness-derived status; ``where`` filters on them (given a read-only
    mapping of the record). The scalar summary is {} unless ``scalars``. Runs whose run.json
    vanished are skipped; bad records are skipped with a warning.
    """
    root = str(runs.dir)
    index = _Index(runs.dir)
    if ids is None:
        runs.report_strays()
    out = []
    for run_id in runs.ids if ids is None else filter(is_run_id, ids):
        entry = _Entry(index, run_id, f"{root}/{run_id}", listed=ids is None)
        try:
            if entry.as_indexed() and where is not None and not where(entry):
                continue  # an ended run that the indexed columns rule out: nothing decoded
            now = entry.record()
            if not (entry.as_indexed() and entry.from_index):  # read from its file, or not known ended
                if now["status"] not in ENDED:  # (an ended record is as it stands)
                    now = as_it_stands(now, Path(root, run_id), read_record)
                if where is not None and not where(now):
                    continue
        except _Gone:
            continue
        out.append((run_id, now, entry.summary() if scalars else {}))
    index.flush(keep=set(runs.ids))
    return out


def load_summaries(
    runs: RunList,
    ids: Sequence[str] | None = None,
    scalars: bool = False,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[tuple[Run, dict[str, Any]]]:
    """As ``load_records``, with each record as a Run (summary fields only: use ``load_run`` for a
    whole record)."""
    return [(run_from_record(runs.dir / name, rec), summary)
            for name, rec, summary in load_records(runs, ids, scalars, where)]
