"""``--needed``: is there already a run that did what this one would do?

A completed run of the same operation is the same run when it has the same flags, the same source
digest and the same requirement digests. The definitions live here, once:

- the **source digest** names a staged source tree as a whole: the sha256 of its files' paths and
  sha256s (``source_digest`` of the manifest ``source_manifest`` makes; ``SourceSnapshot`` records
  both in ``.guildlite/sourcecode.json`` and the digest in ``attrs.sourcecode.digest``);
- the **requirement digest** names what a run's ``requires`` put into its dir: per entry its kind,
  source and target, and its content: the sha256 (size and mtime where it was too large to hash),
  with the upstream run's id for an operation (a run restarted since has other files under its id).

A new run's digests are taken from its staged dir before it is published (``Session.stage``), the
same way as for the run it is compared with, so both sides are computed by the same code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from ._run import Run
    from ._runconfig import RunConfig


def source_manifest(run_dir: Path, paths: Sequence[Any]) -> list[dict[str, Any]]:
    """``{"path", "size", "sha256"}`` of each staged source file of ``run_dir`` that is there, sorted
    by path; a path that is not inside the run dir (``_runfiles.check_rel``) is left out."""
    from ._runfiles import RunFileError, check_rel

    out = []
    for rel in sorted({p for p in paths if isinstance(p, str) and p != "run.json"}):  # a plugin may edit the list
        try:
            check_rel(rel)
        except RunFileError:
            continue
        try:
            data = (run_dir / rel).read_bytes()
        except FileNotFoundError:  # removed by an earlier plugin
            continue
        out.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return out


def source_digest(manifest: Sequence[Mapping[str, Any]]) -> str:
    """One digest for a staged source tree (``source_manifest``'s entries)."""
    return hashlib.sha256("".join(f"{m['path']}\0{m['sha256']}\n" for m in manifest).encode()).hexdigest()


def requirements_digest(requires: Sequence[Any]) -> str:
    """One digest for what a run's ``requires`` entries (run.json) put into its dir."""
    keys = []
    for e in requires:
        if not isinstance(e, dict):
            continue
        content: Any = e.get("sha256")
        if content is None:
            content = [e.get("size"), e.get("mtime")]
        if e.get("kind") == "operation":  # a run restarted since makes other files under the same id
            content = [e.get("run"), content]
        keys.append([e.get("kind"), e.get("source"), e.get("target"), content])
    return hashlib.sha256(json.dumps(keys, default=str).encode()).hexdigest()


def _same_flags(a: Any, b: Mapping[str, Any]) -> bool:
    return isinstance(a, dict) and _canon(a) == _canon(b)


def _canon(flags: Mapping[str, Any]) -> str:
    return json.dumps(flags, sort_keys=True, default=str)


def find_existing(
    runs_dir: Path, op: str, flags: Mapping[str, Any], source: str, requires: Sequence[Any]
) -> Run | None:
    """The newest completed run (not a batch) of ``op`` in ``runs_dir`` with these ``flags``, this
    source digest (``source``) and requirements (``requires``: run.json entries); None if none.

    What ``--needed`` asks before a run is published; a pipeline asks it for each step."""
    from ._errors import RunNotFoundError
    from ._index import load_summaries
    from ._run import load_run
    from ._selection import RunList

    want = requirements_digest(requires)
    same = load_summaries(RunList(runs_dir), where=lambda rec: rec.get("op") == op and rec.get("status") == "completed"
                          and rec.get("is_batch") is not True and _same_flags(rec.get("flags"), flags))
    for summary, _ in same:
        try:
            run = load_run(summary.run_dir)  # attrs are not in the index's summaries
        except RunNotFoundError:
            continue
        recorded = run.attrs.get("sourcecode")
        digest = recorded.get("digest") if isinstance(recorded, dict) else None
        if digest == source and requirements_digest(run.requires) == want:
            return run
    return None


class AlreadyDone(Exception):
    """Raised by staging under ``--needed`` when a completed run already did what the one being
    staged would do (its hidden staging dir is removed; nothing is published): ``run`` is that run."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"run {run.id} of {run.op} is up to date")
        self.run = run


def check_staged(cfg: RunConfig, run: Run) -> None:
    """With ``--needed`` (``cfg.needed``): AlreadyDone if a completed run is like ``run``, staged
    (source copied, requirements in place) but not published: its digests come from its staged dir."""
    if not cfg.needed:
        return
    digest = source_digest(source_manifest(run.run_dir, run._staged or []))
    found = find_existing(cfg.runs_dir, run.op, run.flags, digest, run.requires)
    if found is not None:
        raise AlreadyDone(found)
