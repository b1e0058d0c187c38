"""``guildlite run --needed``: a completed run with the same flags, source and requirements is not
run again (its id is printed, exit 0); anything different runs. Real runs (``launcher: python``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Project, assert_clean_error

GUILDFILE = """\
operations:
  prepare:
    main: prepare.py
    launcher: python
    flags: {n: 3, code: 0}
  train:
    main: train.py
    launcher: python
    flags: {lr: 0.1}
    requires:
      - operation: prepare
"""

PREPARE = """\
import sys
n = 3
code = 0
with open("numbers.txt", "w") as f:
    f.write(" ".join(map(str, range(n))))
print("prepared", n)
sys.exit(code)
"""

TRAIN = """\
lr = 0.1
print("train read", open("numbers.txt").read(), "lr", lr)
"""


@pytest.fixture
def proj(make_project) -> Project:
    return make_project(GUILDFILE, {"prepare.py": PREPARE, "train.py": TRAIN})


def _ok(cp) -> None:
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)


def _no_staging_left(proj: Project) -> None:
    assert not [p.name for p in proj.runs_dir.iterdir() if p.name.startswith(".staging-")]


def test_needed_hit_prints_the_existing_run_and_stages_nothing(proj: Project) -> None:
    _ok(proj.run("run", "prepare", "-y"))
    first = proj.only_record()
    cp = proj.run("run", "prepare", "-y", "--needed")
    _ok(cp)
    assert cp.stdout.strip() == first["id"], cp.stdout
    assert "not run again (--needed)" in cp.stderr
    assert "prepared" not in cp.stdout  # the job did not run
    assert [r["id"] for r in proj.records()] == [first["id"]]
    _no_staging_left(proj)
    as_json = proj.run_json("run", "prepare", "-y", "--needed", "--json")
    assert as_json["id"] == first["id"] and as_json["status"] == "completed"
    assert len(proj.records()) == 1


def test_needed_runs_when_flags_differ(proj: Project) -> None:
    _ok(proj.run("run", "prepare", "-y"))
    cp = proj.run("run", "prepare", "n=4", "-y", "--needed")
    _ok(cp)
    assert "prepared 4" in cp.stdout
    assert len(proj.records()) == 2
    # ... and then that one is up to date too; a default given explicitly is the same flags
    cp = proj.run("run", "prepare", "n=4", "-y", "--needed")
    _ok(cp)
    assert cp.stdout.strip() == proj.records()[-1]["id"]
    cp = proj.run("run", "prepare", "n=3", "-y", "--needed")
    assert cp.stdout.strip() == proj.records()[0]["id"]
    assert len(proj.records()) == 2


def test_needed_runs_when_the_source_changed(proj: Project) -> None:
    _ok(proj.run("run", "prepare", "-y"))
    (proj.root / "prepare.py").write_text("print('changed')\n" + PREPARE)
    cp = proj.run("run", "prepare", "-y", "--needed")
    _ok(cp)
    assert "changed" in cp.stdout
    recs = proj.records()
    assert len(recs) == 2
    assert recs[0]["attrs"]["sourcecode"]["digest"] != recs[1]["attrs"]["sourcecode"]["digest"]
    # A new file in the project (copied as source) changes the digest too
    (proj.root / "helper.py").write_text("X = 1\n")
    _ok(proj.run("run", "prepare", "-y", "--needed"))
    assert len(proj.records()) == 3
    cp = proj.run("run", "prepare", "-y", "--needed")
    assert cp.stdout.strip() == proj.records()[-1]["id"]


def test_needed_ignores_runs_that_did_not_complete(proj: Project) -> None:
    cp = proj.run("run", "prepare", "code=3", "-y")
    assert cp.returncode == 3
    cp = proj.run("run", "prepare", "code=3", "-y", "--needed")
    assert cp.returncode == 3  # the failed run is no reason to skip: it ran again
    assert [r["status"] for r in proj.records()] == ["error", "error"]


def test_needed_runs_when_the_upstream_run_changed(proj: Project) -> None:
    _ok(proj.run("run", "prepare", "-y"))
    _ok(proj.run("run", "train", "-y"))
    train = proj.records()[-1]
    cp = proj.run("run", "train", "-y", "--needed")
    _ok(cp)
    assert cp.stdout.strip() == train["id"]
    _ok(proj.run("run", "prepare", "n=5", "-y"))  # a newer upstream run: train's requirement differs
    cp = proj.run("run", "train", "-y", "--needed")
    _ok(cp)
    assert "train read 0 1 2 3 4" in cp.stdout
    newest = proj.records()[-1]
    assert newest["op"] == "train" and newest["id"] != train["id"]
    # picking the first upstream run again: the first train run is the same run
    first_prepare = proj.records()[0]["id"]
    cp = proj.run("run", "train", f"prepare={first_prepare}", "-y", "--needed")
    assert cp.stdout.strip() == train["id"], cp.stderr


def test_needed_refuses_a_batch_and_a_restart(proj: Project) -> None:
    assert_clean_error(proj.run("run", "prepare", "n=[1,2]", "-y", "--needed"), 2, "--needed")
    _ok(proj.run("run", "prepare", "-y"))
    rid = proj.only_record()["id"]
    assert_clean_error(proj.run("run", "--restart", rid, "-y", "--needed"), 2, "--needed")
    assert len(proj.records()) == 1


def test_find_existing_is_the_api_pipelines_use(proj: Project) -> None:
    from guildlite._needed import find_existing, requirements_digest, source_digest, source_manifest

    _ok(proj.run("run", "prepare", "-y"))
    rec = proj.only_record()
    run_dir = proj.runs_dir / rec["id"]
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    # the digest SourceSnapshot recorded is the one _needed defines, over the manifest's files
    assert source_digest(manifest["files"]) == rec["attrs"]["sourcecode"]["digest"] == manifest["digest"]
    assert source_manifest(run_dir, [f["path"] for f in manifest["files"]]) == manifest["files"]
    digest = rec["attrs"]["sourcecode"]["digest"]
    found = find_existing(proj.runs_dir, "prepare", {"n": 3, "code": 0}, digest, [])
    assert found is not None and found.id == rec["id"]
    assert find_existing(proj.runs_dir, "prepare", {"n": 4, "code": 0}, digest, []) is None
    assert find_existing(proj.runs_dir, "prepare", {"n": 3, "code": 0}, "0" * 64, []) is None
    other = [{"kind": "operation", "source": "x", "target": ".", "run": "20260101T000000-000000"}]
    assert find_existing(proj.runs_dir, "prepare", {"n": 3, "code": 0}, digest, other) is None
    assert requirements_digest(other) != requirements_digest([])
    assert find_existing(Path(proj.runs_dir / "nowhere"), "prepare", {"n": 3, "code": 0}, digest, []) is None
