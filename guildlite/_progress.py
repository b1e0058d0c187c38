"""A running run's progress: how far it is (percent) and how long it has left (ETA).

Measured by the run's owner from what its live capture sees (``_live``), from the first of:
the step of its scalars against the op's ``max-steps``; the step and ``total`` groups of an
``output-scalars`` pattern; the last tqdm bar in its output. Kept in ``.guildlite/progress.json``
for the readers (``runs``, ``watch``, ``view``, the batch progress lines), which count the ETA
down from when it was measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import write_meta_cache
from ._runfiles import RunFileError, open_file

if TYPE_CHECKING:
    from ._live import Capture

PROGRESS_FILE = "progress.json"  # in .guildlite/


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps (``source``: max-steps, total or tqdm), ``eta`` seconds left as
    of ``at`` (epoch seconds; None: not known yet)."""

    done: float
    total: float
    eta: float | None
    at: float
    source: str

    @property
    def percent(self) -> float:
        return max(0.0, min(100.0, 100.0 * self.done / self.total))

    def left(self, now: float | None = None) -> float | None:
        """Seconds left as of ``now`` (counted down from ``at``)."""
        if self.eta is None:
            return None
        return max(0.0, self.eta - ((time.time() if now is None else now) - self.at))

    def describe(self, now: float | None = None) -> str:
        """``37% ETA 0:06`` (``37%`` while the ETA is not known)."""
        left = self.left(now)
        return f"{self.percent:.0f}%" + ("" if left is None else f" ETA {clock(left)}")


def clock(seconds: float) -> str:
    secs = int(round(seconds))
    h, m, s = secs // 3600, secs // 60 % 60, secs % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Meter:
    """One run's progress as its capture goes (``measure``): the rate of steps since the first
    measure gives the ETA of step-based progress; a tqdm bar brings its own."""

    def __init__(self, max_steps: int | None, started: float | None = None) -> None:
        self.max_steps = max_steps
        self.started = time.time() if started is None else started
        self._first: tuple[float, float] | None = None  # (time, done) of the first step-based measure

    def measure(self, capture: Capture) -> Progress | None:
        now = time.time()
        out = capture.output
        step = capture.step if capture.step is not None else capture.latest.get("step")
        if self.max_steps and isinstance(step, (int, float)):
            return self._steps(float(step), float(self.max_steps), now, "max-steps")
        if out is not None and out.parser.total:
            return self._steps(float(out.parser.step), float(out.parser.total), now, "total")
        if out is not None and out.bar is not None:
            done, total, left, seen = out.bar
            return Progress(done, total, None if left is None else max(0.0, left - (now - seen)), now, "tqdm")
        return None

    def _steps(self, done: float, total: float, now: float, source: str) -> Progress:
        if self._first is None:
            self._first = (now, done)
        t0, d0 = self._first
        if done <= d0 or now <= t0:  # one measure so far: the rate since the job started
            t0, d0 = self.started, 0.0
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        eta = (total - done) / rate if rate > 0 else None
        return Progress(done, total, None if eta is None else max(0.0, eta), now, source)


def write(run_dir: Path, progress: Progress) -> None:
    """Keep ``progress`` for readers (a cache, rewritten often: no fsync)."""
    write_meta_cache(run_dir, PROGRESS_FILE, asdict(progress))


def read(run_dir: Path) -> Progress | None:
    """A run's last measured progress; None when none was (or the file is not one of ours)."""
    try:
        with open_file(run_dir, f".guildlite/{PROGRESS_FILE}") as f:
            data: Any = json.loads(f.read(4096))
        p = Progress(*(data[k] for k in ("done", "total", "eta", "at", "source")))
    except (RunFileError, OSError, ValueError, TypeError, KeyError):
        return None
    nums = (p.done, p.total, p.at) + (() if p.eta is None else (p.eta,))
    if not all(type(x) in (int, float) and x == x and abs(x) != float("inf") for x in nums) or p.total <= 0:
        return None
    return p


def shown(run_dir: Path, status: str) -> str:
    """What readers print beside an active run's status (``37% ETA 0:06``); "" for other runs, or
    when its progress is not known."""
    if status not in ("pending", "running"):
        return ""
    p = read(run_dir)
    return "" if p is None else p.describe()
