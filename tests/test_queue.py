"""Sharing GPUs across invocations: machine-wide leases wired into scheduling, the queue of pending
runs (their place and why they wait), ``--max-concurrent``, ``--start`` of staged runs, and stops.

Everything is real: ``guildlite`` processes started side by side, jobs that are ``launcher:
python`` scripts recording their ``CUDA_VISIBLE_DEVICES``, pid and start/end times in their run
dir, SIGKILL of an owner and its job. GPU ids are fake (``--gpus 0,1``); each test has its own
lease dir (``GUILDLITE_GPU_LEASE_DIR``, conftest). A job that must still run while something is
checked waits for a gate file the test creates later, never for a time.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error, wait_no_marker_procs, wait_until

# Records CUDA_VISIBLE_DEVICES, pid and times: `started.json` when it starts (after waiting for
# --gate, a path, when given one), `times.json` with its end.
JOB = """\
import json, os, sys, time

flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
rec = {"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(), "start": time.time()}
with open("started.json", "w") as f:
    json.dump(rec, f)
gate = flags.get("gate")
while gate and not os.path.exists(gate):
    time.sleep(0.02)
time.sleep(float(flags.get("sleep", "0")))
rec["end"] = time.time()
with open("times.json", "w") as f:
    json.dump(rec, f)
"""

_FLAGS = "    flags:\n      i: 0\n      sleep: 0.0\n      gate: ''\n"
GPU_OPS = (
    "operations:\n"
    "  gpu:\n    main: job.py\n    launcher: python\n    gpus-per-trial: 1\n" + _FLAGS
    + "  pair:\n    main: job.py\n    launcher: python\n    gpus-per-trial: 2\n" + _FLAGS
)
GUILDFILE = GPU_OPS + "  capped:\n    main: job.py\n    launcher: python\n    max-concurrent: 2\n" + _FLAGS


@pytest.fixture
def proj(make_project: Callable[..., Project]) -> Project:
    return make_project(GUILDFILE, {"job.py": JOB})


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _trials(p: Project, batch_id: str) -> list[dict[str, Any]]:
    return [p.record(t) for t in p.record(batch_id)["trials"]]


def _times(p: Project, run_id: str) -> dict[str, Any]:
    return _json(p.runs_dir / run_id / "times.json")


def _waiting(p: Project, n: int = 1) -> list[dict[str, Any]]:
    """Wait until ``n`` runs are pending with a reason recorded; those runs, oldest first."""
    def found() -> list[dict[str, Any]] | None:
        recs = [r for r in p.records() if r["status"] == "pending" and r.get("waiting")]
        return recs if len(recs) >= n else None
    return wait_until(found, timeout=60, what=f"{n} waiting run(s)")


def _started(p: Project, run_id: str) -> dict[str, Any]:
    return wait_until(lambda: _json(p.runs_dir / run_id / "started.json"), timeout=60, what=f"{run_id} to start")


def _newest_id(p: Project, before: set[str]) -> str:
    return wait_until(lambda: next((d.name for d in p.run_dirs() if d.name not in before and
                                    (d / "run.json").exists()), None), timeout=30, what="a new run")


def _hold_gpu(p: Project, gate: Path, gpus: str = "0") -> tuple[Any, str]:
    """A foreground run holding GPU ``gpus`` until ``gate`` exists: (its process, its run id)."""
    before = {d.name for d in p.run_dirs()}
    proc = p.spawn("run", "gpu", f"gate={gate}", "--gpus", gpus, "-y")
    run_id = _newest_id(p, before)
    _started(p, run_id)
    return proc, run_id


def holders() -> list[Any]:
    from guildlite._leases import holders  # (imported here: the first test also runs against older code)

    return holders()


def waiters() -> list[Any]:
    from guildlite._leases import waiters

    return waiters()


def _assert_no_overlap(runs: list[dict[str, Any]], times: list[dict[str, Any]]) -> None:
    """No two jobs held one GPU id at the same time (by the times the jobs recorded)."""
    by_gpu: dict[str, list[tuple[float, float, str]]] = {}
    for rec, t in zip(runs, times):
        assert rec["status"] == "completed", rec
        assert rec["gpus"] and ",".join(rec["gpus"]) == t["cvd"], (rec["gpus"], t)  # run.json says what the job saw
        for g in rec["gpus"]:
            by_gpu.setdefault(g, []).append((t["start"], t["end"], rec["id"]))
    for g, spans in by_gpu.items():
        spans.sort()
        for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
            assert start >= end, f"GPU {g}: run {b} started {end - start:.3f}s before run {a} ended"


# --- leases across invocations -----------------------------------------------------------------------


def test_two_concurrent_batches_never_share_a_gpu(make_project: Callable[..., Project]) -> None:
    """The issue's reproduction: two batches at once, --gpus 0,1, one GPU per trial, --parallel 2:
    before leases each pinned slots to 0 and 1 and trials overlapped; now no GPU is ever shared."""
    proj = make_project(GPU_OPS, {"job.py": JOB})
    a = proj.spawn("run", "gpu", "i=[1,2,3,4]", "sleep=0.4", "--gpus", "0,1", "--parallel", "2", "-y", "--json")
    b = proj.spawn("run", "gpu", "i=[5,6,7,8]", "sleep=0.4", "--gpus", "0,1", "--parallel", "2", "-y", "--json")
    out_a, err_a = a.communicate(timeout=120)
    out_b, err_b = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
    runs = _trials(proj, json.loads(out_a)["id"]) + _trials(proj, json.loads(out_b)["id"])
    assert len(runs) == 8
    _assert_no_overlap(runs, [_times(proj, r["id"]) for r in runs])
    assert not holders() and not waiters()  # every lease and ticket went with its run


def test_a_run_waits_until_all_its_gpus_are_free(proj: Project) -> None:
    """gpus-per-trial: 2 out of --gpus 0,1 while a single run (which leases too) holds GPU 1."""
    gate = proj.root / "gate"
    holder, held = _hold_gpu(proj, gate, gpus="1")
    before = {d.name for d in proj.run_dirs()}
    pair = proj.spawn("run", "pair", "--gpus", "0,1", "-y")
    pair_id = _newest_id(proj, before)
    (waiting,) = _waiting(proj)
    assert waiting["id"] == pair_id and f"held by run {held}" in waiting["waiting"]["reason"], waiting
    assert [h.id for h in holders()] == ["1"]  # it took nothing while it waited: all or nothing
    gate.touch()
    assert pair.wait(timeout=60) == 0 and holder.wait(timeout=60) == 0
    rec = proj.record(pair_id)
    assert sorted(rec["gpus"]) == ["0", "1"], rec["gpus"]
    assert _times(proj, pair_id)["start"] >= _times(proj, held)["end"]


@pytest.mark.skipif("CUDA_VISIBLE_DEVICES" in os.environ, reason="CUDA_VISIBLE_DEVICES wins over the stand-in")
def test_the_pool_is_the_visible_gpus_without_gpus_option(proj: Project) -> None:
    cp = proj.run("run", "pair", "-y", "--json", env={"GUILDLITE_VISIBLE_GPUS": "3,5"})
    assert cp.returncode == 0, cp.stderr
    rec = json.loads(cp.stdout)
    assert rec["gpus"] == ["3", "5"] and _times(proj, rec["id"])["cvd"] == "3,5"


def test_a_sigkilled_holder_frees_its_gpu_for_the_next_waiter_within_a_second(proj: Project) -> None:
    holder, held = _hold_gpu(proj, proj.root / "never")
    job_pid = _started(proj, held)["pid"]
    before = {d.name for d in proj.run_dirs()}
    waiter = proj.spawn("run", "gpu", "--gpus", "0", "-y")
    waiter_id = _newest_id(proj, before)
    (w,) = _waiting(proj)
    assert w["id"] == waiter_id and f"held by run {held}" in w["waiting"]["reason"], w
    os.kill(job_pid, signal.SIGKILL)  # the owning guildlite AND its job
    os.kill(holder.pid, signal.SIGKILL)
    killed = time.monotonic()
    taken = wait_until(lambda: [h for h in holders() if h.run == waiter_id], timeout=30, interval=0.01,
                       what="the waiter to take the GPU")
    assert time.monotonic() - killed < 1.0, f"the lease was taken {time.monotonic() - killed:.2f}s after the kill"
    assert taken[0].id == "0"
    assert waiter.wait(timeout=60) == 0
    assert proj.record(waiter_id)["status"] == "completed"
    assert wait_until(lambda: proj.run_json("runs", "info", held, "--json")["status"] == "terminated")


def test_waiters_start_in_arrival_order_with_their_places_shown(proj: Project) -> None:
    gate = proj.root / "gate"
    holder, held = _hold_gpu(proj, gate)
    arrivals = []
    for i in range(3):  # three invocations, each queued before the next arrives
        before = {d.name for d in proj.run_dirs()}
        proj.spawn("run", "gpu", f"i={i}", "--gpus", "0", "-y")
        arrivals.append(_newest_id(proj, before))
        _waiting(proj, i + 1)
    listed = wait_until(lambda: (rows := proj.run_json("runs", "--status", "pending", "--json")) and
                        all("queue_position" in r for r in rows) and rows, timeout=30)
    places = {r["id"]: r["queue_position"] for r in listed}
    assert [places[r] for r in arrivals] == [1, 2, 3], places
    table = proj.run("runs", "--status", "pending").stdout
    assert "pending #1" in table and "waiting" in table.splitlines()[0] and f"held by run {held}" in table, table
    info = proj.run("runs", "info", arrivals[2]).stdout
    assert "queue: #3: " in info and f"queued behind run {arrivals[0]}" in info, info
    gate.touch()
    wait_until(lambda: all(proj.record(r)["status"] == "completed" for r in arrivals), timeout=90)
    starts = [_times(proj, r)["start"] for r in arrivals]
    assert starts == sorted(starts), starts
    recs = [proj.record(r) for r in [held, *arrivals]]
    _assert_no_overlap(recs, [_times(proj, r["id"]) for r in recs])
    assert all(r.get("waiting") is None for r in recs)  # cleared when its turn came


def test_a_gpu_granted_to_a_run_vetoed_before_its_job_starts_goes_back(make_project: Callable[..., Project]) -> None:
    """on_run_begin fires once the GPU is leased; a veto there returns the lease (else the next trial
    would wait forever for a GPU its own guildlite holds)."""
    veto = ("from guildlite import Plugin, StopRun\n\nclass Veto(Plugin):\n    def on_run_begin(self, run):\n"
            "        if run.flags['i'] == 1:\n            raise StopRun('not this one')\n")
    proj = make_project("plugins: [{class: veto:Veto}]\n" + GPU_OPS, {"job.py": JOB, "veto.py": veto})
    cp = proj.run("run", "gpu", "i=[1,2,3]", "--gpus", "0", "-y", "--json", timeout=120)
    assert cp.returncode == 1, cp.stderr  # a trial did not complete
    one, two, three = _trials(proj, json.loads(cp.stdout)["id"])
    assert one["status"] == "error" and "not this one" in one["error"]["message"], one
    assert two["status"] == three["status"] == "completed" and two["gpus"] == three["gpus"] == ["0"]
    assert not holders() and not waiters()


# --- the queue: stops, --max-concurrent, --start ------------------------------------------------------


def test_stopping_a_waiting_run_ends_it_terminated_and_leaves_the_queue(proj: Project) -> None:
    gate = proj.root / "gate"
    holder, held = _hold_gpu(proj, gate)
    before = {d.name for d in proj.run_dirs()}
    waiter = proj.spawn("run", "gpu", "--gpus", "0", "-y")
    waiter_id = _newest_id(proj, before)
    _waiting(proj)
    assert [w.run for w in waiters()] == [waiter_id]
    watch = proj.spawn("watch", waiter_id)
    assert watch.stderr is not None
    timer = threading.Timer(60, watch.kill)  # (a watch that never prints must not hang the test)
    timer.start()
    line = watch.stderr.readline()  # its first status line: the run as it stands, and why it waits
    timer.cancel()
    assert f"run {waiter_id} pending (waiting for GPU 0, held by run {held}" in line, line
    cp = proj.run("stop", waiter_id)
    assert cp.returncode == 0, cp.stderr
    assert waiter.wait(timeout=60) == 143
    watch.communicate(timeout=60)
    assert watch.returncode == 143
    rec = proj.record(waiter_id)
    assert rec["status"] == "terminated" and rec["started"] is None and rec["waiting"] is None, rec
    assert not (proj.runs_dir / waiter_id / "started.json").exists()
    assert waiters() == []  # its ticket went with it
    gate.touch()
    assert holder.wait(timeout=60) == 0


def test_stopping_a_waiting_trial_ends_it_and_the_batch_goes_on(proj: Project) -> None:
    gate = proj.root / "gate"
    holder, _ = _hold_gpu(proj, gate)
    cp = proj.run("run", "gpu", "i=[1,2]", "--gpus", "0", "-y", "--detach")
    assert cp.returncode == 0, cp.stderr
    batch = cp.stdout.strip()
    (first,) = _waiting(proj)
    assert first["parent"] == batch
    assert proj.run("stop", first["id"]).returncode == 0
    gate.touch()
    wait_until(lambda: proj.record(batch)["status"] == "error", timeout=90)
    one, two = _trials(proj, batch)
    assert one["status"] == "terminated" and "waited" in one["error"]["message"], one
    assert two["status"] == "completed" and two["gpus"] == ["0"], two
    assert holder.wait(timeout=60) == 0


def test_max_concurrent_caps_a_users_runs_and_the_rest_wait(proj: Project) -> None:
    gate = proj.root / "gate"
    cp = proj.run("run", "capped", "i=[1,2,3]", f"gate={gate}", "--parallel", "3", "-y", "--detach")
    assert cp.returncode == 0, cp.stderr
    batch = cp.stdout.strip()
    (third,) = _waiting(proj)  # op's max-concurrent: 2
    running = wait_until(lambda: [t for t in _trials(proj, batch) if t["status"] == "running"], timeout=60)
    assert len(running) == 2 and third["started"] is None
    assert "waiting for 1 of run" in third["waiting"]["reason"], third["waiting"]
    # Another invocation with the same cap on the command line: the cap is the user's, across
    # invocations: it waits too.
    before = {d.name for d in proj.run_dirs()}
    cp = proj.run("run", "capped", f"gate={gate}", "--max-concurrent", "2", "-y", "--detach")
    assert cp.returncode == 0
    other = _newest_id(proj, before)
    _waiting(proj, 2)
    assert proj.record(other)["status"] == "pending"
    gate.touch()
    wait_until(lambda: proj.record(batch)["status"] == "completed" and proj.record(other)["status"] == "completed",
               timeout=90)
    spans = sorted((_times(proj, r)["start"], _times(proj, r)["end"]) for r in [*proj.record(batch)["trials"], other])
    for i, (start, _) in enumerate(spans):  # never more than 2 at once
        assert sum(1 for s, e in spans[:i] if e > start) <= 1, spans


def test_max_concurrent_is_validated(proj: Project) -> None:
    from guildlite._errors import GuildfileError
    from guildlite._guildfile import load

    path = proj.root / "guildfile.yml"
    for bad in ("0", "-1", "two", "true", "100000", "[1]", "null", "1.5"):
        for text, where in ((GUILDFILE + f"max-concurrent: {bad}\n", "the guildfile"),
                            (GUILDFILE.replace("    max-concurrent: 2\n", f"    max-concurrent: {bad}\n"),
                             "operation 'capped'")):
            path.write_text(text)
            with pytest.raises(GuildfileError) as e:
                load(path)
            line = 1 + next(i for i, ln in enumerate(text.splitlines()) if ln.strip() == f"max-concurrent: {bad}")
            assert f"guildfile.yml:{line}: {where}: 'max-concurrent' must be" in str(e.value), str(e.value)
    path.write_text(GUILDFILE + "max-concurrent: 0\n")
    assert_clean_error(proj.run("run", "gpu", "-y"), 2, "guildfile.yml:", "max-concurrent")
    path.write_text(GUILDFILE + "max-concurrent: 3\n")
    assert load(path).max_concurrent == 3 and load(path).operations["capped"].max_concurrent == 2
    assert load(path).operations["gpu"].max_concurrent is None
    assert_clean_error(proj.run("run", "capped", "--max-concurrent", "0", "-y"), 2, "--max-concurrent")
    assert_clean_error(proj.run("run", "capped", "--max-concurrent", "9999", "-y"), 2, "--max-concurrent")
    assert_clean_error(proj.run("run", "capped", "--backend", "slurm", "--max-concurrent", "1", "-y"), 2,
                       "--max-concurrent", "slurm")
    assert proj.run_dirs() == []  # nothing staged by any of them


def test_an_unusable_lease_dir_is_an_error_before_anything_is_staged(proj: Project, tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.write_text("not a directory")
    env = {"GUILDLITE_GPU_LEASE_DIR": str(planted)}
    for args in (("gpu", "--gpus", "0"), ("capped",), ("gpu", "--gpus", "0", "-b"), ("capped", "i=[1,2]", "-b")):
        assert_clean_error(proj.run("run", *args, "-y", env=env), 2, str(planted), "not a directory")
    assert proj.run_dirs() == []


def test_start_runs_a_staged_run_and_batch_as_staged(proj: Project) -> None:
    cp = proj.run("run", "gpu", "i=7", "--gpus", "1", "--stage", "-y")
    assert cp.returncode == 0, cp.stderr
    (run,) = proj.records()
    assert run["status"] == "staged"
    cp = proj.run("run", "--start", run["id"])
    assert cp.returncode == 0, cp.stderr
    rec = proj.record(run["id"])
    assert rec["status"] == "completed" and rec["gpus"] == ["1"] and rec["flags"]["i"] == 7
    assert _times(proj, run["id"])["cvd"] == "1"
    cp = proj.run("run", "gpu", "i=[1,2]", "--gpus", "0,1", "--parallel", "2", "--stage", "-y", "--json")
    batch = json.loads(cp.stdout)["id"]
    cp = proj.run("run", "--start", batch, "--detach")
    assert cp.returncode == 0 and cp.stdout.strip() == batch, cp.stderr
    wait_until(lambda: proj.record(batch)["status"] == "completed", timeout=90)
    trials = _trials(proj, batch)
    assert sorted(g for t in trials for g in t["gpus"]) == ["0", "1"]
    wait_no_marker_procs(proj.marker)


def test_start_in_the_foreground_runs_several_one_after_another(proj: Project) -> None:
    staged = []
    for i in range(2):
        cp = proj.run("run", "gpu", f"i={i}", "sleep=0.2", "--gpus", "0,1", "--stage", "-y", "--json")
        staged.append(json.loads(cp.stdout)["id"])
    cp = proj.run("run", "--start", *staged)
    assert cp.returncode == 0, cp.stderr
    first, second = (_times(proj, r) for r in staged)
    assert second["start"] >= first["end"]
    assert all(proj.record(r)["status"] == "completed" for r in staged)


def test_started_runs_take_their_place_in_the_queue(proj: Project) -> None:
    gate = proj.root / "gate"
    staged = []
    for i in range(2):
        cp = proj.run("run", "gpu", f"i={i}", "--gpus", "0", "--stage", "-y", "--json")
        staged.append(json.loads(cp.stdout)["id"])
    holder, held = _hold_gpu(proj, gate)
    cp = proj.run("run", "--start", *staged, "--detach")
    assert cp.returncode == 0 and cp.stdout.split() == staged, (cp.stdout, cp.stderr)
    waiting = _waiting(proj, 2)
    assert {w["id"] for w in waiting} == set(staged)
    gate.touch()
    wait_until(lambda: all(proj.record(r)["status"] == "completed" for r in staged), timeout=90)
    recs = [proj.record(r) for r in [held, *staged]]
    _assert_no_overlap(recs, [_times(proj, r["id"]) for r in recs])
    assert holder.wait(timeout=60) == 0


def test_start_refuses_what_is_not_staged(proj: Project) -> None:
    assert_clean_error(proj.run("run", "--start"), 2, "--start needs")
    cp = proj.run("run", "gpu", "--gpus", "0", "-y")
    assert cp.returncode == 0, cp.stderr
    (done,) = proj.records()
    assert_clean_error(proj.run("run", "--start", done["id"]), 2, done["id"], "completed, not staged", "--restart")
    cp = proj.run("run", "gpu", "i=[1,2]", "--gpus", "0", "--stage", "-y", "--json")
    batch = json.loads(cp.stdout)
    trial = batch["trials"][0]
    assert_clean_error(proj.run("run", "--start", trial), 2, f"trial of batch {batch['id']}",
                       f"--start {batch['id']}")
    assert_clean_error(proj.run("run", "--start", "nosuchrun"), 2, "nosuchrun")
    assert_clean_error(proj.run("run", "--start", batch["id"], "--restart", batch["id"]), 2, "--restart")
    assert proj.record(trial)["status"] == "staged"  # nothing started by any of them


# --- the scheduler's side: tickets polled each tick, with the real lease engine and real jobs ----------


class _GpuTicket:
    """A scheduler ticket (``backends.Ticket``) over a real lease: its grant is the slot with the GPU."""

    def __init__(self, name: str, slot: Any, pool: tuple[str, ...]) -> None:
        from guildlite._leases import Want, queue_up

        self.slot, self.ticket, self.lease = slot, queue_up(name, [Want(pool, 1)]), None
        self.asked = 0

    def try_take(self) -> Any:
        import dataclasses

        self.asked += 1
        self.lease = self.ticket.try_take()
        return None if self.lease is None else dataclasses.replace(self.slot, gpus=self.lease.gpus)

    def reason(self) -> str:
        return self.ticket.reason()

    def position(self) -> int:
        return self.ticket.position()

    def cancel(self) -> None:
        if self.ticket.open:
            self.ticket.cancel()
        if self.lease is not None:
            self.lease.release()


def _sched(tmp_path: Path, leave: set[str]) -> tuple[Any, list[str], dict[str, _GpuTicket]]:
    """A Scheduler of real `python -c sleep` jobs, each holding its GPU lease (pass_fds), on one slot
    leasing GPU 0; items in ``leave`` leave the queue (their ``waiting`` says False)."""
    import sys

    from guildlite._launch import Job
    from guildlite._scheduler import Scheduler
    from guildlite._slots import Slot

    log: list[str] = []
    tickets: dict[str, _GpuTicket] = {}

    def queue_up(item: str, slot: Slot) -> _GpuTicket:
        tickets[item] = _GpuTicket(item, slot, ("0",))
        return tickets[item]

    def start(item: str, slot: Slot, done: Callable[..., None]) -> Job:
        lease = tickets[item].lease
        assert lease is not None and slot.gpus == ("0",)
        job = Job([sys.executable, "-c", "import time; time.sleep(0.2)"], tmp_path, {"PATH": "/usr/bin:/bin"},
                  tmp_path / f"{item}.log", echo=False, on_exit=done, pass_fds=lease.fds)
        job.start()
        lease.release()  # the job holds it now
        log.append(f"start {item}")
        return job

    def waiting(item: str, ticket: Any) -> bool:
        return item not in leave

    sched = Scheduler([Slot(0, pool=("0",), need=1), Slot(1, pool=("0",), need=1)], start,
                      lambda item, code, job: log.append(f"end {item} {code}"), queue_up=queue_up, waiting=waiting)
    return sched, log, tickets


def test_the_scheduler_starts_waiting_items_one_at_a_time_as_the_gpu_frees(tmp_path: Path) -> None:
    sched, log, tickets = _sched(tmp_path, leave={"b"})
    assert sched.run(["a", "b", "c", "d"]) == []
    # b left the queue while it waited: its slot went on to c (not a stop: d started too)
    assert log == ["start a", "end a 0", "start c", "end c 0", "start d", "end d 0"], log
    assert not tickets["b"].ticket.open and tickets["b"].lease is None
    assert tickets["c"].asked >= 1 and not holders() and not waiters()


def test_a_stop_gives_up_the_waiting_items_and_their_places(tmp_path: Path) -> None:
    sched, log, tickets = _sched(tmp_path, leave=set())
    real_start = sched._start

    def start_then_stop(item: str, slot: Any, done: Callable[..., None]) -> Any:
        job = real_start(item, slot, done)
        sched.stop(signal.SIGTERM)  # the first job started, the second waits for the GPU
        return job

    sched._start = start_then_stop
    assert sched.run(["a", "b", "c"]) == ["b", "c"]  # b waited, c never queued
    assert log[0] == "start a" and log[1].startswith("end a") and len(log) == 2, log
    assert not tickets["b"].ticket.open and "c" not in tickets
    assert not waiters()


def test_gpus_for_an_op_that_leases_none_is_refused(make_project: Callable[..., Project]) -> None:
    """README's `guildlite run train ... --gpus 0,1 --parallel 2 -b`, tried by a new user on an op
    without gpus-per-trial: --gpus was ignored without a word, so every run saw every GPU (the
    sharing the section promises did not happen). Now an error, before anything is staged; a
    pipeline passes --gpus to the steps that lease and is refused when none does."""
    steps = "  pipe:\n    steps:\n      - run: capped\n      - run: gpu\n  cpu-only:\n    steps:\n      - run: capped\n"
    proj = make_project(GUILDFILE + steps, {"job.py": JOB})
    for args in (("capped",), ("capped", "i=[1,2]", "--parallel", "2"), ("capped", "-b"), ("cpu-only",)):
        cp = proj.run("run", *args, "--gpus", "0,1", "-y")
        assert_clean_error(cp, 2, "--gpus 0,1", "gpus-per-trial")
    assert proj.run_dirs() == []
    cp = proj.run("run", "pipe", "--gpus", "1", "-y")
    assert cp.returncode == 0, cp.stderr
    by_op = {r["op"]: r for r in proj.records()}
    assert by_op["gpu"]["gpus"] == ["1"] and not by_op["capped"].get("gpus"), by_op
    assert _json(proj.runs_dir / by_op["gpu"]["id"] / "started.json")["cvd"] == "1"
