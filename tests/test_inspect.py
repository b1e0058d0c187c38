"""Looking at runs through the real CLI: ``compare``, ``cat``, ``ls``, ``diff`` and run selectors.

One project's runs are made once for the module (``launcher: python``, no torchrun needed here):

    A  train lr=0.1 -l alpha           completed   (staged before the project's train.py was edited)
    B  train lr=0.3 epochs=5 -l beta   completed   (staged after the edit: matches the project)
    C  train lr=0.2 code=3             error (exit 3)
    D  train lr=[0.5,0.05]             a batch: trials D1 (lr=0.5), D2 (lr=0.05)
    E  other lr=0.4                    completed (another op)

Each run prints the loss curve 3*lr, 1*lr, 2*lr, so a run's last loss is 2*lr, its min lr, its max 3*lr.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, assert_clean_error, clean_env, write_project

TRAIN = textwrap.dedent(
    """\
    import os, sys

    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    lr = float(flags["lr"])
    os.makedirs("out", exist_ok=True)
    with open("out/result.txt", "w") as f:
        f.write(f"lr={lr}\\n")
    with open("blob.bin", "wb") as f:
        f.write(bytes(range(256)) * 8)
    for step, k in enumerate((3, 1, 2)):
        print(f"step: {step}")
        print(f"loss: {lr * k}")
    print("the end", flush=True)
    sys.exit(int(flags["code"]))
    """
)

OP_BODY = """\
    main: train.py
    launcher: python
    flags:
      lr: {default: 0.1, min: 0}
      epochs: 3
      code: 0
"""
GUILDFILE = "operations:\n  train:\n" + OP_BODY + "  other:\n" + OP_BODY
EDIT = "# v2: an edit made after run A was staged\n"


@dataclass
class Runs:
    proj: Project
    A: str
    B: str
    C: str
    D: str
    D1: str
    D2: str
    E: str

    @property
    def all(self) -> list[str]:
        return [self.A, self.B, self.C, self.D, self.D1, self.D2, self.E]

    @property
    def lr(self) -> dict[str, float]:
        return {self.A: 0.1, self.B: 0.3, self.C: 0.2, self.D1: 0.5, self.D2: 0.05, self.E: 0.4}

    def dir(self, run_id: str) -> Path:
        return self.proj.runs_dir / run_id

    def gl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.proj.run(*args)

    def ok(self, *args: str) -> str:
        cp = self.proj.run(*args)
        assert cp.returncode == 0, (args, cp.returncode, cp.stdout, cp.stderr)
        assert TRACEBACK not in cp.stderr
        return cp.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args))


def _newest_ids(proj: Project, n: int) -> list[str]:
    """The ids of the newest ``n`` run dirs, oldest first."""
    return [p.name for p in proj.run_dirs()][-n:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    base = tmp_path_factory.mktemp("inspect")
    proj = Project(root=write_project(base / "project", GUILDFILE, {"train.py": TRAIN}), runs_dir=base / "runs")
    try:

        def go(*args: str, code: int = 0) -> None:
            cp = proj.run("run", "-y", *args)
            assert cp.returncode == code, (args, cp.returncode, cp.stdout, cp.stderr)

        go("train", "lr=0.1", "-l", "alpha")
        (a,) = _newest_ids(proj, 1)
        with open(proj.root / "train.py", "a") as f:
            f.write(EDIT)
        go("train", "lr=0.3", "epochs=5", "-l", "beta")
        go("train", "lr=0.2", "code=3", code=3)
        go("train", "lr=[0.5,0.05]")
        go("other", "lr=0.4")
        ids = _newest_ids(proj, 7)
        assert ids[0] == a
        b, c = ids[1], ids[2]
        batch_id = next(i for i in ids if proj.record(i)["is_batch"])
        d1, d2 = proj.record(batch_id)["trials"]
        yield Runs(proj, a, b, c, batch_id, d1, d2, ids[-1])
    finally:
        proj.cleanup()


def test_module_runs_are_as_described(runs: Runs) -> None:
    recs = {i: runs.proj.record(i) for i in runs.all}
    assert [recs[i]["status"] for i in runs.all] == ["completed", "completed", "error", "completed", "completed",
                                                     "completed", "completed"]
    assert recs[runs.C]["exit_code"] == 3
    assert recs[runs.D1]["parent"] == recs[runs.D2]["parent"] == runs.D
    assert {i: recs[i]["flags"]["lr"] for i in runs.lr} == runs.lr
    assert recs[runs.E]["op"] == "other"


# --- cat -------------------------------------------------------------------------------------------


def test_cat_prints_output_log_by_default(runs: Runs) -> None:
    out = runs.ok("cat", runs.A)
    assert out == (runs.dir(runs.A) / "output.log").read_text()
    assert "loss: 0.2" in out.splitlines() and out.endswith("the end\n")


def test_cat_prints_a_named_file(runs: Runs) -> None:
    assert runs.ok("cat", runs.A, "out/result.txt") == "lr=0.1\n"
    assert runs.ok("cat", runs.B[:-1], "out/result.txt") == "lr=0.3\n"  # an id prefix selects too
    rec = json.loads(runs.ok("cat", runs.A, "run.json"))
    assert rec["id"] == runs.A and rec["label"] == "alpha"


def test_cat_writes_binary_files_byte_for_byte(runs: Runs) -> None:
    cp = subprocess.run([*GUILDLITE, "cat", runs.A, "blob.bin"], cwd=runs.proj.root, env=runs.proj.env,
                        capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == bytes(range(256)) * 8


@pytest.mark.parametrize(
    "path",
    ["../{B}/run.json", "out/../../{B}/output.log", "/etc/hostname", "..", "../../project/train.py"],
)
def test_cat_refuses_paths_outside_the_run_dir(runs: Runs, path: str) -> None:
    cp = runs.gl("cat", runs.A, path.format(B=runs.B))
    assert_clean_error(cp, 2, "outside the run directory")
    assert cp.stdout == ""


def test_cat_refuses_a_symlink_that_leads_out_of_the_run_dir(runs: Runs) -> None:
    link = runs.dir(runs.C) / "escape.txt"
    link.symlink_to(runs.proj.root / "train.py")
    try:
        cp = runs.gl("cat", runs.C, "escape.txt")
        assert_clean_error(cp, 2, "outside the run directory")
        assert "import os" not in cp.stdout
    finally:
        link.unlink()


@pytest.mark.parametrize("path", ["nope.txt", "out"])
def test_cat_a_missing_file_or_a_dir_is_a_clean_error(runs: Runs, path: str) -> None:
    assert_clean_error(runs.gl("cat", runs.A, path), 2, f"no file {path!r}", f"guildlite ls {runs.A}")


# --- ls --------------------------------------------------------------------------------------------


def _walk(d: Path, meta: bool) -> dict[str, int]:
    out = {}
    for root, dirs, files in os.walk(d):
        if not meta:
            dirs[:] = [x for x in dirs if x != ".guildlite"]
        for name in files:
            p = Path(root, name)
            out[p.relative_to(d).as_posix()] = p.stat().st_size
    return out


def test_ls_lists_files_with_sizes_without_guildlite_meta(runs: Runs) -> None:
    out = runs.ok("ls", runs.A).splitlines()
    assert out[0] == f"{runs.dir(runs.A)}:"
    listed = [line.split(None, 1) for line in out[1:]]
    paths = [p for _, p in listed]
    assert paths == sorted(_walk(runs.dir(runs.A), meta=False))
    assert {"run.json", "output.log", "scalars.jsonl", "train.py", "guildfile.yml", "out/result.txt",
            "blob.bin"} <= set(paths)
    assert not any(p.startswith(".guildlite") for p in paths)
    sizes = {p: s for s, p in listed}
    assert sizes["blob.bin"] == "2.0K"
    assert sizes["out/result.txt"] == f"{len('lr=0.1') + 1}B"


def test_ls_all_includes_guildlite_meta(runs: Runs) -> None:
    paths = [line.split(None, 1)[1] for line in runs.ok("ls", "-a", runs.A).splitlines()[1:]]
    assert ".guildlite/sourcecode.json" in paths and ".guildlite/env.json" in paths
    assert paths == sorted(_walk(runs.dir(runs.A), meta=True))


def test_ls_json(runs: Runs) -> None:
    got = runs.json("ls", "--json", runs.A)
    assert {e["path"]: e["size"] for e in got} == _walk(runs.dir(runs.A), meta=False)
    got_all = runs.json("ls", "--json", "-a", runs.A)
    assert {e["path"]: e["size"] for e in got_all} == _walk(runs.dir(runs.A), meta=True)


# --- diff ------------------------------------------------------------------------------------------


def _flag_rows(out: str, a: str, b: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    assert lines[0].split() == ["flag", a, b], lines[0]
    rows = {}
    for line in lines[1:]:
        if line.startswith(("---", "(")):
            break
        parts = line.split()
        rows[parts[0]] = parts[1:]
    return rows


def test_diff_two_runs_flags_side_by_side_then_the_source(runs: Runs) -> None:
    out = runs.ok("diff", runs.A, runs.B)
    rows = _flag_rows(out, runs.A, runs.B)
    assert rows == {"lr": ["0.1", "0.3", "*"], "epochs": ["3", "5", "*"], "code": ["0", "0"]}
    names = list(rows)
    assert names.index("code") > max(names.index("lr"), names.index("epochs"))  # differences first
    assert f"--- {runs.A}/train.py\n+++ {runs.B}/train.py\n" in out
    assert "+" + EDIT in out
    assert "guildfile.yml" not in out  # identical files make no hunk


def test_diff_flags_only_and_source_only(runs: Runs) -> None:
    flags = runs.ok("diff", "--flags-only", runs.A, runs.B)
    assert _flag_rows(flags, runs.A, runs.B)["lr"] == ["0.1", "0.3", "*"]
    assert "---" not in flags and "train.py" not in flags
    source = runs.ok("diff", "--source-only", runs.A, runs.B)
    assert source.startswith(f"--- {runs.A}/train.py\n")
    assert "+" + EDIT in source and "lr" not in source.split("@@")[0]


def test_diff_of_runs_with_identical_source(runs: Runs) -> None:
    out = runs.ok("diff", runs.B, runs.C)
    assert _flag_rows(out, runs.B, runs.C) == {
        "lr": ["0.3", "0.2", "*"], "epochs": ["5", "3", "*"], "code": ["0", "3", "*"]
    }
    assert out.rstrip().endswith("(staged source is identical)")
    assert runs.ok("diff", "--source-only", runs.D1, runs.D2).strip() == "(staged source is identical)"


def test_diff_one_run_against_the_edited_project(runs: Runs) -> None:
    out = runs.ok("diff", runs.A)
    assert f"--- project/train.py\n+++ {runs.A}/train.py\n" in out
    assert "-" + EDIT in out
    assert runs.ok("diff", runs.B).strip() == "(staged source matches the project)"


REWRITE_PLUGIN = textwrap.dedent(
    """\
    from guildlite import Plugin

    class Rewrite(Plugin):
        def on_run_staged(self, run):
            p = run.run_dir / "train.py"
            p.write_text(p.read_text().replace("lr * k", "lr * k * 10") + "# rewritten by a plugin\\n")
    """
)


def test_diff_one_run_shows_what_an_on_run_staged_plugin_changed(make_project: Any) -> None:
    gf = "plugins:\n  - class: rewrite:Rewrite\noperations:\n  train:\n" + OP_BODY
    proj = make_project(guildfile=gf, files={"train.py": TRAIN, "rewrite.py": REWRITE_PLUGIN})
    cp = proj.run("run", "--stage", "-y", "train")
    assert cp.returncode == 0, cp.stderr
    cp = proj.run("diff", "1")
    assert cp.returncode == 0, cp.stderr
    (run_id,) = [d.name for d in proj.run_dirs()]
    assert f"--- project/train.py\n+++ {run_id}/train.py\n" in cp.stdout
    assert '-    print(f"loss: {lr * k}")\n+    print(f"loss: {lr * k * 10}")\n' in cp.stdout
    assert "+# rewritten by a plugin\n" in cp.stdout
    assert "rewrite.py" not in cp.stdout and "guildfile.yml" not in cp.stdout  # unchanged files: no hunks


def test_diff_one_run_whose_project_is_gone(make_project: Any, tmp_path: Path) -> None:
    proj = make_project(guildfile="operations:\n  train:\n" + OP_BODY, files={"train.py": TRAIN}, name="gone")
    assert proj.run("run", "--stage", "-y", "train").returncode == 0
    moved = proj.root.rename(tmp_path / "moved")
    cp = subprocess.run([*GUILDLITE, "diff", "1"], cwd=tmp_path, env=proj.env, capture_output=True, text=True,
                        stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert_clean_error(cp, 2, "the project dir of run", str(proj.root), "is gone")
    assert (moved / "train.py").exists()


def test_diff_takes_one_or_two_runs(runs: Runs) -> None:
    assert_clean_error(runs.gl("diff", runs.A, runs.B, runs.C), 2, "one or two runs")


# --- compare ---------------------------------------------------------------------------------------


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows}


def test_compare_json_one_row_per_run_with_flags_and_last_loss(runs: Runs) -> None:
    rows = runs.json("compare", "--json")
    got = _by_id(rows)
    assert set(got) == set(runs.lr)  # every run but the batch itself (it has no scalars)
    assert [r["id"] for r in rows] == sorted(got, reverse=True)  # newest first
    for run_id, lr in runs.lr.items():
        row = got[run_id]
        assert row["lr"] == lr
        assert row["loss"] == pytest.approx(2 * lr)
        assert set(row) >= {"id", "op", "status", "started", "time", "label", "batch", "lr", "epochs", "code", "loss"}
        assert isinstance(row["time"], (int, float)) and row["time"] >= 0
        assert row["started"] == runs.proj.record(run_id)["started"]
    assert got[runs.C]["status"] == "error" and got[runs.C]["code"] == 3
    assert got[runs.B]["epochs"] == 5 and got[runs.B]["label"] == "beta"
    assert got[runs.D1]["batch"] == got[runs.D2]["batch"] == runs.D
    assert got[runs.A]["batch"] is None
    assert got[runs.E]["op"] == "other"
    assert "loss.min" not in rows[0]


def test_compare_table_is_the_default(runs: Runs) -> None:
    lines = runs.ok("compare").splitlines()
    assert lines[0].split() == ["id", "op", "status", "started", "time", "label", "batch", "lr", "epochs", "code",
                                "loss"]
    assert len(lines) == 1 + len(runs.lr)
    line_a = next(line for line in lines if line.startswith(runs.A))
    assert "alpha" in line_a.split() and "0.2" in line_a.split() and "completed" in line_a.split()
    assert not any(line.startswith(runs.D + " ") for line in lines)


def test_compare_csv(runs: Runs) -> None:
    out = runs.ok("compare", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0] == "id,op,status,started,time,label,batch,lr,epochs,code,loss"
    got = _by_id(rows)
    assert set(got) == set(runs.lr)
    for run_id, lr in runs.lr.items():
        assert float(got[run_id]["loss"]) == pytest.approx(2 * lr)
        assert float(got[run_id]["lr"]) == lr
    assert got[runs.A]["batch"] == ""  # None is an empty cell
    assert got[runs.D2]["batch"] == runs.D


def test_compare_columns_picks_and_orders(runs: Runs) -> None:
    rows = runs.json("compare", "--json", "--columns", "loss, id,lr")
    assert all(list(r) == ["loss", "id", "lr"] for r in rows)
    assert runs.ok("compare", "--csv", "--columns", "id,loss").splitlines()[0] == "id,loss"
    table = runs.ok("compare", "--columns", "id,status").splitlines()
    assert table[0].split() == ["id", "status"] and len(table) == 1 + len(runs.lr)


@pytest.mark.parametrize("order", ["loss", "-loss"])
def test_compare_sort(runs: Runs, order: str) -> None:
    rows = runs.json("compare", "--json", "--sort", order, "--columns", "id,loss")
    expected = sorted(runs.lr, key=lambda i: runs.lr[i], reverse=order.startswith("-"))
    assert [r["id"] for r in rows] == expected
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=order.startswith("-"))


def test_compare_sort_by_a_flag_and_csv_keeps_the_order(runs: Runs) -> None:
    out = runs.ok("compare", "--csv", "--sort", "-lr", "--columns", "id")
    expected = sorted(runs.lr, key=lambda i: runs.lr[i], reverse=True)
    assert out.splitlines() == ["id", *expected]


def test_compare_min_max(runs: Runs) -> None:
    rows = _by_id(runs.json("compare", "--json", "--min-max"))
    for run_id, lr in runs.lr.items():
        r = rows[run_id]
        assert (r["loss"], r["loss.min"], r["loss.max"]) == (
            pytest.approx(2 * lr), pytest.approx(lr), pytest.approx(3 * lr))
    header = runs.ok("compare", "--csv", "--min-max").splitlines()[0].split(",")
    assert header[-3:] == ["loss", "loss.min", "loss.max"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--op", "other"], ["E"]),
        (["--status", "error"], ["C"]),
        (["--label", "alp"], ["A"]),
        (["--label", "a"], ["A", "B"]),
        (["--op", "train", "--status", "completed"], ["A", "B", "D1", "D2"]),
        (["--op", "nosuchop"], []),
    ],
)
def test_compare_filters(runs: Runs, args: list[str], expected: list[str]) -> None:
    rows = runs.json("compare", "--json", *args)
    assert sorted(r["id"] for r in rows) == sorted(getattr(runs, x) for x in expected)


def test_compare_a_batch_shows_each_trials_last_loss(runs: Runs) -> None:
    for sel in (runs.D, runs.D[:-1]):
        rows = _by_id(runs.json("compare", "--json", "--batch", sel))
        assert set(rows) == {runs.D1, runs.D2}
        assert rows[runs.D1]["loss"] == pytest.approx(1.0)
        assert rows[runs.D2]["loss"] == pytest.approx(0.1)
        assert rows[runs.D1]["batch"] == runs.D
    table = runs.ok("compare", "--batch", runs.D, "--sort", "loss", "--columns", "id,lr,loss").splitlines()
    assert [line.split() for line in table] == [["id", "lr", "loss"], [runs.D2, "0.05", "0.1"], [runs.D1, "0.5", "1"]]


def test_compare_selected_runs_and_index_selectors(runs: Runs) -> None:
    rows = runs.json("compare", "--json", runs.A, runs.B[:-1])
    assert [r["id"] for r in rows] == [runs.A, runs.B]
    newest_first = sorted(runs.all, reverse=True)  # ids sort in creation order
    assert newest_first[0] == runs.E
    assert [r["id"] for r in runs.json("compare", "--json", "1")] == [runs.E]
    assert [r["id"] for r in runs.json("compare", "--json", "2:3")] == newest_first[1:3]


def test_compare_nothing_to_compare(runs: Runs) -> None:
    cp = runs.gl("compare", "--status", "terminated")
    assert cp.returncode == 0 and cp.stdout == "" and "no runs to compare" in cp.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--columns", "id,nope"], "--columns: no column 'nope'"),
        (["--sort", "nope"], "--sort: no column 'nope'"),
        (["--sort", "-nope", "--json"], "--sort: no column 'nope'"),
    ],
)
def test_compare_unknown_column_is_exit_2(runs: Runs, args: list[str], needle: str) -> None:
    line = assert_clean_error(runs.gl("compare", *args), 2, needle)
    assert "columns: id, op, status, started, time, label, batch, lr, epochs, code, loss" in line


def test_compare_flags_named_like_base_columns_keep_their_own(tmp_path: Path) -> None:
    gf = "operations:\n  t:\n    main: t.py\n    launcher: python\n    flags: {batch: 32, status: x}\n"
    proj = Project(root=write_project(tmp_path / "p", gf, {"t.py": "import sys\nprint(sys.argv[1:])\nprint('loss: 1.5')\n"}), runs_dir=tmp_path / "r")
    assert proj.run("run", "t", "batch=[16,64]", "-y").returncode == 0
    rows = json.loads(proj.run("compare", "--json").stdout)
    batch_id = next(p.name for p in proj.run_dirs() if proj.record(p.name)["is_batch"])
    assert sorted((r["batch"], r["batch (flag)"], r["status"], r["status (flag)"]) for r in rows) == [
        (batch_id, 16, "completed", "x"), (batch_id, 64, "completed", "x")]


def test_explicit_guildfile_and_runs_dir_options(runs: Runs, tmp_path: Path) -> None:
    """From another directory, with no GUILDLITE_RUNS_DIR: -f and --runs-dir find the runs."""
    env = clean_env()
    gf = str(runs.proj.root / "guildfile.yml")
    rd = str(runs.proj.runs_dir)
    for args in (["compare", "--json", "-f", gf, "--runs-dir", rd], ["compare", "--json", "--runs-dir", rd]):
        cp = subprocess.run([*GUILDLITE, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, check=False)
        assert cp.returncode == 0, cp.stderr
        assert {r["id"] for r in json.loads(cp.stdout)} == set(runs.lr)
    cp = subprocess.run([*GUILDLITE, "cat", "--runs-dir", rd, runs.A, "out/result.txt"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert cp.returncode == 0 and cp.stdout == "lr=0.1\n", cp.stderr


# --- selectors -------------------------------------------------------------------------------------

COMMANDS = [
    ["cat", "{SEL}"],
    ["cat", "{SEL}", "run.json"],
    ["ls", "{SEL}"],
    ["diff", "{SEL}"],
    ["diff", "{A}", "{SEL}"],
    ["compare", "{SEL}"],
    ["compare", "--batch", "{SEL}"],
]


def _cmd(runs: Runs, template: list[str], sel: str) -> list[str]:
    return [t.format(SEL=sel, A=runs.A) for t in template]


@pytest.mark.parametrize("template", COMMANDS, ids=lambda t: " ".join(t))
def test_unknown_run_is_a_clean_error(runs: Runs, template: list[str]) -> None:
    cp = runs.gl(*_cmd(runs, template, "zzznope"))
    assert_clean_error(cp, 2, "no run matches 'zzznope'")
    assert cp.stdout == ""


@pytest.mark.parametrize("template", COMMANDS, ids=lambda t: " ".join(t))
def test_ambiguous_prefix_lists_the_candidates(runs: Runs, template: list[str]) -> None:
    prefix = os.path.commonprefix(runs.all)
    assert len(prefix) >= 9 and not prefix.isdigit()
    cp = runs.gl(*_cmd(runs, template, prefix))
    line = assert_clean_error(cp, 2, f"{prefix!r} matches 7 runs", "give more of the id")
    for run_id in runs.all:
        assert run_id in line
    assert cp.stdout == ""


def test_ambiguous_prefix_lists_only_matching_candidates(runs: Runs) -> None:
    # The two trials were staged one right after the other: their common prefix is shared by
    # few runs (not by A, made seconds earlier by another process, in all but rare cases).
    prefix = os.path.commonprefix([runs.D1, runs.D2])
    matching = [i for i in runs.all if i.startswith(prefix)]
    if len(matching) == len(runs.all):
        pytest.skip("every id shares the prefix of the two oldest")
    line = assert_clean_error(runs.gl("ls", prefix), 2, f"matches {len(matching)} runs")
    assert all(i in line for i in matching)
    assert not any(i in line for i in runs.all if i not in matching)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["cat", "99"], "no run at index 99 (7 runs)"),
        (["ls", "../x"], "invalid run selector"),
        (["ls", ".trash"], "invalid run selector"),
        (["cat", "2:3"], "'2:3' selects 2 runs; give one"),
        (["diff", "1", "4:2"], "invalid run range"),
        (["compare", "x:y"], "invalid run range"),
    ],
)
def test_bad_selectors(runs: Runs, args: list[str], needle: str) -> None:
    assert_clean_error(runs.gl(*args), 2, needle)


def test_index_selectors_pick_newest_first(runs: Runs) -> None:
    assert runs.ok("ls", "1").splitlines()[0] == f"{runs.dir(runs.E)}:"
    assert runs.ok("cat", "7", "out/result.txt") == "lr=0.1\n"  # the oldest: A
