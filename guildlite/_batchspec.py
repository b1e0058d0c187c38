"""A batch run's flags: each batch dimension as a typed value a plugin can read and compare.

A batch's ``run.flags`` hold a plain value for a fixed flag, a ``BatchValues`` (a list) for a grid
(``[a,b]``, ``range``, ``linspace``, ``logspace``, expanded) and a ``BatchDistribution`` for a
random dimension (``uniform[0:1]``). An ordering comparison with a single value holds when it
holds for *every* value the dimension gives its trials: ``run.flags["batch-size"] > 512`` is True
on a batch only if every trial's batch size is above 512, so a plugin's veto written for one run
stops a batch only when it would stop each of its trials (and each trial is still checked on its
own).

In ``run.json`` a grid is a JSON list and a distribution its text (``"uniform[0:1]"``);
``batch.dims`` names the dimensions, so reading the record gives the same objects back.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ._flag_values import FlagValue, Grid, Random, parse_value
from ._flags import format_value


def _all(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def compare(self: Any, other: Any) -> Any:
        if isinstance(other, (list, tuple)):
            return getattr(list, f"__{op.__name__}__")(self, other)
        return all(op(v, other) for v in self)

    return compare


class BatchValues(list):  # type: ignore[type-arg]
    """A grid dimension of a batch: the values its trials take, in order (a list).

    ``<``, ``<=``, ``>``, ``>=`` against a single value hold when they hold for every value;
    against a list they compare as lists do. ``==`` is list equality.
    """

    __lt__ = _all(operator.lt)  # type: ignore[assignment]
    __le__ = _all(operator.le)  # type: ignore[assignment]
    __gt__ = _all(operator.gt)  # type: ignore[assignment]
    __ge__ = _all(operator.ge)  # type: ignore[assignment]


@dataclass(frozen=True, eq=True)
class BatchDistribution:
    """A random dimension of a batch: ``kind`` (uniform, loguniform, randint, choice) and ``args``
    (the bounds, or the choices). Comparisons hold when they hold for every value it can draw."""

    kind: str
    args: tuple[Any, ...]

    @property
    def low(self) -> Any:
        return min(self.args) if self.kind == "choice" else self.args[0]

    @property
    def high(self) -> Any:
        return max(self.args) if self.kind == "choice" else self.args[1]

    def _every(self, op: Callable[[Any, Any], bool], other: Any) -> bool:
        if self.kind == "choice":
            return all(op(v, other) for v in self.args)
        return op(self.low, other) and op(self.high, other)

    def __lt__(self, other: Any) -> bool:
        return self._every(operator.lt, other)

    def __le__(self, other: Any) -> bool:
        return self._every(operator.le, other)

    def __gt__(self, other: Any) -> bool:
        return self._every(operator.gt, other)

    def __ge__(self, other: Any) -> bool:
        return self._every(operator.ge, other)

    def __str__(self) -> str:
        sep = "," if self.kind == "choice" else ":"
        return f"{self.kind}[{sep.join(format_value(a) for a in self.args)}]"


def batch_flags(values: Mapping[str, FlagValue]) -> tuple[dict[str, Any], list[str]]:
    """A batch's flags from resolved values (with Grid/Random dimensions), and the dimension names."""
    out: dict[str, Any] = {}
    dims: list[str] = []
    for name, v in values.items():
        if isinstance(v, Grid):
            out[name] = BatchValues(v.values)
        elif isinstance(v, Random):
            out[name] = BatchDistribution(v.kind, tuple(v.args))
        else:
            out[name] = v
            continue
        dims.append(name)
    return out, dims


# Text read back from a record: a random dimension, or (a record from before ``batch.dims``) a
# list as typed. Never range/linspace/logspace: reading a record must not expand a million values.
_READABLE = re.compile(r"\s*(\[|(uniform|loguniform|randint|choice)\[)")


def decode(flags: Mapping[str, Any], dims: Any) -> dict[str, Any]:
    """A batch record's flags as objects again (``dims``: the record's ``batch.dims``; a record
    from before it has its dimensions as the text they were given as)."""
    out = dict(flags)
    if not isinstance(dims, (list, tuple)):
        dims = None
    names = list(flags) if dims is None else [d for d in dims if isinstance(d, str) and d in flags]
    for name in names:
        v = flags[name]
        if isinstance(v, list) and dims is not None:
            out[name] = BatchValues(v)
        elif isinstance(v, str) and _READABLE.match(v):
            try:
                parsed = parse_value(name, v)
            except Exception:  # FlagError: text that is no batch syntax
                continue
            if isinstance(parsed, Grid):
                out[name] = BatchValues(parsed.values)
            elif isinstance(parsed, Random):
                out[name] = BatchDistribution(parsed.kind, tuple(parsed.args))
    return out
