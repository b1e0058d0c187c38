"""The run store: atomic writes, run ids, process identity, liveness-derived status, selectors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import GUILDLITE, TRACEBACK, write_project

from guildlite._errors import RunNotFoundError
from guildlite._files import atomic_write, new_run_id, write_json
from guildlite._guildfile import load
from guildlite._process import process_start
from guildlite._record import MAX_BYTES
from guildlite._run import Run, load_run
from guildlite._runconfig import RunConfig
from guildlite._selection import RunList, list_runs, select_runs
from guildlite._staging import new_run


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name)


# --- atomic writes ---------------------------------------------------------------------------------


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    p = tmp_path / "run.json"
    atomic_write(p, "first\n")
    assert p.read_text() == "first\n"
    atomic_write(p, b"second")
    assert p.read_bytes() == b"second"
    atomic_write(p, "")
    assert p.read_text() == ""
    assert os.listdir(tmp_path) == ["run.json"]
    write_json(p, {"a": [1, 2], "when": Path("/x")})
    assert json.loads(p.read_text()) == {"a": [1, 2], "when": "/x"}
    assert _leftovers(tmp_path) == []


def test_atomic_write_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    p = tmp_path / "big.txt"
    payloads = ["A" * 300_000, "B" * 200_000]
    atomic_write(p, payloads[0])
    stop = threading.Event()
    seen: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            atomic_write(p, payloads[i % 2])
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            seen.append(p.read_text())
    finally:
        stop.set()
        t.join()
    assert all(s in payloads for s in seen)
    assert _leftovers(tmp_path) == []


def test_atomic_write_into_a_missing_dir_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "nope" / "run.json", "x")
    assert os.listdir(tmp_path) == []


def test_atomic_write_failing_rename_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "target" / "sub").mkdir(parents=True)  # a non-empty dir: os.replace onto it fails
    with pytest.raises(OSError):
        atomic_write(tmp_path / "target", "x")
    assert _leftovers(tmp_path) == []


# --- ids and processes -----------------------------------------------------------------------------


ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}")


def test_run_ids_are_well_formed_and_sort_in_creation_order() -> None:
    ids = []
    for _ in range(25):
        ids.append(new_run_id())
        time.sleep(0.002)  # ids sort by creation at millisecond resolution
    assert all(ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids


def test_staged_run_ids_are_unique_even_when_made_together(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    gf = load(root / "guildfile.yml")
    cfg = RunConfig(guildfile=gf, op=gf.op("quick"), runs_dir=tmp_path / "runs", opspec="quick", nproc=1)
    runs = [new_run(cfg, {}) for _ in range(300)]  # the staging step every run goes through
    assert len({r.id for r in runs}) == 300
    assert len({r.run_dir for r in runs}) == 300 and all(r.run_dir.is_dir() for r in runs)


def test_process_start() -> None:
    me = process_start(os.getpid())
    assert isinstance(me, int) and me > 0
    assert process_start(os.getpid()) == me
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = process_start(child.pid)
        assert isinstance(start, int) and start >= me
    finally:
        child.kill()
        child.wait()
    assert process_start(child.pid) is None


def test_process_start_reads_a_command_name_with_spaces_and_parens(tmp_path: Path) -> None:
    exe = tmp_path / "odd) (name x"
    exe.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(exe), "30"])
    try:
        with open(f"/proc/{child.pid}/stat", "rb") as f:
            assert b"odd) (name" in f.read()
        with open(f"/proc/{child.pid}/stat") as f:
            assert process_start(child.pid) == int(f.read().rsplit(")", 1)[1].split()[19])
    finally:
        child.kill()
        child.wait()


# --- liveness ------------------------------------------------------------------------------------


def _record(run_dir: Path, **fields: Any) -> Path:
    run_dir.mkdir(parents=True)
    rec = {"id": run_dir.name, "op": "train", "status": "running", "flags": {"lr": 0.1}, **fields}
    (run_dir / "run.json").write_text(json.dumps(rec))
    return run_dir


@pytest.fixture
def exited_pid() -> tuple[int, int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = process_start(child.pid)
    assert start is not None
    child.kill()
    child.wait()  # reaped: the pid is gone
    return child.pid, start


def test_a_running_record_whose_owner_exited_reads_terminated(tmp_path: Path, exited_pid: tuple[int, int]) -> None:
    pid, start = exited_pid
    d = _record(tmp_path / "20260101T000000-000aaa", pid=pid, pid_start=start)
    run = load_run(d)
    assert run.status == "terminated" and run.error is not None
    assert str(pid) in run.error["message"]
    # the record itself is not rewritten by reading it
    assert json.loads((d / "run.json").read_text())["status"] == "running"


def test_a_reused_pid_is_not_the_owner(tmp_path: Path) -> None:
    me, start = os.getpid(), process_start(os.getpid())
    assert start is not None
    d = _record(tmp_path / "20260101T000000-000aaa", pid=me, pid_start=start - 1)
    assert load_run(d).status == "terminated"


def _claimed(run_dir: Path) -> Run:
    """This process as the owner of the run in ``run_dir``: holding its owner lock."""
    owner = Run(id=run_dir.name, run_dir=run_dir, op="train")
    owner.claim()
    return owner


def test_a_live_owner_keeps_the_run_running(tmp_path: Path) -> None:
    me = os.getpid()
    d = _record(tmp_path / "20260101T000000-000aaa", pid=me, pid_start=process_start(me))
    owner = _claimed(d)
    run = load_run(d)
    assert run.status == "running" and run.error is None and run.alive
    d2 = _record(tmp_path / "20260101T000000-000aab", status="pending", pid=me)  # no start recorded
    owner2 = _claimed(d2)
    assert load_run(d2).status == "pending"
    owner.release()  # the owner let go (its end recorded, or it died): no owner any more
    assert load_run(d).status == "terminated" and not load_run(d).alive
    owner2.release()


def test_a_live_process_that_does_not_hold_the_owner_lock_is_not_the_owner(tmp_path: Path) -> None:
    """A record may name any live process with its true start time (this one): without the run's
    owner lock it is not the owner; nor with an owner lock file that names another run or pid."""
    me, start = os.getpid(), process_start(os.getpid())
    d = _record(tmp_path / "20260101T000000-000aaa", pid=me, pid_start=start, host=socket.gethostname())
    assert load_run(d).status == "terminated" and not load_run(d).alive
    other = _record(tmp_path / "20260101T000000-000aab", pid=me, pid_start=start)
    owner = _claimed(other)
    try:
        (d / ".guildlite").mkdir()
        os.link(other / ".guildlite" / "owner", d / ".guildlite" / "owner")  # held, but for run ...aab
        assert load_run(other).status == "running"
        assert load_run(d).status == "terminated"
    finally:
        owner.release()


def test_the_owner_lock_is_not_inherited_by_the_job(tmp_path: Path) -> None:
    """A job (torchrun, its ranks) outliving a killed guildlite never keeps its run alive: the lock's
    fd is close-on-exec."""
    d = _record(tmp_path / "20260101T000000-000aaa", pid=os.getpid(), pid_start=process_start(os.getpid()))
    owner = _claimed(d)
    assert owner._owner_fd is not None
    child = subprocess.run([sys.executable, "-c", f"import os; os.fstat({owner._owner_fd})"],
                           capture_output=True, text=True, close_fds=False, timeout=60)
    owner.release()
    assert child.returncode != 0 and "Bad file descriptor" in child.stderr


def test_a_run_has_one_owner_at_a_time(tmp_path: Path) -> None:
    """A second process cannot claim a run that a live process owns (two restarts racing)."""
    d = _record(tmp_path / "20260101T000000-000aaa", status="staged")
    owner = _claimed(d)
    claim = ("import sys; from pathlib import Path; from guildlite._run import Run\n"
             "r = Run(id=Path(sys.argv[1]).name, run_dir=Path(sys.argv[1]), op='train'); r.claim(wait=0.2)")
    cp = subprocess.run([sys.executable, "-c", claim, str(d)], capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0 and "is owned by another running guildlite" in cp.stderr, cp.stderr
    owner.release()
    cp = subprocess.run([sys.executable, "-c", claim, str(d)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "too big"])
def test_a_run_json_that_is_no_regular_file_never_hangs_a_reader(tmp_path: Path, kind: str) -> None:
    """``runs``, ``compare`` and ``runs info`` over a run dir whose run.json is a FIFO (no writer:
    an open for reading would block forever) or a device: each exits, the bad run skipped."""
    runs = tmp_path / "runs"
    good = _record(runs / "20260101T000000-000aaa", status="completed")
    bad = runs / "20260101T000001-000aaa"
    bad.mkdir()
    if kind == "fifo":
        os.mkfifo(bad / "run.json")
    elif kind == "too big":
        with open(bad / "run.json", "wb") as f:  # sparse: a JSON string over the record size limit
            f.write(b'{"id": "')
            f.seek(MAX_BYTES + (1 << 20))
            f.write(b'"}')
    else:
        (bad / "run.json").symlink_to(kind)
    env = {**os.environ, "GUILDLITE_RUNS_DIR": str(runs)}
    out = str(tmp_path / "view.html")
    for args in (["runs"], ["compare"], ["view", "--out", out], ["runs", "info", good.name],
                 ["runs", "info", bad.name]):
        cp = subprocess.run([*GUILDLITE, *args], capture_output=True, text=True, env=env, timeout=60,
                            stdin=subprocess.DEVNULL)
        assert TRACEBACK not in cp.stderr, (args, cp.stderr)
        if bad.name in args:
            assert cp.returncode != 0
        else:
            assert cp.returncode == 0, (args, cp.stderr)
            assert good.name[:15] in cp.stdout or args[0] in ("compare", "view"), (args, cp.stdout)
    assert good.name in Path(out).read_text()
    with pytest.raises(RunNotFoundError, match="run.json"):
        load_run(bad)


def test_an_active_record_without_a_pid_reads_terminated(tmp_path: Path) -> None:
    assert load_run(_record(tmp_path / "20260101T000000-000aaa", status="pending")).status == "terminated"


def test_ended_records_are_not_touched(tmp_path: Path, exited_pid: tuple[int, int]) -> None:
    pid, start = exited_pid
    for i, status in enumerate(("staged", "completed", "error", "terminated")):
        d = _record(tmp_path / f"20260101T00000{i}-000aaa", status=status, pid=pid, pid_start=start)
        run = load_run(d)
        assert run.status == status and run.error is None


def test_a_zombie_owner_is_not_alive(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        start = process_start(child.pid)
        d = _record(tmp_path / "20260101T000000-000aaa", pid=child.pid, pid_start=start)
        deadline = time.monotonic() + 10
        while _proc_state(child.pid) != "Z":  # exited, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert load_run(d).status == "terminated"
    finally:
        child.wait()


def test_load_run_of_a_dir_without_a_record(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(RunNotFoundError, match="no readable run.json"):
        load_run(tmp_path / "x")
    (tmp_path / "x" / "run.json").write_text('{"id": ')
    with pytest.raises(RunNotFoundError):
        load_run(tmp_path / "x")


def test_save_round_trips_and_keeps_outside_label_edits(tmp_path: Path) -> None:
    d = tmp_path / "20260101T000000-000aaa"
    d.mkdir()
    run = Run(id=d.name, run_dir=d, op="train", flags={"lr": 0.1, "n": 2}, status="completed", exit_code=0,
              is_trial=True, parent_id="20251231T000000-000bbb", attrs={"p": {"k": 1}})
    run.save()
    rec = json.loads((d / "run.json").read_text())
    assert rec["parent"] == "20251231T000000-000bbb" and rec["trials"] == [] and "run_dir" not in rec
    back = load_run(d)
    assert back.to_record() == run.to_record()
    # a label set by `guildlite label` while the run goes on survives the run's next save
    back.update(label="edited")
    run.save()
    assert load_run(d).label == "edited"


# --- listing and selectors -----------------------------------------------------------------------

IDS = [
    "20260101T000000-000aaa",
    "20260101T000001-000abb",
    "20260101T000002-000abc",
    "20260101T000003-111111",
    "20260101T000004-222222",
]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    rd = tmp_path / "runs"
    for i in IDS:
        _record(rd / i, status="completed")
    (rd / ".staging-20260101T000009-999999").mkdir()  # a run being staged: not listed
    (rd / ".trash").mkdir()
    (rd / "20260101T000005-333333").mkdir()  # torn/removed: listed by id, skipped when read
    return rd


def _ids(runs: list[Run]) -> list[str]:
    return [r.id for r in runs]


def test_runs_list_newest_first_and_skip_hidden_and_torn_dirs(runs_dir: Path) -> None:
    rl = RunList(runs_dir)
    assert rl.ids[0] == "20260101T000005-333333"
    assert _ids(list(rl)) == IDS[::-1]
    assert _ids(list_runs(runs_dir)) == IDS[::-1]
    assert _ids(list_runs(runs_dir, where=lambda r: r.id.endswith("abc"))) == [IDS[2]]
    assert RunList(runs_dir / "missing").ids == []


def test_selectors(runs_dir: Path) -> None:
    runs = list_runs(runs_dir)  # newest first: index 1 is IDS[-1]
    assert _ids(select_runs(runs, ["1"])) == [IDS[4]]
    assert _ids(select_runs(runs, ["2:4"])) == [IDS[3], IDS[2], IDS[1]]
    assert _ids(select_runs(runs, ["4:"])) == [IDS[1], IDS[0]]
    assert _ids(select_runs(runs, [":2"])) == [IDS[4], IDS[3]]
    assert _ids(select_runs(runs, ["20260101T000003"])) == [IDS[3]]
    assert _ids(select_runs(runs, ["20260101T000002-000abc"])) == [IDS[2]]
    assert _ids(select_runs(runs, ["1", "1:2", " 1 "])) == [IDS[4], IDS[3]]  # each run once, in order
    # the same on a lazily-read RunList
    assert _ids(select_runs(RunList(runs_dir), ["2"])) == ["20260101T000004-222222"]


def test_an_ambiguous_prefix_lists_the_candidates(runs_dir: Path) -> None:
    with pytest.raises(RunNotFoundError) as e:
        select_runs(list_runs(runs_dir), ["20260101T00000"])
    msg = str(e.value)
    assert "matches 5 runs" in msg and "give more of the id" in msg
    assert all(i in msg for i in IDS)


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("../x", "invalid run selector"),
        ("a/b", "invalid run selector"),
        (".trash", "invalid run selector"),
        ("", "invalid run selector"),
        ("0", "no run at index 0"),
        ("99", "no run at index 99"),
        ("3:1", "invalid run range"),
        ("0:2", "invalid run range"),
        ("a:b", "invalid run range"),
        ("zzz", "no run matches 'zzz'"),
    ],
)
def test_bad_selectors(runs_dir: Path, spec: str, needle: str) -> None:
    with pytest.raises(RunNotFoundError) as e:
        select_runs(list_runs(runs_dir), [spec])
    assert needle in str(e.value)
    assert e.value.exit_code == 2
