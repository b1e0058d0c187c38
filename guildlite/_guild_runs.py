"""Guild AI's run history (``GUILD_HOME/runs/<id>/``) read as untrusted input.

A Guild run dir keeps its metadata under ``.guild/``: one YAML file per attribute in ``attrs/``
(``flags``, ``started``/``stopped``/``initialized`` as integer microseconds since the epoch,
``exit_status``, ``label``, ``tags``, ``cmd``, ``host``, ``user``, ``id``; newer Guild versions may
keep them in one ``attrs.json`` of name -> YAML text instead), the op it ran in ``opref``
(``pkg_type:pkg_name pkg_version model_name op_name``, items quoted), the job's output in
``output``, marker files (``LOCK`` holding the pid while it runs, ``LOCK.remote``, ``PENDING``,
``STAGED``) and the source snapshot in ``sourcecode/``. Behaviour as Guild's documentation and
``guild/run.py`` describe it; nothing of Guild is imported.

Every read goes through ``_runfiles`` (no symlink leading out of the run, no FIFO, bounded), YAML
is read with the safe loader and turned into plain JSON values under a size budget (an alias bomb
costs its budget, not the memory), and every string that reaches the record is printable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._process import pid_alive, process_start
from ._runfiles import RunFileError, read_bytes
from ._terminal import printable

MAX_ATTR_BYTES = 1 << 20  # Guild's attrs are a few KB; ``cmd`` and ``env`` the largest
MAX_VALUES = 20_000  # JSON values kept from one attr
MAX_TEXT = 4096  # a label, a tag, an op name, a flag's name
MAX_TAGS = 200
GUILD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", re.ASCII)  # uuid4().hex in Guild


class NotImportable(Exception):
    """A Guild run that is not imported, and why (still running, never started, unreadable)."""


@dataclass(frozen=True)
class GuildRun:
    """What a Guild run recorded, checked and made plain; ``notes`` says what was dropped."""

    id: str
    path: Path
    op: str
    opspec: str
    flags: dict[str, Any]
    status: str  # completed, error or terminated
    exit_status: int | None
    created: str
    started: str | None
    stopped: str | None
    label: str
    tags: tuple[str, ...]
    cmd: tuple[str, ...]
    host: str
    user: str
    undecided: str  # why the status could not be told from what Guild recorded ("" when it could)
    notes: tuple[str, ...]


def guild_runs_dir(home: Path) -> Path:
    """``GUILD_HOME/runs``; a GuildliteError-free check is left to the caller (it may be missing)."""
    return Path(home) / "runs"


def run_dirs(runs_dir: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The run dirs of a Guild runs dir, oldest name first, and (name, why) for entries that are
    not runs (a symlink is never followed: it would lead outside GUILD_HOME)."""
    found, refused = [], []
    with os.scandir(runs_dir) as it:
        for entry in it:
            name = printable(entry.name)
            if entry.is_symlink():
                refused.append((name, "a symbolic link, not a run dir: not followed"))
            elif not entry.is_dir(follow_symlinks=False):
                refused.append((name, "not a directory"))
            elif not GUILD_ID.fullmatch(entry.name):
                refused.append((name, "not a Guild run id"))
            else:
                found.append(Path(entry.path))
    return sorted(found, key=lambda p: p.name), refused


class _Budget:
    def __init__(self, n: int) -> None:
        self.left = n


def plain(value: Any, budget: _Budget, depth: int = 0) -> Any:
    """``value`` (from YAML's safe loader) as JSON values: dates and other scalars as strings,
    mapping keys as strings, NaN/inf as null, strings printable; ValueError past the budget or
    32 levels (a shared alias counts every time it is reached)."""
    budget.left -= 1
    if budget.left < 0 or depth > 32:
        raise ValueError("too large or too deeply nested")
    if value is None or type(value) in (bool, int):
        return value if type(value) is not int or -(1 << 63) <= value < 1 << 63 else str(value)
    if type(value) is float:
        return value if value == value and abs(value) != float("inf") else None
    if type(value) is str:
        budget.left -= len(value) // 64
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k))[:MAX_TEXT]: plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v, budget, depth + 1) for v in value]
    if isinstance(value, bytes):
        return printable(value.decode("utf-8", "replace"))
    return printable(str(value))


def _load_yaml(text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader: no Python objects are built


class _Attrs:
    """The attrs of one Guild run: per-attr files first, then ``attrs.json`` (as Guild reads them)."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.notes: list[str] = []
        self._blob: dict[str, Any] | None = None

    def _text(self, name: str) -> str | None:
        try:
            raw, size = read_bytes(self.dir, f".guild/attrs/{name}", MAX_ATTR_BYTES + 1, "Guild run")
        except RunFileError as e:
            if not e.missing:
                self.notes.append(f"attr {name}: {e.reason}")
            return self._blob_text(name)
        if len(raw) > MAX_ATTR_BYTES or size > MAX_ATTR_BYTES:
            self.notes.append(f"attr {name}: larger than {MAX_ATTR_BYTES >> 10} KB, left out")
            return None
        return raw.decode("utf-8", "replace")

    def _blob_text(self, name: str) -> str | None:
        if self._blob is None:
            self._blob = {}
            try:
                raw, size = read_bytes(self.dir, ".guild/attrs.json", 16 * MAX_ATTR_BYTES + 1, "Guild run")
                blob = json.loads(raw) if size <= 16 * MAX_ATTR_BYTES else None
                self._blob = blob if isinstance(blob, dict) else {}
            except RunFileError:
                pass
            except ValueError:
                self.notes.append("attrs.json: not JSON, left out")
        text = self._blob.get(name)
        return text if isinstance(text, str) and len(text) <= MAX_ATTR_BYTES else None

    def get(self, name: str, budget: int = MAX_VALUES) -> Any:
        text = self._text(name)
        if text is None:
            return None
        try:
            return plain(_load_yaml(text), _Budget(budget))
        except ValueError as e:  # over the budget
            self.notes.append(f"attr {name}: {e}, left out")
        except Exception as e:  # noqa: BLE001 - any YAML error: the attr is dropped, the run is not
            self.notes.append(f"attr {name}: not YAML ({type(e).__name__}), left out")
        return None


def _time(us: Any) -> str | None:
    """Guild's timestamp (integer microseconds since the epoch) as an ISO time in UTC."""
    if type(us) is not int:
        return None
    try:
        t = datetime.fromtimestamp(us / 1e6, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return t.isoformat(timespec="milliseconds") if 1900 < t.year < 9000 else None


def _text(v: Any, limit: int = MAX_TEXT) -> str:
    return printable(v)[:limit] if isinstance(v, str) else ""


def op_name(run_dir: Path, notes: list[str]) -> tuple[str, str]:
    """(op name as guildlite shows it, Guild's ``model:op`` spec) from ``.guild/opref``."""
    try:
        raw, _ = read_bytes(run_dir, ".guild/opref", 8192, "Guild run")
        parts = shlex.split(raw.decode("utf-8", "replace").splitlines()[0] if raw.strip() else "")
    except (RunFileError, ValueError, IndexError) as e:
        notes.append(f"opref: {getattr(e, 'reason', e)}")
        parts = []
    if len(parts) < 4:
        return "guild", "guild"
    model, op = _text(parts[-2], 200), _text(parts[-1], 200)
    if not op:
        return "guild", "guild"
    return op, f"{model}:{op}" if model else op


def source_paths(run_dir: Path) -> set[str]:
    """The source files Guild copied into the run (``.guild/manifest`` lines ``s PATH HASH SRC``,
    Guild 0.9: the snapshot is at the run dir's top); empty when there is no manifest."""
    try:
        raw, _ = read_bytes(run_dir, ".guild/manifest", 16 << 20, "Guild run")
    except RunFileError:
        return set()
    out = set()
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            parts = shlex.split(line)
        except ValueError:
            continue
        if len(parts) >= 2 and parts[0] == "s":
            out.add(parts[1])
    return out


def _marker(run_dir: Path, name: str) -> bool:
    return os.path.lexists(run_dir / ".guild" / name)


def _lock_pid(run_dir: Path) -> int | None:
    try:
        raw, _ = read_bytes(run_dir, ".guild/LOCK", 32, "Guild run")
        pid = int(raw.strip() or b"0")
    except (RunFileError, ValueError):
        return None
    return pid if 0 < pid < 1 << 31 else None


def _started_after(pid: int, when_us: Any) -> bool:
    """Whether process ``pid`` started well after the Guild run did: a later process that reused
    the pid, not the run's (Linux /proc; False where it cannot tell)."""
    start = process_start(pid)
    if start is None or type(when_us) is not int:
        return False
    try:
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return False
    return boot + start / os.sysconf("SC_CLK_TCK") > when_us / 1e6 + 10


def _status(run_dir: Path, exit_status: Any, host: str, started_us: Any) -> tuple[str, str]:
    """(status, why it is a guess) as Guild would tell it; NotImportable for a run not over."""
    if _marker(run_dir, "LOCK.remote"):
        raise NotImportable("running on a Guild remote (LOCK.remote)")
    if type(exit_status) is int:
        return ("completed" if exit_status == 0 else "terminated" if exit_status < 0 else "error"), ""
    if _marker(run_dir, "PENDING"):
        raise NotImportable("pending in Guild: not started")
    if _marker(run_dir, "STAGED"):
        raise NotImportable("staged in Guild: never started")
    pid = _lock_pid(run_dir)
    if pid is not None:
        here = not host or host == socket.gethostname()
        if here and pid_alive(pid, None) and not _started_after(pid, started_us):
            raise NotImportable(f"still running (pid {pid}): import it when it is over")
        if not here:
            raise NotImportable(f"may still be running on {host} (pid {pid}); import it there or when it is over")
    why = "Guild recorded no exit status (its process ended without one: killed, or the machine went down)"
    if exit_status is not None:
        why = f"Guild's exit status is not an integer ({str(exit_status)[:40]!r})"
    return "error", why  # what `guild runs` shows for such a run


def read_run(run_dir: Path) -> GuildRun:
    """The Guild run in ``run_dir``; NotImportable if it is not one or not over."""
    if not os.path.isdir(run_dir / ".guild") or os.path.islink(run_dir / ".guild"):
        raise NotImportable("no .guild directory: not a Guild run")
    attrs = _Attrs(run_dir)
    notes = attrs.notes
    op, opspec = op_name(run_dir, notes)
    flags = attrs.get("flags")
    if flags is not None and not isinstance(flags, dict):
        notes.append("attr flags: not a mapping, left out")
    exit_status = attrs.get("exit_status")
    if type(exit_status) is int and not -(1 << 31) <= exit_status < 1 << 31:
        exit_status = str(exit_status)
    host = _text(attrs.get("host"), 255)
    status, undecided = _status(run_dir, exit_status, host, attrs.get("started") or attrs.get("initialized"))
    gid = attrs.get("id")
    if gid is not None and gid != run_dir.name:
        notes.append(f"attr id {str(gid)[:40]!r} differs from the run dir's name: the name is the id")
    started, initialized = _time(attrs.get("started")), _time(attrs.get("initialized"))
    tags = attrs.get("tags")
    cmd = attrs.get("cmd")
    return GuildRun(
        id=run_dir.name,
        path=run_dir,
        op=op,
        opspec=opspec,
        flags={k: v for k, v in flags.items()} if isinstance(flags, dict) else {},
        status=status,
        exit_status=exit_status if type(exit_status) is int else None,
        created=initialized or started or "",
        started=started,
        stopped=_time(attrs.get("stopped")),
        label=_text(attrs.get("label")),
        tags=tuple(t[:MAX_TEXT] for t in tags[:MAX_TAGS] if isinstance(t, str)) if isinstance(tags, list) else (),
        cmd=tuple(str(c) for c in cmd if c is not None) if isinstance(cmd, list) else (),
        host=host,
        user=_text(attrs.get("user"), 255),
        undecided=undecided,
        notes=tuple(notes),
    )
