"""The Python API: ``guildlite.runs()`` and ``guildlite.runs_frame()`` over runs made by real
``guildlite run`` (a batch of three and a single run), the README's notebook example executed as
written, read-only snapshots, filters, selectors, and ``import guildlite`` staying cheap.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, Project, clean_env, write_project

import guildlite

TRAIN = textwrap.dedent(
    """\
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    for step in range(1, args.epochs + 1):
        print(f"step: {step}")
        print(f"loss: {args.lr * 4 / step}")
    print("done training")
    """
)
GUILDFILE = textwrap.dedent(
    """\
    operations:
      train:
        main: train.py
        launcher: python
        flags:
          lr: 0.1
          epochs: 3
      other:
        main: train.py
        launcher: python
        flags:
          lr: 0.1
    """
)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Project:
    base = tmp_path_factory.mktemp("api")
    p = Project(root=write_project(base / "project", GUILDFILE, {"train.py": TRAIN}), runs_dir=base / "runs")
    for args in (["train", "lr=[0.1,0.3,1.0]"], ["train", "lr=3", "--label", "big"], ["other", "lr=0.01"]):
        cp = p.run("run", *args, "-y")
        assert cp.returncode == 0, cp.stderr
    return p


def _readme_block(heading: str) -> str:
    section = (ROOT / "README.md").read_text().split(heading, 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, f"no python block after {heading!r}"
    return m.group(1)


def _python(code: str, p: Project, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=p.root, env={**clean_env(p.runs_dir), **env},
                          capture_output=True, text=True, timeout=120)


def test_the_readme_notebook_example_runs(made: Project) -> None:
    cp = _python(_readme_block("### From Python: `guildlite.runs()`"), made)
    assert cp.returncode == 0, cp.stderr
    out = cp.stdout
    lines = out.splitlines()
    listed = [line for line in lines if line.startswith("2") and " completed " in line]
    assert [float(line.split()[2]) for line in listed] == [1.0, 0.3, 0.1]  # newest first; lr=3 (loss 4) is out
    assert "best:" in out and out.split("best:")[1].split()[1] == "0.1"
    assert "done training" in lines  # the best run's output, last line
    batch = next(r for r in made.records() if r.get("is_batch"))
    assert f"batch {batch['id']} [0.1, 0.3, 1.0]" in out
    assert re.search(r"flag\.lr\s+scalar\.loss\s+scalar\.loss\.min", out)
    assert len([line for line in lines if re.match(r"\d{8}T\d{6}-\w{6}\s+[\d.]+\s+[\d.]+\s+[\d.]+$", line)]) == 4


def test_runs_are_typed_read_only_snapshots(made: Project) -> None:
    runs = guildlite.runs(runs_dir=made.runs_dir)
    assert [r.op for r in runs] == ["other", "train", "train", "train", "train", "train"]
    big = next(r for r in runs if r.label == "big")
    assert isinstance(big, guildlite.RunInfo)
    assert big.flags == {"lr": 3.0, "epochs": 3} and big.status == "completed" and big.exit_code == 0
    loss = big.scalars["loss"]
    assert (loss.last, loss.min, loss.max, loss.step, loss.count, float(loss)) == (4.0, 4.0, 12.0, 3, 3, 4.0)
    assert big.started is not None and big.stopped is not None and big.started.tzinfo is not None
    assert big.time == pytest.approx((big.stopped - big.started).total_seconds(), abs=0.002)
    assert big.paths.output_log.read_text().rstrip().endswith("done training")
    assert big.run_dir == made.runs_dir / big.id and big.parent is None and big.trials == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        big.label = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        big.flags["lr"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        big.attrs["sourcecode"]["files"] = 0  # type: ignore[index]
    assert isinstance(big.tags, tuple) and hash(big) == hash(guildlite.runs(runs_dir=made.runs_dir, select=big.id)[0])
    assert json.loads(big.paths.run_json.read_text())["label"] == "big"  # nothing written
    for twin in (pickle.loads(pickle.dumps(big)), copy.deepcopy(big)):  # for multiprocessing, say
        assert twin == big and twin.attrs == big.attrs and isinstance(twin.tags, tuple)
        with pytest.raises(TypeError):
            twin.flags["lr"] = 1  # type: ignore[index]


def test_batches_trials_and_parents(made: Project) -> None:
    runs = guildlite.runs(runs_dir=made.runs_dir)
    batch = next(r for r in runs if r.is_batch)
    assert batch.flags["lr"] == (0.1, 0.3, 1.0) and batch.scalars == {}
    trials = batch.trials
    assert [t.flags["lr"] for t in trials] == [0.1, 0.3, 1.0] and [t.id for t in trials] == list(batch.trial_ids)
    assert all(t.is_trial and t.parent_id == batch.id and t.parent == batch for t in trials)


def test_filters_and_selectors(made: Project) -> None:
    rd = made.runs_dir
    assert [r.flags["lr"] for r in guildlite.runs("op = train and loss < 1", runs_dir=rd)] == [0.3, 0.1]
    assert [r.flags["lr"] for r in guildlite.runs("min(loss) < 2", runs_dir=rd)] == [0.01, 1.0, 0.3, 0.1]
    assert [r.label for r in guildlite.runs('label ~ "^bi"', runs_dir=rd)] == ["big"]
    assert [r.op for r in guildlite.runs(runs_dir=rd, select="1")] == ["other"]
    assert len(guildlite.runs(runs_dir=str(rd), select=["2:3", "1"])) == 3
    with pytest.raises(guildlite.GuildliteError) as e:
        guildlite.runs("loss <", runs_dir=rd)
    assert e.value.exit_code == 2 and "^" in str(e.value)
    with pytest.raises(guildlite.RunNotFoundError):
        guildlite.runs(runs_dir=rd, select="99")


def test_notes_are_read_and_filtered(made: Project) -> None:
    big = next(r for r in guildlite.runs(runs_dir=made.runs_dir) if r.label == "big")
    cp = made.run("note", big.id, "lr too high")
    assert cp.returncode == 0, cp.stderr
    again = guildlite.runs("note ~ 'too high'", runs_dir=made.runs_dir)
    assert [r.id for r in again] == [big.id]
    assert [n.text for n in again[0].notes] == ["lr too high"] and again[0].notes[0].time is not None
    assert big.notes == ()  # a snapshot: the one read before the note is as it was


def test_a_bad_record_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "runs" / "20261130T101010-0a0b0c"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text('{"op": "x", "status": "exploded"}')
    assert guildlite.runs(runs_dir=tmp_path / "runs") == []
    assert "exploded" in caplog.text


def test_runs_frame(made: Project) -> None:
    pd = pytest.importorskip("pandas")
    frame = guildlite.runs_frame(filter="op = train", runs_dir=made.runs_dir, scalars=("last", "max", "count"))
    assert frame.index.name == "id" and len(frame) == 5
    assert list(frame.columns[:8]) == ["op", "status", "label", "tags", "started", "stopped", "time", "batch"]
    trials = frame[frame["batch"].notna()].sort_values("flag.lr")
    assert trials["flag.lr"].tolist() == [0.1, 0.3, 1.0]
    assert trials["scalar.loss"].tolist() == pytest.approx([0.4 / 3, 1.2 / 3, 4 / 3])
    assert trials["scalar.loss.max"].tolist() == pytest.approx([0.4, 1.2, 4.0])
    assert trials["scalar.loss.count"].tolist() == [3, 3, 3]
    assert str(frame["started"].dtype).startswith("datetime64") and pd.isna(frame.loc[frame["flag.lr"].map(
        lambda v: isinstance(v, list)), "scalar.loss"]).all()  # the batch: its dimension a list, no scalars
    empty = guildlite.runs_frame(filter="lr > 99", runs_dir=made.runs_dir)
    assert empty.empty and list(empty.columns[:3]) == ["op", "status", "label"]
    with pytest.raises(guildlite.GuildliteError, match="statistic"):
        guildlite.runs_frame(runs_dir=made.runs_dir, scalars=("median",))


def test_runs_frame_without_pandas_says_so(made: Project) -> None:
    code = ("import sys; sys.modules['pandas'] = None\nimport guildlite\n"
            "try:\n    guildlite.runs_frame()\nexcept guildlite.GuildliteError as e:\n"
            "    print('ERR', isinstance(e, ImportError), e)\n"
            "print(len(guildlite.runs()))")
    cp = _python(code, made)
    assert cp.returncode == 0, cp.stderr
    assert "ERR True guildlite.runs_frame needs pandas" in cp.stdout and "guildlite[frame]" in cp.stdout
    assert cp.stdout.splitlines()[-1] == "6"  # runs() never needs it


def test_import_guildlite_stays_cheap(made: Project) -> None:
    code = ("import sys, guildlite\nbefore = sorted(m for m in sys.modules if m.startswith('guildlite'))\n"
            "runs = guildlite.runs()\nprint(before)\nprint('pandas' in sys.modules, 'torch' in sys.modules, len(runs))")
    cp = _python(code, made)
    assert cp.returncode == 0, cp.stderr
    first, second = cp.stdout.splitlines()
    assert json.loads(first.replace("'", '"')) == ["guildlite", "guildlite._errors"]
    assert second == "False False 6"
