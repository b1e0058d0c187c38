"""Hostile sizes found by the attacker's second pass: a huge or sparse output.log under ``watch``,
a sparse file under ``runs export``, a label of megabytes under ``runs info``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, assert_clean_error


@pytest.fixture
def ended(make_project: Callable[..., Project]) -> tuple[Project, str]:
    """A project with one completed ``quick`` run (launcher: python): the project and the run's id."""
    proj = make_project()
    cp = proj.run("run", "-y", "quick")
    assert cp.returncode == 0, cp.stderr
    return proj, str(proj.only_record()["id"])


def _watch_bounded(proj: Project, run_id: str, most: int) -> tuple[int, bytes, str]:
    """``guildlite watch RUN``: its exit status, stdout and stderr; killed (and the test failed) once
    stdout passes ``most`` bytes, so that a watch that streams a whole huge log fails quickly."""
    p = subprocess.Popen([*GUILDLITE, "watch", run_id], cwd=proj.root, env=proj.env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    out = b""
    try:
        while chunk := p.stdout.read1(1 << 16):  # type: ignore[attr-defined]
            out += chunk
            assert len(out) <= most, f"watch printed over {most} bytes of the log"
        err = p.stderr.read().decode()
        return p.wait(timeout=60), out, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_watch_of_a_sparse_20_gb_log_shows_its_last_megabyte_from_a_line_start(ended: tuple[Project, str]) -> None:
    proj, run_id = ended
    log = proj.runs_dir / run_id / "output.log"
    with open(log, "r+b") as f:
        f.truncate(20 << 30)  # 20 GB of NULs taking no disk (as an imported run may hold)
        f.seek(0, os.SEEK_END)
        f.write(b"first tail line\n" + b"middle line\n" * 1000 + b"last line\n")
    rc, out, err = _watch_bounded(proj, run_id, 2 << 20)
    assert rc == 0, err
    assert TRACEBACK not in err
    assert len(out) <= (1 << 20) and out.endswith(b"middle line\nlast line\n")
    assert "skipped" in err and f"guildlite cat {run_id} output.log" in err, err
    assert "21.5 GB" in err  # the log's size as it is, not as it is on disk


def test_watch_of_a_long_log_starts_at_a_line_start_and_says_how_much_it_skipped(
        ended: tuple[Project, str]) -> None:
    proj, run_id = ended
    log = proj.runs_dir / run_id / "output.log"
    lines = [f"line {i:07d} " + "x" * (i % 97) + "\n" for i in range(60_000)]  # ~4.6 MB, uneven lines
    log.write_text("".join(lines))
    rc, out, err = _watch_bounded(proj, run_id, 2 << 20)
    assert rc == 0, err
    shown = out.decode()
    assert 0 < len(out) <= 1 << 20
    assert shown.startswith("line ")  # a whole line first, not the end of one
    first = shown.splitlines(keepends=True)
    assert first == lines[len(lines) - len(first):]  # exactly the last lines, in order, none cut
    assert "skipped its first" in err and "guildlite cat" in err


def test_watch_of_a_log_under_a_megabyte_prints_it_all_and_says_nothing_skipped(ended: tuple[Project, str]) -> None:
    proj, run_id = ended
    log = proj.runs_dir / run_id / "output.log"
    text = b"z" * 1000 + b"\n"
    log.write_bytes(text * 1000)  # 1,001,000 bytes: under the limit
    rc, out, err = _watch_bounded(proj, run_id, 2 << 20)
    assert rc == 0 and out == text * 1000
    assert "skipped" not in err


def _sparse(path: Path, size: int, data: dict[int, bytes]) -> None:
    """A file of ``size`` bytes holding ``data`` at its offsets, holes elsewhere."""
    with open(path, "wb") as f:
        f.truncate(size)
        for at, chunk in data.items():
            f.seek(at)
            f.write(chunk)


SPARSE_SIZE = 1 << 40  # 1 TB


def test_runs_export_to_a_directory_keeps_a_sparse_files_holes(ended: tuple[Project, str], tmp_path: Path) -> None:
    proj, run_id = ended
    data = {0: b"head" * 1000, 1 << 39: os.urandom(5000), SPARSE_SIZE - 7: b"the end"}
    _sparse(proj.runs_dir / run_id / "sparse.bin", SPARSE_SIZE, data)
    out = tmp_path / "export"
    cp = proj.run("runs", "export", run_id, str(out))
    assert cp.returncode == 0, cp.stderr
    copy = out / run_id / "sparse.bin"
    st = copy.stat()
    assert st.st_size == SPARSE_SIZE
    assert st.st_blocks * 512 < 16 << 20  # holes stay holes: not 1 TB on disk
    with open(copy, "rb") as f:
        for at, chunk in data.items():
            f.seek(at)
            assert f.read(len(chunk)) == chunk
        f.seek((1 << 39) - 4096)
        assert f.read(4096) == bytes(4096)  # a hole reads as zeros, as in the original
    # It reads back as a runs dir.
    assert proj.run("runs", "--runs-dir", str(out)).returncode == 0


def test_runs_export_to_a_plain_tar_that_exceeds_the_free_space_is_refused_before_writing(
        ended: tuple[Project, str], tmp_path: Path) -> None:
    proj, run_id = ended
    size = max(SPARSE_SIZE, 2 * shutil.disk_usage(tmp_path).free)  # a .tar holds every byte of it
    _sparse(proj.runs_dir / run_id / "sparse.bin", size, {size - 3: b"end"})
    out = tmp_path / "out" / "export.tar"
    cp = proj.run("runs", "export", run_id, str(out))
    assert_clean_error(cp, 2, "would not fit", "free", "nothing was exported")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_runs_export_of_a_sparse_file_into_a_directory_not_made_yet(
        ended: tuple[Project, str], tmp_path: Path) -> None:
    proj, run_id = ended
    _sparse(proj.runs_dir / run_id / "sparse.bin", SPARSE_SIZE, {5: b"x"})
    out = tmp_path / "a" / "b" / "c"
    cp = proj.run("runs", "export", run_id, str(out))
    assert cp.returncode == 0, cp.stderr
    assert (out / run_id / "sparse.bin").stat().st_size == SPARSE_SIZE


def test_runs_info_cuts_a_label_flag_and_note_of_megabytes_and_json_keeps_them_whole(
        ended: tuple[Project, str]) -> None:
    proj, run_id = ended
    path = proj.runs_dir / run_id / "run.json"
    rec = json.loads(path.read_text())
    label, value, note = "L" * 10_000_000, "v" * 3_000_000, "first line\n" + "n" * 2_000_000 + "\nlast line"
    rec["label"], rec["flags"]["lr"] = label, value
    rec["notes"] = [{"time": "2026-01-01T00:00:00+00:00", "text": note}]
    path.write_text(json.dumps(rec))  # as an imported run may hold it (argv could not carry 10 MB)
    cp = proj.run("runs", "info", run_id)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert len(cp.stdout) < 20_000
    lines = cp.stdout.splitlines()
    (shown,) = [x for x in lines if x.startswith("label: ")]
    assert shown.startswith("label: LLLL") and "9999" in shown and "--json shows all" in shown
    assert any(x.strip().startswith("lr: vvvv") and "--json shows all" in x for x in lines)
    assert any("first line" in x for x in lines) and any(x.strip() == "last line" for x in lines)
    whole = proj.run_json("runs", "info", run_id, "--json")
    assert whole["label"] == label and whole["flags"]["lr"] == value and whole["notes"][0]["text"] == note
