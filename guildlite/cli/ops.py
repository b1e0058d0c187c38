"""``guildlite ops``: the guildfile's operations and their flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._common import (
    CONTEXT,
    _fmt,
    _guildfile_option,
    _say,
)

if TYPE_CHECKING:
    pass


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print operations as JSON.")
@_guildfile_option
def ops(as_json: bool, guildfile: Path | None) -> None:
    """List the guildfile's operations with their flags."""
    from .._flags_import import ops_with_flags
    from .._guildfile import find_guildfile
    from .._operation import open_guildfile
    from .._script_op import runnable_scripts

    if guildfile is None and find_guildfile() is None:  # Guild's way: the scripts are the ops
        scripts = runnable_scripts(Path.cwd())
        if as_json:
            click.echo(json.dumps({"guildfile": None, "scripts": scripts}, indent=2))
            return
        _say("guildlite: no guildfile.yml or guild.yml here; scripts to run (guildlite run SCRIPT NAME=VALUE):",
             err=True)
        for name in scripts:
            _say(f"{name}  (script, python)")
        return
    gf = open_guildfile(guildfile)
    found = ops_with_flags(gf.operations, gf.dir)
    operations = {name: op for name, (op, _) in found.items()}
    errors = {name: str(e) for name, (_, e) in found.items() if e is not None}
    _say(f"guildlite: operations from {gf.path}", err=True)
    if as_json:
        out = {
            name: {
                "description": op.description,
                "main": op.main,
                "nproc_per_node": op.nproc_per_node,
                "gpus_per_trial": op.gpus_per_trial,
                "flags_dest": op.flags_dest,
                "flags": {f.name: {**f.__dict__, "type": f.value_type} for f in op.flags.values()},
                **({"error": errors[name]} if name in errors else {}),
                **({"steps": [{"run": " ".join([s.op, *s.assignments]), "continue_on_error": s.continue_on_error,
                               "needed": s.needed} for s in op.steps]} if op.steps else {}),
            }
            for name, op in operations.items()
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for name, op in operations.items():
        dest = "" if op.flags_dest == "args" else f", flags-dest {op.flags_dest}"
        what = (f"pipeline: {' -> '.join(' '.join([s.op, *s.assignments]) for s in op.steps)}" if op.steps
                else f"{op.main}, {op.launcher}, nproc-per-node {op.nproc_per_node}{dest}")
        _say(f"{name}  ({what})" + (f"  {op.description}" if op.description else ""))
        if name in errors:  # listed with what it declares; running it says the same
            first, *rest = errors[name].splitlines() or [""]
            _say(f"  error: {first}")
            for line in rest:
                _say(f"    {line.strip()}")
        for f in op.flags.values():
            extra = []
            if f.choices:
                extra.append("choices: " + ", ".join(_fmt(c) for c in f.choices))
            if f.min is not None or f.max is not None:
                extra.append(f"range: {_fmt(f.min) if f.min is not None else ''}..{_fmt(f.max) if f.max is not None else ''}")
            if f.required:
                extra.append("required")
            if f.source != "guildfile":
                extra.append(f"from {f.source}")
            desc = "  ".join(x for x in (f.description, f"({'; '.join(extra)})" if extra else "") if x)
            _say(f"  {f.name:<16} {f.value_type or '':<6} default {_fmt(f.default):<10} {desc}".rstrip())
