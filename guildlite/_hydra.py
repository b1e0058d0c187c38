"""Hydra apps (``flags-dest: overrides``): flags as override argv items, and flags from the
composed config.

Values are written in Hydra's override grammar so that the app reads back exactly the flag's
value: a string is quoted whenever it would otherwise parse as something else (a number, a bool,
``null``, a list, a sweep) or holds characters the unquoted form does not allow; ``${`` in a
string is escaped, so a value is never an interpolation by accident.

``flags-import`` runs ``APP --cfg all`` (Hydra prints the composed config, its own included, and
exits without running the task) and turns it into dotted flags: nested keys as ``model.lr``,
each config group as a flag whose value is the choice (``db=postgres``). Keys a config group
sets (``db.user``) depend on the choice: they are imported with no default, so they are passed
only when given.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ._config_file import leaves
from ._errors import FlagError, GuildfileError
from ._flags import FlagDef, name_problem, scalar_type

if TYPE_CHECKING:
    from ._guildfile import OpDef

# Unquoted, these parse back as the same string (checked against Hydra's own parser in the
# tests); anything else is quoted.
_PLAIN = re.compile(r"[A-Za-z_/][\w/\-.]*")
_KEYWORDS = ("true", "false", "null", "inf", "nan")
_GROUP_HYDRA = "hydra/"


def encode(value: Any) -> str:
    """``value`` in Hydra's override grammar (the part after ``key=``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_dict_key(k)}:{encode(v)}" for k, v in value.items()) + "}"
    return _string(str(value))


def _dict_key(key: Any) -> str:
    text = str(key)
    if not re.fullmatch(r"[A-Za-z_][\w\-]*", text) or text.lower() in _KEYWORDS:
        raise FlagError(f"the mapping key {text!r} cannot be written as a Hydra override")
    return text


def _string(s: str) -> str:
    if _PLAIN.fullmatch(s) and s.lower() not in _KEYWORDS and "${" not in s:
        return s
    # OmegaConf resolves `${...}` in any string: `\${` keeps it literal (a backslash run right
    # before `${` is doubled, so it stays a backslash run).
    s = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", s)
    quote = "'" if "'" not in s or '"' in s else '"'
    # Inside quotes only backslashes before a quote (or at the end) are special: double them,
    # and escape the quote itself.
    s = re.sub(r"(\\*)" + quote, lambda m: m.group(1) * 2 + "\\" + quote, s)
    s = re.sub(r"(\\+)\Z", lambda m: m.group(1) * 2, s)
    return quote + s + quote


def override_args(flags: Mapping[str, Any], defs: Mapping[str, FlagDef], imported: bool) -> list[str]:
    """Flags as ``key=value`` override argv items. None is left out (the app's own value stands)
    for a flag whose default is None too; a flag set to None over a default is passed as
    ``key=null``, which Hydra reads as None, so the app gets the None the record says.

    ``arg-name`` is the override key (``+trainer.extra`` appends a key the config lacks). With
    ``imported`` (the op's flags-import read the composed config), a flag declared only in the
    guildfile is not in that config: it is passed as ``++key`` (add or override), so it reaches
    the app whether or not the config has it.
    """
    out = []
    for name, value in flags.items():
        fd = defs.get(name)
        if (value is None and (fd is None or fd.default is None)) or (fd is not None and fd.arg_skip):
            continue
        key = fd.arg_name if fd is not None and fd.arg_name else name
        if imported and fd is not None and not fd.arg_name and fd.source == "guildfile":
            key = f"++{key}"
        out.append(f"{key}={encode(value)}")
    return out


# --- flags-import -------------------------------------------------------------------------------


def composed_config(main_args: list[str], project: Path, env: Mapping[str, str], timeout: float,
                    op_name: str) -> dict[str, Any]:
    """The app's composed config, Hydra's own under ``hydra`` (``APP --cfg all``)."""
    import yaml

    cmd = [sys.executable, *main_args, "--cfg", "all"]
    where = f"operation '{op_name}': flags-import"
    try:
        proc = subprocess.run(cmd, cwd=project, env=dict(env), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GuildfileError(f"{where}: {' '.join(main_args)} --cfg all did not print its config within "
                             f"{timeout:.0f} s") from None
    lines = proc.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("hydra:")), None)
    if proc.returncode != 0 or start is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        why = "\n  ".join(tail) if tail else f"exit code {proc.returncode}, no output"
        raise GuildfileError(f"{where}: {' '.join(main_args)} --cfg all did not print a Hydra config "
                             f"(is it a @hydra.main app?):\n  {why}")
    try:
        data = yaml.safe_load("\n".join(lines[start:]))
    except yaml.YAMLError as e:
        raise GuildfileError(f"{where}: cannot read the config the app printed: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("hydra"), dict):
        raise GuildfileError(f"{where}: the app printed no Hydra config")
    return data


def import_entries(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flag entries (name, default, type, choices, required, help) from a composed config."""
    hydra = data.get("hydra") or {}
    runtime = hydra.get("runtime") or {}
    choices = {
        str(g): c for g, c in (runtime.get("choices") or {}).items() if not str(g).startswith(_GROUP_HYDRA)
    }
    sources = [Path(s["path"]) for s in runtime.get("config_sources") or []
               if isinstance(s, dict) and s.get("schema") == "file" and s.get("path")]
    out: list[dict[str, Any]] = []
    for group, choice in choices.items():
        options = _group_options(sources, group)
        entry: dict[str, Any] = {"name": group, "default": choice, "type": "str",
                                 "help": f"config group {group}"}
        if options and (choice is None or choice in options):
            entry["choices"] = options
        out.append(entry)
    packages = {g.replace("/", ".") for g in choices}
    job = {k: v for k, v in data.items() if k != "hydra"}
    for name, value in leaves(job):
        if isinstance(value, str) and "${" in value:
            continue  # an interpolation: derived from other keys, not a flag of its own
        try:
            encode(value)
        except FlagError:
            continue  # a value no override can write (a mapping with odd keys): left to the config
        entry = {"name": name, "default": value, "help": ""}
        kind = scalar_type(value)
        if kind:
            entry["type"] = kind
        if value == "???":
            entry.update(default=None, required=True, help="mandatory (??? in the config)")
            entry.pop("type", None)
        owner = next((p for p in packages if name.startswith(p + ".")), None)
        if owner is not None:
            # Set by the group's chosen config: another choice has its own value (or none).
            entry.update(default=None, required=False,
                         help=f"from config group {owner.replace('.', '/')} ({value!r} with "
                              f"{owner.replace('.', '/')}={choices.get(owner.replace('.', '/'))})")
        out.append(entry)
    return out


def _group_options(sources: list[Path], group: str) -> list[str]:
    found: set[str] = set()
    for src in sources:
        try:
            names = os.listdir(src / group)
        except OSError:
            continue
        found.update(n.rsplit(".", 1)[0] for n in names if n.endswith((".yaml", ".yml")))
    return sorted(found)


# --- `+key=value` on the command line -------------------------------------------------------------


def with_added_overrides(op: OpDef, assignments: list[str],
                         recorded: Mapping[str, Any] | None) -> tuple[OpDef, list[str]]:
    """An overrides op with a flag for each Hydra ``+key=VALUE`` / ``++key=VALUE`` assignment
    (a key the composed config lacks, added as Hydra adds it), and the assignments as
    ``key=VALUE``: the record holds ``key`` and the app gets ``+key=...``, as typed. A key of a
    recorded run (a restart's) that the op lacks was added that way: it is passed as ``++key``
    (add or override), so a restart gives the app what the record says instead of dropping it.
    Any other op is returned as it is (a ``+`` name is refused as a flag name later)."""
    import dataclasses

    if op.flags_dest != "overrides":
        return op, assignments
    flags = dict(op.flags)
    out: list[str] = []
    for arg in assignments:
        name, sep, text = arg.partition("=")
        key = name.strip().lstrip("+")
        plus = name.strip()[: len(name.strip()) - len(key)]
        if not plus or not sep:
            out.append(arg)
            continue
        if len(plus) > 2:
            raise FlagError(f"{name.strip()!r}: a Hydra override adds a key with + or ++, in {arg!r}")
        if key in op.flags:
            if plus == "+":  # Hydra itself refuses to append a key the config has
                raise FlagError(f"'{key}' is a flag of operation '{op.name}' already: give {key}={text}")
            out.append(f"{key}={text}")  # `++key` over an existing key is a plain override
            continue
        flags[key] = FlagDef(name=key, arg_name=f"{plus}{key}", source="override")
        out.append(f"{key}={text}")
    for key in recorded or {}:
        if key not in flags and name_problem(key) is None:  # a record may be hand-edited or imported
            flags[key] = FlagDef(name=key, arg_name=f"++{key}", source="override")
    return (dataclasses.replace(op, flags=flags) if flags != op.flags else op), out
