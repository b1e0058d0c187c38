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
from ._launch import job_command
from ._lifecycle import RunConfig, Session
from ._plugin_loader import build_plugins
from ._plugins import Plugin
from ._reach import check_nulls, check_op
from ._requires import Resolved
from ._requires import resolve as resolve_requires
from ._run import Run
from ._runs_dir import default_runs_dir, option_runs_dir
from ._slots import Slot
from ._supervisor import read_launch

if TYPE_CHECKING:
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
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
    detach: bool = False,
    fail_fast: bool = False,
    recorded: Mapping[str, Any] | None = None,
    confirm: Callable[[int], bool] | None = None,
    staged: bool = False,
) -> Plan:
    """Validate everything about a run request; raises a GuildliteError, stages nothing.

    ``backend`` (else the op's, else the guildfile's, else ``local``) names the backend;
    ``backend_options`` holds backends' options given on the command line, by backend name (over
    the guildfile's section and the op's; another backend's is an error). ``parallel`` (trials at once) defaults to the backend's choice (``plan_slots``). A batch of more than
    BATCH_CONFIRM_THRESHOLD trials goes ahead only if ``confirm(n)`` says so (None: no question).
    ``recorded``: a recorded run's flags (a restart's), given first, ``assignments`` over them.
    ``staged``: the run is staged already (a detached supervisor starts it): its requirements are
    not resolved again.
    """
    runs_dir = option_runs_dir(runs_dir) if runs_dir else default_runs_dir(guildfile)
    op = with_imported_flags(guildfile.op(op_name), guildfile.dir)
    check_op(op, guildfile.dir)
    given = {**{k: nul_free(k, v) for k, v in (recorded or {}).items() if k in op.flags},  # a record is input
             **parse_assignments(assignments)}
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
    name = backend if backend is not None else op.backend or guildfile.backend  # `--backend=` names none
    engine = make_backend(name, guildfile, op, backend_options)
    engine.check_op(op, nproc)
    slots = engine.plan_slots(op, parallel if batch else None, len(trials or []), gpus)
    given = {k: v for k, v in (backend_options or {}).get(name, {}).items() if v is not None}
    launch = {"guildfile": str(guildfile.path), "op": op.name, "plugin_names": list(plugin_names), "backend": name,
              "backend_options": given, "parallel": parallel, "gpus": gpus, "fail_fast": fail_fast}
    requires = Resolved() if staged else resolve_requires(op, guildfile.dir, runs_dir.resolve(), values,
                                                           str(guildfile.path))
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
    )
    batch_flags, dims = batch_spec(values)
    info = {"trials": len(trials or []), "max_trials": max_trials, "seed": seed, "parallel": len(slots),
            "dims": dims}
    return Plan(config, plugins, values, trials, batch_flags, info, slots, () if staged else _warnings(config))


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


def make_backend(name: str, guildfile: Guildfile, op: OpDef,
                 given: Mapping[str, Mapping[str, Any]] | None = None) -> Backend:
    """Backend ``name`` with its options: its guildfile section, the op's, then the command line's
    (``given``: options by backend name; one given for another backend is an error)."""
    from .backends import OptionError, get

    cls = get(name)
    own = {o.flag for o in cls.cli_options}  # a flag several backends declare is given to each
    foreign: dict[str, list[str]] = {}  # flags given that only other backends have -> those backends
    for other, opts in (given or {}).items():
        if other != name:
            flags = {o.key: o.flag for o in get(other).cli_options}
            for flag in (flags.get(k, k) for k, v in opts.items() if v is not None):
                if flag not in own:
                    foreign.setdefault(flag, []).append(other)
    if foreign:
        flag, others = next(iter(foreign.items()))
        raise GuildliteError(f"--{flag} is an option of backend {', '.join(others)}; this run's backend is {name}"
                             f" (--backend {others[0]}, or a 'backend:' in the guildfile)", exit_code=2)
    mine = {k: v for k, v in (given or {}).get(name, {}).items() if v is not None}
    try:
        cli = cls.parse_section(mine, "the command line")
    except OptionError as e:
        raise GuildliteError(f"--{e.key}: {e}", exit_code=2) from None
    try:
        options = cls.make_options(guildfile.backend_sections.get(name), op.backend_sections.get(name), cli)
    except (TypeError, ValueError) as e:
        raise GuildliteError(f"backend {name}: {e}", exit_code=2) from None
    return cls(options)


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
                                stage_only=stage_only or detach, fail_fast=fail_fast)
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
                    parallel=launch.get("parallel"), gpus=launch.get("gpus"), recorded=_flags_of(run), staged=True)
    engine = plan.config.backend
    assert engine is not None
    slots = plan.slots
    if run.is_batch:
        slots = engine.plan_slots(plan.config.op, launch.get("parallel"), len(run.trial_ids), launch.get("gpus"))
    config = dataclasses.replace(plan.config, echo=False, detached=True, launch=launch)
    return Session(config, plan.plugins), slots, bool(launch.get("fail_fast"))


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
) -> Restart:
    """Validate a restart of ``run`` (flags overridden by ``assignments``) and return what runs it.

    What a restart does is ``Session.prepare_restart`` then ``Session.start`` (``detach``: in a
    detached supervisor). It runs where and as the run was launched (its launch file: backend and
    its command-line options, plugins, parallel, GPUs), unless told otherwise here.
    """
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
        assignments,
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
    return Restart(session, run, None if run.is_batch else dict(plan.flags), slots, fail_fast, detach)


@dataclass
class Restart:
    """A validated restart: ``execute`` runs it (see ``Session.prepare_restart``)."""

    session: Session
    run: Run
    flags: dict[str, Any] | None
    slots: list[Slot]
    fail_fast: bool
    detach: bool = False

    def execute(self) -> Run:
        if not self.detach:
            return self.session.restart(self.run, self.flags, self.slots, self.fail_fast)
        self.session.prepare_restart(self.run, self.flags)
        if self.run.status == "staged":
            self.run.claim()
            self.session.hand_over(self.run)
        return self.run
