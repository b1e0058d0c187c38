"""The README's code blocks run as written, so they never rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block(after_heading: str, lang: str) -> str:
    section = README.split(after_heading, 1)[1]
    m = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert m, f"no {lang} block after {after_heading!r}"
    return m.group(1)


def _guildlite(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUILDLITE_RUNS_DIR": str(cwd / "runs")}
    return subprocess.run(
        [sys.executable, "-m", "guildlite", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def plugin_project(tmp_path: Path) -> Path:
    (tmp_path / "myplugins.py").write_text(_block("## Writing plugins", "python"))
    (tmp_path / "train.py").write_text("import sys\nprint('args', sys.argv[1:])\nprint('loss: 0.5')\n")
    (tmp_path / "guildfile.yml").write_text(
        "plugins:\n"
        "  - {class: myplugins:Timing, args: {verbose: true}, priority: 50}\n"
        "operations:\n"
        "  train:\n"
        "    main: train.py\n"
        "    launcher: python\n"
        "    flags:\n"
        "      batch-size: 64\n"
    )
    return tmp_path


def _last_run(project: Path) -> dict:
    runs = sorted((project / "runs").iterdir())
    return json.loads((runs[-1] / "run.json").read_text())


def test_plugin_example_records_timing(plugin_project: Path) -> None:
    p = _guildlite("run", "train", "-y", cwd=plugin_project)
    assert p.returncode == 0, p.stderr
    rec = _last_run(plugin_project)
    assert rec["status"] == "completed"
    assert rec["attrs"]["timing"]["seconds"] >= 0
    assert "completed in" in p.stdout
    hooks = [(t["plugin"], t["hook"], t["priority"]) for t in rec["plugins"] if t["plugin"] == "Timing"]
    assert hooks == [("Timing", "on_run_begin", 50), ("Timing", "on_run_end", 50)]


def test_plugin_example_vetoes(plugin_project: Path) -> None:
    p = _guildlite("run", "train", "batch-size=1024", "-y", cwd=plugin_project)
    assert p.returncode == 1
    rec = _last_run(plugin_project)
    assert rec["status"] == "error"
    assert rec["error"]["plugin"] == "Timing" and rec["error"]["veto"] is True
    assert "does not fit" in rec["error"]["message"]
    log = plugin_project / "runs" / rec["id"] / "output.log"
    assert not log.exists() or "args" not in log.read_text()  # the job never started


def test_guildfile_reference_loads(tmp_path: Path) -> None:
    """The reference guildfile is valid once its files exist."""
    text = _block("## guildfile.yml reference", "yaml")
    (tmp_path / "operations").mkdir()
    (tmp_path / "operations" / "train.py").write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--epochs', type=int, default=3)\n"
        "p.parse_args()\n"
    )
    (tmp_path / "myplugins.py").write_text(
        "from guildlite import Plugin\nclass Timing(Plugin):\n    def __init__(self, verbose=False):\n        pass\n"
    )
    (tmp_path / "guildfile.yml").write_text(text)
    p = _guildlite("ops", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    ops = json.loads(p.stdout)
    flags = ops["train"]["flags"]
    assert flags["lr"]["type"] == "float" and flags["optimizer"]["choices"] == ["sgd", "adam"]
    assert flags["compile"]["arg_switch"] is True and flags["learning-rate"]["arg_name"] == "--lr"
    assert flags["epochs"]["source"] == "script" and flags["epochs"]["default"] == 3


def test_merge_key_example_loads(tmp_path: Path) -> None:
    (tmp_path / "guildfile.yml").write_text(_block("**Sharing settings.**", "yaml"))
    (tmp_path / "train.py").write_text("print('hi')\n")
    p = _guildlite("ops", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    ops = json.loads(p.stdout)
    assert {k: v["default"] for k, v in ops["train"]["flags"].items()} == {"epochs": 5, "batch-size": 32}
    assert {k: v["default"] for k, v in ops["finetune"]["flags"].items()} == {"epochs": 5, "batch-size": 32,
                                                                              "lr": 0.001}
    assert ops["finetune"]["main"] == "train.py --finetune"


# --- every README plugin example, on a single run and on a batch ------------------------------------

PLUGIN_BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if re.search(r"class \w+\(Plugin\)", b)]


def _example_project(tmp_path: Path, block: str) -> Path:
    classes = re.findall(r"class (\w+)\(Plugin\)", block)
    (tmp_path / "readme_plugins.py").write_text(block)
    (tmp_path / "train.py").write_text("import sys\nprint('args', sys.argv[1:])\nprint('loss: 0.5')\n")
    (tmp_path / "guildfile.yml").write_text(
        "plugins:\n" + "".join(f"  - class: readme_plugins:{c}\n" for c in classes)
        + "operations:\n  train:\n    main: train.py\n    launcher: python\n    flags:\n      batch-size: 64\n"
    )
    return tmp_path


@pytest.mark.parametrize("block", PLUGIN_BLOCKS, ids=[f"block{i}" for i in range(len(PLUGIN_BLOCKS))])
@pytest.mark.parametrize("args", [[], ["batch-size=[64,128]"], ["batch-size=range[100:300:100]"],
                                  ["batch-size=randint[1:512]", "--max-trials", "2"]])
def test_readme_plugin_examples_work_on_a_run_and_a_batch(tmp_path: Path, block: str, args: list[str]) -> None:
    assert PLUGIN_BLOCKS, "the README shows no plugin"
    proj = _example_project(tmp_path, block)
    p = _guildlite("run", "train", *args, "-y", cwd=proj)
    assert p.returncode == 0, p.stdout + p.stderr
    recs = [json.loads((d / "run.json").read_text()) for d in sorted((proj / "runs").iterdir())]
    assert recs and all(r["status"] == "completed" and not r.get("error") for r in recs)
    assert all(t["error"] is None for r in recs for t in r["plugins"])


def test_the_veto_example_refuses_exactly_the_trials_it_would_refuse_alone(plugin_project: Path) -> None:
    # A batch's flags are its dimensions (a list here); `> 512` holds for the batch only when it holds
    # for every trial, so the batch goes on and each trial is checked on its own value.
    p = _guildlite("run", "train", "batch-size=[64,1024]", "-y", cwd=plugin_project)
    assert p.returncode == 1
    recs = {r["id"]: r for r in (json.loads((d / "run.json").read_text())
                                 for d in (plugin_project / "runs").iterdir())}
    batch = next(r for r in recs.values() if r["is_batch"])
    assert batch["flags"]["batch-size"] == [64, 1024] and batch["batch"]["dims"] == ["batch-size"]
    trials = {recs[t]["flags"]["batch-size"]: recs[t] for t in batch["trials"]}
    assert trials[64]["status"] == "completed"
    assert trials[1024]["status"] == "error" and "does not fit" in trials[1024]["error"]["message"]
    assert batch["status"] == "error" and "1 of 2" in batch["error"]["message"]


@pytest.mark.parametrize("value", ["[1024,2048]", "randint[600:900]", "choice[600,700]"])
def test_the_veto_example_refuses_a_batch_every_trial_of_which_it_would_refuse(
    plugin_project: Path, value: str
) -> None:
    p = _guildlite("run", "train", f"batch-size={value}", "--max-trials", "2", "-y", cwd=plugin_project)
    assert p.returncode == 1
    (rec,) = [json.loads((d / "run.json").read_text()) for d in (plugin_project / "runs").iterdir()]
    assert rec["is_batch"] and rec["status"] == "error" and rec["error"]["plugin"] == "Timing"
    assert rec["trials"] == []  # refused before any trial was staged


def test_batch_flags_read_back_as_the_same_objects(tmp_path: Path) -> None:
    from guildlite._batchspec import BatchDistribution, BatchValues
    from guildlite._run import load_run

    d = tmp_path / "20260101T000000-000000"
    d.mkdir()
    rec = {"id": d.name, "op": "train", "is_batch": True, "batch": {"dims": ["a", "b", "c"]},
           "flags": {"a": [1, 2], "b": "loguniform[0.001:0.1]", "c": "choice[x,y]", "d": [5, 6], "e": "sgd"}}
    (d / "run.json").write_text(json.dumps(rec))
    flags = load_run(d).flags
    assert isinstance(flags["a"], BatchValues) and flags["a"] == [1, 2] and flags["a"] > 0 and not flags["a"] > 1
    assert flags["b"] == BatchDistribution("loguniform", (0.001, 0.1)) and flags["b"] < 1 and not flags["b"] < 0.01
    assert str(flags["b"]) == "loguniform[0.001:0.1]" and flags["c"] == BatchDistribution("choice", ("x", "y"))
    assert type(flags["d"]) is list and flags["e"] == "sgd"  # not dimensions: as stored


@pytest.mark.parametrize("batch", [None, [1], "x", {"dims": "lr"}, {"dims": [1, None, "lr"]}, {"dims": None}])
def test_odd_batch_records_read_without_error_or_expansion(tmp_path: Path, batch: object) -> None:
    from guildlite._errors import BadRecordError
    from guildlite._run import load_run

    d = tmp_path / "20260101T000000-000000"
    d.mkdir()
    flags = {"lr": "[0.1,0.01]", "big": "range[0:999999]", "x": "uniform[0:1", "n": 3}
    (d / "run.json").write_text(json.dumps({"id": d.name, "op": "t", "is_batch": True, "batch": batch,
                                            "flags": flags}))
    try:
        got = load_run(d).flags
    except BadRecordError as e:  # the record schema refuses a batch field of the wrong shape, cleanly
        assert "'batch'" in str(e)
        return
    assert got["big"] == "range[0:999999]" and got["x"] == "uniform[0:1" and got["n"] == 3  # left as stored
    assert got["lr"] in ([0.1, 0.01], "[0.1,0.01]")
