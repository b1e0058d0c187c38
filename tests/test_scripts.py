"""Unmodified scripts, configured through the guildfile alone: real ``guildlite`` subprocesses.

Covers flag destinations (args, env, config files), per-flag ``arg-name``/``arg-switch``/``arg-skip``,
fixed-argument and module mains, both launchers, ``flags-import`` (argparse discovery, its cache
and its failures), ``output-scalars`` patterns, and the ``examples/charlm`` and
``examples/argparse-import`` projects end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
_SCRIPT = Path(sys.executable).with_name("guildlite")  # this environment's console script
GUILDLITE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "guildlite"]
# What torchrun (or a cluster) puts in the environment of a rank.
DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")

# A script that records what it was started with: argv, environment, module identity, and the
# config files it finds in its working directory (the run dir).
SHOW = """\
import json, os, sys
from pathlib import Path

configs = {}
for p in sorted(Path(".").rglob("*")):
    if (p.is_file() and p.suffix in (".json", ".yml", ".yaml") and ".guildlite" not in p.parts
            and p.name not in ("run.json", "guildfile.yml", "seen.json")):
        configs[p.as_posix()] = p.read_text()
seen = {"argv": sys.argv[1:], "env": dict(os.environ), "name": __name__,
        "spec": getattr(__spec__, "name", None), "configs": configs}
Path("seen.json").write_text(json.dumps(seen))
"""

# An argparse script that records the argv it got and what argparse made of it.
ARGPARSE_SHOW = """\
import argparse, json, sys
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--learning-rate", type=float, default=0.0)
p.add_argument("--batch_size", type=int, default=0)
p.add_argument("-n", type=int, default=0)
p.add_argument("--amp", action="store_true")
p.add_argument("--no-shuffle", dest="shuffle", action="store_false")
p.add_argument("--seed", type=int, default=-1)
args = p.parse_args()
Path("seen.json").write_text(json.dumps({"argv": sys.argv[1:], "args": vars(args)}))
"""

# The script flags-import reads: every kind of option, and a log of each time it is executed.
_EXECUTION_LOG = """\
with open(Path(__file__).with_name("executions.log"), "a") as f:
    f.write("executed\\n")
"""
IMPORTED = (
    """\
import argparse, json, sys
from pathlib import Path

"""
    + _EXECUTION_LOG
    + """\

parser = argparse.ArgumentParser(description="a script guildlite has never seen")
parser.add_argument("data", nargs="?", default="data.txt", help="a positional: not a flag")
parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
parser.add_argument("--epochs", type=int, default=10, help="passes over the data")
parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="which optimizer")
parser.add_argument("--amp", action="store_true", help="mixed precision")
parser.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep the data order")
parser.add_argument("--name", default="run", help="a free-form name")
parser.add_argument("--layers", type=int, nargs="+", default=[1, 2], help="a list flag")
parser.add_argument("-v", "--verbose", action="count", default=0, help="a counter: not a flag")
args = parser.parse_args()
Path("seen.json").write_text(json.dumps({"argv": sys.argv[1:], "args": vars(args)}))
"""
)

# Log lines for output-scalars: an epoch line with a step, a validation line without one, and a
# `key: value` line that only the default rule captures.
LOGGER = """\
print("starting")
print("epoch 1 | loss 0.90 acc 0.50")
print("valid loss 0.95")
print("loss: 9.99")
print("epoch 2 | loss 0.70 acc 0.625")
print("valid loss 0.80")
print("epoch 3 | loss n/a acc 0.75")
"""


@dataclass
class Project:
    """A project dir with a guildfile, its own runs dir, and a clean environment for guildlite."""

    dir: Path
    runs: Path
    env: dict[str, str]

    @property
    def guildfile(self) -> Path:
        return self.dir / "guildfile.yml"

    def gl(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """The real guildlite CLI, with this project's guildfile and runs dir where they apply."""
        return subprocess.run(
            [*GUILDLITE, *args],
            cwd=self.dir,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, op: str, *flags: str, env: dict[str, str] | None = None, expect: int = 0) -> dict[str, Any]:
        """``guildlite run OP FLAGS -y --json``; the run's record (a batch's for a batch)."""
        p = self.gl("run", op, *flags, "-y", "--json", "--runs-dir", str(self.runs), "-f", str(self.guildfile), env=env)
        assert p.returncode == expect, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return json.loads(p.stdout)

    def fail(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``guildlite run ARGS -y`` that must fail with a usage error (exit 2) before staging anything."""
        p = self.gl("run", *args, "-y", "--runs-dir", str(self.runs), "-f", str(self.guildfile), env=env)
        assert p.returncode == 2, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        assert "guildlite: error:" in p.stderr
        assert self.run_dirs() == [], "a failed validation must not create a run dir"
        return p

    def ops(self, expect: int = 0) -> Any:
        p = self.gl("ops", "--json", "-f", str(self.guildfile))
        assert p.returncode == expect, p.stderr
        return json.loads(p.stdout) if expect == 0 else p

    def run_dirs(self) -> list[Path]:
        if not self.runs.exists():
            return []
        return sorted(p for p in self.runs.iterdir() if not p.name.startswith("."))


def seen(rec: dict[str, Any]) -> dict[str, Any]:
    """What the script recorded about its own start (seen.json in its run dir)."""
    return json.loads((Path(rec["run_dir"]) / "seen.json").read_text())


def scalars(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "scalars.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS and not k.startswith("GUILDLITE_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")  # flags-import's cache stays in the test's tmp
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    """``make_project(guildfile_text, {path: text})``: a project under tmp_path."""
    count = [0]

    def make(guildfile: str, files: dict[str, str] | None = None) -> Project:
        count[0] += 1
        root = tmp_path / f"project{count[0]}"
        root.mkdir()
        (root / "guildfile.yml").write_text(textwrap.dedent(guildfile))
        for rel, text in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return Project(root, tmp_path / f"runs{count[0]}", _base_env(tmp_path))

    return make


@pytest.fixture
def example(tmp_path: Path) -> Callable[[str], Project]:
    """A copy of ``examples/NAME`` (without its runs or outputs) as a project."""

    def copy(name: str) -> Project:
        dest = tmp_path / name
        shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("runs", "out", "__pycache__", "*.pt"))
        return Project(dest, tmp_path / f"{name}-runs", _base_env(tmp_path))

    return copy


# --- flags-dest ----------------------------------------------------------------------------------


def test_args_dest_passes_each_flag_as_name_value(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        """
        operations:
          train:
            main: show.py
            launcher: python
            flags:
              lr: 0.1
              epochs: 3
              name: small
              offset: -2
              note: {type: str}   # no default: not passed at all
        """,
        {"show.py": SHOW},
    )
    rec = proj.run("train", "lr=0.5", "name=big")
    got = seen(rec)
    assert got["argv"] == ["--lr=0.5", "--epochs=3", "--name=big", "--offset=-2"]
    assert not any(k.startswith("FLAG_") for k in got["env"])
    assert got["configs"] == {}
    assert rec["flags"] == {"lr": 0.5, "epochs": 3, "name": "big", "offset": -2, "note": None}

    rec = proj.run("train", "note=hello world")
    assert seen(rec)["argv"] == ["--lr=0.1", "--epochs=3", "--name=small", "--offset=-2", "--note=hello world"]


def test_env_dest_with_default_prefix(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        """
        operations:
          train:
            main: show.py
            launcher: python
            flags-dest: env
            flags:
              lr: 0.1
              batch-size: 32
              use.amp: false
              tag: {type: str}
        """,
        {"show.py": SHOW},
    )
    got = seen(proj.run("train", "lr=0.01", "use.amp=true"))
    assert got["argv"] == []
    flag_env = {k: v for k, v in got["env"].items() if k.startswith("FLAG_")}
    assert flag_env == {"FLAG_LR": "0.01", "FLAG_BATCH_SIZE": "32", "FLAG_USE_AMP": "true"}


def test_env_dest_with_custom_prefix(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        """
        operations:
          hp:
            main: show.py
            launcher: python
            flags-dest: env
            flags-env-prefix: HP_
            flags:
              lr: 0.1
              warmup-steps: 100
          bare:
            main: show.py
            launcher: python
            flags-dest: env
            flags-env-prefix: ""
            flags:
              my_lr: 0.2
        """,
        {"show.py": SHOW},
    )
    env = seen(proj.run("hp", "warmup-steps=5"))["env"]
    assert env["HP_LR"] == "0.1" and env["HP_WARMUP_STEPS"] == "5"
    assert not any(k.startswith("FLAG_") for k in env)
    env = seen(proj.run("bare"))["env"]
    assert env["MY_LR"] == "0.2"
    assert not any(k.startswith("FLAG_") for k in env)


@pytest.mark.parametrize("dest, load", [("config:conf/flags.yml", yaml.safe_load), ("config:flags.json", json.loads)])
def test_config_dest_writes_the_flags_file_before_the_script_starts(
    make_project: Callable[..., Project], dest: str, load: Callable[[str], Any]
) -> None:
    proj = make_project(
        f"""
        operations:
          train:
            main: show.py
            launcher: python
            flags-dest: "{dest}"
            flags:
              lr: 0.1
              epochs: 3
              amp: false
              name: "007"
        """,
        {"show.py": SHOW},
    )
    rec = proj.run("train", "epochs=5", "amp=true")
    rel = dest.split(":", 1)[1]
    expected = {"lr": 0.1, "epochs": 5, "amp": True, "name": "007"}
    got = seen(rec)
    assert got["argv"] == []
    assert not any(k.startswith("FLAG_") for k in got["env"])
    assert load(got["configs"][rel]) == expected  # the script found it in its working dir
    assert load((Path(rec["run_dir"]) / rel).read_text()) == expected


@pytest.mark.parametrize("dest", ["config:../flags.yml", "config:flags.txt", "config:/tmp/flags.yml", "argv"])
def test_bad_flags_dest_is_a_guildfile_error(make_project: Callable[..., Project], dest: str) -> None:
    proj = make_project(
        f"""
        operations:
          train: {{main: show.py, launcher: python, flags-dest: "{dest}", flags: {{lr: 0.1}}}}
        """,
        {"show.py": SHOW},
    )
    p = proj.fail("train")
    assert "flags-dest" in p.stderr and "guildfile.yml:" in p.stderr


# --- arg-name, arg-switch, arg-skip --------------------------------------------------------------

ARG_OPTIONS_GUILDFILE = """
operations:
  train:
    main: ap.py
    launcher: python
    flags:
      lr: {default: 0.1, arg-name: --learning-rate}
      bs: {default: 8, arg-name: batch_size}
      n: {default: 2, arg-name: -n}
      amp: {default: false, arg-switch: true}
      shuffle: {default: true, arg-switch: false, arg-name: --no-shuffle}
      seed: {default: 7, arg-skip: true}
"""


def test_arg_name_renames_the_option(make_project: Callable[..., Project]) -> None:
    proj = make_project(ARG_OPTIONS_GUILDFILE, {"ap.py": ARGPARSE_SHOW})
    got = seen(proj.run("train", "lr=0.25", "bs=16", "n=3"))
    assert got["argv"] == ["--learning-rate=0.25", "--batch_size=16", "-n=3"]
    args = got["args"]
    assert (args["learning_rate"], args["batch_size"], args["n"]) == (0.25, 16, 3)


@pytest.mark.parametrize(
    "amp, shuffle", [(None, None), ("true", None), (None, "false"), ("true", "false"), ("false", "true")]
)
def test_arg_switch_passes_a_bare_option_only_when_the_value_equals_the_switch(
    make_project: Callable[..., Project], amp: str | None, shuffle: str | None
) -> None:
    proj = make_project(ARG_OPTIONS_GUILDFILE, {"ap.py": ARGPARSE_SHOW})
    flags = [f"amp={amp}"] * (amp is not None) + [f"shuffle={shuffle}"] * (shuffle is not None)
    rec = proj.run("train", *flags)
    got = seen(rec)
    amp_on, shuffle_on = amp == "true", shuffle != "false"
    assert ("--amp" in got["argv"]) is amp_on
    assert ("--no-shuffle" in got["argv"]) is (not shuffle_on)
    assert not any(a.startswith(("--amp=", "--no-shuffle=", "--shuffle")) for a in got["argv"])
    # What guildlite records is what the script parsed.
    assert (rec["flags"]["amp"], rec["flags"]["shuffle"]) == (amp_on, shuffle_on)
    assert (got["args"]["amp"], got["args"]["shuffle"]) == (amp_on, shuffle_on)


def test_arg_skip_records_the_flag_but_does_not_pass_it(make_project: Callable[..., Project]) -> None:
    proj = make_project(ARG_OPTIONS_GUILDFILE, {"ap.py": ARGPARSE_SHOW})
    for flags, value in (((), 7), (("seed=9",), 9)):
        rec = proj.run("train", *flags)
        got = seen(rec)
        assert not any("seed" in a for a in got["argv"])
        assert got["args"]["seed"] == -1  # the script's own default
        assert rec["flags"]["seed"] == value


# --- main: fixed arguments and modules -----------------------------------------------------------


def test_fixed_args_in_main_come_before_the_flags(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        """
        operations:
          train:
            main: show.py config/small.py "two words" --fixed=1
            launcher: python
            flags: {lr: 0.1}
        """,
        {"show.py": SHOW, "config/small.py": "n_layer = 4\n"},
    )
    rec = proj.run("train", "lr=0.2")
    assert seen(rec)["argv"] == ["config/small.py", "two words", "--fixed=1", "--lr=0.2"]
    assert (Path(rec["run_dir"]) / "config" / "small.py").read_text() == "n_layer = 4\n"


@pytest.mark.parametrize(
    "main, spec, argv",
    [
        ("pkg.mod", "pkg.mod", ["--lr=0.1"]),
        ("pkg.mod --mode=eval", "pkg.mod", ["--mode=eval", "--lr=0.1"]),
        ("pkg", "pkg.__main__", ["--lr=0.1"]),
    ],
)
def test_module_main_runs_with_dash_m(
    make_project: Callable[..., Project], main: str, spec: str, argv: list[str]
) -> None:
    proj = make_project(
        f"""
        operations:
          train: {{main: "{main}", launcher: python, flags: {{lr: 0.1}}}}
        """,
        {"pkg/__init__.py": "", "pkg/mod.py": SHOW, "pkg/__main__.py": SHOW},
    )
    rec = proj.run("train")
    got = seen(rec)
    assert (got["name"], got["spec"], got["argv"]) == ("__main__", spec, argv)
    assert rec["cmd"][1:4] == ["-u", "-m", main.split()[0]]


def test_module_main_that_does_not_exist_is_a_guildfile_error(make_project: Callable[..., Project]) -> None:
    proj = make_project("operations:\n  train: {main: nopkg_xyz.train, launcher: python}\n")
    p = proj.fail("train")
    assert "nopkg_xyz.train" in p.stderr and "not found" in p.stderr


# --- launchers -----------------------------------------------------------------------------------


def test_python_launcher_runs_one_plain_process(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        "operations:\n  train: {main: show.py, launcher: python, flags: {lr: 0.1}}\n", {"show.py": SHOW}
    )
    rec = proj.run("train")
    env = seen(rec)["env"]
    assert [v for v in DIST_VARS if v in env] == []
    assert rec["cmd"] == [rec["cmd"][0], "-u", "show.py", "--lr=0.1"]
    assert "torch.distributed.run" not in rec["cmd"]
    assert env["GUILDLITE_RUN_DIR"] == rec["run_dir"]


def test_python_launcher_job_sees_no_inherited_rank(make_project: Callable[..., Project]) -> None:
    # guildlite started inside a distributed environment (a cluster pod, a torchrun rank): the
    # README promises launcher python runs "one python -u process, no RANK/WORLD_SIZE".
    proj = make_project("operations:\n  train: {main: show.py, launcher: python}\n", {"show.py": SHOW})
    rec = proj.run("train", env={"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    env = seen(rec)["env"]
    assert [v for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if v in env] == []


def test_torchrun_launcher_sets_rank_for_a_module_main(make_project: Callable[..., Project]) -> None:
    module = SHOW + 'print("step 4 | loss 0.25")\n'
    proj = make_project(
        r"""
        operations:
          train:
            main: pkg.mod
            flags: {lr: 0.1}
            output-scalars: ['step (?P<step>\d+) \| loss (?P<loss>[\d.]+)']
        """,
        {"pkg/__init__.py": "", "pkg/mod.py": module},
    )
    rec = proj.run("train", "lr=0.3")
    got = seen(rec)
    assert (got["env"]["RANK"], got["env"]["LOCAL_RANK"], got["env"]["WORLD_SIZE"]) == ("0", "0", "1")
    assert (got["spec"], got["argv"]) == ("pkg.mod", ["--lr=0.3"])
    assert "torch.distributed.run" in rec["cmd"]
    assert scalars(rec["run_dir"]) == [{"step": 4, "key": "loss", "value": 0.25}]


OPEN_GROUP = """\
import os, sys, torch, torch.distributed as dist
dist.init_process_group("gloo")
out = [torch.empty(1) for _ in range(dist.get_world_size())]
dist.all_gather(out, torch.ones(1))
print("rank", os.environ["RANK"], "done", flush=True)
sys.exit(int(sys.argv[-1].split("=")[1]) if os.environ["RANK"] == "1" else 0)
"""


def test_ranks_that_leave_the_gloo_group_open_end_with_the_script_exit_code(
    make_project: Callable[..., Project],
) -> None:
    # No destroy_process_group(): under plain torchrun, gloo aborts about half of such 4-rank runs
    # at interpreter exit (SIGABRT after the work is done). The rank shim closes the group first.
    proj = make_project(
        "operations:\n  h: {main: open_group.py, nproc-per-node: 4, flags: {code: 0}}\n",
        {"open_group.py": OPEN_GROUP},
    )
    batch = proj.run("h", "code=[0,0,0]")
    trials = [json.loads((proj.runs / t / "run.json").read_text()) for t in batch["trials"]]
    assert [(t["status"], t["exit_code"]) for t in trials] == [("completed", 0)] * 3, [t.get("error") for t in trials]
    failed = proj.run("h", "code=3", expect=3)
    assert (failed["status"], failed["exit_code"]) == ("error", 3)


def test_python_launcher_refuses_several_processes(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        "operations:\n  train: {main: show.py, launcher: python, nproc-per-node: 2}\n", {"show.py": SHOW}
    )
    p = proj.fail("train")
    assert "nproc-per-node" in p.stderr and "launcher python" in p.stderr and "guildfile.yml:2" in p.stderr

    proj = make_project("operations:\n  train: {main: show.py, launcher: python}\n", {"show.py": SHOW})
    p = proj.fail("train", "--nproc-per-node", "2")
    assert "nproc-per-node" in p.stderr and "launcher python" in p.stderr


def test_unknown_launcher_is_a_guildfile_error(make_project: Callable[..., Project]) -> None:
    proj = make_project("operations:\n  train: {main: show.py, launcher: mpirun}\n", {"show.py": SHOW})
    p = proj.fail("train")
    assert "mpirun" in p.stderr and "torchrun, python" in p.stderr


# --- flags-import --------------------------------------------------------------------------------

IMPORT_GUILDFILE = """
operations:
  train:
    main: train.py
    launcher: python
    flags-import: all
    flags:
      epochs: 3          # the guildfile's default wins over the script's (10)
  some:
    main: train.py
    launcher: python
    flags-import: [lr, amp]
"""


def test_flags_import_reads_types_choices_defaults_and_switches(make_project: Callable[..., Project]) -> None:
    proj = make_project(IMPORT_GUILDFILE, {"train.py": IMPORTED})
    ops = proj.ops()
    flags = ops["train"]["flags"]
    assert list(flags) == ["epochs", "lr", "optimizer", "amp", "no-shuffle", "name", "layers"]  # no positional, counter
    summary = {n: (f["type"], f["default"], f["choices"], f["arg_switch"], f["source"]) for n, f in flags.items()}
    assert summary == {
        "epochs": ("int", 3, None, None, "guildfile+script"),
        "lr": ("float", 0.1, None, None, "script"),
        "optimizer": ("str", "sgd", ["sgd", "adam"], None, "script"),
        "amp": ("bool", False, None, True, "script"),
        "no-shuffle": ("bool", False, None, True, "script"),  # true: --no-shuffle is given
        "name": ("str", "run", None, None, "script"),
        "layers": ("list", [1, 2], None, None, "script"),
    }
    assert flags["epochs"]["description"] == "passes over the data"
    assert flags["optimizer"]["description"] == "which optimizer"
    assert list(ops["some"]["flags"]) == ["lr", "amp"]

    text = proj.gl("ops", "-f", str(proj.guildfile))
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines() if line.startswith("  ")}
    assert "from script" in lines["lr"] and "learning rate" in lines["lr"]
    assert "choices: sgd, adam" in lines["optimizer"]
    assert "from guildfile+script" in lines["epochs"] and "default 3" in lines["epochs"]


def test_flags_import_runs_pass_values_the_script_accepts(make_project: Callable[..., Project]) -> None:
    proj = make_project(IMPORT_GUILDFILE, {"train.py": IMPORTED})
    rec = proj.run("train")
    got = seen(rec)
    assert got["argv"] == ["--epochs=3", "--lr=0.1", "--optimizer=sgd", "--name=run", "--layers", "1", "2"]
    assert got["args"] == {
        "data": "data.txt",
        "lr": 0.1,
        "epochs": 3,
        "optimizer": "sgd",
        "amp": False,
        "shuffle": True,
        "name": "run",
        "layers": [1, 2],
        "verbose": 0,
    }

    rec = proj.run("train", "optimizer=adam", "amp=true", "no-shuffle=true", "lr=0.5", "name=x y")
    got = seen(rec)
    assert "--amp" in got["argv"] and "--no-shuffle" in got["argv"]
    args = got["args"]
    assert (args["optimizer"], args["amp"], args["shuffle"], args["lr"], args["name"]) == (
        "adam",
        True,
        False,
        0.5,
        "x y",
    )
    # Every value guildlite records is the value the script parsed.
    dest = {"no-shuffle": "shuffle"}
    assert {n: (not args["shuffle"]) if n in dest else args[n] for n in rec["flags"]} == rec["flags"]

    rec = proj.run("some", "amp=true")
    assert seen(rec)["argv"] == ["--lr=0.1", "--amp"]


@pytest.mark.parametrize(
    "flag, words", [("optimizer=rmsprop", ["rmsprop", "sgd, adam"]), ("epochs=2.5", ["2.5", "int"])]
)
def test_flags_import_checks_values_before_staging(
    make_project: Callable[..., Project], flag: str, words: list[str]
) -> None:
    proj = make_project(IMPORT_GUILDFILE, {"train.py": IMPORTED})
    p = proj.fail("train", flag)
    assert all(w in p.stderr for w in words), p.stderr


def test_flags_import_required_option(make_project: Callable[..., Project]) -> None:
    script = (
        "import argparse, json, sys\nfrom pathlib import Path\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--data-dir', required=True, help='where the data is')\n"
        "Path('seen.json').write_text(json.dumps(vars(p.parse_args())))\n"
    )
    proj = make_project(
        "operations:\n  train: {main: train.py, launcher: python, flags-import: all}\n", {"train.py": script}
    )
    flag = proj.ops()["train"]["flags"]["data-dir"]
    assert (flag["required"], flag["default"], flag["arg_name"]) == (True, None, "--data-dir")
    p = proj.fail("train")
    assert "requires flag 'data-dir'" in p.stderr
    assert seen(proj.run("train", "data-dir=/data/x")) == {"data_dir": "/data/x"}


def test_flags_import_guildfile_default_is_checked_against_the_script(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        """
        operations:
          train:
            main: train.py
            launcher: python
            flags-import: all
            flags:
              optimizer: rmsprop     # not one of the script's choices
        """,
        {"train.py": IMPORTED},
    )
    p = proj.fail("train")
    assert "rmsprop" in p.stderr and "optimizer" in p.stderr


def test_flags_import_list_naming_an_unknown_option(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        "operations:\n  train: {main: train.py, launcher: python, flags-import: [lr, momentum]}\n",
        {"train.py": IMPORTED},
    )
    p = proj.fail("train")
    assert "momentum" in p.stderr and "flags-import" in p.stderr


@pytest.mark.parametrize(
    "script, words",
    [
        ("import argparse, no_such_module_xyz\nargparse.ArgumentParser().parse_args()\n",
         ["no_such_module_xyz", "failed before ArgumentParser.parse_args"]),
        ("import argparse\nraise SystemExit('no data dir, giving up')\nargparse.ArgumentParser().parse_args()\n",
         ["no data dir, giving up"]),
        ("import argparse\nparser = argparse.ArgumentParser()\nprint('builds a parser, never parses')\n",
         ["without calling ArgumentParser.parse_args"]),  # stopped after its last statement that could
        # No parser in its source: refused without running it (it would run to its end).
        ("import argparse\nprint('imports argparse, never parses')\n",
         ["builds no ArgumentParser and calls no parse_args"]),
    ],
)
def test_flags_import_of_a_failing_script_names_it(
    make_project: Callable[..., Project], script: str, words: list[str]
) -> None:
    proj = make_project(
        "operations:\n  train: {main: broken_train.py, launcher: python, flags-import: all}\n",
        {"broken_train.py": script},
    )
    error = proj.ops()["train"]["error"]  # listed with its error: `ops` never breaks for one op
    assert "operation 'train'" in error and "broken_train.py" in error and "flags-import" in error
    assert all(w in error for w in words), error
    p = proj.fail("train")
    assert p.stderr.startswith("guildlite: error:") and "broken_train.py" in p.stderr
    assert all(w in p.stderr for w in words), p.stderr


def test_flags_import_of_a_script_that_hangs_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from guildlite._errors import GuildfileError
    from guildlite._flags_import import probe
    from guildlite._guildfile import load

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    (tmp_path / "slow.py").write_text(
        "import os, time\n"
        "open('slow.pid', 'w').write(str(os.getpid()))\n"
        "time.sleep(120)  # e.g. loading a dataset at import time\n"
        "import argparse\nargparse.ArgumentParser().parse_args()\n"
    )
    (tmp_path / "guildfile.yml").write_text(
        "operations:\n  train: {main: slow.py, launcher: python, flags-import: all}\n"
    )
    op = load(tmp_path / "guildfile.yml").op("train")
    with pytest.raises(GuildfileError) as e:
        probe(op, tmp_path, timeout=2)
    msg = str(e.value)
    assert "slow.py" in msg and "did not reach ArgumentParser.parse_args within 2 s" in msg
    pid = int((tmp_path / "slow.pid").read_text())
    with pytest.raises(ProcessLookupError):  # the probe process was killed, not left behind
        os.kill(pid, 0)
    assert not list((tmp_path / "xdg-cache").rglob("*.json"))  # a failure is not cached


def test_flags_import_cache_is_refreshed_when_the_script_changes(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        IMPORT_GUILDFILE.replace("flags-import: [lr, amp]", "flags-import: [lr]"), {"train.py": IMPORTED}
    )
    executions = proj.dir / "executions.log"
    cache = Path(proj.env["XDG_CACHE_HOME"]) / "guildlite" / "flags-import"

    assert proj.ops()["train"]["flags"]["lr"]["default"] == 0.1
    assert executions.read_text().count("executed") == 1  # one probe serves both ops
    assert len(list(cache.glob("*.json"))) == 1

    assert proj.ops()["some"]["flags"]["lr"]["default"] == 0.1
    assert executions.read_text().count("executed") == 1  # from the cache: the script did not run

    script = proj.dir / "train.py"
    text = script.read_text()
    with open(script, "w") as f:  # an in-place edit of the same size: only the mtime tells
        f.write(text.replace("default=0.1,", "default=0.2,"))
    ops = proj.ops()
    assert ops["train"]["flags"]["lr"]["default"] == 0.2
    assert ops["some"]["flags"]["lr"]["default"] == 0.2
    assert executions.read_text().count("executed") == 2
    assert proj.run("some")["flags"] == {"lr": 0.2}


def test_flags_import_cache_is_refreshed_when_a_package_main_changes(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        "operations:\n  train: {main: pkg, launcher: python, flags-import: all}\n",
        {"pkg/__init__.py": "", "pkg/__main__.py": IMPORTED.replace(_EXECUTION_LOG, "")},
    )
    assert proj.ops()["train"]["flags"]["lr"]["default"] == 0.1
    script = proj.dir / "pkg" / "__main__.py"
    text = script.read_text()
    with open(script, "w") as f:  # an in-place edit (as most editors save)
        f.write(text.replace("default=0.1,", "default=0.2,"))
    assert proj.ops()["train"]["flags"]["lr"]["default"] == 0.2


def test_flags_import_module_main(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        "operations:\n  train: {main: pkg.train, launcher: python, flags-import: [optimizer]}\n",
        {"pkg/__init__.py": "", "pkg/train.py": IMPORTED},
    )
    assert proj.ops()["train"]["flags"]["optimizer"]["choices"] == ["sgd", "adam"]
    assert seen(proj.run("train", "optimizer=adam"))["args"]["optimizer"] == "adam"


# --- output-scalars ------------------------------------------------------------------------------

EPOCH = r"epoch (?P<step>\d+) \| loss (?P<loss>[\d.]+) acc (?P<acc>[\d.]+)"
VALID = r"valid loss (?P<val_loss>[\d.]+)"


def _scalars_of(make_project: Callable[..., Project], setting: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    proj = make_project(f"operations:\n  train:\n    main: log.py\n    launcher: python\n{setting}", {"log.py": LOGGER})
    rec = proj.run("train")
    assert rec["status"] == "completed"
    return rec, scalars(rec["run_dir"])


def test_output_scalars_step_group(make_project: Callable[..., Project]) -> None:
    _, rows = _scalars_of(make_project, f"    output-scalars: ['{EPOCH}']\n")
    assert rows == [
        {"step": 1, "key": "loss", "value": 0.9},
        {"step": 1, "key": "acc", "value": 0.5},
        {"step": 2, "key": "loss", "value": 0.7},
        {"step": 2, "key": "acc", "value": 0.625},
    ]  # not `loss: 9.99` (the default rule is off with patterns), not `loss n/a`


def test_output_scalars_several_patterns(make_project: Callable[..., Project]) -> None:
    rec, rows = _scalars_of(make_project, f"    output-scalars:\n      - '{EPOCH}'\n      - '{VALID}'\n")
    assert rows == [
        {"step": 1, "key": "loss", "value": 0.9},
        {"step": 1, "key": "acc", "value": 0.5},
        {"step": 1, "key": "val_loss", "value": 0.95},  # the step of the last line that had one
        {"step": 2, "key": "loss", "value": 0.7},
        {"step": 2, "key": "acc", "value": 0.625},
        {"step": 2, "key": "val_loss", "value": 0.8},
    ]
    assert rec["attrs"]["scalars"] == {"captured": 6}


def test_output_scalars_default_rule_without_patterns(make_project: Callable[..., Project]) -> None:
    _, rows = _scalars_of(make_project, "")
    assert rows == [{"step": 0, "key": "loss", "value": 9.99}]


@pytest.mark.parametrize("setting", ["off", "'off'", "false"])
def test_output_scalars_off(make_project: Callable[..., Project], setting: str) -> None:
    rec, _ = _scalars_of(make_project, f"    output-scalars: {setting}\n")
    assert not (Path(rec["run_dir"]) / "scalars.jsonl").exists()
    assert "epoch 1 | loss 0.90" in (Path(rec["run_dir"]) / "output.log").read_text()


def test_output_scalars_empty_list_captures_nothing(make_project: Callable[..., Project]) -> None:
    _, rows = _scalars_of(make_project, "    output-scalars: []\n")
    assert rows == []


@pytest.mark.parametrize(
    "pattern, words",
    [
        ("loss (?P<loss>[0-9.]+", ["loss (?P<loss>[0-9.]+", "is invalid"]),
        ("loss [0-9.]+", ["loss [0-9.]+", "no named group"]),
    ],
)
def test_output_scalars_bad_pattern_is_a_guildfile_error(
    make_project: Callable[..., Project], pattern: str, words: list[str]
) -> None:
    proj = make_project(
        f"operations:\n  train:\n    main: log.py\n    launcher: python\n    output-scalars: ['{pattern}']\n",
        {"log.py": LOGGER},
    )
    p = proj.fail("train")
    assert "guildfile.yml:5" in p.stderr and "output-scalars" in p.stderr
    assert all(w in p.stderr for w in words), p.stderr


# --- the examples --------------------------------------------------------------------------------


def test_charlm_example_end_to_end(example: Callable[[str], Project]) -> None:
    proj = example("charlm")
    readme = (proj.dir / "README.md").read_text()
    for cmd in (
        "guildlite run train max_iters=100 -y",
        "guildlite run train learning_rate=[0.003,0.001] -y",
        "guildlite runs",
    ):
        assert cmd in readme

    # One run with an override (fewer iterations than the README's, to keep the suite fast).
    rec = proj.run("train", "max_iters=40")
    assert rec["status"] == "completed" and rec["flags"]["max_iters"] == 40
    assert rec["cmd"][1:4] == ["-u", "train.py", "--learning_rate=0.003"]
    log = (Path(rec["run_dir"]) / "output.log").read_text()
    assert "Overriding: max_iters = 40" in log and "1 process(es)" in log  # no RANK: the CPU path
    assert "iter 30: loss" in log and "iter 40:" not in log
    assert (Path(rec["run_dir"]) / "out" / "ckpt.pt").is_file()
    losses = [r for r in scalars(rec["run_dir"]) if r["key"] == "loss"]
    assert [r["step"] for r in losses] == [0, 10, 20, 30]

    # A two-trial learning-rate batch.
    batch = proj.run("train", "learning_rate=[0.003,0.001]", "max_iters=60")
    assert batch["is_batch"] and batch["status"] == "completed" and len(batch["trials"]) == 2
    seen_lrs = []
    for tid in batch["trials"]:
        trial = json.loads((proj.runs / tid / "run.json").read_text())
        assert trial["status"] == "completed" and trial["parent"] == batch["id"]
        seen_lrs.append(trial["flags"]["learning_rate"])
        rows = scalars(proj.runs / tid)
        loss = [r["value"] for r in rows if r["key"] == "loss"]
        assert [r["step"] for r in rows if r["key"] == "loss"] == [0, 10, 20, 30, 40, 50]
        assert loss[-1] < loss[0], loss
        val = [r for r in rows if r["key"] == "val_loss"]
        assert [r["step"] for r in val] == [0, 60] and val[-1]["value"] < val[0]["value"]
    assert seen_lrs == [0.003, 0.001]

    listing = proj.gl("runs", "--runs-dir", str(proj.runs))
    assert listing.returncode == 0, listing.stderr
    assert "train (2 trials)" in listing.stdout and listing.stdout.count("completed") == 4


def test_charlm_example_config_file_as_a_fixed_argument(example: Callable[[str], Project]) -> None:
    proj = example("charlm")
    rec = proj.run("train-small", "max_iters=1")
    log = (Path(rec["run_dir"]) / "output.log").read_text()
    assert rec["cmd"][1:5] == ["-u", "train.py", "config/small.py", "--learning_rate=0.001"]
    assert "Overriding config with config/small.py" in log
    assert "Overriding: max_iters = 1" in log and "K parameters" in log
    assert "107.5K parameters" not in log  # the larger model of config/small.py


def test_argparse_import_example(example: Callable[[str], Project]) -> None:
    proj = example("argparse-import")
    readme = (proj.dir / "README.md").read_text()
    assert "guildlite ops" in readme and "flags-import: all" in readme

    flags = proj.ops()["train"]["flags"]
    assert flags["epochs"]["default"] == 10 and flags["epochs"]["source"] == "guildfile+script"
    assert flags["optimizer"]["choices"] == ["adam", "sgd"] and flags["optimizer"]["source"] == "script"
    assert (flags["augment"]["type"], flags["augment"]["default"], flags["augment"]["arg_switch"]) == (
        "bool",
        False,
        True,
    )
    assert flags["hidden-size"]["type"] == "int" and flags["lr"]["description"] == "learning rate"

    rec = proj.run("train", "optimizer=sgd", "lr=0.05", "augment=true", "epochs=2")
    log = (Path(rec["run_dir"]) / "output.log").read_text()
    assert "'optimizer': 'sgd'" in log and "'augment': True" in log and "'epochs': 2" in log
    rows = scalars(rec["run_dir"])
    assert [(r["step"], r["key"]) for r in rows] == [(1, "loss"), (1, "val_accuracy"), (2, "loss"), (2, "val_accuracy")]
    assert (Path(rec["run_dir"]) / "model.pt").is_file()
