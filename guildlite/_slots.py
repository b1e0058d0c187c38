"""Slots: where jobs run at once, each a place with (or without) its own disjoint set of GPUs, or
with a pool it leases its GPUs from, machine-wide, when a job starts there (``_leases``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Sequence

from ._errors import GuildliteError

VISIBLE_ENV = "GUILDLITE_VISIBLE_GPUS"
_GPU_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")  # 0, GPU-<uuid>, MIG-<uuid>, MIG-GPU-<uuid>/1/0


@dataclass(frozen=True)
class Slot:
    """A place to run one job: an index, and the GPUs it owns (None: leave CUDA_VISIBLE_DEVICES alone);
    or ``need`` GPUs to lease from ``pool`` when a job starts here (the granted slot owns them)."""

    index: int
    gpus: tuple[str, ...] | None = None
    pool: tuple[str, ...] = ()
    need: int = 0


def visible_gpus(explicit: str | None = None) -> list[str]:
    """GPU ids from ``--gpus``, else CUDA_VISIBLE_DEVICES, else nvidia-smi; [] when there are none.

    ``GUILDLITE_VISIBLE_GPUS`` (ids, comma-separated) stands in for nvidia-smi: the machine's
    GPUs for tests and CPU machines."""
    if explicit is not None:
        ids = [g.strip() for g in explicit.split(",") if g.strip()]
        for g in ids:  # CUDA ignores an id it cannot read and every id after it: "-1" hides them all
            if not _GPU_ID.fullmatch(g):
                raise GuildliteError(f"--gpus: {g!r} is not a GPU id (an index such as 0, or a UUID such as "
                                     "GPU-8f2c...: as nvidia-smi -L shows them)", exit_code=2)
        return ids
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    fake = os.environ.get(VISIBLE_ENV)
    if fake is not None:
        return [g.strip() for g in fake.split(",") if g.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def make_slots(parallel: int, gpus_per_trial: int, gpus: Sequence[str]) -> list[Slot]:
    """``parallel`` slots; with ``gpus_per_trial`` > 0 each owns a disjoint set of that many GPUs."""
    gpus = list(dict.fromkeys(gpus))  # `--gpus 0,0` is one GPU
    n = _count(parallel, gpus_per_trial, gpus)
    if gpus_per_trial <= 0:
        return [Slot(i) for i in range(n)]
    return [Slot(i, tuple(gpus[i * gpus_per_trial : (i + 1) * gpus_per_trial])) for i in range(n)]


def lease_slots(parallel: int, gpus_per_trial: int, gpus: Sequence[str]) -> list[Slot]:
    """``parallel`` slots (at most as many as ``gpus`` holds groups of ``gpus_per_trial``), each
    leasing ``gpus_per_trial`` of ``gpus`` when a job starts on it, so that jobs of every
    invocation on this machine share the GPUs without overlap."""
    gpus = list(dict.fromkeys(gpus))
    n = _count(parallel, gpus_per_trial, gpus)
    if gpus_per_trial <= 0:
        return [Slot(i) for i in range(n)]
    return [Slot(i, pool=tuple(gpus), need=gpus_per_trial) for i in range(n)]


def _count(parallel: int, gpus_per_trial: int, gpus: Sequence[str]) -> int:
    """How many slots: ``parallel``, less when the GPUs hold fewer groups of ``gpus_per_trial``."""
    if parallel < 1:
        raise GuildliteError("--parallel must be at least 1", exit_code=2)
    if gpus_per_trial <= 0:
        return parallel
    groups = len(gpus) // gpus_per_trial
    if groups == 0:
        have = f"{len(gpus)} visible ({','.join(gpus)})" if gpus else "none visible"
        raise GuildliteError(
            f"the operation needs {gpus_per_trial} GPU(s) per trial but there are {have}; "
            "pass --gpus IDS or set gpus-per-trial: 0",
            exit_code=2,
        )
    return min(parallel, groups)
