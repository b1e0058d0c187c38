"""A batch's study: what a search (or a pruned batch) knows of its trials, kept in the batch run dir.

The study is an Optuna study in a journal file of the batch (``RunPaths.study``): every trial's
flags, its intermediate values by step (``report``, for pruning) and how it ended (``tell``). It is
the search's state on disk, so a search is a plain directory: a restart or a detached supervisor
opens the same file, and two batches never share one. Optuna is imported only here, when a study
is opened (``guildlite[search]``).

The batch record names its study: ``run.batch["search"]`` is its ``SearchSpec`` as a dict.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from ._errors import GuildliteError
from ._search_space import Dimension, distributions, space_of

if TYPE_CHECKING:
    import optuna

    from ._run import Run

Outcome = Literal["failed", "pruned"]
STUDY_NAME = "guildlite"
INSTALL_HINT = "pip install guildlite[search]"


@dataclass(frozen=True)
class PruneSpec:
    """How trials are pruned: ``median`` or ``asha`` over the objective scalar's values by step.
    ``min_steps``: no trial is pruned before this step; ``warmup``: nor before this many trials
    ended; ``reduction_factor``: ASHA's."""

    kind: Literal["median", "asha"]
    min_steps: int = 0
    warmup: int = 0
    reduction_factor: int = 3


@dataclass(frozen=True)
class SearchSpec:
    """A batch's search: ``optimizer`` (an entry point of ``guildlite.optimizers``; None: the
    batch's own grid or random plan), the objective (``scalar``'s last, min or max value, to
    ``direction``), ``max_trials`` (None: the optimizer's default), ``seed`` and ``prune``."""

    optimizer: str | None
    scalar: str
    direction: Literal["minimize", "maximize"]
    objective: Literal["last", "min", "max"] = "last"
    max_trials: int | None = None
    seed: int | None = None
    prune: PruneSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpec:
        """The spec of a batch record (input: every field checked); GuildliteError if malformed."""
        if not isinstance(data, Mapping):
            raise GuildliteError("the batch's search is not a mapping", exit_code=2)
        prune = data.get("prune")
        try:
            spec = cls(
                optimizer=_opt_str(data.get("optimizer")),
                scalar=_str(data.get("scalar")),
                direction=_choice(data.get("direction"), ("minimize", "maximize")),  # type: ignore[arg-type]
                objective=_choice(data.get("objective", "last"), ("last", "min", "max")),  # type: ignore[arg-type]
                max_trials=_opt_int(data.get("max_trials"), 1),
                seed=_opt_int(data.get("seed")),
                prune=None if prune is None else PruneSpec(
                    kind=_choice(prune.get("kind"), ("median", "asha")),  # type: ignore[arg-type]
                    min_steps=_int(prune.get("min_steps", 0), 0),
                    warmup=_int(prune.get("warmup", 0), 0),
                    reduction_factor=_int(prune.get("reduction_factor", 3), 2),
                ),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise GuildliteError(f"the batch's search is malformed: {e}", exit_code=2) from None
        return spec


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{v!r} is not a name")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _int(v: Any, least: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{v!r} is not an integer")
    if least is not None and v < least:
        raise ValueError(f"{v} is below {least}")
    return v


def _opt_int(v: Any, least: int | None = None) -> int | None:
    return None if v is None else _int(v, least)


def _choice(v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise ValueError(f"{v!r} is not one of {', '.join(choices)}")
    return str(v)


def search_spec(batch: Run) -> SearchSpec | None:
    """The search of a batch record, or None (no study)."""
    info = batch.batch if isinstance(batch.batch, Mapping) else {}  # a plugin's view of a run: read-only
    data = info.get("search")
    return None if data is None else SearchSpec.from_dict(data)


def import_optuna() -> Any:
    """Optuna, quiet (its per-trial INFO lines are not ours to print); GuildliteError (exit 2) with
    the extra to install when it is missing."""
    try:
        import optuna
    except ImportError:
        raise GuildliteError(f"search and pruning need Optuna: {INSTALL_HINT}", exit_code=2) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def objective_value(run: Run, spec: SearchSpec) -> float | None:
    """A trial's objective: its scalar's last, min or max value (None: never logged, or not finite)."""
    from ._scalars import summarize

    found = summarize(run.paths.scalars).get(spec.scalar)
    if found is None:
        return None
    value = found.get(spec.objective)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class Study:
    """The batch's study, in the batch run dir (see the module doc)."""

    _open: dict[Path, Study] = {}
    _lock = threading.Lock()

    def __init__(self, batch_dir: Path, spec: SearchSpec, study: optuna.Study, space: Mapping[str, Dimension]) -> None:
        self.batch_dir = batch_dir
        self.spec = spec
        self.optuna_study = study  # the Optuna study (its journal), for what summary() does not say
        self.storage = study._storage
        self.space = dict(space)
        self._ids: dict[tuple[str, int], int] = {}  # (run id, attempt) -> Optuna trial id
        # run id -> the Optuna trial of the attempt running now: a backend may record the running
        # attempt in the run's attempts while it runs (a batch-system node does), so their count alone
        # would name another attempt at its end than at its start.
        self._active: dict[str, int] = {}
        self.on_report: Callable[[Run, int, float], bool] | None = None  # the optimizer's report, if it has one

    @classmethod
    def open(cls, batch: Run) -> Study | None:
        """The study of ``batch`` (one object per batch dir in a process); None: the batch has no
        study. GuildliteError (exit 2) when Optuna is missing or the record is malformed."""
        spec = search_spec(batch)
        if spec is None:
            return None
        key = batch.run_dir.resolve()
        with cls._lock:
            found = cls._open.get(key)
            if found is None or found.spec != spec:  # a restart may give a search a new budget
                found = cls._open[key] = cls(key, spec, _load(batch, spec), space_of(batch.flags))
            return found

    @classmethod
    def forget(cls, batch: Run) -> None:
        """Drop the open study of ``batch`` (its journal is read again on the next ``open``)."""
        with cls._lock:
            cls._open.pop(batch.run_dir.resolve(), None)

    # --- trials --------------------------------------------------------------------------------

    def _attempt(self, trial: Run) -> Any:
        """The Optuna trial (frozen) of ``trial``'s current attempt, or None: not recorded yet."""
        active = self._active.get(trial.id)
        if active is not None:
            found = self.storage.get_trial(active)
            if not found.state.is_finished():
                return found
            del self._active[trial.id]
        attempt = len(trial.attempts)
        key = (trial.id, attempt)
        tid = self._ids.get(key)
        if tid is not None:
            return self.storage.get_trial(tid)
        for t in reversed(self.optuna_study.get_trials(deepcopy=False)):
            if t.user_attrs.get("run") == trial.id and t.user_attrs.get("attempt", 0) == attempt:
                self._ids[key] = t._trial_id
                return t
        return None

    def add(self, trial: Run, params: Mapping[str, Any] | None = None) -> int:
        """Record ``trial``'s current attempt (its flags; ``params``: those its optimizer chose)
        as a running Optuna trial (if it is not yet); its Optuna trial id."""
        found = self._attempt(trial)
        if found is not None:
            return int(found._trial_id)
        optuna = import_optuna()
        flags = dict(params or trial.flags)
        # Its flags as the trial's params (those its dimensions hold), so that importances and the
        # optimization history see them; one journal record (each one is a locked, synced write).
        dists = {k: d for k, d in distributions({k: d for k, d in self.space.items() if k in flags}).items()
                 if _holds(d, flags[k])}
        template = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, params={k: flags[k] for k in dists}, distributions=dists,
            user_attrs={"run": trial.id, "attempt": len(trial.attempts), "flags": _jsonable(trial.flags)})
        tid = int(self.storage.create_new_trial(self.optuna_study._study_id, template_trial=template))
        self._ids[(trial.id, len(trial.attempts))] = self._active[trial.id] = tid
        return tid

    def _running(self, trial: Run) -> int | None:
        """The Optuna trial id of ``trial``'s current attempt, recorded now if it was not; None
        when that attempt was told already."""
        optuna = import_optuna()
        found = self._attempt(trial)
        if found is None:
            return self.add(trial)
        return int(found._trial_id) if found.state == optuna.trial.TrialState.RUNNING else None

    def report(self, trial: Run, step: int, value: float) -> bool:
        """Record ``trial``'s objective ``value`` at ``step``; True: stop it (the pruner says so,
        or the search's optimizer, through its ``report``)."""
        optuna = import_optuna()
        if not math.isfinite(value):
            return False
        asked = self.on_report(trial, int(step), float(value)) if self.on_report is not None else False
        if self.spec.prune is None:
            return bool(asked)
        tid = self._running(trial)
        if tid is None:
            return bool(asked)
        t = optuna.trial.Trial(self.optuna_study, tid)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a step reported twice is ignored, not an error
            t.report(float(value), int(step))
        if asked or int(step) < self.spec.prune.min_steps:
            return bool(asked)
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        if len(self.optuna_study.get_trials(deepcopy=False, states=states)) < self.spec.prune.warmup:
            return False
        return bool(t.should_prune())

    def tell(self, trial: Run, outcome: float | Outcome) -> None:
        """Record how ``trial``'s current attempt ended: its objective value, or failed, or
        pruned (a value that is not a finite number: failed). An attempt told already is not told
        again."""
        optuna = import_optuna()
        tid = self._running(trial)
        if tid is None:
            return
        number = self.storage.get_trial(tid).number
        state = optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if outcome == "pruned":
                self.optuna_study.tell(number, state=state.PRUNED)
            elif isinstance(outcome, (int, float)) and not isinstance(outcome, bool) and math.isfinite(outcome):
                self.optuna_study.tell(number, float(outcome))
            else:
                self.optuna_study.tell(number, state=state.FAIL)

    # --- reading -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """``{"direction", "scalar", "best": {"run", "value"} | None, "trials": [{"run", "number",
        "value", "state"}], "importances": {flag: float} | None}`` (trials in the order asked)."""
        optuna = import_optuna()
        trials = self.optuna_study.get_trials(deepcopy=False)
        rows = [{"run": t.user_attrs.get("run"), "number": t.number, "value": t.value, "state": t.state.name.lower()}
                for t in trials]
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
        best = None
        if done:
            pick = min if self.spec.direction == "minimize" else max
            b = pick(done, key=lambda t: float(t.value or 0.0))  # done: every value is a float
            best = {"run": b.user_attrs.get("run"), "value": b.value}
        return {"direction": self.spec.direction, "scalar": self.spec.scalar, "best": best, "trials": rows,
                "importances": self._importances(done)}

    def _importances(self, done: list[Any]) -> dict[str, float] | None:
        if len(done) < 2 or not any(t.distributions for t in done):
            return None
        optuna = import_optuna()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its notes on too few trials: the numbers say it
                found = optuna.importance.get_param_importances(self.optuna_study)
        except (ValueError, RuntimeError, ImportError):  # too few distinct values, or its extra missing
            return None
        return {str(k): float(v) for k, v in found.items()} or None


def _holds(dist: Any, value: Any) -> bool:
    """True when Optuna's ``dist`` holds ``value`` (a rounded sample may fall just outside)."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _jsonable(flags: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in flags.items()}


def journal_path(batch: Run) -> Path:
    return batch.paths.meta / "study.journal"


def _load(batch: Run, spec: SearchSpec) -> optuna.Study:
    """The batch's Optuna study from its journal (created when first opened)."""
    from ._files import make_meta_dir

    path = journal_path(batch)
    make_meta_dir(batch.paths)  # a symlinked run dir or .guildlite refused
    if path.is_symlink() or (path.exists() and not path.is_file()):  # a record is input: never write through it
        raise GuildliteError(f"batch {batch.id}: its study {path} is not a regular file", exit_code=2)
    try:
        return _journal(path, spec)
    except OSError as e:
        raise GuildliteError(f"batch {batch.id}: cannot open its study {path}: {e.strerror or e}") from None
    except Exception as e:  # a journal that is not Optuna's (damaged, or planted): Optuna's errors are many
        raise GuildliteError(f"batch {batch.id}: cannot read its study {path}: {type(e).__name__}: {e}",
                             exit_code=2) from None


def _journal(path: Path, spec: SearchSpec) -> optuna.Study:
    optuna = import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    # An open(O_EXCL) lock file, not a symlink: a runs dir on NFS or a filesystem without symlinks works.
    storage = JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    # Its trials' params are fixed (the optimizer chose them, or the batch's plan): the study's own
    # sampler is never asked, the cheapest one will do.
    sampler = optuna.samplers.RandomSampler()
    if path.stat().st_size:  # loaded: create_study(load_if_exists=True) would append a record on every open
        return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=_pruner(spec))
    return optuna.create_study(study_name=STUDY_NAME, storage=storage, direction=spec.direction,
                               sampler=sampler, pruner=_pruner(spec))


def _pruner(spec: SearchSpec) -> Any:
    optuna = import_optuna()
    p = spec.prune
    if p is None:
        return optuna.pruners.NopPruner()
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=p.min_steps)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, p.min_steps), reduction_factor=p.reduction_factor)
