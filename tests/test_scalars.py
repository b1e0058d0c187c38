"""Scalars: ``log_scalars`` from real jobs (a 2-rank torchrun job, a plain python job) and in-process,
output capture, ``summarize``, and both feeding ``compare``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import GUILDLITE, Project, property_settings, read_scalars, write_project
from hypothesis import given
from hypothesis import strategies as st

from guildlite import _scalars
from guildlite._builtins import parse_scalars
from guildlite._scalars import log_scalars, read_rows, summarize

# Every rank logs; only rank 0's rows may reach scalars.jsonl. Rank 1's values are all >= 10, so a
# leak shows. Rank 0 also prints `key: value` lines (captured into scalars.jsonl at the end); rank 1
# prints a decoy.
RANKS_SCRIPT = textwrap.dedent(
    """\
    import os, sys
    from guildlite import log_scalars

    rank = int(os.environ["RANK"])
    for step in range(3):
        log_scalars(step, val_loss=1.0 / (step + 1) + 100 * rank, who=rank)
        log_scalars(step, all_ranks=True, mine=10 * rank + step)
        if rank == 0:
            print(f"step: {step}")
            print(f"loss: {0.5 - 0.1 * step}")
        else:
            print("loss: 99.0")
    print(f"rank {rank} done", flush=True)
    """
)

PLAIN_SCRIPT = textwrap.dedent(
    """\
    import sys

    from guildlite import log_scalars

    args = sys.argv[1:]  # the flags arrive as --name=value; this job only logs
    for step, v in enumerate((3.0, 1.0, 2.0)):
        log_scalars(step, loss=v, lr=0.01 * (3 - step))  # a scalar named like a flag
    log_scalars(3, status=1.0)  # and one named like a base column
    print("acc: 0.9")
    """
)

GUILDFILE = """\
operations:
  ranks:
    main: ranks.py
    nproc-per-node: 2
  plain:
    main: plain.py
    launcher: python
    flags:
      lr: 0.5
"""


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("scalars")
    p = Project(root=write_project(base / "project", GUILDFILE, {"ranks.py": RANKS_SCRIPT, "plain.py": PLAIN_SCRIPT}),
                runs_dir=base / "runs")
    yield p
    p.cleanup()


def _run(proj: Project, op: str) -> Path:
    before = set(proj.run_dirs())
    cp = proj.run("run", "-y", op)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    (new,) = set(proj.run_dirs()) - before
    return new


@pytest.fixture(scope="module")
def ranks_run(proj: Project) -> Path:
    return _run(proj, "ranks")


@pytest.fixture(scope="module")
def plain_run(proj: Project) -> Path:
    return _run(proj, "plain")


def _values(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [r["value"] for r in rows if r["key"] == key]


# --- from a real 2-rank torchrun job --------------------------------------------------------------


def test_only_rank_0_writes_scalars_jsonl(ranks_run: Path) -> None:
    out = (ranks_run / "output.log").read_text()
    assert "rank 0 done" in out and "rank 1 done" in out  # both ranks did log
    rows = read_scalars(ranks_run)
    assert _values(rows, "val_loss") == pytest.approx([1.0, 0.5, 1 / 3])
    assert [r["step"] for r in rows if r["key"] == "val_loss"] == [0, 1, 2]
    assert _values(rows, "who") == [0, 0, 0]
    assert _values(rows, "mine") == [0, 1, 2]  # rank 0's all_ranks rows go to scalars.jsonl
    assert all(isinstance(r["time"], float) for r in rows if r["key"] != "loss")
    assert not any(isinstance(r["value"], (int, float)) and r["value"] >= 10 for r in rows)  # nothing of rank 1


def test_all_ranks_writes_scalars_rank_n_jsonl(ranks_run: Path) -> None:
    rank1 = [json.loads(line) for line in (ranks_run / "scalars.rank1.jsonl").read_text().splitlines()]
    assert [(r["step"], r["key"], r["value"]) for r in rank1] == [(0, "mine", 10), (1, "mine", 11), (2, "mine", 12)]
    assert not (ranks_run / "scalars.rank0.jsonl").exists()
    assert sorted(p.name for p in ranks_run.glob("scalars*.jsonl")) == ["scalars.jsonl", "scalars.rank1.jsonl"]


def test_output_capture_appends_rank_0_lines(ranks_run: Path) -> None:
    rows = read_scalars(ranks_run)
    loss = [(r["step"], r["value"]) for r in rows if r["key"] == "loss"]
    assert loss == [(0, pytest.approx(0.5)), (1, pytest.approx(0.4)), (2, pytest.approx(0.3))]  # no 99.0 decoy
    assert "step" not in {r["key"] for r in rows}


def test_output_capture_of_a_multi_host_log_keeps_task_0_rank_0(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text("".join([
        "0: [default0]:step: 1\n", "0: [default1]:loss: 50\n", "1: [default0]:loss: 60\n",
        "0: [default0]:loss: 0.5\n", "0: W1130 torchrun noise\n", "1: [default0]:step: 9\n",
        "[default0]:loss: 70\n",  # without a task label: not from srun's task 0
    ]))
    rows = list(parse_scalars(log, 2, task_labels=True))
    assert rows == [{"step": 1, "key": "loss", "value": 0.5}]
    assert [r["value"] for r in parse_scalars(log, 2)] == [70.0]  # one host: no labels expected


def test_log_scalars_and_captured_lines_both_feed_compare(proj: Project, ranks_run: Path, plain_run: Path) -> None:
    rows = {r["id"]: r for r in proj.run_json("compare", "--json", "--min-max")}
    r = rows[ranks_run.name]
    assert (r["val_loss"], r["val_loss.min"], r["val_loss.max"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3), 1.0)
    assert (r["loss"], r["loss.min"], r["loss.max"]) == (pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.5))
    assert (r["who"], r["mine"], r["mine.max"]) == (0, 2, 2)
    p = rows[plain_run.name]
    assert (p["loss"], p["loss.min"], p["loss.max"], p["acc"]) == (2.0, 1.0, 3.0, 0.9)
    assert p["val_loss"] is None  # a scalar the run never logged
    # Scalars named like a flag or a base column keep their own columns.
    assert (p["lr"], p["lr (scalar)"], p["lr (scalar).max"]) == (0.5, pytest.approx(0.01), pytest.approx(0.03))
    assert (p["status"], p["status (scalar)"]) == ("completed", 1.0)
    assert r["lr"] is None and r["lr (scalar)"] is None
    sorted_ids = [x["id"] for x in proj.run_json("compare", "--json", "--sort", "loss")]
    assert sorted_ids == [ranks_run.name, plain_run.name]


def test_compare_skips_a_torn_last_line_and_sees_it_once_whole(proj: Project, plain_run: Path) -> None:
    path = plain_run / "scalars.jsonl"
    original = path.read_bytes()

    def loss_of_plain() -> Any:
        rows = {r["id"]: r for r in proj.run_json("compare", "--json", "--columns", "id,loss")}
        return rows[plain_run.name]["loss"]

    try:
        assert loss_of_plain() == 2.0
        with open(path, "a") as f:
            f.write('{"step": 9, "key": "loss", "va')  # a writer caught mid-line
        assert loss_of_plain() == 2.0
        with open(path, "a") as f:
            f.write('lue": 7.0}\n')
        assert loss_of_plain() == 7.0  # the (cached) summary follows the file
    finally:
        path.write_bytes(original)


# --- in-process --------------------------------------------------------------------------------------


def test_outside_a_run_it_is_a_noop_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("GUILDLITE_RUN_DIR", raising=False)
    monkeypatch.setattr(_scalars, "_warned", False)  # a fresh process's state
    monkeypatch.chdir(tmp_path)
    for step in range(3):
        log_scalars(step, loss=1.0, acc=0.5)
    log_scalars(3, all_ranks=True, loss=1.0)
    err = capsys.readouterr().err
    assert err.count("guildlite: log_scalars: not inside a guildlite run") == 1
    assert len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_outside_a_run_in_a_fresh_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDLITE_")}
    code = "from guildlite import log_scalars\nfor i in range(5): log_scalars(i, loss=0.1)\nprint('ok')"
    cp = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=60, check=False)
    assert cp.returncode == 0 and cp.stdout == "ok\n", cp.stderr
    assert cp.stderr.splitlines() == ["guildlite: log_scalars: not inside a guildlite run; scalars are not recorded"]
    assert os.listdir(tmp_path) == []


def test_rank_rules_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUILDLITE_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("RANK", raising=False)
    log_scalars(1, loss=0.5, acc=0.25)  # no RANK: rank 0
    monkeypatch.setenv("RANK", "1")
    log_scalars(2, loss=9.0)  # rank 1, not all_ranks: nothing
    log_scalars(2, all_ranks=True, loss=0.75)
    monkeypatch.setenv("RANK", "0")
    log_scalars(3, all_ranks=True, loss=0.125)
    assert sorted(os.listdir(tmp_path)) == ["scalars.jsonl", "scalars.rank1.jsonl"]
    main = [(r["step"], r["key"], r["value"]) for r in read_rows(tmp_path / "scalars.jsonl")]
    assert main == [(1, "loss", 0.5), (1, "acc", 0.25), (3, "loss", 0.125)]
    assert [(r["step"], r["value"]) for r in read_rows(tmp_path / "scalars.rank1.jsonl")] == [(2, 0.75)]


def test_values_are_numbers_nan_is_null_and_array_scalars_work(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")  # its 0-d arrays have .item(), like torch tensors (cheaper to import)
    monkeypatch.setenv("GUILDLITE_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("RANK", raising=False)
    c = np.array(0.25, dtype=np.float32)
    log_scalars(0, a=float("nan"), b=float("inf"), c=c, d=3, e="1.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'x' is not a number"):
        log_scalars(1, f="x")  # type: ignore[arg-type]
    rows = read_rows(tmp_path / "scalars.jsonl")
    assert [(r["key"], r["value"]) for r in rows] == [("a", None), ("b", None), ("c", 0.25), ("d", 3.0), ("e", 1.5)]
    s = summarize(tmp_path / "scalars.jsonl")
    assert set(s) == {"c", "d", "e"}  # null values are not summarised


def test_concurrent_writers_never_interleave_inside_a_line(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """\
        import sys
        from guildlite import log_scalars
        w = int(sys.argv[1])
        for i in range(300):
            log_scalars(i, **{f"k{w}_{j}": w * 1000 + i for j in range(20)})
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDLITE_") and k != "RANK"}
    env["GUILDLITE_RUN_DIR"] = str(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)], env=env) for w in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    lines = (tmp_path / "scalars.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 300 * 20
    rows = [json.loads(line) for line in lines]  # every line whole
    for w in range(4):
        mine = [r for r in rows if r["key"].startswith(f"k{w}_")]
        assert [r["step"] for r in mine] == sorted(r["step"] for r in mine)  # each writer's order kept


# --- summarize ---------------------------------------------------------------------------------------


def _write(path: Path, rows: list[Any], tail: str = "") -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows) + tail)
    return path


def test_summarize_last_min_max(tmp_path: Path) -> None:
    p = _write(tmp_path / "scalars.jsonl", [
        {"step": 0, "key": "loss", "value": 3.0},
        {"step": 0, "key": "acc", "value": 0.1},
        {"step": 1, "key": "loss", "value": 1.0},
        {"step": 1, "key": "acc", "value": None},
        {"step": 2, "key": "loss", "value": 2.0},
        {"step": 2, "key": "acc", "value": 0.7},
    ])
    assert summarize(p) == {
        "loss": {"last": 2.0, "min": 1.0, "max": 3.0, "step": 2, "count": 3},
        "acc": {"last": 0.7, "min": 0.1, "max": 0.7, "step": 2, "count": 2},
    }


def test_summarize_skips_a_torn_last_line_and_bad_lines(tmp_path: Path) -> None:
    rows = [
        {"step": 0, "key": "loss", "value": 1.0},
        "not json",
        "[1, 2]",
        {"step": 1, "value": 5.0},  # no key
        "",
        {"step": 1, "key": "loss", "value": 0.5},
    ]
    p = _write(tmp_path / "scalars.jsonl", rows, tail='{"step": 2, "key": "loss", "value": 0.0')
    assert summarize(p) == {"loss": {"last": 0.5, "min": 0.5, "max": 1.0, "step": 1, "count": 2}}
    assert [r["value"] for r in read_rows(p)] == [1.0, 0.5]
    assert summarize(tmp_path / "missing.jsonl") == {}


@property_settings(max_examples=100)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.floats(allow_nan=False, allow_infinity=False, width=32)),
                min_size=1, max_size=30))
def test_summarize_matches_a_reference(tmp_path_factory: pytest.TempPathFactory,
                                       values: list[tuple[str, float]]) -> None:
    p = _write(tmp_path_factory.mktemp("s") / "scalars.jsonl",
               [{"step": i, "key": k, "value": v} for i, (k, v) in enumerate(values)])
    got = summarize(p)
    assert set(got) == {k for k, _ in values}
    for key, s in got.items():
        vs = [v for k, v in values if k == key]
        steps = [i for i, (k, _) in enumerate(values) if k == key]
        assert s == {"last": vs[-1], "min": min(vs), "max": max(vs), "step": steps[-1], "count": len(vs)}
        assert not math.isnan(s["last"])


# Prints a good line, a line that makes ``(a+)+$`` backtrack for ages, another good line, a line
# longer than PATTERN_LINE_MAX, and a last good line.
HOSTILE_OUTPUT = textwrap.dedent(
    """\
    print("loss=0.5", flush=True)
    print("a" * 40 + "b", flush=True)
    print("loss=0.25", flush=True)
    print("loss=0.125 " + "x" * 5000, flush=True)
    """
)


@pytest.mark.parametrize("hostile", [False, True])
def test_an_output_scalars_pattern_that_backtracks_catastrophically_never_hangs_the_run(
    tmp_path: Path, hostile: bool
) -> None:
    """``^(?P<x>a+)+$`` takes 2^40 steps on the second line: the patterns run in a child process that is
    given GUILDLITE_SCALARS_TIMEOUT; the run still completes, the rows found before the hang are
    kept and the plugin's failure says why. Lines over 4 KB are not matched by an op's patterns."""
    patterns = ["loss=(?P<loss>[0-9.]+)", "^(?P<x>a+)+$"] if hostile else ["loss=(?P<loss>[0-9.]+)"]
    root = write_project(tmp_path / "p", "operations:\n  t:\n    main: t.py\n    launcher: python\n"
                         f"    output-scalars: {json.dumps(patterns)}\n", {"t.py": HOSTILE_OUTPUT})
    runs = tmp_path / "runs"
    env = {**os.environ, "GUILDLITE_RUNS_DIR": str(runs), "GUILDLITE_SCALARS_TIMEOUT": "2"}
    cp = subprocess.run([*GUILDLITE, "run", "t", "-y"], cwd=root, env=env, capture_output=True, text=True,
                        timeout=120, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    (run_dir,) = [d for d in runs.iterdir() if not d.name.startswith(".")]
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "completed" and rec["exit_code"] == 0
    values = [r["value"] for r in read_scalars(run_dir)]
    failures = [p for p in rec["plugins"] if p.get("hooks", {}).get("on_run_end", {}).get("error")]
    if hostile:
        assert values == [0.5]  # found before the pattern hung; nothing after it
        assert "took more than 2 s" in cp.stderr and "backtracks catastrophically" in cp.stderr, cp.stderr
        assert rec["attrs"]["scalars"] == {"captured": 1}
    else:
        assert values == [0.5, 0.25]  # the 5 KB line is skipped by the op's patterns
        assert rec["attrs"]["scalars"] == {"captured": 2} and failures == []


@pytest.mark.parametrize("setting", ["off", "false", "'x=(?P<x>\\S+)'"])
def test_output_scalars_as_one_pattern_or_off_keeps_the_runs_record_readable(make_project: Any, setting: str) -> None:
    """The guildfile takes ``output-scalars`` as one pattern, a list, ``off`` or false; the run's
    record keeps the op as written, and must read back as a good record in every case."""
    proj = make_project("operations:\n  op:\n    main: t.py\n    launcher: python\n"
                        f"    output-scalars: {setting}\n", {"t.py": "print('x=2')\n"})
    cp = proj.run("run", "-y", "op")
    assert cp.returncode == 0, cp.stderr
    listed = proj.run("runs", "--json")
    assert listed.returncode == 0 and "bad run record" not in listed.stderr, listed.stderr
    [rec] = json.loads(listed.stdout)
    assert rec["status"] == "completed"
    rows = read_scalars(Path(rec["run_dir"]))
    assert rows == ([{"step": 0, "key": "x", "value": 2.0}] if "x=" in setting else [])
