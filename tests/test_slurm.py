"""The SLURM backend on a real SLURM (slurmctld + slurmd started by tests/slurm/cluster.sh; no mocks).

These tests skip only where SLURM cannot be started here (not Linux, not root, packages missing);
with CI or GUILDLITE_REQUIRE_SLURM set, that is a failure instead. The single-node cluster is used
first, the two-host cluster last (both write /etc/slurm/slurm.conf: `cluster.sh up KIND` takes the
other kind down).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
EXAMPLE = ROOT / "examples" / "slurm"
REQUIRED = bool(os.environ.get("CI") or os.environ.get("GUILDLITE_REQUIRE_SLURM"))


def _cannot_start() -> str | None:
    if not sys.platform.startswith("linux"):
        return "SLURM tests need Linux"
    if os.geteuid() != 0:
        return "SLURM tests need root (to start slurmctld/slurmd)"
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol") if not shutil.which(b)
               and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"SLURM packages missing ({', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge"
    return None


_initial: dict[str, str] = {}


def _up(kind: str) -> None:
    why = _cannot_start()
    if why:
        if REQUIRED:
            pytest.fail(f"{why} (CI/GUILDLITE_REQUIRE_SLURM is set: SLURM tests must run)")
        pytest.skip(why)
    if "kind" not in _initial:
        _initial["kind"] = subprocess.run([str(CLUSTER), "status"], capture_output=True, text=True).stdout.strip()
    p = subprocess.run([str(CLUSTER), "up", kind], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, f"cluster.sh up {kind} failed:\n{p.stdout}\n{p.stderr}"


@pytest.fixture(scope="session", autouse=True)
def _restore_cluster() -> Any:
    yield
    if "kind" in _initial:  # leave the machine as we found it
        args = ["up", _initial["kind"]] if _initial["kind"] else ["down"]
        subprocess.run([str(CLUSTER), *args], capture_output=True, timeout=180)


@pytest.fixture
def single() -> None:
    _up("single")


@pytest.fixture
def multi() -> None:
    _up("multi")


# --- a project ----------------------------------------------------------------------------------------

HELLO = """\
import argparse, os, socket, sys
p = argparse.ArgumentParser(); p.add_argument("--code", type=int, default=0); p.add_argument("--n", type=int, default=0)
a = p.parse_args()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    import torch, torch.distributed as dist
    dist.init_process_group("gloo")
    t = torch.ones(1); dist.all_reduce(t); assert t.item() == dist.get_world_size()
print(f"rank={os.environ.get('RANK', '0')} world={os.environ.get('WORLD_SIZE', '1')} host={socket.gethostname()}"
      f" run_dir={os.environ['GUILDLITE_RUN_DIR']} n={a.n}", flush=True)
print(f"rank_score: {os.environ.get('RANK', '0')}", flush=True)
sys.exit(a.code)
"""

SLEEPY = """\
import os, time
print("sleepy started pid", os.getpid(), flush=True)
time.sleep(300)
"""

# A curve set by --lr (far from 0.1: clearly bad at every step), for pruning.
CURVE = """\
import argparse, time
p = argparse.ArgumentParser(); p.add_argument("--lr", type=float, default=0.1); p.add_argument("--steps", type=int, default=30)
a = p.parse_args()
for step in range(a.steps):
    print(f"step: {step}", flush=True)
    print(f"loss: {abs(a.lr - 0.1) * 100 + 1.0 / (step + 1):.6f}", flush=True)
    time.sleep(0.2)
"""

PLUGIN = """\
from guildlite import Plugin

class CountEnds(Plugin):
    def on_run_end(self, run):
        with open(run.run_dir / "ends.txt", "a") as f:
            f.write(f"{run.status} {os.getpid()}\\n")

import os
"""

GUILDFILE = """\
backend: slurm
slurm:
  partition: debug
  time: "10"
  signal-grace: 10
plugins:
  - class: plug:CountEnds
operations:
  hello:
    main: hello.py
    nproc-per-node: 2
    flags: {code: 0}
  quick:
    main: hello.py
    launcher: python
    flags: {code: 0, n: 0}
  sleepy:
    main: sleepy.py
    launcher: python
  train:
    main: train.py
    launcher: python
    flags: {steps: 20, step-seconds: 0.0}
  train-limited:
    main: train.py
    launcher: python
    flags: {steps: 400, step-seconds: 0.25}
    slurm: {time: "1", signal-grace: 45, max-requeues: 1}
  curve:
    main: curve.py
    launcher: python
    progress-interval: 0.2
    flags: {lr: 0.1, steps: 30}
  hello-2hosts:
    main: hello.py
    nproc-per-node: 2
    slurm: {nodes: 2}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "hello.py").write_text(HELLO)
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    (tmp_path / "plug.py").write_text(PLUGIN)
    (tmp_path / "curve.py").write_text(CURVE)
    shutil.copy(EXAMPLE / "train.py", tmp_path / "train.py")
    (tmp_path / "guildfile.yml").write_text(GUILDFILE)
    return tmp_path


def _env(project: Path) -> dict[str, str]:
    return {**os.environ, "GUILDLITE_RUNS_DIR": str(project / "runs"), "PYTHONPATH": str(ROOT)}


def gl(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guildlite", *args], cwd=project, env=_env(project),
                          capture_output=True, text=True, timeout=timeout)


def gl_bg(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "guildlite", *args], cwd=project, env=_env(project),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def runs(project: Path) -> list[dict[str, Any]]:
    """Every run as guildlite reports it (liveness derived), newest first."""
    p = gl(project, "runs", "--all", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def raw(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "run.json").read_text())


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 90, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    return set(out.split())


def the_run_dir(project: Path) -> Path:
    """The (first) run dir, once guildlite has made it."""
    runs_dir = project / "runs"
    return wait_for("the run dir", lambda: next(iter(runs_dir.glob("2*")), None) if runs_dir.exists() else None)


def release_requeued(job: str) -> None:
    """Wait until a requeued ``job`` is back in the queue, then start it now (skip SLURM's 120 s hold-off)."""
    wait_for("the job back in the queue", lambda: subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip() == "PENDING", timeout=30)
    # slurmd refuses a launch whose credential is from the second its last attempt's was revoked in
    # ("Killing non-startable batch job: Job credential revoked"): the hold-off we skip avoids that.
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)


def ends(run_dir: str | Path) -> list[str]:
    p = Path(run_dir) / "ends.txt"
    return p.read_text().splitlines() if p.exists() else []


def procs_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment mentions ``text`` (a run id)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            blob = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            out.append(int(pid))
    return out


# --- validation (no cluster needed) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "snippet, words",
    [
        ("slurm:\n  partitoin: debug\n", ["unknown key 'partitoin'", "did you mean 'partition'"]),
        ("slurm:\n  nodes: 0\n", ["'nodes'", ">= 1"]),
        ("slurm:\n  time: soon\n", ["'time'", "not a SLURM time"]),
        ("backend: kubernetes\n", ["backend 'kubernetes'", "local, slurm"]),
    ],
)
def test_bad_slurm_keys_fail_at_load_before_staging(project: Path, snippet: str, words: list[str]) -> None:
    text = GUILDFILE.replace("backend: slurm\nslurm:\n  partition: debug\n  time: \"10\"\n  signal-grace: 10\n", "")
    (project / "guildfile.yml").write_text(snippet + text)
    p = gl(project, "run", "quick", "-y", "--backend", "slurm")
    assert p.returncode == 2, p.stderr
    assert "guildfile.yml:1" in p.stderr or "guildfile.yml:2" in p.stderr, p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    assert not (project / "runs").exists()


# --- single-node cluster ------------------------------------------------------------------------------


def logs(project: Path) -> str:
    """Every run's output.log, for a failure message."""
    return "\n".join(f"--- {d.name}/output.log\n{(d / 'output.log').read_text(errors='replace')}"
                     for d in sorted((project / "runs").glob("*/")) if (d / "output.log").exists())


def test_two_ranks_through_sbatch(single: None, project: Path) -> None:
    p = gl(project, "run", "hello", "-y")
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    (r,) = runs(project)
    assert r["status"] == "completed" and r["exit_code"] == 0
    assert r["remote"]["backend"] == "slurm" and r["remote"]["job_id"]
    log = (Path(r["run_dir"]) / "output.log").read_text()
    assert "rank=0 world=2" in log and "rank=1 world=2" in log, log
    assert f"run_dir={r['run_dir']}" in log
    script = (Path(r["run_dir"]) / "slurm.sbatch").read_text()
    assert "#SBATCH --partition=debug" in script and "guildlite.backends.slurm.node" in script
    assert [a["status"] for a in r["attempts"]] == ["completed"]
    assert ends(r["run_dir"]) == ["completed " + ends(r["run_dir"])[0].split()[1]]
    assert "rank=0 world=2" in p.stdout  # the foreground shows the job's output


def test_batch_of_four_trials(single: None, project: Path) -> None:
    p = gl(project, "run", "quick", "n=[1,2,3,4]", "-y")
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    rs = runs(project)
    batch = next(r for r in rs if r["is_batch"])
    trials = [r for r in rs if r["is_trial"]]
    assert batch["status"] == "completed" and len(trials) == 4
    assert {t["status"] for t in trials} == {"completed"}
    assert len({t["remote"]["job_id"] for t in trials}) == 4
    assert sorted(t["flags"]["n"] for t in trials) == [1, 2, 3, 4]
    for t in trials:
        assert f"n={t['flags']['n']}" in (Path(t["run_dir"]) / "output.log").read_text()
        assert len(ends(t["run_dir"])) == 1
    assert len(ends(batch["run_dir"])) == 1


def test_parallel_limits_the_jobs_in_the_queue(single: None, project: Path) -> None:
    p = gl(project, "run", "quick", "n=[1,2,3]", "--parallel", "1", "-y")
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    trials = sorted((r for r in runs(project) if r["is_trial"]), key=lambda r: r["started"])
    assert [t["status"] for t in trials] == ["completed"] * 3
    for before, after in zip(trials, trials[1:]):  # one job at a time: each starts after the last ended
        assert after["started"] >= before["stopped"], (before, after)
    assert "n=1" in p.stdout and "n=3" in p.stdout  # one at a time: the foreground shows each job's output


def test_a_detached_batch_honours_parallel(single: None, project: Path) -> None:
    p = gl(project, "run", "quick", "n=[1,2,3]", "--parallel", "1", "--detach", "-y")
    assert p.returncode == 0, p.stderr
    batch_id = p.stdout.strip()
    batch = wait_for("the batch's end", lambda: next((r for r in runs(project) if r["id"] == batch_id
                                                      and r["status"] not in ("pending", "running")), None),
                     timeout=180)
    assert batch["status"] == "completed", batch
    trials = sorted((r for r in runs(project) if r["is_trial"]), key=lambda r: r["started"])
    assert [t["status"] for t in trials] == ["completed"] * 3
    for before, after in zip(trials, trials[1:]):  # one job in SLURM's queue at a time
        assert after["started"] >= before["stopped"], (before, after)
    for t in trials:
        assert len(ends(t["run_dir"])) == 1
    assert len(ends(batch["run_dir"])) == 1


def test_failing_script_is_error_with_its_exit_code(single: None, project: Path) -> None:
    p = gl(project, "run", "quick", "code=3", "-y")
    assert p.returncode == 3, p.stderr
    (r,) = runs(project)
    assert r["status"] == "error" and r["exit_code"] == 3
    assert "code 3" in r["error"]["message"]
    assert ends(r["run_dir"])[0].startswith("error")


def test_stop_cancels_the_job(single: None, project: Path) -> None:
    proc = gl_bg(project, "run", "sleepy", "-y")
    run_dir = the_run_dir(project)
    wait_for("sleepy to start", lambda: "sleepy started" in (run_dir / "output.log").read_text()
             if (run_dir / "output.log").exists() else False)
    job = raw(run_dir)["remote"]["job_id"]
    p = gl(project, "stop", "1")
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    (r,) = runs(project)
    assert r["status"] == "terminated"
    assert r["attempts"][-1]["status"] == "terminated"
    assert len(ends(run_dir)) == 1 and ends(run_dir)[0].startswith("terminated")
    wait_for("the job to leave the queue", lambda: job not in squeue_ids(), timeout=30)
    wait_for("no process of the run", lambda: not procs_mentioning(run_dir.name), timeout=20)


def test_a_pruned_trial_is_cancelled_and_recorded_pruned(single: None, project: Path) -> None:
    """--prune: the owner's pruner stops the bad trial through the backend (scancel, with a stop
    request that says pruned): the node records it pruned (its attempt too), never requeued; the
    batch completes."""
    p = gl(project, "run", "curve", "lr=[0.1,5.0]", "--prune", "median", "--minimize", "loss", "--parallel", "1",
           "-y", timeout=300)
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    rs = runs(project)
    batch = next(r for r in rs if r["is_batch"])
    good, bad = sorted((r for r in rs if r["is_trial"]), key=lambda r: r["flags"]["lr"])
    assert batch["status"] == "completed", batch
    assert good["status"] == "completed" and [a["status"] for a in good["attempts"]] == ["completed"]
    assert bad["status"] == "pruned" and [a["status"] for a in bad["attempts"]] == ["pruned"], bad
    assert bad["error"]["plugin"] == "Pruning", bad["error"]
    rows = [json.loads(line) for line in (Path(bad["run_dir"]) / "scalars.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows if r["key"] == "loss") < 29  # its curve ends where it was pruned
    assert len(ends(bad["run_dir"])) == 1 and ends(bad["run_dir"])[0].startswith("pruned")
    wait_for("the job to leave the queue", lambda: bad["remote"]["job_id"] not in squeue_ids(), timeout=30)


def test_a_search_queued_whole_is_said_to_learn_nothing(single: None, project: Path) -> None:
    """A queue backend runs every trial of a search at once by default: the user is told that the
    optimizer learns nothing then, and how to let it (not with --parallel K)."""
    args = ("run", "curve", "lr=uniform[0.01:1.0]", "steps=2", "--optimizer", "random", "--minimize", "loss",
            "--max-trials", "2", "--seed", "1", "-y")
    p = gl(project, *args, timeout=300)
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    assert "all 2 trials of the search are proposed at once" in p.stderr and "--parallel K" in p.stderr, p.stderr
    p = gl(project, *args, "--parallel", "1", timeout=300)
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    assert "proposed at once" not in p.stderr, p.stderr


def test_killed_submitter_leaves_on_run_end_to_the_node(single: None, project: Path) -> None:
    proc = gl_bg(project, "run", "train", "steps=16", "step-seconds=0.5", "-y")
    run_dir = the_run_dir(project)
    wait_for("step 2", lambda: "step: 2" in (run_dir / "output.log").read_text()
             if (run_dir / "output.log").exists() else False, timeout=60)
    proc.kill()  # SIGKILL: no chance to fire anything
    proc.communicate(timeout=30)
    wait_for("on_run_end on the node", lambda: ends(run_dir), timeout=90)
    r = raw(run_dir)
    assert r["status"] == "completed" and ends(run_dir) == [ends(run_dir)[0]] and ends(run_dir)[0].startswith("completed")
    assert "the submitting guildlite did not take the run's end" in (run_dir / "output.log").read_text()
    assert runs(project)[0]["status"] == "completed"


def test_plain_scancel_is_not_running_on_read(single: None, project: Path) -> None:
    p = gl(project, "run", "sleepy", "-y", "--detach")
    assert p.returncode == 0, p.stderr + p.stdout + logs(project)
    assert "runs in the background" in p.stderr
    (r,) = runs(project)
    assert p.stdout.strip() == r["id"]
    assert r["status"] in ("pending", "running")
    # The detached supervisor submits the job a moment after `run -b` returns.
    r = wait_for("the job submitted", lambda: (lambda x: x if isinstance(x["remote"], dict) else None)(runs(project)[0]))
    job = r["remote"]["job_id"]
    wait_for("running", lambda: runs(project)[0]["status"] == "running")
    subprocess.run(["scancel", job], check=True)
    r = wait_for("not running", lambda: (lambda x: x if x["status"] not in ("pending", "running") else None)(runs(project)[0]),
                 timeout=30)
    assert r["status"] == "terminated"
    # --detach: the detached supervisor fired on_run_end, once
    wait_for("on_run_end", lambda: ends(r["run_dir"]), timeout=10)
    assert len(ends(r["run_dir"])) == 1


def test_requeue_resumes_in_the_same_run_dir(single: None, project: Path) -> None:
    proc = gl_bg(project, "run", "train", "steps=12", "step-seconds=0.5", "-y")
    run_dir = the_run_dir(project)
    wait_for("a checkpoint", lambda: (run_dir / "checkpoint.pt").exists(), timeout=60)
    wait_for("step 3", lambda: "step: 3" in (run_dir / "output.log").read_text(), timeout=30)
    job = raw(run_dir)["remote"]["job_id"]
    subprocess.run(["scontrol", "requeue", job], check=True)
    release_requeued(job)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (r,) = runs(project)
    assert r["status"] == "completed" and r["run_dir"] == str(run_dir)
    log = (run_dir / "output.log").read_text()
    assert "restart 0" in log and "restart 1" in log, log
    assert "resumed from step" in log and "done: 12 steps" in log, log
    assert [a["status"] for a in r["attempts"]] == ["preempted", "completed"]
    assert all(a["job_id"] == job for a in r["attempts"])
    assert len(ends(run_dir)) == 1


def test_time_limit_warning_requeues_then_max_requeues_ends_in_error(single: None, project: Path) -> None:
    # time 1 min, signal-grace 45 s: USR1 about 15 s into each attempt (SLURM may send it up to a minute early).
    proc = gl_bg(project, "run", "train-limited", "-y")
    run_dir = the_run_dir(project)
    wait_for("the first attempt preempted", lambda: [a["status"] for a in raw(run_dir).get("attempts", [])]
             == ["preempted"], timeout=120)
    job = raw(run_dir)["remote"]["job_id"]
    release_requeued(job)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0, err
    (r,) = runs(project)
    log = (run_dir / "output.log").read_text()
    assert r["status"] == "error", (r, log)
    assert "reached the time limit; requeued 1 times (max-requeues 1)" in r["error"]["message"], r["error"]
    assert [a["status"] for a in r["attempts"]] == ["preempted", "error"]
    assert r["attempts"][0]["reason"] == "time limit warning (signal-grace)"
    assert "restart 0" in log and "restart 1" in log and "resumed from step" in log, log
    assert log.count("SIGTERM at step") == 2, log  # the script checkpointed at each warning
    assert len(ends(run_dir)) == 1 and ends(run_dir)[0].startswith("error")
    script = (run_dir / "slurm.sbatch").read_text()
    assert "#SBATCH --time=1" in script and "#SBATCH --signal=B:USR1@45" in script and "#SBATCH --requeue" in script


def test_sbatch_rejection_names_the_partition(single: None, project: Path) -> None:
    before = squeue_ids()
    p = gl(project, "run", "quick", "-y", "--partition", "nosuchpart")
    assert p.returncode != 0
    assert "nosuchpart" in p.stderr and "sbatch rejected" in p.stderr, p.stderr
    (r,) = runs(project)
    assert r["status"] == "error" and "nosuchpart" in r["error"]["message"]
    assert squeue_ids() == before
    assert len(ends(r["run_dir"])) == 1


# --- two hosts (last: it replaces the single-node cluster) --------------------------------------------


def test_two_hosts_one_world(multi: None, project: Path) -> None:
    p = gl(project, "run", "hello-2hosts", "-y", timeout=180)
    assert p.returncode == 0, p.stderr + p.stdout
    (r,) = runs(project)
    assert r["status"] == "completed"
    assert r["remote"]["hosts"] == ["gl-n1", "gl-n2"]
    log = (Path(r["run_dir"]) / "output.log").read_text()
    hosts = {}
    for line in log.splitlines():
        m = re.search(r"rank=(\d+) world=(\d+) host=(\S+)", line)
        if m:
            hosts[int(m.group(1))] = m.group(3)
            assert m.group(2) == "4"
    assert sorted(hosts) == [0, 1, 2, 3], log
    assert set(hosts.values()) == {"gl-n1", "gl-n2"}, log
    # Lines read "0: [default0]:..." (srun task, torchrun local rank): only global rank 0's become scalars.
    scalars = [json.loads(x) for x in (Path(r["run_dir"]) / "scalars.jsonl").read_text().splitlines()]
    assert scalars == [{"step": 0, "key": "rank_score", "value": 0.0}], log
