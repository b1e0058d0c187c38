"""Flag values as given on the command line: ``NAME=VALUE`` arguments, the batch syntax (``[a,b]``,
``range[...]``, ``linspace[...]``, ``uniform[...]``, ``choice[...]``...) as Grid and Random dimensions,
and resolving them against an operation's flags (each value coerced as ``_flags`` does).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from ._errors import FlagError
from ._flags import FlagDef, coerce, decode, literal_items, name_problem, show_value, split_top, unknown_flag


@dataclass(frozen=True)
class Grid:
    """A list of values to try, one trial each (``[a,b]``, ``range``, ``linspace``, ``logspace``)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Random:
    """A distribution sampled once per trial (``uniform``, ``loguniform``, ``randint``, ``choice``)."""

    kind: str
    args: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "uniform":
            return rng.uniform(self.args[0], self.args[1])
        if self.kind == "loguniform":
            lo, hi = math.log(self.args[0]), math.log(self.args[1])
            return math.exp(rng.uniform(lo, hi))
        if self.kind == "randint":
            return rng.randint(self.args[0], self.args[1])
        return rng.choice(self.args)


FlagValue = Union[Grid, Random, Any]

_MAX_VALUES = 1_000_000
_FUNC = re.compile(r"(?P<name>[a-z]+)\[(?P<body>.*)\]\Z", re.S)
_FUNCS = ("range", "linspace", "logspace", "uniform", "loguniform", "randint", "choice")


def parse_value(name: str, text: str) -> FlagValue:
    """Parse one ``NAME=TEXT`` value: a plain value, or a Grid/Random batch dimension."""
    s = text.strip()
    m = _FUNC.match(s)
    if m and m.group("name") in _FUNCS:
        return _parse_func(name, m.group("name"), m.group("body"), text)
    if s.startswith("[") or s.endswith("]"):
        if not (s.startswith("[") and s.endswith("]")):
            raise FlagError(f"flag '{name}': malformed list {text!r} (expected [a,b,...])")
        _guild_slice(name, s)
        return Grid(_items(name, s[1:-1], text))
    return decode(text)


def _guild_slice(name: str, s: str) -> None:
    """Guild AI's ``[MIN:MAX]`` (a random search's range) and ``[START:STOP:STEP]`` (a grid's), which
    guildlite spells with a function name: the guildlite spelling, as an error."""
    import re

    num = r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"
    m = re.fullmatch(rf"\[({num}):({num})(?::({num}))?\]", s)
    if m is None:
        return
    lo, hi, step = (g.strip() if g else g for g in m.groups())
    spelled = f"range[{lo}:{hi}:{step}]" if step else f"uniform[{lo}:{hi}]"
    raise FlagError(f"flag '{name}': {s} is Guild AI's syntax; guildlite spells it {name}={spelled}"
                    + ("" if step else f" (or {name}=range[{lo}:{hi}] for a grid)") + f"; quote it, {name}=['{s[1:-1]}'],"
                    " for the text")


def _items(name: str, body: str, text: str) -> tuple[Any, ...]:
    if not body.strip():
        raise FlagError(f"flag '{name}': malformed list {text!r} (empty item; expected [a,b,...])")
    return literal_items(name, body, text)


def _numbers(name: str, fn: str, body: str, counts: tuple[int, ...]) -> list[float | int]:
    parts = [p.strip() for p in body.split(":")]
    if len(parts) not in counts:
        shape = " or ".join(_FUNC_SHAPES[fn][: len(counts)])
        raise FlagError(f"flag '{name}': malformed {fn}[{body}] (expected {shape})")
    out: list[float | int] = []
    for p in parts:
        v = decode(p)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise FlagError(f"flag '{name}': {fn}[{body}]: {p!r} is not a finite number")
        out.append(v)
    return out


_FUNC_SHAPES = {
    "range": ("range[lo:hi]", "range[lo:hi:step]"),
    "linspace": ("linspace[lo:hi:n]",),
    "logspace": ("logspace[lo:hi:n]",),
    "uniform": ("uniform[lo:hi]",),
    "loguniform": ("loguniform[lo:hi]",),
    "randint": ("randint[lo:hi]",),
}


def _parse_func(name: str, fn: str, body: str, text: str) -> FlagValue:
    where = f"flag '{name}': {fn}[{body}]"
    if fn == "choice":
        return Random("choice", _items(name, body, text))
    if fn == "range":
        nums = _numbers(name, fn, body, (2, 3))
        lo, hi = nums[0], nums[1]
        step = nums[2] if len(nums) == 3 else 1
        if step <= 0:
            raise FlagError(f"{where}: step must be positive")
        if hi < lo:
            raise FlagError(f"{where}: hi ({hi}) is below lo ({lo})")
        span = (hi - lo) / step
        if not math.isfinite(span) or span >= _MAX_VALUES:
            raise FlagError(f"{where}: too many values (more than {_MAX_VALUES:,})")
        count = int(math.floor(span + 1e-9)) + 1
        if all(isinstance(n, int) for n in nums):
            return Grid(tuple(int(lo + i * step) for i in range(count)))
        return Grid(tuple(_tidy(lo + i * step) for i in range(count)))
    if fn in ("linspace", "logspace"):
        lo, hi, n = _numbers(name, fn, body, (3,))
        if not (isinstance(n, int) and n >= 1) or n > _MAX_VALUES:
            raise FlagError(f"{where}: n must be a whole number from 1 to {_MAX_VALUES:,}")
        pts = [lo] if n == 1 else [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        if fn == "logspace":
            if max(lo, hi) > 300:
                raise FlagError(f"{where}: 10^{max(lo, hi)} is beyond a float")
            pts = [10.0**p for p in pts]
        if not all(math.isfinite(p) for p in pts):
            raise FlagError(f"{where}: the values are beyond a float")
        return Grid(tuple(_tidy(float(p)) for p in pts))
    lo, hi = _numbers(name, fn, body, (2,))
    if hi < lo:
        raise FlagError(f"{where}: hi ({hi}) is below lo ({lo})")
    if fn == "loguniform" and lo <= 0:
        raise FlagError(f"{where}: bounds must be > 0 for a log scale")
    if fn == "randint" and not (isinstance(lo, int) and isinstance(hi, int)):
        raise FlagError(f"{where}: bounds must be integers")
    return Random(fn, (lo, hi))


def _tidy(x: float) -> float:
    """Round away float noise (0.30000000000000004 -> 0.3) without losing real precision."""
    return float(f"{x:.12g}")


def parse_assignments(args: Sequence[str]) -> dict[str, FlagValue]:
    """Parse ``NAME=VALUE`` arguments into flag values (plain or batch dimensions)."""
    out: dict[str, FlagValue] = {}
    for arg in args:
        name, sep, text = arg.partition("=")
        name = name.strip()
        if not sep or not name:
            raise FlagError(f"expected NAME=VALUE, got {arg!r}")
        problem = name_problem(name)
        if problem:
            raise FlagError(f"{problem}, in {arg!r}")
        if name in out:
            raise FlagError(f"flag '{name}' is given more than once")
        out[name] = parse_value(name, text)
    return out


def _text(item: str) -> Any:
    """A str flag's item as typed: unquoted, None for null/none."""
    s = item.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return None if s.lower() in ("null", "none") else s


def given_texts(args: Sequence[str]) -> dict[str, str]:
    """Each ``NAME=TEXT`` argument's text as typed (quotes around it removed): what a flag of
    type str gets, so ``007``, ``1.10``, ``yes`` or ``1e3`` stay exactly that text."""
    out = {}
    for arg in args:
        name, _, text = arg.partition("=")
        s = text.strip()
        out[name.strip()] = s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else text
    return out


def resolve(
    op: str, defs: Mapping[str, FlagDef], given: Mapping[str, FlagValue], texts: Mapping[str, str] | None = None
) -> dict[str, FlagValue]:
    """Check given values against the op's flags; return every flag with defaults filled in.
    A plain value for a str (or path) flag is its text from ``texts``, never a decoded number.

    Batch dimensions are checked value by value (every grid value, the bounds of a range), so a bad
    value fails before anything is staged.
    """
    for name in given:
        if name not in defs:
            raise unknown_flag(name, list(defs), op)
    out: dict[str, FlagValue] = {}
    for name, flag in defs.items():
        if name not in given:
            if flag.required and flag.default is None:
                raise FlagError(f"operation '{op}' requires flag '{name}' (give {name}=VALUE)")
            out[name] = flag.default
            continue
        value = given[name]
        text = texts.get(name, "").strip() if texts is not None else ""
        if isinstance(value, Grid) and flag.value_type in ("str", "path") and text.startswith("["):
            # `name=[007,1.10]` for a str flag: each item's text, as typed (null/none still None)
            value = Grid(tuple(_text(p) for p in split_top(text[1:-1])))
        if isinstance(value, Grid):
            if flag.value_type == "list" and not all(isinstance(v, list) for v in value.values):
                raise FlagError(
                    f"flag '{name}' takes a list: write one value as {name}={','.join(map(show_value, value.values))}, "
                    f"a batch of lists as {name}=[[a,b],[c,d]]"
                )
            out[name] = Grid(tuple(coerce(flag, v) for v in value.values))
        elif isinstance(value, Random):
            out[name] = _check_random(flag, value)
        else:
            if texts is not None and name in texts and flag.value_type in ("str", "path") and value is not None:
                value = texts[name]  # null/none still unset it; `~` is text
            out[name] = coerce(flag, value)
    return out


def _check_random(flag: FlagDef, dim: Random) -> Random:
    if dim.kind == "choice":
        return Random("choice", tuple(coerce(flag, v) for v in dim.args))
    ftype = flag.value_type
    if ftype not in (None, "int", "float"):
        raise FlagError(f"flag '{flag.name}': {dim.kind}[...] needs a numeric flag, not {ftype}")
    if ftype == "int" and dim.kind != "randint":
        raise FlagError(f"flag '{flag.name}' is an int: use randint[lo:hi] or choice[...]")
    for bound in dim.args:
        coerce(flag, bound)
    return dim
