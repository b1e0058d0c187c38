"""A batch's search space: each batch dimension of its flags as a ``Dimension``, and as the Optuna
distribution an optimizer samples it from.

``[a,b]`` (and ``range``/``linspace``/``logspace``) is a set of choices; ``uniform[lo:hi]`` and
``loguniform[lo:hi]`` are continuous ranges (log scale for the latter); ``randint[lo:hi]`` is the
integers from lo to hi, both included; ``choice[a,b]`` a set of choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ._batchspec import BatchDistribution, BatchValues
from ._flag_values import Grid, Random

Kind = Literal["grid", "uniform", "loguniform", "randint", "choice"]
_CATEGORICAL = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Dimension:
    """One flag's range of values: ``kind`` and ``args`` (the bounds, or the values)."""

    kind: Kind
    args: tuple[Any, ...]

    @property
    def values(self) -> tuple[Any, ...] | None:
        """Every value it takes, or None for a continuous range."""
        if self.kind in ("grid", "choice"):
            return self.args
        if self.kind == "randint":
            return tuple(range(int(self.args[0]), int(self.args[1]) + 1))
        return None


    def holds(self, value: Any) -> bool:
        """True when ``value`` is one this dimension takes (a range's bounds included)."""
        if self.kind in ("grid", "choice"):
            return any(type(value) is type(v) and value == v for v in self.args) or (
                _number(value) and any(_number(v) and value == v for v in self.args))
        if not _number(value) or (self.kind == "randint" and not float(value).is_integer()):
            return False
        lo, hi = self.args
        slack = 0 if self.kind == "randint" else 1e-9 * max(abs(lo), abs(hi))  # exp(log(hi)) is not always hi
        return bool(lo - slack <= value <= hi + slack)

    def __str__(self) -> str:
        sep = "," if self.kind in ("grid", "choice") else ":"
        return f"{'' if self.kind == 'grid' else self.kind}[{sep.join(map(str, self.args))}]"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def space_of(flags: Mapping[str, Any]) -> dict[str, Dimension]:
    """The dimensions of a batch's flags (resolved values, or a batch record's), in flag order."""
    out: dict[str, Dimension] = {}
    for name, v in flags.items():
        if isinstance(v, (Grid, BatchValues)):
            out[name] = Dimension("grid", tuple(v.values if isinstance(v, Grid) else v))
        elif isinstance(v, (Random, BatchDistribution)):
            out[name] = Dimension(v.kind, tuple(v.args))  # type: ignore[arg-type]
    return out


def distribution(dim: Dimension) -> Any:
    """The Optuna distribution of ``dim``; None when Optuna cannot hold its values (a choice of
    lists: Optuna's choices are None, bools, numbers and strings)."""
    from optuna import distributions as d

    if dim.kind == "uniform":
        return d.FloatDistribution(float(dim.args[0]), float(dim.args[1]))
    if dim.kind == "loguniform":
        return d.FloatDistribution(float(dim.args[0]), float(dim.args[1]), log=True)
    if dim.kind == "randint":
        return d.IntDistribution(int(dim.args[0]), int(dim.args[1]))
    if not all(isinstance(v, _CATEGORICAL) for v in dim.args) or len(set(map(repr, dim.args))) != len(dim.args):
        return None
    return d.CategoricalDistribution(dim.args)


def distributions(space: Mapping[str, Dimension]) -> dict[str, Any]:
    """The Optuna distributions of ``space`` (a dimension without one left out)."""
    out = {}
    for name, dim in space.items():
        dist = distribution(dim)
        if dist is not None:
            out[name] = dist
    return out
