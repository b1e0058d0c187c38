"""Following a run as it goes: its output log as it grows with the scalars its lines hold, its
status until it ends; a batch's trials as they start and end.

Records are read through the store only (``load_run``, which derives a status from liveness), and
the output from the run's ``output.log``: a run is followed the same way whatever runs it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, BinaryIO, Callable

from ._choose import still_going
from ._errors import GuildliteError
from ._live import output_parser
from ._output_scan import OutputScanner, Row
from ._runfiles import RunFileError, open_file
from ._scalars import OutputParser
from ._status import ENDED

if TYPE_CHECKING:
    from ._run import Run

POLL_SECONDS = 0.2
CHUNK_BYTES = 1 << 20  # read at a time, so that the status keeps moving through a large log
# Of a log already longer than this when first read, only its last part is shown (from a line start
# within it): an imported run's log may be many GB, or a sparse file of GB of NULs.
TAIL_BYTES = 1 << 20
# The op's own output-scalars regexes may backtrack catastrophically (see ``_builtins``): here they
# run in this process, bounded by a timer; past it, scalars are no longer shown.
PATTERN_SECONDS = 5.0


class ScalarScanner(OutputScanner):
    """The scalars of a run's output fed in pieces as it is written (``OutputScanner``), found as
    ``parse_scalars`` finds them in the whole log: ``latest`` holds the last value of each key,
    ``step`` the step of the last row. The op's own regexes get ``time_limit`` seconds per piece."""

    def __init__(self, parser: OutputParser, time_limit: float | None = None) -> None:
        slow = f"output-scalars patterns took over {time_limit:.0f} s; scalars no longer shown" \
            if time_limit is not None else ""
        super().__init__(parser, time_limit, slow)
        self.time_limit = time_limit  # for the op's own regexes (see PATTERN_SECONDS)
        self.latest: dict[str, float] = {}
        self.step: int | None = None

    def feed(self, data: bytes, final: bool = False) -> list[Row]:
        """Scan ``data``, the next bytes of the output; ``final``: the output ended after them."""
        self.budget = self.time_limit  # afresh for each piece, as long as no piece ran out of time
        rows = super().feed(data, final)
        for row in rows:
            self.latest[row["key"]] = row["value"]
            self.step = row["step"]
        return rows


def scanner_for(run: Run) -> ScalarScanner | str:
    """The scanner of ``run``'s output by its op's output-scalars rules; else why there is none to
    say ("" when the op turns them off)."""
    parser = output_parser(run)
    if isinstance(parser, str):
        return parser
    return ScalarScanner(parser, PATTERN_SECONDS if parser.regexes else None)


class OutputFollower:
    """A run's ``output.log`` as it grows: the bytes written since the last ``read``, and the
    latest value of each scalar found in its lines (``ScalarScanner``).

    A log longer than ``tail`` when opened (or when cut short and written again) is read from a
    line start within its last ``tail`` bytes (from that point exactly when none is there);
    ``skipped`` counts the bytes passed over, which are not scanned for scalars either."""

    def __init__(self, run: Run, tail: int = TAIL_BYTES) -> None:
        self.run = run
        self.tail = tail
        self.skipped = 0
        self._file: BinaryIO | None = None
        found = scanner_for(run)
        self.scanner: ScalarScanner | None = found if isinstance(found, ScalarScanner) else None
        self._why = found if isinstance(found, str) else ""

    @property
    def scalars(self) -> dict[str, float]:
        return self.scanner.latest if self.scanner else {}

    @property
    def step(self) -> int | None:
        return self.scanner.step if self.scanner else None

    @property
    def note(self) -> str:
        """Why scalars are not shown, when they are not."""
        return (self.scanner.note or "") if self.scanner else self._why

    def read(self) -> bytes:
        """What was written since the last call (b"" when nothing, or no log yet)."""
        if self._file is None:
            try:
                self._file = open_file(self.run.run_dir, "output.log")
            except RunFileError as e:
                if e.missing:
                    return b""
                raise GuildliteError(f"run {self.run.id}: cannot follow output.log: {e.reason}", exit_code=2) from None
            self._skip_to_tail(self._file)
        elif os.fstat(self._file.fileno()).st_size < self._file.tell():
            self._file.seek(0)  # cut short by hand: follow it from its start again
            self._skip_to_tail(self._file)
        data = self._file.read(CHUNK_BYTES)
        if data and self.scanner is not None:
            self.scanner.feed(data)
        return data

    def _skip_to_tail(self, f: BinaryIO) -> None:
        size = os.fstat(f.fileno()).st_size
        if size - f.tell() <= self.tail:
            return
        start = size - self.tail
        f.seek(start - 1)  # the byte before: a line that starts exactly there is kept
        window = f.read(self.tail + 1)
        cut = window.find(b"\n")
        if 0 <= cut < len(window) - 1:
            start += cut
        f.seek(start)
        self.skipped += start

    @property
    def size(self) -> int:
        """The log's size now (0 before it is opened)."""
        return os.fstat(self._file.fileno()).st_size if self._file is not None else 0

    def finish(self) -> None:
        """Scan what is left after the log's last line end (the run has ended)."""
        if self.scanner is not None:
            self.scanner.feed(b"", final=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def reload(run: Run) -> Run:
    """The run as its record stands now (status derived from liveness)."""
    from ._run import load_run

    return load_run(run.run_dir)


def follow(
    run: Run,
    out: Callable[[bytes], None],
    show: Callable[[Run, OutputFollower], None],
    poll: float = POLL_SECONDS,
    skipped: Callable[[int, int], None] | None = None,
) -> Run:
    """Follow ``run`` until it ends: ``out`` gets its output as it is written, ``show`` the run as it
    stands (with the follower's latest scalars) after each look, ``skipped(bytes, log size)`` how
    much of a long log was passed over, before ``out`` gets what follows. Returns the run as it ended."""
    log = OutputFollower(run)
    told = 0
    try:
        while True:
            # The status before the log: all that a run wrote before its end was recorded is read.
            going = still_going(run)
            while data := log.read():
                if log.skipped > told and skipped is not None:
                    skipped(log.skipped - told, log.size)
                told = log.skipped
                out(data)
            if not going:
                log.finish()
            show(run, log)
            if not going:
                return run
            time.sleep(poll)
            run = reload(run)
            log.run = run
    finally:
        log.close()


def follow_batch(
    batch: Run,
    event: Callable[[str, Run], None],
    show: Callable[[Run], None],
    poll: float = POLL_SECONDS,
) -> tuple[Run, list[Run]]:
    """Follow a batch until it ends: ``event("wait" | "start" | "end", trial)`` once per trial that
    waits its turn, starts and ends (those already started or ended first), ``show`` the batch after each look. Returns
    the batch as it ended and its trials."""
    trials: dict[str, Run] = {}
    started: set[str] = set()
    queued: set[str] = set()
    while True:
        going = still_going(batch)
        for tid in batch.trial_ids:
            if tid in trials and trials[tid].status in ENDED:
                continue  # an ended trial's record is final
            trial = batch.child(tid)
            if trial is None:
                continue
            trials[tid] = trial
            if tid not in queued and not trial.started and trial.status == "pending" and trial.waiting:
                queued.add(tid)  # waiting its turn on this machine (``_queue``)
                event("wait", trial)
            if tid not in started and (trial.started or trial.status in ENDED):
                started.add(tid)
                if trial.started:
                    event("start", trial)
            if trial.status in ENDED:
                event("end", trial)
        show(batch)
        if not going:
            break
        time.sleep(poll)
        batch = reload(batch)
    for trial in trials.values():
        if trial.status not in ENDED:
            event("end", trial)  # never started: its batch ended first
    return batch, list(trials.values())
