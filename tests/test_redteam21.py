"""Issue 21 probed as a careful attacker would: hostile ``--filter`` expressions (deep nesting, a
date with an impossible offset) end in a clean exit 2, and NaN values compare the same whether a
filter is answered from the records or from the runs dir's index.

The runs: a script that parses ``sys.argv`` by hand and prints ``loss: nan`` (an op named ``nan``,
so ``op = nan`` must compare text, not two NaNs).
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TRACEBACK, Project, write_project

from guildlite._filter import FilterError, RunFacts, parse
from guildlite._filter_syntax import MAX_DEPTH

SCRIPT = textwrap.dedent(
    """\
    import sys

    value = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--v=")][0]
    print("step: 1")
    print("loss: 0.5")
    print("step: 2")
    print(f"loss: {value}")
    """
)
GUILDFILE = "operations:\n  nan:\n    main: probe.py\n    launcher: python\n    flags:\n      v: 1.0\n"


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, dict[str, str]]]:
    base = tmp_path_factory.mktemp("redteam21")
    p = Project(root=write_project(base / "project", GUILDFILE, {"probe.py": SCRIPT}), runs_dir=base / "runs")
    ids = {}
    try:
        for v in ("nan", "0.25"):
            cp = p.run("run", "-y", "nan", f"v={v}")
            assert cp.returncode == 0, cp.stderr
            ids[v] = p.run_dirs()[-1].name
        yield p, ids
    finally:
        p.cleanup()


def listed(p: Project, expr: str) -> set[str]:
    cp = p.run("runs", "--json", "--filter", expr)
    assert cp.returncode == 0, cp.stderr
    assert TRACEBACK not in cp.stderr
    return {r["id"] for r in json.loads(cp.stdout)}


@pytest.mark.parametrize("text", [
    "(" * 10_000 + "lr = 1" + ")" * 10_000,
    "not " * 10_000 + "lr = 1",
    "not (" * 5_000 + "lr = 1" + ")" * 5_000,
])
def test_deep_nesting_is_a_filter_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(FilterError, match="nested too deep"):
        parse(text)


def test_nesting_up_to_the_limit_parses_and_matches() -> None:
    one = RunFacts(id="x", op="train", status="completed", flags={"lr": 1})
    assert parse("(" * MAX_DEPTH + "lr = 1" + ")" * MAX_DEPTH).matches(one)
    assert parse("not " * MAX_DEPTH + "lr = 1").matches(one)  # an even number of nots
    assert not parse("not " * (MAX_DEPTH - 1) + "lr = 1").matches(one)


@pytest.mark.parametrize("expr", [
    "(" * 10_000 + "lr = 1" + ")" * 10_000,
    "started > 2026-12-01T12:33:19+99:00",
    "stopped = 2026-12-01T12:33-24:00",
])
def test_hostile_filters_exit_2_on_the_cli(proj: tuple[Project, dict[str, str]], expr: str) -> None:
    p, _ = proj
    for cmd in (["runs"], ["compare"], ["select", "--min", "loss"]):
        cp = p.run(*cmd, "--filter", expr)
        assert cp.returncode == 2, (cmd, cp.stderr)
        assert TRACEBACK not in cp.stderr
        assert "invalid filter" in cp.stderr


def test_nan_compares_equal_to_nan_from_records_and_from_the_index(proj: tuple[Project, dict[str, str]]) -> None:
    p, ids = proj
    index = p.runs_dir / ".index.sqlite"
    for _ in range(2):  # the first builds the index (or reads records), the second reads the index
        assert listed(p, "op = nan") == set(ids.values())
        assert listed(p, "loss = nan") == {ids["nan"]}
        assert listed(p, "v = nan") == {ids["nan"]}
        assert listed(p, "loss != nan") == {ids["0.25"]}
        assert listed(p, "loss < nan") == set()
    assert index.exists()
    index.unlink()
    assert listed(p, "loss = nan") == {ids["nan"]}


def test_an_offset_of_a_day_or_more_is_not_a_date() -> None:
    with pytest.raises(FilterError, match="started is compared with a date"):
        parse("started > 2026-01-01T00:00+25:00")


def test_the_api_says_a_filter_is_a_string(proj: tuple[Project, dict[str, str]]) -> None:
    import guildlite

    p, _ = proj
    with pytest.raises(TypeError, match="a filter is a string"):
        guildlite.runs(filter=123, runs_dir=p.runs_dir)  # type: ignore[arg-type]


@pytest.mark.parametrize("editor", ["false", "/nonexistent/editor"])
def test_note_edit_with_a_failing_editor_is_one_error_line(proj: tuple[Project, dict[str, str]], editor: str) -> None:
    p, ids = proj
    cp = p.run("note", ids["nan"], "--edit", env={"EDITOR": editor, "VISUAL": editor})
    assert cp.returncode == 1
    assert cp.stderr.startswith(f"guildlite: error: the editor {editor!r} ") and cp.stderr.count("\n") == 1, cp.stderr
    assert "no note written" in cp.stderr, cp.stderr
    assert not json.loads((p.runs_dir / ids["nan"] / "run.json").read_text()).get("notes")


@pytest.mark.parametrize("field, value", [("parent", "SELF"), ("trials", ["SELF"]), ("steps", ["SELF"])])
def test_import_refuses_a_run_that_is_its_own_parent_trial_or_step(
    proj: tuple[Project, dict[str, str]], tmp_path: Path, field: str, value: object
) -> None:
    p, ids = proj
    rid = "20250101T000000-abcdef"
    rec = json.loads((p.runs_dir / ids["0.25"] / "run.json").read_text())
    rec.update(id=rid, **{field: json.loads(json.dumps(value).replace("SELF", rid))})
    archive = tmp_path / "self.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        top = tarfile.TarInfo(rid)
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        data = json.dumps(rec).encode()
        member = tarfile.TarInfo(f"{rid}/run.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    cp = p.run("runs", "import", str(archive))
    assert cp.returncode == 2, cp.stderr
    assert "its own parent, trial or step" in cp.stderr and TRACEBACK not in cp.stderr
    assert not (p.runs_dir / rid).exists()


def test_export_to_an_empty_dest_is_refused_not_the_cwd(proj: tuple[Project, dict[str, str]]) -> None:
    p, ids = proj
    for args in ([ids["nan"], ""], [ids["nan"], " "], [""]):
        cp = p.run("runs", "export", *args)
        assert cp.returncode == 2, (args, cp.stderr)
        assert "DEST is empty" in cp.stderr
    assert not (p.root / ids["nan"]).exists()


@pytest.mark.parametrize("name", ["out.zip", "out.tar.xz", "out.tar.bz2", "OUT.ZIP"])
def test_export_to_an_archive_kind_it_does_not_write_is_refused(
    proj: tuple[Project, dict[str, str]], tmp_path: Path, name: str
) -> None:
    p, ids = proj
    cp = p.run("runs", "export", ids["nan"], str(tmp_path / name))
    assert cp.returncode == 2, cp.stderr
    assert "not this kind of file" in cp.stderr
    assert not (tmp_path / name).exists()
    cp = p.run("runs", "export", ids["nan"], str(tmp_path / "out.tgz"))
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / "out.tgz").is_file()


def test_stop_with_a_filter_that_matches_nothing_says_so_once(proj: tuple[Project, dict[str, str]]) -> None:
    p, _ = proj
    cp = p.run("stop", "--filter", "status = running")
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr.strip() == "no runs match --filter: nothing changed"


@pytest.mark.parametrize("regex", ["a{4294967296}", "(?:" * 5000 + "a" + ")" * 5000])
def test_a_regex_too_big_to_compile_is_a_filter_error(regex: str) -> None:
    with pytest.raises(FilterError, match="bad regular expression"):
        parse(f"label ~ '{regex}'")


@pytest.mark.parametrize("words", ["guildlite note ", "guildlite select ", "guildlite runs export "])
def test_the_new_run_commands_complete_run_ids(proj: tuple[Project, dict[str, str]], words: str) -> None:
    p, ids = proj
    env = {"_GUILDLITE_COMPLETE": "bash_complete", "COMP_WORDS": words + ids["nan"][-6:-3],
           "COMP_CWORD": str(len(words.split()))}
    cp = p.run(env=env)
    assert cp.returncode == 0, cp.stderr
    assert f"plain,{ids['nan'][-6:]}" in cp.stdout.splitlines(), cp.stdout
