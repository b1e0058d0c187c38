"""The SLURM backend: one run (one trial of a batch) is one ``sbatch`` job.

Everything SLURM-specific in guildlite lives in this package: the ``slurm:`` options and the sbatch
script (``options``), asking SLURM about jobs (``queue``), the submitted job as the lifecycle sees
it (``job``) and the supervisor that runs the job on the allocated nodes (``node``): it starts
``srun ... torchrun --nnodes ... --rdzv-backend=c10d ...``, appends ``output.log`` and records the
attempts, the requeues and the end through the run store.

Records: ``remote = {"backend": "slurm", "job_id", "job_ids", "partition", "nodes", "hooks", ...}``;
``attempts`` lists every node attempt (job id, hosts, started, stopped, status, reason). A
pending/running record is checked against ``squeue`` on read (``job_state``), never trusted.
The guildlite process never imports torch; nothing here does.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..._errors import GuildliteError
from .. import Backend, CheckLine, CliOption, JobState
from .options import SlurmOptions, check_value

if TYPE_CHECKING:
    from ..._guildfile import OpDef
    from ..._run import Run
    from ..._slots import Slot
    from .. import Launched


class SlurmBackend(Backend):
    """sbatch per run, multi-node torchrun through srun, requeue into the same run dir."""

    name = "slurm"
    options_type = SlurmOptions
    cli_options = (
        CliOption("nodes", "nodes", int, "hosts per run (one torchrun agent each)"),
        CliOption("partition", "partition", str, "the partition to submit to"),
        CliOption("time", "time", str, "the time limit (e.g. 30, 1:00:00, 1-12)"),
    )

    @classmethod
    def check_value(cls, key: str, value: Any) -> Any:
        return check_value(key, value)

    def check_op(self, op: OpDef, nproc: int) -> None:
        if op.launcher == "python" and self.options.nodes > 1:
            raise GuildliteError(f"operation '{op.name}' uses launcher python (one process): nodes must be 1",
                                 exit_code=2)

    def check(self) -> Sequence[str | CheckLine]:
        found = {c: shutil.which(c) for c in ("sbatch", "squeue", "scancel", "sacct")}
        return [CheckLine(f"slurm: {c}: {where or 'not found on PATH'}", ok=where is not None) for c, where in found.items()]

    def plan_slots(self, op: OpDef, parallel: int | None, n_trials: int, gpus: str | None) -> list[Slot]:
        """Jobs in SLURM's queue at once: ``parallel``, default every trial (SLURM schedules them)."""
        from ..._slots import Slot

        return [Slot(i) for i in range(max(1, n_trials) if parallel is None else parallel)]

    def submit(self, run: Run, argv: Sequence[str], env: Mapping[str, str],
               on_exit: Callable[[Launched, int], None], *, echo: bool, grace: float) -> Launched:
        from .job import SlurmJob

        job = SlurmJob(argv, run.run_dir, env, run.paths.output_log, echo=echo, on_exit=on_exit, run=run,
                       options=self.options.as_dict(), nproc=run.nproc_per_node, launcher=run.op_def.get("launcher")
                       or "torchrun")
        job.start()
        return job

    @classmethod
    def job_state(cls, rec: Mapping[str, Any], run_dir: Path | None) -> JobState | None:
        from .queue import state_of

        ids = _job_ids(rec.get("remote"))
        return state_of(ids[-1]) if ids else None

    @classmethod
    def cancel(cls, run: Run, force: bool = False) -> bool:
        """Mark the stop request (so that the job is not requeued), then scancel its last job."""
        from .queue import scancel

        ids = _job_ids(run.remote)
        if not ids:
            return False
        run.paths.meta.mkdir(exist_ok=True)
        run.paths.stop_request.touch()
        if force:
            scancel(ids[-1:], sig="KILL")
        scancel(ids[-1:])
        return True


# A SLURM job id: 123, an array task 123_4, a heterogeneous component 123+1.
_JOB_ID = re.compile(r"[0-9]{1,20}(?:_[0-9]{1,10})?(?:\+[0-9]{1,5})?")


def _job_ids(remote: Any) -> list[str]:
    """The job ids a record names (oldest first); none if its last is not a SLURM job id: a record
    is input, and text such as ``--user=me`` must never reach squeue, sacct or scancel."""
    if not isinstance(remote, dict):
        return []
    ids = [str(j) for j in remote.get("job_ids") or ([remote["job_id"]] if remote.get("job_id") else [])]
    return ids if ids and _JOB_ID.fullmatch(ids[-1]) else []
