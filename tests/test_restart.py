"""``run --restart``: the source is staged again from the project as it is now (its digest recorded),
files the job wrote stay, and ``on_run_staged`` fires again so source-rewriting plugins apply the
new flag values."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Callable

from conftest import Project

TRAIN = textwrap.dedent(
    """\
    import os, sys
    import helper
    VERSION = "v1"
    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    with open("ckpt.txt", "a") as f:  # the job's own file: must survive a restart
        f.write(VERSION + "\\n")
    print(f"version={VERSION} helper={helper.NAME} lr={flags['lr']} const={open('const.txt').read().strip()}")
    """
)

# Writes the run's lr into the staged const.txt, as a source-rewriting plugin does.
STAMP = textwrap.dedent(
    """\
    from pathlib import Path
    from guildlite import Plugin

    class Stamp(Plugin):
        def on_run_staged(self, run):
            (Path(run.run_dir) / "const.txt").write_text(f"lr-{run.flags['lr']}")
    """
)

GUILDFILE = """\
plugins: [{class: stamp:Stamp}]
operations:
  train:
    main: train.py
    launcher: python
    sourcecode: {exclude: [stamp.py]}
    flags:
      lr: 0.1
"""


def test_restart_stages_the_current_source_and_reapplies_on_run_staged(make_project: Callable[..., Project]) -> None:
    proj = make_project(GUILDFILE, {"train.py": TRAIN, "helper.py": "NAME = 'h1'\n", "old.py": "",
                                    "const.txt": "unset\n"})
    (proj.root / "stamp.py").write_text(STAMP)
    assert proj.run("run", "train", "-y").returncode == 0
    rec = proj.only_record()
    run_dir = proj.runs_dir / rec["id"]
    first_digest = rec["attrs"]["sourcecode"]["digest"]
    assert "version=v1 helper=h1 lr=0.1 const=lr-0.1" in (run_dir / "output.log").read_text()

    # The project changes between the runs: an edited script and helper, a file gone.
    (proj.root / "train.py").write_text(TRAIN.replace('"v1"', '"v2"'))
    (proj.root / "helper.py").write_text("NAME = 'h2'\n")
    (proj.root / "old.py").unlink()
    cp = proj.run("run", "--restart", rec["id"], "lr=0.5", "-y")
    assert cp.returncode == 0, cp.stderr
    log = (run_dir / "output.log").read_text()
    assert "version=v2 helper=h2 lr=0.5 const=lr-0.5" in log  # new code, new flags, the plugin re-applied
    assert (run_dir / "ckpt.txt").read_text() == "v1\nv2\n"  # the job's file stayed
    assert not (run_dir / "old.py").exists()  # a source file gone from the project is gone from the run

    rec = proj.record(rec["id"])
    assert rec["attrs"]["sourcecode"]["digest"] != first_digest
    assert rec["attempts"][0]["sourcecode_digest"] == first_digest
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    assert manifest["digest"] == rec["attrs"]["sourcecode"]["digest"]
    assert "ckpt.txt" not in {f["path"] for f in manifest["files"]}  # the job's files are not source
    staged = [t["hook"] for t in rec["plugins"] if t["plugin"] == "Stamp"]
    assert staged == ["on_run_staged", "on_run_staged"]  # fired again for the restart

    # Restarting again with no change keeps the checkpoint (not mistaken for stale source).
    assert proj.run("run", "--restart", rec["id"], "-y").returncode == 0
    assert (run_dir / "ckpt.txt").read_text() == "v1\nv2\nv2\n"
    assert proj.record(rec["id"])["attrs"]["sourcecode"]["digest"] == rec["attrs"]["sourcecode"]["digest"]


def test_a_restart_whose_on_run_staged_fails_never_starts_the_job(make_project: Callable[..., Project]) -> None:
    proj = make_project(GUILDFILE, {"train.py": TRAIN, "helper.py": "NAME = 'h1'\n", "const.txt": ""})
    (proj.root / "stamp.py").write_text(STAMP)
    assert proj.run("run", "train", "-y").returncode == 0
    rid = proj.only_record()["id"]
    (proj.root / "stamp.py").write_text(STAMP.replace("(Path(run.run_dir)", "1 / 0 or (Path(run.run_dir)"))
    cp = proj.run("run", "--restart", rid, "-y")
    assert cp.returncode != 0
    rec = proj.record(rid)
    assert rec["status"] == "error" and rec["error"]["hook"] == "on_run_staged" and rec["started"] is None
    assert Path(proj.runs_dir / rid / "ckpt.txt").read_text() == "v1\n"  # the job did not run again


def test_a_restart_never_writes_through_links_the_job_left(make_project: Callable[..., Project], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    job = textwrap.dedent(
        f"""\
        import os, shutil
        if not os.path.exists("done"):
            open("done", "w").close()
            shutil.rmtree("pkg")
            os.symlink({str(outside)!r}, "pkg")          # a source folder becomes a link outside
            os.remove("conf.txt")
            os.symlink({str(outside / "conf.txt")!r}, "conf.txt")
            shutil.rmtree("old")
            os.symlink({str(outside)!r}, "old")          # where a source file gone from the project was
        print("ok")
        """
    )
    proj = make_project("operations:\n  t: {main: job.py, launcher: python}\n",
                        {"job.py": job, "pkg/mod.py": "X = 1\n", "conf.txt": "c\n", "old/x.py": ""})
    assert proj.run("run", "t", "-y").returncode == 0
    rid = proj.only_record()["id"]
    (outside / "x.py").write_text("keep me")
    (proj.root / "old" / "x.py").unlink()
    assert proj.run("run", "--restart", rid, "-y").returncode == 0
    run_dir = proj.runs_dir / rid
    assert [p.name for p in outside.iterdir()] == ["x.py"]  # nothing written or removed outside the run dir
    assert (outside / "x.py").read_text() == "keep me"
    assert not (run_dir / "pkg").is_symlink() and (run_dir / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert not (run_dir / "conf.txt").is_symlink() and (run_dir / "conf.txt").read_text() == "c\n"
