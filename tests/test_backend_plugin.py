"""A third backend, installed as a real distribution, runs ops through the real CLI.

The backend is ``examples/backend/toyqueue.py`` itself (a spool-directory queue with a worker),
copied into a site dir beside its own ``toyqueue-<version>.dist-info`` (METADATA, and an
``entry_points.txt`` made from the README's ``setup.cfg``), and that dir is put on
PYTHONPATH for the ``guildlite`` subprocesses: ``importlib.metadata`` finds the entry point
there, as it finds the built-ins'. Nothing in guildlite names it. The worker is a real process the
test starts (in its own session, so that killing its group kills its jobs too, as a node crash
would); the jobs are real ``python`` processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import HELLO_FLAGS, HELLO_SCRIPT, ROOT, Project, assert_clean_error, install_readme_example, wait_until

EXAMPLE = ROOT / "examples" / "backend" / "toyqueue.py"

# Records on_run_end in the run dir: how many times, where, and with which status.
ENDS_PLUGIN = """\
import os
from guildlite import Plugin


class Ends(Plugin):
    def on_run_end(self, run):
        with open(os.path.join(run.run_dir, "ends.txt"), "a") as f:
            f.write(f"{run.status}\\n")
"""


# A job that ends (exit 0) when the test says so: once a file `go` is in its cwd (the run dir).
WAIT_SCRIPT = """\
import os, time
while not os.path.exists("go"):
    time.sleep(0.02)
print("went", flush=True)
"""


def guildfile(spool: Path, section: str | None = None, top: str = "", quick_extra: str = "") -> str:
    """The project's guildfile: ``quick`` and ``waiter`` run on toyqueue (the guildfile says so),
    ``plain`` on the default backend; ``section`` replaces the top-level ``toyqueue:`` section."""
    if section is None:
        section = f"toyqueue:\n  spool: {spool}\n  priority: 3\n"
    return (
        "plugins:\n  - class: ends:Ends\n" + top + section
        + "operations:\n"
        "  quick:\n    main: hello.py\n    launcher: python\n    backend: toyqueue\n" + quick_extra
        + "    flags:\n" + HELLO_FLAGS
        + "  plain:\n    main: hello.py\n    launcher: python\n    flags:\n" + HELLO_FLAGS
        + "  waiter:\n    main: wait.py\n    launcher: python\n    backend: toyqueue\n"
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dir with toyqueue installed in it, as pip would: the module and its dist-info, the entry
    point being the one the README tells a backend's authors to declare."""
    return install_readme_example(tmp_path_factory.mktemp("site"), "## Writing a backend", "guildlite.backends",
                                  EXAMPLE, {"toyqueue": "toyqueue:ToyQueue"})


@dataclass
class Queue:
    """A project whose guildfile uses toyqueue, with toyqueue installed, and its spool's worker."""

    proj: Project
    site: Path
    spool: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": os.pathsep.join(filter(None, [str(self.site), os.environ.get("PYTHONPATH")]))}

    def gl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.proj.run(*args, env=self.env, timeout=60)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return self.proj.spawn(*args, env=self.env)

    def start_worker(self) -> None:
        """``python -m toyqueue SPOOL``, as its README says, in a session (and group) of its own."""
        self.workers.append(subprocess.Popen(
            [sys.executable, "-m", "toyqueue", str(self.spool)], cwd=self.proj.root, env={**self.proj.env, **self.env},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True))

    def kill_workers(self) -> None:
        """SIGKILL each worker and its jobs (its process group), as a crashed node would lose them."""
        for w in self.workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
            w.wait()

    def runs(self) -> list[dict[str, Any]]:
        """Every run as guildlite reports it (status derived on read), oldest first."""
        cp = self.gl("runs", "--all", "--json")
        assert cp.returncode == 0, cp.stderr
        return list(reversed(json.loads(cp.stdout)))

    def run_of(self, run_id: str) -> dict[str, Any]:
        return next(r for r in self.runs() if r["id"] == run_id)

    def job(self, rec: dict[str, Any], kind: str = "job") -> Any:
        """A spool file of the run's job (``job``: what was submitted; ``started``, ``exit``, ``cancel``)."""
        assert rec["remote"]["backend"] == "toyqueue" and rec["remote"]["spool"] == str(self.spool), rec["remote"]
        return json.loads((self.spool / f"{rec['remote']['job_id']}.{kind}").read_text())

    def ends(self, run_id: str) -> list[str]:
        """The statuses ``on_run_end`` saw, one per call."""
        p = self.proj.runs_dir / run_id / "ends.txt"
        return p.read_text().split() if p.exists() else []

    def submitted(self, n: int = 1) -> list[dict[str, Any]]:
        """The raw records of the first ``n`` runs once each names its job (it is in the spool)."""
        return wait_until(lambda: (lambda rs: rs if len(rs) >= n else None)(
            [r for r in self.proj.records() if r.get("remote")]), what=f"{n} job(s) in the spool")

    def wait_started(self, rec: dict[str, Any]) -> None:
        wait_until(lambda: self.job(rec, "started"), what=f"job {rec['remote']['job_id']} started by the worker")


@pytest.fixture
def queue(make_project: Callable[..., Project], site: Path, tmp_path: Path) -> Iterator[Queue]:
    spool = tmp_path / "spool"
    q = Queue(make_project(guildfile(spool), files={"hello.py": HELLO_SCRIPT, "wait.py": WAIT_SCRIPT,
                                                      "ends.py": ENDS_PLUGIN}), site, spool)
    yield q
    q.kill_workers()


def test_the_distribution_adds_the_backend_and_its_run_option(queue: Queue) -> None:
    cp = queue.gl("run", "--help")
    assert cp.returncode == 0, cp.stderr
    assert "--priority INTEGER [toyqueue] the job's priority" in " ".join(cp.stdout.split()), cp.stdout
    bare = queue.proj.run("run", "--help")  # not installed: no option, no backend
    assert bare.returncode == 0 and "--priority" not in bare.stdout and "toyqueue" not in bare.stdout
    cp = queue.gl("run", "plain", "--backend", "nosuch", "-y")
    assert_clean_error(cp, 2, "no backend named 'nosuch'", "local", "slurm", "toyqueue")
    assert queue.proj.run_dirs() == []


def test_an_op_runs_on_it_from_the_guildfile_the_command_line_a_restart_and_detached(queue: Queue) -> None:
    queue.start_worker()
    cp = queue.gl("run", "quick", "epochs=3", "-y")
    assert cp.returncode == 0, cp.stderr
    assert "hello rank=0" in cp.stdout and "step: 3" in cp.stdout  # the handle echoes the job's output
    (rec,) = queue.runs()
    assert rec["status"] == "completed" and rec["exit_code"] == 0 and rec["remote"]["backend"] == "toyqueue"
    log = (queue.proj.runs_dir / rec["id"] / "output.log").read_text()
    assert f"run={rec['id']}" in log and "step: 3" in log, log  # written by the worker's job
    job = queue.job(rec)
    assert job["cwd"] == str(queue.proj.runs_dir / rec["id"]) and job["priority"] == 3
    assert job["env"]["GUILDLITE_RUN_ID"] == rec["id"]  # the environment reached the job as a delta
    assert queue.job(rec, "exit") == {"code": 0, "cancelled": False}
    assert queue.ends(rec["id"]) == ["completed"]

    # The command line picks it and sets its option, over the guildfile's section.
    cp = queue.gl("run", "plain", "epochs=1", "--backend", "toyqueue", "--priority", "7", "-y")
    assert cp.returncode == 0, cp.stderr
    plain = queue.runs()[-1]
    assert plain["op"] == "plain" and plain["status"] == "completed" and queue.job(plain)["priority"] == 7

    # A restart runs where and as the run was launched: a new job in the same spool, priority 7.
    cp = queue.gl("run", "--restart", plain["id"], "epochs=2", "-y")
    assert cp.returncode == 0, cp.stderr
    again = queue.run_of(plain["id"])
    assert again["status"] == "completed" and again["remote"]["job_id"] != plain["remote"]["job_id"]
    assert queue.job(again)["priority"] == 7 and queue.ends(plain["id"]) == ["completed", "completed"]

    # Detached: the supervisor rebuilds the backend from the run's launch file and owns the job.
    cp = queue.gl("run", "quick", "--detach", "-y")
    assert cp.returncode == 0, cp.stderr
    run_id = cp.stdout.strip()
    wait_until(lambda: queue.ends(run_id), what="the detached run's on_run_end")
    detached = queue.run_of(run_id)
    assert detached["status"] == "completed" and detached["remote"]["backend"] == "toyqueue"
    assert queue.ends(run_id) == ["completed"]


def test_a_batch_of_three_trials_runs_on_it(queue: Queue) -> None:
    queue.start_worker()
    cp = queue.gl("run", "quick", "lr=[0.1,0.2,0.3]", "--parallel", "3", "-y")
    assert cp.returncode == 0, cp.stderr
    (batch,) = [r for r in queue.runs() if r["is_batch"]]
    trials = [queue.run_of(t) for t in batch["trials"]]
    assert batch["status"] == "completed" and queue.ends(batch["id"]) == ["completed"]
    assert [t["status"] for t in trials] == ["completed"] * 3
    assert len({t["remote"]["job_id"] for t in trials}) == 3
    for t, lr in zip(trials, ("0.1", "0.2", "0.3")):
        assert queue.job(t)["env"]["GUILDLITE_RUN_ID"] == t["id"]
        assert f"--lr={lr}" in (queue.proj.runs_dir / t["id"] / "output.log").read_text()
        assert queue.ends(t["id"]) == ["completed"]


def test_stop_goes_through_its_cancel(queue: Queue) -> None:
    owner = queue.spawn("run", "quick", "sleep=60", "-y")  # no worker yet: the job waits in the spool
    (raw,) = queue.submitted()
    assert raw["status"] == "running"  # as the owner recorded it; a reader asks the queue
    assert queue.run_of(raw["id"])["status"] == "pending"
    queue.start_worker()
    queue.wait_started(raw)
    assert queue.run_of(raw["id"])["status"] == "running"
    cp = queue.gl("stop", raw["id"])
    assert cp.returncode == 0, cp.stderr
    _, err = owner.communicate(timeout=30)
    assert owner.returncode == 143, err
    assert "SIGTERM" not in err  # the owner was not signalled: the worker stopped the job
    assert queue.job(raw, "cancel") == {"signal": "TERM"} and queue.job(raw, "exit")["cancelled"] is True
    rec = queue.run_of(raw["id"])
    assert rec["status"] == "terminated" and queue.ends(raw["id"]) == ["terminated"]


def test_an_ended_job_is_its_live_owners_to_record(queue: Queue) -> None:
    queue.start_worker()
    owner = queue.spawn("run", "waiter", "-y")
    (raw,) = queue.submitted()
    queue.wait_started(raw)
    os.kill(owner.pid, signal.SIGSTOP)  # an owner slow to see the end (it polls the spool)
    try:
        (queue.proj.runs_dir / raw["id"] / "go").touch()
        wait_until(lambda: queue.job(raw, "exit"), what="the job's exit in the spool")
        rec = queue.run_of(raw["id"])
        assert rec["status"] == "running" and rec["error"] is None, rec  # never `error` in between
    finally:
        os.kill(owner.pid, signal.SIGCONT)
    _, err = owner.communicate(timeout=30)
    assert owner.returncode == 0, err
    assert queue.run_of(raw["id"])["status"] == "completed" and queue.ends(raw["id"]) == ["completed"]


def test_a_job_outlives_its_owner_and_reads_as_its_queue_says(queue: Queue) -> None:
    queue.start_worker()
    owners = [queue.spawn("run", "quick", f"lr={lr}", "sleep=60", "-y") for lr in (0.1, 0.2)]
    cancelled, crashed = sorted(queue.submitted(2), key=lambda r: r["flags"]["lr"])
    for raw in (cancelled, crashed):
        queue.wait_started(raw)
    for p in owners:  # SIGKILL: no end is recorded, nothing is cancelled
        p.kill()
        p.communicate(timeout=30)
    assert [r["status"] for r in queue.runs()] == ["running", "running"]  # the jobs run on in the queue

    cp = queue.gl("stop", cancelled["id"])  # no owner to signal: only the backend's cancel reaches it
    assert cp.returncode == 0, cp.stderr
    rec = queue.run_of(cancelled["id"])
    assert rec["status"] == "terminated" and "exited with code -15" in rec["error"]["message"], rec

    queue.kill_workers()  # the worker dies with its job, leaving no exit code
    rec = queue.run_of(crashed["id"])
    assert rec["status"] == "error", rec
    assert "toyqueue worker" in rec["error"]["message"] and "died" in rec["error"]["message"], rec
    assert queue.proj.record(crashed["id"])["status"] == "running"  # derived on read, never written by a reader
    cp = queue.gl("runs", "--status", "running", "--json")
    assert cp.returncode == 0 and json.loads(cp.stdout) == [], cp.stdout


def test_a_dying_worker_ends_its_watched_run_in_error(queue: Queue) -> None:
    queue.start_worker()
    owner = queue.spawn("run", "quick", "sleep=60", "-y")
    (raw,) = queue.submitted()
    queue.wait_started(raw)
    queue.kill_workers()
    _, err = owner.communicate(timeout=30)
    assert owner.returncode == 1, err
    rec = queue.run_of(raw["id"])
    assert rec["status"] == "error" and "died" in rec["error"]["message"], rec
    assert queue.ends(raw["id"]) == ["error"]


# Each case: the guildfile (from the spool dir), the line holding the offence ("" when the error
# names no line), and what the one error line must say.
SECTION_ERRORS: dict[str, tuple[Callable[[Path], str], str, tuple[str, ...]]] = {
    "bad value": (lambda s: guildfile(s, f"toyqueue:\n  spool: {s}\n  priority: high\n"), "  priority: high",
                  ("'priority'", "from 0 to 9", "'high'")),
    "a bool is no int": (lambda s: guildfile(s, f"toyqueue:\n  spool: {s}\n  priority: true\n"), "  priority: true",
                         ("'priority'", "from 0 to 9")),
    "unknown key": (lambda s: guildfile(s, f"toyqueue:\n  spool: {s}\n  prio: 3\n"), "  prio: 3",
                    ("unknown key 'prio'", "did you mean 'priority'")),
    "relative spool": (lambda s: guildfile(s, "toyqueue:\n  spool: spool/here\n"), "  spool: spool/here",
                       ("'spool'", "absolute")),
    "not a mapping": (lambda s: guildfile(s, "toyqueue: [1, 2]\n"), "toyqueue: [1, 2]", ("toyqueue", "mapping")),
    "op's section": (lambda s: guildfile(s, quick_extra="    toyqueue: {priority: 10}\n"),
                     "    toyqueue: {priority: 10}", ("operation", "quick", "'priority'", "from 0 to 9")),
    "unknown backend": (lambda s: guildfile(s, top="backend: nosuch\n"), "backend: nosuch",
                        ("'nosuch'", "local", "slurm", "toyqueue")),
    "no spool": (lambda s: guildfile(s, ""), "", ("toyqueue", "spool")),
}


@pytest.mark.parametrize("case", list(SECTION_ERRORS))
def test_its_guildfile_section_is_validated_at_load(queue: Queue, case: str) -> None:
    make, line, needles = SECTION_ERRORS[case]
    text = make(queue.spool)
    (queue.proj.root / "guildfile.yml").write_text(text)
    cp = queue.gl("run", "quick", "-y")
    if line:
        n = text.splitlines().index(line) + 1
        needles = (f"guildfile.yml:{n}: ", *needles)
    assert_clean_error(cp, 2, *needles)
    assert queue.proj.run_dirs() == [] and not queue.spool.exists()


def test_its_command_line_option_is_validated(queue: Queue) -> None:
    cp = queue.gl("run", "quick", "--priority", "12", "-y")
    assert_clean_error(cp, 2, "--priority", "from 0 to 9", "12")
    cp = queue.gl("run", "quick", "--priority", "high", "-y")  # click's own check of the declared type
    assert cp.returncode == 2 and "--priority" in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
    assert queue.proj.run_dirs() == []


# A second distribution: one entry point that cannot load, one whose class names itself
# otherwise, and a backend sharing toyqueue's --priority, with --label (run's own) and a --nodes
# of another type than slurm's.
BAD_MODULE = """\
from guildlite.backends import Backend, CliOption


class Clash(Backend):
    name = "clash"
    cli_options = (CliOption("priority", "priority", int, "shared with toyqueue"),
                   CliOption("label", "label", str, "clashes with run's own"),
                   CliOption("nodes", "nodes", str, "slurm's is an int"))

    def submit(self, run, argv, env, on_exit, *, echo, grace):
        raise NotImplementedError
"""


def test_other_installed_backends_broken_or_sharing_a_flag(queue: Queue, tmp_path: Path) -> None:
    bad = tmp_path / "badsite"
    (bad / "badbackends-1.0.dist-info").mkdir(parents=True)
    (bad / "badbackends-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: badbackends\nVersion: 1.0\n")
    (bad / "badbackends-1.0.dist-info" / "entry_points.txt").write_text(
        "[guildlite.backends]\nbroken = nosuchmodule:Backend\nalias = toyqueue:ToyQueue\nclash = badbackends:Clash\n")
    (bad / "badbackends.py").write_text(BAD_MODULE)
    env = {"PYTHONPATH": os.pathsep.join([str(bad), queue.env["PYTHONPATH"]])}

    def gl(*args: str) -> subprocess.CompletedProcess[str]:
        return queue.proj.run(*args, env=env, timeout=60)

    def error(cp: subprocess.CompletedProcess[str]) -> str:
        """The one error line, after the warnings about the broken install."""
        lines = [line for line in cp.stderr.splitlines() if not line.startswith("guildlite: warning: ")]
        assert cp.returncode == 2 and len(lines) == 1 and lines[0].startswith("guildlite: error: "), cp.stderr
        return lines[0]

    cp = gl("run", "--help")
    assert cp.returncode == 0 and "UserWarning" not in cp.stderr, cp.stderr
    help_text = " ".join(cp.stdout.split())
    assert "--priority INTEGER [clash] shared with toyqueue; [toyqueue] the job's priority" in help_text, help_text
    assert "--nodes TEXT [clash] slurm's is an int; [slurm] hosts per run" in help_text, help_text
    warnings = [line for line in cp.stderr.splitlines() if line.startswith("guildlite: warning: ")]
    assert len(warnings) == 3 and "Traceback" not in cp.stderr, cp.stderr
    assert "'alias' (toyqueue:ToyQueue) names itself 'toyqueue'" in warnings[0]
    assert "'broken' (nosuchmodule:Backend) failed to load: ModuleNotFoundError" in warnings[1]
    assert "'clash': --label is taken" in warnings[2]

    queue.start_worker()  # toyqueue, and every other backend, still runs; a shared flag reaches it
    cp = gl("run", "quick", "--priority", "5", "-l", "mine", "-y")
    assert cp.returncode == 0, cp.stderr
    (rec,) = queue.runs()
    assert queue.job(rec)["priority"] == 5 and rec["label"] == "mine"
    cp = gl("run", "plain", "--priority", "5", "-y")
    assert "--priority is an option of backend clash, toyqueue; this run's backend is local" in error(cp)
    cp = gl("run", "plain", "--backend", "slurm", "--nodes", "two", "-y")  # a shared flag of two types
    assert "--nodes" in error(cp) and "two" in error(cp)
    for name, needle in (("broken", "failed to load"), ("alias", "names itself 'toyqueue'")):
        cp = gl("run", "quick", "--backend", name, "-y")
        assert error(cp).startswith(f"guildlite: error: backend '{name}'") and needle in error(cp)
    assert len(queue.proj.run_dirs()) == 1
