"""Following a run as it goes: its output log as it grows with the scalars its lines hold, its
status until it ends; a batch's trials as they start and end.

Records are read through the store only (``load_run``, which derives a status from liveness), and
the output from the run's ``output.log``: a run is followed the same way whatever runs it.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator

from ._errors import BadRecordError, GuildliteError, RunNotFoundError
from ._runfiles import RunFileError, open_file
from ._scalars import OutputParser, output_rules
from ._select import still_going
from ._status import ENDED

if TYPE_CHECKING:
    from ._runs import Run

POLL_SECONDS = 0.2
CHUNK_BYTES = 1 << 20  # read at a time, so that the status keeps moving through a large log
PARTIAL_MAX = 1 << 20  # a "line" longer than this with no line end yet is not scanned for scalars
# The op's own output-scalars regexes may backtrack catastrophically (see ``_builtins``): here they
# run in this process, bounded by a timer; past it, scalars are no longer shown.
PATTERN_SECONDS = 5.0


class _TooSlow(Exception):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _TooSlow in the block after ``seconds`` (a regex checks for signals as it runs); no
    limit outside the main thread, where no signal handler can be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _TooSlow

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class OutputFollower:
    """A run's ``output.log`` as it grows: the bytes written since the last ``read``, and the
    latest value of each scalar found in its lines (the op's output-scalars rules)."""

    run: Run
    scalars: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    note: str = ""  # why scalars are not shown, when they are not
    _file: BinaryIO | None = None
    _parser: OutputParser | None = None
    _patterns: bool = False
    _partial: str = ""

    def __post_init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # As reading a log as text does (``_builtins``): \r and \r\n end a line too (progress bars).
        self._newlines = io.IncrementalNewlineDecoder(None, translate=True)
        rules = output_rules(self.run.op_def or {}, self.run.remote)
        if rules is None:
            self.note = "output scalars off"
            return
        patterns, task_labels = rules
        try:
            regexes = [re.compile(p) for p in patterns] if patterns else None
        except (re.error, TypeError) as e:
            self.note = f"bad output-scalars pattern: {e}"
            return
        self._parser = OutputParser(self.run.nproc_per_node or 1, regexes, task_labels)
        self._patterns = regexes is not None

    def read(self) -> bytes:
        """What was written since the last call (b"" when nothing, or no log yet)."""
        if self._file is None:
            try:
                self._file = open_file(self.run.run_dir, "output.log")
            except RunFileError as e:
                if e.missing:
                    return b""
                raise GuildliteError(f"run {self.run.id}: cannot follow output.log: {e.reason}", exit_code=2) from None
        if os.fstat(self._file.fileno()).st_size < self._file.tell():
            self._file.seek(0)  # cut short by hand: follow it from its start again
        data = self._file.read(CHUNK_BYTES)
        if data and self._parser is not None:
            self._scan(data)
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _scan(self, data: bytes) -> None:
        text = self._partial + self._newlines.decode(self._decode.decode(data))
        *lines, self._partial = text.split("\n")
        if len(self._partial) > PARTIAL_MAX:
            self._partial = ""
        assert self._parser is not None
        try:
            with _time_limit(PATTERN_SECONDS) if self._patterns else _no_limit():
                for line in lines:
                    for row in self._parser.feed(line):
                        self.scalars[row["key"]] = row["value"]
                        self.step = row["step"]
        except _TooSlow:
            self._parser = None
            self.note = f"output-scalars patterns took over {PATTERN_SECONDS:.0f} s; scalars no longer shown"


@contextmanager
def _no_limit() -> Iterator[None]:
    yield


def reload(run: Run) -> Run:
    """The run as its record stands now (status derived from liveness)."""
    from ._runs import load_run

    return load_run(run.run_dir)


def follow(
    run: Run,
    out: Callable[[bytes], None],
    show: Callable[[Run, OutputFollower], None],
    poll: float = POLL_SECONDS,
) -> Run:
    """Follow ``run`` until it ends: ``out`` gets its output as it is written, ``show`` the run as it
    stands (with the follower's latest scalars) after each look. Returns the run as it ended."""
    log = OutputFollower(run)
    try:
        while True:
            # The status before the log: all that a run wrote before its end was recorded is read.
            going = still_going(run)
            while data := log.read():
                out(data)
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
    """Follow a batch until it ends: ``event("start" | "end", trial)`` once per trial that starts
    and ends (those already started or ended first), ``show`` the batch after each look. Returns
    the batch as it ended and its trials."""
    trials: dict[str, Run] = {}
    started: set[str] = set()
    while True:
        going = still_going(batch)
        for tid in batch.trial_ids:
            if tid in trials and trials[tid].status in ENDED:
                continue  # an ended trial's record is final
            trial = _trial(batch, tid)
            if trial is None:
                continue
            trials[tid] = trial
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


def _trial(batch: Run, trial_id: str) -> Run | None:
    """A trial of ``batch`` read now; None if it is gone or is not the batch's (see ``Run.trials``)."""
    from ._record import is_run_id
    from ._runs import load_run, warn_bad

    if not is_run_id(trial_id):
        return None
    try:
        trial = load_run(batch.run_dir.parent / trial_id)
    except BadRecordError as e:
        warn_bad(e)
        return None
    except RunNotFoundError:
        return None
    return trial if trial.parent_id == batch.id else None
