"""Bad input: property tests (hypothesis) and path-safety checks.

The contract: arbitrary input to the flag parser and value decoder, batch planning, the guildfile
loader and run selectors yields a valid result or one of guildlite's named errors (a
``GuildliteError`` subclass) with a non-empty message -- never another exception. Path safety:
nothing escapes the project or the runs dir, flag values never reach a shell, symlink loops do
not hang staging, and a plugin declaration can only import the module it names.

Inputs that once broke that contract are kept as plain regression tests below the properties.
Examples are derandomized (stable CI); GUILDLITE_EXPLORE=1 searches with fresh random ones.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from _faults import base_env, guildlite, new_marker
from conftest import TRACEBACK
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from guildlite import GuildfileError, GuildliteError, Plugin
from guildlite._batch import count_trials, is_batch, plan_trials
from guildlite._errors import RunNotFoundError
from guildlite._flag_values import Grid, Random, parse_assignments, parse_value, resolve
from guildlite._flags import FLAG_TYPES, FlagDef, FlagError, coerce, decode
from guildlite._guildfile import Guildfile, PluginSpec, load
from guildlite._plugin_loader import load_plugins
from guildlite._run import Run
from guildlite._selection import select_runs

EXPLORE = bool(os.environ.get("GUILDLITE_EXPLORE"))


def fuzz(n: int) -> Any:
    return settings(
        max_examples=n * 20 if EXPLORE else n,
        deadline=None,
        derandomize=not EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


def outcome(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", the GuildliteError); any other exception fails the test.

    Inside a property test each outcome is a hypothesis event (--hypothesis-show-statistics).
    """
    try:
        got = "ok", fn(*args, **kw)
    except GuildliteError as e:
        assert str(e).strip(), f"{type(e).__name__} with an empty message"
        assert e.exit_code in (1, 2)
        got = "error", e
    _event(f"{getattr(fn, '__name__', fn)}: {got[0]}" + (f" ({type(got[1]).__name__})" if got[0] == "error" else ""))
    return got


def _event(text: str) -> None:
    from hypothesis import event
    from hypothesis.errors import InvalidArgument

    try:
        event(text)
    except InvalidArgument:  # not inside a property test
        pass


# --- strategies ------------------------------------------------------------------------------------

FUNCS = ["range", "linspace", "logspace", "uniform", "loguniform", "randint", "choice"]
small_num = st.one_of(
    st.integers(-50, 50).map(str),
    st.floats(-100, 100, allow_nan=False).map(lambda x: f"{x:.4g}"),
    st.sampled_from(["0", "1", "-1", "1e-3", "1e2", ".5", "5.", "+3", "inf", "nan", "-inf", "x", "", " ", "true",
                     "'1'", '"a"', "1_000", "0x10", "1e", "--1"]),
)
item = st.one_of(small_num, st.text(max_size=6))
batch_text = st.one_of(
    st.builds(lambda f, parts, sep: f"{f}[{sep.join(parts)}]",
              st.sampled_from(FUNCS + ["foo", "Range", "list", ""]), st.lists(small_num, max_size=4),
              st.sampled_from([":", ",", ";", " : "])),
    st.builds(lambda items: "[" + ",".join(items) + "]", st.lists(item, max_size=6)),
    st.builds(lambda a, b: a + b, st.sampled_from(["[", "]", "[[", "range[", "choice[", "[]", "[,]", "uniform"]),
              st.text(max_size=8)),
)
value_text = st.one_of(st.text(max_size=40), small_num, batch_text,
                       st.builds(lambda q, t: q + t + q, st.sampled_from(["'", '"']), st.text(max_size=10)))


def _check_plain(text: str, value: Any) -> None:
    assert isinstance(value, (int, float, bool, str, type(None))), type(value)
    if isinstance(value, str):
        s = text.strip()
        assert value == text or value == s[1:-1]
    if type(value) is int:
        assert value == int(text.strip())


@fuzz(600)
@given(st.one_of(st.text(), small_num, st.from_regex(r"\s*[-+]?\d{1,40}(\.\d*)?([eE][-+]?\d{1,3})?\s*", fullmatch=True)))
def test_decode_any_text(text: str) -> None:
    kind, value = outcome(decode, text)
    if kind == "ok":
        _check_plain(text, value)


HUGE_INTS = ["1" * 4301, "-" + "9" * 5000]


@pytest.mark.parametrize("text", HUGE_INTS)
def test_huge_integer_text_decodes(text: str) -> None:
    """Past Python's int-string limit (4300 digits) decoding once raised ValueError."""
    kind, got = outcome(parse_assignments, [f"n={text}"])
    if kind == "ok":
        _check_plain(text, got["n"])


@pytest.mark.parametrize("text", HUGE_INTS)
def test_huge_integer_text_for_an_int_flag_is_a_flag_error(text: str) -> None:
    kind, err = outcome(resolve, "op", {"n": FlagDef("n", default=1)}, parse_assignments([f"n={text}"]))
    assert kind == "error" and "'n'" in str(err)


@fuzz(500)
@given(value_text)
def test_parse_value_any_text(text: str) -> None:
    kind, v = outcome(parse_value, "lr", text)
    if kind == "error":
        assert "'lr'" in str(v)  # the message names the flag
    if kind != "ok":
        return
    if isinstance(v, Grid):
        assert isinstance(v.values, tuple) and 1 <= len(v.values) <= 1_000_000
    elif isinstance(v, Random):
        assert v.kind in ("uniform", "loguniform", "randint", "choice") and v.args
        if v.kind != "choice":
            lo, hi = v.args
            assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    else:
        _check_plain(text, v)


@fuzz(300)
@given(st.lists(st.one_of(st.builds(lambda n, t: f"{n}={t}", st.sampled_from(["lr", " lr ", "a", "b-c", "", "x.y"]),
                                    value_text),
                          st.text(max_size=20)), max_size=5))
def test_parse_assignments_any(args: list[str]) -> None:
    kind, got = outcome(parse_assignments, args)
    if kind == "ok":
        assert len(got) == len(args)
        assert all(k and k == k.strip() for k in got)


# FlagDefs as the guildfile loader accepts them (its default satisfies its own rules).
def _typed_value(t: str | None) -> st.SearchStrategy[Any]:
    return {
        "int": st.integers(-100, 100),
        "float": st.floats(-100, 100, allow_nan=False),
        "bool": st.booleans(),
        "str": st.text(max_size=8),
        "path": st.text(max_size=8),
        "list": st.lists(st.integers(-5, 5), max_size=3),
        None: st.one_of(st.none(), st.integers(-5, 5), st.floats(-5, 5), st.booleans(), st.text(max_size=4)),
    }[t]


@st.composite
def flag_defs(draw: Any) -> dict[str, FlagDef]:
    defs = {}
    for name in draw(st.lists(st.sampled_from(["lr", "epochs", "opt", "flag", "p"]), unique=True, max_size=4)):
        t = draw(st.sampled_from([*FLAG_TYPES, None]))
        choices = draw(st.one_of(st.none(), st.lists(_typed_value(t), min_size=1, max_size=4)))
        lo = draw(st.one_of(st.none(), st.integers(-10, 10))) if t in ("int", "float", None) else None
        hi = draw(st.one_of(st.none(), st.integers(-10, 50))) if t in ("int", "float", None) else None
        default = draw(st.one_of(st.sampled_from(choices) if choices else _typed_value(t), st.none()))
        fd = FlagDef(name, default=default, type=t, choices=tuple(choices) if choices else None, min=lo, max=hi,
                     required=draw(st.booleans()))
        if default is not None:
            try:
                coerce(fd, default)
            except FlagError:
                continue  # the loader rejects such a flag
        defs[name] = fd
    return defs


def _assert_valid(fd: FlagDef, value: Any) -> None:
    t = fd.value_type
    if value is None:
        return
    if t == "int":
        assert type(value) is int
    elif t == "float":
        assert type(value) is float
    elif t == "bool":
        assert type(value) is bool
    elif t in ("str", "path"):
        assert type(value) is str
    elif t == "list":
        assert type(value) is list
    if fd.choices is not None:
        assert value in fd.choices
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert fd.min is None or value >= fd.min
        assert fd.max is None or value <= fd.max


@fuzz(500)
@given(flag_defs(), st.lists(st.tuples(st.sampled_from(["lr", "epochs", "opt", "flag", "p", "nope"]), value_text),
                             max_size=4, unique_by=lambda t: t[0]),
       st.one_of(st.none(), st.integers(1, 30)), st.integers(0, 3))
def test_resolve_and_plan_trials(defs: dict[str, FlagDef], given_: list[tuple[str, str]], max_trials: int | None,
                                 seed: int) -> None:
    kind, given_values = outcome(parse_assignments, [f"{n}={t}" for n, t in given_])
    if kind != "ok":
        return
    kind, values = outcome(resolve, "op", defs, given_values)
    if kind != "ok":
        return
    assert list(values) == list(defs)
    for name, v in values.items():
        if isinstance(v, Grid):
            for x in v.values:
                _assert_valid(defs[name], x)
        elif not isinstance(v, Random):
            _assert_valid(defs[name], v)
    if not is_batch(values):
        return
    n = count_trials(values, max_trials)
    assume(n <= 5000)  # a huge product is its own test (test_huge_grid_is_refused_before_planning)
    kind, trials = outcome(plan_trials, defs, values, max_trials=max_trials, seed=seed)
    if kind != "ok":
        # A FlagError here is a named error, but also test_batch.py's rounding bug: only that one.
        assert "above the maximum" in str(trials) or "below the minimum" in str(trials), trials
        return
    assert len(trials) == n
    for t in trials:
        assert list(t) == list(values)
        for name, x in t.items():
            if not isinstance(values[name], (Grid, Random)):
                assert x == values[name]
            elif isinstance(values[name], Grid):
                assert x in values[name].values
    assert plan_trials(defs, values, max_trials=max_trials, seed=seed) == trials  # same seed, same trials


# --- guildfile loader --------------------------------------------------------------------------------

KEYS = ["operations", "plugins", "runs-dir", "train", "main", "flags", "default", "type", "choices", "min", "max",
        "required", "description", "nproc-per-node", "gpus-per-trial", "launcher", "sourcecode", "include",
        "exclude", "max-size", "class", "name", "args", "priority", "flags-dest", "flags-env-prefix",
        "flags-import", "output-scalars", "arg-name", "arg-switch", "arg-skip", "lr", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 6), st.floats(allow_nan=True),
                    st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=12),
                    st.sampled_from(["job.py", "job.py --a 1", "../job.py", "/etc/x.py", "pkg.mod", "python", "torchrun",
                                     "int", "float", "args", "env", "config:f.json", "config:../x.yml", "all", "off",
                                     "glfuzz:Ok", "os:system", "(?P<loss>\\S+)", "(", "**", "*.py", "../*"]))
trees = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(st.sampled_from(KEYS), kids, max_size=5)),
                     max_leaves=25)


globs = st.sampled_from(["*.py", "**", "sub/**", "sub/", "*.ckpt", "../*", "/etc/*", "a/../../b", "[", ""])
flag_entry = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.fixed_dictionaries({}, optional={
        "default": scalars,
        "type": st.sampled_from([*FLAG_TYPES, "bad", 1]),
        "choices": st.one_of(st.lists(st.one_of(st.integers(-2, 5), st.text(max_size=3), st.none()), max_size=3),
                             scalars),
        "min": st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)),
        "max": st.one_of(st.integers(0, 50), st.floats(allow_nan=True)),
        "required": st.one_of(st.booleans(), st.just("yes")),
        "description": st.one_of(st.text(max_size=5), st.integers()),
        "arg-name": st.sampled_from(["--lr", "lr", "", "a b", "-x", 3]),
        "arg-switch": st.one_of(st.booleans(), st.just(1)),
        "arg-skip": st.one_of(st.booleans(), st.just("no")),
        "bogus": scalars,
    }),
)
plugin_entry = st.one_of(
    st.sampled_from(["glfuzz:Ok", "glfuzz.Ok", "nosuch", "os:system", "", 3]),
    st.fixed_dictionaries({}, optional={
        "class": st.sampled_from(["glfuzz:Ok", "os:system", "glfuzz:Nope", "", 1]),
        "name": st.sampled_from(["wandb", ""]),
        "args": st.one_of(st.dictionaries(st.text(max_size=3), scalars, max_size=2), scalars),
        "priority": st.one_of(st.integers(-5, 500), st.booleans(), st.text(max_size=2)),
    }),
)
op_entry = st.fixed_dictionaries(
    {"main": st.one_of(st.sampled_from(["job.py", "job.py --x 1", "glfuzz", "json.tool", "nope.py", "../job.py",
                                        "/etc/passwd", "job.py 'unclosed", "a-b", "", "sub/../job.py"]), scalars)},
    optional={
        "description": st.one_of(st.text(max_size=10), scalars),
        "flags": st.one_of(st.dictionaries(st.sampled_from(["lr", "x", "batch-size", "1", ""]), flag_entry, max_size=3),
                           scalars),
        "nproc-per-node": st.one_of(st.integers(-1, 4), scalars),
        "gpus-per-trial": st.integers(-1, 2),
        "launcher": st.sampled_from(["torchrun", "python", "slurm", "", None]),
        "sourcecode": st.one_of(st.lists(globs, max_size=3), scalars, st.fixed_dictionaries({}, optional={
            "include": st.one_of(st.lists(globs, max_size=3), globs), "exclude": st.lists(globs, max_size=2),
            "max-size": st.one_of(st.integers(-1, 10 ** 7), st.floats())})),
        "plugins": st.one_of(st.lists(plugin_entry, max_size=2), scalars),
        "flags-dest": st.sampled_from(["args", "env", "config:f.json", "config:c/f.yml", "config:../x.yml",
                                       "config:f.txt", "config:", "x", None]),
        "flags-env-prefix": st.sampled_from(["FLAG_", "", "1X", "A B", None]),
        "flags-import": st.one_of(st.sampled_from(["all", True, False, None, "some"]),
                                  st.lists(st.sampled_from(["lr", "x", 1]), max_size=2)),
        "output-scalars": st.one_of(
            st.sampled_from(["off", False, "(?P<loss>\\S+)", "(", "no groups", None, 1]),
            st.lists(st.sampled_from(["(?P<step>\\d+) (?P<loss>\\S+)", "(?P<step>\\d+)", "[", "(?P<a>x)"]),
                     max_size=2)),
        "bogus-key": scalars,
    },
)


valid_flag = st.one_of(
    st.integers(-5, 5), st.floats(-1, 1, width=32), st.text(max_size=4), st.booleans(), st.none(),
    st.fixed_dictionaries({"default": st.integers(0, 5)}, optional={
        "type": st.just("int"), "min": st.just(0), "max": st.just(10), "description": st.text(max_size=4),
        "arg-name": st.just("--lr"), "arg-skip": st.booleans(), "required": st.booleans()}),
    st.fixed_dictionaries({"choices": st.just(["a", "b"])}, optional={"default": st.just("a"), "type": st.just("str")}),
)
valid_op = st.fixed_dictionaries(
    {"main": st.sampled_from(["job.py", "job.py --x 1", "glfuzz", "json.tool", "sub/../job.py"])},
    optional={
        "description": st.text(max_size=10),
        "flags": st.dictionaries(st.sampled_from(["lr", "x", "batch-size", "1"]), valid_flag, max_size=3),
        "launcher": st.sampled_from(["torchrun", "python"]),
        "gpus-per-trial": st.integers(0, 2),
        "sourcecode": st.one_of(st.lists(st.sampled_from(["*.py", "**", "sub/**"]), max_size=2),
                                st.fixed_dictionaries({}, optional={"exclude": st.just(["*.ckpt"]),
                                                                    "max-size": st.integers(0, 10 ** 6)})),
        "plugins": st.lists(st.sampled_from(["glfuzz:Ok", {"class": "glfuzz:Ok", "priority": 5}]), max_size=2),
        "flags-dest": st.sampled_from(["args", "env", "config:f.json", "config:c/f.yml"]),
        "flags-env-prefix": st.sampled_from(["FLAG_", "", "X_"]),
        "output-scalars": st.sampled_from(["off", ["(?P<step>\\d+) (?P<loss>\\S+)"]]),
    },
)


def _corrupt(draw: Any, doc: Any) -> None:
    """Replace one value somewhere in ``doc`` (or add a key) with an arbitrary one."""
    node = doc
    while isinstance(node, dict) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node, key=str)))
        if not isinstance(node[key], dict):
            break
        node = node[key]
    if isinstance(node, dict):
        node[draw(st.sampled_from([*node, *KEYS]) if node else st.sampled_from(KEYS))] = draw(trees)


@st.composite
def guildfile_docs(draw: Any) -> str:
    """A YAML document: shaped like a guildfile (valid, or with a value or two corrupted), a tree
    of guildfile words, mutated text, or any text."""
    how = draw(st.sampled_from(["valid", "valid", "corrupt", "corrupt", "wild", "tree", "mutated", "text"]))
    if how == "text":
        return draw(st.text(max_size=200))
    if how == "tree":
        return yaml.safe_dump(draw(trees))
    op = op_entry if how == "wild" else valid_op
    doc: dict[str, Any] = {"operations": draw(st.dictionaries(st.sampled_from(["train", "t", "1"]), op, min_size=1,
                                                              max_size=2))}
    doc.update(draw(st.fixed_dictionaries({}, optional={
        "plugins": st.lists(plugin_entry if how == "wild" else st.just("glfuzz:Ok"), max_size=2),
        "runs-dir": st.sampled_from(["runs", "../elsewhere", "/tmp/r"]),
    })))
    if how == "corrupt":
        for _ in range(draw(st.integers(1, 2))):
            _corrupt(draw, doc)
    text = yaml.safe_dump(doc)
    if how == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.sampled_from(["", ":", "- ", "\n  ", "{", "[", "&a ", "*a", "!!", "'", "#", "?"])) \
                + text[i + draw(st.integers(0, 3)):]
    return text


@pytest.fixture(scope="module")
def gf_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="glfuzz-") as d:
        root = Path(d) / "proj"
        root.mkdir()
        (root / "job.py").write_text("import sys\nprint('hi', sys.argv[1:])\n")
        (root / "glfuzz.py").write_text("from guildlite import Plugin\n\nclass Ok(Plugin):\n    pass\n")
        yield root


def _load_text(root: Path, text: str | bytes) -> tuple[str, Any]:
    path = root / "guildfile.yml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return outcome(load, path)


@fuzz(700)
@given(guildfile_docs())
def test_guildfile_loader_any_yaml(gf_dir: Path, text: str) -> None:
    kind, gf = _load_text(gf_dir, text)
    if kind == "error":
        assert str(gf).startswith(str(gf_dir / "guildfile.yml")), gf  # the message names the file
        assert isinstance(gf, GuildfileError)
    if kind != "ok":
        return
    assert isinstance(gf, Guildfile) and gf.operations
    for op in gf.operations.values():
        assert op.main.strip() and op.nproc_per_node >= 1 and op.launcher in ("torchrun", "python")
        json.dumps(dict(op.data), default=str)  # op_def goes into run.json
        if op.script:
            assert (gf_dir / op.script).resolve().is_relative_to(gf_dir.resolve())
        for g in (*op.sourcecode.include, *op.sourcecode.exclude):
            assert not g.startswith("/") and ".." not in Path(g).parts
        # The declared plugins (a vocabulary of safe modules here) load or fail by name.
        kind, plugins = outcome(load_plugins, [*gf.plugins, *op.plugins], gf_dir)
        if kind == "ok":
            assert all(isinstance(p, Plugin) for p in plugins)


@fuzz(150)
@given(st.binary(max_size=120))
def test_guildfile_loader_any_bytes(gf_dir: Path, data: bytes) -> None:
    _load_text(gf_dir, data)


def test_guildfile_not_utf8_is_a_guildfile_error(gf_dir: Path) -> None:
    """Once a UnicodeDecodeError."""
    kind, _ = _load_text(gf_dir, b"operations:\n  t:\n    main: job.py\n    description: caf\xe9\n")
    assert kind == "error"


@pytest.mark.parametrize("text", ['runs-dir: "runs\\0x"\noperations:\n  t:\n    main: job.py\n',
                                  'operations:\n  t:\n    main: "job\\0.py"\n'])
def test_nul_in_a_guildfile_path_is_a_guildfile_error(gf_dir: Path, text: str) -> None:
    """Once a ValueError (embedded null byte) from Path.resolve."""
    kind, _ = _load_text(gf_dir, text)
    assert kind == "error"


# --- run selectors -------------------------------------------------------------------------------------

IDS = ["20261124T101500-1f43a9", "20261124T101500-1f4aaa", "20261124T093000-000001", "20261123T235959-fff000",
       "20251231T000000-abcdef", "20251231T000000-abc123"]
RUNS = [Run(id=i, run_dir=Path("/nonexistent/runs") / i, op="train") for i in IDS]
selector = st.one_of(
    st.integers(1, len(IDS)).map(str),
    st.builds(lambda a, b: f"{a}:{b}", st.sampled_from(["", "1", "2", "5"]), st.sampled_from(["", "3", "6", "9"])),
    st.builds(lambda i, n: IDS[i][:n], st.integers(0, len(IDS) - 1), st.integers(16, 22)),
    st.text(max_size=12),
    st.integers(-3, 12).map(str),
    st.builds(lambda a, b: f"{a}:{b}", st.one_of(st.just(""), st.integers(0, 9).map(str), st.text(max_size=2)),
              st.one_of(st.just(""), st.integers(0, 9).map(str), st.text(max_size=2))),
    st.builds(lambda i, n: IDS[i][:n], st.integers(0, len(IDS) - 1), st.integers(0, 22)),
    st.sampled_from(["../x", "..", ".", "./1", "/etc/passwd", "1/..", ".trash", ".staging-x", "~", "*", "20261124T*",
                     " 1 ", "1e0", "0x1", "99999999"]),
)


@fuzz(600)
@given(st.lists(selector, min_size=1, max_size=2))
def test_select_runs_any_selector(specs: list[str]) -> None:
    kind, chosen = outcome(select_runs, RUNS, specs)
    if kind == "error":
        assert isinstance(chosen, RunNotFoundError)
    if kind != "ok":
        return
    assert all(any(r is c for r in RUNS) for c in chosen)
    assert len({id(c) for c in chosen}) == len(chosen)
    for s in specs:
        s = s.strip()
        if s.isascii() and s.isdigit() and len(s) < 8:
            assert RUNS[int(s) - 1] in chosen
        elif s in IDS:
            assert next(r for r in RUNS if r.id == s) in chosen


@pytest.mark.parametrize("spec", ["../x", "..", "./1", "/etc", "a/b", ".trash", ".staging-1"])
def test_path_like_selectors_are_refused(spec: str) -> None:
    with pytest.raises(RunNotFoundError, match="invalid run selector"):
        select_runs(RUNS, [spec])


@pytest.mark.parametrize("spec", ["²", "1:²", "¹:3", "٣", "1:٣"])
def test_unicode_digit_selectors_are_run_errors(spec: str) -> None:
    """str.isdigit() is true for '²'; int('²') once raised ValueError."""
    kind, _ = outcome(select_runs, RUNS, [spec])
    assert kind in ("ok", "error")


# --- path safety: main, sourcecode, flags-dest, selectors through the CLI --------------------------------


@pytest.fixture(scope="module")
def nested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """outer/{evil.py, secret.txt, proj/{job.py, sub/, link.py -> ../evil.py}}; returns proj."""
    outer = tmp_path_factory.mktemp("outer")
    (outer / "evil.py").write_text("open('PWNED', 'w').close()\n")
    (outer / "secret.txt").write_text("secret\n")
    proj = outer / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "job.py").write_text("print('ok')\n")
    (proj / "link.py").symlink_to(outer / "evil.py")
    return proj


def _gf(proj: Path, text: str) -> tuple[str, Any]:
    (proj / "guildfile.yml").write_text(text)
    return outcome(load, proj / "guildfile.yml")


escaping_main = st.one_of(
    st.builds(lambda ups, pre: "/".join([*pre, *[".."] * (len(pre) + ups), "evil.py"]),
              st.integers(1, 3), st.lists(st.sampled_from(["sub", ".", "sub/."]), max_size=2)),
    st.sampled_from(["/etc/evil.py", "link.py", "./link.py", "sub/../link.py", "sub/../../evil.py"]),
)


@fuzz(60)
@given(escaping_main, st.sampled_from(["", " --a=1", " ../x.py"]))
def test_main_outside_the_project_is_refused(nested: Path, main: str, rest: str) -> None:
    kind, err = _gf(nested, f"operations:\n  t:\n    main: '{main}{rest}'\n")
    assert kind == "error", f"main {main!r} was accepted"
    assert "outside the project" in str(err), err  # refused for where it is, whether or not it exists


escaping_glob = st.one_of(
    st.builds(lambda pre, post: "/".join([*pre, "..", *post]), st.lists(st.sampled_from(["a", "*", "**", "."]), max_size=2),
              st.lists(st.sampled_from(["*", "**", "secret.txt", "x"]), max_size=2)),
    st.builds(lambda p: "/" + p, st.sampled_from(["etc/*", "**", "tmp/x", ""])),
)


@fuzz(60)
@given(escaping_glob, st.sampled_from(["include", "exclude"]))
def test_sourcecode_globs_outside_the_project_are_refused(nested: Path, glob: str, key: str) -> None:
    kind, err = _gf(nested, f"operations:\n  t:\n    main: job.py\n    sourcecode:\n      {key}: ['{glob}']\n")
    assert kind == "error" and "escapes the project" in str(err), (glob, err)


@pytest.mark.parametrize("dest", ["config:../x.json", "config:/tmp/x.json", "config:a/../../x.yml", "config:x.sh"])
def test_flags_dest_outside_the_run_dir_is_refused(nested: Path, dest: str) -> None:
    kind, err = _gf(nested, f"operations:\n  t:\n    main: job.py\n    flags-dest: '{dest}'\n")
    assert kind == "error" and "flags-dest" in str(err)


def test_cli_selectors_and_paths_stay_in_the_runs_dir(nested: Path, tmp_path: Path) -> None:
    (nested / "guildfile.yml").write_text("operations:\n  t:\n    main: job.py\n    launcher: python\n")
    runs = tmp_path / "runs"
    env = base_env(new_marker(), None)
    assert guildlite("run", "t", "-y", "--runs-dir", str(runs), cwd=nested, env=env).returncode == 0
    for args in (["runs", "info", "../x"], ["cat", "../x"], ["cat", "1", "../../../secret.txt"],
                 ["cat", "1", "/etc/hostname"], ["ls", ".."], ["label", "..", "x"], ["runs", "delete", "-y", "../runs"]):
        p = guildlite(*args, "--runs-dir", str(runs), cwd=nested, env=env)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert TRACEBACK not in p.stderr and p.stderr.startswith("guildlite: error:"), (args, p.stderr)
        assert "secret" not in p.stdout
    assert len(list(runs.iterdir())) >= 1 and (nested.parent / "secret.txt").exists()


# --- flag values never reach a shell ---------------------------------------------------------------

ARGV_SCRIPT = """\
import json, os, sys
json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("FLAG_")}},
          open("argv.json", "w"))
"""


@pytest.fixture(scope="module")
def shell_lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("shell")
    proj = base / "proj"
    proj.mkdir()
    canary = base / "canary"
    canary.mkdir()
    (canary / "keep").write_text("x")
    (proj / "argv.py").write_text(ARGV_SCRIPT)
    flags = "".join(f"      m{i}: ''\n" for i in range(8))
    (proj / "guildfile.yml").write_text(
        "operations:\n"
        f"  py:\n    main: argv.py\n    launcher: python\n    flags:\n{flags}"
        f"  tr:\n    main: argv.py\n    flags:\n{flags}"
        f"  env:\n    main: argv.py\n    launcher: python\n    flags-dest: env\n    flags:\n{flags}"
    )
    return {"proj": proj, "base": base, "canary": canary, "runs": base / "runs"}


def _payloads(lab: dict[str, Path]) -> list[str]:
    p, c = lab["base"] / "pwned", lab["canary"]
    return [f"; touch {p}1", f"$(touch {p}2)", f"`touch {p}3`", f"| touch {p}4 &&", f"'; rm -rf {c}'",
            f"\"; rm -rf {c}\"", f"a\nb; touch {p}5", f"--x=1 ${{IFS}}touch {p}6 > {p}7 *"]


def _run_argv(lab: dict[str, Path], op: str, values: list[str]) -> dict[str, Any]:
    before = set(lab["runs"].iterdir()) if lab["runs"].exists() else set()
    assigns = [f"m{i}={v}" for i, v in enumerate(values)]
    p = guildlite("run", op, *assigns, "-y", "--runs-dir", str(lab["runs"]), cwd=lab["proj"],
                  env=base_env(new_marker(), None), timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    (new,) = set(lab["runs"].iterdir()) - before
    return json.loads((new / "argv.json").read_text())


def _expected(v: str) -> str:
    d = decode(v)
    assert isinstance(d, str)
    return d


def _nothing_ran(lab: dict[str, Path]) -> None:
    assert not [f.name for f in lab["base"].iterdir() if f.name.startswith("pwned")]
    assert (lab["canary"] / "keep").exists()


@pytest.mark.parametrize("op", ["py", "tr", "env"])
def test_shell_metacharacters_arrive_verbatim(shell_lab: dict[str, Path], op: str) -> None:
    values = _payloads(shell_lab)
    got = _run_argv(shell_lab, op, values)
    if op == "env":
        assert got["env"] == {f"FLAG_M{i}": _expected(v) for i, v in enumerate(values)}
    else:
        assert got["argv"] == [f"--m{i}={_expected(v)}" for i, v in enumerate(values)]
    _nothing_ran(shell_lab)


@fuzz(8)
@given(st.lists(st.text(alphabet=";&|$`()<>*?~!#'\"\\ \n\t{}[]=-abc", min_size=1, max_size=12), min_size=8, max_size=8))
def test_random_shell_text_arrives_verbatim(shell_lab: dict[str, Path], values: list[str]) -> None:
    kinds = [outcome(parse_value, "m", v) for v in values]
    assume(all(k == "ok" and isinstance(x, str) for k, x in kinds))  # string values, not batch syntax
    got = _run_argv(shell_lab, "py", values)
    assert got["argv"] == [f"--m{i}={x}" for i, (_, x) in enumerate(kinds)]
    _nothing_ran(shell_lab)


# --- symlink loops in the project source ---------------------------------------------------------------


def test_symlink_loops_and_escapes_are_skipped_when_staging(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "job.py").write_text("print('loss: 0.1')\n")
    (proj / "sub" / "ok.txt").write_text("ok\n")
    (proj / "guildfile.yml").write_text("operations:\n  t:\n    main: job.py\n    launcher: python\n")
    os.symlink("self.txt", proj / "self.txt")  # a loop of one
    os.symlink("b.txt", proj / "a.txt")
    os.symlink("a.txt", proj / "b.txt")
    os.symlink("..", proj / "sub" / "up")  # a directory loop
    os.symlink(".", proj / "here")
    os.symlink(outside / "secret.txt", proj / "secret.txt")  # escapes
    os.symlink(outside, proj / "outdir")
    os.symlink("sub/ok.txt", proj / "inside.txt")  # stays inside: copied
    runs = tmp_path / "runs"
    p = guildlite("run", "t", "-y", "--runs-dir", str(runs), cwd=proj, env=base_env(new_marker(), None), timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    (run_dir,) = [d for d in runs.iterdir() if not d.name.startswith(".")]
    staged = {str(f.relative_to(run_dir)) for f in run_dir.rglob("*") if ".guildlite" not in f.parts}
    assert {"job.py", "guildfile.yml", "sub/ok.txt", "inside.txt"} <= staged
    for name in ("self.txt", "a.txt", "b.txt", "sub/up", "here", "secret.txt", "outdir"):
        assert name not in staged
    assert "secret" not in "".join(f.read_text() for f in run_dir.rglob("*.txt") if f.is_file())


# --- plugin declarations ------------------------------------------------------------------------------

NOT_PLUGINS = ["os:system", "os.system", "subprocess:Popen", "builtins:eval", "builtins:exec", "shutil:rmtree",
               "os:remove", "glfplug:Good.__class__", "glfplug:Good.__init__", "guildlite:Plugin.__subclasses__"]
NOT_PATHS = ["__import__('os')", "os:system('touch x')", "os; touch x", "$(touch x):C", "`id`:C", "os:", ":system",
             "a b:C", "os:system()", "../glfplug:Good", "glfplug/x:Good", "lambda: 0"]


@pytest.fixture
def plug_proj(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "job.py").write_text("print('ok')\n")
    (proj / "glfplug.py").write_text("from guildlite import Plugin\n\nclass Good(Plugin):\n"
                                     "    def __init__(self, **kw):\n        self.kw = kw\n")
    return proj


def _pwned(proj: Path) -> str:
    return str(proj.parent / "PWNED")


@pytest.mark.parametrize("cls", NOT_PLUGINS)
def test_plugin_class_that_is_not_a_plugin_is_refused_uncalled(plug_proj: Path, cls: str) -> None:
    args = {"args": f"touch {_pwned(plug_proj)}", "shell": True} if "Popen" in cls else {"x": f"touch {_pwned(plug_proj)}"}
    with pytest.raises(GuildfileError, match="not a subclass of guildlite.Plugin"):
        load_plugins([PluginSpec(where="guildfile.yml plugins[0]", cls=cls, args=args)], plug_proj)
    assert not Path(_pwned(plug_proj)).exists()


@pytest.mark.parametrize("cls", NOT_PATHS)
def test_plugin_class_that_is_not_an_import_path_is_refused_before_importing(plug_proj: Path, cls: str) -> None:
    before = set(sys.modules)
    with pytest.raises(GuildfileError, match="not an import path"):
        load_plugins([PluginSpec(where="guildfile.yml plugins[0]", cls=cls)], plug_proj)
    assert set(sys.modules) == before


@fuzz(300)
@given(st.text(min_size=1, max_size=30).filter(
    lambda s: not all(p.isidentifier() for p in s.replace(":", ".").split("."))))
def test_any_non_import_path_is_refused_before_importing(s: str) -> None:
    before = set(sys.modules)
    kind, err = outcome(load_plugins, [PluginSpec(where="gf plugins[0]", cls=s)], Path(tempfile.gettempdir()))
    assert kind == "error" and "not an import path" in str(err), (s, kind, err)
    assert set(sys.modules) == before


@pytest.mark.parametrize("decl", [
    "- {class: 'os:system', args: {command: 'touch PWNED'}}",
    "- {class: \"__import__('os').system('touch PWNED')\"}",
    "- {name: 'os:system'}",
    "- {class: 'glfplug:Good', args: !!python/object/apply:os.system ['touch PWNED']}",
    "- !!python/object/apply:os.system ['touch PWNED']",
])
def test_plugin_declarations_through_the_cli_execute_nothing(plug_proj: Path, decl: str) -> None:
    decl = decl.replace("PWNED", _pwned(plug_proj))
    (plug_proj / "guildfile.yml").write_text(f"plugins:\n  {decl}\noperations:\n  t:\n    main: job.py\n    launcher: python\n")
    p = guildlite("run", "t", "-y", "--runs-dir", str(plug_proj.parent / "runs"), cwd=plug_proj,
                  env=base_env(new_marker(), None))
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("guildlite: error:") and TRACEBACK not in p.stderr, p.stderr
    assert not Path(_pwned(plug_proj)).exists()
    assert not (plug_proj.parent / "runs").exists()  # refused before anything was staged


def test_plugin_cli_option_only_names_entry_points(plug_proj: Path) -> None:
    (plug_proj / "guildfile.yml").write_text("operations:\n  t:\n    main: job.py\n    launcher: python\n")
    for name in ("os:system", "glfplug:Good", f"$(touch {_pwned(plug_proj)})"):
        p = guildlite("run", "t", "-y", "--plugin", name, "--runs-dir", str(plug_proj.parent / "runs"), cwd=plug_proj,
                      env=base_env(new_marker(), None))
        assert p.returncode == 2 and "no plugin named" in p.stderr and TRACEBACK not in p.stderr, p.stderr
    assert not Path(_pwned(plug_proj)).exists()


def test_plugin_args_are_data(plug_proj: Path) -> None:
    """A declared Plugin gets its args as plain values: nothing in them is evaluated."""
    payload = f"$(touch {_pwned(plug_proj)}); __import__('os').system('touch {_pwned(plug_proj)}')"
    (plug_proj / "guildfile.yml").write_text(
        f"plugins:\n  - {{class: 'glfplug:Good', args: {{x: {json.dumps(payload)}}}}}\n"
        "operations:\n  t:\n    main: job.py\n    launcher: python\n")
    p = guildlite("run", "t", "-y", "--runs-dir", str(plug_proj.parent / "runs"), cwd=plug_proj,
                  env=base_env(new_marker(), None))
    assert p.returncode == 0, p.stderr
    assert not Path(_pwned(plug_proj)).exists()
    [plugin] = load_plugins([PluginSpec(where="w", cls="glfplug:Good", args={"x": payload})], plug_proj)
    assert isinstance(plugin, Plugin) and plugin.kw == {"x": payload}


# --- a batch too big to plan ------------------------------------------------------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a runaway plan dies, not the machine


@pytest.fixture
def grid_proj(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "job.py").write_text("import sys\nprint('ok', sys.argv[1:])\n")
    (proj / "guildfile.yml").write_text("operations:\n  t:\n    main: job.py\n    launcher: python\n"
                                        "    flags:\n      a: 0\n      b: 0\n      c: 0\n")
    return proj


def _run_limited(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(new_marker(), None)
    return subprocess.run([sys.executable, "-m", "guildlite", "run", "t", *args, "--runs-dir", str(proj.parent / "runs")],
                          cwd=proj, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          preexec_fn=_limit_memory, check=False)


def test_huge_grid_with_max_trials_plans_only_those(grid_proj: Path) -> None:
    p = _run_limited(grid_proj, "a=range[1:100000]", "b=range[1:100000]", "--max-trials", "3", "--stage", "-y")
    assert p.returncode == 0, p.stderr[-2000:]
    assert len([d for d in (grid_proj.parent / "runs").iterdir() if not d.name.startswith(".")]) == 4  # batch + 3


@pytest.mark.parametrize("grid", [["a=range[1:100000]", "b=range[1:100000]", "c=range[1:100000]"],
                                  ["a=range[1:100]", "b=range[1:30]"]])
def test_big_grids_are_refused_before_planning(grid_proj: Path, grid: list[str]) -> None:
    """10^15 trials once ran out of memory planning them. Without -y and a terminal, a big batch
    (here 3,000 or 10^15 trials) is a one-line error before anything is planned or staged."""
    p = _run_limited(grid_proj, *grid)
    assert TRACEBACK not in p.stderr, p.stderr[-1500:]
    assert p.returncode == 2, p.stderr[-1500:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guildlite: error:") and "trials" in lines[0], p.stderr
    assert not (grid_proj.parent / "runs").exists()
