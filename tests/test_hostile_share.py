"""Issue 21's query and share commands probed as an attacker would, after the earlier red teams:

- a ``~`` regex that backtracks catastrophically (``(a+)+$`` on a label anyone can set, ``.*.*x``
  on a long note) ends in a clean exit 2 naming the regex, instead of hanging ``runs``,
  ``compare``, ``select`` or the Python API; a script's own SIGALRM handler and timer are left
  alone;
- ``runs import`` refuses a run whose id is taken at the archive's (or directory's) first member
  of that run, not after unpacking everything (a 200k-member archive took minutes), and refuses
  files that need more than the disk has free at the header that says so, before reading a
  gzip bomb through.

Runs are real (``launcher: python``); archives are written by hand with ``tarfile``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TRACEBACK, Project, assert_clean_error, clean_env, write_project

ROOT = Path(__file__).resolve().parents[1]
EVIL_LABEL = "a" * 34 + "!"  # (a+)+$ takes 2^34 steps to give up on it
LONG_NOTE = "a" * 20_000  # .*.*.*x: 20k^3 steps


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("hostile_share")
    p = Project(root=write_project(base / "project"), runs_dir=base / "runs")
    try:
        for args in (["quick", "lr=0.5", "--label", EVIL_LABEL], ["quick", "lr=0.25", "--label", "base"]):
            cp = p.run("run", *args, "-y")
            assert cp.returncode == 0, cp.stderr
        assert p.run("note", "1", LONG_NOTE).returncode == 0
        yield p
    finally:
        p.cleanup()


# --- regexes that never finish ---------------------------------------------------------------------------


@pytest.mark.parametrize(("cmd", "expr"), [
    (["runs"], 'label ~ "(a+)+$"'),
    (["runs"], 'note ~ ".*.*.*x"'),
    (["compare"], 'tag ~ "x" or label !~ "(a|aa)+$"'),
    (["select", "--min", "loss"], 'lr > 0 and label ~ "(a+)+$"'),
])
def test_a_catastrophic_regex_is_a_filter_error_not_a_hang(proj: Project, cmd: list[str], expr: str) -> None:
    cp = proj.run(*cmd, "--filter", expr, timeout=90)
    assert cp.returncode == 2, (cmd, cp.stdout, cp.stderr)
    assert TRACEBACK not in cp.stderr
    assert "invalid filter" in cp.stderr and "catastrophic backtracking" in cp.stderr, cp.stderr
    column = cp.stderr.splitlines()[-1].index("^") - 2  # the caret points at the slow regex
    slow = expr.rsplit("~ ", 1)[1].strip('"')
    assert expr[column:].lstrip('"').startswith(slow), (column, cp.stderr)


def test_a_sane_regex_still_matches_the_same_runs(proj: Project) -> None:
    cp = proj.run("runs", "--json", "--filter", 'label ~ "a+!$" or note ~ "^a{100}"')
    assert cp.returncode == 0, cp.stderr
    assert sorted(r["label"] for r in json.loads(cp.stdout)) == [EVIL_LABEL, "base"]


API_SCRIPT = textwrap.dedent(
    """\
    import signal, sys
    import guildlite
    from guildlite._filter import FilterError

    def mine(signum, frame):
        pass

    signal.signal(signal.SIGALRM, mine)
    try:
        guildlite.runs(runs_dir=sys.argv[1], filter='label ~ "(a+)+$"')
    except FilterError as e:
        print("refused:", e.problem)
    assert signal.getsignal(signal.SIGALRM) is mine, signal.getsignal(signal.SIGALRM)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    print("matched:", len(guildlite.runs(runs_dir=sys.argv[1], filter='label ~ "^base$"')))
    # A timer the script set is its own: the filter neither takes it over nor stops it.
    signal.setitimer(signal.ITIMER_REAL, 300)
    print("matched:", len(guildlite.runs(runs_dir=sys.argv[1], filter='label ~ "a+!"')))
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert 200 < left <= 300, left
    assert signal.getsignal(signal.SIGALRM) is mine
    print("ok")
    """
)


def test_the_api_stops_a_catastrophic_regex_and_leaves_the_scripts_alarm_alone(proj: Project) -> None:
    cp = subprocess.run([sys.executable, "-c", API_SCRIPT, str(proj.runs_dir)], capture_output=True, text=True,
                        timeout=90, env={**clean_env(proj.runs_dir), "PYTHONPATH": str(ROOT)}, check=False)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == [
        "refused: the regular expression ran over 2 s on one value (catastrophic backtracking: nested or adjacent"
        " repeats such as (a+)+ or .*.*); write it without them", "matched: 1", "matched: 1", "ok"]


# --- imports refused early -------------------------------------------------------------------------------


ID_A = "20261130T101010-0a0b0c"


def _record(run_id: str) -> bytes:
    return json.dumps({"id": run_id, "op": "quick", "flags": {"lr": 0.1}, "status": "completed",
                       "created": "2026-11-30T10:10:10.000+00:00", "started": "2026-11-30T10:10:10.000+00:00",
                       "stopped": "2026-11-30T10:10:11.000+00:00"}).encode()


def _tar(path: Path, members: list[tuple[str, bytes | None]], declared: dict[str, int] | None = None) -> Path:
    """A .tar.gz of (name, data) members (None: a directory). ``declared``: sizes that member headers
    claim, written with no data behind them (a truncated archive, as a gzip bomb reads to the importer
    until its data is reached)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif declared and name in declared:
                info.size = declared[name]
                tar.fileobj.write(info.tobuf(tar.format, tar.encoding, tar.errors))  # type: ignore[union-attr]
                break
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _import(src: Path, runs_dir: Path, *more: str) -> Any:
    from click.testing import CliRunner

    from guildlite.cli import cli

    res = CliRunner().invoke(cli, ["runs", "import", str(src), *more, "--runs-dir", str(runs_dir)],
                             catch_exceptions=False)
    return subprocess.CompletedProcess([], res.exit_code, res.stdout, res.stderr)


def _taken_runs_dir(tmp_path: Path) -> Path:
    runs_dir = tmp_path / "runs"
    (runs_dir / ID_A).mkdir(parents=True)
    (runs_dir / ID_A / "run.json").write_bytes(_record(ID_A))
    return runs_dir


def test_a_taken_run_id_is_refused_at_its_first_member(tmp_path: Path) -> None:
    # The archive breaks off after the run's first members (a huge archive still being read, as far
    # as the importer can tell): the id is refused there, not once everything has been read.
    archive = tmp_path / "export.tar.gz"
    _tar(archive, [(ID_A, None), (f"{ID_A}/run.json", _record(ID_A)),
                   *((f"{ID_A}/f{i}", b"x" * 512) for i in range(2000))])
    whole = archive.read_bytes()
    archive.write_bytes(whole[:len(whole) // 2])
    runs_dir = _taken_runs_dir(tmp_path)
    cp = _import(archive, runs_dir)
    assert_clean_error(cp, 2, "already in", ID_A, "--rename")
    assert [n for n in os.listdir(runs_dir) if n != ".import.lock"] == [ID_A]  # no staging dir left


def test_a_taken_run_id_of_a_directory_source_is_refused_before_any_run_is_copied(tmp_path: Path) -> None:
    src = tmp_path / "export"
    later = "20261130T101011-0d0e0f"  # sorted after ID_A: copied next, and it holds a FIFO
    for run_id in (ID_A, later):
        (src / run_id).mkdir(parents=True)
        (src / run_id / "run.json").write_bytes(_record(run_id))
    os.mkfifo(src / later / "pipe")
    runs_dir = _taken_runs_dir(tmp_path)
    cp = _import(src, runs_dir)
    assert_clean_error(cp, 2, "already in", ID_A)
    cp = _import(src, runs_dir, "--rename")  # with --rename the id is no reason to stop: the FIFO is
    assert_clean_error(cp, 2, "FIFO")


def test_files_bigger_than_the_free_disk_are_refused_at_the_header(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "bomb.tar.gz", [(ID_A, None), (f"{ID_A}/run.json", _record(ID_A)),
                                              (f"{ID_A}/zeros", b"")], declared={f"{ID_A}/zeros": 1 << 50})
    runs_dir = tmp_path / "runs"
    cp = _import(archive, runs_dir)
    assert_clean_error(cp, 2, "more than the disk", "free", "nothing was imported")
    assert os.listdir(runs_dir) in ([], [".import.lock"])


# --- a study journal that someone wrote escape sequences into --------------------------------------------


def test_flag_names_from_a_study_journal_reach_the_terminal_escaped(proj: Project) -> None:
    cp = proj.run("run", "quick", "lr=uniform[0.1:0.5]", "--optimizer", "tpe", "--max-trials", "2", "--minimize",
                  "loss", "-y")
    assert cp.returncode == 0, cp.stderr
    batch = next(r for r in proj.records() if r.get("is_batch"))
    journal = proj.runs_dir / batch["id"] / ".guildlite" / "study.journal"
    evil = "\x1b]0;owned\x07lr\x1b[2J"
    lines = []
    for line in journal.read_text().splitlines():  # the flag renamed in every trial (an import could bring it)
        entry = json.loads(line)
        for key in ("distributions", "params"):
            if isinstance(entry.get(key), dict) and "lr" in entry[key]:
                entry[key] = {evil: entry[key]["lr"]}
        lines.append(json.dumps(entry))
    journal.write_text("\n".join(lines) + "\n")
    for args in (["--study"], []):
        cp = proj.run("compare", *args, "--batch", batch["id"])
        assert cp.returncode == 0, cp.stderr
        assert "\x1b" not in cp.stdout and "\x07" not in cp.stdout
        assert "\\x1b]0;owned\\x07lr\\x1b[2J" in cp.stdout  # shown, as an escape anyone can read


def test_a_huge_label_from_an_import_is_cut_in_tables_not_padded_into_every_row(tmp_path: Path) -> None:
    huge = "L" * 1_000_000
    archive = tmp_path / "huge.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in ((ID_A, None), (f"{ID_A}/run.json", _record(ID_A))):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                rec = {**json.loads(data), "label": huge}
                raw = json.dumps(rec).encode()
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    p = Project(root=write_project(tmp_path / "project"), runs_dir=tmp_path / "runs")
    for args in (["quick", "lr=0.5"], ["quick", "lr=0.25"]):
        assert p.run("run", *args, "-y").returncode == 0
    assert p.run("runs", "import", str(archive)).returncode == 0
    for cmd in (["runs"], ["compare"]):
        cp = p.run(*cmd)
        assert cp.returncode == 0, cp.stderr
        assert len(cp.stdout) < 5000, len(cp.stdout)  # 3 rows, not 3 MB of padding
        assert "L" * 199 + "…" in cp.stdout
    listed = p.run_json("runs", "--json")
    assert huge in [r["label"] for r in listed]  # the record keeps it whole


@pytest.mark.parametrize("step_run", ["../../../outside", "/etc", "20261130T101010-0a0b0c/../x"])
def test_a_pipeline_plan_naming_a_step_run_outside_the_runs_dir_is_refused(tmp_path: Path, step_run: str) -> None:
    # A restart of the pipeline loads each step's earlier run by that name, beside the pipeline.
    rec = {**json.loads(_record(ID_A)), "is_pipeline": True, "steps": [],
           "pipeline": {"steps": [{"op": "quick", "given": [], "run": step_run, "status": "completed"}]}}
    archive = _tar(tmp_path / "plan.tar.gz", [(ID_A, None), (f"{ID_A}/run.json", json.dumps(rec).encode())])
    runs_dir = tmp_path / "runs"
    cp = _import(archive, runs_dir)
    assert_clean_error(cp, 2, "pipeline", "not a run id", "nothing was imported")
    assert os.listdir(runs_dir) in ([], [".import.lock"])


def _pax_bomb(path: Path, size: int, first: bool) -> Path:
    """A .tar.gz holding a pax extended header that claims ``size`` bytes of zeros (a few hundred KB
    compressed per 100 MB): ``tarfile`` reads such a header whole into memory before parsing it."""
    import gzip

    with gzip.open(path, "wb", compresslevel=1) as f:
        if not first:
            for name, data in ((ID_A, None), (f"{ID_A}/run.json", _record(ID_A))):
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                else:
                    info.size = len(data)
                f.write(info.tobuf(tarfile.USTAR_FORMAT) + (data or b"") + b"\0" * (-len(data or b"") % 512))
        info = tarfile.TarInfo(f"{ID_A}/PaxHeader")
        info.type, info.size = tarfile.XHDTYPE, size
        f.write(info.tobuf(tarfile.USTAR_FORMAT))
        zeros = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            f.write(zeros)
        f.write(b"\0" * 1024)
    return path


MEASURED = textwrap.dedent(
    """\
    import resource, subprocess, sys
    cp = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(cp.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >> 10)
    print(cp.stderr, end="")
    """
)


@pytest.mark.parametrize("first", [True, False])
def test_a_pax_header_bomb_is_refused_without_reading_it_into_memory(tmp_path: Path, first: bool) -> None:
    from conftest import GUILDLITE

    archive = _pax_bomb(tmp_path / "bomb.tar.gz", 300 << 20, first)
    runs_dir = tmp_path / "runs"
    cp = subprocess.run([sys.executable, "-c", MEASURED, *GUILDLITE, "runs", "import", str(archive), "--runs-dir",
                         str(runs_dir)], capture_output=True, text=True, timeout=300, env=clean_env(), check=False)
    head, *stderr = cp.stdout.splitlines()
    code, rss_mb = map(int, head.split())
    assert code == 2 and len(stderr) == 1 and "nothing was imported" in stderr[0], cp.stdout
    assert rss_mb < 150, rss_mb  # the CLI's own size, not the header's 300 MB
    if not first:
        assert "header extension of 314572800 bytes" in stderr[0], stderr
    assert not [n for n in os.listdir(runs_dir) if n != ".import.lock"]
