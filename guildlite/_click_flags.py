"""A click script's options as flags, read from its source (``@click.option(...)`` with literal
arguments), never running it: Guild AI imports click flags, and a click command run by the
argparse probe would run to its end."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ._flags import FlagDef, name_problem
from ._parser_scan import call_name
from ._pysource import NO_VALUE, literal_or_missing

_TYPES = {"int": "int", "float": "float", "str": "str", "bool": "bool", "INT": "int", "FLOAT": "float",
          "STRING": "str", "BOOL": "bool", "Path": "path"}


def click_flags(script: Path) -> dict[str, FlagDef]:
    """Each ``@click.option`` of ``script`` whose option names and keywords are literals."""
    try:
        tree = ast.parse(script.read_bytes(), filename=str(script))
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, FlagDef] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node) == "option":
            flag = _option(node)
            if flag is not None and flag.name not in out:
                out[flag.name] = flag
    return out


def _option(node: ast.Call) -> FlagDef | None:
    names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    switch = next((n for n in names if "/" in n), None)
    off = switch.split("/")[1].strip() if switch else None
    dashed = [n.strip() for n in (switch.split("/")[:1] if switch else names) if n.strip().startswith("--")]
    if not dashed:
        return None
    option = max(dashed, key=len)  # click's own choice of the parameter's name
    name = option.lstrip("-")
    if name_problem(name):
        return None
    kw = {k.arg: k.value for k in node.keywords if k.arg}
    default = literal_or_missing(kw["default"]) if "default" in kw else None
    if default is NO_VALUE:
        default = None
    is_flag = literal_or_missing(kw["is_flag"]) is True if "is_flag" in kw else False
    ftype, choices = _type(kw.get("type"))
    if switch or is_flag:
        ftype = "bool"
    elif ftype is None and default is not None and not isinstance(default, (list, tuple)):
        ftype = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default))
    help_text = literal_or_missing(kw["help"]) if "help" in kw else ""
    return FlagDef(
        name=name,
        default=default,
        type=ftype,
        choices=choices,
        required=literal_or_missing(kw["required"]) is True if "required" in kw else False,
        description=help_text if isinstance(help_text, str) else "",
        arg_name=option,
        arg_switch=True if (is_flag or switch) else None,  # passed when true; a --x/--no-x's other half when false
        arg_switch_off=off if off and off.startswith("-") else None,
        source="script",
    )


def _type(node: Any) -> tuple[str | None, tuple[Any, ...] | None]:
    if isinstance(node, ast.Name):
        return _TYPES.get(node.id), None
    if isinstance(node, ast.Attribute):
        return _TYPES.get(node.attr), None
    if isinstance(node, ast.Call) and call_name(node) == "Choice" and node.args:
        values = literal_or_missing(node.args[0])
        if isinstance(values, (list, tuple)) and values and all(isinstance(v, (str, int, float)) for v in values):
            return None, tuple(values)
    return None, None
