"""Live runs: scalars captured while the job runs (scalars.jsonl, compare, runs), the
``on_run_progress`` hook (coalesced, ``StopRun``, failures and timeouts), progress and ETA.

Real ``guildlite`` processes and ``launcher: python`` scripts; a script that must be seen mid-run
waits for a file (``go``) in its run dir that the test creates once it has looked.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error, read_scalars, wait_until

WAIT_GO = """
import os, time
def wait_go():
    while not os.path.exists("go"):
        time.sleep(0.02)
"""

# Printed the ways scripts print: key: value lines (print, logging), and other text around them.
MIXED = WAIT_GO + """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
print("epoch 1 starting")
print("step: 1")
print("loss: 0.5")
logging.info("acc: 0.75")
print("loss:  4e-1   ", flush=True)
print("not a scalar: abc")
from guildlite import log_scalars
log_scalars(1, lr=0.01)
wait_go()
print("step: 2")
print("loss: 0.25")
"""

PLUGINS = """
import time
from guildlite import Plugin, StopRun

class Record(Plugin):
    def on_run_progress(self, run):
        mine = run.attrs.setdefault("record", {"calls": 0, "rows": 0, "keys": []})
        mine["calls"] += 1
        mine["rows"] += len(run.new_scalars)
        mine["keys"] = sorted(set(mine["keys"]) | {r["key"] for r in run.new_scalars})
        mine["latest"] = dict(run.scalars)
        mine["status"] = run.status

    def on_run_end(self, run):
        run.attrs["end_saw"] = dict(run.scalars)

class StopWhenLow(Plugin):
    def on_run_progress(self, run):
        loss = run.scalars.get("loss")
        if loss is not None and loss < 0.1:
            raise StopRun(f"loss {loss} is low enough")

    def on_run_end(self, run):
        run.attrs["ended"] = run.status

class Fails(Plugin):
    def on_run_progress(self, run):
        raise ValueError("mirror is down")

class Slow(Plugin):
    def on_run_progress(self, run):
        open(run.run_dir / "in-hook", "w").close()
        time.sleep(30)
"""


def guildfile(op: str = "", top: str = "") -> str:
    return f"{top}operations:\n  train:\n    main: train.py\n    launcher: python\n{op}"


def run_dir_of(project: Project) -> Path:
    return wait_until(lambda: next(iter(project.run_dirs()), None), what="a run dir")


def finish(proc: subprocess.Popen[str], run_dir: Path | None = None, timeout: float = 60) -> tuple[int, str, str]:
    if run_dir is not None:
        (run_dir / "go").touch()
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_scalars_reach_scalars_jsonl_compare_and_runs_while_the_job_runs(make_project: Callable[..., Project]) -> None:
    project = make_project(guildfile("    max-steps: 4\n"), {"train.py": MIXED})
    proc = project.spawn("run", "train", "-y")
    run_dir = run_dir_of(project)
    want = {("loss", 0.5), ("acc", 0.75), ("loss", 0.4), ("lr", 0.01)}
    rows = wait_until(lambda: (r := read_scalars(run_dir)) and want <= {(x["key"], x["value"]) for x in r} and r,
                      what="the first scalars while the job runs")
    assert all(r["step"] == 1 for r in rows), rows
    compared = project.run_json("compare", "--json")
    assert compared[0]["status"] == "running" and compared[0]["loss"] == 0.4, compared
    # step 1 of max-steps 4 (measured at most every progress-interval)
    wait_until(lambda: re.search(r"running 25% ETA \d+:\d\d", project.run("runs").stdout), what="25% in runs")
    assert proc.poll() is None  # still waiting for `go`: all of the above was seen mid-run
    code, _, err = finish(proc, run_dir)
    assert code == 0, err
    final = read_scalars(run_dir)
    assert sorted((r["step"], r["key"], r["value"]) for r in final) == sorted(
        [(1, "loss", 0.5), (1, "acc", 0.75), (1, "loss", 0.4), (1, "lr", 0.01), (2, "loss", 0.25)]), final
    assert project.only_record()["attrs"]["scalars"] == {"captured": 4}  # the output's rows, not log_scalars'


def test_output_scalars_patterns_give_rows_and_a_total_gives_progress(make_project: Callable[..., Project]) -> None:
    script = WAIT_GO + """
for i in range(1, 4):
    print(f"iter {i}/10 | loss={1 / i:.3f} acc {i * 10}%", flush=True)
wait_go()
"""
    op = "    output-scalars:\n      - 'iter (?P<step>\\d+)/(?P<total>\\d+) \\| loss=(?P<loss>\\S+)'\n"
    project = make_project(guildfile(op), {"train.py": script})
    proc = project.spawn("run", "train", "-y")
    run_dir = run_dir_of(project)
    rows = wait_until(lambda: len(read_scalars(run_dir)) == 3 and read_scalars(run_dir), what="3 rows")
    assert [(r["step"], r["key"], r["value"]) for r in rows] == [(1, "loss", 1.0), (2, "loss", 0.5), (3, "loss", 0.333)]
    assert wait_until(lambda: "30%" in project.run("runs").stdout, what="30% in runs")  # step 3 of total 10
    code, _, err = finish(proc, run_dir)
    assert code == 0, err
    assert len(read_scalars(run_dir)) == 3  # the end adds no row twice (`total` is progress, not a scalar)


def test_a_tqdm_bar_gives_percent_and_eta_in_runs_and_watch(make_project: Callable[..., Project]) -> None:
    pytest.importorskip("tqdm")
    script = WAIT_GO + """
import time
from tqdm import tqdm
for i in tqdm(range(100), mininterval=0, miniters=1):
    if i == 37:
        wait_go()
    time.sleep(0.002)
"""
    project = make_project(guildfile(), {"train.py": script})
    proc = project.spawn("run", "train", "-y")
    run_dir = run_dir_of(project)
    # tqdm draws 36/100 before the body of item 36 runs, then waits in it
    wait_until(lambda: re.search(r"running 36% ETA \d+:\d\d", project.run("runs").stdout), what="36% in runs")
    watched = subprocess.Popen(["guildlite", "watch"], cwd=project.root, env=project.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert watched.stderr is not None
        first = watched.stderr.readline()  # its first status line (not a terminal: a plain line)
        assert re.search(r"running 36% ETA \d+:\d\d", first), first
        code, _, err = finish(proc, run_dir)
        assert code == 0, err
        watched.communicate(timeout=60)
    finally:
        if watched.poll() is None:
            watched.kill()
    assert read_scalars(run_dir) == []  # a bar is progress, not scalars


def test_stop_run_from_on_run_progress_ends_a_long_run_terminated(make_project: Callable[..., Project]) -> None:
    script = """
import time
i = 0
while True:  # a long run: only the plugin ends it
    i += 1
    print(f"step: {i}")
    print(f"loss: {1 / i}", flush=True)
    time.sleep(0.01)
"""
    project = make_project(guildfile("    plugins: [{class: plugs:StopWhenLow}]\n"),
                           {"train.py": script, "plugs.py": PLUGINS})
    cp = project.run("run", "train", "-y", timeout=120)
    assert cp.returncode == 143, (cp.returncode, cp.stderr)
    rec = project.only_record()
    assert rec["status"] == "terminated", rec
    assert rec["error"]["plugin"] == "StopWhenLow" and rec["error"]["hook"] == "on_run_progress", rec["error"]
    assert re.fullmatch(r"loss 0\.0\d+ is low enough", rec["error"]["message"]), rec["error"]
    assert rec["attrs"]["ended"] == "terminated"  # on_run_end still fired, once
    assert "StopWhenLow" in cp.stderr and "is low enough" in cp.stderr
    info = project.run("runs", "info", rec["id"]).stdout
    assert re.search(r"on_run_progress StopWhenLow .* ms in \d+ calls  ERROR loss 0\.0\d+ is low enough", info), info
    assert project.procs() == []


def test_the_hook_is_coalesced_and_sees_every_row_once(make_project: Callable[..., Project]) -> None:
    script = """
import time
t0 = time.time()
for i in range(10000):
    print(f"x: {i}")
    if i % 2500 == 0:
        time.sleep(0.3)
print("done: 1")
"""
    project = make_project(guildfile("    progress-interval: 0.5\n"),
                           {"train.py": script, "plugs.py": PLUGINS})
    project.root.joinpath("guildfile.yml").write_text(
        guildfile("    progress-interval: 0.5\n    plugins: [{class: plugs:Record}]\n"))
    cp = project.run("run", "train", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = project.only_record()
    mine = rec["attrs"]["record"]
    assert mine["rows"] == 10001  # every row, once, across the calls
    assert 1 <= mine["calls"] <= 8, mine  # a handful of calls, not one per line
    assert mine["latest"] == {"x": 9999.0, "done": 1.0} and mine["keys"] == ["done", "x"]
    assert mine["status"] == "running"
    assert rec["attrs"]["end_saw"] == {"x": 9999.0, "done": 1.0}
    [trace] = [t for t in rec["plugins"] if t["hook"] == "on_run_progress"]  # one entry, calls counted
    assert trace["plugin"] == "Record" and trace["calls"] == mine["calls"] and trace["error"] is None
    assert trace["failed"] == 0


@pytest.mark.parametrize("plugin, needle", [("Fails", "ValueError: mirror is down"), ("Slow", "timed out after 0.5 s")])
def test_a_failing_or_slow_progress_hook_is_recorded_and_the_run_goes_on(
    make_project: Callable[..., Project], plugin: str, needle: str
) -> None:
    script = """
import time
for i in range(6):
    print(f"loss: {i}", flush=True)
    time.sleep(0.3)
"""
    op = f"    plugins: [{{class: plugs:{plugin}, hook-timeout: 0.5}}, {{class: plugs:Record}}]\n"
    project = make_project(guildfile(op), {"train.py": script, "plugs.py": PLUGINS})
    cp = project.run("run", "train", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = project.only_record()
    assert rec["status"] == "completed" and rec["error"] is None
    [trace] = [t for t in rec["plugins"] if t["hook"] == "on_run_progress" and t["plugin"] == plugin]
    assert needle in (trace["error"] or "") and trace["failed"] == trace["calls"] >= 2, trace
    said = [line for line in cp.stderr.splitlines() if f"plugin {plugin}.on_run_progress failed" in line]
    assert needle in said[0] and len(said) == len(set(said)), cp.stderr  # each failure said once, not each call
    assert rec["attrs"]["record"]["rows"] == 6  # the other plugin still gets every row


def test_batch_trials_each_get_their_own_progress_and_stop(make_project: Callable[..., Project]) -> None:
    script = """
import argparse, time
p = argparse.ArgumentParser(); p.add_argument("--floor", type=float)
floor = p.parse_args().floor
for i in range(1, 200):
    print(f"loss: {max(floor, 1 / i)}", flush=True)
    time.sleep(0.01)
"""
    project = make_project(guildfile("    flags: {floor: 0.5}\n    max-steps: 199\n    plugins: [{class: plugs:StopWhenLow}, "
                                     "{class: plugs:Record}]\n"), {"train.py": script, "plugs.py": PLUGINS})
    cp = project.run("run", "train", "floor=[0.5,0.0]", "--parallel", "2", "-y", timeout=120)
    # the batch's lines: each trial's own progress (the script prints no step: 0% of max-steps)
    assert re.search(r"guildlite: trial [12]/2 \S+ 0%", cp.stderr), cp.stderr
    trials = {r["flags"]["floor"]: r for r in project.records() if r["is_trial"]}
    assert trials[0.5]["status"] == "completed", trials[0.5]
    assert trials[0.0]["status"] == "terminated" and trials[0.0]["error"]["plugin"] == "StopWhenLow", trials[0.0]
    assert trials[0.5]["attrs"]["record"]["latest"] == {"loss": 0.5}
    assert trials[0.5]["attrs"]["record"]["rows"] == 199
    assert cp.returncode != 0


def test_a_detached_run_is_captured_and_stopped_by_its_supervisor(make_project: Callable[..., Project]) -> None:
    script = WAIT_GO + """
print("step: 3")
print("loss: 0.5", flush=True)
wait_go()
i = 3
while True:
    i += 1
    print(f"step: {i}")
    print(f"loss: {1 / i}", flush=True)
"""
    op = "    max-steps: 12\n    plugins: [{class: plugs:StopWhenLow}]\n"
    project = make_project(guildfile(op), {"train.py": script, "plugs.py": PLUGINS})
    cp = project.run("run", "train", "-b")
    assert cp.returncode == 0, cp.stderr
    run_id = cp.stdout.strip()
    run_dir = project.runs_dir / run_id
    wait_until(lambda: read_scalars(run_dir) == [{"step": 3, "key": "loss", "value": 0.5}], what="a live row")
    listing = wait_until(lambda: (out := project.run("runs").stdout) and "25%" in out and out, what="25%")
    assert re.search(r"running 25% ETA \d+:\d\d", listing), listing
    assert re.search(r"^progress: 25% ETA \d+:\d\d$", project.run("runs", "info", run_id).stdout, re.M)
    page = project.root / "page.html"
    assert project.run("view", "--out", str(page), "--no-browser").returncode == 0
    assert re.search(r"25% ETA \d+:\d\d", page.read_text()), "view's table shows the progress"
    (run_dir / "go").touch()
    rec = wait_until(lambda: (r := project.record(run_id))["status"] != "running" and r, timeout=60, what="its end")
    assert rec["status"] == "terminated" and rec["error"]["plugin"] == "StopWhenLow", rec
    wait_until(lambda: project.procs() == [], what="the supervisor and job gone")


@pytest.mark.parametrize("op, needles", [
    ("    max-steps: 0\n", ("max-steps", "integer >= 1")),
    ("    progress-interval: -1\n", ("progress-interval", "positive number of seconds")),
])
def test_bad_live_keys_are_guildfile_errors(make_project: Callable[..., Project], op: str, needles: Any) -> None:
    project = make_project(guildfile(op), {"train.py": "print('x: 1')\n"})
    assert_clean_error(project.run("run", "train", "-y"), 2, *needles)
    assert project.run_dirs() == []


def test_a_restart_captures_only_its_own_output(make_project: Callable[..., Project]) -> None:
    project = make_project(guildfile(), {"train.py": "print('loss: 1.5')\n"})
    assert project.run("run", "train", "-y").returncode == 0
    run_id = project.only_record()["id"]
    assert project.run("run", "--restart", run_id, "-y").returncode == 0
    rows = read_scalars(project.runs_dir / run_id)
    assert rows == [{"step": 0, "key": "loss", "value": 1.5}] * 2, rows  # one per attempt, none read twice
    state = json.loads((project.runs_dir / run_id / ".guildlite" / "capture.json").read_text())
    assert state["output.log"]["offset"] == (project.runs_dir / run_id / "output.log").stat().st_size


def test_the_readme_early_stop_example_stops_a_diverging_run(make_project: Callable[..., Project]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## Live runs", 1)[1]
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block is not None
    script = """
import time
for i in range(1, 100000):
    print(f"step: {i}")
    print(f"val_loss: {i * 0.5}", flush=True)
    time.sleep(0.01)
"""
    project = make_project(guildfile("    plugins: [{class: early:EarlyStop}]\n"),
                           {"train.py": script, "early.py": block.group(1)})
    cp = project.run("run", "train", "-y")
    rec = project.only_record()
    assert rec["status"] == "terminated" and cp.returncode == 143, cp.stderr
    assert re.fullmatch(r"val_loss diverged at step \d+", rec["error"]["message"]), rec["error"]
    assert int(rec["error"]["message"].rsplit(" ", 1)[1]) >= 21  # the first row over 10: step 21


def test_a_remote_job_s_task_labels_are_learnt_from_its_record_once_it_names_its_hosts(tmp_path: Path) -> None:
    from guildlite._live import OutputSource
    from guildlite._scalars import OutputParser

    log = tmp_path / "output.log"
    hosts: list[str] = []
    source = OutputSource(tmp_path, OutputParser(1), hosts=lambda: hosts)
    log.write_text("loss: 1\n")
    assert [r["value"] for r in source.poll()] == [1.0]  # no hosts yet: one host's lines
    hosts[:] = ["node1", "node2"]
    with log.open("a") as f:
        f.write("0: loss: 2\n1: loss: 3\n0: acc: 4\r0: acc: 5")
    assert [r["value"] for r in source.poll()] == [2.0, 4.0]  # task 0's only; the last line is not whole yet
    assert [r["value"] for r in source.finish()] == [5.0]
    assert source.state()["offset"] == log.stat().st_size and source.state()["rows"] == 4


@pytest.mark.parametrize("plant", ["fifo", "symlink"])
def test_a_job_that_plants_its_scalars_file_neither_hangs_nor_redirects_the_capture(
    make_project: Callable[..., Project], plant: str
) -> None:
    script = f"""
import os
if {plant!r} == "fifo":
    os.mkfifo("scalars.jsonl")
else:
    os.symlink(os.environ["OUTSIDE"], "scalars.jsonl")
print("loss: 1", flush=True)
"""
    project = make_project(guildfile(), {"train.py": script})
    outside = project.root.parent / "outside.txt"
    outside.write_text("untouched\n")
    cp = project.run("run", "train", "-y", env={"OUTSIDE": str(outside)}, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert project.only_record()["status"] == "completed"
    assert outside.read_text() == "untouched\n"
    assert "live scalars: cannot append to scalars.jsonl" in cp.stderr


def test_a_stop_interrupts_a_hanging_progress_hook(make_project: Callable[..., Project]) -> None:
    script = "import time\nprint('loss: 1', flush=True)\ntime.sleep(60)\n"
    project = make_project(guildfile("    plugins: [{class: plugs:Slow}, {class: plugs:StopWhenLow}]\n"),
                           {"train.py": script, "plugs.py": PLUGINS})
    proc = project.spawn("run", "train", "-y")
    run_dir = run_dir_of(project)
    wait_until(lambda: (run_dir / "in-hook").exists(), what="the hook hanging")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)  # not the hook's 30 s, nor the job's 60
    assert proc.returncode == 143, err
    rec = project.only_record()
    assert rec["status"] == "terminated", rec
    [trace] = [t for t in rec["plugins"] if t["hook"] == "on_run_progress" and t["plugin"] == "Slow"]
    assert trace["error"] == "interrupted by SIGTERM", trace
    assert rec["attrs"]["ended"] == "terminated"  # the other plugin's on_run_end ran


def test_output_scalars_at_the_end_reads_only_what_the_live_capture_left(tmp_path: Path) -> None:
    """Where no owner drained the output (a backend's node firing on_run_end for a killed owner)."""
    from guildlite._builtins import OutputScalars
    from guildlite._run import Run as StoredRun
    from guildlite._runview import view_of

    run_dir = tmp_path / "20261201T000000-abc123"
    (run_dir / ".guildlite").mkdir(parents=True)
    taken = b"step: 1\nloss: 0.5\nstep: 2\n"
    (run_dir / "output.log").write_bytes(taken + b"loss: 0.25\nacc: 1\n")
    (run_dir / "scalars.jsonl").write_text(json.dumps({"step": 1, "key": "loss", "value": 0.5}) + "\n")
    state = {"output.log": {"offset": len(taken), "step": 2, "note": None, "rows": 1}}
    (run_dir / ".guildlite" / "capture.json").write_text(json.dumps(state))
    run = StoredRun(id=run_dir.name, run_dir=run_dir, op="train", status="completed")
    OutputScalars().on_run_end(view_of(run))
    assert [(r["step"], r["key"], r["value"]) for r in read_scalars(run_dir)] == [
        (1, "loss", 0.5), (2, "loss", 0.25), (2, "acc", 1.0)]
    assert run.attrs["scalars"] == {"captured": 3}
    OutputScalars().on_run_end(view_of(run))  # again (a second end): nothing is read twice
    assert len(read_scalars(run_dir)) == 3


def test_watch_of_a_batch_shows_its_running_trials_progress(make_project: Callable[..., Project]) -> None:
    script = WAIT_GO + """
print("step: 3")
print("loss: 1", flush=True)
wait_go()
"""
    project = make_project(guildfile("    flags: {x: {default: 1, arg-skip: true}}\n    max-steps: 12\n"),
                           {"train.py": script})
    cp = project.run("run", "train", "x=[1,2]", "--parallel", "2", "-b")
    assert cp.returncode == 0, cp.stderr
    batch = project.runs_dir / cp.stdout.strip()
    trials = wait_until(lambda: len(ts := [d for d in project.run_dirs() if d != batch]) == 2 and ts, what="trials")
    for t in trials:
        wait_until(lambda t=t: (t / ".guildlite" / "progress.json").exists(), what="each trial's progress")
    watched = project.spawn("watch", batch.name)
    assert watched.stderr is not None
    first = next(line for line in watched.stderr if line.startswith(f"guildlite: batch {batch.name}"))  # after
    assert re.search(r"trial 1 25% ETA \d+:\d\d \| trial 2 25% ETA \d+:\d\d", first), first  # the start lines
    for t in trials:
        (t / "go").touch()
    _, rest = watched.communicate(timeout=60)
    assert watched.returncode == 0, rest
