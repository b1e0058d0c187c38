"""Looking at runs: compare tables, files, source and flag diffs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

from ._columns import BASE, flag_column, scalar_column
from ._errors import GuildliteError
from ._files import META_DIR
from ._run import Run
from ._runfiles import RunFileError, check_rel, listed_size, open_file, read_bytes, sha256
from ._terminal import printable

_RUN_FILES = {"run.json", "output.log", "scalars.jsonl"}
_BASE = frozenset(BASE)
MAX_MANIFEST_BYTES = 64 << 20
MAX_DIFF_BYTES = 4 << 20  # a larger file is compared by its sha256, not diffed line by line


def seconds_between(started: str | None, stopped: str | None) -> float | None:
    """Seconds from ``started`` to ``stopped`` (ISO times; to now while running)."""
    if not started:
        return None
    end = datetime.fromisoformat(stopped) if stopped else datetime.now().astimezone()
    return round((end - datetime.fromisoformat(started)).total_seconds(), 3)


def run_seconds(started: Any, stopped: Any, attempts: Any = None) -> float | None:
    """A run's time: seconds from start to stop (to now while running), plus those of its earlier
    attempts (a restarted run or batch: its time is all of them, not the last one alone)."""
    own = _seconds(started, stopped)
    if not attempts:  # (most runs: a table of 100k runs asks 100k times)
        return own
    parts = [own]
    for attempt in attempts if isinstance(attempts, list) else ():
        if isinstance(attempt, dict) and attempt.get("stopped"):  # one that never ended recorded no time
            parts.append(_seconds(attempt.get("started"), attempt["stopped"]))
    known = [p for p in parts if p is not None]
    return round(sum(known), 3) if known else None


def _seconds(started: Any, stopped: Any) -> float | None:
    try:
        return seconds_between(started, stopped) if isinstance(started, str) else None
    except (TypeError, ValueError):  # an attempt's times are not checked as the record's own are
        return None


def duration(run: Run) -> float | None:
    """The run's time (``run_seconds``)."""
    return run_seconds(run.started, run.stopped, run.attempts)


def compare_runs(
    runs_dir: Path,
    specs: Sequence[str] = (),
    *,
    op: str | None = None,
    status: str | None = None,
    label: str | None = None,
    batch: str | None = None,
    min_max: bool = False,
    sort_key: str | None = None,
    columns: str | None = None,
    filter: str | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """``compare_table`` of the runs ``specs`` select (default: all but batch runs, which have no
    scalars of their own), filtered (op, status, label text, the trials of ``batch``: a selector,
    the expression ``filter``),
    sorted by ``sort_key`` (``-col`` descending) and cut to ``columns`` (comma-separated)."""
    from ._choose import batch_id, where
    from ._index import collector_paused, load_records
    from ._selection import RunList, select_runs

    everything = RunList(runs_dir)
    ids = [r.id for r in select_runs(everything, specs)] if specs else None
    batch_run = batch_id(everything, batch)
    match = where(op, status, batch_run, label, batches=bool(specs))
    if filter:
        from ._filter import filtered_records, parse

        filt = parse(filter)
        loaded = filtered_records(everything, filt, ids, where=match)
        if not filt.uses_scalars():  # the table shows scalars: load them for the matches only
            loaded = load_records(everything, [name for name, _, _ in loaded], scalars=True)
    else:
        loaded = load_records(everything, ids, scalars=True, where=match)
    chosen = [rec for _, rec, _ in loaded if rec["id"] != batch_run]
    with collector_paused():  # a row of many objects per run, none in a cycle
        cols, rows = compare_table(chosen, {rec["id"]: sc for _, rec, sc in loaded}, min_max=min_max)
    # With no run selected, the flags and scalars any run would add are unknown: a column named
    # by --sort or --columns may well be one of them, so it is not called unknown.
    if sort_key and rows:
        if sort_key.lstrip("-") not in cols:
            raise GuildliteError(f"--sort: no column {sort_key.lstrip('-')!r}; columns: {', '.join(cols)}", exit_code=2)
        rows = sort_rows(rows, sort_key)
    if columns:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in cols]
        if unknown and rows:
            raise GuildliteError(f"--columns: no column {unknown[0]!r}; columns: {', '.join(cols)}", exit_code=2)
        cols = wanted
    return cols, rows


def compare_table(
    records: Sequence[Mapping[str, Any]], scalars: Mapping[str, dict[str, Any]], min_max: bool = False
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per run record: id, op, status, started, time, every flag, every scalar.

    ``scalars`` maps run ids to scalar summaries (``load_records(..., scalars=True)``).
    """
    flag_cols: dict[str, None] = {}
    scalar_cols: dict[str, None] = {}
    # The table's flag names (for its scalars' names), from each distinct set of them: runs share a few.
    flag_names = {k for names in {tuple(rec.get("flags") or ()) for rec in records} for k in names}
    renamed = not flag_names.isdisjoint(BASE)  # a flag named like a base column keeps its own
    columns: dict[str, str] = {}  # a scalar's column, by its name
    rows = []
    for rec in records:
        flags = rec.get("flags") or {}
        row: dict[str, Any] = {
            "id": rec.get("id"),
            "op": rec.get("op"),
            "status": rec.get("status"),
            "started": rec.get("started"),
            "time": run_seconds(rec.get("started"), rec.get("stopped"), rec.get("attempts")),
            "label": rec.get("label"),
            "batch": rec.get("parent"),
        }
        if renamed and not _BASE.isdisjoint(flags):
            flags = {flag_column(k): v for k, v in flags.items()}
        flag_cols.update(dict.fromkeys(flags))
        row.update(flags)
        for key, s in scalars.get(row["id"], {}).items():
            col = columns.get(key) or columns.setdefault(key, scalar_column(key, flag_names))
            if min_max:
                cells = {col: s["last"], f"{col}.min": s["min"], f"{col}.max": s["max"]}
                scalar_cols.update(dict.fromkeys(cells))
                row.update(cells)
            else:
                scalar_cols[col] = None
                row[col] = s["last"]
        rows.append(row)
    return [*BASE, *flag_cols, *scalar_cols], rows


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Sort by a column (``-col`` for descending); rows without a value go last."""
    desc = key.startswith("-")
    col = key.lstrip("-")
    have = [r for r in rows if r.get(col) is not None]
    missing = [r for r in rows if r.get(col) is None]
    try:
        have.sort(key=lambda r: r[col], reverse=desc)
    except TypeError:
        have.sort(key=lambda r: str(r[col]), reverse=desc)
    return have + missing


def run_files(run: Run, include_meta: bool = False) -> list[tuple[str, int]]:
    """Every file in the run dir (relative path, size), sorted; ``.guildlite/`` only on request.

    Symlinked dirs are not entered; a symlink's size is its target's only when the target lies
    inside the run dir (``_runfiles.listed_size``).
    """
    base = os.path.realpath(run.run_dir)
    out = []
    for root, dirs, files in os.walk(base):
        if not include_meta:
            dirs[:] = [d for d in dirs if d != META_DIR]
        for name in files:
            p = os.path.join(root, name)
            try:
                out.append((Path(p).relative_to(base).as_posix(), listed_size(base, p)))
            except OSError:
                continue
    return sorted(out)


def open_run_file(run: Run, rel: str) -> BinaryIO:
    """``rel`` of the run, opened for binary reading: a regular file inside the run dir only
    (``_runfiles.open_file``); a clear GuildliteError otherwise."""
    try:
        return open_file(run.run_dir, rel)
    except RunFileError as e:
        if e.missing:
            raise GuildliteError(f"run {run.id} has no file {rel!r} (see: guildlite ls {run.id})", exit_code=2) from None
        if e.reason.startswith("outside"):
            raise GuildliteError(f"{rel!r} is {e.reason}", exit_code=2) from None
        raise GuildliteError(f"run {run.id}: cannot read {rel!r}: {e.reason}", exit_code=2) from None


def copy_run_file(run: Run, rel: str, out: BinaryIO, max_bytes: int = 0) -> None:
    """Write ``rel`` of the run (see ``open_run_file``) to ``out``, at most ``max_bytes`` of it (0: all);
    a GuildliteError, once that much is written, when the file is longer."""
    left = max_bytes or -1
    with open_run_file(run, rel) as f:
        while left and (chunk := f.read(1 << 16 if left < 0 else min(left, 1 << 16))):
            out.write(chunk)
            left -= len(chunk) if left > 0 else 0
        cut = left == 0 and f.read(1) != b""
        size = os.fstat(f.fileno()).st_size
    if cut:
        raise GuildliteError(f"{rel!r} of run {run.id} cut after {max_bytes} bytes of {size} "
                             "(--max-bytes N for more, 0 for all)")


def source_files(run: Run) -> tuple[list[str], list[str]]:
    """The run's staged source files, from its manifest, else every file but guildlite's own;
    and a note for each manifest entry that is not a path inside the run dir (never read)."""
    manifest = run.paths.manifest.relative_to(run.run_dir).as_posix()
    try:
        data, size = read_bytes(run.run_dir, manifest, MAX_MANIFEST_BYTES)
        if size > MAX_MANIFEST_BYTES:
            raise ValueError("cut")
        paths = [f["path"] for f in json.loads(data)["files"]]
    except (RunFileError, ValueError, KeyError, TypeError):  # no (whole) manifest: list the run dir
        return [rel for rel, _ in run_files(run) if rel not in _RUN_FILES and not rel.startswith("scalars.")], []
    good, notes = [], []
    for p in paths:
        try:
            if not isinstance(p, str):
                raise RunFileError(repr(p), "not a path")
            check_rel(p)
            good.append(p)
        except RunFileError as e:
            notes.append(f"Skipped {run.id}/{manifest} entry {e}\n")
    return good, notes


def project_dir(run: Run, guildfile: Path | None = None) -> Path:
    """The project dir to diff ``run`` against: the one of the guildfile in use (``guildfile``,
    else found from the current dir), and only when the run was staged from it. The dir the
    record names is never read by itself: a record made elsewhere could name any dir."""
    from ._guildfile import find_guildfile

    source = run.attrs.get("sourcecode")
    recorded = source.get("root") if isinstance(source, dict) else None
    if not isinstance(recorded, str) or not os.path.isdir(recorded):
        raise GuildliteError(f"the project dir of run {run.id} ({recorded}) is gone", exit_code=2)
    found = guildfile or find_guildfile()
    here = found.resolve().parent if found is not None else None
    if here is None or here != Path(recorded).resolve():
        raise GuildliteError(
            f"run {run.id} was staged from {recorded}, not from this project ({here or 'no guildfile.yml here'}):"
            f" run diff in {recorded}", exit_code=2)
    return here


def diff_flags(a: Run, b: Run) -> list[tuple[str, Any, Any]]:
    """(flag, value in a, value in b) for every flag of either run, differences first."""
    names = list(dict.fromkeys([*a.flags, *b.flags]))
    rows = [(n, a.flags.get(n), b.flags.get(n)) for n in names]
    return sorted(rows, key=lambda r: r[1] == r[2])


def diff_trees(a: Tree, b: Tree) -> str:
    """A unified diff of two sets of files; a file that is binary, too large to diff, or may not
    be read (``_runfiles``'s rule: never its content then) gets a line of its own."""
    import difflib  # here: `compare` and `runs info` import this module too, and only `diff` needs it

    out: list[str] = []
    for rel in sorted(a.files | b.files):
        sa, sb = a.side(rel), b.side(rel)
        an, bn = f"{a.name}/{_shown(rel)}", f"{b.name}/{_shown(rel)}"
        refused = [f"Skipped {n}: {s}\n" for n, s in ((an, sa), (bn, sb)) if isinstance(s, str)]
        if refused:
            out.extend(refused)
        elif not isinstance(sa, bytes) and not isinstance(sb, bytes):  # text, or absent on one side
            out.extend(difflib.unified_diff(
                sa or [], sb or [], an if sa is not None else "/dev/null", bn if sb is not None else "/dev/null"))
        elif sa is None:
            out.append(f"Binary file {bn} added\n")
        elif sb is None:
            out.append(f"Binary file {an} removed\n")
        elif a.digest(rel) != b.digest(rel):
            out.append(f"Binary files {an} and {bn} differ\n")
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _shown(name: str) -> str:
    """A file name as printed: control characters escaped, so that a name cannot drive the terminal."""
    return printable(name)


@dataclass(frozen=True)
class Tree:
    """One side of a diff: ``files`` (relative paths) under ``base``, shown as ``name/PATH``."""

    base: Path
    files: frozenset[str]
    name: str
    where: str = "run directory"

    def side(self, rel: str) -> list[str] | bytes | str | None:
        """Text lines; bytes for binary (or too large) content; None when absent; a str saying
        why the file may not be read."""
        if rel not in self.files:
            return None
        try:
            data, size = read_bytes(self.base, rel, MAX_DIFF_BYTES, self.where)
        except RunFileError as e:
            return None if e.missing else e.reason
        if size > len(data):
            return data
        try:
            return data.decode("utf-8").splitlines(keepends=True)
        except UnicodeDecodeError:
            return data

    def digest(self, rel: str) -> str:
        try:
            return sha256(self.base, rel, self.where)
        except RunFileError as e:
            return e.reason
