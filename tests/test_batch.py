"""Planning a batch: grid order, max-trials, seeded random search, and counting trials."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import property_settings
from hypothesis import given
from hypothesis import strategies as st

from guildlite._batch import DEFAULT_MAX_TRIALS, count_trials, is_batch, plan_trials
from guildlite._errors import FlagError
from guildlite._flag_values import Grid, parse_assignments, resolve
from guildlite._flags import FlagDef

DEFS = {
    "a": FlagDef("a", default=0, type="int"),
    "b": FlagDef("b", default="x"),
    "c": FlagDef("c", default=0.5, min=0, max=1),
    "lr": FlagDef("lr", default=0.01, min=0),
    "n": FlagDef("n", default=1, type="int", min=1, max=100),
}


def _values(*args: str) -> dict:
    return resolve("op", DEFS, parse_assignments(args))


def test_grid_is_the_product_in_declared_order_last_fastest() -> None:
    # Given in another order than declared: the declared order (a, b, c) decides.
    values = _values("c=[0.1,0.2]", "a=[1,2]", "b=[x,y]")
    assert is_batch(values)
    trials = plan_trials(DEFS, values)
    assert [(t["a"], t["b"], t["c"]) for t in trials] == [
        (1, "x", 0.1), (1, "x", 0.2), (1, "y", 0.1), (1, "y", 0.2),
        (2, "x", 0.1), (2, "x", 0.2), (2, "y", 0.1), (2, "y", 0.2),
    ]
    # every trial carries every flag, the plain ones at their value
    assert all(t["lr"] == 0.01 and t["n"] == 1 for t in trials)
    assert all(list(t) == list(DEFS) for t in trials)
    assert count_trials(values) == 8


def test_max_trials_keeps_the_first_n() -> None:
    values = _values("a=[1,2]", "b=[x,y]", "c=[0.1,0.2]")
    full = plan_trials(DEFS, values)
    assert plan_trials(DEFS, values, max_trials=3) == full[:3]
    assert count_trials(values, max_trials=3) == 3
    assert plan_trials(DEFS, values, max_trials=100) == full
    assert count_trials(values, max_trials=100) == 8


def test_not_a_batch() -> None:
    values = _values("a=3")
    assert not is_batch(values)
    assert plan_trials(DEFS, values) == [values]
    assert count_trials(values) == 1


def test_grid_functions_expand() -> None:
    trials = plan_trials(DEFS, _values("n=range[1:5:2]", "c=linspace[0:1:3]"))
    # c is declared before n: c varies slowest
    assert [(t["n"], t["c"]) for t in trials] == [(n, c) for c in (0.0, 0.5, 1.0) for n in (1, 3, 5)]


def test_random_search_is_reproducible_with_a_seed() -> None:
    values = _values("lr=loguniform[1e-4:1e-1]", "n=randint[1:100]", "b=choice[x,y,z]")
    one = plan_trials(DEFS, values, max_trials=10, seed=7)
    assert plan_trials(DEFS, values, max_trials=10, seed=7) == one
    assert plan_trials(DEFS, values, max_trials=10, seed=8) != one
    assert len(one) == 10
    assert all(1e-4 <= t["lr"] <= 1e-1 and isinstance(t["lr"], float) for t in one)
    assert all(1 <= t["n"] <= 100 and isinstance(t["n"], int) for t in one)
    assert {t["b"] for t in one} <= {"x", "y", "z"}
    assert len({t["lr"] for t in one}) > 1
    # sampled floats are rounded to 6 significant digits
    assert all(float(f"{t['lr']:.6g}") == t["lr"] for t in one)


def test_random_search_defaults_to_twenty_trials() -> None:
    values = _values("c=uniform[0:1]")
    assert len(plan_trials(DEFS, values, seed=1)) == DEFAULT_MAX_TRIALS
    assert count_trials(values) == DEFAULT_MAX_TRIALS
    assert count_trials(values, max_trials=5) == 5


def test_grid_and_random_mixed_is_a_random_search() -> None:
    values = _values("a=[1,2,3]", "c=uniform[0:1]")
    trials = plan_trials(DEFS, values, max_trials=30, seed=3)
    assert len(trials) == 30 == count_trials(values, max_trials=30)
    assert {t["a"] for t in trials} == {1, 2, 3}  # list values are picked, not crossed
    assert all(0 <= t["c"] <= 1 for t in trials)
    assert plan_trials(DEFS, values, max_trials=30, seed=3) == trials


def test_rounded_samples_stay_within_the_flag_bounds() -> None:
    defs = {"x": FlagDef("x", default=0.1234564, min=0.1234564, max=0.1234565)}
    values = resolve("op", defs, parse_assignments(["x=uniform[0.1234564:0.1234565]"]))
    try:
        trials = plan_trials(defs, values, max_trials=50, seed=1)
    except FlagError as e:
        pytest.fail(f"a valid batch was rejected: {e}")
    assert all(0.1234564 <= t["x"] <= 0.1234565 for t in trials)


@property_settings(100)
@given(
    st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=4), min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(1, 80)),
)
def test_count_trials_matches_plan_trials(grids: list[list[int]], max_trials: int | None) -> None:
    names = ["g0", "g1", "g2"][: len(grids)]
    defs = {n: FlagDef(n, default=0) for n in names}
    values = {n: Grid(tuple(v)) for n, v in zip(names, grids)}
    trials = plan_trials(defs, values, max_trials=max_trials)
    assert len(trials) == count_trials(values, max_trials=max_trials)
    # last varies fastest: the trial list is sorted by position in each axis
    index = [tuple(grids[i].index(t[n]) for i, n in enumerate(names)) for t in trials]
    if all(len(set(g)) == len(g) for g in grids):
        assert index == sorted(index)


# --- a batch's flags: comparisons hold when they hold for every trial -------------------------------


def test_batch_comparisons_hold_for_every_value_a_trial_may_take() -> None:
    import operator
    import random as _random

    from guildlite import BatchDistribution, BatchValues
    from guildlite._flag_values import Random

    ops = [operator.lt, operator.le, operator.gt, operator.ge]
    nums = st.integers(-50, 50)

    @property_settings(300)
    @given(st.lists(nums, min_size=1, max_size=6), nums, st.sampled_from(ops))
    def grid(values: list[int], x: int, op: Any) -> None:
        assert op(BatchValues(values), x) == all(op(v, x) for v in values)

    @property_settings(300)
    @given(nums, nums, nums, st.sampled_from(ops), st.sampled_from(["uniform", "randint", "choice"]))
    def dist(a: int, b: int, x: int, op: Any, kind: str) -> None:
        lo, hi = min(a, b), max(a, b)
        d = BatchDistribution(kind, (lo, hi))
        rng = _random.Random(0)
        draws = [Random(kind, (lo, hi)).sample(rng) for _ in range(50)] + ([lo, hi] if kind != "choice" else [])
        if op(d, x):
            assert all(op(v, x) for v in draws)
        else:
            assert not all(op(v, x) for v in [lo, hi])  # a bound breaks it

    grid()
    dist()
