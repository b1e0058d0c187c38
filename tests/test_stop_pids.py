"""``guildlite stop`` signals only processes it can confirm are the run's.

A record's pid comes from a file anyone with access to the runs dir may have written (or from a
run long gone, its pid reused since). Each test plants the pid of an unrelated process the test
started (``sleep 60``) in a staged run's real ``run.json`` marked running, runs the real CLI, and
checks that the process is still alive afterwards.

The owner of a run holds an ``flock`` on its ``.guildlite/owner`` file: a process that does not
(whatever pid and start time the record names) is no owner. Where a test needs a process that
owns the run as far as the lock goes (to reach ``stop``'s other checks), it starts ``OWNER``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from conftest import TRACEBACK, Project

# Holds the owner lock of run dir argv[1] as guildlite's owner does (ignoring SIGTERM with a 2nd arg).
OWNER = (
    "import fcntl, json, os, signal, sys, time\n"
    "fd = os.open(os.path.join(sys.argv[1], '.guildlite', 'owner'), os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.ftruncate(fd, 0)\n"
    "os.write(fd, json.dumps({'pid': os.getpid(), 'run': os.path.basename(sys.argv[1])}).encode())\n"
    "if sys.argv[2:]: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True); time.sleep(60)"
)


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


@pytest.fixture
def procs() -> Iterator[Callable[..., subprocess.Popen[Any]]]:
    """Start a process unrelated to any run (killed at teardown)."""
    started: list[subprocess.Popen[Any]] = []

    def start(*argv: str) -> subprocess.Popen[Any]:
        p = subprocess.Popen(argv or ["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        if argv:  # the python one says when its SIGTERM handler is set
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def _alive(p: subprocess.Popen[Any], grace: float = 1.0) -> bool:
    """Still running ``grace`` seconds on (a signal, had one been sent, ends ``sleep`` at once)."""
    try:
        p.wait(timeout=grace)
        return False
    except subprocess.TimeoutExpired:
        return True


def _plant(project: Project, run_id: str, **fields: Any) -> None:
    """Mark a staged run running, owned by what ``fields`` say."""
    path = project.runs_dir / run_id / "run.json"
    rec = json.loads(path.read_text())
    rec.update(status="running", started=rec["created"], host=socket.gethostname(), **fields)
    path.write_text(json.dumps(rec, indent=2))


def _stage(project: Project, *args: str) -> list[str]:
    cp = project.run("run", "--stage", "-y", "quick", *args)
    assert cp.returncode == 0, cp.stderr
    return [d.name for d in project.run_dirs()]


def _stop(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    cp = project.run("stop", "--timeout", "1", *args, timeout=60)
    assert TRACEBACK not in cp.stderr, cp.stderr
    return cp


@pytest.mark.parametrize("force", [False, True])
def test_stop_never_signals_a_pid_without_a_recorded_start_time(project: Project, procs: Any, force: bool) -> None:
    (rid,) = _stage(project)
    victim = procs(sys.executable, "-c", OWNER, str(project.runs_dir / rid))
    _plant(project, rid, pid=victim.pid, pid_start=None)
    cp = _stop(project, rid, *(["--force"] if force else []))
    assert _alive(victim)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert (f"guildlite: run {rid}: cannot confirm its process (no start time recorded); "
            f"not signalling pid {victim.pid}\n") in cp.stderr
    assert cp.stderr.rstrip().splitlines()[-1] == (
        "guildlite: error: 1 run(s) not stopped: nothing was signalled for them (see above)")


def test_stop_never_signals_a_pid_recorded_on_another_host(project: Project, procs: Any) -> None:
    victim = procs()
    (rid,) = _stage(project)
    _plant(project, rid, pid=victim.pid, pid_start=_start_time(victim.pid))
    path = project.runs_dir / rid / "run.json"
    path.write_text(path.read_text().replace(json.dumps(socket.gethostname()), '"elsewhere.example"'))
    cp = _stop(project, rid, "--force")
    assert _alive(victim)
    assert cp.returncode == 1
    assert f"cannot confirm its process (it runs on host 'elsewhere.example', not here); not signalling pid {victim.pid}" in cp.stderr


def test_stop_never_signals_a_pid_whose_start_time_differs(project: Project, procs: Any) -> None:
    victim = procs()
    (rid,) = _stage(project)
    _plant(project, rid, pid=victim.pid, pid_start=_start_time(victim.pid) - 1)  # the pid was reused since
    cp = _stop(project, rid, "--force")
    assert _alive(victim)
    assert cp.returncode == 0 and "nothing to stop" in cp.stderr  # such a run reads terminated


def test_stop_a_trial_never_signals_a_job_pid_that_is_not_its_owners_child(project: Project, procs: Any) -> None:
    ids = _stage(project, "epochs=[1,2]")
    batch = next(i for i in ids if json.loads((project.runs_dir / i / "run.json").read_text())["is_batch"])
    trial = next(i for i in ids if i != batch)
    owner, victim = procs(sys.executable, "-c", OWNER, str(project.runs_dir / trial)), procs()
    _plant(project, trial, pid=owner.pid, pid_start=_start_time(owner.pid), job_pid=victim.pid)
    cp = _stop(project, trial)
    assert _alive(victim) and _alive(owner, grace=0)
    assert cp.returncode == 1
    assert (f"guildlite: run {trial}: its job (pid {victim.pid}) is not a child of its guildlite process "
            f"(pid {owner.pid}); not signalling it\n") in cp.stderr


def test_stop_force_kills_the_confirmed_owner_but_not_a_job_pid_that_is_not_its_child(
    project: Project, procs: Any
) -> None:
    (rid,) = _stage(project)
    owner, victim = procs(sys.executable, "-c", OWNER, str(project.runs_dir / rid), "stubborn"), procs()
    _plant(project, rid, pid=owner.pid, pid_start=_start_time(owner.pid), job_pid=victim.pid)
    cp = _stop(project, rid, "--force")
    assert _alive(victim)
    assert owner.wait(timeout=10) == -signal.SIGKILL
    assert cp.returncode == 0, cp.stderr
    assert f"guildlite: {rid} did not stop within 1 s: killed" in cp.stderr


def test_a_run_records_the_host_it_runs_on(project: Project) -> None:
    """A run staged (or first run) on one host and restarted on another is owned there: its record
    names the host of its owner, the one ``stop`` checks."""
    (rid,) = _stage(project)
    path = project.runs_dir / rid / "run.json"
    path.write_text(path.read_text().replace(json.dumps(socket.gethostname()), '"login1.example"'))
    cp = project.run("run", "--restart", rid, "-y")
    assert cp.returncode == 0, cp.stderr
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed" and rec["host"] == socket.gethostname()


@pytest.mark.parametrize("force", [False, True])
def test_stop_never_signals_a_live_process_named_with_its_real_start_time(
    project: Project, procs: Any, force: bool
) -> None:
    """Host, pid and the true start time of a live unrelated process: still no owner, since it does
    not hold the run's owner lock. The run reads terminated, in ``runs`` too."""
    victim = procs()
    (rid,) = _stage(project)
    _plant(project, rid, pid=victim.pid, pid_start=_start_time(victim.pid))
    cp = _stop(project, rid, *(["--force"] if force else []))
    assert _alive(victim)
    assert cp.returncode == 0 and "nothing to stop" in cp.stderr and "is terminated" in cp.stderr, cp.stderr
    listed = project.run("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["terminated"]


@pytest.mark.parametrize("how", ["symlinked meta dir", "hard-linked owner file", "copied owner file"])
def test_stop_never_signals_the_owner_of_another_run_through_its_lock(
    project: Project, procs: Any, how: str
) -> None:
    """A planted run names a live guildlite-like owner of another run, with that run's owner lock
    reached by a symlink, a hard link or a copy: the lock proves nothing for the planted run."""
    ids = _stage(project, "epochs=[1,2]")  # two runs: one owned for real, one planted
    real, planted = sorted(ids)[:2]
    owner = procs(sys.executable, "-c", OWNER, str(project.runs_dir / real))
    meta = project.runs_dir / planted / ".guildlite"
    (meta / "owner").unlink(missing_ok=True)
    if how == "symlinked meta dir":
        shutil.rmtree(meta)
        meta.symlink_to(project.runs_dir / real / ".guildlite")
    elif how == "hard-linked owner file":
        os.link(project.runs_dir / real / ".guildlite" / "owner", meta / "owner")
    else:
        shutil.copy(project.runs_dir / real / ".guildlite" / "owner", meta / "owner")
    _plant(project, planted, pid=owner.pid, pid_start=_start_time(owner.pid), is_trial=False, parent=None)
    cp = _stop(project, planted, "--force")
    assert _alive(owner)
    assert cp.returncode == 0 and "nothing to stop" in cp.stderr, cp.stderr
