"""``examples/mlflow-bridge``: guildlite runs mirrored into MLflow's own local file store by the
example plugin, through the real CLI, and read back with MLflow's client (``mlflow-skinny``, in the
test extra): params, metrics (while the job runs, and all of them by its end), status, artifacts,
a batch as a parent run with nested trials, a failing job, and an MLflow that is not there."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _plugin_helpers import EXAMPLES, run_example
from conftest import Project, read_scalars, wait_until, write_project

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses a plain directory store without it
from mlflow.tracking import MlflowClient  # noqa: E402

EXPERIMENT = "mlflow-bridge"


def mlflow_env(store: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}


def runs_by_guildlite_id(store: Path, wait: bool = False) -> dict[str, Any]:
    c = MlflowClient(tracking_uri=store.as_uri())
    exp = c.get_experiment_by_name(EXPERIMENT)
    if exp is None and wait:  # not made yet
        return {}
    assert exp is not None
    return {r.data.tags["guildlite.run_id"]: r for r in c.search_runs([exp.experiment_id])}


def history(store: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    c = MlflowClient(tracking_uri=store.as_uri())
    return sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))


def artifacts(store: Path, run_id: str, path: str | None = None) -> list[str]:
    return sorted(a.path for a in MlflowClient(tracking_uri=store.as_uri()).list_artifacts(run_id, path))


def guildlite_records(runs: Path) -> dict[str, dict[str, Any]]:
    return {d.name: json.loads((d / "run.json").read_text()) for d in sorted(runs.iterdir())
            if d.is_dir() and not d.name.startswith(".")}


def test_a_run_mirrored_params_metrics_status_artifacts(tmp_path: Path) -> None:
    store, runs = tmp_path / "mlruns", tmp_path / "runs"
    cp = run_example("mlflow-bridge", "train", "epochs=4", "lr=0.2", runs_dir=runs, extra_env=mlflow_env(store))
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    ((gid, rec),) = guildlite_records(runs).items()
    ((mid, ml),) = runs_by_guildlite_id(store).items()
    assert mid == gid and rec["attrs"]["mlflow"]["run_id"] == ml.info.run_id and "error" not in rec["attrs"]["mlflow"]
    assert ml.data.params == {"lr": "0.2", "epochs": "4", "sleep": "0.0"}
    assert ml.data.tags["guildlite.op"] == "train" and ml.data.tags["guildlite.status"] == "completed"
    assert ml.info.status == "FINISHED" and ml.data.tags["guildlite.exit_code"] == "0"
    loss = [(r["step"], r["value"]) for r in read_scalars(runs / gid) if r["key"] == "loss"]
    assert len(loss) == 4 and history(store, ml.info.run_id, "loss") == [(s, pytest.approx(v)) for s, v in loss]
    assert artifacts(store, ml.info.run_id) == ["model.json", "output.log"]


def test_a_batch_is_a_parent_run_with_nested_trials(tmp_path: Path) -> None:
    store, runs = tmp_path / "mlruns", tmp_path / "runs"
    cp = run_example("mlflow-bridge", "train", "lr=[0.05,0.5]", "epochs=2", runs_dir=runs, extra_env=mlflow_env(store))
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    recs = guildlite_records(runs)
    (batch_id,) = [k for k, r in recs.items() if r["is_batch"]]
    ml = runs_by_guildlite_id(store)
    assert set(ml) == set(recs)
    parent = ml[batch_id]
    assert parent.info.status == "FINISHED" and parent.data.tags["guildlite.kind"] == "batch"
    assert json.loads(parent.data.params["lr"]) == [0.05, 0.5]
    trials = [ml[t] for t in recs[batch_id]["trials"]]
    assert [t.data.tags["mlflow.parentRunId"] for t in trials] == [parent.info.run_id] * 2
    assert [t.data.params["lr"] for t in trials] == ["0.05", "0.5"]
    assert all(t.info.status == "FINISHED" and len(history(store, t.info.run_id, "loss")) == 2 for t in trials)


# A job that logs, waits for the test's `go` file, then fails (after planting a symlink to a file
# outside its run dir where the bridge looks for artifacts).
WAITING_SCRIPT = textwrap.dedent(
    """\
    import os, sys, time
    print("step: 1")
    print("loss: 0.5", flush=True)
    deadline = time.time() + 120
    while not os.path.exists("go") and time.time() < deadline:
        time.sleep(0.05)
    print("step: 2")
    print("loss: 0.25", flush=True)
    os.symlink(sys.argv[-1].split("=", 1)[1], "model.json")
    sys.exit(3)
    """
)


def _project(tmp_path: Path, plugin_args: str) -> Project:
    root = write_project(tmp_path / "project", textwrap.dedent(f"""\
        plugins:
          - class: mlflow_bridge:MLflowBridge
            args: {{experiment: {EXPERIMENT}, artifacts: [model.json], {plugin_args}}}
        operations:
          wait:
            main: wait.py
            launcher: python
            flags: {{secret: ''}}
        """), {"wait.py": WAITING_SCRIPT})
    shutil.copy(EXAMPLES / "mlflow-bridge" / "mlflow_bridge.py", root)
    return Project(root=root, runs_dir=tmp_path / "runs")


def test_metrics_arrive_while_the_job_runs_and_a_failure_is_failed(tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    secret = tmp_path / "secret.txt"
    secret.write_text("not for MLflow")
    proj = _project(tmp_path, "required: true")
    try:
        p = proj.spawn("run", "-y", "wait", f"secret={secret}", env=mlflow_env(store))

        def loss_in_mlflow() -> list[tuple[int, float]] | None:
            ml = runs_by_guildlite_id(store, wait=True) if store.exists() else {}
            return next((history(store, r.info.run_id, "loss") or None for r in ml.values()), None)

        assert wait_until(loss_in_mlflow, timeout=90, what="loss in MLflow while the job runs") == [(1, 0.5)]
        (run,) = proj.run_dirs()
        assert p.poll() is None and ((ml := runs_by_guildlite_id(store)[run.name]).info.status == "RUNNING")
        (run / "go").write_text("")
        out, err = p.communicate(timeout=120)
        assert p.returncode == 3, (out, err)
    finally:
        proj.cleanup()
    ml = runs_by_guildlite_id(store)[run.name]
    assert ml.info.status == "FAILED" and ml.data.tags["guildlite.status"] == "error"
    assert ml.data.tags["guildlite.exit_code"] == "3"
    assert history(store, ml.info.run_id, "loss") == [(1, 0.5), (2, 0.25)]
    assert artifacts(store, ml.info.run_id) == ["output.log"]  # the symlink leads out: not sent


def test_an_unreachable_mlflow_never_costs_the_run(tmp_path: Path) -> None:
    proj = _project(tmp_path, "tracking_uri: 'nosuchscheme://nowhere'")
    try:
        (proj.root / "wait.py").write_text("import sys\nprint('loss: 1.0', sys.argv[1:])\n")
        cp = proj.run("run", "-y", "wait", env=mlflow_env(tmp_path / "mlruns"))
    finally:
        proj.cleanup()
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    (rec,) = proj.records()
    assert rec["status"] == "completed" and "nosuchscheme" in rec["attrs"]["mlflow"]["error"]
    assert "mlflow-bridge: run" in cp.stderr
