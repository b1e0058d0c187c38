"""The fast paths of listing and comparing many runs ("Speed at scale", issue 21).

The SQLite index answers filters on its columns and decodes only the records a listing shows;
the CLI imports a command's module only when that command runs. Behaviour only, no timings: each
answer from a warm index is the answer of a fresh read of the run dirs (the index deleted first),
whatever changed in the run dirs behind the index's back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from conftest import TRACEBACK, clean_env, run_guildlite

from guildlite._index import _TABLE, INDEX_NAME, load_records
from guildlite._selection import RunList
from guildlite.cli import _COMMANDS, cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _common import make_runs, run_id  # noqa: E402  (the benchmarks' synthetic writer)

N = 300  # more runs than the index fetches one by one (100): compare reads them all at once
ERROR_EVERY = 7


def gl(runs: Path, *args: str) -> str:
    """``guildlite ARGS --runs-dir RUNS`` (the CLI's code in this process); its stdout and stderr."""
    res = CliRunner().invoke(cli, [*args, "--runs-dir", str(runs)], catch_exceptions=False)
    assert res.exit_code == 0, (args, res.output)
    return res.output


CHECKS = [
    ("compare", "--json"),
    ("compare", "--status", "error", "--json"),
    ("compare", "--label", "base", "--json"),
    ("runs", "--status", "error", "-a"),
    ("runs", "--status", "completed", "-n", "5"),
    ("runs", "--status", "terminated", "-a"),
    ("runs", "--op", "train", "-a"),
]


def answers(runs: Path) -> list[str]:
    return [gl(runs, *args) for args in CHECKS]


def fresh_answers(runs: Path) -> list[str]:
    """What every check says when the run dirs are read afresh (no index)."""
    (runs / INDEX_NAME).unlink(missing_ok=True)
    return answers(runs)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    d = tmp_path / "runs"
    make_runs(d, N, error_every=ERROR_EVERY, scalar_steps=3)
    gl(d, "compare")  # the index, warm
    assert (d / INDEX_NAME).is_file()
    return d


def record_of(runs: Path, i: int) -> dict[str, Any]:
    return json.loads((runs / run_id(i) / "run.json").read_text())


def write_in_place(path: Path, rec: dict[str, Any], keep_mtime: bool = True) -> None:
    """Rewrite ``path`` through the same inode, its modification time put back (only the change
    time, which no one can set, tells)."""
    st = os.stat(path)
    with open(path, "r+") as f:
        f.seek(0)
        f.write(json.dumps(rec))
        f.truncate()
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def error_ids(compare_json: str) -> set[str]:
    return {r["id"] for r in json.loads(compare_json) if r["status"] == "error"}


def test_a_warm_index_answers_as_a_fresh_read(runs: Path) -> None:
    warm = answers(runs)
    assert warm == fresh_answers(runs)
    rows = json.loads(warm[0])
    assert len(rows) == N and error_ids(warm[0]) == {run_id(i) for i in range(0, N, ERROR_EVERY)}
    assert {r["loss"] for r in rows} == {1.0 / (3 + i % 7) for i in range(N)}  # last of 3 steps
    assert sorted(r["id"] for r in json.loads(warm[1])) == sorted(error_ids(warm[0]))
    assert warm[3].count(" error ") == len(error_ids(warm[0]))


def test_records_changed_behind_the_index_are_shown_as_they_are_now(runs: Path) -> None:
    # in place, the same size, the modification time put back: completed <-> error, a new label
    a, b = record_of(runs, 1), record_of(runs, 7)
    assert (a["status"], b["status"]) == ("completed", "error")
    a["status"], a["exit_code"], a["label"] = "error", 1, "base"
    b["status"], b["exit_code"] = "completed", 0
    write_in_place(runs / run_id(1) / "run.json", a)
    write_in_place(runs / run_id(7) / "run.json", b)
    # replaced (as guildlite writes): a label
    c = record_of(runs, 2)
    c["label"] = "base-2"
    (runs / run_id(2) / "tmp.json").write_text(json.dumps(c))
    os.replace(runs / run_id(2) / "tmp.json", runs / run_id(2) / "run.json")
    # a run gone, a run new
    shutil.rmtree(runs / run_id(14))
    shutil.copytree(runs / run_id(0), runs / run_id(N + 1))
    warm = answers(runs)
    errors = error_ids(warm[0])
    assert run_id(1) in errors and run_id(7) not in errors and run_id(N + 1) in errors
    assert run_id(14) not in warm[0] and run_id(14) not in warm[3]
    assert {r["id"] for r in json.loads(warm[2])} == {run_id(2), run_id(1)}  # --label base
    assert run_id(1) in warm[3] and run_id(7) not in warm[3]
    assert warm == fresh_answers(runs)


def test_scalars_appended_behind_the_index_are_shown(runs: Path) -> None:
    scalars = runs / run_id(3) / "scalars.jsonl"
    st = os.stat(scalars)
    with open(scalars, "a") as f:
        f.write(json.dumps({"step": 9, "key": "loss", "value": 0.01}) + "\n")
    os.utime(scalars, ns=(st.st_atime_ns, st.st_mtime_ns))
    warm = answers(runs)
    (row,) = [r for r in json.loads(warm[0]) if r["id"] == run_id(3)]
    assert row["loss"] == 0.01
    assert warm == fresh_answers(runs)


def test_a_record_gone_bad_behind_the_index_is_never_shown_from_it(runs: Path) -> None:
    bad, missing = runs / run_id(5) / "run.json", runs / run_id(6) / "run.json"
    rec = record_of(runs, 5)
    rec["flags"] = [1]  # not an object: the schema refuses it
    write_in_place(bad, rec)
    missing.unlink()
    p = run_guildlite("compare", "--json", cwd=runs.parent, runs_dir=runs)
    assert p.returncode == 0 and TRACEBACK not in p.stderr, p.stderr
    shown = {r["id"] for r in json.loads(p.stdout)}
    assert run_id(5) not in shown and run_id(6) not in shown and len(shown) == N - 2
    assert f"bad run record {runs / run_id(5)}" in p.stderr and f"bad run record {runs / run_id(6)}" in p.stderr


def test_a_running_record_whose_owner_is_gone_reads_terminated_from_a_warm_index(runs: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rec = record_of(runs, 4)
    rec.update(status="running", pid=dead.pid, pid_start=1, stopped=None, exit_code=None)
    (runs / run_id(4) / "run.json").write_text(json.dumps(rec))
    for _ in range(2):  # the first call indexes the record as written ("running"), the second reads it from there
        out = gl(runs, "runs", "--status", "terminated", "-a")
        assert run_id(4) in out and "terminated" in out
        assert run_id(4) not in gl(runs, "runs", "--status", "running", "-a")
    (row,) = [r for r in json.loads(gl(runs, "compare", "--json")) if r["id"] == run_id(4)]
    assert row["status"] == "terminated"


def test_fields_a_record_leaves_out_read_as_a_run_reads_them(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    d = runs / "20260301T000000-aaa000"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"op": "bare"}))  # every other field at its default
    cold = answers(runs)
    assert cold == answers(runs) == fresh_answers(runs)
    (row,) = json.loads(gl(runs, "compare", "--json"))
    assert (row["status"], row["op"], row["label"], row["batch"]) == ("staged", "bare", "", None)


def test_a_filter_on_any_field_sees_the_whole_record(runs: Path) -> None:
    """A filter reading fields that are not index columns gets them from the record (decoded on
    first use), the columns from the index: both as a fresh read has them."""
    def where(rec: Any) -> bool:
        return rec.get("status") == "completed" and rec["flags"]["epochs"] == 2 and rec.get("op") == "train"

    warm = load_records(RunList(runs), scalars=True, where=where)
    (runs / INDEX_NAME).unlink()
    cold = load_records(RunList(runs), scalars=True, where=where)
    assert warm == cold
    assert [x[0] for x in warm] == [run_id(i) for i in reversed(range(N)) if i % 5 == 1 and i % ERROR_EVERY]
    assert all(isinstance(rec, dict) and summary["loss"]["count"] == 3 for _, rec, summary in warm)


def test_an_index_of_an_older_shape_is_replaced(runs: Path) -> None:
    import sqlite3

    (runs / INDEX_NAME).unlink()
    db = sqlite3.connect(runs / INDEX_NAME)
    db.execute("CREATE TABLE runs_v3 (id, stamp, rec, s_stamp, scalars, PRIMARY KEY (id))")
    db.execute(f"CREATE TABLE {_TABLE} (id, junk)")  # the current name, another shape
    db.execute(f"INSERT INTO {_TABLE} VALUES (?, ?)", (run_id(1), "x"))
    db.commit()
    db.close()
    assert answers(runs) == answers(runs) == fresh_answers(runs)
    db = sqlite3.connect(runs / INDEX_NAME)
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {_TABLE}


def test_control_characters_in_a_table_are_escaped(runs: Path) -> None:
    rec = record_of(runs, 8)
    rec["label"] = "base\x1b[2J\u202e"
    (runs / run_id(8) / "run.json").write_text(json.dumps(rec))
    for args in (("compare", "--label", "base"), ("runs", "-n", "300")):
        out = gl(runs, *args)
        assert "\x1b" not in out and "\u202e" not in out and "base\\x1b[2J\\u202e" in out


SHORT = [  # the newest few: listings that stop looking once they have them
    ("runs", "--status", "error", "-n", "3"),
    ("runs", "--status", "completed", "-n", "5"),
    ("runs", "--filter", "lr >= 0.05", "-n", "4"),
    ("runs", "--filter", "loss < 0.2 and epochs = 2", "-n", "2"),
    ("runs", "--status", "completed", "--filter", "min(loss) < 0.3 or label ~ 'b'", "-n", "5"),
    ("select", "--min", "loss", "--filter", "epochs = 3"),
]


def short_answers(runs: Path) -> list[str]:
    return [gl(runs, *args) for args in SHORT]


def test_a_short_listing_looks_at_the_newest_runs_only_and_answers_as_a_fresh_read(runs: Path) -> None:
    import sqlite3

    # changed behind the index, among the newest runs (where a short listing looks): in place,
    # the same size, the modification time put back; and a new run
    a, b = record_of(runs, N - 1), record_of(runs, N - 6)
    assert (a["status"], b["status"]) == ("completed", "error")
    a["status"], a["exit_code"], a["label"] = "error", 1, "b"
    b["status"], b["exit_code"] = "completed", 0
    write_in_place(runs / run_id(N - 1) / "run.json", a)
    write_in_place(runs / run_id(N - 6) / "run.json", b)
    shutil.copytree(runs / run_id(N - 13), runs / run_id(N + 1))
    warm = short_answers(runs)
    assert run_id(N - 1) in warm[0] and run_id(N + 1) in warm[0] and run_id(N - 6) not in warm[0]
    assert run_id(N - 6) in warm[1] and run_id(N - 1) not in warm[1]
    (runs / INDEX_NAME).unlink()
    listings = [gl(runs, *args) for args in SHORT if args[0] == "runs"]  # the index built by them...
    db = sqlite3.connect(runs / INDEX_NAME)
    looked = [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in (_TABLE, "filter_runs_v2")]
    db.close()
    assert 0 < looked[0] < N / 2 and 0 < looked[1] < N / 2  # ...of the newest runs only
    assert [*listings, gl(runs, *SHORT[-1])] == warm  # a fresh read
    assert short_answers(runs) == warm  # and once more, from the index


def test_index_texts_that_are_not_one_record_each_are_never_shown(runs: Path) -> None:
    """The records of an index this user owns are decoded all at once; a text that is not one
    JSON object (a torn write, a damaged file) is read from its run dir instead, and never shifts
    another run's record."""
    import sqlite3

    db = sqlite3.connect(runs / INDEX_NAME)
    texts = ['{"op":"torn"', '1,2', '[1]', None, '"x', '{"op":"a"},{"op":"b"}', "", "{}"]
    for i, text in enumerate(texts):  # ({} is a summary: of no scalars, as a fresh index of a run without any says)
        db.execute(f"UPDATE {_TABLE} SET rec = ?, scalars = ? WHERE id = ?",
                   (text, "[]" if text == "{}" else text, run_id(N - 1 - 2 * i)))
    db.commit()
    db.close()
    warm = answers(runs) + short_answers(runs)
    assert "torn" not in warm[0] and '"a"' not in warm[0]
    assert warm == answers(runs) + short_answers(runs)  # the index mended
    assert warm == fresh_answers(runs) + short_answers(runs)


def test_the_cycle_collector_is_left_as_it_was(runs: Path) -> None:
    import gc

    from guildlite._index import collector_paused

    assert gc.isenabled()
    load_records(RunList(runs), scalars=True)
    assert gc.isenabled()
    gc.disable()
    try:
        load_records(RunList(runs), scalars=True)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(KeyError), collector_paused():
        assert not gc.isenabled()
        raise KeyError
    assert gc.isenabled()


# --- the CLI's start-up -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_each_command_summary_is_the_commands_own(name: str) -> None:
    import importlib

    module, attr, summary = _COMMANDS[name]
    command = getattr(importlib.import_module(module, "guildlite.cli"), attr)
    assert command.name == name
    for limit in (20, 45, 60, 94, 200):
        assert click.Command(name, help=summary).get_short_help_str(limit) == command.get_short_help_str(limit)


def test_help_imports_no_command_and_every_command_runs() -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from guildlite.cli import cli, _COMMANDS\n"
        "def call(args):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            cli(args, prog_name='guildlite')\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (args, e.code)\n"
        "    return out.getvalue()\n"
        "top = call(['--help'])\n"
        "imported = sorted(m for m in sys.modules if m.startswith('guildlite'))\n"
        "each = {name: call([name, '--help']) for name in _COMMANDS}\n"
        "print(json.dumps({'top': top, 'imported': imported, 'each': each}))\n"
    )
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=120,
                        check=False)
    assert cp.returncode == 0, cp.stderr
    got = json.loads(cp.stdout)
    assert got["top"].startswith("Usage: guildlite [OPTIONS] COMMAND")
    assert [m for m in got["imported"] if m.startswith("guildlite.cli.") and m != "guildlite.cli._common"] == []
    for name in _COMMANDS:
        assert f"\n  {name} " in got["top"]
        assert got["each"][name].startswith(f"Usage: guildlite {name} ")
