"""``guildlite tensorboard``: runs' scalars as TensorBoard event files, and TensorBoard to view them.

Event files are written with the ``tensorboard`` package's own writer (``tensorboard.summary.Writer``,
which needs numpy only): torch is never imported. TensorBoard is an optional extra.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from ._errors import GuildliteError
from ._record import is_run_id
from ._run import Run
from ._scalars import read_rows
from ._varying import flag_order, ordered

_MISSING = "guildlite tensorboard needs TensorBoard (an optional extra): pip install 'guildlite[tensorboard]'"
STAMP = ".guildlite-tb.json"  # in each run's sub-dir: what was written, to skip unchanged runs next time
TB_DIR = ".tensorboard"  # in the runs dir: where `tensorboard --no-server` writes without --logdir
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


def _writer_class() -> Any:
    try:
        from tensorboard.summary import Writer
    except ImportError:
        raise GuildliteError(_MISSING, exit_code=2) from None
    return Writer


def require() -> None:
    """GuildliteError (with the pip command) unless the tensorboard package is installed."""
    _writer_class()


def run_dir_name(run: Run, max_len: int = 120, order: Sequence[str] = ()) -> str:
    """The sub-dir name of a run: ``<id>[-<label>][-<flag>=<value>,...]``, safe as a file name,
    the flags in ``order`` first (those that vary among the runs written: ``_varying``).

    Anything but letters, digits and ``. _ = , + -`` becomes ``_``; long names are cut (the id,
    which comes first, keeps them unique).
    """
    from ._flags import format_value

    parts = [run.id]
    if run.label:
        parts.append(run.label)
    if run.flags:
        parts.append(",".join(f"{k}={format_value(v)}" for k, v in ordered(run.flags, order)))
    name = "-".join(x for x in (_UNSAFE.sub("_", p).strip("_") for p in parts) if x)
    return name[:max_len].rstrip("_.-") or run.id


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def write_logdir(
    runs: Sequence[Run], logdir: Path, log: Callable[[str], None] | None = None, prune: bool = False
) -> list[tuple[Run, Path, int]]:
    """Write one sub-dir of event files per run (batches hold no scalars: skipped).

    A run whose ``scalars.jsonl`` is unchanged since the last write into this logdir is left as
    it is; a changed one is written again from scratch. With ``prune``, the sub-dirs that earlier
    writes made for other runs go (the logdir then holds ``runs`` only). Returns (run, sub-dir,
    points written; -1 for unchanged).
    """
    Writer = _writer_class()
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GuildliteError(f"cannot write event files into {logdir}: {e.strerror or e}", exit_code=2) from None
    earlier: dict[str, list[Path]] = {}  # run id -> its sub-dirs from earlier writes (its name may have changed)
    for stamp_file in logdir.glob(f"*/{STAMP}"):
        try:
            earlier.setdefault(str(json.loads(stamp_file.read_text())[0]), []).append(stamp_file.parent)
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            continue
    if prune:
        wanted = {run.id for run in runs}
        for run_id, subs in earlier.items():
            if run_id not in wanted:
                for old in subs:
                    shutil.rmtree(old, ignore_errors=True)  # a link is not followed (rmtree refuses it)
    out = []
    order = flag_order(r.flags for r in runs if not r.virtual)  # a name cut short keeps what differs
    for run in runs:
        if run.virtual:  # a batch, a pipeline: no scalars of its own
            continue
        if not is_run_id(run.id):  # the sub-dir's name starts with the id: never `..` or a path
            raise GuildliteError(f"{run.id!r} is not a run id", exit_code=2)
        sub = logdir / run_dir_name(run, order=order)
        if sub.is_symlink():  # written into, emptied: never through a link to elsewhere
            sub.unlink()
        for old in earlier.get(run.id, []):
            if old != sub:  # relabelled since: the old name goes
                shutil.rmtree(old, ignore_errors=True)
        try:
            st = os.stat(run.paths.scalars)
            stamp: list[Any] = [run.id, st.st_mtime_ns, st.st_size]
        except OSError:
            stamp = [run.id, None, 0]
        try:
            if json.loads((sub / STAMP).read_text()) == stamp:
                out.append((run, sub, -1))
                continue
        except (OSError, ValueError):
            pass
        if sub.exists():
            for p in sub.glob("events.out.tfevents.*"):
                p.unlink()
        sub.mkdir(exist_ok=True)
        start = _epoch(run.started) or _epoch(run.created) or time.time()
        writer = Writer(str(sub))
        n = 0
        try:
            for row in read_rows(run.paths.scalars):
                v, step, wall = _float(row.get("value")), _step(row.get("step")), _float(row.get("time"))
                if v is None or step is None:
                    continue
                writer.add_scalar(str(row["key"]), v, step,
                                  wall_time=wall if wall is not None and math.isfinite(wall) else start)
                n += 1
        finally:
            writer.close()
        (sub / STAMP).write_text(json.dumps(stamp))
        out.append((run, sub, n))
        if log:
            log(f"{sub.name}: {n} points")
    return out


def _float(x: Any) -> float | None:
    """A number of a row as a float (NaN and infinities included); None for anything else, and
    for an int too large for a float (a hand-written 400-digit value)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        return float(x)
    except OverflowError:
        return None


def _step(step: Any) -> int | None:
    """A row's step as an event file holds it (an int64); None for anything else (a hand-written
    ``1e999``, NaN, a float beyond int64, text), which is skipped as ``compare`` and ``view`` do."""
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        return None
    if isinstance(step, float) and not math.isfinite(step):
        return None
    n = int(step)
    return n if -(1 << 63) <= n < (1 << 63) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(logdir: Path, port: int = 0, echo: Callable[[str], None] = print, cleanup: bool = False) -> int:
    """Run TensorBoard on 127.0.0.1 over ``logdir`` until Ctrl-C (or SIGTERM); its exit code.

    TensorBoard runs as a child process (``python -m tensorboard.main``), so nothing it loads
    (its plugins included) enters this process. ``cleanup`` removes ``logdir`` afterwards.
    """
    import signal
    import urllib.request

    require()
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
           "--port", str(port), "--reload_interval", "5"]

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise GuildliteError(f"TensorBoard exited with code {proc.returncode} (see its messages above)")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise GuildliteError("TensorBoard did not start within 120 s") from None
                time.sleep(0.2)
        echo(f"guildlite: TensorBoard at {url} (Ctrl-C to stop; logdir {logdir})")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if cleanup:
            shutil.rmtree(logdir, ignore_errors=True)
