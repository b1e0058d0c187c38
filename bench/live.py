"""Live scalars: what capturing them while the job runs costs the guildlite process, and how soon
an ``on_run_progress`` hook hears of a printed line.

1. Capture overhead: a ``launcher: python`` job prints N lines (default 100,000) as fast as it
   can: ``loss: <i>`` lines (the ``key: value`` rule), the same through an ``output-scalars``
   regex, and plain text (no scalar), against the same job with ``output-scalars: off``. The
   guildlite process's CPU time is its children's rusage less the job's own (the script reports
   it), so the job's printing is not counted; "per line" is the difference to ``off`` over N.
   Run it against another checkout (``PYTHONPATH=/path/to/old python bench/live.py``) for a before.
2. Hook latency: the job prints ``mark: <time.time()>`` every 0.3 s; a plugin's ``on_run_progress``
   records, for each call, now minus the newest mark it got (printed line -> hook call), with the
   default ``progress-interval`` (1 s: a call waits for the interval, so its newest line may be up
   to 0.3 s old) and with 0.05 s (each line's own call: the capture's delay alone).

    python bench/live.py [--lines 100000] [--repeat 3] [--marks 20]

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GUILDLITE  # noqa: E402

FLOOD = """\
import os, resource, sys
n = int(os.environ["BENCH_LINES"])
plain = os.environ["BENCH_PLAIN"] == "1"
w = sys.stdout.write
for i in range(n):
    w(f"iteration {i} done\\n" if plain else f"loss: {i}\\n")
sys.stdout.flush()
u = resource.getrusage(resource.RUSAGE_SELF)
with open(os.environ["BENCH_JOB_CPU"], "w") as f:
    f.write(str(u.ru_utime + u.ru_stime))
"""

MARKS = """\
import os, time
for _ in range(int(os.environ["BENCH_MARKS"])):
    print(f"mark: {time.time()!r}", flush=True)
    time.sleep(0.3)
"""

PLUGIN = """\
import time
from guildlite import Plugin

class Latency(Plugin):
    def on_run_progress(self, run):
        now = time.time()
        marks = [r["value"] for r in run.new_scalars if r["key"] == "mark"]
        if marks:
            run.attrs.setdefault("latency", []).append(now - max(marks))
"""

CASES = {  # name -> (op keys, plain text lines)
    "off (no capture)": ("    output-scalars: off\n", False),
    "key: value lines": ("", False),
    "output-scalars regex": ("    output-scalars: ['loss: (?P<loss>\\S+)']\n", False),
    "plain text, no scalar": ("", True),
}


LATENCY_OPS = {"marks": 1, "marks-fast": 0.05}  # op -> its progress-interval


def guildfile(cases: dict[str, tuple[str, bool]]) -> str:
    ops = "".join(f"  c{i}:\n    main: flood.py\n    launcher: python\n{keys}"
                  for i, (keys, _) in enumerate(cases.values()))
    for name, interval in LATENCY_OPS.items():
        ops += (f"  {name}:\n    main: marks.py\n    launcher: python\n    progress-interval: {interval}\n"
                "    plugins: [{class: latency:Latency}]\n")
    return "operations:\n" + ops


def parent_cpu(project: Path, env: dict[str, str], op: str) -> float:
    """CPU seconds of one ``guildlite run OP`` less its job's own."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*GUILDLITE, "run", op, "-y"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return total - float(Path(env["BENCH_JOB_CPU"]).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--marks", type=int, default=20)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        project = tmp / "project"
        project.mkdir()
        (project / "guildfile.yml").write_text(guildfile(CASES))
        (project / "flood.py").write_text(FLOOD)
        (project / "marks.py").write_text(MARKS)
        (project / "latency.py").write_text(PLUGIN)
        env = {**os.environ, "GUILDLITE_RUNS_DIR": str(tmp / "runs"), "BENCH_LINES": str(a.lines),
               "BENCH_JOB_CPU": str(tmp / "job-cpu"), "BENCH_MARKS": str(a.marks)}
        secs: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(a.repeat):  # interleaved: a busy moment of the machine hits every case alike
            for i, (name, (_, plain)) in enumerate(CASES.items()):
                secs[name].append(parent_cpu(project, {**env, "BENCH_PLAIN": "1" if plain else "0"}, f"c{i}"))
        base = statistics.median(secs["off (no capture)"])
        print(f"Capture overhead, a job printing {a.lines:,} lines (guildlite's CPU less the job's, median of "
              f"{a.repeat})\n")
        print("| case | guildlite CPU | over `off` | per line |")
        print("|---|---:|---:|---:|")
        for name, values in secs.items():
            med = statistics.median(values)
            over = "" if name.startswith("off") else f"{(med - base) * 1000:+.0f} ms"
            per = "" if name.startswith("off") else f"{(med - base) / a.lines * 1e6:.2f} µs"
            print(f"| {name} | {med * 1000:.0f} ms | {over} | {per} |")
        print("\nHook latency, printed line -> on_run_progress call (the newest line a call got; a line every "
              "0.3 s)\n")
        print("| progress-interval | calls | min | median | p90 | max |")
        print("|---:|---:|---:|---:|---:|---:|")
        for op, interval in LATENCY_OPS.items():
            marked = subprocess.run([*GUILDLITE, "run", op, "-y"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            out = subprocess.run([*GUILDLITE, "runs", "info", "1", "--json"], cwd=project, env=env,
                                 capture_output=True, text=True).stdout
            lat = sorted(json.loads(out)["attrs"].get("latency", [])) if marked.returncode == 0 else []
            if not lat:
                print(f"| {interval} s | 0 | (no on_run_progress call: this guildlite has no live capture) ||||")
                continue
            p90 = lat[min(len(lat) - 1, int(0.9 * len(lat)))]
            ms = [f"{x * 1000:.0f} ms" for x in (lat[0], statistics.median(lat), p90, lat[-1])]
            print(f"| {interval} s | {len(lat)} | " + " | ".join(ms) + " |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
