"""The ``slurm:`` options (guildfile top level, per op, and ``run --nodes/--partition/--time``)
and the sbatch script they make."""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

SCRIPT_FILE = "slurm.sbatch"  # in the run dir
_TIME_RE = re.compile(r"(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE)")
_MEM_RE = re.compile(r"\d+[KMGT]?")


@dataclass(frozen=True)
class SlurmOptions:
    """The ``slurm:`` section, each key as a field (``-`` written ``_``); None: sbatch's default."""

    partition: str | None = None
    time: str | None = None
    nodes: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    requeue: bool = True
    signal_grace: int = 120
    max_requeues: int = 3
    sbatch_args: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The options under their guildfile keys (what the node supervisor reads back)."""
        return {k.replace("_", "-"): list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def check_value(key: str, v: Any) -> Any:
    """One ``slurm:`` value, normalised; ValueError saying what is expected."""
    if key in ("nodes", "cpus-per-task"):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"must be an integer >= 1, got {v!r}")
        return v
    if key in ("gpus-per-node", "signal-grace", "max-requeues"):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"must be an integer >= 0, got {v!r}")
        return v
    if key == "requeue":
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {v!r}")
        return v
    if key == "time":
        s = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(s, str) or not _TIME_RE.fullmatch(s.strip()):
            raise ValueError(f"{v!r} is not a SLURM time (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS)")
        return s.strip()
    if key == "mem":
        s = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(s, str) or not _MEM_RE.fullmatch(s.strip()):
            raise ValueError(f"{v!r} is not a memory size such as 4000 or 16G")
        return s.strip()
    if key == "sbatch-args":
        if isinstance(v, str):
            v = shlex.split(v)
        if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
            raise ValueError("must be a list of sbatch options")
        for a in v:  # each is one `#SBATCH` line of a shell script: a newline would start a command
            if not a.isprintable():
                raise ValueError(f"{a!r} holds a newline or another control character")
        return tuple(v)
    # partition, account, qos, constraint
    if not isinstance(v, str) or not v.strip() or any(c.isspace() for c in v.strip()):
        raise ValueError(f"must be a name without spaces, got {v!r}")
    return v.strip()


def sbatch_options(opts: Mapping[str, Any]) -> list[str]:
    """The ``#SBATCH`` options for ``opts`` (``SlurmOptions.as_dict``)."""
    out = [f"--nodes={opts.get('nodes', 1)}", "--ntasks-per-node=1"]
    for key, opt in (("partition", "partition"), ("time", "time"), ("cpus-per-task", "cpus-per-task"),
                     ("mem", "mem"), ("account", "account"), ("qos", "qos"), ("constraint", "constraint"),
                     ("gpus-per-node", "gpus-per-node")):
        if opts.get(key) not in (None, "") and not (key == "gpus-per-node" and not opts[key]):
            out.append(f"--{opt}={opts[key]}")
    if opts.get("requeue", True):
        out += ["--requeue", f"--signal=B:USR1@{int(opts.get('signal-grace', 120))}"]
    else:
        out.append("--no-requeue")
    return out + list(opts.get("sbatch-args") or [])


def sbatch_script(run_dir: Path, job_name: str, opts: Mapping[str, Any], python: str) -> str:
    meta = run_dir / ".guildlite"
    lines = ["#!/bin/bash", f"# guildlite run {run_dir.name}: resubmit by hand with `sbatch {SCRIPT_FILE}` in the run dir",
             f"#SBATCH --job-name={job_name}", f"#SBATCH --chdir={run_dir}",
             f"#SBATCH --output={meta}/slurm-%j.out", "#SBATCH --open-mode=append"]
    lines += [f"#SBATCH {shlex.quote(o)}" for o in sbatch_options(opts)]
    # Not `-m`: it puts the cwd first on sys.path, and the cwd is the run dir, whose staged json.py
    # or ctypes.py would replace that stdlib module for the supervisor and the plugins it runs.
    boot = ("import sys; sys.path[:] = [p for p in sys.path if p]; import runpy; "
            "runpy.run_module('guildlite.backends.slurm.node', run_name='__main__', alter_sys=True)")
    lines += ["", f"exec {shlex.quote(python)} -c {shlex.quote(boot)} {shlex.quote(str(run_dir))}", ""]
    return "\n".join(lines)
