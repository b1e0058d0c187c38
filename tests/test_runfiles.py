"""Run dirs made by someone else: ``diff``, ``cat``, ``view`` (served and ``--out``), ``compare``
read only regular files inside the run dir, bounded, and never hang.

Two runs are staged once (``launcher: python`` op ``quick``, ``--stage``: source, run.json,
manifest); each test copies the runs dir and plants what an attacker or a careless archive would:
a symlink to a secret file outside, a manifest path with ``..``, a FIFO, a symlink to /dev/zero,
a symlink loop, a binary file on one side. Every command runs as a real subprocess under a timeout
(a hang fails the test, it does not block the suite); the "secret" is a temp file of the test's own.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, assert_clean_error, clean_env, run_guildlite, write_project

TIMEOUT = 60  # a hang (FIFO, /dev/zero) fails here instead of blocking the suite


@dataclass
class Lab:
    project: Path
    runs: Path
    A: str
    B: str
    secret: Path
    secret_text: str

    def gl(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_guildlite(*args, cwd=cwd or self.project, runs_dir=self.runs, timeout=TIMEOUT)

    def manifest(self, run_id: str) -> Path:
        return self.runs / run_id / ".guildlite" / "sourcecode.json"

    def add_to_manifest(self, run_id: str, *paths: str) -> None:
        m = json.loads(self.manifest(run_id).read_text())
        m["files"] += [{"path": p, "size": 0, "sha256": ""} for p in paths]
        self.manifest(run_id).write_text(json.dumps(m))

    def clean(self, cp: subprocess.CompletedProcess[str]) -> None:
        """No traceback, and the secret nowhere in the output."""
        assert TRACEBACK not in cp.stderr and TRACEBACK not in cp.stdout, cp.stderr
        assert self.secret_text not in cp.stdout and self.secret_text not in cp.stderr


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, list[str]]]:
    base = tmp_path_factory.mktemp("runfiles")
    proj = Project(root=write_project(base / "project"), runs_dir=base / "runs")
    try:
        for _ in range(2):
            cp = proj.run("run", "--stage", "-y", "quick")
            assert cp.returncode == 0, cp.stderr
        yield proj.root, proj.runs_dir, [d.name for d in proj.run_dirs()]
    finally:
        proj.cleanup()


@pytest.fixture
def lab(staged: tuple[Path, Path, list[str]], tmp_path: Path) -> Lab:
    project, runs, (a, b) = staged
    mine = tmp_path / "runs"
    shutil.copytree(runs, mine, symlinks=True)
    secret = tmp_path / "secret.txt"
    text = f"TOPSECRET-{uuid.uuid4().hex}"
    secret.write_text(text + "\n")
    return Lab(project, mine, a, b, secret, text)


def _ups(run_dir: Path) -> str:
    """A relative path from ``run_dir`` up to the filesystem root."""
    return "../" * len(run_dir.resolve().parts)


# --- diff ------------------------------------------------------------------------------------------


def test_diff_does_not_print_a_staged_file_that_links_outside(lab: Lab) -> None:
    staged = lab.runs / lab.B / "hello.py"
    staged.unlink()
    staged.symlink_to(lab.secret)
    for args in (["diff", lab.A, lab.B], ["diff", lab.B]):
        cp = lab.gl(*args)
        lab.clean(cp)
        assert cp.returncode == 0, cp.stderr
        assert f"Skipped {lab.B}/hello.py: outside the run directory" in cp.stdout, cp.stdout


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_diff_does_not_follow_a_manifest_path_out_of_the_run_dir(lab: Lab, kind: str) -> None:
    path = _ups(lab.runs / lab.B) + str(lab.secret).lstrip("/") if kind == "dotdot" else str(lab.secret)
    lab.add_to_manifest(lab.B, path)
    for args in (["diff", lab.A, lab.B], ["diff", lab.B]):
        cp = lab.gl(*args)
        lab.clean(cp)
        assert cp.returncode == 0, cp.stderr
        assert f"Skipped {lab.B}/.guildlite/sourcecode.json entry {path!r}: outside the run directory" in cp.stdout


def test_diff_follows_a_symlink_that_stays_inside_the_run_dir(lab: Lab) -> None:
    (lab.runs / lab.B / "alias.py").symlink_to("hello.py")
    lab.add_to_manifest(lab.B, "alias.py")
    cp = lab.gl("diff", "--source-only", lab.A, lab.B)
    assert cp.returncode == 0, cp.stderr
    added = (lab.runs / lab.B / "hello.py").read_text().splitlines()
    assert cp.stdout.startswith(f"--- /dev/null\n+++ {lab.B}/alias.py\n")
    assert [line[1:] for line in cp.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")] == added


def test_diff_escapes_control_characters_in_file_names(lab: Lab) -> None:
    name = "x\x1b]0;owned\x07.py"
    (lab.runs / lab.B / name).write_text("print(1)\n")
    lab.add_to_manifest(lab.B, name)
    cp = lab.gl("diff", "--source-only", lab.A, lab.B)
    assert cp.returncode == 0 and "\x1b" not in cp.stdout and "\x07" not in cp.stdout, cp.stdout
    assert f"+++ {lab.B}/x\\x1b]0;owned\\x07.py\n" in cp.stdout


def test_diff_one_run_reads_only_this_project(lab: Lab, tmp_path: Path) -> None:
    """The project dir of a one-run diff is the guildfile's in use, never a dir a record names."""
    rec_path = lab.runs / lab.B / "run.json"
    rec = json.loads(rec_path.read_text())
    rec["attrs"]["sourcecode"]["root"] = str(lab.secret.parent)
    rec_path.write_text(json.dumps(rec))
    lab.add_to_manifest(lab.B, lab.secret.name)
    cp = lab.gl("diff", lab.B)
    lab.clean(cp)
    assert_clean_error(cp, 2, f"run {lab.B} was staged from {lab.secret.parent}, not from this project")
    cp = lab.gl("diff", lab.B, cwd=tmp_path)  # no guildfile here either
    lab.clean(cp)
    assert_clean_error(cp, 2, "not from this project")


def test_diff_a_binary_file_on_one_side_is_added_or_removed(lab: Lab) -> None:
    blob = bytes(range(256)) * 4
    (lab.runs / lab.B / "weights.bin").write_bytes(blob)
    lab.add_to_manifest(lab.B, "weights.bin")
    cp = lab.gl("diff", "--source-only", lab.A, lab.B)
    assert cp.returncode == 0 and TRACEBACK not in cp.stderr, cp.stderr
    assert cp.stdout == f"Binary file {lab.B}/weights.bin added\n"
    cp = lab.gl("diff", "--source-only", lab.B, lab.A)
    assert cp.returncode == 0 and cp.stdout == f"Binary file {lab.B}/weights.bin removed\n", cp.stderr
    (lab.runs / lab.A / "weights.bin").write_bytes(blob[::-1])
    lab.add_to_manifest(lab.A, "weights.bin")
    cp = lab.gl("diff", "--source-only", lab.A, lab.B)
    assert cp.stdout == f"Binary files {lab.A}/weights.bin and {lab.B}/weights.bin differ\n", cp.stderr
    (lab.runs / lab.A / "weights.bin").write_bytes(blob)
    assert lab.gl("diff", "--source-only", lab.A, lab.B).stdout.strip() == "(staged source is identical)"


def test_diff_a_file_too_large_to_diff_is_compared_whole(lab: Lab) -> None:
    big = "x\n" * (3 << 20)  # 6 MB of text: over the diff bound, compared by digest
    for run_id in (lab.A, lab.B):
        (lab.runs / run_id / "big.txt").write_text(big)
        lab.add_to_manifest(run_id, "big.txt")
    assert lab.gl("diff", "--source-only", lab.A, lab.B).stdout.strip() == "(staged source is identical)"
    (lab.runs / lab.B / "big.txt").write_text(big + "y\n")
    cp = lab.gl("diff", "--source-only", lab.A, lab.B)
    assert cp.stdout == f"Binary files {lab.A}/big.txt and {lab.B}/big.txt differ\n", cp.stderr


# --- what never blocks: FIFOs, /dev/zero, loops ----------------------------------------------------


def _plant(run_dir: Path, name: str, what: str) -> None:
    p = run_dir / name
    p.unlink(missing_ok=True)
    if what == "fifo":
        os.mkfifo(p)
    elif what == "zero":
        p.symlink_to("/dev/zero")
    elif what == "sparse":  # a terabyte of zeros, no newline: takes no disk, would take all memory
        with open(p, "wb") as f:
            f.truncate(1 << 40)
    else:
        p.symlink_to(name)  # a loop: the link names itself


@pytest.mark.parametrize("what, reason", [("fifo", "not a regular file (a FIFO)"),
                                          ("zero", "outside the run directory"),
                                          ("loop", "a symlink loop")])
def test_diff_and_cat_never_hang_on_what_is_not_a_regular_file(lab: Lab, what: str, reason: str) -> None:
    _plant(lab.runs / lab.B, "hello.py", what)
    for args in (["diff", "--source-only", lab.A, lab.B], ["diff", lab.B]):
        cp = lab.gl(*args)
        lab.clean(cp)
        assert cp.returncode == 0, cp.stderr
        assert f"Skipped {lab.B}/hello.py: {reason}" in cp.stdout
    cp = lab.gl("cat", lab.B, "hello.py")
    lab.clean(cp)
    assert_clean_error(cp, 2, "hello.py", reason)


@pytest.mark.parametrize("what", ["fifo", "zero", "loop", "sparse"])
def test_view_out_compare_and_runs_never_hang(lab: Lab, tmp_path: Path, what: str) -> None:
    pytest.importorskip("plotly")
    for name in ("output.log", "scalars.jsonl"):
        _plant(lab.runs / lab.B, name, what)
    out = tmp_path / "page.html"
    for args in (["view", "--out", str(out)], ["compare"], ["runs"], ["ls", lab.B]):
        cp = lab.gl(*args)
        lab.clean(cp)
        assert cp.returncode == 0, (args, cp.stderr)
    assert lab.B in out.read_text()


# --- view: --out and the server ---------------------------------------------------------------------


def test_view_out_does_not_embed_an_output_log_that_links_outside(lab: Lab, tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    (lab.runs / lab.B / "output.log").symlink_to(lab.secret)
    (lab.runs / lab.B / "scalars.jsonl").symlink_to(lab.secret)
    out = tmp_path / "page.html"
    cp = lab.gl("view", "--out", str(out))
    lab.clean(cp)
    assert cp.returncode == 0, cp.stderr
    html = out.read_text()
    assert lab.B in html and lab.secret_text not in html


class _Server:
    """``guildlite view --port 0`` in a subprocess; ``url`` is where it answers."""

    def __init__(self, lab: Lab) -> None:
        self.proc = subprocess.Popen([*GUILDLITE, "view", "--port", "0", "--no-browser"], cwd=lab.project,
                                     env=clean_env(lab.runs), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
        line = lines.get(timeout=TIMEOUT)
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        self.url = m.group(1)

    def get(self, path: str) -> tuple[int, bytes]:
        # urllib sends the path as given: no normalising of '..', no decoding of %00
        try:
            with urllib.request.urlopen(self.url + path, timeout=TIMEOUT) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=TIMEOUT)
        return err


def test_served_files_are_regular_files_inside_the_run_dir(lab: Lab) -> None:
    pytest.importorskip("plotly")
    run_dir = lab.runs / lab.B
    (run_dir / "output.log").symlink_to(lab.secret)
    (run_dir / "link.txt").symlink_to(lab.secret)
    _plant(run_dir, "fifo", "fifo")
    _plant(run_dir, "zero", "zero")
    _plant(run_dir, "loop", "loop")
    (run_dir / "inside.txt").symlink_to("hello.py")  # a symlink that stays inside is followed
    server = _Server(lab)
    try:
        bad = [f"files/{lab.B}/{name}" for name in ("output.log", "link.txt", "fifo", "zero", "loop")] + [
            f"files/{lab.B}/%00", f"files/{lab.B}/hello.py%00.txt", "files/%00/run.json", "run/%00.json",
            f"files/{lab.B}/../{lab.A}/run.json", f"files/{lab.B}/..%2f..%2f{lab.secret.parent.name}/secret.txt",
            f"files/{lab.B}/" + _ups(run_dir) + str(lab.secret).lstrip("/"),
            f"files/{lab.B}/%2F" + str(lab.secret).lstrip("/"), "files/..%2f..%2fx/y", "run/..%2f..%2fx.json",
        ]
        for path in bad:
            status, body = server.get(path)
            assert status in (400, 404) and body, (path, status, body)
            assert lab.secret_text.encode() not in body, path
        status, body = server.get(f"run/{lab.B}.json")
        assert status == 200 and lab.secret_text.encode() not in body
        detail = json.loads(body)
        assert detail["output"] == "" and {"link.txt", "fifo", "zero", "loop"} <= {p for p, _ in detail["files"]}
        status, body = server.get(f"files/{lab.B}/inside.txt")
        assert status == 200 and body == (run_dir / "hello.py").read_bytes()
        assert server.get("data.json")[0] == 200  # still serving
    finally:
        err = server.stop()
    assert TRACEBACK not in err and lab.secret_text not in err, err
