"""``requires: file:`` (project files and dirs, outside paths) and the source report.

Real projects on disk, the real CLI in subprocesses, jobs that read what was required. The
digest cache and the download cache live in the test's tmp dir (``XDG_CACHE_HOME``).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error

MB = 1024 * 1024

# Reads every file under data/ (following the link) and what it was given on the command line.
READER = textwrap.dedent(
    """\
    import hashlib, os, sys
    total, h = 0, hashlib.sha256()
    for d, dirs, files in os.walk("data", followlinks=True):
        dirs.sort()
        for f in sorted(files):
            b = open(os.path.join(d, f), "rb").read()
            total += len(b)
            h.update(b)
    print(f"read {total} bytes sha={h.hexdigest()[:12]}")
    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    for extra in filter(None, flags.get("paths", "").split(",")):
        print("extra", extra, os.path.getsize(extra))
    """
)

SEE_PLUGIN = textwrap.dedent(
    """\
    import os
    from guildlite import Plugin

    class See(Plugin):
        def on_run_staged(self, run):
            found = sorted(os.listdir(run.run_dir / "data")) if (run.run_dir / "data").exists() else None
            (run.run_dir / "staged-saw.txt").write_text(repr(found))
    """
)


def _guildfile(requires: str, op_extra: str = "", main: str = "read.py") -> str:
    body = textwrap.indent(textwrap.dedent(requires).strip(), "      ")
    flags = "" if "flags:" in op_extra else "    flags: {paths: ''}\n"
    return (f"operations:\n  train:\n    main: {main}\n    launcher: python\n{flags}{op_extra}"
            f"    requires:\n{body}\n  other:\n    main: read.py\n    launcher: python\n")


@pytest.fixture
def make(make_project: Callable[..., Project], tmp_path: Path) -> Callable[..., Project]:
    cache = tmp_path / "cache"

    def build(guildfile: str, files: dict[str, str] | None = None) -> Project:
        proj = make_project(guildfile, {"read.py": READER, **(files or {})})
        orig = proj.run

        def run(*args: str, **kw: Any) -> Any:
            kw["env"] = {"XDG_CACHE_HOME": str(cache), **(kw.get("env") or {})}
            return orig(*args, **kw)

        proj.run = run  # type: ignore[method-assign]
        return proj

    return build


def _data_dir(root: Path, n: int = 5, size: int = MB) -> int:
    (root / "data").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / "data" / f"part{i}.bin").write_bytes(bytes([i]) * size)
    (root / "data" / "labels.csv").write_text("x,y\n1,2\n")
    return n * size + len("x,y\n1,2\n")


def _only_run_dir(proj: Project) -> Path:
    dirs = proj.run_dirs()
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_a_5mb_data_dir_is_read_by_the_job_through_requires_file(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: data/\n- file: weights/base.pt\n",
                           "    plugins:\n      - class: seeplug:See\n"),
                {"seeplug.py": SEE_PLUGIN})
    total = _data_dir(proj.root)
    (proj.root / "weights").mkdir()
    (proj.root / "weights" / "base.pt").write_bytes(b"w" * 3000)
    cp = proj.run("run", "-y", "train", "paths=weights/base.pt")
    assert cp.returncode == 0, cp.stderr
    assert f"read {total} bytes" in cp.stdout
    assert "extra weights/base.pt 3000" in cp.stdout
    run_dir = _only_run_dir(proj)
    assert (run_dir / "data").is_symlink()  # linked, not copied: staging costs one symlink
    assert os.path.realpath(run_dir / "data") == str((proj.root / "data").resolve())
    # on_run_staged saw a run dir populated with the requirements
    assert (run_dir / "staged-saw.txt").read_text() == repr(sorted(os.listdir(proj.root / "data")))
    rec = proj.only_record()
    data, weights = rec["requires"]
    assert data["kind"] == "file" and data["source"] == "data/" and data["target"] == "data"
    assert data["size"] == total and data["files"] == 6 and len(data["sha256"]) == 64
    assert weights["target"] == "weights/base.pt" and weights["size"] == 3000
    import hashlib

    assert weights["sha256"] == hashlib.sha256(b"w" * 3000).hexdigest()
    assert "mtime" in weights
    # the data's small files were not also copied as source: the requirement has their place
    manifest = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())
    assert {"path": "data/labels.csv", "reason": "required"} in manifest["skipped"]
    assert all(not f["path"].startswith("data/") for f in manifest["files"])
    info = proj.run("runs", "info", run_dir.name)
    assert "requires:" in info.stdout and "file: data/ -> data  5.2 MB  sha256 " + data["sha256"][:16] in info.stdout


def test_copy_target_path_select_and_rename(make: Callable[..., Project]) -> None:
    proj = make(_guildfile(r"""
        - file: data
          target-path: inputs
          target-type: copy
          select: ['.*\.csv', 'part[01]\.bin']
          rename: 'part(\d) shard\1'
        """))
    _data_dir(proj.root, n=3, size=1000)
    cp = proj.run("run", "-y", "train", "paths=inputs/data/shard0.bin")
    assert cp.returncode == 0, cp.stderr
    run_dir = _only_run_dir(proj)
    got = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "inputs").rglob("*"))
    assert got == ["inputs/data", "inputs/data/labels.csv", "inputs/data/shard0.bin", "inputs/data/shard1.bin"]
    assert not any(p.is_symlink() for p in (run_dir / "inputs").rglob("*"))  # copies
    # a copy is the run's own: changing the project's data later does not change it
    (proj.root / "data" / "part0.bin").write_bytes(b"changed")
    assert (run_dir / "inputs/data/shard0.bin").read_bytes() == bytes([0]) * 1000
    assert proj.only_record()["requires"][0]["files"] == 3


def test_an_explicit_outside_path_is_linked_by_its_name(make: Callable[..., Project], tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "vocab.txt").write_text("a b c\n")
    proj = make(_guildfile(f"- file: {shared / 'vocab.txt'}\n- file: ../shared\n  target-path: ext\n"))
    cp = proj.run("run", "-y", "train", "paths=vocab.txt,ext/shared/vocab.txt")
    assert cp.returncode == 0, cp.stderr
    assert "extra vocab.txt 6" in cp.stdout and "extra ext/shared/vocab.txt 6" in cp.stdout


def test_a_batch_resolves_once_and_every_trial_gets_the_same(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: data/\n", "    flags:\n      x: 1\n"))
    _data_dir(proj.root, n=2, size=1000)
    cp = proj.run("run", "-y", "train", "x=[1,2,3]")
    assert cp.returncode == 0, cp.stderr
    trials = [r for r in proj.records() if r.get("is_trial")]
    assert len(trials) == 3
    assert all(t["status"] == "completed" for t in trials)
    assert len({json.dumps(t["requires"], sort_keys=True) for t in trials}) == 1


def test_digests_are_cached_by_path_size_and_mtime(make: Callable[..., Project], tmp_path: Path) -> None:
    proj = make(_guildfile("- file: weights.bin\n"))
    w = proj.root / "weights.bin"
    w.write_bytes(b"1" * 5000)
    assert proj.run("run", "-y", "train").returncode == 0
    first = proj.records()[0]["requires"][0]["sha256"]
    entries = list((tmp_path / "cache" / "guildlite" / "digests").rglob("*.json"))
    assert len(entries) == 1
    # Plant a different digest in the entry: a second run that reads the cache records it.
    data = json.loads(entries[0].read_text())
    data["sha256"] = "0" * 64
    entries[0].write_text(json.dumps(data))
    assert proj.run("run", "-y", "train").returncode == 0
    assert sorted(r["requires"][0]["sha256"] for r in proj.records()) == sorted([first, "0" * 64])
    # a changed mtime is a changed file: hashed again
    os.utime(w, ns=(1_000_000_000, 1_000_000_000))
    assert proj.run("run", "-y", "train").returncode == 0
    assert [r["requires"][0]["sha256"] for r in proj.records()].count(first) == 2


def test_no_digest_over_the_hash_limit(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: weights.bin\n"))
    (proj.root / "weights.bin").write_bytes(b"1" * 5000)
    assert proj.run("run", "-y", "train", env={"GUILDLITE_HASH_LIMIT": "4000"}).returncode == 0
    rec = proj.only_record()["requires"][0]
    assert rec["sha256"] is None and rec["size"] == 5000


# --- the source report: nothing is skipped silently ------------------------------------------------


def test_data_in_include_that_is_not_copied_is_said_once_and_listed(make: Callable[..., Project]) -> None:
    """The issue's story: data/ listed in sourcecode include, its big files left out silently."""
    gf = ("operations:\n  train:\n    main: read.py\n    launcher: python\n    flags: {x: 1}\n"
          "    sourcecode:\n      include: ['*.py', 'data/**']\n")
    proj = make(gf)
    _data_dir(proj.root, n=2, size=2 * MB)
    cp = proj.run("run", "-y", "train", "x=[1,2]")
    assert cp.returncode == 0, cp.stderr
    warned = [ln for ln in cp.stderr.splitlines() if "data/part0.bin" in ln]
    assert len(warned) == 1, cp.stderr  # once for the batch, not once per trial
    assert "warning" in warned[0] and "requires" in warned[0] and "max-size" in warned[0]
    for d in proj.run_dirs():
        if (d / ".guildlite" / "sourcecode.json").exists() and json.loads((d / "run.json").read_text())["is_trial"]:
            skipped = json.loads((d / ".guildlite" / "sourcecode.json").read_text())["skipped"]
            assert {"path": "data/part1.bin", "reason": "too-large"} in skipped
    staged = proj.run("run", "-y", "--stage", "train")
    assert staged.returncode == 0
    assert "data/part1.bin" in staged.stderr and "warning" in staged.stderr


def test_an_explicitly_included_file_over_max_size_is_an_error(make: Callable[..., Project]) -> None:
    gf = ("operations:\n  train:\n    main: read.py\n    launcher: python\n"
          "    sourcecode:\n      include: ['read.py', 'data/part0.bin']\n")
    proj = make(gf)
    _data_dir(proj.root, n=1, size=2 * MB)
    cp = proj.run("run", "-y", "train")
    line = assert_clean_error(cp, 2, "data/part0.bin", "max-size", "requires")
    assert "- file: data/part0.bin" in line
    assert proj.run_dirs() == []


def test_an_include_naming_a_directory_that_matches_nothing_is_said(make: Callable[..., Project]) -> None:
    gf = ("operations:\n  train:\n    main: read.py\n    launcher: python\n"
          "    sourcecode:\n      include: ['read.py', data]\n")
    proj = make(gf)
    _data_dir(proj.root, n=1, size=10)
    cp = proj.run("run", "-y", "--stage", "train")
    assert cp.returncode == 0, cp.stderr
    said = [ln for ln in cp.stderr.splitlines() if "'data'" in ln]
    assert len(said) == 1 and "data/**" in said[0] and "requires" in said[0], cp.stderr


def test_default_selection_stays_quiet(make: Callable[..., Project]) -> None:
    proj = make("operations:\n  train:\n    main: read.py\n    launcher: python\n")
    _data_dir(proj.root, n=1, size=2 * MB)
    cp = proj.run("run", "-y", "train")
    assert cp.returncode == 0 and "warning" not in cp.stderr


# --- validation: at load, with line numbers, nothing staged ---------------------------------------


@pytest.mark.parametrize(
    ("requires", "line", "needles"),
    [
        ("- file: data/\n  targt-path: x\n", 8, ("unknown key 'targt-path'", "target-path")),
        ("- file: data/\n  url: http://x/y\n", 8, ("exactly one of",)),
        ("- file: data/\n  select-min: x\n", 8, ("select-min", "not supported")),
        ("- url: ftp://x/y\n", 7, ("http://",)),
        ("- url: http://x/y.bin\n  sha256: abc\n", 8, ("sha256", "64 hex")),
        ("- file: data/\n  select: '(['\n", 8, ("select", "regular expression")),
        ("- file: data/\n  target-path: /etc\n", 8, ("target-path", "absolute")),
        ("- file: data/\n  target-path: ../../x\n", 8, ("target-path", "'..'")),
        ("- file: data/\n  target-path: .guildlite\n", 8, ("target-path", ".guildlite")),
        ("- file: data/\n  target-type: hardlink\n", 8, ("target-type", "link or copy")),
        ("- file: data/\n  unpack: maybe\n", 8, ("unpack", "true or false")),
        ("- data/\n", 7, ("a requirement is a mapping",)),
        ("- file: nowhere/\n", 7, ("file: nowhere/", "does not exist")),
    ],
)
def test_bad_requirements_name_file_line_and_field(
    make: Callable[..., Project], requires: str, line: int, needles: tuple[str, ...]
) -> None:
    proj = make(_guildfile(requires))
    _data_dir(proj.root, n=1, size=10)
    cp = proj.run("run", "-y", "train")
    err = assert_clean_error(cp, 2, *needles)
    assert f"guildfile.yml:{line}:" in err
    assert proj.run_dirs() == []
    if "does not exist" not in needles:  # a bad guildfile fails for every op
        assert proj.run("run", "-y", "other").returncode == 2
    else:  # a missing file fails only the op that needs it
        assert proj.run("run", "-y", "other").returncode == 0


def test_guild_inline_resource_with_sources(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("""
        - name: dataset
          target-path: inputs
          sources:
            - file: data/part0.bin
            - file: data/labels.csv
        """))
    _data_dir(proj.root, n=1, size=100)
    cp = proj.run("run", "-y", "train", "paths=inputs/part0.bin,inputs/labels.csv")
    assert cp.returncode == 0, cp.stderr
    assert "extra inputs/part0.bin 100" in cp.stdout


# --- hostile input --------------------------------------------------------------------------------


def test_a_symlink_out_of_a_required_dir_is_not_provided(make: Callable[..., Project], tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    proj = make(_guildfile("- file: data/\n"))
    _data_dir(proj.root, n=1, size=10)
    os.symlink(secret, proj.root / "data" / "leak.txt")
    os.symlink(proj.root / "data" / "labels.csv", proj.root / "data" / "inner.csv")  # inside: fine
    cp = proj.run("run", "-y", "train")
    assert cp.returncode == 0, cp.stderr
    run_dir = _only_run_dir(proj)
    assert not os.path.lexists(run_dir / "data" / "leak.txt")
    assert (run_dir / "data" / "inner.csv").read_text() == "x,y\n1,2\n"
    assert "data/" in cp.stderr and "leak.txt" in cp.stderr and "symlink-outside-source" in cp.stderr
    rec = proj.only_record()["requires"][0]
    assert {"path": "leak.txt", "reason": "symlink-outside-source"} in rec["skipped"]


def test_rename_out_of_the_run_dir_is_refused(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: data\n  rename: 'labels ../../../escaped'\n"))
    _data_dir(proj.root, n=1, size=10)
    assert_clean_error(proj.run("run", "-y", "train"), 2, "'..'")
    assert proj.run_dirs() == []
    assert not list(proj.root.parent.rglob("escaped*"))


def test_two_requirements_at_one_place_or_one_inside_another_are_refused(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: data/\n- file: weights.bin\n  target-path: data\n"))
    _data_dir(proj.root, n=1, size=10)
    (proj.root / "weights.bin").write_text("w")
    assert_clean_error(proj.run("run", "-y", "train"), 2, "inside 'data'")
    (proj.root / "guildfile.yml").write_text(_guildfile("- file: a/x.txt\n  target-path: t\n- file: b/x.txt\n"
                                                        "  target-path: t\n"))
    for d in ("a", "b"):
        (proj.root / d).mkdir()
        (proj.root / d / "x.txt").write_text(d)
    assert_clean_error(proj.run("run", "-y", "train"), 2, "both go to 't/x.txt'")
    assert proj.run_dirs() == []
    assert (proj.root / "data" / "labels.csv").read_text() == "x,y\n1,2\n"  # nothing written into the project


def test_a_requirement_wins_over_a_source_file_at_its_place(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: configs/big.yml\n  target-path: .\n  rename: 'big.yml config.yml'\n"),
                {"config.yml": "source: 1\n", "configs/big.yml": "required: 1\n"})
    cp = proj.run("run", "-y", "train", "paths=config.yml")
    assert cp.returncode == 0, cp.stderr
    run_dir = _only_run_dir(proj)
    assert (run_dir / "config.yml").read_text() == "required: 1\n"
    skipped = json.loads((run_dir / ".guildlite" / "sourcecode.json").read_text())["skipped"]
    assert {"path": "config.yml", "reason": "required"} in skipped
    assert (proj.root / "config.yml").read_text() == "source: 1\n"
    said = [ln for ln in cp.stderr.splitlines() if "config.yml" in ln]
    assert len(said) == 1 and "warning" in said[0] and "configs/big.yml" in said[0], cp.stderr


def test_a_rename_that_merges_files_is_refused(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: data\n  rename: '.* same.bin'\n"))
    _data_dir(proj.root, n=2, size=10)
    assert "guildfile.yml:7:" in assert_clean_error(proj.run("run", "-y", "train"), 2, "puts two files to 'data/same.bin'")
    assert proj.run_dirs() == []


def test_a_restart_links_the_requirements_again(make: Callable[..., Project]) -> None:
    proj = make(_guildfile("- file: data/\n- file: w.bin\n  target-type: copy\n"))
    _data_dir(proj.root, n=1, size=10)
    (proj.root / "w.bin").write_text("v1")
    assert proj.run("run", "-y", "train").returncode == 0
    run_dir = _only_run_dir(proj)
    (proj.root / "data" / "new.csv").write_text("n\n")
    (proj.root / "w.bin").write_text("v2!")
    cp = proj.run("run", "-y", "--restart", run_dir.name)
    assert cp.returncode == 0, cp.stderr
    assert (run_dir / "data").is_symlink() and (run_dir / "w.bin").read_text() == "v2!"
    rec = proj.only_record()
    assert rec["requires"][0]["files"] == 3 and rec["requires"][1]["size"] == 3


def test_a_detached_run_is_staged_with_its_requirements(make: Callable[..., Project]) -> None:
    from conftest import wait_until

    proj = make(_guildfile("- file: data/\n"))
    total = _data_dir(proj.root, n=1, size=1000)
    cp = proj.run("run", "-y", "-b", "train")
    assert cp.returncode == 0, cp.stderr
    run_dir = _only_run_dir(proj)
    assert (run_dir / "data").is_symlink()  # staged before the command returned
    rec = wait_until(lambda: (r := proj.only_record())["status"] in ("completed", "error") and r, timeout=60)
    assert rec["status"] == "completed", rec
    assert f"read {total} bytes" in (run_dir / "output.log").read_text()


def test_a_file_archive_is_unpacked_unless_unpack_no(make: Callable[..., Project], tmp_path: Path) -> None:
    import zipfile

    proj = make(_guildfile("- file: bundle.zip\n  target-path: b\n- file: keep.zip\n  unpack: no\n"))
    for name in ("bundle.zip", "keep.zip"):
        with zipfile.ZipFile(proj.root / name, "w") as z:
            z.writestr("inner/a.txt", "A")
    cp = proj.run("run", "-y", "train", "paths=b/inner/a.txt,keep.zip")
    assert cp.returncode == 0, cp.stderr
    assert "extra b/inner/a.txt 1" in cp.stdout
    run_dir = _only_run_dir(proj)
    assert zipfile.is_zipfile(run_dir / "keep.zip") and not (run_dir / "inner").exists()
    unpacked = proj.only_record()["requires"][0]
    assert unpacked["files"] == 1 and len(unpacked["archive_sha256"]) == 64


def test_a_file_sha256_is_checked_whatever_its_size(make: Callable[..., Project]) -> None:
    import hashlib

    proj = make(_guildfile(f"- file: w.bin\n  sha256: {hashlib.sha256(b'v1').hexdigest()}\n"))
    (proj.root / "w.bin").write_bytes(b"v1")
    assert proj.run("run", "-y", "train", env={"GUILDLITE_HASH_LIMIT": "0"}).returncode == 0
    (proj.root / "w.bin").write_bytes(b"v2")
    line = assert_clean_error(proj.run("run", "-y", "train", env={"GUILDLITE_HASH_LIMIT": "0"}), 1,
                              "sha256 mismatch", hashlib.sha256(b"v2").hexdigest())
    assert "guildfile.yml:7:" in line
    assert len(proj.run_dirs()) == 1


# --- the path rules, as properties ------------------------------------------------------------------

_PATHS = ["", ".", "..", "/", "a", "b/c", "../x", "./y", "x/../../z", "/etc", ".guildlite", "run.json", "a//b",
          "\\\\x", "C:x", "a/./b", "..a", "a..", "~"]


def test_an_accepted_target_stays_inside_the_run_dir() -> None:
    from conftest import property_settings
    from hypothesis import given
    from hypothesis import strategies as st

    from guildlite._requires_schema import target_problem

    part = st.sampled_from(_PATHS) | st.text(alphabet="ab./\\~:", max_size=6)

    @property_settings()
    @given(st.lists(part, min_size=1, max_size=4).map("/".join))
    def check(path: str) -> None:
        if target_problem(path) is None:
            placed = os.path.normpath(os.path.join("/run", path))
            assert placed.startswith("/run/"), path
            assert placed.split("/")[2].casefold() not in (".guildlite", "run.json")

    check()


def test_an_accepted_archive_member_stays_inside_the_unpack_dir() -> None:
    from conftest import property_settings
    from hypothesis import given
    from hypothesis import strategies as st

    from guildlite._resource_files import RequirementError
    from guildlite._unpack import _check_name

    part = st.sampled_from(_PATHS) | st.text(alphabet="ab./\\:", max_size=6)

    @property_settings()
    @given(st.lists(part, min_size=1, max_size=4).map("/".join))
    def check(name: str) -> None:
        try:
            _check_name(Path("x.zip"), name, "guildfile.yml")
        except RequirementError:
            return
        placed = os.path.normpath(os.path.join("/unpack", name))
        assert placed == "/unpack" or placed.startswith("/unpack/"), name

    check()
