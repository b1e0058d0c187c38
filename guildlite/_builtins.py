"""guildlite's own lifecycle features, written as plugins on the public API.

Priorities (lower runs first; user plugins default to 100):
- ``SourceSnapshot`` 10, on_run_staged: records every staged source file with its size and
  sha256 in ``.guildlite/sourcecode.json``, before any plugin edits the staged copy, beside
  the project files staging skipped (FIFOs, sockets, devices, bad symlinks...) with the reason.
- ``GlobalFlags`` 10 (after SourceSnapshot), on_run_staged: with ``flags-dest: globals``, sets the
  staged main script's top-level assignments to the run's flag values.
- ``EnvCapture`` 10, on_run_begin: python, torch, packages, git commit and dirty flag, host and
  GPUs into ``.guildlite/env.json``, with a summary in ``run.attrs["env"]``.
- ``OutputScalars`` 10, on_run_end: ``key: value`` lines printed by rank 0, and the scalars of the
  job's TensorBoard event files and Lightning ``metrics.csv`` (``_logfiles``), into ``scalars.jsonl``
  (what the live capture of the run's owner did not already take), so user plugins' on_run_end
  already sees them.
- ``Pruning`` 10 (``_pruning``), on_run_progress: joins a session that runs the trials of a batch
  whose search prunes; stops a trial as ``pruned`` when the batch's study says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ._errors import GuildliteError
from ._files import cache_dir, write_json
from ._plugins import Plugin
from ._scalars import OutputParser, output_rules

if TYPE_CHECKING:
    from ._runview import Run

BUILTIN_PRIORITY = 10


class SourceSnapshot(Plugin):
    """Record the staged source files (path, size, sha256) as they were copied."""

    priority = BUILTIN_PRIORITY

    def on_run_staged(self, run: Run) -> None:
        from ._needed import source_digest, source_manifest

        # Staging wrote the files it copied and those it skipped, with why, before any hook.
        staging = json.loads(run.paths.manifest.read_text())
        skipped = staging.get("skipped", [])
        # An earlier plugin may have edited the list: only paths inside the run dir are read.
        manifest = source_manifest(run.run_dir, [f.get("path") for f in staging["files"] if isinstance(f, dict)])
        # One digest names the staged source as a whole: a restart (staged again from the project
        # as it is then) records its own, and its earlier attempts keep theirs; --needed compares it.
        digest = source_digest(manifest)
        sourcecode = run.attrs.setdefault("sourcecode", {})
        sourcecode["digest"] = digest
        write_json(run.paths.manifest,
                   {"root": sourcecode.get("root"), "digest": digest, "files": manifest, "skipped": skipped})


class GlobalFlags(Plugin):
    """``flags-dest: globals``: rewrite the staged script's ``name = <literal>`` lines (with
    ``dict:NAME``, the entries of ``NAME = {...}``) to the run's values, in place (comments and
    formatting kept), so ``guildlite diff RUN`` shows exactly the edits and the job is a plain
    ``python script.py``."""

    priority = BUILTIN_PRIORITY

    def on_run_staged(self, run: Run) -> None:
        from ._reach import global_names, in_source, script_in

        is_globals, container = in_source(run.op_def.get("flags-dest"))
        if run.is_batch or not is_globals:
            return
        from ._pysource import read_source, rewrite, write_source

        script = script_in(run.run_dir, run.op_def)
        if script is None:
            raise FileNotFoundError(f"the staged run has no copy of {run.op_def.get('main')!r}")
        src = read_source(script)
        text = rewrite(src, {g: run.flags[f] for f, g in global_names(run.op_def, run.flags).items()}, container)
        if text != src.text:
            write_source(src, text)


class EnvCapture(Plugin):
    """Record the environment a run starts in."""

    priority = BUILTIN_PRIORITY

    def on_run_begin(self, run: Run) -> None:
        root = Path(run.attrs.get("sourcecode", {}).get("root") or run.run_dir)
        env = {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "platform": platform.platform(),
            "host": run.host,
            "torch": _dist_version("torch"),
            "git": _git(str(root)),
            "gpus": run.gpus,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "nvidia_smi": _nvidia_smi(),
            "packages": _packages(),
        }
        write_json(run.paths.env, env)
        run.attrs["env"] = {k: env[k] for k in ("python", "torch", "git", "host")}


class OutputScalars(Plugin):
    """Rank 0's ``key: value`` output lines (or the op's ``output-scalars``) in ``scalars.jsonl``.

    The run's owner captures them while the job runs (``_live``) and drains the output at its end,
    before this hook: here only what nobody captured yet is read, from where that capture stopped
    (``.guildlite/capture.json``), as when a backend fires it where the job ran, its owner gone.
    """

    priority = BUILTIN_PRIORITY

    def on_run_end(self, run: Run) -> None:
        from ._live import OutputSource, read_state, save_state

        if run.is_batch:
            return
        _log_file_scalars(run)
        if not run.paths.output_log.exists():
            return
        rules = output_rules(run.op_def, run.remote.hosts if run.remote else ())
        if rules is None:
            return
        state = read_state(run.run_dir).get(OutputSource.name) or {}
        offset, size = int(state.get("offset") or 0), run.paths.output_log.stat().st_size
        rows: list[dict[str, Any]] = []
        try:  # rows found before a pattern hung are kept: the failure is raised after writing them
            if state.get("note"):  # the patterns ran out of time while the job ran
                raise GuildliteError(str(state["note"]))
            if offset < size:
                rows.extend(parse_scalars(run.paths.output_log, run.nproc_per_node, rules[0],
                                          task_labels=rules[1], offset=offset, step=int(state.get("step") or 0)))
        finally:
            if rows:
                with open(run.paths.scalars, "a", encoding="utf-8") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
            captured = int(state.get("rows") or 0) + len(rows)
            if offset < size:
                source = OutputSource(run.run_dir, OutputParser(1), {**state, "offset": size, "rows": captured})
                save_state(run.run_dir, [source])
            run.attrs["scalars"] = {"captured": captured}


def _log_file_scalars(run: Run) -> None:
    """The scalars of the TensorBoard event files and Lightning ``metrics.csv`` in the run dir that
    the live capture did not take (``_logfiles``), from where it stopped."""
    from ._live import append_rows, read_state, save_state
    from ._logfiles import LogFiles

    logs = LogFiles(run.run_dir, read_state(run.run_dir).get(LogFiles.name))
    append_rows(run.run_dir, logs.finish())
    save_state(run.run_dir, [logs])
    if logs.rows or logs.problems:
        run.attrs["logfiles"] = {"captured": logs.rows, "problems": logs.problems}


# An op's own ``output-scalars`` regexes run in C, where nothing can interrupt them, and one that
# backtracks catastrophically (``(a+)+$``) takes exponential time in a line's length: they are applied
# in a child process given PATTERN_SECONDS (``GUILDLITE_SCALARS_TIMEOUT``; +1 s per MB of log), and
# only to lines up to ``_scalars.PATTERN_LINE_MAX`` characters (longer lines are skipped for them).
PATTERN_SECONDS = 60.0
TIMEOUT_ENV = "GUILDLITE_SCALARS_TIMEOUT"


def parse_scalars(
    log: Path, nproc: int, patterns: list[str] | str | None = None, task_labels: bool = False,
    offset: int = 0, step: int = 0,
) -> Iterator[dict[str, Any]]:
    """Scalar rows ``{"step", "key", "value"}`` from an output log, rank 0 lines only.

    Default rule: ``key: number`` lines, where a ``step`` key sets the step of what follows.
    With ``patterns`` (the op's ``output-scalars``): each regex is searched in every line; a group
    named ``step`` gives the step and every other named group that holds a number is a scalar.
    With ``task_labels`` (a run over several hosts), lines carry the launcher's task number: rank 0 is on
    task 0. From byte ``offset`` of the log (a line start), the step then being ``step``.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if patterns:
        yield from _parse_isolated(log, nproc, patterns, task_labels, offset, step)
        return
    yield from _parse(log, nproc, None, task_labels, offset, step)


def _parse_isolated(log: Path, nproc: int, patterns: list[str], task_labels: bool, offset: int,
                    step: int) -> Iterator[dict[str, Any]]:
    """``_parse`` with the op's ``patterns``, in a child process killed when it takes too long (the
    rows it found until then are kept, then GuildliteError)."""
    try:
        limit = float(os.environ.get(TIMEOUT_ENV) or PATTERN_SECONDS)
    except ValueError:
        raise GuildliteError(f"{TIMEOUT_ENV} must be a number of seconds") from None
    timeout = limit + log.stat().st_size / 1e6
    here = str(Path(__file__).resolve().parents[1])  # this guildlite, in the child too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    request = json.dumps({"log": str(log), "nproc": nproc, "patterns": patterns, "task_labels": task_labels,
                          "offset": offset, "step": step})
    try:  # -u: each row reaches us as it is found, so a timeout keeps those found before the hang
        cp = subprocess.run([sys.executable, "-u", "-c", "from guildlite._builtins import _parse_child; _parse_child()"],
                            input=request, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        for line in out.splitlines():
            try:
                yield json.loads(line)
            except ValueError:  # cut short by the kill
                continue
        raise GuildliteError(f"output-scalars: the op's patterns took more than {timeout:.0f} s over {log.name} "
                             "(a pattern that backtracks catastrophically?); rows after that point are not "
                             "captured") from None
    if cp.returncode != 0:
        raise GuildliteError(f"output-scalars: reading {log.name} failed: {cp.stderr.strip()[-400:]}")
    for line in cp.stdout.splitlines():
        yield json.loads(line)


def _parse_child() -> None:
    """The child of ``_parse_isolated``: a request as JSON on stdin, rows as JSON lines on stdout."""
    req = json.loads(sys.stdin.read())
    rows = _parse(Path(req["log"]), req["nproc"], [re.compile(p) for p in req["patterns"]], req["task_labels"],
                  req["offset"], req["step"])
    for r in rows:
        sys.stdout.write(json.dumps(r) + "\n")


def _parse(log: Path, nproc: int, regexes: list[re.Pattern[str]] | None, task_labels: bool, offset: int = 0,
           step: int = 0) -> Iterator[dict[str, Any]]:
    parser = OutputParser(nproc, regexes, task_labels)
    parser.step = step
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(offset)  # a line start (a byte offset, as the live capture left it): no decoder state
        for line in f:
            yield from parser.feed(line)


def _dist_version(name: str) -> str | None:
    return _packages().get(name)


@lru_cache(maxsize=None)
def _packages() -> dict[str, str]:
    """Installed distributions and versions, cached on disk until a sys.path dir changes."""
    stamp = []
    for entry in sys.path:
        try:
            stamp.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            continue
    key = hashlib.sha256("|".join(stamp).encode()).hexdigest()[:24]
    cache = cache_dir("packages") / f"{key}.json"
    try:
        cached: dict[str, str] = json.loads(cache.read_text())
        return cached
    except (OSError, ValueError):
        pass
    from importlib.metadata import distributions  # tens of ms to import: only on a cache miss

    found = dict(sorted((d.metadata["Name"] or "?", d.version) for d in distributions()))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, found)
    except OSError:
        pass  # an unwritable cache only costs time
    return found


@lru_cache(maxsize=None)
def _git(root: str) -> dict[str, Any] | None:
    if not shutil.which("git"):
        return None
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


@lru_cache(maxsize=None)
def _nvidia_smi() -> list[str] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [line.strip() for line in r.stdout.splitlines() if line.strip()] if r.returncode == 0 else None


def builtin_plugins(flags_dest: str | None = None) -> list[Plugin]:
    """Fresh instances of the built-ins, declared first (so they win priority ties).

    ``GlobalFlags`` joins only for an op whose ``flags-dest`` writes into the source, so other
    runs' hook traces hold only the built-ins that act on them.
    """
    from ._reach import in_source

    rewrite = [GlobalFlags()] if in_source(flags_dest)[0] else []
    return [SourceSnapshot(), *rewrite, EnvCapture(), OutputScalars()]
