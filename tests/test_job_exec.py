"""The job shim (``guildlite/_job_exec.py``) on real processes: parent death, signals, exit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import Project, wait_no_marker_procs, wait_until

from guildlite._launch import _JOB_EXEC

# A job that counts the SIGTERMs it gets (in OUT), and stays a while after the first.
COUNT_TERMS = """\
import signal, sys, time
out, seen = sys.argv[1], []
def on_term(sig, frame):
    seen.append(time.monotonic())
    open(out, "w").write(str(len(seen)))
signal.signal(signal.SIGTERM, on_term)
open(out, "w").write("ready")
while not seen or time.monotonic() - seen[0] < 1.5:
    time.sleep(0.01)
"""

# A parent with many threads that starts the shim as guildlite does, then waits to be killed.
MANY_THREADS = """\
import os, subprocess, sys, threading, time
from guildlite._launch import _parent_death_signal
for _ in range(50):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
subprocess.Popen([sys.executable, *sys.argv[1:]], preexec_fn=_parent_death_signal(os.getpid()))
time.sleep(60)
"""


def _sigterms_when_parent_killed(cwd: Path, out: Path) -> str:
    parent = subprocess.Popen([sys.executable, "parent.py", _JOB_EXEC, "count.py", str(out)], cwd=cwd,
                              env={**os.environ, "PYTHONPATH": str(Path(_JOB_EXEC).parents[1])})
    wait_until(lambda: out.exists() and out.read_text() == "ready", what="the job to start")
    parent.kill()
    parent.wait()
    wait_until(lambda: out.read_text() != "ready", what="the job's SIGTERM")
    time.sleep(1.0)  # any further SIGTERM arrives within milliseconds of the first
    return out.read_text()


def test_a_killed_many_threaded_parent_reaches_the_job_as_one_sigterm(tmp_path: Path) -> None:
    # The kernel sends the parent-death signal on every reparent, once per exiting thread of a
    # SIGKILLed parent: a plain child of this parent counted 13 to 28 SIGTERMs. torchrun takes each
    # as a new shutdown; through the shim it gets exactly one.
    (tmp_path / "count.py").write_text(COUNT_TERMS)
    (tmp_path / "parent.py").write_text(MANY_THREADS)
    counts = [_sigterms_when_parent_killed(tmp_path, tmp_path / f"terms-{i}") for i in range(3)]
    assert counts == ["1", "1", "1"]


# Each rank takes 2 s to act on SIGTERM (a checkpoint), long enough for a second and third signal
# to land while torchrun is still shutting down.
SLOW_TERM = """\
import os, signal, sys, time
def on_term(sig, frame):
    time.sleep(2)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
open(os.path.join(os.environ["GUILDLITE_RUN_DIR"], "ready-" + os.environ["RANK"]), "w").close()
time.sleep(120)
"""


def test_torchrun_ends_when_repeated_signals_interrupt_its_shutdown(make_project: Callable[..., Project]) -> None:
    # Plain torchrun waits forever at interpreter exit here: each SIGTERM aborts the shutdown the
    # previous one began, and its log-tailing threads are never stopped.
    proj = make_project("operations:\n  slow: {main: slow.py, nproc-per-node: 2}\n", {"slow.py": SLOW_TERM})
    p = proj.spawn("run", "slow", "-y")
    run_dir = wait_until(proj.run_dirs, what="the run dir")[0]
    wait_until(lambda: all((run_dir / f"ready-{r}").exists() for r in (0, 1)), what="both ranks")
    agent = json.loads((run_dir / "run.json").read_text())["job_pid"]
    for _ in range(3):
        os.kill(agent, signal.SIGTERM)
        time.sleep(0.4)
    out, err = p.communicate(timeout=60)
    wait_no_marker_procs(proj.marker, timeout=30)
    rec = proj.only_record()
    assert rec["status"] == "error" and p.returncode != 0, (rec["status"], p.returncode, err[-2000:])


# --- tracebacks start at the user's script ---------------------------------------------------------

FAIL = """\
import sys
print("ARGV0 " + sys.argv[0], flush=True)
def inner():
    raise ValueError("boom from the script")
inner()
"""


@pytest.mark.parametrize("op", ["py", "t1", "t2", "mod"])
def test_a_failing_script_shows_its_own_traceback_last(make_project: Callable[..., Project], op: str) -> None:
    proj = make_project(
        "operations:\n"
        "  py: {main: fail.py, launcher: python}\n"
        "  t1: {main: fail.py}\n"
        "  t2: {main: fail.py, nproc-per-node: 2}\n"
        "  mod: {main: pkg.fail}\n",
        {"fail.py": FAIL, "pkg/__init__.py": "", "pkg/fail.py": FAIL},
    )
    cp = proj.run("run", op, "-y")
    assert cp.returncode == 1, cp.stderr
    out = [re.sub(r"^\[default\d\]:", "", line) for line in cp.stdout.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(out) if line.startswith("Traceback")]
    assert starts, cp.stdout
    frames = [line for line in out[starts[0]:] if line.lstrip().startswith("File ")]
    assert "fail.py" in frames[0] and "in <module>" in frames[0], frames  # the first frame is the script's
    assert not any("_job_exec" in f or "runpy" in f for f in frames), frames
    assert out[-1] == "ValueError: boom from the script", out[-3:]  # the console ends with the rank's error
    assert "FAILED" not in cp.stdout + cp.stderr and "ChildFailedError" not in cp.stdout + cp.stderr
    argv0 = [line.split(" ", 1)[1] for line in out if line.startswith("ARGV0 ")]
    assert argv0 and all(a.endswith("fail.py") for a in argv0), argv0
    if op != "py":  # torchrun's own report stays in the log
        rec = proj.only_record()
        log = (proj.runs_dir / rec["id"] / "output.log").read_text()
        assert "ChildFailedError" in log and "failed (exitcode: 1)" in log
