"""The local backend: a run's job is a process here (torchrun and its ranks, or python), child of
the guildlite process that owns the run (in the foreground, or the detached supervisor)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from . import Backend

if TYPE_CHECKING:
    from .._run import Run
    from . import Launched

# What the end of a run needs to be recorded (run.json, twice, and a few scalars) when the job
# filled the disk: held from the start, freed just before the end is written.
_RESERVE_BYTES = 256 * 1024


class LocalBackend(Backend):
    """Jobs as child processes of the owning guildlite; ``guildlite stop`` signals that owner."""

    name = "local"

    def submit(self, run: Run, argv: Sequence[str], env: Mapping[str, str],
               on_exit: Callable[[Launched, int], None], *, echo: bool, grace: float) -> Launched:
        from .._launch import Job

        _reserve(run.paths.reserve)
        job = Job(argv, run.run_dir, env, run.paths.output_log, echo=echo, on_exit=on_exit, grace=grace)
        job.start()
        return job


def _reserve(path: Path) -> None:
    """Create ``path`` with _RESERVE_BYTES of allocated blocks (not a sparse file: glibc writes
    zeros where the filesystem cannot allocate)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, _RESERVE_BYTES)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
