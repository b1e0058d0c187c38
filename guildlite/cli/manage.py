"""Changing runs: ``label``, ``tag``, ``stop``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import click

from .._choose import runs_dir_for, select
from .._errors import GuildliteError
from . import _complete
from ._common import (
    CONTEXT,
    _filter_option,
    _guildfile_option,
    _runs_dir_option,
    _say,
)

if TYPE_CHECKING:
    from .._run import Run


@click.command(context_settings=CONTEXT)
@click.argument("args", nargs=-1, metavar="[RUNS]... TEXT", shell_complete=_complete.runs)
@click.option("--clear", is_flag=True, help="Remove the label (then give only RUNS).")
@_filter_option
@_runs_dir_option
@_guildfile_option
def label(
    args: tuple[str, ...], clear: bool, filter_expr: str | None, runs_dir: Path | None, guildfile: Path | None
) -> None:
    """Set (or --clear) the label of runs: RUNS, or those --filter EXPR matches, or both."""
    from .._manage import set_label

    if clear:
        specs, text = args, ""
    elif len(args) < (1 if filter_expr else 2):
        raise GuildliteError("give RUNS and a TEXT (or --clear; or --filter EXPR and a TEXT)", exit_code=2)
    else:
        specs, text = args[:-1], args[-1]
    if not specs and not filter_expr:
        raise GuildliteError("give RUNS or --filter EXPR", exit_code=2)
    chosen = _chosen(runs_dir_for(runs_dir, guildfile), specs, filter_expr)
    set_label(chosen, text)
    for r in chosen:
        _say(f"{r.id}: {text!r}" if text else f"{r.id}: label cleared")


# No short options here: `-fast` or `-hot` is a tag to remove, not -f or -h.
@click.command(context_settings={**CONTEXT, "ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("args", nargs=-1, required=True, metavar="[RUNS]... +TAG|-TAG...", shell_complete=_complete.runs)
@_filter_option
@_runs_dir_option
@_guildfile_option(short=False)
def tag(args: tuple[str, ...], filter_expr: str | None, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Add (+TAG) or remove (-TAG) tags on runs: RUNS, or those --filter EXPR matches, or both."""
    from .._manage import set_tags

    changes = [a for a in args if a[:1] in "+-"]
    specs = [a for a in args if a[:1] not in "+-"]
    if not changes or not (specs or filter_expr):
        raise GuildliteError("give RUNS and at least one +TAG or -TAG (or --filter EXPR for RUNS)", exit_code=2)
    chosen = _chosen(runs_dir_for(runs_dir, guildfile), specs, filter_expr)
    set_tags(chosen, changes)
    for r in select(runs_dir_for(runs_dir, guildfile), [r.id for r in chosen]):
        _say(f"{r.id}: {' '.join(r.tags) or '(no tags)'}")


@click.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...", shell_complete=_complete.runs)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for a graceful stop.")
@click.option("--force", is_flag=True, help="SIGKILL what is still running after --timeout.")
@_filter_option
@_runs_dir_option
@_guildfile_option
def stop(
    specs: tuple[str, ...],
    timeout: float,
    force: bool,
    filter_expr: str | None,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Stop running runs: SIGTERM through guildlite to torchrun and every rank; status terminated.

    RUNS, or those --filter EXPR matches, or both. A trial still waiting in a running batch is not
    started (recorded terminated when its turn comes)."""
    from .._manage import stop as stop_runs

    if not specs and not filter_expr:
        raise click.UsageError("give RUNS to stop, or --filter EXPR")
    chosen = _chosen(runs_dir_for(runs_dir, guildfile), specs, filter_expr)
    done = stop_runs(chosen, timeout=timeout, force=force, log=lambda m: _say(m, err=True))
    if not done.runs and not done.refused:
        states = ", ".join(f"{r.id} is {r.status}" for r in chosen[:3]) + (", ..." if len(chosen) > 3 else "")
        _say(f"nothing to stop: no selected run is running ({states})", err=True)
    for r in done.runs:
        _say(f"{r.id} staged: its batch will not start it" if r.status == "staged" else f"{r.id} {r.status}")
    if done.refused:
        raise GuildliteError(f"{len(done.refused)} run(s) not stopped: nothing was signalled for them (see above)")


def _chosen(runs_dir: Path, specs: Sequence[str], filter_expr: str | None) -> list[Run]:
    """The runs a command changes (saying so on stderr when a --filter leaves none)."""
    chosen = select(runs_dir, specs, filter=filter_expr)
    if not chosen and filter_expr:
        _say("no runs match --filter: nothing changed", err=True)
    return chosen
