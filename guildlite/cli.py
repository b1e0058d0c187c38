"""The ``guildlite`` command line: thin click commands over the library.

Nothing heavy is imported at start-up: each command imports what it needs when it runs.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import click

from . import __version__
from ._errors import GuildliteError
from ._terminal import printable

if TYPE_CHECKING:
    from ._runs import Run


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


class _RunsGroup(_Group):
    """``guildlite runs``: a word that is not a subcommand is most likely a run selector."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            raise click.UsageError(
                f"'{args[0]}' is not a subcommand of runs ({', '.join(self.commands)}). To look at selected "
                f"runs: guildlite compare {args[0]}, or guildlite runs info RUN", ctx)
        return super().resolve_command(ctx, args)


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


def _guildfile_option(f: Any = None, *, short: bool = True) -> Any:
    option = click.option(
        *(["-f"] if short else []),
        "--guildfile",
        type=click.Path(exists=True, path_type=Path),
        help="The guildfile (default: guildfile.yml here or in a parent directory).",
    )
    return option(f) if f is not None else option


# --- run -----------------------------------------------------------------------------------------


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="OPERATION [NAME=VALUE]...")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("-l", "--label", default="", help="A label for the run.")
@click.option("--nproc-per-node", type=int, help="Processes (ranks) per run; default: the op's nproc-per-node.")
@click.option("--stage", "stage_only", is_flag=True, help="Stage the run (dir, source, run.json) without starting it.")
@click.option("--parallel", type=int,
              help="Batch: trials running at once (default 1; with --backend slurm, every trial is queued at once).")
@click.option("--gpus", help="Batch: GPU ids to share out as slots (default: CUDA_VISIBLE_DEVICES or all).")
@click.option("--max-trials", type=int, help="Batch: at most N trials (random search: exactly N, default 20).")
@click.option("--seed", type=int, help="Batch: seed for random search (same seed, same trials).")
@click.option("--fail-on-trial-error", is_flag=True, help="Batch: start no new trial after one fails.")
@click.option("--plugin", "plugin_names", multiple=True, help="Enable an installed plugin by entry-point name.")
@click.option("--restart", "restart_spec", metavar="RUN",
              help="Run RUN again in its own dir (NAME=VALUE overrides flags); a batch re-runs unfinished trials.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's record as JSON when it ends.")
@click.option("--backend", type=click.Choice(["local", "slurm"]), help="Where runs run (default: the guildfile's, else local).")
@click.option("--nodes", type=int, help="SLURM: hosts per run (one torchrun agent each).")
@click.option("--partition", help="SLURM: the partition to submit to.")
@click.option("--time", "time_limit", help="SLURM: the time limit (e.g. 30, 1:00:00, 1-12).")
@click.option("--detach", is_flag=True, help="SLURM: return once submitted; the job records its own end.")
@_runs_dir_option
@_guildfile_option
def run(
    args: tuple[str, ...],
    restart_spec: str | None,
    yes: bool,
    label: str,
    nproc_per_node: int | None,
    stage_only: bool,
    parallel: int | None,
    gpus: str | None,
    max_trials: int | None,
    seed: int | None,
    fail_on_trial_error: bool,
    plugin_names: tuple[str, ...],
    as_json: bool,
    backend: str | None,
    nodes: int | None,
    partition: str | None,
    time_limit: str | None,
    detach: bool,
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
    from ._lifecycle import Session
    from ._operation import BATCH_CONFIRM_THRESHOLD, execute, open_guildfile, plan_run, restart

    for f in args:
        if f.startswith("-"):
            raise GuildliteError(f"unknown option {f!r} (see guildlite run --help)", exit_code=2)
    gf = open_guildfile(guildfile)
    if restart_spec:
        target = _select_one(_runs_dir(runs_dir, guildfile), restart_spec)
        job = restart(target, args, guildfile=gf, parallel=parallel, gpus=gpus, fail_fast=fail_on_trial_error,
                      plugin_names=plugin_names, echo=not as_json)
        if sys.stdin.isatty() and not yes and not as_json:
            what = f"{len(target.trial_ids)} trials of batch" if target.is_batch else "run"
            if not click.confirm(f"Restart {what} {target.id}?", default=True):
                raise GuildliteError("cancelled", exit_code=1)
        if target.is_batch:
            job.session.progress = _BatchProgress(sum(t.status != "completed" for t in target.trials)).event
        _finish_run(job.execute(), as_json, stage_only=False)
        return
    if not args:
        raise GuildliteError("missing OPERATION (see guildlite ops)", exit_code=2)
    operation, flags = args[0], args[1:]
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
        backend=backend,
        slurm={"nodes": nodes, "partition": partition, "time": time_limit},
        detach=detach,
        confirm=None if yes else _confirm_large,
    )
    big = plan.trials is not None and len(plan.trials) > BATCH_CONFIRM_THRESHOLD
    if sys.stdin.isatty() and not yes and not big and not as_json:  # a large batch was asked already
        _show_plan(plan)
        if not click.confirm("Continue?", default=True):
            raise GuildliteError("cancelled", exit_code=1)
    session = Session(plan.config, plan.plugins)
    if plan.trials is not None:
        session.progress = _BatchProgress(len(plan.trials)).event
    _finish_run(execute(plan, stage_only=stage_only, fail_fast=fail_on_trial_error, session=session), as_json,
                stage_only, detached=detach)


def _finish_run(result: Run, as_json: bool, stage_only: bool, detached: bool = False) -> None:
    """Report a finished run and exit with its exit code (a detached run: once submitted)."""
    if detached and result.status in ("pending", "running"):
        if as_json:
            click.echo(json.dumps(_record(result), indent=2, default=str))
        else:
            what = "batch" if result.is_batch else "run"
            jobs = (result.remote or {}).get("job_ids") if isinstance(result.remote, dict) else None
            click.echo(f"guildlite: {what} {result.id} submitted (SLURM job {', '.join(map(str, jobs or []))});"
                       " see guildlite runs", err=True)
        return
    if as_json:
        click.echo(json.dumps(_record(result), indent=2, default=str))
    elif result.is_batch or result.status not in ("completed", "staged"):
        _say(_summary(result), err=True)
    if stage_only or result.status == "completed":
        return
    if result.exit_code:
        sys.exit(result.exit_code)
    sys.exit(1 if result.status != "terminated" else 143)


def _confirm_large(n: int) -> bool:
    """Asked (before any trial is planned) for a batch of more than BATCH_CONFIRM_THRESHOLD trials."""
    if not sys.stdin.isatty():
        raise GuildliteError(f"{n:,} trials: pass -y to confirm a batch this large", exit_code=2)
    return click.confirm(f"Run a batch of {n:,} trials?", default=False)


def _show_plan(plan: Any) -> None:
    from ._launch import display_command

    cfg = plan.config
    if plan.trials is not None:
        _say(f"You are about to run a batch of {len(plan.trials)} trial(s) of {cfg.op.name}"
                   f" ({len(plan.slots)} at a time)")
        flags = plan.batch_flags
    else:
        _say(f"You are about to run {cfg.op.name}")
        flags = plan.flags
    for k, v in flags.items():
        _say(f"  {k}: {_fmt(v)}")
    _say(f"  command: {display_command(plan.command)}")
    _say(f"  runs dir: {cfg.runs_dir}")


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
            _say(f"guildlite: trial {n}/{self.total} {run.id} started{gpus}: {flags}", err=True)
        elif event == "end":
            if run.started:
                self.running -= 1
            self.done += 1
            self.failed += run.status != "completed"
            elapsed = time.monotonic() - self.t0
            eta = elapsed / self.done * (self.total - self.done)
            _say(
                f"guildlite: trial {n}/{self.total} {run.id} {run.status} | done {self.done}/{self.total}, "
                f"running {self.running}, failed {self.failed} | {elapsed:.0f}s elapsed, ETA {eta:.0f}s",
                err=True,
            )


# --- runs ----------------------------------------------------------------------------------------


def _runs_dir(runs_dir: Path | None, guildfile: Path | None) -> Path:
    from ._guildfile import default_runs_dir, find_guildfile, load, option_runs_dir

    if runs_dir:
        return option_runs_dir(runs_dir)
    found = guildfile or find_guildfile()
    if found is None or os.environ.get("GUILDLITE_RUNS_DIR"):
        return default_runs_dir(None)
    return default_runs_dir(load(found))


def _where(
    op: str | None,
    status: str | None,
    batch_id: str | None,
    label: str | None = None,
    batches: bool = True,
) -> Callable[[dict[str, Any]], bool]:
    """A filter on run records (op, status, batch and its trials, label text, batch runs or not)."""

    def match(rec: dict[str, Any]) -> bool:
        return (
            (op is None or rec.get("op") == op)
            and (status is None or rec.get("status") == status)
            and (batch_id is None or rec.get("parent") == batch_id or rec.get("id") == batch_id)
            and (label is None or label in (rec.get("label") or ""))
            and (batches or not rec.get("is_batch"))
        )

    return match


@cli.group(cls=_RunsGroup, invoke_without_command=True, context_settings=CONTEXT)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show every run (default: the newest 20).")
@click.option("-n", "--limit", type=click.IntRange(min=0), default=20, show_default=True, help="How many runs to show.")
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
    from ._runs import RunList

    everything = RunList(ctx.obj)
    index = {run_id: i for i, run_id in enumerate(everything.ids, 1)}
    if op or status or batch:
        # Filter the index's summaries: thousands of runs without reading every run.json.
        from ._index import load_summaries
        from ._runs import load_run, select_runs

        batch_id = select_runs(everything, [batch])[0].id if batch else None
        shown = [r for r, _ in load_summaries(everything, where=_where(op, status, batch_id))]
        shown = shown if show_all else shown[:limit]
        if as_json:
            shown = [load_run(r.run_dir) for r in shown]
    else:
        shown = everything[:] if show_all else everything[:limit]
    if as_json:
        click.echo(json.dumps([{"index": index[r.id], **_record(r)} for r in shown], indent=2, default=str))
        return
    filtered = bool(op or status or batch)
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
    hidden = len(everything) - limit
    if hidden > 0 and not show_all and not filtered:
        click.echo(f"({hidden} older runs not shown: --all)", err=True)


def _sub_runs_dir(group_runs_dir: Path, runs_dir: Path | None, guildfile: Path | None) -> Path:
    """A `runs` subcommand's runs dir: its own --runs-dir/-f when given, else the group's."""
    return _runs_dir(runs_dir, guildfile) if (runs_dir or guildfile) else group_runs_dir


def _select(runs_dir: Path, specs: Sequence[str], trash: bool = False) -> list[Run]:
    from ._runs import TRASH_DIR, RunList, select_runs

    pool = RunList(runs_dir / TRASH_DIR if trash else runs_dir)
    return select_runs(pool, specs) if specs else pool[:]


def _select_one(runs_dir: Path, spec: str) -> Run:
    chosen = _select(runs_dir, [spec])
    if len(chosen) != 1:
        raise GuildliteError(f"{spec!r} selects {len(chosen)} runs; give one", exit_code=2)
    return chosen[0]


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise GuildliteError(f"{question} Pass -y to confirm (stdin is not a terminal)", exit_code=2)
    if not click.confirm(question, default=False):
        raise GuildliteError("cancelled", exit_code=1)


@runs.command("info", context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_info(
    group_runs_dir: Path, run_spec: str, as_json: bool, runs_dir: Path | None, guildfile: Path | None
) -> None:
    """Show one run's record: flags, status, command, hook trace, environment."""
    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    r = _select_one(runs_dir, run_spec)
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
            _say(f"{k}: {v}")
    if r.error:
        click.echo(f"error: {json.dumps(r.error)}")
    click.echo("flags:")
    for k, v in r.flags.items():
        _say(f"  {k}: {_fmt(v)}")
    if r.is_batch:
        click.echo(f"trials: {len(r.trial_ids)}")
        for t in r.trials:
            _say(f"  {t.id} {t.status} " + _flags_summary(t))
    if r.plugins:
        click.echo("hooks:")
        for call in r.plugins:
            err = f"  ERROR {call['error']}" if call.get("error") else ""
            _say(f"  {call['hook']:<14} {call['plugin']:<20} prio {call['priority']:<5}"
                       f" {call['seconds'] * 1000:8.1f} ms{err}")
    if r.attrs:
        click.echo("attrs:")
        for k, v in r.attrs.items():
            _say(f"  {k}: {json.dumps(v, default=str)}")


@runs.command("delete", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, metavar="RUNS...")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.option("--force", is_flag=True, help="Also delete runs that are running.")
@_runs_dir_option
@_guildfile_option
@click.pass_obj
def runs_delete(
    group_runs_dir: Path,
    specs: tuple[str, ...],
    yes: bool,
    force: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Move runs (a batch with its trials) to the trash (runs/.trash); see restore and purge."""
    from ._manage import delete
    from ._runs import with_trials

    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    chosen = with_trials(_select(runs_dir, specs))
    _confirm(f"Delete {len(chosen)} run(s) (to the trash)?", yes)
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
    from ._manage import restore

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
    from ._manage import abandoned, purge, remove_leftover

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
    from ._runs import with_trials

    runs_dir = _sub_runs_dir(group_runs_dir, runs_dir, guildfile)
    chosen = with_trials(_select(runs_dir, specs, trash=True))  # a batch goes with its trials
    if not chosen:
        if not quiet_if_empty:
            click.echo("the trash is empty", err=True)
        return
    _confirm(question.format(n=len(chosen)), yes)
    for r in action(chosen):
        _say(f"{done} {r.id}")


@cli.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@click.option("--columns", help="Comma-separated columns to show (default: all).")
@click.option("--sort", "sort_key", help="Sort by a column; -COLUMN for descending (e.g. --sort loss).")
@click.option("--min-max", is_flag=True, help="Add the min and max of each scalar.")
@click.option("--op", help="Only runs of this operation.")
@click.option("--status", help="Only runs with this status.")
@click.option("--label", help="Only runs whose label contains this text.")
@click.option("--batch", help="Only the trials of this batch (a selector).")
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
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """One row per run: id, op, status, started, time, every flag, the last value of each scalar."""
    from ._index import load_records
    from ._inspect import compare_table, sort_rows
    from ._runs import RunList, select_runs

    rd = _runs_dir(runs_dir, guildfile)
    everything = RunList(rd)
    ids = [r.id for r in select_runs(everything, specs)] if specs else None
    batch_id = select_runs(everything, [batch])[0].id if batch else None
    # Batch runs have no scalars of their own: shown only when selected by name.
    where = _where(op, status, batch_id, label, batches=bool(specs))
    loaded = load_records(everything, ids, scalars=True, where=where)
    chosen = [rec for _, rec, _ in loaded if rec["id"] != batch_id]
    cols, rows = compare_table(chosen, {rec["id"]: sc for _, rec, sc in loaded}, min_max=min_max)
    if sort_key:
        if sort_key.lstrip("-") not in cols:
            raise GuildliteError(f"--sort: no column {sort_key.lstrip('-')!r}; columns: {', '.join(cols)}", exit_code=2)
        rows = sort_rows(rows, sort_key)
    if columns:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in cols]
        if unknown:
            raise GuildliteError(f"--columns: no column {unknown[0]!r}; columns: {', '.join(cols)}", exit_code=2)
        cols = wanted
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
    if kind is float:
        return f"{v:.6g}"
    if kind is str or kind is int:
        return str(v)
    return _fmt(v)


CAT_MAX_BYTES = 1 << 30  # `cat` prints at most this much by default: a sparse file of terabytes must not stream for hours


@cli.command(context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN")
@click.argument("path", default="output.log")
@click.option("--max-bytes", type=click.IntRange(min=0), default=CAT_MAX_BYTES, show_default=True,
              help="Print at most this many bytes (0: no bound); a longer file is cut, with exit status 1.")
@_runs_dir_option
@_guildfile_option
def cat(run_spec: str, path: str, max_bytes: int, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Print a file of a run (default: output.log): a regular file inside the run dir only."""
    from ._inspect import open_run_file

    r = _select_one(_runs_dir(runs_dir, guildfile), run_spec)
    left = max_bytes or -1
    with open_run_file(r, path) as f:
        while left and (chunk := f.read(1 << 16 if left < 0 else min(left, 1 << 16))):
            sys.stdout.buffer.write(chunk)
            left -= len(chunk) if left > 0 else 0
        cut = left == 0 and f.read(1) != b""
        size = os.fstat(f.fileno()).st_size
    sys.stdout.flush()
    if cut:
        raise GuildliteError(f"{path!r} of run {r.id} cut after {max_bytes} bytes of {size} "
                             "(--max-bytes N for more, 0 for all)")


@cli.command(context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include guildlite's own files (.guildlite/).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_runs_dir_option
@_guildfile_option
def ls(run_spec: str, show_all: bool, as_json: bool, runs_dir: Path | None, guildfile: Path | None) -> None:
    """List a run's files with their sizes."""
    from ._inspect import run_files

    r = _select_one(_runs_dir(runs_dir, guildfile), run_spec)
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


@cli.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, metavar="RUN [RUN2]")
@click.option("--source-only", is_flag=True, help="Only the source diff.")
@click.option("--flags-only", is_flag=True, help="Only the flags.")
@_runs_dir_option
@_guildfile_option
def diff(specs: tuple[str, ...], source_only: bool, flags_only: bool, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Compare two runs (flags side by side, then a diff of the staged source).

    With one RUN: its staged source against the project's current source, which shows what an
    on_run_staged plugin (or a later edit) changed.
    """
    from ._inspect import Tree, diff_flags, diff_trees, project_dir, source_files

    if len(specs) > 2:
        raise GuildliteError("diff takes one or two runs", exit_code=2)
    rd = _runs_dir(runs_dir, guildfile)
    a = _select_one(rd, specs[0])
    a_files, notes = source_files(a)
    if len(specs) == 2:
        b = _select_one(rd, specs[1])
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


@cli.command(context_settings=CONTEXT)
@click.argument("args", nargs=-1, required=True, metavar="RUNS... TEXT")
@click.option("--clear", is_flag=True, help="Remove the label (then give only RUNS).")
@_runs_dir_option
@_guildfile_option
def label(args: tuple[str, ...], clear: bool, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Set (or --clear) the label of runs."""
    from ._manage import set_label

    if clear:
        specs, text = args, ""
    elif len(args) < 2:
        raise GuildliteError("give RUNS and a TEXT (or --clear)", exit_code=2)
    else:
        specs, text = args[:-1], args[-1]
    chosen = _select(_runs_dir(runs_dir, guildfile), specs)
    set_label(chosen, text)
    for r in chosen:
        _say(f"{r.id}: {text!r}" if text else f"{r.id}: label cleared")


# No short options here: `-fast` or `-hot` is a tag to remove, not -f or -h.
@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("args", nargs=-1, required=True, metavar="RUNS... +TAG|-TAG...")
@_runs_dir_option
@_guildfile_option(short=False)
def tag(args: tuple[str, ...], runs_dir: Path | None, guildfile: Path | None) -> None:
    """Add (+TAG) or remove (-TAG) tags on runs."""
    from ._manage import set_tags

    changes = [a for a in args if a[:1] in "+-"]
    specs = [a for a in args if a[:1] not in "+-"]
    if not changes or not specs:
        raise GuildliteError("give RUNS and at least one +TAG or -TAG", exit_code=2)
    chosen = _select(_runs_dir(runs_dir, guildfile), specs)
    set_tags(chosen, changes)
    for r in _select(_runs_dir(runs_dir, guildfile), [r.id for r in chosen]):
        _say(f"{r.id}: {' '.join(r.tags) or '(no tags)'}")


@cli.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, metavar="RUNS...")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for a graceful stop.")
@click.option("--force", is_flag=True, help="SIGKILL what is still running after --timeout.")
@_runs_dir_option
@_guildfile_option
def stop(specs: tuple[str, ...], timeout: float, force: bool, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Stop running runs: SIGTERM through guildlite to torchrun and every rank; status terminated.

    A trial still waiting in a running batch is not started (recorded terminated when its turn comes)."""
    from ._manage import stop as stop_runs

    chosen = _select(_runs_dir(runs_dir, guildfile), specs)
    done = stop_runs(chosen, timeout=timeout, force=force, log=lambda m: _say(m, err=True))
    if not done.runs and not done.refused:
        states = ", ".join(f"{r.id} is {r.status}" for r in chosen[:3]) + (", ..." if len(chosen) > 3 else "")
        _say(f"nothing to stop: no selected run is running ({states})", err=True)
    for r in done.runs:
        _say(f"{r.id} staged: its batch will not start it" if r.status == "staged" else f"{r.id} {r.status}")
    if done.refused:
        raise GuildliteError(f"{len(done.refused)} run(s) not stopped: nothing was signalled for them (see above)")


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
                "flags_dest": op.flags_dest,
                "flags": {f.name: {**f.__dict__, "type": f.value_type} for f in op.flags.values()},
            }
            for name, op in operations.items()
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for name, op in operations.items():
        dest = "" if op.flags_dest == "args" else f", flags-dest {op.flags_dest}"
        _say(f"{name}  ({op.main}, {op.launcher}, nproc-per-node {op.nproc_per_node}{dest})"
             + (f"  {op.description}" if op.description else ""))
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
            _say(f"  {f.name:<16} {f.value_type or '':<6} default {_fmt(f.default):<10} {desc}".rstrip())


# --- view, tensorboard ---------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one self-contained HTML file and exit (no server).")
@click.option("--no-browser", is_flag=True, help="Do not open a web browser.")
@_runs_dir_option
@_guildfile_option
def view(
    specs: tuple[str, ...], port: int, out: Path | None, no_browser: bool, runs_dir: Path | None, guildfile: Path | None
) -> None:
    """Browse runs in a web page (table, curves, batch plots).

    RUNS selects runs (default: all; a batch comes with its trials). The table sorts and filters in
    the browser, trials under their batch; a run shows its flags, hook trace, output and files;
    ticked runs' scalars are plotted over steps, overlaid; a batch plots its final metric against
    each flag. The page works offline: served on 127.0.0.1 until Ctrl-C, or written as one HTML
    file with --out. Needs plotly: pip install 'guildlite[view]'.
    """
    from ._view_data import load_view
    from ._view_page import plotly_js, write_report
    from ._view_server import serve

    plotly_js()  # fails early, with the pip command, when plotly is missing
    rd = _runs_dir(runs_dir, guildfile)
    if out is not None:
        data = load_view(rd, specs)
        size = write_report(out, data)
        click.echo(f"guildlite: wrote {out} ({len(data['runs'])} runs, {size / 1e6:.1f} MB)", err=True)
        return
    if specs:
        _select(rd, specs)  # a bad selector is an error now, not on the first page load
    serve(lambda details: load_view(rd, specs, details), rd, port=port, open_browser=not no_browser, echo=click.echo)


@cli.command("tensorboard", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...")
@click.option("--logdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the event files (default: a new temp dir, removed when TensorBoard stops).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="TensorBoard's port on 127.0.0.1 (0: a free one).")
@click.option("--no-server", is_flag=True, help="Only write the event files and print the logdir.")
@_runs_dir_option
@_guildfile_option
def tensorboard_cmd(
    specs: tuple[str, ...],
    logdir: Path | None,
    port: int,
    no_server: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """View runs' scalars in TensorBoard.

    RUNS selects runs (default: all; a batch comes with its trials). Their scalars are written as
    event files, one sub-dir per run named by its id, label and flags (a run whose scalars did not
    change since the last write into --logdir is left as it is); then TensorBoard runs on
    127.0.0.1 until Ctrl-C. --no-server only writes the files and prints the logdir.
    Needs TensorBoard: pip install 'guildlite[tensorboard]'.
    """
    import tempfile

    from ._runs import with_trials
    from ._tensorboard import require, serve, write_logdir

    require()
    chosen = with_trials(_select(_runs_dir(runs_dir, guildfile), specs))
    temp = logdir is None
    target = Path(tempfile.mkdtemp(prefix="guildlite-tb-")) if logdir is None else logdir.resolve()
    written = write_logdir(chosen, target)
    fresh = sum(1 for _, _, n in written if n >= 0)
    click.echo(f"guildlite: {len(written)} runs in {target} ({fresh} written, {len(written) - fresh} unchanged)",
               err=True)
    if no_server:
        click.echo(str(target))
        return
    code = serve(target, port=port, echo=click.echo, cleanup=temp)
    if code:
        sys.exit(code)


# --- helpers -------------------------------------------------------------------------------------


def _record(run: Run) -> dict[str, Any]:
    return {**run.to_record(), "run_dir": str(run.run_dir)}


def _fmt(v: Any) -> str:
    from ._flags import format_value

    if v is None:
        return "null"
    if isinstance(v, str) and not v:
        return "''"
    return printable(format_value(v))


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


def _say(text: str, err: bool = False) -> None:
    """Print a line that shows record fields (labels, flags, ids...), control characters escaped."""
    click.echo(printable(text), err=err)


def _csv_cell(v: Any) -> Any:
    return printable(v) if isinstance(v, str) else v


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    lines = [[printable(str(c)) for c in r] for r in [header, *rows]]
    line = "  ".join(f"{{:<{max(map(len, col))}}}" for col in zip(*lines)).format
    click.echo("\n".join(line(*r).rstrip() for r in lines))


def main() -> None:
    """Console-script entry point."""
    # Listing and comparing build a few objects per run and free none of them until exit: with
    # the default thresholds, the cyclic GC re-walks them all again and again (a third of
    # `compare` over 100k runs). Collect rarely instead; reference counting frees the rest.
    gc.set_threshold(100_000, 20, 100)
    try:
        cli(prog_name="guildlite")
    except SystemExit as e:
        from ._hookcall import exit_if_hooks_hang

        exit_if_hooks_hang(e.code)  # a hook given up on, or a thread it started, must not hold the exit
        raise
