"""Lineage: the runs whose files a run used and the runs that used its files.

A run's record names its upstream runs in ``requires``: each entry of kind ``operation`` holds the
upstream run's id under ``run``. That is the only source of lineage; downstream runs are the runs
whose records name this one. A batch has no files of its own: its upstream runs are its own
record's and its trials', so it is downstream of what any of its trials used.

A record may come from elsewhere (a shared runs dir, an archive): an id it names counts only if it
is a run id (``_record.is_run_id``), and is looked up in the runs dir only, so a crafted
``"run": "../../etc"`` names nothing and nothing outside the runs dir is read because of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ._record import is_run_id

if TYPE_CHECKING:
    from ._selection import RunList


def upstream_ids(rec: Mapping[str, Any]) -> list[str]:
    """The upstream run ids a record's ``requires`` names (kind ``operation``), in order, each
    once; entries that are not objects or name no run id are ignored."""
    out: list[str] = []
    entries = rec.get("requires")
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and entry.get("kind") == "operation":
            run_id = entry.get("run")
            if isinstance(run_id, str) and is_run_id(run_id) and run_id not in out:
                out.append(run_id)
    return out


@dataclass(frozen=True)
class Lineage:
    """Who used whose files among the runs of one runs dir (ids; ``ops``: each listed run's op and
    status, by id: an upstream run gone from the runs dir has none)."""

    up: Mapping[str, tuple[str, ...]]
    down: Mapping[str, tuple[str, ...]]
    ops: Mapping[str, tuple[str, str]]

    def upstream(self, run_id: str, transitive: bool = False) -> list[str]:
        """The runs ``run_id`` used the files of (``transitive``: and what those used, and so on)."""
        return _walk(self.up, run_id, transitive)

    def downstream(self, run_id: str, transitive: bool = False) -> list[str]:
        """The runs that used ``run_id``'s files (``transitive``: and the runs that used theirs...)."""
        return _walk(self.down, run_id, transitive)


def _walk(edges: Mapping[str, tuple[str, ...]], start: str, transitive: bool) -> list[str]:
    """Breadth first, each run once (a crafted record may close a cycle), ``start`` never."""
    seen = {start}
    out: list[str] = []
    todo = list(edges.get(start, ()))
    while todo:
        run_id = todo.pop(0)
        if run_id in seen:
            continue
        seen.add(run_id)
        out.append(run_id)
        if transitive:
            todo.extend(edges.get(run_id, ()))
    return out


def lineage(runs: Path | RunList) -> Lineage:
    """The lineage of the runs of a runs dir (not its trash), from their records (the run index's
    summaries: thousands of runs without reading every run.json)."""
    from ._index import load_records
    from ._selection import RunList

    listed = runs if isinstance(runs, RunList) else RunList(runs)
    return lineage_of([(name, rec) for name, rec, _ in load_records(listed)])


def related(runs: RunList, upstream: str | None = None, downstream: str | None = None) -> set[str]:
    """The ids of the runs upstream of the run ``upstream`` selects (the runs whose files it used,
    and theirs, and so on), and/or downstream of ``downstream``'s (every run that used its files,
    directly or through others); both: the runs that are both."""
    from ._selection import select_runs

    graph = lineage(runs)
    out: set[str] | None = None
    for spec, walk in ((upstream, graph.upstream), (downstream, graph.downstream)):
        if spec is None:
            continue
        chosen = select_runs(runs, [spec])
        if len(chosen) != 1:
            from ._errors import GuildliteError

            raise GuildliteError(f"{spec!r} selects {len(chosen)} runs; give one", exit_code=2)
        ids = set(walk(chosen[0].id, transitive=True))
        out = ids if out is None else out & ids
    return out if out is not None else set()


def lineage_of(records: Sequence[tuple[str, Mapping[str, Any]]]) -> Lineage:
    """The lineage of ``(run id, record)`` pairs (see ``lineage``)."""
    up: dict[str, list[str]] = {}
    ops: dict[str, tuple[str, str]] = {}
    batches = {name for name, rec in records if rec.get("is_batch") is True}
    for name, rec in records:
        ops[name] = (str(rec.get("op")), str(rec.get("status")))
        ids = upstream_ids(rec)
        parent = rec.get("parent")
        targets = [name, parent] if parent in batches and rec.get("is_trial") is True else [name]
        for target in targets:
            have = up.setdefault(target, [])
            have.extend(i for i in ids if i not in have and i != target)
    down: dict[str, list[str]] = {}
    for name in (n for n, _ in records):  # newest first, as listed
        for u in up.get(name, ()):
            down.setdefault(u, []).append(name)
    return Lineage({k: tuple(v) for k, v in up.items() if v}, {k: tuple(v) for k, v in down.items()}, ops)


def dependents(runs_dir: Path, ids: set[str]) -> dict[str, list[str]]:
    """For each run of ``ids`` that other runs used the files of, those runs (outside ``ids``),
    directly: what ``runs delete`` warns about."""
    graph = lineage(runs_dir)
    out = {}
    for run_id in sorted(ids):
        users = [d for d in graph.downstream(run_id) if d not in ids]
        if users:
            out[run_id] = users
    return out
