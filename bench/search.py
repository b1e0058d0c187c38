"""Search: how soon each way of searching reaches a target objective, on 2 CPU slots; and what a
trial costs under guildlite against the same search written directly with Optuna, in-process.

    python bench/search.py [--seeds 5] [--target 0.25] [--steps 20] [--sleep 0.05] [--max-trials 150]
                           [--progress-interval 0.1] [--overhead-trials 40] [--methods grid,random,tpe,tpe+asha]

The trials run ``tests/scripts/bowl.py`` (no guildlite code; a noisy quadratic bowl lowest at
x=0.7, y=-1.3, where its final loss is 0.1) as a ``launcher: python`` op with ``--parallel 2``,
``--steps`` steps each, ``--sleep`` seconds per step (a trial of about a second: the pruner sees
its values every ``--progress-interval`` s, the op's ``progress-interval``, so that it can stop
one mid-way; the default 1 s would see a trial this short only at its end). The objective is the last ``loss``
(``--minimize loss``). Per method and seed, the clock starts when the batch starts (its run.json
``started``) and stops when the first trial whose last loss is at most ``--target`` ends (its
``stopped``); the batch is then stopped. A method that does not reach it within ``--max-trials``
trials counts as never (shown as ``>`` its time). Methods:

- grid:      ``x=range[-5:5] y=range[-5:5]`` (121 trials, x slowest; only x=1, y=-1 reaches 0.25:
             the 71st trial);
- random:    ``x=uniform[-5:5] y=uniform[-5:5] --optimizer random``;
- tpe:       the same space, ``--optimizer tpe``;
- tpe+asha:  ``--optimizer tpe --prune asha --prune-min-steps 2`` (reduction factor 3).

Each seed is both the sampler's ``--seed`` and the script's noise ``seed`` flag. The same searches
(TPE; TPE with Optuna's SuccessiveHalvingPruner, min_resource 2, reduction factor 3) are then run
in-process, the script rewritten around an Optuna objective as Optuna's docs do (the same curve,
``bowl.loss_at``, the same sleep per step, ``n_jobs=2``). Last, the overhead: ``--overhead-trials``
TPE trials without pruning both ways (median over the seeds): guildlite's batch makespan against
the in-process study's wall time, and the difference per trial per slot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import GUILDLITE

ROOT = Path(__file__).resolve().parents[1]
BOWL = ROOT / "tests" / "scripts" / "bowl.py"
sys.path.insert(0, str(BOWL.parent))
import bowl  # noqa: E402  (the curve, for the in-process objective)

GUILDFILE = """\
operations:
  bowl:
    main: bowl.py
    launcher: python
    flags-import: all
    progress-interval: {interval}
"""
SPACE = ["x=uniform[-5:5]", "y=uniform[-5:5]"]
METHODS: dict[str, list[str]] = {
    "grid": ["x=range[-5:5]", "y=range[-5:5]"],
    "random": [*SPACE, "--optimizer", "random", "--minimize", "loss"],
    "tpe": [*SPACE, "--optimizer", "tpe", "--minimize", "loss"],
    "tpe+asha": [*SPACE, "--optimizer", "tpe", "--minimize", "loss", "--prune", "asha", "--prune-min-steps", "2",
                 "--prune-reduction-factor", "3"],
}


def _env(project: Path) -> dict[str, str]:
    # A lease dir of its own: no other guildlite on the machine queues with the bench's runs.
    return {**os.environ, "GUILDLITE_GPU_LEASE_DIR": str(project.parent / "leases")}


def _t(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else math.nan


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_loss(run_dir: Path) -> float | None:
    last = None
    try:
        for line in (run_dir / "scalars.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("key") == "loss" and isinstance(row.get("value"), (int, float)):
                last = row["value"]
    except (OSError, ValueError):
        return None
    return last


def guildlite_search(project: Path, method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One batch of ``method``: time from its start to the end of the first trial at the target."""
    runs = project.parent / f"runs-{method}-{seed}"  # outside the project: not part of its source
    flags = [f"steps={args.steps}", f"sleep={args.sleep}", f"seed={seed}"]
    opts = ["--parallel", "2", "-y", "--runs-dir", str(runs)]
    if method != "grid":
        opts += ["--seed", str(seed), "--max-trials", str(args.max_trials)]
    cmd = [*GUILDLITE, "run", "bowl", *METHODS[method], *flags, *opts]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=_env(project))
    hit: tuple[float, str] | None = None
    checked: set[str] = set()
    while hit is None:
        ended = proc.poll() is not None
        for d in sorted(runs.glob("*/run.json")) if runs.is_dir() else []:
            rec = _read(d)
            if not rec or not rec.get("is_trial") or d.parent.name in checked:
                continue
            if rec.get("status") in ("completed", "error", "terminated", "pruned"):
                checked.add(d.parent.name)
                loss = _last_loss(d.parent) if rec.get("status") == "completed" else None
                if loss is not None and loss <= args.target:
                    hit = (_t(rec.get("stopped")), d.parent.name)
                    break
        if ended:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # reached: stop the batch (its trials with it)
    _, err = proc.communicate(timeout=120)
    wall = time.monotonic() - start
    batch = next((r for r in map(_read, runs.glob("*/run.json")) if r and r.get("is_batch")), None)
    if batch is None:
        raise SystemExit(f"{method} seed {seed}: no batch ran: {' '.join(cmd)}\n{err[-2000:]}")
    trials = [r for r in map(_read, runs.glob("*/run.json")) if r and r.get("is_trial")]
    t0 = _t(batch.get("started"))
    cut = hit[0] if hit else math.inf
    before = [r for r in trials if _t(r.get("stopped")) <= cut]
    statuses = [r.get("status") for r in before]
    return {
        "seconds": hit[0] - t0 if hit else (_t(batch.get("stopped")) or time.time()) - t0,
        "reached": hit is not None, "trials": len(before), "pruned": statuses.count("pruned"), "wall": wall,
    }


def optuna_search(pruned: bool, seed: int, args: argparse.Namespace, n_trials: int,
                  target: float | None) -> dict[str, Any]:
    """The same search in-process: the script as an Optuna objective (Optuna's docs' pattern)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    steps, sleep = args.steps, args.sleep

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        y = trial.suggest_float("y", -5, 5)
        loss = math.inf
        for step in range(steps):
            time.sleep(sleep)
            loss = bowl.loss_at(x, y, 0.0, step, steps, seed)
            trial.report(loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3) if pruned \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    hit: list[float] = []
    start = time.monotonic()

    def stop_at_target(st: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if target is not None and t.value is not None and t.value <= target and not hit:
            hit.append(time.monotonic() - start)
            st.stop()

    study.optimize(objective, n_trials=n_trials, n_jobs=2, callbacks=[stop_at_target])
    wall = time.monotonic() - start
    states = [t.state for t in study.trials]
    return {"seconds": hit[0] if hit else wall, "reached": bool(hit) or target is None, "trials": len(states),
            "pruned": states.count(optuna.trial.TrialState.PRUNED), "wall": wall}


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _cell(rows: list[dict[str, Any]]) -> str:
    s = _median(rows, "seconds")
    never = sum(not r["reached"] for r in rows)
    return (">" if never > len(rows) // 2 else "") + f"{s:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--target", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sleep", type=float, default=0.05)
    p.add_argument("--progress-interval", type=float, default=0.1,
                   help="the op's progress-interval: how often the pruner sees a trial's new values")
    p.add_argument("--max-trials", type=int, default=150)
    p.add_argument("--overhead-trials", type=int, default=40)
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    tmp = Path(tempfile.mkdtemp(prefix="glbench-search-"))
    try:
        project = tmp / "project"
        project.mkdir()
        (project / "guildfile.yml").write_text(GUILDFILE.format(interval=args.progress_interval))
        shutil.copy(BOWL, project / "bowl.py")
        results: dict[str, list[dict[str, Any]]] = {}
        for seed in range(args.seeds):  # methods interleaved per seed: machine noise spreads evenly
            for m in methods:
                r = guildlite_search(project, m, seed, args)
                results.setdefault(m, []).append(r)
                print(f"# {m} seed {seed}: {r['seconds']:.1f} s, {r['trials']} trials ({r['pruned']} pruned)"
                      f"{'' if r['reached'] else ', target not reached'}", file=sys.stderr, flush=True)
            for name, pruned in (("optuna tpe (in-process)", False), ("optuna tpe+asha (in-process)", True)):
                r = optuna_search(pruned, seed, args, args.max_trials, args.target)
                results.setdefault(name, []).append(r)
        _print_target_table(results, args)
        _print_overhead(project, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _print_target_table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    grid = _median(results["grid"], "seconds") if "grid" in results else math.nan
    print(f"\nTime to a trial with final loss <= {args.target} (2 slots, {args.steps} steps x {args.sleep} s, "
          f"progress-interval {args.progress_interval} s; median of {args.seeds} seeds)\n")
    print("| search | median s | per seed s | trials to reach it (median) | pruned (median) | vs grid |")
    print("|---|---:|---|---:|---:|---:|")
    for name, rows in results.items():
        per = ", ".join(f"{r['seconds']:.1f}{'' if r['reached'] else '*'}" for r in rows)
        print(f"| {name} | {_cell(rows)} | {per} | {_median(rows, 'trials'):g} | {_median(rows, 'pruned'):g} | "
              f"{_median(rows, 'seconds') / grid:.2f}x |")
    print("\n(* target not reached within --max-trials: the time the batch ran)")


def _print_overhead(project: Path, args: argparse.Namespace) -> None:
    n = args.overhead_trials
    gl, op = [], []
    for seed in range(args.seeds):
        runs = project.parent / f"runs-overhead-{seed}"
        cmd = [*GUILDLITE, "run", "bowl", *METHODS["tpe"], f"steps={args.steps}", f"sleep={args.sleep}",
               f"seed={seed}", "--seed", str(seed), "--max-trials", str(n), "--parallel", "2", "-y",
               "--runs-dir", str(runs)]
        start = time.monotonic()
        cp = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=3600, env=_env(project))
        outer = time.monotonic() - start
        if cp.returncode:
            raise SystemExit(f"overhead run failed: {cp.stderr[-2000:]}")
        batch = next(r for r in map(_read, runs.glob("*/run.json")) if r and r.get("is_batch"))
        gl.append((_t(batch["stopped"]) - _t(batch["started"]), outer))
        op.append(optuna_search(False, seed, args, n, None)["wall"])
    span = statistics.median(g for g, _ in gl)
    outer = statistics.median(o for _, o in gl)
    inproc = statistics.median(op)
    work = n * args.steps * args.sleep / 2
    print(f"\nPer-trial overhead: {n} TPE trials, 2 at once, no pruning (median of {args.seeds} seeds; "
          f"the trials' own sleep: {work:.1f} s per slot)\n")
    print("| how | wall s | per trial per slot ms | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| Optuna in-process (`study.optimize`, n_jobs=2) | {inproc:.2f} | {inproc * 2000 / n:.0f} | 1.00x |")
    print(f"| guildlite batch (started..stopped) | {span:.2f} | {span * 2000 / n:.0f} | {span / inproc:.2f}x |")
    print(f"| `guildlite run` command (exec..exit) | {outer:.2f} | {outer * 2000 / n:.0f} | {outer / inproc:.2f}x |")
    print(f"\nguildlite's cost per trial over in-process Optuna: {(span - inproc) * 2000 / n:.0f} ms per trial per slot "
          "(a process per trial, staging, capture, the study in a journal file)")


if __name__ == "__main__":
    main()
