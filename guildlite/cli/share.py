"""``guildlite runs export`` and ``runs import``: runs out of the runs dir and into it (``_export``,
``_import_runs``; ``--from-guild``: ``_guild_import``). Added to the ``runs`` group by the package."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from .._errors import GuildliteError
from . import _complete
from ._common import CONTEXT, _filter_option, _guildfile_option, _runs_dir_option, _say
from .runs import _confirm, _sub_runs_dir


@click.command("export", context_settings=CONTEXT)
@click.argument("args", nargs=-1, required=True, metavar="[RUNS]... DEST", shell_complete=_complete.runs)
@_filter_option
@click.option("--move", is_flag=True, help="Remove the runs from the runs dir once exported (asks unless -y).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.option("--json", "as_json", is_flag=True, help='Print {"run_id", "action"} per run (action: exported or moved).')
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_export(
    group_runs_dir: Path,
    args: tuple[str, ...],
    filter_expr: str | None,
    move: bool,
    yes: bool,
    as_json: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Copy runs (default: all; a batch or pipeline with its children) into DEST: a directory, or
    an archive if DEST ends in .tar.gz, .tgz or .tar. Only ended runs; `runs import` reads it back."""
    from .._choose import select
    from .._export import check_exportable, export_runs
    from .._selection import with_trials

    *specs, dest_arg = args
    if not dest_arg.strip():  # Path("") is the cwd: an unset $DEST must not fill it with run dirs
        raise click.UsageError("DEST is empty: give the directory or archive to export to")
    dest = Path(dest_arg)
    if not specs and not dest.exists() and re.fullmatch(r"[0-9]*:?[0-9]*|[0-9]{8}T[0-9a-f:-]*", dest_arg):
        raise click.UsageError(f"{dest_arg!r} looks like a run selector, not a place to export to: "
                               "guildlite runs export [RUNS]... DEST")
    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    chosen = with_trials(select(runs_dir, specs, filter=filter_expr))  # the filter chooses; children come along
    if not chosen:
        raise GuildliteError("no runs to export" + (" (none matches the filter)" if filter_expr else ""), exit_code=2)
    check_exportable(chosen, runs_dir, dest)
    if move:
        from .._lineage import dependents

        moved = {r.id for r in chosen}
        for run_id, ids in dependents(runs_dir, moved).items():  # their lineage would name a run gone
            staying = [i for i in ids if i not in moved]
            if staying:
                _say(f"guildlite: warning: run {run_id} is upstream of run(s) that stay: {', '.join(staying[:10])}",
                     err=True)
        _confirm(f"Export {len(chosen)} run(s) to {dest} and remove them from {runs_dir}?", yes)
    done = export_runs(chosen, dest, runs_dir)
    for line in done.left_out:
        _say(f"guildlite: warning: left out {line}", err=True)
    if not as_json:
        for run_id in done.ids:
            _say(f"exported {run_id}")
    if move:
        from .._manage import remove

        remove(chosen)
    if as_json:
        click.echo(json.dumps([{"run_id": i, "action": "moved" if move else "exported"} for i in done.ids], indent=2))
    _say(f"{len(done.ids)} run(s) {'moved' if move else 'exported'} to {dest}", err=True)


@click.command("import", context_settings=CONTEXT)
@click.argument("source", required=False, type=click.Path(path_type=Path), metavar="SRC | --from-guild [GUILD_HOME]")
@click.option("--from-guild", "from_guild", is_flag=True,
              help="Import Guild AI runs from GUILD_HOME/runs (default: $GUILD_HOME, else ~/.guild).")
@click.option("--rename", is_flag=True, help="Give a run whose id is taken here a new id (default: refuse).")
@click.option("--dry-run", is_flag=True, help="Check everything and say what would be imported; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary: one object per run.")
@click.option("--max-file-size", type=click.IntRange(min=0), default=None,
              help="With --from-guild: bytes; a file of a Guild run larger than this is not copied (default 1 GiB).")
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_import(
    group_runs_dir: Path,
    source: Path | None,
    from_guild: bool,
    rename: bool,
    dry_run: bool,
    as_json: bool,
    max_file_size: int | None,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Import runs: SRC from `runs export` (a directory or a .tar.gz), or with --from-guild another
    tool's run history (Guild AI's).

    An export is checked as untrusted input, all of it before anything is imported; a run id
    already here is refused unless --rename. With --from-guild, a Guild run already imported (by
    its Guild id) is skipped, so importing again brings in only what is new; runs still running
    or never started are skipped and say so."""
    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    if not from_guild:
        if source is None:
            raise click.UsageError("say what to import: SRC (a `runs export` directory or .tar.gz), "
                                   "or --from-guild [GUILD_HOME]")
        if max_file_size is not None:
            raise click.UsageError("--max-file-size goes with --from-guild")
        _import_export(source, runs_dir, rename, dry_run, as_json)
        return
    if rename:
        raise click.UsageError("--rename goes with SRC, not --from-guild (Guild runs get new ids anyway)")
    if source is not None and source.is_file():
        raise click.UsageError(f"GUILD_HOME {str(source)!r} is a file, not a directory")
    from .._guild_import import MAX_FILE_SIZE, default_home, import_runs

    home = source or default_home()

    def progress(o: Any, i: int, n: int) -> None:
        where = f" as {o.run_id}" if o.run_id else ""
        what = f" ({o.op}, {o.status})" if o.status else ""
        _say(f"[{i}/{n}] {o.action} {o.guild_id}{where}{what}" + (f": {o.reason}" if o.reason else ""), err=True)

    outcomes = import_runs(home, runs_dir, dry_run=dry_run, progress=progress,
                           max_file_size=MAX_FILE_SIZE if max_file_size is None else max_file_size)
    if as_json:
        click.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.action] = counts.get(o.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no Guild runs"
    _say(f"{summary} ({home} -> {runs_dir})", err=True)
    if counts.get("failed"):
        sys.exit(1)


def _import_export(source: Path, runs_dir: Path, rename: bool, dry_run: bool, as_json: bool) -> None:
    from .._import_runs import import_runs

    done = import_runs(source, runs_dir, rename=rename, dry_run=dry_run)
    action = "would import" if dry_run else "imported"
    if as_json:
        click.echo(json.dumps([{"run_id": d.run_id, "source_id": d.source_id, "action": action.replace(" ", "-")}
                               for d in done], indent=2))
    else:
        for d in done:
            _say(f"{action} {d.source_id}" + (f" as {d.run_id}" if d.run_id != d.source_id else ""))
    _say(f"{len(done)} run(s) {action} ({source} -> {runs_dir})", err=True)
