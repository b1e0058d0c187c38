"""The built-in optimizers, registered in ``guildlite.optimizers`` like a third party's: Optuna's
samplers (``tpe``, ``cmaes``, ``gp``, ``qmc``, ``random``) behind the ``Optimizer`` interface, and
``grid`` (every combination of the batch's lists, in an order shuffled by the seed, as Optuna's
GridSampler does).

Each keeps an in-memory Optuna study of its own: the batch's study (``_study``) is the record on
disk, and a new optimizer is told every ended trial again when a search starts again.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import warnings
from typing import TYPE_CHECKING, Any, Literal, Mapping

from ._errors import GuildliteError
from ._optimizers import Optimizer
from ._search_space import distribution
from ._study import INSTALL_HINT, import_optuna

if TYPE_CHECKING:
    from ._run import Run
    from ._search_space import Dimension
    from ._study import SearchSpec


class OptunaOptimizer(Optimizer):
    """An Optuna sampler as an optimizer: ``ask`` is its study's ask, ``tell`` its tell (a trial it
    did not ask, one that ended before it was made, is added to its study as it ended)."""

    needs: tuple[str, ...] = ()  # modules the sampler imports when it samples

    def __init__(self, space: Mapping[str, Dimension], spec: SearchSpec) -> None:
        super().__init__(space, spec)
        optuna = import_optuna()
        missing = [m for m in self.needs if importlib.util.find_spec(m) is None]
        if missing:
            raise GuildliteError(f"this optimizer needs {' and '.join(missing)}: {INSTALL_HINT}"
                                 + (" torch" if "torch" in missing else ""), exit_code=2)
        self.dists: dict[str, Any] = {}
        for name, dim in space.items():
            dist = distribution(dim)
            if dist is None:
                raise ValueError(f"flag '{name}': Optuna's choices are numbers, strings, booleans or null, once each")
            self.dists[name] = dist
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature notices: not the user's concern
            self.study = optuna.create_study(direction=spec.direction, sampler=self.sampler(_seed(spec.seed)))
        self._pending: list[Any] = []  # trials asked, not told yet
        self._reseeded = False

    def sampler(self, seed: int | None) -> Any:
        raise NotImplementedError

    def ask(self, batch: Run) -> dict[str, Any] | None:
        told = len(self.study.trials)
        if not self._pending and told and self.spec.seed is not None and not self._reseeded:
            # A search started again (its trials told anew): the seed's first draws were the first
            # trials'; a seed of its own for what it proposes from here, the same on every rerun.
            self.study.sampler = self.sampler(_seed(self.spec.seed + told))
        self._reseeded = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(self.dists)
        self._pending.append(trial)
        return dict(trial.params)

    def tell(self, trial: Run, outcome: float | Literal["failed", "pruned"]) -> None:
        optuna = import_optuna()
        state = optuna.trial.TrialState
        value = float(outcome) if isinstance(outcome, (int, float)) and math.isfinite(outcome) else None
        how = state.COMPLETE if value is not None else state.PRUNED if outcome == "pruned" else state.FAIL
        asked = next((t for t in self._pending if _same(t.params, trial.flags)), None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if asked is not None:
                self._pending.remove(asked)
                self.study.tell(asked, value, state=how)
                return
            params = {k: trial.flags[k] for k in self.dists if k in trial.flags}
            try:
                self.study.add_trial(optuna.trial.create_trial(
                    params=params, distributions={k: self.dists[k] for k in params}, value=value, state=how))
            except ValueError:  # a trial whose flags are outside the space (run again with others): not ours
                pass


def _seed(seed: int | None) -> int | None:
    """``--seed`` as NumPy takes a seed (0 to 2**32 - 1): any integer, the same one each time."""
    return None if seed is None else seed % 2**32


def _same(params: Mapping[str, Any], flags: Mapping[str, Any]) -> bool:
    """True when ``flags`` hold ``params`` (floats as the trial got them: 6 significant digits)."""
    for k, v in params.items():
        f = flags.get(k)
        if isinstance(v, float) and isinstance(f, (int, float)) and not isinstance(f, bool):
            if not math.isclose(v, f, rel_tol=1e-5, abs_tol=1e-12):
                return False
        elif f != v:
            return False
    return True


class TPE(OptunaOptimizer):
    """Tree-structured Parzen Estimator (Optuna's default)."""

    def sampler(self, seed: int | None) -> Any:
        return import_optuna().samplers.TPESampler(seed=seed)


class CmaEs(OptunaOptimizer):
    """CMA-ES (continuous and integer flags; lists are sampled at random)."""

    needs = ("cmaes",)

    def sampler(self, seed: int | None) -> Any:
        return import_optuna().samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


class GP(OptunaOptimizer):
    """Gaussian-process Bayesian optimization."""

    needs = ("scipy", "torch")

    def sampler(self, seed: int | None) -> Any:
        return import_optuna().samplers.GPSampler(seed=seed)


class QMC(OptunaOptimizer):
    """Quasi-Monte Carlo (Sobol) sampling: the space covered evenly."""

    needs = ("scipy",)

    def sampler(self, seed: int | None) -> Any:
        return import_optuna().samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


class RandomSearch(OptunaOptimizer):
    """Independent uniform sampling (log-uniform for loguniform ranges)."""

    def sampler(self, seed: int | None) -> Any:
        return import_optuna().samplers.RandomSampler(seed=seed)


class Grid(Optimizer):
    """Every combination of the batch's lists (``randint`` ranges as their integers) once, in an
    order shuffled by ``--seed``; a continuous range cannot be a grid."""

    def __init__(self, space: Mapping[str, Dimension], spec: SearchSpec) -> None:
        super().__init__(space, spec)
        axes = {}
        for name, dim in space.items():
            values = dim.values
            if values is None:
                raise ValueError(f"flag '{name}' is a continuous range ({dim.kind}[{dim.args[0]}:{dim.args[1]}]): grid"
                                 " takes lists ([a,b], range, linspace, logspace, randint, choice); use another"
                                 " optimizer (tpe, random) or a list")
            axes[name] = values
        size = math.prod(len(v) for v in axes.values())
        if size > 1_000_000:
            raise ValueError(f"{size:,} combinations: more than grid enumerates (1,000,000)")
        self.combos = [dict(zip(axes, c)) for c in itertools.product(*axes.values())]
        random.Random(spec.seed).shuffle(self.combos)
        self.max_trials = len(self.combos)
        self._next = 0
        self._seen: set[tuple[str, ...]] = set()

    def _key(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        """A combination as a trial has it (floats to 6 significant digits, as its flags are)."""
        return tuple(repr(float(f"{v:.6g}")) if isinstance(v, float) else repr(v)
                     for v in (values.get(k) for k in self.space))

    def ask(self, batch: Run) -> dict[str, Any] | None:
        while self._next < len(self.combos):
            combo = self.combos[self._next]
            self._next += 1
            if self._key(combo) not in self._seen:
                self._seen.add(self._key(combo))
                return dict(combo)
        return None

    def tell(self, trial: Run, outcome: float | Literal["failed", "pruned"]) -> None:
        self._seen.add(self._key(trial.flags))  # an earlier trial's (a search started again): not asked again
