"""Looking at runs: compare tables, files, source and flag diffs."""

from __future__ import annotations

import difflib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._errors import GuildliteError
from ._runs import META_DIR, Run

_RUN_FILES = {"run.json", "output.log", "scalars.jsonl"}
_BASE_COLS = ("id", "op", "status", "started", "time", "label", "batch")


def seconds_between(started: str | None, stopped: str | None) -> float | None:
    """Seconds from ``started`` to ``stopped`` (ISO times; to now while running)."""
    if not started:
        return None
    end = datetime.fromisoformat(stopped) if stopped else datetime.now().astimezone()
    return round((end - datetime.fromisoformat(started)).total_seconds(), 3)


def duration(run: Run) -> float | None:
    """Seconds from start to stop (to now while running)."""
    return seconds_between(run.started, run.stopped)


def compare_table(
    records: Sequence[Mapping[str, Any]], scalars: Mapping[str, dict[str, Any]], min_max: bool = False
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per run record: id, op, status, started, time, every flag, every scalar.

    ``scalars`` maps run ids to scalar summaries (``load_records(..., scalars=True)``).
    """
    flag_cols: dict[str, None] = {}
    scalar_cols: dict[str, None] = {}
    rows = []
    for rec in records:
        flags = rec.get("flags") or {}
        row: dict[str, Any] = {
            "id": rec.get("id"),
            "op": rec.get("op"),
            "status": rec.get("status"),
            "started": rec.get("started"),
            "time": seconds_between(rec.get("started"), rec.get("stopped")),
            "label": rec.get("label"),
            "batch": rec.get("parent"),
        }
        if any(k in _BASE_COLS for k in flags):  # a flag named like a base column keeps its own
            flags = {f"{k} (flag)" if k in _BASE_COLS else k: v for k, v in flags.items()}
        flag_cols.update(dict.fromkeys(flags))
        row.update(flags)
        for key, s in scalars.get(row["id"], {}).items():
            if key in flags or key in _BASE_COLS:
                key = f"{key} (scalar)"  # a scalar named like a flag keeps its own column
            if min_max:
                cells = {key: s["last"], f"{key}.min": s["min"], f"{key}.max": s["max"]}
            else:
                cells = {key: s["last"]}
            scalar_cols.update(dict.fromkeys(cells))
            row.update(cells)
        rows.append(row)
    return [*_BASE_COLS, *flag_cols, *scalar_cols], rows


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Sort by a column (``-col`` for descending); rows without a value go last."""
    desc = key.startswith("-")
    col = key.lstrip("-")
    have = [r for r in rows if r.get(col) is not None]
    missing = [r for r in rows if r.get(col) is None]
    try:
        have.sort(key=lambda r: r[col], reverse=desc)
    except TypeError:
        have.sort(key=lambda r: str(r[col]), reverse=desc)
    return have + missing


def run_files(run: Run, include_meta: bool = False) -> list[tuple[str, int]]:
    """Every file in the run dir (relative path, size), sorted; ``.guildlite/`` only on request."""
    out = []
    for root, dirs, files in os.walk(run.run_dir):
        if not include_meta:
            dirs[:] = [d for d in dirs if d != META_DIR]
        for name in files:
            p = Path(root, name)
            try:
                out.append((p.relative_to(run.run_dir).as_posix(), p.stat().st_size))
            except OSError:
                continue
    return sorted(out)


def run_path(run: Run, rel: str) -> Path:
    """``rel`` inside the run dir; refuses paths that leave it."""
    base = run.run_dir.resolve()
    p = (base / rel).resolve()
    if not p.is_relative_to(base):
        raise GuildliteError(f"{rel!r} is outside the run directory", exit_code=2)
    if not p.is_file():
        raise GuildliteError(f"run {run.id} has no file {rel!r} (see: guildlite ls {run.id})", exit_code=2)
    return p


def source_files(run: Run) -> list[str]:
    """The run's staged source files: from its manifest, else every file but guildlite's own."""
    manifest = run.paths.manifest
    try:
        return [f["path"] for f in json.loads(manifest.read_text())["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return [rel for rel, _ in run_files(run) if rel not in _RUN_FILES and not rel.startswith("scalars.")]


def diff_flags(a: Run, b: Run) -> list[tuple[str, Any, Any]]:
    """(flag, value in a, value in b) for every flag of either run, differences first."""
    names = list(dict.fromkeys([*a.flags, *b.flags]))
    rows = [(n, a.flags.get(n), b.flags.get(n)) for n in names]
    return sorted(rows, key=lambda r: r[1] == r[2])


def diff_trees(a_dir: Path, a_files: Sequence[str], b_dir: Path, b_files: Sequence[str], a_name: str, b_name: str) -> str:
    """A unified diff of two sets of text files."""
    out: list[str] = []
    for rel in sorted(set(a_files) | set(b_files)):
        a_lines = _lines(a_dir / rel) if rel in a_files else []
        b_lines = _lines(b_dir / rel) if rel in b_files else []
        if a_lines is None or b_lines is None:
            if (a_dir / rel).read_bytes() != (b_dir / rel).read_bytes():
                out.append(f"Binary files {a_name}/{rel} and {b_name}/{rel} differ\n")
            continue
        out.extend(
            difflib.unified_diff(
                a_lines,
                b_lines,
                f"{a_name}/{rel}" if rel in a_files else "/dev/null",
                f"{b_name}/{rel}" if rel in b_files else "/dev/null",
            )
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _lines(p: Path) -> list[str] | None:
    try:
        return p.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None
    except OSError:
        return []
