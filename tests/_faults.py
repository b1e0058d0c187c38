"""Helpers for the fault-injection tests: a probe project, real guildlite processes, kill triggers,
process scans and the run-store invariants checked after every fault.

Everything here drives the real CLI in subprocesses (conftest's ``GUILDLITE``) and reads the real
run store; nothing in guildlite is patched.

The probe project
-----------------
``make_project`` writes a guildfile with an op per launcher, a job script and a plugin (``Probe``)
that reports what it does through files in an *events* dir (``GLF_EVENTS``):

- ``enter-<hook>-<run id>`` / ``exit-<hook>-<run id>`` around every hook call, which sleeps a
  random few ms (``GLF_HOOK_MS``) or a fixed time (``GLF_SLEEP_<HOOK>``);
- one ``<run id> <status>`` line in ``ends.log`` per ``on_run_end`` call (O_APPEND writes);
- ``job-<run id>-<rank>`` when the job starts, ``sig-<SIGNAME>-<run id>-<rank>`` when it gets a
  signal (it then exits 128+N; with ``deaf=1`` it ignores SIGINT).

Every process of a test carries a unique marker in its environment (``GLF_MARKER``): guildlite
passes its environment on to torchrun and the ranks, so ``marker_procs`` finds them all.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from conftest import GUILDLITE, TRACEBACK, live_procs

from guildlite._errors import RunNotFoundError
from guildlite._run import load_run
from guildlite._selection import RunList
from guildlite._status import ACTIVE

JOB_SCRIPT = r'''
import os, signal, sys, time

flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
events = os.environ.get("GLF_EVENTS")
run_id = os.environ.get("GUILDLITE_RUN_ID", "none")
rank = os.environ.get("RANK", "0")


def event(name):
    if events:
        with open(os.path.join(events, name), "w"):
            pass


def on_signal(sig, frame):
    event(f"sig-{signal.Signals(sig).name}-{run_id}-{rank}")
    if sig == signal.SIGINT and flags.get("deaf") == "1":
        return
    sys.exit(128 + sig)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
event(f"job-{run_id}-{rank}")
time.sleep(float(flags.get("sleep", "0")))
print("loss: 0.1", flush=True)
'''

PLUGIN = r'''
import os, random, time

from guildlite import Plugin


class Probe(Plugin):
    """Reports every hook call as files in GLF_EVENTS and sleeps a little in each."""

    def __init__(self):
        self.rng = random.Random(os.environ.get("GLF_SEED"))

    def _event(self, name):
        events = os.environ.get("GLF_EVENTS")
        if events:
            with open(os.path.join(events, name), "w"):
                pass

    def _hook(self, run, hook):
        self._event(f"enter-{hook}-{run.id}")
        fixed = os.environ.get("GLF_SLEEP_" + hook.upper())
        ms = float(os.environ.get("GLF_HOOK_MS", "0"))
        time.sleep(float(fixed) if fixed else self.rng.uniform(0, ms) / 1000)
        self._event(f"exit-{hook}-{run.id}")

    def on_run_staged(self, run):
        self._hook(run, "on_run_staged")

    def on_run_begin(self, run):
        self._hook(run, "on_run_begin")

    def on_run_end(self, run):
        events = os.environ.get("GLF_EVENTS")
        if events:
            fd = os.open(os.path.join(events, "ends.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{run.id} {run.status}\n".encode())
            finally:
                os.close(fd)
        self._hook(run, "on_run_end")
'''


def make_project(root: Path, n_source_files: int = 0, plugin: bool = True) -> Path:
    """A probe project in ``root``: ops ``py`` (launcher python) and ``tr`` (torchrun, 2 ranks)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "job.py").write_text(JOB_SCRIPT)
    (root / "glfprobe.py").write_text(PLUGIN)
    flags = "      sleep: 0.0\n      x: 1\n      deaf: 0\n"
    (root / "guildfile.yml").write_text(
        ("plugins:\n  - class: glfprobe:Probe\n" if plugin else "")
        + "operations:\n"
        + "  py:\n    main: job.py\n    launcher: python\n    flags:\n" + flags
        + "  tr:\n    main: job.py\n    nproc-per-node: 2\n    flags:\n" + flags
    )
    if n_source_files:
        # Many small files make staging (copy + SourceSnapshot's hashing) take a while.
        for d in range(max(1, n_source_files // 100)):
            sub = root / "pkg" / f"m{d:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            for i in range(100):
                (sub / f"f{i:03d}.py").write_text(f"X = {d * 100 + i}\n" * 8)
    return root


def new_marker() -> str:
    return f"glfault-{uuid.uuid4().hex[:12]}"


def base_env(marker: str, events: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUILDLITE_", "GLF_"))}
    if "GUILDLITE_GPU_LEASE_DIR" in os.environ:  # the test's own (conftest), never the machine's
        env["GUILDLITE_GPU_LEASE_DIR"] = os.environ["GUILDLITE_GPU_LEASE_DIR"]
    env.update(GLF_MARKER=marker, PYTHONDONTWRITEBYTECODE="1")
    if events is not None:
        env["GLF_EVENTS"] = str(events)
    env.update(extra)
    return env


def guildlite(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
              input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the guildlite CLI to its end."""
    return subprocess.run(
        [*GUILDLITE, *args], cwd=cwd, env=env if env is not None else base_env(new_marker(), None),
        capture_output=True, text=True, timeout=timeout, input=input, check=False)


def spawn(args: Sequence[str], cwd: Path, env: dict[str, str], stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start a guildlite command without waiting for it."""
    return subprocess.Popen([*GUILDLITE, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)


# --- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    cmd: str
    rank: bool  # a torchrun worker (TORCHELASTIC_RUN_ID in its environment)

    def __str__(self) -> str:
        return f"{self.pid} {'rank ' if self.rank else ''}{self.cmd[:160]}"


def marker_procs(marker: str) -> list[Proc]:
    """Live (non-zombie) processes with ``marker`` in their command line or environment."""
    needle = marker.encode()
    return [
        Proc(pid, cmd.replace(b"\0", b" ").decode(errors="replace").strip(), b"\0TORCHELASTIC_RUN_ID=" in b"\0" + env)
        for pid, cmd, env in live_procs()
        if needle in cmd or needle in env
    ]


def wait_gone(marker: str, timeout: float) -> list[Proc]:
    """Poll until no process carries ``marker``; return what is left after ``timeout`` seconds.

    "None" must hold on two scans 50 ms apart: a process caught inside execve shows an empty
    environment for a moment, which one scan would take for "gone".
    """
    deadline = time.monotonic() + timeout
    empty_since = None
    while True:
        left = marker_procs(marker)
        now = time.monotonic()
        if left:
            empty_since = None
            if now > deadline:
                return left
        elif empty_since is None:
            empty_since = now
        elif now - empty_since >= 0.05:
            return []
        time.sleep(0.02)


def kill_all(procs: Iterable[Proc]) -> None:
    """SIGKILL processes this test started (found by its marker), to clean up after a failure."""
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def unexeced_child(pid: int, parent_cmd: bytes) -> bool:
    """Whether ``pid`` has a child that was forked but has not exec'd yet (same cmdline)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = f.read().split()
        except OSError:
            continue
        for k in kids:
            try:
                with open(f"/proc/{k}/cmdline", "rb") as f:
                    if f.read() == parent_cmd:
                        return True
            except OSError:
                continue
    return False


# --- the run store -------------------------------------------------------------------------------


def events_of(events: Path) -> set[str]:
    try:
        return set(os.listdir(events))
    except FileNotFoundError:
        return set()


def ends_of(events: Path) -> list[tuple[str, str]]:
    """(run id, status) for every on_run_end call, in order."""
    try:
        text = (events / "ends.log").read_text()
    except FileNotFoundError:
        return []
    return [tuple(line.split(" ", 1)) for line in text.splitlines() if line]  # type: ignore[misc]


@dataclass
class StoreReport:
    """What ``check_store`` found (it raises AssertionError on any violated invariant)."""

    statuses: dict[str, str] = field(default_factory=dict)  # run id -> "raw" or "raw->derived"
    batches: set[str] = field(default_factory=set)  # ids of batch runs
    staging: set[str] = field(default_factory=set)  # unpublished .staging-<id> dirs
    tmp_files: int = 0  # run.json temp files left by an interrupted write


def _list_cli(runs_dir: Path, cwd: Path, in_process: bool) -> tuple[int, str, str]:
    args = ["runs", "--all", "--json", "--runs-dir", str(runs_dir)]
    if not in_process:
        p = guildlite(*args, cwd=cwd, timeout=60)
        return p.returncode, p.stdout, p.stderr
    # The same command through click's runner in this process: the CLI's real code, minus a
    # Python start-up per injection. A subprocess call still checks the store every few kills.
    from click.testing import CliRunner

    from guildlite.cli import cli

    res = CliRunner().invoke(cli, args)
    err = "" if res.exception is None or isinstance(res.exception, SystemExit) else repr(res.exception)
    return res.exit_code, getattr(res, "stdout", res.output), err + getattr(res, "stderr", "")


# What check_store found in a run.json that records an end: (its inode, mtime and size, its status,
# whether it is a batch's). Such a record reads as written (nothing derives its status from
# liveness), so while the file is the same file, checking it again would find the same.
Ended = dict[Path, tuple[tuple[int, int, int], str, bool]]


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def check_store(runs_dir: Path, cli: str | None = "subprocess", cwd: Path | None = None,
                ended: Ended | None = None) -> StoreReport:
    """The invariants that must hold whenever no guildlite process runs in ``runs_dir``.

    - every ``run.json`` in the runs dir's dirs (staging dirs included) parses as a run record;
    - every listed run dir holds a readable run.json (staging is invisible until published);
    - no run reads ``pending``/``running`` (its owner is gone), through the library's ``load_run``
      and through ``guildlite runs --all --json`` (``cli``: "subprocess", "in-process" or None),
      which must exit 0 and print a JSON list of the same ids.

    ``ended``: kept by a caller that checks one runs dir again and again (see ``Ended``): a run.json
    that recorded an end at an earlier check and is still the same file is not read again.
    """
    rep = StoreReport()
    problems = []
    if not runs_dir.exists():
        return rep
    known = ended if ended is not None else {}
    # A run.json is at the top of a run (or staging) dir; the dirs below are the run's own files
    # (the "slow" project's source copy: 800 files), so the walk stops at the run dirs.
    for entry in os.scandir(runs_dir):
        if not entry.is_dir(follow_symlinks=False) or entry.name == ".trash":
            continue
        if entry.name.startswith(".staging-"):
            rep.staging.add(entry.name)
        files = os.listdir(entry.path)
        rep.tmp_files += sum(1 for f in files if f.startswith(".run.json.tmp-"))
        path = Path(entry.path, "run.json")
        if "run.json" in files and (path not in known or known[path][0] != _stat_key(path)):
            try:
                rec = json.loads(path.read_bytes())
                if not isinstance(rec, dict) or "id" not in rec or "status" not in rec:
                    problems.append(f"{path} is not a run record: {str(rec)[:80]}")
            except ValueError as e:
                problems.append(f"{path} does not parse: {e}")
    listed = RunList(runs_dir)
    for run_id in listed.ids:
        path = runs_dir / run_id / "run.json"
        key = _stat_key(path)
        if path in known and known[path][0] == key:
            _, status, is_batch = known[path]
            rep.statuses[run_id] = status
            if is_batch:
                rep.batches.add(run_id)
            continue
        try:
            raw = json.loads(path.read_bytes())
            run = load_run(runs_dir / run_id)
        except (OSError, ValueError, RunNotFoundError) as e:
            problems.append(f"listed run {run_id} has no readable run.json: {e}")
            continue
        rep.statuses[run_id] = raw["status"] if raw["status"] == run.status else f"{raw['status']}->{run.status}"
        if run.is_batch:
            rep.batches.add(run_id)
        if run.status in ACTIVE:
            problems.append(f"run {run_id} reads {run.status} but no guildlite process runs it")
        elif key is not None and raw["status"] == run.status != "staged" and _stat_key(path) == key:
            known[path] = (key, run.status, run.is_batch)
    if cli:
        code, out, err = _list_cli(runs_dir, cwd or runs_dir.parent, in_process=cli == "in-process")
        if code != 0 or TRACEBACK in err:
            problems.append(f"guildlite runs --all --json exited {code}: {err[-500:]}")
        else:
            try:
                rows = json.loads(out)
            except ValueError as e:
                problems.append(f"guildlite runs --json printed invalid JSON: {e}")
                rows = []
            if sorted(r["id"] for r in rows) != sorted(listed.ids):
                problems.append("guildlite runs --json lists other ids than the run dirs")
            problems += [f"guildlite runs shows {r['id']} {r['status']}" for r in rows if r["status"] in ACTIVE]
    assert not problems, "run store invariants violated:\n  " + "\n  ".join(problems)
    return rep


# --- fault injection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    """One SIGKILL of a guildlite parent: what it runs, what triggers the kill, how long after."""

    batch: bool
    launcher: str  # "python" | "torchrun"
    trigger: str  # see TRIGGERS
    delay: float  # seconds after the trigger fired
    k: int = 1  # runjson: the k-th run.json write seen
    sleep: float = 0.0  # the job's run time


TRIGGERS = {
    "staging": "a .staging-<id> dir exists (source being copied / hashed)",
    "hook:on_run_staged": "inside the plugin's on_run_staged",
    "hook:on_run_begin": "inside the plugin's on_run_begin",
    "hook:on_run_end": "inside the plugin's on_run_end",
    "job": "the job (every rank) is running",
    "runjson": "right after the k-th run.json replacement",
    "runjson-tmp": "a run.json temp file exists (write under way)",
    "time": "a random time after the guildlite process started",
    "fork": "guildlite forked the job but the child has not exec'd yet",
}


@dataclass
class Outcome:
    """One injection and what the store said after it."""

    injection: Injection
    fired: bool  # the trigger fired and the kill landed on a live guildlite
    top: str  # the state of the run (a batch: the batch run) this invocation made, as read after
    trials: Counter  # type: ignore[type-arg]  # a batch's trials' states
    seconds: float  # the injection's wall time, checks included
    staging_left: bool  # an unpublished .staging dir of this invocation is left
    tmp_left: bool  # a run.json temp file of this invocation is left


class Injector:
    """Runs injections into one runs dir and checks the store after each.

    ``projects`` maps a name to a probe project: "lean" and "slow" (many source files, for the
    staging trigger) write into the same runs dir.
    """

    def __init__(self, projects: dict[str, Path], runs_dir: Path, marker: str, events: Path, seed: int,
                 cli_every: int = 10) -> None:
        self.projects, self.runs_dir, self.marker, self.events = projects, runs_dir, marker, events
        self.seed = seed
        self.cli_every = cli_every
        self.outcomes: list[Outcome] = []
        self.ended: Ended = {}  # for check_store after each injection
        events.mkdir(parents=True, exist_ok=True)

    def args(self, inj: Injection) -> list[str]:
        op = "py" if inj.launcher == "python" else "tr"
        flags = [f"sleep={inj.sleep}"]
        flags += ["x=[1,2,3]" if inj.launcher == "python" else "x=[1,2]", "--parallel", "2"] if inj.batch else []
        return ["run", op, *flags, "-y", "--runs-dir", str(self.runs_dir)]

    def project(self, inj: Injection) -> Path:
        return self.projects["slow" if inj.trigger == "staging" else "lean"]

    def _new_names(self, before: set[str]) -> list[str]:
        try:
            return [n for n in os.listdir(self.runs_dir) if n not in before and not n.startswith(".index")]
        except FileNotFoundError:
            return []

    def _wait_trigger(self, inj: Injection, proc: subprocess.Popen[bytes], before: set[str], t0: float,
                      timeout: float) -> bool:
        """Poll until the trigger condition holds; False if guildlite ended (or timed out) first."""
        deadline = t0 + timeout
        seen_writes: set[tuple[str, int]] = set()
        parent_cmd = b""
        kind = inj.trigger
        nranks = 2 if inj.launcher == "torchrun" else 1
        fine = kind in ("runjson", "runjson-tmp", "fork", "staging")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if kind == "time":
                if time.monotonic() - t0 >= inj.delay:
                    return True
            elif kind == "staging":
                if any(n.startswith(".staging-") for n in self._new_names(before)):
                    return True
            elif kind.startswith("hook:"):
                hook = kind.split(":", 1)[1]
                if any(e.startswith(f"enter-{hook}-") for e in events_of(self.events)):
                    return True
            elif kind == "job":
                if sum(1 for e in events_of(self.events) if e.startswith("job-")) >= nranks:
                    return True
            elif kind in ("runjson", "runjson-tmp"):
                for n in self._new_names(before):
                    if kind == "runjson-tmp":
                        try:
                            if any(f.startswith(".run.json.tmp-") for f in os.listdir(self.runs_dir / n)):
                                return True
                        except OSError:
                            pass
                        continue
                    try:
                        ino = os.stat(self.runs_dir / n / "run.json").st_ino
                    except OSError:
                        continue
                    # a staged dir renamed into place keeps its inode: key on the id, not the name
                    seen_writes.add((n.removeprefix(".staging-"), ino))
                if kind == "runjson" and len(seen_writes) >= inj.k:
                    return True
            elif kind == "fork" and any(e.startswith("exit-on_run_begin-") for e in events_of(self.events)):
                if not parent_cmd:
                    try:
                        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                            parent_cmd = f.read()
                    except OSError:
                        return False
                if unexeced_child(proc.pid, parent_cmd):
                    return True
                continue  # spin: the window is a few milliseconds
            time.sleep(0.0002 if fine else 0.001)
        return False

    def inject(self, inj: Injection, grace: float | None = None) -> Outcome:
        """Start guildlite, SIGKILL it when the trigger fires (+ delay), then check everything."""
        for e in events_of(self.events):  # events are per injection (ends.log included)
            (self.events / e).unlink()
        try:
            before = set(os.listdir(self.runs_dir))
        except FileNotFoundError:
            before = set()
        env = base_env(self.marker, self.events, GLF_HOOK_MS="6", GLF_SEED=str(self.seed + len(self.outcomes)))
        t0 = time.monotonic()
        proc = spawn(self.args(inj), self.project(inj), env)
        try:
            fired = self._wait_trigger(inj, proc, before, t0, timeout=60)
            if fired and inj.trigger != "time" and inj.delay > 0:
                time.sleep(inj.delay)
            fired = fired and proc.poll() is None
            proc.kill()
        finally:
            proc.wait()
        # python jobs die at once on the parent-death SIGTERM; torchrun first stops its ranks
        grace = grace if grace is not None else (20 if inj.launcher == "torchrun" else 3)  # slack for a busy machine
        left = wait_gone(self.marker, timeout=grace)
        if left:
            kill_all(left)
            wait_gone(self.marker, timeout=5)
        n = len(self.outcomes) + 1
        cli = "subprocess" if n % self.cli_every == 0 else "in-process"
        rep = check_store(self.runs_dir, cli=cli, cwd=self.project(inj), ended=self.ended)
        new = self._new_names(before)
        ids = [i for i in new if not i.startswith(".")]
        if left:
            raise AssertionError(f"{inj}: processes outlived the killed guildlite:\n  " + "\n  ".join(map(str, left)))
        batch = [i for i in ids if i in rep.batches]
        top_id = batch[0] if batch else (ids[0] if ids else None)
        if top_id is not None:
            top = rep.statuses[top_id]
        elif any(n.startswith(".staging-") for n in new):
            top = "unpublished staging dir"
        else:
            top = "nothing created"
        trials = Counter(rep.statuses[i] for i in ids if i != top_id) if batch else Counter()
        out = Outcome(
            inj, fired, top, trials, round(time.monotonic() - t0, 2),
            staging_left=any(n in rep.staging for n in new),
            tmp_left=any(
                f.startswith(".run.json.tmp-") for n in new if (self.runs_dir / n).is_dir()
                for f in os.listdir(self.runs_dir / n)
            ),
        )
        self.outcomes.append(out)
        return out


def plan_injections(rng: random.Random, n: int, launcher: str, batch_share: float,
                    durations: dict[bool, float]) -> list[Injection]:
    """``n`` injections spread over the triggers, with seeded random delays.

    ``durations[batch]`` is how long an unkilled invocation takes (it bounds "time" delays).
    """
    if launcher == "python":
        weights = {"staging": 3, "hook:on_run_staged": 2, "hook:on_run_begin": 2, "hook:on_run_end": 2,
                   "job": 2, "runjson": 4, "runjson-tmp": 1, "time": 3}
    else:
        weights = {"hook:on_run_begin": 1, "job": 3, "runjson": 1, "time": 2}
    names = list(weights)
    out = []
    for _ in range(n):
        batch = rng.random() < batch_share
        trigger = rng.choices(names, [weights[t] for t in names])[0]
        sleep = 0.0
        if trigger == "job":
            delay, sleep = rng.uniform(0, 0.05), 30.0  # long jobs: a survivor would be seen
        elif trigger == "time":
            delay, sleep = rng.uniform(0, durations[batch] * 1.1), rng.choice([0.0, 0.2])
        elif trigger == "staging":
            delay = rng.uniform(0, 0.15)
        elif trigger.startswith("hook:"):
            delay = rng.uniform(0, 0.004)  # the hook sleeps 0-6 ms: mostly inside it
            sleep = 30.0 if trigger == "hook:on_run_begin" else 0.0
        elif trigger == "runjson":
            delay = rng.choice([0.0, 0.0, rng.uniform(0, 0.003)])
        else:
            delay = 0.0
        k = rng.randint(1, 14 if batch else 5)
        out.append(Injection(batch, launcher, trigger, round(delay, 4), k, sleep))
    return out


def summarize(outcomes: Sequence[Outcome], seed: int) -> str:
    """A printable summary: injections by trigger, what each kill left, leftovers."""
    fired = [o for o in outcomes if o.fired]
    lines = [(f"fault injection: {len(outcomes)} injections, {len(fired)} SIGKILLs landed on a live guildlite "
              f"(seed {seed}); after each: every run.json parsed, no run read pending/running, no process "
              "of the test was left, the runs dir listed cleanly")]
    by: Counter = Counter()
    hit: Counter = Counter()
    for o in outcomes:
        key = (o.injection.launcher, "batch" if o.injection.batch else "single", o.injection.trigger)
        by[key] += 1
        hit[key] += o.fired
    secs: Counter = Counter()
    for o in outcomes:
        secs[(o.injection.launcher, "batch" if o.injection.batch else "single", o.injection.trigger)] += o.seconds
    lines.append(f"  {'launcher':<9}{'kind':<7}{'trigger':<20}{'count':>6}{'killed live':>12}{'mean s':>8}")
    for key in sorted(by):
        lines.append(f"  {key[0]:<9}{key[1]:<7}{key[2]:<20}{by[key]:>6}{hit[key]:>12}{secs[key] / by[key]:>8.2f}")
    for kind, sel in (("single", False), ("batch", True)):
        tops = Counter(o.top for o in fired if o.injection.batch == sel)
        if tops:
            lines.append(f"  {kind} run left as (record -> reads): " + ", ".join(f"{k} {v}" for k, v in sorted(tops.items())))
    trials: Counter = Counter()
    for o in fired:
        trials.update(o.trials)
    if trials:
        lines.append("  batch trials left as: " + ", ".join(f"{k} {v}" for k, v in sorted(trials.items())))
    lines.append(f"  kills leaving an unpublished .staging dir: {sum(o.staging_left for o in fired)}; "
                 f"a run.json temp file in a run dir: {sum(o.tmp_left for o in fired)}")
    return "\n".join(lines)


def send_when(proc: subprocess.Popen[bytes], cond: Callable[[], bool], timeout: float = 60) -> bool:
    """Poll ``cond`` until true (True) or ``proc`` ends / time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if cond():
            return True
        time.sleep(0.002)
    return False
