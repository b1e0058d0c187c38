"""The run store: every operation on a run's record (``run.json``) goes through here.

Create a record in a staging dir (``create_record``) and publish the dir into the runs dir
(``publish``); read a record, validated (``read_record``: see ``_record``); change it under the
run's lock with a fresh read (``update_record``); claim a run's end, so ``on_run_end`` fires once
(``claim_end``). No other module opens run.json: not a command, not a backend.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Callable

from ._errors import BadRecordError, GuildliteError, RunNotFoundError
from ._files import RunPaths, atomic_write, make_meta_dir
from ._lock import file_lock
from ._record import MAX_BYTES, Problem, is_run_id, parse

STAGING_PREFIX = ".staging-"  # a run dir being staged: hidden, never listed, published by a rename

# Who writes which field of run.json. Writers run in different processes at any time (the run's
# owner, `guildlite label` / `tag`, a backend's node), so every change is a read-modify-write under the
# run's lock (``update_record``) that changes only the writer's own fields:
# - INSPECT_FIELDS belong to the inspect commands, which never write anything else;
# - every other field belongs to the process that owns the run (the guildlite that staged and
#   launches it, or restarts it; for a job on other machines, its node's supervisor for status, exit_code, stopped,
#   started, attempts, host, remote, error): status, exit_code, started, stopped, pid, pid_start,
#   job_pid, attempts, error, cmd, gpus, remote, flags, trials, batch, plugins...;
# - ``attrs`` is the plugins', merged per plugin key (``merge_attrs``).
INSPECT_FIELDS = ("label", "tags", "notes")


# --- creating and publishing ---------------------------------------------------------------------------


def create_record(run_dir: Path, rec: dict[str, Any]) -> None:
    """Write the first record of a new run dir; a dir that already has one is refused."""
    paths = RunPaths(Path(run_dir))
    make_meta_dir(paths)
    with file_lock(paths.lock):
        if os.path.lexists(paths.run_json):
            raise GuildliteError(f"{run_dir}: already has a run.json")
        _write(paths, rec)


def publish(staging_dir: Path, runs_dir: Path) -> Path:
    """Rename a staged run dir (``<runs_dir>/.staging-<id>``, holding its record) into place as
    ``<runs_dir>/<id>``, and return that path: a run dir appears in the runs dir whole, with a
    record that reads back (a listing never sees a run half staged).

    GuildliteError if ``staging_dir`` is not a staging dir of ``runs_dir`` or ``<id>`` is taken;
    BadRecordError if its record does not read back.
    """
    staging_dir, runs_dir = Path(staging_dir), Path(runs_dir)
    run_id = staging_dir.name.removeprefix(STAGING_PREFIX)
    if run_id == staging_dir.name or not is_run_id(run_id):
        raise GuildliteError(f"{staging_dir}: not a staging dir ({STAGING_PREFIX}<run id>)")
    if staging_dir.is_symlink() or not os.path.samefile(staging_dir.parent, runs_dir):
        raise GuildliteError(f"{staging_dir}: not a staging dir in {runs_dir}")
    _record_of(staging_dir)
    final = runs_dir / run_id
    # rename(2) would put a dir over an empty dir of that name: a run id is never taken twice.
    if os.path.lexists(final):
        raise GuildliteError(f"{final}: a run with that id already exists")
    os.rename(staging_dir, final)
    return final


# --- reading -------------------------------------------------------------------------------------------


def read_record(run_dir: Path, listed: bool = False) -> dict[str, Any]:
    """The validated record of ``run_dir`` (see ``_record``), as written (no liveness derivation).

    RunNotFoundError if the dir is gone; BadRecordError if it is there but its record cannot be
    trusted: run.json missing, not a regular file (a link, a FIFO), unreadable or of the wrong
    shape, the dir a link, or the dir's name not a run id. ``listed``: a RunList found ``run_dir``
    to be a directory, not a link (one lstat less per run when listing).
    """
    if not listed and os.path.islink(run_dir):  # a run dir is a directory here: a link would lead elsewhere
        raise BadRecordError(run_dir, "a symbolic link, not a run directory")
    rec = _record_of(run_dir)
    if not is_run_id(os.path.basename(run_dir)):
        raise BadRecordError(run_dir, _not_an_id(Path(run_dir), rec))
    return rec


def _record_of(run_dir: Path) -> dict[str, Any]:
    """The validated record in ``run_dir``, whatever the dir's name; the one reader of run.json."""
    path = os.path.join(run_dir, "run.json")
    try:
        # No link followed, no FIFO waited on: a run dir from elsewhere names no file outside it.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.path.isdir(run_dir):
            raise RunNotFoundError(f"{run_dir}: no readable run.json (the run is gone)") from None
        raise BadRecordError(run_dir, "no readable run.json (none there)") from None
    except OSError as e:
        why = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise BadRecordError(run_dir, f"no readable run.json ({why})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadRecordError(run_dir, "no readable run.json (not a regular file)")
        return parse(_read(fd, st.st_size))
    except Problem as e:
        raise BadRecordError(run_dir, str(e)) from None
    except OSError as e:
        raise BadRecordError(run_dir, f"no readable run.json ({e.strerror})") from None
    finally:
        os.close(fd)


def _read(fd: int, size: int) -> bytes:
    """The file's bytes, at most MAX_BYTES + 1 of them (parse() refuses more)."""
    if size > MAX_BYTES:
        raise Problem(f"run.json is larger than {MAX_BYTES >> 20} MB")
    chunks, total, want = [], 0, size + 1
    while total <= MAX_BYTES:
        chunk = os.read(fd, want)
        chunks.append(chunk)
        total += len(chunk)
        if len(chunk) < want:  # the end of a regular file
            break
        want = 1 << 20  # it grew since fstat
    return b"".join(chunks)


def _not_an_id(run_dir: Path, rec: dict[str, Any] | None) -> str:
    """What is wrong with a run dir renamed by hand, and the id to rename it back to."""
    was = rec.get("id") if rec else None
    if isinstance(was, str) and is_run_id(was) and not (run_dir.parent / was).exists():
        from shlex import quote

        return f"the directory name is not a run id: rename it back to {was} (mv {quote(str(run_dir))} {quote(str(run_dir.parent / was))})"
    return "the directory name is not a run id: rename it to one (e.g. the id in its run.json) or move it out"


def stray_error(d: Path) -> BadRecordError | None:
    """Why ``d``, an entry of a runs dir named by no run id or a link named like a run (a *stray*),
    is not a run; None if it holds no run.json (just some dir)."""
    if os.path.islink(d):
        return BadRecordError(d, "a symbolic link named like a run: a run dir must be a directory")
    if not os.path.lexists(d / "run.json"):
        return None
    try:
        rec: dict[str, Any] | None = _record_of(d)
    except RunNotFoundError:
        rec = None
    return BadRecordError(d, _not_an_id(d, rec))


_warned: set[str] = set()


def warn_bad(e: BadRecordError) -> None:
    """Say once per process, on stderr (the ``guildlite`` logger), that a bad record was skipped."""
    msg = str(e)
    if msg in _warned:
        return
    _warned.add(msg)
    import logging

    logging.getLogger("guildlite").warning("guildlite: warning: skipped %s", msg)


# --- changing ------------------------------------------------------------------------------------------


def update_record(run_dir: Path, change: Callable[[dict[str, Any]], Any], *, missing_ok: bool = False) -> dict[str, Any]:
    """Change a run's record: under the run's lock, read ``run.json`` afresh (validated, as
    ``read_record`` does), let ``change`` edit the dict in place, write it atomically; returns the
    record written.

    The only way anything changes an existing record. RunNotFoundError if the run dir is gone;
    BadRecordError if its record is missing or cannot be trusted (nothing is written), unless
    ``missing_ok``: the run's owner, which holds the whole record, gets ``{}`` and writes it whole.
    """
    paths = RunPaths(Path(run_dir))
    if not paths.dir.is_dir():
        raise RunNotFoundError(f"{run_dir}: no such run dir (deleted or moved?)")
    make_meta_dir(paths)
    with file_lock(paths.lock):
        try:
            rec = _record_of(paths.dir)
        except BadRecordError:
            if not missing_ok:
                raise
            rec = {}
        change(rec)
        _write(paths, rec)
    return rec


def _write(paths: RunPaths, rec: dict[str, Any]) -> None:
    """Write ``rec`` as the run's record, atomically; BadRecordError (nothing written) if it would
    not read back (``_record.parse``): the store never writes a record its readers refuse."""
    text = json.dumps(rec, indent=2, default=str) + "\n"
    try:
        parse(text.encode())
    except Problem as e:
        raise BadRecordError(paths.dir, f"not written, it would not read back: {e}") from None
    atomic_write(paths.run_json, text)


def owner_save(run_dir: Path, mine: dict[str, Any], base_attrs: dict[str, Any],
               only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Write the record ``mine`` as the run's owner (see ``update_record``, ``missing_ok``):
    every field but INSPECT_FIELDS (kept from disk where there), ``attrs`` merged per plugin key
    against ``base_attrs`` (``merge_attrs``); returns the record written. ``only``: just those
    fields (and ``attrs``), unless the record on disk is missing or unreadable (then all)."""

    def change(rec: dict[str, Any]) -> None:
        attrs = merge_attrs(rec.get("attrs"), mine["attrs"], base_attrs)
        fields = mine if only is None or not rec else {k: mine[k] for k in only}
        rec.update({k: v for k, v in fields.items() if k not in INSPECT_FIELDS or k not in rec})
        rec["attrs"] = attrs

    return update_record(run_dir, change, missing_ok=True)


def snapshot_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``attrs`` as written to run.json, to tell later which keys a plugin changed."""
    return dict(json.loads(json.dumps(attrs, default=str)))


def merge_attrs(disk: Any, mine: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` on disk with the plugin keys that ``mine`` changed since ``base`` (its value when
    last read or written): a key set or changed is written, a key removed is removed, and every
    other key keeps its value on disk (another process's plugin may have written it)."""
    out = dict(disk) if isinstance(disk, dict) else {}
    for k in set(mine) | set(base):
        if k in mine and (k not in base or mine[k] != base[k]):
            out[k] = mine[k]
        elif k not in mine:
            out.pop(k, None)
    return out


# --- the end -------------------------------------------------------------------------------------------


def claim_end(run_dir: Path) -> bool:
    """Exactly one ``on_run_end`` per run where two processes may fire it (the submitter and a
    supervisor): True for the first caller, False for every later one, on any host sharing the
    runs dir (an ``O_EXCL`` create). RunNotFoundError if the run dir or its ``.guildlite`` is a
    symlink (nothing is created outside the runs dir)."""
    paths = RunPaths(Path(run_dir))
    make_meta_dir(paths)
    try:
        os.close(os.open(paths.end_claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
        return True
    except FileExistsError:
        return False


def end_claimed(run_dir: Path) -> bool:
    """Whether the run's end has been claimed (``claim_end``) since it last started."""
    return os.path.lexists(RunPaths(Path(run_dir)).end_claim)


def reset_end(run_dir: Path) -> None:
    """Make the run's end claimable again: it starts over (a restart, a job resubmitted by hand)."""
    paths = RunPaths(Path(run_dir))
    make_meta_dir(paths)  # refuses a symlinked dir: nothing outside the runs dir is removed
    paths.end_claim.unlink(missing_ok=True)
