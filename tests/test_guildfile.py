"""Loading guildfile.yml: a valid file becomes frozen op defs; every mistake is a GuildfileError
that names the file and the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, property_settings
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
]


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
        assert str(e).startswith(str(p.resolve()))
        assert "\n" not in str(e)
    else:
        assert gf.operations and all(op.main for op in gf.operations.values())
