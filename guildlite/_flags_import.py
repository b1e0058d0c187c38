"""``flags-import``: learn a script's argparse options without running its training.

The script runs in a subprocess (``python .../guildlite/_argparse_probe.py``) in which
``ArgumentParser.parse_args`` reports the parser's options as JSON and exits. Results are cached
by the script's path, size and mtime, so an edit to the script refreshes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._errors import FlagError, GuildfileError
from ._flags import FlagDef, coerce, name_problem
from ._guildfile import OpDef
from ._launch import without_rank_env
from ._runs import cache_dir, write_json

IMPORT_TIMEOUT = 30.0


def with_imported_flags(op: OpDef, project: Path, timeout: float = IMPORT_TIMEOUT) -> OpDef:
    """``op`` with its script's argparse flags merged in (guildfile declarations win)."""
    if not op.flags_import:
        return op
    found = probe(op, project, timeout)
    wanted = set(op.flags_import) if isinstance(op.flags_import, tuple) else None
    if wanted is not None:
        missing = wanted - set(found)
        if missing:
            raise GuildfileError(
                f"operation '{op.name}': flags-import names {', '.join(sorted(missing))} but the script's parser "
                f"has only {', '.join(sorted(found)) or 'no options'}"
            )
    merged: dict[str, FlagDef] = {}
    for name, declared in op.flags.items():
        merged[name] = _merge(found[name], declared) if name in found else declared
        if name in found and merged[name].default is not None:
            try:  # a guildfile default must suit the script's type and choices
                merged[name] = dataclasses.replace(merged[name], default=coerce(merged[name], merged[name].default))
            except FlagError as e:
                raise GuildfileError(f"operation '{op.name}' flag '{name}': bad default: {e}") from None
    for name, imported in found.items():
        if name not in merged and (wanted is None or name in wanted):
            merged[name] = imported
    return dataclasses.replace(op, flags=merged)


def _merge(imported: FlagDef, declared: FlagDef) -> FlagDef:
    """Fields the guildfile sets override the imported ones."""
    blank = FlagDef(name=declared.name)
    changes = {
        f.name: getattr(declared, f.name)
        for f in dataclasses.fields(FlagDef)
        if f.name not in ("name", "source") and getattr(declared, f.name) != getattr(blank, f.name)
    }
    return dataclasses.replace(imported, source="guildfile+script", **changes)


def probe(op: OpDef, project: Path, timeout: float = IMPORT_TIMEOUT) -> dict[str, FlagDef]:
    """The argparse options of ``op``'s main, from the cache or a probe subprocess."""
    target = op.main_args
    path = project / target[1].replace(".", "/") if target[0] == "-m" else project / target[0]
    src = path / "__main__.py" if path.is_dir() else path if path.is_file() else path.with_suffix(".py")
    try:
        st = src.stat()
        stamp = f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = f"{project}:{op.main}"
    key = hashlib.sha256(f"{stamp}|{op.main}|{sys.executable}".encode()).hexdigest()[:24]
    cache = cache_dir("flags-import") / f"{key}.json"
    try:
        return _defs(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    actions = _run_probe(op, project, timeout)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, actions)
    except OSError:
        pass  # an unwritable cache only costs speed
    return _defs(actions)


def _run_probe(op: OpDef, project: Path, timeout: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="guildlite-probe-") as tmp:
        out = Path(tmp) / "flags.json"
        env = without_rank_env(os.environ)
        env["GUILDLITE_FLAGS_IMPORT"] = "1"
        # By file, not -m: `-m` puts the project first on sys.path before the probe imports json.
        cmd = [sys.executable, str(Path(__file__).with_name("_argparse_probe.py")), str(out), *op.main_args]
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
        data: list[dict[str, Any]] = json.loads(out.read_text())
        return data


def _defs(actions: list[dict[str, Any]]) -> dict[str, FlagDef]:
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
            source="script",
        )
        for a in actions
        if name_problem(a["name"]) is None  # `--1cycle`, `--a b`: not a name NAME=VALUE can give
    }
