"""``guildlite select --min/--max`` (the best run's id, scriptable) and ``guildlite note`` (notes
kept in run.json with their time, shown by ``runs info``, found by ``--filter 'note ~ ...'``),
over real runs (``launcher: python``).

The module's runs:

    A  train lr=0.1   loss 0.3, 0.1, 0.2 (last 0.2)   acc 0.6
    B  train lr=0.2   loss 0.6, 0.2, 0.4 (last 0.4)   acc 0.8
    C  train lr=0.05  loss 0.15, 0.05, 0.1 (last 0.1) acc 0.7, exit 3
    E  plain           logs nothing
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, assert_clean_error, wait_until, write_project

TRAIN = textwrap.dedent(
    """\
    import sys, time

    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    lr = float(flags["lr"])
    for step, k in enumerate((3, 1, 2)):
        print(f"step: {step}")
        print(f"loss: {round(lr * k, 6)}")
    print(f"acc: {flags['acc']}", flush=True)
    time.sleep(float(flags["sleep"]))
    sys.exit(int(flags["code"]))
    """
)
GUILDFILE = textwrap.dedent(
    """\
    operations:
      train:
        main: train.py
        launcher: python
        flags: {lr: 0.1, acc: 0.5, code: 0, sleep: 0}
      plain:
        main: plain.py
        launcher: python
    """
)


class Runs:
    def __init__(self, proj: Project) -> None:
        self.proj = proj
        self.ids: dict[str, str] = {}

    def gl(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cp = self.proj.run(*args, env=env) if env is not None else self.proj.run(*args)
        assert cp.returncode == code, (args, cp.returncode, cp.stdout, cp.stderr)
        assert TRACEBACK not in cp.stderr, cp.stderr
        return cp

    def select(self, *args: str) -> str:
        return self.gl("select", *args).stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    base = tmp_path_factory.mktemp("select")
    files = {"train.py": TRAIN, "plain.py": "print('nothing to log')\n"}
    proj = Project(root=write_project(base / "project", GUILDFILE, files), runs_dir=base / "runs")
    r = Runs(proj)
    try:
        for letter, args, code in (("A", ["train", "lr=0.1", "acc=0.6"], 0), ("B", ["train", "lr=0.2", "acc=0.8"], 0),
                                   ("C", ["train", "lr=0.05", "acc=0.7", "code=3"], 3), ("E", ["plain"], 0)):
            r.gl("run", "-y", *args, code=code)
            r.ids[letter] = proj.run_dirs()[-1].name
        yield r
    finally:
        proj.cleanup()


# --- select -------------------------------------------------------------------------------------------


def test_select_prints_only_the_best_runs_id(runs: Runs) -> None:
    assert runs.select("--min", "loss") == runs.ids["C"] + "\n"  # last values: 0.2, 0.4, 0.1
    assert runs.select("--max", "loss") == runs.ids["B"] + "\n"
    assert runs.select("--max", "acc") == runs.ids["B"] + "\n"
    assert runs.select("--min", "min(loss)") == runs.ids["C"] + "\n"
    assert runs.select("--max", "max(loss)") == runs.ids["B"] + "\n"
    assert runs.select("--min", "scalar.acc") == runs.ids["A"] + "\n"


def test_select_among_runs_and_a_filter(runs: Runs) -> None:
    assert runs.select("--min", "loss", "--filter", "status = completed") == runs.ids["A"] + "\n"
    assert runs.select("--min", "loss", "--filter", "lr >= 0.1 and flag.acc > 0.7") == runs.ids["B"] + "\n"
    assert runs.select(runs.ids["A"], runs.ids["B"], "--max", "acc") == runs.ids["B"] + "\n"
    assert runs.select("1:3", "--min", "loss") == runs.ids["C"] + "\n"  # E (1), C (2), B (3)


def test_select_is_scriptable(runs: Runs) -> None:
    best = runs.select("--min", "loss").strip()
    cp = runs.gl("cat", best, "output.log")
    assert "loss: 0.1" in cp.stdout and "acc: 0.7" in cp.stdout
    shell = subprocess.run(["sh", "-c", f"{' '.join(GUILDLITE)} cat $({' '.join(GUILDLITE)} select --max acc)"],
                           env=runs.proj.env, cwd=runs.proj.root, capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0 and "acc: 0.8" in shell.stdout, shell.stderr


def test_select_when_no_run_has_the_scalar(runs: Runs) -> None:
    cp = runs.gl("select", "--min", "val_loss", code=1)
    assert cp.stdout == "" and "no run has a value of scalar 'val_loss'" in cp.stderr
    cp = runs.gl("select", "--min", "loss", "--filter", "op = plain", code=1)
    assert cp.stdout == "" and "matching the filter" in cp.stderr
    cp = runs.gl("select", runs.ids["E"], "--max", "acc", code=1)
    assert cp.stdout == ""


def test_select_usage_errors(runs: Runs) -> None:
    for args in ([], ["--min", "loss", "--max", "acc"]):
        cp = runs.gl("select", *args, code=2)
        assert "--min" in cp.stderr and cp.stdout == ""
    cp = runs.gl("select", "--min", "flag.lr", code=2)
    assert "ranks runs by a scalar" in cp.stderr
    cp = runs.gl("select", "--min", "loss <", code=2)
    assert cp.stderr.splitlines()[-1].endswith("^")


# --- note ---------------------------------------------------------------------------------------------


def test_notes_are_appended_with_a_time_and_shown(runs: Runs) -> None:
    a = runs.ids["A"]
    runs.gl("note", a, "baseline, first try")
    runs.gl("note", a, "second line of thought\nwith a newline")
    notes = runs.proj.record(a)["notes"]
    assert [n["text"] for n in notes] == ["baseline, first try", "second line of thought\nwith a newline"]
    assert all(n["time"].endswith("+00:00") for n in notes)
    info = runs.gl("runs", "info", a).stdout
    assert "notes:" in info and "baseline, first try" in info and "  with a newline" in info
    assert [n["text"] for n in json.loads(runs.gl("runs", "info", a, "--json").stdout)["notes"]][0] == \
        "baseline, first try"
    listed = runs.gl("note", a).stdout  # without TEXT: the notes
    assert "baseline, first try" in listed and "with a newline" in listed


def test_note_filter_is_a_regex_search(runs: Runs) -> None:
    runs.gl("note", runs.ids["B"], "Diverged at step 3; try warmup")

    def matching(expr: str) -> set[str]:
        out = json.loads(runs.gl("runs", "--all", "--json", "--filter", expr).stdout)
        return {k for k, v in runs.ids.items() if v in {r["id"] for r in out}}

    assert matching("note ~ warmup") == {"B"}
    assert matching("note ~ '(?i)diverged'") == {"B"}
    assert matching("note ~ '^with a'") == {"A"}  # ^ at the start of each line
    assert matching("note ~ 'step \\d'") == {"B"}
    assert "E" in matching("not note ~ .")  # no notes: matches nothing


def test_note_edit_opens_the_editor(runs: Runs, tmp_path: Path) -> None:
    editor = tmp_path / "editor.py"
    editor.write_text(f"#!{sys.executable}\nimport sys\nopen(sys.argv[-1], 'a').write('written in the editor\\n')\n")
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    runs.gl("note", runs.ids["C"], "--edit", env={**runs.proj.env, "EDITOR": str(editor), "VISUAL": str(editor)})
    assert runs.proj.record(runs.ids["C"])["notes"][-1]["text"] == "written in the editor"
    runs.gl("note", runs.ids["C"], "--edit", "start:", env={**runs.proj.env, "EDITOR": str(editor)})
    assert runs.proj.record(runs.ids["C"])["notes"][-1]["text"] == "start:\nwritten in the editor"  # TEXT to start from
    unchanged = tmp_path / "noop.sh"
    unchanged.write_text("#!/bin/sh\nexit 0\n")
    unchanged.chmod(0o755)
    cp = runs.gl("note", runs.ids["C"], "--edit", code=1, env={**runs.proj.env, "EDITOR": str(unchanged)})
    assert "no note written" in cp.stderr
    assert len(runs.proj.record(runs.ids["C"])["notes"]) == 2


def test_empty_or_huge_notes_are_refused(runs: Runs) -> None:
    before = runs.proj.record(runs.ids["E"]).get("notes", [])
    assert_clean_error(runs.gl("note", runs.ids["E"], "  \n ", code=2), 2, "empty note")
    cp = runs.gl("note", runs.ids["E"], "x" * 70_000, code=2)
    assert "at most" in cp.stderr
    assert runs.proj.record(runs.ids["E"]).get("notes", []) == before
    assert_clean_error(runs.gl("note", "nosuchrun", "x", code=2), 2)


def test_notes_written_at_once_are_all_kept(runs: Runs) -> None:
    b = runs.ids["B"]
    before = len(runs.proj.record(b)["notes"])
    procs = [runs.proj.spawn("note", b, f"concurrent {i}") for i in range(6)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    texts = [n["text"] for n in runs.proj.record(b)["notes"]]
    assert len(texts) == before + 6 and {f"concurrent {i}" for i in range(6)} <= set(texts)


def test_a_note_on_a_running_run_survives_its_owner_saving_the_end(runs: Runs) -> None:
    proc = runs.proj.spawn("run", "-y", "train", "lr=0.3", "acc=0.1", "sleep=3")
    try:
        run_dir = wait_until(lambda: next((d for d in runs.proj.run_dirs() if d.name not in runs.ids.values()
                                           and json.loads((d / "run.json").read_text())["status"] == "running"),
                                          None), timeout=60, what="the run to start")
        runs.gl("note", run_dir.name, "noted while it ran")
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    rec = runs.proj.record(run_dir.name)
    assert rec["status"] == "completed" and [n["text"] for n in rec["notes"]] == ["noted while it ran"]


def test_a_hand_broken_note_makes_a_bad_record(runs: Runs) -> None:
    d = runs.proj.runs_dir / runs.ids["E"]
    rec = json.loads((d / "run.json").read_text())
    saved = dict(rec)
    rec["notes"] = [{"time": "yesterday", "text": "x"}]
    (d / "run.json").write_text(json.dumps(rec))
    try:
        cp = runs.proj.run("runs", "info", runs.ids["E"])
        assert cp.returncode == 2 and "note" in cp.stderr and TRACEBACK not in cp.stderr
    finally:
        (d / "run.json").write_text(json.dumps(saved))
    assert os.path.exists(d / "run.json")


def test_select_and_note_have_json(runs: Runs) -> None:
    """A new user scripting these found `--json` on `runs`, `runs info`, `check`, `gpus`, but not here."""
    assert json.loads(runs.select("--min", "loss", "--json")) == {
        "id": runs.ids["C"], "scalar": "loss", "how": "min", "value": 0.1}
    best = json.loads(runs.select("--max", "max(loss)", "--json"))
    assert best["id"] == runs.select("--max", "max(loss)").strip() and best["how"] == "max", best
    assert runs.gl("select", "--min", "val_loss", "--json", code=1).stdout == ""  # none: an error, no JSON
    e = runs.ids["E"]
    before = runs.proj.record(e).get("notes", [])
    shown = json.loads(runs.gl("note", e, "--json").stdout)
    assert shown == {"id": e, "notes": [{"time": n["time"], "text": n["text"]} for n in before]}
    added = json.loads(runs.gl("note", e, "a note \x1b[31mred", "--json").stdout)
    assert added["id"] == e and added["notes"][-1]["text"] == "a note \x1b[31mred"  # JSON escapes it
    assert added["notes"] == [{"time": n["time"], "text": n["text"]} for n in runs.proj.record(e)["notes"]]
