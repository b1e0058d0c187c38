"""Searches that learn (``--optimizer``): trials proposed one at a time as slots free, each trial's
end told to the batch's study (an Optuna journal in the batch dir), restarts and detached
searches that go on with the same study, and every misuse refused before anything is staged.

Every search here runs the real CLI on a synthetic script with no guildlite code in it: a noisy
quadratic bowl of its flags (argparse in, ``step: N`` / ``loss: X`` lines out).
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error, run_dirs, wait_until

BOWL = textwrap.dedent(
    """\
    import argparse
    import math
    import os
    import sys
    import time

    p = argparse.ArgumentParser()
    p.add_argument("--x", type=float, default=0.0)
    p.add_argument("--y", type=float, default=0.0)
    p.add_argument("--z", type=float, default=0.0)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--act", default="relu")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--fail-above", type=float, default=9.0)
    a = p.parse_args()
    if a.x > a.fail_above or os.environ.get("BOWL_FAIL"):
        sys.exit("diverged")
    # Its minimum, 0.0 plus the last step's 1/steps, is at x=0.62, y=-0.41, z=0.17.
    bowl = (a.x - 0.62) ** 2 + (a.y + 0.41) ** 2 + (a.z - 0.17) ** 2 + 0.05 * (a.layers - 4) ** 2
    bowl += 0.0 if a.act == "relu" else 0.3
    for step in range(1, a.steps + 1):
        noise = 0.01 * math.sin(1000 * a.x + 77 * a.y + 13 * a.z + step)  # the same for the same flags
        print(f"step: {step}")
        print(f"loss: {bowl + 1.0 / step + noise:.6f}", flush=True)
        time.sleep(float(os.environ.get("BOWL_SLEEP", "0")))
    """
)

GUILDFILE = """\
operations:
  bowl:
    main: bowl.py
    launcher: python
    flags:
      x: 0.0
      y: 0.0
      z: 0.0
      layers: 2
      act: relu
      steps: 2
      fail-above: 9.0
"""

SPACE = ("x=uniform[-3:3]", "y=uniform[-3:3]", "z=uniform[-3:3]")


@pytest.fixture
def bowl(make_project: Callable[..., Project]) -> Project:
    return make_project(GUILDFILE, {"bowl.py": BOWL}, name="bowl")


def _batch(proj: Project) -> dict[str, Any]:
    batches = [r for r in proj.records() if r.get("is_batch")]
    assert len(batches) == 1, [r["id"] for r in batches]
    return batches[0]


def _trials(proj: Project, batch: dict[str, Any]) -> list[dict[str, Any]]:
    return [proj.record(t) for t in batch["trials"]]


def _summary(runs_dir: Path, batch_id: str) -> dict[str, Any]:
    """The batch's study as ``Study.summary`` reads it from the journal (a fresh process's view)."""
    from guildlite._run import load_run
    from guildlite._study import Study

    batch = load_run(runs_dir / batch_id)
    Study.forget(batch)
    study = Study.open(batch)
    assert study is not None
    return study.summary()


def _ok(cp: subprocess.CompletedProcess[str]) -> None:
    assert cp.returncode == 0, (cp.returncode, cp.stdout[-2000:], cp.stderr[-4000:])


def _time(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- searching -------------------------------------------------------------------------------------


def test_tpe_beats_random_on_the_median_over_seeds(make_project: Callable[..., Project]) -> None:
    # 32 trials, 2 at a time, over the 2-D bowl (x, y in [-5, 5]; one step: the objective is the
    # bowl plus 1.2). Random search is deterministic per seed: seeds 7, 10 and 11 give 0.93, 0.61
    # and 1.24 above the floor, around its median over seeds 1-20 (0.93). TPE's proposals depend
    # on which trials ended first: over every order of ends tried in-process, its worst for these
    # seeds was 0.17, 0.38 and 0.78, so its median over them is below random's whatever the order
    # (it is ~0.05 as a rule). The six searches run at once, each in a runs dir of its own: they
    # wait on processes far more than they use the CPUs.
    seeds = (7, 10, 11)
    procs = {}
    for opt in ("tpe", "random"):
        for seed in seeds:
            proj = make_project(GUILDFILE, {"bowl.py": BOWL}, name=f"{opt}-{seed}")
            procs[opt, seed] = (proj, proj.spawn("run", "bowl", "x=uniform[-5:5]", "y=uniform[-5:5]", "z=0.17",
                                                 "steps=1", "--optimizer", opt, "--minimize", "loss", "--max-trials",
                                                 "32", "--parallel", "2", "--seed", str(seed), "-y"))
    best: dict[str, list[float]] = {"tpe": [], "random": []}
    for (opt, seed), (proj, p) in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, (opt, seed, err[-3000:])
        batch = _batch(proj)
        assert len(batch["trials"]) == 32
        summary = _summary(proj.runs_dir, batch["id"])
        assert [t["state"] for t in summary["trials"]] == ["complete"] * 32
        best[opt].append(summary["best"]["value"] - 1.2)  # above the floor: 1/steps, and layers=2's 0.2
    assert median(best["tpe"]) < median(best["random"]), best
    assert 0.5 < median(best["random"]) < 1.5, best  # these seeds are random search's typical ones


def test_trials_are_proposed_as_slots_free_and_told_as_they_end(bowl: Project) -> None:
    cp = bowl.run("run", "bowl", *SPACE, "--optimizer", "tpe", "--minimize", "loss", "--max-trials", "6",
                  "--parallel", "2", "--seed", "5", "-y")
    _ok(cp)
    batch = _batch(bowl)
    assert batch["status"] == "completed"
    assert batch["batch"]["search"] == {"optimizer": "tpe", "scalar": "loss", "direction": "minimize",
                                        "objective": "last", "max_trials": 6, "seed": 5, "prune": None}
    trials = _trials(bowl, batch)
    assert len(trials) == 6 and all(t["status"] == "completed" for t in trials)
    # Never more trials made than slots free: trial i was staged after i - 1 others had ended.
    for i, t in enumerate(trials):
        ended_before = sum(_time(o["stopped"]) <= _time(t["created"]) for o in trials if o is not t)
        assert ended_before >= i - 1, (i, t["created"], [o["stopped"] for o in trials])
    for t in trials:
        assert all(-3 <= t["flags"][k] <= 3 for k in "xyz") and t["flags"]["steps"] == 2
    summary = _summary(bowl.runs_dir, batch["id"])
    assert [t["run"] for t in summary["trials"]] == batch["trials"]
    for row, t in zip(summary["trials"], trials):  # each told its last loss
        last = [line for line in (bowl.runs_dir / t["id"] / "output.log").read_text().splitlines() if "loss" in line]
        assert row["state"] == "complete" and row["value"] == pytest.approx(float(last[-1].split(":")[1]))
    assert summary["best"]["value"] == min(r["value"] for r in summary["trials"])
    assert summary["direction"] == "minimize" and summary["scalar"] == "loss"
    assert set(summary["importances"] or {}) <= {"x", "y", "z"}
    assert (bowl.runs_dir / batch["id"] / ".guildlite" / "study.journal").is_file()
    assert "trial 6/6" in cp.stderr  # progress counts the search's budget


def test_every_sampler_searches_lists_and_ranges(make_project: Callable[..., Project]) -> None:
    # A log range, an integer range and a list: each sampler proposes values inside them (the
    # objective's min here; --maximize for one). The searches run at once, a runs dir each.
    space = ("x=loguniform[0.01:3]", "layers=randint[1:6]", "act=[relu,tanh]")
    runs = {}
    for opt, goal in (("tpe", "--minimize"), ("cmaes", "--minimize"), ("qmc", "--minimize"), ("random", "--minimize"),
                      ("gp", "--maximize")):
        proj = make_project(GUILDFILE, {"bowl.py": BOWL}, name=opt)
        runs[opt] = (proj, proj.spawn("run", "bowl", *space, "--optimizer", opt, goal, "loss", "--objective", "min",
                                      "--max-trials", "3", "--parallel", "2", "--seed", "1", "-y"))
    for opt, (proj, p) in runs.items():
        _, err = p.communicate(timeout=300)
        if opt == "gp" and "needs" in err and "torch" in err:  # gp's own extra (torch) not installed here
            assert p.returncode == 2 and run_dirs(proj.runs_dir) == [], err
            continue
        assert p.returncode == 0, (opt, err[-3000:])
        batch = _batch(proj)
        assert batch["batch"]["search"]["optimizer"] == opt
        trials = _trials(proj, batch)
        assert len(trials) == 3
        for t in trials:
            f = t["flags"]
            assert 0.01 <= f["x"] <= 3 and f["layers"] in range(1, 7) and f["act"] in ("relu", "tanh"), f
            assert t["status"] == "completed"
        summary = _summary(proj.runs_dir, batch["id"])
        pick = max if opt == "gp" else min
        assert summary["best"]["value"] == pick(t["value"] for t in summary["trials"])


def test_grid_optimizer_tries_each_combination_once(bowl: Project) -> None:
    cp = bowl.run("run", "bowl", "layers=[2,4]", "act=[relu,tanh]", "x=range[0:1:0.5]", "--optimizer", "grid",
                  "--minimize", "loss", "--parallel", "2", "-y")
    _ok(cp)
    batch = _batch(bowl)
    assert batch["batch"]["search"]["optimizer"] == "grid"
    combos = [(t["flags"]["layers"], t["flags"]["act"], t["flags"]["x"]) for t in _trials(bowl, batch)]
    assert sorted(combos) == sorted((la, a, x) for la in (2, 4) for a in ("relu", "tanh") for x in (0.0, 0.5, 1.0))
    assert batch["batch"]["search"]["max_trials"] == 12
    # Any integer seeds a sampler (NumPy's take 0 to 2**32 - 1): the same one each time.
    for seed in ("-1", str(2**40)):
        _ok(bowl.run("run", "bowl", "layers=[2,4]", "--optimizer", "tpe", "--minimize", "loss", "--seed", seed,
                     "--max-trials", "1", "-y"))


def test_failed_trials_are_told_as_failed_and_the_search_goes_on(bowl: Project) -> None:
    # x above 0.5 fails (exit 1); a trial that logs no objective is failed too.
    cp = bowl.run("run", "bowl", "x=uniform[-1:1]", "fail-above=0.5", "--optimizer", "random", "--minimize", "loss",
                  "--max-trials", "8", "--parallel", "2", "--seed", "3", "-y")
    batch = _batch(bowl)
    trials = _trials(bowl, batch)
    assert len(trials) == 8
    failed = {t["id"] for t in trials if t["status"] == "error"}
    assert failed == {t["id"] for t in trials if t["flags"]["x"] > 0.5} and failed, [t["flags"]["x"] for t in trials]
    assert cp.returncode != 0 and batch["status"] == "error"
    states = {row["run"]: row["state"] for row in _summary(bowl.runs_dir, batch["id"])["trials"]}
    assert {r for r, s in states.items() if s == "fail"} == failed
    assert {r for r, s in states.items() if s == "complete"} == {t["id"] for t in trials} - failed

    cp = bowl.run("run", "bowl", "x=uniform[-1:1]", "--optimizer", "random", "--minimize", "acc", "--max-trials", "2",
                  "-y")
    assert "logged no acc" in cp.stderr
    last = [r for r in bowl.records() if r.get("is_batch")][-1]
    assert {row["state"] for row in _summary(bowl.runs_dir, last["id"])["trials"]} == {"fail"}


def test_restart_reruns_unfinished_trials_then_continues_the_study(bowl: Project) -> None:
    cp = bowl.run("run", "bowl", *SPACE, "--optimizer", "tpe", "--minimize", "loss", "--max-trials", "3",
                  "--seed", "7", "-y", env={"BOWL_FAIL": "1"})
    assert cp.returncode != 0
    batch = _batch(bowl)
    first = _trials(bowl, batch)
    assert [t["status"] for t in first] == ["error"] * 3
    cp = bowl.run("run", "--restart", batch["id"], "--max-trials", "5", "-y")
    _ok(cp)
    batch = _batch(bowl)
    trials = _trials(bowl, batch)
    assert batch["trials"][:3] == [t["id"] for t in first] and len(trials) == 5
    assert [t["status"] for t in trials] == ["completed"] * 5
    assert [t["flags"] for t in trials[:3]] == [t["flags"] for t in first]  # run again as they were
    assert batch["batch"]["search"]["max_trials"] == 5
    rows = _summary(bowl.runs_dir, batch["id"])["trials"]
    # The failed attempts stay in the study; the reruns and the two new trials completed.
    assert [(r["run"], r["state"]) for r in rows] == (
        [(t["id"], "fail") for t in first] + [(t["id"], "complete") for t in trials])
    firsts = {tuple(t["flags"][k] for k in "xyz") for t in trials[:3]}
    assert all(tuple(t["flags"][k] for k in "xyz") not in firsts for t in trials[3:])

    # A completed search restarted without a bigger budget has nothing left to run.
    _ok(bowl.run("run", "--restart", batch["id"], "-y"))
    assert len(_batch(bowl)["trials"]) == 5


def test_detached_search_is_proposed_by_its_supervisor(bowl: Project) -> None:
    cp = bowl.run("run", "bowl", *SPACE, "--optimizer", "tpe", "--minimize", "loss", "--max-trials", "4",
                  "--parallel", "2", "--seed", "2", "--detach", "-y")
    _ok(cp)
    batch_id = cp.stdout.strip()
    assert "batch of 4 trials" in cp.stderr
    wait_until(lambda: bowl.record(batch_id)["status"] == "completed", timeout=120, what="the detached search")
    batch = bowl.record(batch_id)
    assert len(batch["trials"]) == 4
    assert [r["state"] for r in _summary(bowl.runs_dir, batch_id)["trials"]] == ["complete"] * 4


def test_staged_search_proposes_its_trials_when_started(bowl: Project) -> None:
    cp = bowl.run("run", "bowl", *SPACE, "--optimizer", "random", "--minimize", "loss", "--max-trials", "3", "--stage",
                  "-y")
    _ok(cp)
    batch_id = cp.stdout.strip()
    assert bowl.record(batch_id)["status"] == "staged" and bowl.record(batch_id)["trials"] == []
    _ok(bowl.run("run", "--start", batch_id, "-y"))
    batch = bowl.record(batch_id)
    assert batch["status"] == "completed" and len(batch["trials"]) == 3
    assert [r["state"] for r in _summary(bowl.runs_dir, batch_id)["trials"]] == ["complete"] * 3


def test_two_searches_never_share_state(bowl: Project) -> None:
    a = bowl.spawn("run", "bowl", *SPACE, "--optimizer", "tpe", "--minimize", "loss", "--max-trials", "4", "--seed",
                   "1", "-y")
    b = bowl.spawn("run", "bowl", "x=uniform[-1:1]", "--optimizer", "random", "--maximize", "loss", "--max-trials",
                   "3", "--seed", "1", "-y")
    for p in (a, b):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    batches = [r for r in bowl.records() if r.get("is_batch")]
    assert len(batches) == 2
    journals = {bowl.runs_dir / r["id"] / ".guildlite" / "study.journal" for r in batches}
    assert len(journals) == 2 and all(j.is_file() for j in journals)
    for batch in batches:
        summary = _summary(bowl.runs_dir, batch["id"])
        assert [row["run"] for row in summary["trials"]] == batch["trials"]
        assert summary["direction"] == batch["batch"]["search"]["direction"]


def test_grid_and_random_batches_get_a_study_with_minimize(bowl: Project) -> None:
    # No optimizer: the batch's own plan, and its study records every trial's objective.
    _ok(bowl.run("run", "bowl", "layers=[2,4,6]", "--minimize", "loss", "--parallel", "2", "-y"))
    batch = _batch(bowl)
    assert batch["batch"]["search"]["optimizer"] is None
    summary = _summary(bowl.runs_dir, batch["id"])
    assert sorted(r["run"] for r in summary["trials"]) == sorted(batch["trials"])
    best = next(t for t in _trials(bowl, batch) if t["id"] == summary["best"]["run"])
    assert best["flags"]["layers"] == 4


# --- refused before anything is staged -------------------------------------------------------------


MISUSE = [
        (("x=uniform[0:1]", "--optimizer", "nosuch", "--minimize", "loss"), ("nosuch", "tpe", "grid")),
        (("x=uniform[0:1]", "--optimizer", "tpe"), ("--optimizer", "--minimize")),
        (("x=uniform[0:1]", "--prune", "median"), ("--prune", "--minimize")),
        (("x=uniform[0:1]", "--objective", "max"), ("--objective", "--minimize")),
        (("x=uniform[0:1]", "--optimizer", "tpe", "--minimize", "loss", "--maximize", "acc"), ("--minimize",)),
        (("x=uniform[0:1]", "--minimize", "loss", "--prune-warmup", "3"), ("--prune-warmup", "--prune")),
        (("x=uniform[0:1]", "--minimize", "loss", "--prune", "median", "--prune-reduction-factor", "3"), ("asha",)),
        (("x=uniform[0:1]", "--minimize", "loss", "--prune", "asha", "--prune-reduction-factor", "1"), ("at least 2",)),
        (("x=uniform[0:1]", "--minimize", "loss", "--prune", "asha", "--prune-min-steps", "-1"), ("at least 0",)),
        (("x=uniform[0:1]", "--optimizer", "grid", "--minimize", "loss"), ("grid", "continuous", "'x'")),
        (("x=0.5", "--optimizer", "tpe", "--minimize", "loss"), ("batch",)),
        (("x=0.5", "--minimize", "loss"), ("batch",)),
        (("x=uniform[0:1]", "--optimizer", "tpe", "--minimize", " "), ("scalar",)),
        (("x=uniform[0:1]", "--optimizer", "tpe", "--minimize", "loss", "--max-trials", "0"), ("--max-trials",)),
]


def test_misuse_is_a_clean_error_and_stages_nothing(bowl: Project) -> None:
    # Every case at once (each its own guildlite process), then each checked.
    procs = [(needles, bowl.spawn("run", "bowl", *args, "-y")) for args, needles in MISUSE]
    for needles, p in procs:
        out, err = p.communicate(timeout=120)
        assert_clean_error(subprocess.CompletedProcess(p.args, p.returncode, out, err), 2, *needles)
    assert run_dirs(bowl.runs_dir) == []


def test_optuna_missing_says_which_extra_to_install(bowl: Project, tmp_path: Path) -> None:
    # An optuna that cannot be imported, ahead of the real one on the path.
    fake = tmp_path / "no-optuna" / "optuna"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named optuna')\n")
    path = os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])
    for extra in (("--optimizer", "tpe"), ("--prune", "median"), ()):
        cp = bowl.run("run", "bowl", "x=uniform[0:1]", "--minimize", "loss", *extra, "-y", env={"PYTHONPATH": path})
        assert_clean_error(cp, 2, "Optuna", "pip install guildlite[search]")
    assert run_dirs(bowl.runs_dir) == []
    # Without a search, Optuna is never imported.
    _ok(bowl.run("run", "bowl", "x=[0.1,0.2]", "-y", env={"PYTHONPATH": path}))


def test_restart_refuses_search_options_and_budgets_of_plain_batches(bowl: Project) -> None:
    _ok(bowl.run("run", "bowl", "x=[0.1,0.2]", "-y"))
    batch = _batch(bowl)
    assert_clean_error(bowl.run("run", "--restart", batch["id"], "--max-trials", "5", "-y"), 2, "--optimizer")
    assert_clean_error(bowl.run("run", "--restart", batch["id"], "--optimizer", "tpe", "-y"), 2, "--restart")
    assert [t["status"] for t in _trials(bowl, _batch(bowl))] == ["completed"] * 2


def test_run_starts_without_importing_optuna(bowl: Project) -> None:
    # The CLI's start-up never imports Optuna, even to show run's help with the search options.
    cp = bowl.run("run", "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    _ok(cp)
    assert "--optimizer" in cp.stdout and "--prune-reduction-factor" in cp.stdout
    assert "optuna" not in cp.stderr


def test_stopped_search_asks_for_no_more_trials(bowl: Project) -> None:
    p = bowl.spawn("run", "bowl", "x=uniform[0:1]", "--optimizer", "tpe", "--minimize", "loss", "--max-trials", "10",
                   "--parallel", "2", "-y", env={"BOWL_SLEEP": "60"})
    wait_until(lambda: sum(r.get("status") == "running" for r in bowl.records() if not r.get("is_batch")) == 2,
               timeout=60, what="two trials running")
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    batch = _batch(bowl)
    assert len(batch["trials"]) == 2 and batch["status"] == "terminated"
    assert {row["state"] for row in _summary(bowl.runs_dir, batch["id"])["trials"]} == {"fail"}


# --- the study's API (what pruning and the views use) -----------------------------------------------


@pytest.mark.parametrize("warmup", [0, 3])
def test_study_records_values_by_step_and_says_when_to_prune(bowl: Project, warmup: int) -> None:
    from guildlite._run import load_run
    from guildlite._study import Study

    cp = bowl.run("run", "bowl", "layers=[1,2,3,4]", "--minimize", "loss", "--prune", "median", "--prune-min-steps",
                  "2", "--prune-warmup", str(warmup), "--stage", "-y")
    _ok(cp)
    batch = load_run(bowl.runs_dir / cp.stdout.strip())
    assert batch.batch is not None and batch.batch["search"]["prune"] == {
        "kind": "median", "min_steps": 2, "warmup": warmup, "reduction_factor": 3}
    study = Study.open(batch)
    assert study is not None and Study.open(batch) is study  # one per batch in a process
    good = batch.trials[:2]
    for t in good:
        assert [study.report(t, step, 1.0 / step) for step in (1, 2, 3)] == [False] * 3
        study.tell(t, 1.0 / 3)
        study.tell(t, "failed")  # told already: not told again
    bad = batch.trials[2]
    assert study.report(bad, 1, 50.0) is False  # before --prune-min-steps
    assert study.report(bad, 2, 50.0) is (warmup == 0)  # worse than the median at step 2, once warmed up
    study.tell(bad, "pruned")
    study.report(batch.trials[3], 1, float("nan"))  # not a number: not recorded
    study.tell(batch.trials[3], float("inf"))  # no objective: failed

    summary = _summary(bowl.runs_dir, batch.id)
    assert summary["best"] == {"run": good[0].id, "value": pytest.approx(1.0 / 3)}
    assert [(r["run"], r["state"]) for r in summary["trials"]] == [
        (good[0].id, "complete"), (good[1].id, "complete"), (bad.id, "pruned"), (batch.trials[3].id, "fail")]


def test_a_planted_or_damaged_study_is_refused_never_written_through(bowl: Project, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    for plant in ("link", "garbage"):
        cp = bowl.run("run", "bowl", "x=uniform[0:1]", "--optimizer", "tpe", "--minimize", "loss", "--stage", "-y")
        _ok(cp)
        batch_id = cp.stdout.strip()
        journal = bowl.runs_dir / batch_id / ".guildlite" / "study.journal"
        if plant == "link":
            journal.symlink_to(victim)
        else:
            journal.write_text("{not json\n\x00\x01\n")
        cp = bowl.run("run", "--start", batch_id, "-y")
        assert cp.returncode == 2 and "Traceback" not in cp.stderr, cp.stderr
        assert "study" in cp.stderr and batch_id in cp.stderr
        assert bowl.record(batch_id)["status"] == "error" and bowl.record(batch_id)["trials"] == []
    assert victim.read_text() == "keep me\n"
