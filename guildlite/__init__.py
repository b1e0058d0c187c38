"""guildlite: tracked, file-based ML runs launched with torchrun, with batches and plugins.

The names here are the public API for plugin authors and training scripts; everything in the
underscored modules may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._errors import FlagError, GuildfileError, GuildliteError, PluginError, RunNotFoundError
from ._plugins import Plugin, StopRun, hook
from ._runs import Run
from ._scalars import log_scalars

__all__ = [
    "FlagError",
    "GuildfileError",
    "GuildliteError",
    "Plugin",
    "PluginError",
    "Run",
    "RunNotFoundError",
    "StopRun",
    "__version__",
    "hook",
    "log_scalars",
]
