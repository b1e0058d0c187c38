"""How long `guildlite run OP --detach` takes to return, for a local run.

    python bench/detach.py [--repeat 10] [--pyc]

A tiny project in a temp dir (one `launcher: python` op whose script prints a loss line and
exits), its runs dir beside it. Cases, interleaved (one call of each per round, after one
warm-up call each):

- `guildlite --version`: the CLI's start-up alone, for scale;
- `guildlite run train --stage -y`: plan and stage a run (dir, source copy, run.json,
  on_run_staged), start nothing;
- `guildlite run train -b -y`: the same, then hand the run over to a detached supervisor and
  return with its id.

After each `-b` call (not timed) the benchmark waits until that run has recorded its end and
its supervisor has exited, so no supervisor competes with the next call; it also notes how
long after the call started the job started (the run's `started`) and the run ended (`stopped`).

With PYTHONDONTWRITEBYTECODE set and an editable install, guildlite's modules are compiled from
source on every call unless their .pyc files exist (``python -m compileall -q guildlite``);
``--pyc`` times the calls with a temp PYTHONPYCACHEPREFIX instead (filled by the warm-up), as an
ordinary install runs. Prints markdown tables of min / median / max milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import GUILDLITE

GUILDFILE = """\
operations:
  train:
    main: train.py
    launcher: python
    flags:
      lr: 0.1
"""

TRAIN = """\
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
print(f"loss: {args.lr}")
"""


def call(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(start as time.time(), wall seconds, stdout) of one call; exits the benchmark if it fails."""
    t0 = time.time()
    t = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} exited {p.returncode}:\n{p.stderr}")
    return t0, dt, p.stdout


def wait_done(run_dir: Path, timeout: float = 120) -> dict:
    """The run's record once it has ended and its supervisor has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rec = json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError):
            rec = {}
        if rec.get("status") in ("completed", "error", "terminated") and not _alive(rec.get("pid")):
            if rec["status"] != "completed":
                sys.exit(f"bench: run {run_dir.name} ended {rec['status']}: {rec.get('error')}")
            return rec
        time.sleep(0.02)
    sys.exit(f"bench: run {run_dir.name} did not end within {timeout} s")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def _uncompiled() -> list[Path]:
    """guildlite's modules (as the `guildlite` command imports them) without an up-to-date .pyc."""
    import importlib.util

    spec = importlib.util.find_spec("guildlite")
    roots = list(spec.submodule_search_locations or []) if spec else []
    out = []
    for src in (p for root in roots for p in Path(root).rglob("*.py")):
        try:
            pyc = Path(importlib.util.cache_from_source(str(src)))
            if pyc.stat().st_mtime < src.stat().st_mtime:
                out.append(src)
        except (OSError, ValueError, NotImplementedError):
            out.append(src)
    return out


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _row(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"| {name} | {min(ms):.0f} | {statistics.median(ms):.0f} | {max(ms):.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10, help="timed calls per case (default 10)")
    ap.add_argument("--pyc", action="store_true", help="cache bytecode in a temp PYTHONPYCACHEPREFIX (see above)")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="guildlite-bench-detach-"))
    try:
        proj = tmp / "project"
        proj.mkdir()
        (proj / "guildfile.yml").write_text(GUILDFILE)
        (proj / "train.py").write_text(TRAIN)
        runs_dir = tmp / "runs"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDLITE_")}
        env["GUILDLITE_RUNS_DIR"] = str(runs_dir)
        if a.pyc:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        cases = [
            ("`guildlite --version`", [*GUILDLITE, "--version"]),
            ("`guildlite run train --stage -y`", [*GUILDLITE, "run", "train", "--stage", "-y"]),
            ("`guildlite run train -b -y`", [*GUILDLITE, "run", "train", "-b", "-y"]),
        ]
        times: dict[str, list[float]] = {name: [] for name, _ in cases}
        job_started: list[float] = []
        run_ended: list[float] = []
        for rnd in range(a.repeat + 1):  # round 0: the warm-up
            for name, argv in cases:
                t0, dt, out = call(argv, proj, env)
                if "-b" in argv:
                    rec = wait_done(runs_dir / out.strip())
                    if rnd:
                        job_started.append(_stamp(rec["started"]) - t0)
                        run_ended.append(_stamp(rec["stopped"]) - t0)
                if rnd:
                    times[name].append(dt)

        print("| command | min ms | median ms | max ms |")
        print("|---|---:|---:|---:|")
        for name, _ in cases:
            print(_row(name, times[name]))
        print()
        print("| `run -b`: from the call's start to | min ms | median ms | max ms |")
        print("|---|---:|---:|---:|")
        print(_row("the job started (`started`, by the supervisor)", job_started))
        print(_row("the run ended (`stopped`)", run_ended))
        print(f"\n{a.repeat} calls per case (after 1 warm-up), interleaved; {os.cpu_count()} CPUs; "
              f"python {sys.version.split()[0]}; `guildlite` = `{' '.join(GUILDLITE)}`")
        if a.pyc:
            print("bytecode cached in a temp PYTHONPYCACHEPREFIX (--pyc)")
        elif env.get("PYTHONDONTWRITEBYTECODE") or env.get("PYTHONPYCACHEPREFIX"):
            stale = _uncompiled()
            print("PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX is set: " + (
                f"{len(stale)} guildlite modules have no up-to-date .pyc and were compiled on every call "
                "(python -m compileall -q guildlite first, or --pyc)" if stale else
                "guildlite's modules all have an up-to-date .pyc (compileall), as an installed guildlite does"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
