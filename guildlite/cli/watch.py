"""``guildlite watch``: follow a run's output and status until it ends; a batch's trials."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .._choose import newest_going, runs_dir_for, select_one, still_going
from .._errors import GuildliteError
from .._terminal import printable
from . import _complete
from ._common import CONTEXT, _guildfile_option, _runs_dir_option, _say

if TYPE_CHECKING:
    from .._run import Run
    from .._watch import OutputFollower

# When stderr is not a terminal, a status line on each change of status, else at most every
# PLAIN_EVERY seconds when the scalars changed, and every PLAIN_QUIET seconds when nothing did.
PLAIN_EVERY = 10.0
PLAIN_QUIET = 60.0
SCALARS_SHOWN = 8


@click.command(context_settings=CONTEXT)
@click.argument("run_spec", metavar="[RUN]", required=False, shell_complete=_complete.runs)
@_runs_dir_option
@_guildfile_option
def watch(run_spec: str | None, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Follow RUN's output and status until it ends (default: the newest run not yet ended).

    \b
    Prints the run's output.log from its start (of a log over 1 MB, only its last 1 MB, from a
    line start, saying on stderr how much was skipped), then as it grows, with a status line on stderr:
    status, elapsed time, the latest value of each scalar found in the output (the op's
    output-scalars rules). On a terminal the line is redrawn in place; otherwise it is printed
    when the status changes, then every 10 s while the scalars change (else every minute).
    A batch shows one line per trial start and end, with done/running/failed counts.
    Exits when the run ends, with the exit status `guildlite run` would have given (a batch: 0
    only if every trial completed). Ctrl-C stops watching, not the run (exit 130). With no RUN and
    no run pending or running: exit 2.
    """
    line = _StatusLine()
    run: Run | None = None
    try:
        run = _pick(runs_dir_for(runs_dir, guildfile), run_spec)
        code = _watch_pipeline(run, line) if run.is_pipeline else _watch_batch(run, line) if run.is_batch else (
            _watch_run(run, line))
    except KeyboardInterrupt:
        line.clear()
        what = "" if run is None else f" {'batch' if run.is_batch else 'pipeline' if run.is_pipeline else 'run'} {run.id}"
        _say(f"guildlite: stopped watching{what}; it was not stopped", err=True)
        sys.exit(130)
    if code:
        sys.exit(code)


def _pick(where: Path, run_spec: str | None) -> Run:
    """The run to watch: ``run_spec``'s, else the newest that has yet to end."""
    if run_spec is None:
        found = newest_going(where)
        if found is None:
            raise GuildliteError(f"no run is pending or running in {where} (give a RUN to watch one that ended; "
                                 "see guildlite runs)", exit_code=2)
        return found
    run = select_one(where, run_spec)
    if run.status == "staged" and not still_going(run):
        raise GuildliteError(f"run {run.id} is staged and not running: nothing to watch", exit_code=2)
    return run


def _watch_run(run: Run, line: _StatusLine) -> int:
    from .._progress import shown as progress
    from .._status import ENDED, exit_status
    from .._watch import follow
    from .run import _summary

    def show(now: Run, log: OutputFollower) -> None:
        why = f" ({now.waiting.get('reason')})" if now.status == "pending" and now.waiting else ""  # its turn to come
        head = " ".join(x for x in (f"guildlite: run {now.id} {now.status}{why}", progress(now.run_dir, now.status)) if x)
        line.update(head, _elapsed(now), _details(log), ended=now.status in ENDED)

    def out(data: bytes) -> None:
        line.output(data)

    def skipped(n: int, size: int) -> None:
        from .._disk import size_text

        line.clear()
        _say(f"guildlite: output.log of run {run.id} is {size_text(size)}: skipped its first {size_text(n)}, "
             f"showing the rest (all of it: guildlite cat {run.id} output.log)", err=True)

    ended = follow(run, out, show, skipped=skipped)
    line.clear()
    log_note = line.last_details
    _say(f"{_summary(ended)}{' | ' + log_note if log_note else ''}", err=True)
    return exit_status(ended.status, ended.exit_code)


def _watch_batch(batch: Run, line: _StatusLine) -> int:
    from .._progress import shown
    from .._status import DONE, ENDED, exit_status
    from .._watch import follow_batch
    from .run import _BatchProgress, _summary

    progress = _BatchProgress(len(batch.trial_ids))
    going: dict[str, Run] = {}  # the trials started and not ended: their progress is shown

    def event(kind: str, trial: Run) -> None:
        line.clear()
        progress.event(kind, trial)
        if kind == "start":
            going[trial.id] = trial
        else:
            going.pop(trial.id, None)

    def show(now: Run) -> None:
        progress.total = max(progress.total, len(now.trial_ids))
        counts = (f"done {progress.done}/{progress.total}, running {progress.running}, failed {progress.failed}")
        each = [f"trial {progress.index[t.id]} {p}" for t in going.values() if (p := shown(t.run_dir, "running"))]
        details = " | ".join([counts, *each[:4]])
        line.update(f"guildlite: batch {now.id} {now.status}", _elapsed(now), details, ended=now.status in ENDED)

    ended, trials = follow_batch(batch, event, show)
    line.clear()
    _say(_summary(ended), err=True)
    code = exit_status(ended.status, ended.exit_code)
    if code == 0 and any(t.status not in DONE for t in trials):
        return 1
    return code


def _watch_pipeline(pipe: Run, line: _StatusLine) -> int:
    """Each step of a pipeline in turn, as it appears (a run's output, a batch's trials), then the
    pipeline's end."""
    import time

    from .._status import exit_status
    from .._watch import POLL_SECONDS, reload
    from .run import _summary

    watched: set[str] = set()
    while True:
        going = still_going(pipe)
        for i, step in enumerate(pipe.steps, 1):
            if step.id not in watched:
                watched.add(step.id)
                _say(f"guildlite: pipeline {pipe.id} step {i}: {step.op} run {step.id}", err=True)
                _watch_batch(step, line) if step.is_batch else _watch_run(step, line)
        if not going:
            break
        time.sleep(POLL_SECONDS)
        pipe = reload(pipe)
    _say(_summary(pipe), err=True)
    return exit_status(pipe.status, pipe.exit_code)


def _details(log: OutputFollower) -> str:
    parts = []
    if log.scalars:
        shown = list(log.scalars.items())[-SCALARS_SHOWN:]
        parts.append(" ".join(f"{k}={v:.6g}" for k, v in shown) + (f" (step {log.step})" if log.step else ""))
    if log.note:
        parts.append(log.note)
    return " | ".join(parts)


def _elapsed(run: Run) -> str:
    from .._inspect import seconds_between

    try:
        secs = seconds_between(run.started or run.created, run.stopped)
    except ValueError:
        secs = None
    if secs is None:
        return "not started"
    secs = max(0, int(secs))
    return f"{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}"


class _StatusLine:
    """The status line on stderr: redrawn in place on a terminal, else printed as a plain line now
    and then (see PLAIN_EVERY); the run's output goes to stdout."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown = False
        self.drawn = ""
        self.at_line_start = True
        self.last_head = ""
        self.last_details = ""
        self.printed_at = -PLAIN_QUIET
        self.printed = ""

    def update(self, head: str, elapsed: str, details: str, ended: bool = False) -> None:
        """Show ``head | elapsed | details``; of a run that ended, only keep them (its last line says it)."""
        since = time.monotonic() - self.printed_at
        due = head != self.last_head or since >= PLAIN_QUIET or (details != self.printed and since >= PLAIN_EVERY)
        self.last_head, self.last_details = head, " | ".join(x for x in (elapsed, details) if x)
        if ended:
            return
        text = printable(f"{head} | {self.last_details}")
        if self.tty:
            width = _width()
            text = text if len(text) < width else text[: width - 2] + "…"  # a wrapped line cannot be redrawn
            if self.at_line_start and not (self.shown and text == self.drawn):
                sys.stderr.write("\r\x1b[K" + text)
                sys.stderr.flush()
                self.shown, self.drawn = True, text
        elif due:
            click.echo(text, err=True)
            self.printed_at, self.printed = time.monotonic(), details

    def output(self, data: bytes) -> None:
        self.clear()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        self.at_line_start = data.endswith(b"\n")

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def _width() -> int:
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except OSError:
        columns = 0
    return columns if columns >= 20 else 80
