"""What one invocation runs, validated before anything is staged (``_operation.plan_run`` makes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ._guildfile import Guildfile, OpDef
from ._requires import Resolved

if TYPE_CHECKING:
    from .backends import Backend


@dataclass(frozen=True)
class RunConfig:
    """Everything validated about what to run, before anything is staged."""

    guildfile: Guildfile
    op: OpDef
    runs_dir: Path
    opspec: str
    nproc: int
    label: str = ""
    echo: bool = True
    grace: float = 30.0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    backend: Backend | None = None  # where jobs run (None: the local backend)
    launch: Mapping[str, Any] = field(default_factory=dict)  # what each run's launch file holds (_supervisor)
    detached: bool = False  # this Session is a detached supervisor's: nobody watches, SIGHUP is ignored
    max_concurrent: int | None = None  # this user's runs at once on this machine (``_queue``), None: no cap
    requires: Resolved = Resolved()  # the op's requirements, resolved once (``_requires``)
    needed: bool = False  # --needed: a run like a completed one is not published (_needed.AlreadyDone)

