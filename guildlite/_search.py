"""A search: the ``run`` options that ask for one (``search_spec``), and the trials it proposes one
at a time as slots free up (``Feed``), each told to its study and optimizer when it ends.

A batch with a search has a study (``_study``); with an optimizer its trials are not planned up
front: the scheduler draws the next one from the feed when a slot is free, and the optimizer
proposes it knowing how every trial before it ended.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping

from ._batch import coerce_sampled
from ._errors import GuildliteError
from ._status import ENDED
from ._study import Outcome, PruneSpec, SearchSpec, Study, objective_value, search_spec

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
) -> SearchSpec | None:
    """The search the ``run`` options ask for, or None (none of them given); GuildliteError (exit 2)
    for options that do not go together. Nothing is imported or looked up here: the optimizer's
    name is checked where the search is planned (``_optimizers.load``)."""
    prune_opts = {"--prune-min-steps": prune_min_steps, "--prune-warmup": prune_warmup,
                  "--prune-reduction-factor": prune_reduction_factor}
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
            given = prune_opts[option]
            if given is not None and given < least:
                raise GuildliteError(f"{option} must be at least {least}, got {given}", exit_code=2)
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
    killed) is told now.
    """

    def __init__(self, batch: Run, stage: Callable[[dict[str, Any]], Run], defs: Mapping[str, FlagDef],
                 log: Callable[[str], None]) -> None:
        from ._optimizers import make, trial_budget
        from ._search_space import space_of

        study = Study.open(batch)
        assert study is not None
        self.batch, self.study, self.spec = batch, study, study.spec
        self._stage, self._defs, self.log = stage, defs, log
        self.optimizer = make(self.spec.optimizer, space_of(batch.flags), self.spec) if self.spec.optimizer else None
        self.budget = trial_budget(self.optimizer, self.spec) if self.optimizer is not None else 0
        for trial in batch.trials:
            if trial.status in ENDED:
                outcome = self.outcome(trial)
                self.study.tell(trial, outcome)
                if self.optimizer is not None:
                    self.optimizer.tell(trial, outcome)

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
        more to propose, or ``stopped()``."""
        yield from staged
        while self.optimizer is not None and not stopped() and len(self.batch.trial_ids) < self.budget:
            values = self.optimizer.ask(self.batch)
            if values is None:
                return
            flags = {k: v for k, v in self.batch.flags.items() if k not in self.study.space}
            for name, value in values.items():
                if name not in self.study.space:
                    raise GuildliteError(f"optimizer {self.spec.optimizer!r} proposed flag {name!r}, which is not one"
                                         f" of the batch's dimensions ({', '.join(self.study.space)})")
                flags[name] = coerce_sampled(self._defs, name, value)
            trial = self._stage(flags)
            self.batch.trial_ids.append(trial.id)
            self.batch.save()
            self.study.add(trial, values)
            yield trial

    def ended(self, trial: Run) -> None:
        """Tell the study and the optimizer how ``trial`` ended."""
        if trial.parent_id != self.batch.id:
            return
        outcome = self.outcome(trial)
        if trial.status == "completed" and outcome == "failed":
            self.log(f"guildlite: trial {trial.id} logged no {self.spec.scalar} (--{self.spec.direction[:-1]}): told"
                     " to the search as failed")
        self.study.tell(trial, outcome)
        if self.optimizer is not None:
            self.optimizer.tell(trial, outcome)


def plan_search(spec: SearchSpec, values: Mapping[str, Any], batch: bool, upstream: bool) -> SearchSpec:
    """``spec`` checked against the resolved flag ``values`` (``batch``: some are dimensions;
    ``upstream``: upstream runs are one) before anything is staged: Optuna there, the optimizer
    found and willing to search these dimensions; with its trial budget settled (``max_trials``:
    --max-trials, else the optimizer's own). GuildliteError (exit 2)."""
    from ._optimizers import make, trial_budget
    from ._search_space import space_of
    from ._study import import_optuna

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
    return dataclasses.replace(spec, max_trials=trial_budget(optimizer, spec))


def check_budget(batch: Run, max_trials: int | None) -> None:
    """``--restart BATCH --max-trials N``: BATCH must be a search; GuildliteError (exit 2)."""
    if max_trials is None:
        return
    spec = search_spec(batch) if batch.is_batch else None
    if spec is None or spec.optimizer is None:
        raise GuildliteError("--max-trials with --restart continues a search (a batch run with --optimizer):"
                             f" run {batch.id} is not one", exit_code=2)
    if max_trials < 1:
        raise GuildliteError("--max-trials must be at least 1", exit_code=2)


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

