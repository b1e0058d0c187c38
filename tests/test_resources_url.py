"""``requires: url:`` against a real HTTP server on 127.0.0.1 that the test starts.

The server counts requests per path and can misbehave on purpose: close the connection mid-body
(``/cut/...``), or send slowly (``/slow/...``, for the progress line and concurrent runs).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import textwrap
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import Project, assert_clean_error

READER = textwrap.dedent(
    """\
    import os, sys
    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    for p in filter(None, flags.get("paths", "").split(",")):
        print("got", p, open(p, "rb").read().decode())
    """
)


class Server:
    """Files by path; a name in ``cut`` gets half its body then the connection closes; a name in
    ``slow`` takes ~1.5 s."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.slow: set[str] = set()
        self.hits: Counter[str] = Counter()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = self.path.lstrip("/")
                owner.hits[name] += 1
                body = owner.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in owner.cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                step = max(1, len(body) // 6) if name in owner.slow else len(body)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i : i + step])
                    self.wfile.flush()
                    if name in owner.slow:
                        time.sleep(0.3)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def make(make_project: Callable[..., Project], tmp_path: Path) -> Callable[[str], Project]:
    cache = tmp_path / "rcache"

    def build(requires: str) -> Project:
        body = textwrap.indent(textwrap.dedent(requires).strip(), "      ")
        gf = ("operations:\n  train:\n    main: read.py\n    launcher: python\n    flags: {paths: '', x: 1}\n"
              f"    requires:\n{body}\n")
        proj = make_project(gf, {"read.py": READER})
        orig = proj.run

        def run(*args: str, **kw: Any) -> Any:
            kw["env"] = {"GUILDLITE_RESOURCE_CACHE": str(cache), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
                         **(kw.get("env") or {})}
            return orig(*args, **kw)

        proj.run = run  # type: ignore[method-assign]
        proj.cache = cache  # type: ignore[attr-defined]
        return proj

    return build


def _cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "url").rglob("*") if p.is_file() and p.name != "meta.json" and p.suffix != ".lock") \
        if cache.exists() else []


def test_a_good_sha256_downloads_once_and_links(make: Callable[[str], Project], server: Server) -> None:
    server.files["vocab.txt"] = b"hello vocab"
    sha = hashlib.sha256(b"hello vocab").hexdigest()
    proj = make(f"- url: {server.url}/vocab.txt\n  sha256: {sha}\n")
    cp = proj.run("run", "-y", "train", "paths=vocab.txt", "x=[1,2]")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.count("got vocab.txt hello vocab") == 2
    assert server.hits["vocab.txt"] == 1  # once for the batch
    assert proj.run("run", "-y", "train", "paths=vocab.txt").returncode == 0
    assert server.hits["vocab.txt"] == 1  # and from the cache after that
    rec = next(r for r in proj.records() if r.get("requires"))["requires"][0]
    assert rec["kind"] == "url" and rec["source"] == f"{server.url}/vocab.txt"
    assert rec["sha256"] == sha and rec["size"] == 11 and rec["target"] == "vocab.txt"


def test_a_wrong_sha256_is_a_clear_error_and_nothing_is_staged(make: Callable[[str], Project],
                                                               server: Server) -> None:
    server.files["vocab.txt"] = b"tampered"
    want = hashlib.sha256(b"original").hexdigest()
    proj = make(f"- url: {server.url}/vocab.txt\n  sha256: {want}\n")
    line = assert_clean_error(proj.run("run", "-y", "train"), 1, "sha256 mismatch", want,
                              hashlib.sha256(b"tampered").hexdigest())
    assert "guildfile.yml:7" in line
    assert proj.run_dirs() == []
    assert _cached_files(proj.cache) == []  # type: ignore[attr-defined]


def test_an_interrupted_download_is_never_used_and_a_retry_works(make: Callable[[str], Project],
                                                                 server: Server) -> None:
    server.files["big.bin"] = b"x" * 200_000
    server.cut.add("big.bin")
    proj = make(f"- url: {server.url}/big.bin\n")
    assert_clean_error(proj.run("run", "-y", "train"), 1, "interrupted", "retry")
    assert proj.run_dirs() == []
    cache = proj.cache  # type: ignore[attr-defined]
    assert _cached_files(cache) == []  # no half file, no temp file left behind
    server.cut.clear()  # the server behaves now: the same URL is fetched again, whole
    cp = proj.run("run", "-y", "train", "paths=big.bin")
    assert cp.returncode == 0, cp.stderr
    assert server.hits["big.bin"] == 2
    assert _cached_files(cache) == ["big.bin"]
    assert (proj.run_dirs()[0] / "big.bin").read_bytes() == b"x" * 200_000


def _tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            t.addfile(info)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_unpack_tar_and_zip(make: Callable[[str], Project], server: Server) -> None:
    server.files["data.tar.gz"] = _tar_gz({"ds/train.txt": b"TRAIN", "ds/test.txt": b"TEST"})
    server.files["more.zip"] = _zip({"extra/a.txt": b"A"})
    proj = make(f"- url: {server.url}/data.tar.gz\n  target-path: inputs\n"
                f"- url: {server.url}/more.zip\n")
    cp = proj.run("run", "-y", "train", "paths=inputs/ds/train.txt,inputs/ds/test.txt,extra/a.txt")
    assert cp.returncode == 0, cp.stderr
    assert "got inputs/ds/train.txt TRAIN" in cp.stdout and "got extra/a.txt A" in cp.stdout
    rec = proj.only_record()["requires"]
    assert rec[0]["files"] == 2 and "archive_sha256" in rec[0]


def test_unpack_no_keeps_the_archive(make: Callable[[str], Project], server: Server) -> None:
    server.files["more.zip"] = _zip({"a.txt": b"A"})
    proj = make(f"- url: {server.url}/more.zip\n  unpack: no\n")
    assert proj.run("run", "-y", "train").returncode == 0
    run_dir = proj.run_dirs()[0]
    assert zipfile.is_zipfile(run_dir / "more.zip") and not (run_dir / "a.txt").exists()


@pytest.mark.parametrize(
    ("name", "archive"),
    [
        ("slip.zip", _zip({"ok.txt": b"1", "../../evil.txt": b"pwned"})),
        ("abs.tar.gz", _tar_gz({"/tmp/evil-abs.txt": b"pwned"})),
        ("link.tar.gz", _tar_gz({"ok.txt": b"1"}, links={"escape": "../../../../etc"})),
    ],
)
def test_archives_whose_members_escape_are_refused(make: Callable[[str], Project], server: Server,
                                                   tmp_path: Path, name: str, archive: bytes) -> None:
    server.files[name] = archive
    proj = make(f"- url: {server.url}/{name}\n")
    assert_clean_error(proj.run("run", "-y", "train"), 2, "refusing to unpack", "escape")
    assert proj.run_dirs() == []
    assert not list(tmp_path.rglob("evil*")) and not Path("/tmp/evil-abs.txt").exists()
    assert not (proj.cache / "unpacked").exists() or not any(  # type: ignore[attr-defined]
        p.name.startswith(("ok", "escape")) for p in (proj.cache / "unpacked").rglob("*"))  # type: ignore[attr-defined]


def test_slow_downloads_show_progress_and_concurrent_runs_share_one(make: Callable[[str], Project],
                                                                    server: Server) -> None:
    server.files["slow.bin"] = b"s" * 60_000
    server.slow.add("slow.bin")
    proj = make(f"- url: {server.url}/slow.bin\n")
    procs = [proj.spawn("run", "-y", "train", "paths=slow.bin",
                        env={"GUILDLITE_RESOURCE_CACHE": str(proj.cache)}) for _ in range(2)]  # type: ignore[attr-defined]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert server.hits["slow.bin"] == 1  # the second waited for the first's download
    assert all("got slow.bin " + "s" * 10 in out for out, _err in outs)
    assert any("downloading" in err and "slow.bin" in err for _out, err in outs)


def test_a_file_url_is_fetched_and_a_fifo_one_refused(make: Callable[[str], Project], tmp_path: Path) -> None:
    import os

    (tmp_path / "local.txt").write_text("LOCAL")
    os.mkfifo(tmp_path / "pipe")
    proj = make(f"- url: file://{tmp_path / 'local.txt'}\n")
    cp = proj.run("run", "-y", "train", "paths=local.txt")
    assert cp.returncode == 0, cp.stderr
    assert "got local.txt LOCAL" in cp.stdout
    (proj.root / "guildfile.yml").write_text((proj.root / "guildfile.yml").read_text().replace("local.txt", "pipe"))
    assert_clean_error(proj.run("run", "-y", "train", timeout=30), 2, "not a regular file")
