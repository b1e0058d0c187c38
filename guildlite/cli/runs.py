"""``guildlite runs``: list runs, show one, delete, restore from the trash, purge (export and import:
``share``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import click

from .._choose import filtered_runs, runs_dir_for, select_one, select_with_trials
from .._errors import GuildliteError
from .._status import STATES
from . import _complete
from ._common import (
    CONTEXT,
    _cut,
    _filter_option,
    _flags_summary,
    _fmt,
    _Group,
    _guildfile_option,
    _local,
    _record,
    _runs_dir_option,
    _say,
    _table,
)

if TYPE_CHECKING:
    from .._run import Run


class _RunsGroup(_Group):
    """``guildlite runs``: a word that is not a subcommand is an error naming the subcommands. Only
    a word that reads as a run selector (``runs 1:3``) is pointed to the commands that take one;
    any other word (``runs export``) gets no hint: it is no other command's argument either."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-") and not ctx.resilient_parsing:
            from .._selection import looks_like_selector

            hint = (f". To look at selected runs: guildlite compare {args[0]}, or guildlite runs info RUN"
                    if looks_like_selector(args[0]) else "")
            raise click.UsageError(
                f"'{args[0]}' is not a subcommand of runs ({', '.join(self.commands)}){hint}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=_RunsGroup, invoke_without_command=True, context_settings=CONTEXT)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show every run (default: the newest 20).")
@click.option("-n", "--limit", type=click.IntRange(min=0), default=20, show_default=True, help="How many runs to show.")
@click.option("--op", help="Only runs of this operation.")
@click.option("--status", type=click.Choice(STATES))
@click.option("--batch", help="Only this batch and its trials (a selector).", shell_complete=_complete.runs)
@click.option("--upstream", metavar="RUN", shell_complete=_complete.runs, help="Only the runs whose files RUN used, directly or through others.")
@click.option("--downstream", metavar="RUN", shell_complete=_complete.runs, help="Only the runs that used RUN's files, directly or through others.")
@_filter_option
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list.")
@_runs_dir_option
@_guildfile_option
@click.pass_context
def runs(
    ctx: click.Context,
    show_all: bool,
    limit: int,
    op: str | None,
    status: str | None,
    batch: str | None,
    upstream: str | None,
    downstream: str | None,
    filter_expr: str | None,
    as_json: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """List runs, newest first. Selectors elsewhere: 1 = newest, 2:4, or an id prefix."""
    ctx.obj = runs_dir_for(runs_dir, guildfile)
    if ctx.invoked_subcommand is not None:
        return
    from .._selection import RunList

    everything = RunList(ctx.obj)
    index = {run_id: i for i, run_id in enumerate(everything.ids, 1)}
    among = None
    if upstream is not None or downstream is not None:
        from .._lineage import related

        among = related(everything, upstream, downstream)
    filtered = bool(op or status or batch or among is not None or filter_expr)
    if filtered:
        shown = filtered_runs(everything, op, status, batch, None if show_all else limit, whole=as_json, among=among,
                              filter=filter_expr)
    else:
        shown = everything[:] if show_all else everything[:limit]
    from .._queue import places

    place = places(shown)
    if as_json:
        click.echo(json.dumps([{"index": index[r.id], **_record(r), **_queued(r, place)} for r in shown], indent=2,
                              default=str))
        return
    # The numbers count every run dir, bad records too (numbering only the good ones would mean
    # reading every record for `runs 1`): say which numbers were skipped, and why.
    bad = [] if filtered else everything.bad_numbers(None if show_all else limit)
    if bad:
        nums = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        click.echo(f"({len(bad)} bad run record{'s' if len(bad) > 1 else ''} skipped: [{nums}], see the warnings above)",
                   err=True)
    if not shown:
        _say(f"no runs in {ctx.obj}" if not everything else "no runs match" if filtered
             else "no readable runs shown", err=True)
        if not filtered and not show_all and len(everything) > limit:
            click.echo(f"({len(everything) - limit} older runs not shown: --all)", err=True)
        return
    from .._progress import shown as progress
    from .._varying import flag_order

    order = flag_order(r.flags for r in shown)  # what tells the listed runs apart comes first
    rows = [
        (
            f"[{index[r.id]}]",
            r.id,
            r.op + (f" ({len(r.trial_ids)} trials)" if r.is_batch else f" ({len(r.step_ids)} steps)" if r.is_pipeline
                    else ""),
            _local(r.started or r.created),
            " ".join(x for x in (r.status + (f" #{place[r.id]}" if r.id in place else ""),
                                 progress(r.run_dir, r.status)) if x),
            ("↳ " + r.parent_id[-6:]) if r.parent_id else "",
            r.label,
            _flags_summary(r, order=order),
            *([(r.waiting or {}).get("reason", "")] if status == "pending" else []),
        )
        for r in shown
    ]
    waiting = ("waiting",) if status == "pending" else ()  # the queue: each run's place and why it waits
    _table(("#", "id", "op", "started", "status", "batch", "label", "flags", *waiting), rows)
    hidden = len(everything) - limit
    if hidden > 0 and not show_all and not filtered:
        click.echo(f"({hidden} older runs not shown: --all)", err=True)


def _queued(run: Run, place: dict[str, int]) -> dict[str, Any]:
    """A waiting run's place in this machine's queue, for ``--json`` (``waiting`` says why)."""
    return {"queue_position": place[run.id]} if run.id in place else {}


def _sub_runs_dir(group_runs_dir: Path, runs_dir: Path | None, guildfile: Path | None) -> Path:
    """A `runs` subcommand's runs dir: its own --runs-dir/-f when given, else the group's."""
    return runs_dir_for(runs_dir, guildfile) if (runs_dir or guildfile) else group_runs_dir


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise GuildliteError(f"{question} Pass -y to confirm (stdin is not a terminal)", exit_code=2)
    if not click.confirm(question, default=False):
        raise GuildliteError("cancelled", exit_code=1)


@runs.command("info", context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN", shell_complete=_complete.runs)
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_info(
    group_runs_dir: Path, run_spec: str, as_json: bool, runs_dir: Path | None, guildfile: Path | None
) -> None:
    """Show one run's record: flags, status, command, hook trace, environment.

    A line over 1000 characters (a label or flag value of megabytes) is cut, saying how much more
    there is; --json shows every value whole."""
    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    r = select_one(runs_dir, run_spec)
    from .._launch import display_command
    from .._lineage import lineage
    from .._queue import places

    graph = lineage(runs_dir)
    related = {"upstream": graph.upstream(r.id), "downstream": graph.downstream(r.id)}
    place = places([r])
    if as_json:
        click.echo(json.dumps({**_record(r), **_queued(r, place), "lineage": related}, indent=2, default=str))
        return
    from .._progress import shown as progress

    waiting = r.waiting or {}
    fields = [
        ("id", r.id),
        ("op", r.op),
        ("opspec", r.opspec),
        ("status", r.status),
        ("progress", progress(r.run_dir, r.status)),
        ("queue", (f"#{place[r.id]}: " if r.id in place else "") + f"{waiting.get('reason')} (since "
                  f"{_local(waiting.get('since'))})" if r.status == "pending" and waiting else ""),
        ("exit_code", r.exit_code),
        ("label", r.label),
        ("started", _local(r.started)),
        ("stopped", _local(r.stopped)),
        ("run_dir", r.run_dir),
        ("host", r.host),
        ("nproc_per_node", r.nproc_per_node),
        ("gpus", ",".join(r.gpus) if r.gpus else ""),
        ("batch" if r.is_trial else "pipeline" if r.parent_id else "", r.parent_id or ""),
        ("command", display_command(r.cmd) if r.cmd else ""),
    ]
    for k, v in fields:
        if k and v not in (None, ""):
            _line(f"{k}: {v}")
    for what, ids in related.items():  # whose files it used, who used its files
        if ids:
            click.echo(f"{what}:")
        for i in ids:
            op, status = graph.ops.get(i, ("?", "not in the runs dir"))
            _line(f"  {i} {op} {status}")
    if r.error:
        _line(f"error: {json.dumps(r.error)}")
    if r.notes:
        from .find import _show_note

        click.echo("notes:")
        for entry in r.notes:
            lines = str(entry.get("text") or "").splitlines()
            _show_note({**entry, "text": "\n".join(map(_cut, lines))})
    click.echo("flags:")
    for k, v in r.flags.items():
        _line(f"  {k}: {_fmt(v)}")
    if r.is_batch:
        click.echo(f"trials: {len(r.trial_ids)}")
        for t in r.trials:
            _line(f"  {t.id} {t.status} " + _flags_summary(t))
    if r.is_pipeline:
        planned = (r.pipeline or {}).get("steps") or []
        click.echo(f"steps: {len(r.step_ids)} of {len(planned)} run")
        for n, step in enumerate(planned, 1):
            step = step if isinstance(step, dict) else {}
            how = f" ({step['reused']})" if step.get("reused") else ""
            what = f"{step.get('run')} {step.get('status')}{how}" if step.get("run") else "not started"
            _line(f"  {n}. {' '.join([str(step.get('op')), *map(str, step.get('given') or [])])}: {what}"
                  + (f": {step['error']}" if step.get("error") else ""))
    if r.requires:
        click.echo("requires:")
        for q in r.requires:
            size = f"{q['size'] / 1e6:.1f} MB" if isinstance(q.get("size"), int) else "?"
            upstream = f" run {q['run']}" if q.get("run") else ""
            _line(f"  {q.get('kind')}: {q.get('source')} -> {q.get('target')}{upstream}  {size}"
                  f"  sha256 {str(q.get('sha256') or '-')[:16]}")
    if r.plugins:
        click.echo("hooks:")
        for call in r.plugins:
            err = f"  ERROR {call['error']}" if call.get("error") else ""
            calls = f" in {call['calls']} calls" if isinstance(call.get("calls"), int) else ""  # on_run_progress
            _line(f"  {call['hook']:<15} {call['plugin']:<20} prio {call['priority']:<5}"
                  f" {call['seconds'] * 1000:8.1f} ms{calls}{err}")
    if r.attrs:
        click.echo("attrs:")
        for k, v in r.attrs.items():
            _line(f"  {k}: {json.dumps(v, default=str)}")


def _line(text: str) -> None:
    _say(_cut(text))


@runs.command("delete", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...", shell_complete=_complete.runs)
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.option("--force", is_flag=True, help="Also delete runs that are running.")
@_filter_option
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_delete(
    group_runs_dir: Path,
    specs: tuple[str, ...],
    yes: bool,
    force: bool,
    filter_expr: str | None,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Move runs (a batch with its trials) to the trash (runs/.trash); see restore and purge.

    RUNS, or --filter EXPR, or both (the runs RUNS selects that EXPR matches)."""
    from .._manage import delete
    if not specs and not filter_expr:
        raise click.UsageError("give RUNS to delete, or --filter EXPR")
    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    chosen = select_with_trials(runs_dir, specs, filter=filter_expr)
    if not chosen:
        _say("no runs match: nothing deleted", err=True)
        return
    from .._lineage import dependents

    users = dependents(runs_dir, {r.id for r in chosen})
    for run_id, ids in users.items():  # their lineage would name a run in the trash
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        _say(f"guildlite: warning: run {run_id} is upstream of run(s) that used its files: {shown}", err=True)
    used = f" {len(users)} of them upstream of other runs (see above)." if users else ""
    _confirm(f"Delete {len(chosen)} run(s) (to the trash)?{used}", yes)
    for r in delete(chosen, force=force):
        _say(f"deleted {r.id}")


@runs.command("restore", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_restore(
    group_runs_dir: Path, specs: tuple[str, ...], yes: bool, runs_dir: Path | None, guildfile: Path | None
) -> None:
    """Move runs back from the trash (selectors count within the trash; default: all)."""
    from .._manage import restore

    _from_trash(restore, "restored", "Restore {n} run(s)?", group_runs_dir, specs, yes or bool(specs), runs_dir,
                guildfile)


@runs.command("purge", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_purge(
    group_runs_dir: Path, specs: tuple[str, ...], yes: bool, runs_dir: Path | None, guildfile: Path | None
) -> None:
    """Delete trashed runs permanently (selectors count within the trash; default: all).

    Without selectors, also delete what a guildlite killed mid-write left behind, once untouched
    for an hour: hidden .staging-* dirs and atomic writes' .*.tmp-* files in run dirs; and in runs
    that are not running, the space reserve and lock files whose holder is gone."""
    from .._manage import abandoned, purge, remove_leftover

    where = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    leftovers = [] if specs else abandoned(where)
    if leftovers:
        _confirm(f"Delete {len(leftovers)} leftover(s) of interrupted staging or writes?", yes)
        for p in leftovers:
            if remove_leftover(p):
                _say(f"removed {p.relative_to(where)}")
    _from_trash(purge, "purged", "Permanently delete {n} run(s)? This cannot be undone.", group_runs_dir, specs,
                yes, runs_dir, guildfile, quiet_if_empty=bool(leftovers))


def _from_trash(
    action: Callable[[Sequence[Run]], list[Run]],
    done: str,
    question: str,
    group_runs_dir: Path,
    specs: Sequence[str],
    yes: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
    quiet_if_empty: bool = False,
) -> None:
    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    chosen = select_with_trials(runs_dir, specs, trash=True)  # a batch goes with its trials
    if not chosen:
        if not quiet_if_empty:
            click.echo("the trash is empty", err=True)
        return
    _confirm(question.format(n=len(chosen)), yes)
    for r in action(chosen):
        _say(f"{done} {r.id}")
