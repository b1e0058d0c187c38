"""A results aggregator: at the end of a batch, one table of every trial's flags and final scalars.

``on_run_end`` of a batch run (``run.is_batch``) fires after its last trial ended; ``run.trials``
lists the trials in launch order, read fresh from disk. For each, this plugin reads the final
value of every scalar from the trial's ``scalars.jsonl`` (the value at the highest step) and
writes, into the batch's run dir:

- ``summary.json``: ``{"metric", "mode", "best", "rows": [{"run", "status", "flags", "scalars"}]}``
- ``summary.csv``: one row per trial: ``run, status, <flags...>, <scalars...>``

On a single run (not a trial) it summarises that run the same way, in its own run dir; on a
trial it does nothing (its batch will). The built-in ``OutputScalars`` (priority 10) has written
``scalars.jsonl`` before this runs (priority 200), so even a single run's own scalars are there.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from guildlite import Plugin, Run


class Summarize(Plugin):
    priority = 200

    def __init__(self, metric: str = "loss", mode: str = "min", name: str = "summary") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got {mode!r}")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"name must be a plain file name stem, got {name!r}")
        self.metric, self.mode, self.stem = metric, mode, name

    def on_run_end(self, run: Run) -> None:
        if run.is_trial:
            return
        runs = run.trials if run.is_batch else [run]
        rows = [{"run": r.id, "status": r.status, "flags": dict(r.flags), "scalars": final_scalars(r.run_dir)}
                for r in runs]
        best = self.best(rows)
        out = Path(run.run_dir)
        summary = {"metric": self.metric, "mode": self.mode, "best": best, "rows": rows}
        (out / f"{self.stem}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        write_csv(out / f"{self.stem}.csv", rows)
        run.attrs["summary"] = {"rows": len(rows), "best": best}
        what = f"batch {run.id}: {len(rows)} trials" if run.is_batch else f"run {run.id}"
        if best is not None:
            flags = " ".join(f"{k}={v}" for k, v in best["flags"].items())
            what += f", best {self.metric} {best['value']:g} ({best['run']}: {flags})"
        print(f"[summary] {what} -> {out / self.stem}.csv", flush=True)

    def best(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        scored = [r for r in rows if r["status"] == "completed" and isinstance(r["scalars"].get(self.metric), float)
                  and not math.isnan(r["scalars"][self.metric])]
        if not scored:
            return None
        pick = (min if self.mode == "min" else max)(scored, key=lambda r: r["scalars"][self.metric])
        return {"run": pick["run"], "value": pick["scalars"][self.metric], "flags": pick["flags"]}


def final_scalars(run_dir: Path | str) -> dict[str, float]:
    """Each key's value at its highest step (the last logged, on ties) in ``scalars.jsonl``."""
    last: dict[str, tuple[int, float]] = {}
    path = Path(run_dir) / "scalars.jsonl"
    if not path.exists():
        return {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            key, step, value = row["key"], int(row.get("step") or 0), float(row["value"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line
        if key not in last or step >= last[key][0]:
            last[key] = (step, value)
    return {k: v for k, (_, v) in sorted(last.items())}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    flag_cols = list(dict.fromkeys(k for r in rows for k in r["flags"]))
    scalar_cols = list(dict.fromkeys(k for r in rows for k in r["scalars"]))
    taken = {"run", "status", *flag_cols}
    header = ["run", "status", *flag_cols, *(f"scalar:{k}" if k in taken else k for k in scalar_cols)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([r["run"], r["status"], *(r["flags"].get(k, "") for k in flag_cols),
                        *(r["scalars"].get(k, "") for k in scalar_cols)])
