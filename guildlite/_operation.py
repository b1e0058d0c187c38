"""From ``guildlite run OP NAME=VALUE ...`` to a validated plan, and running that plan.

Everything that can be wrong with the guildfile, the flags or the plugins fails here, in
``plan_run``, before a single directory is created.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ._batch import count_trials, is_batch, plan_trials
from ._batchspec import batch_flags as batch_spec
from ._config_file import check as check_config
from ._errors import GuildfileError, GuildliteError
from ._flag_values import Grid, Random, given_texts, parse_assignments, resolve
from ._flags import nul_free
from ._flags_import import with_imported_flags
from ._guildfile import GUILDFILE, Guildfile, OpDef, find_guildfile, load
from ._hydra import with_added_overrides
from ._launch import job_command
from ._lifecycle import Session
from ._plugin_loader import build_plugins
from ._plugins import Plugin
from ._reach import check_nulls, check_op
from ._requires import Resolved
from ._requires import resolve as resolve_requires
from ._run import Run
from ._runconfig import RunConfig
from ._runs_dir import default_runs_dir, option_runs_dir
from ._script_op import is_script
from ._search import check_budget, first_values, plan_search, with_budget
from ._slots import Slot
from ._status import DONE, ENDED
from ._supervisor import read_launch
from ._upstream import pin, recorded_picks, split_assignments

if TYPE_CHECKING:
    from ._study import SearchSpec
    from .backends import Backend

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
    warnings: tuple[str, ...] = ()  # said once before anything is staged (``execute``)
    trial_requires: list[Resolved] | None = None  # each trial's, when its upstream runs are a batch dimension

    @property
    def command(self) -> list[str]:
        """The command line of the (first) job, for display (a search: a job of its first values)."""
        flags = self.trials[0] if self.trials else first_values(self.flags)  # a search: its first values
        return job_command(self.config.op, flags, self.config.nproc)


def open_guildfile(path: str | Path | None = None, op_name: str | None = None) -> Guildfile:
    """Load ``path`` or the nearest guildfile (or guild.yml), saying its warnings; ``op_name``: a script to run alone."""
    import sys

    found = Path(path) if path else find_guildfile()
    if found is not None and found.is_dir():
        found = found / GUILDFILE
    gf = load(found) if found is not None else None
    if op_name is not None and is_script(op_name) and (gf is None or op_name not in gf.operations):
        return load(Path(op_name))
    if gf is None:
        raise GuildfileError(f"no {GUILDFILE} in {Path.cwd()} or its parents (create one, cd into a project, or"
                             " run a script: guildlite run train.py)")
    for w in gf.warnings:
        print(f"guildlite: warning: {w}", file=sys.stderr)
    return gf


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
    search: SearchSpec | None = None,
    plugin_names: Sequence[str] = (),
    echo: bool = True,
    backend: str | None = None,
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
    detach: bool = False,
    fail_fast: bool = False,
    recorded: Mapping[str, Any] | None = None,
    confirm: Callable[[int], bool] | None = None,
    max_concurrent: int | None = None,
    staged: bool = False,
    needed: bool = False,
) -> Plan:
    """Validate everything about a run request; raises a GuildliteError, stages nothing.

    ``backend`` (else the op's, else the guildfile's, else ``local``) names the backend;
    ``backend_options`` holds backends' options given on the command line, by backend name (over
    the guildfile's section and the op's; another backend's is an error). ``parallel`` (trials at once) defaults to the backend's choice (``plan_slots``). A batch of more than
    BATCH_CONFIRM_THRESHOLD trials goes ahead only if ``confirm(n)`` says so (None: no question).
    ``recorded``: a recorded run's flags (a restart's), given first, ``assignments`` over them.
    ``max_concurrent`` (else the op's, else the guildfile's ``max-concurrent``) caps this user's
    runs at once on this machine, for a backend whose runs queue here (``Backend.machine_queue``).
    ``staged``: the run is staged already (a detached supervisor starts it): its requirements are
    not resolved again. An assignment named like an upstream requirement picks its run
    (``_upstream``). ``needed``: a run like an existing completed one is not run (``_needed``).
    """
    runs_dir = option_runs_dir(runs_dir) if runs_dir else default_runs_dir(guildfile)
    if guildfile.op(op_name).steps:
        raise GuildliteError(f"operation '{op_name}' is a pipeline: its plan is _pipeline.plan's", exit_code=2)
    op, args = with_added_overrides(with_imported_flags(guildfile.op(op_name), guildfile.dir), [*assignments], recorded)
    check_op(op, guildfile.dir)
    flag_args, picked = split_assignments(op, args)
    given = {**{k: nul_free(k, v) for k, v in (recorded or {}).items() if k in op.flags},  # a record is input
             **parse_assignments(flag_args)}
    values = resolve(op.name, op.flags, given, given_texts(flag_args))
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
    upstream = pin(op, runs_dir, picked, known=list(guildfile.operations)) if not staged else {}
    dims = {k: Grid(v) for k, v in upstream.items() if isinstance(v, tuple)}  # vary slowest: first
    batch = is_batch(values) or bool(dims)
    if needed and batch:
        raise GuildliteError("--needed applies to single runs, not to a batch", exit_code=2)
    search = plan_search(search, values, batch, bool(dims)) if search is not None else None
    proposed = search is not None and search.optimizer is not None  # trials proposed as slots free, none planned
    if batch:
        n = (search.max_trials or 0) if search is not None and proposed else count_trials({**dims, **values}, max_trials)
        if n > MAX_TRIALS:
            raise GuildliteError(f"{n:,} trials is more than guildlite plans ({MAX_TRIALS:,}); use --max-trials",
                                 exit_code=2)
        if n > BATCH_CONFIRM_THRESHOLD and confirm is not None and not confirm(n):
            raise GuildliteError("cancelled", exit_code=1)
    planned = plan_trials(op.flags, {**dims, **values}, max_trials=max_trials, seed=seed) if batch and not proposed \
        else [] if proposed else None
    trials = [{k: v for k, v in t.items() if k not in dims} for t in planned] if planned is not None else None
    for flags in (trials or [first_values(values)])[:1000]:  # a flag that cannot be encoded (a positional None) fails here
        job_command(op, flags, nproc)
    name = backend if backend is not None else op.backend or guildfile.backend  # `--backend=` names none
    from .backends import make as make_backend

    engine = make_backend(name, guildfile, op, backend_options)
    engine.check_op(op, nproc)
    cap = _max_concurrent(max_concurrent, guildfile, op, engine)
    if gpus is not None and not op.gpus_per_trial:
        # Otherwise every run would see all the GPUs, leasing none: the sharing --gpus promises.
        raise GuildliteError(f"--gpus {gpus}: operation '{op.name}' leases no GPUs (gpus-per-trial: 0); "
                             "set gpus-per-trial: 1 (GPUs per run) on it in the guildfile", exit_code=2)
    slots = engine.plan_slots(op, parallel if batch else None, n if proposed else len(trials or []), gpus)
    given = {k: v for k, v in (backend_options or {}).get(name, {}).items() if v is not None}
    launch = {"guildfile": str(guildfile.path), "op": op.name, "plugin_names": list(plugin_names), "backend": name,
              "backend_options": given, "parallel": parallel, "gpus": gpus, "fail_fast": fail_fast,
              "max_concurrent": max_concurrent}
    # Resolved once per invocation (every trial gets the same), or once per upstream run of a dimension.
    fixed = {k: v for k, v in upstream.items() if isinstance(v, str)}
    per_trial = [{k: str(t[k]) for k in dims} for t in planned] if dims and planned is not None else None
    trial_requires = (_resolve_each(op, guildfile, runs_dir.resolve(), {**values, **fixed}, per_trial or [{}])
                      if not staged else [Resolved()])
    requires = trial_requires[0]
    config = RunConfig(
        guildfile=guildfile,
        op=op,
        runs_dir=runs_dir.resolve(),
        requires=requires,
        opspec=" ".join([op_name, *assignments]),
        nproc=nproc,
        label=label,
        echo=echo and (not batch or len(slots) == 1) and not detach,
        backend=engine,
        launch=launch,
        needed=needed,
        max_concurrent=cap,
    )
    batch_flags, flag_dims = batch_spec(values)
    info = {"trials": n if proposed else len(trials or []), "max_trials": max_trials, "seed": seed, "parallel": len(slots),
            "dims": flag_dims, **({"upstream": {k: list(v.values) for k, v in dims.items()}} if dims else {}),
            **({"search": search.to_dict()} if search is not None else {})}
    said = () if staged else (*_warnings(config), *_search_warnings(n if proposed else 0, len(slots), parallel))
    return Plan(config, plugins, values, trials, batch_flags, info, slots, said, trial_requires if per_trial else None)


def _search_warnings(n: int, slots: int, parallel: int | None) -> tuple[str, ...]:
    """A search of ``n`` proposed trials whose backend runs them all at once by default (a queue
    backend queues every trial): each is proposed before any has ended, so the optimizer learns
    nothing from the others; the user likely meant the search to learn."""
    if parallel is None and n > 1 and slots >= n:
        return (f"all {n} trials of the search are proposed at once (the backend runs every trial together "
                f"unless --parallel K caps them), before any has ended: its optimizer learns nothing from "
                f"earlier trials; give --parallel K (fewer than {n}) for it to",)
    return ()


def _resolve_each(op: OpDef, guildfile: Guildfile, runs_dir: Path, assigned: Mapping[str, Any],
                  picks: Sequence[Mapping[str, str]]) -> list[Resolved]:
    """``op``'s requirements resolved for each of ``picks`` (upstream run ids by requirement name,
    over ``assigned``), each distinct one once."""
    done: dict[tuple[tuple[str, str], ...], Resolved] = {}
    out = []
    for pick in picks:
        key = tuple(sorted(pick.items()))
        if key not in done:
            done[key] = resolve_requires(op, guildfile.dir, runs_dir, {**assigned, **pick}, str(guildfile.path))
        out.append(done[key])
    return out


def _warnings(cfg: RunConfig) -> tuple[str, ...]:
    """Project files the op's ``include`` matched that are not copied, and files a required
    directory leaves out: said before launch (``sourcecode.json`` and run.json list them too)."""
    from ._sourcecode import include_report, select_files

    out = []
    if cfg.op.sourcecode.include or cfg.requires.items:
        project = cfg.guildfile.dir
        chosen = select_files(project, cfg.op.sourcecode, skip=(cfg.runs_dir,))
        for line in include_report(project, cfg.op.sourcecode, chosen,
                                   lambda p: p != cfg.op.script and cfg.requires.covers(p) is None):
            out.append(f"sourcecode include: {line}: not copied into the run dir")
        out.extend(cfg.requires.replaced(project, chosen.files))
    return (*out, *cfg.requires.warnings)


def _max_concurrent(given: int | None, guildfile: Guildfile, op: OpDef, engine: Backend) -> int | None:
    """The cap on this user's runs at once: ``--max-concurrent``, else the op's, else the guildfile's."""
    from ._guildfile import MAX_CONCURRENT

    if given is not None and not 1 <= given <= MAX_CONCURRENT:
        raise GuildliteError(f"--max-concurrent must be from 1 to {MAX_CONCURRENT}, got {given}", exit_code=2)
    cap = given if given is not None else op.max_concurrent if op.max_concurrent is not None else guildfile.max_concurrent
    if cap is not None and not engine.machine_queue:
        if given is None:  # the guildfile's, for runs here: another engine has a queue of its own
            return None
        raise GuildliteError(f"--max-concurrent caps runs that queue on this machine; backend {engine.name} queues"
                             " its jobs itself (use --parallel to cap a batch's jobs in its queue)", exit_code=2)
    if cap is not None:  # this machine's queue must be there to join, before anything is staged
        from ._leases import lease_dir

        lease_dir()
    return cap


def execute(plan: Plan, stage_only: bool = False, fail_fast: bool = False, session: Session | None = None,
            detach: bool = False) -> Run:
    """Run a plan to its end, stage it, or (``detach``) stage it and hand it over to a detached
    supervisor (``_supervisor``); returns the run, or the batch run."""
    session = session or Session(plan.config, plan.plugins)
    for warning in plan.warnings:
        session.log(f"guildlite: warning: {warning}")
    if plan.trials is None:
        run = session.run_single(dict(plan.flags), plan.slots[0], stage_only=stage_only or detach)
    else:
        run = session.run_batch(plan.batch_flags, plan.trials, plan.slots, plan.batch_info,
                                stage_only=stage_only or detach, fail_fast=fail_fast, requires=plan.trial_requires)
    if detach and not stage_only:
        session.hand_over(run)
    return run


def resume(run: Run, launch: Mapping[str, Any]) -> tuple[Session, list[Slot], bool]:
    """The session, slots and fail-fast of a staged run handed over to a detached supervisor,
    rebuilt from its launch file (what ``plan_run`` planned, without its flags: the run has them)."""
    guildfile = load(Path(launch["guildfile"]))
    plan = plan_run(run.op, [], guildfile=guildfile, runs_dir=run.run_dir.parent, nproc=run.nproc_per_node,
                    plugin_names=launch.get("plugin_names") or (), echo=False, backend=launch.get("backend"),
                    backend_options={launch["backend"]: launch.get("backend_options") or {}},
                    parallel=launch.get("parallel"), gpus=launch.get("gpus"), recorded=_flags_of(run), staged=True,
                    max_concurrent=launch.get("max_concurrent"))
    engine = plan.config.backend
    assert engine is not None
    slots = plan.slots
    if run.is_batch:
        slots = engine.plan_slots(plan.config.op, launch.get("parallel"), len(run.trial_ids), launch.get("gpus"))
    config = dataclasses.replace(plan.config, echo=False, detached=True, launch=launch)
    return Session(config, plan.plugins), slots, bool(launch.get("fail_fast"))


def _recorded_picks(run: Run, op: OpDef, assignments: Sequence[str]) -> list[str]:
    """The assignments that pick the upstream runs ``run`` was staged with again (a restart), but
    for those ``assignments`` pick anew; a batch's: its unfinished trials', which must agree."""
    if not run.is_batch:
        return recorded_picks(op, run.requires, assignments)
    picks = {tuple(recorded_picks(op, t.requires, ())) for t in run.trials if t.status not in DONE}
    if len(picks) > 1:
        raise GuildliteError(f"the trials of batch {run.id} used different upstream runs: restart them one by one"
                             " (guildlite run --restart TRIAL)", exit_code=2)
    return list(next(iter(picks), ()))


def _flags_of(run: Run) -> dict[str, Any]:
    """A run's flags, or a batch's first trial's (a batch's own hold its dimensions)."""
    if not run.is_batch:
        return run.flags
    return next((t.flags for t in run.trials), {})


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
    backend: str | None = None,
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
    detach: bool = False,
    max_concurrent: int | None = None,
    staged: bool = False,
    max_trials: int | None = None,
) -> Restart:
    """Validate a restart of ``run`` (flags overridden by ``assignments``) and return what runs it.

    What a restart does is ``Session.prepare_restart`` then ``Session.start`` (``detach``: in a
    detached supervisor). It runs where and as the run was launched (its launch file: backend and
    its command-line options, plugins, parallel, GPUs, max-concurrent), unless told otherwise here.
    ``staged``: start it as it was staged instead (``start``), nothing staged again.
    ``max_trials``: a search's trial budget, all trials counted (more: the search goes on).
    """
    check_budget(run, max_trials)
    if run.is_batch and assignments:
        raise GuildliteError("a batch restart re-runs its unfinished trials as they were: it takes no flags", exit_code=2)
    if run.is_trial and run.parent is not None and run.parent.status in ("pending", "running"):
        raise GuildliteError(f"run {run.id} belongs to batch {run.parent_id}, which is still running", exit_code=2)
    launch = read_launch(run.run_dir)
    if backend is None and launch.get("backend"):
        backend = str(launch["backend"])
        backend_options = backend_options or {backend: launch.get("backend_options") or {}}
    plan = plan_run(
        run.op,
        [*_recorded_picks(run, guildfile.op(run.op), assignments), *assignments],
        guildfile=guildfile,
        runs_dir=run.run_dir.parent,
        nproc=run.nproc_per_node,
        label=run.label,
        parallel=parallel if parallel is not None else launch.get("parallel"),
        gpus=gpus if gpus is not None else launch.get("gpus"),
        plugin_names=plugin_names or launch.get("plugin_names") or (),
        echo=echo,
        backend=backend,
        backend_options=backend_options,
        detach=detach,
        fail_fast=fail_fast,
        recorded=_flags_of(run),
        max_concurrent=max_concurrent if max_concurrent is not None else launch.get("max_concurrent"),
        staged=staged,  # --start: its requirements were resolved when it was staged
    )
    if plan.trials is not None:
        raise GuildliteError("a restart takes plain flag values, not batch syntax", exit_code=2)
    slots = plan.slots
    engine = plan.config.backend
    assert engine is not None
    if run.is_batch:
        slots = engine.plan_slots(plan.config.op, plan.config.launch.get("parallel"), len(run.trial_ids),
                                  plan.config.launch.get("gpus"))
    echo = echo and not detach and (not run.is_batch or len(slots) == 1)
    session = Session(dataclasses.replace(plan.config, echo=echo), plan.plugins)
    return Restart(session, run, None if run.is_batch else dict(plan.flags), slots, fail_fast, detach, staged,
                   max_trials)


def start(run: Run, *, guildfile: Callable[[], Guildfile], **options: Any) -> Restart:
    """Validate the start of a run staged with ``--stage`` (a batch: with its staged trials) and
    return what starts it, as it was staged: with the guildfile, plugins and options it was staged
    with (its launch file; ``guildfile()`` when that file is gone), unless ``options`` (those of
    ``restart``) say otherwise. It takes its place in this machine's queue like any run.
    GuildliteError (exit 2) for a run that is not staged, or a trial (its batch starts it)."""
    if run.status != "staged":
        how = "guildlite run --restart runs it again" if run.status in ENDED else "it was started already"
        raise GuildliteError(f"run {run.id} is {run.status}, not staged: --start starts a run staged with --stage"
                             f" ({how})", exit_code=2)
    if run.is_trial:
        raise GuildliteError(f"run {run.id} is a trial of batch {run.parent_id}: start the batch"
                             f" (guildlite run --start {run.parent_id})", exit_code=2)
    path = read_launch(run.run_dir).get("guildfile")
    gf = load(Path(path)) if path and Path(path).is_file() else guildfile()
    return restart(run, (), guildfile=gf, staged=True, **options)


@dataclass
class Restart:
    """A validated restart (see ``Session.prepare_restart``) or start of a staged run (``staged``):
    ``execute`` runs it."""

    session: Session
    run: Run
    flags: dict[str, Any] | None
    slots: list[Slot]
    fail_fast: bool
    detach: bool = False
    staged: bool = False
    max_trials: int | None = None  # a search's new trial budget

    def execute(self) -> Run:
        if self.staged:
            return self._start()
        trials = self.session.prepare_restart(self.run, self.flags)
        with_budget(self.run, self.max_trials)
        if not self.detach:
            return self.session.start(self.run, self.slots, self.fail_fast, trials)
        if self.run.status == "staged":
            self.run.claim()
            self.session.hand_over(self.run)
        return self.run

    def _start(self) -> Run:
        """Start the staged run once it is ours: a concurrent ``--start`` of it finds it owned,
        or no longer staged."""
        from ._run import raw_run

        run = self.run
        run.claim()
        status = raw_run(run.run_dir).status
        if status != "staged":
            run.release()
            raise GuildliteError(f"run {run.id} is {status} now, not staged: it was started meanwhile", exit_code=2)
        if self.detach:
            self.session.hand_over(run)
            return run
        return self.session.start(run, self.slots, self.fail_fast)
