"""Asking SLURM about jobs (squeue, sacct) and cancelling them (scancel)."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any, Sequence

from .. import JobState

END_STATES = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
              "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED")
QUEUED_STATES = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "RESIZING")


_cache: dict[str, Any] = {"t": 0.0, "jobs": None}


def job_states(max_age: float = 1.0) -> dict[str, tuple[str, str, str]] | None:
    """``{job_id: (state, reason, nodes)}`` of every job slurmctld knows (ended ones for MinJobAge);
    None when SLURM cannot be asked (no squeue, no controller)."""
    now = time.monotonic()
    if _cache["jobs"] is not None and now - _cache["t"] < max_age:
        return _cache["jobs"]
    if not shutil.which("squeue"):
        return None
    try:
        p = subprocess.run(["squeue", "-h", "-a", "-t", "all", "-o", "%i|%T|%r|%N"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    jobs = {}
    for line in p.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            jobs[parts[0]] = (parts[1], parts[2], parts[3])
    _cache.update(t=now, jobs=jobs)
    return jobs


def job_state(job_id: str) -> tuple[str, str, str] | None:
    """(state, reason, nodes) of one job: squeue, else sacct when it answers; None if unknown."""
    jobs = job_states(max_age=1.0)
    if jobs is None:
        return None
    if job_id in jobs:
        return jobs[job_id]
    if shutil.which("sacct"):
        try:
            p = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,Reason,NodeList"],
                               capture_output=True, text=True, timeout=20)
            line = p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else ""
            if line:
                st, reason, nodes = (line.split("|") + ["", ""])[:3]
                return st.split()[0], reason, nodes
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return ("GONE", "", "")


def scancel(job_ids: Sequence[str], sig: str | None = None) -> None:
    if not job_ids:
        return
    cmd = ["scancel", *([f"--signal={sig}", "--full"] if sig else []), *job_ids]
    try:
        subprocess.run(cmd, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass


def job_ended(job_id: str, state: str) -> JobState:
    """A job SLURM reports in an end state (or no longer knows: ``GONE``), as a JobState."""
    what = "no longer exists" if state == "GONE" else f"ended {state}"
    if state.startswith("CANCELLED"):
        return JobState("ended", "cancelled", f"SLURM job {job_id} {what}")
    if state.startswith("TIMEOUT"):
        return JobState("ended", "timeout", f"SLURM job {job_id} {what}")
    return JobState("ended", "gone" if state == "GONE" else "failed", f"SLURM job {job_id} {what}")


def state_of(job_id: str) -> JobState | None:
    """Where SLURM has job ``job_id``; None when SLURM cannot be asked from here."""
    jobs = job_states()
    if jobs is None:
        return None
    state, reason, _ = jobs.get(job_id) or ("GONE", "", "")
    if state in QUEUED_STATES:
        return JobState("queued", detail=f"SLURM job {job_id} {state} ({reason})")
    if state not in END_STATES + ("GONE",):
        return JobState("running", detail=f"SLURM job {job_id} {state}")  # RUNNING, COMPLETING, STAGE_OUT...
    return job_ended(job_id, state)
