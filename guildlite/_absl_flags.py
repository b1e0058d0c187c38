"""An absl script's flags, read from its source (``flags.DEFINE_float("lr", 0.01, "help")`` with
literal arguments), never running it: absl parses its flags inside ``app.run``, after the module's
imports, so the argparse probe would run it to its end.

absl reads a list flag in its own way: ``DEFINE_list`` takes one comma-joined item
(``--layers=8,4``), ``DEFINE_spaceseplist`` one space-joined item and ``DEFINE_multi_*`` the option
repeated. guildlite's default for a list (``--layers 8 4``) would give absl ``["8"]`` and leave
``4`` in the positional argv that ``main(argv)`` usually ignores: a record that lies. So each
list flag carries the ``arg-split`` absl reads, and a list flag declared in the guildfile for an
absl list option gets it too (``absl_list_splits``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ._flags import FlagDef, name_problem
from ._parser_scan import call_name, project_files
from ._pysource import NO_VALUE, literal_or_missing

# DEFINE_<kind> -> (flag type, arg-split for a list)
_KINDS: dict[str, tuple[str | None, str | None]] = {
    "DEFINE_float": ("float", None), "DEFINE_integer": ("int", None), "DEFINE_string": ("str", None),
    "DEFINE_boolean": ("bool", None), "DEFINE_bool": ("bool", None), "DEFINE_enum": ("str", None),
    "DEFINE_list": ("list", ","), "DEFINE_spaceseplist": ("list", " "),
    "DEFINE_multi_string": ("list", "repeat"), "DEFINE_multi_integer": ("list", "repeat"),
    "DEFINE_multi_float": ("list", "repeat"), "DEFINE_multi_enum": ("list", "repeat"),
}
# The positional order of each DEFINE's leading parameters in absl's signatures.
_POSITIONAL = {"DEFINE_enum": ("name", "default", "enum_values", "help"),
               "DEFINE_multi_enum": ("name", "default", "enum_values", "help")}
# List flags whose items absl keeps as text (a DEFINE_list default of ints still parses to texts).
_TEXT_ITEMS = ("DEFINE_list", "DEFINE_spaceseplist", "DEFINE_multi_string", "DEFINE_multi_enum")


def absl_flags(script: Path, project: Path) -> dict[str, FlagDef]:
    """Each ``DEFINE_*`` call whose name is a literal, in ``script`` and the project modules it
    imports (absl projects often define their flags in a module of their own); the first one of a
    name wins, as absl refuses a second."""
    out: dict[str, FlagDef] = {}
    for path in project_files(script, project):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and call_name(node) in _KINDS:
                flag = _define(node)
                if flag is not None and flag.name not in out:
                    out[flag.name] = flag
    return out


def absl_list_splits(script: Path, project: Path) -> dict[str, str]:
    """The ``--option`` of each absl list flag of ``script`` and the ``arg-split`` absl reads."""
    return {f"--{f.name}": str(f.arg_split) for f in absl_flags(script, project).values() if f.arg_split}


def _define(node: ast.Call) -> FlagDef | None:
    kind = call_name(node)
    order = _POSITIONAL.get(kind, ("name", "default", "help"))
    args: dict[str, Any] = dict(zip(order, node.args))
    args.update({k.arg: k.value for k in node.keywords if k.arg})
    name = literal_or_missing(args["name"]) if "name" in args else NO_VALUE
    if not isinstance(name, str) or name_problem(name):
        return None
    ftype, split = _KINDS[kind]
    default = literal_or_missing(args["default"]) if "default" in args else None
    if default is NO_VALUE:
        default = None
    if ftype == "list" and isinstance(default, str):
        # absl takes a list default as the text it would parse (`"32,16"`, `"a b"`).
        default = default.split() if split == " " else [p.strip() for p in default.split(",") if p.strip()]
    elif ftype == "list" and default is not None and not isinstance(default, (list, tuple)):
        default = [default]  # a DEFINE_multi_* default may be one value
    if isinstance(default, (list, tuple)) and kind in _TEXT_ITEMS:
        default = [str(x) for x in default]  # absl parses `--layers=8,4` to texts: so are the values
    choices = literal_or_missing(args["enum_values"]) if "enum_values" in args and kind == "DEFINE_enum" else None
    help_text = literal_or_missing(args["help"]) if "help" in args else ""
    bounds = {k: literal_or_missing(args[f"{k}_bound"]) for k in ("lower", "upper") if f"{k}_bound" in args}
    return FlagDef(
        name=name,
        default=list(default) if isinstance(default, tuple) else default,
        type=ftype,
        choices=tuple(choices) if isinstance(choices, (list, tuple)) and choices else None,
        min=_number(bounds.get("lower")),
        max=_number(bounds.get("upper")),
        description=help_text if isinstance(help_text, str) else "",
        arg_name=f"--{name}",
        arg_split=split,
        source="script",
    )


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
