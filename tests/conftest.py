"""Shared helpers for guildlite's tests: a tiny project on disk, the real CLI in subprocesses,
run.json records, polling, and the processes a test started.

Everything drives real components: ``guildlite`` runs as a subprocess (the console script of this
environment, else ``python -m guildlite``) with ``GUILDLITE_RUNS_DIR`` pointing into the test's
tmp dir, and jobs are real ``torchrun`` (or ``python``) processes.

Use from a test module either through the fixtures (``project``, ``make_project``) or by
importing the helpers (``from conftest import write_project, run_guildlite, load_record``).

Every process a ``Project`` starts carries a unique marker in its environment (``GLT_MARKER``);
guildlite passes its environment on to torchrun and to every rank, so ``marker_procs`` finds
the whole job, and the fixtures kill whatever is left of it (by pid) when the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A suite started in the background by a shell without job control inherits SIGINT ignored, and so
# would every process it starts (an ignored signal stays ignored across exec): the tests that press
# Ctrl-C on a command need the default a user's terminal gives. A handled signal is reset by exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    """guildlite's bytecode, compiled once for the session. The guildlite processes the tests start
    run with PYTHONDONTWRITEBYTECODE (no job writes a ``__pycache__`` into a run dir or a test's
    project), so they never write it themselves; without it each of them compiled the package
    from source again: half the CPU of a ``guildlite run``, a third of a ``guildlite runs``."""
    import compileall

    compileall.compile_dir(ROOT / "guildlite", quiet=1)


def install_readme_example(root: Path, section: str, group: str, module: Path, entry_points: dict[str, str]) -> Path:
    """``module`` installed in the new dir ``root`` as pip would install it from the ``setup.cfg``
    block under README's ``section``: the module and its dist-info, whose entry points (in
    ``group``) must be ``entry_points`` exactly. ``root`` is the dir to put on PYTHONPATH."""
    import configparser
    import re
    import shutil

    block = re.search(r"```ini\n(.*?)```", (ROOT / "README.md").read_text().split(section, 1)[1], re.S)
    assert block, f"no setup.cfg block in the README's {section!r}"
    cfg = configparser.ConfigParser()
    cfg.read_string(block.group(1))
    lines = cfg["options.entry_points"][group].strip().splitlines()
    eps = dict((part.strip() for part in line.split("=", 1)) for line in lines)
    assert eps == entry_points and cfg["options"]["py_modules"] == module.stem, eps
    name, version = cfg["metadata"]["name"], cfg["metadata"]["version"]
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(module, root / module.name)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    return root
_SCRIPT = Path(sys.executable).with_name("guildlite")
GUILDLITE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "guildlite"]
TRACEBACK = "Traceback (most recent call last)"
MARKER_ENV = "GLT_MARKER"

# A job script that imports nothing heavy. It takes the flags as --name=value, writes
# rank<N>.started (holding WORLD_SIZE) in its cwd (the run dir), prints one hello line per rank,
# `step: N` / `loss: X` lines on rank 0 (and a decoy `loss: 99.0` on other ranks), then sleeps
# `sleep` seconds and exits with `code`.
HELLO_SCRIPT = textwrap.dedent(
    """\
    import os, sys, time

    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    rank = int(os.environ.get("RANK", "0"))
    world = os.environ.get("WORLD_SIZE", "1")
    with open(f"rank{rank}.started", "w") as f:
        f.write(world)
    print(f"hello rank={rank} world={world} run={os.environ.get('GUILDLITE_RUN_ID')} "
          f"argv={' '.join(sys.argv[1:])}", flush=True)
    if rank == 0:
        for i in range(int(flags.get("epochs", "2"))):
            print(f"step: {i + 1}")
            print(f"loss: {1.0 / (i + 1)}")
    else:
        print("loss: 99.0")
    sys.stdout.flush()
    time.sleep(float(flags.get("sleep", "0")))
    sys.exit(int(flags.get("code", "0")))
    """
)

HELLO_FLAGS = """\
      lr: {default: 0.1, min: 0, max: 10, description: Learning rate}
      epochs: {default: 2, type: int, min: 1}
      opt: {default: sgd, choices: [sgd, adam]}
      code: 0
      sleep: 0.0
"""

# Ops: `hello` (torchrun, 1 rank), `hello2` (torchrun, 2 ranks), `quick` (launcher python: no
# torch import at all, for tests that need a job but not torchrun).
HELLO_GUILDFILE = (
    "operations:\n"
    "  hello:\n"
    "    description: Prints its flags and a short loss curve\n"
    "    main: hello.py\n"
    "    flags:\n" + HELLO_FLAGS
    + "  hello2:\n"
    "    main: hello.py\n"
    "    nproc-per-node: 2\n"
    "    flags:\n" + HELLO_FLAGS
    + "  quick:\n"
    "    main: hello.py\n"
    "    launcher: python\n"
    "    flags:\n" + HELLO_FLAGS
)

T = TypeVar("T")

# Property tests are derandomized (the same examples every run, so CI is stable); set
# GUILDLITE_EXPLORE=1 to search with fresh random examples, many more of them.
EXPLORE = bool(os.environ.get("GUILDLITE_EXPLORE"))


def property_settings(max_examples: int = 200) -> Any:
    """Hypothesis settings for guildlite's property tests (see EXPLORE)."""
    from hypothesis import HealthCheck, settings

    return settings(
        deadline=None,
        derandomize=not EXPLORE,
        database=None,
        max_examples=max_examples * 20 if EXPLORE else max_examples,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --- environment and subprocesses -----------------------------------------------------------------


def clean_env(runs_dir: Path | None = None, marker: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment less any GUILDLITE_* settings and test markers, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUILDLITE_", MARKER_ENV, "PLUGTEST_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if "GUILDLITE_GPU_LEASE_DIR" in os.environ:  # the test's own (see own_lease_dir)
        env["GUILDLITE_GPU_LEASE_DIR"] = os.environ["GUILDLITE_GPU_LEASE_DIR"]
    if runs_dir is not None:
        env["GUILDLITE_RUNS_DIR"] = str(runs_dir)
    if marker is not None:
        env[MARKER_ENV] = marker
    env.update(extra)
    return env


def run_guildlite(
    *args: str,
    cwd: Path,
    runs_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``guildlite ARGS`` to its end in ``cwd`` and return the CompletedProcess (text)."""
    return subprocess.run(
        [*GUILDLITE, *args],
        check=False,
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(runs_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def spawn_guildlite(
    *args: str, cwd: Path, runs_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``guildlite ARGS`` without waiting (stdout/stderr piped, text)."""
    return subprocess.Popen(
        [*GUILDLITE, *args],
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(runs_dir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_clean_error(cp: subprocess.CompletedProcess[str], code: int = 2, *needles: str) -> str:
    """A user error: exit ``code``, one ``guildlite: error:`` line naming ``needles``, no traceback."""
    assert cp.returncode == code, (cp.returncode, cp.stdout, cp.stderr)
    assert TRACEBACK not in cp.stderr and TRACEBACK not in cp.stdout, cp.stderr
    lines = [line for line in cp.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, cp.stderr
    assert lines[0].startswith("guildlite: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def own_lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own GPU lease directory (``GUILDLITE_GPU_LEASE_DIR``), in this process
    and in every guildlite it starts: tests of different checkouts or sessions never share the
    machine-wide one, nor see each other's leases and queues."""
    path = tmp_path / "gpu-leases"
    monkeypatch.setenv("GUILDLITE_GPU_LEASE_DIR", str(path))
    return path


# --- polling and processes ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server the test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    """``url``'s status and body, an HTTP error's too."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_serving(url: str, proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Wait until the server ``proc`` answers at ``url`` (its favicon); it must not exit meanwhile."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url + "favicon.ico", timeout=5).close()
            return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)


def wait_until(pred: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``pred`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except (OSError, ValueError, KeyError, IndexError):
            value = None  # a file not there yet, or caught mid-replace
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        time.sleep(interval)


def live_procs() -> Iterator[tuple[int, bytes, bytes]]:
    """(pid, raw cmdline, raw environ) of each live (non-zombie) process but this one that we may read."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rfind(b")") + 2 :][:1] in (b"Z", b"X"):
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        yield int(name), cmd, env


def marker_procs(marker: str, marker_env: str = MARKER_ENV) -> list[int]:
    """Pids of live (non-zombie) processes whose environment holds ``<marker_env>=<marker>``."""
    needle = f"{marker_env}={marker}".encode()
    return [pid for pid, _, env in live_procs() if needle in env.split(b"\0")]


def proc_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def wait_no_marker_procs(marker: str, timeout: float = 30.0) -> None:
    """Wait until no process with ``marker`` is left; fail listing the survivors."""
    deadline = time.monotonic() + timeout
    while True:
        left = marker_procs(marker)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError("processes outlived the test's job: " + "; ".join(
                f"{p} {proc_cmdline(p)[:150]}" for p in left))
        time.sleep(0.1)


def kill_marker_procs(marker: str, marker_env: str = MARKER_ENV) -> None:
    """SIGKILL every process this test started (found by its marker), by pid."""
    for pid in marker_procs(marker, marker_env):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- run store ------------------------------------------------------------------------------------


def run_dirs(runs_dir: Path) -> list[Path]:
    """The published run dirs (no hidden staging/trash dirs), oldest first."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_record(runs_dir: Path, run_id: str | None = None) -> dict[str, Any]:
    """The raw run.json of ``runs_dir/run_id`` (or of the run dir ``runs_dir`` itself), as stored."""
    d = runs_dir / run_id if run_id else runs_dir
    return json.loads((d / "run.json").read_text())


def load_records(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run's raw run.json under ``runs_dir``, oldest first (ids sort in creation order)."""
    return [load_record(d) for d in run_dirs(runs_dir) if (d / "run.json").exists()]


def read_scalars(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run's scalars.jsonl ([] when there is none)."""
    p = run_dir / "scalars.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def write_project(root: Path, guildfile: str = HELLO_GUILDFILE, files: Mapping[str, str] | None = None) -> Path:
    """Write a project into ``root``: ``guildfile.yml`` and files (default: ``hello.py``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "guildfile.yml").write_text(guildfile)
    for rel, text in (files if files is not None else {"hello.py": HELLO_SCRIPT}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@dataclass
class Project:
    """A project dir, its runs dir (outside it), and the marker of every process it starts."""

    marker_env: ClassVar[str] = MARKER_ENV  # the variable that carries ``marker``
    root: Path
    runs_dir: Path
    marker: str = field(default_factory=lambda: f"glt-{uuid.uuid4().hex[:12]}")
    spawned: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return clean_env(self.runs_dir, self.marker)

    def run(self, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``guildlite ARGS`` in the project dir, to its end."""
        return run_guildlite(*args, cwd=self.root, env={**self.env, **(env or {})}, timeout=timeout, input=input)

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """``guildlite ARGS`` in the project dir, not waited for (killed at teardown if still alive)."""
        p = spawn_guildlite(*args, cwd=self.root, env={**self.env, **(env or {})})
        self.spawned.append(p)
        return p

    def run_json(self, *args: str, timeout: float = 120) -> Any:
        """``guildlite ARGS`` that must succeed and print JSON; the parsed JSON."""
        cp = self.run(*args, timeout=timeout)
        assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
        return json.loads(cp.stdout)

    def run_dirs(self) -> list[Path]:
        return run_dirs(self.runs_dir)

    def records(self) -> list[dict[str, Any]]:
        """Every raw run.json, oldest first."""
        return load_records(self.runs_dir)

    def record(self, run_id: str) -> dict[str, Any]:
        return load_record(self.runs_dir, run_id)

    def only_record(self) -> dict[str, Any]:
        recs = self.records()
        assert len(recs) == 1, [r["id"] for r in recs]
        return recs[0]

    def procs(self) -> list[int]:
        return marker_procs(self.marker, self.marker_env)

    def cleanup(self) -> None:
        for p in self.spawned:
            if p.poll() is None:
                p.kill()
            try:
                p.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        kill_marker_procs(self.marker, self.marker_env)


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[Callable[..., Project]]:
    """A factory: ``make_project(guildfile=..., files=..., name=...)`` -> Project under tmp_path."""
    made: list[Project] = []

    def make(guildfile: str = HELLO_GUILDFILE, files: Mapping[str, str] | None = None, name: str = "project") -> Project:
        root = write_project(tmp_path / name, guildfile, files)
        proj = Project(root=root, runs_dir=tmp_path / f"{name}-runs")
        made.append(proj)
        return proj

    yield make
    for proj in made:
        proj.cleanup()


@pytest.fixture
def project(make_project: Callable[..., Project]) -> Project:
    """The default tiny project (ops hello, hello2, quick; see HELLO_GUILDFILE) with its own runs dir."""
    return make_project()


@pytest.fixture(scope="module")
def module_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The default tiny project, shared by a module's tests (for runs made once, read many times)."""
    base = tmp_path_factory.mktemp("modproj")
    proj = Project(root=write_project(base / "project"), runs_dir=base / "runs")
    yield proj
    proj.cleanup()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless chromium for every view test of the session (``_browser._Browser``: each page in
    a browser context of its own); starting it costs seconds."""
    from _browser import _Browser, _need_chromium

    _need_chromium()
    b = _Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()
