"""Red-team findings on requirements, digests and ``--needed`` (issues 16 and 17), each a repro.

Real projects, the real CLI in subprocesses; the digest and download caches live in the test's
tmp dir (``XDG_CACHE_HOME``).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error


@pytest.fixture
def make(make_project: Callable[..., Project], tmp_path: Path) -> Callable[..., Project]:
    cache = tmp_path / "cache"

    def build(guildfile: str, files: dict[str, str], runs_inside: bool = False) -> Project:
        proj = make_project(guildfile, files)
        if runs_inside:  # the default layout: runs/ beside guildfile.yml
            proj.runs_dir = proj.root / "runs"
        orig = proj.run

        def run(*args: str, **kw: Any) -> Any:
            kw["env"] = {"XDG_CACHE_HOME": str(cache), **(kw.get("env") or {})}
            return orig(*args, **kw)

        proj.run = run  # type: ignore[method-assign]
        return proj

    return build


def _op(requires: str, main: str = "t.py", name: str = "t") -> str:
    body = textwrap.indent(textwrap.dedent(requires).strip(), "      ")
    return f"  {name}:\n    main: {main}\n    launcher: python\n    requires:\n{body}\n"


def _ok(cp: Any) -> None:
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)


# --- a required directory that holds the runs dir -------------------------------------------------


def test_a_required_project_dir_never_copies_the_runs_dir_into_a_run(make: Callable[..., Project]) -> None:
    """``- file: .`` with ``target-type: copy`` and runs/ in the project: each run copied every
    earlier run (and their copies) into itself, doubling the runs dir at every run."""
    gf = "operations:\n" + _op("- {file: ., target-path: proj, target-type: copy}")
    proj = make(gf, {"t.py": "print('ok')\n", "data/a.txt": "A\n"}, runs_inside=True)
    for _ in range(3):
        _ok(proj.run("run", "t", "-y"))
    newest = max(proj.run_dirs(), key=lambda d: d.name)
    copied = {p.relative_to(newest).as_posix() for p in newest.rglob("*") if p.is_file()}
    assert "proj/project/data/a.txt" in copied and "proj/project/t.py" in copied
    assert not [p for p in copied if p.startswith("proj/project/runs")], sorted(copied)[:10]
    rec = json.loads((newest / "run.json").read_text())
    assert rec["requires"][0]["files"] == 3, rec["requires"]  # guildfile.yml, t.py, data/a.txt


def test_needed_hits_with_a_required_dir_that_holds_the_runs_dir(make: Callable[..., Project]) -> None:
    """``- file: .`` (linked): its digest covered the runs dir, which every run changes, so
    ``--needed`` never found the run it had just made."""
    gf = "operations:\n" + _op("- {file: ., target-path: proj}")
    proj = make(gf, {"t.py": "print('ok')\n", "data/a.txt": "A\n"}, runs_inside=True)
    _ok(proj.run("run", "t", "-y"))
    first = proj.records()[0]["id"]
    cp = proj.run("run", "t", "--needed", "-y")
    _ok(cp)
    assert cp.stdout.strip() == first, (cp.stdout, cp.stderr)
    assert len(proj.records()) == 1


# --- --needed and an upstream run whose outputs changed -----------------------------------------


def test_needed_runs_again_when_the_upstream_run_was_restarted_with_other_outputs(
    make: Callable[..., Project],
) -> None:
    """The requirement digest of an operation was only the upstream run's id: after ``--restart``
    of that run made other files, ``--needed`` still said "same requirements"."""
    gf = ("operations:\n  prepare:\n    main: prepare.py\n    launcher: python\n"
          + _op("- operation: prepare", main="train.py", name="train"))
    proj = make(gf, {"prepare.py": "import os\nopen('f.csv', 'w').write(os.environ.get('V', '1'))\n",
                     "train.py": "print('saw', open('f.csv').read())\n"})
    _ok(proj.run("run", "prepare", "-y"))
    _ok(proj.run("run", "train", "-y"))
    prep = next(r["id"] for r in proj.records() if r["op"] == "prepare")
    _ok(proj.run("run", "--restart", prep, "-y", env={"V": "2"}))
    assert (proj.runs_dir / prep / "f.csv").read_text() == "2"
    cp = proj.run("run", "train", "--needed", "-y")
    _ok(cp)
    assert "saw 2" in cp.stdout, (cp.stdout, cp.stderr)
    assert len([r for r in proj.records() if r["op"] == "train"]) == 2
    # and the same outputs again: a hit
    cp = proj.run("run", "train", "--needed", "-y")
    _ok(cp)
    assert len([r for r in proj.records() if r["op"] == "train"]) == 2, cp.stderr


# --- the digest cache and a file replaced by one of the same size and mtime ---------------------


def test_a_file_replaced_with_the_same_size_and_mtime_is_hashed_again(make: Callable[..., Project]) -> None:
    """Digests were cached by path, size and mtime: a file swapped (``mv``) for another of the same
    size and mtime (``cp -p``, ``rsync -t``, ``tar x`` keep mtimes) kept the old sha256 in run.json,
    and ``--needed`` took the old run for this one."""
    gf = "operations:\n" + _op("- file: d.bin")
    proj = make(gf, {"t.py": "import hashlib\nprint(hashlib.sha256(open('d.bin','rb').read()).hexdigest())\n"})
    d = proj.root / "d.bin"
    d.write_bytes(b"aaaa")
    os.utime(d, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    _ok(proj.run("run", "t", "-y"))
    new = proj.root / "d.new"
    new.write_bytes(b"bbbb")
    os.utime(new, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    os.replace(new, d)
    cp = proj.run("run", "t", "--needed", "-y")
    _ok(cp)
    real = cp.stdout.split()[-1]
    recs = sorted(proj.records(), key=lambda r: r["id"])
    assert len(recs) == 2, cp.stderr
    assert recs[-1]["requires"][0]["sha256"] == real


# --- archives ------------------------------------------------------------------------------------


def test_an_archive_member_with_a_name_too_long_is_a_clean_error(make: Callable[..., Project]) -> None:
    """A tar member whose name the filesystem refuses failed with a bare OSError message, naming a
    temp dir of the cache instead of the guildfile's line."""
    gf = "operations:\n" + _op("- file: long.tar")
    proj = make(gf, {"t.py": "print('ok')\n"})
    with tarfile.open(proj.root / "long.tar", "w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("d/" + "x" * 300)
        info.size = 1
        t.addfile(info, io.BytesIO(b"L"))
    cp = proj.run("run", "t", "-y")
    line = assert_clean_error(cp, 2, "guildfile.yml:", "long.tar")
    assert "nothing was staged" in line
    assert proj.run_dirs() == []


# --- project files named like guildlite's own --------------------------------------------------


@pytest.mark.parametrize("name", ["run.json", "output.log", "scalars.jsonl", "Output.log"])
def test_a_project_file_named_like_guildlites_own_is_not_copied_and_is_said(
    make: Callable[..., Project], name: str
) -> None:
    """A project's run.json failed the staging ("already has a run.json", naming a hidden dir); its
    output.log and scalars.jsonl became the start of the run's log and scalars."""
    gf = ("operations:\n  t:\n    main: t.py\n    launcher: python\n"
          "    sourcecode:\n      include: ['*.py', '*.json', '*.log', '*.jsonl']\n")
    proj = make(gf, {"t.py": "print('loss: 1')\n", name: '{"planted": 1}\n', "keep.json": "{}\n"})
    cp = proj.run("run", "t", "-y")
    _ok(cp)
    assert name in cp.stderr and "guildlite-own" in cp.stderr, cp.stderr
    run_dir = proj.run_dirs()[0]
    for own in ("run.json", "output.log", "scalars.jsonl"):
        assert "planted" not in (run_dir / own).read_text(), own
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    assert {"path": name, "reason": "guildlite-own"} in manifest["skipped"]
    assert "keep.json" in [f["path"] for f in manifest["files"]]


# --- --start and --needed ------------------------------------------------------------------------


def test_start_with_needed_is_refused_not_ignored(make: Callable[..., Project]) -> None:
    """``run --start RUN --needed`` ran the staged run although a completed run had the same flags,
    source and requirements (``--needed`` was ignored; with ``--restart`` it is an error)."""
    gf = "operations:\n  t:\n    main: t.py\n    launcher: python\n"
    proj = make(gf, {"t.py": "print('ran')\n"})
    _ok(proj.run("run", "t", "-y"))
    _ok(proj.run("run", "t", "--stage", "-y"))
    staged = next(r["id"] for r in proj.records() if r["status"] == "staged")
    cp = proj.run("run", "--start", staged, "--needed", "-y")
    assert_clean_error(cp, 2, "--start", "--needed")
    assert proj.record(staged)["status"] == "staged"


@pytest.mark.parametrize("rename", ["a /", "a .", "a x//y"])
def test_a_rename_to_an_empty_or_dot_part_fails_at_plan_naming_the_line(
    make: Callable[..., Project], rename: str
) -> None:
    """``rename: 'a /'`` made the target ``data//`` (the folder itself), which passed the checks
    and failed in the middle of staging with "something is already there", naming no line."""
    gf = "operations:\n" + _op(f"- {{file: data, rename: '{rename}'}}")
    proj = make(gf, {"t.py": "print('ok')\n", "data/a": "A\n", "data/b": "B\n"})
    cp = proj.run("run", "t", "-y")
    assert_clean_error(cp, 2, "guildfile.yml:6", "rename")
    assert proj.run_dirs() == [] and not list(proj.runs_dir.glob(".staging-*"))


# --- URLs ----------------------------------------------------------------------------------------


def test_a_redirect_loop_is_a_one_line_error(make: Callable[..., Project]) -> None:
    """urllib's reason for a redirect loop spans three lines: the error was three lines, the last
    one "Found" on its own."""
    import http.server
    import threading

    class Loop(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/again" + self.path)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gf = "operations:\n" + _op(f"- url: http://127.0.0.1:{server.server_address[1]}/loop/a.bin")
        proj = make(gf, {"t.py": "print('ok')\n"})
        cp = proj.run("run", "t", "-y")
        assert_clean_error(cp, 1, "guildfile.yml:6", "HTTP 302", "infinite loop")
        assert proj.run_dirs() == []
    finally:
        server.shutdown()
        server.server_close()


# --- --gpus --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ids", ["-1", "0,-1", "0\n1", "../../x", "0, 1 2"])
def test_gpu_ids_that_cuda_cannot_read_are_refused(make: Callable[..., Project], ids: str) -> None:
    """``--gpus -1`` ran with CUDA_VISIBLE_DEVICES=-1 (no GPU at all) recorded as GPU -1; a newline
    or a path went into the record and the environment as an id."""
    gf = "operations:\n  t:\n    main: t.py\n    launcher: python\n    gpus-per-trial: 1\n"
    proj = make(gf, {"t.py": "print('ok')\n"})
    cp = proj.run("run", "t", "--gpus", ids, "-y")
    assert_clean_error(cp, 2, "--gpus", "not a GPU id")
    assert proj.run_dirs() == []
    _ok(proj.run("run", "t", "--gpus", "GPU-8f2c1a3e-0000-1111-2222-333344445555", "-y"))


# --- a restart whose upstream run was deleted ---------------------------------------------------


def test_restart_after_its_upstream_run_was_deleted_says_what_to_do(make: Callable[..., Project]) -> None:
    """The error was "prepare=ID: no run matches 'ID'": nothing said the run was deleted nor how
    to go on."""
    gf = ("operations:\n  prepare:\n    main: prepare.py\n    launcher: python\n"
          + _op("- operation: prepare", main="train.py", name="train"))
    proj = make(gf, {"prepare.py": "open('f.csv', 'w').write('1')\n", "train.py": "print(open('f.csv').read())\n"})
    _ok(proj.run("run", "prepare", "-y"))
    _ok(proj.run("run", "train", "-y"))
    ids = {r["op"]: r["id"] for r in proj.records()}
    _ok(proj.run("runs", "delete", ids["prepare"], "-y"))
    cp = proj.run("run", "--restart", ids["train"], "-y")
    assert_clean_error(cp, 2, f"run {ids['prepare']} is not in", "guildlite runs restore", "prepare=RUN")
    assert proj.record(ids["train"])["status"] == "completed"


# --- --stage says what it staged ----------------------------------------------------------------


def test_stage_prints_the_id_that_start_takes(make: Callable[..., Project]) -> None:
    """``run --stage`` of one run printed nothing at all: a new user had no id to ``--start``."""
    gf = "operations:\n  t:\n    main: t.py\n    launcher: python\n    flags: {x: 1}\n"
    proj = make(gf, {"t.py": "import sys\nprint('ran', sys.argv[1:])\n"})
    cp = proj.run("run", "t", "--stage", "-y")
    _ok(cp)
    run_id = cp.stdout.strip()
    assert proj.record(run_id)["status"] == "staged"
    assert f"guildlite run --start {run_id}" in cp.stderr
    _ok(proj.run("run", "--start", run_id, "-y"))
    assert proj.record(run_id)["status"] == "completed"
    batch = proj.run("run", "t", "--stage", "-y", "x=[1,2]")
    _ok(batch)
    rec = proj.record(batch.stdout.strip())
    assert rec["status"] == "staged" and len(rec["trials"]) == 2


def test_a_misspelt_upstream_operation_is_pointed_out(make: Callable[..., Project]) -> None:
    """``- operation: prepar`` said "run `guildlite run prepar` first", an op that does not exist."""
    gf = ("operations:\n  prepare:\n    main: prepare.py\n    launcher: python\n"
          + _op("- operation: prepar", main="train.py", name="train"))
    proj = make(gf, {"prepare.py": "print(1)\n", "train.py": "print(2)\n"})
    cp = proj.run("run", "train", "-y")
    assert_clean_error(cp, 2, "no completed run", "the guildfile has no operation 'prepar'", "did you mean 'prepare'")


# --- a restart never removes anything outside the run dir ----------------------------------------

PLANT = textwrap.dedent(
    """\
    import json, os, sys
    if not os.path.lexists("evil"):  # the first attempt: a link out, and the manifest rewritten
        os.symlink(sys.argv[-1].split("=", 1)[1], "evil")
        placed = json.load(open(".guildlite/requires.json"))
        placed += [{"target": "evil/x", "copy": True}, {"target": "evil/y", "copy": False}]
        json.dump(placed, open(".guildlite/requires.json", "w"))
    print("ok")
    """
)


def test_restart_never_removes_files_through_a_link_in_the_run_dir(make: Callable[..., Project],
                                                                  tmp_path: Path) -> None:
    """``.guildlite/requires.json`` lists what a staging put there, removed at ``--restart``: a
    target under a symlink the job made (``evil -> ~``) had ``evil/x`` rmtree'd and ``evil/y``
    unlinked, outside the run dir."""
    victim = tmp_path / "victim"
    (victim / "x").mkdir(parents=True)
    (victim / "x" / "file").write_text("precious")
    (victim / "y").write_text("precious too")
    gf = ("operations:\n  t:\n    main: t.py\n    launcher: python\n    flags: {victim: ''}\n"
          "    requires:\n      - {file: data, target-type: copy}\n")
    proj = make(gf, {"t.py": PLANT, "data/a": "A\n"})
    _ok(proj.run("run", "t", f"victim={victim}", "-y"))
    run_id = proj.only_record()["id"]
    _ok(proj.run("run", "--restart", run_id, "-y"))
    assert (victim / "x" / "file").read_text() == "precious" and (victim / "y").read_text() == "precious too"
    assert proj.record(run_id)["status"] == "completed"
