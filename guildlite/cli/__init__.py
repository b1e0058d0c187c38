"""The ``guildlite`` command line: thin click commands over the library.

Nothing heavy is imported at start-up: each command's module is imported when that command runs
(``_COMMANDS``), and each command imports what it needs when it runs.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys

import click

from .. import __version__
from ._common import CONTEXT, _Group

__all__ = ["cli", "main"]

# name: (module, attribute, the summary `guildlite --help` shows: the first sentence of the command's
# docstring, as click would take it). A test checks each summary against its command.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "check": (".check", "check", "Check this machine and project: versions (guildlite, python, torch, CUDA), GPUs, each "
              "backend's needs, the runs dir (writable, lock mode), the guildfile, its plugins."),
    "cat": (".inspect", "cat", "Print a file of a run (default: output.log): a regular file inside the run dir only."),
    "compare": (".inspect", "compare",
                "One row per run: id, op, status, started, time, every flag, the last value of each scalar."),
    "diff": (".inspect", "diff", "Compare two runs (flags side by side, then a diff of the staged source)."),
    "gpus": (".gpus", "gpus",
             "Show each GPU, the run holding its lease (user, since when), and the queue of runs waiting."),
    "label": (".manage", "label", "Set (or --clear) the label of runs: RUNS, or those --filter EXPR matches, or both."),
    "ls": (".inspect", "ls", "List a run's files with their sizes."),
    "note": (".find", "note", "Add a note to a run (kept with the time it was written); without TEXT, show its notes."),
    "ops": (".ops", "ops", "List the guildfile's operations with their flags."),
    "run": (".run", "run", "Run OPERATION with flags given as NAME=VALUE."),
    "runs": (".runs", "runs", "List runs, newest first."),
    "select": (".find", "select_cmd", "Print the id of the best run: the lowest --min SCALAR or highest --max SCALAR "
               "among RUNS (default: all) that --filter matches."),
    "stop": (".manage", "stop",
             "Stop running runs: SIGTERM through guildlite to torchrun and every rank; status terminated."),
    "tag": (".manage", "tag",
            "Add (+TAG) or remove (-TAG) tags on runs: RUNS, or those --filter EXPR matches, or both."),
    "tensorboard": (".view", "tensorboard_cmd", "View runs' scalars in TensorBoard."),
    "view": (".view", "view", "Browse runs in a web page (table, curves, batch plots)."),
    "watch": (".watch", "watch",
              "Follow RUN's output and status until it ends (default: the newest run not yet ended)."),
}

# Subcommands kept in another module than their group's, added to the group when it is imported.
_ATTACHED: dict[str, tuple[tuple[str, str], ...]] = {"runs": ((".share", "runs_export"), (".share", "runs_import"))}


class _LazyGroup(_Group):
    """A group whose commands (``_COMMANDS``) are imported when one of them is asked for: the
    group's own help lists them from their summaries, importing none."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attr, _ = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module, __name__), attr)
            for module, attr in _ATTACHED.get(cmd_name, ()):
                command.add_command(getattr(importlib.import_module(module, __name__), attr))
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, _summary(self.commands.get(name), name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _summary(command: click.Command | None, name: str, limit: int) -> str:
    """A command's line in the group's help: from the command once imported, else from its summary
    (shortened by click's own rule, as the command's docstring would be)."""
    return (command or click.Command(name, help=_COMMANDS[name][2])).get_short_help_str(limit)


@click.group(cls=_LazyGroup, context_settings=CONTEXT)
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
        # Only a process that called a hook has imported _hookcall: the others (--help, listings)
        # have no hook thread to wait for, and need not import it to find that out.
        if (hookcall := sys.modules.get("guildlite._hookcall")) is not None:
            hookcall.exit_if_hooks_hang(e.code)  # a hook given up on, or a thread it started, must not hold the exit
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
