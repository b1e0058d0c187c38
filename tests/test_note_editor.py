"""``note --edit`` with a hostile ``$EDITOR``: a value that is no command line, an editor that fails,
or one that leaves binary, huge, linked or special files in place of the note: a clean error
each, no traceback, no hang, no note written."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from conftest import TRACEBACK, Project, assert_clean_error


@pytest.fixture(scope="module")
def proj_run(module_project: Project) -> tuple[Project, str]:
    cp = module_project.run("run", "-y", "quick")
    assert cp.returncode == 0, cp.stderr
    return module_project, str(module_project.only_record()["id"])


def _editor(tmp_path: Path, name: str, body: str) -> str:
    """An editor script: ``body`` is Python with ``path``, the file to edit."""
    p = tmp_path / name
    p.write_text(f"#!{sys.executable}\nimport os, sys\npath = sys.argv[-1]\n{body}\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


SCRIPTS = {
    "binary": ("open(path, 'wb').write(b'ok \\xff\\xfe\\x00 not text\\n')", 2, "not UTF-8"),
    "huge": ("open(path, 'w').write('x' * 5_000_000)", 2, "too long"),
    "devzero": ("os.unlink(path); os.symlink('/dev/zero', path)", 1, "a link"),
    "link": ("os.unlink(path); os.symlink('/etc/hostname', path)", 1, "a link"),
    "fifo": ("os.unlink(path); os.mkfifo(path)", 1, "other than a file"),
    "removed": ("os.unlink(path)", 1, "no file"),
    "fails": ("sys.exit(3)", 1, "exit status 3"),
}


@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_an_editor_that_leaves_no_usable_note_is_a_clean_error(
        proj_run: tuple[Project, str], tmp_path: Path, kind: str) -> None:
    proj, run_id = proj_run
    body, code, needle = SCRIPTS[kind]
    ed = _editor(tmp_path, f"{kind}.py", body)
    before = proj.record(run_id).get("notes")
    cp = proj.run("note", "--edit", run_id, env={"EDITOR": ed, "VISUAL": ""}, timeout=60)
    assert_clean_error(cp, code, needle)
    assert proj.record(run_id).get("notes") == before


@pytest.mark.parametrize("value, needle", [
    ("'unterminated", "not a command line"),
    ("no-such-editor-here", "cannot be run"),
])
def test_an_editor_value_that_is_no_command_is_a_clean_error(
        proj_run: tuple[Project, str], value: str, needle: str) -> None:
    proj, run_id = proj_run
    before = proj.record(run_id).get("notes")
    cp = proj.run("note", "--edit", run_id, env={"EDITOR": value, "VISUAL": ""}, timeout=60)
    assert cp.returncode in (1, 2) and needle in cp.stderr and TRACEBACK not in cp.stderr, cp.stderr
    assert proj.record(run_id).get("notes") == before


def test_no_editor_set_and_no_terminal_is_an_error_not_a_hang(proj_run: tuple[Project, str]) -> None:
    proj, run_id = proj_run
    cp = proj.run("note", "--edit", run_id, env={"EDITOR": "", "VISUAL": ""}, timeout=60)
    assert_clean_error(cp, 2, "no editor", "$EDITOR")


def test_an_editor_given_with_arguments_and_a_bom_writes_the_note(
        proj_run: tuple[Project, str], tmp_path: Path) -> None:
    proj, run_id = proj_run
    ed = _editor(tmp_path, "ed with space.py",
                 "assert sys.argv[1] == '--flag'\nopen(path, 'wb').write('\\ufeffhéllo\\r\\nwörld\\r\\n'.encode())")
    cp = proj.run("note", "--edit", run_id, env={"EDITOR": f"'{ed}' --flag", "VISUAL": ""}, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert proj.record(run_id)["notes"][-1]["text"] == "héllo\nwörld"
