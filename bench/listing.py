"""Listing speed over many runs: `guildlite runs`, a filtered `runs`, and `compare`.

    python bench/listing.py [--sizes 10000,100000] [--repeat 3]

Synthetic runs are written with guildlite's own Run API (records like real ones, with a
scalars.jsonl each) into a temp dir. "cold" is the first call (it builds the index), "warm" the
best of --repeat later calls. Prints a markdown table.
"""

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

from guildlite._runs import Run

GUILDLITE = [str(Path(sys.executable).with_name("guildlite"))]
if not Path(GUILDLITE[0]).exists():
    GUILDLITE = [sys.executable, "-m", "guildlite"]


def make_runs(runs_dir: Path, n: int) -> None:
    runs_dir.mkdir(parents=True)
    for i in range(n):
        run_id = f"20260101T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i % 4096:03x}{i // 4096:03x}"
        d = runs_dir / run_id
        d.mkdir()
        run = Run(
            id=run_id,
            run_dir=d,
            op="train",
            flags={"lr": 0.1 / (1 + i % 10), "epochs": 1 + i % 5, "batch-size": 64},
            status="error" if i % 97 == 0 else "completed",
            exit_code=1 if i % 97 == 0 else 0,
            created="2026-01-01T00:00:00.000+00:00",
            started="2026-01-01T00:00:00.100+00:00",
            stopped="2026-01-01T00:00:05.000+00:00",
            cmd=["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "train.py"],
            op_def={"main": "train.py", "flags": {"lr": 0.1, "epochs": 3, "batch-size": 64}},
            plugins=[{"plugin": "EnvCapture", "hook": "on_run_begin", "priority": 10, "start": 0.0,
                      "seconds": 0.03, "error": None}],
        )
        (d / "run.json").write_text(json.dumps(run.to_record()))
        (d / "scalars.jsonl").write_text(
            "".join(json.dumps({"step": s, "key": "loss", "value": 1.0 / (s + 1 + i % 7)}) + "\n" for s in range(5))
        )


def timed(args: list[str], runs_dir: Path) -> tuple[float, int]:
    """Wall seconds and max RSS (KB) of one CLI call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run([*GUILDLITE, *args, "--runs-dir", str(runs_dir)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    dt = time.perf_counter() - t
    return dt, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cases = [["runs"], ["runs", "--status", "error"], ["compare", "--status", "error"], ["compare"]]
    print("| runs | command | cold ms | warm ms (best) |")
    print("|---:|---|---:|---:|")
    for n in [int(x) for x in a.sizes.split(",")]:
        tmp = Path(tempfile.mkdtemp(prefix="guildlite-bench-"))
        try:
            t = time.perf_counter()
            make_runs(tmp / "runs", n)
            print(f"<!-- made {n} runs in {time.perf_counter() - t:.1f} s -->", file=sys.stderr)
            for args in cases:
                cold, _ = timed(args, tmp / "runs")
                warm = min(timed(args, tmp / "runs")[0] for _ in range(a.repeat))
                print(f"| {n} | `guildlite {' '.join(args)}` | {cold * 1000:.0f} | {warm * 1000:.0f} |", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{os.cpu_count()} CPUs; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
