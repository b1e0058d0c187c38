"""Red-team findings on the record (issue 13 follow-up): plugins cannot change the run's identity,
location or the owner's fields; hostile files in a run dir or a guildfile give clean errors.

Every test drives the real CLI (or the real lock / plugin machinery) and checks the exit code,
that no traceback is printed, and what the record says.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import GUILDLITE, TRACEBACK, Project

from guildlite._lock import HELD_SUFFIX, STALE_SECONDS

PLUG = textwrap.dedent(
    """\
    from pathlib import Path
    from guildlite import Plugin

    class Set(Plugin):
        def __init__(self, hook, field, value, path=False):
            self.hook, self.field, self.value, self.path = hook, field, value, path

        def act(self, hook, run):
            if hook == self.hook:
                setattr(run, self.field, Path(self.value) if self.path else self.value)

        def on_run_staged(self, run):
            self.act("on_run_staged", run)

        def on_run_begin(self, run):
            self.act("on_run_begin", run)

        def on_run_end(self, run):
            self.act("on_run_end", run)
    """
)
SCRIPT = "import sys\nopen('ran.txt', 'w').write('ran')\nprint('ran', sys.argv[1:])\n"


def plugin_project(make_project: Callable[..., Project], hook: str, field: str, value: object,
                   path: bool = False) -> Project:
    args = {"hook": hook, "field": field, "value": value, "path": path}
    guildfile = "operations:\n  t:\n    main: t.py\n    launcher: python\n    plugins:\n" \
        f"      - {{class: 'plug:Set', args: {json.dumps(args)}}}\n"
    return make_project(guildfile, files={"t.py": SCRIPT, "plug.py": PLUG})


@pytest.mark.parametrize(
    ("hook", "field", "value", "path"),
    [
        ("on_run_staged", "id", "../../evil", False),
        ("on_run_staged", "status", "completed", False),
        ("on_run_begin", "run_dir", "OUTSIDE", True),
        ("on_run_begin", "parent_id", "../x", False),
        ("on_run_staged", "flags", {"lr": 9}, False),
    ],
)
def test_a_plugin_cannot_change_identity_location_or_owner_fields(
    make_project: Callable[..., Project], tmp_path: Path, hook: str, field: str, value: object, path: bool
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    proj = plugin_project(make_project, hook, field, str(outside) if value == "OUTSIDE" else value, path)
    cp = proj.run("run", "t", "-y")
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert TRACEBACK not in cp.stderr + cp.stdout
    (run_dir,) = proj.run_dirs()
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["id"] == run_dir.name and rec["status"] == "error" and rec["stopped"]
    assert rec["parent"] is None and rec["flags"] == {}
    assert f"changed run.{field} (read-only for plugins): restored" in rec["error"]["message"]
    assert rec["error"]["plugin"] == "Set" and rec["error"]["hook"] == hook
    assert not (run_dir / "ran.txt").exists()  # never launched
    assert list(outside.iterdir()) == []  # nothing written outside the runs dir
    assert not (tmp_path / "evil").exists() and not (proj.runs_dir.parent / "evil").exists()
    assert [p["hook"] for p in rec["plugins"] if p["plugin"] == "Set"][-1] == "on_run_end"
    ls = proj.run("runs", "info", "1")
    assert ls.returncode == 0 and run_dir.name in ls.stdout, ls.stderr


def test_a_plugin_changing_status_at_the_end_does_not_change_the_record(make_project: Callable[..., Project]) -> None:
    """on_run_end: the job's outcome stands; the change is that plugin's failure, traced."""
    proj = plugin_project(make_project, "on_run_end", "exit_code", 0)
    (proj.root / "t.py").write_text("import sys\nsys.exit(3)\n")
    cp = proj.run("run", "t", "-y")
    assert cp.returncode == 3 and TRACEBACK not in cp.stderr, (cp.returncode, cp.stderr)
    rec = proj.only_record()
    assert rec["status"] == "error" and rec["exit_code"] == 3
    (trace,) = [p for p in rec["plugins"] if p["plugin"] == "Set" and p["hook"] == "on_run_end"]
    assert trace["error"] == "changed run.exit_code (read-only for plugins): restored"


# --- #13: lock paths planted in a run dir ---------------------------------------------------------


def _plant(path: Path, kind: str, tmp_path: Path) -> None:
    if kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    else:
        target = tmp_path / "lock-target"
        target.write_text("{}")
        path.symlink_to(target)


@pytest.mark.parametrize("mode", ["flock", "lockfile"])
@pytest.mark.parametrize("kind", ["directory", "FIFO", "symlink"])
def test_a_planted_lock_path_is_refused_at_once(
    module_project: Project, tmp_path: Path, mode: str, kind: str
) -> None:
    """A lock path that is not a regular file was not made by guildlite: exit 2 at once (no
    takeover wait of STALE_SECONDS), the record untouched, nothing written through a symlink."""
    proj = module_project
    if not proj.run_dirs():
        assert proj.run("run", "quick", "-y").returncode == 0
    run_dir = proj.run_dirs()[0]
    lock = run_dir / ".guildlite" / ("lock" if mode == "flock" else "lock" + HELD_SUFFIX)
    before = (run_dir / "run.json").read_bytes()
    lock.unlink(missing_ok=True)  # flock mode's own lock file, left by the run
    _plant(lock, kind, tmp_path)
    try:
        t0 = time.monotonic()
        cp = proj.run("label", "1", "L", env={"GUILDLITE_LOCK_MODE": mode}, timeout=60)
        elapsed = time.monotonic() - t0
        assert cp.returncode == 2 and TRACEBACK not in cp.stderr, (cp.returncode, cp.stderr)
        assert f"is a {kind}, not a lock file" in cp.stderr and "bad run record" in cp.stderr, cp.stderr
        assert elapsed < STALE_SECONDS / 2, elapsed  # refused, not waited on
        assert (run_dir / "run.json").read_bytes() == before
        if kind == "symlink":
            assert (tmp_path / "lock-target").read_text() == "{}"
    finally:
        if lock.is_dir() and not lock.is_symlink():
            lock.rmdir()
        else:
            lock.unlink()
    ok = proj.run("label", "1", "L", env={"GUILDLITE_LOCK_MODE": mode})
    assert ok.returncode == 0, ok.stderr
    assert json.loads((run_dir / "run.json").read_text())["label"] == "L"


# --- #14: cat is bounded ----------------------------------------------------------------------------


def _sparse(run_dir: Path, name: str, size: int) -> Path:
    p = run_dir / name
    with open(p, "wb") as f:
        f.write(b"head\n")
        f.truncate(size)  # a hole: no disk used, reads as zeros
    return p


def test_cat_prints_at_most_max_bytes_of_a_sparse_terabyte_file(module_project: Project) -> None:
    proj = module_project
    if not proj.run_dirs():
        assert proj.run("run", "quick", "-y").returncode == 0
    run_dir = proj.run_dirs()[0]
    _sparse(run_dir, "huge.log", 1 << 40)
    cp = proj.run("cat", "1", "huge.log", "--max-bytes", str(1 << 20), timeout=60)
    assert cp.returncode == 1 and TRACEBACK not in cp.stderr, (cp.returncode, cp.stderr[-500:])
    assert len(cp.stdout.encode()) == 1 << 20 and cp.stdout.startswith("head\n")
    assert f"cut after {1 << 20} bytes of {1 << 40}" in cp.stderr, cp.stderr
    # The default bound (1 GiB) ends it too, into /dev/null, well before a TiB could stream.
    p = subprocess.run([*GUILDLITE, "cat", "1", "huge.log"], cwd=proj.root, env=proj.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert p.returncode == 1 and f"cut after {1 << 30} bytes" in p.stderr, p.stderr
    # A file within the bound prints whole, exit 0; --max-bytes 0 lifts the bound.
    (run_dir / "small.log").write_bytes(b"x" * 1000)
    for extra in ([], ["--max-bytes", "1000"], ["--max-bytes", "0"]):
        ok = proj.run("cat", "1", "small.log", *extra)
        assert ok.returncode == 0 and ok.stdout == "x" * 1000, (extra, ok.stderr)
    bad = proj.run("cat", "1", "small.log", "--max-bytes", "-1")
    assert bad.returncode == 2 and TRACEBACK not in bad.stderr


# --- #10: tensorboard export of hand-written scalars -------------------------------------------------


def test_tensorboard_skips_steps_and_values_an_event_file_cannot_hold(make_project: Callable[..., Project],
                                                                      tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    proj = make_project()
    assert proj.run("run", "quick", "-y").returncode == 0
    (run_dir,) = proj.run_dirs()
    rows = [
        '{"step": 1e999, "key": "a", "value": 1}',  # inf
        '{"step": -1e999, "key": "a", "value": 1}',
        '{"step": NaN, "key": "a", "value": 1}',
        '{"step": 1e30, "key": "a", "value": 1}',  # finite, beyond int64
        f'{{"step": {1 << 63}, "key": "a", "value": 1}}',
        '{"step": true, "key": "a", "value": 1}',
        '{"step": "3", "key": "a", "value": 1}',
        f'{{"step": 2, "key": "a", "value": {10 ** 400}}}',  # an int no float holds
        f'{{"step": 2, "key": "a", "value": 1, "time": {10 ** 400}}}',  # a bad time: the run's start instead
        '{"step": 3, "key": "a", "value": 1, "time": 1e999}',
        '{"step": 4, "key": "a", "value": 0.5}',
    ]
    (run_dir / "scalars.jsonl").write_text("\n".join(rows) + "\n")
    logdir = tmp_path / "tb"
    cp = proj.run("tensorboard", "--no-server", "--logdir", str(logdir), timeout=120)
    assert cp.returncode == 0 and TRACEBACK not in cp.stderr, (cp.returncode, cp.stderr[-2000:])
    assert "1 written" in cp.stderr, cp.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (sub,) = logdir.iterdir()
    acc = EventAccumulator(str(sub), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Tensors("a")] == [2, 3, 4]  # step 2 with its bad time: the run's start


# --- #12: the runs listing's footer is true when bad records are the newest ---------------------------


def test_runs_footer_counts_bad_records_apart_from_older_runs(make_project: Callable[..., Project]) -> None:
    proj = make_project()
    assert proj.run("run", "quick", "-y").returncode == 0
    (good,) = proj.run_dirs()
    for name, text in (("29991231T000000-aaaaaa", "[]"), ("29991231T000001-bbbbbb", '{"started": 5}')):
        (proj.runs_dir / name).mkdir()
        (proj.runs_dir / name / "run.json").write_text(text)
    cp = proj.run("runs")
    assert cp.returncode == 0 and TRACEBACK not in cp.stderr, cp.stderr
    (row,) = [line for line in cp.stdout.splitlines() if good.name in line]
    assert row.split()[0] == "[3]", cp.stdout  # numbers count every run dir, bad ones too
    assert "(2 bad run records skipped: [1, 2], see the warnings above)" in cp.stderr, cp.stderr
    assert "older runs not shown" not in cp.stderr and cp.stderr.count("bad run record ") == 2, cp.stderr
    few = proj.run("runs", "-n", "1")  # the window holds only a bad record: the good run is older
    assert few.returncode == 0 and good.name not in few.stdout, few.stdout
    assert "(1 bad run record skipped: [1]" in few.stderr and "(2 older runs not shown: --all)" in few.stderr, few.stderr
    every = proj.run("runs", "--all")
    assert every.returncode == 0 and good.name in every.stdout and "older runs" not in every.stderr
    assert "(2 bad run records skipped: [1, 2]" in every.stderr
    info = proj.run("runs", "info", "1")
    assert info.returncode == 2 and "bad run record" in info.stderr and TRACEBACK not in info.stderr
    assert proj.run("runs", "info", "3").returncode == 0
    neg = proj.run("runs", "-n", "-1")
    assert neg.returncode == 2 and TRACEBACK not in neg.stderr


# --- #11 and #15: guildfile values that cannot be used give clean, short errors ----------------------


def _guildfile_error(make_project: Callable[..., Project], op_body: str, *args: str) -> str:
    proj = make_project("operations:\n  t:\n" + op_body, files={"t.py": SCRIPT})
    cp = proj.run(*(args or ("ops",)))
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr + cp.stdout, (cp.returncode, cp.stderr[-2000:])
    assert cp.stderr.startswith("guildlite: error: ") and not proj.run_dirs(), cp.stderr
    return cp.stderr


def test_a_huge_integer_in_the_guildfile_is_a_clean_error(make_project: Callable[..., Project]) -> None:
    err = _guildfile_error(make_project, "    main: t.py\n    launcher: python\n    flags:\n"
                           f"      n: {'9' * 5000}\n")
    assert "guildfile.yml:6: an integer of 5000 characters: too long" in err and len(err) < 400, err
    err = _guildfile_error(make_project, "    main: t.py\n    launcher: python\n    flags:\n      d: 2024-13-45\n")
    assert "invalid YAML value" in err, err


@pytest.mark.parametrize("value", ["9" * 5000, "x" * 5000, "[" + "1," * 3000 + "x]"])
def test_a_huge_value_on_the_command_line_is_cut_in_the_message(make_project: Callable[..., Project],
                                                                  value: str) -> None:
    err = _guildfile_error(make_project, "    main: t.py\n    launcher: python\n    flags:\n"
                           "      n: {default: 1, choices: [1, 2]}\n", "run", "t", f"n={value}", "-y")
    assert len(err) < 400 and ("characters)" in err or value.startswith("[")), err


@pytest.mark.parametrize(("main", "kind"), [("[t.py]", "got a list"), ("!!binary aGVsbG8=", "got bytes"),
                                            ("5", "got int 5"), ("{a: 1}", "got a mapping")])
def test_main_of_the_wrong_type_says_so(make_project: Callable[..., Project], main: str, kind: str) -> None:
    err = _guildfile_error(make_project, f"    main: {main}\n    launcher: python\n")
    assert "'main' must be a string (a script or module with optional fixed args" in err and kind in err, err
    assert "is required" not in err
    err = _guildfile_error(make_project, "    main: ''\n    launcher: python\n")
    assert "'main' (the script to run) is required" in err


@pytest.mark.parametrize("kind", ["file", "FIFO"])
def test_a_planted_meta_dir_that_is_not_a_directory_is_a_bad_record(module_project: Project, kind: str) -> None:
    proj = module_project
    if not proj.run_dirs():
        assert proj.run("run", "quick", "-y").returncode == 0
    run_dir = proj.run_dirs()[0]
    meta = run_dir / ".guildlite"
    moved = run_dir.parent / f".moved-{run_dir.name}"
    meta.rename(moved)
    try:
        meta.write_text("x") if kind == "file" else os.mkfifo(meta)
        cp = proj.run("label", "1", "M", timeout=60)
        assert cp.returncode == 2 and TRACEBACK not in cp.stderr, (cp.returncode, cp.stderr)
        assert "bad run record" in cp.stderr and ".guildlite is not a directory" in cp.stderr, cp.stderr
    finally:
        meta.unlink()
        moved.rename(meta)


FAKE_SLURM_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$SLURM_CALLS"
"""


def test_a_record_whose_slurm_job_ids_are_not_job_ids_never_reaches_a_slurm_command(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    """A live SLURM run's record whose job ids were replaced by option-like text (`--user=...`):
    `runs`, `runs info` and `stop` never pass it to squeue/sacct/scancel (where `scancel
    --user=me` would cancel every job of the user); the fake SLURM tools on PATH log each call."""
    import socket
    import sys

    proj = make_project()
    assert proj.run("run", "-y", "quick").returncode == 0
    src = proj.run_dirs()[0]
    run_id = "20200101T000000-5a5a5a"
    run_dir = proj.runs_dir / run_id
    subprocess.run(["cp", "-r", str(src), str(run_dir)], check=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time\n"
         "from guildlite._files import RunPaths\nfrom guildlite._owner import take_owner_lock\n"
         "from guildlite._process import process_start\n"
         "from pathlib import Path\n"
         f"take_owner_lock(RunPaths(Path({str(run_dir)!r})), {run_id!r}, os.getpid(), process_start(os.getpid()), 5)\n"
         "print('held', flush=True)\ntime.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env=proj.env, cwd=tmp_path)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        from guildlite._process import process_start

        rec = json.loads((run_dir / "run.json").read_text())
        rec.update(status="running", host=socket.gethostname(), pid=holder.pid, pid_start=process_start(holder.pid),
                   job_pid=None, remote={"backend": "slurm", "job_id": "--user=root", "job_ids": ["--user=root"]})
        (run_dir / "run.json").write_text(json.dumps(rec))
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir()
        for tool in ("squeue", "sacct", "scancel", "sbatch", "scontrol"):
            (bin_dir / tool).write_text(FAKE_SLURM_TOOL)
            (bin_dir / tool).chmod(0o755)
        calls = tmp_path / "calls.log"
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_CALLS": str(calls)}
        for args in (("runs", "-a"), ("runs", "info", run_id), ("stop", run_id, "--timeout", "10")):
            cp = proj.run(*args, env=env, timeout=60)
            assert TRACEBACK not in cp.stderr, cp.stderr
        logged = calls.read_text() if calls.exists() else ""
        assert "--user=root" not in logged, logged
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("launch", [
    {"parallel": "abc"}, {"parallel": 2.5}, {"backend_options": "x"}, {"backend_options": {"": None, "x": [1]}},
    {"plugin_names": "ab"}, {"plugin_names": [5]}, {"gpus": 5}, {"fail_fast": "yes"}, {"backend": 5},
    {"backend": "../x"}, {"guildfile": 7, "op": ["x"]},
])
def test_a_crafted_launch_file_never_makes_a_restart_fail_with_a_traceback(
    make_project: Callable[..., Project], launch: dict[str, object]
) -> None:
    """A run's .guildlite/launch.json is input like its record: a field of the wrong type is read
    as absent (the restart runs as told here), never a traceback; a wrong value is a clean error."""
    proj = make_project()
    assert proj.run("run", "-y", "quick").returncode == 0
    run_dir = proj.run_dirs()[0]
    path = run_dir / ".guildlite" / "launch.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **launch}))
    for args in (("run", "-y", "--restart", run_dir.name), ("run", "-y", "-b", "--restart", run_dir.name)):
        cp = proj.run(*args, timeout=60)
        assert TRACEBACK not in cp.stderr, cp.stderr
        assert cp.returncode in (0, 2), (cp.returncode, cp.stderr)
        if cp.returncode == 2:
            assert cp.stderr.startswith("guildlite: error: "), cp.stderr


FAKE_SQUEUE = """#!/bin/sh
if [ -e "$FAKE_ALIVE" ]; then echo "4242|RUNNING|None|localhost"; fi
"""


def test_a_submitted_run_whose_dir_is_deleted_ends_when_its_job_does(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    """The run dir of a queued job deleted from under `guildlite run` (rm -rf, a tmp cleaner): once
    the engine says the job is gone, guildlite ends with a clear message instead of polling forever
    for a record that will never be written (fake sbatch/squeue on PATH: no cluster needed)."""
    import shutil
    import sys

    proj = make_project()
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for tool, text in (("sbatch", "#!/bin/sh\necho 4242\n"), ("squeue", FAKE_SQUEUE), ("sacct", "#!/bin/sh\n"),
                       ("scancel", "#!/bin/sh\n"), ("scontrol", "#!/bin/sh\n")):
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    alive = tmp_path / "alive"
    alive.touch()
    env = {**proj.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_ALIVE": str(alive)}
    p = subprocess.Popen([sys.executable, "-m", "guildlite", "run", "quick", "--backend", "slurm", "-y"],
                         cwd=proj.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any((d / ".guildlite" / "slurm.json").exists() for d in proj.run_dirs()):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        time.sleep(1)  # the job id recorded (sbatch answered) and the watcher polling
        shutil.rmtree(proj.run_dirs()[0])
        alive.unlink()
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode not in (0, None), err
    assert "cannot record the end" in err and TRACEBACK not in err, err
