"""Listing speed over many runs: `guildlite runs`, a filtered `runs`, and `compare`.

    python bench/listing.py [--sizes 10000,100000] [--repeat 3]

Synthetic runs are written with guildlite's own Run API (records like real ones, with a
scalars.jsonl each) into a temp dir. "cold" is the first call (it builds the index), "warm" the
best of --repeat later calls. Prints a markdown table.
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
