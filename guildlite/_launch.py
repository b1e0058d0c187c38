"""Launching one job: the torchrun command line, the process, its output, its signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ._flags import format_value

_PR_SET_PDEATHSIG = 1


def torchrun_command(main: str, flags: Mapping[str, Any], nproc: int) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N <main> --name=value ...``.

    ``--standalone`` makes torchrun bind its own free rendezvous port, so jobs started side by side
    (parallel trials) never share one.
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *main.split(),
        *flag_args(flags),
    ]


def flag_args(flags: Mapping[str, Any]) -> list[str]:
    """Flags as ``--name=value`` (one argv item each: a value starting with '-' stays a value)."""
    return [f"--{name}={format_value(value)}" for name, value in flags.items() if value is not None]


def _set_parent_death_signal() -> None:
    # Runs in the child between fork and exec: if the guildlite process dies (even by SIGKILL),
    # the kernel sends torchrun SIGTERM, and torchrun shuts its workers down.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc), deepest last."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


class Job:
    """One launched process (torchrun and its ranks) whose output goes to a log file and the console.

    ``start`` must be called from the main thread: the parent-death signal is tied to the thread
    that forks the child. A reader thread copies output and reports the exit to ``on_exit``.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        echo: bool,
        on_exit: Callable[[Job, int], None],
    ) -> None:
        self.cmd = list(cmd)
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = log_path
        self.echo = echo
        self.on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None
        self.signalled: int | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our terminal's Ctrl-C reaches guildlite only; we forward it
            preexec_fn=_set_parent_death_signal,
        )
        threading.Thread(target=self._pump, name=f"job-{self.proc.pid}", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        out = sys.stdout.buffer if self.echo else None
        with open(self.log_path, "ab", buffering=0) as log:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                log.write(chunk)
                if out is not None:
                    try:
                        out.write(chunk)
                        out.flush()
                    except (OSError, ValueError):
                        out = None  # console gone (closed pipe): keep logging
        self.proc.stdout.close()
        self.on_exit(self, self.proc.wait())

    def send(self, sig: int) -> None:
        """Forward ``sig`` to torchrun, which passes a shutdown on to every rank."""
        if self.proc and self.proc.poll() is None:
            self.signalled = self.signalled or sig
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL torchrun and every rank (ranks run in their own sessions: found via /proc)."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.signalled = self.signalled or signal.SIGKILL
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
