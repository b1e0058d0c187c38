"""Entry points of one group, found as ``importlib.metadata.entry_points(group=...)`` finds them,
without importing ``importlib.metadata`` where it need not be.

Importing ``importlib.metadata`` (email, zipfile, csv...) and reading every distribution costs a
``guildlite run`` tens of milliseconds of start-up before anything is planned. For the common
layout (plain directories on ``sys.path``, the standard path finder alone) the lookup is short
and is done here, the same way: the same directories in the same order, a distribution seen
twice counted once (the first wins), the same ``entry_points.txt`` reading. Anything else (a
zip or egg on ``sys.path``, another finder of distributions, a file it would read otherwise)
goes to ``importlib.metadata`` itself.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

_NAME_RUN = re.compile(r"[-_.]+")
# importlib.metadata.EntryPoint.pattern
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


@dataclass(frozen=True)
class EntryPoint:
    """What guildlite uses of ``importlib.metadata.EntryPoint``: ``name``, ``value``, ``load()``."""

    name: str
    value: str
    group: str

    def load(self) -> Any:
        """The object the entry point names (``module:attr.attr``), imported."""
        from functools import reduce
        from importlib import import_module

        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"not an entry point reference: {self.value!r}")
        module = import_module(match.group("module"))
        return reduce(getattr, filter(None, (match.group("attr") or "").split(".")), module)


def entry_points(group: str) -> dict[str, Any]:
    """The entry points of ``group`` by name (a name given twice: the later one), each with
    ``name``, ``value`` and ``load()``."""
    found = _scan(group)
    if found is None:
        from importlib.metadata import entry_points as metadata_entry_points

        return {ep.name: ep for ep in metadata_entry_points(group=group)}
    return {ep.name: ep for ep in found}


def _normalize(name: str) -> str:
    return _NAME_RUN.sub("-", name).lower().replace("-", "_")


def _scan(group: str) -> list[EntryPoint] | None:
    """The group's entry points in importlib.metadata's order, or None where its lookup is not
    the plain one mirrored here."""
    from importlib.machinery import PathFinder

    if [f for f in sys.meta_path if hasattr(f, "find_distributions")] != [PathFinder]:
        return None
    seen: set[str] = set()
    out: list[EntryPoint] = []
    for entry in sys.path:
        root = entry or "."
        if os.path.isfile(root) or os.path.basename(root).lower().endswith(".egg"):
            return None  # a zip or an egg: read through zipfile and importlib.metadata's egg rules
        try:
            children = os.listdir(root)
        except OSError:
            continue
        infos: dict[str, list[str]] = {}  # as importlib.metadata's Lookup groups a path's children
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                infos.setdefault(_normalize(low.rpartition(".")[0].partition("-")[0]), []).append(child)
        for key, dirs in infos.items():
            for child in dirs:
                if not child.endswith((".dist-info", ".egg-info")):
                    return None  # its name would come from its METADATA file
                if key in seen:
                    continue
                seen.add(key)
                eps = _read(os.path.join(root, child, "entry_points.txt"), group)
                if eps is None:
                    return None
                out.extend(eps)
    return out


def _read(path: str, group: str) -> list[EntryPoint] | None:
    """The group's entries of one entry_points.txt ([] if it has none); None if importlib.metadata
    would fail on it (it then says why)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return []
    except (OSError, ValueError):
        return None
    out = []
    section = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section is None:
            continue
        if "=" not in line:
            return None
        name, value = line.split("=", 1)
        if section == group:
            out.append(EntryPoint(name.strip(), value.strip(), group))
    return out
