"""``guildlite run --detach`` under hostile conditions: the project changing under a run handed
over to its detached supervisor, and records that must not lie afterwards.

Real ``guildlite`` subprocesses, real detached supervisors, real files; every run here uses
``launcher: python`` (torchrun is not the point).
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from typing import Any, Callable

from conftest import Project, wait_no_marker_procs, wait_until

SCRIPT = textwrap.dedent(
    """\
    import sys
    print("argv", " ".join(sys.argv[1:]), flush=True)
    """
)

# A plugin that logs each hook (run id, hook, status) to hooks.jsonl in the project, and at
# on_run_staged does what the run's `act` flag says to the project.
PLUGIN = textwrap.dedent(
    """\
    import json, os
    from pathlib import Path
    from guildlite import Plugin, StopRun

    HERE = Path(__file__).parent

    class Log(Plugin):
        def _log(self, run, hook):
            with open(HERE / "hooks.jsonl", "a") as f:
                f.write(json.dumps({"id": run.id, "hook": hook, "status": run.status}) + "\\n")

        def on_run_staged(self, run):
            self._log(run, "on_run_staged")
            if run.flags.get("act") == "fail":
                raise StopRun("act=fail")
            if run.flags.get("act") == "rm-guildfile":
                os.replace(HERE / "guildfile.yml", HERE / "guildfile.gone")

        def on_run_begin(self, run):
            self._log(run, "on_run_begin")

        def on_run_end(self, run):
            self._log(run, "on_run_end")
    """
)

GUILDFILE = textwrap.dedent(
    """\
    plugins:
      - class: logplug:Log
    operations:
      quick:
        main: job.py
        launcher: python
        flags:
          act: none
          opt: x
    """
)


def _project(make_project: Callable[..., Project]) -> Project:
    return make_project(GUILDFILE, {"job.py": SCRIPT, "logplug.py": PLUGIN})


def _hooks(proj: Project) -> list[dict[str, Any]]:
    path = proj.root / "hooks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _ended(proj: Project, run_id: str) -> dict[str, Any] | None:
    rec = proj.record(run_id)
    return rec if rec["status"] in ("completed", "error", "terminated") else None


def _end_hooks_ran(proj: Project, run_id: str) -> dict[str, Any] | None:
    rec = _ended(proj, run_id)
    return rec if rec is not None and any(c["hook"] == "on_run_end" for c in rec.get("plugins", [])) else None


def _ends(proj: Project, run_id: str) -> list[dict[str, Any]]:
    return [h for h in _hooks(proj) if h["id"] == run_id and h["hook"] == "on_run_end"]


def test_a_null_among_a_batchs_values_is_refused_when_planned_detached_or_not(
    make_project: Callable[..., Project],
) -> None:
    """`opt=[none,y]`: the null trial's command line would leave --opt out, the script running with
    its own default while the record says null (refused for a single run). A foreground batch ran
    it; a detached one was staged, then failed in its supervisor (which plans one trial's flags
    again). Both now refuse it when planned: exit 2, the flag named, nothing staged."""
    proj = _project(make_project)
    for detach in ((), ("-b",)):
        for value in ("opt=[none,y]", "opt=choice[y,none]"):
            cp = proj.run("run", "-y", *detach, "quick", value)
            assert cp.returncode == 2, (detach, value, cp.returncode, cp.stderr)
            assert "flag 'opt'" in cp.stderr and "null" in cp.stderr, cp.stderr
            assert proj.run_dirs() == []
    cp = proj.run("run", "-y", "-b", "quick", "opt=[x,y]")
    assert cp.returncode == 0, cp.stderr
    batch = wait_until(lambda: _ended(proj, cp.stdout.split()[0]), what="the detached batch's end")
    assert batch["status"] == "completed", batch


def test_a_run_whose_guildfile_went_away_before_its_supervisor_started_gets_its_end_hooks(
    make_project: Callable[..., Project],
) -> None:
    """The supervisor cannot start the run (its guildfile is gone): every staged run (the batch and
    its trials) is ended in error, and each still gets exactly one on_run_end (the built-ins'),
    as the lifecycle promises for every run that was staged."""
    proj = _project(make_project)
    cp = proj.run("run", "-y", "-b", "quick", "act=rm-guildfile", "opt=[a,b]")
    assert cp.returncode == 0, cp.stderr
    batch_id = cp.stdout.split()[0]
    batch = wait_until(lambda: _ended(proj, batch_id), what="the batch's end")
    assert batch["status"] == "error" and "cannot start" in batch["error"]["message"], batch
    for rid in [batch_id, *batch["trials"]]:
        # The end is recorded before its hooks run (a reader sees it at once); their trace follows.
        rec = wait_until(lambda rid=rid: _end_hooks_ran(proj, rid), what=f"{rid}'s end hooks")
        assert rec["status"] == "error", rec
        ends = [c for c in rec["plugins"] if c["hook"] == "on_run_end"]
        assert ends, (rid, rec["plugins"])
        assert len({c["plugin"] for c in ends}) == len(ends), ends  # each plugin once
    assert (proj.root / "guildfile.gone").exists()


HOLD_SCRIPT = textwrap.dedent(
    """\
    import os, sys, time
    print(sys.argv[1:], flush=True)
    hold = os.path.join(os.environ["HOLD_DIR"], "hold")
    while os.path.exists(hold):
        time.sleep(0.05)
    """
)


def test_trials_of_a_batch_whose_supervisor_was_killed_read_as_ended_and_restart(
    make_project: Callable[..., Project],
) -> None:
    """SIGKILL to a detached batch's supervisor while its first trial runs: the batch and that trial
    read terminated (their owner is gone), and so do the trials it never started: no trial reads
    `staged` forever under an ended batch. A restart of the batch then runs them all."""
    proj = make_project(GUILDFILE.replace("job.py", "hold.py"),
                        {"hold.py": HOLD_SCRIPT, "logplug.py": PLUGIN})
    (proj.root / "hold").touch()
    env = {"HOLD_DIR": str(proj.root)}
    cp = proj.run("run", "-y", "-b", "quick", "opt=[a,b,c]", env=env)
    assert cp.returncode == 0, cp.stderr
    batch_id = cp.stdout.split()[0]
    first = wait_until(lambda: proj.record(batch_id)["trials"][0] if len(proj.record(batch_id)["trials"]) == 3
                       and proj.record(proj.record(batch_id)["trials"][0])["status"] == "running" else None,
                       what="the first trial running")
    os.kill(proj.record(batch_id)["pid"], signal.SIGKILL)
    listed = wait_until(lambda: [r for r in proj.run_json("runs", "--json", "-a")
                                 if r["status"] not in ("pending", "running")] if all(
        r["status"] not in ("pending", "running") for r in proj.run_json("runs", "--json", "-a")) else None,
                        what="nothing active")
    by_id = {r["id"]: r for r in listed}
    assert by_id[batch_id]["status"] == "terminated"
    assert by_id[first]["status"] == "terminated"
    for tid in proj.record(batch_id)["trials"][1:]:
        assert by_id[tid]["status"] == "terminated", by_id[tid]
        assert batch_id in by_id[tid]["error"]["message"], by_id[tid]
        assert proj.run_json("runs", "info", tid, "--json")["status"] == "terminated"
    assert proj.run("runs", "--status", "staged").stdout.strip() == ""
    (proj.root / "hold").unlink()
    cp = proj.run("run", "-y", "-b", "--restart", batch_id, env=env)
    assert cp.returncode == 0, cp.stderr
    batch = wait_until(lambda: _ended(proj, batch_id), what="the restarted batch's end")
    assert batch["status"] == "completed", batch
    assert [proj.record(t)["status"] for t in batch["trials"]] == ["completed"] * 3


def test_concurrent_detached_restarts_of_one_batch_take_turns(make_project: Callable[..., Project]) -> None:
    """Three `run -b --restart BATCH` at once: each either restarts the batch after the one before
    has ended, or is refused cleanly; never two at once on one record. Each start of the batch
    gets one on_run_begin and one on_run_end; each staging of its trial one on_run_end."""
    proj = _project(make_project)
    cp = proj.run("run", "-y", "quick", "act=[ok,fail]")
    batch_id = proj.records()[0]["id"]
    failed = [r["id"] for r in proj.records() if r["flags"].get("act") == "fail"]
    assert cp.returncode != 0 and len(failed) == 1, cp.stderr
    (proj.root / "hooks.jsonl").unlink()
    procs = [proj.spawn("run", "-y", "-b", "--restart", batch_id) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode in (0, 2), (p.returncode, out, err)
        assert "Traceback" not in err, err
    assert any(p.returncode == 0 for p in procs)
    wait_no_marker_procs(proj.marker, timeout=60)  # every supervisor handed a restart has ended
    hooks = _hooks(proj)

    def count(rid: str, hook: str) -> int:
        return len([h for h in hooks if h["id"] == rid and h["hook"] == hook])

    assert count(batch_id, "on_run_begin") == count(batch_id, "on_run_end") >= 1, hooks
    assert count(failed[0], "on_run_staged") == count(failed[0], "on_run_end") >= 1, hooks
    assert len(proj.record(batch_id)["attempts"]) == count(batch_id, "on_run_begin"), proj.record(batch_id)


SLOW_PLUGIN = PLUGIN.replace("HERE = Path(__file__).parent\n", textwrap.dedent(
    """\
    HERE = Path(__file__).parent
    if os.getsid(0) == os.getpid() and (HERE / "slow").exists():  # the detached supervisor only
        import time
        time.sleep(5)
    """))


def test_a_stop_right_after_run_b_is_recorded_with_its_end_hooks(make_project: Callable[..., Project]) -> None:
    """`guildlite stop` as soon as `run -b` returns reaches the supervisor while it is still
    loading the run's plugins: the run ends terminated, recorded so, with one on_run_end (the
    supervisor was killed by the signal, leaving `pending` and no end hooks)."""
    proj = make_project(GUILDFILE, {"job.py": SCRIPT, "logplug.py": SLOW_PLUGIN})
    (proj.root / "slow").touch()
    cp = proj.run("run", "-y", "-b", "quick")
    assert cp.returncode == 0, cp.stderr
    run_id = cp.stdout.split()[0]
    stop = proj.run("stop", run_id, timeout=60)
    assert stop.returncode == 0, stop.stderr
    rec = wait_until(lambda: _ended(proj, run_id) if _ends(proj, run_id) else None, timeout=30,
                     what="the end recorded, with its hooks")
    assert rec["status"] == "terminated", rec
    assert len(_ends(proj, run_id)) == 1, _hooks(proj)
