"""How fast a stop interrupts a hook that hangs: signal (or ``guildlite stop``) sent -> run.json
reads ``terminated`` -> the ``guildlite run`` process has exited.

A plugin hangs in ``on_run_staged`` or ``on_run_begin`` (``event``: ``threading.Event().wait()``,
a blocking wait; ``busy``: ``while True: pass``, which guildlite unwinds) under the default
hook-timeout; a second plugin records its ``on_run_end``. When the hung plugin has an
``on_run_end`` of its own, that waits up to 3 s for the interrupted hook to return first (one
plugin's hooks never overlap). Prints a markdown table.

    python bench/hook_interrupt.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GUILDLITE  # noqa: E402

PLUGIN = """\
import os, threading
from guildlite import Plugin

class Hang(Plugin):
    def __init__(self, hook, how):
        self.hook, self.how = hook, how

    def enter(self, hook, run):
        if hook != self.hook:
            return
        with open(os.environ["BENCH_READY"] + ".tmp", "w") as f:
            f.write(run.id)
        os.replace(os.environ["BENCH_READY"] + ".tmp", os.environ["BENCH_READY"])
        if self.how == "event":
            threading.Event().wait()
        else:
            while True:
                pass

    def on_run_staged(self, run):
        self.enter("on_run_staged", run)

    def on_run_begin(self, run):
        self.enter("on_run_begin", run)

class HangWithEnd(Hang):
    def on_run_end(self, run):
        pass

class Mark(Plugin):
    def on_run_end(self, run):
        with open(os.environ["BENCH_READY"] + ".end", "w") as f:
            f.write(run.status)
"""


def one(base: Path, hook: str, how: str, end: bool, stop: str) -> tuple[float, float, bool]:
    """(ms to the terminated record, s to the process exit, whether Mark's on_run_end ran)."""
    root = Path(tempfile.mkdtemp(dir=base))
    (root / "job.py").write_text("print('hi')\n")
    (root / "benchplug.py").write_text(PLUGIN)
    (root / "guildfile.yml").write_text(
        f"plugins:\n  - {{class: benchplug:{'HangWithEnd' if end else 'Hang'}, args: {{hook: {hook}, how: {how}}}, priority: 50}}\n"
        "  - class: benchplug:Mark\noperations:\n  t: {main: job.py, launcher: python}\n")
    ready = root / "ready"
    env = {**os.environ, "BENCH_READY": str(ready), "GUILDLITE_RUNS_DIR": str(root / "runs")}
    null = subprocess.DEVNULL
    p = subprocess.Popen([*GUILDLITE, "run", "t", "-y"], cwd=root, env=env, stdin=null, stdout=null, stderr=null)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise SystemExit(f"the hook was never reached ({root})")
        time.sleep(0.01)
    run_id = ready.read_text()
    time.sleep(0.3)  # inside the hang
    t0 = time.monotonic()
    if stop == "stop":
        subprocess.Popen([*GUILDLITE, "stop", run_id], cwd=root, env=env, stdin=null, stdout=null, stderr=null)
    else:
        p.send_signal(signal.Signals[stop])
    record, recorded = root / "runs" / run_id / "run.json", None
    while p.poll() is None:
        if recorded is None and json.loads(record.read_text()).get("status") == "terminated":
            recorded = time.monotonic() - t0
        time.sleep(0.002)
    exited = time.monotonic() - t0
    return (recorded if recorded is not None else exited) * 1000, exited, (root / "ready.end").exists()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="guildlite-bench-"))
    try:
        print("| hook | hang | hung plugin's own on_run_end | stop | terminated recorded, ms (min / median / max) | process exit, s (min / median / max) "
              "| other plugin's on_run_end ran |")
        print("|---|---|---|---|---|---|---|")
        for hook in ("on_run_staged", "on_run_begin"):
            for how, end in (("event", False), ("event", True), ("busy", True)):
                for stop in ("SIGTERM", "SIGINT", "stop"):
                    rows = [one(base, hook, how, end, stop) for _ in range(args.repeat)]
                    rec, ex = sorted(r[0] for r in rows), sorted(r[1] for r in rows)
                    print(f"| {hook} | {how} | {'yes' if end else 'no'} | {'guildlite stop' if stop == 'stop' else stop} "
                          f"| {rec[0]:.0f} / {statistics.median(rec):.0f} / {rec[-1]:.0f} "
                          f"| {ex[0]:.2f} / {statistics.median(ex):.2f} / {ex[-1]:.2f} "
                          f"| {sum(r[2] for r in rows)} of {len(rows)} |", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
