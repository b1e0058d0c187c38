"""Selecting and copying a project's source files into a run directory."""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

from ._guildfile import SourceSpec

# Never copied, whatever the globs say: VCS data, caches, virtualenvs, run stores.
_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
              ".tox", ".nox", ".venv", "venv", "env", "node_modules", ".ipynb_checkpoints", ".guildlite",
              "build", "dist", ".eggs"}
_SKIP_FILES = ("*.pyc", "*.pyo", "*.egg-info", ".DS_Store")


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if fnmatch.fnmatchcase(rel, pat) or ("/" not in pat and fnmatch.fnmatchcase(name, pat)):
            return True
        # 'dir/**' and 'dir/' select everything under dir
        base = pat.rstrip("/").removesuffix("/**")
        if base != pat and (rel == base or rel.startswith(base + "/")):
            return True
    return False


def select_files(project: Path, spec: SourceSpec, skip: tuple[Path, ...] = ()) -> list[str]:
    """Relative paths of the files to copy, sorted. ``skip`` holds dirs to leave out (the runs dir)."""
    project = project.resolve()
    skip_real = {p.resolve() for p in skip}
    out = []
    for root, dirs, files in os.walk(project, followlinks=False):
        rootp = Path(root)
        keep = []
        for d in dirs:
            full = rootp / d
            if d in _SKIP_DIRS or full.is_symlink() or full.resolve() in skip_real:
                continue
            if (full / "pyvenv.cfg").exists() or d.endswith(".egg-info"):
                continue
            rel = full.relative_to(project).as_posix()
            if spec.exclude and _matches(rel, spec.exclude):
                continue
            keep.append(d)
        dirs[:] = sorted(keep)
        for name in files:
            full = rootp / name
            rel = full.relative_to(project).as_posix()
            if any(fnmatch.fnmatchcase(name, p) for p in _SKIP_FILES):
                continue
            if spec.include and not _matches(rel, spec.include):
                continue
            if spec.exclude and _matches(rel, spec.exclude):
                continue
            try:
                st = full.stat()  # follows a file symlink; a dangling one is skipped
            except OSError:
                continue
            if st.st_size > spec.max_size or not full.resolve().is_relative_to(project) and full.is_symlink():
                continue
            out.append(rel)
    return sorted(out)


def copy_files(project: Path, files: list[str], dest: Path) -> None:
    """Copy ``files`` (relative to ``project``) into ``dest``, keeping modes and times."""
    made: set[Path] = set()
    for rel in files:
        target = dest / rel
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        shutil.copy2(project / rel, target)
