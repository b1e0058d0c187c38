"""``flags-import``: learn a script's flags without running its training.

Module globals (``flags-dest: globals``, or a script that reads ``sys.argv`` itself, such as a
``--key=value`` configurator) are read from the source by ``ast``; the script never runs. For
argparse, the script runs in a subprocess (``python .../guildlite/_argparse_probe.py``) in which
``ArgumentParser.parse_args`` reports the parser's options as JSON and exits; that happens only
when the script (or a project module it imports) uses argparse. Probe results are cached
by the script's path, size and mtime, so an edit to the script refreshes them.

An op without ``flags-dest`` whose script reads no command line at all (no argparse, click, ...
and no ``sys.argv``) gets ``flags-dest: globals``: with no flags declared (or ``flags-import``),
its top-level literal assignments are its flags; declared flags named like its globals set them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ._errors import FlagError, GuildfileError, GuildliteError
from ._files import cache_dir, write_json
from ._flags import FlagDef, coerce, name_problem
from ._flags_dest import global_names, in_source
from ._guildfile import OpDef
from ._launch import without_rank_env

IMPORT_TIMEOUT = 30.0


def with_imported_flags(op: OpDef, project: Path, timeout: float = IMPORT_TIMEOUT, cheap: bool = False) -> OpDef:
    """``op`` with its script's flags merged in (guildfile declarations win); ``cheap``: only
    what is found without running anything (the source, a config file, the probe's cache), for
    shell completion."""
    op = with_absl_lists(with_click_switches(with_default_dest(op, project), project), project)
    if not op.flags_import:
        return op
    if op.flags_dest == "overrides" or op.flags_dest.startswith("config:"):
        found = probe(op, project, timeout, cheap)  # the composed Hydra config, the config file's keys
    else:
        kind = "globals" if in_source(op.flags_dest)[0] else _import_kind(op, project)
        if kind == "globals":
            found = global_flags(op, project)
        elif kind == "click":
            from ._click_flags import click_flags

            src = main_source(op, project)
            found = click_flags(src) if src is not None else {}
        elif kind == "absl":
            from ._absl_flags import absl_flags

            src = main_source(op, project)
            found = absl_flags(src, project) if src is not None else {}
        else:
            found = probe(op, project, timeout, cheap)
    wanted = set(op.flags_import) if isinstance(op.flags_import, tuple) else None
    if wanted is not None and not cheap:
        missing = wanted - set(found)
        if missing:
            raise GuildfileError(
                f"operation '{op.name}': flags-import names {', '.join(sorted(missing))} but the script "
                f"has only {', '.join(sorted(found)) or 'no such flags'}"
            )
    # A global's "option" is its own name; an argparse option's is its option string.
    by_option = {(n if in_source(op.flags_dest)[0] else f.arg_name): n for n, f in found.items()
                 if f.arg_name or in_source(op.flags_dest)[0]}
    for name, declared in op.flags.items():  # a declared flag renamed to an imported option is that option
        twin = by_option.get(declared.arg_name or "")
        if twin is not None and twin != name and twin not in op.flags:
            found = {(name if n == twin else n): (dataclasses.replace(f, name=name) if n == twin else f)
                     for n, f in found.items()}
            if wanted is not None and twin in wanted:
                wanted = (wanted - {twin}) | {name}
    merged: dict[str, FlagDef] = {}
    for name, declared in op.flags.items():
        merged[name] = _merge(found[name], declared) if name in found else declared
        if name in found and merged[name].default is not None:
            try:  # a guildfile default must suit the script's type and choices
                merged[name] = dataclasses.replace(merged[name], default=coerce(merged[name], merged[name].default))
            except FlagError as e:
                raise GuildfileError(f"operation '{op.name}' flag '{name}': bad default: {e}") from None
    for name, imported in found.items():
        if name not in merged and (wanted is None or name in wanted) and name not in op.flags_import_skip:
            merged[name] = imported
    return dataclasses.replace(op, flags=merged)


def ops_with_flags(operations: Mapping[str, OpDef], project: Path) -> dict[str, tuple[OpDef, GuildliteError | None]]:
    """Each op with its script's flags imported (``with_imported_flags``), or as declared with the
    error that importing them gave: one op's script never hides the others (``guildlite ops``)."""
    out: dict[str, tuple[OpDef, GuildliteError | None]] = {}
    for name, op in operations.items():
        try:
            out[name] = (op if op.steps else with_imported_flags(op, project), None)
        except GuildliteError as e:
            out[name] = (op, e)
    return out


def with_click_switches(op: OpDef, project: Path) -> OpDef:
    """Boolean flags passed as one half of a click ``--x/--no-x`` option get the other half for the
    other value: ``arg-switch`` alone passes nothing there, leaving the script's default (which
    may be the opposite of what the record says)."""
    if op.flags_dest != "args" or not op.flags:
        return op
    src = main_source(op, project)
    if src is None or src.suffix != ".py":
        return op
    from ._flag_args import option_name
    from ._parser_scan import click_switch_pairs

    pairs = click_switch_pairs(src)
    if not pairs:
        return op
    flags = dict(op.flags)
    for name, fd in op.flags.items():
        pair = pairs.get(option_name(name, fd))
        if pair is None or fd.value_type not in ("bool", None) or fd.arg_switch_off:
            continue
        other, is_on = pair
        switch = is_on if fd.arg_switch is None else fd.arg_switch
        flags[name] = dataclasses.replace(fd, arg_switch=switch, arg_switch_off=other)
    return dataclasses.replace(op, flags=flags)


def with_absl_lists(op: OpDef, project: Path) -> OpDef:
    """List flags passed as an absl list option get the ``arg-split`` absl reads (unless they set
    one): absl takes ``--layers=8,4``, and from ``--layers 8 4`` keeps ``["8"]`` while ``4`` drops
    into the positional argv, unread, with the record saying ``[8, 4]``."""
    if op.flags_dest != "args" or not op.flags:
        return op
    src = main_source(op, project)
    if src is None or src.suffix != ".py" or not {"absl", "FLAGS"} & cli_parsers(src, project):
        return op
    from ._absl_flags import absl_list_splits
    from ._flag_args import option_name

    splits = absl_list_splits(src, project)
    flags = dict(op.flags)
    for name, fd in op.flags.items():
        split = splits.get(option_name(name, fd))
        if split is not None and fd.arg_split is None:
            flags[name] = dataclasses.replace(fd, arg_split=split)
    return dataclasses.replace(op, flags=flags)


def with_default_dest(op: OpDef, project: Path) -> OpDef:
    """An op without ``flags-dest`` whose script reads no command line gets ``flags-dest: globals``
    (and ``flags-import: all`` if it declares no flags) -- when it declares flags, if any of them
    names one of the script's globals. Recorded in the op's data, so run.json's ``op_def`` says
    what was used."""
    if "flags-dest" in op.data:
        return op
    src = main_source(op, project)
    if src is None:
        return op
    found = cli_parsers(src, project)
    if _hand_parsed(found) and not op.flags and not op.flags_import:
        # A hand `--key=value` configurator (nanoGPT's, even exec'd from another file): its
        # globals are the flags, passed on the command line, where it applies them after any
        # config file it also runs.
        data = {**op.data, "flags-import": "all"}
        return dataclasses.replace(op, flags_import=True, data=data)
    if found:
        return op
    from ._pysource import read_source

    try:
        source = read_source(src)
    except FlagError:
        return op  # it cannot run either; its own error will say why
    if op.flags and not op.flags_import:
        if not any(g in source.globals for g in global_names(op.data, op.flags).values()):
            return op  # flags named like none of its globals: recorded, as before (no place to put them)
        data = {**op.data, "flags-dest": "globals"}
        return dataclasses.replace(op, flags_dest="globals", data=data)
    imports = op.flags_import or True
    data = {**op.data, "flags-dest": "globals", "flags-import": op.data.get("flags-import", "all")}
    return dataclasses.replace(op, flags_dest="globals", flags_import=imports, data=data)


def _hand_parsed(found: set[str]) -> bool:
    """The script reads ``sys.argv`` itself (perhaps exec'ing a config file it names), no parser."""
    return "sys.argv" in found and found <= {"sys.argv", "exec"}


def main_source(op: OpDef, project: Path) -> Path | None:
    """The project file that ``main`` runs (None for an installed module)."""
    target = op.main_args
    path = project / target[1].replace(".", "/") if target[0] == "-m" else project / target[0]
    for src in (path / "__main__.py", path, path.with_suffix(".py")):
        if src.is_file():
            return src
    return None


def cli_parsers(src: Path, project: Path) -> set[str]:
    """What ``src`` reads its command line with (see ``_parser_scan.cli_parsers``)."""
    from ._parser_scan import cli_parsers as scan

    return scan(src, project)


def _import_kind(op: OpDef, project: Path) -> str:
    """How to import a ``flags-dest: args`` script's flags: ``argparse`` (the probe) when it uses
    argparse, ``click`` (its source's options) when it uses click, ``absl`` (its ``DEFINE_*`` calls) when it
    uses absl, ``globals`` when it reads ``sys.argv`` itself (a ``--key=value`` configurator that
    sets its globals, nanoGPT's); anything else is refused, since the probe would run it to its end."""
    src = main_source(op, project)
    if src is None:
        return "argparse"  # an installed module: the probe's timeout is the only guard
    found = cli_parsers(src, project)
    if any(n.endswith("ArgumentParser") or n.startswith("parse_") for n in found):
        return "argparse"  # argparse, or a parser built on it (transformers' HfArgumentParser)
    # Importing argparse without building a parser or parsing (argparse.Namespace only) is no
    # parser: the probe would run the script to its end to find that out.
    unused = "argparse" in found
    found.discard("argparse")
    if _hand_parsed(found):
        return "globals"
    if "click" in found:
        return "click"  # its options read from the source (``_click_flags``)
    if {"absl", "FLAGS"} & found:  # absl's flags, or TensorFlow's (tf.compat.v1.flags is absl)
        return "absl"  # its DEFINE_* calls read from the source (``_absl_flags``)
    uses = f"uses {', '.join(sorted(found))}" if found else "reads no command line"
    if unused:
        uses += " (it imports argparse but builds no ArgumentParser and calls no parse_args)"
    raise GuildfileError(
        f"operation '{op.name}': flags-import reads argparse parsers and module globals, but "
        f"{src.relative_to(project).as_posix()} {uses}: declare its flags in the guildfile"
    )


def global_flags(op: OpDef, project: Path) -> dict[str, FlagDef]:
    """The main script's top-level literal assignments as flags (never running it)."""
    from ._parser_scan import configurator_line
    from ._pysource import read_source

    src = main_source(op, project)
    if src is None:
        raise GuildfileError(f"operation '{op.name}': flags-dest globals needs the script's source in the project")
    try:
        source = read_source(src)
    except FlagError as e:
        raise GuildfileError(f"operation '{op.name}': {e}") from None
    container = in_source(op.flags_dest)[1]
    if container is not None and container not in source.dicts:
        raise GuildfileError(f"operation '{op.name}': {src.name} has no top-level dict '{container} = {{...}}'")
    found = source.globals if container is None else source.dicts[container]
    applied = None if in_source(op.flags_dest)[0] else configurator_line(src)
    return {
        name: FlagDef(name=name, default=g.value, type=_global_type(g.value), source="script")
        for name, g in found.items()
        if re.fullmatch(r"[A-Za-z][\w.-]*", name)  # not _private; a dict key usable as NAME=VALUE
        and (applied is None or g.line < applied)
    }


def _global_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "list"
    return {bool: "bool", int: "int", float: "float", str: "str"}[type(value)]


def parser_options(op: OpDef, project: Path) -> set[str] | None:
    """Every option string of the script's argparse parser (from the probe's cache), or None."""
    data = _cached(op, project, failed_too=True)
    if data is None or data.get("failed"):
        return None
    return set(data.get("options", ()))


def remember_no_parser(op: OpDef, project: Path) -> None:
    """Cache that the probe of ``op``'s script reached no parser (for the pre-launch check only:
    ``probe`` still runs, and reports why, for flags-import)."""
    try:
        cache = _cache_path(op, project)
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, {"flags": [], "failed": True})
    except OSError:
        pass  # an unwritable cache only costs speed


def _merge(imported: FlagDef, declared: FlagDef) -> FlagDef:
    """Fields the guildfile sets override the imported ones."""
    blank = FlagDef(name=declared.name)
    changes = {
        f.name: getattr(declared, f.name)
        for f in dataclasses.fields(FlagDef)
        if f.name not in ("name", "source") and getattr(declared, f.name) != getattr(blank, f.name)
    }
    return dataclasses.replace(imported, source=f"guildfile+{imported.source}", **changes)


def probe(op: OpDef, project: Path, timeout: float = IMPORT_TIMEOUT, cheap: bool = False) -> dict[str, FlagDef]:
    """The flags ``op``'s script takes: a Hydra app's composed config (``flags-dest: overrides``),
    the keys of its config file (``config:FILE``), else its argparse options (from the cache or a
    probe subprocess). ``cheap``: never a subprocess (a Hydra app: none; argparse: the cache's)."""
    if op.flags_dest == "overrides" and cheap:
        return {}
    if op.flags_dest == "overrides":
        from ._hydra import composed_config, import_entries

        env = without_rank_env(os.environ)
        env["GUILDLITE_FLAGS_IMPORT"] = "1"
        return _defs(import_entries(composed_config(_probe_args(op), project, env, timeout, op.name)), "hydra")
    if op.flags_dest.startswith("config:"):
        from ._config_file import config_path
        from ._config_file import import_entries as config_entries

        rel = config_path(op.flags_dest) or ""
        return _defs(config_entries(project / rel, op.name), rel)
    data = _cached(op, project)
    if data is None and cheap:
        return {}
    if data is None:
        data = _run_probe(op, project, timeout)
        try:
            cache = _cache_path(op, project)
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, data)
        except OSError:
            pass  # an unwritable cache only costs speed
    return _defs(data["flags"])


def _cache_path(op: OpDef, project: Path) -> Path:
    src = main_source(op, project)
    try:
        if src is None:
            raise OSError
        st = src.stat()
        stamp = f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = f"{project}:{op.main}"
    key = hashlib.sha256(f"v4|{stamp}|{op.main}|{sys.executable}".encode()).hexdigest()[:24]
    return cache_dir("flags-import") / f"{key}.json"


def _cached(op: OpDef, project: Path, failed_too: bool = False) -> dict[str, Any] | None:
    try:
        data = json.loads(_cache_path(op, project).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("flags"), list)):
        return None
    return data if failed_too or not data.get("failed") else None


def _run_probe(op: OpDef, project: Path, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="guildlite-probe-") as tmp:
        out = Path(tmp) / "flags.json"
        env = without_rank_env(os.environ)
        env["GUILDLITE_FLAGS_IMPORT"] = "1"
        # By file, not -m: `-m` puts the project first on sys.path before the probe imports json.
        cmd = [sys.executable, str(Path(__file__).with_name("_argparse_probe.py")), *_stop_at(op, project), str(out),
               *_probe_args(op)]
        try:
            proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GuildfileError(
                f"operation '{op.name}': flags-import: {op.main} did not reach ArgumentParser.parse_args "
                f"within {timeout:.0f} s (it may train at import time; declare its flags instead)"
            ) from None
        if not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            why = "\n  ".join(tail) if tail else f"exit code {proc.returncode}, no output"
            raise GuildfileError(
                f"operation '{op.name}': flags-import: {op.main} failed before ArgumentParser.parse_args:\n  {why}"
            )
        data: dict[str, Any] = json.loads(out.read_text())
        if "passed" in data:
            raise GuildfileError(
                f"operation '{op.name}': flags-import: {op.main} reached line {data['passed']} without calling "
                "ArgumentParser.parse_args, and nothing from there on can (its parser is never used): declare "
                "its flags in the guildfile"
            )
        return data


def _stop_at(op: OpDef, project: Path) -> list[str]:
    """``--stop-at LINE`` for the probe of a script file (see ``_parser_scan.parse_end_line``)."""
    src = main_source(op, project)
    if src is None or op.main_args[0] == "-m" or src != project / op.main_args[0]:
        return []  # a module, a directory's __main__.py, a `${flag}` path: run as before
    from ._parser_scan import parse_end_line

    line = parse_end_line(src, project)
    return [] if line is None else ["--stop-at", str(line)]


def _probe_args(op: OpDef) -> list[str]:
    """``main`` for the probe: ``${flag}`` filled with the declared defaults where it can be."""
    from ._flag_args import main_args

    try:
        return main_args(op, {n: f.default for n, f in op.flags.items()})
    except FlagError:
        return op.main_args


def _defs(actions: list[dict[str, Any]], source: str = "script") -> dict[str, FlagDef]:
    return {
        a["name"]: FlagDef(
            name=a["name"],
            default=a.get("default"),
            type=a.get("type"),
            choices=tuple(a["choices"]) if a.get("choices") else None,
            required=bool(a.get("required")),
            description=a.get("help") or "",
            arg_name=a.get("option"),
            arg_switch=a.get("switch"),
            arg_split=a.get("split"),
            arg_encoding={True: a["encoding"]["true"], False: a["encoding"]["false"]} if a.get("encoding") else None,
            source=source,
        )
        for a in actions
        if name_problem(a["name"]) is None  # `--1cycle`, `--a b`: not a name NAME=VALUE can give
    }
