"""The error hierarchy: every user mistake is a GuildliteError with an exit code."""

from __future__ import annotations


class GuildliteError(Exception):
    """Root of guildlite's errors; the CLI prints the message and exits with ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class GuildfileError(GuildliteError):
    """guildfile.yml is missing, malformed or declares something invalid."""

    exit_code = 2


class FlagError(GuildliteError):
    """A flag value given on the command line is unknown, mistyped or out of range."""

    exit_code = 2


class RunNotFoundError(GuildliteError):
    """A run selector matched no run, or matched several where one was needed."""

    exit_code = 2


class PluginError(GuildliteError):
    """A plugin failed in a way that stopped the run."""

    exit_code = 1


class BadRecordError(RunNotFoundError):
    """A run directory whose record cannot be trusted: ``run.json`` unreadable, not an object, a
    field of the wrong type, or a directory name that is not a run id. Listings skip it with a
    warning; selecting it is this error."""

    def __init__(self, run_dir: object, problem: str) -> None:
        from ._terminal import printable  # a dir name may hold a newline or an ESC sequence

        super().__init__(printable(f"bad run record {run_dir}: {problem}"))
        self.run_dir = run_dir
        self.problem = problem
