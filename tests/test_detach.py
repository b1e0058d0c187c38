"""``guildlite run --detach`` (``-b``, ``--background``) on the local backend, with real processes
and signals: the command returns with the run id while the job runs, and a detached supervisor
owns the run (or the whole batch) to its recorded end: status, exit code, scalars, hooks,
``on_run_end`` exactly once, ``guildlite stop``, SIGHUP, and stale detection when it is killed.

The jobs are scripts written the way people write them (argparse, click, a hand-rolled
``sys.argv`` loop). A job that must still be running when something is checked waits for a gate
file the test creates later, never for a time. A project plugin (``ends.py``) appends one JSON line
per ``on_run_end`` (the run, its status, the pid of the process the hook ran in) to ``ends.jsonl``
in the project, so the tests count ends across processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any, Callable

import pytest
from conftest import (
    ROOT,
    TRACEBACK,
    Project,
    assert_clean_error,
    read_scalars,
    wait_no_marker_procs,
    wait_until,
)

from guildlite._process import process_stat
from guildlite._record import is_run_id

_OP_COMMON = "    launcher: python\n    sourcecode: {exclude: ['*.jsonl', 'gate*']}\n"
GUILDFILE = (
    "plugins: [{class: ends:Ends}, {class: ends:Veto}, {class: ends:Wreck}]\n"
    "operations:\n"
    "  train:\n"
    "    main: train.py\n" + _OP_COMMON
    + "    flags:\n      lr: 0.1\n      gate: ''\n"
    "  fail:\n"
    "    main: fail.py\n" + _OP_COMMON
    + "    flags:\n      code: 3\n"
    "  trial:\n"
    "    main: trial.py\n" + _OP_COMMON
    + "    flags:\n      lr: 1\n      gate: ''\n"
)

# argparse, "key: value" lines; waits for --gate (a path) when given one.
TRAIN = textwrap.dedent(
    """\
    import argparse
    import os
    import time

    parser = argparse.ArgumentParser(description="a toy training loop")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--gate", default="", help="wait for this file before finishing")
    args = parser.parse_args()

    with open("started", "w") as f:
        f.write(str(os.getpid()))
    print(f"training with lr={args.lr}", flush=True)
    while args.gate and not os.path.exists(args.gate):
        time.sleep(0.02)
    for step in range(1, 4):
        print(f"step: {step}")
        print(f"loss: {args.lr / step}")
    print("accuracy: 0.9")
    """
)

# click; fails with --code.
FAIL = textwrap.dedent(
    """\
    import click


    @click.command()
    @click.option("--code", type=int, default=3, show_default=True)
    def main(code: int) -> None:
        click.echo("epoch: 1")
        if code:
            click.echo(f"diverged, giving up (exit {code})", err=True)
        raise SystemExit(code)


    if __name__ == "__main__":
        main()
    """
)

# sys.argv by hand; writes its start and end times to `span` in its run dir.
TRIAL = textwrap.dedent(
    """\
    import os, sys, time

    opts = {}
    for arg in sys.argv[1:]:
        name, _, value = arg.lstrip("-").partition("=")
        opts[name] = value
    with open("span", "w") as f:
        f.write(repr(time.time()) + "\\n")
    while opts.get("gate") and not os.path.exists(opts["gate"]):
        time.sleep(0.02)
    sys.stdout.write("loss: %s\\n" % (1.0 / float(opts["lr"])))
    with open("span", "a") as f:
        f.write(repr(time.time()) + "\\n")
    """
)

# Ends: one JSON line per on_run_end. Veto: lr=13 is vetoed at staging. Wreck: while the run is
# staged (before the supervisor reads the guildfile), lr=66 removes the project's guildfile,
# lr=77 changes it so that the run's flags are no longer valid, lr=88 spoils the run's launch file.
ENDS = textwrap.dedent(
    """\
    import json
    import os
    from pathlib import Path

    from guildlite import Plugin, StopRun

    HERE = Path(__file__).resolve().parent


    class Ends(Plugin):
        def on_run_end(self, run):
            line = json.dumps({"id": run.id, "status": run.status, "exit_code": run.exit_code,
                               "batch": run.is_batch, "pid": os.getpid()})
            if os.environ.get("ENDS_WHICH_GUILDLITE"):
                import guildlite

                line = line[:-1] + ", " + json.dumps({"guildlite": guildlite.__file__})[1:]
            fd = os.open(HERE / "ends.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.write(fd, (line + "\\n").encode())
            os.close(fd)


    class Veto(Plugin):
        def on_run_staged(self, run):
            if run.flags.get("lr") == 13:
                raise StopRun("13 is an unlucky learning rate")


    class Wreck(Plugin):
        def on_run_staged(self, run):
            guildfile = HERE / "guildfile.yml"
            if run.flags.get("lr") == 66:
                guildfile.unlink()
            elif run.flags.get("lr") == 77:  # the run's lr is out of range from now on
                guildfile.write_text(guildfile.read_text().replace("lr: 0.1\\n", "lr: {default: 0.1, max: 1}\\n"))
            elif run.flags.get("lr") == 88:
                (run.run_dir / ".guildlite" / "launch.json").write_text("{not json")
    """
)

FILES = {"train.py": TRAIN, "fail.py": FAIL, "trial.py": TRIAL, "ends.py": ENDS}


@pytest.fixture
def proj(make_project: Callable[..., Project]) -> Project:
    return make_project(GUILDFILE, FILES)


def ends(proj: Project) -> list[dict[str, Any]]:
    """Every on_run_end the project plugin saw, in order."""
    log = proj.root / "ends.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def ends_of(proj: Project, run_id: str) -> list[dict[str, Any]]:
    return [e for e in ends(proj) if e["id"] == run_id]


def detach(proj: Project, *args: str) -> str:
    """``guildlite run ARGS -b -y`` that must hand over: the run id it printed (its only stdout)."""
    cp = proj.run("run", *args, "-b", "-y", timeout=60)
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    assert TRACEBACK not in cp.stderr, cp.stderr
    run_id = cp.stdout.strip()
    assert is_run_id(run_id), cp.stdout
    return run_id


def wait_ended(proj: Project, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run's raw record once it records an end and the process that owned it is gone (its
    ``on_run_end`` hooks, which run after the end is written, have run)."""
    rec = wait_until(
        lambda: (rec := proj.record(run_id))["status"] in ("completed", "error", "terminated") and rec,
        timeout=timeout, what=f"run {run_id} to record its end",
    )
    wait_gone(rec["pid"], timeout)
    return proj.record(run_id)


def alive(pid: int) -> bool:
    return process_stat(pid) is not None


def wait_gone(pid: int, timeout: float = 30) -> None:
    wait_until(lambda: not alive(pid), timeout=timeout, what=f"process {pid} to exit")


def cli_status(proj: Project, run_id: str) -> str:
    """The run's status as ``guildlite runs info --json`` reports it (liveness derived)."""
    return str(proj.run_json("runs", "info", run_id, "--json")["status"])


# --- a single run --------------------------------------------------------------------------------


def test_detached_run_returns_while_its_script_runs_and_ends_whole(proj: Project) -> None:
    gate = proj.root / "gate"
    run_id = detach(proj, "train", "lr=0.5", f"gate={gate}")
    run_dir = proj.runs_dir / run_id
    rec = proj.record(run_id)
    assert rec["status"] in ("pending", "running"), rec["status"]
    sup = rec["pid"]
    assert alive(sup) and (run_dir / ".guildlite" / "supervisor.log").exists()
    assert os.getsid(sup) == sup  # a session of its own: no terminal's hangup or Ctrl-C reaches it
    # The command has returned; the script runs (and waits for the gate) under the supervisor.
    wait_until(lambda: (run_dir / "started").exists(), what="the script to start")
    job = int((run_dir / "started").read_text())
    stat = process_stat(job)
    assert stat is not None and stat[0] == sup  # the supervisor's child
    assert wait_until(lambda: cli_status(proj, run_id) == "running")
    gate.touch()
    rec = wait_ended(proj, run_id)
    assert rec["status"] == "completed" and rec["exit_code"] == 0 and rec["error"] is None
    assert rec["pid"] == sup and rec["job_pid"] == job
    assert rec["created"] <= rec["started"] <= rec["stopped"]
    assert "step: 3" in (run_dir / "output.log").read_text()
    scalars = {(r["key"], r["step"]): r["value"] for r in read_scalars(run_dir)}
    assert scalars[("loss", 3)] == pytest.approx(0.5 / 3) and scalars[("accuracy", 3)] == 0.9
    trace = [(p["plugin"], p["hook"]) for p in rec["plugins"]]
    for hook in ("on_run_staged", "on_run_begin", "on_run_end"):
        assert any(h == hook for _, h in trace), trace
    assert ("Ends", "on_run_end") in trace and ("OutputScalars", "on_run_end") in trace
    wait_gone(sup)
    assert ends(proj) == [{"id": run_id, "status": "completed", "exit_code": 0, "batch": False, "pid": sup}]
    assert cli_status(proj, run_id) == "completed"


def test_detached_failing_script_records_its_exit_code(proj: Project) -> None:
    run_id = detach(proj, "fail", "code=5")
    rec = wait_ended(proj, run_id)
    assert rec["status"] == "error" and rec["exit_code"] == 5
    assert "5" in rec["error"]["message"]
    assert "diverged, giving up (exit 5)" in (proj.runs_dir / run_id / "output.log").read_text()
    assert [(e["status"], e["exit_code"]) for e in ends_of(proj, run_id)] == [("error", 5)]


def test_detach_json_prints_the_record_of_the_handed_over_run(proj: Project) -> None:
    gate = proj.root / "gate"
    cp = proj.run("run", "train", f"gate={gate}", "-b", "--json", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = json.loads(cp.stdout)
    assert is_run_id(rec["id"]) and rec["status"] == "pending" and rec["op"] == "train"
    assert rec["flags"]["gate"] == str(gate)
    assert rec["pid"] == proj.record(rec["id"])["pid"] and alive(rec["pid"])
    gate.touch()
    assert wait_ended(proj, rec["id"])["status"] == "completed"


def test_detach_long_option_and_a_bad_request_stage_nothing(proj: Project) -> None:
    cp = proj.run("run", "fail", "code=0", "--detach", "-y")  # -b and --background: the other tests
    assert cp.returncode == 0 and is_run_id(cp.stdout.strip()), cp.stderr
    assert wait_ended(proj, cp.stdout.strip())["status"] == "completed"
    before = proj.run_dirs()
    assert_clean_error(proj.run("run", "train", "lr=abc", "-b", "-y"), 2, "lr")
    assert proj.run_dirs() == before


def test_a_veto_at_staging_exits_as_in_the_foreground_and_hands_nothing_over(proj: Project) -> None:
    fg = proj.run("run", "train", "lr=13", "-y")
    bg = proj.run("run", "train", "lr=13", "-b", "-y")
    assert bg.returncode == fg.returncode != 0, (fg.returncode, bg.returncode, bg.stderr)
    assert bg.stdout == fg.stdout == ""
    assert "13 is an unlucky learning rate" in bg.stderr and TRACEBACK not in bg.stderr
    recs = proj.records()
    assert len(recs) == 2 and recs[0]["status"] == recs[1]["status"] != "pending"
    assert recs[0]["error"]["message"] == recs[1]["error"]["message"]
    for rec in recs:
        assert not (proj.runs_dir / rec["id"] / ".guildlite" / "supervisor.log").exists()
        assert not (proj.runs_dir / rec["id"] / "started").exists()
        assert len(ends_of(proj, rec["id"])) == 1


# --- batches -------------------------------------------------------------------------------------


def _spans(proj: Project, trial_ids: list[str]) -> list[tuple[float, float]]:
    out = []
    for tid in trial_ids:
        lines = (proj.runs_dir / tid / "span").read_text().split()
        assert len(lines) == 2, (tid, lines)
        out.append((float(lines[0]), float(lines[1])))
    return out


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_detached_parallel_batch_honours_its_slots_and_ends_each_run_once(proj: Project) -> None:
    gate = proj.root / "gate"
    batch_id = detach(proj, "trial", "lr=[1,2,3,4]", f"gate={gate}", "--parallel", "2")
    batch = proj.record(batch_id)
    assert batch["is_batch"] and len(batch["trials"]) == 4
    started = lambda: [t for t in batch["trials"] if (proj.runs_dir / t / "span").exists()]  # noqa: E731
    wait_until(lambda: len(started()) == 2, what="two trials to start")
    assert len(started()) == 2  # two slots, both held by trials waiting for the gate
    gate.touch()
    batch = wait_ended(proj, batch_id)
    assert batch["status"] == "completed" and batch["batch"]["summary"] == {"completed": 4}
    trials = [proj.record(t) for t in batch["trials"]]
    assert [t["status"] for t in trials] == ["completed"] * 4
    assert sorted(t["flags"]["lr"] for t in trials) == [1, 2, 3, 4]
    assert _most_at_once(_spans(proj, batch["trials"])) == 2
    wait_gone(batch["pid"])
    seen = ends(proj)
    assert sorted(e["id"] for e in seen) == sorted([batch_id, *batch["trials"]])
    assert seen[-1] == {"id": batch_id, "status": "completed", "exit_code": None, "batch": True,
                        "pid": batch["pid"]}
    assert {e["pid"] for e in seen} == {batch["pid"]}


# --- stopping, signals, a killed supervisor -------------------------------------------------------


def test_guildlite_stop_ends_a_detached_run(proj: Project) -> None:
    run_id = detach(proj, "train", f"gate={proj.root / 'never'}")
    run_dir = proj.runs_dir / run_id
    wait_until(lambda: (run_dir / "started").exists(), what="the script to start")
    job = int((run_dir / "started").read_text())
    cp = proj.run("stop", run_id)
    assert cp.returncode == 0, cp.stderr
    assert f"{run_id} terminated" in cp.stdout
    rec = proj.record(run_id)
    assert rec["status"] == "terminated"
    wait_gone(job)
    wait_no_marker_procs(proj.marker)  # the supervisor too
    assert [e["status"] for e in ends_of(proj, run_id)] == ["terminated"]


def test_guildlite_stop_ends_a_detached_batch_and_its_unstarted_trials(proj: Project) -> None:
    batch_id = detach(proj, "trial", "lr=[1,2,3]", f"gate={proj.root / 'never'}", "--parallel", "2")
    trial_ids = proj.record(batch_id)["trials"]
    wait_until(lambda: sum((proj.runs_dir / t / "span").exists() for t in trial_ids) == 2, what="two trials")
    cp = proj.run("stop", batch_id)
    assert cp.returncode == 0, cp.stderr
    batch = proj.record(batch_id)
    assert batch["status"] == "terminated"
    trials = [proj.record(t) for t in trial_ids]
    assert [t["status"] for t in trials] == ["terminated"] * 3
    assert not (proj.runs_dir / trial_ids[2] / "span").exists()  # never started
    wait_no_marker_procs(proj.marker)
    assert sorted(e["id"] for e in ends(proj)) == sorted([batch_id, *trial_ids])
    assert all(e["status"] == "terminated" for e in ends(proj))


def test_guildlite_stop_of_one_trial_of_a_detached_batch_lets_the_batch_go_on(proj: Project) -> None:
    gate = proj.root / "gate"
    batch_id = detach(proj, "trial", "lr=[1,2,3]", f"gate={gate}", "--parallel", "2")
    first, second, third = proj.record(batch_id)["trials"]
    wait_until(lambda: (proj.runs_dir / first / "span").exists(), what="the first trial to start")
    cp = proj.run("stop", first)
    assert cp.returncode == 0, cp.stderr
    assert proj.record(first)["status"] == "terminated"
    assert proj.record(batch_id)["status"] == "running"
    gate.touch()
    batch = wait_ended(proj, batch_id)
    assert [proj.record(t)["status"] for t in (first, second, third)] == ["terminated", "completed", "completed"]
    assert batch["status"] == "error" and "1 of 3" in batch["error"]["message"]
    assert sorted(e["id"] for e in ends(proj)) == sorted([batch_id, first, second, third])


def test_sighup_to_the_supervisor_does_not_end_the_run(proj: Project) -> None:
    gate = proj.root / "gate"
    run_id = detach(proj, "train", f"gate={gate}")
    run_dir = proj.runs_dir / run_id
    sup = proj.record(run_id)["pid"]
    os.kill(sup, signal.SIGHUP)  # at once: while it starts up
    wait_until(lambda: (run_dir / "started").exists(), what="the script to start")
    os.killpg(os.getpgid(sup), signal.SIGHUP)  # its terminal's hangup would reach its whole group
    gate.touch()
    rec = wait_ended(proj, run_id)
    assert rec["status"] == "completed" and rec["exit_code"] == 0 and rec["pid"] == sup
    assert len(ends_of(proj, run_id)) == 1


def test_a_killed_supervisor_reads_terminated_and_takes_its_job_along(proj: Project) -> None:
    run_id = detach(proj, "train", f"gate={proj.root / 'never'}")
    run_dir = proj.runs_dir / run_id
    wait_until(lambda: (run_dir / "started").exists(), what="the script to start")
    job = int((run_dir / "started").read_text())
    sup = proj.record(run_id)["pid"]
    os.kill(sup, signal.SIGKILL)
    wait_gone(job)  # the parent-death signal
    assert proj.record(run_id)["status"] == "running"  # as written: nobody recorded the end
    listed = {r["id"]: r for r in proj.run_json("runs", "--json")}
    assert listed[run_id]["status"] == "terminated"
    assert str(sup) in listed[run_id]["error"]["message"]
    assert "terminated" in proj.run("runs").stdout
    wait_no_marker_procs(proj.marker)


def test_a_killed_batch_supervisor_reads_terminated_with_its_running_trials(proj: Project) -> None:
    batch_id = detach(proj, "trial", "lr=[1,2,3]", f"gate={proj.root / 'never'}", "--parallel", "2")
    trial_ids = proj.record(batch_id)["trials"]
    wait_until(lambda: all(proj.record(t)["status"] == "running" for t in trial_ids[:2]), what="two trials")
    jobs = [proj.record(t)["job_pid"] for t in trial_ids[:2]]
    os.kill(proj.record(batch_id)["pid"], signal.SIGKILL)
    for job in jobs:
        wait_gone(job)
    listed = {r["id"]: r["status"] for r in proj.run_json("runs", "--json")}
    assert [listed[i] for i in (batch_id, *trial_ids[:2])] == ["terminated"] * 3
    assert listed[trial_ids[2]] not in ("pending", "running")  # never started
    assert not (proj.runs_dir / trial_ids[2] / "span").exists()
    wait_no_marker_procs(proj.marker)


def test_a_stop_while_the_supervisor_starts_up_still_ends_the_run_once(proj: Project) -> None:
    # `guildlite stop` right after `run -b` returns reaches a supervisor that may still be importing.
    run_id = detach(proj, "train", f"gate={proj.root / 'never'}")
    sup = proj.record(run_id)["pid"]
    os.kill(sup, signal.SIGTERM)
    wait_gone(sup)
    rec = proj.record(run_id)
    assert rec["status"] == "terminated", rec
    assert [e["status"] for e in ends_of(proj, run_id)] == ["terminated"]
    assert not (proj.runs_dir / run_id / "started").exists()
    wait_no_marker_procs(proj.marker)


def test_the_supervisor_imports_what_the_caller_imports_with_a_relative_pythonpath(proj: Project) -> None:
    # PYTHONPATH is relative to where `guildlite run -b` was typed, not to the run dir.
    env = {"PYTHONPATH": os.path.relpath(ROOT, proj.root), "ENDS_WHICH_GUILDLITE": "1"}
    cp = proj.run("run", "fail", "code=0", "-b", "-y", env=env)
    assert cp.returncode == 0, cp.stderr
    assert wait_ended(proj, cp.stdout.strip())["status"] == "completed"
    assert [e.get("guildlite") for e in ends(proj)] == [str(ROOT / "guildlite" / "__init__.py")]


def test_a_supervisor_whose_hand_over_never_completed_starts_nothing(proj: Project) -> None:
    # As if `run -b` died between starting the supervisor and recording the hand-over: the record
    # does not name the supervisor, whose stdin then closes.
    from guildlite._supervisor import _BOOT

    cp = proj.run("run", "train", "--stage", "-y")
    assert cp.returncode == 0, cp.stderr
    (run_dir,) = proj.run_dirs()
    sup = subprocess.run([sys.executable, "-c", _BOOT, str(run_dir), "-1"], env=proj.env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60, check=False)
    assert sup.returncode == 1 and "not starting it" in sup.stderr, sup.stderr
    assert proj.record(run_dir.name)["status"] == "staged"
    assert not (run_dir / "started").exists()


# --- restart -------------------------------------------------------------------------------------


def test_detached_restart_of_a_failed_run_reruns_it_in_its_own_dir(proj: Project) -> None:
    run_id = detach(proj, "fail")
    assert wait_ended(proj, run_id)["status"] == "error"
    cp = proj.run("run", "--restart", run_id, "code=0", "-b", "-y")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == run_id
    rec = wait_ended(proj, run_id)
    assert rec["status"] == "completed" and rec["exit_code"] == 0 and rec["flags"]["code"] == 0
    assert [(a["status"], a["exit_code"], a["flags"]["code"]) for a in rec["attempts"]] == [("error", 3, 3)]
    assert [d.name for d in proj.run_dirs()] == [run_id]
    wait_gone(rec["pid"])
    assert [e["status"] for e in ends_of(proj, run_id)] == ["error", "completed"]


def test_detached_restart_of_a_batch_reruns_its_failed_trials(proj: Project) -> None:
    batch_id = detach(proj, "fail", "code=[0,4]")
    assert wait_ended(proj, batch_id)["status"] == "error"
    ok, bad = proj.record(batch_id)["trials"]
    assert proj.record(bad)["exit_code"] == 4
    (proj.root / "fail.py").write_text(FAIL.replace("raise SystemExit(code)", "raise SystemExit(0)"))
    assert detach_restart(proj, batch_id) == batch_id
    batch = wait_ended(proj, batch_id)
    assert batch["status"] == "completed"
    assert proj.record(bad)["status"] == "completed" and len(proj.record(bad)["attempts"]) == 1
    assert proj.record(ok)["attempts"] == []  # a completed trial stays as it was
    wait_gone(batch["pid"])
    assert [e["status"] for e in ends_of(proj, batch_id)] == ["error", "completed"]
    assert [e["status"] for e in ends_of(proj, bad)] == ["error", "completed"]
    assert [e["status"] for e in ends_of(proj, ok)] == ["completed"]


def detach_restart(proj: Project, run_id: str) -> str:
    cp = proj.run("run", "--restart", run_id, "--background", "-y")
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


# --- hostile -------------------------------------------------------------------------------------


def test_a_guildfile_gone_before_the_supervisor_starts_ends_the_run_in_error(proj: Project) -> None:
    run_id = detach(proj, "train", "lr=66")  # the Wreck plugin removes the guildfile while staging
    assert not (proj.root / "guildfile.yml").exists()
    rec = wait_ended(proj, run_id)
    assert rec["status"] == "error" and "guildfile" in rec["error"]["message"]
    assert rec["stopped"] and not (proj.runs_dir / run_id / "started").exists()
    # on_run_end still fires: the built-ins' (the project's plugins went with the guildfile)
    assert ("OutputScalars", "on_run_end") in [(p["plugin"], p["hook"]) for p in rec["plugins"]]
    log = (proj.runs_dir / run_id / ".guildlite" / "supervisor.log").read_text()
    assert "cannot start" in log and TRACEBACK not in log
    assert cli_status(proj, run_id) == "error"


def test_a_guildfile_changed_before_the_supervisor_starts_ends_the_run_in_error(proj: Project) -> None:
    run_id = detach(proj, "train", "lr=77")  # the Wreck plugin gives lr a maximum of 1 while staging
    rec = wait_ended(proj, run_id)
    assert rec["status"] == "error" and "lr" in rec["error"]["message"], rec["error"]
    assert not (proj.runs_dir / run_id / "started").exists()
    assert [e["status"] for e in ends_of(proj, run_id)] == ["error"]


def test_a_spoiled_launch_file_ends_the_run_in_error_saying_so(proj: Project) -> None:
    run_id = detach(proj, "train", "lr=88")
    rec = wait_ended(proj, run_id)
    assert rec["status"] == "error" and "launch.json is missing or unreadable" in rec["error"]["message"]
    # Which plugins the run had is in that file: the built-ins' on_run_end still fires.
    assert ("OutputScalars", "on_run_end") in [(p["plugin"], p["hook"]) for p in rec["plugins"]]


def test_two_detached_runs_started_at_the_same_moment(proj: Project) -> None:
    gate = proj.root / "gate"
    procs = [proj.spawn("run", "train", f"lr={lr}", f"gate={gate}", "-b", "-y") for lr in (0.1, 0.2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = [out.strip() for out, _ in outs]
    assert len(set(ids)) == 2 and all(map(is_run_id, ids))
    wait_until(lambda: all((proj.runs_dir / i / "started").exists() for i in ids), what="both scripts to start")
    gate.touch()
    recs = [wait_ended(proj, run_id) for run_id in ids]
    assert [r["status"] for r in recs] == ["completed", "completed"]
    assert sorted(r["flags"]["lr"] for r in recs) == [0.1, 0.2]
    assert recs[0]["pid"] != recs[1]["pid"]
    assert sorted(e["id"] for e in ends(proj)) == sorted(ids)
