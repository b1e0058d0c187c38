"""``guildlite check``: what a run needs here, one line each."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import CONTEXT, _guildfile_option, _runs_dir_option, _say


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@_runs_dir_option
@_guildfile_option
def check(as_json: bool, runs_dir: Path | None, guildfile: Path | None) -> None:
    """Check this machine and project: versions (guildlite, python, torch, CUDA), GPUs, each
    backend's needs, the runs dir (writable, lock mode), the guildfile, its plugins.

    Each line starts with [ok], [warn] (worth knowing) or [fail] (something a run needs is
    broken); the exit status is 1 when any line fails."""
    from .._check import as_json as to_json
    from .._check import check as run_checks
    from .._check import failed

    findings = run_checks(runs_dir, guildfile)
    if as_json:
        click.echo(to_json(findings))
    else:
        for f in findings:
            _say(f"{'[' + f.status + ']':<7}{f.what}: {f.text}")
    if failed(findings):
        sys.exit(1)
