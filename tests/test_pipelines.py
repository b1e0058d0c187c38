"""``steps:`` pipelines (issue 17): a pipeline is a virtual parent run whose steps are ordinary
runs, each reading what the step before it made through ``requires: - operation:``.

Real runs (``launcher: python``), real signals, a real detached supervisor. A project plugin
(``rec.py``) appends one JSON line per hook call (hook, run, status, the pid it ran in) to the file
named by ``$PIPE_EVENTS``, so the tests count hooks across processes. ``train.py`` writes
``$PIPE_MARKS/<run id>.started`` as it starts and, when ``$PIPE_GATE`` names a file, waits for it:
a test that must catch a step mid-run waits for the marker, never for a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import TRACEBACK, Project, assert_clean_error, wait_until

GUILDFILE = textwrap.dedent(
    """\
    plugins: [{class: rec:Rec}]
    x-py: &py
      launcher: python
      sourcecode: {include: ['*.py']}
    operations:
      prepare:
        <<: *py
        main: prepare.py
        flags: {size: 3}
      train:
        <<: *py
        main: train.py
        flags: {lr: 0.1}
        requires:
          - operation: prepare
            select: data\\.txt
      evaluate:
        <<: *py
        main: evaluate.py
        requires:
          - operation: train
            select: model\\.txt
      evaluate-best:
        <<: *py
        main: evaluate.py
        requires:
          - operation: train
            select: model\\.txt
            select-best: min loss
      fail:
        <<: *py
        main: fail.py
        flags: {code: 3}
      all:
        description: prepare, train, evaluate
        flags: {lr: 0.2, size: 4}
        steps:
          - run: prepare size=${size}
          - run: train
            flags: {lr: '${lr}'}
          - evaluate
      tune:
        steps:
          - prepare
          - run: train lr=[0.1,0.4,0.9]
          - evaluate-best
      strict:
        steps:
          - prepare
          - fail
          - prepare size=9
      fanout:
        steps:
          - prepare
          - run: train lr=[0.1,0.9]
          - evaluate
      hopeful:
        steps:
          - run: evaluate
            continue-on-error: true
          - prepare size=8
      lenient:
        steps:
          - run: fail code=5
            continue-on-error: true
          - prepare size=7
    """
)

PREPARE = textwrap.dedent(
    """\
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=3)
    a = p.parse_args()
    with open("data.txt", "w") as f:
        f.write(f"rows={a.size}\\n")
    print(f"rows: {a.size}")
    """
)

TRAIN = textwrap.dedent(
    """\
    import argparse, os, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=0.1)
    a = p.parse_args()
    marks = os.environ.get("PIPE_MARKS")
    if marks:
        open(os.path.join(marks, os.environ["GUILDLITE_RUN_ID"] + ".started"), "w").close()
    gate = os.environ.get("PIPE_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.05)
    if os.environ.get("PIPE_FAIL_TRAIN"):
        sys.exit(4)
    data = open("data.txt").read().strip()  # the prepare step's output
    with open("model.txt", "w") as f:
        f.write(f"{data} lr={a.lr}\\n")
    print(f"loss: {abs(a.lr - 0.4) + 0.01}")
    """
)

EVALUATE = textwrap.dedent(
    """\
    model = open("model.txt").read().strip()  # the train step's output
    print("model:", model)
    print(f"model_lr: {float(model.rsplit('lr=', 1)[1])}")
    """
)

FAIL = textwrap.dedent(
    """\
    import argparse, sys
    p = argparse.ArgumentParser()
    p.add_argument("--code", type=int)
    sys.exit(p.parse_args().code)
    """
)

REC = textwrap.dedent(
    """\
    import json, os
    from guildlite import Plugin

    class Rec(Plugin):
        def _log(self, hook, run):
            line = {"hook": hook, "id": run.id, "op": run.op, "status": run.status, "pid": os.getpid(),
                    "is_pipeline": run.is_pipeline, "parent": run.parent.id if run.parent else None,
                    "steps": [s.id for s in run.steps]}
            with open(os.environ["PIPE_EVENTS"], "a") as f:
                f.write(json.dumps(line) + "\\n")

        def on_run_staged(self, run):
            self._log("on_run_staged", run)

        def on_run_begin(self, run):
            self._log("on_run_begin", run)

        def on_run_end(self, run):
            self._log("on_run_end", run)
    """
)

FILES = {"prepare.py": PREPARE, "train.py": TRAIN, "evaluate.py": EVALUATE, "fail.py": FAIL, "rec.py": REC}


class Pipe:
    """The project, with the events file and markers dir its plugin and script write to."""

    def __init__(self, proj: Project, tmp: Path) -> None:
        self.proj = proj
        self.events_file = tmp / "events.jsonl"
        self.marks = tmp / "marks"
        self.marks.mkdir()
        self.env = {"PIPE_EVENTS": str(self.events_file), "PIPE_MARKS": str(self.marks)}

    def run(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return self.proj.run(*args, env={**self.env, **(env or {})})

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return self.proj.spawn(*args, env={**self.env, **(env or {})})

    def events(self) -> list[dict[str, Any]]:
        if not self.events_file.exists():
            return []
        return [json.loads(line) for line in self.events_file.read_text().splitlines()]

    def hooks(self) -> Counter[tuple[str, str]]:
        return Counter((e["id"], e["hook"]) for e in self.events())

    def pipeline(self) -> dict[str, Any]:
        (pipe,) = [r for r in self.proj.records() if r.get("is_pipeline")]
        return pipe

    def record(self, run_id: str) -> dict[str, Any]:
        return self.proj.record(run_id)


@pytest.fixture
def pipe(make_project: Callable[..., Project], tmp_path: Path) -> Pipe:
    return Pipe(make_project(guildfile=GUILDFILE, files=FILES), tmp_path)


def _step_runs(p: Pipe, pipe_rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [p.record(i) for i in pipe_rec["steps"]]


def _upstream_of(rec: dict[str, Any]) -> list[str]:
    return [e["run"] for e in rec.get("requires") or [] if e.get("kind") == "operation"]


# --- prepare -> train -> evaluate ------------------------------------------------------------------


def test_each_step_reads_what_the_step_before_it_made(pipe: Pipe) -> None:
    cp = pipe.run("run", "all", "lr=0.3", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = pipe.pipeline()
    assert rec["status"] == "completed" and rec["is_pipeline"] is True and rec["flags"] == {"lr": 0.3, "size": 4}
    prepare, train, evaluate = _step_runs(pipe, rec)
    assert [r["op"] for r in (prepare, train, evaluate)] == ["prepare", "train", "evaluate"]
    assert all(r["status"] == "completed" and r["parent"] == rec["id"] for r in (prepare, train, evaluate))
    assert prepare["flags"] == {"size": 4} and train["flags"] == {"lr": 0.3}  # ${size}, ${lr} passed through
    # lineage: each step's requirement resolved to the run the step before it just made
    assert _upstream_of(train) == [prepare["id"]] and _upstream_of(evaluate) == [train["id"]]
    out = (pipe.proj.runs_dir / evaluate["id"] / "output.log").read_text()
    assert "model: rows=4 lr=0.3" in out  # evaluate read train's model, made from prepare's data
    # the pipeline's record: its steps in order and how each went
    assert [s["run"] for s in rec["pipeline"]["steps"]] == rec["steps"]
    assert rec["pipeline"]["summary"] == {"completed": 3}
    # hooks: the pipeline gets begin/end only, every step the full suite, each exactly once
    want = {(rec["id"], "on_run_begin"): 1, (rec["id"], "on_run_end"): 1}
    for r in (prepare, train, evaluate):
        want.update({(r["id"], h): 1 for h in ("on_run_staged", "on_run_begin", "on_run_end")})
    assert pipe.hooks() == want
    events = pipe.events()
    assert events[0]["id"] == rec["id"] and events[-1] == {**events[-1], "id": rec["id"], "hook": "on_run_end"}
    assert events[-1]["steps"] == rec["steps"]  # run.steps at the pipeline's end
    assert all(e["parent"] == rec["id"] for e in events if e["id"] != rec["id"])  # a step's run.parent
    down = pipe.run("runs", "--downstream", prepare["id"], "--json")
    assert down.returncode == 0, down.stderr
    assert {r["id"] for r in json.loads(down.stdout)} >= {train["id"], evaluate["id"]}


def test_a_failing_step_stops_the_pipeline_naming_it(pipe: Pipe) -> None:
    cp = pipe.run("run", "strict", "-y")
    assert cp.returncode != 0
    rec = pipe.pipeline()
    assert rec["status"] == "error"
    msg = rec["error"]["message"]
    assert "step 2 (fail)" in msg and "ended error" in msg and "not started: step 3 (prepare)" in msg, msg
    prepare, fail = _step_runs(pipe, rec)  # the third step was never staged
    assert (prepare["status"], fail["status"], fail["exit_code"]) == ("completed", "error", 3)
    assert len(pipe.proj.records()) == 3
    assert "pipeline" in cp.stderr and "step 2 (fail)" in cp.stderr
    assert pipe.hooks()[(rec["id"], "on_run_end")] == 1


def test_continue_on_error_goes_on_and_the_pipeline_completes(pipe: Pipe) -> None:
    cp = pipe.run("run", "lenient", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = pipe.pipeline()
    fail, prepare = _step_runs(pipe, rec)
    assert (fail["status"], fail["exit_code"], prepare["status"]) == ("error", 5, "completed")
    assert rec["status"] == "completed" and rec["error"] is None
    assert rec["pipeline"]["summary"] == {"completed": 1, "error": 1}


def test_a_step_that_cannot_start_under_continue_on_error(pipe: Pipe) -> None:
    """evaluate needs a completed train run, which there is none of: the step cannot start, the
    pipeline goes on; a restart keeps the completed step and tries the other again."""
    cp = pipe.run("run", "hopeful", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = pipe.pipeline()
    (prepare,) = _step_runs(pipe, rec)
    assert prepare["op"] == "prepare" and rec["status"] == "completed"
    first, second = rec["pipeline"]["steps"]
    assert "run" not in first and "no completed run" in first["error"] and second["run"] == prepare["id"]
    info = pipe.run("runs", "info", rec["id"])
    assert "1. evaluate: not started: " in info.stdout and f"2. prepare size=8: {prepare['id']}" in info.stdout
    cp = pipe.run("run", "--restart", rec["id"], "-y")
    assert cp.returncode == 0, cp.stderr
    again = pipe.record(rec["id"])
    assert again["steps"] == [prepare["id"]] and again["pipeline"]["steps"][1]["reused"] == "completed before"
    assert len(pipe.proj.records()) == 2


def test_a_batch_step_and_select_best(pipe: Pipe) -> None:
    cp = pipe.run("run", "tune", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = pipe.pipeline()
    prepare, batch, evaluate = _step_runs(pipe, rec)
    assert batch["is_batch"] and batch["parent"] == rec["id"] and len(batch["trials"]) == 3
    trials = [pipe.record(t) for t in batch["trials"]]
    assert all(t["parent"] == batch["id"] and t["status"] == "completed" for t in trials)
    assert all(_upstream_of(t) == [prepare["id"]] for t in trials)  # each trial read prepare's data
    best = next(t for t in trials if t["flags"]["lr"] == 0.4)  # loss = |lr - 0.4| + 0.01
    assert _upstream_of(evaluate) == [best["id"]]
    assert "model_lr: 0.4" in (pipe.proj.runs_dir / evaluate["id"] / "output.log").read_text()
    selected = rec["pipeline"]["steps"][2]["selected"]["train"]
    assert selected["run"] == best["id"] and selected["by"] == "min loss" and selected["value"] == pytest.approx(0.01)
    # hooks: the batch step is a virtual parent too (begin/end), its trials get the full suite
    hooks = pipe.hooks()
    assert hooks[(batch["id"], "on_run_begin")] == hooks[(batch["id"], "on_run_end")] == 1
    assert (batch["id"], "on_run_staged") not in hooks
    assert all(hooks[(t["id"], h)] == 1 for t in trials for h in ("on_run_staged", "on_run_begin", "on_run_end"))
    # the view page lists the steps under the pipeline, and the batch step's trials under it
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is not None:
        page = pipe.proj.root.parent / "view.html"
        assert pipe.run("view", "--out", str(page), "--no-browser").returncode == 0
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              f"--user-data-dir={page.parent / 'profile'}", "--virtual-time-budget=15000",
                              "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90).stdout
        assert 'data-ready="1"' in dom
        rows = re.findall(r'<tr class="run ([a-z]+)[^"]*" data-id="([^"]+)"(?: data-parent="([^"]*)")?', dom)
        order = [(kind, run_id) for kind, run_id, _ in rows]
        assert order[0] == ("pipeline", rec["id"]) and "(3 steps)" in dom
        at = order.index(("batch", batch["id"]))
        assert {r for _, r in order[at + 1:at + 4]} == {t["id"] for t in trials}  # right under their batch
        assert {r for _, r, parent in rows if parent == rec["id"]} == set(rec["steps"])
    # outside a pipeline, select-best picks the best completed trial of the op's newest batch
    cp = pipe.run("run", "evaluate-best", "--json", "-y")
    assert cp.returncode == 0, cp.stderr
    assert _upstream_of(json.loads(cp.stdout)) == [best["id"]]
    # a delete of the pipeline takes its steps and the batch's trials along
    cp = pipe.run("runs", "delete", rec["id"], "-y")
    assert cp.returncode == 0, cp.stderr
    assert [r["op"] for r in pipe.proj.records()] == ["evaluate-best"]


def test_a_step_after_a_batch_step_without_select_best_runs_on_each_trial(pipe: Pipe) -> None:
    cp = pipe.run("run", "fanout", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = pipe.pipeline()
    _, train, evaluate = _step_runs(pipe, rec)
    assert train["is_batch"] and evaluate["is_batch"] and evaluate["parent"] == rec["id"]
    evals = [pipe.record(t) for t in evaluate["trials"]]
    assert sorted(u for e in evals for u in _upstream_of(e)) == sorted(train["trials"])  # one per trained model
    assert all(e["status"] == "completed" for e in evals)


def test_restart_reruns_the_steps_that_did_not_complete(pipe: Pipe) -> None:
    cp = pipe.run("run", "all", "-y", env={"PIPE_FAIL_TRAIN": "1"})
    assert cp.returncode != 0
    first = pipe.pipeline()
    assert first["status"] == "error" and len(first["steps"]) == 2
    prepare, train = _step_runs(pipe, first)
    assert (prepare["status"], train["status"]) == ("completed", "error")
    cp = pipe.run("run", "--restart", first["id"], "-y")
    assert cp.returncode == 0, cp.stderr
    rec = pipe.pipeline()
    assert rec["status"] == "completed" and len(rec["attempts"]) == 1 and rec["attempts"][0]["status"] == "error"
    assert rec["steps"][:2] == first["steps"]  # the same runs: prepare kept, train run again in its own dir
    again_prepare, again_train, evaluate = _step_runs(pipe, rec)
    assert again_prepare == {**prepare, "label": again_prepare["label"], "tags": again_prepare["tags"]}
    assert again_train["status"] == "completed" and len(again_train["attempts"]) == 1
    assert _upstream_of(again_train) == [prepare["id"]] and _upstream_of(evaluate) == [train["id"]]
    hooks = pipe.hooks()
    assert hooks[(prepare["id"], "on_run_begin")] == 1  # not run again
    assert hooks[(train["id"], "on_run_begin")] == 2 and hooks[(rec["id"], "on_run_end")] == 2
    assert rec["pipeline"]["steps"][0]["reused"] == "completed before"


def test_steps_reuse_a_completed_run_with_the_same_flags_source_and_requirements(pipe: Pipe) -> None:
    assert pipe.run("run", "all", "-y").returncode == 0
    first = pipe.pipeline()
    cp = pipe.run("run", "all", "-y")
    assert cp.returncode == 0, cp.stderr
    second = next(r for r in pipe.proj.records() if r.get("is_pipeline") and r["id"] != first["id"])
    assert second["status"] == "completed" and second["steps"] == first["steps"]  # all three reused
    assert [s["reused"] for s in second["pipeline"]["steps"]] == ["needed"] * 3
    assert len(pipe.proj.records()) == 5  # two pipelines, three step runs


# --- stops -----------------------------------------------------------------------------------------


def test_sigterm_mid_step_ends_the_step_and_the_pipeline_once_each(pipe: Pipe, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # never created: train waits until it is stopped
    p = pipe.spawn("run", "all", "-y", env={"PIPE_GATE": str(gate)})
    wait_until(lambda: list(pipe.marks.iterdir()) or p.poll() is not None, timeout=60, what="train to start")
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0 and TRACEBACK not in err, err
    rec = pipe.pipeline()
    assert rec["status"] == "terminated", rec
    prepare, train = _step_runs(pipe, rec)  # evaluate: never staged
    assert (prepare["status"], train["status"]) == ("completed", "terminated")
    assert len(pipe.proj.records()) == 3
    assert "not started: step 3 (evaluate)" in rec["error"]["message"]
    ends = Counter(e["id"] for e in pipe.events() if e["hook"] == "on_run_end")
    assert ends == {rec["id"]: 1, prepare["id"]: 1, train["id"]: 1}
    end = [e for e in pipe.events() if e["hook"] == "on_run_end"]
    assert end[-1]["id"] == rec["id"] and end[-1]["status"] == "terminated"
    wait_until(lambda: not pipe.proj.procs(), timeout=30, what="the job's processes to go")


def test_detached_pipeline_runs_to_its_end_in_the_supervisor(pipe: Pipe, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    cp = pipe.run("run", "all", "-b", env={"PIPE_GATE": str(gate)})
    assert cp.returncode == 0, cp.stderr
    pid = cp.stdout.strip()
    rec = pipe.record(pid)
    assert rec["is_pipeline"] and rec["status"] in ("pending", "running")
    wait_until(lambda: list(pipe.marks.iterdir()), timeout=60, what="train to start")
    running = pipe.run("runs", "info", pid)
    assert running.returncode == 0 and "status: running" in running.stdout
    watch = pipe.spawn("watch")  # no RUN: the newest going run is a step; its pipeline stands for it
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda f=f, into=into: into.extend(f), daemon=True)
               for f, into in ((watch.stdout, out), (watch.stderr, err))]
    for t in readers:
        t.start()
    wait_until(lambda: any("step 2:" in line for line in err) or watch.poll() is not None, timeout=60,
               what="watch to follow the running step")
    gate.touch()
    wait_until(lambda: pipe.record(pid)["status"] in ("completed", "error", "terminated"), timeout=60,
               what="the pipeline to end")
    rec = pipe.record(pid)
    assert rec["status"] == "completed", rec
    steps = _step_runs(pipe, rec)
    assert [s["status"] for s in steps] == ["completed"] * 3
    # the end is recorded before on_run_end runs: wait for the hooks
    wait_until(lambda: Counter(e["hook"] for e in pipe.events())["on_run_end"] == 4, timeout=30, what="every on_run_end")
    supervisor = {e["pid"] for e in pipe.events()}
    assert len(supervisor) == 1 and supervisor != {os.getpid()}  # every hook in the supervisor
    assert Counter(e["id"] for e in pipe.events() if e["hook"] == "on_run_end") == {r: 1 for r in [pid, *rec["steps"]]}
    assert watch.wait(timeout=60) == 0, err
    for t in readers:
        t.join(timeout=10)
    said = "".join(err)
    assert f"pipeline {pid} completed" in said and all(f"step {n}:" in said for n in (1, 2, 3)), said
    assert "model: rows=4 lr=0.2" in "".join(out)  # evaluate's output, followed live


def test_stop_of_a_detached_pipeline_terminates_its_running_step(pipe: Pipe, tmp_path: Path) -> None:
    cp = pipe.run("run", "all", "-b", env={"PIPE_GATE": str(tmp_path / "never")})
    assert cp.returncode == 0, cp.stderr
    pid = cp.stdout.strip()
    wait_until(lambda: list(pipe.marks.iterdir()), timeout=60, what="train to start")
    stop = pipe.run("stop", pid)
    assert stop.returncode == 0, stop.stderr
    rec = pipe.record(pid)
    assert rec["status"] == "terminated"
    assert [pipe.record(s)["status"] for s in rec["steps"]] == ["completed", "terminated"]
    wait_until(lambda: Counter(e["hook"] for e in pipe.events())["on_run_end"] == 3, timeout=30,
               what="every on_run_end")
    assert Counter(e["id"] for e in pipe.events() if e["hook"] == "on_run_end") == {r: 1 for r in [pid, *rec["steps"]]}


# --- inspecting a pipeline -------------------------------------------------------------------------


def test_inspect_commands_work_on_a_pipeline(pipe: Pipe, tmp_path: Path) -> None:
    assert pipe.run("run", "lenient", "-y").returncode == 0
    assert pipe.run("run", "strict", "-y").returncode != 0
    recs = [r for r in pipe.proj.records() if r.get("is_pipeline")]
    lenient, strict = sorted(recs, key=lambda r: r["created"])
    listing = pipe.run("runs")
    assert listing.returncode == 0 and "lenient (2 steps)" in listing.stdout and "strict (2 steps)" in listing.stdout
    info = pipe.run("runs", "info", strict["id"])
    assert info.returncode == 0, info.stderr
    assert "steps: 2 of 3 run" in info.stdout and "3. prepare size=9: not started" in info.stdout
    step_info = pipe.run("runs", "info", strict["steps"][0])
    assert f"pipeline: {strict['id']}" in step_info.stdout
    children = pipe.run("runs", "--batch", strict["id"], "--json")
    assert {r["id"] for r in json.loads(children.stdout)} == {strict["id"], *strict["steps"]}
    for args in (("compare", lenient["id"], strict["id"], "--csv"), ("diff", lenient["id"], strict["id"]),
                 ("ls", strict["id"]), ("view", strict["id"], "--out", str(tmp_path / "v.html"), "--no-browser")):
        cp = pipe.run(*args)
        assert cp.returncode == 0 and TRACEBACK not in cp.stderr, (args, cp.stderr)
    watch = pipe.run("watch", strict["id"])  # an ended pipeline: its steps, then its end and exit status
    assert watch.returncode == 1 and f"pipeline {strict['id']} error" in watch.stderr
    ops = pipe.run("ops")
    assert "strict  (pipeline: prepare -> fail -> prepare size=9)" in ops.stdout, ops.stdout
    assert pipe.run("label", strict["id"], "nightly").returncode == 0
    assert pipe.record(strict["id"])["label"] == "nightly"


def test_stage_only_stages_the_pipeline_alone(pipe: Pipe) -> None:
    cp = pipe.run("run", "all", "--stage", "-y")
    assert cp.returncode == 0, cp.stderr
    (rec,) = pipe.proj.records()
    assert rec["is_pipeline"] and rec["status"] == "staged" and rec["steps"] == []
    assert [s["op"] for s in rec["pipeline"]["steps"]] == ["prepare", "train", "evaluate"]
    cp = pipe.run("run", "--start", rec["id"])  # and started later, as it was staged
    assert cp.returncode == 0, cp.stderr
    rec = pipe.record(rec["id"])
    assert rec["status"] == "completed" and [pipe.record(s)["status"] for s in rec["steps"]] == ["completed"] * 3


# --- validation ------------------------------------------------------------------------------------

BAD = [
    ("  p:\n    steps: [prepare, trian]\n", ["guildfile.yml:", "steps[1]", "no operation 'trian'", "did you mean 'train'"]),
    ("  p:\n    steps:\n      - run: train lr=${rate}\n", ["steps[0]", "'${rate}'", "not a flag of the pipeline"]),
    ("  p:\n    steps:\n      - run: prepare\n        continue_on_error: true\n",
     ["unknown key 'continue_on_error'", "did you mean 'continue-on-error'"]),
    ("  p:\n    main: prepare.py\n    steps: [prepare]\n", ["has 'steps'", "no 'main'"]),
    ("  p:\n    steps: [prepare]\n    launcher: python\n", ["unknown key 'launcher'", "pipeline operation 'p'"]),
    ("  p:\n    steps: []\n", ["'steps' must be a non-empty list"]),
    ("  p:\n    steps: [{flags: {size: 1}}]\n", ["'run'", "required"]),
    ("  p:\n    steps: ['prepare --size 3']\n", ["'--size' is not NAME=VALUE"]),
    ("  p:\n    steps: [{run: prepare, needed: maybe}]\n", ["'needed' must be true or false"]),
    ("  p:\n    steps: [all]\n", ["'all' is a pipeline itself"]),
    ("  e:\n    main: evaluate.py\n    requires: [{operation: all}]\n", ["requires operation 'all', a pipeline"]),
    ("  p:\n    steps: [{run: prepare size=1, flags: {size: 2}}]\n", ["'size' is given more than once"]),
    ("  e:\n    main: evaluate.py\n    requires: [{operation: train, select-best: middle loss}]\n",
     ["'select-best' must be 'min SCALAR' or 'max SCALAR'"]),
]


@pytest.mark.parametrize(("extra", "needles"), BAD, ids=[b[1][-1][:30] for b in BAD])
def test_a_bad_pipeline_is_refused_at_load_naming_the_line(pipe: Pipe, extra: str, needles: list[str]) -> None:
    (pipe.proj.root / "guildfile.yml").write_text(GUILDFILE + extra)
    cp = pipe.run("run", "prepare", "-y")
    line = assert_clean_error(cp, 2, *needles)
    assert ":" in line.split("guildfile.yml", 1)[1][:8]  # guildfile.yml:LINE
    assert pipe.proj.records() == []


def test_a_bad_step_flag_fails_before_anything_is_staged(pipe: Pipe) -> None:
    (pipe.proj.root / "guildfile.yml").write_text(GUILDFILE + "  p:\n    steps: [prepare, {run: train lr=fast}]\n")
    cp = pipe.run("run", "p", "-y")
    assert_clean_error(cp, 2, "step 2 (train)", "lr")
    assert pipe.proj.records() == []
    cp = pipe.run("run", "all", "lr=[0.1,0.2]", "-y")
    assert_clean_error(cp, 2, "takes single flag values")
    cp = pipe.run("run", "all", "rate=1", "-y")
    assert_clean_error(cp, 2, "no flag 'rate'")
    cp = pipe.run("run", "all", "--max-trials", "2", "-y")
    assert_clean_error(cp, 2, "--max-trials", "is a pipeline")
    cp = pipe.run("run", "evaluate-best", "-y")  # select-best outside a pipeline, and no batch of train yet
    assert_clean_error(cp, 2, "select-best min loss", "no batch")
    assert pipe.proj.records() == []


def test_a_hostile_pipeline_record_is_a_bad_record_not_a_crash(pipe: Pipe) -> None:
    assert pipe.run("run", "all", "--stage", "-y").returncode == 0
    (rec,) = pipe.proj.records()
    path = pipe.proj.runs_dir / rec["id"] / "run.json"
    for plan in ({"steps": 5}, {"steps": [3]}, {"steps": [{"given": "x"}]}, {"summary": {"a": "b"}}):
        path.write_text(json.dumps({**rec, "pipeline": plan}))
        listing = pipe.run("runs")
        assert listing.returncode == 0 and TRACEBACK not in listing.stderr and "pipeline" in listing.stderr, plan
        assert_clean_error(pipe.run("runs", "info", rec["id"]), 2, "pipeline")
    path.write_text(json.dumps({**rec, "steps": ["../../etc"]}))
    assert_clean_error(pipe.run("runs", "info", rec["id"]), 2, "steps")


def test_the_readme_pipeline_example_runs(make_project: Callable[..., Project]) -> None:
    """The example under "Pipelines" in README.md, with scripts that do what it says."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme.split("### Pipelines (`steps:`)", 1)[1], re.S)
    assert example is not None
    script = textwrap.dedent(
        """\
        import argparse, os
        p = argparse.ArgumentParser()
        for name in ("--size", "--lr"):
            p.add_argument(name)
        a = p.parse_args()
        os.makedirs("data", exist_ok=True)
        if a.size:
            open("data/rows.txt", "w").write(a.size)
        if a.lr:
            print(f"loss: {abs(float(a.lr) - 0.06)}")
        """
    )
    guildfile = example.group(1).replace("{main:", "{launcher: python, main:")  # fast: no torchrun
    proj = make_project(guildfile=guildfile.replace("\n    main: ", "\n    launcher: python\n    main: "),
                        files={"prepare.py": script, "train.py": script, "evaluate.py": "print('ok')\n"})
    cp = proj.run("run", "all", "-y")
    assert cp.returncode == 0, cp.stderr
    (pipe,) = [r for r in proj.records() if r.get("is_pipeline")]
    assert pipe["status"] == "completed"
    train = proj.record(pipe["steps"][1])
    assert train["is_batch"] and train["flags"]["lr"] == [0.05, 0.1]
    best = pipe["pipeline"]["steps"][2]["selected"]["train"]
    assert proj.record(best["run"])["flags"]["lr"] == 0.05
