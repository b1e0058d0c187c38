"""The node side of a SLURM run: ``guildlite.backends.slurm.node RUN_DIR`` (see ``slurm.sbatch``).

It runs as the batch script of the job, on the first host of the allocation, with the submitter's
interpreter, and:

1. waits until ``run.json`` records its job id (the submitter writes it right after ``sbatch``);
2. records a new attempt (job id, hosts, start) and ``running``; a run requeued more than
   ``max-requeues`` times ends ``error`` here instead of starting again;
3. starts ``srun --ntasks-per-node=1 torchrun --nnodes=$SLURM_NNODES --rdzv-backend=c10d
   --rdzv-endpoint=<first host>:<free port> --rdzv-id=$SLURM_JOB_ID ...`` (one agent per host) with
   ``GUILDLITE_RUN_DIR`` and ``GUILDLITE_RESTART_COUNT`` (the attempts before this one), appending
   every host's output to ``output.log``;
4. on the time-limit warning (``--signal=B:USR1@signal-grace``) sends SIGTERM to the job's tasks
   (``scancel --signal=TERM``) so the script can checkpoint, records the attempt ``preempted`` and
   requeues the job itself; on SIGTERM it asks slurmctld why: a requeue (preemption, ``scontrol
   requeue``) is recorded ``preempted`` and the job comes back in the same run dir, a cancel
   (``scancel``, ``guildlite stop``) is ``terminated``, or ``pruned`` when the owner's pruner
   stopped it (its stop request says so);
5. records the end (status, exit code, stop time). The guildlite that submitted the job (in the
   foreground, or the detached supervisor) fires ``on_run_end``; one that does not claim the end
   within ``HANDOFF_SECONDS`` (killed), or a job submitted by hand (``hooks: supervisor``), leaves
   it to this node (``_supervisor.fire_end``), and, as the last trial of a batch whose owner is
   gone, the batch's end too (``_supervisor.end_batch``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..._files import RunPaths, now_iso
from ..._launch import torchrun_options
from ..._record import is_run_id
from ..._status import Status, job_end, moved, stopped_as
from ..._store import end_claimed, read_record, reset_end, update_record
from ..._supervisor import end_batch, fire_end
from .job import SPEC_FILE

HANDOFF_SECONDS = 15.0  # the foreground submitter polls run.json every 0.5 s


def _remote(rec: dict[str, Any]) -> dict[str, Any]:
    remote = rec.get("remote")
    return remote if isinstance(remote, dict) else {}


def _scontrol_job(job_id: str) -> dict[str, str]:
    try:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(w.split("=", 1) for w in out.split() if "=" in w)


def _hostnames() -> list[str]:
    nodelist = os.environ.get("SLURM_JOB_NODELIST", "")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=20).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        out = []
    return out or [socket.gethostname()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def job_argv(spec: dict[str, Any], hosts: list[str], job_id: str, restart: int) -> list[str]:
    """srun over the allocation's hosts, one task per host, each task the run's own command with
    torchrun's ``--standalone`` replaced by a c10d rendezvous on the first host."""
    argv = list(spec["argv"])
    start = torchrun_options(argv)
    if start is not None:
        rdzv = [f"--nnodes={len(hosts)}", "--rdzv-backend=c10d", f"--rdzv-endpoint={hosts[0]}:{_free_port()}",
                f"--rdzv-id={job_id}-{restart}"]
        argv = [*argv[:start], *rdzv, *[a for a in argv[start:] if a != "--standalone"]]
    n = len(hosts)
    srun = ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--export=ALL"]
    if n > 1:
        srun.append("--label")
    return [*srun, *argv]


class Supervisor:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.paths = RunPaths(run_dir)
        self.spec = json.loads((self.paths.meta / SPEC_FILE).read_text())
        self.opts = self.spec.get("options") or {}
        self.job_id = os.environ.get("SLURM_JOB_ID", "")
        self.slurm_restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        self.why: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def log(self, msg: str) -> None:
        line = f"guildlite: {msg}\n"
        sys.stderr.write(line)
        with open(self.paths.output_log, "a", encoding="utf-8") as f:
            f.write(line)

    # --- the record ---------------------------------------------------------------------------------

    def handshake(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            rec = read_record(self.run_dir)
            remote = _remote(rec)
            if self.job_id in [str(j) for j in remote.get("job_ids") or []]:
                return
            if rec.get("status") not in ("staged", "pending") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # Submitted by hand (`sbatch slurm.sbatch`): adopt the job, and fire the hooks here.
        self.spec["hooks"] = "supervisor"
        self.paths.stop_request.unlink(missing_ok=True)
        reset_end(self.run_dir)

        def adopt(rec: dict[str, Any]) -> None:
            remote = _remote(rec)
            ids = [*[str(j) for j in remote.get("job_ids") or []], self.job_id]
            rec["remote"] = {**remote, "backend": "slurm", "job_id": self.job_id, "job_ids": ids,
                             "run_dir": str(self.run_dir), "hooks": "supervisor"}
            status = rec.get("status") or "staged"  # a run submitted again by hand: restarted
            rec.update(status=moved(moved(status, "staged") if status not in ("staged", "pending") else status,
                                    "pending"), exit_code=None, stopped=None, error=None)

        update_record(self.run_dir, adopt)

    def begin_attempt(self, hosts: list[str]) -> tuple[int, str | None]:
        """Record the attempt; (restart count, error message when over max-requeues)."""
        out: dict[str, Any] = {}
        now = now_iso()
        max_requeues = int(self.opts.get("max-requeues", 3))

        def change(rec: dict[str, Any]) -> None:
            atts = rec.setdefault("attempts", [])
            if atts and atts[-1].get("job_id") and atts[-1].get("stopped") is None:
                atts[-1].update(stopped=now, status="requeued", reason="requeued by SLURM before its end was recorded")
            mine = [a for a in atts if a.get("job_id") == self.job_id]
            requeues = sum(a.get("status") in ("preempted", "requeued") for a in mine)
            out["restart"] = len(atts)
            out["error"] = (f"requeued {requeues} times; max-requeues is {max_requeues}"
                            if requeues > max_requeues else None)
            atts.append({"job_id": self.job_id, "restart": len(atts), "hosts": hosts, "host": socket.gethostname(),
                         "started": now, "stopped": None, "status": "running", "reason": None})
            rec["status"] = moved(rec.get("status"), "running")
            rec["host"] = socket.gethostname()
            if not mine:
                rec["started"] = now
            rec["remote"] = {**_remote(rec), "hosts": hosts}

        update_record(self.run_dir, change)
        return out["restart"], out["error"]

    def end_attempt(self, status: str, exit_code: int | None, reason: str | None, requeued: bool) -> None:
        now = now_iso()

        def change(rec: dict[str, Any]) -> None:
            atts = rec.setdefault("attempts", [])
            if atts and atts[-1].get("job_id") == self.job_id and atts[-1].get("stopped") is None:
                atts[-1].update(stopped=now, status=status, exit_code=exit_code, reason=reason)
            if requeued:
                rec["status"] = moved(rec.get("status"), "pending")
                return
            rec.update(status=moved(rec.get("status"), status), exit_code=exit_code, stopped=now)
            if status != "completed":
                rec["error"] = rec.get("error") or {"message": reason or f"the job exited with code {exit_code}"}

        update_record(self.run_dir, change)

    # --- running ------------------------------------------------------------------------------------

    def _on_signal(self, sig: int, _frame: Any) -> None:
        self.why = self.why or ("timelimit" if sig == signal.SIGUSR1 else "term")
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.why == "timelimit":
            # SIGTERM to every task of the job's steps (torchrun -> ranks), so the script can checkpoint.
            # Not through srun: srun takes SIGTERM as "force termination" and SIGKILLs its tasks.
            try:
                subprocess.Popen(["scancel", "--signal=TERM", self.job_id], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
                return
            except OSError:
                pass
        try:  # a SIGTERM or Ctrl-C of the job, which SLURM also sends to every task
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.handshake()
        hosts = _hostnames()
        restart, over = self.begin_attempt(hosts)
        if over:
            self.log(f"SLURM job {self.job_id}: {over}: not starting again")
            return self.end("error", 1, over)
        if self.paths.stop_request.exists():
            return self.end("terminated", 143, "stopped before it started")
        env = dict(os.environ)
        env.update(self.spec.get("env") or {})
        env.update(GUILDLITE_RESTART_COUNT=str(restart), GUILDLITE_SLURM_JOB_ID=self.job_id, PYTHONUNBUFFERED="1")
        argv = job_argv(self.spec, hosts, self.job_id, restart)
        with open(self.paths.output_log, "ab", buffering=0) as log:
            if restart:
                log.write(f"guildlite: attempt {restart + 1} (SLURM job {self.job_id} on {','.join(hosts)})\n".encode())
            try:
                self.proc = subprocess.Popen(argv, cwd=self.run_dir, env=env, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            except OSError as e:
                return self.end("error", 127, f"cannot start srun: {e}")
            if self.why:  # a signal came while starting
                self._on_signal(signal.SIGTERM, None)
            assert self.proc.stdout is not None
            fd = self.proc.stdout.fileno()
            while chunk := os.read(fd, 65536):
                log.write(chunk)
        code = self.proc.wait()
        code = code if code >= 0 else 128 - code
        return self.decide(code, restart)

    def decide(self, code: int, restart: int) -> int:
        if self.paths.stop_request.exists():  # pruned when the owner's pruner asked (``_status.stopped_as``)
            status = stopped_as(self.paths.stop_request)
            why = "pruned" if status == "pruned" else "stopped (guildlite stop or Ctrl-C)"
            return self.end(status, code or 143, why)
        info = _scontrol_job(self.job_id) if (self.why or code != 0) else {}
        restarts_now = int(info.get("Restarts", self.slurm_restarts) or 0)
        max_requeues = int(self.opts.get("max-requeues", 3))
        requeues = sum(1 for a in read_record(self.run_dir).get("attempts", [])
                       if a.get("job_id") == self.job_id and a.get("status") in ("preempted", "requeued"))
        if self.why == "timelimit":
            if not self.opts.get("requeue", True) or requeues >= max_requeues:
                return self.end("error", code or 1, f"reached the time limit; requeued {requeues} times "
                                f"(max-requeues {max_requeues})")
            self.end_attempt("preempted", code, "time limit warning (signal-grace)", requeued=True)
            self.log(f"SLURM job {self.job_id}: time limit near: requeueing (attempt {restart + 2} next)")
            subprocess.run(["scontrol", "requeue", self.job_id], capture_output=True, timeout=30)
            return 0
        if restarts_now > self.slurm_restarts:
            self.end_attempt("preempted", code, "requeued by SLURM (preemption or scontrol requeue)", requeued=True)
            self.log(f"SLURM job {self.job_id}: requeued: the run continues in this dir (attempt {restart + 2} next)")
            return 0
        state = info.get("JobState", "RUNNING")
        if self.why == "term" or state not in ("RUNNING", ""):
            if "TIMEOUT" in state:
                return self.end("error", code or 1, "reached the SLURM time limit")
            return self.end("terminated", code or 143, f"SLURM job {self.job_id} was cancelled")
        status, code, error = job_end(code, stopped=False)
        return self.end(status, code, None if error is None else str(error["message"]))

    def end(self, status: Status, code: int, reason: str | None) -> int:
        self.end_attempt(status, code, reason, requeued=False)
        here = self.spec.get("hooks") == "supervisor"
        if not here and not self.submitter_claims_end():
            self.log(f"SLURM job {self.job_id}: the submitting guildlite did not take the run's end within "
                     f"{HANDOFF_SECONDS:g} s: on_run_end fires here")
            here = True
        if here:
            fire_end(self.run_dir)
            rec = read_record(self.run_dir)
            if is_run_id(rec.get("parent")):  # an id, beside the trial: never a path
                end_batch(self.run_dir.parent / rec["parent"])
        return 0 if status == "completed" else code

    def submitter_claims_end(self) -> bool:
        """Whether the submitting guildlite (polling run.json) claims ``on_run_end`` in time; a
        killed one never does."""
        deadline = time.monotonic() + HANDOFF_SECONDS
        while time.monotonic() < deadline:
            if end_claimed(self.run_dir):
                return True
            time.sleep(0.2)
        return end_claimed(self.run_dir)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m guildlite.backends.slurm.node RUN_DIR", file=sys.stderr)
        return 2
    return Supervisor(Path(argv[0]).resolve()).run()


if __name__ == "__main__":
    from ..._hookcall import exit_if_hooks_hang

    code = main(sys.argv[1:])
    exit_if_hooks_hang(code)  # an on_run_end given up on (timed out) must not keep the job's allocation
    sys.exit(code)
