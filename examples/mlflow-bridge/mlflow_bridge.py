"""Mirror guildlite runs into MLflow, on guildlite's public plugin API only (``Plugin``, ``Run``).

- ``on_run_begin``: an MLflow run in the experiment (created if missing), tagged with the
  guildlite run's id, op and opspec, with the flags as params. A batch is a parent MLflow run
  whose trials are nested in it (``mlflow.parentRunId``).
- ``on_run_progress``: the scalar rows that arrived (``run.new_scalars``) as metrics, with their
  step and time, while the job runs.
- ``on_run_end``: any rows not sent yet (captured at the very end), the status (completed ->
  FINISHED, error -> FAILED, terminated -> KILLED), the exit code and error as tags, and the
  artifacts (``output.log`` and the ``artifacts`` globs, files inside the run dir only).

MLflow is imported in the hooks (never at guildlite's start-up). The MLflow run's id is kept in
``run.attrs["mlflow"]``. A mirror must never cost a training run: an MLflow failure (server down,
a rejected value) is printed and recorded in ``run.attrs["mlflow"]["error"]``, and the run goes
on, unless ``required: true`` (then ``on_run_begin`` fails and the run does not start).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from guildlite import Plugin, Run

STATUS = {"completed": "FINISHED", "error": "FAILED", "terminated": "KILLED"}
BATCH = 1000  # MLflow's limit of metrics per log_batch call
MAX_SCALARS = 512 << 20  # of scalars.jsonl read at the end
MAX_PARAM = 6000  # MLflow's limit of a param value's length (older servers: 500)
_BAD_KEY = re.compile(r"[^\w\-. :/]")  # MLflow's metric/param names: alphanumerics, _ - . space : /


class MLflowBridge(Plugin):
    priority = 150  # after guildlite's built-ins (scalars are in scalars.jsonl) and default plugins

    def __init__(self, tracking_uri: str | None = None, experiment: str = "guildlite",
                 artifacts: Iterable[str] = (), required: bool = False) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.artifacts = ["output.log", *artifacts]
        self.required = required
        self._client: Any = None

    # --- hooks ---------------------------------------------------------------------------------

    def on_run_begin(self, run: Run) -> None:
        self._guard(run, self._begin, run, fatal=self.required)

    def on_run_progress(self, run: Run) -> None:
        self._guard(run, self._send, run, run.new_scalars)

    def on_run_end(self, run: Run) -> None:
        self._guard(run, self._end, run)

    # --- the work ------------------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient  # a second or so: only once a run begins

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _begin(self, run: Run) -> None:
        c = self.client()
        exp = c.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else c.create_experiment(self.experiment)
        tags = {"guildlite.run_id": run.id, "guildlite.op": run.op, "guildlite.opspec": run.opspec,
                "mlflow.runName": run.label or f"{run.op} {run.id}", "guildlite.kind": "batch" if run.is_batch else "run"}
        if run.attempts:
            tags["guildlite.attempt"] = str(len(run.attempts) + 1)
        parent = run.parent.attrs.get("mlflow", {}).get("run_id") if run.parent is not None else None
        if parent:
            tags["mlflow.parentRunId"] = parent
        mlrun = c.create_run(exp_id, tags=tags)
        run.attrs["mlflow"] = {"run_id": mlrun.info.run_id, "experiment_id": exp_id, "sent": 0,
                               "offset": _size(run.paths.scalars)}
        from mlflow.entities import Param

        params = [Param(_key(k), _text(v)[:MAX_PARAM]) for k, v in sorted(run.flags.items())]
        for i in range(0, len(params), 100):  # MLflow's limit of params per call
            c.log_batch(mlrun.info.run_id, params=params[i : i + 100])

    def _send(self, run: Run, rows: Iterable[Mapping[str, Any]]) -> None:
        info = run.attrs.get("mlflow")
        if not info or not info.get("run_id"):
            return
        from mlflow.entities import Metric

        rows = list(rows)
        now = int(time.time() * 1000)
        metrics = [Metric(_key(r["key"]), float(r["value"]), int(float(r.get("time") or 0) * 1000) or now,
                          int(r.get("step") or 0))
                   for r in rows if isinstance(r.get("value"), (int, float)) and math.isfinite(r["value"])]
        for i in range(0, len(metrics), BATCH):
            self.client().log_batch(info["run_id"], metrics=metrics[i : i + BATCH])
        info["sent"] = int(info.get("sent") or 0) + len(rows)

    def _end(self, run: Run) -> None:
        info = run.attrs.get("mlflow")
        if not info or not info.get("run_id"):
            return
        c = self.client()
        if not run.is_batch:  # rows captured after the last on_run_progress (or with none at all)
            self._send(run, _rows(run.paths.scalars, int(info.get("offset") or 0))[int(info.get("sent") or 0) :])
        tags: dict[str, str] = {"guildlite.status": run.status}
        if run.exit_code is not None:
            tags["guildlite.exit_code"] = str(run.exit_code)
        if run.error:
            tags["guildlite.error"] = str(run.error.get("message", ""))[:5000]
        for k, v in tags.items():
            c.set_tag(info["run_id"], k, v)
        for path in _artifacts(run.run_dir, self.artifacts):
            rel = path.relative_to(Path(run.run_dir).resolve()).parent.as_posix()
            c.log_artifact(info["run_id"], str(path), None if rel == "." else rel)
        c.set_terminated(info["run_id"], STATUS.get(run.status, "FAILED"))

    def _guard(self, run: Run, fn: Any, *args: Any, fatal: bool = False) -> None:
        try:
            fn(*args)
        except Exception as e:
            if fatal:
                raise
            message = f"{type(e).__name__}: {e}"[:2000]
            run.attrs.setdefault("mlflow", {})["error"] = message
            print(f"mlflow-bridge: run {run.id}: {message}", file=sys.stderr, flush=True)


def _key(name: str) -> str:
    return _BAD_KEY.sub("_", str(name))[:250] or "_"


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _rows(path: Path, offset: int) -> list[dict[str, Any]]:
    """The rows of ``scalars.jsonl`` from byte ``offset`` (where this attempt's rows start)."""
    if path.is_symlink() or not path.is_file():  # the job may plant anything there: a FIFO, /dev/zero
        return []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read(MAX_SCALARS).splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str):
            rows.append(row)
    return rows


def _artifacts(run_dir: Path, patterns: Iterable[str]) -> list[Path]:
    """Regular files matching ``patterns`` whose real path stays inside the run dir."""
    base = Path(run_dir).resolve()
    found: dict[Path, None] = {}
    for pattern in patterns:
        for p in sorted(base.glob(pattern)):
            real = p.resolve()
            if real.is_file() and real.is_relative_to(base) and ".guildlite" not in real.relative_to(base).parts:
                found[real] = None
    return list(found)
