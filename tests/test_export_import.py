"""``guildlite runs export`` and ``runs import SRC``: real runs (one with a label and a tag, a batch,
a failed run) exported to a directory and to a .tar.gz, imported into fresh runs dirs and read
back the same; id collisions refused or renamed; ``--move``; and hostile sources (archives made by
hand with ``tarfile``, directories with links and FIFOs) refused whole, nothing written outside the
runs dir.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import TRACEBACK, Project, assert_clean_error, run_guildlite

ID_A = "20261130T101010-0a0b0c"
ID_B = "20261130T101011-0d0e0f"


@pytest.fixture(scope="module")
def made(module_project: Project) -> Project:
    """Runs made by real `guildlite run`: a labelled and tagged run, a batch of two, a failed run;
    then files a job might leave: a link inside its run dir, a link leading out of it."""
    p = module_project
    for args in (["quick", "lr=0.5", "epochs=3", "--label", "base"], ["quick", "lr=[0.1,0.2]"], ["quick", "code=3"]):
        cp = p.run("run", *args, "-y")
        assert cp.returncode in (0, 3), cp.stderr
    assert p.run("tag", "5", "+best").returncode == 0  # the first run (newest first: error, 2 trials, batch, it)
    first = p.run_dirs()[0]
    (first / "ckpt").mkdir()
    (first / "ckpt" / "10.pt").write_bytes(b"\x00weights")
    os.symlink("ckpt/10.pt", first / "last.pt")
    os.symlink("/etc/hostname", first / "dataset")  # as a requirement links its source
    return p


def _run(*args: str, runs_dir: Path, cwd: Path) -> Any:
    """``guildlite ARGS`` on another runs dir, in this process (``cwd``: unused, the runs dir is given)."""
    return _in_process(*args, runs_dir=runs_dir)


def _in_process(*args: str, runs_dir: Path) -> subprocess.CompletedProcess[str]:
    """``guildlite ARGS`` through click's runner in this process (the CLI's real code, without a
    Python start-up per case), as a CompletedProcess for ``assert_clean_error``."""
    from click.testing import CliRunner

    from guildlite.cli import cli

    res = CliRunner().invoke(cli, [*args, "--runs-dir", str(runs_dir)], catch_exceptions=False)
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def _views(p: Project, runs_dir: Path) -> dict[str, Any]:
    """What the CLI shows of a runs dir: the listing, compare, and each run's record."""
    runs = _in_process("runs", "--all", "--json", runs_dir=runs_dir)
    compare = _in_process("compare", "--json", runs_dir=runs_dir)
    table = _in_process("runs", "--all", runs_dir=runs_dir)
    assert runs.returncode == compare.returncode == table.returncode == 0, (runs.stderr, compare.stderr)
    listed = [{k: v for k, v in r.items() if k != "run_dir"} for r in json.loads(runs.stdout)]
    return {"runs": listed, "compare": json.loads(compare.stdout), "table": table.stdout}


def _files(run_dir: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(run_dir):
        dirs[:] = [d for d in dirs if d != ".guildlite"]
        for f in files:
            p = Path(root, f)
            out[str(p.relative_to(run_dir))] = f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes()
    return out


@pytest.mark.parametrize("dest", ["export", "export.tar.gz", "export.tar"])
def test_round_trip_shows_the_same_runs(made: Project, tmp_path: Path, dest: str) -> None:
    p = made
    out = tmp_path / dest
    cp = p.run("runs", "export", str(out))
    assert cp.returncode == 0, cp.stderr
    assert len(cp.stdout.split()) == 2 * 5 and "5 run(s) exported" in cp.stderr  # "exported ID" each
    assert "left out" in cp.stderr and "dataset" in cp.stderr  # the link out of its run dir, said
    fresh = tmp_path / "fresh-runs"
    cp = run_guildlite("runs", "import", str(out), cwd=p.root, runs_dir=fresh)  # a real process, as a user runs it
    assert cp.returncode == 0, cp.stderr
    assert "5 run(s) imported" in cp.stderr
    assert _views(p, fresh) == _views(p, p.runs_dir)
    for d in p.run_dirs():
        got, want = _files(fresh / d.name), _files(d)
        want.pop("dataset", None)
        assert got == want
    first = fresh / p.run_dirs()[0].name
    assert (first / "last.pt").read_bytes() == b"\x00weights"  # the link inside the run dir travelled
    assert not os.path.lexists(first / "dataset")
    assert not (first / ".guildlite" / "launch.json").exists()  # this machine's, not the run's
    assert (first / ".guildlite" / "env.json").exists()
    batch = next(r for r in p.records() if r.get("is_batch"))
    info = _run("runs", "info", batch["id"], runs_dir=fresh, cwd=p.root)
    assert info.returncode == 0 and "trials: 2" in info.stdout and all(t in info.stdout for t in batch["trials"])
    assert not [n for n in os.listdir(fresh) if n.startswith(".staging")]
    assert set(os.listdir(tmp_path)) <= {dest, "fresh-runs", "gpu-leases"}  # nothing written elsewhere


def test_a_batch_goes_with_its_trials_and_the_filter_chooses(made: Project, tmp_path: Path) -> None:
    p = made
    batch = next(r for r in p.records() if r.get("is_batch"))
    out = tmp_path / "batch.tgz"
    cp = p.run("runs", "export", batch["id"], str(out))
    assert cp.returncode == 0, cp.stderr
    with tarfile.open(out) as tar:
        tops = {m.name.split("/")[0] for m in tar.getmembers()}
        assert all(m.uname == "" and m.uid == 0 for m in tar.getmembers())
    assert tops == {batch["id"], *batch["trials"]}
    out2 = tmp_path / "best"
    cp = p.run("runs", "export", "--filter", "tag:best and lr > 0.3", str(out2))
    assert cp.returncode == 0, cp.stderr
    assert sorted(os.listdir(out2)) == [p.run_dirs()[0].name]
    cp = p.run("runs", "export", "--filter", "lr > 99", str(tmp_path / "none"))
    assert_clean_error(cp, 2, "no runs to export")
    assert not (tmp_path / "none").exists()


def test_export_refuses_what_it_cannot_do_cleanly(made: Project, tmp_path: Path) -> None:
    p = made
    assert_clean_error(p.run("runs", "export", str(p.runs_dir / "inside")), 2, "inside the runs dir")
    taken = tmp_path / "taken.tar.gz"
    taken.write_bytes(b"mine")
    assert_clean_error(p.run("runs", "export", str(taken)), 2, "already exists")
    assert taken.read_bytes() == b"mine"
    d = tmp_path / "d"
    assert p.run("runs", "export", "1", str(d)).returncode == 0
    before = sorted(os.listdir(d))
    assert_clean_error(p.run("runs", "export", str(d)), 2, "already holds")
    assert sorted(os.listdir(d)) == before  # nothing half written


def test_a_run_not_ended_is_not_exported(project: Project, tmp_path: Path) -> None:
    assert project.run("run", "quick", "--stage", "-y").returncode == 0
    cp = project.run("runs", "export", str(tmp_path / "x.tar.gz"))
    assert_clean_error(cp, 2, "only runs that have ended", "staged")
    assert not (tmp_path / "x.tar.gz").exists()


def test_collisions_are_refused_or_renamed(made: Project, tmp_path: Path) -> None:
    p = made
    out = tmp_path / "all.tar.gz"
    assert p.run("runs", "export", str(out)).returncode == 0
    cp = p.run("runs", "import", str(out))  # into the runs dir they came from
    line = assert_clean_error(cp, 2, "already in", "--rename")
    assert any(d.name in line for d in p.run_dirs()[:5])  # refused at the first run the archive holds
    as_dir = tmp_path / "all"
    assert p.run("runs", "export", str(as_dir)).returncode == 0
    line = assert_clean_error(p.run("runs", "import", str(as_dir)), 2, "already in", "--rename")
    assert all(d.name in line for d in p.run_dirs()[:5])  # a directory's ids are all known at once
    assert len(p.run_dirs()) == 5
    other = tmp_path / "other"
    assert _run("runs", "import", str(out), runs_dir=other, cwd=p.root).returncode == 0
    cp = _run("runs", "import", str(out), "--rename", "--json", runs_dir=other, cwd=p.root)
    assert cp.returncode == 0, cp.stderr
    renamed = {d["source_id"]: d["run_id"] for d in json.loads(cp.stdout)}
    assert len(renamed) == 5 and all(new != old and new[:19] == old[:19] for old, new in renamed.items())
    recs = {d.name: json.loads((d / "run.json").read_text()) for d in other.iterdir() if d.name[0] != "."}
    assert len(recs) == 10
    batch = next(r for r in p.records() if r.get("is_batch"))
    new_batch = recs[renamed[batch["id"]]]
    assert new_batch["id"] == renamed[batch["id"]]
    assert new_batch["trials"] == [renamed[t] for t in batch["trials"]]
    assert all(recs[renamed[t]]["parent"] == new_batch["id"] for t in batch["trials"])
    assert recs[batch["id"]]["trials"] == batch["trials"]  # the first import's are untouched
    info = _run("runs", "info", new_batch["id"], runs_dir=other, cwd=p.root)
    assert all(renamed[t] in info.stdout for t in batch["trials"])


def test_move_removes_the_runs_once_exported(made: Project, tmp_path: Path) -> None:
    p = made
    copy = tmp_path / "copy-runs"
    assert p.run("runs", "export", str(tmp_path / "all")).returncode == 0
    assert _run("runs", "import", str(tmp_path / "all"), runs_dir=copy, cwd=p.root).returncode == 0
    batch = next(r for r in p.records() if r.get("is_batch"))
    cp = _run("runs", "export", "--move", batch["id"], str(tmp_path / "moved.tar.gz"), runs_dir=copy, cwd=p.root)
    assert_clean_error(cp, 2, "-y")  # no terminal to ask: nothing done
    assert len([d for d in copy.iterdir() if d.name[0] != "."]) == 5
    cp = _run("runs", "export", "--move", "-y", batch["id"], str(tmp_path / "moved.tar.gz"), runs_dir=copy,
              cwd=p.root)
    assert cp.returncode == 0, cp.stderr
    left = {d.name for d in copy.iterdir() if d.name[0] != "."}
    assert left == {d.name for d in p.run_dirs()} - {batch["id"], *batch["trials"]}
    listing = _run("runs", "--all", runs_dir=copy, cwd=p.root).stdout
    assert batch["id"] not in listing
    back = tmp_path / "back"
    assert _run("runs", "import", str(tmp_path / "moved.tar.gz"), runs_dir=back, cwd=p.root).returncode == 0
    assert {d.name for d in back.iterdir() if d.name[0] != "."} == {batch["id"], *batch["trials"]}


def test_dry_run_and_one_run_dir_as_the_source(made: Project, tmp_path: Path) -> None:
    p = made
    fresh = tmp_path / "fresh"
    one = p.run_dirs()[-1]
    cp = _run("runs", "import", "--dry-run", str(one), runs_dir=fresh, cwd=p.root)
    assert cp.returncode == 0 and f"would import {one.name}" in cp.stdout, cp.stderr
    assert not [n for n in os.listdir(fresh) if not n.startswith(".")]
    assert _run("runs", "import", str(one), runs_dir=fresh, cwd=p.root).returncode == 0  # a run dir itself
    assert (fresh / one.name / "run.json").read_bytes() == (one / "run.json").read_bytes()
    first = p.run_dirs()[0]
    cp = _run("runs", "import", str(first), runs_dir=fresh, cwd=p.root)  # its link out of the run dir: refused
    assert_clean_error(cp, 2, "dataset", "link out of its run dir")


# --- hostile sources -------------------------------------------------------------------------------------


def _record(run_id: str, **changes: Any) -> bytes:
    rec = {"id": run_id, "op": "train", "flags": {"lr": 0.1}, "status": "completed", "created":
           "2026-11-30T10:10:10.000+00:00", "started": "2026-11-30T10:10:10.000+00:00",
           "stopped": "2026-11-30T10:10:11.000+00:00", **changes}
    return json.dumps(rec).encode()


def _tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """A .tar.gz of (name, kind, data-or-link-target) members, kind one of file, dir, sym, hard, fifo, chr."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
             "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind in ("sym", "hard"):
                info.linkname = str(data)
                tar.addfile(info)
            elif kind == "file":
                raw = data if isinstance(data, bytes) else data.encode()
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
            else:
                tar.addfile(info)
    return path


def _good(run_id: str = ID_A) -> list[tuple[str, str, bytes | str]]:
    return [(run_id, "dir", b""), (f"{run_id}/run.json", "file", _record(run_id)),
            (f"{run_id}/output.log", "file", b"ok\n")]


HOSTILE: dict[str, tuple[list[tuple[str, str, bytes | str]], str]] = {
    "dotdot": ([*_good(), (f"{ID_A}/../../escaped", "file", b"x")], "'..'"),
    "dotdot-top": ([*_good(), ("../escaped", "file", b"x")], "'..'"),
    "absolute": ([*_good(), ("/tmp/escaped-abs", "file", b"x")], "absolute"),
    "symlink-absolute": ([*_good(), (f"{ID_A}/l", "sym", "/etc")], "link out of its run dir"),
    "symlink-dotdot": ([*_good(), (f"{ID_A}/l", "sym", "../../escaped")], "'..'"),
    "write-through-link": ([*_good(), (f"{ID_A}/sub", "dir", b""), (f"{ID_A}/l", "sym", "sub"),
                            (f"{ID_A}/l/f", "file", b"x")], "below a link"),
    "hardlink-outside": ([*_good(), (f"{ID_A}/h", "hard", "/etc/passwd")], "hard link"),
    "hardlink-other-run": ([*_good(), *_good(ID_B), (f"{ID_A}/h", "hard", f"{ID_B}/output.log")], "hard link"),
    "fifo": ([*_good(), (f"{ID_A}/pipe", "fifo", b"")], "FIFO"),
    "device": ([*_good(), (f"{ID_A}/zero", "chr", b"")], "device"),
    "not-a-run": ([*_good(), ("notes/run.json", "file", _record(ID_A))], "not inside a run dir"),
    "twice": ([*_good(), (f"{ID_A}/output.log", "file", b"again")], "twice"),
    "run-dir-is-a-file": ([(ID_A, "file", b"x")], "not a directory"),
    "lies-about-id": ([(ID_A, "dir", b""), (f"{ID_A}/run.json", "file", _record(ID_B))], "says it is run"),
    "running": ([(ID_A, "dir", b""), (f"{ID_A}/run.json", "file", _record(ID_A, status="running", pid=1))],
                "only runs that have ended"),
    "staged": ([(ID_A, "dir", b""), (f"{ID_A}/run.json", "file", _record(ID_A, status="staged"))], "ended"),
    "bad-schema": ([(ID_A, "dir", b""), (f"{ID_A}/run.json", "file", _record(ID_A, status="exploded"))], "status"),
    "bad-parent": ([(ID_A, "dir", b""), (f"{ID_A}/run.json", "file", _record(ID_A, parent="../../x"))], "parent"),
    "no-record": ([(ID_A, "dir", b""), (f"{ID_A}/output.log", "file", b"x")], "run.json"),
    "requires-target": ([(ID_A, "dir", b""), (f"{ID_A}/run.json", "file",
                                              _record(ID_A, requires=[{"target": "../../escaped"}]))], "outside"),
    "manifest-path": ([*_good(), (f"{ID_A}/.guildlite", "dir", b""),
                       (f"{ID_A}/.guildlite/sourcecode.json", "file", json.dumps({"files": [{"path": "../../x"}]}))],
                      "outside the run dir"),
    "too-deep": ([*_good(), (f"{ID_A}/" + "d/" * 70 + "f", "file", b"x")], "levels deep"),
    "meta-is-a-file": ([*_good(), (f"{ID_A}/.guildlite", "file", b"x")], ".guildlite"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_whole(case: str, tmp_path: Path) -> None:
    members, needle = HOSTILE[case]
    archive = _tar(tmp_path / "evil.tar.gz", [*_good(ID_B), *members] if case != "hardlink-other-run" else members)
    runs_dir = tmp_path / "place" / "runs"
    cp = _in_process("runs", "import", str(archive), runs_dir=runs_dir)
    assert_clean_error(cp, 2, needle)
    assert "nothing was imported" in cp.stderr
    assert os.listdir(runs_dir) in ([], [".import.lock"])  # no run, no staging dir left
    assert not (tmp_path / "place" / "escaped").exists() and not Path("/tmp/escaped-abs").exists()
    assert set(os.listdir(tmp_path)) <= {"evil.tar.gz", "gpu-leases", "place"}


def test_not_an_archive_and_a_missing_source(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(4096))
    cp = _in_process("runs", "import", str(junk), runs_dir=tmp_path / "runs")
    assert_clean_error(cp, 2, "not a readable .tar.gz")
    cp = _in_process("runs", "import", str(tmp_path / "nope"), runs_dir=tmp_path / "runs")
    assert_clean_error(cp, 2, "no such file")
    os.mkfifo(tmp_path / "fifo.tar.gz")
    for special in (tmp_path / "fifo.tar.gz", Path("/dev/zero")):  # neither blocks nor reads forever
        assert_clean_error(_in_process("runs", "import", str(special), runs_dir=tmp_path / "runs"), 2, "not a directory")
    cp = run_guildlite("runs", "import", cwd=tmp_path, runs_dir=tmp_path / "runs")
    assert cp.returncode == 2 and "--from-guild" in cp.stderr and TRACEBACK not in cp.stderr


def _dir_export(tmp_path: Path, add: Callable[[Path], None]) -> Path:
    src = tmp_path / "src"
    run = src / ID_A
    run.mkdir(parents=True)
    (run / "run.json").write_bytes(_record(ID_A))
    add(run)
    return src


@pytest.mark.parametrize("case", ["fifo", "link-out", "link-dotdot", "linked-run-dir", "stray"])
def test_hostile_directories_are_refused_whole(case: str, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("secret")

    def add(run: Path) -> None:
        if case == "fifo":
            os.mkfifo(run / "pipe")
        elif case == "link-out":
            os.symlink(outside, run / "secret")
        elif case == "link-dotdot":
            os.symlink("../../secret", run / "secret")
        elif case == "linked-run-dir":
            real = tmp_path / "elsewhere"
            shutil.move(str(run), real)
            os.symlink(real, run)
        else:
            (run.parent / "notes.txt").write_text("hello")

    src = _dir_export(tmp_path, add)
    runs_dir = tmp_path / "runs"
    cp = _in_process("runs", "import", str(src), runs_dir=runs_dir)
    assert_clean_error(cp, 2)
    assert os.listdir(runs_dir) in ([], [".import.lock"])
    assert outside.read_text() == "secret"


def test_the_index_knows_imported_runs(made: Project, tmp_path: Path) -> None:
    p = made
    out = tmp_path / "e.tar.gz"
    assert p.run("runs", "export", "1", str(out)).returncode == 0
    fresh = tmp_path / "fresh"
    assert _run("runs", "import", str(out), runs_dir=fresh, cwd=p.root).returncode == 0
    import sqlite3

    db = sqlite3.connect(fresh / ".index.sqlite")  # whatever its tables: one of them names the run
    try:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = {c for t in tables for row in db.execute(f"SELECT * FROM {t}") for c in row}
    finally:
        db.close()
    assert p.run_dirs()[-1].name in cells


def test_links_an_export_may_hold_are_imported(tmp_path: Path) -> None:
    """A link inside its run dir (relative, no '..'), and a hard link to a file of the same run."""
    archive = _tar(tmp_path / "ok.tar.gz", [*_good(), (f"{ID_A}/ckpt", "dir", b""), (f"{ID_A}/ckpt/1.pt", "file", b"w"),
                                            (f"{ID_A}/last.pt", "sym", "ckpt/1.pt"),
                                            (f"{ID_A}/log-copy", "hard", f"{ID_A}/output.log")])
    runs_dir = tmp_path / "runs"
    cp = _in_process("runs", "import", str(archive), runs_dir=runs_dir)
    assert cp.returncode == 0, cp.stderr
    assert (runs_dir / ID_A / "last.pt").read_bytes() == b"w" and os.readlink(runs_dir / ID_A / "last.pt") == "ckpt/1.pt"
    assert (runs_dir / ID_A / "log-copy").read_bytes() == b"ok\n"


PIPELINE_GUILDFILE = """\
operations:
  prep:
    main: prep.py
    launcher: python
  train:
    main: hello.py
    launcher: python
    flags: {lr: 0.1}
    requires: [{operation: prep}]
  all:
    steps:
      - prep
      - run: train lr=[0.1,0.2]
"""


def test_a_pipeline_goes_with_its_steps_and_renames_follow(make_project: Callable[..., Project],
                                                           tmp_path: Path) -> None:
    from conftest import HELLO_SCRIPT

    p = make_project(PIPELINE_GUILDFILE, {"hello.py": HELLO_SCRIPT, "prep.py": "open('data.txt', 'w').write('d')\n"})
    cp = p.run("run", "all", "-y")
    assert cp.returncode == 0, cp.stderr
    recs = {r["id"]: r for r in p.records()}
    pipe = next(r for r in recs.values() if r.get("is_pipeline"))
    assert len(recs) == 5  # the pipeline, prep, the train batch and its two trials
    out = tmp_path / "pipe.tar.gz"
    cp = p.run("runs", "export", pipe["id"], str(out))
    assert cp.returncode == 0, cp.stderr
    assert "left out" in cp.stderr and "data.txt" in cp.stderr  # the trials' link to prep's file
    other = tmp_path / "other"
    for _ in range(2):  # the second time, every id is taken: renamed
        cp = _run("runs", "import", str(out), "--rename", "--json", runs_dir=other, cwd=p.root)
        assert cp.returncode == 0, cp.stderr
    renamed = {d["source_id"]: d["run_id"] for d in json.loads(cp.stdout)}
    assert set(renamed) == set(recs) and not set(renamed.values()) & set(recs)
    assert list(renamed)[-1] == pipe["id"]  # published last, after its steps and their trials
    new = {v: json.loads((other / v / "run.json").read_text()) for v in renamed.values()}
    new_pipe = new[renamed[pipe["id"]]]
    assert new_pipe["steps"] == [renamed[s] for s in pipe["steps"]]
    assert [s.get("run") for s in new_pipe["pipeline"]["steps"]] == [renamed[s["run"]] for s in pipe["pipeline"]["steps"]]
    trial = next(r for r in new.values() if r.get("is_trial"))
    assert {q["run"] for q in trial["requires"] if q.get("run")} <= set(renamed.values())
    info = _run("runs", "info", new_pipe["id"], runs_dir=other, cwd=p.root)
    assert info.returncode == 0 and all(renamed[s] in info.stdout for s in pipe["steps"])


def test_a_selector_is_not_taken_for_dest(tmp_path: Path) -> None:
    for arg in ("1", "2:4", "20261130T1010"):
        cp = _in_process("runs", "export", arg, runs_dir=tmp_path / "runs")
        assert cp.returncode == 2 and "looks like a run selector" in cp.stderr
        assert not (Path.cwd() / arg).exists()


def test_this_machines_files_of_a_run_are_not_imported(tmp_path: Path) -> None:
    """A launch file would choose a guildfile and plugins for `--restart`; locks and the owner are
    another machine's: none of them is imported; what describes the run is."""
    meta = f"{ID_A}/.guildlite"
    launch = json.dumps({"guildfile": "/tmp/evil/guildfile.yml", "plugin_names": ["evil:Plugin"]})
    archive = _tar(tmp_path / "m.tar.gz", [*_good(), (meta, "dir", b""), (f"{meta}/launch.json", "file", launch),
                                           (f"{meta}/lock", "file", b""), (f"{meta}/owner", "file", b"123"),
                                           (f"{meta}/env.json", "file", b"{}")])
    runs_dir = tmp_path / "runs"
    assert _in_process("runs", "import", str(archive), runs_dir=runs_dir).returncode == 0
    assert sorted(os.listdir(runs_dir / meta)) in (["env.json"], ["env.json", "lock"])  # a lock the store made
    assert (runs_dir / meta / "env.json").read_text() == "{}"


def test_two_imports_at_once_import_each_run_once(tmp_path: Path) -> None:
    from conftest import clean_env, spawn_guildlite

    archive = _tar(tmp_path / "two.tar.gz", [*_good(), *_good(ID_B)])
    runs_dir = tmp_path / "runs"
    procs = [spawn_guildlite("runs", "import", str(archive), cwd=tmp_path, env=clean_env(runs_dir)) for _ in range(2)]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    assert "already in" in next(err for rc, err in results if rc == 2)
    assert sorted(n for n in os.listdir(runs_dir) if not n.startswith(".")) == [ID_A, ID_B]


def test_export_json_names_each_run_and_what_was_done(made: Project, tmp_path: Path) -> None:
    """`runs export` had no --json, while `runs import` has one (a new user scripting both)."""
    p = made
    batch = next(r for r in p.records() if r.get("is_batch"))
    cp = _run("runs", "export", "--json", batch["id"], str(tmp_path / "b.tar.gz"), runs_dir=p.runs_dir, cwd=p.root)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)  # nothing else on stdout
    assert sorted(o["run_id"] for o in out) == sorted([batch["id"], *batch["trials"]]), out
    assert {o["action"] for o in out} == {"exported"}
    imported = _run("runs", "import", "--json", str(tmp_path / "b.tar.gz"), runs_dir=tmp_path / "copy", cwd=p.root)
    assert sorted(o["run_id"] for o in json.loads(imported.stdout)) == sorted(o["run_id"] for o in out)
