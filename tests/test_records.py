"""Run records as untrusted input: a run dir from elsewhere (a shared runs dir, an archive) never
makes guildlite read or write outside the runs dir, and one bad record never breaks a command.

Crafted run dirs are written by hand (as another tool or person would); commands run as real
``guildlite`` subprocesses (``gl_many``: several commands, each through the console script's
``main``, in one subprocess), the property tests in-process through click's CliRunner.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import TRACEBACK, clean_env, free_port, http_get, property_settings, run_guildlite, wait_serving

from guildlite._errors import BadRecordError, RunNotFoundError
from guildlite._index import _TABLE
from guildlite._record import MAX_DEPTH, is_run_id
from guildlite._run import Run, load_run
from guildlite._selection import RunList, select_runs

GOOD = ["20260101T000001-000aaa", "20260101T000002-000bbb", "20260101T000003-000ccc"]
WARNING = "guildlite: warning: skipped bad run record"


def record(**fields: Any) -> dict[str, Any]:
    """A finished run's record as guildlite writes it (fields override)."""
    rec = Run(id="x", run_dir=Path("x"), op="train", flags={"lr": 0.1}, status="completed", exit_code=0,
              created="2026-01-01T00:00:00.000+00:00", started="2026-01-01T00:00:00.100+00:00",
              stopped="2026-01-01T00:00:05.000+00:00").to_record()
    return {**rec, **fields}


def put(runs_dir: Path, name: str, rec: Any = None, raw: bytes | None = None, scalars: bool = True) -> Path:
    """A run dir ``name`` whose run.json is ``rec`` (as JSON) or ``raw`` bytes."""
    d = runs_dir / name
    d.mkdir(parents=True)
    data = raw if raw is not None else json.dumps(record(id=name) if rec is None else rec).encode()
    (d / "run.json").write_bytes(data)
    if scalars:
        (d / "scalars.jsonl").write_text(json.dumps({"step": 1, "key": "loss", "value": 0.5}) + "\n")
    return d


def good_runs(runs_dir: Path) -> Path:
    for name in GOOD:
        put(runs_dir, name)
    return runs_dir


def gl(*args: str, runs_dir: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    p = run_guildlite(*args, "--runs-dir", str(runs_dir), cwd=cwd or runs_dir.parent, timeout=60)
    assert TRACEBACK not in p.stderr, p.stderr
    return p


# Each argv through the console script's entry point (``guildlite.cli:main``), its output and exit
# status kept apart: the same code path as ``guildlite ARGS``, one Python start-up for them all.
_MANY = """\
import contextlib, io, json, sys
from guildlite.cli import main
results = []
for argv in json.load(sys.stdin):
    sys.argv = ["guildlite", *argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    results.append([code, out.getvalue(), err.getvalue()])
json.dump(results, sys.stdout)
"""


def gl_many(argvs: list[list[str]], runs_dir: Path) -> list[subprocess.CompletedProcess[str]]:
    """``gl`` for each argv, all in one subprocess, for commands that change nothing (none sees another's
    effect). Not for checking warnings: guildlite says each one once per process."""
    argvs_json = json.dumps([[*a, "--runs-dir", str(runs_dir)] for a in argvs])
    p = subprocess.run([sys.executable, "-c", _MANY], input=argvs_json, capture_output=True, text=True,
                       cwd=runs_dir.parent, env=clean_env(runs_dir), timeout=120)
    assert p.returncode == 0 and TRACEBACK not in p.stderr, p.stderr
    done = [subprocess.CompletedProcess(a, code, out, err) for a, (code, out, err) in zip(argvs, json.loads(p.stdout))]
    assert len(done) == len(argvs)
    for cp in done:
        assert TRACEBACK not in cp.stderr, cp.stderr
    return done


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(WARNING)]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for dirs), links not followed."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            out[str(p.relative_to(root))] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


# --- the schema ----------------------------------------------------------------------------------------

BAD_RECORDS: list[tuple[str, bytes, str]] = [
    ("empty list", b"[]", "not a JSON object"),
    ("empty object", b"{}", "no 'op' field"),
    ("a string", b'"run"', "not a JSON object"),
    ("not JSON", b"{'op': 'x'}", "not valid JSON"),
    ("not UTF-8", b'{"op": "\xff"}', "not UTF-8"),
    ("started an int", json.dumps(record(started=5)).encode(), "field 'started' is an integer"),
    ("started not a time", json.dumps(record(started="yesterday")).encode(), "not an ISO 8601 time"),
    ("stopped naive", json.dumps(record(stopped="2026-01-01T00:00:05")).encode(), "not a UTC-offset time"),
    ("trials an int", json.dumps(record(trials=5)).encode(), "field 'trials' is an integer"),
    ("trials a path", json.dumps(record(is_batch=True, trials=["/abs/runs/20260101T000001-000aaa"])).encode(),
     "not a run id"),
    ("parent a path", json.dumps(record(is_trial=True, parent="../20260101T000001-000aaa")).encode(),
     "not a run id"),
    ("flags a list", json.dumps(record(flags=[1, 2])).encode(), "field 'flags' is a list"),
    ("status unknown", json.dumps(record(status="done")).encode(), "expected one of"),
    ("exit code a bool", json.dumps(record(exit_code=True)).encode(), "field 'exit_code' is a boolean"),
    ("negative pid", json.dumps(record(pid=-1)).encode(), "field 'pid' is -1, out of range"),
    ("tags of ints", json.dumps(record(tags=[1])).encode(), "field 'tags' holds an integer"),
    ("hook trace without a hook", json.dumps(record(plugins=[{"plugin": "P"}])).encode(), "without 'hook'"),
    ("deep nesting", b'{"op": "x", "attrs": {"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}", "nested more than"),
    ("moderate nesting", json.dumps(record(attrs={"a": json.loads("[" * 100 + "]" * 100)})).encode(),
     "nested more than"),
    ("lone surrogate", b'{"op": "x", "label": "\\ud800"}', "lone surrogate"),
]


@pytest.mark.parametrize("what, raw, problem", BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_a_bad_record_is_a_bad_record_error_naming_dir_and_problem(tmp_path: Path, what: str, raw: bytes,
                                                                    problem: str) -> None:
    d = put(tmp_path, "20260101T000009-000fff", raw=raw)
    with pytest.raises(BadRecordError) as e:
        load_run(d)
    assert problem in str(e.value) and str(d) in str(e.value)
    assert isinstance(e.value, RunNotFoundError) and e.value.exit_code == 2


def test_good_records_load_and_the_id_is_the_directory_name(tmp_path: Path) -> None:
    d = put(tmp_path, "20260101T000009-000fff", rec=record(id="../../../x/planted", label="☃ 🎉"))
    run = load_run(d)
    assert run.id == "20260101T000009-000fff" and run.run_dir == d and run.label == "☃ 🎉"
    nested = json.loads("[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3))
    assert load_run(put(tmp_path, "20260101T000009-000ffe", rec=record(attrs={"deep": nested}))).attrs
    # fields this version does not know are left alone, not refused
    assert load_run(put(tmp_path, "20260101T000009-000ffd", rec=record(future={"x": 1}))).op == "train"


@pytest.mark.parametrize("name", ["best", "20260101T000009-000FFF", "20260101T000009-000fff.bak", "٢٠٢٦0101T000009-000fff"])
def test_a_dir_whose_name_is_not_an_id_is_not_a_run(tmp_path: Path, name: str) -> None:
    assert not is_run_id(name)
    put(tmp_path, name, rec=record(id="20260101T000009-000fff"))
    with pytest.raises(BadRecordError, match="rename it back to 20260101T000009-000fff"):
        load_run(tmp_path / name)


def test_links_are_not_runs(tmp_path: Path) -> None:
    elsewhere = put(tmp_path / "other", GOOD[0])
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / GOOD[1]).symlink_to(elsewhere)  # a run dir that is a link into another project
    d = runs / GOOD[2]
    d.mkdir()
    (d / "run.json").symlink_to(elsewhere / "run.json")  # a record that is a link
    os.mkfifo(put(runs, "20260101T000004-000ddd", scalars=False) / "fifo")
    fifo_run = runs / "20260101T000005-000eee"
    fifo_run.mkdir()
    os.mkfifo(fifo_run / "run.json")  # never waited on
    with pytest.raises(BadRecordError, match="symbolic link"):
        load_run(runs / GOOD[1])
    with pytest.raises(BadRecordError, match="symbolic link"):
        load_run(d)
    with pytest.raises(BadRecordError, match="not a regular file"):
        load_run(fifo_run)
    listed = RunList(runs)
    assert listed.ids == ["20260101T000005-000eee", "20260101T000004-000ddd", GOOD[2]]
    assert [r.id for r in listed] == ["20260101T000004-000ddd"]


def test_trials_are_runs_beside_the_batch_that_name_it(tmp_path: Path) -> None:
    batch_id, trial_id, stranger_id = "20260101T000001-000aaa", "20260101T000002-000bbb", "20260101T000003-000ccc"
    put(tmp_path, batch_id, rec=record(is_batch=True, trials=[trial_id, stranger_id]))
    put(tmp_path, trial_id, rec=record(is_trial=True, parent=batch_id))
    put(tmp_path, stranger_id)  # not a trial of it, whatever the batch says
    batch = load_run(tmp_path / batch_id)
    assert [t.id for t in batch.trials] == [trial_id]
    assert load_run(tmp_path / trial_id).parent is not None
    rogue = Run(id="x", run_dir=tmp_path / trial_id, op="t", is_trial=True, parent_id="../" + batch_id,
                trial_ids=["/etc", ".."])
    assert rogue.parent is None and rogue.trials == []


# --- listings and selection (real CLI) ------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Three good runs, every kind of bad record, and a run dir renamed by hand."""
    runs = good_runs(tmp_path / "runs")
    for i, (_, raw, _) in enumerate(BAD_RECORDS):
        put(runs, f"20260102T0000{i:02d}-000fff", raw=raw)
    renamed = put(runs, "20251231T000000-000abc")
    renamed.rename(runs / "best")
    (runs / "notes").mkdir()  # some other dir, no run.json: not a run, not reported
    return runs


def test_listings_skip_bad_records_with_one_warning_each(mixed: Path, tmp_path: Path) -> None:
    bad = len(BAD_RECORDS) + 1
    for args in (["runs", "--all"], ["runs", "--all", "--status", "completed"], ["runs", "--all", "--json"],
                 ["compare"], ["compare", "--json"], ["runs", "--op", "train", "--json"]):
        for _ in range(2):  # the second time from the index
            p = gl(*args, runs_dir=mixed)
            assert p.returncode == 0, (args, p.stderr)
            assert all(g in p.stdout for g in GOOD), (args, p.stdout)
            lines = warnings_of(p.stderr)
            assert len(lines) == bad == len(set(lines)), (args, p.stderr)
            assert "notes" not in p.stderr
    renamed = [w for w in warnings_of(p.stderr) if "/best:" in w]
    assert renamed and "rename it back to 20251231T000000-000abc" in renamed[0]
    out = tmp_path / "page.html"
    p = gl("view", "--out", str(out), runs_dir=mixed)
    assert p.returncode == 0 and len(warnings_of(p.stderr)) == bad and all(g in out.read_text() for g in GOOD)
    p = gl("tensorboard", "--no-server", "--logdir", str(tmp_path / "tb"), runs_dir=mixed)
    assert p.returncode == 0 and len(warnings_of(p.stderr)) == bad, p.stderr
    assert sorted(x.name.split("-")[0] + "-" + x.name.split("-")[1] for x in (tmp_path / "tb").iterdir()) == GOOD


def test_selecting_a_bad_record_is_a_clear_error(mixed: Path) -> None:
    cases = []
    for i, (_, _, problem) in enumerate(BAD_RECORDS):
        name = f"20260102T0000{i:02d}-000fff"
        for args in (["runs", "info", name[:18]], ["ls", name], ["cat", name, "run.json"],
                     ["diff", name, GOOD[0]], ["label", name, "x"], ["runs", "delete", "-y", name]):
            cases.append((args, name, problem))
            if len(BAD_RECORDS) - i > 3:
                break  # every command for the last few; the record checks for all
    # The first case as its own `guildlite` process, the rest in one (each refused: nothing changes)
    first = gl(*cases[0][0], runs_dir=mixed)
    for p, (args, name, problem) in zip([first, *gl_many([a for a, _, _ in cases[1:]], mixed)], cases):
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert f"guildlite: error: bad run record {mixed / name}: " in p.stderr and problem in p.stderr
    p = gl("runs", "info", "bes", runs_dir=mixed)
    assert p.returncode == 2 and "rename it back to 20251231T000000-000abc" in p.stderr
    # a range is a listing: bad ones skipped with a warning
    p = gl("label", "1:99", "ranged", runs_dir=mixed)
    assert p.returncode == 0, p.stderr
    assert sorted(re.findall(r"^(\S+): 'ranged'$", p.stdout, re.M)) == GOOD
    assert len(warnings_of(p.stderr)) == len(BAD_RECORDS)
    assert (mixed / "best").is_dir() and not (mixed / "20251231T000000-000abc").exists()


def test_select_runs_over_a_runs_list_with_bad_records(mixed: Path) -> None:
    runs = RunList(mixed)
    assert "best" not in runs.ids and "notes" not in runs.ids
    with pytest.raises(BadRecordError):
        select_runs(runs, ["1"])
    assert [r.id for r in select_runs(runs, [f"1:{len(runs)}"])] == GOOD[::-1]


# --- the index ---------------------------------------------------------------------------------------


PLANTED = {"id": "..", "op": "train", "flags": [1], "started": 5, "trials": ["/etc"], "status": "completed"}


def _plant(runs: Path, **match: Any) -> None:
    """Every entry of the runs dir's index made a hostile record (its columns too), its stamp columns
    set to ``match``."""
    db = sqlite3.connect(runs / ".index.sqlite")
    sets = ", ".join(f"{k} = {v}" for k, v in match.items())
    db.execute(f"UPDATE {_TABLE} SET rec = ?, scalars = ?, status = 'error', op = '..', label = ?"
               f" {', ' + sets if sets else ''}", (json.dumps(PLANTED), json.dumps({"loss": [1]}), "\x1b[2J"))
    db.commit()
    db.close()


def _lists_the_good_runs(runs: Path) -> None:
    for args in (["compare"], ["runs", "--status", "completed"], ["compare", "--json"]):
        p = gl(*args, runs_dir=runs)
        assert p.returncode == 0 and not p.stderr, (args, p.stderr)
        assert all(g in p.stdout for g in GOOD)
    rows = json.loads(gl("compare", "--json", runs_dir=runs).stdout)
    assert sorted(r["id"] for r in rows) == GOOD and {r["loss"] for r in rows} == {0.5}


def test_an_index_that_came_with_the_runs_is_not_trusted(tmp_path: Path) -> None:
    made = good_runs(tmp_path / "made")
    assert gl("compare", runs_dir=made).returncode == 0  # builds the index
    _plant(made)
    # as an archive brings it: same contents, modification times and sizes; new inodes, change times
    runs = tmp_path / "runs"
    shutil.copytree(made, runs, copy_function=shutil.copy2)
    for name in GOOD:
        st = os.lstat(made / name / "run.json")
        assert (st.st_mtime_ns, st.st_size) == (lambda c: (c.st_mtime_ns, c.st_size))(os.lstat(runs / name / "run.json"))
    _lists_the_good_runs(runs)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root")
def test_an_index_another_user_owns_is_checked_like_run_json(tmp_path: Path) -> None:
    runs = good_runs(tmp_path / "runs")
    assert gl("compare", runs_dir=runs).returncode == 0
    _plant(runs)  # stamps left as they are: they match
    os.chown(runs / ".index.sqlite", 12345, 12345)
    _lists_the_good_runs(runs)


def test_the_index_is_never_written_through_a_link(tmp_path: Path) -> None:
    runs = good_runs(tmp_path / "runs")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (runs / ".index.sqlite-journal").symlink_to(victim)
    (runs / ".index.sqlite").symlink_to(tmp_path / "planted.sqlite")
    for args in (["compare"], ["runs", "--status", "completed"]):
        p = gl(*args, runs_dir=runs)
        assert p.returncode == 0 and all(g in p.stdout for g in GOOD), p.stderr
    assert victim.read_text() == "precious\n" and not (tmp_path / "planted.sqlite").exists()


# --- paths never come from fields (each failed on the code before the schema) -------------------------


def test_delete_with_an_id_field_that_is_a_path_stays_in_the_runs_dir(tmp_path: Path) -> None:
    runs = tmp_path / "p" / "runs"
    (tmp_path / "x").mkdir()
    put(runs, GOOD[0], rec=record(id="../../../x/planted"))
    p = gl("runs", "delete", "-y", "1", runs_dir=runs)
    assert p.returncode == 0, p.stderr
    assert (runs / ".trash" / GOOD[0] / "run.json").is_file()
    assert not (tmp_path / "x" / "planted").exists()
    assert list((tmp_path / "x").iterdir()) == []


def test_restore_with_an_id_field_that_is_a_path_stays_in_the_runs_dir(tmp_path: Path) -> None:
    runs = tmp_path / "p" / "runs"
    runs.mkdir(parents=True)
    (tmp_path / "p" / "x").mkdir()
    put(runs / ".trash", GOOD[0], rec=record(id="../x/restored"))
    p = gl("runs", "restore", "-y", runs_dir=runs)
    assert p.returncode == 0, p.stderr
    assert (runs / GOOD[0] / "run.json").is_file() and not (tmp_path / "p" / "x" / "restored").exists()


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_purge_of_a_batch_whose_trials_name_another_project_deletes_nothing_there(tmp_path: Path, how: str) -> None:
    other = good_runs(tmp_path / "other" / "runs")
    before = tree(other)
    runs = tmp_path / "p" / "runs"
    victim = other / GOOD[0]
    trial = str(victim) if how == "absolute" else os.path.relpath(victim, runs / ".trash")
    put(runs / ".trash", "20260105T000000-000eee", rec=record(is_batch=True, trials=[trial]))
    put(runs / ".trash", "20260105T000001-000eee")
    p = gl("runs", "purge", "-y", runs_dir=runs)
    assert tree(other) == before
    # the batch's record is bad (a trial that is not an id): skipped, the good one purged
    assert p.returncode == 0 and len(warnings_of(p.stderr)) == 1, p.stderr
    assert sorted(os.listdir(runs / ".trash")) == ["20260105T000000-000eee"]


def test_tensorboard_with_a_dotdot_id_writes_only_in_the_logdir(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    runs = tmp_path / "runs"
    put(runs, GOOD[0], rec=record(id="..", flags={}))  # no flags, no label: the sub-dir would be `..`
    outside = tmp_path / "parent"
    logdir = outside / "L"
    logdir.mkdir(parents=True)
    (outside / "events.out.tfevents.keep").write_text("not TensorBoard's")
    before = tree(outside)
    p = gl("tensorboard", "--no-server", "--logdir", str(logdir), runs_dir=runs)
    assert p.returncode == 0, p.stderr
    after = tree(outside)
    assert {k: v for k, v in after.items() if not k.startswith("L")} == {k: v for k, v in before.items()
                                                                        if not k.startswith("L")}
    assert [x.name for x in logdir.iterdir()] == [GOOD[0]]


# --- view's server with bad records --------------------------------------------------------------------


@pytest.fixture
def view_server(mixed: Path) -> Iterator[str]:
    pytest.importorskip("plotly")
    port = free_port()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "guildlite", "view", "--no-browser", "--port", str(port),
                             "--runs-dir", str(mixed)], stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_serving(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        err.seek(0)
        assert TRACEBACK.encode() not in err.read()
        err.close()


def test_view_server_answers_over_bad_records(view_server: str) -> None:
    for _ in range(2):
        code, body = http_get(view_server + "data.json", timeout=30)
        assert code == 200
        assert sorted(r["id"] for r in json.loads(body)["runs"]) == GOOD
    code, body = http_get(view_server, timeout=30)
    assert code == 200 and all(g.encode() in body for g in GOOD)
    code, body = http_get(view_server + f"run/{GOOD[0]}.json", timeout=30)
    assert code == 200 and json.loads(body)["id"] == GOOD[0]
    for i, (_, _, problem) in enumerate(BAD_RECORDS):
        code, body = http_get(view_server + f"run/20260102T0000{i:02d}-000fff.json", timeout=30)
        assert code == 404 and b"bad run record" in body and problem.encode() in body
    code, body = http_get(view_server + "run/best.json", timeout=30)
    assert code == 404 and b"rename it back" in body


# --- any JSON as a run.json ------------------------------------------------------------------------------


def _json_values() -> Any:
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                          max_size=4), max_leaves=12)


def _records() -> Any:
    """Records near the real shape (every field, some with any JSON value) and any JSON at all."""
    from hypothesis import strategies as st

    fields = list(record())
    near = st.builds(
        lambda changes, drop: {k: v for k, v in {**record(), **changes}.items() if k not in drop},
        st.dictionaries(st.sampled_from(fields + ["id"]), _json_values() | st.sampled_from(
            ["..", "../x", "/etc", GOOD[0], "2026-01-01T00:00:00+00:00", "0001-01-01T00:00:00+23:59"]), max_size=4),
        st.sets(st.sampled_from(fields), max_size=2),
    )
    return near.map(lambda r: json.dumps(r).encode()) | _json_values().map(lambda v: json.dumps(v).encode()) | \
        st.binary(max_size=40)


@pytest.fixture(scope="module")
def cli_runner() -> Any:
    from click.testing import CliRunner

    return CliRunner()


def test_any_run_json_never_breaks_a_read_command(cli_runner: Any) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from guildlite.cli import cli

    pytest.importorskip("plotly")
    pytest.importorskip("tensorboard")

    @property_settings(max_examples=40)
    @given(st.lists(_records(), min_size=1, max_size=3))
    def check(raws: list[bytes]) -> None:
        root = Path(tempfile.mkdtemp(prefix="glt-rec-"))
        try:
            runs = good_runs(root / "runs")
            bad = [f"20260102T00000{i}-000fff" for i in range(len(raws))]
            for name, raw in zip(bad, raws):
                put(runs, name, raw=raw)
            commands = [["runs", "--all"], ["runs", "--all", "--json"], ["runs", "--status", "completed"],
                        ["compare"], ["compare", "--json"], ["view", "--out", str(root / "v.html")],
                        ["tensorboard", "--no-server", "--logdir", str(root / "tb")],
                        ["diff", GOOD[0], GOOD[1]], ["ls", GOOD[0]],
                        *(["runs", "info", name] for name in bad), ["diff", bad[0], GOOD[0]], ["ls", bad[0]]]
            for args in commands:
                result = cli_runner.invoke(cli, [*args, "--runs-dir", str(runs)], catch_exceptions=True)
                assert result.exception is None or isinstance(result.exception, SystemExit), (
                    args, raws, repr(result.exception))
                assert result.exit_code in (0, 2), (args, raws, result.output)
                if args[:2] in (["runs", "--all"], ["compare"]):
                    assert all(g in result.stdout for g in GOOD), (args, raws, result.stdout)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    check()


def test_any_run_json_real_subprocesses(tmp_path: Path) -> None:
    """A few of the property test's cases through the real console script, tensorboard included."""
    pytest.importorskip("tensorboard")
    runs = good_runs(tmp_path / "runs")
    samples = [raw for _, raw, _ in BAD_RECORDS[:6]] + [b"\x00\xff", b"null", json.dumps(record(remote={"job_ids": 5},
                                                                                                 status="running")).encode()]
    for i, raw in enumerate(samples):
        put(runs, f"20260102T00000{i}-000fff", raw=raw)
    for args in (["runs"], ["compare"], ["tensorboard", "--no-server", "--logdir", str(tmp_path / "tb")],
                 ["view", "--out", str(tmp_path / "v.html")]):
        p = gl(*args, runs_dir=runs)
        assert p.returncode == 0 and len(warnings_of(p.stderr)) == len(samples), (args, p.stderr)


def test_odd_scalar_rows_are_skipped(tmp_path: Path) -> None:
    runs = good_runs(tmp_path / "runs")
    (runs / GOOD[0] / "scalars.jsonl").write_bytes(
        b'{"key": ["a"], "value": 1, "step": 1}\n{"key": {"b": 1}, "value": 2}\n\xff\xfe{"key": 3}\n'
        + b"[" * 100_000 + b"\n" + json.dumps({"step": 2, "key": "loss", "value": 0.25}).encode() + b"\n")
    rows = json.loads(gl("compare", "--json", runs_dir=runs).stdout)
    assert {r["id"]: r["loss"] for r in rows} == {GOOD[0]: 0.25, GOOD[1]: 0.5, GOOD[2]: 0.5}


def test_run_ids_agrees_with_is_run_id() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from guildlite._record import run_ids

    part = st.sampled_from(GOOD + ["", "\n", "x", "best", GOOD[0] + "\n" + GOOD[1], GOOD[0].upper()])
    names = st.lists(st.lists(part, min_size=1, max_size=3).map("".join), max_size=6)

    @property_settings(max_examples=300)
    @given(names)
    def check(ns: list[str]) -> None:
        assert run_ids(ns) == [n for n in ns if is_run_id(n)]

    check()


def test_a_dir_name_holding_a_newline_is_not_a_run(tmp_path: Path) -> None:
    good_runs(tmp_path)
    put(tmp_path, GOOD[0] + "\n" + "20260101T000009-000fff", rec=record(id="20260101T000009-000fff"))
    runs = RunList(tmp_path)
    assert runs.ids == GOOD[::-1] and len(runs.strays) == 1 and [r.id for r in runs] == GOOD[::-1]


def test_a_bad_dir_name_is_printed_escaped(tmp_path: Path) -> None:
    runs = good_runs(tmp_path / "runs")
    put(runs, "evil\x1b[2J\nname", rec=record(id="20260101T000009-000fff"))
    p = gl("runs", runs_dir=runs)
    assert p.returncode == 0 and "\x1b" not in p.stderr
    lines = warnings_of(p.stderr)
    assert len(lines) == 1 and "evil\\x1b[2J\\nname" in lines[0] and "rename it back to 20260101T000009-000fff" in lines[0]
