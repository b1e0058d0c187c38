"""The filter's own table in the runs index: a filter over 100k runs without decoding 100k records.

``candidates`` narrows a runs dir to the runs that may match a filter, from a table of the few
things a filter asks about each run (op, status, label, tags, times, flags, scalar last/min/max,
notes), each row small and keyed, like ``_index``'s, by the ``stat`` of its files. The answer
only narrows: the commands then load the candidates through ``_index.load_records`` (validated,
status derived now) and apply the filter again, so a row can make a command slower, never wrong.
A run whose files changed since its row was written (the stamps) is read now, through
``load_records``, and its row written again; a run whose status may change without its record
changing (staged, pending, running: liveness is derived on read) is a candidate whatever its row
says; the rows of an index another user owns are not used at all.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from typing import TYPE_CHECKING, Any, Sequence

from ._index import INDEX_NAME, _plain_or_absent, _stamp, load_records
from ._run_facts import MISSING, RunFacts, facts_from_record

if TYPE_CHECKING:
    from ._filter import Filter
    from ._filter_syntax import Term
    from ._selection import RunList

# One row per run (its attributes), and one per flag and per scalar of a run, clustered by name:
# a filter on `lr` reads the `lr` rows only, never decoding a whole record.
# v2: a NaN scalar is kept as the text 'NaN' (SQLite stores a NaN float as NULL: a missing value).
_RUNS = "filter_runs_v2"
_FLAGS = "filter_flags_v2"
_SCALARS = "filter_scalars_v2"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_RUNS} (id PRIMARY KEY, stamp, s_stamp, op, status, label, tags, started, stopped,"
    " time, notes)",
    f"CREATE TABLE IF NOT EXISTS {_FLAGS} (name, id, value, is_json, PRIMARY KEY (name, id)) WITHOUT ROWID",
    f"CREATE TABLE IF NOT EXISTS {_SCALARS} (name, id, last, min, max, PRIMARY KEY (name, id)) WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {_FLAGS}_id ON {_FLAGS} (id)",  # to drop a run's rows
    f"CREATE INDEX IF NOT EXISTS {_SCALARS}_id ON {_SCALARS} (id)",
)
_VOLATILE = ("staged", "pending", "running")
_BY_ID = 900  # at most this many ids a query names (SQLite's bound on parameters is 999 in old builds)
# A row's columns after id, stamp and s_stamp (``status`` always read: a volatile one is a candidate).
_COLUMN_OF = {"tag": "tags", "note": "notes"}  # an attribute's column, where they differ
# Each with what stands for it when the filter does not ask about it (no need to read it).
_ATTR_COLUMNS = {"op": "''", "status": "status", "label": "''", "tags": "'[]'", "started": "NULL", "stopped": "NULL",
                 "time": "NULL", "notes": "''"}


def _connect(runs: RunList) -> sqlite3.Connection | None:
    path = str(runs.dir / INDEX_NAME)
    if not all(_plain_or_absent(path + end) for end in ("", "-journal", "-wal", "-shm")):
        return None  # SQLite would follow a link planted there
    try:
        db = sqlite3.connect(path, timeout=5, isolation_level=None)
        db.execute("PRAGMA synchronous=OFF")  # a cache: losing it on power loss is harmless
        for statement in _SCHEMA:
            db.execute(statement)
        if os.stat(path).st_uid != os.geteuid():
            db.close()  # another user's rows may say anything: no shortcut
            return None
        return db
    except (sqlite3.Error, OSError):
        return None


def candidates(
    runs: RunList, filt: Filter, ids: Sequence[str] | None = None, seen: set[Term] | None = None
) -> list[str] | None:
    """The names among ``ids`` (default: every run of ``runs``), in order, that may match ``filt``:
    all but those whose up-to-date rows say they do not. None when the index cannot be used.
    ``seen`` gets the filter's flag and scalar terms that some row has (``_filter.warn_unknown``).
    Only the rows of ``ids`` are read (the newest few of 100k runs: a few rows)."""
    db = _connect(runs)
    if db is None:
        return None
    terms = set(filt.terms())
    scalars = filt.uses_scalars()
    try:
        asked = {_COLUMN_OF.get(a, a) for a in filt.attributes()}  # only the columns it asks about
        cols = ", ".join(c if c in asked or c == "status" else d for c, d in _ATTR_COLUMNS.items())
        among, params = _among(ids)
        rows = {r[0]: r for r in db.execute(f"SELECT id, stamp, s_stamp, {cols} FROM {_RUNS}{among}", params)}
        flags = {n: _values(db, _FLAGS, n, ids) for n in {t.name for t in terms if t.kind != "scalar"}}
        by_name = {n: _values(db, _SCALARS, n, ids) for n in {t.name for t in terms if t.kind != "flag"}}
        wanted = runs.ids if ids is None else ids
        keep: dict[str, bool] = {}
        stale: list[tuple[str, int, int]] = []
        root = str(runs.dir)
        for name in wanted:
            row = rows.get(name)
            stamp = _stamp(f"{root}/{name}/run.json")
            if stamp is None:
                continue  # gone (or never a run): load_records skips it too
            s_stamp = _stamp(f"{root}/{name}/scalars.jsonl") or 0 if scalars or row is None or row[1] != stamp else None
            if row is None or row[1] != stamp or (s_stamp is not None and row[2] != s_stamp):
                stale.append((name, stamp, s_stamp or 0))
                continue
            facts = RunFacts(
                id=name, op=row[3], status=row[4], label=row[5], started=row[7], stopped=row[8], time=row[9],
                tags=() if row[6] == "[]" else tuple(json.loads(row[6])), notes=row[10],
                flags={n: v[name] for n, v in flags.items() if name in v},
                scalars={n: v[name] for n, v in by_name.items() if name in v})
            keep[name] = row[4] in _VOLATILE or filt.matches(facts)
            if seen is not None and len(seen) < len(terms):
                seen.update(t for t in terms if filt.lookup(t, facts) is not MISSING)
        for facts in _refresh(db, runs, stale, gone=rows.keys() - set(runs.ids) if ids is None else set()):
            keep[facts.id] = facts.status in _VOLATILE or filt.matches(facts)  # read just now: as good as a row
            if seen is not None:
                seen.update(t for t in terms if filt.lookup(t, facts) is not MISSING)
        return [name for name in wanted if keep.get(name)]
    except (sqlite3.Error, ValueError, TypeError, IndexError):
        return None  # a damaged table: the slow way, this once
    finally:
        db.close()


def _among(ids: Sequence[str] | None, name: bool = False) -> tuple[str, list[Any]]:
    """A query's condition that keeps the rows of ``ids`` (None: all; a few: by id; more: their
    range, as ids sort), and its parameters; ``name``: after a ``name = ?``."""
    if ids is None:
        return (" WHERE name = ?" if name else ""), []
    start = " WHERE name = ? AND" if name else " WHERE"
    if len(ids) <= _BY_ID:
        return f"{start} id IN ({','.join('?' * len(ids))})", list(ids)
    return f"{start} id BETWEEN ? AND ?", [min(ids), max(ids)]


def _values(db: sqlite3.Connection, table: str, name: str, ids: Sequence[str] | None) -> dict[str, Any]:
    among, params = _among(ids, name=True)
    if table == _FLAGS:
        return {i: json.loads(v) if j else v for i, v, j in
                db.execute(f"SELECT id, value, is_json FROM {table}{among}", [name, *params])}
    return {i: (_nan(a), _nan(b), _nan(c))
            for i, a, b, c in db.execute(f"SELECT id, last, min, max FROM {table}{among}", [name, *params])}


def _nan(v: Any) -> Any:
    return math.nan if v == "NaN" else v


def _refresh(
    db: sqlite3.Connection, runs: RunList, stale: list[tuple[str, int, int]], gone: set[str]
) -> list[RunFacts]:
    """Rows for the ``stale`` runs (name, the stamps seen *before* reading, so a change made while
    reading is seen next time), whose facts are returned; drop the rows of the runs ``gone``."""
    if not stale and not gone:
        return []
    made = []
    stamps = {name: (stamp, s_stamp) for name, stamp, s_stamp in stale}
    run_rows, flag_rows, scalar_rows = [], [], []
    for name, rec, summary in load_records(runs, list(stamps), scalars=True):
        f = facts_from_record({**rec, "id": name}, summary)
        made.append(f)
        run_rows.append((name, *stamps[name], f.op, f.status, f.label, json.dumps(f.tags), f.started, f.stopped,
                         f.time, f.notes))
        flag_rows += [(k, name, *_stored(v)) for k, v in f.flags.items()]
        scalar_rows += [(k, name, *("NaN" if x != x else x for x in v)) for k, v in f.scalars.items()]
    dropped = [(n,) for n in [*stamps, *gone]]
    try:
        db.execute("BEGIN")
        for table in (_RUNS, _FLAGS, _SCALARS):
            db.executemany(f"DELETE FROM {table} WHERE id = ?", dropped)
        db.executemany(f"INSERT INTO {_RUNS} VALUES (?,?,?,?,?,?,?,?,?,?,?)", run_rows)
        db.executemany(f"INSERT INTO {_FLAGS} VALUES (?,?,?,?)", flag_rows)
        db.executemany(f"INSERT INTO {_SCALARS} VALUES (?,?,?,?,?)", scalar_rows)
        db.execute("COMMIT")
    except sqlite3.Error:  # a busy or read-only index: next time, then
        if db.in_transaction:
            db.execute("ROLLBACK")
    return made


def _stored(v: Any) -> tuple[Any, int]:
    """A flag value as SQLite keeps it: a number or a text as itself, anything else (a bool, null,
    a list) as JSON, so that it reads back as the same Python value."""
    if type(v) is str or (type(v) is int and abs(v) < 1 << 63) or (type(v) is float and math.isfinite(v)):
        return v, 0
    return json.dumps(v, default=str), 1
