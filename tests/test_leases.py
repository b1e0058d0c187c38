"""Machine-wide GPU leases (``guildlite._leases``) with real processes contending for fake GPUs.

Each worker is a separate Python process that queues up, takes its lease, records the moment it
took it and the moment it let go (``time.monotonic``: one clock for every process of the machine),
and writes what it got. Fake GPU ids (``g0``, ``g1``...) are leased by the id itself (no UUID is
known for them, nvidia-smi or not); the UUID tests give the map with ``GUILDLITE_GPU_UUIDS``.
Every test has its own lease directory (conftest's ``own_lease_dir``).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import GUILDLITE, TRACEBACK, assert_clean_error, clean_env, wait_until

from guildlite._leases import LeaseError, Want, holders, queue_up, waiters

WORKER = textwrap.dedent(
    """\
    import json, os, subprocess, sys, time
    from guildlite._leases import Want, queue_up

    spec = json.loads(sys.argv[1])
    out = spec["out"]

    def put(path, data):
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)

    wants = [Want(tuple(w["pool"]), w["count"], w["kind"]) for w in spec["wants"]]
    if spec.get("slots"):
        wants.append(Want(("s0", "s1"), 1, kind="run-slot"))
    ticket = queue_up(spec["run"], wants)
    put(out + ".queued", {"ticket": ticket.name, "pid": os.getpid()})
    lease = ticket.take(timeout=spec.get("timeout", 60), poll=0.005)
    if lease is None:
        put(out, {"lease": None})
        sys.exit(3)
    took = time.monotonic()
    put(out + ".took", {"took": took, "gpus": list(lease.gpus)})
    if spec.get("child"):  # hand the lease to a job, then leave: the job keeps it
        job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"], pass_fds=lease.fds)
        put(out + ".child", {"pid": job.pid})
        lease.release()
        sys.exit(0)
    until = spec.get("until")
    while until and not os.path.exists(until):
        time.sleep(0.005)
    time.sleep(spec.get("hold", 0))
    end = time.monotonic()
    lease.release()
    put(out, {"run": spec["run"], "gpus": list(lease.gpus), "taken": [list(t) for t in lease.taken],
              "start": took, "end": end, "ticket": ticket.name})
    """
)

# Holds a flock on a file with the given bytes (a process whose lease or ticket record is odd).
LOCKER = textwrap.dedent(
    """\
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    os.write(fd, sys.argv[2].encode())
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(1000)
    """
)


class Workers:
    """Lease worker processes of one test (killed at its end)."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.script = base / "lease_worker.py"
        self.script.write_text(WORKER)

    def start(self, run: str, *wants: tuple[Any, ...], wait_queued: bool = True,
              env: dict[str, str] | None = None, **spec: Any) -> Path:
        """A worker for ``wants``, each ``(pool, count)`` or ``(pool, count, kind)``."""
        out = self.base / f"{run}.json"
        spec = {"run": run, "out": str(out), **spec,
                "wants": [{"pool": list(w[0]), "count": w[1], "kind": (*w, "gpu")[2]} for w in wants]}
        self.procs.append(subprocess.Popen([sys.executable, str(self.script), json.dumps(spec)],
                                           env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL))
        if wait_queued:
            wait_until(lambda: Path(f"{out}.queued").exists(), what=f"{run} queued")
        return out

    def lock(self, path: Path, content: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), content], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        assert p.stdout is not None and p.stdout.readline() == b"locked\n"
        return p

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path, clean_env())
    yield w
    w.cleanup()


def result(out: Path, timeout: float = 60) -> dict[str, Any]:
    return json.loads(wait_until(lambda: out.read_text() if out.exists() else None, timeout=timeout,
                                 what=str(out)))


def took(out: Path) -> dict[str, Any]:
    return json.loads(wait_until(lambda: Path(f"{out}.took").read_text(), what=f"{out.name} took"))


def gpus_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUILDLITE, "gpus", *args], env={**clean_env(), **(env or {})}, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


# --- no two holders ---------------------------------------------------------------------------------


def test_processes_contending_for_two_gpus_never_share_one(workers: Workers) -> None:
    outs = [workers.start(f"r{i}", (("g0", "g1"), 1), hold=0.1, wait_queued=False) for i in range(6)]
    outs.append(workers.start("both", (("g0", "g1"), 2), hold=0.1, wait_queued=False))
    results = [result(o) for o in outs]
    intervals: dict[str, list[tuple[float, float, str]]] = {"g0": [], "g1": []}
    for r in results:
        assert r["gpus"] and set(r["gpus"]) <= {"g0", "g1"}, r
        for g in r["gpus"]:
            intervals[g].append((r["start"], r["end"], r["run"]))
    assert sorted(results[-1]["gpus"]) == ["g0", "g1"]
    for gpu, spans in intervals.items():
        spans.sort()
        for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
            assert end <= start, f"{gpu} held by {a} and {b} at once"
    assert len(intervals["g0"]) + len(intervals["g1"]) == 8


def test_mixed_requests_of_many_processes_never_share_a_token(workers: Workers) -> None:
    import random

    rng = random.Random(16)
    pools = [("g0", "g1", "g2"), ("g2", "g1"), ("g0",), ("g1", "g2", "g3")]
    outs = []
    for i in range(10):
        pool = rng.choice(pools)
        # Every third one also wants one of two run slots, taken with its GPUs or not at all.
        outs.append(workers.start(f"m{i}", (pool, rng.randint(1, len(pool))), hold=0.03, wait_queued=False,
                                  slots=i % 3 == 0))
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for o in outs:
        r = result(o)
        for ids in r["taken"]:
            for token in ids:
                spans.setdefault(token, []).append((r["start"], r["end"], r["run"]))
    assert sum(len(v) for v in spans.values()) >= 10
    for token, held in spans.items():
        held.sort()
        for (_, end, a), (start, _, b) in zip(held, held[1:]):
            assert end <= start, f"{token} held by {a} and {b} at once"


def test_one_process_two_tickets_get_different_gpus() -> None:
    with queue_up("a", [Want(("g0", "g1"), 1)]) as t1, queue_up("b", [Want(("g0", "g1"), 1)]) as t2:
        l1, l2 = t1.try_take(), t2.try_take()
        assert l1 is not None and l2 is not None
        assert {l1.gpus, l2.gpus} == {("g0",), ("g1",)}
        with queue_up("c", [Want(("g0", "g1"), 1)]) as t3:
            assert t3.try_take() is None
            assert "held by run a of user" in t3.reason() and "run b" in t3.reason()
            l1.release()
            l3 = t3.try_take()
            assert l3 is not None and l3.gpus == l1.gpus
        for lease in (l2, l3):
            lease.release()


def test_all_wants_or_nothing() -> None:
    with queue_up("x", [Want(("g1",), 1)]) as tx:
        lx = tx.try_take()
        assert lx is not None
        # g0 is free but the slot want of the same ticket is not satisfiable with g1: nothing is taken.
        with queue_up("y", [Want(("g0",), 1), Want(("g1",), 1)]) as ty:
            assert ty.try_take() is None
            assert {h.key for h in holders()} == {"gpu:g1"}
            lx.release()
            ly = ty.try_take()
            assert ly is not None and ly.taken == (("g0",), ("g1",))
            ly.release()


# --- holders that die --------------------------------------------------------------------------------


def test_sigkilled_holder_gpu_goes_to_the_next_waiter_within_a_second(workers: Workers) -> None:
    holder = workers.start("holder", (("g0",), 1), hold=1000)
    took(holder)
    waiter = workers.start("waiter", (("g0",), 1))
    pid = json.loads(Path(f"{holder}.queued").read_text())["pid"]
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    assert took(waiter)["took"] - killed < 1.0


def test_a_job_given_the_fds_keeps_the_lease_after_its_parent_is_gone(workers: Workers) -> None:
    holder = workers.start("parent", (("g0",), 1), child=True)
    child = json.loads(wait_until(lambda: Path(f"{holder}.child").read_text(), what="child"))["pid"]
    workers.procs[0].wait(timeout=30)  # the process that took the lease has exited
    waiter = workers.start("waiter", (("g0",), 1))
    assert [h.run for h in holders()] == ["parent"]
    assert [w.run for w in waiters()] == ["waiter"] and not Path(f"{waiter}.took").exists()
    killed = time.monotonic()
    os.kill(child, signal.SIGKILL)
    assert took(waiter)["took"] - killed < 1.0
    with pytest.raises(ChildProcessError):
        os.waitpid(child, 0)  # not ours to reap: the worker's child, reparented


# --- arrival order -----------------------------------------------------------------------------------


def test_waiters_take_in_arrival_order_across_processes(workers: Workers, tmp_path: Path) -> None:
    go = tmp_path / "go"
    holder = workers.start("holder", (("g0",), 1), until=str(go))
    took(holder)
    names = [f"w{i}" for i in range(5)]
    outs = [workers.start(n, (("g0",), 1), hold=0.02) for n in names]  # each queued before the next starts
    queue = waiters()
    assert [w.run for w in queue] == names and [w.position for w in queue] == [1, 2, 3, 4, 5]
    assert queue[0].reason.startswith("waiting for GPU g0, held by run holder of user ")
    assert queue[1].reason.startswith("queued behind run w0 of user ") and queue[1].reason.endswith("waits for g0")
    go.touch()
    starts = [result(o)["start"] for o in outs]
    assert starts == sorted(starts), dict(zip(names, starts))


def test_a_big_request_is_not_overtaken_by_small_ones(workers: Workers, tmp_path: Path) -> None:
    go = tmp_path / "go"
    holder = workers.start("holder", (("g0",), 1), until=str(go))
    took(holder)
    big = workers.start("big", (("g0", "g1"), 2), hold=0.05)
    small = workers.start("small", (("g1",), 1), hold=0.05)  # g1 is free, but big queued first for it
    with queue_up("probe", [Want(("g1",), 1)]) as probe:
        assert probe.try_take() is None
        assert probe.reason().startswith("queued behind run big of user")
        assert probe.position() == 3
    assert not Path(f"{small}.took").exists()
    go.touch()
    b, s = result(big), result(small)
    assert b["gpus"] == ["g0", "g1"] and s["start"] >= b["end"]


def test_requests_for_disjoint_gpus_never_wait_on_each_other(workers: Workers) -> None:
    workers.start("holder", (("g0",), 1), hold=1000)
    waiting = workers.start("waiting", (("g0",), 1))
    with queue_up("other", [Want(("g1", "g2"), 2)]) as t:
        lease = t.try_take()
        assert lease is not None and lease.gpus == ("g1", "g2") and t.position() == 1
        lease.release()
    assert not Path(f"{waiting}.took").exists()


def test_dead_waiters_tickets_do_not_block(tmp_path: Path) -> None:
    code = ("from guildlite._leases import Want, queue_up; import os; t = queue_up('ghost', [Want(('g0',), 1)]); "
            "os._exit(0)")
    subprocess.run([sys.executable, "-c", code], env=clean_env(), check=True, timeout=60)
    sigkilled = "import os, signal; " + code.replace("os._exit(0)", "os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", sigkilled], env=clean_env(), timeout=60).returncode == -9
    lease_dir = Path(os.environ["GUILDLITE_GPU_LEASE_DIR"])
    assert len([n for n in os.listdir(lease_dir) if n.startswith("ticket.")]) == 2
    assert waiters() == []
    with queue_up("live", [Want(("g0",), 1)]) as t:
        lease = t.try_take()
        assert lease is not None and t.position() == 1
        lease.release()
    assert not [n for n in os.listdir(lease_dir) if n.startswith("ticket.")]


def test_a_waiter_killed_in_line_lets_the_next_one_through(workers: Workers, tmp_path: Path) -> None:
    go = tmp_path / "go"
    took(workers.start("holder", (("g0",), 1), until=str(go)))
    first = workers.start("first", (("g0", "g1"), 2))
    second = workers.start("second", (("g1",), 1))
    assert [w.position for w in waiters()] == [1, 2]
    os.kill(json.loads(Path(f"{first}.queued").read_text())["pid"], signal.SIGKILL)
    assert took(second)["gpus"] == ["g1"]  # g0 is still held: only the dead ticket was in the way
    assert [w.run for w in waiters()] == []
    go.touch()


def test_a_run_held_back_by_its_own_users_slots_keeps_no_gpu_idle(workers: Workers) -> None:
    slot = ("alice:0", "alice:1")
    with queue_up("alice-running", [Want(slot, 2, kind="run")]) as t:  # alice runs as many as she may
        alice_slots = t.try_take()
    assert alice_slots is not None
    alice = workers.start("alice-next", (("g0",), 1), (slot, 1, "run"), hold=1000)
    with queue_up("bob", [Want(("g0", "g1"), 1)]) as bob:  # her run waits on her slots, not on g0
        assert bob.position() == 1
        bob_lease = bob.try_take()
    assert bob_lease is not None and bob_lease.gpus == ("g0",)
    with queue_up("alice-later", [Want(("g1",), 1), Want(slot, 1, kind="run")]) as later:
        assert later.try_take() is None and "queued behind run alice-next" in later.reason()
    alice_slots.release()  # now she may: her run stands first in line for g0 again
    with queue_up("carol", [Want(("g0",), 1)]) as carol:
        wait_until(lambda: "queued behind run alice-next" in carol.reason(), what="alice-next back in line")
        bob_lease.release()
        assert took(alice)["gpus"] == ["g0"]
        assert carol.try_take() is None


def test_cancelled_ticket_leaves_the_queue() -> None:
    with queue_up("h", [Want(("g0",), 1)]) as th:
        lh = th.try_take()
        first = queue_up("first", [Want(("g0", "g1"), 2)])
        with queue_up("second", [Want(("g1",), 1)]) as second:
            assert second.try_take() is None
            first.cancel()
            first.cancel()
            lease = second.try_take()
            assert lease is not None and lease.gpus == ("g1",)
            lease.release()
            with pytest.raises(RuntimeError):
                second.try_take()
        assert lh is not None
        lh.release()


# --- UUIDs ---------------------------------------------------------------------------------------------


def test_gpus_named_in_different_orders_are_never_shared(workers: Workers, monkeypatch: pytest.MonkeyPatch) -> None:
    uuids = {"GUILDLITE_GPU_UUIDS": "0:GPU-aaa111,1:GPU-bbb222"}
    monkeypatch.setenv("GUILDLITE_GPU_UUIDS", uuids["GUILDLITE_GPU_UUIDS"])
    # One invocation sees CUDA_VISIBLE_DEVICES=1,0, the other names the GPUs by UUID.
    holder = workers.start("by-index", (("1", "0"), 2), hold=1000, env=uuids)
    assert sorted(took(holder)["gpus"]) == ["0", "1"]
    for pool in (("GPU-aaa111",), ("GPU-bbb222", "GPU-aaa111"), ("GPU-bbb",)):  # the last: a unique prefix
        with queue_up("by-uuid", [Want(pool, 1)]) as t:
            assert t.try_take() is None
            assert "held by run by-index" in t.reason()
    assert {h.key for h in holders()} == {"gpu:GPU-aaa111", "gpu:GPU-bbb222"}
    cp = gpus_cli("--json", env={**uuids, "GUILDLITE_VISIBLE_GPUS": "GPU-bbb222,GPU-aaa111"})
    assert cp.returncode == 0, cp.stderr
    rows = json.loads(cp.stdout)["gpus"]
    assert [(g["id"], g["holder"]["run"], g["holder"]["id"]) for g in rows] == [
        ("GPU-bbb222", "by-index", "1"), ("GPU-aaa111", "by-index", "0")]


def test_malformed_uuid_map_is_a_clean_error() -> None:
    cp = gpus_cli(env={"GUILDLITE_GPU_UUIDS": "0=GPU-aaa", "GUILDLITE_VISIBLE_GPUS": "0"})
    assert_clean_error(cp, 2, "GUILDLITE_GPU_UUIDS")


def test_wants_that_can_never_be_met_are_refused() -> None:
    for bad in (lambda: Want(("g0",), 2), lambda: Want((), 1), lambda: Want(("g0", " "), 1),
                lambda: Want(("g0", "g0"), 2), lambda: Want("g0", 1), lambda: queue_up("r", [])):
        with pytest.raises(Exception) as e:
            bad()
        assert getattr(e.value, "exit_code", None) == 2


# --- the directory's modes and sharing -------------------------------------------------------------------


MODES = textwrap.dedent(
    """\
    import json, os, stat
    os.umask(0o077)
    from guildlite._leases import Want, queue_up, lease_dir
    held = queue_up("a", [Want(("g0",), 1)]).try_take()
    waiting = queue_up("b", [Want(("g0",), 1)])
    d = lease_dir().path
    print(json.dumps({n: stat.S_IMODE(os.lstat(d / n).st_mode) for n in [".", *os.listdir(d)]}))
    """
)


def test_lease_dir_is_1777_and_its_files_0666_under_umask_077(own_lease_dir: Path) -> None:
    nested = own_lease_dir / "deeper"
    cp = subprocess.run([sys.executable, "-c", MODES], env=clean_env(GUILDLITE_GPU_LEASE_DIR=str(nested)),
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    modes = json.loads(cp.stdout)
    assert modes.pop(".") == 0o1777
    assert [n.split(".")[0] or n for n in sorted(modes)] == [".lock", "lease", "ticket"]
    assert set(modes.values()) == {0o666}, {k: oct(v) for k, v in modes.items()}


SHARED = textwrap.dedent(
    """\
    import json, os, sys
    import shutil, subprocess, urllib.parse, guildlite._disk  # (the interpreter's own files are root's only here)
    from guildlite._leases import Want, queue_up, holders
    os.setgid(65534); os.setuid(65534)
    busy = queue_up("theirs", [Want(("g0",), 1)])
    got = busy.try_take()
    reason = busy.reason()
    busy.cancel()
    free = queue_up("theirs", [Want(("g0", "g1"), 1)]).try_take()
    closed = queue_up("theirs", [Want(("g2",), 1)])
    print(json.dumps({"busy": got is not None, "reason": reason, "free": free and free.gpus,
                      "holders": sorted((h.id, h.user) for h in holders()),
                      "closed": [closed.try_take() is not None, closed.reason()]}))
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")
def test_a_second_user_shares_the_dir_made_under_umask_077(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="glt-leases-"))  # tmp_path's parents are closed to other users
    try:
        base.chmod(0o755)
        shared = base / "leases"
        monkeypatch.setenv("GUILDLITE_GPU_LEASE_DIR", str(shared))
        old = os.umask(0o077)
        try:
            ticket = queue_up("mine", [Want(("g0",), 1)])
        finally:
            os.umask(old)
        lease = ticket.try_take()
        assert lease is not None
        (shared / "lease.gpu:g2").touch(mode=0o600)  # not made by guildlite: closed to others
        cp = subprocess.run([sys.executable, "-c", SHARED], env=clean_env(GUILDLITE_GPU_LEASE_DIR=str(shared)),
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        seen = json.loads(cp.stdout)
        assert seen["busy"] is False and seen["reason"] == "waiting for GPU g0, held by run mine of user root"
        assert seen["free"] == ["g1"]
        assert seen["holders"] == [["g0", "root"], ["g1", "nobody"]]
        assert seen["closed"][0] is False and "GPU g2, which cannot be leased" in seen["closed"][1]
        assert "Permission denied" in seen["closed"][1]
        lease.release()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


# --- a hostile lease directory --------------------------------------------------------------------------


def test_a_symlinked_lease_dir_is_refused_and_never_written(tmp_path: Path, own_lease_dir: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    own_lease_dir.symlink_to(target)
    assert_clean_error(gpus_cli(), 2, "symlink", str(own_lease_dir))
    with pytest.raises(LeaseError):
        queue_up("r", [Want(("g0",), 1)])
    assert os.listdir(target) == [] and stat.S_IMODE(target.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_a_lease_dir_others_can_rewrite_is_refused(own_lease_dir: Path, mode: int) -> None:
    own_lease_dir.mkdir()
    own_lease_dir.chmod(mode)
    assert_clean_error(gpus_cli(), 2, "without the sticky bit")


def test_a_lease_path_that_is_a_file_is_refused(own_lease_dir: Path) -> None:
    own_lease_dir.write_text("x")
    assert_clean_error(gpus_cli(), 2, str(own_lease_dir))


def test_planted_lease_files_never_redirect_a_write(own_lease_dir: Path, tmp_path: Path) -> None:
    own_lease_dir.mkdir(mode=0o1777)
    own_lease_dir.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (own_lease_dir / "lease.gpu:g0").symlink_to(victim)
    os.mkfifo(own_lease_dir / "lease.gpu:g1")
    (own_lease_dir / "lease.gpu:g2").mkdir()
    os.link(victim, own_lease_dir / "lease.gpu:g4")
    with queue_up("r", [Want(("g0", "g1", "g2", "g4", "g3"), 1)]) as t:
        lease = t.try_take()
        assert lease is not None and lease.gpus == ("g3",)
        lease.release()
    with queue_up("r", [Want(("g4",), 1)]) as t:
        assert t.try_take() is None and "hard link" in t.reason()
    with queue_up("r", [Want(("g0",), 1)]) as t:
        assert t.try_take() is None
        assert "symlink" in t.reason() and "g0" in t.reason()
    assert victim.read_text() == "precious"
    cp = gpus_cli(env={"GUILDLITE_VISIBLE_GPUS": "g0,g1,g2,g3"})
    assert cp.returncode == 0 and TRACEBACK not in cp.stderr, cp.stderr
    rows = {line.split()[0]: line for line in cp.stdout.splitlines()[1:5]}
    assert "symlink" in rows["g0"] and "not a regular file" in rows["g1"] and "free" in rows["g3"]
    assert victim.read_text() == "precious"


def test_a_planted_lock_symlink_is_a_clean_error(own_lease_dir: Path, tmp_path: Path) -> None:
    own_lease_dir.mkdir()
    (own_lease_dir / ".lock").symlink_to(tmp_path / "nowhere")
    assert_clean_error(gpus_cli(), 2, ".lock")
    assert not (tmp_path / "nowhere").exists()


def test_garbage_records_and_names_never_crash_gpus(workers: Workers, own_lease_dir: Path) -> None:
    with queue_up("seed", [Want(("g0",), 1)]):
        pass  # makes the directory
    workers.lock(own_lease_dir / "lease.gpu:g0", '{"run": "cut-sh')  # a record cut short, held
    workers.lock(own_lease_dir / "lease.gpu:g1", '{"key": "gpu:g1", "run": "\\u001b[31mred", "user": 7}')
    workers.lock(own_lease_dir / "ticket.00000000000000000001.1.x", "not json")  # live, unreadable
    workers.lock(own_lease_dir / "ticket.00000000000000000002.1.y",
                 json.dumps({"run": "forged", "user": "someone-else", "wants": [{"keys": ["gpu:g9"], "pool": 5}]}))
    (own_lease_dir / "ticket.00000000000000000003.1.z").write_text("{}")  # dead
    (own_lease_dir / "ticket.00000000000000000004.1.d").mkdir()
    for junk in ("ticket.", "ticket.x.y.z", "ticket.\u00b2.1.x", "ticket.-1.2.3", "ticket.99999999999999999999999999999999999.1.q", "lease.", "zz"):
        (own_lease_dir / junk).write_bytes(b"\0\xff" * 10)
    cp = gpus_cli(env={"GUILDLITE_VISIBLE_GPUS": "g0,g1,g2"})
    assert cp.returncode == 0 and TRACEBACK not in cp.stderr, cp.stderr
    assert "\x1b" not in cp.stdout and "unreadable record" in cp.stdout
    queue = json.loads(gpus_cli("--json").stdout)["queue"]
    assert [(w["run"], w["user"], w["wants"]) for w in queue] == [("forged", clean_user(), [])]  # the file's owner
    assert not (own_lease_dir / "ticket.00000000000000000003.1.z").exists()  # swept
    with queue_up("later", [Want(("g9",), 1)]) as t:  # a forged earlier ticket wants g9 too
        assert t.try_take() is None and "forged" in t.reason()
    with queue_up("later", [Want(("g9", "g2"), 1)]) as t:  # g9 stays its; g2 no earlier waiter wants
        lease = t.try_take()
        assert lease is not None and lease.gpus == ("g2",)
        lease.release()
    with queue_up("later", [Want(("g0", "g2"), 1)]) as t:
        assert t.position() == 1
        lease = t.try_take()
        assert lease is not None and lease.gpus == ("g2",)
        lease.release()
    with queue_up("later", [Want(("g0",), 1)]) as t:
        assert t.try_take() is None and "unreadable" in t.reason()


def test_a_planted_ticket_number_never_hides_later_tickets(own_lease_dir: Path, workers: Workers) -> None:
    with queue_up("seed", [Want(("g0",), 1)]):
        pass
    (own_lease_dir / f"ticket.{'9' * 30}.1.x").write_text("{}")  # too long: not a ticket's name
    (own_lease_dir / "ticket.00000000000000000041.1.x").write_text("{}")  # dead: swept, or just ignored
    with queue_up("a", [Want(("g0",), 1)]) as a, queue_up("b", [Want(("g0",), 1)]) as b:
        assert [w.run for w in waiters()] == ["a", "b"] and b.position() == 2 and a.seq > 41
    (own_lease_dir / f"ticket.{'9' * 20}.1.x").write_text("{}")  # dead: passed over
    with queue_up("c", [Want(("g0",), 1)]):
        assert [w.run for w in waiters()] == ["c"]
    workers.lock(own_lease_dir / f"ticket.{'9' * 20}.1.y", "{}")  # live: no number left after it
    with pytest.raises(LeaseError, match="last ticket number"):
        queue_up("d", [Want(("g0",), 1)])


def test_gpus_with_no_gpus_says_so() -> None:
    cp = gpus_cli(env={"GUILDLITE_VISIBLE_GPUS": ""})
    assert cp.returncode == 0, cp.stderr
    assert "no GPUs visible" in cp.stdout and "no run waits" in cp.stdout
    assert json.loads(gpus_cli("--json", env={"GUILDLITE_VISIBLE_GPUS": ""}).stdout)["gpus"] == []


def test_gpus_shows_holders_other_leases_and_the_queue(workers: Workers) -> None:
    workers.start("holder-run", (("g1",), 1), hold=1000)
    workers.start("waiter-run", (("g0", "g1"), 2))
    with queue_up("slot-run", [Want(("alice/0",), 1, kind="run-slot")]) as t:
        lease = t.try_take()
        assert lease is not None and lease.gpus == ()
        cp = gpus_cli(env={"GUILDLITE_VISIBLE_GPUS": "g0,g1"})
        assert cp.returncode == 0, cp.stderr
        lines = cp.stdout.splitlines()
        assert lines[1].split()[:3] == ["g0", "-", "free"]
        assert lines[2].split()[:4] == ["g1", "-", "holder-run", clean_user()]
        assert any(line.split()[:2] == ["run-slot:alice/0", "slot-run"] for line in lines)
        queue_line = next(line for line in lines if "waiter-run" in line)
        assert queue_line.split()[0] == "1" and "2 of GPU g0,g1" in queue_line
        assert queue_line.endswith(f"waiting for 2 of GPU g0,g1 (GPU g1 held by run holder-run of user {clean_user()})")
        data = json.loads(gpus_cli("--json", env={"GUILDLITE_VISIBLE_GPUS": "g0,g1"}).stdout)
        assert data["leases"][0]["run"] == "slot-run" and data["queue"][0]["wants"] == [
            {"kind": "gpu", "pool": ["g0", "g1"], "count": 2}]
        lease.release()
    assert gpus_cli("--help").returncode == 0


def clean_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def test_a_gpu_named_twice_in_one_pool_counts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUILDLITE_GPU_UUIDS", "0:GPU-aaa111")
    with pytest.raises(Exception) as e:
        queue_up("r", [Want(("0", "GPU-aaa111"), 2)])
    assert getattr(e.value, "exit_code", None) == 2 and "1 distinct" in str(e.value)


def test_a_dropped_ticket_leaves_the_queue_and_a_half_made_one_is_swept(own_lease_dir: Path) -> None:
    queue_up("dropped", [Want(("g0",), 1)])
    assert waiters() == []
    (own_lease_dir / ".ticket-tmp.1.dead").write_text("{}")  # its maker died before publishing it
    with queue_up("next", [Want(("g0",), 1)]):
        assert sorted(n for n in os.listdir(own_lease_dir) if "ticket" in n)[0].startswith("ticket.")
        assert not (own_lease_dir / ".ticket-tmp.1.dead").exists()


def test_the_test_switch_stands_in_for_nvidia_smi_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from guildlite._slots import visible_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("GUILDLITE_VISIBLE_GPUS", "g0, g1")
    assert visible_gpus() == ["g0", "g1"]
    assert visible_gpus("3") == ["3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert visible_gpus() == ["2"]


def test_a_relative_lease_dir_is_refused(tmp_path: Path) -> None:
    cp = subprocess.run([*GUILDLITE, "gpus"], env=clean_env(GUILDLITE_GPU_LEASE_DIR="leases"), cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
    assert_clean_error(cp, 2, "absolute path")
    assert not (tmp_path / "leases").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user")
def test_a_lease_dir_of_another_user_is_used_with_a_warning(own_lease_dir: Path) -> None:
    own_lease_dir.mkdir()
    own_lease_dir.chmod(0o1777)
    os.chown(own_lease_dir, 65534, 65534)
    cp = gpus_cli(env={"GUILDLITE_VISIBLE_GPUS": "g0"})
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr.startswith("guildlite: warning: the lease directory belongs to user nobody")
    os.chmod(own_lease_dir, 0o755)  # theirs and not sticky: they could swap any file in it
    assert_clean_error(gpus_cli(), 2, "belongs to uid 65534 and is not sticky")


def test_a_lease_dir_on_a_network_filesystem_is_refused() -> None:
    from guildlite._lease_dir import network_fstype

    mountinfo = (
        "22 1 253:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "40 22 0:35 / /home rw,relatime - nfs4 server:/home rw,vers=4.2,local_lock=none\n"
        "41 22 0:36 / /tmp rw,nosuid - tmpfs tmpfs rw\n"
    )
    assert network_fstype(mountinfo, "/home/alice/leases") == "nfs4"
    assert network_fstype(mountinfo, "/tmp/guildlite-gpu-leases") == ""
    assert network_fstype(mountinfo, "/var/tmp/x") == ""


def test_a_lease_dir_made_again_is_followed(own_lease_dir: Path) -> None:
    with queue_up("before", [Want(("g0",), 1)]) as old:
        subprocess.run(["rm", "-rf", str(own_lease_dir)], check=True)
        with queue_up("after", [Want(("g0",), 1)]) as new:
            lease = new.try_take()
            assert lease is not None and [h.run for h in holders()] == ["after"]
            lease.release()
        with pytest.raises(LeaseError, match="No such file"):  # its directory is gone: a clear error
            old.try_take()
    assert sorted(os.listdir(own_lease_dir)) == [".lock", "lease.gpu:g0"]


def test_indices_map_to_uuids_from_nvidia_smi(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"  # prints what the real one prints for --query-gpu=index,uuid
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '0, GPU-11111111-aaaa\\n1, GPU-22222222-bbbb\\n'\n")
    fake.chmod(0o755)
    code = ("from guildlite._gpu_uuids import gpu_key\n"
            "print([gpu_key(i) for i in ('0', '1', 'GPU-2222', 'GPU-', 'MIG-x', '7')])")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                        env=clean_env(PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}"))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == str(["GPU-11111111-aaaa", "GPU-22222222-bbbb", "GPU-22222222-bbbb", "GPU-",
                                     "MIG-x", "7"])


def test_a_gpu_no_earlier_waiter_can_use_is_taken_at_once(workers: Workers, tmp_path: Path) -> None:
    """Red team: a run on g1 held by another waited for g1; a later run on g0 or g1 queued behind
    it while g0 sat free. It takes g0 now, and never g1 from under the earlier waiter."""
    go = tmp_path / "go"
    took(workers.start("holder", (("g1",), 1), until=str(go)))
    waiting = workers.start("waiting", (("g1",), 1))
    with queue_up("later", [Want(("g0", "g1"), 1)]) as t:
        lease = t.try_take()
        assert lease is not None and lease.gpus == ("g0",)
    with queue_up("latest", [Want(("g1", "g2"), 1)]) as t2:  # g1 stays the earlier waiter's
        lease2 = t2.try_take()
        assert lease2 is not None and lease2.gpus == ("g2",)
    with queue_up("last", [Want(("g1",), 1)]) as t3:
        assert t3.try_take() is None and t3.reason().startswith("queued behind run waiting of user")
    go.touch()
    assert took(waiting)["gpus"] == ["g1"]
    lease.release()
    lease2.release()
