"""Looking at runs elsewhere: ``view`` (a web page) and ``tensorboard``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .._choose import runs_dir_for, select, select_with_trials
from .._errors import GuildliteError
from . import _complete
from ._common import (
    CONTEXT,
    _filter_option,
    _guildfile_option,
    _runs_dir_option,
)

if TYPE_CHECKING:
    pass


@click.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...", shell_complete=_complete.runs)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one self-contained HTML file and exit (no server).")
@click.option("--no-browser", is_flag=True, help="Do not open a web browser.")
@_filter_option
@_runs_dir_option
@_guildfile_option
def view(
    specs: tuple[str, ...],
    port: int,
    out: Path | None,
    no_browser: bool,
    filter_expr: str | None,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Browse runs in a web page (table, curves, batch plots).

    RUNS selects runs (default: all; a batch comes with its trials). The table sorts and filters in
    the browser, trials under their batch; a run shows its flags, hook trace, output and files;
    ticked runs' scalars are plotted over steps, overlaid; a batch plots its final metric against
    each flag. The page works offline: served on 127.0.0.1 until Ctrl-C, or written as one HTML
    file with --out. Needs plotly: pip install 'guildlite[view]'.
    """
    from .._view_data import load_view
    from .._view_page import plotly_js, write_report
    from .._view_server import serve

    plotly_js()  # fails early, with the pip command, when plotly is missing
    rd = runs_dir_for(runs_dir, guildfile)
    if out is not None:
        data = load_view(rd, specs, filter=filter_expr)
        size = write_report(out, data)
        click.echo(f"guildlite: wrote {out} ({len(data['runs'])} runs, {size / 1e6:.1f} MB)", err=True)
        return
    if specs or filter_expr:
        select(rd, specs, filter=filter_expr)  # a bad selector or filter is an error now, not on the first page load
    serve(lambda details: load_view(rd, specs, details, filter_expr), rd, port=port, open_browser=not no_browser, echo=click.echo)


@click.command("tensorboard", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...", shell_complete=_complete.runs)
@click.option("--logdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the event files (default: a new temp dir, removed when TensorBoard stops; "
                   "with --no-server, .tensorboard in the runs dir).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="TensorBoard's port on 127.0.0.1 (0: a free one).")
@click.option("--no-server", is_flag=True, help="Only write the event files and print the logdir.")
@_filter_option
@_runs_dir_option
@_guildfile_option
def tensorboard_cmd(
    specs: tuple[str, ...],
    logdir: Path | None,
    port: int,
    no_server: bool,
    filter_expr: str | None,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """View runs' scalars in TensorBoard.

    RUNS selects runs (default: all; a batch comes with its trials). Their scalars are written as
    event files, one sub-dir per run named by its id, label and flags (a run whose scalars did not
    change since the last write into --logdir is left as it is); then TensorBoard runs on
    127.0.0.1 until Ctrl-C. --no-server only writes the files and prints the logdir: without
    --logdir, RUNS_DIR/.tensorboard, which then holds the runs selected this time only.
    Needs TensorBoard: pip install 'guildlite[tensorboard]'.
    """
    import tempfile

    from .._tensorboard import TB_DIR, require, serve, write_logdir

    require()
    rd = runs_dir_for(runs_dir, guildfile)
    chosen = select_with_trials(rd, specs, filter=filter_expr)
    temp = logdir is None and not no_server
    if logdir is not None:
        target = logdir.resolve()
    elif no_server:  # kept for TensorBoard to be pointed at: in the runs dir, holding these runs only
        target = rd.resolve() / TB_DIR
        if target.is_symlink():
            raise GuildliteError(f"{target} is a link, not guildlite's dir: give --logdir", exit_code=2)
    else:
        target = Path(tempfile.mkdtemp(prefix="guildlite-tb-"))
    written = write_logdir(chosen, target, prune=logdir is None)
    fresh = sum(1 for _, _, n in written if n >= 0)
    click.echo(f"guildlite: {len(written)} runs in {target} ({fresh} written, {len(written) - fresh} unchanged)",
               err=True)
    if no_server:
        click.echo(str(target))
        return
    code = serve(target, port=port, echo=click.echo, cleanup=temp)
    if code:
        sys.exit(code)
