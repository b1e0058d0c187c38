"""Probe a script's argparse options:
``python .../_argparse_probe.py [--stop-at LINE] OUT.json MAIN [ARGS...]``.

The script runs as ``__main__`` until it calls ``ArgumentParser.parse_args`` (or
``parse_known_args``); that call writes the parser's flags and every option string it accepts
(``{"flags": [...], "options": [...]}``) to OUT.json and exits, so the training code after it
never runs. With ``--stop-at LINE`` (a script file's first top-level statement after which none
can reach a parser: ``_parser_scan.parse_end_line``), reaching that statement writes
``{"passed": LINE}`` and exits: a script that trains at import time without ever parsing is
stopped there instead of run to its end.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import json
import os
import runpy
import sys
import types
from typing import Any

_BASIC = (str, int, float, bool, type(None))


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string the parser (and its sub-commands' parsers) accepts."""
    out: list[str] = []
    for a in parser._actions:
        out.extend(a.option_strings)
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                out.extend(_options(sub))
    return out


def _chosen(parser: argparse.ArgumentParser, args: list[str]) -> argparse.ArgumentParser:
    """The parser that reads the flags: with ``main: main.py train``, the ``train`` sub-command's
    (argparse hands it every option after that word, so the top parser's options would not be
    accepted there); else ``parser`` itself."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for i, word in enumerate(args):
                if word in a.choices:
                    return _chosen(a.choices[word], args[i + 1:])
    return parser


def _describe(parser: argparse.ArgumentParser) -> list[dict[str, Any]]:
    out = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if not a.option_strings or a.help == argparse.SUPPRESS:
            continue  # positionals are the script's fixed args, not flags
        longs = [o for o in a.option_strings if o.startswith("--")]
        option = (longs or a.option_strings)[0]
        entry: dict[str, Any] = {"name": option.lstrip("-"), "option": option, "help": a.help or ""}
        if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            # The flag means "the switch is given" (named after the option, not the dest): for
            # `--no-shuffle` (store_false, dest shuffle) no-shuffle=true passes it, so the record
            # never says the opposite of what the script got.
            entry.update(type="bool", default=False, switch=True)
        elif isinstance(a, argparse._StoreAction) and a.type is bool and a.nargs is None:
            # `type=bool`: bool(text) is True for any non-empty text ("False" too), so false is ""
            # (Guild's encoding) and true "1".
            entry.update(type="bool", default=bool(a.default), encoding={"true": "1", "false": ""},
                         required=bool(a.required))
        elif isinstance(a, argparse._StoreAction) and a.nargs in (None, "?") and not isinstance(a.default, list):
            kind = {int: "int", float: "float", str: "str"}.get(a.type) if a.type else None  # type: ignore[call-overload]
            # No type, or the script's own (a str2bool helper): the default's type says what it takes.
            if kind is None and isinstance(a.default, _BASIC) and a.default is not None:
                kind = {int: "int", float: "float", bool: "bool"}.get(type(a.default), "str")
            entry.update(type=kind or "str", default=a.default if isinstance(a.default, _BASIC) else None)
            if a.choices is not None and all(isinstance(c, _BASIC) for c in a.choices):
                entry["choices"] = list(a.choices)
            entry["required"] = bool(a.required)
        elif isinstance(a, (argparse._StoreAction, argparse._AppendAction)) and (
            a.nargs in ("+", "*") or isinstance(a, argparse._AppendAction) or isinstance(a.default, list)
        ):
            default = a.default if isinstance(a.default, list) and all(isinstance(x, _BASIC) for x in a.default) else None
            entry.update(type="list", default=default, required=bool(a.required))
            if isinstance(a, argparse._AppendAction):
                entry["split"] = "repeat"  # --name=a --name=b
        else:
            continue  # counters, fixed-count nargs: not a flag value guildlite passes
        out.append(entry)
    return out


def _run_until(path: str, line: int, out_path: str) -> None:
    """Run the script at ``path`` as ``__main__`` (as ``runpy.run_path`` does) with a call that
    ends the probe inserted before its first top-level statement at or after ``line``."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    at = next((i for i, stmt in enumerate(tree.body) if stmt.lineno >= line), len(tree.body))
    futures = [i for i, stmt in enumerate(tree.body) if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"]
    at = max(at, futures[-1] + 1) if futures else at  # nothing but a docstring may come before those
    stop = ast.Expr(ast.Call(ast.Name("__guildlite_probe_stop__", ast.Load()), [], []))
    tree.body.insert(at, ast.copy_location(stop, tree.body[at]) if at < len(tree.body) else stop)
    code = compile(ast.fix_missing_locations(tree), path, "exec")

    def stop_probe() -> None:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump({"passed": line}, f)
        os._exit(0)

    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=path, __cached__=None, __loader__=None, __package__="", __spec__=None,
                           __builtins__=builtins, __guildlite_probe_stop__=stop_probe)
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def main() -> None:
    stop_at = None
    if sys.argv[1] == "--stop-at":
        stop_at = int(sys.argv[2])
        del sys.argv[1:3]
    out_path, target = sys.argv[1], sys.argv[2:]

    def report(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        chosen = _chosen(self, sys.argv[1:])  # main's fixed args (parse_args(args) is probed as called)
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump({"flags": _describe(chosen), "options": _options(chosen)}, f)
        os._exit(0)  # skip atexit hooks and the rest of the script

    argparse.ArgumentParser.parse_args = report  # type: ignore[method-assign, assignment]
    argparse.ArgumentParser.parse_known_args = report  # type: ignore[method-assign, assignment]
    sys.path[0] = os.getcwd()  # was this file's dir; now as `python -m` or `python script` sets it
    if target[0] == "-m":
        sys.argv = [target[1], *target[2:]]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(target)
        sys.path[0] = os.path.dirname(os.path.abspath(target[0]))
        if stop_at is not None:
            _run_until(target[0], stop_at, out_path)
        else:
            runpy.run_path(target[0], run_name="__main__")
    sys.exit(f"{' '.join(target)} finished without calling ArgumentParser.parse_args")


if __name__ == "__main__":
    main()
