"""What the bench scripts share: the guildlite command, synthetic finished runs, and the cold and
warm table of CLI calls over them (listing and filter)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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


def timed(args: list[str], runs_dir: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system: what a busy machine inflates least) of one CLI call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([*GUILDLITE, *args, "--runs-dir", str(runs_dir)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return dt, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def cold_warm_table(doc: str, cases: list[list[str]], sizes: str) -> None:
    """The bench's command line (``--sizes``, default ``sizes``; ``--repeat``; ``--runs-dir``), then a
    markdown table of each case over that many synthetic runs: the first call after the index is
    deleted (cold) and the best of the later ones (warm), wall and CPU."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=sizes)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--runs-dir", type=Path, help="Use (or make) the runs here instead of a temp dir.")
    a = ap.parse_args()
    print("| runs | command | cold ms | cold cpu ms | warm ms (best) | warm cpu ms (best) |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in [int(x) for x in a.sizes.split(",")]:
        tmp = Path(tempfile.mkdtemp(prefix="guildlite-bench-"))
        runs_dir = a.runs_dir or tmp / "runs"
        try:
            if not runs_dir.exists() or not any(runs_dir.iterdir()):
                runs_dir.mkdir(parents=True, exist_ok=True)
                runs_dir.rmdir()
                t = time.perf_counter()
                make_runs(runs_dir, n)
                print(f"<!-- made {n} runs in {time.perf_counter() - t:.1f} s -->", file=sys.stderr)
            (runs_dir / ".index.sqlite").unlink(missing_ok=True)
            for args in cases:
                cold, cold_cpu = timed(args, runs_dir)
                warm = [timed(args, runs_dir) for _ in range(a.repeat)]
                shown = " ".join(f"'{x}'" if " " in x else x for x in args)
                print(f"| {n} | `guildlite {shown}` | {cold * 1000:.0f} | {cold_cpu * 1000:.0f} "
                      f"| {min(w for w, _ in warm) * 1000:.0f} | {min(c for _, c in warm) * 1000:.0f} |", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{os.cpu_count()} CPUs; python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f} at the end")
