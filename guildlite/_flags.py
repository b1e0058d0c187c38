"""Flag definitions, value decoding and coercion, and the batch value syntax."""

from __future__ import annotations

import difflib
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from ._errors import FlagError

FLAG_TYPES = ("int", "float", "bool", "str", "path", "list")

# A flag name becomes a command-line option, an environment variable and a config key, and is
# given back as NAME=VALUE: nothing that reads as an option (`--evil`), a path (`../x`), an
# assignment (`a=b`) or a separator (spaces).
FLAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
FLAG_NAME_RULE = "a letter or _ first, then letters, digits, _, . or - (lr, batch-size, model.lr)"


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a flag name (None: it can)."""
    if not isinstance(name, str):
        return f"flag name {name!r} must be text (quote it)"
    if not FLAG_NAME.fullmatch(name):
        return f"{name!r} is not a valid flag name: {FLAG_NAME_RULE}"
    return None


@dataclass(frozen=True)
class FlagDef:
    """One flag of an operation, as declared in the guildfile."""

    name: str
    default: Any = None
    type: str | None = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    required: bool = False
    description: str = ""
    arg_name: str | None = None
    arg_switch: bool | None = None
    arg_switch_off: str | None = None  # the option passed when a switch's value is the other bool (click's --no-x)
    arg_skip: bool = False
    arg_encoding: Mapping[Any, Any] | None = None  # value -> text on the command line (None: omit the flag)
    arg_split: bool | str | None = None  # true / a separator: how a list (or a string split into one) is passed
    arg_position: int | None = None  # a positional argument, at this place after main's fixed args
    source: str = "guildfile"

    @property
    def value_type(self) -> str | None:
        """The declared type, or the one inferred from the default."""
        if self.type:
            return self.type
        return _type_of(self.default)


def _type_of(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        return "list"
    return scalar_type(value)


def scalar_type(value: Any) -> str | None:
    """The flag type of a bool, int, float or str value; None for anything else."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.I)
_BOOLS = {"true": True, "false": False, "yes": True, "no": False}


def decode(text: str) -> Any:
    """Decode a command-line value: ``1`` int, ``0.1``/``1e-3`` float, ``true`` bool, ``'1'`` str."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if _INT.fullmatch(s):
        try:
            return int(s)
        except ValueError:  # beyond Python's int-from-text digit limit: keep the text
            return text
    if _FLOAT.fullmatch(s):
        return float(s)
    low = s.lower()
    if low in _BOOLS:
        return _BOOLS[low]
    if low in ("null", "none"):
        return None
    return text


def coerce(flag: FlagDef, value: Any) -> Any:
    """Convert ``value`` to the flag's type and check choices and range; raise FlagError."""
    ftype = flag.value_type
    value = nul_free(flag.name, value)
    if value is not None:
        value = _convert(flag, ftype, value)
    if flag.choices is not None and value not in flag.choices:
        allowed = ", ".join(_show(c) for c in flag.choices)
        raise FlagError(f"flag '{flag.name}': {_show(value)} is not one of the choices ({allowed})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value and (flag.min is not None or flag.max is not None):  # NaN compares false to all
            raise FlagError(f"flag '{flag.name}': nan is not within its range")
        if flag.min is not None and value < flag.min:
            raise FlagError(f"flag '{flag.name}': {_show(value)} is below the minimum {_show(flag.min)}")
        if flag.max is not None and value > flag.max:
            raise FlagError(f"flag '{flag.name}': {_show(value)} is above the maximum {_show(flag.max)}")
    return value


def nul_free(name: str, value: Any) -> Any:
    """``value``, unless it is text holding a NUL: no argv item, environment variable or file name can."""
    if isinstance(value, str) and "\0" in value:
        raise FlagError(f"flag '{name}': {value!r} holds a NUL character")
    return value


def _convert(flag: FlagDef, ftype: str | None, value: Any) -> Any:
    bad = FlagError(f"flag '{flag.name}': {_show(value)} is not a valid {ftype}")
    if ftype == "list":
        return _convert_list(flag, value)
    if ftype is not None and isinstance(value, (list, tuple)):
        raise FlagError(f"flag '{flag.name}': a list ({_show(value)}) for a flag of type {ftype}"
                        " (a batch is written unquoted: name=[a,b])")
    if ftype == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, float):
            if not value.is_integer():
                raise bad
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            try:
                return int(value)
            except ValueError:  # beyond Python's int-from-text digit limit
                raise bad from None
        raise bad
    if ftype == "float":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)
        raise bad
    if ftype == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad
    if ftype in ("str", "path"):
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else _show(value)
    return value


def _convert_list(flag: FlagDef, value: Any) -> list[Any]:
    """A list flag's value: a list, or text written as ``a,b`` or ``[a,b]`` (items decoded like values)."""
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("[") and s.endswith("]"):
            value = list(literal_items(flag.name, s[1:-1], value)) if s[1:-1].strip() else []
        else:
            value = [] if not s else [decode(p) for p in split_top(s)]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    items = list(value)
    for x in items:
        if isinstance(x, (list, tuple, dict)):
            raise FlagError(f"flag '{flag.name}': {_show(value)}: a list flag holds plain items, not nested lists")
    kinds = {_type_of(x) for x in (flag.default or []) if x is not None} if isinstance(flag.default, list) else set()
    if len(kinds) == 1 and items:  # items take the type of the default's items
        item_def = FlagDef(name=flag.name, type=kinds.pop())
        items = [_convert(item_def, item_def.type, x) for x in items]
    return items


def split_top(body: str) -> list[str]:
    """Split at commas outside brackets and quotes: ``[1,2],'a,b',3`` -> ``[1,2]``, ``'a,b'``, ``3``."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in body:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def literal_items(name: str, body: str, text: str) -> tuple[Any, ...]:
    """The items of a bracketed list ``body``; an item that is itself ``[...]`` is a list value."""
    parts = split_top(body)
    if any(p == "" for p in parts):
        raise FlagError(f"flag '{name}': malformed list {text!r} (empty item; expected [a,b,...])")
    out: list[Any] = []
    for p in parts:
        if p.startswith("[") and p.endswith("]"):
            inner = p[1:-1]
            out.append(list(literal_items(name, inner, text)) if inner.strip() else [])
        elif p.startswith("[") or p.endswith("]"):
            raise FlagError(f"flag '{name}': malformed list {text!r} (unbalanced brackets)")
        else:
            out.append(decode(p))
    return tuple(out)


SHOW_CHARS = 80  # a value in an error message is cut to this many characters (a 5,000-digit number)


def _show(value: Any) -> str:
    """``value`` for an error message, as the user would type it, cut to SHOW_CHARS."""
    text = _shown(value)
    return text if len(text) <= SHOW_CHARS else f"{text[:SHOW_CHARS - 3]}... ({len(text)} characters)"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if (value == "" or value != value.strip()) else value
    if isinstance(value, int) and value.bit_length() > 14_000:  # str() refuses over 4,300 digits
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    return str(value)


def format_value(value: Any) -> str:
    """A flag value as it is passed to a script on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        import json

        return json.dumps(list(value))
    return str(value)


def unknown_flag(name: str, known: Sequence[str], op: str) -> FlagError:
    """The error for a flag the op does not declare, suggesting the closest name."""
    msg = f"operation '{op}' has no flag '{name}'"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    elif known:
        msg += f"; its flags are: {', '.join(sorted(known))}"
    else:
        msg += "; it declares no flags"
    return FlagError(msg)


# --- batch value syntax -------------------------------------------------------------------------


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
        return Grid(_items(name, s[1:-1], text))
    return decode(text)


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
                    f"flag '{name}' takes a list: write one value as {name}={','.join(map(_show, value.values))}, "
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
