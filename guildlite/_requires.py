"""An op's ``requires:`` (project files and dirs, URLs, upstream runs) resolved once per
invocation, before anything is staged (``resolve``), then put into each run dir before its
``on_run_staged`` and recorded in its run.json ``requires`` (``Resolved.stage``).

The type and its validation are ``_requires_schema``'s (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ._errors import GuildliteError
from ._requires_schema import Requirement

if TYPE_CHECKING:
    from ._guildfile import OpDef
    from ._run import Run

__all__ = ["Entry", "Requirement", "Resolution", "Resolved", "resolve"]


@dataclass(frozen=True)
class Entry:
    """One path a requirement puts into the run dir: ``target`` (relative to it) from ``path``."""

    target: str
    path: Path
    copy: bool = False


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
    def targets(self) -> list[str]:
        return [e.target for r in self.items for e in r.entries]

    def stage(self, run: Run) -> None:
        """Put every requirement into ``run``'s dir and record them in ``run.requires``."""
        if self.items:
            raise GuildliteError("requires: not implemented yet")


def resolve(op: OpDef, project: Path, runs_dir: Path, flags: Mapping[str, Any] | None = None) -> Resolved:
    """Resolve ``op.requires`` (find files, download URLs, pick upstream runs) once, before any
    run dir exists; ``Resolved.stage(run)`` puts them into each run dir and records them."""
    if op.requires:
        raise GuildliteError("requires: not implemented yet")
    return Resolved()
