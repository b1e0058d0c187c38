"""The plugin examples under examples/ run as their READMEs say, through the real CLI.

Each test runs ``guildlite run -f examples/<name>/guildfile.yml ... -y`` with the runs in the
test's tmp dir (``GUILDLITE_RUNS_DIR``), real torchrun jobs, and asserts on what the run left:
run.json, output.log, the staged files, the plugin's own outputs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _plugin_helpers import EXAMPLES, hook_sequence, run_example
from conftest import GUILDLITE, TRACEBACK, clean_env

PLUGIN_EXAMPLES = {
    "timing-plugin": "timing.py",
    "validate-flags": "validate.py",
    "rewrite-source": "setconst.py",
    "aggregate-batch": "summarize.py",
    "mlflow-bridge": "mlflow_bridge.py",
}


def records(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run.json under ``runs_dir``, oldest first."""
    if not runs_dir.is_dir():
        return []
    dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [json.loads((d / "run.json").read_text()) for d in dirs]


def batch_and_trials(runs_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    recs = {r["id"]: r for r in records(runs_dir)}
    (batch,) = [r for r in recs.values() if r["is_batch"]]
    trials = [recs[t] for t in batch["trials"]]
    assert len(recs) == 1 + len(trials)
    return batch, trials


def final_scalars(run_dir: Path) -> dict[str, float]:
    """Each scalar's value at its highest step, computed here independently of the plugin."""
    rows = [json.loads(line) for line in (run_dir / "scalars.jsonl").read_text().splitlines() if line.strip()]
    out: dict[str, tuple[int, float]] = {}
    for r in rows:
        if r["key"] not in out or r["step"] >= out[r["key"]][0]:
            out[r["key"]] = (r["step"], r["value"])
    return {k: v for k, (_, v) in out.items()}


def never_launched(runs_dir: Path, rec: dict[str, Any], first_line: str) -> None:
    """The run's job never started: no start time, no job pid, nothing of the script's output."""
    assert rec["started"] is None and rec["job_pid"] is None, rec
    log = runs_dir / rec["id"] / "output.log"
    assert not log.exists() or first_line not in log.read_text()


def copy_example(name: str, dest: Path) -> Path:
    """A copy of an example (to try a modified guildfile); returns its guildfile."""
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return dest / "guildfile.yml"


def guildlite(*args: str, runs_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUILDLITE, *args], cwd=cwd, env=clean_env(GUILDLITE_RUNS_DIR=str(runs_dir)),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, check=False)


# --- every example is complete and its README matches its guildfile ------------------------------


@pytest.mark.parametrize("name", list(PLUGIN_EXAMPLES))
def test_example_is_complete_and_its_readme_commands_name_real_ops(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = EXAMPLES / name
    for f in ("guildfile.yml", "README.md", "train.py", PLUGIN_EXAMPLES[name]):
        assert (d / f).is_file(), f
    cp = guildlite("ops", "--json", "-f", str(d / "guildfile.yml"), runs_dir=tmp_path / "runs", cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    ops = json.loads(cp.stdout)
    names = {o["name"] for o in ops} if isinstance(ops, list) else set(ops)
    readme = (d / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert blocks, "the README shows the commands to try"
    run_ops = re.findall(r"guildlite run ([\w-]+)", "\n".join(blocks))
    assert run_ops and set(run_ops) <= names, (run_ops, names)
    # Every plugin the guildfile declares loads with its args (`ops` loads none: check here).
    from guildlite import Plugin
    from guildlite._guildfile import load
    from guildlite._plugin_loader import load_plugins

    module = PLUGIN_EXAMPLES[name].removesuffix(".py")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    gf = load(d / "guildfile.yml")
    specs = [*gf.plugins, *(s for op in gf.operations.values() for s in op.plugins)]
    assert specs and all(s.cls and s.cls.startswith(f"{module}:") for s in specs)
    plugins = load_plugins(specs, gf.dir)
    assert all(isinstance(p, Plugin) for p in plugins)
    sys.modules.pop(module, None)


# --- timing-plugin -------------------------------------------------------------------------------


def test_timing_plugin_times_a_batch_and_its_trials(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cp = run_example("timing-plugin", "train", "lr=[0.01,0.05]", "epochs=2", runs_dir=runs)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    batch, trials = batch_and_trials(runs)
    assert batch["status"] == "completed" and [t["status"] for t in trials] == ["completed", "completed"]
    for t in trials:
        seconds = t["attrs"]["timing"]["seconds"]
        assert set(seconds) == {"setup", "queued", "job", "total"}
        assert all(isinstance(v, float) and v >= 0 for v in seconds.values())
        # Per-method priorities: first in staged/begin, last in end (after the built-ins).
        timing = {(x["hook"], x["priority"]) for x in t["plugins"] if x["plugin"] == "Timing"}
        assert timing == {("on_run_staged", 0), ("on_run_begin", 0), ("on_run_end", 1000)}
        assert hook_sequence(t["plugins"], "on_run_staged")[0] == "Timing"
        assert hook_sequence(t["plugins"], "on_run_end")[-1] == "Timing"
    # A batch gets begin/end only: its phases are job and total.
    assert set(batch["attrs"]["timing"]["seconds"]) == {"job", "total"}
    lines = [line for line in cp.stdout.splitlines() if line.startswith("[timing]")]
    assert [line.split()[1:4] for line in lines] == [
        ["trial", trials[0]["id"], "completed:"], ["trial", trials[1]["id"], "completed:"],
        ["batch", batch["id"], "completed:"],
    ]


def test_timing_plugin_rejects_bad_args_before_staging(tmp_path: Path) -> None:
    gf = copy_example("timing-plugin", tmp_path / "proj")
    gf.write_text(gf.read_text().replace("{precision: 2}", "{precision: 9}"))
    cp = guildlite("run", "-f", str(gf), "train", "-y", runs_dir=tmp_path / "runs", cwd=tmp_path)
    assert cp.returncode == 2, cp.stderr
    assert "plugins[0]" in cp.stderr and "precision must be an integer from 0 to 6" in cp.stderr
    assert records(tmp_path / "runs") == []


# --- validate-flags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,reason",
    [
        (["batch-size=512"], "batch-size (512) must not be larger than dataset-size (256)"),
        (["batch-size=30", "--nproc-per-node", "4"], "batch-size (30) must split evenly across 4 processes"),
        (["warmup-epochs=5", "lr=-1"], "lr must be > 0 (got -1.0); warmup-epochs (5) must not be larger than epochs (3)"),
    ],
    ids=["larger-than-dataset", "uneven-split", "two-problems"],
)
def test_validate_flags_vetoes_a_bad_combination(tmp_path: Path, args: list[str], reason: str) -> None:
    runs = tmp_path / "runs"
    cp = run_example("validate-flags", "train", *args, runs_dir=runs)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    (rec,) = records(runs)
    assert rec["status"] == "error"
    assert rec["error"] == {"plugin": "ValidateFlags", "hook": "on_run_staged", "message": reason, "veto": True}
    never_launched(runs, rec, "training:")
    # Priority 1: the veto came before the built-in source snapshot, which never ran.
    assert hook_sequence(rec["plugins"], "on_run_staged") == ["ValidateFlags"]
    # Staging lists the copied files; only the snapshot adds their hashes.
    manifest = json.loads((runs / rec["id"] / ".guildlite" / "sourcecode.json").read_text())
    assert manifest["files"] and not any("sha256" in f for f in manifest["files"])
    assert rec["attrs"]["validate"]["ok"] is False
    assert "ValidateFlags.on_run_staged" in cp.stderr and reason in cp.stderr and TRACEBACK not in cp.stderr


def test_validate_flags_refuses_only_the_bad_trials_of_a_batch(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cp = run_example("validate-flags", "train", "batch-size=[64,512]", runs_dir=runs)
    assert cp.returncode != 0, (cp.stdout, cp.stderr)
    batch, (good, bad) = batch_and_trials(runs)
    assert (good["status"], bad["status"], batch["status"]) == ("completed", "error", "error")
    assert good["attrs"]["validate"] == {"ok": True, "problems": []}
    assert "training: batch-size 64, dataset-size 256" in (runs / good["id"] / "output.log").read_text()
    assert bad["error"]["plugin"] == "ValidateFlags" and "batch-size (512)" in bad["error"]["message"]
    never_launched(runs, bad, "training:")


def test_validate_flags_rejects_a_malformed_rule(tmp_path: Path) -> None:
    gf = copy_example("validate-flags", tmp_path / "proj")
    gf.write_text(gf.read_text().replace("- [batch-size, dataset-size]", "- [batch-size]"))
    cp = guildlite("run", "-f", str(gf), "train", "-y", runs_dir=tmp_path / "runs", cwd=tmp_path)
    assert cp.returncode == 2, cp.stderr
    assert "operation 'train' plugins[0]" in cp.stderr and "each rule is a pair of flag names" in cp.stderr
    assert records(tmp_path / "runs") == []


# --- rewrite-source ------------------------------------------------------------------------------


def test_rewrite_source_edits_the_staged_copy_only(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    project_file = EXAMPLES / "rewrite-source" / "train.py"
    before = project_file.read_bytes()
    assert b"\nHIDDEN = 32\n" in before
    cp = run_example("rewrite-source", "train-wide", "epochs=2", runs_dir=runs)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    (rec,) = records(runs)
    run_dir = runs / rec["id"]
    log = (run_dir / "output.log").read_text()
    assert "hidden: 128" in log and "hidden: 32" not in log
    assert "\nHIDDEN = 128\n" in (run_dir / "train.py").read_text()
    assert project_file.read_bytes() == before  # the project file is unchanged
    assert rec["attrs"]["set_constant"] == [{"file": "train.py", "name": "HIDDEN", "old": "32", "new": "128"}]
    assert [r["step"] for r in map(json.loads, (run_dir / "scalars.jsonl").read_text().splitlines())
            if r["key"] == "loss"] == [1, 2]
    # The snapshot recorded the file as copied (before the edit), so diff shows the change.
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    (entry,) = [f for f in manifest["files"] if f["path"] == "train.py"]
    assert entry["sha256"] == hashlib.sha256(before).hexdigest()
    diff = guildlite("diff", rec["id"], "--source-only", "-f", str(EXAMPLES / "rewrite-source" / "guildfile.yml"),
                     runs_dir=runs, cwd=tmp_path)
    assert diff.returncode == 0, diff.stderr
    changed = [line for line in diff.stdout.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-HIDDEN = 32", "+HIDDEN = 128"]


def test_rewrite_source_stops_the_run_when_the_constant_is_missing(tmp_path: Path) -> None:
    gf = copy_example("rewrite-source", tmp_path / "proj")
    gf.write_text(gf.read_text().replace("name: HIDDEN", "name: WIDTH"))
    runs = tmp_path / "runs"
    cp = guildlite("run", "-f", str(gf), "train-wide", "-y", runs_dir=runs, cwd=tmp_path)
    assert cp.returncode == 1, cp.stderr
    (rec,) = records(runs)
    assert rec["status"] == "error"
    assert rec["error"]["plugin"] == "SetConstant" and rec["error"]["hook"] == "on_run_staged"
    assert rec["error"]["message"] == "LookupError: no line 'WIDTH = ...' in train.py"
    never_launched(runs, rec, "hidden:")
    assert TRACEBACK in (runs / rec["id"] / "output.log").read_text()


# --- aggregate-batch -----------------------------------------------------------------------------


def test_aggregate_batch_summarises_every_trial(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cp = run_example("aggregate-batch", "train", "lr=[0.01,1.0]", "epochs=3", runs_dir=runs)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    batch, trials = batch_and_trials(runs)
    bdir = runs / batch["id"]
    summary = json.loads((bdir / "summary.json").read_text())
    assert (summary["metric"], summary["mode"]) == ("loss", "min")
    assert [r["run"] for r in summary["rows"]] == [t["id"] for t in trials]
    expected = {t["id"]: final_scalars(runs / t["id"]) for t in trials}
    for row, t in zip(summary["rows"], trials):
        assert row["status"] == "completed"
        assert row["flags"] == t["flags"] and row["flags"]["epochs"] == 3
        assert row["scalars"] == expected[t["id"]] and set(row["scalars"]) == {"loss", "accuracy"}
    assert [r["flags"]["lr"] for r in summary["rows"]] == [0.01, 1.0]
    best_id = min(expected, key=lambda i: expected[i]["loss"])
    assert summary["best"]["run"] == best_id and summary["best"]["value"] == expected[best_id]["loss"]
    with open(bdir / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == [t["id"] for t in trials]
    for r, t in zip(table, trials):
        assert float(r["lr"]) == t["flags"]["lr"] and r["status"] == "completed"
        assert float(r["loss"]) == expected[t["id"]]["loss"]
        assert float(r["accuracy"]) == expected[t["id"]]["accuracy"]
    assert batch["attrs"]["summary"]["rows"] == 2
    for t in trials:  # trials leave the summary to their batch
        assert not (runs / t["id"] / "summary.json").exists()
    assert f"[summary] batch {batch['id']}: 2 trials" in cp.stdout


def test_aggregate_batch_summarises_a_single_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cp = run_example("aggregate-batch", "train", "epochs=2", runs_dir=runs)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    (rec,) = records(runs)
    summary = json.loads((runs / rec["id"] / "summary.json").read_text())
    (row,) = summary["rows"]
    assert row["run"] == rec["id"] and row["status"] == "completed" and row["flags"] == rec["flags"]
    assert row["scalars"] == final_scalars(runs / rec["id"])
    assert summary["best"]["run"] == rec["id"]
    assert (runs / rec["id"] / "summary.csv").read_text().splitlines()[0] == "run,status,lr,epochs,seed,accuracy,loss"
