"""Shell completion callbacks (click's ``shell_complete``) over ``_completion``: what the option
or argument being completed may take, found from the command line typed so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem


def _given(ctx: click.Context, name: str) -> Any:
    """A parameter typed so far on this command or a group above it (``runs --runs-dir X info``)."""
    c: click.Context | None = ctx
    while c is not None:
        value = c.params.get(name)
        if value is not None:
            return value
        c = c.parent
    return None


def _items(candidates: list[tuple[str, str]]) -> list[CompletionItem]:
    return [CompletionItem(value, help=help or None) for value, help in candidates]


def runs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Run ids (or short ids) of the runs dir the command line names."""
    from .._completion import run_selectors

    runs_dir: Path | None = _given(ctx, "runs_dir")
    return _items(run_selectors(incomplete, runs_dir, _given(ctx, "guildfile")))


def run_args(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``run``'s arguments: the operation, then its ``NAME=`` flags (``--start``: staged runs)."""
    from .._completion import flag_items, op_names, run_selectors

    given = [a for a in (ctx.params.get("args") or ()) if not a.startswith("-")]
    guildfile = ctx.params.get("guildfile")
    if ctx.params.get("start_staged"):
        return _items(run_selectors(incomplete, ctx.params.get("runs_dir"), guildfile,
                                    where=lambda r: r.status == "staged"))
    if ctx.params.get("restart_spec"):
        return []  # the restarted run's op is in its record; its flags are whatever it had
    if not given:
        return _items(op_names(incomplete, guildfile) if "=" not in incomplete else [])
    return _items(flag_items(given[0], given[1:], incomplete, guildfile))
