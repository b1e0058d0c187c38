"""``compare`` and ``view`` show a batch's study: the best trial, every trial's objective in order
with the best so far, flag importances (Optuna's), and pruned trials' curves that end where they
were pruned.

Most tests read one batch written in-process, as ``tests/test_view.py`` does: the records with
guildlite's ``Run``, each trial's ``scalars.jsonl`` from ``tests/scripts/bowl.py``'s own curve, and
the study through the owner's API (``Study.open``, ``add``, ``report``, ``tell``) in the order a
search would tell it. So the numbers every view shows are known here independently, whatever
machine runs the tests. The page is checked in a real chromium (``test_view.py``'s driver).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _browser import _Browser, _need
from test_view import _guildlite, _page_data

from guildlite._run import Run, load_run

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import bowl  # noqa: E402

BATCH = "20260301T090000-5ea000"
TRIALS = [f"20260301T0900{i + 1:02d}-5ea{i + 1:03d}" for i in range(16)]
STEPS = 10
PRUNED_AT = 3  # a pruned trial's last step
SPEC = {"optimizer": "tpe", "scalar": "loss", "direction": "minimize", "objective": "last", "max_trials": 16,
        "seed": 7, "prune": {"kind": "median", "min_steps": 2, "warmup": 4, "reduction_factor": 3}}


def _pruned_status() -> str:
    from guildlite._status import STATES

    return "pruned" if "pruned" in STATES else "terminated"  # before the status existed: stopped


def _plan() -> list[dict[str, Any]]:
    """Each trial's flags and how it ended: most completed, two failed, the clearly bad pruned."""
    rng = random.Random(11)
    out = []
    for i, run_id in enumerate(TRIALS):
        x, y, z = round(rng.uniform(-5, 5), 4), round(rng.uniform(-5, 5), 4), round(rng.uniform(0, 1), 4)
        final = bowl.final_loss(x, y)
        end = "failed" if i in (5, 12) else "pruned" if i >= 4 and final > 8 else "completed"
        out.append({"id": run_id, "number": i, "flags": {"x": x, "y": y, "z": z, "steps": STEPS}, "end": end})
    return out


PLAN = _plan()


def _write_runs(runs_dir: Path) -> Path:
    from guildlite._study import Study

    runs_dir.mkdir(parents=True)
    iso = lambda s: f"2026-03-01T09:{s // 60:02d}:{s % 60:02d}.000+00:00"  # noqa: E731
    batch = Run(id=BATCH, run_dir=runs_dir / BATCH, op="bowl", is_batch=True, status="completed",
                flags={"x": "uniform[-5:5]", "y": "uniform[-5:5]", "z": "uniform[0:1]", "steps": STEPS},
                batch={"dims": ["x", "y", "z"], "search": SPEC, "trials": len(TRIALS)}, trial_ids=TRIALS,
                created=iso(0), started=iso(0), stopped=iso(40))
    batch.run_dir.mkdir()
    batch.save()
    batch = load_run(batch.run_dir)
    study = Study.open(batch)
    assert study is not None
    for i, p in enumerate(PLAN):
        status = {"completed": "completed", "failed": "error", "pruned": _pruned_status()}[p["end"]]
        run = Run(id=p["id"], run_dir=runs_dir / p["id"], op="bowl", is_trial=True, parent_id=BATCH,
                  flags=p["flags"], status=status, exit_code=0 if status == "completed" else 1,
                  created=iso(i * 2), started=iso(i * 2), stopped=iso(i * 2 + 3))
        run.run_dir.mkdir()
        run.save()
        last = {"failed": 1, "pruned": PRUNED_AT}.get(p["end"], STEPS - 1)
        rows = [{"step": s, "key": "loss", "value": bowl.loss_at(**p["flags"] | {"steps": STEPS}, step=s)}
                for s in range(last + 1)]
        run.paths.scalars.write_text("".join(json.dumps(r) + "\n" for r in rows))
        study.add(run)
        for r in rows:
            study.report(run, r["step"], r["value"])
        study.tell(run, rows[-1]["value"] if p["end"] == "completed" else p["end"])
    Study.forget(batch)
    return runs_dir


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need("optuna")
    return _write_runs(tmp_path_factory.mktemp("study") / "runs")


def _final(p: dict[str, Any]) -> float:
    return bowl.loss_at(**p["flags"] | {"steps": STEPS}, step=STEPS - 1)


def _expected_best() -> dict[str, Any]:
    done = [p for p in PLAN if p["end"] == "completed"]
    return min(done, key=_final)


def _digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


# --- the bowl script ---------------------------------------------------------------------------


def test_bowl_is_deterministic_and_lowest_at_its_minimum() -> None:
    script = Path(__file__).parent / "scripts" / "bowl.py"
    out = [subprocess.run([sys.executable, str(script), "--x", "0.7", "--y", "-1.3", "--steps", "5", "--seed", "3"],
                          capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert out[0] == out[1]
    lines = out[0].splitlines()
    assert lines[0::2] == [f"step: {s}" for s in range(5)]
    losses = [float(x.split(": ")[1]) for x in lines[1::2]]
    assert losses == pytest.approx([bowl.loss_at(0.7, -1.3, 0.0, s, 5, 3) for s in range(5)], rel=1e-5)
    assert losses[-1] == pytest.approx(bowl.FLOOR, rel=0.1) and losses[0] > 2.5 * losses[-1]
    assert bowl.final_loss(0.7, -1.3) < min(bowl.final_loss(x, y) for x in (-1, 0, 2) for y in (-3, 0, 1))
    p = subprocess.run([sys.executable, str(script), "--x", "5", "--fail-above", "10"], capture_output=True, text=True)
    assert p.returncode == 1 and p.stdout.count("loss:") == 1


# --- compare -------------------------------------------------------------------------------------


def test_compare_shows_the_study_under_the_table(runs_dir: Path) -> None:
    p = _guildlite("compare", "--batch", BATCH, runs_dir=runs_dir)
    table, study = p.stdout.split(f"\nstudy of batch {BATCH}: ", 1)
    assert len(table.strip().splitlines()) == 1 + len(TRIALS)  # the table as before, then the study
    best = _expected_best()
    lines = study.splitlines()
    assert lines[0] == "optimizer tpe, minimize loss (last value), pruned by median (min steps 2, warmup 4, " \
                       "reduction factor 3)"
    counts = {e: sum(p["end"] == e for p in PLAN) for e in ("completed", "failed", "pruned")}
    assert f"{len(TRIALS)} trials:" in lines[1] and f"{counts['completed']} completed" in lines[1]
    assert f"{counts['failed']} error" in lines[1] and f"{counts['pruned']} pruned" in lines[1]
    assert re.search(rf"best: trial {best['number']}, run {best['id']}  loss {_final(best):.6g}  x=", lines[2])
    assert lines[3].startswith(f"  flag importances (Optuna, from {counts['completed']} completed trials): ")
    assert f"guildlite compare --study --batch {BATCH}" in lines[-1]
    # A compare of other runs only says nothing of studies; --csv and --json keep their shape.
    csv = _guildlite("compare", "--batch", BATCH, "--csv", runs_dir=runs_dir).stdout
    assert "study" not in csv and len(csv.splitlines()) == 1 + len(TRIALS)
    assert isinstance(json.loads(_guildlite("compare", "--batch", BATCH, "--json", runs_dir=runs_dir).stdout), list)


def test_compare_study_lists_every_trial_in_order(runs_dir: Path) -> None:
    (view,) = json.loads(_guildlite("compare", "--study", "--batch", BATCH, "--json", runs_dir=runs_dir).stdout)
    assert view["batch"] == BATCH and view["source"] == "study" and view["note"] is None
    assert (view["scalar"], view["direction"], view["objective"], view["optimizer"]) == ("loss", "minimize", "last", "tpe")
    trials = view["trials"]
    assert [t["run"] for t in trials] == TRIALS and [t["number"] for t in trials] == list(range(len(TRIALS)))
    best_so_far = None
    for t, p in zip(trials, PLAN):
        assert t["flags"]["x"] == p["flags"]["x"]
        if p["end"] == "completed":
            assert t["status"] == "completed" and t["value"] == pytest.approx(_final(p), rel=1e-9)
            best_so_far = t["value"] if best_so_far is None else min(best_so_far, t["value"])
        else:
            assert t["value"] is None  # failed and pruned trials have no objective
        assert t["best_so_far"] == best_so_far
    pruned = [t for t, p in zip(trials, PLAN) if p["end"] == "pruned"]
    assert pruned and all(t["status"] == "pruned" and t["step"] == PRUNED_AT for t in pruned)
    assert all(t["last"] > max(x["value"] for x in trials if x["value"] is not None) * 0.5 for t in pruned)
    assert view["best"]["run"] == _expected_best()["id"] and view["best"]["number"] == _expected_best()["number"]
    assert view["varying"] == ["x", "y", "z"]
    imp = view["importances"]
    assert set(imp) == {"x", "y", "z"} and sum(imp.values()) == pytest.approx(1.0, abs=1e-6)
    assert view["importances_from"] == sum(p["end"] == "completed" for p in PLAN)

    text = _guildlite("compare", "--study", BATCH, runs_dir=runs_dir).stdout  # a selector naming the batch
    head, table, bars = text.split("\n\n")
    assert head.startswith(f"study of batch {BATCH}: optimizer tpe")
    rows = table.splitlines()
    assert rows[0].split() == ["trial", "run", "status", "objective", "best", "so", "far", "last", "step", "x", "y", "z"]
    assert [r.split()[1] for r in rows[1:]] == TRIALS
    assert rows[1 + _expected_best()["number"]].split()[2] == "*"  # the best trial marked
    assert bars.splitlines()[0].startswith("flag importances (Optuna, from ")
    assert {b.split()[0] for b in bars.splitlines()[1:]} == {"x", "y", "z"}

    csv = _guildlite("compare", "--study", BATCH, "--csv", runs_dir=runs_dir).stdout.splitlines()
    assert csv[0] == "batch,trial,run,status,objective,best so far,last,step,best,x,y,z"
    assert [line.split(",")[2] for line in csv[1:]] == TRIALS
    assert [line.split(",")[8] for line in csv[1:]].count("True") == 1


def test_compare_study_of_runs_without_one_is_a_clear_error(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / TRIALS[0]).mkdir()
    Run(id=TRIALS[0], run_dir=runs_dir / TRIALS[0], op="bowl", status="completed").save()
    p = _guildlite("compare", "--study", runs_dir=runs_dir, check=False)
    assert p.returncode == 2 and "no batch with a study" in p.stderr and "Traceback" not in p.stderr
    assert json.loads(_guildlite("compare", "--study", "--json", runs_dir=runs_dir).stdout) == []


def test_reading_the_study_writes_nothing(runs_dir: Path, tmp_path: Path) -> None:
    """compare and view only read: the batch dir (its study journal) is left byte for byte as it was."""
    _need("plotly")
    before = _digest(runs_dir / BATCH)
    _guildlite("compare", "--study", BATCH, runs_dir=runs_dir)
    _guildlite("compare", "--batch", BATCH, runs_dir=runs_dir)
    _guildlite("view", BATCH, "--out", str(tmp_path / "r.html"), runs_dir=runs_dir)
    assert _digest(runs_dir / BATCH) == before


@pytest.mark.parametrize("damage", ["no optuna", "garbage journal", "journal is a symlink out", "journal is a dir"])
def test_a_study_that_cannot_be_read_still_shows_from_the_runs(runs_dir: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy, symlinks=True)
    journal = copy / BATCH / ".guildlite" / "study.journal"
    env = dict(os.environ)
    if damage == "garbage journal":
        journal.write_bytes(b"\x00\xffnot json\n{\"op_code\": 99}\n")
    elif damage == "journal is a symlink out":
        secret = tmp_path / "secret.journal"
        secret.write_bytes(journal.read_bytes())
        journal.unlink()
        journal.symlink_to(secret)
    elif damage == "journal is a dir":
        journal.unlink()
        journal.mkdir()
    code = ("import sys; sys.modules['optuna'] = None\n" if damage == "no optuna" else "") + \
        "from guildlite.cli import main; main()"
    args = ["compare", "--study", BATCH, "--json", "--runs-dir", str(copy)]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    (view,) = json.loads(p.stdout)
    assert view["source"] == "runs" and "objectives from the runs' scalars" in view["note"]
    if damage == "no optuna":
        assert "pip install guildlite[search]" in view["note"]
    assert view["best"]["run"] == _expected_best()["id"]  # the same best, from the trials' last loss
    assert view["importances"] is None and "not read" in view["importances_note"]
    completed = [t for t in view["trials"] if t["status"] == "completed"]
    assert len(completed) == sum(p["end"] == "completed" for p in PLAN)
    assert all(t["value"] == pytest.approx(t["last"]) for t in completed)
    text = subprocess.run([sys.executable, "-c", code, *(a for a in args if a != "--json")], capture_output=True,
                          text=True, timeout=60, env=env)
    assert text.returncode == 0 and "note: the study " in text.stdout


def test_compare_of_a_random_batch_with_a_cold_index(runs_dir: Path, tmp_path: Path) -> None:
    """The batch record's distributions (uniform[-5:5]) go into the runs index as its run.json has them."""
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    (copy / ".index.sqlite").unlink(missing_ok=True)
    p = _guildlite("compare", "--json", runs_dir=copy)
    assert {r["id"] for r in json.loads(p.stdout)} == set(TRIALS)
    p = _guildlite("compare", BATCH, "--json", runs_dir=copy)
    assert json.loads(p.stdout)[0]["x"] == "uniform[-5:5]"


# --- view ----------------------------------------------------------------------------------------


def test_view_data_has_the_study(runs_dir: Path) -> None:
    from guildlite._selection import list_runs
    from guildlite._view_data import load_view, view_data

    data = view_data(list_runs(runs_dir), runs_dir)
    rows = {r["id"]: r for r in data["runs"]}
    study = rows[BATCH]["study"]
    assert study["best"]["run"] == _expected_best()["id"] and [t["run"] for t in study["trials"]] == TRIALS
    assert all(rows[t]["study"] is None for t in TRIALS)
    pruned = [p["id"] for p in PLAN if p["end"] == "pruned"]
    for run_id in pruned:  # its curve ends where it was pruned
        assert rows[run_id]["series"]["loss"]["step"][-1] == PRUNED_AT
    assert "study" not in load_view(runs_dir, details=False)["runs"][0]  # the server sends it with the details



def test_browser_shows_the_study(runs_dir: Path, browser: _Browser, tmp_path: Path) -> None:
    out = tmp_path / "study.html"
    _guildlite("view", "--out", str(out), runs_dir=runs_dir)
    rows = {r["id"]: r for r in _page_data(out.read_text())["runs"]}
    assert rows[BATCH]["study"]["batch"] == BATCH
    dom = browser.dom(f"{out.as_uri()}#run={BATCH}")
    assert 'data-ready="1"' in dom and re.search(r'<div id="errors" hidden="">\s*</div>', dom)
    panel = dom.split('<section id="panel">', 1)[1]
    assert "<h3>Study</h3>" in panel and "optimizer tpe, minimize loss (last value), pruned by median" in panel
    best = _expected_best()
    assert re.search(rf'best: trial {best["number"]}, <a href="#run={best["id"]}">{best["id"]}</a>', panel)
    history = panel.split('class="plot study-history js-plotly-plot"', 1)[1].split('class="controls"', 1)[0]
    n_done = sum(p["end"] == "completed" for p in PLAN)
    n_pruned = sum(p["end"] == "pruned" for p in PLAN)
    # One point per trial with an objective, one x per pruned trial, the best-so-far line.
    assert history.count('<path class="point') == n_done + n_pruned
    assert "best so far" in history and "pruned (last reported)" in history
    importances = panel.split('class="plot study-importances js-plotly-plot"', 1)[1]
    assert 'class="trace bars"' in importances and importances.count('class="point"') == 3  # a bar per flag

    # The pruned trials' curves (ticked with the batch): they end at the step they were pruned.
    curves = dom.split('<div id="curves">', 1)[1].split("</section>", 1)[0]
    if _pruned_status() == "pruned":
        assert curves.count("(pruned)") >= n_pruned


def test_browser_history_by_time_and_a_study_without_importances(browser: _Browser, tmp_path: Path) -> None:
    """x by time (from the URL); a study with one completed trial says why it has no importances."""
    from guildlite._study import Study

    runs_dir = tmp_path / "runs"
    _write_runs(runs_dir)
    # Make the journal that of a study with one trial told: every later one is left out.
    Study.forget(load_run(runs_dir / BATCH))
    journal = runs_dir / BATCH / ".guildlite" / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    first_tell = next(i for i, x in enumerate(lines) if json.loads(x).get("op_code") == 6 and json.loads(x).get("state") == 1)
    journal.write_bytes(b"".join(lines[: first_tell + 1]))
    out = tmp_path / "one.html"
    _guildlite("view", "--out", str(out), runs_dir=runs_dir)
    dom = browser.dom(f"{out.as_uri()}#run={BATCH}&history=time")
    assert 'data-ready="1"' in dom and re.search(r'<div id="errors" hidden="">\s*</div>', dom)
    panel = dom.split('<section id="panel">', 1)[1]
    assert "seconds since the first trial started" in panel
    assert "no flag importances yet: Optuna needs at least 2 completed trials (1 so far)" in panel


# --- end to end: a pruned batch run for real ----------------------------------------------------

E2E_GUILDFILE = """\
operations:
  bowl:
    main: bowl.py
    launcher: python
    flags-import: all
    progress-interval: 0.1
"""


def test_a_pruned_grid_shows_its_study_and_curves_that_end_where_pruned(make_project: Any) -> None:
    """A grid (no optimizer) with --prune median, one trial at a time: three good trials complete,
    the clearly bad last one is pruned well before its last step. compare and view show it so."""
    _need("optuna")
    script = (Path(__file__).parent / "scripts" / "bowl.py").read_text()
    proj = make_project(guildfile=E2E_GUILDFILE, files={"bowl.py": script})
    steps = 40
    p = proj.run("run", "bowl", "x=[0.7,0.6,0.8,4.5]", "y=-1.3", f"steps={steps}", "sleep=0.03", "--minimize", "loss",
                 "--prune", "median", "--prune-warmup", "3", "--prune-min-steps", "2", "-y", timeout=240)
    assert p.returncode == 0, p.stderr
    batch = next(r for r in proj.records() if r.get("is_batch"))
    (view,) = proj.run_json("compare", "--study", "--json")
    assert view["batch"] == batch["id"] and view["source"] == "study" and view["optimizer"] is None
    assert [t["flags"]["x"] for t in view["trials"]] == [0.7, 0.6, 0.8, 4.5]
    assert [t["status"] for t in view["trials"]] == ["completed"] * 3 + ["pruned"]
    assert [t["number"] for t in view["trials"]] == [0, 1, 2, 3]
    pruned = view["trials"][3]
    rows = [json.loads(x) for x in (proj.runs_dir / pruned["run"] / "scalars.jsonl").read_text().splitlines()]
    assert pruned["value"] is None and pruned["step"] == rows[-1]["step"] < steps - 1  # stopped before its end
    assert pruned["last"] == rows[-1]["value"]
    done = view["trials"][:3]
    for t in done:
        last = [json.loads(x) for x in (proj.runs_dir / t["run"] / "scalars.jsonl").read_text().splitlines()][-1]
        assert t["value"] == last["value"] and last["step"] == steps - 1
    assert view["best"]["run"] == min(done, key=lambda t: t["value"])["run"]
    assert view["counts"] == {"completed": 3, "pruned": 1}
    text = proj.run("compare")
    assert text.returncode == 0 and f"study of batch {batch['id']}: no optimizer" in text.stdout
    assert "4 trials: 3 completed, 1 pruned" in text.stdout

    from guildlite._selection import list_runs
    from guildlite._view_data import view_data

    series = {r["id"]: r["series"] for r in view_data(list_runs(proj.runs_dir), proj.runs_dir)["runs"]}
    assert series[pruned["run"]]["loss"]["step"][-1] == pruned["step"]  # the page's curve ends there too
