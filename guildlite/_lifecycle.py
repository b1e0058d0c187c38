"""One invocation's runs from staging to their recorded end: hooks, jobs, signals, batches.

Every run that was staged gets exactly one ``on_run_end``, whatever happens: a normal exit, a
failing script, a veto, SIGTERM or Ctrl-C, or an exception in guildlite itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from ._config_file import verify as verify_config
from ._disk import describe, full_message, full_reason, is_full
from ._errors import GuildliteError
from ._files import TRASH_DIR, RunPaths, now_iso
from ._launch import flag_env, launch_argv, rank_exit_code, without_rank_env
from ._needed import check_staged
from ._parents import VirtualParents
from ._plugins import Dispatcher, HookFailed, Plugin
from ._pruning import join as join_pruning
from ._queue import RunQueue
from ._reach import unreached as flags_unreached
from ._requires import Resolved
from ._run import Run, load_run
from ._runconfig import RunConfig
from ._runlive import LiveRuns
from ._scheduler import Scheduler
from ._search import Search
from ._slots import Slot
from ._staging import new_run, publish, stage_source, staging
from ._status import DONE, end_of_batch, job_end, move
from ._store import reset_end
from ._study import search_spec
from ._supervisor import hand_over, write_launch
from ._terminal import printable

if TYPE_CHECKING:
    from .backends import Backend, Launched


_STOP_SIGNALS: list[int] = []  # signals are the process's: the first stop signal any session of it got


def stop_signal() -> int | None:
    """The first stop signal (SIGINT, SIGTERM, SIGHUP) a session of this process handled, if any:
    the command's exit status says it (``_status.exit_status``)."""
    return _STOP_SIGNALS[0] if _STOP_SIGNALS else None


class Session(VirtualParents):
    """Stages runs, dispatches hooks, launches jobs on slots and records every end."""

    def __init__(self, config: RunConfig, plugins: Sequence[Plugin], log: Callable[[str], None] | None = None):
        self.cfg = config
        self.log = log or (lambda msg: print(printable(msg, keep_newlines=True), file=sys.stderr, flush=True))
        self.hooks = Dispatcher(plugins, log=self.log, timeout=config.guildfile.hook_timeout)
        self.live = LiveRuns(self.hooks, config.guildfile.progress_interval, self.log, config.grace,
                             on_progress=lambda run: self.progress("progress", run))
        self._open: dict[str, Run] = {}  # staged/begun runs whose end is not recorded yet
        self.unrecorded: dict[str, str] = {}  # run id -> why its end could not be written
        self.scheduler: Scheduler[Run] | None = None
        self.stopping: int | None = None
        self.progress: Callable[[str, Run], None] = lambda event, run: None
        self.parent: Run | None = None  # the pipeline whose step this session runs (``_pipeline``)
        self.trial_ended: Callable[[Run], None] | None = None  # a batch's search, told each trial's end

    # --- signals ---------------------------------------------------------------------------------

    def _on_signal(self, sig: int, _frame: Any) -> None:
        if self.stopping is None:
            self.log(f"guildlite: {signal.Signals(sig).name}: stopping (Ctrl-C again to kill)")
        if not _STOP_SIGNALS:
            _STOP_SIGNALS.append(sig)
        self.stopping = self.stopping or sig
        self.hooks.interrupt(signal.Signals(sig).name)  # a hook running now is given up on
        if self.scheduler is not None:
            self.scheduler.stop(sig)

    @contextlib.contextmanager
    def _handle_signals(self) -> Iterator[None]:
        hup = signal.SIG_IGN if self.cfg.detached else self._on_signal  # a detached run outlives its terminal
        old = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, self._on_signal), (signal.SIGTERM, self._on_signal),
                                                   (signal.SIGHUP, hup))}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # --- staging ---------------------------------------------------------------------------------

    def stage(self, flags: dict[str, Any], parent: Run | None = None, requires: Resolved | None = None) -> Run:
        """Create a run dir, copy the source, write run.json, then call ``on_run_staged``
        (``requires``: this run's requirements, when not the config's: a trial's own upstream run)."""
        owner = parent or self.parent
        run = new_run(self.cfg, flags, is_trial=parent is not None, parent_id=owner.id if owner else None)
        run._parent = owner
        cfg = self.cfg if requires is None else dataclasses.replace(self.cfg, requires=requires)
        with staging(run, self.cfg.runs_dir):
            stage_source(cfg, run, RunPaths(self.cfg.runs_dir / run.id).meta / "torchrun")
            check_staged(cfg, run)  # --needed: a run like this one already completed?
            write_launch(run.paths.meta, dict(self.cfg.launch))
            run.claim()  # while its on_run_staged runs, `guildlite stop` sees a live owner to ask
            run.create()
            publish(run, self.cfg.runs_dir)
        self._open[run.id] = run
        self._staged_hooks(run)
        return run

    def _staged_hooks(self, run: Run) -> None:
        """``on_run_staged``, then check that the flags still reach the script as written."""
        try:
            self.hooks.call("on_run_staged", run)
        except HookFailed as e:  # error, or terminated by a stop (`guildlite stop RUN` included)
            self.end(run, e.status, error=e.info)
            return
        try:
            verify_config(self.cfg.op.flags_dest, run.flags, run.run_dir)
        except GuildliteError as e:
            self.end(run, "error", error={"message": str(e)})

    # --- one run ---------------------------------------------------------------------------------

    def begin(self, run: Run, slot: Slot, done: Callable[[Launched, int], None]) -> Launched | None:
        """Call ``on_run_begin`` and start the job; None if the run ended instead."""
        if run.status not in ("staged", "pending"):  # pending: handed over staged (``_supervisor.hand_over``)
            return None  # vetoed or failed while staging: already ended
        if self.stopping is not None or run.paths.stop_request.exists():  # `guildlite stop TRIAL`
            self.end(run, "terminated", error={"message": "stopped before it started"})
            return None
        move(run, "pending")
        run.gpus = list(slot.gpus) if slot.gpus is not None else None
        run.waiting = None  # its turn (``_queue``)
        try:
            run.claim()
        except GuildliteError as e:  # another live guildlite owns it (a concurrent restart): its record is not ours
            self._open.pop(run.id, None)
            self.unrecorded[run.id] = str(e)
            self.log(f"guildlite: not starting run {run.id}: {e}")
            return None
        try:
            run.save()
        except OSError as e:
            if not is_full(e):
                raise
            self.end(run, "error", error={"message": full_message(e, "not started", run.run_dir)})
            return None
        self.progress("begin", run)
        try:
            self.hooks.call("on_run_begin", run)
        except HookFailed as e:
            self.end(run, e.status, error=e.info)
            return None
        if self.stopping is not None:  # a stop signal arrived during the begin hooks
            self.end(run, "terminated", error={"message": "stopped before it started"})
            return None
        unreached = flags_unreached(self.cfg.op, run)  # after every hook that may edit the staged source
        if unreached is not None:
            self.end(run, "error", error={"message": unreached})
            return None
        env = without_rank_env(os.environ) if self.cfg.op.launcher == "python" else dict(os.environ)
        env.update(self.cfg.extra_env)
        env.update(flag_env(self.cfg.op, run.flags))
        env.update(
            GUILDLITE_RUN_ID=run.id,
            GUILDLITE_RUN_DIR=str(run.run_dir),
            GUILDLITE_RESTART_COUNT=str(len(run.attempts)),
            PYTHONUNBUFFERED="1",
        )
        if slot.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
        argv, launch_env = launch_argv(run.cmd)
        env.update(launch_env)
        if launch_env:  # torchrun: the rank shims record each script's exit code here
            shutil.rmtree(run.paths.rank_exits, ignore_errors=True)
            run.paths.rank_exits.mkdir(parents=True)
            env["GUILDLITE_EXIT_DIR"] = str(run.paths.rank_exits)
        backend = self.cfg.backend or _local()
        try:
            job = backend.submit(run, argv, env, done, echo=self.cfg.echo, grace=self.cfg.grace)
        except OSError as e:
            why = full_message(e, "not started", run.run_dir) if is_full(e) else f"cannot start {run.cmd[0]}: {e}"
            self.end(run, "error", error={"message": why})
            return None
        except GuildliteError as e:  # the engine refused the job (a queue rejected it)
            self.end(run, "error", error={"message": str(e)})
            return None
        move(run, job.status_after_start)
        run.started, run.job_pid = now_iso(), job.pid
        self.live.start(run, job)
        try:
            run.save()
        except OSError as e:  # the job runs: its end is still recorded (see _reserve)
            self.log(f"guildlite: cannot record that run {run.id} started: {e.strerror or e}")
        if run.paths.stop_request.exists():  # asked while it started: `stop` saw no job to signal (_manage)
            job.send(signal.SIGTERM)
        self.progress("start", run)
        return job

    def finish(self, run: Run, code: int, job: Launched) -> None:
        """Record a job's exit (``_status.job_end``): completed, error, terminated (stopped) or pruned."""
        if code != 0:  # torchrun reports any failure as 1: the failing script's own code is better
            code = rank_exit_code(run.paths.rank_exits) or code
        stopped_by = self.live.finish(run, drain=not job.end_hooks_ran)  # the last scalars; a hook's StopRun
        # job.error_message: the launcher knows why it failed (or stopped it: a full disk)
        stopped = job.signalled is not None or run.paths.stop_request.exists()
        status, exit_code, error = job_end(code, stopped=stopped, failure=job.error_message)
        if stopped_by is not None and job.error_message is None:
            status, error = stopped_by
        self.end(run, status, exit_code, error=error, hooks=not job.end_hooks_ran)

    def end(
        self, run: Run, status: str, exit_code: int | None = None, error: dict[str, Any] | None = None,
        hooks: bool = True,
    ) -> None:
        """Record the end of a run and call ``on_run_end`` (once per run; not if ``hooks`` is False:
        it already ran where the job ran)."""
        if self._open.pop(run.id, None) is None:
            return
        move(run, status)
        run.exit_code, run.stopped, run.waiting = exit_code, now_iso(), None
        if error is not None:
            run.error = error
        failed = self._save_end(run)
        if hooks:
            self.hooks.call("on_run_end", run)
            failed = self._save_end(run) and failed  # the hooks' trace lost matters less than the end
        run.release()  # after the end is written: until then a reader must see its owner alive
        if failed:
            self.unrecorded[run.id] = failed
        if run.is_trial and self.trial_ended is not None:
            self.trial_ended(run)  # it says, never raises, what it cannot record: the run's end is
        self.progress("end", run)

    def _save_end(self, run: Run) -> str | None:
        """Save the run at its end; why that failed, or None.

        The run dir may be gone (deleted or moved to the trash while running) or the disk full:
        say so, and still give every plugin its on_run_end."""
        trashed = run.run_dir.parent / TRASH_DIR / run.id
        if not run.run_dir.exists() and trashed.is_dir():  # `runs delete --force` moved it while it ran
            run.run_dir = trashed
        run.paths.reserve.unlink(missing_ok=True)  # its blocks are what the record is written into
        try:
            run.save()
        except OSError as e:
            why = f"{full_reason(e)} ({describe(run.run_dir)})" if is_full(e) else e.strerror or str(e)
            self.log(f"guildlite: cannot record the end of run {run.id} in {run.run_dir}: {why}")
            return why
        except GuildliteError as e:  # the store refused: the run dir is gone (purged) or not its own
            self.log(f"guildlite: cannot record the end of run {run.id} in {run.run_dir}: {e}")
            return str(e)
        return None

    def close_open(self, why: str) -> None:
        """End every run still open (after a stop, or an exception in guildlite)."""
        status = "terminated" if self.stopping is not None else "error"
        for run in list(self._open.values()):
            self.end(run, status, error={"message": why})

    # --- whole invocations -----------------------------------------------------------------------

    def run(self, runs: Iterable[Run], slots: Sequence[Slot], fail_fast: bool = False) -> None:
        """Launch staged runs on ``slots``, in order, as slots free up (each drawn from ``runs``
        when a slot is free: a search stages its next trial then); wait for all to end."""

        def finish(run: Run, code: int, job: Launched) -> None:
            self.finish(run, code, job)
            if fail_fast and run.status == "error":
                sched.hold = True

        line = RunQueue(self.cfg.backend or _local(), self.cfg.max_concurrent, self.end, self.log, self.progress)
        sched: Scheduler[Run] = Scheduler(slots, self.begin, finish, grace=self.cfg.grace, queue_up=line.queue_up,
                                          waiting=line.waiting, tick=self.live.tick)
        self.scheduler = sched
        if self.stopping is not None:
            sched.stop(self.stopping)
        try:
            for run in sched.run(runs):
                why = "stopped before it started" if self.stopping else "not started: an earlier trial failed"
                self.end(run, "terminated", error={"message": why})
        finally:
            self.scheduler = None

    @contextlib.contextmanager
    def _invocation(self) -> Iterator[None]:
        """Our signal handlers, and every open run ended even if guildlite itself fails."""
        with self._handle_signals():
            try:
                yield
            except BaseException as e:
                self.close_open(f"guildlite failed: {type(e).__name__}: {e}")
                raise
        if self.unrecorded:  # said on stderr as it happened; the exit code says it too
            ids = ", ".join(self.unrecorded)
            raise GuildliteError(f"the end of run(s) {ids} could not be recorded: {next(iter(self.unrecorded.values()))}")

    def _run_trials(self, batch: Run, trials: Sequence[Run], slots: Sequence[Slot], fail_fast: bool) -> None:
        join_pruning(self.hooks, batch)  # the built-in Pruning, when the batch's search prunes
        def go() -> str | None:
            items: Iterable[Run] = trials
            search = None
            if search_spec(batch) is not None:  # its study told each end; an optimizer's trials drawn as slots free
                search = Search(batch, lambda flags: self.stage(flags, parent=batch), self.cfg.op.flags, self.log)
                self.trial_ended = search.ended
                held = lambda: self.stopping is not None or bool(self.scheduler and self.scheduler.hold)  # noqa: E731
                items = search.trials(trials, held)
            try:
                self.run(items, slots, fail_fast=fail_fast)
            finally:
                self.trial_ended = None
            _, error = end_of_batch(batch, stopped=False)
            return search.failure if search is not None and search.failure else None if error is None else error["message"]

        self.run_children(batch, go)

    def run_single(self, flags: dict[str, Any], slot: Slot, stage_only: bool = False) -> Run:
        """Stage one run and, unless ``stage_only``, run it to its end."""
        with self._invocation():
            run = self.stage(flags)
            if not stage_only and run.status == "staged":
                self.run([run], [slot])
            return run

    def reopen(self, run: Run, flags: dict[str, Any] | None = None) -> None:
        """Make an ended (or staged) run startable again in its own dir, keeping the attempt history.

        A run (not a batch) is staged again: the project's source as it is now, then
        ``on_run_staged``, so source-rewriting plugins apply the run's (new) flags.
        """
        if run.status in ("pending", "running"):
            raise GuildliteError(f"run {run.id} is {run.status}: stop it before restarting it", exit_code=2)
        if run.started:
            run.attempts.append(
                {"status": run.status, "exit_code": run.exit_code, "started": run.started, "stopped": run.stopped,
                 "flags": dict(run.flags), "error": run.error,
                 "sourcecode_digest": (run.attrs.get("sourcecode") or {}).get("digest")}
            )
        if flags is not None and not run.virtual:
            run.flags = flags
        move(run, "staged")
        run.exit_code, run.error, run.started, run.stopped = None, None, None, None
        run.paths.stop_request.unlink(missing_ok=True)
        reset_end(run.run_dir)
        if not run.virtual:
            stage_source(self.cfg, run, run.paths.meta / "torchrun")
        write_launch(run.paths.meta, dict(self.cfg.launch))
        run.save()
        self._open[run.id] = run
        if not run.virtual:
            self._staged_hooks(run)

    def prepare_restart(self, run: Run, flags: dict[str, Any] | None) -> list[Run]:
        """What ``--restart`` does, for a run and a batch, before anything starts again: the run
        (with ``flags``) staged again in its own dir; a batch with its trials that did not complete
        (its completed and pruned ones, ``_status.DONE``, stay). The trials to start, [] for a run."""
        with self._invocation():
            if run.status in ("pending", "running"):
                raise GuildliteError(f"run {run.id} is {run.status}: stop it before restarting it", exit_code=2)
            # Owned from here: concurrent restarts of one run take turns, each one starting from the
            # record the one before it left (its attempts, its trials' ends), never from a stale copy.
            run.claim()
            fresh = load_run(run.run_dir)
            for f in dataclasses.fields(fresh):
                if not f.name.startswith("_") and f.name not in ("pid", "pid_start", "host"):  # now ours
                    setattr(run, f.name, getattr(fresh, f.name))
            trials = [t for t in run.trials if t.status not in DONE] if run.is_batch else []
            self.reopen(run, flags)
            for t in trials:
                t._parent = run
                self.reopen(t)
            return [t for t in trials if t.status == "staged"]

    def start(self, run: Run, slots: Sequence[Slot], fail_fast: bool = False, trials: list[Run] | None = None) -> Run:
        """Start a staged run, or a staged batch with its staged ``trials`` (default: those on disk),
        and see them to their recorded end: after staging, after ``prepare_restart``, or in the
        detached supervisor a run was handed over to."""
        with self._invocation():
            self._open[run.id] = run
            if not run.is_batch:
                self.run([run], slots[:1])
                return run
            if trials is None:
                trials = [t for t in run.trials if t.status == "staged"]
            for t in trials:
                t._parent = run
                self._open[t.id] = t
            if self.begin_parent(run):
                self._run_trials(run, trials, slots, fail_fast)
            else:
                for t in trials:
                    self.end(t, "terminated", error={"message": "not started: its batch ended before it began"})
            return run

    def hand_over(self, run: Run) -> None:
        """Give a staged run (a batch: with its staged trials) to a detached supervisor, which
        starts it (``start``) and records its end; nothing of it stays open here."""
        with self._invocation():
            if run.status != "staged":
                return  # ended while staging (a veto): nothing to start
            self._open[run.id] = run  # a staged batch is not kept open (``run_batch``)
            if self.stopping is not None:  # Ctrl-C while staging: nothing is started
                self.close_open("stopped before it started")
                return
            others = [r for r in self._open.values() if r is not run]
            hand_over(run, others)
            self._open.clear()

    def run_batch(
        self,
        batch_flags: dict[str, Any],
        trials: Sequence[dict[str, Any]],
        slots: Sequence[Slot],
        batch_info: dict[str, Any],
        stage_only: bool = False,
        fail_fast: bool = False,
        requires: Sequence[Resolved] | None = None,
    ) -> Run:
        """A batch: a virtual parent run (begin/end hooks only) whose trials are ordinary runs
        (``requires``: each trial's requirements, when its upstream runs are a batch dimension)."""
        with self._invocation():
            batch = self.stage_parent(batch_flags, is_batch=True, batch=dict(batch_info))
            if not stage_only and not self.begin_parent(batch):
                return batch
            staged = []
            for i, flags in enumerate(trials):
                if self.stopping is not None:
                    break
                trial = self.stage(flags, parent=batch, requires=requires[i] if requires else None)
                batch.trial_ids.append(trial.id)
                staged.append(trial)
            batch.save()
            if stage_only:
                self._open.pop(batch.id, None)
                return batch
            self._run_trials(batch, staged, slots, fail_fast)
            return batch


def _local() -> Backend:
    from .backends import get

    return get("local")(None)
