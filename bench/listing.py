"""Listing speed over many runs: `guildlite runs`, a filtered `runs`, and `compare`.

    python bench/listing.py [--sizes 10000,100000] [--repeat 3] [--runs-dir DIR]

Synthetic runs are written with guildlite's own Run API (records like real ones, with a
scalars.jsonl each) into a temp dir, or taken from --runs-dir (made there if it is empty; one
size only). The index is deleted before each size's table: "cold" is the first call (it builds the index), "warm" the
best of --repeat later calls, each as wall time and as CPU time (user + system, which a busy
machine inflates far less than wall time). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import GUILDLITE, make_runs


def timed(args: list[str], runs_dir: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system: what a busy machine inflates least) of one CLI call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([*GUILDLITE, *args, "--runs-dir", str(runs_dir)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return dt, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--runs-dir", type=Path, help="Use (or make) the runs here instead of a temp dir.")
    a = ap.parse_args()
    cases = [["runs"], ["runs", "--status", "error"], ["compare", "--status", "error"], ["compare"]]
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
                print(f"| {n} | `guildlite {' '.join(args)}` | {cold * 1000:.0f} | {cold_cpu * 1000:.0f} "
                      f"| {min(w for w, _ in warm) * 1000:.0f} | {min(c for _, c in warm) * 1000:.0f} |", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{os.cpu_count()} CPUs; python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
