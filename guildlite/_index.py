"""A derived cache of run summaries, so listing and comparing many runs stays fast.

The run directories stay the source of truth. Each entry is keyed by the ``stat`` of the file
it summarises (``run.json``, ``scalars.jsonl``): an entry whose file changed is read again, an
entry whose run is gone is dropped, and a missing, corrupt or unwritable index only costs speed
(delete ``runs/.index.sqlite`` any time). Liveness-derived status is applied after reading, as
for any record, so the index never holds a stale "running".

Once the index is warm, a listing pays one ``lstat`` per run it looks at (its run.json's stamp)
and little more: the fields most filters read (``COLUMNS``) are columns of their own, so ``runs
--status error`` decodes no record it does not show; a record is stored slim (the fields listings
need, those at their default left out) and decoded only when its run is shown, the records of a
listing in one call of the decoder. A listing of the newest few (``limit``) looks at the newest
runs, a growing chunk at a time, until it has them: not at 100k.

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

import gc
import json
import os
import sqlite3
import stat
from contextlib import contextmanager
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
_NARROW = "id, stamp, " + ", ".join(COLUMNS)
_SCHEMA = f"{_NARROW}, rec, s_stamp, scalars"
# An entry as read: (id, stamp, *COLUMNS, rec, s_stamp, scalars).
_STATUS, _REC, _S_STAMP, _SCALARS = 2, 2 + len(COLUMNS), 3 + len(COLUMNS), 4 + len(COLUMNS)
_AT = {name: i for i, name in enumerate(COLUMNS, 2)}  # a column's place in an entry
_PUT_RECORD = (f"INSERT INTO {_TABLE} ({_NARROW}, rec) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in ("stamp", *COLUMNS, "rec")))
_PUT_SUMMARY = f"UPDATE {_TABLE} SET s_stamp = ?, scalars = ? WHERE id = ?"
_BY_ID = 900  # at most this many ids a query names (SQLite's bound on parameters is 999 in old builds)
_raw_decode = json.JSONDecoder().raw_decode  # json.loads less its wrapper


def _decoded(text: Any) -> Any:
    """The JSON value that is the whole of ``text`` (ValueError or TypeError if there is none)."""
    value, end = _raw_decode(text)
    if end != len(text):
        raise ValueError("extra data")
    return value


def _all_decoded(texts: list[Any], at_once: bool) -> list[Any]:
    """Each text's JSON value (None for one that is not JSON), ``at_once`` in one decode when all
    are: the per-call cost of the decoder, paid once instead of 100k times. Only for an index this
    user owns (trusted: its records are not checked either): there a damaged text fails the decode
    or the count, but another user could write a text holding part of a value (``"x``) and one
    holding two (``1,2``), which pass the count and shift the values in between onto other runs."""
    try:
        values = _decoded("[" + ",".join(texts) + "]") if at_once else None
        if values is not None and len(values) == len(texts):
            return values  # type: ignore[no-any-return]
    except (ValueError, TypeError, RecursionError):  # (TypeError: a text that is not a str)
        pass
    out = []
    for text in texts:
        try:
            out.append(_decoded(text))
        except (ValueError, TypeError, RecursionError):
            out.append(None)
    return out


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused (as it was after): reading 100k records makes millions of
    objects, none in a cycle, and each pass of the collector walks all of them (a third of the
    time of a listing of 100k runs went there)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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


def _cached_record(rec: Any, text: Any, run_id: str, trusted: bool) -> dict[str, Any] | None:
    """A record from the index (``rec``, decoded from ``text``; checked unless ``trusted``); None
    if it is not one: read the file."""
    if type(rec) is not dict or type(rec.get("op")) is not str:  # (written by _stored: always an op)
        return None
    if not trusted:
        try:
            check(rec, text)
        except (Problem, RecursionError):
            return None
        return _slim(rec, run_id)
    rec = {**_default_fields(), **rec}  # written by _stored: slim already
    rec["id"] = run_id
    return rec


def _cached_summary(summary: Any, trusted: bool) -> dict[str, Any] | None:
    """A scalar summary from the index (checked for ``summarize``'s shape unless ``trusted``)."""
    if type(summary) is not dict:
        return None
    for s in () if trusted else summary.values():
        if type(s) is not dict or any(type(s.get(k)) not in (int, float) for k in ("last", "min", "max")):
            return None
    return summary


class _Index:
    """The index of one runs dir for one listing: the entries of the runs looked at (``read``),
    the changes written at the end (``flush``)."""

    def __init__(self, runs_dir: Path) -> None:
        self.db: sqlite3.Connection | None = None
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.records: list[tuple[Any, ...]] = []  # entries to write: read from run.json this time
        self.summaries: list[tuple[Any, ...]] = []  # and scalar summaries computed this time
        self.trusted = False
        self.whole = False  # whether every entry was read (then those of runs gone are dropped)
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
                self.db.execute(f"SELECT {_SCHEMA} FROM {_TABLE} LIMIT 0")
            except sqlite3.OperationalError:  # a table of another shape: a cache, so start again
                self.db.execute(f"DROP TABLE {_TABLE}")
                self.db.execute(create)
        except (sqlite3.Error, OSError):
            self.db = None

    def read(self, ids: Sequence[str], everything: bool, dense: bool) -> None:
        """Read the entries of ``ids``: ``everything`` (they are all the runs), the whole table in
        one query; ``dense`` (a slice of all the runs), by their range of ids, which sort; else by id."""
        if self.db is None or not ids:
            return
        query = f"SELECT {_SCHEMA} FROM {_TABLE}"
        try:
            if everything:
                self.rows.update((r[0], r) for r in self.db.execute(query))
                self.whole = True
            elif dense and len(ids) > _BY_ID:
                got = self.db.execute(f"{query} WHERE id BETWEEN ? AND ?", (min(ids), max(ids)))
                self.rows.update((r[0], r) for r in got)
            else:
                for at in range(0, len(ids), _BY_ID):
                    few = ids[at:at + _BY_ID]
                    got = self.db.execute(f"{query} WHERE id IN ({','.join('?' * len(few))})", list(few))
                    self.rows.update((r[0], r) for r in got)
        except sqlite3.Error:
            pass  # a busy or damaged index: the files are read

    def flush(self, keep: set[str]) -> None:
        if self.db is None:
            return
        gone = [(k,) for k in self.rows if k not in keep] if self.whole else []
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


class _Undecodable(Exception):
    """An entry's record is not JSON: the file is read instead."""


class _Columns(Mapping[str, Any]):
    """The record a filter sees of an ended run whose entry is up to date and trusted: its
    ``COLUMNS`` (and the id) without decoding anything, any other field from the whole record."""

    __slots__ = ("_row", "_rec")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self._row = row
        self._rec: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        if self._rec is None:
            try:
                self._rec = _cached_record(_decoded(self._row[_REC]), None, self._row[0], True)
            except (ValueError, TypeError, RecursionError):
                pass
            if self._rec is None:
                raise _Undecodable
        return self._rec

    def get(self, key: str, default: Any = None) -> Any:
        at = _AT.get(key)
        if at is not None:
            return bool(self._row[at]) if key == "is_batch" else self._row[at]
        return self._row[0] if key == "id" else self.record().get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key in _AT or key == "id":
            return self.get(key)
        return self.record()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.record())

    def __len__(self) -> int:
        return len(self.record())


def _records(
    index: _Index, root: str, names: Sequence[str], listed: bool,
    where: Callable[[Mapping[str, Any]], bool] | None,
) -> list[tuple[str, dict[str, Any]]]:
    """``(name, record)`` of each of ``names`` that ``where`` keeps: from the index while the stamp
    of its run.json matches, else read from the file (and queued to be written to the index)."""
    rows, trusted = index.rows, index.trusted
    looked: list[tuple[str, int | None, tuple[Any, ...] | None]] = []  # (name, stamp, its entry if up to date)
    for name in names:
        stamp = _stamp(f"{root}/{name}/run.json")
        row = rows.get(name)
        if row is None or stamp is None or row[1] != stamp:
            looked.append((name, stamp, None))
            continue
        try:
            if trusted and row[_STATUS] in ENDED and where is not None and not where(_Columns(row)):
                continue  # an ended run that the columns rule out: nothing decoded
        except _Undecodable:
            row = None
        looked.append((name, stamp, row))
    texts = [row[_REC] for _, _, row in looked if row is not None]
    decoded = iter(_all_decoded(texts, at_once=trusted))
    out = []
    for name, stamp, row in looked:
        rec = None if row is None else _cached_record(next(decoded), row[_REC], name, trusted)
        if rec is None:
            try:
                rec = _slim(read_record(Path(root, name), listed), name)
            except BadRecordError as e:
                warn_bad(e)
                continue
            except RunNotFoundError:  # gone since listed
                continue
            if stamp is not None:
                index.records.append((name, stamp, *(rec[c] for c in COLUMNS), _stored(rec)))
        elif trusted and row[_STATUS] in ENDED:  # type: ignore[index]
            out.append((name, rec))  # as it stands (ended), and the columns said it matches
            continue
        if rec["status"] not in ENDED:  # (an ended record is as it stands)
            rec = as_it_stands(rec, Path(root, name), read_record)
        if where is None or where(rec):
            out.append((name, rec))
    return out


def _summaries(index: _Index, root: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """The scalar summary (``_scalars.summarize``) of each of ``names``: from the index while the
    stamp of its scalars.jsonl matches."""
    s_stamps = [_stamp(f"{root}/{name}/scalars.jsonl") or 0 for name in names]
    rows = [index.rows.get(name) for name in names]
    fresh = [row is not None and row[_S_STAMP] == s for row, s in zip(rows, s_stamps)]
    decoded = iter(_all_decoded([row[_SCALARS] for row, ok in zip(rows, fresh) if ok], index.trusted))  # type: ignore[index]
    out = []
    for name, s_stamp, ok in zip(names, s_stamps, fresh):
        summary = _cached_summary(next(decoded), index.trusted) if ok else None
        if summary is None:
            summary = summarize(Path(root, name, "scalars.jsonl"))
            index.summaries.append((s_stamp, json.dumps(summary), name))
        out.append(summary)
    return out


def load_records(
    runs: RunList,
    ids: Sequence[str] | None = None,
    scalars: bool = False,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
    limit: int | None = None,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(run dir name, summary record, scalar summary)`` for ``ids`` (default: all of ``runs``), in
    order, the first ``limit`` of them (None: all; the newest few of 100k runs look at a few).

    The records hold the summary fields of ``run.json`` only (no op_def, hook trace or attrs),
    validated, with liveness-derived status; ``where`` filters on them (given a read-only
    mapping of the record). The scalar summary is {} unless ``scalars``. Runs whose run.json
    vanished are skipped; bad records are skipped with a warning.
    """
    root = str(runs.dir)
    index = _Index(runs.dir)
    if ids is None:
        runs.report_strays()
    todo = runs.ids if ids is None else list(filter(is_run_id, ids))
    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    at, step = 0, len(todo) if limit is None else max(limit * 2, 64)
    with collector_paused():
        while at < len(todo) and (limit is None or len(out) < limit):  # the newest few: look at a few
            names = todo[at:at + step]
            index.read(names, everything=ids is None and len(names) == len(todo), dense=ids is None)
            found = _records(index, root, names, ids is None, where)
            shown = [name for name, _ in found]
            summaries = _summaries(index, root, shown) if scalars else [{} for _ in shown]
            out += [(name, rec, summary) for (name, rec), summary in zip(found, summaries)]
            at, step = at + step, step * 2
    index.flush(keep=set(runs.ids))
    return out[:limit]


def load_summaries(
    runs: RunList,
    ids: Sequence[str] | None = None,
    scalars: bool = False,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
    limit: int | None = None,
) -> list[tuple[Run, dict[str, Any]]]:
    """As ``load_records``, with each record as a Run (summary fields only: use ``load_run`` for a
    whole record)."""
    return [(run_from_record(runs.dir / name, rec), summary)
            for name, rec, summary in load_records(runs, ids, scalars, where, limit)]
