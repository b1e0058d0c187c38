"""Where runs live: the runs dir from the guildfile's ``runs-dir``, ``--runs-dir`` or
``GUILDLITE_RUNS_DIR``, one rule for all of them (a system dir or a home dir itself is refused).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import GuildliteError

if TYPE_CHECKING:
    from ._guildfile import Guildfile

# Never a runs dir: guildlite creates, moves and deletes run dirs in it, and lists every entry as a
# run. The filesystem root, the FHS top-level dirs and the standard ones in /usr, /usr/local and
# /var, and a home directory itself; a dir below any of them (~/runs, /var/tmp/runs) is fine.
SYSTEM_DIRS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
    *(f"{base}/{d}" for base in ("/usr", "/usr/local")
      for d in ("bin", "etc", "games", "include", "lib", "lib32", "lib64", "libexec", "local", "sbin", "share", "src")),
    *(f"/var/{d}" for d in ("backups", "cache", "crash", "lib", "local", "lock", "log", "mail", "opt", "run", "spool",
                            "tmp")),
)


def runs_dir_path(raw: str | os.PathLike[str], base: Path, source: str) -> Path:
    """The runs dir named by ``raw`` (from ``source``: the guildfile's ``runs-dir``, ``--runs-dir``,
    ``GUILDLITE_RUNS_DIR``), resolved: a leading ``~`` is the home dir, a relative path is under
    ``base``. One rule for every source: a system dir is refused (GuildliteError, exit 2)."""
    text = os.fspath(raw)
    if "\0" in text:
        raise GuildliteError(f"{source} {text!r}: not a valid path (a NUL character)", exit_code=2)
    try:
        path = (base / os.path.expanduser(text)).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise GuildliteError(f"{source} {text!r} cannot be resolved: {e}", exit_code=2) from None
    what = _system_dir(path)
    if what:
        raise GuildliteError(f"{source} {text!r} is {path}, {what}: guildlite creates, moves and deletes run dirs"
                             " in its runs dir; name a dir of its own (e.g. runs)", exit_code=2)
    return path


def option_runs_dir(raw: str | os.PathLike[str]) -> Path:
    """The runs dir given as ``--runs-dir`` (or through its env var, ``GUILDLITE_RUNS_DIR``), checked
    by ``runs_dir_path`` relative to the current dir."""
    env = os.environ.get("GUILDLITE_RUNS_DIR")
    source = "GUILDLITE_RUNS_DIR" if env and Path(env) == Path(raw) else "--runs-dir"
    return runs_dir_path(raw, Path.cwd(), source)


def _system_dir(path: Path) -> str | None:
    """What the resolved ``path`` is when it may not be a runs dir (see SYSTEM_DIRS), else None."""
    if path == Path("/"):
        return "the filesystem root"
    if str(path) in SYSTEM_DIRS:
        return "a system directory"
    homes = {Path(os.path.expanduser("~")), Path(os.environ.get("HOME") or "/")}
    if any(path in (h, h.resolve()) for h in homes if h.is_absolute()):
        return "a home directory itself"
    return None


def default_runs_dir(gf: Guildfile | None) -> Path:
    """``GUILDLITE_RUNS_DIR``, else the guildfile's ``runs-dir``, else ``runs`` beside it (or cwd)."""
    env = os.environ.get("GUILDLITE_RUNS_DIR")
    if env:
        return runs_dir_path(env, Path.cwd(), "GUILDLITE_RUNS_DIR")
    if gf is not None:
        return gf.runs_dir or gf.dir / "runs"
    return Path.cwd() / "runs"
