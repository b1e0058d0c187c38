"""What `--backend slurm` costs over a hand-written sbatch + torchrun script for the same job.

Needs a running SLURM (e.g. `tests/slurm/cluster.sh up`). The job: torchrun, one rank, a script that
records when it started and exits. Measured, each as the median of --repeat runs:

- submit -> running: from the submitting command's start to the user script's first line;
- one run end to end: from the command's start until it returns with the job ended
  (guildlite: `guildlite run` in the foreground; by hand: `sbatch --wait`);
- per trial of a 4-trial batch: wall time of the whole batch / 4 (guildlite: one `guildlite run`
  with `trial=[1,2,3,4]`; by hand: four `sbatch --wait` at once).

Usage: python bench/slurm_overhead.py [--repeat 3] [--partition debug]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """\
import sys, time, os
t = time.time()
with open(os.path.join(os.environ.get("BENCH_OUT", "."), f"start-{os.environ.get('BENCH_TAG', 'x')}-{sys.argv[-1]}"), "w") as f:
    f.write(repr(t))
print("started", t, flush=True)
"""

GUILDFILE = """\
backend: slurm
slurm: {{partition: {partition}, time: "10"}}
operations:
  job:
    main: job.py
    flags: {{trial: 0}}
"""

HAND = """\
#!/bin/bash
#SBATCH --partition={partition}
#SBATCH --time=10
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output={dir}/hand-%j.out
srun {python} -m torch.distributed.run --standalone --nproc-per-node=1 {dir}/job.py --trial=$1
"""


def _start_time(out: Path, tag: str, n: int) -> float:
    for _ in range(100):
        p = out / f"start-{tag}---trial={n}"
        if p.exists() and p.read_text():
            return float(p.read_text())
        time.sleep(0.05)
    raise RuntimeError(f"no start stamp {tag} {n}")


def guildlite_once(d: Path, tag: str, n: int) -> tuple[float, float]:
    env = {**os.environ, "BENCH_OUT": str(d), "BENCH_TAG": tag, "GUILDLITE_RUNS_DIR": str(d / "runs")}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "guildlite", "run", "job", f"trial={n}", "-y"], cwd=d, env=env, check=True,
                   capture_output=True)
    t1 = time.time()
    return _start_time(d, tag, n) - t0, t1 - t0


def hand_once(d: Path, tag: str, n: int) -> tuple[float, float]:
    env = {**os.environ, "BENCH_OUT": str(d), "BENCH_TAG": tag}
    t0 = time.time()
    subprocess.run(["sbatch", "--wait", "--quiet", str(d / "hand.sbatch"), f"{n}"], cwd=d, env=env, check=True,
                   capture_output=True)
    t1 = time.time()
    return _start_time(d, tag, n) - t0, t1 - t0


def guildlite_batch(d: Path, tag: str) -> float:
    env = {**os.environ, "BENCH_OUT": str(d), "BENCH_TAG": tag, "GUILDLITE_RUNS_DIR": str(d / "runs")}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "guildlite", "run", "job", "trial=[1,2,3,4]", "-y"], cwd=d, env=env,
                   check=True, capture_output=True)
    return (time.time() - t0) / 4


def hand_batch(d: Path, tag: str) -> float:
    env = {**os.environ, "BENCH_OUT": str(d), "BENCH_TAG": tag}
    t0 = time.time()
    procs = [subprocess.Popen(["sbatch", "--wait", "--quiet", str(d / "hand.sbatch"), f"{n}"], cwd=d, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in (1, 2, 3, 4)]
    for p in procs:
        p.wait()
    return (time.time() - t0) / 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--partition", default="debug")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gl-slurm-bench-") as tmp:
        d = Path(tmp)
        # the script records --trial as the last argv item: "--trial=K"
        (d / "job.py").write_text(SCRIPT)
        (d / "guildfile.yml").write_text(GUILDFILE.format(partition=a.partition))
        (d / "hand.sbatch").write_text(HAND.format(partition=a.partition, dir=d, python=sys.executable))
        rows: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ("submit->running", "one run", "per trial (batch of 4)")}
        for i in range(a.repeat):
            for name, fn in (("guildlite", guildlite_once), ("hand", hand_once)):
                lat, total = fn(d, f"{name}{i}", 0)
                rows["submit->running"][name == "hand"].append(lat)
                rows["one run"][name == "hand"].append(total)
            rows["per trial (batch of 4)"][0].append(guildlite_batch(d, f"gb{i}"))
            rows["per trial (batch of 4)"][1].append(hand_batch(d, f"hb{i}"))
    print(f"| measure (median of {a.repeat}) | guildlite --backend slurm | sbatch + torchrun by hand | ratio |")
    print("|---|---|---|---|")
    for k, (g, h) in rows.items():
        mg, mh = statistics.median(g), statistics.median(h)
        print(f"| {k} | {mg:.2f} s | {mh:.2f} s | {mg / mh:.2f} |")


if __name__ == "__main__":
    main()
