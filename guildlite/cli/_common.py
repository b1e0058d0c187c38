"""What every command shares: the common options, run selection, and printing helpers."""

from __future__ import annotations

import os
import sys
from itertools import repeat
from typing import TYPE_CHECKING, Any, Sequence

import click

from .._errors import GuildliteError
from .._terminal import printable

if TYPE_CHECKING:
    from .._run import Run


class _Group(click.Group):
    """Print guildlite's errors, and the system's (a full disk, a path that is a file), as one
    line with no traceback, and exit with their code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GuildliteError as e:
            click.echo(f"guildlite: error: {printable(str(e), keep_newlines=True)}", err=True)
            ctx.exit(e.exit_code)
        except BrokenPipeError:  # `guildlite runs | head`: the reader is gone; exit as a killed writer would
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            _say(f"guildlite: error: {e.strerror or e}{where}", err=True)
            ctx.exit(1)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _runs_dir_option(f: Any) -> Any:
    from pathlib import Path  # here: `guildlite --help` needs no pathlib

    return click.option(
        "--runs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="GUILDLITE_RUNS_DIR",
        help="Where runs live (env GUILDLITE_RUNS_DIR; default: runs/ beside guildfile.yml).",
    )(f)


def _filter_option(f: Any) -> Any:
    """``--filter EXPR``: the same option, and the same selection (``_choose.select``), everywhere."""
    return click.option(
        "--filter",
        "filter_expr",
        metavar="EXPR",
        help="Only runs that EXPR matches, e.g. 'lr >= 0.01 and loss < 0.3', 'tag:best', "
        "'label ~ base' (see README: Finding and sharing runs).",
    )(f)


def _guildfile_option(f: Any = None, *, short: bool = True) -> Any:
    from pathlib import Path

    option = click.option(
        *(["-f"] if short else []),
        "--guildfile",
        type=click.Path(exists=True, path_type=Path),
        help="The guildfile (default: guildfile.yml here or in a parent directory).",
    )
    return option(f) if f is not None else option


def _record(run: Run) -> dict[str, Any]:
    return {**run.to_record(), "run_dir": str(run.run_dir)}


def _fmt(v: Any) -> str:
    from .._flags import format_value

    if v is None:
        return "null"
    if isinstance(v, str) and not v:
        return "''"
    return printable(format_value(v))


def _flags_summary(run: Run, width: int = 60, order: Sequence[str] = ()) -> str:
    """``run``'s flags as NAME=VALUE, those in ``order`` first (``_varying.flag_order``), cut to ``width``."""
    from .._varying import ordered

    text = " ".join(f"{k}={_fmt(v)}" for k, v in ordered(run.flags, order))
    return text if len(text) <= width else text[: width - 1] + "…"


def _local(iso: str | None) -> str:
    if not iso:
        return ""
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _say(text: str, err: bool = False) -> None:
    """Print a line that shows record fields (labels, flags, ids...), control characters escaped."""
    click.echo(printable(text), err=err)


MAX_FIELD = 1000  # characters of one line of `runs info` shown; --json gives the whole value


def _cut(text: str, limit: int = MAX_FIELD) -> str:
    """``text`` cut to ``limit`` characters, saying how much more there is (a label of megabytes,
    from an import, say, would fill a terminal's scrollback)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text) - limit + 1} more characters; --json shows all)"


def _csv_cell(v: Any) -> Any:
    return printable(v) if isinstance(v, str) else v


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    _column_table(header, list(zip(*rows)) if rows else [() for _ in header])


MAX_CELL = 200  # characters of a table cell shown; --json and --csv give the whole value


def _column_table(header: Sequence[str], columns: Sequence[Sequence[Any]]) -> None:
    """Print a table given column by column, aligned, every cell made ``printable`` and cut to
    ``MAX_CELL``: the work per cell stays in C (a ``compare`` of 100k runs has a million cells)."""
    padded = []
    for name, column in zip(header, columns):
        cells = [name, *map(str, column)]
        if not "".join(cells).isprintable():  # (the common case: no cell needs escaping)
            cells = [printable(c) for c in cells]
        width = max(map(len, cells))
        if width > MAX_CELL:  # a label of megabytes (from an import, say) would pad every row to it
            cells, width = [c if len(c) <= MAX_CELL else c[:MAX_CELL - 1] + "…" for c in cells], MAX_CELL
        padded.append(map(str.ljust, cells, repeat(width)))
    click.echo("\n".join("  ".join(line).rstrip() for line in zip(*padded)))
