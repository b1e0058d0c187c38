"""The run store's write side: concurrent writers lose nothing, under both lock modes.

Every writer of a record (the run's owner, ``guildlite label`` / ``tag``, plugins) goes through one
locked read-modify-write that changes only that writer's fields. These tests race real processes
on one record (the CLI against a real run, and ``multiprocessing`` workers calling the store) and
check that every update survives, then test the lock-file mode's stale-owner takeover.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TRACEBACK, Project, assert_clean_error, wait_until

from guildlite._batchspec import BatchValues
from guildlite._errors import BadRecordError, GuildliteError, RunNotFoundError
from guildlite._files import RunPaths
from guildlite._lock import SoftLock, _boot_id, detect, mode_for, mount_of
from guildlite._manage import set_label, set_tags
from guildlite._process import process_start
from guildlite._record import MAX_BYTES
from guildlite._run import Run, load_run, raw_run
from guildlite._selection import RunList
from guildlite._store import claim_end, end_claimed, publish, reset_end, update_record

MODES = ["flock", "lockfile"]


@pytest.fixture(params=MODES)
def lock_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each lock mode in turn, forced for this process, its forked workers and the CLI it runs."""
    monkeypatch.setenv("GUILDLITE_LOCK_MODE", request.param)
    return str(request.param)


def _env(mode: str) -> dict[str, str]:
    return {"GUILDLITE_LOCK_MODE": mode}


def _write(d: Path, **fields: Any) -> Path:
    d.mkdir(parents=True)
    rec = {"id": d.name, "op": "quick", "status": "completed", "flags": {}, "label": "", "tags": [], **fields}
    (d / "run.json").write_text(json.dumps(rec))
    return d


# --- (a) the CLI against a real run's end --------------------------------------------------------------

# Runs until the file named by $GLT_GO exists, then ends with exit code 0.
GO = """\
import os, time
while not os.path.exists(os.environ["GLT_GO"]):
    time.sleep(0.02)
print("loss: 0.5")
"""

GO_GUILDFILE = """\
operations:
  go:
    main: go.py
    launcher: python
"""


@pytest.fixture
def go_project(make_project: Any) -> Project:
    proj: Project = make_project(GO_GUILDFILE, {"go.py": GO}, name="go")
    return proj


def test_label_and_tag_racing_a_runs_end_never_lose_it(go_project: Project, tmp_path: Path, lock_mode: str) -> None:
    """The issue's reproduction: ``label 2:N 1 X`` selects (loads) every run first, then writes them
    one by one, the live run last; the run ends meanwhile. The end (status, exit code, stop time)
    survives, and so do the label and the tag written by two such commands at once."""
    proj = go_project
    old = [_write(proj.runs_dir / f"20200101T00{i // 3600:02d}{i // 60 % 60:02d}-{i % 60:03x}aaa") for i in range(600)]
    go = tmp_path / "go-now"
    env = {**_env(lock_mode), "GLT_GO": str(go)}
    p = proj.spawn("run", "-y", "go", env=env)
    d = wait_until(lambda: [x for x in proj.run_dirs() if x not in old and
                            json.loads((x / "run.json").read_text())["status"] == "running"],
                   timeout=60, what="the run to start")[0]
    writers = [proj.spawn("label", f"2:{len(old) + 1}", "1", "L", env=env),
               proj.spawn("tag", f"2:{len(old) + 1}", "1", "+t", env=env)]

    def writing() -> bool:  # the first runs they write (the newest old ones) show each one's change
        recs = [json.loads((o / "run.json").read_text()) for o in old[-50:]]
        return any(r["label"] == "L" for r in recs) and any(r["tags"] == ["t"] for r in recs)

    # Both have loaded every run, the live one as running, and are writing the others: end the run.
    wait_until(writing, timeout=60, what="label and tag to start writing")
    go.touch()
    assert p.communicate(timeout=120) and p.returncode == 0
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0 and TRACEBACK not in err, err
    rec = json.loads((d / "run.json").read_text())
    print(f"[{lock_mode}] label + tag of {len(old) + 1} runs racing the end: end {rec['status']}/{rec['exit_code']}, "
          f"label {rec['label']!r}, tags {rec['tags']}; old runs keeping both: "
          f"{sum(json.loads((o / 'run.json').read_text())['tags'] == ['t'] and json.loads((o / 'run.json').read_text())['label'] == 'L' for o in old)} of {len(old)}")
    assert (rec["status"], rec["exit_code"], rec["error"]) == ("completed", 0, None), rec
    assert rec["stopped"] and rec["started"]
    assert (rec["label"], rec["tags"]) == ("L", ["t"])
    for o in old:
        r = json.loads((o / "run.json").read_text())
        assert (r["label"], r["tags"]) == ("L", ["t"]), o.name


# --- (b) hundreds of interleaved writes from several processes ------------------------------------------

WORKERS = 8
WRITES = 50


def _inspector(run_dir: str, w: int) -> None:
    """What ``guildlite label`` / ``tag`` do, each write a fresh selection: every 5th a label, the
    others each add a distinct tag; the last write is a label."""
    for j in range(WRITES):
        run = load_run(Path(run_dir))
        if j % 5 == 4:
            set_label([run], f"w{w}-{j}")
        else:
            set_tags([run], [f"+w{w}-{j}", "-never-there"])


def _owner(run_dir: str) -> None:
    """The run's owner: one Run held in memory, saved after each change, as a Session does;
    a plugin's attrs change at every save."""
    run = load_run(Path(run_dir))
    for j in range(WRITES):
        run.attempts.append({"n": j})
        run.status, run.exit_code, run.stopped = "running", None, None
        run.attrs["owner"] = {"saves": j + 1}
        run.save()
    run.status, run.exit_code, run.stopped = "completed", 0, "2026-01-01T00:00:05.000+00:00"  # the end
    run.save()


def test_hundreds_of_interleaved_writes_all_survive(tmp_path: Path, lock_mode: str) -> None:
    d = _write(tmp_path / "runs" / "20260101T000000-000aaa", status="running", pid=os.getpid(),
               pid_start=process_start(os.getpid()), attrs={"other": {"k": 1}})
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_owner, args=(str(d),))]
    procs += [ctx.Process(target=_inspector, args=(str(d), w)) for w in range(WORKERS - 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rec = json.loads((d / "run.json").read_text())
    want_tags = {f"w{w}-{j}" for w in range(WORKERS - 1) for j in range(WRITES) if j % 5 != 4}
    print(f"[{lock_mode}] {WORKERS * WRITES + 1} writes: {len(set(rec['tags']) & want_tags)} of {len(want_tags)} "
          f"tags, {len(rec['attempts'])} of {WRITES} attempts, end {rec['status']}/{rec['exit_code']}, "
          f"label {rec['label']}")
    assert set(rec["tags"]) == want_tags and len(rec["tags"]) == len(want_tags)
    assert rec["attempts"] == [{"n": j} for j in range(WRITES)]
    assert (rec["status"], rec["exit_code"], rec["stopped"]) == ("completed", 0, "2026-01-01T00:00:05.000+00:00")
    assert rec["attrs"] == {"other": {"k": 1}, "owner": {"saves": WRITES}}
    # Each writer's label writes are in order, so the label written last overall is some writer's
    # last one: a stale whole-record write would bring back an earlier one.
    assert rec["label"] in {f"w{w}-{WRITES - 1}" for w in range(WORKERS - 1)}


def _label_in_order(run_dir: str, w: int, log: str) -> None:
    for j in range(WRITES):

        def change(rec: dict[str, Any], label: str = f"w{w}-{j}") -> None:
            rec["label"] = label
            with open(log, "a") as f:  # under the run's lock: the order in which labels are written
                f.write(label + "\n")

        update_record(Path(run_dir), change)


def test_the_label_written_last_is_the_one_that_stays(tmp_path: Path, lock_mode: str) -> None:
    d = _write(tmp_path / "20260101T000000-000aaa")
    log = tmp_path / "order.txt"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_label_in_order, args=(str(d), w, str(log))) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    order = log.read_text().splitlines()
    assert sorted(order) == sorted(f"w{w}-{j}" for w in range(WORKERS) for j in range(WRITES))
    assert json.loads((d / "run.json").read_text())["label"] == order[-1]


# --- who writes what ---------------------------------------------------------------------------------


def test_each_writer_writes_only_its_own_fields(tmp_path: Path) -> None:
    """Run objects read before another writer's change (a label, the end, another process's
    plugin data) write back only their own fields."""
    d = _write(tmp_path / "20260101T000000-000aaa", status="running", pid=os.getpid(),
               pid_start=process_start(os.getpid()), attrs={"a": 1, "gone": 0})
    owner, inspector, node = load_run(d), load_run(d), load_run(d)
    owner.status, owner.exit_code, owner.stopped = "completed", 0, "2026-01-01T00:00:05.000+00:00"
    owner.attrs["a"] = 2
    del owner.attrs["gone"]  # a plugin removing its own key
    node.attrs["slurm-node-plugin"] = {"x": 1}
    node.save()  # another owner-side process: its plugin's key only (status etc. unchanged here)
    owner.save()
    inspector.update(label="best")  # read while running: must not bring back "running"
    set_tags([inspector], ["+t"])
    rec = json.loads((d / "run.json").read_text())
    assert (rec["status"], rec["exit_code"], rec["stopped"]) == ("completed", 0, "2026-01-01T00:00:05.000+00:00")
    assert rec["attrs"] == {"a": 2, "slurm-node-plugin": {"x": 1}}
    assert (rec["label"], rec["tags"]) == ("best", ["t"])
    owner.attrs["b"] = 3
    owner.save()  # the owner's later save keeps the label and tags, and takes them into the Run
    rec = json.loads((d / "run.json").read_text())
    assert (rec["label"], rec["tags"], owner.label, owner.tags) == ("best", ["t"], "best", ["t"])
    assert rec["attrs"] == {"a": 2, "b": 3, "slurm-node-plugin": {"x": 1}} == owner.attrs
    with pytest.raises(ValueError, match="only label, tags"):
        inspector.update(status="completed")


def test_update_of_a_run_without_a_readable_record(tmp_path: Path) -> None:
    d = tmp_path / "20260101T000000-000aaa"
    with pytest.raises(RunNotFoundError, match="no such run dir"):
        update_record(d, lambda rec: None)
    d.mkdir()
    (d / "run.json").write_text("[]")
    with pytest.raises(BadRecordError, match="holds a list, not a JSON object"):
        update_record(d, lambda rec: rec.update(label="x"))
    assert (d / "run.json").read_text() == "[]"
    run = Run(id=d.name, run_dir=d, op="quick", label="mine")
    run.save()  # the owner holds the whole record: it writes it back
    assert json.loads((d / "run.json").read_text())["label"] == "mine"
    with pytest.raises(GuildliteError, match="already has a run.json"):
        run.create()


# --- lock modes --------------------------------------------------------------------------------------

HOLD = """\
import sys, time
from pathlib import Path
from guildlite._store import update_record

def hold(rec):
    print("held", flush=True)
    time.sleep(600)

update_record(Path(sys.argv[1]), hold)
"""


def _held(d: Path) -> Path:
    return RunPaths(d).lock.with_name("lock.held")


def _label_of(d: Path) -> str:
    return str(json.loads((d / "run.json").read_text())["label"])


def test_a_lock_left_by_a_killed_holder_is_taken_over(project: Project, lock_mode: str) -> None:
    d = _write(project.runs_dir / "20260101T000000-000aaa")
    env = {**project.env, "GUILDLITE_LOCK_MODE": lock_mode, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert _held(d).exists() == (lock_mode == "lockfile")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Well within the 30 s after which any lock file counts as abandoned: same host, the holder's
    # pid and start time are gone, so the lock is taken over at once.
    cp = project.run("label", "1", "after", env={"GUILDLITE_LOCK_MODE": lock_mode}, timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert _label_of(d) == "after" and not _held(d).exists()


def _owner_file(d: Path, owner: Any, age: float) -> None:
    held = _held(d)
    held.parent.mkdir(exist_ok=True)
    held.write_text(owner if isinstance(owner, str) else json.dumps(owner))
    t = time.time() - age
    os.utime(held, (t, t))


ME = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}
ELSEWHERE = {"host": "node-elsewhere-17", "boot": "b", "pid": 4242, "start": 1, "token": "t"}


@pytest.mark.parametrize(("owner", "age"), [
    (ELSEWHERE, 3600),  # another host, heartbeat an hour old
    ({**ME, "boot": "a-boot-before-the-last-reboot", "token": "t"}, 0),  # this host, before a reboot
    ({**ME, "pid": 2**22 + 7, "token": "t"}, 0),  # this host, a pid that does not run
    ("", 3600),  # a holder killed before it wrote its name, long ago
    ("{garbage", 3600),
], ids=["foreign-old", "rebooted", "dead-pid", "empty-old", "garbage-old"])
def test_an_abandoned_lock_file_is_taken_over(project: Project, owner: Any, age: float) -> None:
    d = _write(project.runs_dir / "20260101T000000-000aaa")
    _owner_file(d, owner, age)
    cp = project.run("label", "1", "taken", env={"GUILDLITE_LOCK_MODE": "lockfile"}, timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert _label_of(d) == "taken" and not _held(d).exists()


@pytest.mark.parametrize(("owner", "age"), [
    (ELSEWHERE, 0),  # another host, fresh heartbeat
    ({**ME, "boot": _boot_id(), "token": "t"}, 3600),  # this host, a live holder (heartbeat not needed)
    ("", 0),  # being written this instant
], ids=["foreign-fresh", "live-here", "empty-fresh"])
def test_a_held_lock_file_is_waited_for(project: Project, owner: Any, age: float) -> None:
    d = _write(project.runs_dir / "20260101T000000-000aaa", label="before")
    _owner_file(d, owner, age)
    p = project.spawn("label", "1", "after", env={"GUILDLITE_LOCK_MODE": "lockfile"})
    time.sleep(2)
    assert p.poll() is None and _label_of(d) == "before"
    _held(d).unlink()  # the holder releases it
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert _label_of(d) == "after"


def test_a_lock_file_holder_keeps_its_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "lock.held"
    with SoftLock(path, beat=0.05):
        owner = json.loads(path.read_text())
        assert (owner["host"], owner["pid"], owner["start"]) == (ME["host"], ME["pid"], ME["start"])
        os.utime(path, (1, 1))
        wait_until(lambda: path.stat().st_mtime > time.time() - 60, timeout=10, what="a heartbeat")
        other = SoftLock(path)
        assert not other.abandoned(owner, path.stat())
    assert not path.exists()


def test_a_bad_lock_mode_is_a_clear_error(project: Project) -> None:
    d = _write(project.runs_dir / "20260101T000000-000aaa", label="before")
    bad = {"GUILDLITE_LOCK_MODE": "nfs"}
    assert_clean_error(project.run("label", "1", "x", env=bad), 2, "GUILDLITE_LOCK_MODE", "'nfs'", "flock", "lockfile")
    assert _label_of(d) == "before"
    assert_clean_error(project.run("run", "-y", "quick", env=bad), 2, "GUILDLITE_LOCK_MODE")
    assert sorted(p.name for p in project.runs_dir.iterdir()) == [d.name]  # nothing staged


# --- detecting what the runs dir's filesystem supports -----------------------------------------------

MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 0:50 / /shared rw,relatime - nfs4 srv:/export rw,vers=4.2,hard,proto=tcp,local_lock=none,addr=10.0.0.1
41 27 0:51 / /home rw,relatime - nfs srv:/home rw,vers=3,nolock,local_lock=all,addr=10.0.0.1
42 27 0:52 / /lustre rw,flock - lustre 10.0.0.2@tcp:/fs rw,flock,lazystatfs
43 27 0:53 / /scratch rw - lustre 10.0.0.2@tcp:/scratch rw,localflock,lazystatfs
44 27 0:54 / /nolock rw - lustre 10.0.0.2@tcp:/p rw,lazystatfs
45 27 0:55 / /my\040runs rw - tmpfs tmpfs rw
46 40 0:56 / /shared/local rw - ext4 /dev/vdb rw
47 27 0:57 / /gpfs rw - gpfs gpfs0 rw
48 27 0:58 / /sshfs rw - fuse.sshfs me@host:/x rw,user_id=0
49 27 0:59 / /flocklocal rw - nfs4 srv:/e rw,vers=4.1,local_lock=flock
"""


@pytest.mark.parametrize(("path", "mode", "why"), [
    ("/tmp/runs", "flock", "ext4"),
    ("/shared/proj/runs", "flock", "local_lock=none"),
    ("/shared/local/runs", "flock", "ext4"),  # a mount inside a mount: the innermost decides
    ("/sharedx/runs", "flock", "ext4"),  # a prefix of the name is not a parent dir
    ("/home/me/runs", "lockfile", "local_lock=all"),
    ("/flocklocal/runs", "lockfile", "local_lock=flock"),
    ("/lustre/runs", "flock", "with flock"),
    ("/scratch/runs", "lockfile", "localflock"),
    ("/nolock/runs", "lockfile", "without flock"),
    ("/my runs/x", "flock", "tmpfs"),
    ("/gpfs/runs", "flock", "gpfs"),
    ("/sshfs/runs", "lockfile", "fuse.sshfs"),
])
def test_the_lock_mode_follows_the_mount(path: str, mode: str, why: str) -> None:
    mount = mount_of(MOUNTINFO, path)
    assert mount is not None
    got = mode_for(*mount)
    assert got.mode == mode and why in got.why, got


def test_the_lock_mode_of_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUILDLITE_LOCK_MODE", raising=False)
    with open("/proc/self/mountinfo") as f:
        mount = mount_of(f.read(), str(tmp_path))
    assert mount is not None
    assert detect(tmp_path) == mode_for(*mount)


# --- a run dir from elsewhere -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_symlinked_lock_or_meta_dir_is_never_followed(project: Project, tmp_path: Path, mode: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    a = _write(project.runs_dir / "20260101T000000-000aaa", label="before")
    (a / ".guildlite").symlink_to(outside)
    b = _write(project.runs_dir / "20260101T000001-000aaa", label="before")
    (b / ".guildlite").mkdir()
    (b / ".guildlite" / "lock").symlink_to(outside / "planted")
    (b / ".guildlite" / "lock.held").symlink_to(outside / "planted")
    old = time.time() - 3600
    os.utime(b / ".guildlite" / "lock.held", (old, old), follow_symlinks=False)
    env = {"GUILDLITE_LOCK_MODE": mode}
    assert_clean_error(project.run("label", a.name, "x", env=env), 2, "symlink")
    cp = project.run("label", b.name, "x", env=env, timeout=20)
    # Either mode: a lock path that is a symlink was planted (guildlite never makes one): refused at
    # once as a bad record, neither followed nor taken over.
    assert_clean_error(cp, 2, "symlink")
    assert _label_of(b) == "before" and (b / ".guildlite" / "lock.held").is_symlink()
    assert list(outside.iterdir()) == [] and _label_of(a) == "before"


def test_a_fifo_as_lock_file_does_not_hang(project: Project) -> None:
    d = _write(project.runs_dir / "20260101T000000-000aaa")
    _held(d).parent.mkdir()
    os.mkfifo(_held(d))
    old = time.time() - 3600
    os.utime(_held(d), (old, old))
    cp = project.run("label", "1", "x", env={"GUILDLITE_LOCK_MODE": "lockfile"}, timeout=20)
    assert_clean_error(cp, 2, "is a FIFO, not a lock file")  # refused at once, never opened for writing
    assert _label_of(d) != "x"


@pytest.mark.parametrize(("owner", "age"), [
    (ELSEWHERE, -10 * 365 * 86400),  # dated in the future: a clock far ahead, or a planted file
    ({**ME, "boot": _boot_id(), "token": "t"}, 0),  # names a live process here that never beats
], ids=["future", "no-heartbeat-here"])
def test_a_lock_file_that_never_changes_is_taken_over(tmp_path: Path, owner: Any, age: float) -> None:
    path = tmp_path / "lock.held"
    path.write_text(json.dumps(owner))
    t = time.time() - age
    os.utime(path, (t, t))
    lock = SoftLock(path, stale=1.0)
    with lock:  # unchanged for 1 s (its stale limit) of waiting: abandoned
        assert json.loads(path.read_text())["token"] == lock.owner["token"]
    assert not path.exists()


# --- the store's record operations: one reader, records that read back, publish, claim the end -----------


def _within(fn: Any, timeout: float = 20.0) -> Any:
    """``fn()``'s result or exception, from a thread: a call that hangs (a FIFO opened for
    reading) fails the test instead of blocking the suite."""
    out: list[Any] = []

    def call() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # noqa: B036 - handed to the test to assert on
            out.append(e)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} blocked for {timeout} s (waited on a FIFO?)"
    return out[0]


def _state(p: Path) -> Any:
    """What is at ``p``, to tell whether anything was written there."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "link", os.readlink(p)
    return stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns


def _plant(run_json: Path, kind: str, outside: Path) -> None:
    if kind == "link":  # to a good record outside the run dir
        outside.write_text(json.dumps({"op": "elsewhere", "label": "outside", "tags": []}))
        run_json.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(run_json)
    elif kind == "huge":  # sparse: larger than any record, at no cost in disk
        with open(run_json, "wb") as f:
            f.truncate(MAX_BYTES + 1)
    elif kind != "missing":
        run_json.write_text({
            "not-json": '{"op": "quick", ',
            "bad-status": json.dumps({"op": "quick", "status": "weird"}),
            "pid-0": json.dumps({"op": "quick", "status": "running", "pid": 0}),  # kill(0) signals a group
            "deep": json.dumps({"op": "quick", "flags": {"x": json.loads("[" * 100 + "]" * 100)}}),
        }[kind])


@pytest.mark.parametrize("kind", ["link", "fifo", "huge", "missing", "not-json", "bad-status", "pid-0", "deep"])
def test_an_update_reads_the_record_as_every_reader_does(tmp_path: Path, kind: str) -> None:
    """``update_record`` reads run.json through the store's one reader: no link followed, no FIFO
    waited on, at most MAX_BYTES, the schema checked. A record that fails is refused (nothing is
    written) to every writer but the run's owner, which holds the whole record: it writes it whole."""
    d = tmp_path / "runs" / "20260101T000000-000aaa"
    d.mkdir(parents=True)
    outside = tmp_path / "outside.json"
    _plant(d / "run.json", kind, outside)
    before = _state(d / "run.json")
    refused = _within(lambda: update_record(d, lambda rec: rec.update(label="x")))
    assert isinstance(refused, BadRecordError), refused
    assert _state(d / "run.json") == before
    owner = Run(id=d.name, run_dir=d, op="quick", label="mine", tags=["t"])
    assert _within(owner.save) is None
    run = load_run(d)
    assert (run.op, run.label, run.tags) == ("quick", "mine", ["t"])
    assert not (d / "run.json").is_symlink()
    if kind == "link":
        assert json.loads(outside.read_text())["label"] == "outside"


@pytest.mark.parametrize(("field", "value", "why"), [
    ("tags", "best", "field 'tags' is a string"),
    ("label", 5, "field 'label' is an integer"),
    ("stopped", "t1", "field 'stopped' is 't1', not an ISO 8601 time"),
    ("flags", {"msg": "caf\udce9"}, "lone surrogate"),  # a non-UTF-8 argv byte, as Python decodes it
])
def test_the_store_never_writes_a_record_that_would_not_read_back(
        tmp_path: Path, field: str, value: Any, why: str) -> None:
    d = _write(tmp_path / "20260101T000000-000aaa")
    before = (d / "run.json").read_bytes()
    with pytest.raises(BadRecordError, match=why):
        update_record(d, lambda rec: rec.update({field: value}))
    run = load_run(d)
    with pytest.raises(BadRecordError, match=why):
        if field in ("label", "tags"):  # the inspect commands' fields
            run.update(**{field: value})
        else:  # the owner's
            setattr(run, field, value)
            run.save()
    assert (d / "run.json").read_bytes() == before
    staging = tmp_path / ".staging-20260101T000000-000bbb"
    staging.mkdir()
    with pytest.raises(BadRecordError, match=why):
        Run(id="20260101T000000-000bbb", run_dir=staging, op="quick", **{field: value}).create()
    assert not (staging / "run.json").exists()


def test_raw_run_is_the_record_as_written(tmp_path: Path) -> None:
    """``raw_run``: the Run its owner or a supervisor works on, status as written; read through the
    same reader as ``load_run`` (which derives the status from the owner's liveness)."""
    me = os.getpid()
    d = _write(tmp_path / "20260101T000000-000aaa", id="20991231T000000-000fff", status="running", pid=me,
               pid_start=process_start(me) + 1, is_batch=True, flags={"lr": [0.1, 0.2]}, batch={"dims": ["lr"]})
    raw, seen = raw_run(d), load_run(d)
    assert (raw.id, raw.status, seen.status) == (d.name, "running", "terminated")  # a reused pid owns nothing
    assert isinstance(raw.flags["lr"], BatchValues) and raw.flags == seen.flags
    raw.attrs["p"] = 1
    raw.save()
    assert json.loads((d / "run.json").read_text())["attrs"] == {"p": 1}
    link = tmp_path / "20260101T000000-000bbb"
    link.mkdir()
    (link / "run.json").symlink_to(d / "run.json")
    with pytest.raises(BadRecordError, match="symbolic link"):
        raw_run(link)


def _claim(run_dir: str, go: Any, out: Any) -> None:
    go.wait()
    out.put(claim_end(Path(run_dir)))


def test_exactly_one_process_claims_a_runs_end(tmp_path: Path) -> None:
    d = _write(tmp_path / "20260101T000000-000aaa")
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(str(d), go, out)) for _ in range(8)]
    for p in procs:
        p.start()
    go.set()
    claims = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(60)
    assert claims == [False] * 7 + [True]
    assert end_claimed(d) and not claim_end(d)
    reset_end(d)  # the run starts over (a restart): its end is claimable again, once
    assert not end_claimed(d) and claim_end(d) and not claim_end(d)


def test_claiming_a_runs_end_writes_nothing_outside_it(tmp_path: Path) -> None:
    d = _write(tmp_path / "20260101T000000-000aaa")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "end-hook").write_text("")
    (d / ".guildlite").symlink_to(outside)
    for op in (claim_end, reset_end):
        with pytest.raises(RunNotFoundError, match="a symlink"):
            op(d)
    assert [p.name for p in outside.iterdir()] == ["end-hook"]


RID = "20260101T000000-000aaa"


def _staged(where: Path, name: str = f".staging-{RID}", record: str | None = "") -> Path:
    s = where / name
    s.mkdir(parents=True)
    if record == "":
        Run(id=RID, run_dir=s, op="quick").create()
    elif record is not None:
        (s / "run.json").write_text(record)
    return s


def test_publish_puts_a_staged_run_in_place(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    staging = _staged(runs)
    assert RunList(runs).ids == []  # hidden while staged
    final = publish(staging, runs)
    assert final == runs / RID and not staging.exists()
    assert RunList(runs).ids == [RID] and load_run(final).op == "quick"


@pytest.mark.parametrize(("case", "why"), [
    ("not-staging", "not a staging dir"),
    ("not-an-id", "not a staging dir"),
    ("elsewhere", "not a staging dir in"),
    ("taken", "already exists"),  # an empty dir of that name: rename(2) alone would replace it
    ("taken-link", "already exists"),
    ("no-record", "no readable run.json"),
    ("bad-record", "holds a list"),
])
def test_publish_refuses_what_is_not_a_whole_staged_run(tmp_path: Path, case: str, why: str) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    name = {"not-staging": f"staging-{RID}", "not-an-id": ".staging-latest"}.get(case, f".staging-{RID}")
    record = {"no-record": None, "bad-record": "[]"}.get(case, "")
    staging = _staged(tmp_path / "elsewhere" if case == "elsewhere" else runs, name, record)
    if case == "taken":
        (runs / RID).mkdir()
    elif case == "taken-link":
        (runs / RID).symlink_to(tmp_path)
    before = sorted(os.listdir(runs)), sorted(os.listdir(staging))
    with pytest.raises(GuildliteError, match=why):
        publish(staging, runs)
    assert (sorted(os.listdir(runs)), sorted(os.listdir(staging))) == before


def test_a_run_whose_record_would_not_read_back_is_never_staged(make_project: Any) -> None:
    """A flag value that is not UTF-8 (a byte of argv, as Python decodes it) made a run that ran and
    then listed as a bad record for good; the store refuses the record, so nothing is staged."""
    project = make_project(guildfile="operations:\n  echo:\n    main: echo\n    launcher: python\n"
                                     "    flags:\n      msg: a\n", files={"echo.py": "import sys\nprint('ran', sys.argv)\n"})
    cp = project.run("run", "echo", "msg=caf\udce9", "-y")
    assert_clean_error(cp, 2, "would not read back: a string holds a lone surrogate")
    assert "ran" not in cp.stdout
    assert not project.runs_dir.exists() or os.listdir(project.runs_dir) == []
    cp = project.run("runs")
    assert cp.returncode == 0 and "bad run record" not in cp.stderr, cp.stderr
