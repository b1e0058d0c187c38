"""An op's ``requires:`` (project files and dirs, URLs, upstream runs) resolved once per
invocation, before anything is staged (``resolve``: every trial of a batch gets the same), then
put into each run dir before its ``on_run_staged`` and recorded in its run.json ``requires``
(``Resolved.stage``).

Where a requirement goes in the run dir: a project path at the same relative path (``data/`` ->
``data``), anything else (an absolute path, a path outside the project, a URL's file) by its
name, and under ``target-path`` when one is given. A source file at or under a requirement's
place is not copied: the requirement wins (``Resolved.covers``), and the source report says so.
The type and its validation are ``_requires_schema``'s (re-exported here).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ._files import META_DIR, write_json
from ._requires_schema import Requirement
from ._resource_files import Collected, Entry, RequirementError, collect, place

if TYPE_CHECKING:
    from ._guildfile import OpDef
    from ._run import Run

__all__ = ["Entry", "Requirement", "RequirementError", "Resolution", "Resolved", "resolve"]

_MANIFEST = "requires.json"  # in the run's META_DIR: what this staging put there (a restart removes it)


@dataclass(frozen=True)
class Resolution:
    """One requirement, resolved: the paths it puts into a run dir and its run.json record."""

    requirement: Requirement
    entries: tuple[Entry, ...]
    record: Mapping[str, Any]


@dataclass(frozen=True)
class Resolved:
    """An op's requirements resolved once (per invocation: every trial of a batch gets the same)."""

    items: tuple[Resolution, ...] = ()

    @property
    def entries(self) -> list[Entry]:
        return [e for r in self.items for e in r.entries]

    def covers(self, rel: str) -> Entry | None:
        """The entry placed at or above the run-dir path ``rel`` (a source file it replaces), or None."""
        if not self.items:
            return None
        parts = PurePosixPath(rel).parts
        return next((self._by_target[p] for p in ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
                     if p in self._by_target), None)

    @cached_property
    def _by_target(self) -> dict[str, Entry]:
        return {e.target: e for e in self.entries}

    def replaced(self, project: Path, files: list[str]) -> list[str]:
        """A line for each source file (of ``files``, relative to ``project``) that a requirement
        replaces with something else in the run dir (the requirement wins its place)."""
        out = []
        for rel in files:
            e = self.covers(rel)
            if e is None:
                continue
            provided = e.path if rel == e.target else e.path / os.path.relpath(rel, e.target)
            if os.path.realpath(provided) != os.path.realpath(project / rel):
                out.append(f"source file {rel} is not copied: the run dir has {provided} there (requires)")
        return out

    @property
    def warnings(self) -> list[str]:
        """What the requirements left out (a symlink out of a required dir), one line each."""
        out = []
        for r in self.items:
            for s in r.record.get("skipped") or ():
                out.append(f"requires {r.requirement.label}: {s['path']} not provided ({s['reason']})")
        return out

    def stage(self, run: Run) -> None:
        """Put every requirement into ``run``'s dir (over what an earlier staging put there: a
        restart) and record them in ``run.requires``."""
        manifest = run.run_dir / META_DIR / _MANIFEST
        remove_staged(run.run_dir)
        for e in self.entries:
            place(run.run_dir, e)
        run.requires = [dict(r.record) for r in self.items]
        if self.items:
            write_json(manifest, [{"target": e.target, "copy": e.copy} for e in self.entries])


def remove_staged(run_dir: Path) -> None:
    """Remove what an earlier staging of ``run_dir`` put there for its requirements (a restart)."""
    manifest = run_dir / META_DIR / _MANIFEST
    try:
        earlier = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return
    for item in earlier if isinstance(earlier, list) else ():
        rel = item.get("target") if isinstance(item, dict) else None
        if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in PurePosixPath(rel).parts:
            continue  # a manifest is written by guildlite; anything else in it is not acted on
        if not _inside(run_dir, rel):
            continue  # through a link the job (or a run dir from elsewhere) put there: not ours to remove
        p = run_dir / rel
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir() and item.get("copy"):
            shutil.rmtree(p)
    manifest.unlink(missing_ok=True)


def _inside(run_dir: Path, rel: str) -> bool:
    """Whether every folder on the way to ``rel`` is a real folder of ``run_dir`` (no symlink)."""
    node = run_dir
    for part in PurePosixPath(rel).parts[:-1]:
        node = node / part
        if node.is_symlink() or not node.is_dir():
            return False
    return True


def resolve(op: OpDef, project: Path, runs_dir: Path, flags: Mapping[str, Any] | None = None,
            where: str = "guildfile.yml") -> Resolved:
    """Resolve ``op.requires`` (find files, download URLs, pick upstream runs) once, before any
    run dir exists; a RequirementError if one cannot be. ``Resolved.stage(run)`` puts them into
    each run dir."""
    items = tuple(_resolve_one(req, Path(project), Path(runs_dir), flags or {}, where) for req in op.requires)
    _check_places(items, where)
    return Resolved(items)


def _resolve_one(req: Requirement, project: Path, runs_dir: Path, flags: Mapping[str, Any], where: str) -> Resolution:
    at = f"{where}:{req.line}" if req.line else where
    rec: dict[str, Any] = {"kind": req.kind, "source": req.source}
    only = None  # an upstream run: its outputs only
    if req.kind == "file":
        root, base = _file_source(req, project, at)
        rec["path"] = str(root)
    elif req.kind == "url":
        from ._downloads import fetch

        root = fetch(req.source, req.sha256, at)
        base = _under(req.target_path, root.name)
        rec["path"] = str(root)
    else:
        root, run_id, only = _upstream_source(req, runs_dir, flags, at)
        base = _under(req.target_path, "")
        rec.update(run=run_id, name=req.name or req.source, path=str(root))  # name: what picks it (NAME=RUN)
    if req.kind == "file" and req.sha256 is not None:  # checked whatever its size (a URL's: by ``fetch``)
        _check_sha256(req, root, at)
    if req.unpack and root.is_file():
        from ._digests import cached_sha256
        from ._unpack import unpacked

        digest = cached_sha256(root)
        rec["archive_sha256"] = digest
        root, base = unpacked(root, digest, at), _under(req.target_path, "")
    found: Collected = collect(req, root, base, at, only, runs_dir)
    rec.update(target=base or ".", target_type=req.target_type, **found.record)
    if found.skipped:
        rec["skipped"] = list(found.skipped)
    return Resolution(req, found.entries, rec)


def _check_sha256(req: Requirement, path: Path, at: str) -> None:
    from ._digests import cached_sha256

    if not path.is_file():
        raise RequirementError(f"{at}: {req.label}: sha256 is given but {path} is not a file", exit_code=2)
    got = cached_sha256(path)
    if got != req.sha256:
        raise RequirementError(f"{at}: {req.label}: sha256 mismatch: expected {req.sha256}, got {got};"
                               " nothing was staged")


def _file_source(req: Requirement, project: Path, at: str) -> tuple[Path, str]:
    """The path of a ``file:`` requirement and its place in the run dir."""
    written = Path(os.path.expanduser(req.source))
    root = written if written.is_absolute() else project / written
    if not os.path.exists(root):
        raise RequirementError(f"{at}: {req.label}: {root} does not exist", exit_code=2)
    rel = posixpath.normpath(req.source.rstrip("/")) if not written.is_absolute() else ""
    inside = rel not in ("", ".") and rel != ".." and not rel.startswith("../")
    name = rel if inside else Path(os.path.realpath(root)).name
    return root, _under(req.target_path, PurePosixPath(name).name) if req.target_path else name


def _under(target_path: str, name: str) -> str:
    """``name`` under ``target-path`` in the run dir ("" for the run dir itself)."""
    out = posixpath.normpath(posixpath.join(target_path or ".", name))
    return "" if out == "." else out


def _upstream_source(req: Requirement, runs_dir: Path, flags: Mapping[str, Any],
                     at: str) -> tuple[Path, str, Callable[[str], bool]]:
    """The run dir and id an ``operation:`` requirement resolves to, and which of its paths are
    the run's outputs (``_upstream`` decides: ``flags`` holds the run its name picked, if one was)."""
    from ._upstream import is_output, source_run

    run = source_run(req, runs_dir, flags)
    return run.run_dir, run.id, is_output(run)


def _check_places(items: tuple[Resolution, ...], where: str) -> None:
    """Two requirements at one place, or one inside another's link, are refused before staging."""
    seen: dict[str, Resolution] = {}
    for r in items:
        at = f"{where}:{r.requirement.line}" if r.requirement.line else where
        for e in r.entries:
            if e.target in seen:
                other = seen[e.target].requirement.label
                both = f"{r.requirement.label} puts two files" if seen[e.target] is r else \
                    f"{r.requirement.label} and {other} both go"
                raise RequirementError(f"{at}: {both} to {e.target!r} in the run dir; give one a target-path"
                                       " (or another rename)", exit_code=2)
            seen[e.target] = r
    for target, r in seen.items():
        parts = PurePosixPath(target).parts
        for i in range(1, len(parts)):
            above = seen.get("/".join(parts[:i]))
            if above is not None:
                at = f"{where}:{r.requirement.line}" if r.requirement.line else where
                raise RequirementError(f"{at}: {r.requirement.label} goes to {target!r}, inside"
                                       f" {'/'.join(parts[:i])!r}, which {above.requirement.label} links whole;"
                                       " give it another target-path", exit_code=2)
