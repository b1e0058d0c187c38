"""Never a silent mismatch: a flag that cannot reach the script is an error before the job starts.

- Before staging (``check_op``, exit 2, nothing created): with ``flags-dest: globals`` every flag
  names a top-level literal assignment of the main script; with argparse flags-import, every
  option guildlite passes is one the script's parser accepts (``parse_known_args`` would
  otherwise drop it silently).
- Before launch (``unreached``, after every ``on_run_staged`` and ``on_run_begin`` hook): the
  staged script, re-parsed, holds each global flag's value; the run ends ``error`` otherwise.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ._errors import FlagError
from ._flags_dest import global_names, in_source

if TYPE_CHECKING:
    from ._guildfile import OpDef
    from ._run import Run


def check_op(op: OpDef, project: Path) -> None:
    """Raise FlagError (exit 2) for a flag of ``op`` that cannot reach its script."""
    is_globals, container = in_source(op.flags_dest)
    if is_globals:
        from ._flags_import import main_source
        from ._pysource import global_for, read_source

        src = main_source(op, project)
        if src is None:
            raise FlagError(f"operation '{op.name}': flags-dest {op.flags_dest} needs the script's source in the project")
        source = read_source(src)
        targets: dict[str, str] = {}
        for flag, name in global_names(op.data, op.flags).items():
            global_for(source, name, container)
            if name in targets:
                raise FlagError(f"operation '{op.name}': flags '{targets[name]}' and '{flag}' both set {name}; "
                                "the script would hold only one (rename one with arg-name, or arg-skip it)")
            targets[name] = flag
    elif op.flags_dest == "args":
        _check_twins(op)
        found = _check_reads(op, project)
        if op.flags_import or "argparse" in found or any(n.endswith("ArgumentParser") for n in found):
            _check_options(op, project)
    elif op.flags_dest == "env":
        _check_reads(op, project)


def _check_reads(op: OpDef, project: Path) -> set[str]:
    """Refuse flags passed to a script that, as its source shows, never reads them: on the command
    line when it (and every project module it imports or runs) uses no parser and no ``sys.argv``
    and imports no package but the standard library and well-known ones (torch, numpy, ...);
    in the environment when none of them reads ``os.environ`` and it imports no outside package.
    Returns what reads the command line (see ``_parser_scan.cli_parsers``)."""
    from ._flag_args import interpolated
    from ._flags_import import main_source
    from ._parser_scan import cli_parsers, reads_argv, reads_environ
    from ._pysource import read_source

    skip = interpolated(op)
    passed = [n for n, fd in op.flags.items() if not fd.arg_skip and n not in skip]
    src = main_source(op, project)
    if not passed or src is None or src.suffix != ".py":
        return set()
    found = cli_parsers(src, project)
    where = src.relative_to(project).as_posix()
    if op.flags_dest == "env":
        if reads_environ(src, project):
            return found
        why = f"{where} never reads its environment (no os.environ or getenv)"
    elif reads_argv(src, project):
        return found
    else:
        why = f"{where} reads no command line (no parser, no sys.argv, only well-known libraries)"
    try:
        source = read_source(src)
    except FlagError:
        return found  # it cannot run either; its own error will say why
    hints = []
    for name in passed:
        fd = op.flags[name]
        var = (fd.arg_name or name).lstrip("-").replace("-", "_")
        if var in source.globals:
            rename = "" if var == name else f"give it arg-name: {var} and "
            hints.append(f"flag '{name}' matches its global {var}: {rename}set flags-dest: globals")
    hint = "; ".join(hints) or "use flags-dest: globals for its module variables, or arg-skip: true to only record a flag"
    raise FlagError(f"operation '{op.name}': flags-dest {op.flags_dest}: {why}, so flag(s) "
                    f"{', '.join(passed)} would not reach it ({hint})")


def check_nulls(op: OpDef, values: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """A flag given as null that the command line would leave out: the script would run with its
    own default while the record says null, so it is refused (an ``arg-encoding`` for null passes it).
    A null among a batch's values (``[null,1]``, ``choice[null,1]``) is refused too: its trial would."""
    if op.flags_dest != "args":
        return
    from ._flag_args import _OMIT, encode, interpolated
    from ._flag_values import Grid, Random

    def null(v: Any) -> bool:
        if isinstance(v, Grid):
            return None in v.values
        if isinstance(v, Random):
            return v.kind == "choice" and None in v.args
        return v is None

    skip = interpolated(op)
    for name in given:
        fd = op.flags.get(name)
        if not null(values.get(name)) or name in skip or (fd is not None and (fd.arg_skip or fd.arg_position is not None)):
            continue
        if encode(op, fd, None) is _OMIT:
            raise FlagError(f"flag '{name}': null is not passed on the command line, so the script would run with "
                            f"its own default while the record says null; give a value, or an arg-encoding for null")


def _check_twins(op: OpDef) -> None:
    """Two flags passed as one option: the script would see only the last."""
    from ._flag_args import interpolated, option_name

    skip = interpolated(op)
    seen: dict[str, str] = {}
    for name, fd in op.flags.items():
        if fd.arg_skip or fd.arg_position is not None or name in skip:
            continue
        opt = option_name(name, fd)
        if opt in seen:
            raise FlagError(f"operation '{op.name}': flags '{seen[opt]}' and '{name}' are both passed as {opt}; "
                            "the script would see only one (rename one with arg-name, or arg-skip it)")
        seen[opt] = name


def _check_options(op: OpDef, project: Path) -> None:
    from ._errors import GuildliteError
    from ._flag_args import interpolated, option_name
    from ._flags_import import parser_options, probe, remember_no_parser

    if not op.flags:
        return
    options = parser_options(op, project)
    if options is None and not op.flags_import:
        # Declared flags of an argparse script: probe its parser too (cached per script version),
        # since parse_known_args would drop an option it lacks without a word.
        try:
            probe(op, project)
        except GuildliteError:
            remember_no_parser(op, project)  # not probed again until the script changes
            return  # no parser reached: nothing to check against
        options = parser_options(op, project)
    if options is None:
        return
    skip = interpolated(op)
    for name, fd in op.flags.items():
        if fd.arg_skip or fd.arg_position is not None or name in skip:
            continue
        opt = option_name(name, fd)
        if opt not in options:
            raise FlagError(
                f"operation '{op.name}': flag '{name}' is passed as {opt}, which the script's parser does not "
                f"accept (its options: {', '.join(sorted(options)) or 'none'}); give it arg-name, or arg-skip: true "
                "to record it without passing it"
            )


def script_in(run_dir: Path, op_def: Mapping[str, Any]) -> Path | None:
    """The staged copy of the op's main script in ``run_dir`` (a module's file too)."""
    try:
        first = shlex.split(str(op_def.get("main", "")))[0]
    except (ValueError, IndexError):
        return None
    if first.endswith(".py") or "/" in first:
        return run_dir / first
    stem = run_dir.joinpath(*first.split("."))
    for cand in (stem.with_suffix(".py"), stem / "__main__.py"):
        if cand.is_file():
            return cand
    return None


def global_values(run: Run) -> dict[str, Any]:
    """The globals a ``flags-dest: globals`` run sets: global name -> the run's value."""
    return {g: run.flags[f] for f, g in global_names(run.op_def, run.flags).items()}


def unreached(op: OpDef, run: Run) -> str | None:
    """Why a staged run's flags do not hold in its script (None: they do, or cannot be checked)."""
    is_globals, container = in_source(op.flags_dest)
    if not is_globals or run.is_batch:
        return None
    from ._pysource import mismatches

    script = script_in(run.run_dir, run.op_def)
    if script is None:
        return f"flags-dest {op.flags_dest}: the staged run has no copy of {run.op_def.get('main')!r}"
    problems = mismatches(script, global_values(run), container)
    if not problems:
        return None
    return "a flag does not reach the script: " + "; ".join(problems)
