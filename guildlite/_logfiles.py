"""Scalars from the logs a job already writes in its run dir: TensorBoard event files (PyTorch's
``SummaryWriter``, Lightning's ``TensorBoardLogger``, the HF Trainer's TensorBoard callback) and
Lightning's ``CSVLogger`` ``metrics.csv``, read as they grow.

``LogFiles(run_dir).poll()`` returns the rows (``{"step", "key", "value", "time"}``, as in
``scalars.jsonl``) written since the last poll. Every file is read from where the last poll
stopped, so a poll costs what is new, not what is there. The run dir is untrusted and the job
writes while we read: files are opened through ``_runfiles`` (a symlink that leads out of the run
dir, a FIFO or a device is never opened), directory symlinks are not followed, a partly written
last record or line waits for the next poll, and a corrupt file is given up with its reason
(``problems``). A poll never raises for what it finds on disk.

Keys: an event's tag, a CSV column. ``SummaryWriter.add_scalars("lr", {"head": ...})`` writes
the tag ``lr`` into a sub-dir ``lr_head/`` of the writer's own dir: an event file in a dir named
``<tag>_<name>`` whose parent dir holds an event file too gives the key ``<tag>/<name>``
(``lr/head``). Dirs named ``rank<N>`` (N > 0) are another rank's: skipped, as
other ranks' output is. A key reported by one kind of file (events, CSV) is that kind's: the same
metric from the other kind (Lightning with both loggers) is not recorded twice. Log files that
staging copied in from the project (an old ``lightning_logs/`` or ``runs/``) are not the run's:
skipped while they keep the size they were staged with.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ._runfiles import RunFileError, open_file, read_bytes
from ._tfevents import EventStream

if TYPE_CHECKING:
    from ._live import ScalarSource
    from ._run import Run

POLL_BYTES = 256 << 10  # read per poll (10 a second): a large backlog is caught up over several polls
FINISH_BYTES = 8 << 20  # read per step of ``finish``
RESCAN_SECONDS = 2.0  # how often a poll looks for new files
MAX_DEPTH = 12
MAX_ENTRIES = 50_000  # dir entries looked at per scan
MAX_KEY = 256  # longer tags or columns are not scalars
MAX_FILES = 1000  # log files followed in one run dir
MAX_KEYS = 5000  # keys whose owner (events or CSV) is kept in the state
MAX_CSV_LINE = 1 << 20
MAX_MANIFEST = 64 << 20  # the source manifest read to know which log files were copied in
_SKIP_DIRS = frozenset({".guildlite", ".git", "__pycache__", "node_modules", ".trash"})
_OTHER_RANK = re.compile(r"rank[_-]?0*[1-9]\d*")
CSV_NAME = "metrics.csv"


def _is_events(name: str) -> bool:
    return "tfevents" in name  # TensorBoard's own rule


@dataclass
class _Csv:
    """One ``metrics.csv``: Lightning appends rows, and rewrites the whole file (in place) with a
    wider header when a new metric appears. Rows are counted, so a rewrite re-reads the file and
    reports only the rows past those already reported."""

    offset: int = 0
    header: bytes | None = None
    columns: list[str] = field(default_factory=list)
    rows_read: int = 0  # data rows of the file as it is now, up to offset
    reported: int = 0  # data rows already turned into scalars


@dataclass
class _File:
    rel: str
    kind: str  # "events" or "csv"
    sub: str = ""  # the dir's name when it may be an add_scalars sub-writer's (its parent has event files)
    events: EventStream = field(default_factory=EventStream)
    csv: _Csv = field(default_factory=_Csv)
    ino: int = -1  # the inode read: another one is another file, read from its start
    dead: str | None = None
    seen: tuple[int, int, int] | None = None  # (inode, size, mtime) when the last read got to the end

    def saved(self) -> list[Any]:
        return [self.ino, self.events.offset if self.kind == "events" else self.csv.reported, self.sub, self.dead]

    @classmethod
    def restore(cls, rel: str, saved: Any) -> _File | None:
        name = rel.rsplit("/", 1)[-1]
        kind = "events" if _is_events(name) else "csv" if name == CSV_NAME else None
        if kind is None or not isinstance(saved, list) or len(saved) != 4:
            return None
        ino, pos, sub, dead = saved
        if not (isinstance(ino, int) and isinstance(pos, int) and pos >= 0 and isinstance(sub, str)):
            return None
        f = cls(rel, kind, sub, ino=ino, dead=dead if isinstance(dead, str) else None)
        if kind == "events":
            f.events.offset = pos
        else:
            f.csv.reported = pos
        return f


class LogFiles:
    """The scalar source over one run dir's TensorBoard and CSV logs (see the module), going on
    from ``state`` (what ``state()`` returned: the live capture keeps it between readers)."""

    name = "logfiles"

    def __init__(self, run_dir: Path | str, state: Any = None, rescan_seconds: float = RESCAN_SECONDS) -> None:
        self.run_dir = Path(run_dir)
        self.rescan_seconds = rescan_seconds
        self._files: dict[str, _File] = {}
        self._scanned = float("-inf")
        self._owner: dict[str, str] = {}  # key -> the kind of file that reported it first
        self._turn = 0  # the file a poll starts with: a large backlog in one never starves the others
        self.rows = 0  # rows reported in all
        state = state if isinstance(state, dict) else {}
        for rel, saved in (state.get("files") or {}).items() if isinstance(state.get("files"), dict) else ():
            f = _File.restore(rel, saved) if isinstance(rel, str) else None
            if f is not None:
                self._files[rel] = f
        owner = state.get("owner")
        if isinstance(owner, dict):
            self._owner = {k: v for k, v in owner.items() if isinstance(k, str) and v in ("events", "csv")}
        self.rows = state.get("rows") if isinstance(state.get("rows"), int) else 0
        self._staged: dict[str, int] | None = None  # log files copied in as source: path -> size

    def _staged_logs(self) -> dict[str, int]:
        """The log files staging copied from the project (``.guildlite/sourcecode.json``), by size:
        an old ``lightning_logs/`` or ``runs/`` of the project is not this run's (until changed)."""
        if self._staged is None:
            self._staged = {}
            try:
                data, size = read_bytes(self.run_dir, ".guildlite/sourcecode.json", MAX_MANIFEST)
                files = json.loads(data).get("files") if size <= MAX_MANIFEST else None
            except (RunFileError, OSError, ValueError, AttributeError):
                files = None
            for f in files if isinstance(files, list) else ():
                rel, n = (f.get("path"), f.get("size")) if isinstance(f, dict) else (None, None)
                if isinstance(rel, str) and isinstance(n, int) and (_is_events(rel) or rel.endswith(CSV_NAME)):
                    self._staged[rel] = n
        return self._staged

    def state(self) -> dict[str, Any]:
        """Where each file is (a few bytes per file and key: it lives in ``.guildlite/capture.json``)."""
        files = dict(sorted(self._files.items())[:MAX_FILES])
        return {"files": {rel: f.saved() for rel, f in files.items()},
                "owner": dict(list(self._owner.items())[:MAX_KEYS]), "rows": self.rows}

    @property
    def problems(self) -> dict[str, str]:
        """Files given up, by path relative to the run dir, with the reason."""
        return {f.rel: f.dead for f in self._files.values() if f.dead}

    @property
    def note(self) -> str | None:
        """Why some files give no rows (None when all are read)."""
        bad = self.problems
        return "; ".join(f"{rel}: {why}" for rel, why in list(bad.items())[:5]) if bad else None

    def poll(self, budget: int = POLL_BYTES) -> list[dict[str, Any]]:
        """Rows written since the last poll, reading about ``budget`` bytes in all at most."""
        return self._poll(budget)[0]

    def finish(self) -> list[dict[str, Any]]:
        """Every row not reported yet (a scan for new files first): what is left at a run's end."""
        self._scanned = float("-inf")
        rows: list[dict[str, Any]] = []
        while True:
            batch, moved = self._poll(FINISH_BYTES)
            rows.extend(batch)
            if not moved:
                return rows

    def _poll(self, budget: int) -> tuple[list[dict[str, Any]], int]:
        now = time.monotonic()
        if now - self._scanned >= self.rescan_seconds:
            self._scanned = now
            self._scan()
        rows: list[dict[str, Any]] = []
        files = sorted(self._files.values(), key=lambda f: f.rel)
        moved = 0
        self._turn = (self._turn + 1) % max(1, len(files))
        for f in files[self._turn :] + files[: self._turn]:
            if f.dead is not None:
                continue
            got, n = self._read(f, budget - moved)
            rows.extend(got)
            moved += n
            if moved >= budget:
                break
        self.rows += len(rows)
        return rows, moved

    def _scan(self) -> None:
        found: list[tuple[str, str]] = []
        seen = 0
        stack = [("", 0)]
        while stack and seen < MAX_ENTRIES:
            rel_dir, depth = stack.pop()
            try:
                with os.scandir(self.run_dir / rel_dir if rel_dir else self.run_dir) as it:
                    entries = list(itertools.islice(it, MAX_ENTRIES - seen))
            except OSError:
                continue
            for e in entries:
                seen += 1
                rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if depth < MAX_DEPTH and e.name not in _SKIP_DIRS and not _OTHER_RANK.fullmatch(e.name):
                            stack.append((rel, depth + 1))
                    elif (rel not in self._files and (_is_events(e.name) or e.name == CSV_NAME)
                          and len(self._files) + len(found) < MAX_FILES):
                        found.append((rel, "events" if _is_events(e.name) else "csv"))
                except OSError:
                    continue
        event_dirs = {os.path.dirname(r) for r, _ in self._files.items() if self._files[r].kind == "events"}
        event_dirs |= {os.path.dirname(r) for r, k in found if k == "events"}
        for rel, kind in found:
            parent = os.path.dirname(os.path.dirname(rel)) if "/" in rel else None
            sub = os.path.basename(os.path.dirname(rel)) if kind == "events" and parent in event_dirs else ""
            self._files[rel] = _File(rel, kind, sub)

    def _read(self, f: _File, budget: int) -> tuple[list[dict[str, Any]], int]:
        """The new rows of one file, and how many bytes it moved on."""
        try:  # a stat costs less than a checked open: a file unchanged since it was read to its end is left
            st = os.stat(os.path.join(self.run_dir, f.rel))
            if f.seen == (st.st_ino, st.st_size, st.st_mtime_ns):
                return [], 0
        except OSError:
            pass  # the open below says why
        try:
            fh = open_file(self.run_dir, f.rel)
        except RunFileError as e:
            if not e.missing:
                f.dead = e.reason
            return [], 0
        try:
            with fh:
                st = os.fstat(fh.fileno())
                if f.ino == -1 and self._staged_logs().get(f.rel) == st.st_size:
                    f.seen = (st.st_ino, st.st_size, st.st_mtime_ns)
                    return [], 0  # copied in as source, unchanged since
                if st.st_ino != f.ino:  # a file made anew (or seen for the first time): from its start
                    f.ino, f.events, f.csv = st.st_ino, EventStream(), _Csv()
                if f.kind == "events":
                    if st.st_size < f.events.offset:  # cut short: another file now
                        f.events = EventStream()
                    before = f.events.offset
                    rows: list[dict[str, Any]] = [
                        s.row(_key(f.sub, s.tag))
                        for s in f.events.advance(fh, st.st_size, budget) if 0 < len(s.tag) <= MAX_KEY]
                    f.dead, moved = f.events.dead, f.events.offset - before
                else:
                    rows, moved = _read_csv(f.csv, fh, st.st_size, budget)
                f.seen = (st.st_ino, st.st_size, st.st_mtime_ns) if moved < budget else None
        except Exception as e:  # whatever one file holds (a reader bug included), the others are still read
            f.dead = f"unreadable: {type(e).__name__}: {e}"[:500]
            return [], 0
        return [r for r in rows if self._owner.setdefault(r["key"], f.kind) == f.kind], moved


def log_sources(run: Run, states: Mapping[str, Any]) -> list[ScalarSource]:
    """The run's log files as one scalar source of its live capture (``_live.SOURCE_MAKERS``)."""
    return [LogFiles(run.run_dir, states.get(LogFiles.name))]


def _key(sub: str, tag: str) -> str:
    """The key of ``tag`` in an event file of dir ``sub`` (see the module: add_scalars' sub-dirs)."""
    stem = tag.replace("/", "_") + "_"  # how SummaryWriter.add_scalars names its sub-writers' dirs
    return f"{tag}/{sub[len(stem):]}" if sub.startswith(stem) and len(sub) > len(stem) else tag


def _line_ends(chunk: bytes) -> list[int]:
    """Where each whole CSV record of ``chunk`` ends: after a newline outside quotes."""
    ends, quotes, pos = [], 0, 0
    while (nl := chunk.find(b"\n", pos)) != -1:
        quotes += chunk.count(b'"', pos, nl)
        pos = nl + 1
        if quotes % 2 == 0:
            ends.append(pos)
    return ends


_NONFINITE = frozenset({"nan", "inf", "-inf", "+inf", "infinity", "-infinity"})


def _read_csv(c: _Csv, fh: Any, size: int, budget: int) -> tuple[list[dict[str, Any]], int]:
    """The new rows of a ``metrics.csv``, and how many bytes were read to find them."""
    if c.header is not None:
        fh.seek(0)
        if size < c.offset or fh.read(len(c.header)) != c.header:  # rewritten: read it again
            c.offset, c.header, c.columns, c.rows_read = 0, None, [], 0
    fh.seek(c.offset)
    chunk = fh.read(max(0, min(size - c.offset, max(budget, MAX_CSV_LINE))))
    ends = _line_ends(chunk)
    if not ends:
        if len(chunk) >= MAX_CSV_LINE:
            raise ValueError(f"a line longer than {MAX_CSV_LINE} bytes")
        return [], 0
    try:
        records = list(csv.reader(io.StringIO(chunk[: ends[-1]].decode("utf-8", "replace"), newline="")))
    except csv.Error as e:
        raise ValueError(f"not CSV: {e}") from None
    c.offset += ends[-1]
    if c.header is None:
        c.header, c.columns, records = chunk[: ends[0]], records[0] if records else [], records[1:]
    rows: list[dict[str, Any]] = []
    if "step" not in c.columns:
        return rows, ends[-1]  # not a metrics log (a data file that happens to be called metrics.csv)
    step_at = c.columns.index("step")
    for rec in records:
        index = c.rows_read
        c.rows_read += 1
        if index < c.reported:
            continue  # reported before Lightning rewrote the file
        c.reported = index + 1
        step = _number(rec[step_at]) if step_at < len(rec) else None
        step_int = int(step) if step is not None and abs(step) < 2**63 else index
        for name, cell in zip(c.columns, rec):
            if name == "step" or not cell or not name or len(name) > MAX_KEY:
                continue
            v = _number(cell)
            if v is not None or cell.strip().lower() in _NONFINITE:
                rows.append({"step": step_int, "key": name, "value": v})
    return rows, ends[-1]


def _number(text: str) -> float | None:
    """The finite number ``text`` holds, else None."""
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None
