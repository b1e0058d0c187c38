"""Helpers for the plugin tests (tests/test_plugins.py, tests/test_examples.py).

A tiny project on disk with a recording plugin module, built on conftest.py's ``Project`` (the
real ``guildlite`` CLI in subprocesses, and the processes a test started).

The recording plugin (``recplug.Rec``) appends one JSON line per hook call to the file named by
``$PLUGTEST_EVENTS`` (or its ``log`` arg). Each line holds what the hook saw: the run's id,
status, exit code, batch/trial facts, the pid of the process the hook ran in, and facts about the
run dir at that moment (published? run.json on disk? has the job started yet?). A test counts
and orders those lines; nothing is mocked: jobs are real ``torchrun`` (or ``python``) processes.

The job script (``job.py``) writes ``$PLUGTEST_MARKERS/<run id>.started.rank<N>`` as its first
act and ``...finished.rank<N>`` as its last, so a test can tell whether a job was ever launched.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from conftest import ROOT, Project, clean_env, load_record, run_guildlite

EXAMPLES = ROOT / "examples"
HOOKS = ("on_run_staged", "on_run_begin", "on_run_end")
BUILTINS = ("SourceSnapshot", "EnvCapture", "OutputScalars")

# The job: no heavy imports. Flags arrive as --name=value.
JOB_SCRIPT = textwrap.dedent(
    """\
    import os, sys, time

    TAG = "orig"

    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    rank = os.environ.get("RANK", "0")
    run_id = os.environ.get("GUILDLITE_RUN_ID", "?")
    markers = os.environ.get("PLUGTEST_MARKERS")

    def mark(what):
        if markers:
            with open(os.path.join(markers, f"{run_id}.{what}.rank{rank}"), "w") as f:
                f.write(str(os.getpid()))

    mark("started")
    print(f"job rank={rank} tag={TAG} x={flags.get('x')}", flush=True)
    if rank == "0":
        print(f"loss: {float(flags.get('x', '1')) / 10}", flush=True)
    time.sleep(float(flags.get("sleep", "0")))
    mark("finished")
    sys.exit(int(flags.get("code", "0")))
    """
)

# The recording plugin module, written into the project as recplug.py.
RECPLUG = textwrap.dedent(
    """\
    import json, os, sys, threading, time
    from pathlib import Path

    from guildlite import Plugin, StopRun, hook

    if os.environ.get("PLUGTEST_IMPORTS"):  # count imports of this module (and where they happen)
        with open(os.environ["PLUGTEST_IMPORTS"], "a") as f:
            f.write(f"{__name__} {os.getpid()}\\n")


    def facts(run):
        d = Path(run.run_dir)
        markers = os.environ.get("PLUGTEST_MARKERS")
        try:
            disk = json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            disk = None
        return {
            "published": d.name == run.id,
            "disk_status": disk and disk.get("status"),
            "script_staged": (d / "job.py").exists(),
            "job_started": bool(markers) and any(Path(markers).glob(f"{run.id}.started.*")),
        }


    class Rec(Plugin):
        \"\"\"Records every hook call; ``veto``/``fail`` list the hooks in which to StopRun/raise.\"\"\"

        def __init__(self, tag=None, log=None, veto=(), fail=(), exit=(), when=None, dwell=None):
            self.tag = tag or type(self).__name__
            self.log = log or os.environ["PLUGTEST_EVENTS"]
            self.veto, self.fail, self.exit = list(veto), list(fail), list(exit)
            self.when, self.dwell = dict(when or {}), dict(dwell or {})
            self.busy = False

        def applies(self, run):
            # veto/fail apply only where ``when`` matches: is_batch/is_trial or flag values
            for k, v in self.when.items():
                have = getattr(run, k) if k in ("is_batch", "is_trial") else run.flags.get(k)
                if have != v:
                    return False
            return True

        @property
        def name(self):
            return self.tag

        def event(self, hook_name, run):
            overlap = self.busy  # another hook call of this plugin is still going (another thread)
            self.busy = True
            try:
                self._event(hook_name, run, overlap)
            finally:
                self.busy = False

        def _event(self, hook_name, run, overlap):
            parent = run.parent
            rec = {
                "plugin": self.tag, "hook": hook_name, "run": run.id, "status": run.status,
                "exit_code": run.exit_code, "is_batch": run.is_batch, "is_trial": run.is_trial,
                "parent": parent.id if parent is not None else None,
                "parent_is_batch": parent.is_batch if parent is not None else None,
                "trials": [[t.id, t.status] for t in run.trials] if run.is_batch else None,
                "flags": run.flags, "error": run.error, "pid": os.getpid(), **facts(run),
                "main_thread": threading.current_thread() is threading.main_thread(), "overlap": overlap,
            }
            with open(self.log, "a") as f:
                f.write(json.dumps(rec) + "\\n")
            if hook_name in self.dwell:  # linger in the hook (a window for signals or overlaps)
                time.sleep(self.dwell[hook_name])
            if hook_name in self.exit and self.applies(run):
                sys.exit(3)
            if hook_name in self.veto and self.applies(run):
                raise StopRun(f"{self.tag} vetoes in {hook_name}")
            if hook_name in self.fail and self.applies(run):
                raise RuntimeError(f"{self.tag} fails in {hook_name}")

        def on_run_staged(self, run):
            self.event("on_run_staged", run)

        def on_run_begin(self, run):
            self.event("on_run_begin", run)

        def on_run_end(self, run):
            self.event("on_run_end", run)


    class Early(Rec):
        \"\"\"Class priority 50, but its on_run_end runs late (200).\"\"\"

        priority = 50

        @hook(priority=200)
        def on_run_end(self, run):
            self.event("on_run_end", run)


    class Late(Rec):
        \"\"\"Its on_run_staged asks for priority 1 (a guildfile priority overrides that).\"\"\"

        @hook(priority=1)
        def on_run_staged(self, run):
            self.event("on_run_staged", run)


    class EndOnly(Plugin):
        \"\"\"Implements on_run_end only: the other hooks are neither called nor traced.\"\"\"

        def on_run_end(self, run):
            with open(os.environ["PLUGTEST_EVENTS"], "a") as f:
                f.write(json.dumps({"plugin": "EndOnly", "hook": "on_run_end", "run": run.id}) + "\\n")


    class EditTag(Plugin):
        \"\"\"on_run_staged: rewrite TAG in the staged job.py.\"\"\"

        def __init__(self, tag="edited"):
            self.tag = tag

        def on_run_staged(self, run):
            p = Path(run.run_dir) / "job.py"
            p.write_text(p.read_text().replace('TAG = "orig"', f'TAG = "{self.tag}"'))


    class NumericFail(Plugin):
        \"\"\"on_run_end raises an exception whose last traceback line reads like a scalar.\"\"\"

        def on_run_end(self, run):
            {}[5]  # KeyError: 5


    class NeedsArg(Plugin):
        def __init__(self, threshold):
            if threshold < 0:
                raise ValueError("threshold must be >= 0")
            self.threshold = threshold


    class NotAPlugin:
        def on_run_end(self, run):
            pass
    """
)

OP_FLAGS = {"x": 1.0, "code": 0, "sleep": 0.0}


def guildfile_text(
    global_plugins: list[Any] | None = None,
    op_plugins: Mapping[str, list[Any]] | None = None,
) -> str:
    """A guildfile (block-style YAML) with ops quick (python), torch (torchrun 1), torch2 (torchrun 2)."""
    import yaml

    ops: dict[str, Any] = {
        "quick": {"main": "job.py", "launcher": "python", "flags": dict(OP_FLAGS)},
        "torch": {"main": "job.py", "flags": dict(OP_FLAGS)},
        "torch2": {"main": "job.py", "nproc-per-node": 2, "flags": dict(OP_FLAGS)},
    }
    for op, plugins in (op_plugins or {}).items():
        ops[op]["plugins"] = plugins
    data: dict[str, Any] = {}
    if global_plugins is not None:
        data["plugins"] = global_plugins
    data["operations"] = ops
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


@dataclass
class PluginProject(Project):
    """A project dir (guildfile.yml, job.py, recplug.py), its runs dir, and its bookkeeping files."""

    marker_env: ClassVar[str] = "PLUGTEST_PROC_MARKER"
    marker: str = field(default_factory=lambda: f"plugtest-{uuid.uuid4().hex[:12]}")

    @property
    def work(self) -> Path:
        """The bookkeeping dir, next to the project dir."""
        return self.root.with_name(f"{self.root.name}-work")

    @property
    def events_path(self) -> Path:
        return self.work / "events.jsonl"

    @property
    def imports_path(self) -> Path:
        return self.work / "imports.txt"

    @property
    def markers(self) -> Path:
        return self.work / "markers"

    @property
    def env(self) -> dict[str, str]:
        return clean_env(
            self.runs_dir,
            PLUGTEST_EVENTS=str(self.events_path),
            PLUGTEST_IMPORTS=str(self.imports_path),
            PLUGTEST_MARKERS=str(self.markers),
            **{self.marker_env: self.marker},
        )

    def write_guildfile(self, text: str) -> Path:
        p = self.root / "guildfile.yml"
        p.write_text(text)
        return p

    def events(self, hook: str | None = None, plugin: str | None = None) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        rows = [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]
        return [r for r in rows if (hook is None or r["hook"] == hook) and (plugin is None or r["plugin"] == plugin)]

    def records(self) -> list[dict[str, Any]]:
        """Every run's raw run.json, oldest first; a run dir without one fails the test."""
        return [load_record(d) for d in self.run_dirs()]

    def started(self, run_id: str | None = None) -> list[Path]:
        """Marker files of jobs that started (of one run, or of any)."""
        if not self.markers.is_dir():
            return []
        return sorted(self.markers.glob(f"{run_id or '*'}.started.rank*"))

    def finished(self, run_id: str | None = None) -> list[Path]:
        if not self.markers.is_dir():
            return []
        return sorted(self.markers.glob(f"{run_id or '*'}.finished.rank*"))


def make_plugin_project(base: Path, guildfile: str | None = None, name: str = "project") -> PluginProject:
    root = base / name
    root.mkdir(parents=True)
    (root / "job.py").write_text(JOB_SCRIPT)
    (root / "recplug.py").write_text(RECPLUG)
    proj = PluginProject(root=root, runs_dir=base / f"{name}-runs")
    proj.markers.mkdir(parents=True)
    proj.write_guildfile(guildfile or guildfile_text())
    return proj


def hook_sequence(trace: Iterable[Mapping[str, Any]], hook: str) -> list[str]:
    """The plugin names of ``hook``'s calls, in trace order."""
    return [t["plugin"] for t in trace if t["hook"] == hook]


def run_example(
    name: str, *args: str, runs_dir: Path, timeout: float = 180, extra_env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``guildlite run -f examples/NAME/guildfile.yml ARGS -y`` with its runs in ``runs_dir``.

    ``-f`` is an option of ``run`` (not of the ``guildlite`` group); the cwd is outside the example.
    """
    return run_guildlite(
        "run", "-f", str(EXAMPLES / name / "guildfile.yml"), *args, "-y",
        cwd=runs_dir.parent, env=clean_env(runs_dir, **(extra_env or {})), timeout=timeout,
    )
