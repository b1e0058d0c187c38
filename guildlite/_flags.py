"""Flag definitions, and decoding and coercing one flag value (the batch syntax is ``_flag_values``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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
        allowed = ", ".join(show_value(c) for c in flag.choices)
        raise FlagError(f"flag '{flag.name}': {show_value(value)} is not one of the choices ({allowed})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value and (flag.min is not None or flag.max is not None):  # NaN compares false to all
            raise FlagError(f"flag '{flag.name}': nan is not within its range")
        if flag.min is not None and value < flag.min:
            raise FlagError(f"flag '{flag.name}': {show_value(value)} is below the minimum {show_value(flag.min)}")
        if flag.max is not None and value > flag.max:
            raise FlagError(f"flag '{flag.name}': {show_value(value)} is above the maximum {show_value(flag.max)}")
    return value


def nul_free(name: str, value: Any) -> Any:
    """``value``, unless it is text holding a NUL: no argv item, environment variable or file name can."""
    if isinstance(value, str) and "\0" in value:
        raise FlagError(f"flag '{name}': {value!r} holds a NUL character")
    return value


def _convert(flag: FlagDef, ftype: str | None, value: Any) -> Any:
    bad = FlagError(f"flag '{flag.name}': {show_value(value)} is not a valid {ftype}")
    if ftype == "list":
        return _convert_list(flag, value)
    if ftype is not None and isinstance(value, (list, tuple)):
        raise FlagError(f"flag '{flag.name}': a list ({show_value(value)}) for a flag of type {ftype}"
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
        return value if isinstance(value, str) else show_value(value)
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
            raise FlagError(f"flag '{flag.name}': {show_value(value)}: a list flag holds plain items, not nested lists")
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


def show_value(value: Any) -> str:
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
    import difflib  # here: only this error needs it, and listings import this module

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    elif known:
        msg += f"; its flags are: {', '.join(sorted(known))}"
    else:
        msg += "; it declares no flags"
    return FlagError(msg)
