"""The SLURM backend: everything SLURM-specific in guildlite lives here (and in the node supervisor).

One run (one trial of a batch) is one ``sbatch`` job. ``SlurmJob`` has the local ``Job``'s interface
(``start``, ``send``, ``kill``, ``pid``, ``signalled``, exit reported to ``on_exit``), so the scheduler,
the plugins and the inspect commands need no SLURM special case:

- ``start`` writes ``slurm.sbatch`` (readable, resubmittable by hand) and ``.guildlite/slurm.json`` (what
  the node supervisor runs) into the run dir, submits with ``sbatch``, records the job id in
  ``run.json`` (``remote``) and, unless detached, watches the job from a thread until its end.
- On the node, ``python -m guildlite._slurm_supervisor RUN_DIR`` (the submitter's interpreter) starts
  ``srun ... torchrun --nnodes ... --rdzv-backend=c10d ...``, appends ``output.log`` and writes the
  status, exit code, times and attempts to ``run.json`` (atomically, under the run's lock).
- ``send`` (Ctrl-C, SIGTERM, ``guildlite stop``) marks the stop request and ``scancel``s the job.

Records: ``remote = {"backend": "slurm", "job_id", "job_ids", "partition", "nodes", "hooks", ...}``;
``attempts`` lists every node attempt (job id, hosts, started, stopped, status, reason). A
pending/running record is checked against ``squeue`` on read (``remote_status``), never trusted.

The guildlite process never imports torch; nothing here does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ._errors import GuildliteError

BACKENDS = ("local", "slurm")
SLURM_KEYS = (
    "partition", "time", "nodes", "gpus-per-node", "cpus-per-task", "mem", "account", "qos", "constraint",
    "requeue", "signal-grace", "max-requeues", "sbatch-args",
)
DEFAULTS: dict[str, Any] = {"nodes": 1, "requeue": True, "signal-grace": 120, "max-requeues": 3}
SPEC_FILE = "slurm.json"  # in .guildlite/
SCRIPT_FILE = "slurm.sbatch"  # in the run dir
END_STATES = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
              "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED")
_TIME_RE = re.compile(r"(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE)")
_MEM_RE = re.compile(r"\d+[KMGT]?")


class SlurmError(GuildliteError):
    """sbatch rejected a job, or SLURM's commands are missing."""


# --- options (validated at guildfile load, merged in plan_run) --------------------------------------


def validate_options(raw: Mapping[Any, Any], fail: Callable[[Any, Any, str], Exception], where: str) -> dict[str, Any]:
    """A ``slurm:`` mapping checked key by key; ``fail(mapping, key, msg)`` builds the GuildfileError."""
    out: dict[str, Any] = {}
    for key in raw:
        if key not in SLURM_KEYS:
            import difflib

            hint = difflib.get_close_matches(str(key), SLURM_KEYS, n=1)
            tip = f"did you mean '{hint[0]}'?" if hint else f"valid keys: {', '.join(SLURM_KEYS)}"
            raise fail(raw, key, f"unknown key '{key}' in {where} slurm ({tip})")
        try:
            out[str(key)] = check_value(str(key), raw[key])
        except ValueError as e:
            raise fail(raw, key, f"{where}: slurm '{key}': {e}") from None
    return out


def check_value(key: str, v: Any) -> Any:
    """One ``slurm:`` value, normalised; ValueError saying what is expected."""
    if key in ("nodes", "cpus-per-task"):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"must be an integer >= 1, got {v!r}")
        return v
    if key in ("gpus-per-node", "signal-grace", "max-requeues"):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"must be an integer >= 0, got {v!r}")
        return v
    if key == "requeue":
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {v!r}")
        return v
    if key == "time":
        s = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(s, str) or not _TIME_RE.fullmatch(s.strip()):
            raise ValueError(f"{v!r} is not a SLURM time (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS)")
        return s.strip()
    if key == "mem":
        s = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(s, str) or not _MEM_RE.fullmatch(s.strip()):
            raise ValueError(f"{v!r} is not a memory size such as 4000 or 16G")
        return s.strip()
    if key == "sbatch-args":
        if isinstance(v, str):
            v = shlex.split(v)
        if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
            raise ValueError("must be a list of sbatch options")
        for a in v:  # each is one `#SBATCH` line of a shell script: a newline would start a command
            if not a.isprintable():
                raise ValueError(f"{a!r} holds a newline or another control character")
        return list(v)
    # partition, account, qos, constraint
    if not isinstance(v, str) or not v.strip() or any(c.isspace() for c in v.strip()):
        raise ValueError(f"must be a name without spaces, got {v!r}")
    return v.strip()


def merge_options(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults, then each layer (top-level, op, command line) winning over the one before."""
    out = dict(DEFAULTS)
    for layer in layers:
        out.update({k: v for k, v in (layer or {}).items() if v is not None})
    return out


def sbatch_options(opts: Mapping[str, Any]) -> list[str]:
    """The ``#SBATCH`` options for ``opts``."""
    out = [f"--nodes={opts.get('nodes', 1)}", "--ntasks-per-node=1"]
    for key, opt in (("partition", "partition"), ("time", "time"), ("cpus-per-task", "cpus-per-task"),
                     ("mem", "mem"), ("account", "account"), ("qos", "qos"), ("constraint", "constraint"),
                     ("gpus-per-node", "gpus-per-node")):
        if opts.get(key) not in (None, "") and not (key == "gpus-per-node" and not opts[key]):
            out.append(f"--{opt}={opts[key]}")
    if opts.get("requeue", True):
        out += ["--requeue", f"--signal=B:USR1@{int(opts.get('signal-grace', 120))}"]
    else:
        out.append("--no-requeue")
    return out + list(opts.get("sbatch-args") or [])


def sbatch_script(run_dir: Path, job_name: str, opts: Mapping[str, Any], python: str) -> str:
    meta = run_dir / ".guildlite"
    lines = ["#!/bin/bash", f"# guildlite run {run_dir.name}: resubmit by hand with `sbatch {SCRIPT_FILE}` in the run dir",
             f"#SBATCH --job-name={job_name}", f"#SBATCH --chdir={run_dir}",
             f"#SBATCH --output={meta}/slurm-%j.out", "#SBATCH --open-mode=append"]
    lines += [f"#SBATCH {shlex.quote(o)}" for o in sbatch_options(opts)]
    # Not `-m`: it puts the cwd first on sys.path, and the cwd is the run dir, whose staged json.py
    # or ctypes.py would replace that stdlib module for the supervisor and the plugins it runs.
    boot = ("import sys; sys.path[:] = [p for p in sys.path if p]; import runpy; "
            "runpy.run_module('guildlite._slurm_supervisor', run_name='__main__', alter_sys=True)")
    lines += ["", f"exec {shlex.quote(python)} -c {shlex.quote(boot)} {shlex.quote(str(run_dir))}", ""]
    return "\n".join(lines)


# --- records shared by the submitter, the supervisor and readers --------------------------------------


def claim_end(run_dir: Path) -> bool:
    """Exactly one ``on_run_end`` per run: True for the first caller (submitter or node supervisor)."""
    from ._files import RunPaths

    try:
        os.close(os.open(RunPaths(run_dir).end_claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False


def read_record(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "run.json").read_text())


def raw_run(run_dir: Path) -> Any:
    """The Run of a record as written (no liveness derivation)."""
    from ._run import _FIELDS, Run
    from ._store import snapshot_attrs as _snapshot

    rec = read_record(run_dir)
    kw = {k: v for k, v in rec.items() if k in _FIELDS}
    kw["id"] = Path(run_dir).name  # a run's id is its dir's name, whatever the record says
    run = Run(run_dir=Path(run_dir), parent_id=rec.get("parent"), trial_ids=list(rec.get("trials") or []), **kw)
    run._synced_attrs = _snapshot(run.attrs)  # its save writes only the attrs keys its plugins change
    return run


_cache: dict[str, Any] = {"t": 0.0, "jobs": None}


def job_states(max_age: float = 1.0) -> dict[str, tuple[str, str, str]] | None:
    """``{job_id: (state, reason, nodes)}`` of every job slurmctld knows (ended ones for MinJobAge);
    None when SLURM cannot be asked (no squeue, no controller)."""
    now = time.monotonic()
    if _cache["jobs"] is not None and now - _cache["t"] < max_age:
        return _cache["jobs"]
    if not shutil.which("squeue"):
        return None
    try:
        p = subprocess.run(["squeue", "-h", "-a", "-t", "all", "-o", "%i|%T|%r|%N"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    jobs = {}
    for line in p.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            jobs[parts[0]] = (parts[1], parts[2], parts[3])
    _cache.update(t=now, jobs=jobs)
    return jobs


def job_state(job_id: str) -> tuple[str, str, str] | None:
    """(state, reason, nodes) of one job: squeue, else sacct when it answers; None if unknown."""
    jobs = job_states(max_age=1.0)
    if jobs is None:
        return None
    if job_id in jobs:
        return jobs[job_id]
    if shutil.which("sacct"):
        try:
            p = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,Reason,NodeList"],
                               capture_output=True, text=True, timeout=20)
            line = p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else ""
            if line:
                st, reason, nodes = (line.split("|") + ["", ""])[:3]
                return st.split()[0], reason, nodes
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return ("GONE", "", "")


def ended_status(state: str) -> str:
    return "terminated" if state.startswith("CANCELLED") else "error"


def remote_status(rec: dict[str, Any], run_dir: Path | str | None = None) -> dict[str, Any]:
    """A pending/running SLURM record as it stands in SLURM: a job that no longer runs is never
    reported running (``terminated`` when cancelled, ``error`` otherwise). The record is re-read
    from ``run_dir``, the dir it was read from (never from a path a field names)."""
    remote = rec.get("remote") or {}
    ids = [str(j) for j in (remote.get("job_ids") or ([remote["job_id"]] if remote.get("job_id") else []))]
    jobs = job_states()
    if jobs is None or not ids:
        return rec  # SLURM cannot be asked from here (or not submitted yet): the record as written
    if remote.get("batch"):  # a detached batch: active while any of its trials' jobs is
        if any(jobs.get(j, ("GONE",))[0] not in END_STATES + ("GONE",) for j in ids):
            return rec
        return {**rec, "status": "error", "error": rec.get("error") or {
            "message": "every SLURM job of the batch ended, but the batch's end was not recorded"}}
    job = ids[-1]
    state, reason, _ = jobs.get(job) or ("GONE", "", "")
    if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED", "RESIZING"):
        return {**rec, "status": "pending"} if rec.get("status") == "running" else rec
    if state not in END_STATES + ("GONE",):
        return rec  # RUNNING, COMPLETING, STAGE_OUT...
    if run_dir is not None:  # the supervisor may have recorded the end in the meantime
        from ._errors import RunNotFoundError
        from ._store import read_record as read_valid

        try:
            fresh = read_valid(Path(run_dir))
            if fresh.get("status") not in ("pending", "running"):
                return fresh
        except RunNotFoundError:
            pass
    what = "no longer exists" if state == "GONE" else f"ended {state}"
    msg = f"SLURM job {job} {what} without recording the run's end"
    return {**rec, "status": "terminated" if state.startswith("CANCELLED") else "error",
            "error": rec.get("error") or {"message": msg}}


def scancel(job_ids: Sequence[str], sig: str | None = None) -> None:
    if not job_ids:
        return
    cmd = ["scancel", *([f"--signal={sig}", "--full"] if sig else []), *job_ids]
    try:
        subprocess.run(cmd, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass


def cancel(run: Any) -> None:
    """``guildlite stop`` of a SLURM run: mark the stop request (so it is not requeued), then scancel."""
    run.paths.meta.mkdir(exist_ok=True)
    run.paths.stop_request.touch()
    remote = run.remote if isinstance(run.remote, dict) else {}
    ids = remote.get("job_ids") or ([remote["job_id"]] if remote.get("job_id") else [])
    if remote.get("batch"):
        for t in run.trials:
            if t.status in ("pending", "running"):
                cancel(t)
        return
    scancel([str(j) for j in ids[-1:]])


# --- the job -------------------------------------------------------------------------------------------


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
        detach: bool = False,
        hook_source: Mapping[str, Any] | None = None,
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
        self.detach = detach
        self.hook_source = dict(hook_source or {})
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
            "hooks": "supervisor" if self.detach else "submitter",
            **self.hook_source,
        }
        from ._files import atomic_write, write_json

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
        if not self.detach:
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
        while True:
            time.sleep(self.poll)
            if out is not None:
                offset = self._echo(out, offset)
            try:
                rec = read_record(self.cwd)
            except (OSError, ValueError):
                continue
            if rec.get("status") in ("completed", "error", "terminated"):
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
                    rec = {**rec, "status": ended_status(state), "exit_code": rec.get("exit_code"),
                           "error": rec.get("error") or {"message": f"SLURM job {self.job_id} ended {state} "
                                                                    "without recording the run's end"}}
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
        self.end_hooks_ran = not claim_end(self.cwd)
        keys = ["started", "attempts", "remote", "host", "error", "exit_code"]
        if self.end_hooks_ran:  # keep what the node's plugins recorded
            keys += ["attrs", "plugins"]
        for k in keys:
            if k in rec:
                setattr(self.run, k, rec[k])
        status = rec.get("status")
        code = rec.get("exit_code")
        if status == "terminated" or self.run.paths.stop_request.exists():
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


def make_job(cfg: Any, run: Any, argv: Sequence[str], env: Mapping[str, str], done: Callable[[Any, int], None]) -> SlurmJob:
    """The SlurmJob for a run of ``cfg`` (a RunConfig with ``backend: slurm``)."""
    return SlurmJob(
        argv, run.run_dir, env, run.paths.output_log, echo=cfg.echo, on_exit=done, run=run,
        options={k: v for k, v in cfg.slurm.items() if k in SLURM_KEYS}, nproc=cfg.nproc,
        launcher=cfg.op.launcher, detach=cfg.detach,
        hook_source={"guildfile": str(cfg.guildfile.path), "op": cfg.op.name,
                     "plugin_names": list(cfg.slurm.get("plugin-names") or [])},
    )


def detach_batch(batch: Any, trials: Sequence[Any]) -> None:
    """After submitting a batch's trials with --detach: record their job ids on the batch, so the
    batch reads as active while any runs; the last trial's supervisor records the batch's end."""
    ids = [t.remote["job_id"] for t in trials if isinstance(t.remote, dict) and t.remote.get("job_id")]
    remote = {"backend": "slurm", "batch": True, "job_ids": ids, "run_dir": str(batch.run_dir), "hooks": "supervisor"}
    batch.remote = remote

    def change(rec: dict[str, Any]) -> None:
        if rec.get("status") in ("pending", "running", "staged"):
            rec["remote"] = remote
            rec["trials"] = list(batch.trial_ids)

    from ._store import update_record

    update_record(batch.run_dir, change)


def slurm_plan(gf: Any, op: Any, overrides: Mapping[str, Any] | None,
               plugin_names: Sequence[str] = ()) -> dict[str, Any]:
    """Merged options (defaults < guildfile < op < command line, each checked)."""
    cli = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        try:
            cli[key] = check_value(key, value)
        except ValueError as e:
            raise GuildliteError(f"--{key}: {e}", exit_code=2) from None
    opts = merge_options(gf.slurm, op.slurm, cli)
    if op.launcher == "python" and opts["nodes"] > 1:
        raise GuildliteError(f"operation '{op.name}' uses launcher python (one process): nodes must be 1", exit_code=2)
    opts["plugin-names"] = list(plugin_names)
    return opts
