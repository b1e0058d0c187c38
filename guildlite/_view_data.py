"""What ``guildlite view`` shows: a plain, JSON-serialisable dict gathered from runs.

``view_data`` makes the page's data for a list of runs; ``run_data`` one run with every detail
(scalar series, the tail of ``output.log``, its files), which the server answers when the page
asks. ``_view_page`` renders it, ``_view_server`` serves it. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
from bisect import bisect_left
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._batchspec import BatchDistribution
from ._columns import column_titles
from ._files import META_DIR, now_iso
from ._inspect import duration
from ._lineage import lineage_of
from ._run import Run
from ._runfiles import RunFileError, listed_size, open_file
from ._scalars import MAX_LINE_BYTES, MAX_SCALARS_BYTES, summarize
from ._selection import RunList, select_runs, with_trials

FORMAT = 1
MAX_POINTS = 2000  # per scalar series: longer ones are thinned (evenly, keeping the last point)
TAIL_BYTES = 8192  # of output.log, at most TAIL_LINES lines
TAIL_LINES = 100
MAX_FILES = 200  # listed per run


def view_data(
    runs: Sequence[Run],
    runs_dir: Path | None = None,
    details: bool = True,
    scalars: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the page shows for ``runs``: one entry per run, plus the flag and scalar names.

    Each run carries its record (flags, status...) and a scalar summary (as ``compare`` computes
    it). With ``details`` (a static page) also its hook trace, command, scalar series (``{key:
    {"step": [...], "value": [...]}}``, at most MAX_POINTS points each), the tail of
    ``output.log`` and its files (without ``.guildlite/``); without (the server, which answers
    ``/run/ID.json`` with ``run_data`` when the page asks), only the table's fields. ``scalars``
    maps run ids to summaries already at hand (the index's).
    """
    flag_cols: dict[str, None] = {}
    scalar_keys: dict[str, None] = {}
    rows = []
    for run in runs:
        if details:
            row = run_data(run)
        else:
            summary = scalars.get(run.id) if scalars is not None else None
            row = _record(run, summarize(run.paths.scalars) if summary is None else summary)
        if not run.virtual:
            flag_cols.update(dict.fromkeys(run.flags))
        scalar_keys.update(dict.fromkeys(row["scalars"]))
        rows.append(row)
    graph = lineage_of([(run.id, run.to_record()) for run in runs])  # links between the runs shown
    for row in rows:
        row["upstream"], row["downstream"] = graph.upstream(row["id"]), graph.downstream(row["id"])
    flag_titles, scalar_titles = column_titles(flag_cols, scalar_keys)  # compare's header names
    return {
        "format": FORMAT,
        "generated": now_iso(),
        "runs_dir": str(runs_dir) if runs_dir is not None else None,
        "details": details,
        "runs": rows,
        "flag_cols": list(flag_cols),
        "scalar_keys": list(scalar_keys),
        "flag_titles": flag_titles,
        "scalar_titles": scalar_titles,
    }


def _record(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    from ._progress import shown

    return {
        "id": run.id,
        "op": run.op,
        "status": run.status,
        "progress": shown(run.run_dir, run.status),  # an active run's percent and ETA
        "exit_code": run.exit_code,
        "label": run.label,
        "tags": run.tags,
        "created": run.created,
        "started": run.started,
        "stopped": run.stopped,
        "time": duration(run),
        "is_batch": run.is_batch,
        "is_pipeline": run.is_pipeline,
        "parent": run.parent_id,
        "trials": run.trial_ids,
        "steps": run.step_ids,
        "flags": run.flags,
        "scalars": summary,
        # A batch's flags drawn at random (kind by name): the page plots them on a numeric axis.
        "random": {k: v.kind for k, v in run.flags.items() if isinstance(v, BatchDistribution)} if run.is_batch else {},
    }


def run_data(run: Run) -> dict[str, Any]:
    """One run with every detail the page shows (see ``view_data``)."""
    series, summary = read_series(run.paths.scalars, len(run.attempts))
    tail, out_size = output_tail(run.paths.output_log)
    files, n_files = list_files(str(run.run_dir))
    return {
        **_record(run, summary),
        "host": run.host,
        "batch": run.batch,
        "error": run.error,
        "cmd": run.cmd,
        "nproc_per_node": run.nproc_per_node,
        "gpus": run.gpus,
        "remote": run.remote,
        "plugins": run.plugins,
        "attrs": run.attrs,
        "notes": run.notes,  # `guildlite note`: [{"time", "text"}], oldest first
        "run_dir": str(run.run_dir),
        "series": series,
        "output": tail,
        "output_size": out_size,
        "files": files,
        "files_total": n_files,
    }


def _rows(path: Path) -> list[Any]:
    """The JSON rows of a scalars file: a regular file inside its run dir only, and at most
    MAX_SCALARS_BYTES of it, read in chunks (a line longer than MAX_LINE_BYTES is dropped)."""
    try:
        f = open_file(path.parent, path.name)
    except RunFileError:
        return []
    rows: list[Any] = []
    with f:
        left, rest = MAX_SCALARS_BYTES, b""
        while left > 0 and (chunk := f.read(min(left, 8 << 20))):
            left -= len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            rest = rest if len(rest) <= MAX_LINE_BYTES else b""
            rows += _parse([line for line in lines if line and len(line) <= MAX_LINE_BYTES])
        rows += _parse([rest] if rest else [])
    return rows


def _parse(lines: list[bytes]) -> list[Any]:
    if not lines:
        return []
    try:  # one parse for them all: several times faster
        return json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # a torn last line, or another bad one: line by line, skipping those
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line.decode("utf-8", "replace")))
            except ValueError:
                continue
        return rows


def read_series(
    path: Path, attempts: int = 0
) -> tuple[dict[str, dict[str, list[Any]]], dict[str, dict[str, Any]]]:
    """Per key, the (step, value) series of a scalars file, and its summary as ``summarize`` gives it.

    One read for both. A null value (NaN/inf when logged) stays in the series as a gap; rows
    without a step take their position in the key's series. For a run restarted ``attempts``
    times, a series whose step goes back (a restart that resumed from an earlier step, or from
    the start) at most that many times gets ``restarts``: the indices where each later attempt's
    part begins, so the page draws the attempts as segments instead of a line back to the resume
    step. A step as high as the one before counts when that alone accounts for the restarts (a
    resumed checkpoint's step logged again); more steps back than restarts are the script's own
    doing (a step counted per epoch), left as they are.
    """
    series: dict[str, dict[str, list[Any]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    back: dict[str, tuple[list[int], list[int]]] = {}  # per key: where the step is lower; not higher
    for row in _rows(path):
        if not isinstance(row, dict) or "key" not in row:
            continue
        v = row.get("value")
        number = isinstance(v, (int, float))
        if not number and v is not None:
            continue
        key = str(row["key"])
        s = series.get(key)
        if s is None:
            s = series[key] = {"step": [], "value": []}
            back[key] = ([], [])
        step = row.get("step")
        step = step if isinstance(step, (int, float)) else len(s["step"])
        if attempts and s["step"]:
            lower, not_higher = back[key]
            if step < s["step"][-1] and len(lower) <= attempts:  # one more than that is as good as any
                lower.append(len(s["step"]))
            if step <= s["step"][-1] and len(not_higher) <= attempts:
                not_higher.append(len(s["step"]))
        s["step"].append(step)
        s["value"].append(v)
        if not number:
            continue
        m = summary.get(key)
        if m is None:
            summary[key] = {"last": v, "min": v, "max": v, "step": row.get("step", 0), "count": 1}
        else:
            m["last"], m["step"], m["count"] = v, row.get("step", m["step"]), m["count"] + 1
            if v < m["min"]:
                m["min"] = v
            elif v > m["max"]:
                m["max"] = v
    for key, s in series.items():
        lower, not_higher = back[key]
        restarts = not_higher if len(not_higher) <= attempts else lower if len(lower) <= attempts else []
        _thin(s, restarts)
    return series, summary


def _thin(s: dict[str, list[Any]], restarts: list[int]) -> None:
    """Cut a series to MAX_POINTS or so (evenly, keeping the last point and both ends of each
    attempt); set its ``restarts`` (see ``read_series``), as indices into what is kept."""
    n = len(s["step"])
    if n > MAX_POINTS:
        stride = math.ceil(n / MAX_POINTS)
        ends = {i for r in restarts for i in (r - 1, r)}
        keep = sorted({*range(0, n - 1, stride), n - 1, *ends})
        s["step"] = [s["step"][i] for i in keep]
        s["value"] = [s["value"][i] for i in keep]
        restarts = [bisect_left(keep, r) for r in restarts]
    if restarts:
        s["restarts"] = restarts


def output_tail(path: Path) -> tuple[str, int]:
    """The last lines of a file (at most TAIL_BYTES, TAIL_LINES lines) and its size: a regular
    file inside its dir only (``_runfiles``), else nothing."""
    try:
        f = open_file(path.parent, path.name)
    except RunFileError:
        return "", 0
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > TAIL_BYTES:
            f.seek(size - TAIL_BYTES)
            data = f.read(TAIL_BYTES)
            cut = data.find(b"\n")
            data = data[cut + 1 :] if 0 <= cut < len(data) - 1 else data
        else:
            data = f.read(TAIL_BYTES)
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:]), size


def list_files(root: str, limit: int = MAX_FILES) -> tuple[list[list[Any]], int]:
    """``[[relative path, size], ...]`` (sorted, at most ``limit``) and the number of files.

    guildlite's own ``.guildlite/`` is left out; symlinked dirs are not followed, and a symlink's
    size is its target's only when that lies inside ``root`` (``_runfiles.listed_size``).
    """
    base = os.path.realpath(root)
    out: list[list[Any]] = []
    total = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(base, rel) if rel else base)
        except OSError:
            continue
        with it:
            for e in it:
                name = f"{rel}/{e.name}" if rel else e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if name != META_DIR:
                            stack.append(name)
                        continue
                    total += 1
                    if len(out) < limit:
                        out.append([name, listed_size(base, e.path)])
                except OSError:
                    continue
    out.sort()
    return out, total


def load_view(
    runs_dir: Path, specs: Sequence[str] = (), details: bool = True, filter: str | None = None
) -> dict[str, Any]:
    """``view_data`` for the runs ``specs`` selects in ``runs_dir`` (default: all) that the expression
    ``filter`` matches, batches with trials.

    Without ``details`` the records and scalar summaries come from the runs index (as for
    ``guildlite runs`` and ``compare``), which keeps a page over thousands of runs quick.
    """
    everything = RunList(runs_dir)
    if filter:
        from ._choose import select_with_trials

        chosen: list[Run] | None = select_with_trials(runs_dir, specs, filter=filter)
    else:
        chosen = with_trials(select_runs(everything, specs)) if specs else None
    if details:
        return view_data(everything[:] if chosen is None else chosen, runs_dir)
    from ._index import load_summaries

    loaded = load_summaries(everything, None if chosen is None else [r.id for r in chosen], scalars=True)
    return view_data([r for r, _ in loaded], runs_dir, details=False, scalars={r.id: sc for r, sc in loaded})
