"""``--filter`` speed over many runs: filters on flags and on scalars, cold and warm.

    python bench/filter.py [--sizes 100000] [--repeat 3] [--runs-dir DIR]

Synthetic runs are written with the listing bench's writer (``_common.make_runs``: records like
real ones, a scalars.jsonl of ``loss`` each; flags lr (10 values), epochs (5), batch-size) into
a temp dir, or taken from --runs-dir (made there if it is empty). "cold" is each command's first
call (the index is deleted before the table: the first row's cold call builds it), "warm" the
best of --repeat later calls, each as wall time and as CPU time (user + system). Each call is the
real CLI in a subprocess. ``guildlite runs --status error`` (the listing bench's warm case) is
timed beside them for scale. Prints a markdown table.
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

CASES = [
    ["runs", "--filter", "lr >= 0.05"],  # a flag: 20% of the runs
    ["runs", "--filter", "epochs = 5 and lr < 0.011"],  # flags: 10%
    ["runs", "--filter", "loss < 0.11"],  # a scalar's last value: 2 in 7
    ["runs", "--filter", "min(loss) < 0.1 and lr > 0.05"],  # a scalar's min and a flag
    ["runs", "--all", "--filter", "epochs = 5 and lr < 0.011"],  # every match listed (10k)
    ["compare", "--filter", "epochs = 5 and lr < 0.011"],
    ["select", "--min", "loss", "--filter", "epochs = 3"],
    ["runs", "--status", "error"],  # for scale: the listing bench's case
]


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
    ap.add_argument("--sizes", default="100000")
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
            for args in CASES:
                cold, cold_cpu = timed(args, runs_dir)
                warm = [timed(args, runs_dir) for _ in range(a.repeat)]
                shown = " ".join(f"'{x}'" if " " in x else x for x in args)
                print(f"| {n} | `guildlite {shown}` | {cold * 1000:.0f} | {cold_cpu * 1000:.0f} "
                      f"| {min(w for w, _ in warm) * 1000:.0f} | {min(c for _, c in warm) * 1000:.0f} |", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{os.cpu_count()} CPUs; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
