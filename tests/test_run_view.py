"""``guildlite.Run``: the typed view of a run that hooks get, without the store's methods.

End to end, a plugin looks at the view in every hook of a batch and of its trials (real
``guildlite run``, real processes) and writes what it saw; in process, the view's attribute list is
checked against the README's table and the record's statuses; mypy accepts a plugin written
against the view (the examples' too) and rejects writes to read-only attributes and calls of
storage methods.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, get_args, get_type_hints

import pytest
from conftest import ROOT, Project

import guildlite
from guildlite._plugins import Dispatcher, Plugin
from guildlite._record import STATUSES
from guildlite._run import Run as StoredRun
from guildlite._runview import Remote, Run
from guildlite._status import STATES, Status

STORE_ONLY = ("save", "update", "create", "claim", "release", "alive", "to_record", "pid", "pid_start", "job_pid",
              "parent_id", "trial_ids", "guildlite_version", "_owner_fd", "_staged", "_parent", "_synced_attrs")

LOOKPLUG = textwrap.dedent(
    """\
    import json, os
    from pathlib import Path

    import guildlite
    from guildlite import Plugin

    STORE_ONLY = %r


    class Look(Plugin):
        def __init__(self):
            self.held = {}

        def look(self, hook, run):
            refused = []
            for name in ("save", "_owner_fd", "paths", "trials"):
                try:
                    setattr(run, name, None)
                except AttributeError:
                    refused.append(name)
            parent = run.parent
            try:
                parent.status = "completed"
                parent_writable = True
            except AttributeError:
                parent_writable = False
            first = self.held.setdefault(run.id, run)
            seen = {
                "hook": hook, "id": run.id, "is_view": type(run) is guildlite.Run, "status": run.status,
                "reachable": [n for n in STORE_ONLY if hasattr(run, n)], "refused": refused,
                "same_object": first is run, "remote": run.remote, "paths_dir": str(run.paths.dir),
                "log": str(run.paths.output_log), "parent": parent and parent.id,
                "parent_is_view": parent is None or type(parent) is guildlite.Run,
                "parent_writable": parent is not None and parent_writable,
                "trials": [[t.id, t.status, type(t) is guildlite.Run] for t in run.trials],
                "flags": dict(run.flags), "op": run.op, "nproc": run.nproc_per_node,
                "batch": dict(run.batch) if run.batch else None, "traced": [t["hook"] for t in run.plugins],
            }
            run.attrs.setdefault("look", []).append(hook)
            with open(os.environ["VIEWTEST_EVENTS"], "a") as f:
                f.write(json.dumps(seen) + "\\n")

        def on_run_staged(self, run):
            self.look("on_run_staged", run)

        def on_run_begin(self, run):
            self.look("on_run_begin", run)

        def on_run_end(self, run):
            self.look("on_run_end", run)
    """
) % (STORE_ONLY,)

GUILDFILE = ("plugins:\n  - class: lookplug:Look\noperations:\n  t:\n    main: t.py\n    launcher: python\n"
             "    flags: {x: 1}\n")


def test_every_hook_gets_the_view_and_nothing_of_the_store(make_project: Callable[..., Project],
                                                            tmp_path: Path) -> None:
    proj = make_project(GUILDFILE, files={"t.py": "import sys\nprint(sys.argv[1:])\n", "lookplug.py": LOOKPLUG})
    events = tmp_path / "events.jsonl"
    cp = proj.run("run", "t", "x=[1,2]", "-y", env={"VIEWTEST_EVENTS": str(events)})
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    recs = {r["id"]: r for r in proj.records()}
    (batch,) = [r for r in recs.values() if r["is_batch"]]
    trials = batch["trials"]
    hooks = {run_id: [s["hook"] for s in seen if s["id"] == run_id] for run_id in recs}
    assert hooks == {batch["id"]: ["on_run_begin", "on_run_end"],
                     **{t: ["on_run_staged", "on_run_begin", "on_run_end"] for t in trials}}
    assert (seen[0]["id"], seen[-1]["id"]) == (batch["id"], batch["id"])
    for s in seen:
        assert s["is_view"] and s["reachable"] == [] and s["same_object"], s
        assert s["refused"] == ["save", "_owner_fd", "paths", "trials"], s
        assert s["remote"] is None and s["status"] in STATUSES and s["op"] == "t" and s["nproc"] == 1
        assert s["paths_dir"] == str(proj.runs_dir / s["id"]) and s["log"].endswith(f"{s['id']}/output.log")
        assert s["parent_is_view"] and not s["parent_writable"]
    by = {(s["id"], s["hook"]): s for s in seen}
    assert by[(trials[0], "on_run_staged")]["status"] == "staged"
    assert by[(trials[0], "on_run_begin")]["status"] == "pending"
    assert by[(trials[0], "on_run_end")]["status"] == "completed"
    assert by[(trials[0], "on_run_end")]["parent"] == batch["id"]
    # The trace so far: the built-ins (priority 10) ran before this plugin (100) in each hook.
    assert by[(trials[0], "on_run_end")]["traced"] == ["on_run_staged", "on_run_staged", "on_run_begin",
                                                       "on_run_begin", "on_run_end"]
    assert by[(trials[1], "on_run_staged")]["flags"] == {"x": 2}
    end = by[(batch["id"], "on_run_end")]
    assert end["trials"] == [[t, "completed", True] for t in trials] and end["batch"]["trials"] == 2
    assert end["flags"] == {"x": [1, 2]}
    # What the hooks wrote into attrs was saved; nothing they tried on the store stuck.
    assert recs[trials[0]]["attrs"]["look"] == ["on_run_staged", "on_run_begin", "on_run_end"]
    assert batch["attrs"]["look"] == ["on_run_begin", "on_run_end"] and batch["status"] == "completed"
    assert all(r["status"] == "completed" and "save" not in r for r in recs.values())


def test_the_view_in_process(tmp_path: Path) -> None:
    store = StoredRun(id="r1", run_dir=tmp_path, op="train", flags={"lr": 0.1}, gpus=["0"],
                      remote={"backend": "slurm", "job_id": 12, "job_ids": [11, 12], "hosts": ["n1", "n2"],
                              "partition": "gpu"})
    store.save()
    got: list[Run] = []

    class Keep(Plugin):
        def on_run_end(self, run: Run) -> None:
            got.append(run)
            run.attrs["kept"] = 1
            run.cmd = ["python", "x.py"]

    Dispatcher([Keep()], log=lambda m: None).call("on_run_end", store)
    (view,) = got
    assert type(view) is guildlite.Run and repr(view) == "guildlite.Run(id='r1', op='train', status='staged')"
    assert store.attrs == {"kept": 1} and store.cmd == ["python", "x.py"] and store.plugins[0]["error"] is None
    remote = view.remote
    assert remote is not None and (remote.backend, remote.job_id, remote.job_ids, remote.hosts, remote.is_batch) == (
        "slurm", "12", ("11", "12"), ("n1", "n2"), False)
    assert remote.info["partition"] == "gpu"
    with pytest.raises(TypeError):
        remote.info["partition"] = "cpu"  # type: ignore[index]
    assert store.remote["partition"] == "gpu"  # type: ignore[index]
    for name in STORE_ONLY:
        assert not hasattr(view, name), name
    with pytest.raises(AttributeError, match="guildlite.Run has no attribute 'save'"):
        view.save()  # type: ignore[attr-defined]
    assert Remote.of(False) is None and Remote.of(True) is not None


def test_the_status_literal_is_the_status_tables() -> None:
    assert get_type_hints(Run.status.fget)["return"] is Status
    assert get_args(Status) == STATES == STATUSES


def test_the_readme_documents_every_attribute_of_the_view() -> None:
    """The README's plugin guide has one table row per public attribute of ``guildlite.Run``."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| attribute | type |"):]
    table = table[: table.index("\n\n")]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    assert sorted(documented) == sorted(n for n in dir(Run) if not n.startswith("_"))
    writable = {n for n in documented if re.search(rf"^\| `{n}` \|[^\n]*\| yes", table, re.MULTILINE)}
    assert writable == {"attrs", "cmd"}


# --- mypy --------------------------------------------------------------------------------------

TYPED = textwrap.dedent(
    """\
    from __future__ import annotations

    from pathlib import Path
    from typing import Literal

    from guildlite import Plugin, Run, StopRun


    class Typed(Plugin):
        def on_run_begin(self, run: Run) -> None:
            lr: float = run.flags["lr"]
            if lr > 1:
                raise StopRun("lr too large")
            run.cmd = [*run.cmd, "--fast"]

        def on_run_end(self, run: Run) -> None:
            status: Literal["staged", "pending", "running", "completed", "error", "terminated", "pruned"] = run.status
            hosts: tuple[str, ...] = run.remote.hosts if run.remote else ()
            log: Path = run.paths.output_log
            parent: Run | None = run.parent
            best = min((t for t in run.trials if t.exit_code == 0), key=lambda t: t.created, default=None)
            run.attrs["typed"] = {"status": status, "hosts": list(hosts), "log": str(log),
                                  "parent": parent.id if parent else None, "best": best.id if best else None,
                                  "gpus": list(run.gpus or []), "error": dict(run.error or {})}
    """
)

# Each line ending in ``# E`` must be a mypy error, and no other line.
WRONG = textwrap.dedent(
    """\
    from guildlite import Plugin, Run


    class Wrong(Plugin):
        def on_run_end(self, run: Run) -> None:
            run.status = "completed"  # E
            run.flags["lr"] = 0.5  # E
            run.exit_code = 0  # E
            run.save()  # E
            run.claim()  # E
            print(run.pid, run.pid_start, run.job_pid)  # E
            run.to_record()  # E
            run.status == "finished"  # E
            run.tags.append("x")  # E
            run.attrs["ok"] = 1
    """
)


def test_mypy_accepts_a_plugin_written_against_the_view_and_rejects_storage(tmp_path: Path) -> None:
    (tmp_path / "typed_plugin.py").write_text(TYPED)
    (tmp_path / "wrong_plugin.py").write_text(WRONG)
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*/*.py") if "Plugin" in p.read_text())
    cfg = tmp_path / "mypy.ini"
    cfg.write_text("[mypy]\nignore_missing_imports = True\nstrict_equality = True\n")
    # guildlite comes from MYPYPATH and no installed package is read (--no-site-packages): what a
    # plugin sees is guildlite's own types; following guildlite's lazy imports into torch, pandas
    # and optuna cost a cold cache ~50 s of CPU and checked nothing of the view.
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(cfg), "--cache-dir", str(tmp_path / "cache"),
           "--python-version", "3.10", "--no-site-packages", "--no-error-summary", "--hide-error-context"]
    good = subprocess.run([*cmd, str(tmp_path / "typed_plugin.py"), *examples], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert good.returncode == 0 and good.stdout == "", good.stdout + good.stderr
    assert len(examples) >= 4, examples
    bad = subprocess.run([*cmd, str(tmp_path / "wrong_plugin.py")], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    lines = {int(m) for m in re.findall(r"wrong_plugin\.py:(\d+): error", bad.stdout)}
    expected = {n for n, line in enumerate(WRONG.splitlines(), 1) if line.endswith("# E")}
    assert lines == expected, bad.stdout


def test_the_builtins_read_a_remote_runs_hosts_through_the_view(tmp_path: Path) -> None:
    """OutputScalars on a run over two hosts: srun labels each line with its task, and only task
    0's (rank 0's) scalars are captured; the hosts come from the view's ``remote``."""
    from guildlite._builtins import OutputScalars

    store = StoredRun(id="r2", run_dir=tmp_path, op="train", remote={"backend": "toy", "hosts": ["n1", "n2"]})
    store.paths.output_log.write_text("0: step: 1\n0: loss: 0.5\n1: loss: 9.0\n")
    Dispatcher([OutputScalars()], log=lambda m: None).call("on_run_end", store)
    assert store.plugins[0]["error"] is None, store.plugins
    rows = [json.loads(line) for line in store.paths.scalars.read_text().splitlines()]
    assert rows == [{"step": 1, "key": "loss", "value": 0.5}] and store.attrs["scalars"] == {"captured": 1}
