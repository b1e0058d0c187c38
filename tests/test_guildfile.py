"""Loading guildfile.yml: a valid file becomes frozen op defs; every mistake is a GuildfileError
that names the file and the line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import (
    GUILDLITE,
    ROOT,
    TRACEBACK,
    assert_clean_error,
    clean_env,
    load_records,
    property_settings,
    run_dirs,
    run_guildlite,
    write_project,
)
from hypothesis import assume, given
from hypothesis import strategies as st

from guildlite._errors import GuildfileError
from guildlite._flags import FlagDef
from guildlite._guildfile import Guildfile, find_guildfile, load

PROPERTY = property_settings(200)


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "pkg").mkdir(exist_ok=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text("print('mod')\n")
    p = tmp_path / "guildfile.yml"
    p.write_text(text)
    return p


def test_the_example_project_loads() -> None:
    gf = load(ROOT / "guildfile.yml")
    assert isinstance(gf, Guildfile)
    assert gf.path == (ROOT / "guildfile.yml").resolve()
    train = gf.op("train")
    assert train.main == "operations/train.py"
    assert train.script == "operations/train.py"
    assert train.launcher == "torchrun"
    assert list(train.flags) == ["lr", "epochs", "batch-size", "seed"]
    assert train.flags["lr"].value_type == "float" and train.flags["lr"].min == 0
    assert train.flags["epochs"] == FlagDef("epochs", default=5, type="int", min=1, description="Passes over the data")
    assert train.flags["seed"].default == 0 and train.flags["seed"].value_type == "int"
    assert train.sourcecode.include == ("operations/**",)


def test_a_full_guildfile_loads(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        """\
runs-dir: my-runs
plugins:
  - mypkg.plugins:Timing
  - {name: wandb, args: {project: x}, priority: 5}
operations:
  train:
    description: Train it
    main: train.py --fixed 1
    nproc-per-node: 2
    gpus-per-trial: 1
    sourcecode: ["*.py"]
    flags:
      lr: {default: 0.1, min: 0, max: 1}
      opt: {default: adam, choices: [adam, sgd]}
      amp: {type: bool, default: false, arg-switch: true}
      data: {type: path, required: true, arg-name: --data-dir}
      seed: 1
  evaluate:
    main: pkg.mod
    launcher: python
    flags-dest: env
""",
    )
    gf = load(p)
    assert list(gf.operations) == ["train", "evaluate"]
    assert gf.runs_dir == (tmp_path / "my-runs").resolve()
    assert [(s.cls, s.name) for s in gf.plugins] == [("mypkg.plugins:Timing", None), (None, "wandb")]
    assert gf.plugins[1].args == {"project": "x"} and gf.plugins[1].priority == 5
    assert gf.plugins[1].where == "guildfile.yml:4 plugins[1]"
    train = gf.op("train")
    assert train.main_args == ["train.py", "--fixed", "1"]
    assert (train.nproc_per_node, train.gpus_per_trial) == (2, 1)
    assert train.sourcecode.include == ("*.py",)
    assert train.flags["opt"].choices == ("adam", "sgd")
    assert train.flags["data"].required and train.flags["data"].arg_name == "--data-dir"
    assert train.flags["amp"].arg_switch is True
    ev = gf.op("evaluate")
    assert ev.main_args == ["-m", "pkg.mod"] and ev.script is None
    assert (ev.launcher, ev.flags_dest, ev.flags) == ("python", "env", {})


def test_unknown_op_suggests_the_closest(tmp_path: Path) -> None:
    gf = load(_write(tmp_path, "operations:\n  train:\n    main: train.py\n"))
    with pytest.raises(GuildfileError, match=r"no operation 'trian' \(did you mean 'train'\?\)"):
        gf.op("trian")
    with pytest.raises(GuildfileError, match="operations: train"):
        gf.op("zzzzz")


def test_find_guildfile_walks_up(tmp_path: Path) -> None:
    p = _write(tmp_path, "operations:\n  train:\n    main: train.py\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_guildfile(deep) == p.resolve()


_OK_OP = "operations:\n  train:\n    main: train.py\n"

# (name, text, line, what the message must say)
ERRORS = [
    ("unknown-top-key", _OK_OP + "operatons: 1\n", 4, ["unknown key 'operatons'", "did you mean 'operations'?"]),
    ("unknown-op-key", _OK_OP + "    flgs: {}\n", 4, ["unknown key 'flgs'", "did you mean 'flags'?"]),
    ("unknown-flag-key", _OK_OP + "    flags:\n      lr:\n        defalt: 1\n", 6,
     ["unknown key 'defalt'", "did you mean 'default'?"]),
    ("bad-type-name", _OK_OP + "    flags:\n      lr:\n        type: flaot\n", 6,
     ["flag 'lr'", "type 'flaot' is not one of int, float, bool, str, path"]),
    ("empty-choices", _OK_OP + "    flags:\n      lr:\n        choices: []\n", 6, ["'choices' must be a non-empty list"]),
    ("scalar-choices", _OK_OP + "    flags:\n      lr:\n        choices: abc\n", 6, ["'choices' must be a non-empty list"]),
    ("default-below-min", _OK_OP + "    flags:\n      lr:\n        min: 0\n        default: -1\n", 7,
     ["bad default", "-1 is below the minimum 0"]),
    ("default-above-max", _OK_OP + "    flags:\n      lr:\n        default: 5\n        max: 1\n", 6,
     ["bad default", "above the maximum 1"]),
    ("default-not-a-choice", _OK_OP + "    flags:\n      o:\n        default: c\n        choices: [a, b]\n", 6,
     ["bad default", "not one of the choices (a, b)"]),
    ("default-bad-type", _OK_OP + "    flags:\n      n:\n        type: int\n        default: x\n", 7,
     ["bad default", "not a valid int"]),
    ("min-not-a-number", _OK_OP + "    flags:\n      n:\n        min: a\n", 6, ["'min' must be a number"]),
    ("list-default", _OK_OP + "    flags:\n      n: [1, 2]\n", 5, ["a bare list is ambiguous"]),
    ("missing-main", "operations:\n  train:\n    description: x\n", 2, ["'main' (the script to run) is required"]),
    ("empty-op", "operations:\n  train:\n", 2, ["'main' (the script to run) is required"]),
    ("main-escapes", "operations:\n  train:\n    main: ../train.py\n", 3, ["outside the project directory"]),
    ("main-absolute", "operations:\n  train:\n    main: /etc/passwd.py\n", 3, ["outside the project directory"]),
    ("main-missing-script", "operations:\n  train:\n    main: nope.py\n", 3, ["script 'nope.py' does not exist"]),
    ("main-missing-module", "operations:\n  train:\n    main: no_such_mod_xyz\n", 3, ["module 'no_such_mod_xyz' not found"]),
    ("main-unsplittable", "operations:\n  train:\n    main: \"train.py 'x\"\n", 3, ["cannot split 'main'"]),
    ("plugin-not-a-list", "plugins: {class: a:B}\n" + _OK_OP, 1, ["'plugins' must be a list"]),
    ("plugin-entry-int", "plugins:\n  - 3\n" + _OK_OP, 1, ["plugins[0]: expected a mapping with 'class' or 'name'"]),
    ("plugin-class-and-name", "plugins:\n  - {class: a:B, name: x}\n" + _OK_OP, 2, ["give exactly one of 'class'"]),
    ("plugin-neither", "plugins:\n  - {args: {}}\n" + _OK_OP, 2, ["give exactly one of 'class'"]),
    ("plugin-unknown-key", "plugins:\n  - clas: a:B\n" + _OK_OP, 2, ["unknown key 'clas' in plugins[0]", "'class'"]),
    ("plugin-args-list", "plugins:\n  - {class: a:B, args: [1]}\n" + _OK_OP, 2, ["args' must be a mapping"]),
    ("op-plugin-priority", _OK_OP + "    plugins:\n      - {class: a:B, priority: x}\n", 5, ["'priority' must be an integer"]),
    ("duplicate-op", _OK_OP + "  train:\n    main: train.py\n", 4, ["duplicate key 'train'"]),
    ("duplicate-flag", _OK_OP + "    flags:\n      x: 1\n      x: 2\n", 6, ["duplicate key 'x'"]),
    ("invalid-yaml", _OK_OP + "   bad: [\n", 4, ["invalid YAML"]),
    ("invalid-yaml-flow", "operations: [\n", 2, ["invalid YAML"]),
    ("tab-indent", "operations:\n\ttrain: 1\n", 2, ["invalid YAML"]),
    ("no-operations", "operations: {}\n", 1, ["declares no operation"]),
    ("flags-a-list", _OK_OP + "    flags: [1]\n", 4, ["must be a mapping, got a list"]),
    ("nproc-zero", _OK_OP + "    nproc-per-node: 0\n", 4, ["'nproc-per-node' must be an integer >= 1, got 0"]),
    ("launcher", _OK_OP + "    launcher: mpirun\n", 4, ["launcher 'mpirun' is not one of torchrun, python"]),
    ("python-launcher-nproc", _OK_OP + "    launcher: python\n    nproc-per-node: 2\n", 5, ["nproc-per-node must be 1"]),
    ("runs-dir-int", "runs-dir: 3\n" + _OK_OP, 1, ["'runs-dir' must be a path string"]),
    ("sourcecode-escapes", _OK_OP + "    sourcecode:\n      include: ['../*']\n", 5, ["escapes the project"]),
    ("description-int", _OK_OP + "    description: 3\n", 4, ["'description' must be a string"]),
    # Guild's shorthands in a guildlite file: `\value` compiled (a vertical tab) and captured nothing.
    ("scalars-value-shorthand", _OK_OP + "    output-scalars: 'loss=(?P<loss>\\value)'\n", 4,
     ["\\value is Guild's shorthand", "(?P<loss>\\S+)"]),
    ("scalars-step-shorthand", _OK_OP + "    output-scalars: ['epoch (?P<step>\\step)']\n", 4, ["\\step is Guild's"]),
    ("scalars-key-shorthand", _OK_OP + "    output-scalars: ['(\\key)=(\\value)']\n", 4, ["\\key is Guild's"]),
]


def test_an_escaped_backslash_before_value_is_no_shorthand(tmp_path: Path) -> None:
    op = load(_write(tmp_path, _OK_OP + "    output-scalars: ['x\\\\value=(?P<v>\\S+)']\n")).op("train")
    assert op.output_scalars == ("x\\\\value=(?P<v>\\S+)",)


@pytest.mark.parametrize("text, line, needles", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, needles: list[str]) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(GuildfileError) as e:
        load(p)
    msg = str(e.value)
    assert msg.startswith(f"{p.resolve()}:{line}: "), msg
    for n in needles:
        assert n in msg, (n, msg)
    assert "\n" not in msg
    assert e.value.exit_code == 2


def test_missing_operations_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "plugins: []\n")
    with pytest.raises(GuildfileError) as e:
        load(p)
    assert "missing required key 'operations'" in str(e.value)
    assert re.match(rf"{re.escape(str(p.resolve()))}:\d+: ", str(e.value)), str(e.value)


def test_shorthand_forms_keep_their_line(tmp_path: Path) -> None:
    p = _write(tmp_path, _OK_OP + "    sourcecode: ['../*']\n")
    with pytest.raises(GuildfileError, match="escapes the project") as e:
        load(p)
    assert str(e.value).startswith(f"{p.resolve()}:4: "), str(e.value)
    gf = load(_write(tmp_path, "plugins:\n  - mypkg.plugins:Timing\n" + _OK_OP))
    assert gf.plugins[0].where == "guildfile.yml:2 plugins[0]"


@pytest.mark.parametrize("text", ["", "- 1\n", "just text\n"])
def test_a_top_level_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(GuildfileError, match="the top level must be a mapping with 'operations'") as e:
        load(p)
    assert str(e.value).startswith(str(p.resolve()))


def test_an_unreadable_guildfile(tmp_path: Path) -> None:
    with pytest.raises(GuildfileError, match="cannot read"):
        load(tmp_path / "guildfile.yml")


@pytest.mark.parametrize("text", ["{}:\n", "operations: {[1]: 2}\n", _OK_OP + "    flags:\n      ? [1]\n      : 1\n"])
def test_complex_keys_are_a_guildfile_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(GuildfileError):
        load(_write(tmp_path, text))


def test_deep_nesting_is_a_guildfile_error(tmp_path: Path) -> None:
    with pytest.raises(GuildfileError):
        load(_write(tmp_path, "operations: " + "[" * 3000 + "]" * 3000 + "\n"))


@pytest.mark.parametrize("main", ["__main__", '"train\\0.py"'])
def test_odd_main_values_are_a_guildfile_error(tmp_path: Path, main: str) -> None:
    with pytest.raises(GuildfileError):
        load(_write(tmp_path, f"operations:\n  train:\n    main: {main}\n"))


# --- property: YAML-ish text -----------------------------------------------------------------------

_KEYS = st.sampled_from([
    "operations", "plugins", "runs-dir", "train", "main", "flags", "default", "type", "choices", "min", "max",
    "required", "description", "nproc-per-node", "launcher", "sourcecode", "include", "class", "name", "args",
    "priority", "flags-dest", "output-scalars", "lr", "x",
])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
    st.sampled_from(["train.py", "../x.py", "pkg.mod", "int", "float", "torchrun", "python", "a:B", "env", "", "[",
                     "config:c.json", "(?P<loss>\\S+)", "*.py"]),
    st.text(max_size=8),
)
_TREES = st.recursive(
    _SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(_KEYS, kids, max_size=4)),
    max_leaves=12,
)


@st.composite
def _guildfile_text(draw: st.DrawFn) -> str:
    tree = draw(st.dictionaries(_KEYS, _TREES, max_size=3))
    if draw(st.booleans()):
        tree["operations"] = {"train": draw(st.dictionaries(_KEYS, _TREES, max_size=4))}
        if draw(st.booleans()):
            tree["operations"]["train"]["main"] = "train.py"
    text = yaml.safe_dump(tree, default_flow_style=draw(st.sampled_from([None, True, False])))
    # Then damage it a little: delete or insert characters YAML cares about.
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + draw(st.sampled_from(list(":-[]{}#&*!|>'\"%@ \n\t,") + ["  "])) + text[i:]
    return text


@PROPERTY
@given(_guildfile_text())
def test_yamlish_text_gives_a_guildfile_or_a_guildfile_error(tmp_path_factory: pytest.TempPathFactory,
                                                             text: str) -> None:
    d = tmp_path_factory.mktemp("gf", numbered=True)
    p = _write(d, text)
    try:
        gf = load(p)
    except TypeError as e:
        # The known bug of test_complex_keys_are_a_guildfile_error (a mapping or list as a key):
        # set aside here so this property keeps guarding against every other crash.
        assume("unhashable type" not in str(e))
        raise
    except GuildfileError as e:
        # One line per problem, each naming the file (several: a count, then one indented line each).
        first, *more = str(e).split("\n")
        assert first.startswith(str(p.resolve())) and all(m.startswith(f"  {p.resolve()}") for m in more)
        assert not more or first.endswith(f"{len(more)} problems:")
    else:
        assert gf.operations and all(op.main for op in gf.operations.values())


# --- hostile guildfiles: every one is refused at load, through the real CLI -------------------------------

_QUICK = "operations:\n  t:\n    main: t.py\n    launcher: python\n"
_PRINT_ARGS = "import json, sys\nprint('ARGS ' + json.dumps(sys.argv[1:]))\n"


def _project(tmp_path: Path, guildfile: str, files: dict[str, str] | None = None) -> Path:
    root = tmp_path / "proj"
    write_project(root, guildfile, {"t.py": _PRINT_ARGS, **(files or {})})
    return root


def _refused(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``guildlite ARGS`` (default ``run t -y``) exits 2 with one error line and stages nothing."""
    runs = root.parent / "runs"
    cp = run_guildlite(*(args or ("run", "t", "-y")), cwd=root, env=env or clean_env(runs))
    line = assert_clean_error(cp, 2)
    assert not runs.exists() or not list(runs.iterdir()), list(runs.iterdir())
    assert not (root / "runs").exists()
    return line


def _laughs(levels: int = 9) -> str:
    """A 'billion laughs' under a flag's choices: each level lists the previous one 9 times."""
    names = "abcdefghijklmnop"[:levels]
    rows = ["          - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    rows += [f"          - &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip(names, names[1:])]
    return _QUICK + "    flags:\n      x:\n        choices:\n" + "\n".join(rows) + "\n"


# Forked from pytest, the child would start with pytest's own resident pages and ru_maxrss would count them (Linux
# keeps the high-water mark across exec). A small Python parent forks the command instead and reports the
# command's own peak RSS on stdout.
_PEAK_RSS = """
import os, resource, sys
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _bounded(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, int]:
    """Run ``args`` under a 1 GiB address-space limit and a 60 s deadline: (exit code, stderr, peak RSS bytes)."""
    import subprocess
    import sys

    cp = subprocess.run([sys.executable, "-c", _PEAK_RSS, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=60)
    code, peak = cp.stdout.split()
    return int(code), cp.stderr, int(peak)


@pytest.mark.parametrize("command", [["run", "t", "-y"], ["runs"], ["ops"]])
def test_billion_laughs_is_refused_quickly_in_little_memory(tmp_path: Path, command: list[str]) -> None:
    root = _project(tmp_path, _laughs())
    env = clean_env()  # no GUILDLITE_RUNS_DIR: `runs` reads the guildfile for its runs-dir
    code, err, peak = _bounded([*GUILDLITE, *command], root, env)
    assert code == 2, (code, err[-2000:])
    assert TRACEBACK not in err and "MemoryError" not in err
    assert err.startswith(f"guildlite: error: {root / 'guildfile.yml'}:"), err
    assert "YAML aliases (*name) expand this beyond 250,000 nodes" in err, err
    assert peak < 200 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MB"
    assert not (root / "runs").exists()


def test_the_alias_budget_counts_repeated_text_too(tmp_path: Path) -> None:
    # Few nodes, but each alias repeats 1 MB of text: 6 aliases stay within the budget, 20 do not.
    big = "x" * 1_000_000
    fine = f"x-text: &t {big}\n" + _QUICK + "    description: *t\n" + "x-few: [" + ", ".join(["*t"] * 5) + "]\n"
    assert load(_write(tmp_path, fine.replace("t.py", "train.py"))).op("t").description == big
    hostile = f"x-text: &t {big}\n" + _QUICK + "x-many: [" + ", ".join(["*t"] * 20) + "]\n"
    line = _refused(_project(tmp_path, hostile))
    assert ":6: YAML aliases (*name) expand this beyond 250,000 nodes or 10,000,000 characters" in line, line


def test_the_alias_budget_counts_nodes(tmp_path: Path) -> None:
    # Three levels of 100 empty lists: a million nodes from a 1 kB file.
    levels = "x-e: &e []\nx-a: &a [" + ", ".join(["*e"] * 100) + "]\nx-b: &b [" + ", ".join(["*a"] * 100) + "]\n"
    fine = levels + "x-c: [" + ", ".join(["*b"] * 20) + "]\n" + _QUICK.replace("t.py", "train.py")
    assert load(_write(tmp_path, fine)).op("t")
    line = _refused(_project(tmp_path, levels + "x-c: [" + ", ".join(["*b"] * 100) + "]\n" + _QUICK))
    assert ":4: YAML aliases (*name) expand this beyond 250,000 nodes" in line, line


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    line = _refused(_project(tmp_path, _QUICK + "x-loop: &loop [1, *loop]\n"))
    assert "guildfile.yml:5: a YAML alias inside the node it names" in line, line
    line = _refused(_project(tmp_path, _QUICK + "x-loop: &loop {<<: *loop, a: 1}\n"))
    assert "guildfile.yml:5: a YAML alias inside the node it names" in line, line


def test_shallow_aliases_still_work(tmp_path: Path) -> None:
    # Sharing choices and settings through anchors is normal YAML: within the budget it loads.
    gf = load(_write(tmp_path, "operations:\n  train:\n    main: train.py\n    flags:\n"
                               "      a: {default: x, choices: &opts [x, y, z]}\n"
                               "      b: {default: y, choices: *opts}\n"))
    assert gf.op("train").flags["b"].choices == ("x", "y", "z")


_MERGE = """\
x-defaults: &defaults
  launcher: python
  main: t.py --from-defaults
  description: shared
  flags: &common
    lr: 0.1
    batch-size: 32
x-more: &more
  description: from more
  nproc-per-node: 1
operations:
  plain:
    <<: *defaults
  own:
    <<: *defaults
    description: its own
    main: t.py --own
    flags:
      <<: *common
      lr: 0.5
      model.lr: 0.01
  two:
    <<: [*more, *defaults]
"""


def test_merge_keys_end_to_end(tmp_path: Path) -> None:
    root = _project(tmp_path, _MERGE)
    runs = tmp_path / "runs"
    cp = run_guildlite("ops", "--json", cwd=root, env=clean_env(runs))
    assert cp.returncode == 0, cp.stderr
    ops = json.loads(cp.stdout)
    assert ops["plain"]["main"] == "t.py --from-defaults" and ops["plain"]["description"] == "shared"
    assert {k: v["default"] for k, v in ops["plain"]["flags"].items()} == {"lr": 0.1, "batch-size": 32}
    # Explicit keys win over merged ones; a merge is shallow (a merged `flags:` is replaced whole).
    assert ops["own"]["main"] == "t.py --own" and ops["own"]["description"] == "its own"
    assert {k: v["default"] for k, v in ops["own"]["flags"].items()} == {"lr": 0.5, "batch-size": 32,
                                                                          "model.lr": 0.01}
    # In a list of merged mappings the first one wins.
    assert ops["two"]["description"] == "from more" and ops["two"]["main"] == "t.py --from-defaults"
    cp = run_guildlite("run", "own", "batch-size=8", "-y", cwd=root, env=clean_env(runs))
    assert cp.returncode == 0, cp.stderr
    args = json.loads(next(line for line in cp.stdout.splitlines() if line.startswith("ARGS "))[5:])
    assert args == ["--own", "--lr=0.5", "--batch-size=8", "--model.lr=0.01"]
    (record,) = load_records(runs)
    assert record["status"] == "completed" and record["flags"] == {"lr": 0.5, "batch-size": 8, "model.lr": 0.01}
    assert record["op_def"]["launcher"] == "python" and record["cmd"][1:3] == ["-u", "t.py"]  # merged: no torchrun


def test_merged_settings_are_validated_with_the_line_they_come_from(tmp_path: Path) -> None:
    text = "x-defaults: &d\n  launcher: mpirun\noperations:\n  t:\n    <<: *d\n    main: t.py\n"
    line = _refused(_project(tmp_path, text))
    assert "guildfile.yml:2: operation 't': launcher 'mpirun' is not one of" in line, line


@pytest.mark.parametrize("text, line, needle", [
    (_QUICK + "    description: a\n    <<: {description: b}\n    description: c\n", 7, "duplicate key 'description'"),
    ("x-a: &a {launcher: python}\n" + _QUICK.replace("    launcher: python\n", "    <<: *a\n    <<: *a\n"), 6,
     "duplicate key '<<'"),
    (_QUICK + "    <<: just text\n", 5, "'<<' merges a mapping"),
    (_QUICK + "    <<: [{description: a}, [1]]\n", 5, "'<<' merges a mapping"),
])
def test_real_duplicates_and_bad_merges_are_still_errors(tmp_path: Path, text: str, line: int, needle: str) -> None:
    msg = _refused(_project(tmp_path, text))
    assert f"guildfile.yml:{line}: {needle}" in msg, msg


_SYSTEM_DIRS = ["/", "/usr", "/etc", "/bin", "/proc", "/sys", "/dev", "/boot", "/lib", "/var", "/home", "/tmp",
                "/usr/local", "/usr/lib64", "/usr/local/bin", "/var/lib", "/var/tmp", "/usr/../etc",
                "../../../../../../../../../../../../.."]


@pytest.mark.parametrize("runs_dir", _SYSTEM_DIRS)
def test_a_system_dir_is_never_a_runs_dir(tmp_path: Path, runs_dir: str) -> None:
    line = _refused(_project(tmp_path, f"runs-dir: {runs_dir}\n" + _QUICK))
    assert f"guildfile.yml:1: runs-dir '{runs_dir}' is /" in line, line
    assert "a system directory" in line or "the filesystem root" in line, line


@pytest.mark.parametrize("runs_dir", ["/var/guildlite-runs", "/opt/x/runs", "/tmp/somewhere/runs"])
def test_a_dir_below_a_system_dir_may_be_a_runs_dir(tmp_path: Path, runs_dir: str) -> None:
    gf = load(_write(tmp_path, f"runs-dir: {runs_dir}\n" + _OK_OP))
    assert gf.runs_dir == Path(runs_dir)


def test_a_home_dir_itself_is_never_a_runs_dir_but_below_it_is_fine(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "to-home").symlink_to(home)
    env = {**clean_env(), "HOME": str(home)}
    for runs_dir in (str(home), "../to-home", str(home) + "/"):
        root = _project(tmp_path, f"runs-dir: {runs_dir}\n" + _QUICK)
        line = _refused(root, "run", "t", "-y", env=env)
        assert "a home directory itself" in line, line
        assert list(home.iterdir()) == []
    root = _project(tmp_path, f"runs-dir: {home}/runs\n" + _QUICK)
    cp = run_guildlite("run", "t", "-y", cwd=root, env=env)
    assert cp.returncode == 0, cp.stderr
    assert len(run_dirs(home / "runs")) == 1


@pytest.mark.parametrize("source", ["GUILDLITE_RUNS_DIR", "--runs-dir"])
@pytest.mark.parametrize("runs_dir", ["/", "/usr/../var", "~/"])
@pytest.mark.parametrize("args", [("run", "t", "-y"), ("runs",), ("runs", "purge", "-y")])
def test_a_system_dir_is_never_a_runs_dir_from_the_env_or_the_option(
    tmp_path: Path, source: str, runs_dir: str, args: tuple[str, ...]
) -> None:
    """The guildfile's rule for every source of the runs dir: refused before anything is read or
    staged, by every command (``runs purge`` would delete in it)."""
    home = tmp_path / "home"
    home.mkdir()
    root = _project(tmp_path, _QUICK)
    env = {**clean_env(), "HOME": str(home)}
    if source == "--runs-dir":
        where = 2 if args[0] == "run" else 1  # `run --runs-dir`, `runs --runs-dir` (the group's option)
        args = (*args[:where], "--runs-dir", runs_dir, *args[where:])
    else:
        env["GUILDLITE_RUNS_DIR"] = runs_dir
    line = _refused(root, *args, env=env)
    assert f"guildlite: error: {source} '{runs_dir.rstrip('/') or '/'}' is /" in line, line
    assert any(w in line for w in ("a system directory", "the filesystem root", "a home directory itself")), line
    assert list(home.iterdir()) == []


def test_a_runs_dir_of_a_home_dir_is_expanded(tmp_path: Path) -> None:
    """``runs-dir: ~/runs`` (and ``GUILDLITE_RUNS_DIR=~/runs``, unexpanded by any shell) is under
    the home dir, not a dir named ``~`` beside the guildfile."""
    home = tmp_path / "home"
    home.mkdir()
    root = _project(tmp_path, "runs-dir: ~/runs\n" + _QUICK)
    env = {**clean_env(), "HOME": str(home)}
    cp = run_guildlite("run", "t", "-y", cwd=root, env=env)
    assert cp.returncode == 0, cp.stderr
    assert len(run_dirs(home / "runs")) == 1 and not (root / "~").exists()
    listed = run_guildlite("runs", "--json", cwd=root, env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1, listed.stderr
    cp = run_guildlite("run", "t", "-y", cwd=root, env={**env, "GUILDLITE_RUNS_DIR": "~/other"})
    assert cp.returncode == 0, cp.stderr
    assert len(run_dirs(home / "other")) == 1 and not (root / "~").exists()


@pytest.mark.parametrize("dest, needle", [
    ("config:run.json", "guildlite's own"),
    ("config:./run.json", "guildlite's own"),
    ("config:RUN.json", "guildlite's own"),
    ("config:.guildlite/env.json", "guildlite's own"),
    ("config:.guildlite/flags.yml", "guildlite's own"),
    ("config:./.guildlite/x/y.yaml", "guildlite's own"),
    ("config:.run.json.tmp-1-abc.json", "guildlite's own"),
    ("config:scalars.jsonl", "must end .json, .yml or .yaml"),
    ("config:output.log", "must end .json, .yml or .yaml"),
    ("config:/etc/flags.json", "relative to the run dir"),
    ("config:../flags.json", "inside the run dir"),
    ("config:conf/../../flags.json", "inside the run dir"),
    ("config:", "relative to the run dir"),
])
def test_flags_dest_config_stays_off_guildlite_files(tmp_path: Path, dest: str, needle: str) -> None:
    line = _refused(_project(tmp_path, _QUICK + f"    flags-dest: '{dest}'\n    flags: {{lr: 0.1}}\n"))
    assert f"guildfile.yml:5: operation 't': flags-dest '{dest}'" in line and needle in line, line


@pytest.mark.parametrize("dest", ["config:flags.json", "config:conf/run.json", "config:sub/.guildlite.yml",
                                  "config:output.log.json"])
def test_flags_dest_config_elsewhere_in_the_run_dir_is_fine(tmp_path: Path, dest: str) -> None:
    gf = load(_write(tmp_path, f"operations:\n  train:\n    main: train.py\n    flags-dest: {dest}\n"))
    assert gf.op("train").flags_dest == dest


@pytest.mark.parametrize("flag, line, needle", [
    ('"na\\0me": 1', 6, "a NUL character in 'na\\x00me'"),
    ('x: "a\\x00b"', 6, "a NUL character in 'a\\x00b'"),
    ('x: {default: "a\\u0000"}', 6, "a NUL character in 'a\\x00'"),
    ("x:\n        default: a\n        choices: [a, \"b\\U00000000\"]", 8, "a NUL character in 'b\\x00'"),
    ('x: {description: "\\0"}', 6, "a NUL character"),
])
def test_a_nul_anywhere_in_a_flag_is_refused(tmp_path: Path, flag: str, line: int, needle: str) -> None:
    msg = _refused(_project(tmp_path, _QUICK + "    flags:\n      " + flag + "\n"))
    assert f"guildfile.yml:{line}: {needle}" in msg, msg


@pytest.mark.parametrize("where", ['runs-dir: "r\\0uns"\n' + _QUICK, _QUICK.replace("t.py", '"t.py\\0"'),
                                   'plugins: ["a\\0:B"]\n' + _QUICK])
def test_a_nul_in_any_guildfile_string_is_refused(tmp_path: Path, where: str) -> None:
    assert "a NUL character" in _refused(_project(tmp_path, where))


@pytest.mark.parametrize("name", ['"--evil"', '"a b"', '"../x"', '"a=b"', '""', '"1st"', '"-x"', '"a/b"', '"a\\tb"',
                                  '"x;rm"', "null", "true", "3"])
def test_flag_names_outside_the_rule_are_refused(tmp_path: Path, name: str) -> None:
    line = _refused(_project(tmp_path, _QUICK + f"    flags:\n      {name}: 1\n"))
    assert "guildfile.yml:6: operation 't': " in line and "flag name" in line, line


def test_flag_names_with_dashes_and_dots_stay_legal(tmp_path: Path) -> None:
    root = _project(tmp_path, _QUICK + "    flags:\n      batch-size: 8\n      model.lr: 0.1\n      _x: a\n")
    cp = run_guildlite("run", "t", "model.lr=0.2", "-y", cwd=root, env=clean_env(tmp_path / "runs"))
    assert cp.returncode == 0, cp.stderr
    assert load_records(tmp_path / "runs")[0]["flags"] == {"batch-size": 8, "model.lr": 0.2, "_x": "a"}


@pytest.mark.parametrize("arg", ["../x=1", "--evil=1", "a b=1", "=1", "1st=2", "x/y=1"])
def test_flag_names_on_the_command_line_follow_the_same_rule(tmp_path: Path, arg: str) -> None:
    root = _project(tmp_path, _QUICK + "    flags:\n      x: 1\n")
    line = _refused(root, "run", "t", arg, "-y")
    assert any(n in line for n in ("not a valid flag name", "expected NAME=VALUE", "unknown option")), line


def test_flags_import_names_follow_the_rule(tmp_path: Path) -> None:
    line = _refused(_project(tmp_path, _QUICK + "    flags-import: [--batch-size]\n"))
    assert "guildfile.yml:5: operation 't': flags-import: '--batch-size' is not a valid flag name" in line, line


@pytest.mark.parametrize("name", ['"x\\n#SBATCH --output=/tmp/x"', '"a b"', '"-x"', '"../x"', '""', "null", "true",
                                  '"a=b"'])
def test_op_names_outside_the_rule_are_refused(tmp_path: Path, name: str) -> None:
    line = _refused(_project(tmp_path, f"operations:\n  {name}:\n    main: t.py\n"), "ops")
    assert "guildfile.yml:2: operation name" in line and "is not valid" in line, line


def test_op_names_with_dashes_dots_colons_and_digits_stay_legal(tmp_path: Path) -> None:
    gf = load(_write(tmp_path, "operations:\n" + "".join(f"  {n}:\n    main: train.py\n"
                                                         for n in ("train-small", "eval.v2", "a:b", "01-prep", 7))))
    assert list(gf.operations) == ["train-small", "eval.v2", "a:b", "01-prep", "7"]


@pytest.mark.parametrize("args", ['["--comment=a\\ntouch PWNED #"]', '"--comment=\'a\\rb\'"'])
def test_sbatch_args_cannot_add_lines_to_the_sbatch_script(tmp_path: Path, args: str) -> None:
    line = _refused(_project(tmp_path, f"slurm:\n  sbatch-args: {args}\n" + _QUICK), "ops")
    assert "guildfile.yml:2: the guildfile: slurm 'sbatch-args':" in line and "control character" in line, line


@pytest.mark.parametrize("value, needle", [
    ("2024-01-01", "2024-01-01 is a date; quote it ('2024-01-01')"),
    ("!!binary aGVsbG8=", "is bytes"),
    ("!!set {a, b}", "is set"),
    ("{default: {a: 1}}", "is a mapping"),
    ("{choices: [[1, 2], 3]}", "choice [1, 2] is a list"),
])
def test_flag_values_are_plain_scalars(tmp_path: Path, value: str, needle: str) -> None:
    line = _refused(_project(tmp_path, _QUICK + f"    flags:\n      x: {value}\n"))
    assert "operation 't' flag 'x'" in line and needle in line, line


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['touch PWNED']", "!!python/name:os.system",
                                 "!!python/object/new:os.system ['touch PWNED']", "!<tag:yaml.org,2002:python/none> x"])
def test_python_tags_are_refused_by_the_safe_loader(tmp_path: Path, tag: str) -> None:
    root = _project(tmp_path, _QUICK + f"    flags:\n      x: {tag}\n")
    assert "invalid YAML: could not determine a constructor" in _refused(root)
    assert not (root / "PWNED").exists()


_ARGPARSE_SCRIPT = """\
import argparse, sys
p = argparse.ArgumentParser()
p.add_argument("--batch-size", type=int, default=8)
p.add_argument("--1cycle", type=float, default=0.5)
p.add_argument("--model.lr", type=float, default=0.1)
a = p.parse_args()
print("ARGS", *sys.argv[1:])
"""


def test_flags_import_maps_option_names_and_skips_illegal_ones(tmp_path: Path) -> None:
    # A project json.py must not break the probe either: it imports json before the script runs.
    files = {"t.py": _ARGPARSE_SCRIPT, "json.py": "raise SystemExit('the project json.py was imported')\n"}
    root = _project(tmp_path, _QUICK + "    flags-import: all\n", files)
    env = clean_env(tmp_path / "runs", XDG_CACHE_HOME=str(tmp_path / "cache"))
    cp = run_guildlite("ops", "--json", cwd=root, env=env)
    assert cp.returncode == 0, cp.stderr
    assert sorted(json.loads(cp.stdout)["t"]["flags"]) == ["batch-size", "model.lr"]  # no `1cycle`
    cp = run_guildlite("run", "t", "batch-size=3", "-y", cwd=root, env=env)
    assert cp.returncode == 0, cp.stderr
    assert "ARGS --batch-size=3 --model.lr=0.1" in cp.stdout


def test_a_nul_in_a_stored_flag_value_stops_a_restart_cleanly(tmp_path: Path) -> None:
    # argv cannot carry a NUL, but a run.json can: a restart reuses its flags.
    root = _project(tmp_path, _QUICK + "    flags:\n      x: a\n")
    runs = tmp_path / "runs"
    cp = run_guildlite("run", "t", "-y", cwd=root, env=clean_env(runs))
    assert cp.returncode == 0, cp.stderr
    (run_dir,) = run_dirs(runs)
    record = json.loads((run_dir / "run.json").read_text())
    record["flags"]["x"] = "a\0b"
    (run_dir / "run.json").write_text(json.dumps(record))
    cp = run_guildlite("run", "--restart", run_dir.name, "-y", cwd=root, env=clean_env(runs))
    assert "holds a NUL character" in assert_clean_error(cp, 2, "flag 'x'")


@pytest.mark.parametrize("where", ["top", "op"])
def test_a_backend_that_fails_to_load_is_named_at_its_file_and_line(tmp_path: Path, where: str) -> None:
    """`backend: NAME` of an installed backend that cannot be imported: the guildfile's error names
    the file and line of that `backend:` (as for a name not installed), exit 2, nothing staged."""
    site = tmp_path / "site"
    dist = site / "broken_backend-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[guildlite.backends]\nbroken = broken_backend_mod:Broken\n")
    (site / "broken_backend_mod.py").write_text("raise RuntimeError('cannot import me')\n")
    op = "    main: hello.py\n    launcher: python\n"
    text = ("backend: broken\noperations:\n  quick:\n" + op if where == "top"
            else "operations:\n  quick:\n" + op + "    backend: broken\n")
    root = write_project(tmp_path / "project", text)
    env = clean_env(tmp_path / "runs")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(site)) if p)
    cp = run_guildlite("run", "-y", "quick", cwd=root, env=env)
    line = 1 if where == "top" else 5
    assert cp.returncode == 2, cp.stderr
    assert TRACEBACK not in cp.stderr
    error = [x for x in cp.stderr.splitlines() if x.startswith("guildlite: error: ")]
    assert len(error) == 1 and f"guildfile.yml:{line}:" in error[0] and "cannot import me" in error[0], cp.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
