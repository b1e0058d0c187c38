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
