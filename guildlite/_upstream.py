"""Upstream runs: which run an ``- operation: OP`` requirement resolves to.

By default the newest *completed* run of OP in the runs dir. A trial of a batch counts (it is an
ordinary run with files of its own); a batch or pipeline run never does (it has no files: its trials
or steps have them), nor does a run that is staged, running, failed or stopped. The user picks another run with
a flag-like assignment named by the requirement's ``name:`` (default: OP), written like a flag:
``guildlite run train prepare=20261201T...``, whose value is any run selector the other commands
take (an id or a prefix of it, an index such as ``1``). The assignment is no flag: it is neither
checked as one nor passed to the script; the run records the upstream run's id in its ``requires``.
A list, ``prepare=[RUN1,RUN2]``, is a batch dimension: one trial per upstream run.

Every selection is made once per invocation (``pin``), before anything is staged: a missing or
wrong upstream run fails then (exit 2), and every trial of a batch uses the same upstream run
unless the selection is itself a dimension. Staging asks ``source_run`` with the id pinned then
(an id is a selector too), so a run deleted meanwhile fails the staging instead of being replaced.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

from ._errors import GuildliteError
from ._files import META_DIR

if TYPE_CHECKING:
    from ._guildfile import OpDef
    from ._requires import Requirement
    from ._run import Run

# A requirement's selection as given: one run selector, or a list of them (a batch dimension).
Selection = Union[str, tuple[str, ...]]


class UpstreamError(GuildliteError):
    """An upstream run that cannot be used: none completed yet, or the one picked is not one."""

    exit_code = 2


def pick_name(req: Requirement) -> str:
    """The name of the assignment that picks ``req``'s upstream run: its ``name:``, else the op's."""
    return req.name or req.source


def operation_requirements(op: OpDef) -> list[Requirement]:
    """``op``'s requirements of upstream runs (``- operation: OP``), in the guildfile's order."""
    return [r for r in getattr(op, "requires", ()) if r.kind == "operation"]


def split_assignments(op: OpDef, args: Sequence[str]) -> tuple[list[str], dict[str, Selection]]:
    """``NAME=VALUE`` arguments split into the flags' and the upstream selections (by pick name).

    A requirement named like one of the op's flags is refused: one assignment cannot be both."""
    names = {pick_name(r) for r in operation_requirements(op)}
    for name in names & set(op.flags):
        raise UpstreamError(f"operation '{op.name}': '{name}' names both a flag and an upstream requirement "
                            "(give the requirement another name: with 'name:')")
    flags: list[str] = []
    picks: dict[str, Selection] = {}
    for arg in args:
        name, sep, text = arg.partition("=")
        key = name.strip()
        if not sep or key not in names:
            flags.append(arg)
            continue
        if key in picks:
            raise UpstreamError(f"upstream '{key}' is given more than once")
        picks[key] = _selection(key, text)
    return flags, picks


def _selection(name: str, text: str) -> Selection:
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        items = tuple(_unquote(i) for i in s[1:-1].split(","))
        if not all(items):
            raise UpstreamError(f"{name}={text}: expected a run or a list of runs, [RUN1,RUN2,...]")
        return items
    if s.startswith("[") or s.endswith("]"):
        raise UpstreamError(f"{name}={text}: malformed list (expected [RUN1,RUN2,...])")
    if not _unquote(s):
        raise UpstreamError(f"{name}=: give a run (an id or a prefix of it) of its operation")
    return _unquote(s)


def _unquote(item: str) -> str:
    s = item.strip()
    return s[1:-1].strip() if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else s


def pin(op: OpDef, runs_dir: Path, given: Mapping[str, Selection],
        known: Sequence[str] | None = None) -> dict[str, Selection]:
    """Every upstream requirement of ``op`` resolved to a run id (a tuple of ids for a dimension),
    by pick name: the run ``given`` picks, else the newest completed run of the requirement's op.
    UpstreamError (nothing is staged yet) when one is missing or is not a completed run of that op;
    ``known``: the guildfile's operations, to point out a misspelt one."""
    out: dict[str, Selection] = {}
    for req in operation_requirements(op):
        name = pick_name(req)
        if name in out:
            raise UpstreamError(f"operation '{op.name}' has two upstream requirements named '{name}' "
                                "(give one another name: with 'name:')")
        chosen = given.get(name)
        if isinstance(chosen, tuple):
            ids = tuple(_picked(req, runs_dir, spec).id for spec in chosen)
            twice = next((i for i in ids if ids.count(i) > 1), None)
            if twice is not None:
                raise UpstreamError(f"{name}=[...]: run {twice} is given twice")
            out[name] = ids
        elif chosen:
            out[name] = source_run(req, runs_dir, {name: chosen}).id
        else:
            try:
                out[name] = source_run(req, runs_dir).id
            except UpstreamError as e:
                raise UpstreamError(f"{e}{_not_an_op(req.source, known)}") from None
    return out


def _not_an_op(name: str, known: Sequence[str] | None) -> str:
    """A note when ``name`` is none of the guildfile's operations ('' when it is one): a typo
    would otherwise read as "run it first". (Not an error: runs of an op from another guildfile
    in the same runs dir may be required too.)"""
    if known is None or name in known:
        return ""
    import difflib

    hint = difflib.get_close_matches(name, list(known), n=1)
    return f" (the guildfile has no operation '{name}'{f': did you mean {hint[0]!r}?' if hint else ''})"


def source_run(req: Requirement, runs_dir: Path, assignments: Mapping[str, Any] | None = None) -> Run:
    """The run whose files ``req`` (an ``operation`` requirement) links into a run of ``runs_dir``:
    the one ``assignments[pick_name(req)]`` selects (a run id or another selector), else the newest
    completed run of ``req.source``. UpstreamError (exit 2) if there is none, or the one picked is
    not a completed run of that op."""
    spec = (assignments or {}).get(pick_name(req))
    return _picked(req, runs_dir, str(spec)) if spec else _newest(req, runs_dir)


def _newest(req: Requirement, runs_dir: Path) -> Run:
    from ._index import load_summaries
    from ._selection import RunList

    if req.select_best is not None:  # the best trial of the newest batch (in a pipeline: the step's batch)
        from ._select_best import best_of_newest_batch

        return best_of_newest_batch(req.source, *req.select_best, runs_dir, pick_name(req))
    mine = load_summaries(RunList(runs_dir), where=lambda rec: rec.get("op") == req.source)
    for run, _ in mine:
        if run.status == "completed" and not _virtual(run):
            return run
    others = f" (its newest run, {mine[0][0].id}, is {mine[0][0].status})" if mine else ""
    raise UpstreamError(f"operation '{req.source}' has no completed run in {runs_dir}{others}: run "
                        f"`guildlite run {req.source}` first, or pick a run with {pick_name(req)}=RUN")


def _virtual(run: Run) -> bool:
    """A batch or a pipeline: a parent run with no files of its own (its trials or steps have them)."""
    return run.is_batch or getattr(run, "is_pipeline", False) is True


def _picked(req: Requirement, runs_dir: Path, spec: str) -> Run:
    from ._choose import select_one

    name = pick_name(req)
    try:
        run = select_one(runs_dir, spec)
    except GuildliteError as e:
        from ._errors import RunNotFoundError
        from ._record import is_run_id

        if isinstance(e, RunNotFoundError) and is_run_id(spec):  # a restart's recorded pick, deleted since
            raise UpstreamError(f"{name}={spec}: run {spec} is not in {runs_dir} (deleted? `guildlite runs "
                                f"restore {spec}` brings it back), or pick another run with {name}=RUN") from None
        raise UpstreamError(f"{name}={spec}: {e}") from None
    if run.op != req.source:
        raise UpstreamError(f"{name}={spec}: run {run.id} is a run of '{run.op}', not of '{req.source}'")
    if _virtual(run) and not run.is_batch:
        raise UpstreamError(f"{name}={spec}: run {run.id} is a pipeline, whose files are its steps': pick a step's run")
    if run.is_batch:
        done = [t.id for t in run.trials if t.status == "completed"]
        trials = ",".join(done[:5]) + (",..." if len(done) > 5 else "") if done else "TRIAL1,TRIAL2"
        raise UpstreamError(f"{name}={spec}: run {run.id} is a batch, whose files are its trials': pick a trial "
                            f"({name}=TRIAL), or several ({name}=[{trials}])")
    if run.status != "completed":
        raise UpstreamError(f"{name}={spec}: run {run.id} is {run.status}, not completed")
    return run


def recorded_picks(op: OpDef, requires: Sequence[object], given: Sequence[str]) -> list[str]:
    """The assignments that pick again the upstream runs a run recorded (``requires``, run.json),
    for the requirements ``given`` (a restart's ``NAME=VALUE`` arguments) does not pick anew."""
    named = {a.partition("=")[0].strip() for a in given}
    recorded = [e for e in requires if isinstance(e, dict) and e.get("kind") == "operation" and e.get("run")]
    out = []
    for req in operation_requirements(op):
        entry = next((e for e in recorded if e.get("name") == pick_name(req)), None) or next(
            (e for e in recorded if e.get("source") == req.source), None)
        if entry is None:
            continue
        recorded.remove(entry)  # two requirements of one op: in order
        if pick_name(req) not in named:
            out.append(f"{pick_name(req)}={entry['run']}")
    return out


# guildlite's own files in a run dir: never an upstream run's output.
_OWN = ("run.json", "output.log", ".guildlite")
_SCALARS = re.compile(r"scalars(\.rank\d+)?\.jsonl")
_PLACED = "requires.json"  # ``_requires``: what a run's requirements put into its dir


def is_output(run: Run) -> Callable[[str], bool]:
    """Whether a path of ``run``'s dir (relative) may be an output of the run, which downstream
    runs link: not guildlite's own (``run.json``, ``output.log``, ``scalars*.jsonl``, ``.guildlite/``),
    not its staged source (its manifest), not what its own requirements put there."""
    from ._inspect import source_files
    from ._runfiles import RunFileError, read_bytes

    source = set(source_files(run)[0])
    placed = {str(e.get("target")) for e in run.requires if isinstance(e, dict)}
    try:
        data, _ = read_bytes(run.run_dir, f"{META_DIR}/{_PLACED}", 16 << 20)
        listed = json.loads(data)
    except (RunFileError, ValueError):
        listed = []
    placed.update(str(e.get("target")) for e in (listed if isinstance(listed, list) else ()) if isinstance(e, dict))
    placed -= {"", ".", "None"}

    def check(rel: str) -> bool:
        if rel.split("/", 1)[0] in _OWN or _SCALARS.fullmatch(rel) or rel in source:
            return False
        return not any(rel == t or rel.startswith(t + "/") for t in placed)

    return check


def output_files(run: Run) -> list[str]:
    """The files ``run`` made (``is_output``), relative paths, sorted. The run dir may come from
    elsewhere: a symlink counts only while it leads to a regular file inside the run dir, symlinked
    dirs are not entered, and a FIFO or device is never opened."""
    base = os.path.realpath(run.run_dir)
    wanted = is_output(run)
    out = []
    for root, dirs, files in os.walk(base):
        rel_root = os.path.relpath(root, base)
        dirs[:] = sorted(d for d in dirs if wanted(d if rel_root == "." else f"{rel_root}/{d}"))
        for name in files:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            real = os.path.realpath(os.path.join(root, name))
            if not wanted(rel) or not real.startswith(base + "/"):
                continue
            try:
                if stat.S_ISREG(os.stat(real).st_mode):
                    out.append(rel)
            except OSError:
                continue
    return sorted(out)
