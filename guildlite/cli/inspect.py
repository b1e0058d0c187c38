"""Looking into runs: ``compare``, ``cat``, ``ls``, ``diff``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._choose import runs_dir_for, select_one
from .._errors import GuildliteError
from .._status import STATES
from .._terminal import printable
from . import _complete
from ._common import (
    CONTEXT,
    _column_table,
    _csv_cell,
    _filter_option,
    _fmt,
    _guildfile_option,
    _local,
    _runs_dir_option,
    _say,
)

if TYPE_CHECKING:
    pass


@click.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...", shell_complete=_complete.runs)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@click.option("--columns", help="Comma-separated columns to show (default: all).")
@click.option("--sort", "sort_key", help="Sort by a column; -COLUMN for descending (e.g. --sort loss).")
@click.option("--min-max", is_flag=True, help="Add the min and max of each scalar.")
@click.option("--op", help="Only runs of this operation.")
@click.option("--status", type=click.Choice(STATES), help="Only runs with this status.")
@click.option("--label", help="Only runs whose label contains this text.")
@click.option("--batch", help="Only the trials of this batch (a selector).", shell_complete=_complete.runs)
@click.option("--study", is_flag=True,
              help="Show the study of each batch compared (a search or a pruned batch): every trial in order with "
                   "its objective and the best so far, the best trial, flag importances (--json, --csv too).")
@_filter_option
@_runs_dir_option
@_guildfile_option
def compare(
    specs: tuple[str, ...],
    as_csv: bool,
    as_json: bool,
    columns: str | None,
    sort_key: str | None,
    min_max: bool,
    op: str | None,
    status: str | None,
    label: str | None,
    batch: str | None,
    study: bool,
    filter_expr: str | None,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """One row per run: id, op, status, started, time, every flag, the last value of each scalar.

    Trials of a batch with a study (--optimizer, --prune) are followed by that study in a few
    lines: what it optimizes, its trials by status, the best trial, flag importances. --study
    shows the studies instead of the table: each trial in order with its objective.
    """
    from .._inspect import compare_runs

    rd = runs_dir_for(runs_dir, guildfile)
    cols, rows = compare_runs(rd, specs, op=op, status=status, label=label, batch=batch,
                              min_max=min_max, sort_key=sort_key, columns=columns, filter=filter_expr)
    if study:
        _print_studies(_studies(rd, specs, batch, rows, everything=True)[0], as_json, as_csv)
        return
    if as_json:
        click.echo(json.dumps([{c: r.get(c) for c in cols} for r in rows], indent=2, default=str))
    elif as_csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([printable(c) for c in cols])
        for r in rows:
            w.writerow(["" if r.get(c) is None else _csv_cell(r.get(c)) for c in cols])
    elif not rows:
        click.echo("no runs to compare", err=True)
    else:
        _column_table(cols, [_cells(c, [r.get(c) for r in rows]) for c in cols])
        _study_footer(*_studies(rd, specs, batch, rows, everything=False))


FOOTER_STUDIES = 3  # under compare's table: the studies of this many batches at most (the newest)


def _studies(rd: Path, specs: tuple[str, ...], batch: str | None, rows: list[dict[str, Any]],
             everything: bool) -> tuple[list[dict[str, Any]], int]:
    """The studies of the batches compared (--batch's, those the selectors name, the rows'
    batches), and how many more were left out. Without ``everything`` (a footer under the table):
    only the rows' batches, FOOTER_STUDIES of them at most."""
    from .._study_view import studies

    ids: list[str | None] = [r.get("batch") for r in rows]
    if everything:
        from .._choose import batch_id
        from .._selection import RunList, select_runs

        runs = RunList(rd)
        named = [r.id for r in select_runs(runs, specs) if r.is_batch] if specs else []
        ids = [batch_id(runs, batch), *named, *ids]
    else:
        ids.sort(key=lambda b: b or "", reverse=True)  # ids begin with their time: the newest batches first
    return studies(rd, ids, None if everything else FOOTER_STUDIES)


def _study_footer(views: list[dict[str, Any]], more: int) -> None:
    from .._study_view import header_lines

    for view in views:
        click.echo("\n" + "\n".join(map(printable, header_lines(view))))  # flag names from the journal
        click.echo(f"  (every trial with its objective: guildlite compare --study --batch {view['batch']})")
    if more:
        click.echo(f"\n({more} more batch{'es' if more > 1 else ''} with a study among these runs: "
                   "guildlite compare --study)")


def _print_studies(views: list[dict[str, Any]], as_json: bool, as_csv: bool) -> None:
    from .._study_view import header_lines, importance_lines, trial_rows

    if as_json:
        click.echo(json.dumps(views, indent=2, default=str))
        return
    if not views:
        raise GuildliteError("--study: no batch with a study among the runs compared (a batch run with "
                             "--optimizer or --prune has one)", exit_code=2)
    if as_csv:
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        for i, view in enumerate(views):
            cols, rows = trial_rows(view, mark=False)
            if i == 0 or cols != trial_rows(views[i - 1], mark=False)[0]:
                w.writerow(["batch", *(printable(c) for c in cols)])
            for row in rows:
                w.writerow([view["batch"], *("" if v is None else _csv_cell(v) for v in row)])
        return
    for i, view in enumerate(views):
        cols, rows = trial_rows(view)
        click.echo(("\n" if i else "") + "\n".join(map(printable, header_lines(view))) + "\n")
        _column_table(cols, [_cells(c, [row[i] for row in rows]) for i, c in enumerate(cols)])
        click.echo("\n" + "\n".join(map(printable, importance_lines(view))))


def _cells(col: str, values: list[Any]) -> list[str]:
    """A compare column's cells: local start times, time in seconds to 0.1, other floats to 6
    significant digits, "" for none."""
    if col == "started":
        local = {v: _local(v) for v in set(values) if v}
        return [local.get(v, "") for v in values]
    if col == "time":  # seconds, one precision down the column (JSON and CSV keep the number)
        values = [f"{v:.1f}" if type(v) is float or type(v) is int else v for v in values]
    # One expression, no call per cell: a column of 100k runs.
    return ["" if v is None or v == "" else f"{v:.6g}" if type(v) is float else v if type(v) is str
            else str(v) if type(v) is int else _fmt(v) for v in values]


CAT_MAX_BYTES = 1 << 30  # `cat` prints at most this much by default: a sparse file of terabytes must not stream for hours


@click.command(context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN", shell_complete=_complete.runs)
@click.argument("path", default="output.log")
@click.option("--max-bytes", type=click.IntRange(min=0), default=CAT_MAX_BYTES, show_default=True,
              help="Print at most this many bytes (0: no bound); a longer file is cut, with exit status 1.")
@_runs_dir_option
@_guildfile_option
def cat(run_spec: str, path: str, max_bytes: int, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Print a file of a run (default: output.log): a regular file inside the run dir only."""
    from .._inspect import copy_run_file

    try:
        copy_run_file(select_one(runs_dir_for(runs_dir, guildfile), run_spec), path, sys.stdout.buffer, max_bytes)
    finally:
        sys.stdout.flush()


@click.command(context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN", shell_complete=_complete.runs)
@click.option("-a", "--all", "show_all", is_flag=True, help="Include guildlite's own files (.guildlite/).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_runs_dir_option
@_guildfile_option
def ls(run_spec: str, show_all: bool, as_json: bool, runs_dir: Path | None, guildfile: Path | None) -> None:
    """List a run's files with their sizes."""
    from .._inspect import run_files

    r = select_one(runs_dir_for(runs_dir, guildfile), run_spec)
    files = run_files(r, include_meta=show_all)
    if as_json:
        click.echo(json.dumps([{"path": p, "size": n} for p, n in files], indent=2))
        return
    _say(f"{r.run_dir}:")
    for p, n in files:
        _say(f"  {_size(n):>8}  {p}")


def _size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, metavar="RUN [RUN2]", shell_complete=_complete.runs)
@click.option("--source-only", is_flag=True, help="Only the source diff.")
@click.option("--flags-only", is_flag=True, help="Only the flags.")
@_runs_dir_option
@_guildfile_option
def diff(specs: tuple[str, ...], source_only: bool, flags_only: bool, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Compare two runs (flags side by side, then a diff of the staged source).

    With one RUN: its staged source against the project's current source, which shows what an
    on_run_staged plugin (or a later edit) changed.
    """
    from .._inspect import Tree, diff_flags, diff_trees, project_dir, source_files

    if len(specs) > 2:
        raise GuildliteError("diff takes one or two runs", exit_code=2)
    rd = runs_dir_for(runs_dir, guildfile)
    a = select_one(rd, specs[0])
    a_files, notes = source_files(a)
    if len(specs) == 2:
        b = select_one(rd, specs[1])
        if not source_only:
            rows = diff_flags(a, b)
            w = max([len(printable(n)) for n, _, _ in rows] + [4])
            _say(f"{'flag':<{w}}  {a.id:<24}  {b.id}")
            for n, va, vb in rows:
                mark = " " if va == vb else "*"
                _say(f"{printable(n):<{w}}  {_fmt(va):<24}  {_fmt(vb)} {mark}".rstrip())
        if not flags_only:
            b_files, b_notes = source_files(b)
            text = "".join(notes + b_notes) + diff_trees(
                Tree(a.run_dir, frozenset(a_files), a.id), Tree(b.run_dir, frozenset(b_files), b.id))
            click.echo(text or "(staged source is identical)", nl=not text)
        return
    root = project_dir(a, guildfile)
    text = "".join(notes) + diff_trees(
        Tree(root, frozenset(a_files), "project", "project directory"), Tree(a.run_dir, frozenset(a_files), a.id))
    click.echo(text or "(staged source matches the project)", nl=not text)
