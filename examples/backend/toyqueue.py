"""toyqueue: a spool-directory job queue as a guildlite backend, all in this one module.

``submit`` drops a run's job (argv, environment delta, cwd, log) as ``<job>.job`` into the spool
dir; a worker (``python toyqueue.py SPOOL``, one per spool) runs every queued job, highest
``priority`` first, appending its output to the run's ``output.log``, and writes ``<job>.started``,
then ``<job>.exit`` (its exit code) beside it; ``<job>.cancel`` asks it to stop one (TERM or
KILL). The guildlite process that owns the run polls ``<job>.exit`` and reports the end; any other
reader asks ``job_state``. A job (and its cancel) waits for a worker; a job whose owner died runs
on, and reads as its spool says. Installed as a distribution with the entry point::

    [guildlite.backends]
    toyqueue = toyqueue:ToyQueue

and configured in guildfile.yml (at the top level, and per op)::

    backend: toyqueue
    toyqueue: {spool: /abs/dir, priority: 5}
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from guildlite import GuildliteError
from guildlite.backends import Backend, CliOption, JobState

POLL = 0.05  # seconds between looks at the spool (worker and owner)
JOB_ID = re.compile(r"\d+-[0-9a-f]{8}")  # ids come back from records: never a path


@dataclass(frozen=True)
class ToyOptions:
    """The ``toyqueue:`` section."""

    spool: str = ""
    priority: int = 0  # 0..9: the worker starts higher ones first


class Spool:
    """The files of one spool dir: ``<job>.job``, ``.started``, ``.exit``, ``.cancel``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def file(self, job_id: str, kind: str) -> Path:
        return self.root / f"{job_id}.{kind}"

    def write(self, job_id: str, kind: str, data: Any) -> None:
        """Write a job file whole (temp file, then rename): a reader never sees half of one."""
        tmp = self.file(job_id, f"{kind}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.file(job_id, kind))

    def read(self, job_id: str, kind: str) -> Any:
        try:
            return json.loads(self.file(job_id, kind).read_text())
        except (OSError, ValueError):
            return None

    def worker_alive(self) -> bool:
        """Whether a worker holds the spool's lock (the kernel drops it when the worker dies)."""
        try:
            fd = os.open(self.root / "worker.lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def state(self, job_id: str) -> JobState:
        end = self.read(job_id, "exit")
        if end is not None:
            detail = f"toyqueue job {job_id} exited with code {end['code']}"
            if end["cancelled"]:
                return JobState("ended", "cancelled", detail)
            return JobState("ended", "failed" if end["code"] else None, detail)
        if not self.file(job_id, "job").exists():
            return JobState("ended", "gone", f"toyqueue job {job_id} is not in spool {self.root}")
        started = self.file(job_id, "started").exists()
        if not self.worker_alive():
            if started:
                return JobState("ended", "gone", f"the toyqueue worker of {self.root} died while job {job_id} ran")
            return JobState("queued", detail="no worker on the spool")
        return JobState("running" if started else "queued")


class ToyQueue(Backend):
    """Runs go into a spool dir; a worker runs them."""

    name = "toyqueue"
    options_type = ToyOptions
    cli_options = (CliOption("priority", "priority", int, "the job's priority in the spool (0-9)"),)

    @classmethod
    def check_value(cls, key: str, value: Any) -> Any:
        if key == "spool":
            if not isinstance(value, str) or not os.path.isabs(value):
                raise ValueError(f"must be an absolute directory path, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
            raise ValueError(f"must be an integer from 0 to 9, got {value!r}")
        return value

    def check_op(self, op: Any, nproc: int) -> None:
        if not self.options.spool:
            raise GuildliteError("backend toyqueue needs a spool dir ('toyqueue: {spool: DIR}' in the guildfile)",
                                 exit_code=2)

    def check(self) -> list[str]:
        alive = Spool(self.options.spool).worker_alive()
        return [f"toyqueue: spool {self.options.spool or '(not set)'}: worker {'running' if alive else 'not running'}"]

    def submit(self, run: Any, argv: Sequence[str], env: Mapping[str, str],
               on_exit: Callable[[Any, int], None], *, echo: bool, grace: float) -> SpoolJob:
        spool = Spool(self.options.spool)
        spool.root.mkdir(parents=True, exist_ok=True)
        job_id = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        delta = {k: v for k, v in env.items() if os.environ.get(k) != v}
        spool.write(job_id, "job", {"argv": list(argv), "env": delta, "cwd": str(run.run_dir),
                                    "log": str(run.paths.output_log), "priority": self.options.priority})
        run.remote = {"backend": self.name, "job_id": job_id, "spool": str(spool.root)}
        job = SpoolJob(spool, job_id, on_exit, run.paths.output_log if echo else None)
        job.start()
        return job

    @classmethod
    def job_state(cls, rec: Mapping[str, Any], run_dir: Path | None) -> JobState | None:
        spool, job_id = _job_of(rec.get("remote"))
        return None if spool is None else spool.state(job_id)

    @classmethod
    def cancel(cls, run: Any, force: bool = False) -> bool:
        spool, job_id = _job_of(run.remote)
        if spool is None or not spool.file(job_id, "job").exists():
            return False
        spool.write(job_id, "cancel", {"signal": "KILL" if force else "TERM"})
        return True


def _job_of(remote: Any) -> tuple[Spool | None, str]:
    """The spool and job id a record names; (None, "") if it names none we could trust."""
    if not isinstance(remote, dict) or not isinstance(remote.get("spool"), str):
        return None, ""
    job_id = remote.get("job_id")
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id) or not os.path.isabs(remote["spool"]):
        return None, ""
    return Spool(remote["spool"]), job_id


class SpoolJob:
    """A submitted job as guildlite's lifecycle sees it (``guildlite.backends.Launched``)."""

    status_after_start = "running"  # read as pending while it waits in the spool (job_state)
    end_hooks_ran = False  # the owning guildlite fires on_run_end
    pid = None  # nothing runs here

    def __init__(self, spool: Spool, job_id: str, on_exit: Callable[[Any, int], None], echo: Path | None) -> None:
        self.spool, self.job_id, self.on_exit, self.echo = spool, job_id, on_exit, echo
        self.error_message: str | None = None
        self.signalled: int | None = None

    def start(self) -> None:
        threading.Thread(target=self._watch, name=f"toyqueue-{self.job_id}", daemon=True).start()

    def _watch(self) -> None:
        offset = 0
        while (state := self.spool.state(self.job_id)).phase != "ended":
            offset = self._echo(offset)
            time.sleep(POLL)
        self._echo(offset)
        end = self.spool.read(self.job_id, "exit")
        if end is None:  # it never wrote an exit: its worker died
            self.error_message = state.detail
        elif end["cancelled"]:  # by us, or by `guildlite stop` through ToyQueue.cancel
            self.signalled = self.signalled or signal.SIGTERM
        self.on_exit(self, 1 if end is None else end["code"])

    def _echo(self, offset: int) -> int:
        if self.echo is None:
            return offset
        try:
            with open(self.echo, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            return offset
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return offset + len(chunk)

    def send(self, sig: int) -> None:
        self.signalled = self.signalled or sig
        self.spool.write(self.job_id, "cancel", {"signal": "TERM"})

    def kill(self) -> None:
        self.signalled = self.signalled or signal.SIGKILL
        self.spool.write(self.job_id, "cancel", {"signal": "KILL"})


# --- the worker ---------------------------------------------------------------------------------


def work(root: str) -> None:
    """Run the spool's jobs, all queued ones at once, until killed; one worker per spool."""
    spool = Spool(root)
    spool.root.mkdir(parents=True, exist_ok=True)
    lock = open(spool.root / "worker.lock", "a")  # noqa: SIM115 (held for the worker's life)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}  # job id -> process, signal sent
    while True:
        for job_id in _queued(spool):
            if spool.file(job_id, "cancel").exists():
                spool.write(job_id, "exit", {"code": -signal.SIGTERM, "cancelled": True})
                continue
            spec = spool.read(job_id, "job")
            try:
                with open(spec["log"], "ab") as log:
                    proc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env={**os.environ, **spec["env"]},
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            except OSError as e:
                print(f"toyqueue: cannot start job {job_id}: {e}", file=sys.stderr)
                spool.write(job_id, "exit", {"code": 127, "cancelled": False})
                continue
            running[job_id] = (proc, "")
            spool.write(job_id, "started", {"pid": proc.pid})
        for job_id, (proc, sent) in list(running.items()):
            ask = (spool.read(job_id, "cancel") or {}).get("signal", "")
            if ask and ask != sent and proc.poll() is None:
                proc.send_signal(signal.SIGKILL if ask == "KILL" else signal.SIGTERM)
                running[job_id] = (proc, ask)
            if proc.poll() is not None:
                spool.write(job_id, "exit", {"code": proc.returncode, "cancelled": bool(ask)})
                del running[job_id]
        time.sleep(POLL)


def _queued(spool: Spool) -> list[str]:
    """Jobs neither started nor ended, highest priority first, then oldest (ids start with the time)."""
    ids = [p.name[: -len(".job")] for p in spool.root.glob("*.job")]
    ids = [j for j in ids if not spool.file(j, "started").exists() and not spool.file(j, "exit").exists()]
    return sorted(ids, key=lambda j: (-(spool.read(j, "job") or {}).get("priority", 0), j))


if __name__ == "__main__":
    work(sys.argv[1])
