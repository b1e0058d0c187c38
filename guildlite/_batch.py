"""Planning a batch: turn flag values with grid/random dimensions into the list of trial flags."""

from __future__ import annotations

import itertools
import random
from typing import Any, Iterator, Mapping

from ._flag_values import FlagValue, Grid, Random
from ._flags import FlagDef, coerce

DEFAULT_MAX_TRIALS = 20


def is_batch(values: Mapping[str, FlagValue]) -> bool:
    """True when any value is a batch dimension."""
    return any(isinstance(v, (Grid, Random)) for v in values.values())


def plan_trials(
    defs: Mapping[str, FlagDef],
    values: Mapping[str, FlagValue],
    max_trials: int | None = None,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """The flags of every trial, in launch order.

    Grid only: the cartesian product of the list flags in the order the flags are declared in the
    guildfile, the last flag varying fastest (``a=[1,2] b=[3,4]`` -> (1,3) (1,4) (2,3) (2,4)).
    ``max_trials`` then keeps the first N.

    With any random dimension the batch is a random search of ``max_trials`` trials (default 20):
    each trial samples every random dimension and picks each list value uniformly, from one RNG
    seeded with ``seed`` so the same seed gives the same trials.
    """
    names = list(values)
    if any(isinstance(v, Random) for v in values.values()):
        rng = random.Random(seed)
        count = DEFAULT_MAX_TRIALS if max_trials is None else max_trials
        trials = []
        for _ in range(count):
            trial = {}
            for name in names:
                v = values[name]
                if isinstance(v, Random):
                    trial[name] = coerce_sampled(defs, name, v.sample(rng))
                elif isinstance(v, Grid):
                    trial[name] = rng.choice(v.values)
                else:
                    trial[name] = v
            trials.append(trial)
        return trials
    axes = [v.values if isinstance(v, Grid) else (v,) for v in values.values()]
    product: Iterator[tuple[Any, ...]] = itertools.product(*axes)
    if max_trials is not None:
        product = itertools.islice(product, max_trials)
    return [dict(zip(names, combo)) for combo in product]


def count_trials(values: Mapping[str, FlagValue], max_trials: int | None = None) -> int:
    """How many trials ``plan_trials`` will return, without building them."""
    if any(isinstance(v, Random) for v in values.values()):
        return DEFAULT_MAX_TRIALS if max_trials is None else max_trials
    n = 1
    for v in values.values():
        if isinstance(v, Grid):
            n *= len(v.values)
    return n if max_trials is None else min(n, max_trials)


def coerce_sampled(defs: Mapping[str, FlagDef], name: str, value: Any) -> Any:
    """A sampled value as a trial's flag: the flag's type, a float to 6 significant digits."""
    # Six significant digits keep trial flags readable (lr=0.000316228, not 0.00031622776601683794),
    # unless rounding would step outside the flag's range.
    flag = defs.get(name)
    if isinstance(value, float):
        rounded = float(f"{value:.6g}")
        inside = flag is None or (
            (flag.min is None or rounded >= flag.min) and (flag.max is None or rounded <= flag.max)
        )
        value = rounded if inside else value
    return value if flag is None else coerce(flag, value)
