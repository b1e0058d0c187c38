"""Staging a run: its hidden dir, the project's source copied in, the job's command line, then
the rename into place; nothing half-staged is ever left behind or listed."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ._disk import full_message, is_full
from ._errors import GuildliteError
from ._files import META_DIR, new_run_id, now_iso, write_json
from ._launch import job_command, write_flags_config
from ._lock import lock_mode
from ._requires import remove_staged
from ._run import Run
from ._sourcecode import Skipped, copy_files, select_files
from ._store import STAGING_PREFIX
from ._store import publish as publish_dir

if TYPE_CHECKING:
    from ._runconfig import RunConfig


def new_run(cfg: RunConfig, flags: dict[str, Any], **kw: Any) -> Run:
    """A Run in a new hidden ``.staging-<id>`` dir of the runs dir (published by ``publish``)."""
    cfg.runs_dir.mkdir(parents=True, exist_ok=True)
    lock_mode(cfg.runs_dir)  # a bad GUILDLITE_LOCK_MODE fails here, before anything is staged
    while True:
        run_id = new_run_id()
        hidden = cfg.runs_dir / f"{STAGING_PREFIX}{run_id}"
        if (cfg.runs_dir / run_id).exists():
            continue
        try:
            hidden.mkdir()
            break
        except FileExistsError:
            continue
    return Run(
        id=run_id,
        run_dir=hidden,
        op=cfg.op.name,
        opspec=cfg.opspec,
        flags=flags,
        created=now_iso(),
        label=cfg.label,
        nproc_per_node=cfg.nproc,
        op_def=dict(cfg.op.data),
        **kw,
    )


def publish(run: Run, runs_dir: Path) -> None:
    """Put a staged run in place (the store's ``publish``): it appears in the runs dir whole."""
    run.run_dir = publish_dir(run.run_dir, runs_dir)


@contextlib.contextmanager
def staging(run: Run, runs_dir: Path) -> Iterator[None]:
    """Staging ``run`` (its hidden dir up to the rename into place): whatever fails, nothing
    half-staged stays behind, and a full disk is named as the runs dir's filesystem's state,
    not as the fault of the file being written when it filled."""
    staging = run.run_dir
    try:
        yield
    except OSError as e:
        if not is_full(e):
            shutil.rmtree(staging, ignore_errors=True)
            raise
        msg = full_message(e, f"cannot stage a run in {runs_dir}", runs_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise GuildliteError(msg) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def stage_source(cfg: RunConfig, run: Run, log_dir: Path) -> None:
    """Copy the project's source into the run dir as it is now (what was skipped goes to the
    manifest), with the flags config file and the job's command line. Over an earlier staging
    (a restart), source files gone from the project are removed; files the job wrote
    (checkpoints) stay."""
    project = cfg.guildfile.dir
    remove_staged(run.run_dir)  # a restart: what requirements put there earlier, before anything is written
    chosen = select_files(project, cfg.op.sourcecode, skip=(cfg.runs_dir,))
    files, skipped = chosen.files, chosen.skipped
    script = cfg.op.script
    if script and script not in files:  # the script always travels, whatever the globs say
        files = [*files, script]
        skipped = [s for s in skipped if s.path != script]
    required = {f for f in files if cfg.requires.covers(f)}  # a requirement wins its place (``_requires``)
    if required:
        files = [f for f in files if f not in required]
        skipped = sorted([*skipped, *(Skipped(f, "required") for f in required)], key=lambda s: s.path)
    earlier = _staged_source(run)
    if earlier:  # a restart: replace what was staged (a read-only copy included), never write
        _clear_way(run.run_dir, [*earlier, *files])  # through what the job left there
        for rel in earlier:
            if (run.run_dir / rel).is_file():
                (run.run_dir / rel).unlink()
    late = copy_files(project, files, run.run_dir)
    if late:
        gone = {s.path for s in late}
        files = [f for f in files if f not in gone]
        skipped = sorted([*skipped, *late], key=lambda s: s.path)
    run.cmd = job_command(cfg.op, run.flags, cfg.nproc, log_dir=log_dir)
    run.attrs["sourcecode"] = {"root": str(project), "files": len(files), "skipped": len(skipped)}
    run.op_def = dict(cfg.op.data)  # a restart runs the op as the guildfile now declares it
    run.paths.meta.mkdir(exist_ok=True)
    written = write_flags_config(cfg.op, run.flags, run.run_dir, project)
    cfg.requires.stage(run)  # after every file guildlite writes: a place taken is an error, never a write through a link
    run._staged = sorted({*files, *([written.relative_to(run.run_dir).as_posix()] if written else [])})
    # SourceSnapshot (on_run_staged) adds sizes and hashes, unless an earlier plugin vetoed.
    write_json(run.paths.manifest, {"root": str(project), "files": [{"path": f} for f in run._staged],
                                    "skipped": [s.to_json() for s in skipped]})


def _clear_way(run_dir: Path, files: Sequence[str]) -> None:
    """Remove links (and plain files) standing where ``files`` or their folders go in ``run_dir``:
    a job may have left a link to somewhere outside in place of a source folder."""
    seen: set[Path] = set()
    for rel in files:
        node = run_dir
        for part in Path(rel).parts:
            node = node / part
            if node in seen:
                continue
            seen.add(node)
            if node.is_symlink() or (node != run_dir / rel and node.exists() and not node.is_dir()):
                node.unlink()


def _staged_source(run: Run) -> list[str]:
    """The source files an earlier staging copied (from its manifest), as safe relative paths."""
    try:
        files = json.loads(run.paths.manifest.read_text()).get("files") or []
    except (OSError, ValueError, AttributeError):
        return []
    out = []
    for f in files:
        rel = f.get("path") if isinstance(f, dict) else None
        if not isinstance(rel, str) or not rel or "\0" in rel:
            continue
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or parts[0] in (META_DIR, "run.json", "output.log"):
            continue
        out.append(rel)
    return out
