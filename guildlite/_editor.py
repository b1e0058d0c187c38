"""Text written in the user's editor (``$VISUAL``, else ``$EDITOR``, else one found on PATH), for
``note --edit``.

The editor is a command line the user chose, run on a temp file in a private temp dir; what it
leaves there is read as untrusted: only a regular file (opened without following a link, never
blocking on a FIFO), at most ``limit`` bytes of it (not a /dev/zero linked in its place), UTF-8.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile

from ._errors import GuildliteError

_FALLBACKS = ("sensible-editor", "vim", "nano", "vi")


def editor_command() -> list[str]:
    """The editor's command line, split as a shell would; GuildliteError (exit 2) when it cannot be."""
    chosen = (os.environ.get("VISUAL") or "").strip() or (os.environ.get("EDITOR") or "").strip()
    if not chosen:
        if not sys.stdin.isatty():  # an editor found on PATH is interactive: it would wait for keys that never come
            raise GuildliteError("no editor: set $EDITOR (or $VISUAL), or run on a terminal", exit_code=2)
        chosen = next((name for name in _FALLBACKS if shutil.which(name)), "vi")
    try:
        argv = shlex.split(chosen)
    except ValueError as e:  # an unterminated quote
        raise GuildliteError(f"the editor {chosen!r} ($VISUAL or $EDITOR) is not a command line: {e}",
                             exit_code=2) from None
    return argv


def edit_text(start: str, limit: int, what: str) -> str | None:
    """The text saved in the editor, which opens on ``start``; None when it closed without saving.
    GuildliteError when it fails, or leaves something that is not a UTF-8 text file of at most
    ``limit`` bytes (``what`` names the text in messages)."""
    argv = editor_command()
    with tempfile.TemporaryDirectory(prefix="guildlite-edit-") as folder:
        path = os.path.join(folder, f"{what.replace(' ', '-')}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(start if not start or start.endswith("\n") else start + "\n")
        before = os.stat(path).st_mtime_ns - 2_000_000_000  # a save within the filesystem's time resolution still shows
        os.utime(path, ns=(before, before))
        try:
            code = subprocess.call([*argv, path])
        except OSError as e:
            raise GuildliteError(f"the editor {shlex.join(argv)!r} cannot be run ({e.strerror}): no {what} written",
                                 exit_code=1) from None
        if code != 0:
            raise GuildliteError(f"the editor {shlex.join(argv)!r} failed (exit status {code}): no {what} written",
                                 exit_code=1)
        return _saved(path, before, limit, what)


def _saved(path: str, before: int, limit: int, what: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        why = "a link where the file was" if e.errno == errno.ELOOP else f"no file to read ({e.strerror})"
        raise GuildliteError(f"the editor left {why}: no {what} written", exit_code=1) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise GuildliteError(f"the editor left something other than a file: no {what} written", exit_code=1)
        if st.st_mtime_ns == before:
            return None
        data = f.read(limit + 1)
    if len(data) > limit:
        raise GuildliteError(f"the {what} is over {limit} bytes: far too long; no {what} written", exit_code=2)
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise GuildliteError(f"{what} is not UTF-8 text (byte {e.start}): no {what} written", exit_code=2) from None
