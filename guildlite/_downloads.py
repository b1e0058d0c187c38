"""URL resources: downloaded once into a cache shared by every run and project.

The cache is ``$GUILDLITE_RESOURCE_CACHE`` (default ``~/.cache/guildlite/resources``); a URL's
file is ``url/<key>/<name>``, ``key`` a digest of the URL. A download goes to a temp file beside
it and is renamed into place only once complete (its length as the server announced) and
verified (its ``sha256`` when one is given): an interrupted or wrong download is never used, and
the next run starts it again. One lock file per URL (``flock``) makes concurrent runs take turns:
the second finds the file the first one completed. Archives are unpacked (``_unpack``) into the
cache too, once per archive digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Iterator

from ._digests import cached_sha256
from ._files import atomic_write, cache_dir, now_iso
from ._resource_files import RequirementError

_CHUNK = 1 << 16
PROGRESS_AFTER = 1.0  # seconds: a quicker download prints nothing
_FREE_CHECK = 64 << 20  # bytes written between two looks at the free space


def cache_root() -> Path:
    env = os.environ.get("GUILDLITE_RESOURCE_CACHE")
    return Path(env).expanduser() if env else cache_dir("resources")


def _name_of(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return safe[:120] or "download"


def fetch(url: str, sha256: str | None, where: str) -> Path:
    """The cached file of ``url``, downloaded now if needed; checked against ``sha256``."""
    _check_local(url, where)
    key = hashlib.sha256(url.encode()).hexdigest()[:32]
    folder = cache_root() / "url" / key
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / _name_of(url)
    with _locked(folder.with_suffix(".lock"), url):
        if final.is_file():
            if sha256 is None or cached_sha256(final) == sha256:
                return final
            final.unlink()  # a different file than the guildfile now asks for: fetched again
        tmp = folder / f".part-{os.getpid()}-{os.urandom(3).hex()}"
        try:
            got = _download(url, tmp, where)
            if sha256 is not None and got != sha256:
                raise RequirementError(f"{where}: url: {url}: sha256 mismatch: expected {sha256}, got {got}"
                                       " (the file changed, or the guildfile's sha256 is wrong); nothing was staged")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write(folder / "meta.json", json.dumps({"url": url, "sha256": got, "file": final.name,
                                                       "downloaded": now_iso()}))
        return final


def _check_local(url: str, where: str) -> None:
    """A ``file://`` URL must name a regular file: opening a FIFO would wait forever, reading a
    device would never end."""
    import stat
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return
    try:
        mode = os.stat(url2pathname(parts.path)).st_mode
    except OSError as e:
        raise RequirementError(f"{where}: url: {url}: {e.strerror or e}", exit_code=2) from None
    if not stat.S_ISREG(mode):
        raise RequirementError(f"{where}: url: {url} is not a regular file", exit_code=2)


class _locked:
    """``flock`` on ``path`` for the duration; says so if another process holds it."""

    def __init__(self, path: Path, url: str) -> None:
        self.path, self.url, self.fd = path, url, -1

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"guildlite: waiting for another guildlite downloading {self.url}", file=sys.stderr, flush=True)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the lock


def _download(url: str, tmp: Path, where: str) -> str:
    """Write ``url``'s body to ``tmp`` (fsynced); its sha256. An incomplete body is an error."""
    import urllib.error
    import urllib.request

    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - the guildfile's URL
            total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            expected = int(total) if total and total.isdigit() else None
            check_room(tmp.parent, expected or 0, f"{where}: url: {url}: its {_mb(expected or 0)}")
            done, look_at = 0, _FREE_CHECK
            with open(tmp, "xb") as out:
                for chunk in _progress(_chunks(resp), url, expected):
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if done >= look_at:  # a body with no length announced, or others filling the disk
                        check_room(tmp.parent, max((expected or 0) - done, 0),
                                   f"{where}: url: {url}: after {_mb(done)}, the rest of it")
                        look_at = done + _FREE_CHECK
                out.flush()
                os.fsync(out.fileno())
    except RequirementError:
        raise
    except urllib.error.HTTPError as e:
        reason = " ".join(str(e.reason).split())  # urllib's redirect-loop reason spans three lines
        raise RequirementError(f"{where}: url: {url}: HTTP {e.code} {reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = getattr(e, "reason", None) or e
        raise RequirementError(f"{where}: url: {url}: download failed: {why}; nothing was staged (run again to"
                               " retry)") from None
    except Exception as e:  # http.client.IncompleteRead and its kin: the server closed mid-body
        raise RequirementError(f"{where}: url: {url}: download interrupted ({type(e).__name__}); nothing was"
                               " staged (run again to retry)") from None
    if expected is not None and done != expected:
        raise RequirementError(f"{where}: url: {url}: download interrupted: got {done} of {expected} bytes;"
                               " nothing was staged (run again to retry)")
    return h.hexdigest()


def check_room(folder: Path, need: int, what: str) -> None:
    """RequirementError (exit 2) naming ``what`` unless ``need`` more bytes fit into ``folder``
    with ``_disk.DISK_MARGIN`` left free."""
    from ._disk import check_room as fits

    fits(folder, need, what, "nothing was staged (free some space, or set GUILDLITE_RESOURCE_CACHE to a bigger disk)",
         RequirementError)


def _chunks(resp: IO[bytes]) -> Iterator[bytes]:
    while chunk := resp.read(_CHUNK):
        yield chunk


def _progress(chunks: Iterator[bytes], url: str, total: int | None) -> Iterator[bytes]:
    """Pass ``chunks`` through, printing progress on stderr once a download takes over a second."""
    start = last = time.monotonic()
    done = 0
    shown = False
    tty = sys.stderr.isatty()
    cr = "\r" if tty else ""  # a terminal's line is rewritten in place; a log gets a line now and then
    for chunk in chunks:
        done += len(chunk)
        now = time.monotonic()
        if now - start >= PROGRESS_AFTER and (now - last >= (0.2 if tty else 2.0) or not shown):
            of = f" of {_mb(total)} ({100 * done // total}%)" if total else ""
            print(f"{cr}guildlite: downloading {url}: {_mb(done)}{of}",
                  end="" if tty else "\n", file=sys.stderr, flush=True)
            last, shown = now, True
        yield chunk
    if shown:
        print(f"{cr}guildlite: downloaded {url}: {_mb(done)} in {time.monotonic() - start:.1f} s",
              file=sys.stderr, flush=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
