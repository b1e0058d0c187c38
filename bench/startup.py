"""CLI start-up time: how long a `guildlite` command takes from exec to exit.

    python bench/startup.py [--repeat 10] [--runs 1000]

Cases: `--help`, `--version`, `runs` on an empty runs dir and on --runs synthetic runs (written
in-process with guildlite's own ``Run(...).save()``, so the records are exactly what guildlite
writes), `compare` of 20 runs, `runs` of 20 runs in a copy of the example project (its guildfile
read to find them), `ops` there, and two baselines: `python -c pass` (the
interpreter alone) and `python -c "import guildlite.cli"` (the CLI module's imports, no command).

With PYTHONDONTWRITEBYTECODE set and an editable install, guildlite's own modules are compiled
from source on every call; ``--pyc`` times the calls with a temp PYTHONPYCACHEPREFIX instead (and
PYTHONDONTWRITEBYTECODE unset), so the warm-up writes .pyc files there and the timed calls use them
(as an ordinary install does). Nothing is written outside the temp dir either way.

Every case is run once as a warm-up, then --repeat rounds, one call of each case per round
(interleaved, so drift hits every case alike). Prints a markdown table of min / median / max
wall milliseconds per case, and the median CPU milliseconds (user + system: what a busy machine
inflates far less than wall time). Everything lives in a temp dir that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import GUILDLITE, make_runs

REPO = Path(__file__).resolve().parent.parent


def make_project(root: Path) -> Path:
    """A copy of the example project (guildfile.yml + operations/) to run `ops` in."""
    proj = root / "project"
    proj.mkdir()
    shutil.copy(REPO / "guildfile.yml", proj / "guildfile.yml")
    if (REPO / "operations").is_dir():
        shutil.copytree(REPO / "operations", proj / "operations")
    return proj


def call(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one call; exits the benchmark if the command fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} exited {p.returncode}:\n{p.stderr.decode(errors='replace')}")
    return dt, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10, help="timed calls per case (default 10)")
    ap.add_argument("--runs", type=int, default=1000, help="synthetic runs for the `runs` case (default 1000)")
    ap.add_argument("--pyc", action="store_true", help="cache bytecode in a temp PYTHONPYCACHEPREFIX (see above)")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="guildlite-bench-startup-"))
    try:
        proj = make_project(tmp)
        empty = tmp / "runs-empty"
        empty.mkdir()
        few = tmp / "runs-20"
        make_runs(few, 20)
        make_runs(proj / "runs", 20)  # where the project's guildfile puts them (read to find them)
        many = tmp / f"runs-{a.runs}"
        t = time.perf_counter()
        make_runs(many, a.runs)
        print(f"<!-- made {a.runs} runs in {time.perf_counter() - t:.1f} s -->", file=sys.stderr)

        base = {k: v for k, v in os.environ.items() if not k.startswith("GUILDLITE_")}
        if a.pyc:
            base.pop("PYTHONDONTWRITEBYTECODE", None)
            base["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        py = sys.executable
        cases: list[tuple[str, list[str], dict[str, str]]] = [
            ("`python -c pass` (baseline)", [py, "-c", "pass"], base),
            ("`python -c 'import guildlite.cli'`", [py, "-c", "import guildlite.cli"], base),
            ("`guildlite --help`", [*GUILDLITE, "--help"], base),
            ("`guildlite --version`", [*GUILDLITE, "--version"], base),
            ("`guildlite runs` (empty runs dir)", [*GUILDLITE, "runs"], {**base, "GUILDLITE_RUNS_DIR": str(empty)}),
            (f"`guildlite runs` ({a.runs} runs)", [*GUILDLITE, "runs"], {**base, "GUILDLITE_RUNS_DIR": str(many)}),
            ("`guildlite compare` (20 runs)", [*GUILDLITE, "compare"], {**base, "GUILDLITE_RUNS_DIR": str(few)}),
            ("`guildlite runs` (20 runs, in the project)", [*GUILDLITE, "runs"], base),
            ("`guildlite ops` (example project)", [*GUILDLITE, "ops"], base),
        ]
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
        for _, argv, env in cases:  # warm-up: page cache, .pyc files
            call(argv, proj, env)
        for _ in range(a.repeat):
            for name, argv, env in cases:
                times[name].append(call(argv, proj, env))

        print("| command | min ms | median ms | max ms | median cpu ms |")
        print("|---|---:|---:|---:|---:|")
        for name, _, _ in cases:
            ts = [w * 1000 for w, _ in times[name]]
            cpu = statistics.median(c * 1000 for _, c in times[name])
            print(f"| {name} | {min(ts):.0f} | {statistics.median(ts):.0f} | {max(ts):.0f} | {cpu:.0f} |")
        print(f"\n{a.repeat} calls per case (after 1 warm-up), interleaved; {os.cpu_count()} CPUs; "
              f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f} at the end; "
              f"`guildlite` = `{' '.join(GUILDLITE)}`")
        if a.pyc:
            print("bytecode cached in a temp PYTHONPYCACHEPREFIX (--pyc)")
        elif base.get("PYTHONDONTWRITEBYTECODE") or base.get("PYTHONPYCACHEPREFIX"):
            print("PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX is set: modules without a .pyc (an editable "
                  "guildlite's) are compiled on every call; --pyc times it with a bytecode cache")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
