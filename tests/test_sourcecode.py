"""Source staging: only regular files are copied; FIFOs, sockets, devices and bad symlinks are
skipped without being opened and recorded with their reason; a failed staging leaves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import TRACEBACK, Project

from guildlite._guildfile import SourceSpec
from guildlite._sourcecode import copy_files, select_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIFOs, sockets and /dev on Linux")

# What a hostile or careless project dir may hold, and the reason each is skipped for.
SPECIAL = {
    "pipe": "fifo",
    "sock": "socket",
    "zero": "char-device",  # -> /dev/zero: reading it never ends
    "null": "char-device",  # -> /dev/null
    "broken": "broken-symlink",
    "loop1": "symlink-loop",
    "loop2": "symlink-loop",
    "sub/pipe2": "fifo",
}


@pytest.fixture
def bound_sockets() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def add_special_files(root: Path, socks: list[socket.socket]) -> None:
    """The files of SPECIAL under ``root`` (a listening UNIX socket kept open in ``socks``)."""
    (root / "sub").mkdir(exist_ok=True)
    os.mkfifo(root / "pipe")
    os.mkfifo(root / "sub" / "pipe2")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "sock"))
    s.listen()
    socks.append(s)
    (root / "zero").symlink_to("/dev/zero")
    (root / "null").symlink_to("/dev/null")
    (root / "broken").symlink_to(root / "nowhere")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")


def _bounded(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """``fn()``, failing (not hanging) if it blocks: on a FIFO's open, or reading /dev/zero."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"blocked for {timeout}s (opened a FIFO or read a device?)"
    return out[0]


def test_select_skips_what_is_not_a_regular_file(tmp_path: Path, bound_sockets: list[socket.socket]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.py").write_text("print(1)\n")
    (root / "alias.py").symlink_to("train.py")  # a symlink to a regular file inside: followed
    (tmp_path / "secret.txt").write_text("outside\n")
    (root / "out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "linked").symlink_to(tmp_path)  # a symlinked dir is never walked
    add_special_files(root, bound_sockets)

    chosen = _bounded(lambda: select_files(root, SourceSpec()))

    assert chosen.files == ["alias.py", "train.py"]
    reasons = {s.path: s.reason for s in chosen.skipped}
    assert reasons == {**SPECIAL, "out.txt": "symlink-outside-project", "linked": "symlink-to-directory"}


def test_select_reports_nothing_the_globs_left_out(tmp_path: Path, bound_sockets: list[socket.socket]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    add_special_files(root, bound_sockets)
    chosen = select_files(root, SourceSpec(include=("*.py",)))
    assert chosen.files == ["a.py"] and chosen.skipped == []
    chosen = select_files(root, SourceSpec(exclude=("sub/", "pipe", "sock", "zero", "null", "broken", "loop*")))
    assert chosen.files == ["a.py"] and chosen.skipped == []


def test_select_reports_files_over_the_size_limit(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "small.py").write_text("x\n")
    (root / "big.bin").write_bytes(b"0" * 2048)
    chosen = select_files(root, SourceSpec(max_size=1024))
    assert chosen.files == ["small.py"]
    assert [(s.path, s.reason) for s in chosen.skipped] == [("big.bin", "too-large")]


def test_copy_never_opens_a_file_that_became_special(tmp_path: Path) -> None:
    """A file selected as regular, then swapped for a FIFO or a device link before the copy."""
    root, dest = tmp_path / "proj", tmp_path / "dest"
    root.mkdir()
    (root / "ok.py").write_text("print('ok')\n")
    os.chmod(root / "ok.py", 0o750)
    os.mkfifo(root / "was_file")
    (root / "was_too").symlink_to("/dev/zero")

    skipped = _bounded(lambda: copy_files(root, ["ok.py", "was_file", "was_too", "gone.py"], dest))

    assert [(s.path, s.reason) for s in skipped] == [
        ("was_file", "fifo"), ("was_too", "char-device"), ("gone.py", "vanished")]
    assert sorted(os.listdir(dest)) == ["ok.py"]
    assert (dest / "ok.py").read_text() == "print('ok')\n"
    assert (dest / "ok.py").stat().st_mode & 0o777 == 0o750
    assert (dest / "ok.py").stat().st_mtime_ns == (root / "ok.py").stat().st_mtime_ns


@contextlib.contextmanager
def _as_nobody(tmp_path: Path, *writable: Path) -> Iterator[None]:
    """As root, run the block as user nobody (effective ids), for whom chmod 000 means something."""
    if os.geteuid() != 0:
        yield
        return
    for p in (tmp_path, *tmp_path.parents):
        if p != Path("/"):
            os.chmod(p, os.stat(p).st_mode | 0o005)  # nobody may walk down to the project
    for p in writable:
        os.chmod(p, 0o777)
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_unreadable_files_are_skipped_with_the_reason(tmp_path: Path) -> None:
    root, dest = tmp_path / "proj", tmp_path / "dest"
    root.mkdir()
    dest.mkdir()
    (root / "ok.py").write_text("ok\n")
    (root / "locked.py").write_text("secret\n")
    os.chmod(root / "locked.py", 0)
    (root / "closed").mkdir()
    (root / "closed" / "inner.py").write_text("x\n")
    os.chmod(root / "closed", 0)
    try:
        with _as_nobody(tmp_path, dest):
            chosen = select_files(root, SourceSpec())
            late = copy_files(root, ["locked.py", "ok.py"], dest)  # selected, then made unreadable
    finally:
        os.chmod(root / "closed", 0o755)
    assert chosen.files == ["ok.py"]
    assert [(s.path, s.reason) for s in chosen.skipped] == [("closed", "unreadable"), ("locked.py", "unreadable")]
    assert [(s.path, s.reason) for s in late] == [("locked.py", "unreadable")]
    assert os.listdir(dest) == ["ok.py"]


def _staging_leftovers(runs_dir: Path) -> list[str]:
    return [p.name for p in runs_dir.iterdir() if p.name.startswith(".staging-")] if runs_dir.is_dir() else []


def test_run_with_fifo_socket_and_devices_in_the_project(project: Project, bound_sockets: list[socket.socket]) -> None:
    add_special_files(project.root, bound_sockets)
    cp = project.run("run", "quick", "-y", timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert TRACEBACK not in cp.stderr
    rec = project.only_record()
    assert rec["status"] == "completed"
    assert rec["attrs"]["sourcecode"]["skipped"] == len(SPECIAL)
    run_dir = project.runs_dir / rec["id"]
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    assert {s["path"]: s["reason"] for s in manifest["skipped"]} == SPECIAL
    assert [f["path"] for f in manifest["files"]] == ["guildfile.yml", "hello.py"]
    for rel in SPECIAL:
        assert not os.path.lexists(run_dir / rel), rel
    assert _staging_leftovers(project.runs_dir) == []


def test_batch_with_special_files_runs_every_trial(project: Project, bound_sockets: list[socket.socket]) -> None:
    add_special_files(project.root, bound_sockets)
    cp = project.run("run", "quick", "epochs=[1,2]", "-y", timeout=90)
    assert cp.returncode == 0, cp.stderr
    trials = [r for r in project.records() if not r["is_batch"]]
    assert [r["status"] for r in trials] == ["completed", "completed"]
    for r in trials:
        manifest = json.loads((project.runs_dir / r["id"] / ".guildlite" / "sourcecode.json").read_text())
        assert {s["path"] for s in manifest["skipped"]} == set(SPECIAL)
    assert _staging_leftovers(project.runs_dir) == []


def test_failed_staging_leaves_no_staging_dir(make_project: Callable[..., Project]) -> None:
    """Staging fails after the copy (the flags file's dir is a file): the hidden dir goes too."""
    proj = make_project(
        guildfile="operations:\n  cfg:\n    main: hello.py\n    launcher: python\n"
                  "    flags-dest: config:conf/flags.json\n    flags: {lr: 0.1}\n",
        files={"hello.py": "print('hi')\n", "conf": "a file, not a dir\n"},
    )
    cp = proj.run("run", "cfg", "-y", timeout=60)
    assert cp.returncode != 0
    assert TRACEBACK not in cp.stderr, cp.stderr
    assert "guildlite: error:" in cp.stderr
    assert _staging_leftovers(proj.runs_dir) == []
    assert proj.run_dirs() == []
