"""Guild AI's guild.yml read as is, scripts run without a guildfile, and the porting hints.

The layouts follow what Guild AI's documentation describes (the operation-only form, `- model:`
items with `operations:`, `- config:` items shared through `extends:` and `$include`, output
scalars with Guild's `\\value` / `\\step` shorthands, flags from argparse, click and globals); they
are written fresh here, and each is run unmodified, as a real process, with guildlite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from conftest import TRACEBACK, Project, read_scalars

ARGPARSE_TRAIN = """\
import argparse

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--optimizer", default="adam")
args = p.parse_args()
print("args", args.lr, args.epochs, args.optimizer)
for epoch in range(1, args.epochs + 1):
    print(f"Epoch {epoch}")
    print(f"loss={args.lr / epoch:.4f}")
    print(f"{0.5 + epoch / 10:.2f} accuracy")
"""

CLICK_TRAIN = """\
import click


@click.command()
@click.option("--x", default=0.1, type=float, help="the x")
@click.option("--batch-size", default=8)
@click.option("--mode", type=click.Choice(["fast", "slow"]), default="fast")
@click.option("--debug/--no-debug", default=False)
def main(x, batch_size, mode, debug):
    print("click", x, batch_size, mode, debug)
    print("loss:", x * 2)


if __name__ == "__main__":
    main()
"""

GLOBALS_TRAIN = """\
import os

lr = 0.5
batch_size = 16
seed = 0
print("globals", lr, batch_size, seed, os.environ.get("DATA_MODE"))
print("loss: 0.25")
"""


@pytest.fixture
def guild_project(tmp_path: Path) -> Callable[..., Project]:
    """A project of ``files`` (a guild.yml or none; never guildfile.yml unless given)."""
    made: list[Project] = []

    def make(files: dict[str, str], name: str = "p") -> Project:
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        proj = Project(root=root, runs_dir=tmp_path / f"{name}-runs")
        made.append(proj)
        return proj

    yield make  # type: ignore[misc]
    for proj in made:
        proj.cleanup()


def _ok(cp: object) -> None:
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)  # type: ignore[attr-defined]
    assert TRACEBACK not in cp.stderr  # type: ignore[attr-defined]


def _only_run(proj: Project) -> tuple[dict[str, object], Path]:
    rec = proj.only_record()
    return rec, proj.runs_dir / rec["id"]


# --- guild.yml forms ------------------------------------------------------------------------------

OPS_FORM = """\
# Guild's operation-only form: the operations are the top-level keys
train:
  description: Train a model
  main: train
  default: yes
  flags:
    lr:
      default: 0.1
      type: float
      null-label: auto
    epochs: 2
    optimizer:
      default: adam
      choices:
        - value: adam
          description: Adam
        - sgd
  output-scalars:
    - step: 'Epoch (\\step)'
    - loss: 'loss=(\\value)'
    - '(?P<acc>\\value) accuracy'
  compare:
    - loss
hello:
  main: say "hi there" --times=${times}
  flags:
    times: 2
"""


def test_operation_form_default_op_and_output_scalar_shorthands(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guild.yml": OPS_FORM, "train.py": ARGPARSE_TRAIN,
                          "say.py": "import sys\nprint('say', sys.argv[1:])\n"})
    cp = proj.run("run", "-y", "epochs=3")  # no op named: the `default: yes` one
    _ok(cp)
    assert "args 0.1 3 adam" in cp.stdout
    assert "guild.yml:22" in cp.stderr and "'compare' ignored" in cp.stderr  # presentation only: a warning
    rec, run_dir = _only_run(proj)
    assert rec["op"] == "train"
    rows = {(r["key"], r["step"]): r["value"] for r in read_scalars(run_dir)}
    assert rows[("loss", 1)] == pytest.approx(0.1) and rows[("loss", 3)] == pytest.approx(0.0333)
    assert rows[("acc", 2)] == pytest.approx(0.7)
    cp = proj.run("run", "-y", "hello", "times=5")
    _ok(cp)
    assert "say ['hi there', '--times=5']" in cp.stdout


def test_choices_are_checked_and_ops_names_the_file(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guild.yml": OPS_FORM, "train.py": ARGPARSE_TRAIN, "say.py": "print(1)\n"})
    cp = proj.run("run", "-y", "train", "optimizer=rmsprop")
    assert cp.returncode != 0 and "rmsprop" in cp.stderr and "adam" in cp.stderr
    cp = proj.run("ops")
    _ok(cp)
    assert f"operations from {proj.root / 'guild.yml'}" in cp.stderr
    assert "train" in cp.stdout and "choices: adam, sgd" in cp.stdout


MODEL_FORM = """\
- config: shared-flags
  flags:
    batch_size: 32
    seed: 1

- config: base
  sourcecode:
    - '*.py'
    - exclude: 'data/*'
  operations:
    prepare:
      main: prepare

- model: mnist
  extends: base
  description: digits
  operations:
    train:
      main: src/train
      flags-dest: globals
      flags:
        $include: shared-flags
        seed: 7
      env:
        DATA_MODE: full
      output-scalars:
        loss: 'loss: (\\value)'

- model: cifar
  operations:
    evaluate:
      main: prepare
      label: eval
    prepare:
      main: prepare
"""


def test_model_form_extends_include_env_and_op_addressing(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guild.yml": MODEL_FORM, "src/train.py": GLOBALS_TRAIN, "prepare.py": "print('prep')\n",
                          "data/big.bin": "x" * 100})
    cp = proj.run("run", "-y", "train", "batch_size=8")  # `train` is only mnist's: found by its name
    _ok(cp)
    assert "globals 0.5 8 7 full" in cp.stdout
    rec, run_dir = _only_run(proj)
    assert rec["op"] == "mnist:train"
    assert read_scalars(run_dir) == [{"step": 0, "key": "loss", "value": 0.25}]
    assert (run_dir / "src" / "train.py").is_file() and not (run_dir / "data").exists()  # base's sourcecode
    cp = proj.run("run", "-y", "prepare")  # two models have one: ambiguous
    assert cp.returncode != 0 and "mnist:prepare" in cp.stderr and "cifar:prepare" in cp.stderr
    _ok(proj.run("run", "-y", "mnist:prepare"))
    cp = proj.run("ops", "--json")
    _ok(cp)
    assert set(json.loads(cp.stdout)) == {"mnist:prepare", "mnist:train", "cifar:evaluate", "cifar:prepare"}


def test_click_flags_and_flags_import_skip(guild_project: Callable[..., Project]) -> None:
    guild_yml = ("train:\n  main: train\n  flags-dest: args:click\n  flags-import: all\n"
                 "  flags-import-skip: [batch-size]\n")
    proj = guild_project({"guild.yml": guild_yml, "train.py": CLICK_TRAIN})
    cp = proj.run("ops", "--json")
    _ok(cp)
    flags = json.loads(cp.stdout)["train"]["flags"]
    assert set(flags) == {"x", "mode", "debug"}
    assert flags["mode"]["choices"] == ["fast", "slow"]
    cp = proj.run("run", "-y", "train", "x=0.3", "mode=slow", "debug=yes")
    _ok(cp)
    assert "click 0.3 8 slow True" in cp.stdout


def test_keys_that_cannot_be_honoured_are_one_error_with_lines(guild_project: Callable[..., Project]) -> None:
    guild_yml = """\
train:
  main: train
  exec: bash run.sh
  python-path: src
  flags-dest: namespace:params
  flags:
    x:
      default: 1
      env-name: X
  bogus: 1
  label: hello
"""
    proj = guild_project({"guild.yml": guild_yml, "train.py": "x = 1\n"})
    cp = proj.run("run", "-y", "train")
    assert cp.returncode == 2, cp.stderr
    assert TRACEBACK not in cp.stderr
    assert "5 problems" in cp.stderr
    for line, word in ((3, "'exec'"), (4, "'python-path'"), (5, "namespace:params"), (9, "'env-name'"),
                       (10, "unknown key 'bogus'")):
        assert f"guild.yml:{line}: " in cp.stderr and word in cp.stderr, (line, word, cp.stderr)
    assert proj.records() == []


def test_errors_of_the_translated_file_name_guild_yml_lines(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guild.yml": "train:\n  main: train\n  flags:\n    lr:\n      default: 0.1\n      min: x\n",
                          "train.py": "lr = 0.1\n"})
    cp = proj.run("run", "-y", "train")
    assert cp.returncode == 2 and "guild.yml:6" in cp.stderr and "'min'" in cp.stderr, cp.stderr


def test_guildlite_format_file_next_to_guild_yml_wins(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({
        "guild.yml": "train:\n  main: train\n  exec: nope\n",  # would be refused if read
        "guildfile.yml": "operations:\n  native:\n    main: train.py\n    launcher: python\n",
        "train.py": "print('native ran')\n",
    })
    cp = proj.run("ops")
    _ok(cp)
    assert f"operations from {proj.root / 'guildfile.yml'}" in cp.stderr and "native" in cp.stdout
    cp = proj.run("run", "-y", "native")
    _ok(cp)
    assert "native ran" in cp.stdout


# --- scripts without a guildfile ------------------------------------------------------------------


@pytest.mark.parametrize(
    "script, args, expect",
    [
        (ARGPARSE_TRAIN, ["lr=0.2", "epochs=2"], "args 0.2 2 adam"),
        (CLICK_TRAIN, ["x=0.2", "batch-size=4"], "click 0.2 4 fast False"),
        (GLOBALS_TRAIN, ["lr=0.2", "seed=3"], "globals 0.2 16 3 None"),
    ],
    ids=["argparse", "click", "globals"],
)
def test_script_runs_without_a_guildfile(guild_project: Callable[..., Project], script: str, args: list[str],
                                         expect: str) -> None:
    proj = guild_project({"train.py": script})
    cp = proj.run("run", "-y", "train.py", *args)
    _ok(cp)
    assert expect in cp.stdout
    rec, _ = _only_run(proj)
    assert rec["op"] == "train.py"
    assert rec["flags"] == {**rec["flags"], **{a.split("=")[0]: json.loads(a.split("=")[1]) for a in args}}


def test_a_script_run_restarts_without_a_guildfile(guild_project: Callable[..., Project]) -> None:
    """``guildlite run --restart RUN`` of a ``guildlite run train.py`` run, where there is still no
    guildfile: it was "no guildfile.yml in ... or its parents"."""
    proj = guild_project({"train.py": ARGPARSE_TRAIN})
    _ok(proj.run("run", "-y", "train.py", "lr=0.2"))
    rec, run_dir = _only_run(proj)
    cp = proj.run("run", "-y", "--restart", rec["id"], "epochs=3")
    _ok(cp)
    assert "args 0.2 3 adam" in (run_dir / "output.log").read_text()
    assert proj.record(rec["id"])["flags"]["epochs"] == 3


def test_script_batch_and_unknown_flag(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"train.py": GLOBALS_TRAIN})
    cp = proj.run("run", "-y", "train.py", "lr=[0.1,0.2]")
    _ok(cp)
    values = sorted(r["flags"]["lr"] for r in proj.records() if r["status"] == "completed" and not r.get("batch"))
    assert values == [0.1, 0.2]
    cp = proj.run("run", "-y", "train.py", "nope=1")
    assert cp.returncode == 2 and "nope" in cp.stderr


def test_ops_without_a_guildfile_lists_runnable_scripts(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"train.py": ARGPARSE_TRAIN, "cli.py": CLICK_TRAIN, "util.py": "X = 1\n",
                          "setup.py": "import argparse\n", "test_x.py": "import argparse\n"})
    cp = proj.run("ops")
    _ok(cp)
    listed = [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]
    assert listed == ["cli.py", "train.py"]
    assert json.loads(proj.run("ops", "--json").stdout)["scripts"] == ["cli.py", "train.py"]


# --- porting hints --------------------------------------------------------------------------------


def test_top_level_ops_in_a_guildlite_file_get_the_hint(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guildfile.yml": "train:\n  main: train.py\nevaluate:\n  main: train.py\n",
                          "train.py": "print(1)\n"})
    cp = proj.run("ops")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr
    assert "nest these under `operations:`" in cp.stderr
    assert "'train' (line 1)" in cp.stderr and "'evaluate' (line 3)" in cp.stderr


@pytest.mark.parametrize("given, spelled", [("x=[-2:2]", "x=uniform[-2:2]"), ("x=[0:1:0.25]", "x=range[0:1:0.25]")])
def test_guild_batch_syntax_gets_the_guildlite_spelling(guild_project: Callable[..., Project], given: str,
                                                        spelled: str) -> None:
    proj = guild_project({"train.py": "x = 0.0\nprint(x)\n"})
    cp = proj.run("run", "-y", "train.py", given)
    assert cp.returncode == 2 and spelled in cp.stderr, cp.stderr
    assert proj.records() == []


# A layout like Guild's own flags example: one op per way of defining flags, unmodified.
FLAGS_EXAMPLE = """\
disabled:
  description: no main, nothing to run
  flags-import: no

globals-default:
  main: globals
  flags-import: all

globals-2:
  main: globals
  flags-import: [i, f]
  flags:
    i: 2
    f: 2.2

global-dict:
  main: global_dict
  flags-dest: global:params
  flags-import: all

args-default:
  main: args
  flags-import: yes

args-2:
  main: args
  flags-import: [f, b, s]
  flags:
    s: hola

args-click-default:
  main: args_click
  flags-dest: args:click
  flags-import: all

config:
  main: config_user
  flags-import: all
  flags-dest: config:flags.yml
"""
FLAGS_FILES = {
    "guild.yml": FLAGS_EXAMPLE,
    "globals.py": "i = 1\nf = 1.1\nb = False\ns = 'hi'\nprint('globals', i, f, b, s)\n",
    "global_dict.py": "params = {'i': 1, 'f': 1.1}\nprint('dict', params['i'], params['f'])\n",
    "args.py": ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--i', type=int, default=1)\n"
                "p.add_argument('--f', type=float, default=1.1)\np.add_argument('--b', action='store_true')\n"
                "p.add_argument('--s', default='hello')\na = p.parse_args()\nprint('args', a.i, a.f, a.b, a.s)\n"),
    "args_click.py": ("import click\n\n@click.command()\n@click.option('-i', '--i', default=1, help='an int')\n"
                      "@click.option('--b', is_flag=True)\n@click.option('--c', type=click.Choice(['red', 'blue']),"
                      " default='red')\ndef main(i, b, c):\n    print('click', i, b, c)\n\nmain()\n"),
    "flags.yml": "i: 1\nf: 1.5\n",
    "config_user.py": "import yaml\nprint('config', yaml.safe_load(open('flags.yml')))\n",
}


@pytest.mark.parametrize(
    "op, args, expect",
    [
        ("globals-default", ["s=yo", "b=yes"], "globals 1 1.1 True yo"),
        ("globals-2", ["f=3.5"], "globals 2 3.5 False hi"),
        ("global-dict", ["i=4"], "dict 4 1.1"),
        ("args-default", ["b=yes", "i=3"], "args 3 1.1 True hello"),
        ("args-2", ["f=0.5"], "args 1 0.5 False hola"),
        ("args-click-default", ["i=2", "b=yes", "c=blue"], "click 2 True blue"),
        ("config", ["f=2.5"], "config {'i': 1, 'f': 2.5}"),
    ],
)
def test_guild_flags_layout_runs_unmodified(guild_project: Callable[..., Project], op: str, args: list[str],
                                            expect: str) -> None:
    proj = guild_project(FLAGS_FILES)
    cp = proj.run("run", "-y", op, *args)
    _ok(cp)
    assert expect in cp.stdout
    assert "guild.yml:1: operation 'disabled' left out" in cp.stderr


def test_guild_flags_layout_import_list_limits_the_flags(guild_project: Callable[..., Project]) -> None:
    proj = guild_project(FLAGS_FILES)
    ops = json.loads(proj.run("ops", "--json").stdout)
    assert "disabled" not in ops
    assert set(ops["globals-2"]["flags"]) == {"i", "f"}
    assert set(ops["args-2"]["flags"]) == {"f", "b", "s"}
    cp = proj.run("run", "-y", "globals-2", "s=x")
    assert cp.returncode == 2 and "'s'" in cp.stderr


@pytest.mark.parametrize(
    "guild_yml, words",
    [
        ("- config: a\n  flags:\n    $include: a\n- model: m\n  operations:\n    t:\n      main: train\n"
         "      flags:\n        $include: a\n", ["guild.yml:3", "includes itself"]),
        ("- model: m\n  extends: m\n  operations:\n    t: {main: train}\n", ["guild.yml:2", "extends itself"]),
        ("t:\n  main: train\n  flags:\n    $include: nope\n", ["guild.yml:4", "$include 'nope'"]),
        ("a:\n  main: train\n  default: yes\nb:\n  main: train\n  default: yes\n", ["several", "(a, b)"]),
        ("t:\n  main: train\n  output-scalars:\n    loss: 'no group'\n", ["guild.yml:4", "no group"]),
        ("- model: m\n  operations: [1]\n", ["guild.yml:2", "must be a mapping"]),
        ("7\n", ["top level must be"]),
    ],
)
def test_malformed_guild_yml_is_a_clean_error(guild_project: Callable[..., Project], guild_yml: str,
                                              words: list[str]) -> None:
    proj = guild_project({"guild.yml": guild_yml, "train.py": "x = 1\n"})
    cp = proj.run("ops")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr, cp.stderr
    assert all(w in cp.stderr for w in words), cp.stderr


def test_model_extends_another_model(guild_project: Callable[..., Project]) -> None:
    guild_yml = ("- model: base\n  operations:\n    train:\n      main: train\n      flags: {x: 2}\n"
                 "- model: big\n  extends: base\n  operations:\n    evaluate: {main: train}\n")
    proj = guild_project({"guild.yml": guild_yml, "train.py": "x = 1\nprint('x is', x)\n"})
    assert set(json.loads(proj.run("ops", "--json").stdout)) == {"base:train", "big:train", "big:evaluate"}
    cp = proj.run("run", "-y", "big:train")
    _ok(cp)
    assert "x is 2" in cp.stdout


# --- shared op settings in the guildlite format --------------------------------------------------


def test_top_level_op_defaults_and_extends(guild_project: Callable[..., Project]) -> None:
    guildfile = """\
launcher: python
output-scalars: ['loss=(?P<loss>\\S+)']
operations:
  train:
    main: train.py
    flags: {lr: 0.1, epochs: 1}
  train-long:
    extends: train
    flags: {epochs: 5}
"""
    proj = guild_project({"guildfile.yml": guildfile, "train.py": (
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float)\n"
        "p.add_argument('--epochs', type=int)\na = p.parse_args()\nprint(f'loss={a.lr * a.epochs}')\n")})
    cp = proj.run("run", "-y", "train-long")
    _ok(cp)
    rec, run_dir = _only_run(proj)
    assert rec["flags"] == {"lr": 0.1, "epochs": 5}
    assert rec["op_def"]["launcher"] == "python"  # the top-level default
    assert read_scalars(run_dir) == [{"step": 0, "key": "loss", "value": 0.5}]


@pytest.mark.parametrize(
    "ops, words",
    [
        ("  a: {main: train.py, extends: b}\n  b: {main: train.py, extends: a}\n", ["guildfile.yml:5", "cycle (a -> b -> a)"]),
        ("  a: {main: train.py, extends: nope}\n", ["guildfile.yml:4", "extends 'nope'"]),
        ("  a: {main: train.py}\n  b:\n    extends: a\n    nproc-per-node: x\n", ["guildfile.yml:7", "nproc-per-node"]),
    ],
)
def test_extends_errors_name_their_lines(guild_project: Callable[..., Project], ops: str, words: list[str]) -> None:
    proj = guild_project({"guildfile.yml": "launcher: python\noutput-scalars: off\noperations:\n" + ops,
                          "train.py": "print(1)\n"})
    cp = proj.run("ops")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr, cp.stderr
    assert all(w in cp.stderr for w in words), cp.stderr


def test_output_scalars_named_by_the_output_fall_back_to_the_key_value_rule(
    guild_project: Callable[..., Project],
) -> None:
    guild_yml = "train:\n  main: train\n  output-scalars:\n    - '(\\key): (\\value)'\n"
    proj = guild_project({"guild.yml": guild_yml, "train.py": "print('loss: 0.5')\nprint('acc: 0.25')\n"})
    cp = proj.run("run", "-y", "train")
    _ok(cp)
    assert "guild.yml:4" in cp.stderr and "not captured" in cp.stderr
    _, run_dir = _only_run(proj)
    assert {r["key"]: r["value"] for r in read_scalars(run_dir)} == {"loss": 0.5, "acc": 0.25}


def test_pipeline_of_guild_steps(guild_project: Callable[..., Project]) -> None:
    guild_yml = ("prepare:\n  main: prepare\ntrain:\n  main: train\n  flags:\n    lr: 0.1\n"
                 "pipeline:\n  steps:\n    - prepare\n    - run: train\n      flags:\n        lr: 0.2\n"
                 "    - train lr=0.3\n")
    proj = guild_project({"guild.yml": guild_yml, "prepare.py": "print('prep')\n",
                          "train.py": "lr = 0.1\nprint('lr', lr)\n"})
    cp = proj.run("run", "-y", "pipeline")
    _ok(cp)
    assert "prep" in cp.stdout and "lr 0.2" in cp.stdout and "lr 0.3" in cp.stdout
    trains = sorted(r["flags"]["lr"] for r in proj.records() if r["op"] == "train")
    assert trains == [0.2, 0.3]


def test_top_level_defaults_leave_a_pipeline_alone(guild_project: Callable[..., Project]) -> None:
    guildfile = "launcher: python\noperations:\n  a: {main: a.py}\n  both:\n    steps: [a, a x=1]\n"
    proj = guild_project({"guildfile.yml": guildfile, "a.py": "x = 0\nprint('a ran', x)\n"})
    cp = proj.run("run", "-y", "both")
    _ok(cp)
    assert "a ran 0" in cp.stdout and "a ran 1" in cp.stdout
    assert {r["op_def"].get("launcher") for r in proj.records() if r["op"] == "a"} == {"python"}


# --- Hydra apps and requires, in the layouts Guild's examples use -----------------------------------

HYDRA_APP = """\
import hydra
from omegaconf import OmegaConf


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg):
    print("CFG", OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
"""

HYDRA_ARGS_APP = """\
import hydra
from omegaconf import OmegaConf


@hydra.main(version_base=None)
def main(cfg):
    print("CFG", OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
"""

# Guild's Hydra example: flag values as Hydra command args (`flags-dest: none`, `${flag}` in main),
# and the app's own config.yaml as the flags interface (`flags-dest: config:`), which Guild's
# example also names as a `config:` resource written into the source code.
HYDRA_GUILD_YML = """\
args-app:
  description: Pass flag values as Hydra command args
  main: args_app +db.driver=${driver} +db.user=${user}
  flags-dest: none
  flags:
    driver: mysql
    user: omry
config-app:
  description: The app's config file is the flags interface
  main: app
  flags-dest: config:config.yaml
  flags-import: all
  requires:
    - config: config.yaml
      target-path: .guild/sourcecode
      replace-existing: yes
"""


def test_hydra_app_runs_unmodified(guild_project: Callable[..., Project]) -> None:
    pytest.importorskip("hydra")
    proj = guild_project({"guild.yml": HYDRA_GUILD_YML, "args_app.py": HYDRA_ARGS_APP, "app.py": HYDRA_APP,
                          "config.yaml": "db:\n  driver: mysql\n  user: omry\n  port: 3306\n"})
    cp = proj.run("run", "-y", "args-app", "user=test")
    _ok(cp)
    assert "CFG {'db': {'driver': 'mysql', 'user': 'test'}}" in cp.stdout
    cp = proj.run("run", "-y", "config-app", "db.user=test", "db.port=5432")
    _ok(cp)
    assert "CFG {'db': {'driver': 'mysql', 'user': 'test', 'port': 5432}}" in cp.stdout
    rec = next(r for r in proj.records() if r["op"] == "config-app")
    assert rec["flags"]["db.user"] == "test" and rec["flags"]["db.port"] == 5432


PREPARE = """\
import os

os.makedirs("prepared", exist_ok=True)
with open("prepared/train.csv", "w") as f:
    f.write("x,y\\n1,2\\n")
with open("prepared/notes.txt", "w") as f:
    f.write("not selected\\n")
print("prepared")
"""

USE_DATA = """\
import os

print("train.csv", open("prepared/train.csv").read().splitlines())
print("notes", os.path.exists("prepared/notes.txt"))
print("labels", open("data/labels.txt").read().strip())
print("vocab", open("vocab/words.txt").read().strip())
"""

# Guild's requires: an upstream op with `select:`, a project file, and the inline named form
# (`- name: ..., sources: [...]`).
REQUIRES_GUILD_YML = """\
prepare:
  main: prepare
train:
  main: train
  requires:
    - operation: prepare
      select: prepared/train\\.csv
    - file: data/labels.txt
    - name: vocab
      sources:
        - file: words.txt
          target-path: vocab
"""


def test_requires_of_files_and_an_upstream_op(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guild.yml": REQUIRES_GUILD_YML, "prepare.py": PREPARE, "train.py": USE_DATA,
                          "data/labels.txt": "cat dog\n", "words.txt": "hello world\n"})
    cp = proj.run("run", "-y", "train")
    assert cp.returncode != 0 and TRACEBACK not in cp.stderr  # no prepare run yet: a clean refusal
    assert "prepare" in cp.stderr
    _ok(proj.run("run", "-y", "prepare"))
    cp = proj.run("run", "-y", "train")
    _ok(cp)
    assert "train.csv ['x,y', '1,2']" in cp.stdout and "notes False" in cp.stdout
    assert "labels cat dog" in cp.stdout and "vocab hello world" in cp.stdout
    prep = next(r for r in proj.records() if r["op"] == "prepare")
    train = next(r for r in proj.records() if r["op"] == "train")
    assert {(q["kind"], q.get("run")) for q in train["requires"]} >= {("operation", prep["id"]), ("file", None)}


def test_a_config_source_guildlite_does_not_write_is_refused_with_its_line(
        guild_project: Callable[..., Project]) -> None:
    guild_yml = ("train:\n  main: train\n  flags-dest: args\n  requires:\n    - file: data.txt\n"
                 "    - config: other.yaml\n")
    proj = guild_project({"guild.yml": guild_yml, "train.py": "print('ran')\n", "data.txt": "d\n",
                          "other.yaml": "a: 1\n"})
    cp = proj.run("run", "-y", "train")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr and "ran" not in cp.stdout
    assert "guild.yml:6" in cp.stderr and "config: other.yaml" in cp.stderr
    assert proj.records() == []


# --- every problem of a guildlite-format file at once -----------------------------------------------

THREE_BAD_OPS = """\
operations:
  a:
    main: a.py
    launcher: python
    flags:
      lr: {default: 0.1, type: flaot}
  b:
    main: missing.py
    launcher: python
  ok:
    main: a.py
    launcher: python
  c:
    main: a.py
    launcher: pythn
    nproc-per-node: 0
"""


def test_a_guildfile_with_problems_in_three_ops_reports_all_of_them(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guildfile.yml": THREE_BAD_OPS, "a.py": "print('ran')\n"})
    for args in (["run", "-y", "ok"], ["ops"]):
        cp = proj.run(*args)
        assert cp.returncode == 2 and TRACEBACK not in cp.stderr and "ran" not in cp.stdout
        assert "3 problems" in cp.stderr, cp.stderr
        lines = [line for line in cp.stderr.splitlines() if line.startswith("  ")]
        assert [line.split("guildfile.yml:")[1].split(":")[0] for line in lines] == ["6", "8", "15"], cp.stderr
        assert "flaot" in lines[0] and "missing.py" in lines[1] and "pythn" in lines[2]
    assert proj.records() == []


def test_top_level_problems_are_reported_with_the_ops_ones(guild_project: Callable[..., Project]) -> None:
    guildfile = ("hook-timeout: -1\noperations:\n  a:\n    main: a.py\n    launcher: python\n    nproc: 2\n"
                 "runs-dir: 7\nmax-concurent: 2\n")
    proj = guild_project({"guildfile.yml": guildfile, "a.py": "print('ran')\n"})
    cp = proj.run("run", "-y", "a")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr and "ran" not in cp.stdout
    assert "4 problems" in cp.stderr, cp.stderr
    for at, words in (("1", "hook-timeout"), ("6", "nproc"), ("7", "runs-dir"), ("8", "max-concurrent")):
        assert any(f"guildfile.yml:{at}:" in line and words in line for line in cp.stderr.splitlines()), cp.stderr


def test_one_problem_is_reported_as_it_was(guild_project: Callable[..., Project]) -> None:
    proj = guild_project({"guildfile.yml": "operations:\n  a:\n    main: a.py\n    launcher: pythn\n",
                          "a.py": "print('ran')\n"})
    cp = proj.run("run", "-y", "a")
    assert cp.returncode == 2 and "problems" not in cp.stderr
    assert "guildfile.yml:4: operation 'a': launcher 'pythn'" in cp.stderr


# A Guild project whose ops live in a model, as Guild's getting-started examples write them: the
# model's sourcecode rules, a pipeline and an upstream requirement naming sibling ops bare.
MODEL_PIPELINE_GUILD_YML = """\
- model: mnist
  description: A toy mnist
  sourcecode:
    - '*.py'
    - exclude: 'scratch_*'
  operations:
    prepare:
      main: prepare
      flags-import: all
      requires:
        - file: data/raw.csv
    train:
      main: train
      flags-import: [lr, epochs]
      requires:
        - operation: prepare
          select: prepared.txt
      output-scalars:
        - step: 'Epoch (\\step)'
        - loss: 'loss=(\\value)'
    pipeline:
      steps:
        - prepare
        - run: train
          flags:
            lr: 0.5
        - train epochs=2
"""

MODEL_PREPARE = """\
import argparse

p = argparse.ArgumentParser()
p.add_argument("--scale", type=float, default=1.0)
a = p.parse_args()
rows = open("data/raw.csv").read().splitlines()
open("prepared.txt", "w").write(f"{len(rows)} {a.scale}\\n")
"""

MODEL_TRAIN = """\
import argparse

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--secret", default="x")
a = p.parse_args()
print("prepared", open("prepared.txt").read().strip(), "lr", a.lr, "epochs", a.epochs)
loss = 1.0
for e in range(a.epochs):
    loss *= 1 - a.lr
    print(f"Epoch {e}")
    print(f"loss={loss:.4f}")
"""


def test_a_models_pipeline_and_requirement_name_sibling_ops_bare(guild_project: Callable[..., Project]) -> None:
    """``- prepare`` in a model's steps and ``operation: prepare`` in its requires are the model's
    own ``mnist:prepare`` (they were "no operation 'prepare'"), the model's sourcecode rules do not
    make its pipeline invalid (they did: "unknown key 'sourcecode' in pipeline operation"), and
    ``guildlite run pipeline`` finds ``mnist:pipeline`` as ``run train`` finds ``mnist:train``."""
    proj = guild_project({"guild.yml": MODEL_PIPELINE_GUILD_YML, "prepare.py": MODEL_PREPARE,
                          "train.py": MODEL_TRAIN, "data/raw.csv": "a,b\n1,2\n3,4\n",
                          "scratch_notes.py": "raise SystemExit('never copied')\n"})
    _ok(proj.run("ops"))
    cp = proj.run("run", "-y", "pipeline")
    _ok(cp)
    assert "prepared 3 1.0 lr 0.5 epochs 3" in cp.stdout and "prepared 3 1.0 lr 0.01 epochs 2" in cp.stdout
    recs = proj.records()
    assert sorted(r["op"] for r in recs) == ["mnist:pipeline", "mnist:prepare", "mnist:train", "mnist:train"]
    prep = next(r for r in recs if r["op"] == "mnist:prepare")
    trains = [r for r in recs if r["op"] == "mnist:train"]
    assert sorted(r["flags"]["lr"] for r in trains) == [0.01, 0.5]
    for t in trains:
        assert {q.get("run") for q in t["requires"] if q["kind"] == "operation"} == {prep["id"]}
        assert not (proj.runs_dir / t["id"] / "scratch_notes.py").exists()
        assert read_scalars(proj.runs_dir / t["id"])  # Guild's \\step / \\value patterns found rows
    # The upstream run is picked by the bare name too, as Guild users write it.
    cp = proj.run("run", "-y", "train", f"prepare={prep['id']}", "lr=0.25")
    _ok(cp)
    assert "prepared 3 1.0 lr 0.25" in cp.stdout
    cp = proj.run("run", "-y", "train", "prepare=nonesuch")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr
