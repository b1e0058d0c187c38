"""``guildlite watch``: a real foreground ``guildlite run`` in one process, ``guildlite watch`` in
another; the job waits for a gate file in its run dir, so the test decides when it ends (no
sleeping for a guessed time)."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from conftest import (
    GUILDLITE,
    TRACEBACK,
    Project,
    assert_clean_error,
    load_record,
    property_settings,
    wait_until,
)
from hypothesis import given
from hypothesis import strategies as st

from guildlite._builtins import parse_scalars
from guildlite._scalars import OutputParser
from guildlite._watch import ScalarScanner

# Prints a few lines (one a `key: value` scalar), waits for a `go` file in its cwd (the run dir),
# prints one more line and exits with --code.
GATED = """\
import argparse, os, sys, time

p = argparse.ArgumentParser()
p.add_argument("--code", type=int, default=0)
p.add_argument("--tag", default="x")
args = p.parse_args()
print(f"first line of {args.tag}", flush=True)
print("loss: 0.5", flush=True)
while not os.path.exists("go"):
    time.sleep(0.02)
print("step: 2", flush=True)
print("loss: 0.25", flush=True)
print(f"last line of {args.tag}", flush=True)
sys.exit(args.code)
"""

# Another print style: an op with its own output-scalars pattern, `epoch N loss=X acc=Y` lines
# written with sys.stdout.write, a carriage-return progress bar (the log holds its updates as lines),
# and a last line with no newline.
STYLED = """\
import os, sys, time

for i in range(3):
    sys.stdout.write(f"\\rprogress {i}/3")
    sys.stdout.flush()
sys.stdout.write("\\n")
sys.stdout.write("epoch 1 loss=0.75 acc=0.5\\n")
sys.stdout.flush()
while not os.path.exists("go"):
    time.sleep(0.02)
sys.stdout.write("epoch 2 loss=0.125 acc=0.875\\n")
sys.stdout.write("done, no newline")
sys.stdout.flush()
"""

GUILDFILE = """\
operations:
  gated:
    main: gated.py
    launcher: python
    flags:
      code: 0
      tag: x
  styled:
    main: styled.py
    launcher: python
    output-scalars: ['epoch (?P<step>\\d+) loss=(?P<loss>\\S+) acc=(?P<acc>\\S+)']
"""


class _Reader:
    """Collects a pipe's text in a thread, so that a test can wait for what a process printed."""

    def __init__(self, stream: object) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for chunk in iter(lambda: stream.read(1), ""):  # type: ignore[attr-defined]
            self.text += chunk

    def join(self) -> str:
        self._thread.join(timeout=30)
        return self.text


class _Proc:
    """A spawned guildlite with its stdout and stderr collected."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.p = popen
        self.out = _Reader(popen.stdout)
        self.err = _Reader(popen.stderr)

    def wait(self, timeout: float = 60) -> int:
        rc = self.p.wait(timeout=timeout)
        self.out.join()
        self.err.join()
        return rc

    def both(self) -> str:
        return f"stdout:\n{self.out.text}\nstderr:\n{self.err.text}"


@pytest.fixture
def proj(make_project: Callable[..., Project]) -> Project:
    return make_project(GUILDFILE, files={"gated.py": GATED, "styled.py": STYLED})


def _spawn(proj: Project, *args: str) -> _Proc:
    return _Proc(proj.spawn(*args))


def _running(proj: Project, op: str = "gated", batch: bool = False) -> str:
    """The id of the run of ``op`` (a batch: the batch) once its record says running."""

    def find() -> str | None:
        for d in proj.run_dirs():
            rec = load_record(d)
            if rec["op"] == op and bool(rec.get("is_batch")) == batch and rec["status"] == "running":
                return str(rec["id"])
        return None

    return wait_until(find, timeout=60, what=f"a running {op} run")


def _open_gate(proj: Project, run_id: str) -> None:
    (proj.runs_dir / run_id / "go").write_text("")


def _trial_ids(proj: Project, batch_id: str) -> list[str]:
    return list(load_record(proj.runs_dir, batch_id).get("trials") or [])


def _let_trials_through(proj: Project, batch_id: str) -> None:
    """Open each trial's gate as it runs (one at a time: --parallel 1)."""
    trials = wait_until(lambda: _trial_ids(proj, batch_id), timeout=60, what="the batch's trials")
    for tid in trials:
        wait_until(lambda tid=tid: load_record(proj.runs_dir, tid)["status"] == "running", timeout=60,
                   what=f"trial {tid} running")
        _open_gate(proj, tid)


def test_watch_follows_a_running_run_and_exits_0_when_it_completes(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated", "tag=alpha")
    run_id = _running(proj)
    watch = _spawn(proj, "watch")  # the newest running run
    wait_until(lambda: "loss: 0.5" in watch.out.text, timeout=60, what="watch printing the run's output")
    assert "first line of alpha" in watch.out.text
    # The status line (stderr is a pipe here: a plain line) names the run and its latest scalar.
    wait_until(lambda: f"run {run_id} running" in watch.err.text, timeout=60, what="a status line")
    assert "loss=0.5" in watch.err.text, watch.both()
    assert watch.p.poll() is None, "watch must wait for the run to end"
    _open_gate(proj, run_id)
    assert watch.wait() == 0, watch.both()
    assert run.wait() == 0, run.both()
    assert "last line of alpha" in watch.out.text
    # Every line of output.log once, in order.
    assert watch.out.text == (proj.runs_dir / run_id / "output.log").read_text()
    last = watch.err.text.strip().splitlines()[-1]
    assert f"run {run_id} completed" in last and "loss=0.25" in last and "step 2" in last, last
    assert TRACEBACK not in watch.err.text


def test_watch_exits_with_the_exit_status_of_a_failed_run(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated", "code=3")
    run_id = _running(proj)
    watch = _spawn(proj, "watch", run_id[:-2])  # an id prefix
    wait_until(lambda: "loss: 0.5" in watch.out.text, timeout=60, what="watch printing the run's output")
    _open_gate(proj, run_id)
    assert run.wait() == 3, run.both()
    assert watch.wait() == 3, watch.both()
    assert f"run {run_id} error" in watch.err.text


def test_watch_a_stopped_run_exits_as_guildlite_run_does(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated")
    run_id = _running(proj)
    watch = _spawn(proj, "watch")
    wait_until(lambda: "loss: 0.5" in watch.out.text, timeout=60, what="watch printing the run's output")
    stop = proj.run("stop", run_id)
    assert stop.returncode == 0, stop.stderr
    run_rc = run.wait()
    assert run_rc != 0
    assert watch.wait() == run_rc, (run_rc, watch.both())
    assert f"run {run_id} terminated" in watch.err.text


def test_ctrl_c_stops_watching_not_the_run(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated")
    run_id = _running(proj)
    watch = _spawn(proj, "watch", run_id)
    wait_until(lambda: "loss: 0.5" in watch.out.text, timeout=60, what="watch printing the run's output")
    watch.p.send_signal(signal.SIGINT)
    assert watch.wait() == 130, watch.both()
    assert "stopped watching" in watch.err.text and TRACEBACK not in watch.err.text
    time.sleep(0.5)  # time for a wrongly passed-on signal to land: the run must still be going
    assert run.p.poll() is None
    assert load_record(proj.runs_dir, run_id)["status"] == "running"
    _open_gate(proj, run_id)
    assert run.wait() == 0, run.both()
    assert load_record(proj.runs_dir, run_id)["status"] == "completed"


def test_watch_a_batch_shows_its_trials_and_exits_0_when_all_complete(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated", "tag=[a,b]")
    batch_id = _running(proj, batch=True)
    watch = _spawn(proj, "watch")  # the newest going run is a trial: its batch stands for it
    trials = wait_until(lambda: _trial_ids(proj, batch_id), timeout=60, what="the batch's trials")
    assert len(trials) == 2
    for tid in trials:  # one at a time (--parallel 1): open each gate as its trial runs
        wait_until(lambda tid=tid: load_record(proj.runs_dir, tid)["status"] == "running", timeout=60,
                   what=f"trial {tid} running")
        wait_until(lambda tid=tid: f"{tid} started" in watch.err.text, timeout=60, what="a trial start line")
        _open_gate(proj, tid)
    assert run.wait() == 0, run.both()
    assert watch.wait() == 0, watch.both()
    err = watch.err.text
    for n, tid in enumerate(trials, 1):
        assert f"trial {n}/2 {tid} started" in err and f"trial {n}/2 {tid} completed" in err, err
    assert "done 2/2, running 0, failed 0" in err
    assert f"batch {batch_id} completed" in err.strip().splitlines()[-1]


def test_watch_a_batch_with_a_failed_trial_exits_nonzero(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated", "code=[0,4]")
    batch_id = _running(proj, batch=True)
    watch = _spawn(proj, "watch", batch_id)
    _let_trials_through(proj, batch_id)
    run_rc = run.wait()
    assert run_rc != 0
    assert watch.wait() == run_rc, (run_rc, watch.both())
    assert "failed 1" in watch.err.text


def test_watch_with_no_running_run_is_a_clear_error(proj: Project) -> None:
    assert_clean_error(proj.run("watch"), 2, "no run is pending or running")
    staged = proj.run("run", "-y", "--stage", "gated")
    assert staged.returncode == 0, staged.stderr
    assert_clean_error(proj.run("watch"), 2, "no run is pending or running")  # staged, not started
    # A staged run that nobody runs is nothing to watch either.
    assert_clean_error(proj.run("watch", "1"), 2, "staged")
    assert_clean_error(proj.run("watch", "nosuchrun"), 2)


def test_watch_an_ended_run_prints_its_output_and_its_exit_status(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated", "code=5")
    run_id = _running(proj)
    _open_gate(proj, run_id)
    assert run.wait() == 5
    cp = proj.run("watch", run_id)
    assert cp.returncode == 5, cp.stderr
    assert cp.stdout == (proj.runs_dir / run_id / "output.log").read_text()


def test_watch_another_print_style_with_the_ops_own_scalar_pattern(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "styled")
    run_id = _running(proj, op="styled")
    watch = _spawn(proj, "watch")
    wait_until(lambda: "epoch 1" in watch.out.text, timeout=60, what="watch printing the run's output")
    wait_until(lambda: "loss=0.75 acc=0.5 (step 1)" in watch.err.text, timeout=60,
               what="the op's pattern's scalars in the status line")
    _open_gate(proj, run_id)
    assert run.wait() == 0, run.both()
    assert watch.wait() == 0, watch.both()
    assert watch.out.text.endswith("done, no newline")  # a last line without a newline is printed too
    assert "progress 2/3" in watch.out.text
    last = watch.err.text.strip().splitlines()[-1]
    assert "loss=0.125 acc=0.875 (step 2)" in last, last


def test_watch_follows_a_run_that_is_not_started_yet(proj: Project) -> None:
    """A trial waiting for its turn in a running batch: watch waits for it, then follows it."""
    run = _spawn(proj, "run", "-y", "gated", "tag=[one,two]")
    batch_id = _running(proj, batch=True)
    first, second = wait_until(lambda: _trial_ids(proj, batch_id), timeout=60, what="the batch's trials")
    assert load_record(proj.runs_dir, second)["status"] == "staged"
    watch = _spawn(proj, "watch", second)
    time.sleep(0.5)
    assert watch.p.poll() is None, watch.both()  # waiting, not "nothing to watch"
    wait_until(lambda: load_record(proj.runs_dir, first)["status"] == "running", timeout=60, what="trial 1 running")
    _open_gate(proj, first)
    wait_until(lambda: "first line of two" in watch.out.text, timeout=60, what="the second trial's output")
    assert "first line of one" not in watch.out.text
    _open_gate(proj, second)
    assert run.wait() == 0, run.both()
    assert watch.wait() == 0, watch.both()


def test_watch_a_detached_run_right_after_detaching(proj: Project) -> None:
    """``run --detach`` returns at once; ``watch`` (no RUN) finds the run the supervisor owns."""
    cp = proj.run("run", "-y", "--detach", "gated", "code=3")
    assert cp.returncode == 0, cp.stderr
    run_id = cp.stdout.strip()
    watch = _spawn(proj, "watch")
    wait_until(lambda: "loss: 0.5" in watch.out.text, timeout=60, what="watch printing the detached run's output")
    assert f"run {run_id}" in watch.err.text, watch.both()
    _open_gate(proj, run_id)
    assert watch.wait() == 3, watch.both()
    assert load_record(proj.runs_dir, run_id)["status"] == "error"


def test_watch_a_detached_batch(proj: Project) -> None:
    cp = proj.run("run", "-y", "-b", "gated", "tag=[a,b]")
    assert cp.returncode == 0, cp.stderr
    batch_id = cp.stdout.strip()
    watch = _spawn(proj, "watch", batch_id)
    _let_trials_through(proj, batch_id)
    assert watch.wait() == 0, watch.both()
    assert "done 2/2, running 0, failed 0" in watch.err.text


def test_on_a_terminal_the_status_line_is_redrawn_in_place(proj: Project) -> None:
    run = _spawn(proj, "run", "-y", "gated")
    run_id = _running(proj)
    master, slave = pty.openpty()
    watch = subprocess.Popen([*GUILDLITE, "watch", run_id], cwd=proj.root, env=proj.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave)
    proj.spawned.append(watch)  # type: ignore[arg-type]
    os.close(slave)
    seen = bytearray()

    def pump() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    head = f"guildlite: run {run_id} running".encode()
    wait_until(lambda: b"loss=0.5" in seen, timeout=60, what="the status line on the terminal")
    assert b"\r\x1b[K" + head in seen, bytes(seen)
    _open_gate(proj, run_id)
    assert watch.wait(timeout=60) == 0
    assert run.wait() == 0, run.both()
    reader.join(timeout=10)
    os.close(master)
    assert watch.stdout is not None
    assert "last line of x" in watch.stdout.read().decode()
    # The line is erased before the last line is printed: nothing of it is left after it.
    tail = bytes(seen).rsplit(b"\r\x1b[K", 1)[1]
    assert tail.startswith(f"guildlite: run {run_id} completed".encode()), bytes(seen)


_PIECES = st.sampled_from(["loss: 1.5", "step: 3", "acc: 2", "noise", "x: inf", " lr : 1e-3 ", "é: 1", "[default0]:loss: 4",
                           "[default1]:loss: 9", "0: acc: 5", "1: acc: 6", "a" * 40, "\n", "\r", "\r\n", "\n\n", "\x00",
                           "ü".encode()[:1].decode("latin-1")])


@property_settings(max_examples=300)
@given(pieces=st.lists(_PIECES, max_size=30), cuts=st.lists(st.integers(1, 9), min_size=1, max_size=40),
       nproc=st.sampled_from([1, 2]), task_labels=st.booleans())
def test_scanning_output_in_pieces_finds_what_the_whole_log_holds(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[str], cuts: list[int], nproc: int, task_labels: bool
) -> None:
    """Whatever the pieces the output arrives in (a line end or a UTF-8 character split between
    reads), watch's scanner finds the rows the end-of-run capture finds in the whole log."""
    data = "".join(pieces).encode("utf-8", "surrogateescape")
    log = tmp_path_factory.mktemp("scan") / "output.log"
    log.write_bytes(data)
    want = list(parse_scalars(log, nproc, task_labels=task_labels))
    parser = _Recording(nproc, None, task_labels)
    scanner = ScalarScanner(parser)
    pos, i = 0, 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        scanner.feed(data[pos : pos + n])
        pos, i = pos + n, i + 1
    scanner.feed(b"", final=True)
    assert parser.rows == want
    assert scanner.latest == {r["key"]: r["value"] for r in want}
    assert scanner.step == (want[-1]["step"] if want else None)


class _Recording(OutputParser):
    """The line parser, keeping every row it found."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rows: list[dict[str, Any]] = []

    def feed_own(self, line: str) -> Iterator[dict[str, Any]]:
        for row in super().feed_own(line):
            self.rows.append(row)
            yield row
