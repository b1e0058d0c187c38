"""A third-party optimizer, installed as a real distribution, runs a search through the real CLI.

The optimizer is ``examples/optimizer/hillclimb.py`` itself, copied into a site dir beside its own
``guildlite_hillclimb-<version>.dist-info`` (METADATA, and an ``entry_points.txt`` made from the
README's ``setup.cfg`` under "Writing an optimizer"), and that dir is put on PYTHONPATH for the
``guildlite`` subprocesses: ``importlib.metadata`` finds its entry point there, as it finds the
built-ins'. Nothing in guildlite names it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Project, assert_clean_error, install_readme_example, run_dirs

EXAMPLE = ROOT / "examples" / "optimizer" / "hillclimb.py"

BOWL = """\
import argparse

p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=0.0)
p.add_argument("--n", type=int, default=1)
a = p.parse_args()
print("step: 1")
print(f"loss: {(a.x - 0.3) ** 2 + (a.n - 3) ** 2}")
"""

GUILDFILE = """\
operations:
  bowl:
    main: bowl.py
    launcher: python
    flags:
      x: 0.0
      n: 1
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dir with hillclimb installed in it, as pip would: the module and its dist-info, the entry
    point being the one the README tells an optimizer's authors to declare."""
    return install_readme_example(tmp_path_factory.mktemp("site"), "### Writing an optimizer", "guildlite.optimizers",
                                  EXAMPLE, {"hillclimb": "hillclimb:HillClimb"})


def _env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def _search(proj: Project) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    batch = next(r for r in proj.records() if r.get("is_batch"))
    batch = proj.record(batch["id"])
    return batch, [proj.record(t) for t in batch["trials"]]


def _loss(t: dict[str, Any]) -> float:
    return float((t["flags"]["x"] - 0.3) ** 2 + (t["flags"]["n"] - 3) ** 2)


def test_installed_optimizer_searches_and_goes_on_after_a_restart(make_project: Any, site: Path) -> None:
    proj = make_project(GUILDFILE, {"bowl.py": BOWL}, name="hill")
    env = _env(site)
    cp = proj.run("run", "bowl", "x=uniform[-2:2]", "n=randint[1:8]", "--optimizer", "hillclimb", "--minimize", "loss",
                  "--seed", "4", "--max-trials", "6", "-y", env=env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    batch, trials = _search(proj)
    assert batch["status"] == "completed" and batch["batch"]["search"]["optimizer"] == "hillclimb"
    assert len(trials) == 6 and all(t["status"] == "completed" for t in trials)
    # Its first trial is the middle of the space; each next one moves from the best before it
    # (it was told each end): never worse than the first by more than its step could reach.
    assert trials[0]["flags"]["x"] == 0.0 and trials[0]["flags"]["n"] == 4
    assert all(-2 <= t["flags"]["x"] <= 2 and 1 <= t["flags"]["n"] <= 8 for t in trials)
    assert len({(t["flags"]["x"], t["flags"]["n"]) for t in trials}) == 6

    # Restarted with a bigger budget: a new HillClimb, told the 6 ends, proposes 3 more from the best.
    cp = proj.run("run", "--restart", batch["id"], "--max-trials", "9", "-y", env=env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    batch, more = _search(proj)
    assert len(more) == 9 and more[:6] == trials
    best, first = min(trials, key=_loss), more[6]  # the first new one: at most a step (half a span) from the best
    assert first["flags"] not in [t["flags"] for t in trials]
    assert abs(first["flags"]["x"] - best["flags"]["x"]) <= 0.5 * 4 + 1e-6
    assert abs(first["flags"]["n"] - best["flags"]["n"]) <= round(0.5 * 7)

    # Without --max-trials, its own count (max_trials = 12).
    cp = proj.run("run", "bowl", "x=uniform[-2:2]", "n=[1,3,5]", "--optimizer", "hillclimb", "--maximize", "loss",
                  "-y", env=env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    last = [r for r in proj.records() if r.get("is_batch")][-1]
    assert len(last["trials"]) == 12


def test_installed_optimizer_is_listed_and_its_refusal_is_a_clean_error(make_project: Any, site: Path) -> None:
    proj = make_project(GUILDFILE, {"bowl.py": BOWL}, name="hill2")
    env = _env(site)
    cp = proj.run("run", "bowl", "x=uniform[-2:2]", "--optimizer", "hillklimb", "--minimize", "loss", "-y", env=env)
    assert_clean_error(cp, 2, "hillklimb", "hillclimb", "tpe")
    # Its constructor refuses: the message is the user's, exit 2, nothing staged.
    broken = site.parent / "broken-site"
    shutil.copytree(site, broken, dirs_exist_ok=True)
    (broken / "hillclimb.py").write_text("class HillClimb:\n    def __init__(self, space, spec):\n"
                                         "        raise ValueError('too many dimensions for me')\n"
                                         "    def ask(self, batch):\n        return None\n"
                                         "    def tell(self, trial, outcome):\n        pass\n")
    cp = proj.run("run", "bowl", "x=uniform[-2:2]", "--optimizer", "hillclimb", "--minimize", "loss", "-y",
                  env=_env(broken))
    assert_clean_error(cp, 2, "hillclimb", "too many dimensions for me")
    (broken / "hillclimb.py").write_text("HillClimb = 3\n")
    cp = proj.run("run", "bowl", "x=uniform[-2:2]", "--optimizer", "hillclimb", "--minimize", "loss", "-y",
                  env=_env(broken))
    assert_clean_error(cp, 2, "hillclimb", "not a class")
    assert run_dirs(proj.runs_dir) == []


FAILING = """\
class HillClimb:
    def __init__(self, space, spec):
        self.asked = 0

    def ask(self, batch):
        self.asked += 1
        if self.asked > 2:
            raise RuntimeError("lost my way")
        return {"x": 0.1 * self.asked}

    def tell(self, trial, outcome):
        pass
"""

OUTSIDE = """\
class HillClimb:
    def __init__(self, space, spec):
        pass

    def ask(self, batch):
        return {"x": 7.5}

    def tell(self, trial, outcome):
        pass
"""


@pytest.mark.parametrize(("module", "why", "trials"), [(FAILING, "RuntimeError: lost my way", 2),
                                                        (OUTSIDE, "x=7.5, outside uniform[-2:2]", 0)])
def test_a_failing_optimizer_ends_its_search_as_an_error(make_project: Any, site: Path, tmp_path: Path, module: str,
                                                         why: str, trials: int) -> None:
    # Its trials so far run to their end; it is asked nothing more; the batch is an error saying why.
    broken = tmp_path / "broken-site"
    shutil.copytree(site, broken)
    (broken / "hillclimb.py").write_text(module)
    proj = make_project(GUILDFILE, {"bowl.py": BOWL}, name="failing")
    cp = proj.run("run", "bowl", "x=uniform[-2:2]", "--optimizer", "hillclimb", "--minimize", "loss",
                  "--max-trials", "5", "-y", env=_env(broken))
    assert cp.returncode != 0 and "Traceback" not in cp.stderr, cp.stderr
    assert why in cp.stderr
    batch, done = _search(proj)
    assert batch["status"] == "error" and why in batch["error"]["message"]
    assert len(done) == trials and all(t["status"] == "completed" for t in done)
