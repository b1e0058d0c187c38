"""Scalars while the job runs: a run's scalar sources, polled by the process that owns the run.

A *scalar source* is any object with ``poll() -> list[row]`` (rows in ``scalars.jsonl``'s format,
``{"step", "key", "value"}``), and optionally ``finish() -> list[row]`` (the job ended: what is
left), ``state() -> dict`` (where it is, kept in ``.guildlite/capture.json`` under its ``name``, so
that whoever drains it later, or a restart, goes on from there) and ``note`` (why it stopped
finding rows). The output of the job is one (``OutputSource``: the ``key: value`` rule or the op's
``output-scalars``); ``sources_for`` lists a run's sources.

``Capture`` is one run's loop: it polls every source, appends their rows to ``scalars.jsonl`` (one
``O_APPEND`` write), and reads that file back from where it started, so rows a script writes itself
(``log_scalars``) arrive the same way: ``new`` (the rows since the last ``take``) and ``latest``
(the last value of each key) are what ``on_run_progress`` hooks see. It runs in the owner's main
thread (``_lifecycle``), where the op's own regexes are bounded by a timer (``_output_scan``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping, Protocol

from ._files import RunPaths, write_meta_cache
from ._output_scan import PARTIAL_MAX, OutputScanner, Row
from ._runfiles import RunFileError, open_file
from ._scalars import OutputParser, output_rules

if TYPE_CHECKING:
    from ._run import Run

STATE_FILE = "capture.json"  # in .guildlite/: each source's state (``state()``), by name
CHUNK_BYTES = 8 << 20  # read of one source at a time: the loop keeps moving through a large log
# The op's own output-scalars regexes may backtrack catastrophically: here they run in the owner's
# main thread, bounded in all by PATTERN_SECONDS (``GUILDLITE_SCALARS_TIMEOUT``) plus 1 s per MB read.
PATTERN_SECONDS = 60.0
TIMEOUT_ENV = "GUILDLITE_SCALARS_TIMEOUT"


class ScalarSource(Protocol):
    """Where a run's scalars come from while it runs (see the module's docstring)."""

    def poll(self) -> list[Row]: ...


def pattern_seconds() -> float:
    """The op's regexes' time in all (``GUILDLITE_SCALARS_TIMEOUT``, else PATTERN_SECONDS)."""
    try:
        return float(os.environ.get(TIMEOUT_ENV) or PATTERN_SECONDS)
    except ValueError:
        return PATTERN_SECONDS


class OutputSource(OutputScanner):
    """Rows from the run's ``output.log`` as it grows (``OutputScanner``), read from where an
    earlier reader stopped: ``offset`` is just past the last line end scanned, so a later reader
    (``OutputScalars`` at the end, a restart) goes on from there.
    """

    name = "output.log"

    def __init__(self, run_dir: Path, parser: OutputParser, state: Mapping[str, Any] | None = None,
                 hosts: Callable[[], list[str]] | None = None) -> None:
        state = state or {}
        slow = (f"output-scalars: the op's patterns took more than {pattern_seconds():.0f} s (plus 1 s per MB of "
                "output) while the job ran (a pattern that backtracks catastrophically?); rows after that point "
                "are not captured")
        super().__init__(parser, pattern_seconds(), slow, per_mb=1.0, hosts=hosts,
                         offset=int(state.get("offset") or 0), note=state.get("note") or None)
        self.run_dir = run_dir
        parser.step = int(state.get("step") or 0)
        self.rows = int(state.get("rows") or 0)  # rows found in all
        self._file: BinaryIO | None = None

    def state(self) -> dict[str, Any]:
        return {"offset": self.offset, "step": self.parser.step, "note": self.note, "rows": self.rows}

    def poll(self) -> list[Row]:
        return self._read(final=False)

    def finish(self) -> list[Row]:
        rows = []
        while True:  # to the end of the log, a chunk at a time
            before = self.offset + len(self.pending)
            rows += self._read(final=False)
            if self.offset + len(self.pending) == before:
                break
        rows += self._read(final=True)
        if self._file is not None:
            self._file.close()
            self._file = None
        return rows

    def _read(self, final: bool) -> list[Row]:
        if self._file is None:
            try:
                self._file = open_file(self.run_dir, "output.log")
            except RunFileError:
                return []
        pos = self.offset + len(self.pending)
        if os.fstat(self._file.fileno()).st_size < pos:  # cut short by hand: from its start again
            self.offset, self.pending, pos = 0, b"", 0
        self._file.seek(pos)
        rows = self.feed(self._file.read(CHUNK_BYTES), final)
        self.rows += len(rows)
        return rows


def output_parser(run: Run) -> OutputParser | str:
    """The parser of ``run``'s output by its op's output-scalars rules (the live capture's and
    ``watch``'s alike); else why there is none ("" when the op turns them off)."""
    hosts = run.remote.get("hosts") if isinstance(run.remote, dict) else None
    rules = output_rules(run.op_def or {}, [str(h) for h in hosts] if isinstance(hosts, list) else [])
    if rules is None:
        return ""
    patterns, task_labels = rules
    try:
        regexes = [re.compile(p) for p in patterns] if patterns else None
    except (re.error, TypeError) as e:
        return f"bad output-scalars pattern: {e}"
    return OutputParser(run.nproc_per_node or 1, regexes, task_labels)


def output_source(run: Run, state: Mapping[str, Any] | None = None) -> OutputSource | None:
    """The source of ``run``'s output scalars by its op's rules; None when the op turns them off (or
    its patterns no longer compile)."""
    parser = output_parser(run)
    if isinstance(parser, str):
        return None
    remote = isinstance(run.remote, dict) and run.remote.get("backend") and not run.remote.get("hosts")
    return OutputSource(run.run_dir, parser, state, hosts=(lambda: recorded_hosts(run.run_dir)) if remote else None)


def recorded_hosts(run_dir: Path) -> list[str]:
    """The hosts a run's record names (``remote.hosts``: its backend records them); [] for none yet."""
    from ._errors import GuildliteError
    from ._store import read_record

    try:
        remote = read_record(run_dir).get("remote")
    except GuildliteError:
        return []
    hosts = remote.get("hosts") if isinstance(remote, dict) else None
    return [str(h) for h in hosts] if isinstance(hosts, list) else []


# Makers of a run's sources beyond its output (log files the job writes), as "module:function"
# import paths, imported when a run starts (never by the CLI's start-up); each is called with the
# run and its sources' saved states (by name) and returns its sources. Rows come in this order.
SOURCE_MAKERS: tuple[str, ...] = ("guildlite._logfiles:log_sources",)


def _maker(path: str) -> Callable[[Run, Mapping[str, Any]], list[ScalarSource]]:
    import importlib

    module, _, name = path.partition(":")
    maker: Callable[[Run, Mapping[str, Any]], list[ScalarSource]] = getattr(importlib.import_module(module), name)
    return maker


def sources_for(run: Run) -> list[ScalarSource]:
    """Every scalar source of ``run``, each from its saved state (``.guildlite/capture.json``)."""
    states = read_state(run.run_dir)
    out: list[ScalarSource] = []
    output = output_source(run, states.get(OutputSource.name))
    if output is not None:
        out.append(output)
    for path in SOURCE_MAKERS:
        try:
            out.extend(_maker(path)(run, states))
        except Exception as e:  # a reader's bug never stops the run, nor the other sources
            print(f"guildlite: run {run.id}: no live scalars from {path}: {type(e).__name__}: {e}", file=sys.stderr)
    return out


def read_state(run_dir: Path) -> dict[str, Any]:
    """The sources' saved states, by name ({} when none is readable)."""
    try:
        with open_file(run_dir, f".guildlite/{STATE_FILE}") as f:
            data = json.loads(f.read(1 << 20))
    except (RunFileError, OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def save_state(run_dir: Path, sources: list[ScalarSource]) -> None:
    """Keep each source's ``state()`` (a cache of where it is: no fsync, a lost one re-reads rows)."""
    states = {**read_state(run_dir)}
    for s in sources:
        state = getattr(s, "state", None)
        if state is not None:
            states[str(getattr(s, "name", type(s).__name__))] = state()
    write_meta_cache(run_dir, STATE_FILE, states)


def append_rows(run_dir: Path, rows: list[Row]) -> tuple[int, int]:
    """Append ``rows`` to the run's ``scalars.jsonl`` in one ``O_APPEND`` write (a script's own
    ``log_scalars`` lines never interleave inside one of ours); where they landed, (start, end)."""
    if not rows:
        return 0, 0
    data = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")
    # The job may have put anything there: a symlink is not followed, a FIFO never blocks us.
    fd = os.open(RunPaths(run_dir).scalars, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK,
                 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        end = os.lseek(fd, 0, os.SEEK_CUR)
    finally:
        os.close(fd)
    return end - len(data), end


class Capture:
    """One run's scalars while its job runs: its sources polled into ``scalars.jsonl``, and that file
    read back from where it stood at the start (``new``: the rows since ``take``; ``latest``: each
    key's last value; ``step``: the last row's step). A source that raises is dropped (``notes``)."""

    def __init__(self, run: Run, sources: list[ScalarSource] | None = None) -> None:
        self.run_dir = run.run_dir
        self.sources = sources_for(run) if sources is None else sources
        self.latest: dict[str, Any] = {}
        self.step: int | None = None
        self.new: list[Row] = []
        self.count = 0  # rows read back since the start
        self.notes: list[str] = []
        try:
            self._offset = os.stat(RunPaths(run.run_dir).scalars).st_size
        except OSError:
            self._offset = 0
        self._file: BinaryIO | None = None
        self._rest = b""

    @property
    def output(self) -> OutputSource | None:
        return next((s for s in self.sources if isinstance(s, OutputSource)), None)

    def poll(self, final: bool = False) -> bool:
        """Poll every source (``final``: the job ended, each ``finish``es), append their rows, and
        read the scalars file's new rows; whether any arrived."""
        rows: list[Row] = []
        for source in list(self.sources):
            end = getattr(source, "finish", None) if final else None
            try:
                rows.extend(end() if end is not None else source.poll())
            except Exception as e:  # a source is guildlite's or a reader's code: never the run's end
                self.sources.remove(source)
                self.notes.append(f"{getattr(source, 'name', type(source).__name__)}: {type(e).__name__}: {e}")
        arrived = self._read_back(final=False) if rows else False  # a script's own rows first
        if rows or final:
            try:
                start, end = append_rows(self.run_dir, rows)
            except OSError as e:
                start = end = -1
                self.notes.append(f"cannot append to scalars.jsonl: {e.strerror or e}")
            save_state(self.run_dir, self.sources)
            if rows and start == self._offset and not self._rest:  # nothing else came in between:
                self._offset = end  # ours need no reading back
                self._take(rows)
                arrived = True
        return self._read_back(final) or arrived

    def _read_back(self, final: bool) -> bool:
        if self._file is None:
            try:
                self._file = open_file(self.run_dir, "scalars.jsonl")
            except RunFileError:
                return False
        try:
            if os.fstat(self._file.fileno()).st_size < self._offset + len(self._rest):  # cut short: from its start
                self._offset, self._rest = 0, b""
            self._file.seek(self._offset + len(self._rest))
            data = self._rest + self._file.read(CHUNK_BYTES)
        except OSError as e:  # an I/O error on the runs dir's disk: the job goes on, its rows later
            self.notes.append(f"cannot read scalars.jsonl: {e.strerror or e}")
            return False
        cut = data.rfind(b"\n") + 1
        self._rest, self._offset = data[cut:], self._offset + cut
        if len(self._rest) > PARTIAL_MAX:
            self._offset, self._rest = self._offset + len(self._rest), b""
        rows = []
        for line in data[:cut].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                rows.append(row)
        self._take(rows)
        if final and self._file is not None:
            self._file.close()
            self._file = None
        return bool(rows)

    def _take(self, rows: list[Row]) -> None:
        self.new.extend(rows)
        self.count += len(rows)
        for row in rows:
            self.latest[row["key"]] = row.get("value")
        for row in reversed(rows):
            if isinstance(row.get("step"), int):
                self.step = row["step"]
                break

    def take(self) -> list[Row]:
        """The rows that arrived since the last call."""
        new, self.new = self.new, []
        return new
