"""``guildlite check``: one line per finding, ``[ok]``/``[warn]``/``[fail]``, exit 1 when something a
run needs is broken; ``--json``. Real projects, runs dirs and PATHs; torch never imported by the
CLI process itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import TRACEBACK, Project

LINE = re.compile(r"^\[(ok|warn|fail)\] +(.+?): (.+)$")


def findings(cp: subprocess.CompletedProcess[str]) -> dict[str, list[tuple[str, str]]]:
    """what -> [(status, text)] from the lines of ``guildlite check``; every line must parse."""
    assert TRACEBACK not in cp.stderr and TRACEBACK not in cp.stdout, cp.stderr
    out: dict[str, list[tuple[str, str]]] = {}
    for line in cp.stdout.splitlines():
        m = LINE.match(line)
        assert m, line
        out.setdefault(m.group(2), []).append((m.group(1), m.group(3)))
    return out


def test_a_healthy_project_checks_ok_one_line_each(project: Project) -> None:
    cp = project.run("check")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    found = findings(cp)
    for what in ("guildlite", "python", "torch", "cuda", "gpus", "runs dir", "guildfile", "plugins"):
        assert len(found[what]) == 1 and found[what][0][0] != "fail", (what, found)
    from importlib.metadata import version

    import guildlite

    assert found["guildlite"][0][1].startswith(guildlite.__version__)
    assert found["python"][0][1].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert found["torch"][0][1] == version("torch")
    assert "writable" in found["runs dir"][0][1] and "lock mode flock" in found["runs dir"][0][1]
    assert str(project.root / "guildfile.yml") in found["guildfile"][0][1] and "3 operation" in found["guildfile"][0][1]
    local = [k for k in found if k.startswith("backend local")]
    assert local and all(s == "ok" for k in local for s, _ in found[k])  # the local backend's own check lines


def test_json_has_the_same_findings(project: Project) -> None:
    text = project.run("check").stdout
    cp = project.run("check", "--json")
    assert cp.returncode == 0
    data = json.loads(cp.stdout)
    assert data["ok"] is True
    assert [f"[{c['status']}]".ljust(7) + f"{c['what']}: {c['text']}" for c in data["checks"]] == text.splitlines()


def test_the_cli_process_never_imports_torch(project: Project) -> None:
    code = ("import sys\nsys.argv = ['guildlite', 'check']\nfrom guildlite.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    cp = subprocess.run([sys.executable, "-c", code], cwd=project.root, env=project.env, capture_output=True,
                        text=True, timeout=120)
    assert cp.stdout.splitlines()[-1] == "NO-TORCH", cp.stdout + cp.stderr


def test_a_broken_guildfile_fails(make_project: Callable[..., Project]) -> None:
    proj = make_project("operations:\n  train: {main: hello.py, nproc: 2}\n")
    cp = proj.run("check")
    assert cp.returncode == 1
    found = findings(cp)
    (status, text), = found["guildfile"]
    assert status == "fail" and "nproc" in text and "guildfile.yml:2" in text
    assert all(s != "fail" for what, lines in found.items() if what != "guildfile" for s, _ in lines)


def test_no_guildfile_is_a_warning_not_a_failure(tmp_path: Path, project: Project) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cp = subprocess.run([*_guildlite(), "check"], cwd=empty, env=project.env, capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 0, cp.stdout
    assert findings(cp)["guildfile"][0][0] == "warn"


def test_a_runs_dir_where_no_file_can_be_made_fails_even_for_root(project: Project) -> None:
    cp = project.run("check", "--runs-dir", "/proc/guildlite-runs")  # procfs: no file is ever made there
    assert cp.returncode == 1
    (status, text), = findings(cp)["runs dir"]
    assert status == "fail" and "not writable" in text and "/proc/guildlite-runs" in text


def _guildlite() -> list[str]:
    from conftest import GUILDLITE

    return list(GUILDLITE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_runs_dir_that_cannot_be_written_fails(project: Project, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        cp = project.run("check", "--runs-dir", str(ro / "runs"))
    finally:
        ro.chmod(0o755)
    assert cp.returncode == 1
    (status, text), = findings(cp)["runs dir"]
    assert status == "fail" and "not writable" in text


@pytest.mark.parametrize("where", ["a file", "a file's child"])
def test_a_runs_dir_that_is_a_file_fails(make_project: Callable[..., Project], tmp_path: Path, where: str) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    target = f if where == "a file" else f / "runs"
    from conftest import HELLO_GUILDFILE

    proj = make_project(f"runs-dir: {target}\n" + HELLO_GUILDFILE)
    env = {k: v for k, v in proj.env.items() if k != "GUILDLITE_RUNS_DIR"}  # the guildfile's runs-dir
    cp = subprocess.run([*_guildlite(), "check"], cwd=proj.root, env=env, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 1, cp.stdout
    (status, text), = findings(cp)["runs dir"]
    assert status == "fail" and str(target) in text


def test_a_runs_dir_made_at_the_first_run_is_fine_and_not_made_by_check(project: Project, tmp_path: Path) -> None:
    target = tmp_path / "new" / "runs"
    cp = project.run("check", "--runs-dir", str(target))
    assert cp.returncode == 0
    (status, text), = findings(cp)["runs dir"]
    assert status == "ok" and "created at the first run" in text
    assert not target.exists() and not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) != [] and not any(p.name.startswith(".guildlite-check") for p in tmp_path.iterdir())


@pytest.mark.parametrize("mode,ok", [("lockfile", True), ("bogus", False)])
def test_the_lock_mode_is_said_and_a_bad_forced_one_fails(project: Project, mode: str, ok: bool) -> None:
    cp = project.run("check", env={"GUILDLITE_LOCK_MODE": mode})
    (status, text), = findings(cp)["runs dir"]
    assert (cp.returncode == 0) is ok and (status == "ok") is ok
    assert ("lock mode lockfile" in text) if ok else ("GUILDLITE_LOCK_MODE" in text)


PLUGIN = "from guildlite import Plugin\n\nclass Fine(Plugin):\n    def on_run_end(self, run):\n        pass\n"


def test_plugins_are_imported_and_a_broken_one_fails(make_project: Callable[..., Project]) -> None:
    gf = ("plugins: [{class: 'fine:Fine'}]\n"
          "operations:\n"
          "  a: {main: hello.py, launcher: python, plugins: [{class: 'broken:Nope'}]}\n"
          "  b: {main: hello.py, launcher: python, plugins: [{class: 'fine:Missing'}]}\n")
    from conftest import HELLO_SCRIPT

    proj = make_project(gf, {"hello.py": HELLO_SCRIPT, "fine.py": PLUGIN, "broken.py": "raise ImportError('no cuda lib')\n"})
    cp = proj.run("check")
    assert cp.returncode == 1
    found = findings(cp)
    assert found["plugin fine:Fine"][0][0] == "ok"
    assert found["plugin broken:Nope"][0][0] == "fail" and "no cuda lib" in found["plugin broken:Nope"][0][1]
    assert found["plugin fine:Missing"][0][0] == "fail" and "Missing" in found["plugin fine:Missing"][0][1]


def _path_without_slurm() -> dict[str, Any]:
    return {"PATH": str(Path(sys.executable).parent)}  # the venv's python and guildlite; no sbatch, no nvidia-smi


def test_a_backend_the_project_uses_fails_when_its_commands_are_missing(make_project: Callable[..., Project]) -> None:
    used = make_project("operations:\n  t: {main: hello.py, backend: slurm}\n", name="uses-slurm")
    cp = used.run("check", env=_path_without_slurm())
    assert cp.returncode == 1, cp.stdout
    lines = [(s, t) for what, found in findings(cp).items() if what.startswith("backend slurm") for s, t in found]
    assert lines and all(s == "fail" for s, _ in lines) and any("sbatch" in t and "not found" in t for _, t in lines)
    # A project that runs locally only: the same missing commands are only worth knowing.
    local = make_project(name="local-only")
    cp = local.run("check", env=_path_without_slurm())
    assert cp.returncode == 0, cp.stdout
    lines = [(s, t) for what, found in findings(cp).items() if what.startswith("backend slurm") for s, t in found]
    assert lines and all(s == "warn" for s, _ in lines)
    (status, text), = findings(cp)["gpus"]
    assert status == "ok" and "no nvidia-smi" in text



@pytest.mark.parametrize("loop", ["to itself", "a circle of two"])
def test_a_runs_dir_that_is_a_symlink_loop_fails(project: Project, loop: str) -> None:
    runs = project.root / "runs"  # the default place, beside the guildfile
    if loop == "to itself":
        os.symlink("runs", runs)
    else:
        os.symlink("other", runs)
        os.symlink("runs", project.root / "other")
    env = {k: v for k, v in project.env.items() if k != "GUILDLITE_RUNS_DIR"}
    cp = subprocess.run([*_guildlite(), "check"], cwd=project.root, env=env, capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 1, cp.stdout
    (status, text), = findings(cp)["runs dir"]
    assert status == "fail" and "symbolic links" in text
    cp = subprocess.run([*_guildlite(), "runs"], cwd=project.root, env=env, capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode != 0  # what check foretells
