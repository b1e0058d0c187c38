"""The ``guildlite`` command line: thin click commands over the library.

Nothing heavy is imported at start-up: each command imports what it needs when it runs.
"""

from __future__ import annotations

import gc
import os
import sys

import click

from .. import __version__
from ._common import CONTEXT, _Group
from .check import check
from .find import note, select_cmd
from .gpus import gpus
from .inspect import cat, compare, diff, ls
from .manage import label, stop, tag
from .ops import ops
from .run import run
from .runs import runs
from .share import runs_export, runs_import
from .view import tensorboard_cmd, view
from .watch import watch

__all__ = ["cli", "main"]


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


runs.add_command(runs_export)
runs.add_command(runs_import)
for _command in (run, runs, compare, cat, ls, diff, label, tag, note, select_cmd, stop, ops, view, tensorboard_cmd, watch,
                 gpus, check):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    # Listing and comparing build a few objects per run and free none of them until exit: with
    # the default thresholds, the cyclic GC re-walks them all again and again (a third of
    # `compare` over 100k runs). Collect rarely instead; reference counting frees the rest.
    gc.set_threshold(100_000, 20, 100)
    if _COMPLETE_VAR in os.environ:  # the shell asks what to complete (see README "Shell completion")
        _complete_quietly()
    try:
        cli(prog_name="guildlite")
    except SystemExit as e:
        from .._hookcall import exit_if_hooks_hang

        exit_if_hooks_hang(e.code)  # a hook given up on, or a thread it started, must not hold the exit
        raise


_COMPLETE_VAR = "_GUILDLITE_COMPLETE"  # click's name for prog_name "guildlite"


def _complete_quietly() -> None:
    """Answer the shell's completion request; whatever goes wrong (a broken guildfile, an odd
    command line) offers nothing rather than a traceback at the user's prompt."""
    try:
        cli(prog_name="guildlite", complete_var=_COMPLETE_VAR)
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001  # completion must never crash the prompt
        sys.exit(1)
