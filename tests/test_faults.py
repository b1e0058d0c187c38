"""Crash consistency and faults: guildlite killed, signalled, raced, starved of disk.

Real ``guildlite run`` processes on tiny scripts (helpers in ``_faults.py``):

- SIGKILL of the guildlite parent at seeded random points (staging, plugin hooks, job start,
  job running, around run.json writes), >= 200 in all; after each, the run store invariants
  (``check_store``) hold and no process of the test is left. ``pytest -s`` prints a summary.
- SIGTERM / SIGINT / double SIGINT in each phase: ``terminated``, one ``on_run_end``, no ranks left.
- 8 concurrent ``guildlite run`` into one runs dir while ``runs``/``compare`` read.
- Runs dir that cannot be created or written, a run dir deleted under a running job, a full disk.

Set GLF_FAULT_SEED to replay another random sequence (the default is fixed, so CI is stable).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _faults import (
    Injection,
    Injector,
    Outcome,
    base_env,
    check_store,
    ends_of,
    events_of,
    guildlite,
    kill_all,
    make_project,
    marker_procs,
    new_marker,
    plan_injections,
    send_when,
    spawn,
    summarize,
    wait_gone,
)
from conftest import TRACEBACK

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (/proc, prctl)")
NEEDS_CHILDREN = pytest.mark.skipif(not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
                                    reason="needs /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)")

SEED = int(os.environ.get("GLF_FAULT_SEED", "20261124"))
# Injections that must land on a live guildlite, per group (>= 200 in all).
TARGETS = {"python-single": 96, "python-batch": 94, "torchrun": 10}
OUTCOMES: dict[str, list[Outcome]] = {}
GRACE = 30.0  # guildlite's grace period before it SIGKILLs a job that ignores the forwarded signal


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("faults")
    return {
        "lean": make_project(base / "lean"),
        "slow": make_project(base / "slow", n_source_files=800),  # slow staging
        "base": base,
    }


@pytest.fixture
def marker() -> Iterator[str]:
    m = new_marker()
    yield m
    kill_all(marker_procs(m))  # by pid, only what this test started


def _durations(inj: Injector, launcher: str, batch_share: float) -> dict[bool, float]:
    """How long one unkilled invocation takes (bounds the 'time' trigger), and a sanity run."""
    out = {}
    for batch in (False, True):
        if batch_share < 1 and batch or batch_share == 1 and not batch:
            out[batch] = out[False] * 1.6 if batch else 1.0  # no batch baseline when batches are few
            continue
        t = time.monotonic()
        p = guildlite(*inj.args(Injection(batch, launcher, "time", 0)), cwd=inj.projects["lean"],
                      env=base_env(inj.marker, inj.events))
        assert p.returncode == 0, p.stderr[-2000:]
        out[batch] = time.monotonic() - t
    return out


def _run_group(name: str, lab: dict[str, Path], marker: str, launcher: str, batch_share: float) -> None:
    runs_dir = lab["base"] / f"runs-{name}"
    inj = Injector({"lean": lab["lean"], "slow": lab["slow"]}, runs_dir, marker, lab["base"] / f"events-{name}",
                   seed=SEED, cli_every=10 if launcher == "python" else 3)
    rng = random.Random(f"{SEED}-{name}")
    durations = _durations(inj, launcher, batch_share)
    target = TARGETS[name]
    fired = 0
    for _ in range(6):  # top up if some invocations ended before their kill (a loaded machine: more)
        for injection in plan_injections(rng, target - fired, launcher, batch_share, durations):
            fired += inj.inject(injection).fired
        if fired >= target:
            break
    OUTCOMES[name] = inj.outcomes
    assert fired >= target, f"only {fired} of {target} kills landed on a live guildlite"
    # After all that, the same runs dir still works for a normal run.
    p = guildlite("run", "py" if launcher == "python" else "tr", "x=7", "-y", "--runs-dir", str(runs_dir),
                  cwd=lab["lean"], env=base_env(marker, None))
    assert p.returncode == 0, p.stderr[-2000:]
    rep = check_store(runs_dir, cli="subprocess", cwd=lab["lean"])
    newest = max(rep.statuses)
    assert rep.statuses[newest] == "completed"
    assert json.loads((runs_dir / newest / "run.json").read_text())["flags"]["x"] == 7
    cp = guildlite("compare", "--json", "--runs-dir", str(runs_dir), cwd=lab["lean"], env=base_env(marker, None))
    assert cp.returncode == 0 and TRACEBACK not in cp.stderr, cp.stderr[-2000:]
    assert {r["id"] for r in json.loads(cp.stdout)} <= set(rep.statuses)


def test_sigkill_python_single(lab: dict[str, Path], marker: str) -> None:
    _run_group("python-single", lab, marker, "python", batch_share=0.0)


def test_sigkill_python_batch_parallel(lab: dict[str, Path], marker: str) -> None:
    _run_group("python-batch", lab, marker, "python", batch_share=1.0)


def test_sigkill_torchrun_two_ranks(lab: dict[str, Path], marker: str) -> None:
    _run_group("torchrun", lab, marker, "torchrun", batch_share=0.3)


def test_injection_summary() -> None:
    """>= 200 SIGKILLs landed across the groups above; ``pytest -s`` shows what they left."""
    outcomes = [o for g in TARGETS for o in OUTCOMES.get(g, [])]
    if outcomes:
        print("\n" + summarize(outcomes, SEED))
    missing = [g for g in TARGETS if g not in OUTCOMES]
    if missing:
        pytest.skip(f"injection groups not run: {', '.join(missing)}")
    assert sum(o.fired for o in outcomes) >= 200


# --- the two races random kills can hit, each aimed at on purpose ------------------------------------


@NEEDS_CHILDREN
def test_kill_between_fork_and_exec(lab: dict[str, Path], marker: str) -> None:
    """guildlite killed right after it forked the job, before the child's exec: the job must die too.

    The child arms its parent-death signal between fork and exec; a parent that dies before that
    must still not leave the job running (4 orphans in 5 tries before the getppid check). The
    window is a few ms: a try whose kill came too late still checks everything, and at least one
    of them must land in it.
    """
    inj = Injector({"lean": lab["lean"], "slow": lab["slow"]}, lab["base"] / "runs-fork", marker,
                   lab["base"] / "events-fork", seed=SEED)
    landed = 0
    for _ in range(8):
        landed += inj.inject(Injection(False, "python", "fork", 0.0, sleep=30.0)).fired
        if landed == 3:
            break
    assert landed >= 1, "no kill landed between fork and exec"


@NEEDS_CHILDREN
def test_kill_while_torchrun_starts_ranks(lab: dict[str, Path], marker: str) -> None:
    """guildlite killed as torchrun forks its first rank: every rank must still go.

    torchrun gets SIGTERM (parent-death signal) while it creates its workers; its handler raises
    before the workers are registered, so torchrun exits without stopping them. Ranks must die
    with their torchrun on their own (before the rank shim armed a parent-death signal, 4 of 4
    tries left ranks running).
    """
    runs_dir = lab["base"] / "runs-rankstart"
    events = lab["base"] / "events-rankstart"
    events.mkdir(exist_ok=True)
    for attempt in range(2):
        proc = spawn(["run", "tr", "sleep=120", "-y", "--runs-dir", str(runs_dir)], lab["lean"],
                     base_env(marker, events))

        def agent_has_child(pid: int = proc.pid) -> bool:
            return any(_children(a) for a in _children(pid))

        try:
            fired = send_when(proc, agent_has_child, timeout=60)
            proc.kill()
        finally:
            proc.wait()
        assert fired
        # torchrun's own shutdown may take seconds on a loaded machine (its agent alone was once still
        # shutting down after 20 s on 2 busy cores); a leaked rank, or agent, would sleep on for 120 s.
        left = wait_gone(marker, timeout=20)
        if left and not any(p.rank for p in left):
            left = wait_gone(marker, timeout=40)
        kill_all(left)
        wait_gone(marker, timeout=5)
        check_store(runs_dir, cli="in-process", cwd=lab["lean"])
        assert not left, f"attempt {attempt}: ranks outlived guildlite and torchrun:\n  " + "\n  ".join(map(str, left))


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return out


# --- SIGTERM / SIGINT / double SIGINT in each phase -------------------------------------------------

PHASES = {
    # phase: (extra env, job flags, event that says guildlite is in that phase)
    "staging": ({"GLF_SLEEP_ON_RUN_STAGED": "1.5"}, ["sleep=2"], "enter-on_run_staged-"),
    "begin-hook": ({"GLF_SLEEP_ON_RUN_BEGIN": "1.5"}, ["sleep=2"], "enter-on_run_begin-"),
    "running": ({}, ["sleep=30"], "job-"),
}
SIGNALS = {"SIGTERM": [signal.SIGTERM], "SIGINT": [signal.SIGINT], "SIGINTx2": [signal.SIGINT, signal.SIGINT]}


def _signal_case(lab: dict[str, Path], marker: str, op: str, phase: str, sigs: list[int], nranks: int = 1) -> None:
    extra, flags, ready = PHASES[phase]
    events = lab["base"] / f"events-sig-{marker}"
    events.mkdir()
    runs_dir = lab["base"] / f"runs-sig-{marker}"
    if len(sigs) == 2 and phase == "running":
        flags = [*flags, "deaf=1"]  # the job ignores SIGINT: only the second Ctrl-C (a kill) ends it
    env = base_env(marker, events, **extra)
    proc = spawn(["run", op, *flags, "-y", "--runs-dir", str(runs_dir)], lab["lean"], env, stderr=subprocess.PIPE)
    try:
        want = nranks if ready == "job-" else 1
        assert send_when(proc, lambda: sum(e.startswith(ready) for e in events_of(events)) >= want), "phase not reached"
        time.sleep(0.2)
        for i, sig in enumerate(sigs):
            if i:
                time.sleep(0.5)
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=GRACE + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = err.decode(errors="replace")
    left = wait_gone(marker, timeout=GRACE)
    assert not left, "processes outlived guildlite:\n  " + "\n  ".join(map(str, left))
    assert TRACEBACK not in err, err[-3000:]
    rep = check_store(runs_dir, cli="subprocess", cwd=lab["lean"])
    (run_id,) = rep.statuses
    rec = json.loads((runs_dir / run_id / "run.json").read_text())
    assert rec["status"] == "terminated", (rec["status"], rec.get("error"), err[-1500:])
    assert proc.returncode != 0, err[-2000:]
    assert ends_of(events) == [(run_id, "terminated")]  # on_run_end fired exactly once
    ev = events_of(events)
    if phase != "running":  # stopped before launch: the job never ran, or it got the signal
        started = {e for e in ev if e.startswith("job-")}
        signalled = {e for e in ev if e.startswith("sig-")}
        assert not started or signalled, "the job was launched after the stop and ran unsignalled"


@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("phase", list(PHASES))
def test_signal_python(lab: dict[str, Path], marker: str, phase: str, sig: str) -> None:
    _signal_case(lab, marker, "py", phase, SIGNALS[sig])


@pytest.mark.parametrize("sig", list(SIGNALS))
def test_signal_torchrun_running(lab: dict[str, Path], marker: str, sig: str) -> None:
    _signal_case(lab, marker, "tr", "running", SIGNALS[sig], nranks=2)


# --- concurrency -------------------------------------------------------------------------------------


def test_concurrent_runs_and_readers(lab: dict[str, Path], marker: str) -> None:
    """8 guildlite runs started at once into one runs dir while runs/compare read it in a loop."""
    runs_dir = lab["base"] / "runs-concurrent"
    events = lab["base"] / "events-concurrent"
    events.mkdir()
    env = base_env(marker, events)
    writers = [spawn(["run", "py", f"x={i}", "sleep=0.3", "-y", "--runs-dir", str(runs_dir)], lab["lean"], env,
                     stderr=subprocess.PIPE) for i in range(8)]
    reads = []
    try:
        while any(w.poll() is None for w in writers) or len(reads) < 4:
            args = ("runs", "--all", "--json") if len(reads) % 2 == 0 else ("compare", "--json")
            reads.append((args[0], guildlite(*args, "--runs-dir", str(runs_dir), cwd=lab["lean"], env=env)))
        errs = [w.communicate(timeout=60)[1].decode(errors="replace") for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.communicate()
    assert [w.returncode for w in writers] == [0] * 8, errs
    for cmd, r in reads:
        assert r.returncode == 0 and TRACEBACK not in r.stderr, (cmd, r.stderr[-2000:])
        rows = json.loads(r.stdout)  # valid JSON on every call
        ids = [row.get("id") for row in rows]
        assert len(ids) == len(set(ids)), (cmd, ids)
        assert all(row.get("status") in ("staged", "pending", "running", "completed") for row in rows), (cmd, rows)
    rep = check_store(runs_dir, cli="subprocess", cwd=lab["lean"])
    assert len(rep.statuses) == 8 and set(rep.statuses.values()) == {"completed"}, rep.statuses
    xs = sorted(json.loads((runs_dir / i / "run.json").read_text())["flags"]["x"] for i in rep.statuses)
    assert xs == list(range(8))  # no record lost or overwritten by another writer
    assert sorted(i for i, _ in ends_of(events)) == sorted(rep.statuses)
    cp = guildlite("compare", "--json", "--runs-dir", str(runs_dir), cwd=lab["lean"], env=env)
    assert cp.returncode == 0, cp.stderr
    assert {r["id"]: r["status"] for r in json.loads(cp.stdout)} == dict.fromkeys(rep.statuses, "completed")


# --- unwritable runs dirs, deleted run dirs, full disks ---------------------------------------------

def _assert_clean_failure(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode != 0, p.stdout[-1000:]
    assert TRACEBACK not in p.stderr, p.stderr[-3000:]
    assert "guildlite: error:" in p.stderr, p.stderr[-2000:]


def test_run_into_runs_dir_under_a_file(lab: dict[str, Path], marker: str) -> None:
    blocker = lab["base"] / "a-file"
    blocker.write_text("not a dir\n")
    p = guildlite("run", "py", "-y", "--runs-dir", str(blocker / "runs"), cwd=lab["lean"], env=base_env(marker, None))
    _assert_clean_failure(p)
    assert blocker.read_text() == "not a dir\n"


@pytest.mark.parametrize("cmd", [("runs",), ("runs", "--json"), ("compare", "--json")])
def test_list_runs_dir_under_a_file(lab: dict[str, Path], marker: str, cmd: tuple[str, ...]) -> None:
    blocker = lab["base"] / "b-file"
    blocker.write_text("x")
    p = guildlite(*cmd, "--runs-dir", str(blocker / "runs"), cwd=lab["lean"], env=base_env(marker, None))
    assert TRACEBACK not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 0 or "guildlite: error:" in p.stderr, p.stderr


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """mount(size, ro=False) -> a fresh tmpfs dir (needs root); unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: str, name: str = "fs") -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); needs root")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True, check=False)


def _remount_ro(d: Path) -> None:
    r = subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")


def test_read_only_runs_dir_still_lists(lab: dict[str, Path], marker: str, tmpfs) -> None:
    """A runs dir on a read-only file system lists and compares (the index is only a cache)."""
    fs = tmpfs("4m")
    runs_dir = fs / "runs"
    p = guildlite("run", "py", "x=3", "-y", "--runs-dir", str(runs_dir), cwd=lab["lean"], env=base_env(marker, None))
    assert p.returncode == 0, p.stderr
    (runs_dir / ".index.sqlite").unlink(missing_ok=True)
    _remount_ro(fs)
    rep = check_store(runs_dir, cli="subprocess", cwd=lab["lean"])
    assert list(rep.statuses.values()) == ["completed"]
    cp = guildlite("compare", "--json", "--runs-dir", str(runs_dir), cwd=lab["lean"], env=base_env(marker, None))
    assert cp.returncode == 0 and TRACEBACK not in cp.stderr, cp.stderr
    assert [r["x"] for r in json.loads(cp.stdout)] == [3]


def test_run_into_read_only_runs_dir(lab: dict[str, Path], marker: str, tmpfs) -> None:
    fs = tmpfs("4m")
    runs_dir = fs / "runs"
    runs_dir.mkdir()
    _remount_ro(fs)
    p = guildlite("run", "py", "-y", "--runs-dir", str(runs_dir), cwd=lab["lean"], env=base_env(marker, None))
    _assert_clean_failure(p)
    assert os.listdir(runs_dir) == []


def test_run_dir_deleted_while_job_runs(lab: dict[str, Path], marker: str) -> None:
    runs_dir = lab["base"] / "runs-deleted"
    events = lab["base"] / "events-deleted"
    events.mkdir()
    proc = spawn(["run", "py", "sleep=1", "-y", "--runs-dir", str(runs_dir)], lab["lean"], base_env(marker, events),
                 stderr=subprocess.PIPE)
    try:
        assert send_when(proc, lambda: any(e.startswith("job-") for e in events_of(events)))
        (run_dir,) = [d for d in runs_dir.iterdir() if not d.name.startswith(".")]
        shutil.rmtree(run_dir)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = err.decode(errors="replace")
    assert not wait_gone(marker, timeout=5)
    assert TRACEBACK not in err, err[-3000:]
    assert run_dir.name in err, err[-2000:]  # says which run could not be recorded
    assert not run_dir.exists()  # nothing re-created half-way...
    check_store(runs_dir, cli="subprocess", cwd=lab["lean"])  # ...and nothing half-written listed
    assert [i for i, _ in ends_of(events)] == [run_dir.name]  # on_run_end still fires, once


def test_disk_full_while_staging(lab: dict[str, Path], marker: str, tmpfs, tmp_path: Path) -> None:
    fs = tmpfs("64k")
    proj = make_project(tmp_path / "bigproj", plugin=False)
    (proj / "data.txt").write_text("0123456789abcdef" * 8000)  # 128 KB: staged, does not fit
    runs_dir = fs / "runs"
    p = guildlite("run", "py", "-y", "--runs-dir", str(runs_dir), cwd=proj, env=base_env(marker, None))
    _assert_clean_failure(p)
    assert "space" in p.stderr.lower()
    rep = check_store(runs_dir, cli="subprocess", cwd=proj)
    assert all(s.split("->")[-1] not in ("pending", "running") for s in rep.statuses.values())


FILL_SCRIPT = """\
import os
with open("filler", "wb") as f:
    try:
        while True:
            f.write(b"x" * 65536)
            f.flush()
    except OSError as e:
        print("disk full:", e.strerror, flush=True)
print("loss: 0.1", flush=True)
"""


def test_disk_fills_while_job_runs(lab: dict[str, Path], marker: str, tmpfs, tmp_path: Path) -> None:
    """The job fills the disk, then prints and exits: guildlite must still end and say what happened."""
    fs = tmpfs("1m")
    proj = make_project(tmp_path / "fillproj", plugin=False)
    (proj / "fill.py").write_text(FILL_SCRIPT)
    (proj / "guildfile.yml").write_text("operations:\n  fill:\n    main: fill.py\n    launcher: python\n")
    runs_dir = fs / "runs"
    proc = spawn(["run", "fill", "-y", "--runs-dir", str(runs_dir)], proj, base_env(marker, None), stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=10)  # it takes well under a second when it works
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail("guildlite hung after the disk filled up")
    finally:
        kill_all(wait_gone(marker, timeout=3))
    err = err.decode(errors="replace")
    assert TRACEBACK not in err, err[-3000:]
    rep = check_store(runs_dir, cli="subprocess", cwd=proj)
    assert len(rep.statuses) == 1
    if proc.returncode != 0:
        assert "guildlite: error:" in err or "guildlite: run" in err, err[-2000:]
