"""From ``guildlite run OP NAME=VALUE ...`` to a validated plan, and running that plan.

Everything that can be wrong with the guildfile, the flags or the plugins fails here, in
``plan_run``, before a single directory is created.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ._batch import count_trials, is_batch, plan_trials
from ._batchspec import batch_flags as batch_spec
from ._config_file import check as check_config
from ._errors import GuildfileError, GuildliteError
from ._flags import Grid, Random, given_texts, nul_free, parse_assignments, resolve
from ._flags_import import with_imported_flags
from ._guildfile import GUILDFILE, Guildfile, default_runs_dir, find_guildfile, load, option_runs_dir
from ._launch import job_command
from ._lifecycle import RunConfig, Session
from ._plugin_loader import build_plugins
from ._plugins import Plugin
from ._reach import check_nulls, check_op
from ._runs import Run
from ._scheduler import Slot, make_slots, visible_gpus

BATCH_CONFIRM_THRESHOLD = 1000  # larger batches ask first
MAX_TRIALS = 1_000_000


@dataclass(frozen=True)
class Plan:
    """A validated request: the config, plugins, and the flags of the run or of each trial."""

    config: RunConfig
    plugins: list[Plugin]
    flags: dict[str, Any]
    trials: list[dict[str, Any]] | None
    batch_flags: dict[str, Any]
    batch_info: dict[str, Any]
    slots: list[Slot]

    @property
    def command(self) -> list[str]:
        """The command line of the (first) job, for display."""
        flags = self.trials[0] if self.trials else self.flags
        return job_command(self.config.op, flags, self.config.nproc)


def open_guildfile(path: str | Path | None = None) -> Guildfile:
    """Load ``path``, or the nearest guildfile.yml from the current directory up."""
    found = Path(path) if path else find_guildfile()
    if found is None:
        raise GuildfileError(f"no {GUILDFILE} in {Path.cwd()} or its parents (create one, or cd into a project)")
    if found.is_dir():
        found = found / GUILDFILE
    return load(found)


def plan_run(
    op_name: str,
    assignments: Sequence[str],
    *,
    guildfile: Guildfile,
    runs_dir: Path | None = None,
    nproc: int | None = None,
    label: str = "",
    parallel: int | None = None,
    gpus: str | None = None,
    max_trials: int | None = None,
    seed: int | None = None,
    plugin_names: Sequence[str] = (),
    echo: bool = True,
    backend: str | None = None,
    slurm: dict[str, Any] | None = None,
    detach: bool = False,
    confirm: Callable[[int], bool] | None = None,
) -> Plan:
    """Validate everything about a run request; raises a GuildliteError, stages nothing.

    ``backend`` (else the op's, else the guildfile's) picks local or slurm; ``slurm`` holds command
    line overrides of the ``slurm:`` keys (nodes, partition, time). ``parallel`` (trials at once)
    defaults to 1 here and, on SLURM, to every trial queued at once. A batch of more than
    BATCH_CONFIRM_THRESHOLD trials goes ahead only if ``confirm(n)`` says so (None: no question).
    """
    runs_dir = option_runs_dir(runs_dir) if runs_dir else default_runs_dir(guildfile)
    op = with_imported_flags(guildfile.op(op_name), guildfile.dir)
    check_op(op, guildfile.dir)
    given = parse_assignments(assignments)
    values = resolve(op.name, op.flags, given, given_texts(assignments))
    check_nulls(op, values, given)
    check_config(op.flags_dest, {k: None for k in values}, guildfile.dir)
    if op.flags_dest == "overrides":  # every value must have a spelling in Hydra's grammar
        job_command(op, {k: v for k, v in values.items() if not isinstance(v, (Grid, Random))}, 1)
    nproc = op.nproc_per_node if nproc is None else nproc
    if nproc < 1:
        raise GuildliteError("--nproc-per-node must be at least 1", exit_code=2)
    if op.launcher == "python" and nproc > 1:
        raise GuildliteError(f"operation '{op.name}' uses launcher python (one process): --nproc-per-node must be 1",
                             exit_code=2)
    if max_trials is not None and max_trials < 1:
        raise GuildliteError("--max-trials must be at least 1", exit_code=2)
    if parallel is not None and parallel < 1:
        raise GuildliteError("--parallel must be at least 1", exit_code=2)
    plugins = build_plugins(guildfile, op, plugin_names)
    batch = is_batch(values)
    if batch:
        n = count_trials(values, max_trials)
        if n > MAX_TRIALS:
            raise GuildliteError(f"{n:,} trials is more than guildlite plans ({MAX_TRIALS:,}); use --max-trials",
                                 exit_code=2)
        if n > BATCH_CONFIRM_THRESHOLD and confirm is not None and not confirm(n):
            raise GuildliteError("cancelled", exit_code=1)
    trials = plan_trials(op.flags, values, max_trials=max_trials, seed=seed) if batch else None
    for flags in (trials or [values])[:1000]:  # a flag that cannot be encoded (a positional None) fails here
        job_command(op, flags, nproc)
    backend = backend or op.backend or guildfile.backend
    slurm_opts: dict[str, Any] = {}
    if backend == "slurm":
        from ._slurm import slurm_plan

        if parallel is not None and detach:
            raise GuildliteError("--parallel needs the foreground: a detached batch queues every trial at once",
                                 exit_code=2)
        slurm_opts = slurm_plan(guildfile, op, slurm, plugin_names)
    elif backend != "local":
        raise GuildliteError(f"--backend {backend!r}: choose local or slurm", exit_code=2)
    elif detach:
        raise GuildliteError("--detach needs --backend slurm", exit_code=2)
    slots = _slots(backend, op, parallel if batch else 1, len(trials or []), gpus)
    config = RunConfig(
        guildfile=guildfile,
        op=op,
        runs_dir=runs_dir.resolve(),
        opspec=" ".join([op_name, *assignments]),
        nproc=nproc,
        label=label,
        echo=echo and (not batch or len(slots) == 1) and not detach,
        backend=backend,
        slurm=slurm_opts,
        detach=detach,
    )
    batch_flags, dims = batch_spec(values)
    info = {"trials": len(trials or []), "max_trials": max_trials, "seed": seed, "parallel": len(slots),
            "dims": dims}
    return Plan(config, plugins, values, trials, batch_flags, info, slots)


def execute(plan: Plan, stage_only: bool = False, fail_fast: bool = False, session: Session | None = None) -> Run:
    """Run a plan to its end (or stage it); returns the run, or the batch run."""
    session = session or Session(plan.config, plan.plugins)
    if plan.trials is None:
        return session.run_single(dict(plan.flags), plan.slots[0], stage_only=stage_only)
    return session.run_batch(
        plan.batch_flags, plan.trials, plan.slots, plan.batch_info, stage_only=stage_only, fail_fast=fail_fast
    )


def _slots(backend: str, op: Any, parallel: int | None, n_trials: int, gpus: str | None) -> list[Slot]:
    """Where trials run at once: on SLURM, jobs in the queue (default: every trial); locally,
    ``parallel`` slots (default 1), each with its share of the GPUs."""
    if backend == "slurm":
        return [Slot(i) for i in range(max(1, n_trials) if parallel is None else parallel)]
    n = 1 if parallel is None else parallel
    return make_slots(n, op.gpus_per_trial, visible_gpus(gpus) if op.gpus_per_trial else [])


def restart(
    run: Run,
    assignments: Sequence[str],
    *,
    guildfile: Guildfile,
    parallel: int | None = None,
    gpus: str | None = None,
    fail_fast: bool = False,
    plugin_names: Sequence[str] = (),
    echo: bool = True,
) -> Restart:
    """Validate a restart of ``run`` (flags overridden by ``assignments``) and return what runs it."""
    if run.is_batch and assignments:
        raise GuildliteError("a batch restart re-runs its unfinished trials as they were: it takes no flags", exit_code=2)
    if run.is_trial and run.parent is not None and run.parent.status in ("pending", "running"):
        raise GuildliteError(f"run {run.id} belongs to batch {run.parent_id}, which is still running", exit_code=2)
    plan = plan_run(
        run.op,
        assignments,
        guildfile=guildfile,
        runs_dir=run.run_dir.parent,
        nproc=run.nproc_per_node,
        label=run.label,
        parallel=parallel,
        gpus=gpus,
        plugin_names=plugin_names,
        echo=echo,
    )
    if plan.trials is not None:
        raise GuildliteError("a restart takes plain flag values, not batch syntax", exit_code=2)
    flags = None
    if not run.is_batch:
        given = {a.partition("=")[0].strip() for a in assignments}
        flags = {**{k: nul_free(k, v) for k, v in run.flags.items() if k in plan.flags},  # a record is input
                 **{k: plan.flags[k] for k in given}}
        for k, v in plan.flags.items():
            flags.setdefault(k, v)
    slots = plan.slots
    if run.is_batch:
        slots = _slots(plan.config.backend, plan.config.op, parallel, len(run.trial_ids), gpus)
    session = Session(dataclasses.replace(plan.config, echo=echo and (not run.is_batch or len(slots) == 1)),
                      plan.plugins)
    return Restart(session, run, flags, slots, fail_fast)


@dataclass
class Restart:
    """A validated restart: ``execute`` runs it (see ``Session.restart``)."""

    session: Session
    run: Run
    flags: dict[str, Any] | None
    slots: list[Slot]
    fail_fast: bool

    def execute(self) -> Run:
        return self.session.restart(self.run, self.flags, self.slots, self.fail_fast)
