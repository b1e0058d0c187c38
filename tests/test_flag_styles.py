"""Flags that really arrive, for scripts written in each common style, run unmodified.

Every flag's effect is asserted from what the script itself PRINTED (its ``output.log``), never
from guildlite's record alone: argparse with a hand ``str2bool`` helper, click (``--x/--no-x`` and
``type=bool``), a ``--key=value`` configurator that ``ast.literal_eval``s each value and asserts its
type (nanoGPT's), module globals rewritten in the staged copy (``flags-dest: globals``), positional
arguments, list flags (argparse ``nargs='+'``, ``action='append'``, comma-joined), ``arg-encoding``
and ``${flag}`` in ``main``. Then the checks that make a mismatch an error instead of a lie.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error


def _run(proj: Project, *args: str, code: int = 0) -> tuple[dict[str, Any], str]:
    """``guildlite run ARGS``: (the newest run's record, what its script printed)."""
    cp = proj.run("run", *args, "-y")
    assert cp.returncode == code, (cp.returncode, cp.stdout, cp.stderr)
    rec = proj.records()[-1]
    log = proj.runs_dir / rec["id"] / "output.log"
    return rec, log.read_text() if log.exists() else ""


def _printed(out: str) -> dict[str, Any]:
    """The script's ``GOT {json}`` line."""
    lines = [line for line in out.splitlines() if line.startswith("GOT ")]
    assert len(lines) == 1, out
    got: dict[str, Any] = json.loads(lines[0][4:])
    return got


def _gf(body: str) -> str:
    return textwrap.dedent(body).lstrip()


# --- argparse with a hand str2bool ----------------------------------------------------------------

STR2BOOL = """\
import argparse, ast, json

def str2bool(text):
    # Many hand helpers read a Python literal: `true` is not one.
    value = ast.literal_eval(text)
    if not isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
    return value

p = argparse.ArgumentParser()
p.add_argument("--use-amp", type=str2bool, default=False)
p.add_argument("--shuffle", type=str2bool, default=True)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--tag", default=None)
args = p.parse_args()
print("GOT " + json.dumps(vars(args)))
"""


def test_argparse_str2bool_gets_python_booleans(make_project: Callable[..., Project]) -> None:
    # Before: `--use-amp=true`, which this str2bool rejects (the run failed before training).
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags-import: all
        """)
    proj = make_project(gf, {"train.py": STR2BOOL})
    rec, out = _run(proj, "train", "use-amp=true", "shuffle=false", "lr=0.5")
    assert rec["cmd"][-3:] == ["--use-amp=True", "--shuffle=False", "--lr=0.5"]
    assert _printed(out) == {"use_amp": True, "shuffle": False, "lr": 0.5, "tag": None}
    # None (tag's default) is left out: the script's own default applies.
    assert not any(a.startswith("--tag") for a in rec["cmd"])


def test_arg_encoding_per_op_and_per_flag(make_project: Callable[..., Project]) -> None:
    script = textwrap.dedent("""\
        import argparse, json
        p = argparse.ArgumentParser()
        p.add_argument("--amp", type=lambda s: bool(s), default=None)   # Guild's '1' / '' style
        p.add_argument("--debug", default="unset")
        p.add_argument("--mode", default="unset")
        p.add_argument("--resume", default="unset")
        args = p.parse_args()
        print("GOT " + json.dumps(vars(args)))
        """)
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            arg-encoding: {true: "1", false: ""}
            flags:
              amp: false
              debug: {default: true, arg-encoding: {true: "on", false: null}}
              mode: {default: fast, arg-encoding: {fast: F, slow: S}}
              resume: {default: null, arg-encoding: {null: none}}
        """)
    proj = make_project(gf, {"train.py": script})
    rec, out = _run(proj, "train", "amp=true")
    assert _printed(out) == {"amp": True, "debug": "on", "mode": "F", "resume": "none"}
    rec, out = _run(proj, "train", "amp=false", "debug=false", "mode=slow", "resume=ckpt.pt")
    assert _printed(out) == {"amp": False, "debug": "unset", "mode": "S", "resume": "ckpt.pt"}
    assert "--amp=" in rec["cmd"] and not any(a.startswith("--debug") for a in rec["cmd"])


# --- click ----------------------------------------------------------------------------------------

CLICK = """\
import json
import click

@click.command()
@click.option("--compile/--no-compile", default=False)
@click.option("--shuffle/--no-shuffle", default=True)
@click.option("--debug", type=bool, default=False)
@click.option("--lr", type=float, default=0.1)
@click.option("--name", default="run")
def main(compile, shuffle, debug, lr, name):
    print("GOT " + json.dumps(dict(compile=compile, shuffle=shuffle, debug=debug, lr=lr, name=name)))

main()
"""


@pytest.mark.parametrize("compile_, shuffle, debug", [(True, False, True), (False, True, False)])
def test_click_switches_and_bool_options(
    make_project: Callable[..., Project], compile_: bool, shuffle: bool, debug: bool
) -> None:
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags:
              compile: {default: false, arg-switch: true}
              shuffle: {default: true, arg-switch: false, arg-name: --no-shuffle}
              debug: false
              lr: 0.1
              name: run
        """)
    proj = make_project(gf, {"train.py": CLICK})
    rec, out = _run(proj, "train", f"compile={compile_}", f"shuffle={shuffle}", f"debug={debug}",
                    "lr=0.25", "name=it's a \"name\"")
    assert _printed(out) == {"compile": compile_, "shuffle": shuffle, "debug": debug, "lr": 0.25,
                             "name": "it's a \"name\""}


# --- a literal-eval configurator (nanoGPT's) -------------------------------------------------------

CONFIGURATOR = """\
import json, sys
from ast import literal_eval

compile = True
batch_size = 12
learning_rate = 6e-4
dataset = "shakespeare"
dropout = 0.0

for arg in sys.argv[1:]:
    key, val = arg[2:].split("=", 1)
    try:
        attempt = literal_eval(val)
    except (SyntaxError, ValueError):
        attempt = val
    assert type(attempt) == type(globals()[key]), f"{key}: {attempt!r} is not a {type(globals()[key]).__name__}"
    globals()[key] = attempt

print("GOT " + json.dumps(dict(compile=compile, batch_size=batch_size, learning_rate=learning_rate,
                               dataset=dataset, dropout=dropout)))
"""


def test_literal_eval_configurator_accepts_every_flag_type(make_project: Callable[..., Project]) -> None:
    # Before: `--compile=false` fell back to the string 'false' and the type assert ended the run.
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags:
              compile: true
              batch_size: 12
              learning_rate: 6.0e-4
              dataset: shakespeare
              dropout: 0.0
        """)
    proj = make_project(gf, {"train.py": CONFIGURATOR})
    rec, out = _run(proj, "train", "compile=false", "batch_size=4", "learning_rate=1e-3", "dataset=owt",
                    "dropout=0")
    assert rec["status"] == "completed", out
    assert _printed(out) == {"compile": False, "batch_size": 4, "learning_rate": 0.001, "dataset": "owt",
                             "dropout": 0.0}


# --- module globals --------------------------------------------------------------------------------

GLOBALS = """\
# Training settings: edit here, or let guildlite set them.
import json

lr = 0.1            # learning rate
epochs: int = 3     # an annotated one
name = "base"       # a string
amp = False
momentum = -0.5
layers = [64, 64]   # a list
shape = (2, 3)      # a tuple stays a tuple
resume = None
DEVICE = "cpu"
steps = epochs * 10  # computed: not a flag
_cache = {}          # private: not a flag

print("GOT " + json.dumps(dict(lr=lr, epochs=epochs, name=name, amp=amp, momentum=momentum, layers=layers,
                               shape=list(shape), shape_type=type(shape).__name__, resume=resume,
                               DEVICE=DEVICE, steps=steps)))
"""

GLOBALS_GF = "operations:\n  train:\n    main: train.py\n    launcher: python\n"


def test_globals_are_imported_without_running_the_script(make_project: Callable[..., Project]) -> None:
    marker = "import pathlib\npathlib.Path(__file__).with_name('executed').write_text('ran')\n"
    proj = make_project(GLOBALS_GF, {"train.py": marker + GLOBALS})
    op = proj.run_json("ops", "--json")["train"]
    assert op["flags_dest"] == "globals"
    flags = op["flags"]
    assert {n: (f["type"], f["default"]) for n, f in flags.items()} == {
        "lr": ("float", 0.1), "epochs": ("int", 3), "name": ("str", "base"), "amp": ("bool", False),
        "momentum": ("float", -0.5), "layers": ("list", [64, 64]), "shape": ("list", [2, 3]),
        "resume": (None, None), "DEVICE": ("str", "cpu"),
    }
    assert not (proj.root / "executed").exists()


def test_globals_reach_the_script_and_diff_shows_exactly_the_edits(make_project: Callable[..., Project]) -> None:
    # Before: the run completed with x=0.1 while run.json said 0.2.
    proj = make_project(GLOBALS_GF, {"train.py": GLOBALS})
    rec, out = _run(proj, "train", "lr=0.02", "epochs=5", "amp=true", "momentum=-0.9", "layers=8,16,32",
                    "shape=4,5", "resume=last.pt")
    assert _printed(out) == {
        "lr": 0.02, "epochs": 5, "name": "base", "amp": True, "momentum": -0.9, "layers": [8, 16, 32],
        "shape": [4, 5], "shape_type": "tuple", "resume": "last.pt", "DEVICE": "cpu", "steps": 50,
    }
    assert rec["cmd"][-1] == "train.py"  # a plain `python train.py`: nothing passed on the command line
    diff = proj.run("diff", rec["id"])
    assert diff.returncode == 0, diff.stderr
    lines = diff.stdout.splitlines()
    removed = [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert removed == [
        "lr = 0.1            # learning rate", "epochs: int = 3     # an annotated one", "amp = False",
        "momentum = -0.5", "layers = [64, 64]   # a list", "shape = (2, 3)      # a tuple stays a tuple",
        "resume = None",
    ]
    assert added == [
        "lr = 0.02            # learning rate", "epochs: int = 5     # an annotated one", "amp = True",
        "momentum = -0.9", "layers = [8, 16, 32]   # a list", "shape = (4, 5)      # a tuple stays a tuple",
        "resume = 'last.pt'",
    ]
    # The source snapshot was taken before the edit; the project's file is untouched.
    assert (proj.root / "train.py").read_text() == GLOBALS
    manifest = json.loads((proj.runs_dir / rec["id"] / ".guildlite" / "sourcecode.json").read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]}["train.py"] == hashlib.sha256(
        GLOBALS.encode()).hexdigest()
    # Default values leave the file exactly as written.
    rec, out = _run(proj, "train")
    assert proj.run("diff", rec["id"]).stdout.strip() == "(staged source matches the project)"


def test_globals_batch_trials_each_get_their_values(make_project: Callable[..., Project]) -> None:
    proj = make_project(GLOBALS_GF, {"train.py": GLOBALS})
    cp = proj.run("run", "train", "lr=[0.5,0.25]", "layers=[[1],[2,3]]", "-y")
    assert cp.returncode == 0, cp.stderr
    trials = [r for r in proj.records() if r.get("is_trial")]
    got = sorted((_printed((proj.runs_dir / t["id"] / "output.log").read_text())["lr"],
                  _printed((proj.runs_dir / t["id"] / "output.log").read_text())["layers"]) for t in trials)
    assert got == [(0.25, [1]), (0.25, [2, 3]), (0.5, [1]), (0.5, [2, 3])]


@pytest.mark.parametrize("value", [
    "it's \"quoted\"",
    "two\nlines\\and a backslash",
    "unicode: é 中文 🚀",
    "'); import os; os.system('echo pwned') #",
    "${not_interpolated} {} %s",
])
def test_globals_hostile_strings_arrive_exactly(make_project: Callable[..., Project], value: str) -> None:
    proj = make_project(GLOBALS_GF, {"train.py": GLOBALS})
    _, out = _run(proj, "train", f"name={value}")
    assert _printed(out)["name"] == value
    assert "pwned" not in out.replace(value, "")


def test_globals_special_floats_and_a_latin1_script(make_project: Callable[..., Project]) -> None:
    script = "# -*- coding: latin-1 -*-\nimport json\nlr = 0.1  # caf\xe9\nname = 'x'\n" \
             "print('GOT ' + json.dumps(dict(lr=repr(lr), name=name)))\n"
    proj = make_project(GLOBALS_GF, {})
    (proj.root / "train.py").write_bytes(script.encode("latin-1"))
    _, out = _run(proj, "train", "lr=inf", "name=\u00e9t\u00e9 \u4e2d")
    assert _printed(out) == {"lr": "inf", "name": "\u00e9t\u00e9 \u4e2d"}
    _, out = _run(proj, "train", "lr=nan")
    assert _printed(out)["lr"] == "nan"


def test_globals_a_flag_without_its_global_is_refused_before_staging(make_project: Callable[..., Project]) -> None:
    script = "import json\nlr = 0.1\nlr2 = lr * 2\nwd = 0.1\nwd = 0.2\nprint('GOT ' + json.dumps(lr))\n"
    gf = _gf("""
        operations:
          missing:
            main: train.py
            launcher: python
            flags-dest: globals
            flags: {lr: 0.1, momentum: 0.9}
          computed:
            main: train.py
            launcher: python
            flags-dest: globals
            flags: {lr2: 0.2}
          twice:
            main: train.py
            launcher: python
            flags-dest: globals
            flags: {wd: 0.2}
        """)
    proj = make_project(gf, {"train.py": script})
    for op, needles in (("missing", ["momentum", "no top-level assignment"]),
                        ("computed", ["lr2", "not as a top-level"]),
                        ("twice", ["wd", "more than once", "lines 4, 5"])):
        assert_clean_error(proj.run("run", op, "-y"), 2, *needles)
    assert proj.run_dirs() == []


REVERT_PLUGIN = """\
from guildlite import Plugin

class Revert(Plugin):
    priority = 200   # after the built-in that set the globals

    def on_run_staged(self, run):
        path = run.run_dir / "train.py"
        path.write_text(path.read_text().replace("lr = 0.5", "lr = 0.1"))
"""


def test_globals_an_edit_undone_by_a_later_plugin_fails_the_run_before_launch(
    make_project: Callable[..., Project],
) -> None:
    gf = GLOBALS_GF + "    plugins: [{class: revert:Revert}]\n"
    proj = make_project(gf, {"train.py": "import json\nlr = 0.1\nprint('GOT ' + json.dumps(lr))\n",
                             "revert.py": REVERT_PLUGIN})
    rec, out = _run(proj, "train", "lr=0.5", code=1)
    assert rec["status"] == "error" and rec["started"] is None and "GOT" not in out
    assert "does not reach the script" in rec["error"]["message"] and "0.5" in rec["error"]["message"]


def test_flags_import_of_a_configurator_reads_its_globals_and_never_runs_it(
    make_project: Callable[..., Project],
) -> None:
    # nanoGPT's pattern: globals, then --key=value from sys.argv. The flags come from the globals
    # (the script is not run to find them) and are passed as --key=value, typed as the script asserts.
    marker = "import pathlib\npathlib.Path(__file__).with_name('executed').write_text('ran')\n"
    gf = "operations:\n  train: {main: train.py, launcher: python, flags-import: all}\n"
    proj = make_project(gf, {"train.py": marker + CONFIGURATOR, "c.py": CLICK})
    ops = proj.run_json("ops", "--json")
    assert not (proj.root / "executed").exists()
    assert {n: f["type"] for n, f in ops["train"]["flags"].items()} == {
        "compile": "bool", "batch_size": "int", "learning_rate": "float", "dataset": "str", "dropout": "float"}
    rec, out = _run(proj, "train", "compile=false", "learning_rate=0.01")
    assert _printed(out) == {"compile": False, "batch_size": 12, "learning_rate": 0.01, "dataset": "shakespeare",
                             "dropout": 0.0}
    assert "--compile=False" in rec["cmd"]
    # A click script: its options are read from its decorators, never by running it.
    (proj.root / "c.py").write_text(marker.replace("executed", "click-ran") + CLICK)
    (proj.root / "guildfile.yml").write_text(gf + "  click: {main: c.py, launcher: python, flags-import: all}\n")
    ops = proj.run_json("ops", "--json")
    assert not (proj.root / "click-ran").exists()
    assert {n: f["type"] for n, f in ops["click"]["flags"].items()} == {
        "compile": "bool", "shuffle": "bool", "debug": "bool", "lr": "float", "name": "str"}
    rec, out = _run(proj, "click", "shuffle=no", "debug=yes", "lr=0.5", "name=x")
    assert _printed(out) == {"compile": False, "shuffle": False, "debug": True, "lr": 0.5, "name": "x"}


# --- argparse: every passed option exists ----------------------------------------------------------


def test_argparse_option_the_parser_lacks_is_refused_before_staging(make_project: Callable[..., Project]) -> None:
    # parse_known_args drops unknown options silently: guildlite refuses to pass one.
    script = textwrap.dedent("""\
        import argparse, json
        p = argparse.ArgumentParser()
        p.add_argument("--lr", type=float, default=0.1)
        args, _unknown = p.parse_known_args()
        print("GOT " + json.dumps(vars(args)))
        """)
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags-import: all
            flags:
              momentum: 0.9
          renamed:
            main: train.py
            launcher: python
            flags-import: all
            flags:
              learning-rate: {default: 0.2, arg-name: --lr}
              notes: {default: x, arg-skip: true}
        """)
    proj = make_project(gf, {"train.py": script})
    assert_clean_error(proj.run("run", "train", "-y"), 2, "momentum", "--momentum", "arg-skip")
    assert proj.run_dirs() == []
    _, out = _run(proj, "renamed", "learning-rate=0.3")
    assert _printed(out) == {"lr": 0.3}


# --- positional arguments -------------------------------------------------------------------------

POSITIONAL = """\
import json, sys
print("GOT " + json.dumps(sys.argv[1:]))
"""


def test_positional_flags_follow_mains_fixed_args(make_project: Callable[..., Project]) -> None:
    gf = _gf("""
        operations:
          train:
            main: pos.py fixed
            launcher: python
            flags:
              out: {default: out.txt, arg-position: 1}
              data: {default: data.csv, arg-position: 0}
              verbose: {default: false}
              sizes: {default: [1, 2], arg-position: 2}
        """)
    proj = make_project(gf, {"pos.py": POSITIONAL})
    _, out = _run(proj, "train", "data=my data.csv", "verbose=true")
    assert _printed(out) == ["fixed", "my data.csv", "out.txt", "1", "2", "--verbose=True"]
    _, out = _run(proj, "train", "data=-1", "sizes=")  # a value starting with '-' stays a positional value
    assert _printed(out) == ["fixed", "-1", "out.txt", "--verbose=False"]
    # A positional flag without a value cannot keep the others in place: refused before staging.
    n = len(proj.run_dirs())
    assert_clean_error(proj.run("run", "train", "data=null", "-y"), 2, "data", "positional")
    assert len(proj.run_dirs()) == n


def test_arg_position_must_be_consecutive(make_project: Callable[..., Project]) -> None:
    gf = "operations:\n  train:\n    main: pos.py\n    flags:\n      a: {default: 1, arg-position: 1}\n"
    proj = make_project(gf, {"pos.py": POSITIONAL})
    assert_clean_error(proj.run("ops"), 2, "arg-position")


# --- list flags -----------------------------------------------------------------------------------

LISTS = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, nargs="+", default=[64, 64])
p.add_argument("--tags", action="append")
p.add_argument("--ids", type=lambda s: [int(x) for x in s.split(",")], default=[0])
p.add_argument("--words", nargs="*", default=[])
args = p.parse_args()
print("GOT " + json.dumps(vars(args)))
"""


def test_list_flags_reach_argparse_nargs_append_and_a_joined_option(make_project: Callable[..., Project]) -> None:
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags-import: all
            flags:
              ids: {default: [0], arg-split: ","}
        """)
    proj = make_project(gf, {"train.py": LISTS})
    rec, out = _run(proj, "train", "layers=128,-1,32", "tags=a,b c", "ids=1,2", "words=")
    assert _printed(out) == {"layers": [128, -1, 32], "tags": ["a", "b c"], "ids": [1, 2], "words": []}
    assert rec["flags"]["layers"] == [128, -1, 32]
    # The quoted list literal is one value, not batch syntax.
    rec, out = _run(proj, "train", "layers='[7, 8]'", "words='[\"x,y\", z]'")
    assert _printed(out)["layers"] == [7, 8] and _printed(out)["words"] == ["x,y", "z"]
    # A batch of list values: a grid whose items are lists.
    cp = proj.run("run", "train", "layers=[[1,2],[3]]", "-y")
    assert cp.returncode == 0, cp.stderr
    trials = [r for r in proj.records() if r.get("is_trial")]
    assert sorted(_printed((proj.runs_dir / t["id"] / "output.log").read_text())["layers"][0]
                  for t in trials) == [1, 3]


def test_a_bare_grid_of_scalars_for_a_list_flag_says_how_to_write_it(make_project: Callable[..., Project]) -> None:
    proj = make_project("operations:\n  train:\n    main: train.py\n    launcher: python\n    flags-import: all\n",
                        {"train.py": LISTS})
    assert_clean_error(proj.run("run", "train", "layers=[64,128]", "-y"), 2, "layers=64,128", "[[a,b],[c,d]]")
    assert proj.run_dirs() == []


def test_arg_split_splits_a_string_value_into_items(make_project: Callable[..., Project]) -> None:
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags:
              layers: {default: "64 64", arg-split: true}
        """)
    proj = make_project(gf, {"train.py": LISTS})
    _, out = _run(proj, "train", "layers=16 8 4")
    assert _printed(out)["layers"] == [16, 8, 4]


# --- ${flag} in main ------------------------------------------------------------------------------


def test_main_interpolates_flags_and_does_not_pass_them_again(make_project: Callable[..., Project]) -> None:
    gf = _gf("""
        operations:
          train:
            main: pos.py config/${dataset}.py +db.user=${user} cost=$${literal}
            launcher: python
            flags:
              dataset: small
              user: {default: "a b"}
              lr: 0.1
        """)
    proj = make_project(gf, {"pos.py": POSITIONAL})
    _, out = _run(proj, "train", "dataset=large")
    assert _printed(out) == ["config/large.py", "+db.user=a b", "cost=${literal}", "--lr=0.1"]


def test_main_referring_to_an_unknown_flag_fails_at_load(make_project: Callable[..., Project]) -> None:
    gf = "operations:\n  train:\n    main: pos.py config/${nope}.py\n    flags: {dataset: small}\n"
    proj = make_project(gf, {"pos.py": POSITIONAL})
    assert_clean_error(proj.run("ops"), 2, "${nope}", "guildfile.yml:3")
    assert_clean_error(proj.run("run", "train", "-y"), 2, "${nope}")
    assert proj.run_dirs() == []


def test_encoding_of_env_and_config_stays_native(make_project: Callable[..., Project]) -> None:
    script = "import json, os\nprint('GOT ' + json.dumps({k: v for k, v in os.environ.items() if k.startswith('FLAG_')}))\n"
    gf = _gf("""
        operations:
          train:
            main: env.py
            launcher: python
            flags-dest: env
            flags: {amp: false, layers: {default: [1, 2]}}
        """)
    proj = make_project(gf, {"env.py": script})
    _, out = _run(proj, "train", "amp=true")
    assert _printed(out) == {"FLAG_AMP": "true", "FLAG_LAYERS": "[1, 2]"}


def test_list_defaults_in_the_guildfile(tmp_path: Path) -> None:
    """Pure: a list default is a list flag; a bare list stays refused (choices?); dicts and nested lists too."""
    from guildlite._errors import GuildfileError
    from guildlite._guildfile import load

    p = tmp_path / "guildfile.yml"
    (tmp_path / "t.py").write_text("")
    p.write_text("operations:\n  t:\n    main: t.py\n    flags:\n      l: {default: [1, 2]}\n")
    assert load(p).operations["t"].flags["l"].value_type == "list"
    p.write_text("operations:\n  t:\n    main: t.py\n    flags:\n      l: [1, 2]\n")
    with pytest.raises(GuildfileError, match="bare list"):
        load(p)
    for bad, needle in (("{default: {a: 1}}", "not a string, number"), ("{default: [[1]]}", "is a list, not")):
        p.write_text(f"operations:\n  t:\n    main: t.py\n    flags:\n      l: {bad}\n")
        with pytest.raises(GuildfileError, match=needle):
            load(p)


def test_globals_of_a_module_main(make_project: Callable[..., Project]) -> None:
    gf = "operations:\n  train:\n    main: pkg.train\n    launcher: python\n"
    proj = make_project(gf, {"pkg/__init__.py": "", "pkg/train.py": GLOBALS})
    _, out = _run(proj, "train", "name=mod")
    assert _printed(out)["name"] == "mod"


def test_globals_restart_with_new_values_never_runs_the_old_ones(make_project: Callable[..., Project]) -> None:
    proj = make_project(GLOBALS_GF, {"train.py": GLOBALS})
    rec, out = _run(proj, "train", "lr=0.5")
    assert _printed(out)["lr"] == 0.5
    cp = proj.run("run", "--restart", rec["id"], "lr=0.7", "-y")
    after = proj.record(rec["id"])
    log = (proj.runs_dir / rec["id"] / "output.log").read_text()
    runs = [line for line in log.splitlines() if line.startswith("GOT ")]
    if cp.returncode == 0:  # the source was staged again with the new value
        assert json.loads(runs[-1][4:])["lr"] == 0.7 and after["flags"]["lr"] == 0.7
    else:  # or the stale copy was caught before the job started
        assert after["status"] == "error" and "does not reach" in after["error"]["message"]
        assert len(runs) == 1


def test_flags_into_a_module_level_dict(make_project: Callable[..., Project]) -> None:
    script = textwrap.dedent("""\
        import json
        params = {
            "lr": 0.1,          # learning rate
            "model": {"depth": 2, "act": "relu"},
            "seed": 0,
        }
        print("GOT " + json.dumps(params))
        """)
    gf = "operations:\n  train:\n    main: train.py\n    launcher: python\n    flags-dest: global:params\n" \
         "    flags-import: all\n"
    proj = make_project(gf, {"train.py": script})
    flags = proj.run_json("ops", "--json")["train"]["flags"]
    assert {n: f["default"] for n, f in flags.items()} == {"lr": 0.1, "model.depth": 2, "model.act": "relu",
                                                           "seed": 0}
    rec, out = _run(proj, "train", "lr=0.5", "model.depth=4", "model.act=gelu")
    assert _printed(out) == {"lr": 0.5, "model": {"depth": 4, "act": "gelu"}, "seed": 0}
    assert "    \"lr\": 0.5,          # learning rate" in (proj.runs_dir / rec["id"] / "train.py").read_text()


def test_globals_example_runs_as_its_readme_says(tmp_path: Path) -> None:
    import shutil

    from conftest import ROOT, run_guildlite

    proj = tmp_path / "globals"
    shutil.copytree(ROOT / "examples" / "globals", proj)
    runs = tmp_path / "runs"
    cp = run_guildlite("run", "train", "lr=0.05", "activation=tanh", "-y", cwd=proj, runs_dir=runs)
    assert cp.returncode == 0, cp.stderr
    assert "settings: lr=0.05 epochs=5 hidden=16 activation=tanh shuffle=True" in cp.stdout
    diff = run_guildlite("diff", "1", cwd=proj, runs_dir=runs).stdout
    assert "+lr = 0.05            # step size" in diff and '+activation = \'tanh\'   # cos or tanh' in diff


def test_flag_args_encodings_table() -> None:
    """Pure: every encoding rule of the command line in one table."""
    from guildlite._flag_args import flag_args
    from guildlite._flags import FlagDef
    from guildlite._guildfile import OpDef

    op = OpDef(name="t", main="t.py", arg_encoding={True: "yes"}, flags={
        "s": FlagDef("s", default="1,2", arg_split=","),       # a string split into items (Guild)
        "joined": FlagDef("joined", default=[1, 2], arg_split=","),
        "rep": FlagDef("rep", default=[1, 2], arg_split="repeat"),
        "items": FlagDef("items", default=[1.5, -2]),
        "shell": FlagDef("shell", default="x 'y z'", arg_split=True),
        "pos": FlagDef("pos", default=[3, 4], arg_split=",", arg_position=0),
        "none": FlagDef("none", default=None),
        "tiny": FlagDef("tiny", default=1.5e-5),
        "on": FlagDef("on", default=True),                          # the op's encoding
        "off": FlagDef("off", default=False),                       # no entry: Python literal
        "one": FlagDef("one", default=1),                           # 1 is not true
        "own": FlagDef("own", default=True, arg_encoding={True: "T"}),
    })
    assert flag_args(op, {k: f.default for k, f in op.flags.items()}) == [
        "3,4", "--s", "1", "2", "--joined=1,2", "--rep=1", "--rep=2", "--items", "1.5", "-2", "--shell", "x", "y z",
        "--tiny=1.5e-05", "--on=yes", "--off=False", "--one=1", "--own=T",
    ]


def test_declared_flags_of_a_globals_script_set_its_globals(make_project: Callable[..., Project]) -> None:
    # The reproduction: before, the run completed, run.json said x=0.2, the script used 0.1,
    # and compare showed the flag x 0.2 next to the scalar x 0.1.
    gf = "operations:\n  train:\n    main: train.py\n    launcher: python\n    flags:\n      x: 0.1\n"
    proj = make_project(gf, {"train.py": "x = 0.1\nprint(f'x: {x}')\n"})
    rec, out = _run(proj, "train", "x=0.2")
    assert "x: 0.2" in out.splitlines()
    rows = proj.run_json("compare", "--json")
    assert (rows[0]["x"], rows[0]["x (scalar)"]) == (0.2, 0.2)
    # A declared flag with no global next to one that has one: refused, nothing staged.
    gf2 = gf + "      y: 1\n"
    proj2 = make_project(gf2, {"train.py": "x = 0.1\nprint(f'x: {x}')\n"}, name="p2")
    assert_clean_error(proj2.run("run", "train", "-y"), 2, "flag 'y'", "no top-level assignment")
    assert proj2.run_dirs() == []


def test_globals_a_declared_flag_renamed_to_a_global_is_that_global(make_project: Callable[..., Project]) -> None:
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags-import: all
            flags:
              learning-rate: {default: 0.3, arg-name: lr}
          twins:
            main: train.py
            launcher: python
            flags-dest: globals
            flags:
              a: {default: 0.3, arg-name: lr}
              b: {default: 0.4, arg-name: lr}
        """)
    proj = make_project(gf, {"train.py": "import json\nlr = 0.1\nwd = 0\nprint('GOT ' + json.dumps([lr, wd]))\n"})
    assert sorted(proj.run_json("ops", "--json")["train"]["flags"]) == ["learning-rate", "wd"]
    _, out = _run(proj, "train", "learning-rate=0.5")
    assert _printed(out) == [0.5, 0]
    assert_clean_error(proj.run("run", "twins", "-y"), 2, "'a' and 'b' both set lr")


def test_globals_under_torchrun_every_rank_sees_the_values(make_project: Callable[..., Project]) -> None:
    script = "import json, os\nlr = 0.1\nname = 'a'\nprint('GOT ' + json.dumps([os.environ['RANK'], lr, name]))\n"
    proj = make_project("operations:\n  train:\n    main: train.py\n    nproc-per-node: 2\n", {"train.py": script})
    _, out = _run(proj, "train", "lr=0.5", "name=b c")
    got = sorted(json.loads(line.split("GOT ", 1)[1]) for line in out.splitlines() if "GOT " in line)
    assert got == [["0", 0.5, "b c"], ["1", 0.5, "b c"]]


# --- absl flags (flags.DEFINE_*, app.run) ----------------------------------------------------------

ABSL = """\
import json

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_float("learning_rate", 0.01, "Learning rate.", lower_bound=0.0)
flags.DEFINE_integer(name="num_epochs", default=3, help="Epochs.")
flags.DEFINE_boolean("use_bias", True, "Use a bias term.")
flags.DEFINE_string("note", "plain", "Free text.")
flags.DEFINE_enum("activation", "relu", ["relu", "tanh"], "Activation.")
flags.DEFINE_list("layers", "32,16", "Hidden sizes.")
flags.DEFINE_multi_string("tag", ["a"], "Repeated.")


def main(argv):
    print("GOT " + json.dumps(dict(
        learning_rate=FLAGS.learning_rate, num_epochs=FLAGS.num_epochs, use_bias=FLAGS.use_bias,
        note=FLAGS.note, activation=FLAGS.activation, layers=FLAGS.layers, tag=FLAGS.tag,
        leftover=argv[1:])))


if __name__ == "__main__":
    app.run(main)
"""


def test_absl_flags_are_imported_from_the_source_and_arrive(make_project: Callable[..., Project]) -> None:
    """``guildlite run train.py`` of an absl script (no guildfile op): its DEFINE_* calls are its
    flags (types, enum choices, bounds, list defaults given as absl's text), and every value,
    lists included, reaches FLAGS with nothing left in the positional argv."""
    proj = make_project("", {"train.py": ABSL})
    (proj.root / "guildfile.yml").unlink()
    cp = proj.run("ops")
    assert cp.returncode == 0, cp.stderr
    rec, out = _run(proj, "train.py", "learning_rate=0.25", "num_epochs=2", "use_bias=false",
                    "note=a b, c", "activation=tanh", "layers=8,4,2", "tag=x,y")
    got = _printed(out)
    assert got == {"learning_rate": 0.25, "num_epochs": 2, "use_bias": False, "note": "a b, c",
                   "activation": "tanh", "layers": ["8", "4", "2"], "tag": ["x", "y"], "leftover": []}
    assert rec["flags"]["layers"] == ["8", "4", "2"] and rec["flags"]["tag"] == ["x", "y"]
    _, out = _run(proj, "train.py")  # the defaults, as absl itself has them
    assert _printed(out)["layers"] == ["32", "16"] and _printed(out)["tag"] == ["a"]
    for bad in ("activation=sigmoid", "learning_rate=-1", "num_epochs=2.5"):
        cp = proj.run("run", "train.py", bad, "-y")
        assert_clean_error(cp, 2)
    assert len(proj.records()) == 2


def test_absl_list_flag_declared_in_the_guildfile_arrives_whole(make_project: Callable[..., Project]) -> None:
    """A list flag declared by hand for an absl DEFINE_list option was passed as ``--layers 8 4``:
    absl kept ``["8"]`` and ``4`` fell into argv, unread, while run.json said ``[8, 4]``."""
    gf = _gf("""
        operations:
          train:
            main: train.py
            launcher: python
            flags:
              layers: {default: ["32", "16"]}
              tag: {default: [a]}
        """)
    proj = make_project(gf, {"train.py": ABSL})
    rec, out = _run(proj, "train", "layers=8,4", "tag=p,q")
    got = _printed(out)
    assert got["layers"] == rec["flags"]["layers"] == ["8", "4"]
    assert got["tag"] == rec["flags"]["tag"] == ["p", "q"]
    assert got["leftover"] == []


# --- nanoGPT's layout: globals, then exec(open('configurator.py').read()), then more globals ------

NANOGPT_CONFIGURATOR = """\
import sys
from ast import literal_eval
for arg in sys.argv[1:]:
    if '=' not in arg:
        assert not arg.startswith('--')
        exec(open(arg).read())
    else:
        assert arg.startswith('--')
        key, val = arg.split('=')
        key = key[2:]
        if key in globals():
            try:
                attempt = literal_eval(val)
            except (SyntaxError, ValueError):
                attempt = val
            assert type(attempt) == type(globals()[key])
            globals()[key] = attempt
        else:
            raise ValueError(f"Unknown config key: {key}")
"""

NANOGPT_TRAIN = """\
import json
# -----------------------------------------------------------------------------
out_dir = 'out'
max_iters = 6
learning_rate = 6e-4 # max learning rate
decay_lr = True
dataset = 'openwebtext'
config_keys = [k for k,v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool, str))]
exec(open('configurator.py').read()) # overrides from command line or config file
config = {k: globals()[k] for k in config_keys}
# -----------------------------------------------------------------------------
iter_num = 0
best_val_loss = 1e9
print("GOT " + json.dumps(config))
"""


def test_nanogpt_globals_after_the_configurator_are_not_flags(make_project: Callable[..., Project]) -> None:
    """nanoGPT's ``iter_num = 0`` / ``best_val_loss = 1e9`` come after its configurator runs: as
    flags they were passed (``--iter_num=0``) and the configurator stopped the script with
    "Unknown config key: iter_num", so ``guildlite run train.py`` of nanoGPT always failed."""
    proj = make_project("", {"train.py": NANOGPT_TRAIN, "configurator.py": NANOGPT_CONFIGURATOR})
    (proj.root / "guildfile.yml").unlink()
    rec, out = _run(proj, "train.py", "learning_rate=0.001", "decay_lr=false", "dataset=shakespeare_char")
    assert _printed(out) == {"out_dir": "out", "max_iters": 6, "learning_rate": 0.001, "decay_lr": False,
                             "dataset": "shakespeare_char"}
    assert rec["status"] == "completed" and set(rec["flags"]) == set(_printed(out))
    cp = proj.run("run", "train.py", "iter_num=5", "-y")
    assert_clean_error(cp, 2, "iter_num")


# --- argparse sub-commands (`main: main.py train`) -------------------------------------------------

SUBCOMMANDS = """\
import argparse, json

parser = argparse.ArgumentParser(description="one entry point, several commands")
parser.add_argument("--verbose", action="store_true")
commands = parser.add_subparsers(dest="command", required=True)
train = commands.add_parser("train")
train.add_argument("--learning-rate", "-lr", type=float, default=0.1, dest="lr")
train.add_argument("--no-augment", action="store_false", dest="augment")
train.add_argument("--layers", type=int, nargs="+", default=[64, 64])
evaluate = commands.add_parser("eval")
evaluate.add_argument("--ckpt", default="last.pt")
args = parser.parse_args()
print("GOT " + json.dumps(vars(args)))
"""


def test_argparse_subcommand_flags_are_the_subcommands_own(make_project: Callable[..., Project]) -> None:
    """``main: main.py train`` imports the ``train`` sub-command's options: it imported the top
    parser's (``verbose`` only), so ``learning-rate=0.01`` was "no flag 'learning-rate'"; and
    ``verbose``, passed after ``train``, is an option the sub-command refuses."""
    gf = _gf("""
        operations:
          train: {main: main.py train, launcher: python, flags-import: all}
          eval: {main: main.py eval, launcher: python, flags-import: all}
        """)
    proj = make_project(gf, {"main.py": SUBCOMMANDS})
    ops = proj.run_json("ops", "--json")
    assert set(ops["train"]["flags"]) == {"learning-rate", "no-augment", "layers"}
    assert set(ops["eval"]["flags"]) == {"ckpt"}
    rec, out = _run(proj, "train", "learning-rate=0.01", "no-augment=true", "layers=8,4")
    assert _printed(out) == {"verbose": False, "command": "train", "lr": 0.01, "augment": False, "layers": [8, 4]}
    assert rec["flags"] == {"learning-rate": 0.01, "no-augment": True, "layers": [8, 4]}
    _, out = _run(proj, "eval", "ckpt=best.pt")
    assert _printed(out)["ckpt"] == "best.pt"


def test_absl_flags_defined_in_a_project_module(make_project: Callable[..., Project]) -> None:
    """Flags DEFINE'd in a module the main imports (``import flagdefs``), as many absl projects do."""
    main = ("import json\nfrom absl import app, flags\nimport flagdefs  # noqa: F401\nFLAGS = flags.FLAGS\n\n"
            "def main(argv):\n    print('GOT ' + json.dumps(dict(lr=FLAGS.lr, sizes=FLAGS.sizes, left=argv[1:])))\n\n"
            "if __name__ == '__main__':\n    app.run(main)\n")
    defs = "from absl import flags\nflags.DEFINE_float('lr', 0.1, 'lr')\nflags.DEFINE_list('sizes', [1], 'sizes')\n"  # absl parses items to text
    proj = make_project("", {"main.py": main, "flagdefs.py": defs})
    (proj.root / "guildfile.yml").unlink()
    rec, out = _run(proj, "main.py", "lr=0.5", "sizes=3,4")
    assert _printed(out) == {"lr": 0.5, "sizes": ["3", "4"], "left": []} and rec["flags"]["sizes"] == ["3", "4"]
    assert proj.run_json("ops", "-f", "main.py", "--json")["main.py"]["flags"]["sizes"]["default"] == ["1"]
