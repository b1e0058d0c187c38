"""Filter expressions (``--filter``): the grammar (``_filter.parse``, hypothesis property tests),
what a comparison means on a run (``RunFacts``), errors with a caret at the column, and the option
on every command over real runs (``launcher: python``) and over the bench's synthetic runs,
including the index that serves it (a record or a scalars file changed since is seen at once).

The module's runs:

    A  train lr=0.1   epochs=2  -l base-a     loss 0.3, 0.1, 0.2 (last 0.2)   acc 0.5
    B  train lr=0.01  epochs=5  -l tuned      loss 0.6, 0.2, 0.4 (last 0.4)   acc 0.9
    C  train lr=0.05  code=3                  error; loss 0.15, 0.05, 0.1     acc 0.7
    D  other lr=0.3   x=7                     loss 0.9, 0.3, 0.6 ; the scalar x is 7.5 too (ambiguous)
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import TRACEBACK, Project, property_settings, write_project
from hypothesis import given
from hypothesis import strategies as st

from guildlite._filter import Filter, FilterError, RunFacts, facts_from_record, parse, select_filtered
from guildlite._filter_syntax import ATTRS, And, Compare, HasTag, Not, Or, Term, Value

TRAIN = textwrap.dedent(
    """\
    import sys

    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    lr = float(flags["lr"])
    for step, k in enumerate((3, 1, 2)):
        print(f"step: {step}")
        print(f"loss: {round(lr * k * (20 if lr < 0.05 else 1), 6)}")
    print(f"acc: {flags.get('acc', '0.5')}")
    if "x" in flags:
        print(f"x: {float(flags['x']) + 0.5}")
    sys.exit(int(flags.get("code", "0")))
    """
)
OP = """\
    main: train.py
    launcher: python
    flags:
      lr: 0.1
      epochs: 2
      code: 0
      acc: 0.5
"""
GUILDFILE = "operations:\n  train:\n" + OP + "  other:\n" + OP + "      x: 1\n"


class Runs:
    def __init__(self, proj: Project) -> None:
        self.proj = proj
        self.ids: dict[str, str] = {}

    def gl(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
        cp = self.proj.run(*args, env=env) if env else self.proj.run(*args)
        assert cp.returncode == code, (args, cp.returncode, cp.stdout, cp.stderr)
        assert TRACEBACK not in cp.stderr, cp.stderr
        return cp.stdout

    def matching(self, expr: str, *more: str) -> set[str]:
        """The module's run letters that `runs --filter expr` lists."""
        out = json.loads(self.gl("runs", "--all", "--json", "--filter", expr, *more))
        names = {v: k for k, v in self.ids.items()}
        return {names[r["id"]] for r in out if r["id"] in names}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    base = tmp_path_factory.mktemp("filter")
    proj = Project(root=write_project(base / "project", GUILDFILE, {"train.py": TRAIN}), runs_dir=base / "runs")
    r = Runs(proj)
    try:
        for letter, args, code in (("A", ["train", "lr=0.1", "-l", "base-a"], 0),
                                   ("B", ["train", "lr=0.01", "epochs=5", "acc=0.9", "-l", "tuned"], 0),
                                   ("C", ["train", "lr=0.05", "code=3", "acc=0.7"], 3),
                                   ("D", ["other", "lr=0.3", "x=7"], 0)):
            r.gl("run", "-y", *args, code=code)
            r.ids[letter] = proj.run_dirs()[-1].name
        yield r
    finally:
        proj.cleanup()


# --- the grammar ----------------------------------------------------------------------------------------


def caret_column(e: FilterError) -> int:
    """The column the caret line points at (0-based, in the shown expression)."""
    lines = str(e).splitlines()
    assert lines[-2].startswith("  ") and lines[-1].strip() == "^", str(e)
    return lines[-1].index("^") - 2


@pytest.mark.parametrize("text, column, words", [
    ("lr >", 4, "expected a value"),
    ("lr >= 0.1 and", 13, "expected a name"),
    ("(lr = 1", 7, "expected ')'"),
    ("lr = 1 loss < 2", 7, "expected 'and', 'or'"),
    ("started > yesterday", 10, "compared with a date"),
    ("time > 5m", 7, "seconds"),
    ("status = done", 9, "unknown status"),
    ('label ~ "("', 9, "regular expression"),
    ('label = "open', 8, "unterminated"),
    ("lr ! 3", 3, "unknown operator"),
    ("", 0, "empty filter"),
    ("min(flag.lr) < 1", 4, "scalar"),
    ("tag:", 4, "tag name"),
    ("lr", 2, "expected an operator"),
    ("and lr = 1", 0, "expected a name"),
    ("lr = 1 or or x = 2", 10, "expected a name"),
    ("état > 1 and (x =", 17, "expected a value"),
])
def test_errors_point_at_the_column(text: str, column: int, words: str) -> None:
    with pytest.raises(FilterError) as info:
        parse(text)
    assert words in str(info.value)
    assert caret_column(info.value) == column == info.value.column
    assert f"(column {column + 1})" in str(info.value)
    assert info.value.exit_code == 2


def test_a_wide_character_before_the_error_moves_the_caret_by_two() -> None:
    with pytest.raises(FilterError) as info:
        parse("ラベル = ")
    shown, caret = str(info.value).splitlines()[-2:]
    assert caret.index("^") == 2 + 3 * 2 + 3  # three wide characters, then " = "


def test_a_newline_in_the_expression_keeps_the_caret_aligned() -> None:
    with pytest.raises(FilterError) as info:
        parse("lr = 1\nand ! x")
    shown, caret = str(info.value).splitlines()[-2:]
    assert "\n" not in shown and shown[caret.index("^")] == "!"


@pytest.mark.parametrize("text, tree", [
    ("lr >= 0.01", Compare(Term("name", "lr"), ">=", Value("0.01"))),
    ("a = 1 and b = 2 or c = 3", Or((And((Compare(Term("name", "a"), "=", Value("1")),
                                          Compare(Term("name", "b"), "=", Value("2")))),
                                     Compare(Term("name", "c"), "=", Value("3"))))),
    ("a = 1 and (b = 2 or c = 3)", And((Compare(Term("name", "a"), "=", Value("1")),
                                        Or((Compare(Term("name", "b"), "=", Value("2")),
                                            Compare(Term("name", "c"), "=", Value("3"))))))),
    ("not not tag:best", Not(Not(HasTag("best")))),
    ("NOT a == x AND b != 'y z'", And((Not(Compare(Term("name", "a"), "=", Value("x"))),
                                       Compare(Term("name", "b"), "!=", Value("y z", quoted=True))))),
    ("min(loss) < 1", Compare(Term("scalar", "loss", "min"), "<", Value("1"))),
    ("max(scalar.acc)>.9", Compare(Term("scalar", "acc", "max"), ">", Value(".9"))),
    ("flag.x = 1", Compare(Term("flag", "x"), "=", Value("1"))),
    ("scalar.train/loss<2", Compare(Term("scalar", "train/loss"), "<", Value("2"))),
    ("tags ~ '^b'", Compare(Term("attr", "tag"), "~", Value("^b", quoted=True))),
    ('"time" > 3', Compare(Term("name", "time"), ">", Value("3"))),
    ("started > 2026-11-01T10:00:00Z", Compare(Term("attr", "started"), ">", Value("2026-11-01T10:00:00Z"))),
])
def test_the_tree(text: str, tree: Any) -> None:
    assert parse(text).root == tree
    assert parse(str(parse(text))) == parse(text)


_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
_VALUES = st.one_of(
    st.builds(Value, st.sampled_from(["0.01", "-3", "1e-3", ".5", "x", "completed", "a-b", "true"])),
    st.builds(Value, st.text(max_size=8), st.just(True)),
)


def _compare(term: Term, op: str, value: Value) -> Compare:
    if term.kind == "attr" and term.name in ("started", "stopped"):
        value = Value("2026-11-01")
    if term.kind == "attr" and term.name == "time":
        value = Value("60")
    if term.kind == "attr" and term.name == "status":
        value = Value("completed")
    if op in ("~", "!~") or (term.kind == "attr" and term.name in ("tag", "started", "stopped", "time")):
        op = {"tag": "=", "started": "<", "stopped": ">", "time": ">="}.get(term.name, op) \
            if term.kind == "attr" else op
        if op in ("~", "!~"):
            value = Value("^a.c$", quoted=True)
    return Compare(term, op, value)


_TERMS = st.one_of(
    st.builds(Term, st.just("name"), _NAMES),
    st.builds(Term, st.sampled_from(["flag", "scalar"]), _NAMES),
    st.builds(Term, st.just("scalar"), _NAMES, st.sampled_from(["min", "max"])),
    st.builds(Term, st.just("attr"), st.sampled_from(ATTRS)),
)
_LEAVES = st.one_of(
    st.builds(_compare, _TERMS, st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "~", "!~"]), _VALUES),
    st.builds(HasTag, _NAMES),
)
_TREES = st.recursive(_LEAVES, lambda kids: st.one_of(
    st.builds(Not, kids),
    st.builds(lambda xs: And(tuple(xs)), st.lists(kids, min_size=2, max_size=3)),
    st.builds(lambda xs: Or(tuple(xs)), st.lists(kids, min_size=2, max_size=3)),
), max_leaves=8)


@property_settings(150)
@given(_TREES)
def test_every_tree_reads_back_from_its_text(tree: Any) -> None:
    text = str(tree)
    assert parse(text).root == tree, text  # nested and/or keep their parentheses


_PIECES = st.sampled_from(["lr", "loss", " ", "and", "or", "not", "(", ")", "=", "<=", ">", "!=", "~", "!~", "!",
                           "'", '"', "\\", "tag:", "min(", "max(", "flag.", "scalar.", "0.1", "2026-11-01", "Z",
                           "status", "started", "time", "completed", ",", "\n", "é", "ラ", "\x00", "[", "*"])


@property_settings(300)
@given(st.one_of(st.text(max_size=30), st.lists(_PIECES, max_size=14).map("".join)))
def test_any_text_parses_or_fails_with_a_filter_error(text: str) -> None:
    try:
        filt = parse(text)
    except FilterError as e:
        assert 0 <= e.column <= len(text)
        assert caret_column(e) >= e.column  # a wide character before it takes two columns
        return
    assert parse(str(filt)) == filt  # what parses writes back as the same filter
    facts = RunFacts(id="r", op="train", status="completed", label="base", tags=("best",), started=0.0,
                     stopped=5.0, time=5.0, flags={"lr": 0.1}, scalars={"loss": (0.2, 0.1, 0.3)}, notes="n")
    assert filt.matches(facts) in (True, False)


# --- what a comparison means ----------------------------------------------------------------------------


def facts(**kw: Any) -> RunFacts:
    return RunFacts(id="r1", **kw)


@pytest.mark.parametrize("expr, kw, expected", [
    ("lr = 0.01", {"flags": {"lr": 0.01}}, True),
    ("lr = 1e-2", {"flags": {"lr": 0.01}}, True),
    ("lr = 0.010", {"flags": {"lr": "0.01"}}, True),  # a numeric text is a number
    ("epochs > 10", {"flags": {"epochs": 9}}, False),  # not "9" > "10" as text
    ("epochs > 10", {"flags": {"epochs": "9"}}, False),
    ("epochs >= 9.0", {"flags": {"epochs": 9}}, True),
    ("lr = '0.010'", {"flags": {"lr": 0.01}}, False),  # quoted: text
    ("opt = adam", {"flags": {"opt": "adam"}}, True),
    ("opt != adam", {"flags": {"opt": "sgd"}}, True),
    ("opt < b", {"flags": {"opt": "adam"}}, True),
    ("opt > 3", {"flags": {"opt": "adam"}}, False),  # a text has no order against a number
    ("opt != 3", {"flags": {"opt": "adam"}}, True),
    ("amp = true", {"flags": {"amp": True}}, True),
    ("amp = no", {"flags": {"amp": False}}, True),
    ("amp = 1", {"flags": {"amp": True}}, False),  # a boolean is not a number
    ("seed = null", {"flags": {"seed": None}}, True),
    ("seed != null", {"flags": {"seed": 3}}, True),
    ("seed > 1", {"flags": {"seed": None}}, False),
    ("missing = 1", {}, False),
    ("missing != 1", {}, False),  # what a run does not have compares false, whatever the operator
    ("not missing = 1", {}, True),
    ("loss < 0.3", {"scalars": {"loss": (0.25, 0.1, 0.9)}}, True),  # its last value
    ("loss < 0.2", {"scalars": {"loss": (0.25, 0.1, 0.9)}}, False),
    ("min(loss) < 0.2", {"scalars": {"loss": (0.25, 0.1, 0.9)}}, True),
    ("max(loss) >= 0.9", {"scalars": {"loss": (0.25, 0.1, 0.9)}}, True),
    ("last(loss) = 0.25", {"scalars": {"loss": (0.25, 0.1, 0.9)}}, True),
    ("flag.x = 1 and scalar.x = 2", {"flags": {"x": 1}, "scalars": {"x": (2.0, 2.0, 2.0)}}, True),
    ("label ~ base", {"label": "my-base-run"}, True),  # a search, not a full match
    ("label ~ '^base'", {"label": "my-base-run"}, False),
    ("label ~ '(?i)BASE'", {"label": "my-base-run"}, True),
    ("label !~ base", {"label": "tuned"}, True),
    ("label = ''", {}, True),
    ("lr ~ '^0\\.0'", {"flags": {"lr": 0.01}}, True),
    ("tag:best", {"tags": ("best", "x")}, True),
    ("tag:best", {"tags": ("bestest",)}, False),
    ("tag = best", {"tags": ("best",)}, True),
    ("tag != best", {"tags": ("x",)}, True),
    ("tag ~ '^be'", {"tags": ("x", "bert")}, True),
    ('tag:"two words"', {"tags": ("two words",)}, True),
    ("time > 60", {"time": 61.5}, True),
    ("time > 60", {"time": None}, False),
    ("time <= 1.5", {"time": 1.5}, True),
    ("status = completed and op = train", {"status": "completed", "op": "train"}, True),
    ("id ~ r1", {}, True),
    ("note ~ '^second'", {"notes": "first\nsecond line"}, True),  # ^ at each line
    ("note ~ 'nothing'", {"notes": "first"}, False),
])
def test_comparisons(expr: str, kw: dict[str, Any], expected: bool) -> None:
    assert parse(expr).matches(facts(**kw)) is expected


def test_a_name_that_is_both_a_flag_and_a_scalar_asks_for_flag_or_scalar() -> None:
    both = facts(flags={"x": 1}, scalars={"x": (2.0, 2.0, 2.0)})
    with pytest.raises(FilterError) as info:
        parse("lr = 1 or x > 1").matches(both)
    assert "flag.x" in str(info.value) and "scalar.x" in str(info.value)
    assert caret_column(info.value) == 10
    assert parse("flag.x = 1").matches(both) and parse("scalar.x = 2").matches(both)
    assert parse("x = 1").matches(facts(flags={"x": 1}))  # one or the other: no question


def test_dates_are_local_time_unless_they_say_z(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving time
    time.tzset()
    try:
        at = datetime(2026, 11, 1, 20, 0, tzinfo=timezone.utc).timestamp()  # 2026-11-02 05:00 in Tokyo
        run = facts(started=at)
        assert parse("started = 2026-11-02").matches(run)  # the local day
        assert not parse("started = 2026-11-01").matches(run)
        assert parse("started = 2026-11-01Z").matches(run)  # the UTC day
        assert parse("started < 2026-11-02T05:00:01").matches(run)
        assert not parse("started < 2026-11-02T05:00:00").matches(run)
        assert parse("started = 2026-11-01T20:00Z").matches(run)
        assert parse("started = '2026-11-02 05:00'").matches(run)  # a space instead of T, quoted
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("expr, expected", [
    ("started > 2026-11-01", True),  # after that day's (local) midnight
    ("started < 2026-11-01", False),
    ("started = 2026-11-01", True),  # within that day
    ("started != 2026-11-01", False),
    ("started = 2026-11-01T10:30", True),  # within that minute
    ("started = 2026-11-01T10:31", False),
    ("started >= 2026-11-01T10:30:15", True),
    ("started > 2026-11-01T10:30:15", False),
    ("started = 2026-11", True),  # a month
    ("started > 2026-11-01T10:30:15Z", "tz"),  # UTC: depends on the zone, checked below
    ("stopped > 2026-01-01", False),  # no stop time: false
])
def test_times(expr: str, expected: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        at = datetime(2026, 11, 1, 10, 30, 15).timestamp()  # local
        run = facts(started=at)
        if expected == "tz":  # daylight saving time ends at 02:00 on 1 Nov 2026: 10:30:15 EST is 15:30:15Z
            assert parse("started >= 2026-11-01T15:30:15Z").matches(run)
            assert not parse("started > 2026-11-01T15:30:15Z").matches(run)
            assert parse("started = 2026-11-01T10:30:15-05:00").matches(run)
            return
        assert parse(expr).matches(run) is expected
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_facts_from_a_record() -> None:
    rec = {"id": "r", "op": "t", "status": "completed", "label": "L", "tags": ["a"], "flags": {"lr": 1},
           "started": "2026-11-01T10:00:00+00:00", "stopped": "2026-11-01T10:01:30.500+00:00",
           "notes": [{"time": "2026-11-01T10:02:00+00:00", "text": "one"}, {"time": "x", "text": "two"}]}
    f = facts_from_record(rec, {"loss": {"last": 1, "min": 0.5, "max": 2, "step": 3, "count": 4}})
    assert f.time == 90.5 and f.tags == ("a",) and f.notes == "one\ntwo" and f.scalars == {"loss": (1.0, 0.5, 2.0)}
    assert f.started == datetime(2026, 11, 1, 10, tzinfo=timezone.utc).timestamp()
    assert isinstance(parse("lr = 1"), Filter)


# --- the option, on real runs ---------------------------------------------------------------------------


def test_runs_filter_on_flags_scalars_and_attributes(runs: Runs) -> None:
    assert runs.matching("lr >= 0.05") == {"A", "C", "D"}
    assert runs.matching("lr < 0.05 or op = other") == {"B", "D"}
    assert runs.matching("loss < 0.3") == {"A", "C"}  # last values: A 0.2, B 0.4, C 0.1, D 0.6
    assert runs.matching("min(loss) <= 0.1") == {"A", "C"}
    assert runs.matching("max(loss) > 0.5") == {"B", "D"}
    assert runs.matching("status = error") == {"C"}
    assert runs.matching("status != error and epochs = 5") == {"B"}
    assert runs.matching("label ~ base") == {"A"}
    assert runs.matching("not label ~ base and flag.acc >= 0.7") == {"B", "C"}  # acc: a flag and a scalar
    assert runs.matching("started > 2000-01-01 and started < 2999-01-01") == {"A", "B", "C", "D"}
    assert runs.matching("time >= 0 and time < 600") == {"A", "B", "C", "D"}
    assert runs.matching("lr >= 0.05", "--op", "train") == {"A", "C"}  # with the other options


def test_a_name_both_flag_and_scalar_is_an_error_with_a_caret(runs: Runs) -> None:
    cp = runs.proj.run("runs", "--filter", "x > 1")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr, cp.stderr
    assert "flag.x" in cp.stderr and "scalar.x" in cp.stderr
    assert runs.matching("flag.x = 7") == {"D"} and runs.matching("scalar.x = 7.5") == {"D"}


def test_a_bad_filter_exits_2_with_a_caret_on_every_command(runs: Runs) -> None:
    for cmd in (["runs"], ["compare"], ["view", "--out", "x.html"], ["tensorboard", "--no-server"],
                ["runs", "delete", "-y"], ["label", "L"], ["tag", "+t"], ["stop"], ["select", "--min", "loss"]):
        cp = runs.proj.run(*cmd, "--filter", "lr >= 0.1 and (")
        assert cp.returncode == 2, (cmd, cp.stdout, cp.stderr)
        assert TRACEBACK not in cp.stderr
        assert cp.stderr.splitlines()[-1] == "  " + " " * 15 + "^", (cmd, cp.stderr)
        assert "guildlite: error: invalid filter" in cp.stderr


def test_an_unknown_name_warns_and_matches_nothing(runs: Runs) -> None:
    cp = runs.proj.run("runs", "--filter", "lrr > 0")
    assert cp.returncode == 0 and "no run here has a flag or scalar named 'lrr'" in cp.stderr
    assert runs.matching("lrr > 0") == set()
    assert runs.matching("not lrr > 0") == {"A", "B", "C", "D"}


def test_compare_view_and_tensorboard_take_the_filter(runs: Runs, tmp_path: Path) -> None:
    rows = json.loads(runs.gl("compare", "--json", "--filter", "loss < 0.3 and op = train"))
    assert sorted(r["id"] for r in rows) == sorted([runs.ids["A"], runs.ids["C"]])
    assert all("loss" in r for r in rows)
    rows = json.loads(runs.gl("compare", "--json", "--filter", "epochs = 5"))  # flags only: scalars still shown
    assert [r["id"] for r in rows] == [runs.ids["B"]] and rows[0]["loss"] == pytest.approx(0.4)
    out = tmp_path / "page.html"
    runs.gl("view", "--out", str(out), "--filter", "label ~ tuned")
    page = out.read_text()
    assert runs.ids["B"] in page and runs.ids["A"] not in page and runs.ids["D"] not in page
    logdir = tmp_path / "tb"
    runs.gl("tensorboard", "--no-server", "--logdir", str(logdir), "--filter", "status = error")
    assert [p.name for p in logdir.iterdir() if p.is_dir()] and all(
        runs.ids["C"] in p.name for p in logdir.iterdir() if p.is_dir())


def test_label_tag_and_delete_take_the_filter(runs: Runs) -> None:
    runs.gl("tag", "--filter", "loss < 0.3", "+good")
    assert runs.matching("tag:good") == {"A", "C"}
    runs.gl("label", "--filter", "tag:good and status = completed", "winner")
    assert runs.matching("label = winner") == {"A"}
    cp = runs.proj.run("tag", "--filter", "lr > 99", "+none")
    assert cp.returncode == 0 and "no runs match" in cp.stderr
    runs.gl("tag", "--filter", "tag:good", "-good")
    assert runs.matching("tag:good") == set()
    # stop: nothing here is running
    cp = runs.proj.run("stop", "--filter", "op = train")
    assert cp.returncode == 0 and "nothing to stop" in cp.stderr
    # delete: the runs RUNS selects that the filter matches, to the trash
    out = runs.gl("runs", "delete", "-y", runs.ids["C"], runs.ids["D"], "--filter", "op = other")
    assert runs.ids["D"] in out and runs.ids["C"] not in out
    assert runs.matching("lr > 0") == {"A", "B", "C"}
    runs.gl("runs", "restore", "-y")
    assert runs.matching("lr > 0") == {"A", "B", "C", "D"}


def test_the_index_never_serves_a_stale_answer(runs: Runs) -> None:
    assert runs.matching("loss < 0.3") == {"A", "C"}  # the index has rows for every run now
    a = runs.proj.runs_dir / runs.ids["A"]
    with open(a / "scalars.jsonl", "a") as f:  # a scalar logged since
        f.write(json.dumps({"step": 9, "key": "loss", "value": 5.0}) + "\n")
    assert runs.matching("loss < 0.3") == {"C"}
    assert runs.matching("loss = 5") == {"A"}
    runs.gl("label", runs.ids["B"], "relabelled")  # a record changed since
    assert runs.matching("label = relabelled") == {"B"}
    rec = json.loads((a / "run.json").read_text())
    rec["flags"]["lr"] = 0.5  # a record edited by hand: same size, same second
    (a / "run.json").write_text(json.dumps(rec))
    assert runs.matching("lr = 0.5") == {"A"}
    rec["flags"]["lr"] = 0.1
    (a / "run.json").write_text(json.dumps(rec))
    assert runs.matching("lr = 0.5") == set()


# --- over the bench's synthetic runs ------------------------------------------------------------------


def test_filters_over_synthetic_runs_agree_with_a_direct_evaluation(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from _common import make_runs
    finally:
        sys.path.pop(0)
    runs_dir = tmp_path / "runs"
    make_runs(runs_dir, 400, error_every=7)
    proj = Project(root=write_project(tmp_path / "p", GUILDFILE, {"train.py": TRAIN}), runs_dir=runs_dir)

    def direct(expr: str) -> list[str]:
        filt = parse(expr)
        out = []
        for d in sorted(runs_dir.iterdir(), reverse=True):
            if d.name.startswith("."):
                continue
            rec = {**json.loads((d / "run.json").read_text()), "id": d.name}
            rows = [json.loads(line) for line in (d / "scalars.jsonl").read_text().splitlines()]
            vals = [r["value"] for r in rows]
            summary = {"loss": {"last": vals[-1], "min": min(vals), "max": max(vals)}} if vals else {}
            if filt.matches(facts_from_record(rec, summary)):
                out.append(d.name)
        return out

    for expr in ("lr >= 0.05", "loss < 0.15 and epochs = 2", "status = error or min(loss) > 0.16",
                 "not (lr < 0.02 or epochs > 3)", "batch-size = 64 and max(loss) <= 0.2",
                 "op = train and status != error and time > 4 and lr > 0.05",
                 "started = 2026-01-01Z and label = '' and not tag:x and note !~ y and epochs = 1",
                 "id ~ '-0[0-9a-f]{2}000$' and stopped < 2026-01-02"):
        for _ in range(2):  # cold (the index built), then warm (served from it)
            cp = proj.run("runs", "--all", "--json", "--filter", expr)
            assert cp.returncode == 0, cp.stderr
            assert [r["id"] for r in json.loads(cp.stdout)] == direct(expr), expr
        first = proj.run("runs", "-n", "3", "--json", "--filter", expr)
        assert [r["id"] for r in json.loads(first.stdout)] == direct(expr)[:3]


def test_select_filtered_on_run_objects(runs: Runs) -> None:
    from guildlite._selection import RunList

    everything = RunList(runs.proj.runs_dir)[:]
    picked = select_filtered(everything, "op = train and min(loss) < 0.15")
    assert {r.id for r in picked} == {runs.ids["A"], runs.ids["C"]}
    assert select_filtered(everything, None) == everything
    with pytest.raises(FilterError):
        select_filtered(everything, "lr >")


def test_help_names_the_option_everywhere(runs: Runs) -> None:
    for cmd in (["runs"], ["compare"], ["view"], ["tensorboard"], ["runs", "delete"], ["label"], ["tag"], ["stop"],
                ["select"]):
        out = runs.gl(*cmd, "--help")
        assert re.search(r"--filter EXPR", out), cmd
