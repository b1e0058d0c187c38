"""What the bench scripts share: the guildlite command and synthetic finished runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

_EXE = Path(sys.executable).with_name("guildlite")
GUILDLITE = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "guildlite"]

HOOK_TRACE = [{"plugin": "EnvCapture", "hook": "on_run_begin", "priority": 10, "start": 0.0, "seconds": 0.03,
               "error": None}]


def run_id(i: int) -> str:
    """The ``i``-th of a set of distinct ids in guildlite's format (UTC second, 3 + 3 hex digits)."""
    return f"20260101T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i % 4096:03x}{i // 4096:03x}"


def make_runs(runs_dir: Path, n: int, error_every: int = 97, scalar_steps: int = 5) -> None:
    """``n`` finished runs of a ``train`` op written with guildlite's own Run API (records like
    real ones: command, op definition, hook trace), every ``error_every``-th one failed, each with
    ``scalar_steps`` rows of ``loss`` in scalars.jsonl."""
    from guildlite._run import Run

    runs_dir.mkdir(parents=True)
    for i in range(n):
        d = runs_dir / run_id(i)
        d.mkdir()
        failed = i % error_every == 0
        lr = 0.1 / (1 + i % 10)
        run = Run(
            id=d.name,
            run_dir=d,
            op="train",
            opspec=f"train lr={lr:g}",
            flags={"lr": lr, "epochs": 1 + i % 5, "batch-size": 64},
            status="error" if failed else "completed",
            exit_code=1 if failed else 0,
            created="2026-01-01T00:00:00.000+00:00",
            started="2026-01-01T00:00:00.100+00:00",
            stopped="2026-01-01T00:00:05.000+00:00",
            cmd=["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "train.py",
                 f"--lr={lr:g}"],
            op_def={"main": "train.py", "flags": {"lr": 0.1, "epochs": 3, "batch-size": 64}},
            plugins=HOOK_TRACE,
        )
        (d / "run.json").write_text(json.dumps(run.to_record()))
        if scalar_steps:
            (d / "scalars.jsonl").write_text("".join(
                json.dumps({"step": s, "key": "loss", "value": 1.0 / (s + 1 + i % 7)}) + "\n"
                for s in range(scalar_steps)))
