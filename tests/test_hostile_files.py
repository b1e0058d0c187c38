"""Files a run takes from elsewhere, made hostile:

- project and required directories that can be listed but not entered (read without search
  permission, ``chmod 644 data``): the run goes on, the directory is skipped as ``unreadable`` and
  recorded in ``.guildlite/sourcecode.json`` (the source) or the requirement's ``skipped``, where a
  bare ``Permission denied`` stopped the run before;
- a ``requires: url:`` whose server announces a body bigger than the free disk is refused before a
  byte is written (it used to be downloaded until the server hung up, or the disk was full).

As root, permission bits do not hold; the CLI then runs under ``setpriv`` without the two
capabilities that bypass them (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``), as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, assert_clean_error, write_project

GUILDFILE = """\
operations:
  train:
    main: train.py
    launcher: python
  uses-data:
    main: train.py
    launcher: python
    requires:
      - file: shared
"""
SCRIPT = "import os\nprint('files:', sorted(os.listdir('.')))\n"


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("root without setpriv: permission bits cannot be made to hold")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _run(p: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_as_user(), *GUILDLITE, *args], cwd=p.root, env=p.env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    p = Project(root=write_project(tmp_path / "project", GUILDFILE, {
        "train.py": SCRIPT, "data/a.txt": "a", "data/sub/b.txt": "b", "ok/c.txt": "c",
        "shared/x.txt": "x", "shared/locked/y.txt": "y"}), runs_dir=tmp_path / "runs")
    try:
        yield p
    finally:
        for d in ("data", "data/sub", "shared/locked"):
            os.chmod(p.root / d, 0o755)  # let pytest remove its tmp dir
        p.cleanup()


@pytest.mark.parametrize("locked", ["data", "data/sub"])
def test_a_source_dir_that_cannot_be_entered_is_skipped_and_recorded(proj: Project, locked: str) -> None:
    os.chmod(proj.root / locked, 0o644)
    cp = _run(proj, "run", "train", "-y")
    assert cp.returncode == 0, cp.stderr
    assert TRACEBACK not in cp.stderr and "Permission denied" not in cp.stderr
    run_dir = proj.run_dirs()[0]
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    assert {"path": locked, "reason": "unreadable"} in manifest["skipped"]
    copied = {f["path"] for f in manifest["files"]}
    assert {"train.py", "ok/c.txt"} <= copied
    assert ("data/a.txt" in copied) == (locked == "data/sub")
    assert not any(f.startswith(locked + "/") for f in copied)


def test_a_required_dir_with_a_dir_that_cannot_be_entered_is_staged_without_it(proj: Project) -> None:
    os.chmod(proj.root / "shared" / "locked", 0o644)
    cp = _run(proj, "run", "uses-data", "-y")
    assert cp.returncode == 0, cp.stderr
    assert TRACEBACK not in cp.stderr and "Permission denied" not in cp.stderr
    run_dir = proj.run_dirs()[0]
    assert (run_dir / "shared" / "x.txt").read_text() == "x"
    assert not (run_dir / "shared" / "locked").exists()
    assert "locked" in cp.stdout + cp.stderr  # said before launch, as any file left out
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["requires"][0]["skipped"] == [{"path": "locked", "reason": "unreadable"}]


# --- downloads that would fill the disk ------------------------------------------------------------------


class _Huge(BaseHTTPRequestHandler):
    """Announces a body of a petabyte, sends a little of it, then hangs up."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 50))
        self.end_headers()
        self.wfile.write(b"x" * 1024)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_download_bigger_than_the_free_disk_is_refused_before_it_starts(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Huge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/big.bin"
        p = Project(root=write_project(tmp_path / "project", f"""\
operations:
  fetch:
    main: train.py
    launcher: python
    requires:
      - url: {url}
""", {"train.py": SCRIPT}), runs_dir=tmp_path / "runs")
        cache = tmp_path / "cache"
        cp = p.run("run", "fetch", "-y", env={"GUILDLITE_RESOURCE_CACHE": str(cache)})
        assert_clean_error(cp, 2, "big.bin", "would not fit", "free", "nothing was staged")
        assert not [f for f in cache.rglob("*") if f.is_file() and f.suffix != ".lock"]  # no part file left
        assert not p.run_dirs()
    finally:
        httpd.shutdown()
        httpd.server_close()
