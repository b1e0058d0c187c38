"""guildlite: tracked, file-based ML runs launched with torchrun, with batches and plugins.

The names here are the public API for plugin authors, training scripts and notebooks (``runs``,
``runs_frame``: read runs as ``RunInfo`` snapshots); everything in the
underscored modules may change. They are imported on first use, so ``import guildlite`` (and the
CLI's start-up) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import FlagError, GuildfileError, GuildliteError, PluginError, RunNotFoundError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._api import runs, runs_frame
    from ._batchspec import BatchDistribution, BatchValues
    from ._plugins import Plugin, StopRun, hook
    from ._runinfo import Note, RunInfo, Scalar
    from ._runview import Run
    from ._scalars import log_scalars

_LAZY = {
    "BatchDistribution": "._batchspec",
    "BatchValues": "._batchspec",
    "Plugin": "._plugins",
    "StopRun": "._plugins",
    "hook": "._plugins",
    "Run": "._runview",
    "log_scalars": "._scalars",
    "runs": "._api",
    "runs_frame": "._api",
    "RunInfo": "._runinfo",
    "Scalar": "._runinfo",
    "Note": "._runinfo",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'guildlite' has no attribute {name!r}")


__all__ = [
    "BatchDistribution",
    "BatchValues",
    "FlagError",
    "GuildfileError",
    "GuildliteError",
    "Note",
    "Plugin",
    "PluginError",
    "Run",
    "RunInfo",
    "RunNotFoundError",
    "Scalar",
    "StopRun",
    "__version__",
    "hook",
    "log_scalars",
    "runs",
    "runs_frame",
]
