"""The structural checks of issue 15 (``.ci/check_structure.py``): on the real package, and the checker
itself on small package trees made in tmp dirs (so those tests do not depend on the real package).

The checker runs as CI runs it: a subprocess, ``python .ci/check_structure.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "check_structure.py"


def check(*args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), *args] + (["--root", str(root)] if root else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def tree(root: Path, files: dict[str, str]) -> Path:
    """A project at ``root``: ``files`` by relative path; every package dir gets an ``__init__.py``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for d in [p for p in root.joinpath("guildlite").rglob("*") if p.is_dir()] + [root / "guildlite"]:
        if d.name != "__pycache__" and not (d / "__init__.py").exists():
            (d / "__init__.py").write_text("")
    return root


CLEAN = {
    "guildlite/__init__.py": "from ._errors import GuildliteError\n",
    "guildlite/_errors.py": "class GuildliteError(Exception):\n    pass\n",
    "guildlite/_a.py": "from ._errors import GuildliteError\nfrom . import _b\n",
    "guildlite/_b.py": "import guildlite._errors\n\ndef f():\n    from ._errors import GuildliteError\n",
    "guildlite/backends/slurm/job.py": "# SLURM lives here: sbatch, SlurmJob, _slurm, SLURM_JOB_ID\n",
    "guildlite/backends/slurm/__init__.py": "from .job import *  # the slurm backend\n",
    "guildlite/backends/local.py": "# the local backend: a local process; local is everyday English\n",
}


# --- the real package -------------------------------------------------------------------------------


def test_the_package_has_no_import_cycle() -> None:
    r = check("--check", "imports")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "imports: ok" in r.stdout


def test_no_backend_name_outside_its_package() -> None:
    r = check("--check", "backends")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "backends: ok" in r.stdout


def test_every_module_is_short() -> None:
    r = check("--check", "sizes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sizes: ok" in r.stdout


# --- the checker on planted trees -------------------------------------------------------------------


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    r = check(root=tree(tmp_path, CLEAN))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "imports: ok" in r.stdout and "backends: ok" in r.stdout and "sizes: ok" in r.stdout
    assert "checked backend names: slurm\n" in r.stdout  # ``local`` has no package of its own


@pytest.mark.parametrize(
    "planted",
    [
        {"guildlite/_errors.py": "from ._a import x\n"},  # module level, three modules long
        {"guildlite/_errors.py": "def f():\n    from . import _a\n"},  # a lazy import inside a function
        {"guildlite/_errors.py": "import guildlite._a.inner\n", "guildlite/_a.py": "from ._errors import E\n"},
        {"guildlite/_errors.py": "class C:\n    def m(self):\n        import importlib\n"
         "        return importlib.import_module('guildlite._b')\n"},
        {"guildlite/_errors.py": "from .backends.slurm import job\n", "guildlite/backends/slurm/job.py":
         "def f():\n    from ...guildlite_not import x\n    from ..._b import y\n"},
    ],
)
def test_a_planted_cycle_fails_with_its_chain(tmp_path: Path, planted: dict[str, str]) -> None:
    r = check("--check", "imports", root=tree(tmp_path, {**CLEAN, **planted}))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "imports: FAILED" in r.stdout
    cycle = next(line for line in r.stdout.splitlines() if "import cycle:" in line)
    chain = [step.split(" (line")[0] for step in cycle.split("import cycle: ")[1].split(" -> ")]
    assert chain[0] == chain[-1] and len(chain) >= 3
    assert "guildlite._errors" in chain


def test_type_checking_imports_are_no_dependency(tmp_path: Path) -> None:
    planted = {
        "guildlite/_errors.py": """\
            from typing import TYPE_CHECKING
            import typing
            if TYPE_CHECKING:
                from ._a import x
            if typing.TYPE_CHECKING:
                from . import _b
            """
    }
    r = check("--check", "imports", root=tree(tmp_path, {**CLEAN, **planted}))
    assert r.returncode == 0, r.stdout
    # ...but the else branch of such a block does run.
    planted["guildlite/_errors.py"] += "else:\n    from ._a import x\n"
    assert check("--check", "imports", root=tree(tmp_path, {**CLEAN, **planted})).returncode == 1


def test_two_cycles_are_both_listed(tmp_path: Path) -> None:
    planted = {"guildlite/_x.py": "from . import _y\n", "guildlite/_y.py": "from . import _x\n",
               "guildlite/_p.py": "from ._q import a\n", "guildlite/_q.py": "def f():\n    import guildlite._p\n"}
    r = check("--check", "imports", root=tree(tmp_path, {**CLEAN, **planted}))
    assert r.returncode == 1
    cycles = [line for line in r.stdout.splitlines() if "import cycle:" in line]
    assert len(cycles) == 2, r.stdout
    assert any("guildlite._x (line 1) -> guildlite._y (line 1) -> guildlite._x" in c for c in cycles)
    assert any("guildlite._p (line 1) -> guildlite._q (line 2) -> guildlite._p" in c for c in cycles)


@pytest.mark.parametrize(
    "line",
    [
        "x = 1  # only on slurm\n",
        "MSG = 'submitted to SLURM'\n",
        "class SlurmJob:\n    pass\n",
        "from .backends.slurm import job\n",
        "def _slurm_ids():\n    pass\n",
        "ENV = 'SLURM_JOB_ID'\n",
        "def is_on_Slurm2():\n    pass\n",
    ],
)
def test_a_planted_backend_name_fails(tmp_path: Path, line: str) -> None:
    r = check("--check", "backends", root=tree(tmp_path, {**CLEAN, "guildlite/_runs.py": "import os\n" + line}))
    assert r.returncode == 1, r.stdout
    assert "backend name 'slurm' outside guildlite/backends/slurm/: guildlite/_runs.py:2:" in r.stdout


@pytest.mark.parametrize("line", ["# slurmctld and munge\n", "x = 'unslurmed'\n", "local = 1  # a local backend\n"])
def test_longer_words_and_unpackaged_backends_pass(tmp_path: Path, line: str) -> None:
    r = check("--check", "backends", root=tree(tmp_path, {**CLEAN, "guildlite/_runs.py": line}))
    assert r.returncode == 0, r.stdout


def test_slurm_is_checked_before_its_package_exists(tmp_path: Path) -> None:
    files = {k: v for k, v in CLEAN.items() if "/slurm/" not in k}
    files["guildlite/_slurm.py"] = "def submit():  # sbatch a job on SLURM\n    pass\n"
    r = check("--check", "backends", root=tree(tmp_path, files))
    assert r.returncode == 1
    assert "guildlite/_slurm.py:1:" in r.stdout  # the module's name is not its package
    assert "guildlite/_slurm.py: in the module's path" in r.stdout


def test_a_backend_named_module_outside_its_package_fails(tmp_path: Path) -> None:
    r = check("--check", "backends", root=tree(tmp_path, {**CLEAN, "guildlite/tools/slurm_queue.py": "x = 1\n"}))
    assert r.returncode == 1
    assert "guildlite/tools/slurm_queue.py: in the module's path" in r.stdout


def test_entry_point_backends_with_a_package_are_checked(tmp_path: Path) -> None:
    setup_cfg = """\
        [metadata]
        name = guildlite

        [options.entry_points]
        console_scripts =
            guildlite = guildlite.cli:main
        guildlite.backends =
            local = guildlite.backends.local:LocalBackend
            slurm = guildlite.backends.slurm:SlurmBackend
            Kube = guildlite.backends.kube:KubeBackend
        """
    files = {**CLEAN, "setup.cfg": setup_cfg, "guildlite/backends/kube/__init__.py": "# kube, KubeJob\n",
             "guildlite/backends/slurm/kube_bridge.py": "# talks to KUBE\n",
             "guildlite/backends/__init__.py": "NAMES = ['Kube']\n", "guildlite/_local_use.py": "# local\n"}
    r = check("--check", "backends", root=tree(tmp_path, files))
    assert r.returncode == 1
    assert "checked backend names: kube, slurm\n" in r.stdout
    problems = [line for line in r.stdout.splitlines() if "backend name '" in line]
    assert len(problems) == 3, r.stdout
    assert any("guildlite/backends/slurm/kube_bridge.py:1:" in p for p in problems)
    assert any("guildlite/backends/slurm/kube_bridge.py: in the module's path" in p for p in problems)
    assert any("guildlite/backends/__init__.py:1:" in p for p in problems)


def test_a_long_module_fails(tmp_path: Path) -> None:
    ok = {**CLEAN, "guildlite/_long.py": "x = 1\n" * 450}
    assert check("--check", "sizes", root=tree(tmp_path, ok)).returncode == 0
    r = check("--check", "sizes", root=tree(tmp_path, {**ok, "guildlite/backends/slurm/big.py": "x = 1\n" * 451}))
    assert r.returncode == 1
    assert "module too long: guildlite/backends/slurm/big.py: 451 lines (at most 450)" in r.stdout


def test_every_failure_is_listed_in_one_run(tmp_path: Path) -> None:
    planted = {"guildlite/_x.py": "from . import _y\n", "guildlite/_y.py": "from . import _x  # slurm\n" + "\n" * 460}
    r = check(root=tree(tmp_path, {**CLEAN, **planted}))
    assert r.returncode == 1
    assert "imports: FAILED (1)" in r.stdout and "backends: FAILED (1)" in r.stdout and "sizes: FAILED (1)" in r.stdout
