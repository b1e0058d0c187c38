"""The Python API for scripts and notebooks: ``guildlite.runs()`` and ``guildlite.runs_frame()``.

Both read a runs dir the way the CLI does (the same selectors, the same filter grammar, the same
index for scalar summaries) and hand back read-only snapshots (``RunInfo``); nothing here writes
a record. pandas is optional (the ``frame`` extra), imported only by ``runs_frame``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ._errors import GuildliteError
from ._runinfo import RunInfo, read_infos

if TYPE_CHECKING:
    import pandas

STATS = ("last", "min", "max", "step", "count")


class MissingExtra(GuildliteError, ImportError):
    """An optional dependency is not installed (both a GuildliteError and an ImportError)."""


def runs(
    filter: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    select: str | Sequence[str] = (),
) -> list[RunInfo]:
    """The runs of ``runs_dir``, newest first, as read-only ``RunInfo`` snapshots.

    ``runs_dir``: default as the CLI's (``$GUILDLITE_RUNS_DIR``, else the runs dir of the guildfile
    found from the current dir). ``select``: run selectors as on the command line (``"1"``,
    ``"2:4"``, an id prefix; default: every run, batches included). ``filter``: an expression of the
    ``--filter`` grammar (``"loss < 0.3 and op = train"``); a bad one raises ``FilterError`` (a
    ``GuildliteError``) whose message points at the column. Bad records are skipped with a warning,
    as in ``guildlite runs``.
    """
    from ._choose import runs_dir_for
    from ._selection import RunList, select_runs

    where = runs_dir_for(Path(runs_dir) if runs_dir is not None else None)
    everything = RunList(where)
    specs = [select] if isinstance(select, str) else list(select)
    ids = [r.id for r in select_runs(everything, specs)] if specs else None
    chosen = ids
    if filter:
        from ._filter import filtered_records

        chosen = [name for name, _, _ in filtered_records(everything, filter, ids)]  # narrowed by the index
    return read_infos(where, chosen)


def runs_frame(
    filter: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    select: str | Sequence[str] = (),
    scalars: Sequence[str] = ("last",),
) -> pandas.DataFrame:
    """``runs()`` as a pandas DataFrame, one row per run, indexed by run id.

    Columns: ``op``, ``status``, ``label``, ``tags`` (a tuple), ``started`` / ``stopped`` (UTC
    timestamps), ``time`` (seconds), ``batch`` (a trial's batch id), then ``flag.NAME`` for every
    flag and ``scalar.KEY`` (the last value) for every scalar; each other statistic asked for in
    ``scalars`` (``min``, ``max``, ``step``, ``count``) adds ``scalar.KEY.STAT``. A run without a
    flag or scalar has NaN/None there. Needs pandas (``pip install 'guildlite[frame]'``): without
    it, ``MissingExtra`` (a ``GuildliteError`` and an ``ImportError``) says so.
    """
    wrong = [s for s in scalars if s not in STATS]
    if wrong:
        raise GuildliteError(f"runs_frame: unknown scalar statistic {wrong[0]!r}; choose from {', '.join(STATS)}")
    try:
        import pandas as pd
    except ImportError as e:
        raise MissingExtra("guildlite.runs_frame needs pandas, which is not installed: "
                             "pip install 'guildlite[frame]' (or use guildlite.runs(), which does not)") from e
    rows = [_row(r, scalars) for r in runs(filter, runs_dir, select)]
    frame = pd.DataFrame.from_records(rows, columns=_columns(rows))
    for col in ("started", "stopped"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame.set_index("id")


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """The fixed columns, then flags, then scalars, each in the order first seen."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    fixed = ["id", "op", "status", "label", "tags", "started", "stopped", "time", "batch"]
    return fixed + [c for c in seen if c.startswith("flag.")] + [c for c in seen if c.startswith("scalar.")]


def _row(run: RunInfo, stats: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": run.id, "op": run.op, "status": run.status, "label": run.label, "tags": run.tags,
        "started": run.started, "stopped": run.stopped, "time": run.time, "batch": run.parent_id,
    }
    row.update((f"flag.{k}", _plain(v)) for k, v in run.flags.items())
    for key, s in run.scalars.items():
        row.update((f"scalar.{key}" if stat == "last" else f"scalar.{key}.{stat}", getattr(s, stat)) for stat in stats)
    return row


def _plain(value: Any) -> Any:
    """A flag value as JSON gave it (a batch's dimensions: lists and dicts, not read-only views)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value
