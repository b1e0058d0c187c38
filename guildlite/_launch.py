"""Launching one job: its command line and flag passing, the process, its output, its signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ._disk import full_message, is_full
from ._flag_args import flag_args, main_args
from ._flags import format_value
from ._guildfile import OpDef

_PR_SET_PDEATHSIG = 1


def job_command(op: OpDef, flags: Mapping[str, Any], nproc: int, log_dir: Path | None = None) -> list[str]:
    """The job's argv: ``python -u <main> <flags>`` or ``python -m torch.distributed.run ...``.

    torchrun runs with ``--standalone``, which binds its own free rendezvous port, so jobs started
    side by side (parallel trials) never share one. With ``log_dir`` and several ranks, every
    line is prefixed with its rank (``[default0]:``) and per-rank logs are kept in ``log_dir``.
    """
    args = [*main_args(op, flags), *_argv_flags(op, flags)]
    if op.launcher == "python":
        return [sys.executable, "-u", *args]
    tee = ["--tee=3", f"--log-dir={log_dir}"] if log_dir is not None and nproc > 1 else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *tee, *args]


def _argv_flags(op: OpDef, flags: Mapping[str, Any]) -> list[str]:
    if op.flags_dest == "overrides":
        from ._flag_args import interpolated
        from ._hydra import override_args

        skip = interpolated(op)  # reaches the app in `main` already
        return override_args({k: v for k, v in flags.items() if k not in skip}, op.flags,
                             imported=bool(op.flags_import))
    return flag_args(op, flags) if op.flags_dest == "args" else []


_JOB_EXEC = str(Path(__file__).with_name("_job_exec.py"))


def launch_argv(cmd: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and extra env that actually start ``cmd``: torchrun and each rank run through
    ``guildlite._job_exec`` (a ``python`` job runs as it is)."""
    start = torchrun_options(cmd)
    if start is None:
        return list(cmd), {}
    i = start
    while i < len(cmd) and cmd[i].startswith("--"):  # our torchrun options are all --name=value
        i += 1
    # The shim runs as a script path, not `-m guildlite._job_exec`: importing the package costs
    # every rank tens of milliseconds before the real main even starts.
    return [cmd[0], _JOB_EXEC, *cmd[1:i], _JOB_EXEC], {"GUILDLITE_ARGV": json.dumps(list(cmd[i:]))}


def torchrun_options(argv: Sequence[str]) -> int | None:
    """Where torchrun's own options start in ``argv`` (a job command, or its launch argv through
    the shim), or None when it does not run torchrun."""
    i = 2 if len(argv) > 1 and Path(argv[1]).name == Path(_JOB_EXEC).name else 1
    return i + 2 if list(argv[i : i + 2]) == ["-m", "torch.distributed.run"] else None


def rank_exit_code(exit_dir: Path) -> int | None:
    """The exit code of the first failing rank, as each rank's shim recorded it (None if none did)."""
    codes = []
    try:
        names = os.listdir(exit_dir)
    except OSError:
        return None
    for name in names:
        try:
            rank, code = int(name.removeprefix("rank")), int((exit_dir / name).read_text())
        except (OSError, ValueError):
            continue
        if code:
            codes.append((rank, code if code > 0 else 128 - code))
    return min(codes)[1] if codes else None


def display_command(cmd: Sequence[str]) -> str:
    """A job's argv as a user would type it (``torchrun ...`` / ``python ...``)."""
    import shlex

    start = torchrun_options(cmd)
    if start is not None:
        return shlex.join(["torchrun", *cmd[start:]])
    return shlex.join(["python", *cmd[1:]])


def flag_env(op: OpDef, flags: Mapping[str, Any]) -> dict[str, str]:
    """The op's ``env``, and with ``flags-dest: env`` each flag as ``<prefix><NAME>`` (upper-cased,
    '-' and '.' as '_')."""
    if op.flags_dest != "env":
        return dict(op.env)
    return {**op.env, **{
        op.flags_env_prefix + name.upper().replace("-", "_").replace(".", "_"): format_value(value)
        for name, value in flags.items()
        if value is not None
    }}


def write_flags_config(op: OpDef, flags: Mapping[str, Any], run_dir: Path, project: Path | None = None) -> Path | None:
    """With ``flags-dest: config:PATH``: the flags written into PATH in the run dir (JSON or YAML by
    extension; dotted names as nested keys, the file's other content kept)."""
    from ._config_file import write

    return write(op.flags_dest, flags, run_dir, project)


# Set by torchrun (or a cluster launcher) for a rank: a plain `python` job must not inherit them.
_RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
             "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


def without_rank_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less the distributed-rank variables (``RANK``, ``WORLD_SIZE``, ``TORCHELASTIC_*``...)."""
    return {k: v for k, v in env.items() if k not in _RANK_ENV and not k.startswith("TORCHELASTIC_")}


def _parent_death_signal(parent: int) -> Callable[[], None]:
    """A preexec_fn: if the guildlite process ``parent`` dies (even by SIGKILL), the kernel sends
    the job SIGTERM, and torchrun shuts its ranks down."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:  # runs in the child, between fork and exec
        # The parent's Python SIGTERM handler is still installed here: a parent-death SIGTERM that
        # came before the exec would only set its flag, and the job would run on without a parent.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # guildlite died before the signal was armed
            os._exit(128 + signal.SIGTERM)

    return arm


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

    The local backend's job; every backend's job has its interface (``Launched``): ``start``,
    ``send(sig)``, ``kill``, ``pid``, ``signalled``, ``status_after_start`` (the run's status once
    started), ``error_message`` (why it failed, when the launcher knows better than an exit code)
    and ``end_hooks_ran``.
    """

    status_after_start = "running"
    error_message: str | None = None
    end_hooks_ran = False

    def __init__(
        self,
        cmd: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        echo: bool,
        on_exit: Callable[[Job, int], None],
        grace: float = 30.0,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.cmd = list(cmd)
        self.pass_fds = tuple(pass_fds)  # held by the job for as long as it runs (its GPU lease)
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = log_path
        self.echo = echo
        self.on_exit = on_exit
        self.grace = grace
        self.proc: subprocess.Popen[bytes] | None = None
        self.signalled: int | None = None
        self.log_error: str | None = None
        self._kill_timer: threading.Timer | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our terminal's Ctrl-C reaches guildlite only; we forward it
            preexec_fn=_parent_death_signal(os.getpid()),
            pass_fds=self.pass_fds,
        )
        threading.Thread(target=self._pump, name=f"job-{self.proc.pid}", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        out = sys.stdout.buffer if self.echo else None
        try:
            log: Any = open(self.log_path, "ab", buffering=0)
        except OSError as e:
            log = None
            self.log_error = f"cannot write {self.log_path}: {e.strerror}"
            if is_full(e):
                self._stop_disk_full(e)
        # Keep draining the pipe whatever fails (a full disk, a closed console): a job whose
        # output is not read blocks, and its exit would never be seen.
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if log is not None:
                try:
                    log.write(chunk)
                except OSError as e:
                    with contextlib.suppress(OSError):
                        log.close()
                    log, self.log_error = None, f"cannot write {self.log_path}: {e.strerror}"
                    if is_full(e):
                        self._stop_disk_full(e)
                    else:
                        print(f"guildlite: {self.log_error}; the job's output is no longer logged", file=sys.stderr)
            if out is not None:
                try:
                    out.write(chunk)
                    out.flush()
                except (OSError, ValueError):
                    out = None
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()
        self.proc.stdout.close()
        code = self.proc.wait()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self.on_exit(self, code)

    def _stop_disk_full(self, e: OSError) -> None:
        """The run dir's disk is full: the run is an error whatever the job does next, and what it
        prints is lost, so stop it as ``guildlite stop`` would (SIGTERM, SIGKILL after the grace)."""
        assert self.proc is not None
        self.error_message = full_message(e, f"cannot write {self.log_path}; the job was stopped", self.log_path)
        print(f"guildlite: {self.error_message}", file=sys.stderr, flush=True)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            self._kill_timer = threading.Timer(self.grace, self.kill)
            self._kill_timer.daemon = True
            self._kill_timer.start()

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
