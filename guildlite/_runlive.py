"""What the process that owns runs does while their jobs run: capture their scalars as they arrive
(``_live``), call ``on_run_progress`` (coalesced), turn a hook's ``StopRun`` into the job's graceful
stop (``terminated``, or ``pruned`` when the hook's ``StopRun`` says so), and keep each run's
progress (``_progress``) for readers.

Everything here runs in the owner's main thread, between the scheduler's looks at its jobs
(``Scheduler.tick``), so hooks never run concurrently. The hook is called when new scalars arrived,
at most every ``progress-interval`` seconds (an op's key, else the guildfile's, default 1 s): a
script that prints 10,000 lines a second gets one call a second, with every row since the last.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ._errors import GuildliteError
from ._live import Capture
from ._plugins import HookFailed
from ._progress import Meter, Progress
from ._progress import write as write_progress
from ._status import Status, request_prune

if TYPE_CHECKING:
    from ._plugins import Dispatcher
    from ._run import Run
    from .backends import Launched

DEFAULT_INTERVAL = 1.0  # seconds between two on_run_progress calls of one run, at least


@dataclass
class _Running:
    run: Run
    job: Launched
    capture: Capture
    meter: Meter
    interval: float
    called: float = float("-inf")  # monotonic time of the last on_run_progress call
    measured: float = float("-inf")  # ... and of the last progress measure
    progress: Progress | None = None
    stop: tuple[Status, dict[str, Any]] | None = None  # the status and error a hook's StopRun asked for
    kill_at: float | None = None  # when a job stopped by a hook is killed if still there


class LiveRuns:
    """The owner's running runs (see the module's docstring)."""

    def __init__(self, hooks: Dispatcher, interval: float | None, log: Callable[[str], None], grace: float,
                 on_progress: Callable[[Run], None] = lambda run: None) -> None:
        self.hooks, self.log, self.grace, self.on_progress = hooks, log, grace, on_progress
        self.interval = DEFAULT_INTERVAL if interval is None else interval
        self._runs: dict[str, _Running] = {}

    def start(self, run: Run, job: Launched) -> None:
        """Follow ``run`` from now on (its job just started)."""
        op = run.op_def or {}
        interval = op.get("progress-interval")
        max_steps = op.get("max-steps")
        self._runs[run.id] = _Running(
            run, job, Capture(run), Meter(max_steps if isinstance(max_steps, int) and max_steps > 0 else None),
            float(interval) if isinstance(interval, (int, float)) and not isinstance(interval, bool) else self.interval,
        )

    def tick(self, running: Mapping[Launched, Run]) -> None:
        """Poll each running run's scalars; call its hooks when due; kill a job a hook stopped
        that outlived the grace."""
        now = time.monotonic()
        for job in list(running):
            live = self._runs.get(running[job].id)
            if live is None:
                continue
            if live.kill_at is not None and now >= live.kill_at:
                live.kill_at = None
                job.kill()
            arrived = live.capture.poll()
            if now - live.measured >= live.interval or (arrived and live.progress is None):  # the first at once
                self._measure(live, now)
            if live.capture.new and now - live.called >= live.interval and live.stop is None:
                self._call(live)

    def finish(self, run: Run, drain: bool = True) -> tuple[Status, dict[str, Any]] | None:
        """The job of ``run`` ended: the last of its scalars captured (and given to its hooks), its
        progress kept; not ``drain``: the rest was taken where the job ran (its ``on_run_end``
        fired there). The status (``terminated`` or ``pruned``) and error a hook's ``StopRun``
        asked for (None: no hook stopped it)."""
        live = self._runs.pop(run.id, None)
        if live is None:
            return None
        if drain:
            live.capture.poll(final=True)
        self._measure(live, time.monotonic())
        for note in dict.fromkeys(live.capture.notes):  # each said once
            self.log(f"guildlite: run {run.id}: live scalars: {note}")
        if live.capture.new and live.stop is None:
            self._call(live, last=True)
        return live.stop

    def _measure(self, live: _Running, now: float) -> None:
        live.measured = now
        progress = live.meter.measure(live.capture)
        if progress is not None and progress != live.progress:
            live.progress = progress
            write_progress(live.run.run_dir, progress)
            self.on_progress(live.run)

    def _call(self, live: _Running, last: bool = False) -> None:
        run = live.run
        live.called = time.monotonic()
        run._new_scalars = live.capture.take()
        run._latest_scalars = dict(live.capture.latest)
        if not self.hooks.ordered("on_run_progress") or self.hooks.stopping(run):  # none to call; stopped already
            run._new_scalars = []
            return
        try:
            self.hooks.call("on_run_progress", run)
        except HookFailed as e:  # a StopRun: stop the job as `guildlite stop` would
            if last:
                return  # it ended already
            pruned = e.status == "pruned"
            live.stop = ("pruned" if pruned else "terminated", e.info)  # (the dispatcher said so)
            if pruned:  # said before the stop, for a backend's node that records the end where the job runs
                try:
                    request_prune(run.paths.stop_request)
                except OSError as err:  # the owner still records it pruned
                    self.log(f"guildlite: run {run.id}: cannot write its prune request: {err.strerror or err}")
            # The backend's own stop: SIGTERM to torchrun and every rank here, a cancel on a
            # cluster; the job's exit frees its slot (and GPU lease) for the next run at once.
            live.job.send(signal.SIGTERM)
            live.kill_at = time.monotonic() + self.grace
        finally:
            run._new_scalars = []
            try:  # what the hooks wrote in run.attrs, and their trace: only those, as the job runs (on a
                # cluster its node writes status, attempts and times meanwhile: never overwritten here)
                run.save(only=("plugins",))
            except (OSError, GuildliteError) as e:  # a full disk, the run dir gone: its end says so
                self.log(f"guildlite: cannot record run {run.id}'s progress hooks: {getattr(e, 'strerror', None) or e}")
