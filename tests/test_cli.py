"""The ``guildlite`` command line end to end: real subprocesses, real torchrun jobs on CPU.

The job script (conftest.HELLO_SCRIPT) imports nothing heavy; torchrun itself still imports
torch, so every torchrun job costs a couple of seconds: runs that several tests read are made
once per module, and tests of batches and concurrent runs (where torchrun is not the point) run
the ``quick`` op (launcher python).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    GUILDLITE,
    TRACEBACK,
    Project,
    assert_clean_error,
    clean_env,
    load_record,
    read_scalars,
    wait_no_marker_procs,
    wait_until,
    write_project,
)

import guildlite


def _no_runs(project: Project) -> bool:
    return not project.runs_dir.exists() or list(project.runs_dir.iterdir()) == []


def _batch_and_trials(project: Project) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    recs = project.records()
    batches = [r for r in recs if r["is_batch"]]
    assert len(batches) == 1, [r["id"] for r in recs]
    batch = batches[0]
    trials = [project.record(t) for t in batch["trials"]]
    assert len(recs) == 1 + len(trials)
    return batch, trials


# --- no job ----------------------------------------------------------------------------------------


def test_python_m_guildlite_help() -> None:
    cp = subprocess.run([sys.executable, "-m", "guildlite", "--help"], check=False, capture_output=True, text=True,
                        env=clean_env(), timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert "Usage: guildlite" in cp.stdout
    for command in ("run", "runs", "ops", "compare", "stop"):
        assert f"\n  {command} " in cp.stdout
    cp = subprocess.run([sys.executable, "-m", "guildlite", "--version"], check=False, capture_output=True, text=True,
                        env=clean_env(), timeout=60)
    assert cp.returncode == 0 and guildlite.__version__ in cp.stdout


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import guildlite.cli\n"
        "for args in (['--help'], ['run', '--help'], ['runs', '--help'], ['ops', '--help']):\n"
        "    try:\n"
        "        guildlite.cli.cli(args, prog_name='guildlite')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (args, e.code)\n"
        "print('TORCH_LOADED' if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 'NO_TORCH')\n"
    )
    cp = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert "Usage: guildlite run" in cp.stdout
    assert cp.stdout.strip().splitlines()[-1] == "NO_TORCH"


BAD_INPUTS = [
    (["hello", "lrr=1"], ["operation 'hello' has no flag 'lrr'", "did you mean 'lr'?"]),
    (["hello", "epochs=abc"], ["flag 'epochs'", "abc", "not a valid int"]),
    (["hello", "epochs=1.5"], ["flag 'epochs'", "1.5", "int"]),
    (["hello", "lr=-1"], ["flag 'lr'", "-1.0 is below the minimum 0"]),
    (["hello", "lr=11"], ["flag 'lr'", "above the maximum 10"]),
    (["hello", "opt=rmsprop"], ["flag 'opt'", "rmsprop", "(sgd, adam)"]),
    (["hello", "lr=[0.1,"], ["flag 'lr'", "malformed list"]),
    (["hello", "lr=range[5:1]"], ["flag 'lr'", "below lo"]),
    (["hello", "lr=loguniform[0:1]"], ["flag 'lr'", "> 0"]),
    (["hello", "lr=[0.1,-1]"], ["flag 'lr'", "below the minimum"]),
    (["hello", "epochs=uniform[1:2]"], ["flag 'epochs' is an int"]),
    (["helo"], ["no operation 'helo'", "did you mean 'hello'?"]),
    (["hello", "lr"], ["expected NAME=VALUE"]),
    (["hello", "lr=1", "lr=2"], ["flag 'lr' is given more than once"]),
    (["hello", "--bogus"], ["unknown option '--bogus'"]),
    (["hello", "--nproc-per-node", "0"], ["--nproc-per-node must be at least 1"]),
    (["quick", "--nproc-per-node", "2"], ["launcher python", "must be 1"]),
    (["hello", "lr=[0.1,0.2]", "--parallel", "0"], ["--parallel must be at least 1"]),
    ([], ["missing OPERATION"]),
    (["hello", "lr=logspace[0:400:2]"], ["flag 'lr'"]),
]


@pytest.mark.parametrize("args, needles", BAD_INPUTS,
                         ids=[" ".join(getattr(b, "values", b)[0]) or "none" for b in BAD_INPUTS])  # type: ignore[arg-type]
def test_bad_input_is_exit_2_with_one_line_and_no_run_dir(project: Project, args: list[str],
                                                           needles: list[str]) -> None:
    cp = project.run("run", *args, "-y", timeout=60)
    assert_clean_error(cp, 2, *needles)
    assert cp.stdout == ""
    assert _no_runs(project), list(project.runs_dir.iterdir())


def test_a_bad_guildfile_is_exit_2_naming_file_and_line(make_project: Any) -> None:
    proj = make_project(guildfile="operations:\n  hello:\n    main: hello.py\n    flags:\n      lr: {min: x}\n")
    cp = proj.run("run", "hello", "-y", timeout=60)
    assert_clean_error(cp, 2, f"{proj.root.resolve() / 'guildfile.yml'}:5:", "'min' must be a number")
    assert _no_runs(proj)
    cp = proj.run("ops", timeout=60)
    assert_clean_error(cp, 2, "guildfile.yml:5:")


def test_no_guildfile_is_a_clean_error(tmp_path: Path) -> None:
    cp = subprocess.run([*GUILDLITE, "run", "train", "-y"], check=False, cwd=tmp_path, env=clean_env(tmp_path / "runs"),
                        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert_clean_error(cp, 2, "no guildfile.yml in")


def test_ops_json(project: Project) -> None:
    ops = project.run_json("ops", "--json", timeout=60)
    assert list(ops) == ["hello", "hello2", "quick"]
    hello = ops["hello"]
    assert hello["main"] == "hello.py" and hello["nproc_per_node"] == 1 and hello["gpus_per_trial"] == 0
    assert hello["description"] == "Prints its flags and a short loss curve"
    assert list(hello["flags"]) == ["lr", "epochs", "opt", "code", "sleep"]
    lr = hello["flags"]["lr"]
    assert (lr["type"], lr["default"], lr["min"], lr["max"], lr["description"]) == (
        "float", 0.1, 0, 10, "Learning rate")
    assert hello["flags"]["epochs"]["type"] == "int"
    assert hello["flags"]["opt"]["choices"] == ["sgd", "adam"]
    assert ops["hello2"]["nproc_per_node"] == 2
    text = project.run("ops", timeout=60)
    assert text.returncode == 0
    assert "hello  (hello.py, torchrun, nproc-per-node 1)" in text.stdout
    assert "choices: sgd, adam" in text.stdout


def test_stage_creates_a_staged_run_without_running_it(project: Project) -> None:
    cp = project.run("run", "hello", "lr=0.5", "--stage", "-y", timeout=60)
    assert cp.returncode == 0, cp.stderr
    rec = project.only_record()
    d = project.runs_dir / rec["id"]
    assert rec["status"] == "staged" and rec["flags"]["lr"] == 0.5
    assert rec["started"] is None and rec["exit_code"] is None
    assert (d / "hello.py").read_text() == (project.root / "hello.py").read_text()
    assert not (d / "output.log").exists() and not (d / "rank0.started").exists()
    assert "--lr=0.5" in rec["cmd"]
    listed = project.run_json("runs", "--json", timeout=60)
    assert [r["status"] for r in listed] == ["staged"]


def test_a_bad_selector_is_a_clean_error(project: Project) -> None:
    project.run("run", "hello", "--stage", "-y", timeout=60)
    for spec, needle in (("../x", "invalid run selector"), ("5", "no run at index 5"), ("zz", "no run matches")):
        assert_clean_error(project.run("runs", "info", spec, timeout=60), 2, needle)


# --- one run, read many ways -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def happy(module_project: Project) -> Iterator[tuple[Project, subprocess.CompletedProcess[str], dict[str, Any]]]:
    cp = module_project.run("run", "hello", "epochs=3", "--label", "first run", "-y")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    yield module_project, cp, module_project.only_record()


def test_run_exits_0_and_records_the_run(happy: Any) -> None:
    project, _, rec = happy
    d = project.runs_dir / rec["id"]
    assert rec["id"] == d.name
    assert rec["op"] == "hello"
    assert rec["opspec"] == "hello epochs=3"
    assert rec["flags"] == {"lr": 0.1, "epochs": 3, "opt": "sgd", "code": 0, "sleep": 0.0}
    assert rec["status"] == "completed" and rec["exit_code"] == 0 and rec["error"] is None
    assert rec["created"] <= rec["started"] <= rec["stopped"]
    assert Path(rec["cmd"][0]).name.startswith("python")
    assert rec["cmd"][1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
                              "hello.py", "--lr=0.1", "--epochs=3", "--opt=sgd", "--code=0", "--sleep=0.0"]
    assert rec["nproc_per_node"] == 1
    assert isinstance(rec["pid"], int) and isinstance(rec["pid_start"], int)
    assert rec["host"] == socket.gethostname()
    assert rec["label"] == "first run"
    assert rec["is_batch"] is False and rec["is_trial"] is False
    assert rec["parent"] is None and rec["trials"] == []
    assert rec["guildlite_version"] == guildlite.__version__
    # the staged source and guildlite's own files
    assert (d / "hello.py").exists()
    assert (d / ".guildlite" / "sourcecode.json").exists() and (d / ".guildlite" / "env.json").exists()
    assert (d / "rank0.started").read_text() == "1"  # the job ran in the run dir


def test_run_output_goes_to_console_and_output_log(happy: Any) -> None:
    project, cp, rec = happy
    log = (project.runs_dir / rec["id"] / "output.log").read_text()
    hello = f"hello rank=0 world=1 run={rec['id']} argv=--lr=0.1 --epochs=3 --opt=sgd --code=0 --sleep=0.0"
    assert hello in log and hello in cp.stdout
    assert "step: 3\nloss: 0.3333333333333333\n" in log
    assert TRACEBACK not in cp.stderr


def test_run_scalars_come_from_loss_lines(happy: Any) -> None:
    project, _, rec = happy
    rows = read_scalars(project.runs_dir / rec["id"])
    assert [(r["step"], r["key"]) for r in rows] == [(1, "loss"), (2, "loss"), (3, "loss")]
    assert [r["value"] for r in rows] == pytest.approx([1.0, 0.5, 1 / 3])


def test_runs_table(happy: Any) -> None:
    project, _, rec = happy
    cp = project.run("runs")
    assert cp.returncode == 0, cp.stderr
    header, row = cp.stdout.splitlines()
    assert header.split() == ["#", "id", "op", "started", "status", "batch", "label", "flags"]
    assert row.startswith(f"[1]  {rec['id']}  hello")
    assert "completed" in row and "first run" in row and "epochs=3" in row


def test_runs_json(happy: Any) -> None:
    project, _, rec = happy
    listed = project.run_json("runs", "--json")
    assert len(listed) == 1
    assert listed[0]["index"] == 1
    assert listed[0]["run_dir"] == str(project.runs_dir / rec["id"])
    assert {k: v for k, v in listed[0].items() if k not in ("index", "run_dir")} == rec


def test_runs_info(happy: Any) -> None:
    project, _, rec = happy
    info = project.run_json("runs", "info", "1", "--json")
    assert info["id"] == rec["id"] and info["status"] == "completed" and info["label"] == "first run"
    assert info == project.run_json("runs", "info", rec["id"][:-1], "--json")  # by id prefix
    text = project.run("runs", "info", "1")
    assert text.returncode == 0
    assert f"id: {rec['id']}" in text.stdout and "status: completed" in text.stdout
    assert "command: torchrun --standalone --nproc-per-node=1 hello.py --lr=0.1 --epochs=3" in text.stdout


def test_runs_with_a_selector_points_to_compare_and_info(happy: Any) -> None:
    project, _, _ = happy
    cp = project.run("runs", "1:3")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr
    assert "'1:3' is not a subcommand of runs (info, delete, restore, purge, export, import)" in cp.stderr
    assert "guildlite compare 1:3" in cp.stderr


# --- more torchrun jobs ----------------------------------------------------------------------------


def test_two_ranks(project: Project) -> None:
    cp = project.run("run", "hello", "--nproc-per-node", "2", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = project.only_record()
    d = project.runs_dir / rec["id"]
    assert rec["status"] == "completed" and rec["nproc_per_node"] == 2
    assert "--nproc-per-node=2" in rec["cmd"]
    assert (d / "rank0.started").read_text() == "2" and (d / "rank1.started").read_text() == "2"
    log = (d / "output.log").read_text()
    assert "[default0]:hello rank=0 world=2" in log and "[default1]:hello rank=1 world=2" in log
    assert "[default1]:loss: 99.0" in log
    rows = read_scalars(d)
    assert [(r["step"], r["key"], r["value"]) for r in rows] == [(1, "loss", 1.0), (2, "loss", 0.5)]


@pytest.fixture(scope="module")
def failed_torchrun(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.CompletedProcess[str], dict]]:
    base = tmp_path_factory.mktemp("failed")
    proj = Project(root=write_project(base / "project"), runs_dir=base / "runs")
    try:
        cp = proj.run("run", "hello", "code=3", "-y")
        yield cp, proj.only_record()
    finally:
        proj.cleanup()


def test_a_failing_script_is_an_error(failed_torchrun: Any) -> None:
    cp, rec = failed_torchrun
    assert rec["status"] == "error"
    assert cp.returncode != 0 and rec["exit_code"] != 0
    assert cp.returncode == rec["exit_code"]
    assert "the job exited with code" in rec["error"]["message"]
    assert f"guildlite: run {rec['id']} error: the job exited with code" in cp.stderr


def test_a_failing_script_exit_code_is_the_scripts_under_torchrun(failed_torchrun: Any) -> None:
    cp, rec = failed_torchrun
    assert (cp.returncode, rec["exit_code"]) == (3, 3)


def test_a_failing_script_exit_code_is_the_scripts_with_launcher_python(project: Project) -> None:
    cp = project.run("run", "quick", "code=3", "-y")
    rec = project.only_record()
    assert (cp.returncode, rec["status"], rec["exit_code"]) == (3, "error", 3)
    assert rec["error"]["message"] == "the job exited with code 3"


def _wait_ranks_running(project: Project, run_dir: Path, ranks: int, timeout: float = 90) -> None:
    wait_until(
        lambda: load_record(run_dir)["status"] == "running"
        and all((run_dir / f"rank{r}.started").exists() for r in range(ranks)),
        timeout=timeout, what=f"{ranks} rank(s) of {run_dir.name} running",
    )


def test_sigterm_terminates_the_run_and_its_ranks(project: Project) -> None:
    p = project.spawn("run", "hello2", "sleep=120", "-y")
    run_dir = wait_until(lambda: project.run_dirs()[0], timeout=60, what="the run dir")
    _wait_ranks_running(project, run_dir, 2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=90)
    assert p.returncode != 0
    assert "SIGTERM: stopping" in err and TRACEBACK not in err
    rec = load_record(run_dir)
    assert rec["status"] == "terminated" and rec["exit_code"] not in (None, 0)
    assert f"guildlite: run {rec['id']} terminated" in err
    wait_no_marker_procs(project.marker, timeout=30)


def test_kill_9_of_guildlite_is_not_reported_running_and_ranks_die(project: Project) -> None:
    p = project.spawn("run", "hello2", "sleep=120", "-y")
    run_dir = wait_until(lambda: project.run_dirs()[0], timeout=60, what="the run dir")
    _wait_ranks_running(project, run_dir, 2)
    p.kill()
    p.communicate(timeout=30)  # reaped: guildlite is gone
    assert load_record(run_dir)["status"] == "running"  # nobody recorded the end...
    listed = project.run_json("runs", "--json")
    assert [r["status"] for r in listed] == ["terminated"]  # ...but nobody is told it runs
    assert f"guildlite process {p.pid} ended" in listed[0]["error"]["message"]
    # torchrun got SIGTERM through its parent-death signal and took its ranks down
    wait_no_marker_procs(project.marker, timeout=45)


def test_concurrent_runs_into_one_runs_dir(project: Project) -> None:
    ps = [project.spawn("run", "quick", f"lr={lr}", "-y") for lr in (0.1, 0.2)]
    for p in ps:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    recs = project.records()
    assert len(recs) == 2 and len({r["id"] for r in recs}) == 2
    assert sorted(r["flags"]["lr"] for r in recs) == [0.1, 0.2]
    for r in recs:
        assert r["status"] == "completed"
        assert f"run={r['id']}" in (project.runs_dir / r["id"] / "output.log").read_text()


# --- batches ---------------------------------------------------------------------------------------


def test_batch_links_trials_both_ways(project: Project) -> None:
    cp = project.run("run", "quick", "lr=[0.1,0.01]", "-y")
    assert cp.returncode == 0, cp.stderr
    batch, trials = _batch_and_trials(project)
    assert batch["status"] == "completed" and batch["is_batch"] and not batch["is_trial"]
    assert batch["flags"]["lr"] == [0.1, 0.01] and batch["flags"]["epochs"] == 2  # the dimension, decoded
    assert batch["batch"]["trials"] == 2 and batch["batch"]["summary"] == {"completed": 2}
    assert batch["cmd"] == [] and batch["parent"] is None
    assert [t["flags"]["lr"] for t in trials] == [0.1, 0.01]
    for t in trials:
        assert t["parent"] == batch["id"] and t["is_trial"] and not t["is_batch"]
        assert t["status"] == "completed" and t["exit_code"] == 0
        assert f"--lr={t['flags']['lr']}" in t["cmd"]
        assert [r["key"] for r in read_scalars(project.runs_dir / t["id"])] == ["loss", "loss"]
    assert trials[0]["id"] < trials[1]["id"]  # ids sort in launch order
    assert "trial 1/2" in cp.stderr and "trial 2/2" in cp.stderr
    assert f"guildlite: batch {batch['id']} completed (2 completed)" in cp.stderr
    table = project.run("runs").stdout
    assert "quick (2 trials)" in table and table.count(f"↳ {batch['id'][-6:]}") == 2


def test_parallel_batch_runs_trials_at_once(project: Project) -> None:
    cp = project.run("run", "quick", "lr=[0.1,0.01]", "sleep=1", "--parallel", "2", "-y")
    assert cp.returncode == 0, cp.stderr
    batch, trials = _batch_and_trials(project)
    assert batch["status"] == "completed" and batch["batch"]["parallel"] == 2
    assert all(t["status"] == "completed" for t in trials)
    # both were started before either ended
    assert max(t["started"] for t in trials) < min(t["stopped"] for t in trials)
    # parallel trials do not echo their output to the console, only to their own log
    assert "hello rank=" not in cp.stdout
    for t in trials:
        assert f"run={t['id']}" in (project.runs_dir / t["id"] / "output.log").read_text()


def test_fail_on_trial_error_starts_no_new_trial(project: Project) -> None:
    cp = project.run("run", "quick", "code=[3,0]", "--fail-on-trial-error", "-y")
    assert cp.returncode != 0
    batch, (first, second) = _batch_and_trials(project)
    assert first["status"] == "error" and first["flags"]["code"] == 3
    assert second["status"] == "terminated" and second["started"] is None
    assert second["error"]["message"] == "not started: an earlier trial failed"
    assert not (project.runs_dir / second["id"] / "output.log").exists()
    assert batch["status"] == "error"


def test_without_fail_on_trial_error_every_trial_runs(project: Project) -> None:
    cp = project.run("run", "quick", "code=[3,0]", "-y")
    assert cp.returncode == 1
    batch, (first, second) = _batch_and_trials(project)
    assert (first["status"], second["status"]) == ("error", "completed")
    assert batch["status"] == "error" and batch["batch"]["summary"] == {"error": 1, "completed": 1}
    assert "1 of 2 trials did not complete" in batch["error"]["message"]


def test_sigterm_stops_a_parallel_batch(project: Project) -> None:
    p = project.spawn("run", "hello", "lr=[0.1,0.01,0.001]", "sleep=120", "--parallel", "2", "-y")

    def two_trials_running() -> list[Path] | None:
        batch = next((r for r in project.records() if r["is_batch"]), None)
        if batch is None:
            return None
        dirs = [project.runs_dir / t for t in batch["trials"][:2]]
        return dirs if len(batch["trials"]) == 3 and all(
            load_record(d)["status"] == "running" and (d / "rank0.started").exists() for d in dirs) else None

    wait_until(two_trials_running, timeout=120, what="two trials running")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=90)
    assert p.returncode != 0 and TRACEBACK not in err
    batch, trials = _batch_and_trials(project)
    assert batch["status"] == "terminated"
    assert [t["status"] for t in trials] == ["terminated"] * 3
    assert all(t["exit_code"] not in (None, 0) for t in trials[:2])  # the two that ran were stopped
    assert trials[2]["started"] is None and trials[2]["error"]["message"] == "stopped before it started"
    wait_no_marker_procs(project.marker, timeout=30)
    assert {r["status"] for r in project.run_json("runs", "--json")} == {"terminated"}


@pytest.mark.parametrize("given", [("--backend=",), ("--backend", "")])
def test_an_empty_backend_name_is_an_error_not_the_default(project: Project, given: tuple[str, ...]) -> None:
    """`--backend=` names no backend: exit 2 saying so, nothing staged (it ran on the default one)."""
    cp = project.run("run", "-y", *given, "quick")
    assert_clean_error(cp, 2, "no backend named ''")
    assert project.run_dirs() == []
