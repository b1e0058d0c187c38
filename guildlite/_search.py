"""A search: the ``run`` options that ask for one (``spec_from_options``), checked when the batch
is planned (``plan_search``), and, as the batch runs, the trials it proposes one at a time as
slots free up, each told to its study and optimizer when it ends (``Search``).

A batch with a search has a study (``_study``); with an optimizer its trials are not planned up
front: the scheduler draws the next one from ``Search.trials`` when a slot is free, and the
optimizer proposes it knowing how every trial before it ended.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping

from ._batch import coerce_sampled
from ._errors import GuildliteError
from ._status import DONE, ENDED
from ._study import Outcome, PruneSpec, SearchSpec, Study, objective_value, search_spec

MAX_TRIALS = 1_000_000  # as a planned batch's (``_operation``)

if TYPE_CHECKING:
    from ._flags import FlagDef
    from ._run import Run


def spec_from_options(
    *,
    optimizer: str | None = None,
    minimize: str | None = None,
    maximize: str | None = None,
    objective: str | None = None,
    max_trials: int | None = None,
    seed: int | None = None,
    prune: str | None = None,
    prune_min_steps: int | None = None,
    prune_warmup: int | None = None,
    prune_reduction_factor: int | None = None,
    of_run: str | None = None,
) -> SearchSpec | None:
    """The search the ``run`` options ask for, or None (none of them given); GuildliteError (exit 2)
    for options that do not go together (``of_run``: ``--start`` or ``--restart``, which take none
    of them). Nothing is imported or looked up here: the optimizer's name is checked where the
    search is planned (``_optimizers.load``)."""
    prune_opts = {"--prune-min-steps": prune_min_steps, "--prune-warmup": prune_warmup,
                  "--prune-reduction-factor": prune_reduction_factor}
    given = {"--optimizer": optimizer, "--minimize": minimize, "--maximize": maximize, "--objective": objective,
             "--prune": prune, **prune_opts}
    first = next((k for k, v in given.items() if v is not None), None)
    if first is not None and of_run is not None:
        how = "it is started as it was staged" if of_run == "--start" else "a restart continues its batch's" \
            " search as it was (--max-trials asks for more trials)"
        raise GuildliteError(f"{first} does not go with {of_run}: {how}", exit_code=2)
    if prune is None:
        stray = [k for k, v in prune_opts.items() if v is not None]
        if stray:
            raise GuildliteError(f"{stray[0]} goes with --prune median|asha", exit_code=2)
    if minimize is not None and maximize is not None:
        raise GuildliteError("--minimize and --maximize do not go together: a search has one objective", exit_code=2)
    scalar = minimize if minimize is not None else maximize
    if scalar is None:
        for option, value in (("--optimizer", optimizer), ("--prune", prune), ("--objective", objective)):
            if value is not None:
                raise GuildliteError(f"{option} needs the scalar to optimize: --minimize SCALAR or --maximize SCALAR",
                                     exit_code=2)
        return None
    if not scalar.strip() or scalar != scalar.strip() or any(not c.isprintable() for c in scalar):
        raise GuildliteError(f"--{'minimize' if minimize is not None else 'maximize'}: {scalar!r} is not a scalar"
                             " name", exit_code=2)
    if optimizer is not None and (not optimizer.strip() or optimizer != optimizer.strip()):
        raise GuildliteError(f"--optimizer: {optimizer!r} is not an optimizer name", exit_code=2)
    obj = objective or "last"
    if obj not in ("last", "min", "max"):
        raise GuildliteError(f"--objective must be last, min or max, got {obj!r}", exit_code=2)
    spec_prune = None
    if prune is not None:
        if prune not in ("median", "asha"):
            raise GuildliteError(f"--prune must be median or asha, got {prune!r}", exit_code=2)
        for option, least in (("--prune-min-steps", 0), ("--prune-warmup", 0), ("--prune-reduction-factor", 2)):
            number = prune_opts[option]
            if number is not None and number < least:
                raise GuildliteError(f"{option} must be at least {least}, got {number}", exit_code=2)
        if prune_reduction_factor is not None and prune != "asha":
            raise GuildliteError("--prune-reduction-factor is ASHA's: it goes with --prune asha", exit_code=2)
        spec_prune = PruneSpec(kind=prune, min_steps=prune_min_steps or 0,  # type: ignore[arg-type]
                               warmup=prune_warmup or 0, reduction_factor=prune_reduction_factor or 3)
    direction: Literal["minimize", "maximize"] = "minimize" if minimize is not None else "maximize"
    return SearchSpec(optimizer=optimizer, scalar=scalar, direction=direction,
                      objective=obj, max_trials=max_trials, seed=seed, prune=spec_prune)  # type: ignore[arg-type]


class Search:
    """A batch's search as it runs: its study, its optimizer (if any), the trials it proposes
    (``trials``) and what it is told of each trial's end (``ended``).

    Made when the batch starts (again): in the foreground, in a detached supervisor, on a
    restart. The optimizer is told every trial that ended before, in order, so it proposes the
    next knowing all of them; a trial that ended without its study being told (its owner was
    killed) is told now. An optimizer that fails (raises, or proposes what the batch cannot run)
    is asked nothing more: the trials running end as they will, and ``failure`` says why the
    batch is an error.
    """

    def __init__(self, batch: Run, stage: Callable[[dict[str, Any]], Run], defs: Mapping[str, FlagDef],
                 log: Callable[[str], None]) -> None:
        from ._optimizers import make, trial_budget

        study = Study.open(batch)
        assert study is not None
        self.batch, self.study, self.spec = batch, study, search_spec(batch) or study.spec
        self._stage, self._defs, self.log = stage, defs, log
        self.failure: str | None = None
        self.optimizer = make(self.spec.optimizer, study.space, self.spec) if self.spec.optimizer else None
        self.budget = trial_budget(self.optimizer, self.spec) if self.optimizer is not None else 0
        report = getattr(self.optimizer, "report", None)
        self.study.on_report = report if callable(report) else None
        for trial in batch.trials:
            if trial.status in ENDED:
                self._tell(trial, self.outcome(trial))

    def outcome(self, trial: Run) -> float | Outcome:
        """How ``trial`` ended, for the study: its objective, or pruned, or failed."""
        if trial.status == "pruned":
            return "pruned"
        if trial.status != "completed":
            return "failed"
        value = objective_value(trial, self.spec)
        return "failed" if value is None else value

    def trials(self, staged: Iterable[Run], stopped: Callable[[], bool]) -> Iterator[Run]:
        """``staged`` (trials planned up front, or to run again), then, with an optimizer, a new
        trial each time one is drawn, until the trial budget is spent, the optimizer has nothing
        more to propose (or failed), or ``stopped()``."""
        yield from staged
        while self.optimizer is not None and self.failure is None and not stopped() \
                and len(self.batch.trial_ids) < self.budget:
            try:
                values = self.optimizer.ask(self.batch)
                flags = None if values is None else self._flags(values)
            except Exception as e:  # a third party's bug, or a proposal the batch cannot run
                self._fail(f"its ask failed: {type(e).__name__}: {e}")
                return
            if flags is None:
                return
            try:
                trial = self._stage(flags)
                self.batch.trial_ids.append(trial.id)
                self.batch.save()
            except (OSError, GuildliteError) as e:  # a full disk: the trials running still end as they will
                self._fail(f"its next trial could not be staged: {e}")
                return
            self._record(functools.partial(self.study.add, trial, values), trial)
            yield trial

    def _flags(self, values: Any) -> dict[str, Any]:
        """A trial's flags from an optimizer's proposal: a value of every dimension, inside it."""
        space = self.study.space
        if not isinstance(values, Mapping) or set(values) != set(space):
            got = sorted(values) if isinstance(values, Mapping) else type(values).__name__
            raise ValueError(f"it proposed {got}, not a value of each of {', '.join(space)}")
        flags = dict(self.batch.flags)
        for name, dim in space.items():
            if not dim.holds(values[name]):
                raise ValueError(f"it proposed {name}={values[name]!r}, outside {dim}")
            flags[name] = coerce_sampled(self._defs, name, values[name])
        return flags

    def ended(self, trial: Run) -> None:
        """Tell the study and the optimizer how ``trial`` ended."""
        if trial.parent_id != self.batch.id:
            return
        outcome = self.outcome(trial)
        if trial.status == "completed" and outcome == "failed":
            self.log(f"guildlite: trial {trial.id} logged no {self.spec.scalar} (--{self.spec.direction}): told"
                     " to the search as failed")
        self._tell(trial, outcome)

    def _tell(self, trial: Run, outcome: float | Outcome) -> None:
        self._record(functools.partial(self.study.tell, trial, outcome), trial)
        if self.optimizer is not None and self.failure is None:
            try:
                self.optimizer.tell(trial, outcome)
            except Exception as e:  # a third party's bug: the search stops, its running trials go on
                self._fail(f"its tell failed: {type(e).__name__}: {e}")

    def _record(self, write: Callable[[], object], trial: Run) -> None:
        """Write to the study; a write that fails (a full disk, a journal someone damaged) is
        said, and the search and its runs go on: the study is its record, not its runs'."""
        try:
            write()
        except Exception as e:  # Optuna's own errors included: none of them may end a run's record
            self.log(f"guildlite: cannot record trial {trial.id} in the study of batch {self.batch.id}:"
                     f" {type(e).__name__}: {e}")

    def _fail(self, why: str) -> None:
        self.failure = f"optimizer {self.spec.optimizer!r} failed, no more trials proposed: {why}"
        self.log(f"guildlite: {self.failure}")


def plan_search(spec: SearchSpec, values: Mapping[str, Any], batch: bool, upstream: bool) -> SearchSpec:
    """``spec`` checked against the resolved flag ``values`` (``batch``: some are dimensions;
    ``upstream``: upstream runs are one) before anything is staged: Optuna there, the optimizer
    found and willing to search these dimensions; with its trial budget settled (``max_trials``:
    --max-trials, else the optimizer's own). GuildliteError (exit 2)."""
    from ._optimizers import load, make, trial_budget
    from ._search_space import space_of
    from ._study import import_optuna

    if spec.optimizer is not None:
        load(spec.optimizer)  # an unknown name is said before anything heavy is imported
    if not batch:
        raise GuildliteError("a search (--optimizer, --minimize/--maximize, --prune) is of a batch: give a flag a"
                             " range or a list (lr=loguniform[1e-4:1e-1], layers=[2,4])", exit_code=2)
    import_optuna()
    if spec.optimizer is None:
        return spec
    if upstream:
        raise GuildliteError("--optimizer searches flag values; upstream runs as a batch dimension are a grid"
                             " (pick one upstream run, or leave out --optimizer)", exit_code=2)
    if not space_of(values):
        raise GuildliteError("--optimizer needs a flag with a range or a list to search (lr=loguniform[1e-4:1e-1])",
                             exit_code=2)
    optimizer = make(spec.optimizer, space_of(values), spec)
    budget = trial_budget(optimizer, spec)
    if budget > MAX_TRIALS:
        raise GuildliteError(f"{budget:,} trials is more than a search runs ({MAX_TRIALS:,}); use --max-trials",
                             exit_code=2)
    return dataclasses.replace(spec, max_trials=budget)


def check_budget(batch: Run, max_trials: int | None) -> None:
    """``--restart BATCH --max-trials N``: BATCH must be a search; GuildliteError (exit 2)."""
    if max_trials is None:
        return
    spec = search_spec(batch) if batch.is_batch else None
    if spec is None or spec.optimizer is None:
        raise GuildliteError("--max-trials with --restart continues a search (a batch run with --optimizer):"
                             f" run {batch.id} is not one", exit_code=2)
    if not 1 <= max_trials <= MAX_TRIALS:
        raise GuildliteError(f"--max-trials must be from 1 to {MAX_TRIALS:,}", exit_code=2)


def trials_to_run(batch: Run, max_trials: int | None) -> int:
    """The trials a batch's (re)start runs: those not done (``_status.DONE``: a pruned one is not
    run again), and a search's new ones up to its budget (``max_trials``, else its own)."""
    again = sum(t.status not in DONE for t in batch.trials)
    spec = search_spec(batch)
    if spec is None or spec.optimizer is None:
        return again
    budget = max_trials if max_trials is not None else spec.max_trials or 0
    return again + max(0, budget - len(batch.trial_ids))


def with_budget(batch: Run, max_trials: int | None) -> None:
    """Record a search's new trial budget in its batch (``--restart BATCH --max-trials N``)."""
    if max_trials is None:
        return
    info = dict(batch.batch or {})
    info["search"] = {**info["search"], "max_trials": max_trials}
    batch.batch = info
    batch.save()


def first_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A batch's flags with each dimension at its first value (a list's first, a range's low
    bound): a trial's flags as an optimizer may propose them, to check that a job can be made."""
    from ._flag_values import Grid, Random

    out = {}
    for name, v in values.items():
        out[name] = v.values[0] if isinstance(v, Grid) else v.args[0] if isinstance(v, Random) else v
    return out

