"""How flag values become a job's argv: ``${flag}`` in ``main``, positional flags, and
``--name=value`` options with their encodings (``arg-encoding``, ``arg-switch``, ``arg-split``).

Default encodings on the command line: booleans as Python literals ``True``/``False`` (what
argparse with a ``str2bool`` helper, click, fire, ``ast.literal_eval`` configurators and OmegaConf
all read), ``None`` omitted, a list as separate items after its option (``--layers 64 64``,
which argparse ``nargs='+'`` reads). An ``arg-encoding`` map (per op, overridden per flag) turns
any value into the text given for it, or leaves the flag out when it maps the value to null.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ._errors import FlagError
from ._flags import FlagDef

if TYPE_CHECKING:
    from ._guildfile import OpDef

REF = re.compile(r"\$\{([^}]*)\}")
_OMIT = object()
_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|-inf|-nan")  # argparse reads these as values


def refs(text: str) -> list[str]:
    """The flag names ``${name}`` in ``text`` (``$${`` is a literal ``${``)."""
    return [m.group(1) for m in REF.finditer(text.replace("$${", ""))]


def interpolated(op: OpDef) -> set[str]:
    """Flags that ``main`` interpolates: they reach the script there, and are not passed again."""
    return {name for item in op.main_args[1:] for name in refs(item)}


def main_args(op: OpDef, flags: Mapping[str, Any]) -> list[str]:
    """``main`` as argv items with ``${flag}`` replaced by the flag's encoded value."""
    out = []
    for item in op.main_args:
        if "${" not in item:
            out.append(item)
            continue
        pieces = item.split("$${")
        for i, piece in enumerate(pieces):
            pieces[i] = REF.sub(lambda m: _interpolate(op, m.group(1), flags), piece)
        out.append("${".join(pieces))
    return out


def _interpolate(op: OpDef, name: str, flags: Mapping[str, Any]) -> str:
    if name not in flags:
        raise FlagError(f"operation '{op.name}': main refers to ${{{name}}}, which is not one of its flags")
    value = encode(op, op.flags.get(name), flags[name])
    if value is _OMIT:
        return ""
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def flag_args(op: OpDef, flags: Mapping[str, Any]) -> list[str]:
    """Positional flags (by ``arg-position``), then options, for ``flags-dest: args``.

    Per flag, ``arg-name`` renames the option, ``arg-skip`` leaves it out, ``arg-switch`` passes a
    boolean as a bare ``--name`` when its value equals the switch (absent otherwise), and a flag
    that ``main`` interpolates is not passed again.
    """
    skip = interpolated(op)
    positional: list[tuple[int, list[str]]] = []
    options: list[str] = []
    for name, value in flags.items():
        fd = op.flags.get(name)
        if name in skip or (fd is not None and fd.arg_skip):
            continue
        if fd is not None and fd.arg_position is not None:
            encoded = encode(op, fd, value)
            if encoded is _OMIT:
                raise FlagError(f"flag '{name}' is positional (arg-position {fd.arg_position}) and has no value")
            if isinstance(encoded, list) and not isinstance(value, str) and _joiner(fd) is not None:
                encoded = [str(_joiner(fd)).join(encoded)]
            items = encoded if isinstance(encoded, list) else [encoded]
            for item in items:
                # `-h` after the fixed args is an option to the script's parser, not this value.
                if item.startswith("-") and not _NUMBER.fullmatch(item):
                    raise FlagError(f"flag '{name}' is positional (arg-position {fd.arg_position}) and its value "
                                    f"{item!r} starts with '-', which the script would read as an option")
            positional.append((fd.arg_position, items))
            continue
        options.extend(_option(op, name, fd, value))
    positional.sort(key=lambda p: p[0])
    for place, items in positional[:-1]:
        if not items:  # the next positional would take its place
            raise FlagError(f"the positional flag at arg-position {place} is an empty list: later positionals would move")
    return [item for _, items in positional for item in items] + options


def option_name(name: str, fd: FlagDef | None) -> str:
    """The option a flag is passed as (``--name``, or its ``arg-name``)."""
    opt = fd.arg_name if fd is not None and fd.arg_name else name
    return opt if opt.startswith("-") else f"--{opt}"


def _option(op: OpDef, name: str, fd: FlagDef | None, value: Any) -> Iterator[str]:
    opt = option_name(name, fd)
    if fd is not None and fd.arg_switch is not None:
        if isinstance(value, bool) and value == fd.arg_switch:
            yield opt
        elif isinstance(value, bool) and fd.arg_switch_off:
            yield fd.arg_switch_off
        return
    encoded = encode(op, fd, value)
    if encoded is _OMIT:
        return
    if not isinstance(encoded, list):
        yield f"{opt}={encoded}"
        return
    if isinstance(value, str):  # a string split into items (Guild's arg-split): separate items
        yield opt
        yield from encoded
    elif fd is not None and fd.arg_split == "repeat":
        yield from (f"{opt}={item}" for item in encoded)
    elif _joiner(fd) is not None:
        yield f"{opt}={str(_joiner(fd)).join(encoded)}"
    else:
        yield opt
        yield from encoded


def _joiner(fd: FlagDef | None) -> str | None:
    """The separator a list is joined with into one item (``arg-split: ","``), or None."""
    split = fd.arg_split if fd is not None else None
    return split if isinstance(split, str) and split not in ("shlex", "repeat") else None


def encode(op: OpDef, fd: FlagDef | None, value: Any) -> Any:
    """A value as command-line text; a list of texts for a list (or a split string); _OMIT when
    it is not passed."""
    hit, text = _mapped(fd.arg_encoding if fd is not None else None, value)
    if not hit:
        hit, text = _mapped(op.arg_encoding, value)
    if hit:
        return _OMIT if text is None else text
    if value is None:
        return _OMIT
    if isinstance(value, (list, tuple)):
        return [_item(op, fd, v) for v in value]
    split = fd.arg_split if fd is not None else None
    if isinstance(value, str) and split is not None and split is not False and split != "repeat":
        parts = shlex.split(value) if split in (True, "shlex") else [p for p in value.split(str(split)) if p]
        return parts
    return _scalar(value)


def _item(op: OpDef, fd: FlagDef | None, value: Any) -> str:
    hit, text = _mapped(fd.arg_encoding if fd is not None else None, value)
    if not hit:
        hit, text = _mapped(op.arg_encoding, value)
    if hit:
        return "" if text is None else text
    return "None" if value is None else _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _mapped(encoding: Mapping[Any, Any] | None, value: Any) -> tuple[bool, str | None]:
    """Whether ``encoding`` has ``value`` (type-strict: ``true`` is not ``1``) and its text."""
    if not encoding or isinstance(value, (list, tuple, dict)):
        return False, None
    for key, text in encoding.items():
        if isinstance(key, bool) != isinstance(value, bool) or (key is None) != (value is None):
            continue
        if key == value:
            return True, None if text is None else _scalar(text)
    return False, None
