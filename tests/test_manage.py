"""Changing runs through the real CLI: ``label``, ``tag``, ``runs delete|restore|purge``, ``stop`` and
``run --restart``, on real jobs (``launcher: python``, and a 2-rank torchrun job for ``stop``).

The test project declares a plugin, ``EndLog``, that appends ``<run id> <status> <pid>`` to a file
on every ``on_run_end``: how the tests see that the hook fired, how often, and in which process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import (
    GUILDLITE,
    TRACEBACK,
    Project,
    assert_clean_error,
    wait_no_marker_procs,
    wait_until,
    write_project,
)

ENDLOG_PLUGIN = textwrap.dedent(
    """\
    import os
    from guildlite import Plugin

    class EndLog(Plugin):
        def __init__(self, path):
            self.path = path

        def on_run_end(self, run):
            with open(self.path, "a") as f:
                f.write(f"{run.id} {run.status} {os.getpid()}\\n")
    """
)

_FLAGS = 'flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)\n'

# hold=1: runs until stopped (60 s at most). hold=0: waits for the file named by $GLT_GO, then ends.
WAIT = "import os, sys, time\n" + _FLAGS + textwrap.dedent(
    """\
    with open("started", "w") as f:
        f.write(str(os.getpid()))
    go = os.environ.get("GLT_GO", "")
    deadline = time.time() + 60
    while time.time() < deadline:
        if flags["hold"] == "0" and (not go or os.path.exists(go)):
            break
        time.sleep(0.05)
    else:
        sys.exit(3)
    print("loss: 0.5", flush=True)
    """
)

# Every rank records its pid, then prints and sleeps (60 s at most).
LOOP = textwrap.dedent(
    """\
    import os, sys, time
    rank = int(os.environ["RANK"])
    with open(f"rank{rank}.pid", "w") as f:
        f.write(str(os.getpid()))
    for i in range(600):
        print(f"tick {i} rank={rank}", flush=True)
        time.sleep(0.1)
    """
)

STUBBORN = textwrap.dedent(
    """\
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open("started", "w") as f:
        f.write(str(os.getpid()))
    for i in range(600):
        time.sleep(0.1)
    """
)

# Six steps with a checkpoint after each; fail=1 fails after step 2. A restart resumes after the
# last checkpointed step. steps.txt (in the run dir) gets one line per step done.
CKPT = "import json, os, sys\n" + _FLAGS + textwrap.dedent(
    """\
    count = os.environ.get("GUILDLITE_RESTART_COUNT")
    start = json.load(open("ckpt.json"))["step"] if os.path.exists("ckpt.json") else 0
    print(f"restart_count={count} resume_from={start} lr={flags['lr']}", flush=True)
    for step in range(start, 6):
        with open("steps.txt", "a") as f:
            f.write(f"{step}\\n")
        with open("ckpt.json", "w") as f:
            json.dump({"step": step + 1}, f)
        if flags["fail"] == "1" and step == 2:
            sys.exit(1)
    print("loss: 0.25")
    """
)

# A trial fails while $GLT_FAILDIR/fail-<x> exists; attempts.txt gets GUILDLITE_RESTART_COUNT per attempt.
BT = "import os, sys\n" + _FLAGS + textwrap.dedent(
    """\
    with open("attempts.txt", "a") as f:
        f.write(os.environ["GUILDLITE_RESTART_COUNT"] + "\\n")
    if os.path.exists(os.path.join(os.environ["GLT_FAILDIR"], "fail-" + flags["x"])):
        print("failing on purpose")
        sys.exit(4)
    print("loss: " + flags["x"])
    """
)

GUILDFILE = """\
plugins:
  - class: endlog:EndLog
    args: {{path: "{endlog}"}}
operations:
  wait:
    main: wait.py
    launcher: python
    flags:
      hold: 0
      lr: 0.1
  loop2:
    main: loop.py
    nproc-per-node: 2
  stubborn:
    main: stubborn.py
    launcher: python
  ckpt:
    main: ckpt.py
    launcher: python
    flags:
      lr: 0.1
      fail: 0
  bt:
    main: bt.py
    launcher: python
    flags:
      x: 1
"""

FILES = {"endlog.py": ENDLOG_PLUGIN, "wait.py": WAIT, "loop.py": LOOP, "stubborn.py": STUBBORN, "ckpt.py": CKPT,
         "bt.py": BT}


class Proj(Project):
    """The test project, with helpers for run ids, records and the EndLog file."""

    endlog: Path

    def ok(self, *args: str, **kw: Any) -> str:
        cp = self.run(*args, **kw)
        assert cp.returncode == 0, (args, cp.returncode, cp.stdout, cp.stderr)
        assert TRACEBACK not in cp.stderr
        return cp.stdout

    def ids(self) -> list[str]:
        """Published run ids, oldest first."""
        return [p.name for p in self.run_dirs()]

    def trash(self) -> list[str]:
        t = self.runs_dir / ".trash"
        return sorted(p.name for p in t.iterdir()) if t.is_dir() else []

    def stage_all(self, *args: str) -> list[str]:
        """``run --stage wait ARGS``: the ids of the runs it made (a batch: with its trials)."""
        before = set(self.ids())
        self.ok("run", "--stage", "-y", "wait", *args)
        return sorted(set(self.ids()) - before)

    def stage(self, *args: str) -> str:
        (new,) = self.stage_all(*args)
        return new

    def listed(self) -> list[str]:
        return [r["id"] for r in json.loads(self.ok("runs", "--all", "--json"))]

    def ends(self) -> list[list[str]]:
        """EndLog lines, split: [run id, status, pid]."""
        return [line.split() for line in self.endlog.read_text().splitlines()] if self.endlog.exists() else []

    def ends_of(self, run_id: str) -> list[str]:
        return [status for rid, status, _ in self.ends() if rid == run_id]

    def status(self, run_id: str) -> str:
        return json.loads(self.ok("runs", "info", "--json", run_id))["status"]


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Proj]:
    endlog = tmp_path / "endlog.txt"
    root = write_project(tmp_path / "project", GUILDFILE.format(endlog=endlog), FILES)
    p = Proj(root=root, runs_dir=tmp_path / "runs")
    p.endlog = endlog
    yield p
    p.cleanup()


def _spawn_and_wait_running(
    proj: Proj,
    *args: str,
    n_dirs: int = 1,
    env: dict[str, str] | None = None,
    ready: Callable[[list[Path]], bool] | None = None,
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``guildlite run -y ARGS``; wait until its ``n_dirs`` run dirs exist and ``ready`` holds."""
    p = proj.spawn("run", "-y", *args, env=env)

    def up() -> list[str]:
        if p.poll() is not None:
            raise AssertionError(f"guildlite ended early ({p.returncode}): {p.communicate()}")
        dirs = proj.run_dirs()
        if len(dirs) < n_dirs or not (ready or (lambda ds: True))(dirs):
            return []
        return [d.name for d in dirs]

    return p, wait_until(up, timeout=60, what=f"run {args} to start")


def _running(d: Path, *files: str) -> bool:
    """The run in ``d`` is recorded running and its job wrote ``files``."""
    return json.loads((d / "run.json").read_text())["status"] == "running" and all((d / f).exists() for f in files)


def _finish(p: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _record(proj: Project, run_id: str, trash: bool = False) -> dict[str, Any]:
    d = proj.runs_dir / (".trash" if trash else "") / run_id
    return json.loads((d / "run.json").read_text())


# --- label -------------------------------------------------------------------------------------------


def test_label_set_and_clear(proj: Proj) -> None:
    a, b, c = proj.stage(), proj.stage(), proj.stage()
    out = proj.ok("label", a, b[:-1], "best so far")
    assert out.splitlines() == [f"{a}: 'best so far'", f"{b}: 'best so far'"]
    assert [_record(proj, x)["label"] for x in (a, b, c)] == ["best so far", "best so far", ""]
    listed = {r["id"]: r["label"] for r in json.loads(proj.ok("runs", "--json"))}
    assert listed == {a: "best so far", b: "best so far", c: ""}
    assert proj.ok("label", "1", "newest") == f"{c}: 'newest'\n"  # an index selector
    assert _record(proj, c)["label"] == "newest"
    assert proj.ok("label", "--clear", a) == f"{a}: label cleared\n"
    assert [_record(proj, x)["label"] for x in (a, b, c)] == ["", "best so far", "newest"]
    assert_clean_error(proj.run("label", a), 2, "give RUNS and a TEXT")
    assert _record(proj, a)["label"] == ""


# --- tag ---------------------------------------------------------------------------------------------


def test_tag_add_and_remove(proj: Proj) -> None:
    a, b = proj.stage(), proj.stage()
    assert proj.ok("tag", a, "+a", "+b", "-a") == f"{a}: b\n"  # changes apply in order
    assert _record(proj, a)["tags"] == ["b"]
    assert proj.ok("tag", a, b, "+x", "+b").splitlines() == [f"{a}: b x", f"{b}: x b"]
    assert proj.ok("tag", b, "-x", "-gone") == f"{b}: b\n"  # removing an absent tag is fine
    assert proj.ok("tag", b, "-b") == f"{b}: (no tags)\n"
    assert (_record(proj, a)["tags"], _record(proj, b)["tags"]) == (["b", "x"], [])
    assert json.loads(proj.ok("runs", "info", "--json", a))["tags"] == ["b", "x"]


@pytest.mark.parametrize("name", ["fast", "high"])
def test_tag_remove_a_tag_whose_name_starts_like_a_short_option(proj: Proj, name: str) -> None:
    a = proj.stage()
    proj.ok("tag", a, f"+{name}", "+keep")
    cp = proj.run("tag", a, f"-{name}")
    assert (cp.returncode, cp.stdout) == (0, f"{a}: keep\n"), cp.stderr
    assert _record(proj, a)["tags"] == ["keep"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["+a"], "give RUNS and at least one +TAG or -TAG"),
        (["{A}"], "give RUNS and at least one +TAG or -TAG"),
        (["{A}", "+"], "tag change '+' must be +TAG or -TAG"),
        (["{A}", "+ok", "-"], "tag change '-' must be +TAG or -TAG"),
    ],
)
def test_tag_bad_input(proj: Proj, args: list[str], needle: str) -> None:
    a = proj.stage()
    assert_clean_error(proj.run("tag", *[x.format(A=a) for x in args]), 2, needle)
    assert _record(proj, a)["tags"] == []  # nothing half-applied


# --- delete, restore, purge --------------------------------------------------------------------------


def test_delete_restore_purge(proj: Proj) -> None:
    a, b, c = proj.stage(), proj.stage("lr=0.2"), proj.stage()
    cp = proj.run("runs", "delete", a)  # stdin is not a terminal, no -y
    assert_clean_error(cp, 2, "Delete 1 run(s) (to the trash)?", "Pass -y")
    assert proj.ids() == [a, b, c] and proj.trash() == []

    assert proj.ok("runs", "delete", "-y", a, b) == f"deleted {a}\ndeleted {b}\n"
    assert proj.ids() == [c] and proj.trash() == [a, b]
    assert proj.listed() == [c]
    assert [r["id"] for r in json.loads(proj.ok("compare", "--json"))] == [c]
    assert _record(proj, b, trash=True)["flags"]["lr"] == 0.2  # moved whole

    # Selectors count within the trash: 1 is the newest trashed run (b).
    assert proj.ok("runs", "restore", "1") == f"restored {b}\n"
    assert proj.ids() == [b, c] and proj.trash() == [a]
    info = json.loads(proj.ok("runs", "info", "--json", b))
    assert (info["status"], info["flags"]["lr"], info["run_dir"]) == ("staged", 0.2, str(proj.runs_dir / b))

    assert_clean_error(proj.run("runs", "purge"), 2, "Permanently delete 1 run(s)?", "Pass -y")
    assert proj.trash() == [a]
    assert_clean_error(proj.run("runs", "restore"), 2, "Restore 1 run(s)?", "Pass -y")
    assert proj.ok("runs", "purge", "-y") == f"purged {a}\n"
    assert proj.trash() == [] and not (proj.runs_dir / a).exists()

    for cmd in ("restore", "purge"):
        cp = proj.run("runs", cmd, "-y")
        assert cp.returncode == 0 and cp.stdout == "" and "the trash is empty" in cp.stderr
    assert proj.ids() == [b, c]


def test_purge_and_restore_by_selector(proj: Proj) -> None:
    a, b, c = proj.stage(), proj.stage(), proj.stage()
    proj.ok("runs", "delete", "-y", "1:3")
    assert proj.trash() == [a, b, c] and proj.ids() == []
    assert proj.ok("runs", "purge", "-y", b) == f"purged {b}\n"
    assert proj.ok("runs", "restore", a[:-1]) == f"restored {a}\n"
    assert proj.trash() == [c] and proj.ids() == [a]
    assert_clean_error(proj.run("runs", "restore", a), 2, f"no run matches {a!r}")  # not in the trash
    assert_clean_error(proj.run("runs", "purge", "-y", "zzz"), 2, "no run matches 'zzz'")
    assert proj.trash() == [c]


def test_purge_removes_what_killed_writers_left_an_hour_ago(proj: Proj) -> None:
    a = proj.stage()
    old, fresh = proj.runs_dir / ".staging-20200101T000000-000aaa", proj.runs_dir / ".staging-20200101T000001-000bbb"
    for d in (old, fresh):
        (d / "src").mkdir(parents=True)
        (d / "src" / "train.py").write_text("x = 1\n")
    # atomic writes' temp files, as a kill between write and rename leaves them
    old_tmp = proj.runs_dir / a / ".run.json.tmp-4242-00aa11"
    old_meta_tmp = proj.runs_dir / a / ".guildlite" / ".env.json.tmp-4242-00aa12"
    fresh_tmp = proj.runs_dir / a / ".run.json.tmp-4243-00aa13"
    user_file = proj.runs_dir / a / ".notes.tmp-1"  # not ours: the name does not match
    for f in (old_tmp, old_meta_tmp, fresh_tmp, user_file):
        f.parent.mkdir(exist_ok=True)
        f.write_text("{")
    two_hours_ago = time.time() - 7200
    for p in (old, old_tmp, old_meta_tmp, user_file):
        os.utime(p, (two_hours_ago, two_hours_ago))
    cp = proj.run("runs", "purge")  # not a terminal: asks for -y
    assert cp.returncode == 2 and "Delete 3 leftover(s) of interrupted staging or writes? Pass -y" in cp.stderr
    assert old.exists() and old_tmp.exists()
    assert proj.ok("runs", "purge", "-y").splitlines() == sorted(
        f"removed {p.relative_to(proj.runs_dir)}" for p in (old, old_tmp, old_meta_tmp))
    assert not old.exists() and not old_tmp.exists() and not old_meta_tmp.exists()
    assert fresh.exists() and fresh_tmp.exists() and user_file.exists()  # in progress now, or not ours
    assert proj.ids() == [a] and json.loads((proj.runs_dir / a / "run.json").read_text())["id"] == a
    assert proj.ok("runs", "purge", "-y", "--runs-dir", str(proj.runs_dir)) == ""  # nothing left to do


# Takes the lock named argv[1] as a writer in lockfile mode does, says so, and holds it.
_SOFT_HOLDER = ("import sys, time; from pathlib import Path; from guildlite._lock import SoftLock\n"
                "SoftLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)")


def _hold_soft_lock(path: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", _SOFT_HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    assert p.stdout is not None and p.stdout.readline() == "held\n"
    return p


def test_purge_removes_what_a_killed_guildlite_left_in_its_runs(proj: Proj) -> None:
    """A SIGKILLed guildlite leaves its run's space reserve (256 KB) and, in lockfile mode, a
    lock file of a writer killed while holding it: ``runs purge`` removes both from runs that are
    not running, never a live holder's lock file nor a running run's reserve."""
    p, (dead,) = _spawn_and_wait_running(proj, "wait", "hold=1", ready=lambda ds: _running(ds[0], "started"))
    reserve = proj.runs_dir / dead / ".guildlite" / "reserve"
    assert reserve.stat().st_size == 256 * 1024
    job = int(wait_until(lambda: (proj.runs_dir / dead / "started").read_text(), what="the job's pid"))
    p.kill()
    p.wait()
    os.kill(job, signal.SIGKILL)  # the job outlives its killed guildlite: not the point here
    assert proj.status(dead) == "terminated"
    killed_writer = _hold_soft_lock(proj.runs_dir / dead / ".guildlite" / "lock.held")
    killed_writer.kill()
    killed_writer.wait()
    other = proj.stage()
    live_writer = _hold_soft_lock(proj.runs_dir / other / ".guildlite" / "lock.held")
    try:
        q, ids = _spawn_and_wait_running(proj, "wait", "hold=1", n_dirs=3,
                                         ready=lambda ds: _running(ds[-1], "started"))
        running = ids[-1]
        running_lock = proj.runs_dir / running / ".guildlite" / "lock.held"
        shutil.copy(proj.runs_dir / dead / ".guildlite" / "lock.held", running_lock)  # its holder gone, too
        assert proj.ok("runs", "purge", "-y").splitlines() == [
            f"removed {dead}/.guildlite/lock.held", f"removed {dead}/.guildlite/reserve"]
        assert not reserve.exists() and not (proj.runs_dir / dead / ".guildlite" / "lock.held").exists()
        assert (proj.runs_dir / other / ".guildlite" / "lock.held").exists()  # held by a live process
        assert (proj.runs_dir / running / ".guildlite" / "reserve").exists() and running_lock.exists()
        running_lock.unlink()
        assert proj.ok("stop", running) == f"{running} terminated\n"
        _finish(q)
    finally:
        live_writer.kill()
        live_writer.wait()
    # The stopped run freed its own reserve; the writer that held other's lock is gone now.
    assert proj.ok("runs", "purge", "-y") == f"removed {other}/.guildlite/lock.held\n"
    assert [proj.status(r) for r in (dead, other, running)] == ["terminated", "staged", "terminated"]


def test_restore_refuses_to_overwrite(proj: Proj) -> None:
    a = proj.stage()
    proj.ok("runs", "delete", "-y", a)
    shutil.copytree(proj.runs_dir / ".trash" / a, proj.runs_dir / a)
    (proj.runs_dir / a / "marker").write_text("the copy")
    assert_clean_error(proj.run("runs", "restore", "-y"), 2, f"cannot restore {a}", "exists")
    assert (proj.runs_dir / a / "marker").read_text() == "the copy" and proj.trash() == [a]


def test_delete_a_batch_takes_its_trials(proj: Proj) -> None:
    solo = proj.stage()
    batch_ids = proj.stage_all("hold=[0,1]")
    assert len(batch_ids) == 3
    batch = next(i for i in batch_ids if _record(proj, i)["is_batch"])
    trials = _record(proj, batch)["trials"]
    out = proj.ok("runs", "delete", "-y", batch[:-1])
    assert sorted(out.splitlines()) == sorted(f"deleted {i}" for i in [batch, *trials])
    assert proj.ids() == [solo] and proj.trash() == sorted(batch_ids)
    proj.ok("runs", "restore", "-y")
    assert proj.ids() == sorted([solo, *batch_ids]) and proj.trash() == []
    assert [t["id"] for t in json.loads(proj.ok("runs", "--batch", batch, "--json"))
            if not t["is_batch"]] == sorted(trials, reverse=True)


def test_restore_a_batch_brings_back_its_trials(proj: Proj) -> None:
    batch_ids = proj.stage_all("hold=[0,1]")
    batch = next(i for i in batch_ids if _record(proj, i)["is_batch"])
    proj.ok("runs", "delete", "-y", batch)
    assert proj.trash() == sorted(batch_ids)
    proj.ok("runs", "restore", batch)
    assert proj.ids() == sorted(batch_ids) and proj.trash() == []


def _run_on_a_terminal(proj: Proj, args: list[str], answer: str) -> tuple[int, str, str]:
    master, slave = os.openpty()
    try:
        p = subprocess.Popen([*GUILDLITE, *args], cwd=proj.root, env=proj.env, stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        os.close(slave)
        slave = -1
        os.write(master, answer.encode())
        out, err = p.communicate(timeout=60)
        return p.returncode, out, err
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_delete_asks_on_a_terminal(proj: Proj) -> None:
    a = proj.stage()
    code, out, err = _run_on_a_terminal(proj, ["runs", "delete", a], "n\n")
    assert code == 1 and "Delete 1 run(s) (to the trash)?" in out and "guildlite: error: cancelled" in err
    assert proj.ids() == [a] and proj.trash() == []
    code, out, err = _run_on_a_terminal(proj, ["runs", "delete", a], "y\n")
    assert code == 0 and f"deleted {a}" in out, err
    assert proj.ids() == [] and proj.trash() == [a]


# --- a running run: refusals, live label/tag, stop --------------------------------------------------


def test_running_run_refuses_delete_and_restart_then_stops(proj: Proj) -> None:
    p, (rid,) = _spawn_and_wait_running(proj, "wait", "hold=1", ready=lambda ds: _running(ds[0], "started"))
    assert proj.status(rid) == "running"

    assert_clean_error(proj.run("runs", "delete", "-y", rid), 2, "refusing to delete running runs", rid, "--force")
    assert proj.ids() == [rid] and proj.trash() == []
    assert_clean_error(proj.run("run", "--restart", rid, "-y"), 2, f"run {rid} is running", "stop it")

    proj.ok("label", rid, "live")  # the owner's later saves keep what inspect commands set
    proj.ok("tag", rid, "+live")

    assert proj.ok("stop", rid) == f"{rid} terminated\n"
    code, _, err = _finish(p)
    assert code != 0 and TRACEBACK not in err
    rec = _record(proj, rid)
    assert (rec["status"], rec["label"], rec["tags"]) == ("terminated", "live", ["live"])
    assert proj.ends() == [[rid, "terminated", str(p.pid)]]  # on_run_end once, in the owning process
    wait_no_marker_procs(proj.marker)

    cp = proj.run("stop", rid)
    assert cp.returncode == 0 and cp.stdout == "" and "nothing to stop" in cp.stderr


def test_stop_a_2_rank_torchrun_run(proj: Proj) -> None:
    def both_ranks(ds: list[Path]) -> bool:
        return _running(ds[0], "rank0.pid", "rank1.pid")

    p, (rid,) = _spawn_and_wait_running(proj, "loop2", ready=both_ranks)
    rank_pids = [int((proj.runs_dir / rid / f"rank{r}.pid").read_text()) for r in (0, 1)]
    assert all(Path(f"/proc/{pid}").exists() for pid in rank_pids)
    assert _record(proj, rid)["nproc_per_node"] == 2

    assert proj.ok("stop", rid) == f"{rid} terminated\n"
    code, _, err = _finish(p)
    assert code != 0 and TRACEBACK not in err
    rec = _record(proj, rid)
    assert rec["status"] == "terminated" and rec["stopped"]
    assert proj.ends() == [[rid, "terminated", str(p.pid)]]
    wait_no_marker_procs(proj.marker, timeout=30)  # torchrun and both ranks are gone
    for pid in rank_pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        assert state in ("Z", "X"), f"rank process {pid} survived the stop"
    log = (proj.runs_dir / rid / "output.log").read_text()
    assert "[default0]:tick 0 rank=0" in log and "[default1]:tick 0 rank=1" in log


def test_stop_one_trial_of_a_parallel_batch(proj: Proj, tmp_path: Path) -> None:
    go = tmp_path / "go"

    def all_started(ds: list[Path]) -> bool:
        trials = [d for d in ds if (d / "run.json").exists() and json.loads((d / "run.json").read_text())["is_trial"]]
        return len(trials) == 3 and all((d / "started").exists() for d in trials) and all(
            json.loads((d / "run.json").read_text())["status"] == "running" for d in trials)

    p, ids = _spawn_and_wait_running(proj, "wait", "hold=[0,1,0]", "--parallel", "3", n_dirs=4,
                                     env={"GLT_GO": str(go)}, ready=all_started)
    batch = next(i for i in ids if _record(proj, i)["is_batch"])
    trials = _record(proj, batch)["trials"]
    held = next(t for t in trials if _record(proj, t)["flags"]["hold"] == 1)
    others = [t for t in trials if t != held]

    assert proj.ok("stop", held) == f"{held} terminated\n"
    assert [proj.status(t) for t in others] == ["running", "running"]  # still going
    assert proj.status(batch) == "running"
    go.write_text("go")
    code, _, err = _finish(p)
    assert TRACEBACK not in err
    assert [_record(proj, t)["status"] for t in trials] == [
        "terminated" if t == held else "completed" for t in trials]
    rec = _record(proj, batch)
    assert rec["status"] != "running" and rec["batch"]["summary"] == {"completed": 2, "terminated": 1}
    assert code != 0  # not every trial completed
    for t in trials:
        assert proj.ends_of(t) == ["terminated" if t == held else "completed"]
    assert len(proj.ends_of(batch)) == 1
    assert {pid for _, _, pid in proj.ends()} == {str(p.pid)}
    wait_no_marker_procs(proj.marker)


def test_stop_a_batch_stops_every_trial(proj: Proj) -> None:
    def all_started(ds: list[Path]) -> bool:
        return len(ds) == 3 and sum(_running(d, "started") for d in ds) == 2

    p, ids = _spawn_and_wait_running(proj, "wait", "hold=1", "lr=[0.1,0.2]", "--parallel", "2", n_dirs=3,
                                     ready=all_started)
    batch = next(i for i in ids if _record(proj, i)["is_batch"])
    trials = _record(proj, batch)["trials"]
    assert len(trials) == 2
    assert proj.ok("stop", batch) == f"{batch} terminated\n"
    code, _, err = _finish(p)
    assert code != 0 and TRACEBACK not in err
    assert [_record(proj, i)["status"] for i in [batch, *trials]] == ["terminated"] * 3
    assert sorted(proj.ends()) == sorted([i, "terminated", str(p.pid)] for i in [batch, *trials])
    wait_no_marker_procs(proj.marker)


def test_stop_a_trial_still_waiting_in_its_batch_keeps_it_from_starting(proj: Proj, tmp_path: Path) -> None:
    go = tmp_path / "go"
    p, ids = _spawn_and_wait_running(proj, "wait", "hold=0", "lr=[0.1,0.2]", n_dirs=3, env={"GLT_GO": str(go)},
                                     ready=lambda ds: sum(_running(d, "started") for d in ds) == 1)
    batch = next(i for i in ids if _record(proj, i)["is_batch"])
    first, second = _record(proj, batch)["trials"]
    assert proj.status(second) == "staged"
    assert proj.ok("stop", second) == f"{second} staged: its batch will not start it\n"
    go.write_text("go")
    code, _, err = _finish(p)
    assert code != 0 and TRACEBACK not in err
    rec = _record(proj, second)
    assert (rec["status"], rec["error"]["message"], rec["started"]) == ("terminated", "stopped before it started", None)
    assert proj.status(first) == "completed"
    assert _record(proj, batch)["batch"]["summary"] == {"completed": 1, "terminated": 1}
    assert proj.ends_of(second) == ["terminated"] and len(proj.ends_of(batch)) == 1


def test_stop_waits_then_force_kills_a_job_that_ignores_sigterm(proj: Proj) -> None:
    p, (rid,) = _spawn_and_wait_running(proj, "stubborn", ready=lambda ds: _running(ds[0], "started"))
    cp = proj.run("stop", "--timeout", "0.5", rid)
    assert_clean_error(cp, 1, f"still running after 0.5 s: {rid}", "--force")
    assert proj.status(rid) == "running"
    cp = proj.run("stop", "--timeout", "0.5", "--force", rid)
    assert cp.returncode == 0, cp.stderr
    assert f"guildlite: {rid} did not stop within 0.5 s: killed" in cp.stderr
    assert cp.stdout.split()[0] == rid
    _finish(p)
    wait_no_marker_procs(proj.marker)
    assert proj.status(rid) == "terminated"


def test_stop_force_reports_the_killed_run_terminated(proj: Proj) -> None:
    _, (rid,) = _spawn_and_wait_running(proj, "stubborn", ready=lambda ds: _running(ds[0], "started"))
    cp = proj.run("stop", "--timeout", "0.3", "--force", rid)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == f"{rid} terminated\n"
    assert proj.status(rid) == "terminated"  # the owner is SIGKILLed: gone, whether or not reaped yet


def test_stop_bad_input(proj: Proj) -> None:
    a = proj.stage()
    cp = proj.run("stop", a)  # staged, not running
    assert cp.returncode == 0 and f"nothing to stop: no selected run is running ({a} is staged)" in cp.stderr
    assert_clean_error(proj.run("stop", "zzz"), 2, "no run matches 'zzz'")
    assert _record(proj, a)["status"] == "staged"


def _delete_force_while_running(proj: Proj, go: Path) -> tuple[str, str]:
    """Start a run, ``runs delete --force`` it while it runs, then let its job complete."""
    p, (rid,) = _spawn_and_wait_running(proj, "wait", env={"GLT_GO": str(go)},
                                        ready=lambda ds: _running(ds[0], "started"))
    assert proj.ok("runs", "delete", "-y", "--force", rid) == f"deleted {rid}\n"
    assert proj.ids() == [] and proj.trash() == [rid]
    go.write_text("go")
    _, _, err = _finish(p)
    wait_no_marker_procs(proj.marker)
    return rid, err


def test_delete_force_of_a_running_run(proj: Proj, tmp_path: Path) -> None:
    rid, err = _delete_force_while_running(proj, tmp_path / "go")
    assert TRACEBACK not in err, err
    assert "cannot record the end" not in err  # recorded in the trash, where the run went
    assert proj.ids() == []  # nothing recreated in the runs dir
    assert proj.ends_of(rid) == ["completed"]  # on_run_end still fired, once
    assert proj.trash() == [rid]


def test_a_run_deleted_while_running_keeps_its_outcome(proj: Proj, tmp_path: Path) -> None:
    rid, _ = _delete_force_while_running(proj, tmp_path / "go")
    proj.ok("runs", "restore", rid)
    info = json.loads(proj.ok("runs", "info", "--json", rid))
    assert (info["status"], info["exit_code"]) == ("completed", 0)


# --- restart -----------------------------------------------------------------------------------------


def test_restart_a_run_in_its_dir_resuming_from_its_checkpoint(proj: Proj) -> None:
    cp = proj.run("run", "-y", "ckpt", "lr=0.7", "fail=1")
    assert cp.returncode == 1, cp.stderr
    (rid,) = proj.ids()
    first = _record(proj, rid)
    assert (first["status"], first["exit_code"], first["attempts"]) == ("error", 1, [])

    cp = proj.run("run", "--restart", rid[:-1], "fail=0", "-y")
    assert cp.returncode == 0, cp.stderr
    assert proj.ids() == [rid]  # the same dir, no new run
    rec = _record(proj, rid)
    assert rec["status"] == "completed" and rec["exit_code"] == 0 and rec["error"] is None
    assert rec["flags"] == {"lr": 0.7, "fail": 0}  # the override, other flags as they were
    assert "--fail=0" in rec["cmd"] and "--lr=0.7" in rec["cmd"]
    (att,) = rec["attempts"]
    assert (att["status"], att["exit_code"], att["flags"]) == ("error", 1, {"lr": 0.7, "fail": 1})
    assert (att["started"], att["stopped"]) == (first["started"], first["stopped"])
    assert rec["started"] > first["stopped"]

    d = proj.runs_dir / rid
    assert (d / "steps.txt").read_text().split() == ["0", "1", "2", "3", "4", "5"]  # resumed, nothing redone
    log = (d / "output.log").read_text()
    assert "restart_count=0 resume_from=0 lr=0.7" in log and "restart_count=1 resume_from=3 lr=0.7" in log

    proj.ok("run", "--restart", rid, "-y")  # again, no overrides
    rec = _record(proj, rid)
    assert [a["status"] for a in rec["attempts"]] == ["error", "completed"]
    assert rec["flags"] == {"lr": 0.7, "fail": 0}
    assert "restart_count=2 resume_from=6" in (d / "output.log").read_text()
    assert proj.ends_of(rid) == ["error", "completed", "completed"]  # on_run_end once per attempt
    rows = json.loads(proj.ok("compare", "--json", "--columns", "id,fail,loss"))
    assert rows == [{"id": rid, "fail": 0, "loss": 0.25}]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["nope=1"], "has no flag 'nope'"),
        (["fail=[0,1]"], "plain flag values"),
        (["--bogus"], "unknown option '--bogus'"),
    ],
)
def test_restart_bad_flags_change_nothing(proj: Proj, args: list[str], needle: str) -> None:
    proj.ok("run", "--stage", "-y", "ckpt")
    (rid,) = proj.ids()
    before = (proj.runs_dir / rid / "run.json").read_text()
    assert_clean_error(proj.run("run", "--restart", rid, *args, "-y"), 2, needle)
    assert (proj.runs_dir / rid / "run.json").read_text() == before
    assert proj.ids() == [rid]


def test_restart_a_batch_reruns_only_unfinished_trials(proj: Proj, tmp_path: Path) -> None:
    faildir = tmp_path / "fail"
    faildir.mkdir()
    (faildir / "fail-2").write_text("")
    env = {"GLT_FAILDIR": str(faildir)}
    cp = proj.run("run", "-y", "bt", "x=[1,2,3]", env=env)
    assert cp.returncode == 1 and TRACEBACK not in cp.stderr
    batch = next(i for i in proj.ids() if _record(proj, i)["is_batch"])
    trials = _record(proj, batch)["trials"]
    first = {t: _record(proj, t) for t in trials}
    assert [first[t]["status"] for t in trials] == ["completed", "error", "completed"]
    assert first[trials[1]]["exit_code"] == 4
    losses = {r["id"]: r.get("loss") for r in json.loads(proj.ok("compare", "--json", "--batch", batch))}
    assert losses == {trials[0]: 1.0, trials[1]: None, trials[2]: 3.0}

    assert_clean_error(proj.run("run", "--restart", batch, "x=5", "-y", env=env), 2, "takes no flags")

    (faildir / "fail-2").unlink()  # the fix
    cp = proj.run("run", "--restart", batch, "-y", env=env)
    assert cp.returncode == 0, cp.stderr
    assert len(proj.ids()) == 4  # no new runs
    rec = _record(proj, batch)
    assert rec["status"] == "completed" and rec["batch"]["summary"] == {"completed": 3}
    assert [a["status"] for a in rec["attempts"]] == ["error"]
    for i, t in enumerate(trials):
        now = _record(proj, t)
        assert now["status"] == "completed"
        attempts = (proj.runs_dir / t / "attempts.txt").read_text().split()
        if i == 1:
            assert attempts == ["0", "1"]  # re-run, and it saw GUILDLITE_RESTART_COUNT=1
            assert [(a["status"], a["exit_code"]) for a in now["attempts"]] == [("error", 4)]
        else:
            assert attempts == ["0"]  # completed trials are not run again
            assert now["attempts"] == [] and now["started"] == first[t]["started"]
    losses = {r["id"]: r["loss"] for r in json.loads(proj.ok("compare", "--json", "--batch", batch))}
    assert losses == {trials[0]: 1.0, trials[1]: 2.0, trials[2]: 3.0}
    assert proj.ends_of(trials[1]) == ["error", "completed"]
    assert proj.ends_of(trials[0]) == proj.ends_of(trials[2]) == ["completed"]
    assert proj.ends_of(batch) == ["error", "completed"]


# --- selectors ---------------------------------------------------------------------------------------

MANAGE_COMMANDS = [
    ["label", "{SEL}", "text"],
    ["label", "--clear", "{SEL}"],
    ["tag", "{SEL}", "+t"],
    ["stop", "{SEL}"],
    ["runs", "delete", "-y", "{SEL}"],
    ["run", "--restart", "{SEL}", "-y"],
]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proj]:
    base = tmp_path_factory.mktemp("manage-sel")
    p = Proj(root=write_project(base / "project", GUILDFILE.format(endlog=base / "endlog.txt"), FILES),
             runs_dir=base / "runs")
    p.endlog = base / "endlog.txt"
    for _ in range(3):
        p.stage()
    yield p
    p.cleanup()


def _snapshot(p: Proj) -> dict[str, str]:
    return {i: (p.runs_dir / i / "run.json").read_text() for i in p.ids()}


@pytest.mark.parametrize("template", MANAGE_COMMANDS, ids=lambda t: " ".join(t))
def test_unknown_and_ambiguous_selectors(staged: Proj, template: list[str]) -> None:
    before = _snapshot(staged)
    cp = staged.run(*[t.format(SEL="zzznope") for t in template])
    assert_clean_error(cp, 2, "no run matches 'zzznope'")
    ids = staged.ids()
    prefix = os.path.commonprefix(ids)
    line = assert_clean_error(staged.run(*[t.format(SEL=prefix) for t in template]), 2,
                              f"matches {len(ids)} runs", "give more of the id")
    assert all(i in line for i in ids)
    assert _snapshot(staged) == before and staged.trash() == []  # nothing changed
