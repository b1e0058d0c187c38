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
    _csv_cell,
    _filter_option,
    _fmt,
    _guildfile_option,
    _local,
    _runs_dir_option,
    _say,
    _table,
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
    filter_expr: str | None,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """One row per run: id, op, status, started, time, every flag, the last value of each scalar."""
    from .._inspect import compare_runs

    cols, rows = compare_runs(runs_dir_for(runs_dir, guildfile), specs, op=op, status=status, label=label, batch=batch,
                              min_max=min_max, sort_key=sort_key, columns=columns, filter=filter_expr)
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
        _table(cols, [[_cell(c, r.get(c)) for c in cols] for r in rows])


def _cell(col: str, v: Any) -> str:
    if v is None or v == "":
        return ""
    if col == "started":
        return _local(v)
    kind = type(v)
    if col == "time" and (kind is float or kind is int):
        return f"{v:.1f}"  # seconds, one precision down the column (JSON and CSV keep the number)
    if kind is float:
        return f"{v:.6g}"
    if kind is str or kind is int:
        return str(v)
    return _fmt(v)


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
