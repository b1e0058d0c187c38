"""The ``guildlite`` command line: thin click commands over the library.

Nothing heavy is imported at start-up: each command imports what it needs when it runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import click

from . import __version__
from ._errors import GuildliteError

if TYPE_CHECKING:
    from ._runs import Run


class _Group(click.Group):
    """Print guildlite's errors as one line (no traceback) and exit with their code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GuildliteError as e:
            click.echo(f"guildlite: error: {e}", err=True)
            ctx.exit(e.exit_code)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="guildlite")
def cli() -> None:
    """Tracked, file-based ML runs launched with torchrun.

    \b
    Quick start, in a project with a guildfile.yml:
      guildlite ops                       operations and their flags
      guildlite run train lr=0.01         one run
      guildlite run train lr=[0.1,0.01]   a batch of two trials
      guildlite runs                      what ran
    """


def _runs_dir_option(f: Any) -> Any:
    return click.option(
        "--runs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="GUILDLITE_RUNS_DIR",
        help="Where runs live (env GUILDLITE_RUNS_DIR; default: runs/ beside guildfile.yml).",
    )(f)


def _guildfile_option(f: Any) -> Any:
    return click.option(
        "-f",
        "--guildfile",
        type=click.Path(exists=True, path_type=Path),
        help="The guildfile (default: guildfile.yml here or in a parent directory).",
    )(f)


# --- run -----------------------------------------------------------------------------------------


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("operation")
@click.argument("flags", nargs=-1, type=click.UNPROCESSED)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("-l", "--label", default="", help="A label for the run.")
@click.option("--nproc-per-node", type=int, help="Processes (ranks) per run; default: the op's nproc-per-node.")
@click.option("--stage", "stage_only", is_flag=True, help="Stage the run (dir, source, run.json) without starting it.")
@click.option("--parallel", type=int, default=1, show_default=True, help="Batch: trials running at once.")
@click.option("--gpus", help="Batch: GPU ids to share out as slots (default: CUDA_VISIBLE_DEVICES or all).")
@click.option("--max-trials", type=int, help="Batch: at most N trials (random search: exactly N, default 20).")
@click.option("--seed", type=int, help="Batch: seed for random search (same seed, same trials).")
@click.option("--fail-on-trial-error", is_flag=True, help="Batch: start no new trial after one fails.")
@click.option("--plugin", "plugin_names", multiple=True, help="Enable an installed plugin by entry-point name.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's record as JSON when it ends.")
@_runs_dir_option
@_guildfile_option
def run(
    operation: str,
    flags: tuple[str, ...],
    yes: bool,
    label: str,
    nproc_per_node: int | None,
    stage_only: bool,
    parallel: int,
    gpus: str | None,
    max_trials: int | None,
    seed: int | None,
    fail_on_trial_error: bool,
    plugin_names: tuple[str, ...],
    as_json: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Run OPERATION with flags given as NAME=VALUE.

    \b
    A value in batch syntax makes a batch of trials:
      lr=[0.1,0.01]             grid (several lists: every combination)
      lr=range[1:5:2]           1, 3, 5        lr=linspace[0:1:5]   lr=logspace[-4:-1:4]
      lr=loguniform[1e-4:1e-1]  random search (--max-trials, --seed); also uniform, randint, choice[a,b]
    The exit code is the job's exit code (a batch: 0 only if every trial completed).
    """
    from ._operation import BATCH_CONFIRM_THRESHOLD, execute, open_guildfile, plan_run
    from ._lifecycle import Session

    for f in flags:
        if f.startswith("-"):
            raise GuildliteError(f"unknown option {f!r} (options go before the operation; see --help)", exit_code=2)
    gf = open_guildfile(guildfile)
    plan = plan_run(
        operation,
        flags,
        guildfile=gf,
        runs_dir=runs_dir,
        nproc=nproc_per_node,
        label=label,
        parallel=parallel,
        gpus=gpus,
        max_trials=max_trials,
        seed=seed,
        plugin_names=plugin_names,
        echo=not as_json,
    )
    interactive = sys.stdin.isatty() and not yes
    big = plan.trials is not None and len(plan.trials) > BATCH_CONFIRM_THRESHOLD
    if (interactive or (big and not yes)) and not as_json:
        _show_plan(plan)
        if not sys.stdin.isatty():
            raise GuildliteError(f"{len(plan.trials or [])} trials: pass -y to confirm a batch this large", exit_code=2)
        if not click.confirm("Continue?", default=True):
            raise GuildliteError("cancelled", exit_code=1)
    session = Session(plan.config, plan.plugins)
    if plan.trials is not None:
        session.progress = _BatchProgress(len(plan.trials)).event
    result = execute(plan, stage_only=stage_only, fail_fast=fail_on_trial_error, session=session)
    if as_json:
        click.echo(json.dumps(_record(result), indent=2, default=str))
    elif plan.trials is not None or result.status not in ("completed", "staged"):
        click.echo(_summary(result), err=True)
    if stage_only or result.status == "completed":
        return
    if result.exit_code:
        sys.exit(result.exit_code)
    sys.exit(1 if result.status != "terminated" else 143)


def _show_plan(plan: Any) -> None:
    from ._launch import display_command

    cfg = plan.config
    if plan.trials is not None:
        click.echo(f"You are about to run a batch of {len(plan.trials)} trial(s) of {cfg.op.name}"
                   f" ({len(plan.slots)} at a time)")
        flags = plan.batch_flags
    else:
        click.echo(f"You are about to run {cfg.op.name}")
        flags = plan.flags
    for k, v in flags.items():
        click.echo(f"  {k}: {_fmt(v)}")
    click.echo(f"  command: {display_command(plan.command)}")
    click.echo(f"  runs dir: {cfg.runs_dir}")


def _summary(run: Run) -> str:
    if run.is_batch:
        counts = (run.batch or {}).get("summary") or {"staged": len(run.trial_ids)}
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"guildlite: batch {run.id} {run.status} ({parts})"
    msg = f"guildlite: run {run.id} {run.status}"
    if run.error:
        where = f" in {run.error['plugin']}.{run.error['hook']}" if run.error.get("plugin") else ""
        msg += f"{where}: {run.error.get('message')}"
    return msg


class _BatchProgress:
    """One line per trial start and end, with done/running/failed counts and an ETA."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self.t0 = time.monotonic()
        self.index: dict[str, int] = {}

    def event(self, event: str, run: Run) -> None:
        if run.is_batch:
            return
        n = self.index.setdefault(run.id, len(self.index) + 1)
        flags = " ".join(f"{k}={_fmt(v)}" for k, v in run.flags.items())
        if event == "start":
            self.running += 1
            gpus = f" [gpus {','.join(run.gpus)}]" if run.gpus else ""
            click.echo(f"guildlite: trial {n}/{self.total} {run.id} started{gpus}: {flags}", err=True)
        elif event == "end":
            if run.started:
                self.running -= 1
            self.done += 1
            self.failed += run.status != "completed"
            elapsed = time.monotonic() - self.t0
            eta = elapsed / self.done * (self.total - self.done)
            click.echo(
                f"guildlite: trial {n}/{self.total} {run.id} {run.status} | done {self.done}/{self.total}, "
                f"running {self.running}, failed {self.failed} | {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
                err=True,
            )


# --- runs ----------------------------------------------------------------------------------------


def _runs_dir(runs_dir: Path | None, guildfile: Path | None) -> Path:
    from ._guildfile import default_runs_dir, find_guildfile, load

    if runs_dir:
        return runs_dir.resolve()
    found = guildfile or find_guildfile()
    if found is None or os.environ.get("GUILDLITE_RUNS_DIR"):
        return default_runs_dir(None)
    return default_runs_dir(load(found))


def _filtered(runs_dir: Path, op: str | None, status: str | None, batch: str | None) -> list[Run]:
    from ._runs import list_runs, select_runs

    runs = list_runs(runs_dir)
    batch_id = select_runs(runs, [batch])[0].id if batch else None
    return [
        r
        for r in runs
        if (op is None or r.op == op)
        and (status is None or r.status == status)
        and (batch_id is None or r.parent_id == batch_id or r.id == batch_id)
    ]


@cli.group(cls=_Group, invoke_without_command=True, context_settings=CONTEXT)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show every run (default: the newest 20).")
@click.option("-n", "--limit", type=int, default=20, show_default=True, help="How many runs to show.")
@click.option("--op", help="Only runs of this operation.")
@click.option("--status", type=click.Choice(["staged", "pending", "running", "completed", "error", "terminated"]))
@click.option("--batch", help="Only this batch and its trials (a selector).")
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
    as_json: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """List runs, newest first. Selectors elsewhere: 1 = newest, 2:4, or an id prefix."""
    ctx.obj = _runs_dir(runs_dir, guildfile)
    if ctx.invoked_subcommand is not None:
        return
    from ._runs import list_runs

    everything = list_runs(ctx.obj)
    index = {r.id: i for i, r in enumerate(everything, 1)}
    shown = _filtered(ctx.obj, op, status, batch) if (op or status or batch) else everything
    if not show_all:
        shown = shown[:limit]
    if as_json:
        click.echo(json.dumps([{"index": index[r.id], **_record(r)} for r in shown], indent=2, default=str))
        return
    if not shown:
        click.echo(f"no runs in {ctx.obj}" if not everything else "no runs match", err=True)
        return
    rows = [
        (
            f"[{index[r.id]}]",
            r.id,
            r.op + (f" ({len(r.trial_ids)} trials)" if r.is_batch else ""),
            _local(r.started or r.created),
            r.status,
            ("↳ " + r.parent_id[-6:]) if r.parent_id else "",
            r.label,
            _flags_summary(r),
        )
        for r in shown
    ]
    _table(("#", "id", "op", "started", "status", "batch", "label", "flags"), rows)
    hidden = len(everything) - len(shown)
    if hidden > 0 and not show_all and not (op or status or batch):
        click.echo(f"({hidden} older runs not shown: --all)", err=True)


@runs.command("info", context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@click.pass_obj
def runs_info(runs_dir: Path, run_spec: str, as_json: bool) -> None:
    """Show one run's record: flags, status, command, hook trace, environment."""
    from ._runs import list_runs, select_runs

    chosen = select_runs(list_runs(runs_dir), [run_spec])
    if len(chosen) != 1:
        raise GuildliteError(f"{run_spec!r} selects {len(chosen)} runs; runs info takes one", exit_code=2)
    r = chosen[0]
    from ._launch import display_command

    if as_json:
        click.echo(json.dumps(_record(r), indent=2, default=str))
        return
    fields = [
        ("id", r.id),
        ("op", r.op),
        ("opspec", r.opspec),
        ("status", r.status),
        ("exit_code", r.exit_code),
        ("label", r.label),
        ("started", _local(r.started)),
        ("stopped", _local(r.stopped)),
        ("run_dir", r.run_dir),
        ("host", r.host),
        ("nproc_per_node", r.nproc_per_node),
        ("gpus", ",".join(r.gpus) if r.gpus else ""),
        ("batch" if r.is_trial else "", r.parent_id or ""),
        ("command", display_command(r.cmd) if r.cmd else ""),
    ]
    for k, v in fields:
        if k and v not in (None, ""):
            click.echo(f"{k}: {v}")
    if r.error:
        click.echo(f"error: {json.dumps(r.error)}")
    click.echo("flags:")
    for k, v in r.flags.items():
        click.echo(f"  {k}: {_fmt(v)}")
    if r.is_batch:
        click.echo(f"trials: {len(r.trial_ids)}")
        for t in r.trials:
            click.echo(f"  {t.id} {t.status} " + _flags_summary(t))
    if r.plugins:
        click.echo("hooks:")
        for t in r.plugins:
            err = f"  ERROR {t['error']}" if t.get("error") else ""
            click.echo(f"  {t['hook']:<14} {t['plugin']:<20} prio {t['priority']:<5} {t['seconds'] * 1000:8.1f} ms{err}")
    if r.attrs:
        click.echo("attrs:")
        for k, v in r.attrs.items():
            click.echo(f"  {k}: {json.dumps(v, default=str)}")


# --- ops -----------------------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print operations as JSON.")
@_guildfile_option
def ops(as_json: bool, guildfile: Path | None) -> None:
    """List the guildfile's operations with their flags."""
    from ._flags_import import with_imported_flags
    from ._operation import open_guildfile

    gf = open_guildfile(guildfile)
    operations = {name: with_imported_flags(op, gf.dir) for name, op in gf.operations.items()}
    if as_json:
        out = {
            name: {
                "description": op.description,
                "main": op.main,
                "nproc_per_node": op.nproc_per_node,
                "gpus_per_trial": op.gpus_per_trial,
                "flags": {f.name: {**f.__dict__, "type": f.value_type} for f in op.flags.values()},
            }
            for name, op in operations.items()
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for name, op in operations.items():
        click.echo(f"{name}  ({op.main}, {op.launcher}, nproc-per-node {op.nproc_per_node})" + (f"  {op.description}" if op.description else ""))
        for f in op.flags.values():
            extra = []
            if f.choices:
                extra.append("choices: " + ", ".join(_fmt(c) for c in f.choices))
            if f.min is not None or f.max is not None:
                extra.append(f"range: {_fmt(f.min) if f.min is not None else ''}..{_fmt(f.max) if f.max is not None else ''}")
            if f.required:
                extra.append("required")
            if f.source != "guildfile":
                extra.append(f"from {f.source}")
            desc = "  ".join(x for x in (f.description, f"({'; '.join(extra)})" if extra else "") if x)
            click.echo(f"  {f.name:<16} {f.value_type or '':<6} default {_fmt(f.default):<10} {desc}".rstrip())


# --- helpers -------------------------------------------------------------------------------------


def _record(run: Run) -> dict[str, Any]:
    return {**run.to_record(), "run_dir": str(run.run_dir)}


def _fmt(v: Any) -> str:
    from ._flags import format_value

    if v is None:
        return "null"
    if isinstance(v, str) and not v:
        return "''"
    return format_value(v)


def _flags_summary(run: Run, width: int = 60) -> str:
    text = " ".join(f"{k}={_fmt(v)}" for k, v in run.flags.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _local(iso: str | None) -> str:
    if not iso:
        return ""
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]
    for r in cols:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="guildlite")
