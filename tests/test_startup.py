"""What a command imports at start-up (issue 21, "Speed at scale": `--help` and every listing
start fast). Each case runs the real CLI (``python -X importtime -m guildlite ...``) and reads the
modules it imported from the interpreter's own import trace: behaviour, not timings.

The rule guarded: a command imports what its work needs. `--help`/`--version` import click and
the CLI's own few modules; a listing (`runs`, `compare`, `runs info`) imports no guildfile code
when the runs dir is given, and never the hook machinery, the network (``socket``), digests
(``hashlib``), ``difflib``, ``random`` or ``subprocess``, which only other paths use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import clean_env

# Modules only other paths need: a hook call (_hookcall, _runview), a run's staging and launch
# (subprocess, hashlib), a lock's contention (random), a "did you mean" (difflib).
NEVER_IN_A_LISTING = {"guildlite._hookcall", "guildlite._runview", "socket", "hashlib", "difflib", "random",
                      "subprocess", "guildlite._launch", "guildlite._lifecycle", "torch", "numpy"}
GUILDFILE_CODE = {"guildlite._guildfile", "guildlite._plugins", "yaml"}

GUILDFILE = """\
operations:
  tiny:
    main: tiny.py
    launcher: python
    flags:
      x: 1
"""


def imported(args: list[str], cwd: Path, env: dict[str, str]) -> set[str]:
    """The modules ``guildlite ARGS`` imported (it must exit 0), from ``-X importtime``."""
    cp = subprocess.run([sys.executable, "-X", "importtime", "-m", "guildlite", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=120, check=False)
    assert cp.returncode == 0, (args, cp.stderr[-2000:])
    names = {line.rsplit("|", 1)[1].strip() for line in cp.stderr.splitlines() if line.startswith("import time:")}
    names.discard("imported package")  # the trace's header line
    assert "guildlite.cli" in names  # the trace was read
    return names


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with two real finished runs (``launcher: python``) in its default runs dir."""
    root = tmp_path_factory.mktemp("startup")
    (root / "guildfile.yml").write_text(GUILDFILE)
    (root / "tiny.py").write_text("import argparse\np = argparse.ArgumentParser()\np.add_argument('--x', type=float)\n"
                                  "print(f'loss: {p.parse_args().x}')\n")
    for x in ("1", "2"):
        cp = subprocess.run([sys.executable, "-m", "guildlite", "run", "tiny", f"x={x}", "-y"], cwd=root,
                            env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
        assert cp.returncode == 0, cp.stderr
    assert len(list((root / "runs").iterdir())) >= 2
    return root


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_import_only_the_clis_own_modules(tmp_path: Path, args: list[str]) -> None:
    names = imported(args, tmp_path, clean_env())
    ours = {n for n in names if n == "guildlite" or n.startswith("guildlite.")}
    assert ours <= {"guildlite", "guildlite._errors", "guildlite._terminal", "guildlite.cli", "guildlite.cli._common"}
    # (difflib aside: click imports it itself for `-h`, which it tries as a long option first.)
    unwanted = (NEVER_IN_A_LISTING | GUILDFILE_CODE | {"json"}) - {"difflib"}
    assert not names & unwanted, sorted(names & unwanted)


@pytest.mark.parametrize("args", [["runs"], ["runs", "--json"], ["compare"], ["runs", "--filter", "x >= 1"],
                                  ["runs", "--status", "completed"]])
def test_a_listing_with_the_runs_dir_given_imports_no_guildfile_code(project: Path, tmp_path: Path,
                                                                      args: list[str]) -> None:
    """Outside the project, the runs dir from the environment: no guildfile is read, so none of its
    modules (nor YAML) is imported; nor anything in NEVER_IN_A_LISTING."""
    names = imported(args, tmp_path, clean_env(project / "runs"))
    assert not names & (NEVER_IN_A_LISTING | GUILDFILE_CODE), sorted(names & (NEVER_IN_A_LISTING | GUILDFILE_CODE))


def test_a_listing_with_the_runs_dir_option_imports_no_guildfile_code(project: Path, tmp_path: Path) -> None:
    names = imported(["runs", "--runs-dir", str(project / "runs")], tmp_path, clean_env())
    assert not names & (NEVER_IN_A_LISTING | GUILDFILE_CODE)


@pytest.mark.parametrize("args", [["runs"], ["compare"]])
def test_a_listing_in_the_project_reads_its_guildfile_and_no_more(project: Path, args: list[str]) -> None:
    """In the project the guildfile says where runs live, so it is loaded (a broken one is still an
    error); loading it imports no hook machinery."""
    names = imported(args, project, clean_env())
    assert "guildlite._guildfile" in names and "yaml" in names
    assert not names & NEVER_IN_A_LISTING, sorted(names & NEVER_IN_A_LISTING)


def test_a_broken_guildfile_still_fails_a_listing_in_its_project(project: Path, tmp_path: Path) -> None:
    """The guildfile is loaded lazily, never skipped: where it decides the runs dir, an invalid one
    is the error it always was (exit 2), and with the runs dir given it is not read at all."""
    (tmp_path / "guildfile.yml").write_text("operations: [not, a, mapping]\n")
    cp = subprocess.run([sys.executable, "-m", "guildlite", "runs"], cwd=tmp_path, env=clean_env(),
                        capture_output=True, text=True, timeout=120, check=False)
    assert cp.returncode == 2 and "guildlite: error:" in cp.stderr, cp.stderr
    cp = subprocess.run([sys.executable, "-m", "guildlite", "runs"], cwd=tmp_path, env=clean_env(project / "runs"),
                        capture_output=True, text=True, timeout=120, check=False)
    assert cp.returncode == 0 and "tiny" in cp.stdout, cp.stderr


def test_the_public_api_is_all_there_without_importing_it_at_start(tmp_path: Path) -> None:
    """``import guildlite`` imports only the error classes; each public name resolves when used."""
    code = ("import sys, guildlite\n"
            "before = sorted(m for m in sys.modules if m.startswith('guildlite'))\n"
            "from guildlite import Plugin, hook, StopRun, Run, runs, runs_frame, log_scalars, RunInfo, GuildliteError\n"
            "assert all(callable(x) for x in (Plugin, hook, StopRun, Run, runs, runs_frame, log_scalars, RunInfo))\n"
            "assert all(getattr(guildlite, name) is not None for name in guildlite.__all__)\n"
            "print(before)\n")
    cp = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                        timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == "['guildlite', 'guildlite._errors']"
