"""Batch makespan: N short trials on K slots with `guildlite run ... --parallel K`; or, with
`--concurrent`, two batches started at once sharing 2 fake GPUs through the machine-wide leases.

    python bench/makespan.py [--repeat 1] [--trials 8] [--slots 1,2,4] [--sleep 1.0] [--launcher torchrun]
    python bench/makespan.py --concurrent [--repeat 1] [--trials 8] [--sleep 1.0] [--launcher python]

Each trial is a script that sleeps --sleep seconds and prints one `loss: X` line. With the
default launcher (torchrun) a trial's own duration also holds torchrun's start-up and teardown
(about 2 s of CPU-heavy work per trial on a small machine), so on few cores the slots compete for
CPU: with 2 cores, K=4 is CPU-bound and its ratio measures the machine more than the scheduler.
`--launcher python` (if this guildlite has it) runs the script as a plain process instead.

Per K (the median over --repeat batches, each in a fresh runs dir):
- outer s:     wall time of the whole `guildlite run` command;
- staging s:   batch run.json `created`..`started` (every trial staged before the first starts);
- makespan s:  batch run.json `started`..`stopped`;
- sum s:       the sum of the trials' own durations (each trial's `started`..`stopped`);
- trial s:     the mean trial duration (sum / N);
- ideal s:     sum / K, the makespan of a perfect packing with zero gaps;
- ratio:       makespan / ideal;
- overhead/trial ms: (makespan - ideal) / N, time lost per trial to scheduling;
- launch gap ms: median time from a trial's `stopped` to the `started` of the trial that took
  its slot (the i-th end frees the slot for the (K+i)-th start).

`--concurrent`: two `guildlite run` commands started together, each a batch of N trials with
`gpus-per-trial: 1`, `--gpus 0,1`, `--parallel 2` (a lease dir of its own in the temp dir). Per
repeat: makespan s (the first batch's `started` to the last batch's `stopped`), sum s (the 2N
trials' own durations), ideal s (sum / 2 GPUs), ratio, overhead/trial ms ((makespan - ideal) / 2N),
each batch's own makespan, the GPU hand-over gap (median time from a trial's `stopped` to the
next `started` on the same GPU) and overlaps (pairs of trials on one GPU at once: must be 0).
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
  trial:
    main: sleep.py
    launcher: {launcher}
    gpus-per-trial: {gpus_per_trial}
    flags:
      i: 0
      sleep: {sleep}
"""

SLEEP = """\
import argparse, time
p = argparse.ArgumentParser()
p.add_argument("--i", type=int, default=0)
p.add_argument("--sleep", type=float, default=1.0)
args = p.parse_args()
time.sleep(args.sleep)
print(f"loss: {1.0 / (args.i + 1):.4f}")
"""


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def one_batch(proj: Path, runs_dir: Path, n: int, k: int, env: dict[str, str]) -> dict[str, float]:
    argv = [*GUILDLITE, "run", "trial", f"i=[{','.join(str(i) for i in range(n))}]", "--parallel", str(k), "-y",
            "--json"]
    t0 = time.time()
    p = subprocess.run(argv, cwd=proj, env={**env, "GUILDLITE_RUNS_DIR": str(runs_dir)}, stdin=subprocess.DEVNULL,
                       capture_output=True, check=False)
    outer = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} exited {p.returncode}:\n{p.stdout.decode(errors='replace')}"
                 f"{p.stderr.decode(errors='replace')}")
    batch = json.loads(p.stdout)
    trials = [json.loads((runs_dir / t / "run.json").read_text()) for t in batch["trials"]]
    bad = [t["id"] for t in trials if t["status"] != "completed"]
    if bad or len(trials) != n:
        sys.exit(f"bench: batch {batch['id']}: {len(trials)} trials, not completed: {bad}")
    starts = sorted(ts(t["started"]) for t in trials)
    stops = sorted(ts(t["stopped"]) for t in trials)
    total = sum(ts(t["stopped"]) - ts(t["started"]) for t in trials)
    makespan = ts(batch["stopped"]) - ts(batch["started"])
    ideal = total / k
    gaps = [starts[k + i] - stops[i] for i in range(n - k)]
    return {
        "outer": outer,
        "staging": ts(batch["started"]) - ts(batch["created"]),
        "makespan": makespan,
        "sum": total,
        "trial": total / n,
        "ideal": ideal,
        "ratio": makespan / ideal,
        "per_trial": (makespan - ideal) / n,
        "gap": statistics.median(gaps) if gaps else float("nan"),
    }


def two_batches(proj: Path, runs_dir: Path, n: int, env: dict[str, str]) -> dict[str, float]:
    """Two batches of ``n`` trials started at once on 2 fake GPUs; their numbers (see --concurrent)."""
    env = {**env, "GUILDLITE_RUNS_DIR": str(runs_dir), "GUILDLITE_GPU_LEASE_DIR": str(runs_dir.parent / "leases")}
    procs = [subprocess.Popen([*GUILDLITE, "run", "trial", f"i=[{','.join(str(b * n + i) for i in range(n))}]",
                               "--gpus", "0,1", "--parallel", "2", "-y", "--json"], cwd=proj, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for b in range(2)]
    batches = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"bench: a batch exited {p.returncode}:\n{err.decode(errors='replace')}")
        batches.append(json.loads(out))
    trials = [json.loads((runs_dir / t / "run.json").read_text()) for b in batches for t in b["trials"]]
    bad = [t["id"] for t in trials if t["status"] != "completed"]
    if bad or len(trials) != 2 * n:
        sys.exit(f"bench: {len(trials)} trials, not completed: {bad}")
    total = sum(ts(t["stopped"]) - ts(t["started"]) for t in trials)
    makespan = max(ts(b["stopped"]) for b in batches) - min(ts(b["started"]) for b in batches)
    gaps, overlaps = [], 0
    for gpu in ("0", "1"):
        spans = sorted((ts(t["started"]), ts(t["stopped"])) for t in trials if t["gpus"] == [gpu])
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        overlaps += sum(1 for a, b in zip(spans, spans[1:]) if b[0] < a[1])
    own = sorted(ts(b["stopped"]) - ts(b["started"]) for b in batches)
    return {"makespan": makespan, "sum": total, "ideal": total / 2, "ratio": makespan / (total / 2),
            "per_trial": (makespan - total / 2) / (2 * n), "batch_a": own[0], "batch_b": own[1],
            "gap": statistics.median(gaps) if gaps else float("nan"), "overlaps": overlaps}


def concurrent(a: argparse.Namespace, proj: Path, tmp: Path, env: dict[str, str]) -> None:
    rows = [two_batches(proj, tmp / f"runs-{r}", a.trials, env) for r in range(a.repeat)]
    print("| repeat | makespan s | sum s | ideal s | ratio | overhead/trial ms | batch A s | batch B s "
          "| GPU hand-over gap ms | overlaps |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, m in enumerate(rows, 1):
        print(f"| {i} | {m['makespan']:.2f} | {m['sum']:.2f} | {m['ideal']:.2f} | {m['ratio']:.3f} "
              f"| {m['per_trial'] * 1000:.0f} | {m['batch_a']:.2f} | {m['batch_b']:.2f} | {m['gap'] * 1000:.0f} "
              f"| {m['overlaps']} |")
    print(f"\n2 batches x N={a.trials} trials sleeping {a.sleep:g} s, launcher {a.launcher}, gpus-per-trial 1, "
          f"--gpus 0,1 --parallel 2 each, started together; {os.cpu_count()} CPUs; python "
          f"{sys.version.split()[0]}. Ideal: the trials' own durations packed on 2 GPUs with no gap.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1, help="batches per K; the table shows medians (default 1)")
    ap.add_argument("--trials", type=int, default=8, help="trials per batch, N (default 8)")
    ap.add_argument("--slots", default="1,2,4", help="comma-separated K values for --parallel (default 1,2,4)")
    ap.add_argument("--sleep", type=float, default=1.0, help="seconds each trial sleeps (default 1.0)")
    ap.add_argument("--launcher", default=None, help="the op's launcher: torchrun (default) or python (default "
                    "with --concurrent)")
    ap.add_argument("--concurrent", action="store_true", help="two batches at once on 2 fake GPUs (see above)")
    a = ap.parse_args()
    a.launcher = a.launcher or ("python" if a.concurrent else "torchrun")

    tmp = Path(tempfile.mkdtemp(prefix="guildlite-bench-makespan-"))
    try:
        proj = tmp / "project"
        proj.mkdir()
        (proj / "guildfile.yml").write_text(GUILDFILE.format(launcher=a.launcher, sleep=a.sleep,
                                                             gpus_per_trial=int(a.concurrent)))
        (proj / "sleep.py").write_text(SLEEP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDLITE_")}
        if a.concurrent:
            concurrent(a, proj, tmp, env)
            return
        slots = [int(k) for k in a.slots.split(",")]
        results: dict[int, list[dict[str, float]]] = {k: [] for k in slots}
        for r in range(a.repeat):
            for k in slots:  # K values interleaved across repeats
                results[k].append(one_batch(proj, tmp / f"runs-{k}-{r}", a.trials, k, env))

        cores = os.cpu_count() or 1
        print("| K | outer s | staging s | makespan s | sum s | trial s | ideal s | ratio | overhead/trial ms "
              "| launch gap ms |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in slots:
            m = {key: statistics.median(x[key] for x in results[k]) for key in results[k][0]}
            note = " (CPU-bound)" if k > cores and a.launcher == "torchrun" else ""
            gap = "–" if m["gap"] != m["gap"] else f"{m['gap'] * 1000:.0f}"  # nan: N <= K, no slot was reused
            print(f"| {k}{note} | {m['outer']:.2f} | {m['staging']:.2f} | {m['makespan']:.2f} | {m['sum']:.2f} "
                  f"| {m['trial']:.2f} | {m['ideal']:.2f} | {m['ratio']:.3f} | {m['per_trial'] * 1000:.0f} "
                  f"| {gap} |")
        print(f"\nN={a.trials} trials sleeping {a.sleep:g} s, launcher {a.launcher}; medians of {a.repeat} batch(es) "
              f"per K; {cores} CPUs; python {sys.version.split()[0]}; `guildlite` = `{' '.join(GUILDLITE)}`")
        if a.launcher == "torchrun":
            print("A trial's duration includes torchrun's start-up and teardown (CPU-heavy), not just the sleep.")
        if a.launcher == "torchrun" and any(k > cores for k in slots):
            print(f"On {cores} cores, K > {cores} is CPU-bound: concurrent torchrun start-ups compete for CPU, so the "
                  "trials themselves get slower (trial s) and the ratio reflects the machine, not the scheduler.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
