"""``flags-dest``: where a flag's value goes (the command line, the environment, or the script's
source), and for flags set in the source, the global each one sets.

Both ``_flags_import`` (learning a script's flags) and ``_reach`` (checking that they reach it)
read this, so that ``_reach`` may use ``_flags_import`` and never the other way round.
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping


def in_source(dest: str | None) -> tuple[bool, str | None]:
    """Whether ``flags-dest`` sets values in the script's source, and in which top-level dict
    (``globals``: no dict; ``dict:NAME`` or Guild's ``global:NAME``: NAME)."""
    if dest == "globals":
        return True, None
    if isinstance(dest, str) and dest.startswith(("dict:", "global:")):
        return True, dest.partition(":")[2].strip()
    return False, None


def global_names(op_def: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, str]:
    """For ``flags-dest: globals``: each flag that is set in the script -> the global's name
    (its ``arg-name``, else its own), from the op's guildfile data (``run.op_def``)."""
    declared = op_def.get("flags") or {}
    skip = _interpolated(str(op_def.get("main", "")))
    out = {}
    for name in flags:
        raw = declared.get(name)
        raw = raw if isinstance(raw, dict) else {}
        if raw.get("arg-skip") or name in skip:
            continue
        out[name] = str(raw.get("arg-name") or name)
    return out


def _interpolated(main: str) -> set[str]:
    from ._flag_args import refs

    try:
        items = shlex.split(main)
    except ValueError:
        return set()
    return {ref for item in items[1:] for ref in refs(item)}
