"""Per-run overhead: `guildlite run` against the bare torchrun command it wraps.

    python bench/overhead.py [--repeat 5] [--nproc 1,2] [--warmup 1]

One tiny script (prints three `loss: X` lines, imports only the standard library) is run with
the same nproc in two ways, interleaved A B A B ... so drift hits both alike:

- bare:      python -m torch.distributed.run --standalone --nproc-per-node N tiny.py --x=1
- guildlite: guildlite run op x=1 -y --nproc-per-node N   (GUILDLITE_RUNS_DIR in the temp dir)

The script writes wall-clock stamps of its first and last line (every rank), which splits each
call into phases. Prints two markdown tables: end-to-end medians with the absolute and relative
overhead, and the median of each phase, where guildlite's phases come from its run.json
(`created`, `started`, `stopped`) and its hook trace (`plugins[].seconds`).
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
  op:
    main: tiny.py
    flags:
      x: 1
"""

TINY = """\
import argparse, os, time
t_start = time.time()
p = argparse.ArgumentParser()
p.add_argument("--x", type=int, default=1)
args = p.parse_args()
for i in range(3):
    print(f"loss: {args.x / (i + 1):.4f}")
t_end = time.time()
stamps = os.environ.get("BENCH_STAMPS")
if stamps:
    with open(os.path.join(stamps, os.environ["BENCH_TAG"] + "-" + os.environ.get("RANK", "0")), "w") as f:
        f.write(f"{t_start!r} {t_end!r}")
"""


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def script_span(stamps: Path, tag: str) -> tuple[float, float]:
    """(first rank's first line, last rank's last line) of one call, wall-clock seconds."""
    spans = [tuple(map(float, p.read_text().split())) for p in stamps.glob(f"{tag}-*")]
    if not spans:
        raise RuntimeError(f"the script left no stamps for {tag}")
    return min(s for s, _ in spans), max(e for _, e in spans)


def call(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    t0 = time.time()
    p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    t1 = time.time()
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} exited {p.returncode}:\n{p.stdout.decode(errors='replace')}"
                 f"{p.stderr.decode(errors='replace')}")
    return t0, t1


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed calls of each kind per nproc (default 5)")
    ap.add_argument("--nproc", default="1,2", help="comma-separated nproc-per-node values (default 1,2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed A B pairs first, per nproc (default 1)")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="guildlite-bench-overhead-"))
    try:
        proj, stamps, runs_dir = tmp / "project", tmp / "stamps", tmp / "runs"
        proj.mkdir()
        stamps.mkdir()
        (proj / "guildfile.yml").write_text(GUILDFILE)
        (proj / "tiny.py").write_text(TINY)
        base = {k: v for k, v in os.environ.items() if not k.startswith("GUILDLITE_")}
        base.update(BENCH_STAMPS=str(stamps), GUILDLITE_RUNS_DIR=str(runs_dir))

        summary, phases = [], []
        for nproc in [int(n) for n in a.nproc.split(",")]:
            bare_argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                         str(nproc), "tiny.py", "--x=1"]
            gl_argv = [*GUILDLITE, "run", "op", "x=1", "-y", "--nproc-per-node", str(nproc)]
            bare: dict[str, list[float]] = {"wall": [], "pre": [], "post": []}
            gl: dict[str, list[float]] = {k: [] for k in
                                          ("wall", "pre", "post", "cli", "stage", "launch", "reap", "exit", "hooks")}
            for i in range(a.warmup + a.repeat):
                timed = i >= a.warmup
                # A: bare torchrun
                tag = f"bare-{nproc}-{i}"
                t0, t1 = call(bare_argv, proj, {**base, "BENCH_TAG": tag})
                s0, s1 = script_span(stamps, tag)
                if timed:
                    bare["wall"].append(t1 - t0)
                    bare["pre"].append(s0 - t0)
                    bare["post"].append(t1 - s1)
                # B: guildlite run
                tag = f"gl-{nproc}-{i}"
                before = set(os.listdir(runs_dir)) if runs_dir.exists() else set()
                t0, t1 = call(gl_argv, proj, {**base, "BENCH_TAG": tag})
                s0, s1 = script_span(stamps, tag)
                (new,) = set(os.listdir(runs_dir)) - before
                rec = json.loads((runs_dir / new / "run.json").read_text())
                if rec["status"] != "completed":
                    sys.exit(f"bench: run {new} is {rec['status']}: {rec.get('error')}")
                if timed:
                    created, started, stopped = ts(rec["created"]), ts(rec["started"]), ts(rec["stopped"])
                    gl["wall"].append(t1 - t0)
                    gl["pre"].append(s0 - t0)
                    gl["post"].append(t1 - s1)
                    gl["cli"].append(created - t0)
                    gl["stage"].append(started - created)
                    gl["launch"].append(s0 - started)
                    gl["reap"].append(stopped - s1)
                    gl["exit"].append(t1 - stopped)
                    gl["hooks"].append(sum(p["seconds"] for p in rec.get("plugins") or []))
            b, g = med(bare["wall"]), med(gl["wall"])
            summary.append(f"| {nproc} | {b * 1000:.0f} | {g * 1000:.0f} | {(g - b) * 1000:+.0f} | {(g - b) / b * 100:+.1f}% |")
            ms = {k: med(v) * 1000 for k, v in gl.items()}
            bms = {k: med(v) * 1000 for k, v in bare.items()}
            phases.append(
                f"| {nproc} | guildlite | {ms['cli']:.0f} | {ms['stage']:.0f} | {ms['launch']:.0f} | {ms['pre']:.0f} "
                f"| {ms['reap']:.0f} | {ms['exit']:.0f} | {ms['post']:.0f} | {ms['hooks']:.1f} |"
            )
            phases.append(f"| {nproc} | bare | | | | {bms['pre']:.0f} | | | {bms['post']:.0f} | |")

        print("| nproc | bare torchrun ms | guildlite run ms | overhead ms | overhead % |")
        print("|---:|---:|---:|---:|---:|")
        print("\n".join(summary))
        print()
        print("| nproc | how | cmd start→created ms | created→started ms | started→script start ms | cmd start→script start ms "
              "| script end→stopped ms | stopped→cmd exit ms | script end→cmd exit ms | hooks ms |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(phases))
        print(f"\nmedians of {a.repeat} interleaved calls of each kind (after {a.warmup} warm-up pair); "
              f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; `guildlite` = `{' '.join(GUILDLITE)}`")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
