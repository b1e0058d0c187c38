"""One run as one sbatch job, with the local ``Job``'s interface (``Launched``).

``start`` writes ``slurm.sbatch`` (readable, resubmittable by hand) and ``.guildlite/slurm.json`` (what
the node supervisor runs) into the run dir, submits with ``sbatch``, records the job id in the run's
``remote`` and watches the job from a thread until its end: progress lines, the output echoed, and
the end as the node supervisor recorded it (or as SLURM tells, if it could not).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..._errors import GuildliteError, RunNotFoundError
from ..._files import atomic_write, write_json
from ..._status import ENDED, gone
from ..._store import claim_end, read_record
from .options import SCRIPT_FILE, sbatch_script
from .queue import END_STATES, job_ended, job_state, scancel

SPEC_FILE = "slurm.json"  # in .guildlite/


class SlurmError(GuildliteError):
    """sbatch rejected a job, or SLURM's commands are missing."""


class SlurmJob:
    """One run as one sbatch job, with the local ``Job``'s interface.

    ``status_after_start`` is ``pending``: a submitted job waits in SLURM's queue until the node
    supervisor records ``running``. ``error_message`` carries the supervisor's reason for an error.
    """

    status_after_start = "pending"
    end_hooks_ran = False

    def __init__(
        self,
        cmd: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        echo: bool,
        on_exit: Callable[[Any, int], None],
        *,
        run: Any,
        options: Mapping[str, Any],
        nproc: int,
        launcher: str,
        poll: float = 0.5,
    ) -> None:
        self.cmd = list(cmd)
        self.cwd = Path(cwd)
        self.env = dict(env)
        self.log_path = log_path
        self.echo = echo
        self.on_exit = on_exit
        self.run = run
        self.options = dict(options)
        self.nproc = nproc
        self.launcher = launcher
        self.poll = poll
        self.job_id: str | None = None
        self.signalled: int | None = None
        self.error_message: str | None = None
        self._done = threading.Event()

    @property
    def pid(self) -> int | None:
        return None  # nothing runs here: the job runs wherever SLURM puts it

    def start(self) -> None:
        if not shutil.which("sbatch"):
            raise SlurmError("backend slurm: sbatch not found on PATH (is this a SLURM login node?)")
        run_dir = self.cwd
        env_delta = {k: v for k, v in self.env.items() if os.environ.get(k) != v}
        spec = {
            "argv": self.cmd,
            "env": env_delta,
            "nproc": self.nproc,
            "launcher": self.launcher,
            "options": self.options,
            "hooks": "submitter",
        }
        write_json(run_dir / ".guildlite" / SPEC_FILE, spec)
        name = f"guildlite-{self.run.op}-{self.run.id[-6:]}"
        atomic_write(run_dir / SCRIPT_FILE, sbatch_script(run_dir, name, self.options, sys.executable))
        t0 = time.time()
        try:
            p = subprocess.run(["sbatch", "--parsable", SCRIPT_FILE], cwd=run_dir, env=self.env,
                               capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise SlurmError("sbatch did not answer within 60 s") from None
        if p.returncode != 0:
            raise SlurmError(self._rejection(p.stderr))
        self.job_id = p.stdout.strip().split(";")[0]
        self.run.remote = {
            "backend": "slurm",
            "job_id": self.job_id,
            "job_ids": [self.job_id],
            "run_dir": str(run_dir),
            "script": SCRIPT_FILE,
            "partition": self.options.get("partition"),
            "nodes": self.options.get("nodes", 1),
            "hooks": spec["hooks"],
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0)),
            "submit_seconds": round(time.time() - t0, 3),
        }
        threading.Thread(target=self._watch, name=f"slurm-{self.job_id}", daemon=True).start()

    def _rejection(self, stderr: str) -> str:
        text = " ".join(ln.replace("sbatch: error:", "").strip() for ln in stderr.strip().splitlines()) or "no message"
        part = self.options.get("partition")
        if part and "partition" in text.lower():
            return f"sbatch rejected the job for partition '{part}': {text}"
        return f"sbatch rejected the job: {text}"

    # The watcher: progress lines, output echo, and the end, from run.json and squeue.
    def _watch(self) -> None:
        assert self.job_id is not None
        last: tuple[str, str] | None = None
        offset = 0
        gone_since: float | None = None
        out = sys.stdout.buffer if self.echo else None
        rec: dict[str, Any] = {"status": "pending"}  # the record as last read
        while True:
            time.sleep(self.poll)
            if out is not None:
                offset = self._echo(out, offset)
            try:
                rec = read_record(self.cwd)
            except RunNotFoundError:  # unreadable for now, or its dir deleted: the job still decides
                pass
            if rec.get("status") in ENDED:
                break
            st = job_state(self.job_id)
            if st is None:
                continue
            state, reason, nodes = st
            if (state, reason) != last and state not in END_STATES + ("GONE",):
                where = f" on {nodes}" if state == "RUNNING" and nodes else ""
                why = f" ({reason})" if state == "PENDING" and reason and reason != "None" else ""
                print(f"guildlite: run {self.run.id}: SLURM job {self.job_id} {state}{where}{why}",
                      file=sys.stderr, flush=True)
                last = (state, reason)
            if state in END_STATES + ("GONE",):
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > 3.0:  # the supervisor had its chance to record the end
                    rec = gone(rec, job_ended(self.job_id, state))
                    break
            else:
                gone_since = None
        if out is not None:
            self._echo(out, offset)
        self._finish(rec)

    def _echo(self, out: Any, offset: int) -> int:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            return offset
        if chunk:
            try:
                out.write(chunk)
                out.flush()
            except (OSError, ValueError):
                pass
        return offset + len(chunk)

    def _finish(self, rec: dict[str, Any]) -> None:
        """Bring the submitter's Run up to date with the node's record, then report the exit."""
        # The node supervisor waits a while for this claim, then fires on_run_end itself.
        try:
            self.end_hooks_ran = not claim_end(self.cwd)
        except (OSError, GuildliteError):  # its dir deleted or replaced meanwhile: no node can claim it
            self.end_hooks_ran = False
        keys = ["started", "attempts", "remote", "host", "error", "exit_code"]
        if self.end_hooks_ran:  # keep what the node's plugins recorded
            keys += ["attrs", "plugins"]
        for k in keys:
            if k in rec:
                setattr(self.run, k, rec[k])
        status = rec.get("status")
        code = rec.get("exit_code")
        if status in ("terminated", "pruned") or self.run.paths.stop_request.exists():
            self.signalled = self.signalled or signal.SIGTERM
            code = code if code is not None else 143
        elif status == "completed":
            code = 0
        else:
            code = code or 1
            self.error_message = (rec.get("error") or {}).get("message")
        self._done.set()
        self.on_exit(self, int(code))

    def send(self, sig: int) -> None:
        """Cancel the job (Ctrl-C, SIGTERM, stop): recorded ``terminated``, never requeued."""
        if self.job_id is None or self._done.is_set():
            return
        self.signalled = self.signalled or sig
        try:
            self.run.paths.stop_request.touch()
        except OSError:
            pass
        scancel([self.job_id])

    def kill(self) -> None:
        if self.job_id is None or self._done.is_set():
            return
        self.signalled = self.signalled or signal.SIGKILL
        scancel([self.job_id], sig="KILL")
        scancel([self.job_id])
