"""Data loading for `guildlite view`: `view_data` over many runs, and the page it makes.

    python bench/view_load.py [--sizes 1000,10000] [--steps 100] [--repeat 3]

Synthetic runs are written with guildlite's own Run API into a temp dir: records like real
ones (hook trace, command), a scalars.jsonl with --steps steps of two keys (loss every step,
acc every 10th), a 40-line output.log; every 50th run is a batch of 4 trials. Columns:
  list_runs        read every run.json
  view_data        everything a static page (--out) embeds: series, output tails, file lists
  JSON             that data as the page embeds it (to_json) and its size
  page             render_html: the whole page, plotly.js inlined (needs plotly)
  server cold      load_view(details=False), the served page's data, first call (builds the index)
  server warm      the same from the index; then the size of its JSON
Times are the best of --repeat in one process (the OS file cache is warm after the first),
except "server cold" (one call). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from _common import run_id

from guildlite._errors import GuildliteError
from guildlite._run import Run
from guildlite._selection import list_runs
from guildlite._view_data import load_view, view_data
from guildlite._view_page import plotly_js, render_html, to_json

HOOKS = [{"plugin": "EnvCapture", "hook": "on_run_begin", "priority": 10, "start": 0.0, "seconds": 0.03, "error": None},
         {"plugin": "SourceCode", "hook": "on_run_staged", "priority": 0, "start": 0.0, "seconds": 0.01, "error": None}]


def make_runs(runs_dir: Path, n: int, steps: int) -> None:
    runs_dir.mkdir(parents=True)
    i = 0
    while i < n:
        batch = i % 50 == 0 and n - i >= 5
        ids = [run_id(i + k) for k in range(5 if batch else 1)]
        for k, rid in enumerate(ids):
            d = runs_dir / rid
            d.mkdir()
            is_batch, is_trial = batch and k == 0, batch and k > 0
            lr = 0.1 / (1 + (i + k) % 10)
            run = Run(
                id=rid, run_dir=d, op="train", status="completed", exit_code=0,
                flags={"lr": [0.1, 0.01], "epochs": 3} if is_batch else {"lr": lr, "epochs": 1 + i % 5, "bs": 64},
                created="2026-01-01T00:00:00.000+00:00", started="2026-01-01T00:00:00.100+00:00",
                stopped="2026-01-01T00:00:05.000+00:00", is_batch=is_batch, is_trial=is_trial,
                parent_id=ids[0] if is_trial else None, trial_ids=ids[1:] if is_batch else [],
                cmd=["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "train.py"],
                op_def={"main": "train.py"}, plugins=HOOKS,
            )
            (d / "run.json").write_text(json.dumps(run.to_record()))
            if is_batch:
                continue
            rows = []
            for s in range(steps):
                loss = math.exp(-lr * s)
                rows.append(json.dumps({"step": s, "key": "loss", "value": loss, "time": 1.7e9 + s}))
                if s % 10 == 0:
                    rows.append(json.dumps({"step": s, "key": "acc", "value": 1 - loss, "time": 1.7e9 + s}))
            (d / "scalars.jsonl").write_text("\n".join(rows) + "\n")
            (d / "output.log").write_text("".join(f"iter {s}: loss {math.exp(-lr * s):.4f}\n" for s in range(40)))
        i += len(ids)


def best(f, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        js: str | None = plotly_js()
    except GuildliteError:
        js = None  # plotly missing: no page column
    print("| runs | list_runs | view_data (full) | JSON | JSON size | page | server cold | server warm | server JSON |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in args.sizes.split(",")]:
        tmp = Path(tempfile.mkdtemp(prefix="guildlite-bench-view-"))
        try:
            make_runs(tmp / "runs", n, args.steps)
            print(measure(tmp / "runs", n, args.repeat, js))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(runs_dir: Path, n: int, repeat: int, js: str | None) -> str:
    t_list, runs = best(lambda: list_runs(runs_dir), repeat)
    t_data, data = best(lambda: view_data(runs, runs_dir), repeat)  # type: ignore[arg-type]
    t_json, text = best(lambda: to_json(data), repeat)
    page = f"{best(lambda: render_html(data, js), repeat)[0]:.2f} s" if js else "n/a"  # type: ignore[arg-type]
    t_cold, _ = best(lambda: load_view(runs_dir, details=False), 1)
    t_warm, slim = best(lambda: load_view(runs_dir, details=False), repeat)
    return (f"| {n} | {t_list:.2f} s | {t_data:.2f} s | {t_json:.2f} s | {len(text) / 1e6:.1f} MB | {page} "  # type: ignore[arg-type]
            f"| {t_cold:.2f} s | {t_warm:.2f} s | {len(to_json(slim)) / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
