"""Optimizers: what proposes a search's next trial, found by name in the entry-point group
``guildlite.optimizers`` (the built-ins are registered there too, ``_optimizers_optuna``).

The interface (a class; subclassing ``Optimizer`` is optional, the methods are what count)::

    class MyOptimizer:
        def __init__(self, space: dict[str, Dimension], spec: SearchSpec): ...
        def ask(self, batch: Run) -> dict[str, Any] | None: ...
        def tell(self, trial: Run, outcome: float | Literal["failed", "pruned"]) -> None: ...
        def report(self, trial: Run, step: int, value: float) -> bool: ...   # optional
        max_trials: int | None                                            # optional

``space`` holds the batch's dimensions (``Dimension``: kind ``grid``/``choice`` with their values,
``uniform``/``loguniform``/``randint`` with their bounds); the constructor raises ValueError (or a
GuildliteError) for a space or spec it cannot search: the user sees it, exit 2, before anything is
staged. ``ask`` returns the next trial's values of those dimensions (the other flags are the
batch's), or None when it has nothing more to propose; it is called from one thread, only when a
slot is free. ``tell`` gets each trial when it ends, with its objective (the ``--minimize`` or
``--maximize`` scalar's last, min or max value), ``"failed"`` (or no objective logged) or
``"pruned"``; ``trial.flags`` are what ``ask`` proposed (floats rounded to 6 significant digits).
A new optimizer object is made whenever a search starts again (a restart, a detached supervisor)
and told every trial that ended before, in order: it needs no state of its own on disk.
``report`` (optional) sees each intermediate objective value by step and returns True to prune the
trial (the ``--prune`` pruner decides too). ``max_trials``: how many trials it proposes when
``--max-trials`` is not given (default 20).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Mapping

from ._errors import GuildliteError

if TYPE_CHECKING:
    from ._run import Run
    from ._search_space import Dimension
    from ._study import SearchSpec

ENTRY_POINT_GROUP = "guildlite.optimizers"
DEFAULT_MAX_TRIALS = 20


class Optimizer:
    """A base class for optimizers (see the module doc): ``tell`` and ``report`` do nothing."""

    max_trials: int | None = None

    def __init__(self, space: Mapping[str, Dimension], spec: SearchSpec) -> None:
        self.space = dict(space)
        self.spec = spec

    def ask(self, batch: Run) -> dict[str, Any] | None:
        raise NotImplementedError

    def tell(self, trial: Run, outcome: float | Literal["failed", "pruned"]) -> None:
        pass

    def report(self, trial: Run, step: int, value: float) -> bool:
        return False


def load(name: str) -> type:
    """The optimizer class registered as ``name``; GuildliteError (exit 2) naming the registered
    ones, or saying why it cannot be used."""
    from ._entry_points import entry_points

    eps = entry_points(ENTRY_POINT_GROUP)
    if name not in eps:
        known = ", ".join(sorted(eps)) or f"none: is guildlite installed (pip install -e .)? it registers its optimizers in {ENTRY_POINT_GROUP}"
        raise GuildliteError(f"--optimizer: no optimizer named {name!r} (optimizers: {known})", exit_code=2)
    try:
        cls = eps[name].load()
    except GuildliteError:
        raise
    except Exception as e:
        raise GuildliteError(f"optimizer {name!r} ({eps[name].value}) failed to load: {type(e).__name__}: {e}",
                             exit_code=2) from None
    missing = [m for m in ("ask", "tell") if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or missing:
        what = "is not a class" if not isinstance(cls, type) else f"has no {' or '.join(missing)} method"
        raise GuildliteError(f"optimizer {name!r} ({eps[name].value}) {what}: an optimizer is a class with ask(batch)"
                             " and tell(trial, outcome)", exit_code=2)
    return cls


def make(name: str, space: Mapping[str, Dimension], spec: SearchSpec) -> Any:
    """An optimizer ``name`` for ``space`` and ``spec``; GuildliteError (exit 2) when it refuses them."""
    cls = load(name)
    try:
        return cls(dict(space), spec)
    except GuildliteError as e:
        raise GuildliteError(f"--optimizer {name}: {e}", exit_code=2) from None
    except (ValueError, TypeError) as e:
        raise GuildliteError(f"--optimizer {name}: {e}", exit_code=2) from None


def trial_budget(optimizer: Any, spec: SearchSpec) -> int:
    """How many trials the search runs: ``--max-trials``, else the optimizer's own count, else 20."""
    if spec.max_trials is not None:
        return spec.max_trials
    own = getattr(optimizer, "max_trials", None)
    return own if isinstance(own, int) and not isinstance(own, bool) and own >= 1 else DEFAULT_MAX_TRIALS
