"""``guildlite run``: plan, confirm, execute, and report a run or a batch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._choose import runs_dir_for, select_one
from .._errors import GuildliteError
from . import _complete
from ._batch_progress import _BatchProgress, _summary
from ._common import (
    CONTEXT,
    _fmt,
    _guildfile_option,
    _record,
    _runs_dir_option,
    _say,
)

if TYPE_CHECKING:
    from .._run import Run
    from ..backends import CliOption


class _RunCommand(click.Command):
    """``run``, with the options every installed backend adds (``Backend.cli_options``): found
    when ``run`` is parsed or its help shown, never at start-up."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_with_backends", False):
            for flag, owners in _backend_flags({opt for p in self.params for opt in p.opts}, warn=True).items():
                types = {o.type for _, o in owners}
                self.params.insert(-2, click.Option([f"--{flag}", _dest(flag)], type=types.pop() if len(types) == 1 else str,
                                                    help="; ".join(f"[{n}] {o.help}" for n, o in owners) + "."))
            self._with_backends = True
        return super().get_params(ctx)


def _backend_flags(taken: set[str], warn: bool = False) -> dict[str, list[tuple[str, CliOption]]]:
    """Each backend flag of ``run`` and the backends that declare it: a flag several declare
    (``--time``) is one option, whose value goes to the run's backend. A backend that cannot load,
    or a flag that is ``taken``, is left out (said when ``warn``): one broken install must not stop
    runs on the other backends."""
    from .. import backends

    out: dict[str, list[tuple[str, CliOption]]] = {}
    for name in backends.names():
        try:
            options = backends.get(name).cli_options
        except GuildliteError as e:  # an error where it is used (--backend NAME)
            if warn:
                click.echo(f"guildlite: warning: {e}", err=True)
            continue
        for o in options:
            if f"--{o.flag}" in taken:
                if warn:
                    click.echo(f"guildlite: warning: backend {name!r}: --{o.flag} is taken by another option;"
                               f" set its '{o.key}' in the guildfile instead", err=True)
                continue
            out.setdefault(o.flag, []).append((name, o))
    return out


def _dest(flag: str) -> str:
    return "_backend__" + flag.replace("-", "_")


def _backend_options(extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The backend options given on the command line, by backend name: a shared flag's value
    under each backend that declares it, as its type (left as given where it is not one: the
    run's backend then says what it expects)."""
    out: dict[str, dict[str, Any]] = {}
    for flag, owners in _backend_flags(set()).items():
        value = extra.get(_dest(flag))
        if value is not None:
            for name, o in owners:
                try:
                    typed = click.types.convert_type(o.type).convert(value, None, None)
                except click.BadParameter:
                    typed = value
                out.setdefault(name, {})[o.key] = typed
    return out


@click.command(cls=_RunCommand, context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="OPERATION [NAME=VALUE]...",
                shell_complete=_complete.run_args)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("-l", "--label", default="", help="A label for the run.")
@click.option("--nproc-per-node", type=int, help="Processes (ranks) per run; default: the op's nproc-per-node.")
@click.option("--stage", "stage_only", is_flag=True, help="Stage the run (dir, source, run.json) without starting it.")
@click.option("--parallel", type=int,
              help="Batch: trials running at once (default: the backend's; locally 1, queued: every trial).")
@click.option("--gpus", help="GPU ids runs lease theirs from, machine-wide (default: CUDA_VISIBLE_DEVICES or all).")
@click.option("--max-concurrent", type=int, metavar="N",
              help="At most N of your runs at once on this machine; the others wait their turn (pending).")
@click.option("--max-trials", type=int,
              help="Batch: at most N trials (random search, --optimizer: exactly N, default 20).")
@click.option("--seed", type=int, help="Batch: seed for random search (same seed, same trials).")
@click.option("--optimizer", metavar="NAME",
              help="Batch: propose trials with an optimizer (tpe, cmaes, gp, qmc, random, grid, or an installed one)"
              " as slots free up; needs --minimize or --maximize.")
@click.option("--minimize", metavar="SCALAR", help="Batch: the scalar a search (--optimizer) or pruning minimizes.")
@click.option("--maximize", metavar="SCALAR", help="Batch: the scalar a search (--optimizer) or pruning maximizes.")
@click.option("--objective", type=click.Choice(["last", "min", "max"]),
              help="Batch: a trial's objective is its scalar's last (default), min or max value.")
@click.option("--prune", type=click.Choice(["median", "asha"]),
              help="Batch: stop trials whose scalar is worse than others' at the same step (median, or ASHA).")
@click.option("--prune-min-steps", type=int, metavar="N", help="--prune: prune no trial before step N (default 0).")
@click.option("--prune-warmup", type=int, metavar="N", help="--prune: prune nothing before N trials ended (default 0).")
@click.option("--prune-reduction-factor", type=int, metavar="N", help="--prune asha: the reduction factor (default 3).")
@click.option("--fail-on-trial-error", is_flag=True, help="Batch: start no new trial after one fails.")
@click.option("--plugin", "plugin_names", multiple=True, help="Enable an installed plugin by entry-point name.")
@click.option("--restart", "restart_spec", metavar="RUN", shell_complete=_complete.runs,
              help="Run RUN again in its own dir (NAME=VALUE overrides flags); a batch re-runs unfinished trials.")
@click.option("--start", "start_staged", is_flag=True,
              help="Start the runs given as arguments (RUN...), staged with --stage; they take their place in "
              "the queue.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's record as JSON when it ends.")
@click.option("--needed", is_flag=True, help="Run only if no completed run of the op has the same flags, source and "
              "requirements; else print that run's id (exit 0).")
@click.option("-b", "--detach", "--background", "detach", is_flag=True,
              help="Return at once with the run's id; a detached supervisor runs it (guildlite watch, stop).")
@click.option("--backend", metavar="NAME", help="Where runs run: an installed backend (default: the guildfile's, "
              "else local).")
@_runs_dir_option
@_guildfile_option
def run(
    args: tuple[str, ...],
    restart_spec: str | None,
    start_staged: bool,
    yes: bool,
    label: str,
    nproc_per_node: int | None,
    stage_only: bool,
    parallel: int | None,
    gpus: str | None,
    max_concurrent: int | None,
    max_trials: int | None,
    seed: int | None,
    optimizer: str | None,
    minimize: str | None,
    maximize: str | None,
    objective: str | None,
    prune: str | None,
    prune_min_steps: int | None,
    prune_warmup: int | None,
    prune_reduction_factor: int | None,
    fail_on_trial_error: bool,
    plugin_names: tuple[str, ...],
    as_json: bool,
    needed: bool,
    detach: bool,
    backend: str | None,
    runs_dir: Path | None,
    guildfile: Path | None,
    **given: Any,
) -> None:
    """Run OPERATION with flags given as NAME=VALUE.

    \b
    A value in batch syntax makes a batch of trials:
      lr=[0.1,0.01]             grid (several lists: every combination)
      lr=range[1:5:2]           1, 3, 5        lr=linspace[0:1:5]   lr=logspace[-4:-1:4]
      lr=loguniform[1e-4:1e-1]  random search (--max-trials, --seed); also uniform, randint, choice[a,b]
    The exit code is the job's exit code (a batch: 0 only if every trial completed).
    """
    from .. import _pipeline as pipeline
    from .._lifecycle import Session
    from .._needed import AlreadyDone
    from .._operation import BATCH_CONFIRM_THRESHOLD, execute, open_guildfile, plan_run, restart
    from .._search import spec_from_options, trials_to_run

    for f in args:
        if f.startswith("-"):
            raise GuildliteError(f"unknown option {f!r} (see guildlite run --help)", exit_code=2)
    search = spec_from_options(optimizer=optimizer, minimize=minimize, maximize=maximize, objective=objective,
                               max_trials=max_trials, seed=seed, prune=prune, prune_min_steps=prune_min_steps,
                               prune_warmup=prune_warmup, prune_reduction_factor=prune_reduction_factor,
                               of_run="--start" if start_staged else "--restart" if restart_spec else None)
    if start_staged:
        other = "--restart" if restart_spec else "--stage" if stage_only else "--needed" if needed else ""
        if other:  # --needed too: a staged run is started as it was staged, never skipped
            raise GuildliteError(f"--start cannot be combined with {other}", exit_code=2)
        _start(args, runs_dir, guildfile, as_json, detach, parallel=parallel, gpus=gpus, max_concurrent=max_concurrent,
               fail_fast=fail_on_trial_error, plugin_names=plugin_names, echo=not as_json, backend=backend,
               backend_options=_backend_options(given) if any(v is not None for v in given.values()) else None)
        return
    target = select_one(runs_dir_for(runs_dir, guildfile), restart_spec) if restart_spec else None
    from_script = _launched_script(target.run_dir) if target is not None and guildfile is None else None
    gf = open_guildfile(guildfile or from_script, args[0] if args and not restart_spec else None)
    if gf.default_op is not None and not restart_spec and (not args or "=" in args[0]):
        args = (gf.default_op, *args)  # Guild's `default: yes` op
    if restart_spec:
        if needed:
            raise GuildliteError("--needed does not go with --restart (a restart runs its run again)", exit_code=2)
        assert target is not None
        job = (pipeline.restart if target.is_pipeline else restart)(
            target, args, guildfile=gf, parallel=parallel, gpus=gpus, fail_fast=fail_on_trial_error,
            plugin_names=plugin_names, echo=not as_json, backend=backend,
            backend_options=_backend_options(given) if any(v is not None for v in given.values()) else None,
            detach=detach, max_concurrent=max_concurrent, max_trials=max_trials)
        if sys.stdin.isatty() and not yes and not as_json:
            what = f"{len(target.trial_ids)} trials of batch" if target.is_batch else (
                "the unfinished steps of pipeline" if target.is_pipeline else "run")
            if not click.confirm(f"Restart {what} {target.id}?", default=True):
                raise GuildliteError("cancelled", exit_code=1)
        if target.is_batch and not detach:
            job.session.progress = _BatchProgress(trials_to_run(target, max_trials)).event
        _finish_run(job.execute(), as_json, stage_only=False, detached=detach)
        return
    if not args:
        raise GuildliteError("missing OPERATION (see guildlite ops)", exit_code=2)
    operation, flags = args[0], args[1:]
    if pipeline.is_pipeline(gf, operation):
        for option, value in (("--nproc-per-node", nproc_per_node), ("--max-trials", max_trials), ("--seed", seed),
                              ("--optimizer/--minimize/--maximize", search)):
            if value is not None:
                raise GuildliteError(f"{option} is an option of one op's run; '{operation}' is a pipeline: give it"
                                     " in its steps", exit_code=2)
        pplan = pipeline.plan(operation, flags, guildfile=gf, runs_dir=runs_dir, label=label, echo=not as_json,
                              detach=detach, plugin_names=plugin_names, backend=backend,
                              backend_options=_backend_options(given), parallel=parallel, gpus=gpus,
                              fail_fast=fail_on_trial_error, max_concurrent=max_concurrent)
        if sys.stdin.isatty() and not yes and not as_json:
            _say(f"You are about to run pipeline {operation}: "
                 + " -> ".join(" ".join([s.op, *s.given(pplan.flags)]) for s in pplan.steps))
            if not click.confirm("Continue?", default=True):
                raise GuildliteError("cancelled", exit_code=1)
        _finish_run(pipeline.execute_pipeline(pplan, stage_only=stage_only, detach=detach), as_json, stage_only,
                    detached=detach)
        return
    plan = plan_run(
        operation,
        flags,
        guildfile=gf,
        runs_dir=runs_dir,
        nproc=nproc_per_node,
        label=label,
        parallel=parallel,
        gpus=gpus,
        max_trials=max_trials,
        seed=seed,
        search=search,
        plugin_names=plugin_names,
        echo=not as_json,
        backend=backend,
        backend_options=_backend_options(given),
        detach=detach,
        fail_fast=fail_on_trial_error,
        confirm=None if yes else _confirm_large,
        needed=needed,
        max_concurrent=max_concurrent,
    )
    big = plan.trials is not None and plan.batch_info["trials"] > BATCH_CONFIRM_THRESHOLD
    if sys.stdin.isatty() and not yes and not big and not as_json:  # a large batch was asked already
        _show_plan(plan)
        if not click.confirm("Continue?", default=True):
            raise GuildliteError("cancelled", exit_code=1)
    session = Session(plan.config, plan.plugins)
    if plan.trials is not None and not detach:
        session.progress = _BatchProgress(plan.batch_info["trials"]).event  # a search's: its budget
    try:
        result = execute(plan, stage_only=stage_only, fail_fast=fail_on_trial_error, session=session, detach=detach)
    except AlreadyDone as e:  # --needed: nothing was published
        if as_json:
            click.echo(json.dumps(_record(e.run), indent=2, default=str))
            return
        _say(f"guildlite: run {e.run.id} of {e.run.op} completed with the same flags, source and requirements:"
             " not run again (--needed)", err=True)
        click.echo(e.run.id)
        return
    _finish_run(result, as_json, stage_only, detached=detach)


def _start(specs: tuple[str, ...], runs_dir: Path | None, guildfile: Path | None, as_json: bool, detach: bool,
           **options: Any) -> None:
    """``--start RUN...``: each run as it was staged; in the foreground one after another (a run
    stopped: the rest stay staged), detached each in a supervisor of its own, all queued at once."""
    from .. import _pipeline as pipeline
    from .._operation import open_guildfile, start
    from .._search import trials_to_run

    if not specs:
        raise GuildliteError("--start needs the runs to start (RUN...: ids, or indexes as in guildlite runs)",
                             exit_code=2)
    where = runs_dir_for(runs_dir, guildfile)
    targets = list({r.id: r for r in (select_one(where, spec) for spec in specs)}.values())
    jobs = [(pipeline.start if r.is_pipeline else start)(r, guildfile=lambda: open_guildfile(guildfile), detach=detach,
                                                          **options)
            for r in targets]  # every run checked before any starts
    for job in jobs:
        if job.run.is_batch and not detach:
            job.session.progress = _BatchProgress(trials_to_run(job.run, None)).event
    code = 0
    for job in jobs:
        if detach or len(jobs) == 1:
            _finish_run(job.execute(), as_json, stage_only=False, detached=detach)
            continue
        try:
            _finish_run(job.execute(), as_json, stage_only=False)
        except SystemExit as e:  # its exit status; a stopped run stops the rest
            code = code or int(e.code or 0)
            if job.run.status == "terminated":
                break
    if code:
        sys.exit(code)


def _finish_run(result: Run, as_json: bool, stage_only: bool, detached: bool = False) -> None:
    """Report a finished run and exit with its exit code; a detached one: its id on stdout."""
    if detached and result.status in ("pending", "running"):
        if as_json:
            click.echo(json.dumps(_record(result), indent=2, default=str))
            return
        from .._search import trials_to_run

        what = f"batch of {trials_to_run(result, None)} trials" if result.is_batch else (
            "pipeline" if result.is_pipeline else "run")
        click.echo(f"guildlite: {what} {result.id} runs in the background (supervisor pid {result.pid}): "
                   f"guildlite watch {result.id}, guildlite stop {result.id}", err=True)
        click.echo(result.id)
        return
    if as_json:
        click.echo(json.dumps(_record(result), indent=2, default=str))
    elif result.virtual or result.status not in ("completed", "staged"):
        _say(_summary(result), err=True)
    if stage_only and not as_json and result.status == "staged":  # the id it takes to start it
        _say(f"guildlite: start it with guildlite run --start {result.id}", err=True)
        click.echo(result.id)
    if stage_only or result.status == "completed":
        return
    from .._lifecycle import stop_signal
    from .._status import exit_status

    sys.exit(exit_status(result.status, result.exit_code, stop_signal()))


def _confirm_large(n: int) -> bool:
    """Asked (before any trial is planned) for a batch of more than BATCH_CONFIRM_THRESHOLD trials."""
    if not sys.stdin.isatty():
        raise GuildliteError(f"{n:,} trials: pass -y to confirm a batch this large", exit_code=2)
    return click.confirm(f"Run a batch of {n:,} trials?", default=False)


def _show_plan(plan: Any) -> None:
    from .._launch import display_command

    cfg = plan.config
    if plan.trials is not None:
        _say(f"You are about to run a batch of {plan.batch_info['trials']} trial(s) of {cfg.op.name}"
                   f" ({len(plan.slots)} at a time)")
        search = plan.batch_info.get("search")
        if search is not None:
            how = f"proposed by {search['optimizer']}" if search["optimizer"] else "as planned"
            _say(f"  search: {how}, to {search['direction']} {search['scalar']} ({search['objective']} value)"
                 + (f", {search['prune']['kind']} pruning" if search["prune"] else ""))
        flags = plan.batch_flags
    else:
        _say(f"You are about to run {cfg.op.name}")
        flags = plan.flags
    for k, v in flags.items():
        _say(f"  {k}: {_fmt(v)}")
    from .._upstream import pick_name

    picked = {pick_name(r.requirement): r.record["run"] for r in cfg.requires.items if r.requirement.kind == "operation"}
    for k, v in {**picked, **plan.batch_info.get("upstream", {})}.items():
        _say(f"  {k}: upstream run {', '.join(v) if isinstance(v, list) else v}")
    _say(f"  command: {display_command(plan.command)}")
    _say(f"  runs dir: {cfg.runs_dir}")


def _launched_script(run_dir: Path) -> Path | None:
    """The script a run made with no guildfile (``guildlite run train.py``) came from, for its
    restart where no guildfile is found: its launch file names the script as its guildfile."""
    from .._guildfile import find_guildfile
    from .._supervisor import read_launch

    if find_guildfile() is not None:
        return None  # a guildfile here says what its ops are, as for any restart
    path = read_launch(run_dir).get("guildfile")
    return Path(path) if isinstance(path, str) and path.endswith(".py") and Path(path).is_file() else None
