"""Scripts run without a guildfile (Guild AI's ``guild run train.py x=0.2``): a guildfile made of one
op named after the script, its flags imported (argparse, click or globals; a ``@hydra.main`` app's
composed config, passed as Hydra overrides), run with plain python.

The op's guildfile path is the script itself, so whatever loads a run's guildfile again (a restart,
a detached supervisor) makes the same op from it.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._yaml_lines import _Map

# What makes a script look runnable: a main guard, or a command-line parser.
_RUNNABLE = re.compile(r"__name__\s*==\s*['\"]__main__['\"]|^\s*import (argparse|click)\b|^\s*from (argparse|click) import",
                       re.MULTILINE)
_NOT_SCRIPTS = ("setup.py", "conftest.py", "__init__.py", "__main__.py")


def is_script(name: str) -> bool:
    """``name`` (an op name as given) names a Python script in the current dir or below."""
    return name.endswith(".py") and Path(name).is_file()


def script_ops(path: Path) -> _Map:
    """A guildfile's data with one op that runs ``path`` (a .py file), its flags imported."""
    op = _Map({"main": path.name, "launcher": "python", "flags-import": "all",
               "description": f"the script {path.name} (no guildfile)"})
    if _is_hydra_app(path):  # its flags are its composed config, passed as Hydra overrides
        op["flags-dest"] = "overrides"
    ops, top = _Map({path.name: op}), _Map()
    top["operations"] = ops
    for m in (op, ops, top):
        m.line, m.lines = 0, {}
    return top


def _is_hydra_app(path: Path) -> bool:
    """``path`` is decorated with ``@hydra.main`` (``guildlite run app.py db=pg`` as a Hydra user
    types it); read from the source, never run."""
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                fn = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(fn, ast.Attribute) and fn.attr == "main" and isinstance(fn.value, ast.Name) \
                        and fn.value.id == "hydra":
                    return True
    return False


def runnable_scripts(where: Path) -> list[str]:
    """The Python scripts in ``where`` that look runnable (a main guard, argparse or click)."""
    out = []
    for p in sorted(where.glob("*.py")):
        if p.name in _NOT_SCRIPTS or p.name.startswith("test_") or not p.is_file():
            continue
        try:
            text = p.read_text(encoding="utf-8", errors="replace")[:200_000]
        except OSError:
            continue
        if _RUNNABLE.search(text):
            out.append(p.name)
    return out
