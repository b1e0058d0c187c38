"""Pruning at run time: the status ``pruned`` (the status table, listings, choices), trials of a
batch stopped early through their backend when the batch's pruner says so, their slots given to
the next trials at once, and batch ends and restarts that count them done.

Real ``guildlite`` processes; the job is a plain argparse script with no guildlite code that prints
``step: N`` / ``loss: X`` each step, its loss curve set by its ``lr`` flag (far from 0.1: clearly
bad at every step).
"""

from __future__ import annotations

import json
import os
import shlex
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error, read_scalars

STEPS = 40

TRAIN = textwrap.dedent(
    """\
    import argparse, time

    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--sleep", type=float, default=0.1)
    p.add_argument("--crash", type=int, default=0)
    p.add_argument("--garbage", type=int, default=0)
    a = p.parse_args()
    if a.crash:
        raise SystemExit(3)
    if a.garbage:  # rows of its own in scalars.jsonl, as log_scalars writes them, but not numbers
        import os
        with open(os.path.join(os.environ["GUILDLITE_RUN_DIR"], "scalars.jsonl"), "a") as f:
            f.write('{"step": "x", "key": "loss", "value": "abc"}\\n{"step": true, "key": "loss", "value": [1]}\\n')
            f.write('{"step": "?", "key": "loss", "value": 1' + "0" * 400 + '}\\n')
            f.write('{"step": 1, "key": "loss", "value": true}\\n{"key": "loss"}\\n')
    for step in range(a.steps):
        print(f"step: {step}", flush=True)
        print(f"loss: {abs(a.lr - 0.1) * 100 + 1.0 / (step + 1):.6f}", flush=True)
        time.sleep(a.sleep)
    """
)

GUILDFILE = textwrap.dedent(
    f"""\
    operations:
      train:
        main: train.py
        launcher: python
        progress-interval: 0.1
        flags:
          lr: 0.1
          steps: {STEPS}
          sleep: 0.06
          crash: 0
          garbage: 0
      gpu:
        main: train.py
        launcher: python
        progress-interval: 0.1
        gpus-per-trial: 1
        flags:
          lr: 0.1
          steps: {STEPS}
          sleep: 0.06
    """
)

# A plugin of the user's own that prunes with the public API (StopRun(..., pruned=True)).
USER_PRUNER = textwrap.dedent(
    """\
    from guildlite import Plugin, StopRun

    class Diverged(Plugin):
        def on_run_progress(self, run):
            loss = run.scalars.get("loss")
            if loss is not None and loss > 100:
                raise StopRun(f"loss {loss} diverged", pruned=True)

    class TooEarly(Plugin):
        def on_run_begin(self, run):
            raise StopRun("no budget left", pruned=True)
    """
)


@pytest.fixture
def proj(make_project: Callable[..., Project]) -> Project:
    return make_project(guildfile=GUILDFILE, files={"train.py": TRAIN})


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _trials(proj: Project, batch: dict[str, Any]) -> list[dict[str, Any]]:
    return [proj.record(t) for t in batch["trials"]]


def _batch(proj: Project) -> dict[str, Any]:
    (batch,) = [r for r in proj.records() if r.get("is_batch")]
    return batch


def _steps(proj: Project, run_id: str) -> list[int]:
    return sorted({r["step"] for r in read_scalars(proj.runs_dir / run_id) if r["key"] == "loss"})


# --- the status table -----------------------------------------------------------------------------


def test_pruned_is_an_end_that_a_batch_counts_done() -> None:
    from guildlite import _record, _status

    assert "pruned" in _status.STATES and "pruned" in _status.ENDED and "pruned" not in _status.ACTIVE
    assert _record.STATUSES == _status.STATES  # what a record may say is what the table knows
    for old in ("pending", "running"):  # pending: a cluster job its owner still reads queued
        assert _status.moved(old, "pruned") == "pruned"
    assert _status.moved("pruned", "staged") == "staged"  # a restart of that trial
    for old in ("staged", "pruned", "completed"):
        with pytest.raises(_status.BadMove):
            _status.moved(old, "pruned" if old != "pruned" else "running")
    assert _status.batch_end({"completed": 2, "pruned": 3}, 5, stopped=False) == ("completed", None)
    assert _status.batch_end({"pruned": 4}, 4, stopped=False) == ("completed", None)
    status, error = _status.batch_end({"completed": 1, "pruned": 1, "error": 1}, 3, stopped=False)
    assert status == "error" and error == {"message": "1 of 3 trials did not complete"}
    assert _status.batch_end({"pruned": 2}, 2, stopped=True)[0] == "terminated"
    assert _status.exit_status("pruned", 143) == 0  # it did what was asked: 143 stays in its record
    assert _status.exit_status("terminated", None) == 143


def test_a_stop_request_says_pruned_only_in_its_own_words(tmp_path: Path) -> None:
    """What a node reads (``stopped_as``) is untrusted: a FIFO is not waited on, a link not
    followed, a huge file not read whole, anything else is a plain stop."""
    from guildlite._status import request_prune, stopped_as

    req = tmp_path / "stop"
    assert stopped_as(req) == "terminated"  # none
    req.touch()
    assert stopped_as(req) == "terminated"  # `guildlite stop`, a cancel
    request_prune(req)
    assert stopped_as(req) == "pruned"
    req.write_text("pruned" + " " * 100 + "x")
    assert stopped_as(req) == "terminated"
    req.write_bytes(b"pruned" * 10_000_000)  # 60 MB: only a few bytes are read
    assert stopped_as(req) == "terminated"
    target = tmp_path / "elsewhere"
    target.write_text("pruned")
    req.unlink()
    req.symlink_to(target)
    assert stopped_as(req) == "terminated"
    req.unlink()
    os.mkfifo(req)
    assert stopped_as(req) == "terminated"  # returns at once: no writer is waited for


def test_steps_of_a_script_that_prints_none_count_up() -> None:
    """The k-th value of each trial is compared with the others' k-th, with or without steps."""
    from guildlite._pruning import Pruning

    p = Pruning()
    assert [p._step("a", s) for s in (0, 0, 0, None, True)] == [0, 1, 2, 3, 4]
    assert [p._step("b", s) for s in (5, 10, 10, 7, 20)] == [5, 10, 11, 12, 20]


def test_a_progress_save_writes_only_what_hooks_write(tmp_path: Path) -> None:
    """While a job runs on a cluster its node records status, attempts and times; the owner's save
    after on_run_progress (the pruner's, any plugin's) writes the hooks' attrs and trace only, so
    the node's attempt is still there to be ended ``pruned``."""
    from guildlite._run import raw_run
    from guildlite._store import update_record

    d = tmp_path / "20260101T000000-000aaa"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"id": d.name, "op": "train", "status": "pending", "flags": {},
                                            "label": "", "tags": [], "attrs": {}, "attempts": []}))
    owner = raw_run(d)  # as the owner holds it: pending, no attempt yet
    update_record(d, lambda rec: rec.update(status="running", attempts=[{"job_id": "7", "status": "running"}]))
    owner.attrs["Pruning"] = {"step": 3, "value": 9.5}
    owner.plugins.append({"plugin": "Pruning", "hook": "on_run_progress", "priority": 10, "start": 1.0,
                          "seconds": 0.1, "error": None, "calls": 4, "failed": 0})
    owner.save(only=("plugins",))
    rec = json.loads((d / "run.json").read_text())
    assert rec["status"] == "running" and rec["attempts"] == [{"job_id": "7", "status": "running"}]  # the node's
    assert rec["attrs"] == {"Pruning": {"step": 3, "value": 9.5}} and rec["plugins"][-1]["calls"] == 4
    (d / "run.json").write_text("{")  # unreadable: the owner, which holds the whole record, writes it whole
    owner.save(only=("plugins",))
    assert json.loads((d / "run.json").read_text())["status"] == "pending"


def test_the_built_in_passes_plugin_validation() -> None:
    from guildlite._plugin_loader import check_plugin
    from guildlite._pruning import Pruning, prunes

    check_plugin(Pruning(), "built-in")
    assert prunes({"search": {"scalar": "loss", "prune": {"kind": "median"}}})
    assert prunes({"search": {"scalar": "loss", "optimizer": "tpe", "prune": None}})  # its report may prune
    assert not prunes({"search": {"scalar": "loss", "optimizer": None, "prune": None}})  # a grid's study only
    assert not prunes(None) and not prunes({})
    assert not prunes({"search": "prune"})  # a record is input


# --- pruning a batch ------------------------------------------------------------------------------


def test_median_pruning_stops_bad_trials_and_gives_their_slots_to_the_next(proj: Project) -> None:
    """A grid with --prune median over two GPU slots: the good trials (each a little better than those
    before it, so never worse than their median) complete; each clearly bad one is stopped before
    its last step (SIGTERM: exit 143, recorded) and ends pruned; the next trial takes its GPU and
    starts before the pruned one would have ended; the batch completes, and guildlite exits 0."""
    cp = proj.run("run", "gpu", "lr=[0.104,0.103,5.0,0.102,6.0,0.101]", "--prune", "median", "--minimize", "loss",
                  "--gpus", "0,1", "--parallel", "2", "-y", timeout=240)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    batch = _batch(proj)
    assert batch["status"] == "completed", batch
    assert batch["batch"]["summary"] == {"completed": 4, "pruned": 2}
    t1, t2, t3, t4, t5, t6 = trials = _trials(proj, batch)
    assert [t["status"] for t in trials] == ["completed", "completed", "pruned", "completed", "pruned", "completed"]
    for t in (t1, t2, t4, t6):
        assert _steps(proj, t["id"]) == list(range(STEPS)) and t["exit_code"] == 0
    for bad in (t3, t5):
        steps = _steps(proj, bad["id"])
        assert steps and steps[-1] < STEPS - 1, steps  # its curve ends where it was pruned
        assert bad["exit_code"] == 143  # SIGTERM through the backend's stop, recorded
        assert bad["error"]["plugin"] == "Pruning" and bad["error"]["hook"] == "on_run_progress"
        assert "pruned (median) at step" in bad["error"]["message"]
        assert bad["attrs"]["Pruning"]["step"] <= steps[-1]
    # Each pruned trial's GPU (and slot) went to the next trial at once: the next trial to lease its
    # GPU started before the pruned one would have ended, had it run as long as the trials that
    # completed (they run the same steps). The GPU is free when the job's process is gone, which may
    # be a moment before its end is recorded: the order is of starts, not of the recorded stop.
    full = min(_time(t["stopped"]) - _time(t["started"]) for t in trials if t["status"] == "completed")
    followed = 0
    for bad in (t3, t5):
        assert _time(bad["stopped"]) < _time(bad["started"]) + full  # it did end early
        after = [t for t in trials if t["gpus"] == bad["gpus"] and _time(t["started"]) > _time(bad["started"])]
        if after:  # (the last trials may all lease the other GPU)
            followed += 1
            nxt = min(after, key=lambda t: _time(t["started"]))
            assert _time(nxt["started"]) < _time(bad["started"]) + full, (bad, nxt, full)
    assert followed, trials
    ends = [line for line in cp.stderr.splitlines() if "| done" in line]
    assert sum(f"{bad['id']} pruned | done" in line for line in ends for bad in (t3, t5)) == 2, cp.stderr
    assert ends and all("failed 0" in line for line in ends), ends  # a pruned trial did not fail

    listed = proj.run_json("runs", "--status", "pruned", "--json")
    assert sorted(r["id"] for r in listed) == sorted([t3["id"], t5["id"]])
    assert all(r["status"] == "pruned" for r in listed)
    rows = proj.run_json("compare", "--status", "pruned", "--json")
    assert sorted(r["id"] for r in rows) == sorted([t3["id"], t5["id"]])


def test_restart_of_a_batch_leaves_pruned_trials_alone(proj: Project) -> None:
    """A restarted batch runs again only the trials that did not complete or get pruned (here the
    one that crashed); its pruned and completed trials keep their end and their attempts."""
    cp = proj.run("run", "train", "lr=[0.1,5.0]", "crash=[0,1]", "steps=15", "--prune", "median", "--minimize",
                  "loss", "--parallel", "1", "-y", timeout=240)
    batch = _batch(proj)
    assert batch["status"] == "error", (batch, cp.stderr)
    before = {t["id"]: t for t in _trials(proj, batch)}
    by_flags = {(t["flags"]["lr"], t["flags"]["crash"]): t for t in before.values()}
    assert by_flags[(0.1, 0)]["status"] == "completed"
    assert by_flags[(5.0, 0)]["status"] == "pruned"
    assert {by_flags[(0.1, 1)]["status"], by_flags[(5.0, 1)]["status"]} == {"error"}

    cp = proj.run("run", "--restart", batch["id"], "-y", timeout=240)
    after = {t["id"]: proj.record(t["id"]) for t in before.values()}
    for key in ((0.1, 0), (5.0, 0)):
        tid = by_flags[key]["id"]
        assert after[tid]["status"] == before[tid]["status"] and after[tid]["started"] == before[tid]["started"]
        assert after[tid]["attempts"] == []
    for key in ((0.1, 1), (5.0, 1)):
        tid = by_flags[key]["id"]
        assert len(after[tid]["attempts"]) == 1 and after[tid]["status"] == "error"


def test_a_users_plugin_prunes_with_the_public_api(make_project: Callable[..., Project]) -> None:
    """``StopRun(reason, pruned=True)`` from any on_run_progress: the run ends pruned (not
    terminated), its error names the plugin, guildlite exits 0; listed under --status pruned."""
    gf = GUILDFILE.replace("    launcher: python\n", "    launcher: python\n    plugins: [myplugins:Diverged]\n")
    proj = make_project(guildfile=gf, files={"train.py": TRAIN, "myplugins.py": USER_PRUNER})
    cp = proj.run("run", "train", "lr=5.0", "-y", timeout=120)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    rec = proj.only_record()
    assert rec["status"] == "pruned" and rec["exit_code"] == 143, rec
    assert rec["error"]["plugin"] == "Diverged" and "diverged" in rec["error"]["message"]
    assert _steps(proj, rec["id"])[-1] < STEPS - 1
    assert "pruned the run" in cp.stderr
    assert [r["id"] for r in proj.run_json("runs", "--status", "pruned", "--json")] == [rec["id"]]
    info = json.loads(proj.run("runs", "info", rec["id"], "--json").stdout)
    assert info["status"] == "pruned"


def test_pruned_before_the_start_is_a_veto(make_project: Callable[..., Project]) -> None:
    """``pruned`` is for a run that ran: ``StopRun(..., pruned=True)`` in on_run_begin vetoes it
    (``error``), as any StopRun there does."""
    gf = GUILDFILE.replace("    launcher: python\n", "    launcher: python\n    plugins: [myplugins:TooEarly]\n")
    proj = make_project(guildfile=gf, files={"train.py": TRAIN, "myplugins.py": USER_PRUNER})
    cp = proj.run("run", "train", "-y", timeout=120)
    rec = proj.only_record()
    assert cp.returncode != 0 and rec["status"] == "error" and rec["started"] is None, (rec, cp.stderr)
    assert rec["error"]["veto"] is True and rec["error"]["message"] == "no budget left"


def test_a_search_prunes_the_trials_it_proposes(make_project: Callable[..., Project]) -> None:
    """With an optimizer, trials are drawn as slots free; they are pruned the same way, and each
    pruned one is told to the study as pruned (the search's own record of it)."""
    from guildlite._run import load_run
    from guildlite._study import Study

    proj = make_project(guildfile=GUILDFILE.replace(f"steps: {STEPS}", "steps: 15"), files={"train.py": TRAIN})
    cp = proj.run("run", "train", "lr=uniform[0.05:5.0]", "--optimizer", "random", "--seed", "3", "--max-trials", "6",
                  "--prune", "median", "--minimize", "loss", "--parallel", "1", "-y", timeout=240)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    batch = _batch(proj)
    trials = _trials(proj, batch)
    assert batch["status"] == "completed" and len(trials) == 6
    pruned = {t["id"] for t in trials if t["status"] == "pruned"}
    assert pruned and {t["status"] for t in trials} == {"completed", "pruned"}, [t["status"] for t in trials]
    for tid in pruned:
        assert _steps(proj, tid)[-1] < 14
    study = Study.open(load_run(proj.runs_dir / batch["id"]))
    assert study is not None
    told = {row["run"]: row["state"] for row in study.summary()["trials"]}
    assert {tid for tid, state in told.items() if state == "pruned"} == pruned, told


def test_rows_a_script_writes_itself_are_input(proj: Project) -> None:
    """A script's own rows in scalars.jsonl that are not numbers (a string, a list, a bool, an
    integer past any float, no value) neither fail the pruner nor stop it pruning."""
    cp = proj.run("run", "train", "lr=[0.1,5.0]", "garbage=1", "steps=15", "--prune", "median", "--minimize", "loss",
                  "--parallel", "1", "-y", timeout=240)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    good, bad = _trials(proj, _batch(proj))
    assert (good["status"], bad["status"]) == ("completed", "pruned"), (good, bad)
    for t in (good, bad):
        (trace,) = [p for p in t["plugins"] if p["plugin"] == "Pruning"]
        assert trace["hook"] == "on_run_progress" and trace["calls"] >= 1
        assert trace["failed"] == (1 if t is bad else 0), trace  # the bad one's one "failure": its StopRun
    assert "Traceback" not in cp.stderr and "Pruning.on_run_progress failed" not in cp.stderr, cp.stderr


def test_the_readme_example_prunes_the_clearly_bad_trial(make_project: Callable[..., Project]) -> None:
    """The first command of README's "Pruning" runs as written: the batch completes, the trial far
    from lr=0.1 is pruned, the best one completes."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("### Pruning", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    argv = shlex.split(block.splitlines()[0])
    assert argv[:3] == ["guildlite", "run", "train"] and "--prune" in argv, argv
    proj = make_project(guildfile=GUILDFILE.replace(f"steps: {STEPS}", "steps: 20"), files={"train.py": TRAIN})
    cp = proj.run(*argv[1:], "-y", timeout=240)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    batch = _batch(proj)
    assert batch["status"] == "completed"
    by_lr = {t["flags"]["lr"]: t for t in _trials(proj, batch)}
    assert by_lr[3.0]["status"] == "pruned" and by_lr[0.1]["status"] == "completed", by_lr


def test_status_choices_name_pruned(proj: Project) -> None:
    for cmd in (("runs",), ("compare",)):
        cp = proj.run(*cmd, "--status", "pruned")
        assert cp.returncode == 0, (cmd, cp.stderr)
        cp = proj.run(*cmd, "--status", "prunned")
        assert cp.returncode == 2 and "pruned" in cp.stderr, (cmd, cp.stderr)


def test_the_page_colours_and_filters_pruned() -> None:
    from importlib.resources import files

    static = files("guildlite") / "static"
    assert ".st-pruned" in (static / "view.css").read_text()
    assert "<option>pruned</option>" in (static / "view.html").read_text()


def test_prune_without_a_scalar_is_refused(proj: Project) -> None:
    cp = proj.run("run", "train", "lr=[0.1,5.0]", "--prune", "median", "-y")
    assert_clean_error(cp, 2, "--prune")
    assert proj.run_dirs() == []
