"""Hooks that hang or misbehave: ``hook-timeout``, stops that interrupt a running hook, and hooks
that raise BaseExceptions or leave what ``run.json`` cannot hold.

End-to-end tests run the real ``guildlite`` CLI on a tiny project (op ``quick``: launcher python)
whose plugin module ``hangplug.py`` hangs in the hook it is told to, in the way it is told to (a
sleep, an ``Event().wait()``, a busy loop, a ``recv`` on a socket pair or on a TCP connection that
never sends, work stuck in a thread pool). Every hook call appends one JSON line to
``$HOOKTEST_EVENTS``, so a test counts calls; the job writes ``rank0.started`` into its run dir,
so a test knows whether it was launched. Unit tests drive ``Dispatcher`` in-process with hooks
that hang on an ``Event`` the test releases at teardown.
"""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from conftest import HELLO_SCRIPT, TRACEBACK, Project, assert_clean_error, wait_no_marker_procs, wait_until

from guildlite import Plugin, StopRun
from guildlite._errors import GuildfileError
from guildlite._guildfile import load
from guildlite._plugins import DEFAULT_HOOK_TIMEOUT, Dispatcher, HookFailed
from guildlite._run import Run

HOOKS = ("on_run_staged", "on_run_begin", "on_run_end")
HANGS = ("sleep", "event", "busy", "socketpair")

HANGPLUG = textwrap.dedent(
    """\
    import json, os, socket, threading, time
    from concurrent.futures import ThreadPoolExecutor

    from guildlite import Plugin


    def note(plugin, hook, run):
        with open(os.environ["HOOKTEST_EVENTS"], "a") as f:
            f.write(json.dumps({"plugin": plugin, "hook": hook, "run": run.id, "status": run.status,
                                "flags": run.flags}) + "\\n")


    def hang(how):
        if how == "sleep":
            time.sleep(1000)
        elif how == "event":
            threading.Event().wait()
        elif how == "busy":
            while True:
                pass
        elif how == "socketpair":
            a, b = socket.socketpair()
            a.recv(1)
        elif how == "tcp":  # a listening socket on 127.0.0.1 that accepts and never sends
            server = socket.create_server(("127.0.0.1", 0))
            client = socket.create_connection(server.getsockname())
            conn, _ = server.accept()
            client.recv(1)
        elif how == "executor":  # the work hangs in a pool worker, which an interpreter exit joins
            with ThreadPoolExecutor(1) as pool:
                pool.submit(time.sleep, 1000).result()
        elif how == "nap":  # slow, not hung
            time.sleep(1.5)


    class Hang(Plugin):
        def __init__(self, hook, how="event", when=None):
            self.hook, self.how, self.when = hook, how, dict(when or {})

        def enter(self, hook, run):
            note(self.name, hook, run)
            if hook == self.hook and all(run.flags.get(k) == v for k, v in self.when.items()):
                hang(self.how)

        def on_run_staged(self, run):
            self.enter("on_run_staged", run)

        def on_run_begin(self, run):
            self.enter("on_run_begin", run)

        def on_run_end(self, run):
            self.enter("on_run_end", run)


    class Slow(Hang):
        pass


    class Mark(Plugin):
        def on_run_staged(self, run):
            note("Mark", "on_run_staged", run)

        def on_run_begin(self, run):
            note("Mark", "on_run_begin", run)

        def on_run_end(self, run):
            note("Mark", "on_run_end", run)
            run.attrs["mark"] = {"ended": run.status}


    class Boom(BaseException):
        pass


    class Loop(list):
        pass


    class Misbehave(Plugin):
        def __init__(self, hook, what):
            self.hook, self.what = hook, what

        def act(self, hook, run):
            note("Misbehave", hook, run)
            if hook != self.hook:
                return
            if self.what == "generator-exit":
                raise GeneratorExit
            if self.what == "system-exit":
                raise SystemExit(3)
            if self.what == "keyboard-interrupt":
                raise KeyboardInterrupt
            if self.what == "base-exception":
                raise Boom("boom")
            bad = {"tuple-key": {(1, 2): 3}, "set-value": {1, 2}, "object": object(), "cycle": Loop()}[self.what]
            if self.what == "cycle":
                bad.append(bad)
            run.attrs["misbehave"] = bad

        def on_run_begin(self, run):
            self.act("on_run_begin", run)

        def on_run_end(self, run):
            self.act("on_run_end", run)
    """
)

QUICK = {"main": "hello.py", "launcher": "python", "flags": {"x": 1, "sleep": 0.0, "epochs": 1}}


def guildfile(plugins: list[dict[str, Any]], hook_timeout: Any = None) -> str:
    data: dict[str, Any] = {}
    if hook_timeout is not None:
        data["hook-timeout"] = hook_timeout
    data["plugins"] = plugins
    data["operations"] = {"quick": QUICK}
    return yaml.safe_dump(data, sort_keys=False)


def hang(hook: str, how: str = "event", priority: int = 50, cls: str = "Hang", **entry: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"hook": hook, "how": how}
    if "when" in entry:
        args["when"] = entry.pop("when")
    return {"class": f"hangplug:{cls}", "args": args, "priority": priority, **entry}


MARK = {"class": "hangplug:Mark"}


class HookProject(Project):
    @property
    def events_path(self) -> Path:
        return self.root.with_name(f"{self.root.name}-events.jsonl")

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "HOOKTEST_EVENTS": str(self.events_path)}

    def events(self, plugin: str | None = None, hook: str | None = None) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        rows = [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]
        return [e for e in rows if plugin in (None, e["plugin"]) and hook in (None, e["hook"])]

    def trace(self, record: dict[str, Any], plugin: str, hook: str) -> list[str | None]:
        """The errors of ``plugin``'s ``hook`` calls in the record's hook trace."""
        return [t["error"] for t in record["plugins"] if (t["plugin"], t["hook"]) == (plugin, hook)]

    def job_started(self, record: dict[str, Any]) -> bool:
        return (self.runs_dir / record["id"] / "rank0.started").exists()


@pytest.fixture
def hproj(tmp_path: Path) -> Iterator[Callable[[str], HookProject]]:
    made: list[HookProject] = []

    def make(text: str) -> HookProject:
        root = tmp_path / f"project{len(made)}"
        root.mkdir()
        (root / "guildfile.yml").write_text(text)
        (root / "hello.py").write_text(HELLO_SCRIPT)
        (root / "hangplug.py").write_text(HANGPLUG)
        proj = HookProject(root=root, runs_dir=tmp_path / f"runs{len(made)}")
        made.append(proj)
        return proj

    yield make
    for proj in made:
        proj.cleanup()


def assert_no_traceback(out: str, err: str) -> None:
    assert TRACEBACK not in out and TRACEBACK not in err, err


# =================================================================================================
# Timeouts
# =================================================================================================


@pytest.mark.parametrize(
    ("hook_name", "how"),
    [(h, w) for h in HOOKS for w in HANGS] + [("on_run_staged", "tcp"), ("on_run_end", "executor")],
)
def test_a_hung_hook_times_out_and_guildlite_exits(hproj: Callable[[str], HookProject], hook_name: str,
                                                    how: str) -> None:
    """A hook that never returns is that hook's failure after ``hook-timeout``: before launch the
    run ends ``error`` naming the plugin; in on_run_end it is recorded and the run's status
    stands. The other plugin's on_run_end runs once, and ``guildlite run`` exits."""
    proj = hproj(guildfile([hang(hook_name, how), MARK], hook_timeout=1))
    cp = proj.run("run", "quick", "-y", timeout=60)
    assert_no_traceback(cp.stdout, cp.stderr)
    r = proj.only_record()
    assert proj.trace(r, "Hang", hook_name) == ["timed out after 1 s"], (r, cp.stderr)
    assert "plugin Hang." + hook_name + " failed: timed out after 1 s" in cp.stderr
    log = (proj.runs_dir / r["id"] / "output.log").read_text()
    assert f"[guildlite] guildlite: plugin Hang.{hook_name} timed out after 1 s; it was at:" in log
    assert "in hang" in log  # the hung thread's stack names where it hung
    if hook_name == "on_run_end":
        assert (r["status"], r["exit_code"], cp.returncode) == ("completed", 0, 0), cp.stderr
        assert proj.job_started(r)
    else:
        assert r["status"] == "error" and cp.returncode == 1, cp.stderr
        assert r["error"] == {"plugin": "Hang", "hook": hook_name, "veto": False,
                              "message": f"plugin Hang {hook_name} timed out after 1 s"}
        assert r["started"] is None and not proj.job_started(r)
    assert [e["status"] for e in proj.events("Mark", "on_run_end")] == [r["status"]]
    assert r["attrs"]["mark"] == {"ended": r["status"]}
    wait_no_marker_procs(proj.marker, timeout=15)


def test_a_plugin_entry_hook_timeout_overrides_the_guildfiles(hproj: Callable[[str], HookProject]) -> None:
    """``hook-timeout`` on a plugin entry beats the guildfile's, both ways: a slow plugin allowed 30 s
    under a 1 s default finishes; a hung one allowed 0.5 s under it times out at 0.5 s."""
    proj = hproj(guildfile([hang("on_run_begin", "nap", priority=40, cls="Slow", **{"hook-timeout": 30}),
                            hang("on_run_begin", "sleep", **{"hook-timeout": 0.5}), MARK], hook_timeout=1))
    cp = proj.run("run", "quick", "-y", timeout=60)
    r = proj.only_record()
    assert proj.trace(r, "Slow", "on_run_begin") == [None], cp.stderr
    assert proj.trace(r, "Hang", "on_run_begin") == ["timed out after 0.5 s"]
    assert r["status"] == "error" and r["error"]["message"] == "plugin Hang on_run_begin timed out after 0.5 s"
    assert len(proj.events("Mark", "on_run_end")) == 1


BAD_TIMEOUTS = ["0", "-1", "'5'", "true", "null", "[1]", "{a: 1}", ".nan", ".inf", "-.inf", "1.0e+999", "1" + "0" * 400]
MESSAGE = "'hook-timeout' must be a positive number of seconds"


def _timeout_guildfile(where: str, value: str) -> str:
    top = f"hook-timeout: {value}\n" if where == "top" else ""
    entry = f"\n    hook-timeout: {value}" if where == "entry" else ""
    return f"{top}plugins:\n  - class: hangplug:Mark{entry}\noperations:\n  quick: {{main: hello.py, launcher: python}}\n"


@pytest.mark.parametrize("where", ["top", "entry"])
@pytest.mark.parametrize("value", BAD_TIMEOUTS)
def test_a_bad_hook_timeout_is_refused_at_load(tmp_path: Path, where: str, value: str) -> None:
    """Anything but a positive, finite number of seconds, naming the key and its line."""
    path = tmp_path / "guildfile.yml"
    (tmp_path / "hello.py").write_text(HELLO_SCRIPT)
    path.write_text(_timeout_guildfile(where, value))
    with pytest.raises(GuildfileError) as info:
        load(path)
    msg = str(info.value)
    assert MESSAGE in msg and (f"{path}:1:" in msg if where == "top" else f"{path}:3: plugins[0]:" in msg), msg


@pytest.mark.parametrize(("where", "value"), [("top", "0"), ("entry", "'soon'")])
def test_a_bad_hook_timeout_exits_2_and_stages_nothing(hproj: Callable[[str], HookProject], where: str,
                                                       value: str) -> None:
    proj = hproj(_timeout_guildfile(where, value))
    assert_clean_error(proj.run("run", "quick", "-y"), 2, MESSAGE)
    assert not proj.runs_dir.exists() or proj.run_dirs() == []


def test_hook_timeouts_load(tmp_path: Path) -> None:
    path = tmp_path / "guildfile.yml"
    (tmp_path / "hello.py").write_text(HELLO_SCRIPT)
    path.write_text(_timeout_guildfile("top", "0.5"))
    assert load(path).hook_timeout == 0.5
    path.write_text(_timeout_guildfile("entry", "7"))
    gf = load(path)
    assert gf.hook_timeout == DEFAULT_HOOK_TIMEOUT == 300 and gf.plugins[0].hook_timeout == 7.0


def test_a_plugin_given_up_on_is_not_called_while_its_hook_still_runs(hproj: Callable[[str], HookProject]) -> None:
    """In a batch, trial 1's on_run_begin hangs for good: it times out; that plugin is not called
    again while its hook still runs (trial 2 fails at once, saying why; the batch's on_run_end
    skips it), the other plugin sees every end, and guildlite exits."""
    proj = hproj(guildfile([hang("on_run_begin", "event", when={"x": 1}), MARK], hook_timeout=1))
    cp = proj.run("run", "quick", "x=[1,2]", "-y", timeout=60)
    assert_no_traceback(cp.stdout, cp.stderr)
    recs = {r["id"]: r for r in proj.records()}
    (batch,) = [r for r in recs.values() if r["is_batch"]]
    t1, t2 = (recs[t] for t in batch["trials"])
    assert t1["status"] == "error" and t1["error"]["message"] == "plugin Hang on_run_begin timed out after 1 s"
    assert t2["status"] == "error" and t2["error"]["plugin"] == "Hang"
    assert t2["error"]["message"] == (f"plugin Hang on_run_begin not called: its on_run_begin of run {t1['id']} "
                                      "timed out after 1 s and has not returned")
    assert batch["status"] == "error" and cp.returncode != 0
    assert proj.trace(batch, "Hang", "on_run_end")[0].startswith("not called: its on_run_begin")
    assert sorted(e["run"] for e in proj.events("Mark", "on_run_end")) == sorted(recs)
    assert not proj.job_started(t1) and not proj.job_started(t2)


# =================================================================================================
# Stops interrupt a running hook
# =================================================================================================


def _stop(proj: HookProject, p: Any, how: str, said: str = "terminated") -> None:
    if how == "stop":
        run_id = wait_until(lambda: proj.events("Hang")[-1]["run"], what="the run's id")
        cp = proj.run("stop", run_id, timeout=60)
        assert cp.returncode == 0 and f"{run_id} {said}" in cp.stdout, (cp.stdout, cp.stderr)
    else:
        name, _, times = how.partition("x")  # SIGINTx2: two Ctrl-C
        for i in range(int(times or 1)):
            time.sleep(0.3 if i else 0)
            p.send_signal(signal.Signals[name])


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGINTx2", "stop"])
@pytest.mark.parametrize("hook_name", ["on_run_staged", "on_run_begin"])
def test_a_stop_interrupts_a_hung_hook(hproj: Callable[[str], HookProject], hook_name: str, how: str) -> None:
    """SIGTERM, the first Ctrl-C (or two), or ``guildlite stop RUN`` from another process, while a
    hook hangs under the default (300 s) timeout: the run ends ``terminated`` naming the plugin, the
    job never starts, the other plugin's on_run_end runs once, and guildlite is gone within seconds
    (the hung plugin's on_run_end is skipped after a 3 s grace)."""
    proj = hproj(guildfile([hang(hook_name, "event"), MARK]))
    p = proj.spawn("run", "quick", "-y")
    wait_until(lambda: proj.events("Hang", hook_name) or p.poll() is not None, timeout=60, what=f"{hook_name}")
    assert p.poll() is None, p.communicate()
    _stop(proj, p, how)
    out, err = p.communicate(timeout=20)
    assert_no_traceback(out, err)
    assert p.returncode == (130 if how.startswith("SIGINT") else 143), err  # Ctrl-C: the shell's 128 + SIGINT
    r = proj.only_record()
    # `stop` reaches a pending run's owner as SIGTERM, a run in on_run_staged by its stop request.
    why = {"SIGINT": "SIGINT", "SIGINTx2": "SIGINT", "SIGTERM": "SIGTERM"}.get(how) or (
        "guildlite stop" if hook_name == "on_run_staged" else "SIGTERM")
    assert r["status"] == "terminated" and r["started"] is None and not proj.job_started(r)
    assert r["error"] == {"plugin": "Hang", "hook": hook_name, "veto": False,
                          "message": f"plugin Hang {hook_name} interrupted by {why}"}
    assert proj.trace(r, "Hang", hook_name) == [f"interrupted by {why}"]
    assert [e["status"] for e in proj.events("Mark", "on_run_end")] == ["terminated"]
    assert proj.events("Hang", "on_run_end") == []  # still inside its hook: not called again
    assert proj.trace(r, "Hang", "on_run_end")[0].startswith(f"not called: its {hook_name}")


def test_a_slow_hook_interrupted_by_a_stop_still_gets_its_on_run_end(hproj: Callable[[str], HookProject]) -> None:
    """A hook that is slow, not hung (1.5 s), when SIGTERM comes: the run ends terminated and the
    other plugin's on_run_end runs; the slow plugin's own on_run_end waits for its interrupted hook
    to return (up to 3 s) and then runs once, after it: one plugin's hooks never overlap."""
    proj = hproj(guildfile([hang("on_run_begin", "nap"), MARK]))
    p = proj.spawn("run", "quick", "-y")
    wait_until(lambda: proj.events("Hang", "on_run_begin") or p.poll() is not None, timeout=60, what="on_run_begin")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert_no_traceback(out, err)
    r = proj.only_record()
    assert r["status"] == "terminated" and r["error"]["message"] == "plugin Hang on_run_begin interrupted by SIGTERM"
    assert [e["status"] for e in proj.events("Hang", "on_run_end")] == ["terminated"]
    assert proj.trace(r, "Hang", "on_run_end") == [None]
    assert [e["status"] for e in proj.events("Mark", "on_run_end")] == ["terminated"]


def test_a_second_signal_interrupts_a_hung_on_run_end(hproj: Callable[[str], HookProject]) -> None:
    """on_run_end hangs after the job completed: the first SIGTERM only bounds it (30 s), the
    second gives up on it. The run stays completed; the other plugin's on_run_end has run."""
    proj = hproj(guildfile([hang("on_run_end", "sleep"), MARK]))
    p = proj.spawn("run", "quick", "-y")
    wait_until(lambda: proj.events("Hang", "on_run_end") or p.poll() is not None, timeout=60, what="on_run_end")
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert p.poll() is None  # bounded, not given up on yet
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert_no_traceback(out, err)
    r = proj.only_record()
    assert (r["status"], r["exit_code"], p.returncode) == ("completed", 0, 0), err
    assert proj.trace(r, "Hang", "on_run_end") == ["interrupted by SIGTERM"]
    assert [e["status"] for e in proj.events("Mark", "on_run_end")] == ["completed"]


def test_stopping_a_trial_in_its_on_run_staged_stops_that_trial_only(hproj: Callable[[str], HookProject]) -> None:
    """``guildlite stop TRIAL`` while the trial's on_run_staged busy-loops: that trial ends
    terminated, the hook's thread unwinds (a pure-Python loop does), and the next trial runs with
    the same plugin."""
    proj = hproj(guildfile([hang("on_run_staged", "busy", when={"x": 1}), MARK]))
    p = proj.spawn("run", "quick", "x=[1,2]", "-y")
    wait_until(lambda: proj.events("Hang", "on_run_staged") or p.poll() is not None, timeout=60, what="staging")
    _stop(proj, p, "stop", said="staged: its batch will not start it")
    out, err = p.communicate(timeout=60)
    assert_no_traceback(out, err)
    recs = {r["id"]: r for r in proj.records()}
    (batch,) = [r for r in recs.values() if r["is_batch"]]
    t1, t2 = (recs[t] for t in batch["trials"])
    assert t1["status"] == "terminated" and t1["error"]["message"] == "plugin Hang on_run_staged interrupted by guildlite stop"
    assert t2["status"] == "completed" and proj.job_started(t2), t2
    assert [e["run"] for e in proj.events("Hang", "on_run_end")] == [t1["id"], t2["id"], batch["id"]]
    assert batch["status"] == "error" and p.returncode == 1


# =================================================================================================
# BaseExceptions and unsaveable attrs
# =================================================================================================

MISBEHAVIOURS = ["generator-exit", "system-exit", "keyboard-interrupt", "base-exception",
                 "tuple-key", "set-value", "object", "cycle"]


@pytest.mark.parametrize("what", MISBEHAVIOURS)
def test_a_misbehaving_on_run_end_is_recorded_never_a_traceback(hproj: Callable[[str], HookProject],
                                                                 what: str) -> None:
    """A hook that raises a BaseException, or leaves attrs JSON cannot hold, after the run
    completed: a recorded failure of that plugin; the run, its attrs and every other plugin's
    on_run_end are saved; exit 0, no traceback."""
    proj = hproj(guildfile([{"class": "hangplug:Misbehave", "args": {"hook": "on_run_end", "what": what},
                             "priority": 50}, MARK]))
    cp = proj.run("run", "quick", "-y", timeout=60)
    assert_no_traceback(cp.stdout, cp.stderr)
    r = proj.only_record()
    assert (r["status"], r["exit_code"], cp.returncode) == ("completed", 0, 0), cp.stderr
    (error,) = proj.trace(r, "Misbehave", "on_run_end")
    assert error, r["plugins"]
    if what in ("tuple-key", "set-value", "object", "cycle"):
        assert error.startswith("left attrs['misbehave'] not JSON-serialisable"), error
    assert "misbehave" not in r["attrs"] and r["attrs"]["mark"] == {"ended": "completed"}
    assert "scalars" in r["attrs"]  # the built-in's on_run_end was saved too
    assert "Misbehave.on_run_end failed" in cp.stderr


@pytest.mark.parametrize("what", ["generator-exit", "keyboard-interrupt", "tuple-key"])
def test_a_misbehaving_on_run_begin_fails_the_run_naming_the_plugin(hproj: Callable[[str], HookProject],
                                                                    what: str) -> None:
    proj = hproj(guildfile([{"class": "hangplug:Misbehave", "args": {"hook": "on_run_begin", "what": what}}, MARK]))
    cp = proj.run("run", "quick", "-y", timeout=60)
    assert_no_traceback(cp.stdout, cp.stderr)
    r = proj.only_record()
    assert r["status"] == "error" and cp.returncode == 1 and not proj.job_started(r)
    assert (r["error"]["plugin"], r["error"]["hook"]) == ("Misbehave", "on_run_begin")
    expected = {"generator-exit": "GeneratorExit: ", "keyboard-interrupt": "KeyboardInterrupt: ",
                "tuple-key": "plugin Misbehave on_run_begin left attrs['misbehave'] not JSON-serialisable"}[what]
    assert r["error"]["message"].startswith(expected), r["error"]
    assert len(proj.events("Mark", "on_run_end")) == 1


# =================================================================================================
# Unit level: Dispatcher
# =================================================================================================


@pytest.fixture
def unit_run(tmp_path: Path) -> Run:
    run = Run(id="20260101T000000-abcdef", run_dir=tmp_path / "20260101T000000-abcdef", op="train")
    run.run_dir.mkdir()
    run.save()
    return run


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Hooks in this process hang on this event; set at teardown so no thread outlives the test."""
    ev = threading.Event()
    yield ev
    ev.set()


class Doing(Plugin):
    """Does ``act(run)`` in ``hook``; records each call."""

    def __init__(self, name: str, hook: str, act: Callable[[Run], Any], calls: list[str]) -> None:
        self._name, self.hook, self.act, self.calls = name, hook, act, calls

    @property
    def name(self) -> str:
        return self._name

    def _do(self, hook: str, run: Run) -> None:
        self.calls.append(f"{self._name}.{hook}")
        if hook == self.hook:
            self.act(run)

    def on_run_staged(self, run: Run) -> None:
        self._do("on_run_staged", run)

    def on_run_begin(self, run: Run) -> None:
        self._do("on_run_begin", run)

    def on_run_end(self, run: Run) -> None:
        self._do("on_run_end", run)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def _raise(e: BaseException) -> Callable[[Run], None]:
    def act(run: Run) -> None:
        raise e

    return act


RAISED = {
    "GeneratorExit": GeneratorExit(),
    "SystemExit": SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt(),
    "BaseException": BaseException("base"),
    "Unprintable": Unprintable(),
}


@pytest.mark.parametrize("hook_name", HOOKS)
@pytest.mark.parametrize("kind", list(RAISED))
def test_any_base_exception_is_the_plugins_failure(unit_run: Run, hook_name: str, kind: str) -> None:
    calls: list[str] = []
    d = Dispatcher([Doing("bad", hook_name, _raise(RAISED[kind]), calls), Doing("ok", "", print, calls)],
                   log=lambda m: None)
    if hook_name == "on_run_end":
        d.call(hook_name, unit_run)
        assert calls == ["bad.on_run_end", "ok.on_run_end"]
    else:
        with pytest.raises(HookFailed) as info:
            d.call(hook_name, unit_run)
        assert info.value.status == "error" and info.value.info["plugin"] == "bad"
        assert calls == [f"bad.{hook_name}"]
    (err,) = [t["error"] for t in unit_run.plugins if t["plugin"] == "bad"]
    assert err.startswith(f"{kind}: "), err
    assert TRACEBACK in unit_run.paths.output_log.read_text()


def test_an_async_hook_is_a_failure_and_never_left_unawaited(unit_run: Run) -> None:
    class Async(Plugin):
        async def on_run_end(self, run: Run) -> None:  # type: ignore[override]
            run.attrs["never"] = True

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Dispatcher([Async()], log=lambda m: None).call("on_run_end", unit_run)
        import gc

        gc.collect()
    assert unit_run.plugins[0]["error"] == "TypeError: on_run_end returned a coroutine: hooks are plain functions"
    assert "never" not in unit_run.attrs and not [w for w in caught if "never awaited" in str(w.message)]


class Cyclic(list):  # type: ignore[type-arg]
    pass


def _cycle() -> Any:
    c = Cyclic()
    c.append(c)
    return c


def _deep() -> Any:
    v: Any = 1
    for _ in range(100_000):
        v = [v]
    return v


UNSAVEABLE = {
    "tuple-key": lambda: {(1, 2): 3},
    "set": lambda: {1, 2},
    "object": object,
    "cycle": _cycle,
    "deep": _deep,
    "bytes": lambda: b"raw",
}


@pytest.mark.parametrize("kind", list(UNSAVEABLE))
def test_unsaveable_attrs_are_dropped_or_restored_and_the_record_saves(unit_run: Run, kind: str) -> None:
    unit_run.attrs["kept"] = {"before": 1}

    def act(run: Run) -> None:
        run.attrs["fine"] = {"path": Path("/x/y"), "n": 1.5}
        run.attrs["bad"] = UNSAVEABLE[kind]()
        run.attrs["kept"] = UNSAVEABLE[kind]()
        run.attrs[("tuple", "key")] = 1

    Dispatcher([Doing("p", "on_run_end", act, [])], log=lambda m: None).call("on_run_end", unit_run)
    err = unit_run.plugins[0]["error"]
    assert err.startswith("left attrs['kept'] not JSON-serialisable") and err.count("not JSON-serialisable (") == 3, err
    assert "attrs['bad'] not JSON-serialisable" in err and "attrs[('tuple', 'key')] not JSON-serialisable" in err
    assert "): restored" in err.split(";")[0] and err.endswith("): not saved")
    assert set(unit_run.attrs) == {"fine", "kept"} and unit_run.attrs["kept"] == {"before": 1}
    unit_run.save()
    saved = json.loads(unit_run.paths.run_json.read_text())
    assert saved["attrs"] == {"kept": {"before": 1}, "fine": {"path": "/x/y", "n": 1.5}}


def test_other_unsaveable_fields_are_restored(unit_run: Run) -> None:
    unit_run.flags, unit_run.attrs = {"lr": 0.1}, {"a": 1}

    def act(run: Run) -> None:
        run.flags = {"lr": {0.1}}
        run.label = object()  # type: ignore[assignment]
        run.extra = {1, 2}  # type: ignore[attr-defined]
        run.attrs = 5  # type: ignore[assignment]
        run.plugins = None  # type: ignore[assignment]

    with pytest.raises(HookFailed) as info:
        Dispatcher([Doing("p", "on_run_begin", act, [])], log=lambda m: None).call("on_run_begin", unit_run)
    msg = info.value.info["message"]
    for what in ("changed run.flags (read-only for plugins): restored", "run.label not JSON", "run.extra not JSON", "run.attrs not a dict",
                 "run.plugins not a list"):
        assert what in msg, msg
    assert unit_run.flags == {"lr": 0.1} and unit_run.label == "" and not hasattr(unit_run, "extra")
    assert unit_run.attrs == {"a": 1} and [t["plugin"] for t in unit_run.plugins] == ["p"]
    unit_run.save()


def test_a_batchs_own_flag_objects_are_not_a_plugins_failure(unit_run: Run) -> None:
    """guildlite's ``BatchDistribution`` in a batch's flags (stored as its text) is left alone;
    only what a hook changes is judged."""
    from guildlite import BatchDistribution, BatchValues

    unit_run.flags = {"lr": BatchDistribution("uniform", (0.0, 1.0)), "bs": BatchValues([32, 64]), "seed": 1}

    def act(run: Run) -> None:
        run.attrs["seen"] = str(run.flags["lr"])

    Dispatcher([Doing("p", "on_run_begin", act, [])], log=lambda m: None).call("on_run_begin", unit_run)
    assert unit_run.plugins[0]["error"] is None
    assert isinstance(unit_run.flags["lr"], BatchDistribution) and unit_run.attrs["seen"] == "uniform[0.0:1.0]"


def test_timeout_and_interrupt_in_process(unit_run: Run, release: threading.Event) -> None:
    """The dispatcher's own contract: a hook over its timeout, a stop during a hook, and a stop
    before one (not called)."""
    calls: list[str] = []
    hang = Doing("hang", "on_run_begin", lambda run: release.wait(), calls)
    d = Dispatcher([hang], log=lambda m: None, timeout=0.3)
    with pytest.raises(HookFailed) as info:
        d.call("on_run_begin", unit_run)
    assert (info.value.status, info.value.info["message"]) == ("error", "plugin hang on_run_begin timed out after 0.3 s")

    other = Doing("other", "on_run_staged", lambda run: release.wait(), calls)
    d2 = Dispatcher([other], log=lambda m: None)
    threading.Timer(0.3, d2.interrupt, ("SIGTERM",)).start()
    with pytest.raises(HookFailed) as info:
        d2.call("on_run_staged", unit_run)
    assert (info.value.status, info.value.info["message"]) == ("terminated", "plugin other on_run_staged interrupted by SIGTERM")
    d3 = Dispatcher([Doing("late", "", print, calls)], log=lambda m: None)
    d3.interrupt("SIGINT")
    with pytest.raises(HookFailed) as info:
        d3.call("on_run_begin", unit_run)
    assert info.value.info["message"] == "plugin late on_run_begin not called: stopped by SIGINT"
    assert "late.on_run_begin" not in calls


def test_a_busy_hook_given_up_on_unwinds(unit_run: Run) -> None:
    """A pure-Python loop is ended in its thread once given up on; the plugin is callable again."""
    calls: list[str] = []

    def spin(run: Run) -> None:
        while True:
            pass

    d = Dispatcher([Doing("spin", "on_run_begin", spin, calls)], log=lambda m: None, timeout=0.3)
    with pytest.raises(HookFailed):
        d.call("on_run_begin", unit_run)
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("guildlite-hook spin")],
               timeout=10, what="the hook thread to unwind")
    d.call("on_run_end", unit_run)
    assert calls == ["spin.on_run_begin", "spin.on_run_end"]
    assert unit_run.plugins[-1]["error"] is None


def test_a_veto_still_works_from_the_hook_thread(unit_run: Run) -> None:
    d = Dispatcher([Doing("v", "on_run_begin", _raise(StopRun("no")), [])], log=lambda m: None)
    with pytest.raises(HookFailed) as info:
        d.call("on_run_begin", unit_run)
    assert info.value.info == {"plugin": "v", "hook": "on_run_begin", "message": "no", "veto": True}
