"""Pipelines: an op with ``steps:`` runs each step as a child run, in order.

The pipeline is a virtual parent run, under the rule it shares with batches (``_parents``): a
record alone, ``on_run_begin``/``on_run_end`` only, ``running`` while its steps run, ended by them
(``_status.parent_end``). Its record says ``is_pipeline``, lists its steps' runs in step order
(``steps``) and its plan (``pipeline``); each step's run names it as its ``parent``.

A step is planned when its turn comes, as ``guildlite run OP NAME=VALUE...`` would plan it: its
op and items from the guildfile (``${flag}`` replaced by the pipeline's flags), plus, for each
``requires: - operation: X`` of its op, ``X=<the run of the newest earlier step of op X>`` (``name``
defaults to X; of a batch step, its completed trials, or with ``select-best`` the best of them), so
each step reads what the step before it just made. It then runs in a Session of its own, with its
op's plugins (the full suite) and, unless the step says ``needed: false``, ``--needed``: an existing
completed run of the same op, flags, source and requirements is reused instead of run again.

A step that does not complete stops the pipeline (``error``, naming the step) unless it says
``continue-on-error``; a stop (SIGTERM, Ctrl-C, ``guildlite stop``) ends the running step
``terminated`` and the pipeline too. Steps after the one it stopped at are never staged: they
have no run (the pipeline's ``error`` names them). ``--restart PIPELINE`` keeps the runs of the
steps that completed and runs the others again (a step's run in its own dir).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ._batch import is_batch
from ._errors import GuildfileError, GuildliteError, RunNotFoundError
from ._flag_values import given_texts, parse_assignments, resolve
from ._flags import nul_free
from ._lifecycle import RunConfig, Session
from ._needed import AlreadyDone
from ._operation import Plan, Restart, execute, plan_run
from ._operation import restart as restart_run
from ._plugin_loader import build_plugins
from ._run import Run, load_run
from ._runs_dir import default_runs_dir, option_runs_dir
from ._select_best import best_by
from ._supervisor import read_launch

if TYPE_CHECKING:
    from ._guildfile import Guildfile, OpDef
    from ._plugins import Plugin
    from ._slots import Slot
    from ._steps import StepDef

# What each step is planned with, from the pipeline's command line (``plan``'s keyword arguments).
_STEP_OPTIONS = ("plugin_names", "backend", "backend_options", "parallel", "gpus", "fail_fast", "max_concurrent")


@dataclass(frozen=True)
class PipelinePlan:
    """A validated pipeline request: its run's config and plugins, its flags, its steps, and
    what each step is planned with (``options``)."""

    config: RunConfig
    plugins: list[Plugin]
    flags: dict[str, Any]
    steps: tuple[StepDef, ...]
    options: Mapping[str, Any]

    def step_plan(self, step: StepDef, given: Sequence[str], echo: bool, check_only: bool = False) -> Plan:
        """The plan of ``step`` run with ``given`` (``NAME=VALUE`` items). ``check_only``: its upstream
        requirements left out (the runs they pick are made by the steps before it; they are picked
        when its turn comes)."""
        opts, guildfile = self.options, self.config.guildfile
        if check_only:
            guildfile, given = _without_upstream(guildfile, step.op, given)
        gpus = opts["gpus"] if guildfile.op(step.op).gpus_per_trial else None  # --gpus: for the steps that lease
        return plan_run(step.op, given, guildfile=guildfile, runs_dir=self.config.runs_dir,
                        plugin_names=opts["plugin_names"], echo=echo, backend=opts["backend"],
                        backend_options=opts["backend_options"], parallel=opts["parallel"], gpus=gpus,
                        fail_fast=opts["fail_fast"], max_concurrent=opts["max_concurrent"])


def _without_upstream(guildfile: Guildfile, op_name: str, given: Sequence[str]) -> tuple[Guildfile, list[str]]:
    """``guildfile`` with op ``op_name``'s ``- operation:`` requirements left out, and ``given`` less
    the items that pick their runs."""
    op = guildfile.op(op_name)
    upstream = [r for r in op.requires if r.kind == "operation"]
    names = {r.name or r.source for r in upstream}
    lean = dataclasses.replace(op, requires=tuple(r for r in op.requires if r not in upstream))
    return (dataclasses.replace(guildfile, operations={**guildfile.operations, op_name: lean}),
            [g for g in given if g.partition("=")[0] not in names])


def is_pipeline(guildfile: Guildfile, op_name: str) -> bool:
    try:  # by the name `run` finds it by: `pipeline` for a guild.yml model's `mnist:pipeline`
        return bool(guildfile.op(op_name).steps)
    except GuildfileError:
        return False


def plan(
    op_name: str,
    assignments: Sequence[str],
    *,
    guildfile: Guildfile,
    runs_dir: Path | None = None,
    label: str = "",
    echo: bool = True,
    detach: bool = False,
    recorded: Mapping[str, Any] | None = None,
    **options: Any,
) -> PipelinePlan:
    """Validate a pipeline request (its flags, then every step as it would be planned); raises a
    GuildliteError, stages nothing. ``options``: ``plugin_names``, ``backend``,
    ``backend_options``, ``parallel``, ``gpus``, ``fail_fast``, ``max_concurrent``, given to every step."""
    opts: dict[str, Any] = {k: options.get(k) for k in _STEP_OPTIONS}
    opts["plugin_names"] = tuple(opts["plugin_names"] or ())
    opts["fail_fast"] = bool(opts["fail_fast"])
    runs_dir = option_runs_dir(runs_dir) if runs_dir else default_runs_dir(guildfile)
    op = guildfile.op(op_name)
    given = {**{k: nul_free(k, v) for k, v in (recorded or {}).items() if k in op.flags},
             **parse_assignments(assignments)}
    values = resolve(op.name, op.flags, given, given_texts(assignments))
    if opts["gpus"] is not None and not any(guildfile.op(step.op).gpus_per_trial for step in op.steps):
        raise GuildliteError(f"--gpus {opts['gpus']}: no step of pipeline '{op.name}' leases GPUs "
                             "(gpus-per-trial: 0); set gpus-per-trial: 1 (GPUs per run) on a step's operation",
                             exit_code=2)
    if is_batch(values):
        raise GuildliteError(f"pipeline '{op.name}' takes single flag values; write a batch in a step"
                             " (- run: train lr=[0.1,0.01])", exit_code=2)
    launch = {"guildfile": str(guildfile.path), "op": op.name, "plugin_names": list(opts["plugin_names"]),
              "backend_options": dict(opts["backend_options"] or {}), "parallel": opts["parallel"],
              "gpus": opts["gpus"], "fail_fast": opts["fail_fast"], "max_concurrent": opts["max_concurrent"]}
    if opts["backend"] is not None:
        launch["backend"] = opts["backend"]
    config = RunConfig(guildfile=guildfile, op=op, runs_dir=runs_dir.resolve(),
                       opspec=" ".join([op_name, *assignments]), nproc=1, label=label,
                       echo=echo and not detach, launch=launch)
    out = PipelinePlan(config, build_plugins(guildfile, op, opts["plugin_names"]), values, op.steps, opts)
    for i, step in enumerate(op.steps):  # every mistake in a step fails here, before anything is staged
        try:
            out.step_plan(step, step.given(values), echo=False, check_only=True)
        except GuildliteError as e:
            raise GuildliteError(f"{guildfile.path}:{step.line}: pipeline '{op.name}' step {i + 1} ({step.op}): {e}",
                                 exit_code=e.exit_code) from None
    return out


def execute_pipeline(pplan: PipelinePlan, stage_only: bool = False, detach: bool = False,
                     session: PipelineSession | None = None) -> Run:
    """Stage the pipeline's run and run its steps to its end, or only stage it, or (``detach``)
    stage it and hand it over to a detached supervisor (``_supervisor``)."""
    session = session or PipelineSession(pplan)
    info = {"steps": [_info(s, pplan.flags) for s in pplan.steps]}
    with session._invocation():
        pipe = session.stage_parent(dict(pplan.flags), is_pipeline=True, pipeline=info)
        if not (stage_only or detach):
            return session.start(pipe, [])
        session._open.pop(pipe.id, None)  # staged, not started: not this session's to end
    if detach and not stage_only:
        session.hand_over(pipe)
    return pipe


def resume(run: Run, launch: Mapping[str, Any]) -> tuple[PipelineSession, list[Slot], bool]:
    """The session of a staged pipeline handed over to a detached supervisor, rebuilt from its
    launch file (as ``_operation.resume`` for a run)."""
    from ._guildfile import load

    pplan = plan(run.op, [], guildfile=load(Path(launch["guildfile"])), runs_dir=run.run_dir.parent,
                 echo=False, recorded=run.flags, **_launch_options(launch))
    config = dataclasses.replace(pplan.config, echo=False, detached=True, launch=launch)
    return PipelineSession(dataclasses.replace(pplan, config=config)), [], bool(launch.get("fail_fast"))


def _launch_options(launch: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """The step options a pipeline was launched with, each overridden by a ``given`` one."""
    out = {k: launch.get(k) for k in _STEP_OPTIONS}
    out.update({k: v for k, v in given.items() if v})
    return out


def start(run: Run, *, guildfile: Callable[[], Guildfile], **options: Any) -> Restart:
    """Validate the start of a pipeline staged with ``--stage`` (as ``_operation.start``)."""
    from ._guildfile import load

    if run.status != "staged":
        raise GuildliteError(f"pipeline {run.id} is {run.status}, not staged: --start starts a run staged with"
                             " --stage (guildlite run --restart runs it again)", exit_code=2)
    path = read_launch(run.run_dir).get("guildfile")
    return restart(run, (), guildfile=load(Path(path)) if path and Path(path).is_file() else guildfile(),
                   staged=True, **options)


def restart(run: Run, assignments: Sequence[str], *, guildfile: Guildfile, echo: bool = True,
            detach: bool = False, staged: bool = False, **options: Any) -> Restart:
    """Validate a restart of pipeline ``run``: its steps that completed are kept, the others run
    again (``PipelineSession.start``); ``staged``: the start of a staged one. It runs as it was
    launched, unless ``options`` say otherwise."""
    if assignments:
        raise GuildliteError("a pipeline restart re-runs its unfinished steps as they were: it takes no flags",
                             exit_code=2)
    pplan = plan(run.op, [], guildfile=guildfile, runs_dir=run.run_dir.parent, label=run.label, echo=echo,
                 detach=detach, recorded=run.flags, **_launch_options(read_launch(run.run_dir), **options))
    for i, entry in enumerate((run.pipeline or {}).get("steps") or []):
        was, now = entry.get("op"), pplan.steps[i].op if i < len(pplan.steps) else None
        if entry.get("run") and was != now:
            raise GuildliteError(f"pipeline {run.id}: its steps changed since it ran (step {i + 1} was {was}, now "
                                 f"{now or 'none'}): run '{run.op}' anew", exit_code=2)
    return Restart(PipelineSession(pplan), run, None, [], pplan.options["fail_fast"], detach, staged)


class PipelineSession(Session):
    """The session of a pipeline's run: its hooks and its end; each step runs in a Session of its
    own (``step``, while it runs), which this one hands every stop signal to."""

    def __init__(self, pplan: PipelinePlan, log: Callable[[str], None] | None = None) -> None:
        super().__init__(pplan.config, pplan.plugins, log)
        self.plan = pplan
        self.step: Session | None = None

    def _on_signal(self, sig: int, frame: Any) -> None:
        step = self.step
        if step is None:
            super()._on_signal(sig, frame)
            return
        self.stopping = self.stopping or sig
        step._on_signal(sig, frame)  # it says so and stops its job (a second signal kills it)

    def start(self, run: Run, slots: Sequence[Slot], fail_fast: bool = False, trials: list[Run] | None = None) -> Run:
        """Run the pipeline ``run`` (staged, or prepared for a restart) to its recorded end."""
        with self._invocation():
            self._open[run.id] = run
            if self.begin_parent(run):
                self.run_children(run, lambda: self._steps(run))
            return run

    def _steps(self, pipe: Run) -> str | None:
        """Run the steps in order; what stopped the pipeline (None: every step that had to complete did)."""
        steps = self.plan.steps
        entries = _entries(pipe, self.plan)
        earlier = [e.get("run") for e in entries]  # a restart's: the runs its steps made before
        made: list[Run] = []
        failure, last = None, len(steps)  # last: the first step not started
        for i, step in enumerate(steps):
            what = f"step {i + 1} ({step.op})"
            if self.stopping is not None:
                failure, last = f"stopped before {what}", i
                break
            try:
                child = self._step(pipe, i, step, made, earlier[i])
            except GuildliteError as e:
                self._note(pipe, i, error=str(e))
                if step.continue_on_error and self.stopping is None:
                    continue
                failure, last = f"{what} could not start: {e}", i + 1
                break
            made.append(child)
            if child.status == "completed" or (step.continue_on_error and self.stopping is None):
                continue
            error = f": {child.error['message']}" if child.error and child.error.get("message") else ""
            failure, last = f"{what} run {child.id} ended {child.status}{error}", i + 1
            break
        if failure and last < len(steps):
            failure += "; not started: " + ", ".join(f"step {j + 1} ({s.op})" for j, s in enumerate(steps) if j >= last)
        counts: dict[str, int] = {}
        for r in made:
            counts[r.status] = counts.get(r.status, 0) + 1
        pipe.pipeline = {**(pipe.pipeline or {}), "summary": counts}
        return failure

    def _step(self, pipe: Run, i: int, step: StepDef, made: list[Run], earlier: str | None) -> Run:
        """Step ``i``'s run: an earlier attempt's that completed, one reused (``needed``), or one run now."""
        prev = _load(pipe.run_dir.parent, earlier)
        if prev is not None and prev.op == step.op and prev.status == "completed":
            self._record(pipe, i, prev, reused="completed before")
            return prev
        op = self.cfg.guildfile.op(step.op)
        given = step.given(pipe.flags)
        upstream, selected = _upstream(op, made, given)
        given = [*given, *upstream]
        echo, opts = self.cfg.echo, self.plan.options
        if prev is not None and prev.op == step.op and prev.parent_id == pipe.id:  # again, in its own dir
            job = restart_run(prev, [] if prev.is_batch else given, guildfile=self.cfg.guildfile, echo=echo, **opts)
            session: Session = job.session
            go: Callable[[], Run] = job.execute
        else:
            step_plan = self.plan.step_plan(step, given, echo)
            needed = step.needed and step_plan.trials is None  # (--needed is for single runs)
            session = Session(dataclasses.replace(step_plan.config, detached=self.cfg.detached, needed=needed),
                              step_plan.plugins)

            def go() -> Run:
                return execute(step_plan, fail_fast=opts["fail_fast"], session=session)

        session.parent = pipe
        session.progress = self._seen(pipe, i, selected)
        self.step = session
        if self.stopping is not None:  # a stop that came while it was planned
            session.stopping = self.stopping
        try:
            child = go()
        except AlreadyDone as e:  # needed: a completed run did what this one would do; none was published
            self._record(pipe, i, e.run, reused="needed", selected=selected)
            self.log(f"guildlite: pipeline {pipe.id} step {i + 1}/{len(self.plan.steps)} ({step.op}): run {e.run.id}"
                     " completed with the same flags, source and requirements: reused (needed)")
            return e.run
        finally:
            self.step = None
            if session.stopping is not None:
                self.stopping = self.stopping or session.stopping
        self._record(pipe, i, child, selected=selected)
        self.log(f"guildlite: pipeline {pipe.id} step {i + 1}/{len(self.plan.steps)} ({step.op}): run {child.id}"
                 f" {child.status}")
        return child

    def _seen(self, pipe: Run, i: int, selected: Mapping[str, Any]) -> Callable[[str, Run], None]:
        """A step session's progress: record the step's run in the pipeline as soon as it begins
        (a trial's: its batch), so that readers (``watch``, ``runs info``) follow it."""

        def seen(event: str, run: Run) -> None:
            top = run if run.parent_id == pipe.id else run._parent
            if top is not None and top.parent_id == pipe.id and _entries(pipe, self.plan)[i].get("run") != top.id:
                self._record(pipe, i, top, selected=selected)
                self.log(f"guildlite: pipeline {pipe.id} step {i + 1}/{len(self.plan.steps)} ({top.op}):"
                         f" run {top.id} started")

        return seen

    def _record(self, pipe: Run, i: int, run: Run, **info: Any) -> None:
        """Record ``run`` as step ``i``'s, in the plan's entry and in ``steps``."""
        self._note(pipe, i, run=run.id, status=run.status, **{k: v for k, v in info.items() if v})

    def _note(self, pipe: Run, i: int, **info: Any) -> None:
        """Update step ``i``'s entry of the pipeline's plan; ``steps`` lists the runs the entries
        name, in step order (a step that could not start has none). Saved at once, for readers."""
        entries = _entries(pipe, self.plan)
        entries[i] = {k: v for k, v in entries[i].items() if k not in ("error", "reused", "selected")} | info
        pipe.pipeline = {**(pipe.pipeline or {}), "steps": entries}
        pipe.step_ids = [e["run"] for e in entries if e.get("run")]
        pipe.save()


def _info(step: StepDef, flags: Mapping[str, Any]) -> dict[str, Any]:
    """A step's entry in the pipeline's plan (run.json ``pipeline.steps``), before it starts."""
    return {"op": step.op, "given": step.given(flags), "continue_on_error": step.continue_on_error,
            "needed": step.needed}


def _entries(pipe: Run, pplan: PipelinePlan) -> list[dict[str, Any]]:
    """The pipeline's plan entries, one per step of ``pplan``: as recorded (a restart's keep the
    runs its steps made), a new step's fresh."""
    recorded = list((pipe.pipeline or {}).get("steps") or [])
    return [recorded[i] if i < len(recorded) else _info(s, pipe.flags) for i, s in enumerate(pplan.steps)]


def _load(runs_dir: Path, run_id: str | None) -> Run | None:
    if not run_id:
        return None
    try:
        return load_run(runs_dir / run_id)
    except (RunNotFoundError, ValueError):
        return None


def _upstream(op: OpDef, made: Sequence[Run], given: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``NAME=RUN`` items that point each ``requires: - operation: X`` of ``op`` at the newest
    earlier step's run of X (a batch's completed trials, or its best by ``select-best``), and what
    was selected; a requirement the step's items already name, or that no earlier step made, is
    left to its default (the newest completed run of X)."""
    named = {item.partition("=")[0] for item in given}
    items, selected = [], {}
    for req in op.requires:
        name = req.name or req.source
        if req.kind != "operation" or name in named:
            continue
        source = next((r for r in reversed(made) if r.op == req.source), None)
        if source is None:
            continue
        runs = [t for t in source.trials if t.status == "completed"] if source.is_batch else (
            [source] if source.status == "completed" else [])
        if not runs:
            raise GuildliteError(f"requires operation {req.source}: its step's run {source.id} ended {source.status}"
                                 " with no completed run to use")
        if req.select_best is not None:
            how, key = req.select_best
            best, value = best_by(runs, how, key)
            selected[name] = {"run": best.id, "by": f"{how} {key}", "value": value}
            runs = [best]
        items.append(f"{name}={runs[0].id}" if len(runs) == 1 and not source.is_batch or req.select_best
                     else f"{name}=[{','.join(r.id for r in runs)}]")
    return items, selected
